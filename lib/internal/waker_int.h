/* What libmio's own waker owners share (the reactor, the pool's acceptor). */
#ifndef MIO_INTERNAL_WAKER_INT_H
#define MIO_INTERNAL_WAKER_INT_H

#include <stdint.h>
#include <mio/token.h>

/* The token an internal waker registers with: above every other token its poll carries (a
 * reactor's slab tokens keep their slot index below 2^30 in the low half, the acceptor's
 * listener tokens are listener indexes), so the dispatcher tells the waker apart by value. */
#define MIO__WAKER_TOKEN ((mio_token)UINT64_MAX)

#endif
