/* Addresses and sockets as plain fds.
 *
 * Every fd created here is O_NONBLOCK | O_CLOEXEC and belongs to the caller, who registers it with a
 * registry and closes it. Functions that create an fd return it (>= 0) or a negative errno.
 * Nothing here raises SIGPIPE or changes a signal's disposition. All functions are thread-safe in
 * the sense of the syscalls they wrap: any thread may call them on its own fds. */
#ifndef MIO_NET_H
#define MIO_NET_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <mio/common.h>

MIO_BEGIN_DECLS

/* A socket address of any family libmio speaks (IPv4, IPv6, Unix). `len` is the meaningful length.
 * Unix: pathname len = offsetof(sun_path) + strlen + 1; abstract len = offsetof(sun_path) + 1 +
 * name length; unnamed (unbound peer) len = sizeof(sa_family_t), family AF_UNIX. */
typedef struct mio_addr {
    socklen_t len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
} mio_addr;

/* Longest text mio_addr_format can produce, with the NUL. The long ones are unix: a 107-byte path,
 * or a 107-byte abstract name whose every byte needs a 4-character \xHH escape. */
#define MIO_ADDR_STRLEN 448

/* Parses "127.0.0.1:80", "[::1]:80", "[fe80::1%eth0]:80", "unix:/path/sock", "unix:@abstract".
 * No DNS. Returns 0, or -EINVAL for NULL or malformed text (out is then left untouched). */
MIO_EXTERN int mio_addr_parse(const char *text, mio_addr *out);
/* The inverse of mio_addr_parse (unnamed unix -> "unix:"); snprintf semantics; -EINVAL for a NULL
 * or unsupported address. */
MIO_EXTERN int mio_addr_format(const mio_addr *addr, char *buf, size_t len);

/* TCP */
/* Binds a listening socket (SO_REUSEADDR, backlog 1024). Returns the fd or -errno. */
MIO_EXTERN int mio_tcp_listener_bind(const mio_addr *addr);
/* accept4(NONBLOCK|CLOEXEC). Returns the new fd, -EAGAIN when none is pending, or -errno.
 * peer may be NULL. */
MIO_EXTERN int mio_tcp_listener_accept(int lfd, mio_addr *peer);
/* Starts a non-blocking connect (EINPROGRESS is swallowed): wait for WRITABLE, then check
 * mio_socket_take_error and mio_socket_peer_addr. Returns the fd or -errno (e.g. -ECONNREFUSED
 * when the kernel refuses at once). */
MIO_EXTERN int mio_tcp_stream_connect(const mio_addr *addr);
MIO_EXTERN int mio_tcp_set_nodelay(int fd, bool on);
MIO_EXTERN int mio_tcp_nodelay(int fd); /* 1/0 or -errno */

/* Generic socket operations */
MIO_EXTERN int mio_socket_set_ttl(int fd, unsigned ttl); /* IPv6: unicast hop limit */
MIO_EXTERN int mio_socket_ttl(int fd);                   /* the value or -errno */
MIO_EXTERN int mio_socket_take_error(int fd);            /* reads and clears SO_ERROR: 0 or -errno */
MIO_EXTERN int mio_socket_local_addr(int fd, mio_addr *out);
MIO_EXTERN int mio_socket_peer_addr(int fd, mio_addr *out);
MIO_EXTERN int mio_socket_shutdown(int fd, int how); /* SHUT_RD / SHUT_WR / SHUT_RDWR */
/* Byte counts or -errno (-EAGAIN, -EPIPE, -ECONNRESET, ...). Work on any fd: sockets use
 * MSG_NOSIGNAL; other fds are written with SIGPIPE blocked in the calling thread (a SIGPIPE this
 * raised is consumed), so a broken pipe returns -EPIPE. 0 from mio_recv means EOF. */
MIO_EXTERN ssize_t mio_send(int fd, const void *buf, size_t len);
MIO_EXTERN ssize_t mio_sendv(int fd, const struct iovec *iov, int iovcnt);
MIO_EXTERN ssize_t mio_recv(int fd, void *buf, size_t len);
MIO_EXTERN ssize_t mio_recvv(int fd, const struct iovec *iov, int iovcnt);
MIO_EXTERN ssize_t mio_peek(int fd, void *buf, size_t len);

/* UDP */
MIO_EXTERN int mio_udp_bind(const mio_addr *addr);
MIO_EXTERN int mio_udp_connect(int fd, const mio_addr *addr);
MIO_EXTERN ssize_t mio_udp_send_to(int fd, const void *buf, size_t len, const mio_addr *to);
MIO_EXTERN ssize_t mio_udp_recv_from(int fd, void *buf, size_t len, mio_addr *from);
MIO_EXTERN ssize_t mio_udp_peek_from(int fd, void *buf, size_t len, mio_addr *from);
MIO_EXTERN int mio_udp_set_broadcast(int fd, bool on);
MIO_EXTERN int mio_udp_broadcast(int fd);
MIO_EXTERN int mio_udp_set_multicast_loop_v4(int fd, bool on);
MIO_EXTERN int mio_udp_multicast_loop_v4(int fd);
MIO_EXTERN int mio_udp_set_multicast_ttl_v4(int fd, unsigned ttl);
MIO_EXTERN int mio_udp_multicast_ttl_v4(int fd);
MIO_EXTERN int mio_udp_set_multicast_loop_v6(int fd, bool on);
MIO_EXTERN int mio_udp_multicast_loop_v6(int fd);
MIO_EXTERN int mio_udp_join_multicast_v4(int fd, const struct in_addr *group,
                                         const struct in_addr *iface);
MIO_EXTERN int mio_udp_leave_multicast_v4(int fd, const struct in_addr *group,
                                          const struct in_addr *iface);
MIO_EXTERN int mio_udp_join_multicast_v6(int fd, const struct in6_addr *group, unsigned ifindex);
MIO_EXTERN int mio_udp_leave_multicast_v6(int fd, const struct in6_addr *group, unsigned ifindex);
MIO_EXTERN int mio_udp_only_v6(int fd); /* 1/0 or -errno */

/* Unix domain sockets (pathname or abstract). Datagram send_to / recv_from use the udp functions. */
MIO_EXTERN int mio_unix_listener_bind(const mio_addr *addr);
MIO_EXTERN int mio_unix_listener_accept(int lfd, mio_addr *peer);
MIO_EXTERN int mio_unix_stream_connect(const mio_addr *addr);
MIO_EXTERN int mio_unix_stream_pair(int fds[2]);
MIO_EXTERN int mio_unix_datagram_bind(const mio_addr *addr);
MIO_EXTERN int mio_unix_datagram_unbound(void);
MIO_EXTERN int mio_unix_datagram_pair(int fds[2]);
MIO_EXTERN int mio_unix_datagram_connect(int fd, const mio_addr *addr);

/* Pipes and fds */
MIO_EXTERN int mio_pipe_new(int fds[2]); /* fds[0] receiver, fds[1] sender; returns 0 or -errno */
MIO_EXTERN int mio_set_nonblocking(int fd, bool on);

MIO_END_DECLS

#endif
