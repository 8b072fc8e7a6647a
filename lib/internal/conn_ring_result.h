/* The seam between the io_uring backend's completions and the conn layer that acts on them
 * (conn_ring.c, conn_io.c). Reactor's thread only. */
#ifndef MIO_INTERNAL_CONN_RING_RESULT_H
#define MIO_INTERNAL_CONN_RING_RESULT_H

#include <mio/conn.h>

/* Which of a conn's operations on the ring a completion ends. */
enum mio__ring_op {
    MIO__RING_RECV, /* its receive */
    MIO__RING_SEND, /* the send of its staged bytes */
};

/* Returns res unchanged. Every receive and send completion of a live conn passes through here,
 * with the conn, before the conn acts on the result (the conn, not its fd: looking the fd up
 * would be work per completion that only the tests need; their wrapper asks mio_conn_fd). Defined
 * alone in conn_ring_result.c so that every call is a reference to another object file: the
 * fault-injection tests reroute it with -Wl,--wrap to make a completion report another result
 * (tests/fault.h), as they do for the library's libc calls, whereas a result that arrives in a CQE
 * offers them no call to fail. In the library it costs one call per completion. */
int mio__conn_ring_result(enum mio__ring_op op, const mio_conn *c, int res);

#endif
