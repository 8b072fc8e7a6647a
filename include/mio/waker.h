/* Waker: wakes a thread blocked in mio_poll_poll from any other thread (one eventfd). */
#ifndef MIO_WAKER_H
#define MIO_WAKER_H

#include <mio/common.h>
#include <mio/poll.h>

MIO_BEGIN_DECLS

typedef struct mio_waker mio_waker;

/* Creates an eventfd (EFD_NONBLOCK|EFD_CLOEXEC) and registers it READABLE with `token` on reg.
 * Returns 0 and *out, -EINVAL, -EEXIST, -EMFILE, -ENOMEM. The caller owns *out. */
MIO_EXTERN int mio_waker_new(mio_registry *reg, mio_token token, mio_waker **out);
/* Any thread. Each wake yields a new readable event with the token; wakes may coalesce into one
 * event. When the counter would overflow it is drained and written again. Returns 0 or -errno. */
MIO_EXTERN int mio_waker_wake(mio_waker *waker);
/* Closes the eventfd (which deregisters it) and frees the waker; NULL is accepted. */
MIO_EXTERN void mio_waker_free(mio_waker *waker);

MIO_END_DECLS

#endif
