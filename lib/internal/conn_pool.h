/* What the pool uses of the conn layer (implemented in conn.c). */
#ifndef MIO_INTERNAL_CONN_POOL_H
#define MIO_INTERNAL_CONN_POOL_H

#include <stdint.h>
#include <mio/reactor.h>

/* Sets up the conn layer's state on r now rather than at the first mio_conn_open. Call it before
 * the reactor's thread starts (the owner thread, at pool creation), so that the state's address
 * never changes while other threads read mio__conn_count. Returns 0 or -ENOMEM. */
int mio__conn_attach(mio_reactor *r);
/* Any thread (relaxed), once attached: mio_conns open on the reactor (0 before any). */
uint64_t mio__conn_count(const mio_reactor *r);
/* Pool stop, reactor's thread: closes every conn on the reactor once flushed; conns still
 * unflushed at deadline_ms (reactor time) close with -ECANCELED. Their on_close runs at the next
 * settle point. Returns the number of conns still open (0: done). */
int mio__conn_close_all(mio_reactor *r, uint64_t deadline_ms);

#endif
