/* Operations on any socket fd: creation helpers, options, addresses, shutdown and I/O.
 *
 * I/O never raises SIGPIPE: sockets are written with MSG_NOSIGNAL. A fd that is not a socket
 * (a pipe, a tty, ...) cannot take MSG_NOSIGNAL and we cannot cache per-fd knowledge, so send is
 * tried first and, on ENOTSOCK, the data is written with SIGPIPE blocked in this thread; a SIGPIPE
 * that write raised is consumed before the mask is restored. Any thread: no state (the SIGPIPE
 * handling touches only the calling thread's mask). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net/net_int.h"

int mio__socket_new(int family, int type)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd == -1 ? -errno : fd;
}

int mio__socket_bind(const mio_addr *addr, int type, unsigned flags, int backlog)
{
    int fd, err, one = 1;

    fd = mio__socket_new(addr->u.sa.sa_family, type);
    if (fd < 0)
        return fd;
    if ((flags & MIO__BIND_REUSEADDR) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1)
        goto err_close;
    if ((flags & MIO__BIND_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == -1)
        goto err_close;
    if (bind(fd, &addr->u.sa, addr->len) == -1)
        goto err_close;
    if ((flags & MIO__BIND_NODELAY) &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == -1)
        goto err_close;
    if ((flags & MIO__BIND_LISTEN) && listen(fd, backlog) == -1)
        goto err_close;
    return fd;

err_close:
    err = errno;
    close(fd);
    return -err;
}

int mio__socket_connect(const mio_addr *addr, int type)
{
    int fd, err;

    fd = mio__socket_new(addr->u.sa.sa_family, type);
    if (fd < 0)
        return fd;
    /* EINTR on a non-blocking connect leaves it running in the background, like EINPROGRESS. */
    if (connect(fd, &addr->u.sa, addr->len) == -1 && errno != EINPROGRESS && errno != EINTR) {
        err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int mio__socket_accept(int lfd, mio_addr *peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd;

    do {
        fd = accept4(lfd, peer != NULL ? (struct sockaddr *)&ss : NULL, peer != NULL ? &len : NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd == -1 && errno == EINTR);
    if (fd == -1)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (peer != NULL)
        mio__addr_from_kernel(peer, &ss, len);
    return fd;
}

int mio__sockopt_get(int fd, int level, int name)
{
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) == -1)
        return -errno;
    return v;
}

int mio__sockopt_set(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v) == -1 ? -errno : 0;
}

int mio_tcp_set_nodelay(int fd, bool on)
{
    return mio__sockopt_set(fd, IPPROTO_TCP, TCP_NODELAY, on);
}

int mio_tcp_nodelay(int fd)
{
    int v = mio__sockopt_get(fd, IPPROTO_TCP, TCP_NODELAY);
    return v < 0 ? v : v != 0;
}

int mio_socket_set_ttl(int fd, unsigned ttl)
{
    int family = mio__sockopt_get(fd, SOL_SOCKET, SO_DOMAIN);

    if (family < 0)
        return family;
    if (ttl > 255)
        return -EINVAL;
    if (family == AF_INET6)
        return mio__sockopt_set(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, (int)ttl);
    if (family == AF_INET)
        return mio__sockopt_set(fd, IPPROTO_IP, IP_TTL, (int)ttl);
    return -EAFNOSUPPORT;
}

int mio_socket_ttl(int fd)
{
    int family = mio__sockopt_get(fd, SOL_SOCKET, SO_DOMAIN);

    if (family < 0)
        return family;
    if (family == AF_INET6)
        return mio__sockopt_get(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS);
    if (family == AF_INET)
        return mio__sockopt_get(fd, IPPROTO_IP, IP_TTL);
    return -EAFNOSUPPORT;
}

int mio_socket_take_error(int fd)
{
    int v = mio__sockopt_get(fd, SOL_SOCKET, SO_ERROR);
    return v < 0 ? v : -v;
}

typedef int (*getname_fn)(int, struct sockaddr *, socklen_t *);

static int get_name(int fd, mio_addr *out, getname_fn fn)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (out == NULL)
        return -EINVAL;
    if (fn(fd, (struct sockaddr *)&ss, &len) == -1)
        return -errno;
    mio__addr_from_kernel(out, &ss, len);
    return 0;
}

int mio_socket_local_addr(int fd, mio_addr *out)
{
    return get_name(fd, out, getsockname);
}

int mio_socket_peer_addr(int fd, mio_addr *out)
{
    return get_name(fd, out, getpeername);
}

int mio_socket_shutdown(int fd, int how)
{
    return shutdown(fd, how) == -1 ? -errno : 0;
}

/* Runs write/writev on a non-socket fd with SIGPIPE blocked in this thread. A SIGPIPE raised by
 * the write is thread-directed and stays pending while blocked; it is consumed with a zero-timeout
 * sigtimedwait, but only if SIGPIPE was not already pending before (that one is someone else's). */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len, const struct iovec *iov,
                               int iovcnt)
{
    static const struct timespec zero = {0, 0};
    sigset_t pipe_set, old, pending;
    bool was_pending;
    ssize_t n;
    int err, r;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    r = pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    if (r != 0)
        return -r;
    was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    n = iov != NULL ? writev(fd, iov, iovcnt) : write(fd, buf, len);
    err = n == -1 ? errno : 0;
    if (err == EPIPE && !was_pending) {
        while (sigtimedwait(&pipe_set, NULL, &zero) == -1 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (n == -1)
        return err == EWOULDBLOCK ? -EAGAIN : -err;
    return n;
}

/* A msghdr carrying only iov[0..iovcnt) (iovcnt >= 0): no address, no control data. */
static struct msghdr msg_of(const struct iovec *iov, int iovcnt)
{
    struct msghdr msg;

    memset(&msg, 0, sizeof msg);
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    return msg;
}

static ssize_t io_result(ssize_t n)
{
    if (n != -1)
        return n;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t mio_send(int fd, const void *buf, size_t len)
{
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n == -1 && errno == ENOTSOCK)
        return write_nosigpipe(fd, buf, len, NULL, 0);
    return io_result(n);
}

ssize_t mio_sendv(int fd, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg;
    ssize_t n;

    if (iovcnt < 0)
        return -EINVAL;
    msg = msg_of(iov, iovcnt);
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n == -1 && errno == ENOTSOCK)
        return write_nosigpipe(fd, NULL, 0, iov, iovcnt);
    return io_result(n);
}

ssize_t mio_recv(int fd, void *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len, 0);
    if (n == -1 && errno == ENOTSOCK)
        n = read(fd, buf, len);
    return io_result(n);
}

ssize_t mio_recvv(int fd, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg;
    ssize_t n;

    if (iovcnt < 0)
        return -EINVAL;
    msg = msg_of(iov, iovcnt);
    n = recvmsg(fd, &msg, 0);
    if (n == -1 && errno == ENOTSOCK)
        n = readv(fd, iov, iovcnt);
    return io_result(n);
}

ssize_t mio_peek(int fd, void *buf, size_t len)
{
    return io_result(recv(fd, buf, len, MSG_PEEK));
}
