/* UDP sockets and their options. send_to / recv_from / peek_from also serve unix datagram
 * sockets (any address family mio_addr holds). Any thread: no state. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "net/net_int.h"

int mio_udp_bind(const mio_addr *addr)
{
    if (!mio__addr_valid(addr))
        return -EINVAL;
    if (addr->u.sa.sa_family == AF_UNIX)
        return -EAFNOSUPPORT;
    return mio__socket_bind(addr, SOCK_DGRAM, 0, 0);
}

int mio_udp_connect(int fd, const mio_addr *addr)
{
    if (!mio__addr_valid(addr))
        return -EINVAL;
    return connect(fd, &addr->u.sa, addr->len) == -1 ? -errno : 0;
}

ssize_t mio_udp_send_to(int fd, const void *buf, size_t len, const mio_addr *to)
{
    ssize_t n;

    if (!mio__addr_valid(to))
        return -EINVAL;
    n = sendto(fd, buf, len, MSG_NOSIGNAL, &to->u.sa, to->len);
    if (n == -1)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

static ssize_t recv_from(int fd, void *buf, size_t len, mio_addr *from, int flags)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t n;

    n = recvfrom(fd, buf, len, flags, from != NULL ? (struct sockaddr *)&ss : NULL,
                 from != NULL ? &sl : NULL);
    if (n == -1)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (from != NULL)
        mio__addr_from_kernel(from, &ss, sl);
    return n;
}

ssize_t mio_udp_recv_from(int fd, void *buf, size_t len, mio_addr *from)
{
    return recv_from(fd, buf, len, from, 0);
}

ssize_t mio_udp_peek_from(int fd, void *buf, size_t len, mio_addr *from)
{
    return recv_from(fd, buf, len, from, MSG_PEEK);
}

static int get_bool(int fd, int level, int name)
{
    int v = mio__sockopt_get(fd, level, name);
    return v < 0 ? v : v != 0;
}

int mio_udp_set_broadcast(int fd, bool on)
{
    return mio__sockopt_set(fd, SOL_SOCKET, SO_BROADCAST, on);
}

int mio_udp_broadcast(int fd)
{
    return get_bool(fd, SOL_SOCKET, SO_BROADCAST);
}

int mio_udp_set_multicast_loop_v4(int fd, bool on)
{
    return mio__sockopt_set(fd, IPPROTO_IP, IP_MULTICAST_LOOP, on);
}

int mio_udp_multicast_loop_v4(int fd)
{
    return get_bool(fd, IPPROTO_IP, IP_MULTICAST_LOOP);
}

int mio_udp_set_multicast_ttl_v4(int fd, unsigned ttl)
{
    if (ttl > 255)
        return -EINVAL;
    return mio__sockopt_set(fd, IPPROTO_IP, IP_MULTICAST_TTL, (int)ttl);
}

int mio_udp_multicast_ttl_v4(int fd)
{
    return mio__sockopt_get(fd, IPPROTO_IP, IP_MULTICAST_TTL);
}

int mio_udp_set_multicast_loop_v6(int fd, bool on)
{
    return mio__sockopt_set(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, on);
}

int mio_udp_multicast_loop_v6(int fd)
{
    return get_bool(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP);
}

static int membership_v4(int fd, int op, const struct in_addr *group, const struct in_addr *iface)
{
    struct ip_mreq mreq;

    if (group == NULL)
        return -EINVAL;
    memset(&mreq, 0, sizeof mreq);
    mreq.imr_multiaddr = *group;
    mreq.imr_interface.s_addr = iface != NULL ? iface->s_addr : htonl(INADDR_ANY);
    return setsockopt(fd, IPPROTO_IP, op, &mreq, sizeof mreq) == -1 ? -errno : 0;
}

int mio_udp_join_multicast_v4(int fd, const struct in_addr *group, const struct in_addr *iface)
{
    return membership_v4(fd, IP_ADD_MEMBERSHIP, group, iface);
}

int mio_udp_leave_multicast_v4(int fd, const struct in_addr *group, const struct in_addr *iface)
{
    return membership_v4(fd, IP_DROP_MEMBERSHIP, group, iface);
}

static int membership_v6(int fd, int op, const struct in6_addr *group, unsigned ifindex)
{
    struct ipv6_mreq mreq;

    if (group == NULL)
        return -EINVAL;
    memset(&mreq, 0, sizeof mreq);
    mreq.ipv6mr_multiaddr = *group;
    mreq.ipv6mr_interface = ifindex;
    return setsockopt(fd, IPPROTO_IPV6, op, &mreq, sizeof mreq) == -1 ? -errno : 0;
}

int mio_udp_join_multicast_v6(int fd, const struct in6_addr *group, unsigned ifindex)
{
    return membership_v6(fd, IPV6_ADD_MEMBERSHIP, group, ifindex);
}

int mio_udp_leave_multicast_v6(int fd, const struct in6_addr *group, unsigned ifindex)
{
    return membership_v6(fd, IPV6_DROP_MEMBERSHIP, group, ifindex);
}

int mio_udp_only_v6(int fd)
{
    return get_bool(fd, IPPROTO_IPV6, IPV6_V6ONLY);
}
