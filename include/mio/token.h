/* Token: the caller's value that identifies a registered source in the events it produces. */
#ifndef MIO_TOKEN_H
#define MIO_TOKEN_H

#include <mio/common.h>

/* Any value; none is reserved. Carried unchanged through epoll's 64-bit data field. */
typedef uintptr_t mio_token;

#endif
