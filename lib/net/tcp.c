/* TCP listener and stream: thin, checked wrappers over the socket helpers. Any thread: no state. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>

#include "net/net_int.h"

/* -EINVAL for NULL or malformed, -EAFNOSUPPORT for a unix address, 0 when usable. */
static int check_inet(const mio_addr *addr)
{
    if (!mio__addr_valid(addr))
        return -EINVAL;
    return addr->u.sa.sa_family == AF_UNIX ? -EAFNOSUPPORT : 0;
}

int mio_tcp_listener_bind(const mio_addr *addr)
{
    int r = check_inet(addr);
    if (r < 0)
        return r;
    return mio__socket_bind(addr, SOCK_STREAM, MIO__BIND_REUSEADDR | MIO__BIND_LISTEN,
                            MIO__LISTEN_BACKLOG);
}

int mio_tcp_listener_accept(int lfd, mio_addr *peer)
{
    return mio__socket_accept(lfd, peer);
}

int mio_tcp_stream_connect(const mio_addr *addr)
{
    int r = check_inet(addr);
    return r < 0 ? r : mio__socket_connect(addr, SOCK_STREAM);
}
