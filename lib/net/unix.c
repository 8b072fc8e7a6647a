/* Unix domain sockets, stream and datagram, pathname or abstract. Any thread: no state. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <unistd.h>

#include "net/net_int.h"

/* -EINVAL for NULL or malformed, -EAFNOSUPPORT for a non-unix address, 0 when usable. */
static int check_unix(const mio_addr *addr)
{
    if (!mio__addr_valid(addr))
        return -EINVAL;
    return addr->u.sa.sa_family == AF_UNIX ? 0 : -EAFNOSUPPORT;
}

int mio_unix_listener_bind(const mio_addr *addr)
{
    int r = check_unix(addr);
    return r < 0 ? r : mio__socket_bind(addr, SOCK_STREAM, MIO__BIND_LISTEN, MIO__LISTEN_BACKLOG);
}

int mio_unix_listener_accept(int lfd, mio_addr *peer)
{
    return mio__socket_accept(lfd, peer);
}

int mio_unix_stream_connect(const mio_addr *addr)
{
    int r = check_unix(addr);
    /* A full backlog makes a non-blocking unix connect fail with EAGAIN: returned as -EAGAIN. */
    return r < 0 ? r : mio__socket_connect(addr, SOCK_STREAM);
}

static int pair(int type, int fds[2])
{
    int sv[2];

    if (fds == NULL)
        return -EINVAL;
    if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
        return -errno;
    fds[0] = sv[0];
    fds[1] = sv[1];
    return 0;
}

int mio_unix_stream_pair(int fds[2])
{
    return pair(SOCK_STREAM, fds);
}

int mio_unix_datagram_bind(const mio_addr *addr)
{
    int r = check_unix(addr);
    return r < 0 ? r : mio__socket_bind(addr, SOCK_DGRAM, 0, 0);
}

int mio_unix_datagram_unbound(void)
{
    return mio__socket_new(AF_UNIX, SOCK_DGRAM);
}

int mio_unix_datagram_pair(int fds[2])
{
    return pair(SOCK_DGRAM, fds);
}

int mio_unix_datagram_connect(int fd, const mio_addr *addr)
{
    int r = check_unix(addr);
    if (r < 0)
        return r;
    return connect(fd, &addr->u.sa, addr->len) == -1 ? -errno : 0;
}
