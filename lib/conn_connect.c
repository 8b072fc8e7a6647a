/* Outbound connections: mio_conn_connect opens a non-blocking socket, starts the connect and
 * wraps the fd in a conn that is "connecting": registered for WRITABLE only, writes queued, no
 * reads. The first WRITABLE (or error) event ends the attempt: SO_ERROR says how. Success runs the
 * caller's on_connect, then the conn is an ordinary one; failure, and the optional timeout, are
 * reported once through on_close with the negative errno. Reactor's thread only. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
#include <mio/conn.h>
#include <mio/net.h>
#include "internal/conn_int.h"

int mio_conn_connect(mio_reactor *r, const mio_addr *addr, const mio_conn_ops *ops,
                     mio_conn_connect_fn on_connect, void *arg, uint64_t timeout_ms,
                     mio_conn **out)
{
    mio_conn *c;
    int fd, err;

    if (r == NULL || addr == NULL || ops == NULL || ops->on_read == NULL)
        return -EINVAL;
    fd = addr->u.sa.sa_family == AF_UNIX ? mio_unix_stream_connect(addr)
                                         : mio_tcp_stream_connect(addr);
    if (fd < 0)
        return fd; /* no socket, or a failure the kernel knew at once */
    /* The fd is ours and non-blocking (SOCK_NONBLOCK): no fcntl to check it. */
    err = mio__conn_adopt(r, fd, ops, arg, MIO__CF_CONNECTING, &c);
    if (err < 0)
        goto err_fd;
    if (on_connect != NULL || timeout_ms > 0) {
        struct mio__conn_ext *x = mio__conn_ext(c);

        if (x == NULL) {
            err = -ENOMEM;
            goto err_conn;
        }
        x->on_connect = on_connect;
    }
    if (timeout_ms > 0) {
        err = mio_conn_set_deadline(c, timeout_ms);
        if (err < 0)
            goto err_conn;
    }
    if (out != NULL)
        *out = c;
    return 0;

err_conn:
    mio__conn_unadopt(c); /* no callback ran: the caller gets the error, not an on_close */
    return err;
err_fd:
    (void)close(fd);
    return err;
}

/* The connecting conn's socket reported writable, an error or a hang-up: the attempt is over. */
void mio__conn_connected(mio_conn *c, bool writable)
{
    int err = mio_socket_take_error(mio__conn_fd(c));
    mio_conn_connect_fn fn;

    if (err == 0 && !writable)
        err = -ECONNRESET; /* a hang-up without an error: never became usable */
    if (err < 0) {
        mio__conn_teardown(c, err);
        return;
    }
    c->flags &= (uint16_t)~MIO__CF_CONNECTING;
    mio__conn_clear_deadline(c); /* the connect timeout ends with the attempt */
    /* The connect's event used up the WRITABLE edge: force a real change of interest (epoll
     * then re-arms the edges), so the queue written meanwhile is flushed by the next event even
     * when the interest wanted now is WRITABLE alone (closing, or reading paused). */
    c->interest = (mio_interest)0xff; /* no interest is this: the next sync always changes it */
    if (mio__conn_sync_interest(c) < 0)
        return;
    if (!mio__conn_holds_output(c) && mio__conn_flushed(c) < 0)
        return; /* a shutdown requested while connecting */
    fn = c->x != NULL ? c->x->on_connect : NULL;
    if (c->x != NULL)
        c->x->on_connect = NULL; /* the attempt is over */
    if (fn != NULL && !(c->flags & MIO__CF_CLOSING)) /* closed while connecting: not wanted */
        fn(c, c->arg);
    if (!(c->flags & MIO__CF_DEAD))
        mio__conn_ext_trim(c); /* what only the attempt needed goes with it */
}
