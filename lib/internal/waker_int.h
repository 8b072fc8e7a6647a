/* Internal access to a waker's eventfd, for an owner that drains it itself (the reactor). */
#ifndef MIO_INTERNAL_WAKER_INT_H
#define MIO_INTERNAL_WAKER_INT_H

#include <mio/waker.h>

int mio__waker_fd(const mio_waker *waker);

#endif
