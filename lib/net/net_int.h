/* Private helpers shared by the lib/net/ files. */
#ifndef MIO_NET_NET_INT_H
#define MIO_NET_NET_INT_H

#include <stdbool.h>
#include <mio/net.h>

/* socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0): the fd or -errno. */
int mio__socket_new(int family, int type);
/* Creates a socket of `type` for addr's family and binds it; listens with backlog 1024 when
 * `listen_too`; sets SO_REUSEADDR first when `reuseaddr`. The fd or -errno (nothing leaks). */
int mio__socket_bind(const mio_addr *addr, int type, bool reuseaddr, bool listen_too);
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
