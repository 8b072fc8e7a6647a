/* Private helpers shared by the lib/net/ files and the pool's listeners (lib/pool*.c). Any thread:
 * they keep no state. */
#ifndef MIO_NET_NET_INT_H
#define MIO_NET_NET_INT_H

#include <stdbool.h>
#include <mio/net.h>

/* socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0): the fd or -errno. */
int mio__socket_new(int family, int type);
/* mio__socket_bind's options, in the order they are applied around bind(2). */
enum {
    MIO__BIND_REUSEADDR = 1u << 0, /* SO_REUSEADDR, before bind */
    MIO__BIND_REUSEPORT = 1u << 1, /* SO_REUSEPORT, before bind */
    MIO__BIND_NODELAY = 1u << 2,   /* TCP_NODELAY, after bind (Linux passes it on to accepted
                                      sockets) */
    MIO__BIND_LISTEN = 1u << 3,    /* listen(backlog), last */
};
/* The backlog of mio_tcp_listener_bind and mio_unix_listener_bind. */
#define MIO__LISTEN_BACKLOG 1024
/* Creates a socket of `type` for addr's family and binds it, with the MIO__BIND_* `flags`;
 * `backlog` is used with MIO__BIND_LISTEN only. The fd or -errno (nothing leaks). */
int mio__socket_bind(const mio_addr *addr, int type, unsigned flags, int backlog);
/* Creates a stream socket for addr's family and starts a non-blocking connect. EINPROGRESS is
 * swallowed; any other failure closes the socket and returns -errno. */
int mio__socket_connect(const mio_addr *addr, int type);
/* accept4(NONBLOCK|CLOEXEC), retried on EINTR; peer may be NULL. The fd or -errno. */
int mio__socket_accept(int lfd, mio_addr *peer);
/* Copies a kernel-returned address of length `len` into out, mapping an empty unix address
 * (len < sizeof(sa_family_t)) to the unnamed form. */
void mio__addr_from_kernel(mio_addr *out, const struct sockaddr_storage *ss, socklen_t len);
/* getsockopt/setsockopt of one int option: the value (or 0) or -errno. */
int mio__sockopt_get(int fd, int level, int name);
int mio__sockopt_set(int fd, int level, int name, int value);
/* True when addr is non-NULL, has a family we speak and a length that fits it. */
bool mio__addr_valid(const mio_addr *addr);

#endif
