/* Conn: a buffered connection on a reactor — read callback, write queue with back-pressure,
 * half-close, idle timeout, and exactly one on_close. All functions are for the reactor's thread.
 *
 * Lifetime: a mio_conn * is valid from mio_conn_open until its on_close returns, and no longer.
 * on_close never runs inside a call the user made (mio_conn_close, a failed mio_conn_write, ...):
 * it runs once the callback in which the conn closed or failed has returned (handler, on_read,
 * on_drain, task, timer, another on_close, accept callback), or, for a close made outside any
 * callback, at the start of the reactor's next iteration (or in mio_reactor_free). Between the
 * close and on_close the conn is "closing": mio_conn_close does nothing, writes, shutdown and the
 * setters return -EPIPE, mio_conn_fd and mio_conn_pending still answer, no on_read runs. */
#ifndef MIO_CONN_H
#define MIO_CONN_H

#include <sys/uio.h>
#include <mio/common.h>
#include <mio/net.h>
#include <mio/reactor.h>

MIO_BEGIN_DECLS

typedef struct mio_conn mio_conn;

typedef struct mio_conn_ops {
    /* Data received; len 0 means the peer's FIN (EOF), delivered once. `data` is valid only during
     * the call. Bytes left unconsumed (mio_conn_consume) come again at the start of the next call. */
    void (*on_read)(mio_conn *c, const void *data, size_t len, void *arg);
    /* Runs exactly once: reason 0 after mio_conn_close, -ETIMEDOUT for the idle timeout,
     * -ECONNRESET / -EPIPE / other -errno when the socket fails, -ECANCELED when a pool stop could
     * not flush it in time or mio_reactor_free closed it. The conn is freed and its fd closed
     * right after it returns. */
    void (*on_close)(mio_conn *c, int reason, void *arg);
    /* Optional: the write queue fell to the low water mark after exceeding the high one. */
    void (*on_drain)(mio_conn *c, void *arg);
} mio_conn_ops;

/* Runs on the reactor's thread once an outbound connection is established. */
typedef void (*mio_conn_connect_fn)(mio_conn *c, void *arg);

/* Connects to addr (TCP, or a "unix:" address) without blocking and returns the conn at once, in
 * the connecting state: writes made now are queued and go out when the connection is established;
 * on_read starts then. Success runs on_connect(c, arg) (may be NULL) on the reactor's thread;
 * refusal, an unreachable network or the timeout (timeout_ms > 0; a deadline, which a later
 * mio_conn_set_deadline replaces) are reported once through on_close with the negative errno
 * (-ECONNREFUSED, -ENETUNREACH, -ETIMEDOUT, ...). Name resolution is the caller's: addr is an
 * address. Returns 0 and *out (may be NULL), or -errno when the attempt fails at once (no socket,
 * -EMFILE, a refusal the kernel knows at once as for a unix path nobody listens on, -EINVAL);
 * then no callback runs. */
MIO_EXTERN int mio_conn_connect(mio_reactor *r, const mio_addr *addr, const mio_conn_ops *ops,
                                mio_conn_connect_fn on_connect, void *arg, uint64_t timeout_ms,
                                mio_conn **out);

/* A thread-safe name for a conn: its reactor and its token, a plain value any thread may copy.
 * Calls through it run as tasks on the conn's reactor (mio_reactor_post: lock-free, FIFO per
 * calling thread, no wake syscall when that reactor is busy). On arrival the conn is looked up:
 * if it has closed (or is closing), or its slot now belongs to another conn, nothing touches it.
 * The reactor must outlive the calls (a pool's workers live until mio_pool_free). */
typedef struct mio_conn_handle {
    mio_reactor *reactor;
    uint64_t token;
} mio_conn_handle;
/* Runs on the conn's reactor with the conn, or with NULL when it is gone: how a caller learns. */
typedef void (*mio_conn_call_fn)(mio_conn *c, void *arg);

/* The conn's handle (reactor's thread). A NULL conn gives a handle every call refuses. */
MIO_EXTERN mio_conn_handle mio_conn_handle_get(const mio_conn *c);
/* Any thread: runs fn(conn or NULL, arg) on the conn's reactor. Returns 0, -EINVAL (bad handle,
 * NULL fn), -ENOMEM, or -EAGAIN (the reactor's task queue is full: retry later). */
MIO_EXTERN int mio_conn_handle_call(mio_conn_handle h, mio_conn_call_fn fn, void *arg);
/* Any thread: copies data and has it written to the conn on its reactor (dropped if the conn is
 * gone by then; use mio_conn_handle_call to be told). Returns as mio_conn_handle_call. */
MIO_EXTERN int mio_conn_handle_write(mio_conn_handle h, const void *data, size_t len);
/* Any thread: mio_conn_close on the conn's reactor, if the conn is still there. */
MIO_EXTERN int mio_conn_handle_close(mio_conn_handle h);

/* Takes ownership of fd (made non-blocking if it is not) and adds it to the reactor. `ops` is
 * copied. On failure the fd is still the caller's. Returns 0 and *out (may be NULL), -EINVAL,
 * -ENOMEM, -EEXIST, -EBADF. */
MIO_EXTERN int mio_conn_open(mio_reactor *r, int fd, const mio_conn_ops *ops, void *arg,
                             mio_conn **out);
/* Inside a reactor callback (handler, on_read, task, timer, ...) the bytes are gathered with the
 * conn's other writes of that callback and handed to the kernel in one send when it returns
 * (mio_conn_flush sends them sooner); outside callbacks, and for writes over 16 KiB, they go at
 * once. On the io_uring backend the gathering spans the loop iteration: every conn's gathered
 * bytes go as sends on the ring in one submission when the iteration's callbacks have run. Copies what cannot be sent now; the caller's buffer may be reused on return. mio_conn_pending
 * counts gathered and queued bytes alike. Returns 0, -EPIPE
 * (already closing: after mio_conn_shutdown or mio_conn_close, or after an earlier failure),
 * -EINVAL (the iovec lengths overflow size_t), or the -errno of this call's failed send (the conn
 * then closes by itself and on_close, later, reports the same reason). */
MIO_EXTERN int mio_conn_write(mio_conn *c, const void *data, size_t len);
MIO_EXTERN int mio_conn_writev(mio_conn *c, const struct iovec *iov, int iovcnt);
/* Hands the bytes this conn's writes staged in the current callback to the kernel now, in one
 * send (what the socket does not take stays queued). Writes made inside reactor callbacks are
 * otherwise gathered and sent when the callback returns; writes outside callbacks go at once.
 * Returns 0 (also when these were a closed conn's last bytes, whose close then completes), -EINVAL
 * (NULL), -EPIPE (failed earlier), or the -errno of the failed send (the conn then closes). */
MIO_EXTERN int mio_conn_flush(mio_conn *c);
/* Inside on_read only, for this conn: of the len bytes just delivered, the first n were used; the
 * library keeps the other len - n and delivers them again at the start of the next on_read,
 * followed by the new bytes, as one contiguous span. Without a call everything counts as used.
 * The last call in an on_read wins. Returns 0, -EINVAL (NULL conn, not inside this conn's on_read,
 * n > len), or -EMSGSIZE: the kept bytes reach the input limit; unless a later call keeps less,
 * the conn then closes with on_close(-EMSGSIZE) after on_read returns, dropping what it holds.
 * To answer such a peer first (a 431, say), write the answer and mio_conn_close the conn in that
 * on_read: a closed conn flushes, then closes with reason 0. Kept bytes are dropped at EOF and at
 * close. */
MIO_EXTERN int mio_conn_consume(mio_conn *c, size_t n);
/* The most bytes a conn keeps unconsumed (a partial message must stay below it); 64 KiB by
 * default. Returns 0, -EINVAL (bytes < 2 or > UINT32_MAX), -EMSGSIZE (more is kept right now),
 * -EPIPE (closing), -ENOMEM. */
MIO_EXTERN int mio_conn_set_input_limit(mio_conn *c, size_t bytes);
/* The conn's input limit (0 for NULL). */
MIO_EXTERN size_t mio_conn_input_limit(const mio_conn *c);
/* Sends FIN once the queue is flushed; reading goes on. Returns 0 or -errno. */
MIO_EXTERN int mio_conn_shutdown(mio_conn *c);
/* Closes once the queue is flushed; no on_read after this; on_close(0) runs exactly once,
 * after the current callback returns. A second call (before on_close ran) does nothing. */
MIO_EXTERN void mio_conn_close(mio_conn *c);
/* Bytes queued, not yet handed to the kernel. */
MIO_EXTERN size_t mio_conn_pending(const mio_conn *c);
/* Reading pauses while pending > high and resumes at <= low (then on_drain runs).
 * Returns 0, -EINVAL (low > high) or -EPIPE (closing). Defaults: low 64 KiB, high 1 MiB. */
MIO_EXTERN int mio_conn_set_watermarks(mio_conn *c, size_t low, size_t high);
/* Closes with -ETIMEDOUT after ms without received data (0 disables). Returns 0, -ENOMEM, or
 * -EPIPE (closing, also while a closed conn still flushes). */
MIO_EXTERN int mio_conn_set_idle_timeout(mio_conn *c, uint64_t ms);
/* Stops (on false) or resumes (on true) reading this conn, whatever its own queue holds: for a
 * proxy or a relay, whose source must wait while the destination's queue is above its high mark
 * (mio_conn_pending / on_drain of the other conn). Reading also stops by itself above this conn's
 * own high mark; both must allow it for on_read to run. Bytes that arrive while stopped wait in
 * the kernel (its receive window pushes back on the peer) and are read after the resume. A peer's
 * FIN is not seen while stopped. Returns 0, -EINVAL (NULL), -EPIPE (closing), or the -errno of a
 * failed epoll change (the conn then closes). */
MIO_EXTERN int mio_conn_set_reading(mio_conn *c, bool on);
/* Closes with on_close(-ETIMEDOUT) ms from now whatever the traffic (unlike the idle timeout,
 * which received bytes push back): bounds, say, the time a peer takes to send a whole request.
 * A new call moves it; 0 clears it. Returns 0, -ENOMEM, or -EPIPE (closing). */
MIO_EXTERN int mio_conn_set_deadline(mio_conn *c, uint64_t ms);
/* The socket fd (owned by the conn; valid until on_close returns). */
MIO_EXTERN int mio_conn_fd(const mio_conn *c);
/* The reactor the conn lives on. */
MIO_EXTERN mio_reactor *mio_conn_reactor(const mio_conn *c);

MIO_END_DECLS

#endif
