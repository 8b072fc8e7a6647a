/* Addresses and sockets as plain fds.
 *
 * Every fd created here is O_NONBLOCK | O_CLOEXEC and belongs to the caller, who registers it with
 * a registry and closes it. Functions that create an fd return it (>= 0) or a negative errno.
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

/* Parses text into *out. Accepted forms (no DNS, no whitespace, the whole text must match):
 *   "a.b.c.d:port"           IPv4 dotted quad (no leading zeros in an octet)
 *   "[v6]:port"              IPv6 in brackets; "[v6%scope]:port" with an interface name or index,
 *                            only for link-local (fe80::/10) and multicast addresses
 *   "unix:/path", "unix:rel" pathname (at most sizeof(sun_path) - 1 = 107 bytes)
 *   "unix:@name"             abstract name (1 to 107 bytes; \xHH escapes any byte, e.g. \x00)
 *   "unix:"                  the unnamed unix address (what an unbound peer formats as)
 * port is 1 to 5 decimal digits, at most 65535. Returns 0, or -EINVAL for NULL or malformed text;
 * on error *out is not written at all. Thread-safe (a scope name is looked up with
 * if_nametoindex). */
MIO_EXTERN int mio_addr_parse(const char *text, mio_addr *out);
/* Writes the text form of addr, the inverse of mio_addr_parse: parse -> format -> parse gives the
 * same address. IPv6 scopes print as the interface name when one maps back to the same index,
 * else as the number; abstract names escape bytes < 0x20, 0x7f and '\\' as \xHH.
 * snprintf semantics: returns the length of the full text (without the NUL) even when len is too
 * small, always NUL-terminates when len > 0; buf may be NULL when len is 0. MIO_ADDR_STRLEN is
 * always enough. -EINVAL for NULL, an unknown family, or a len too short for the family.
 * Thread-safe. */
MIO_EXTERN int mio_addr_format(const mio_addr *addr, char *buf, size_t len);

/* ---- TCP ---- */
/* Creates an IPv4/IPv6 listening socket bound to addr (SO_REUSEADDR set, listen backlog 1024,
 * capped by the kernel's somaxconn). Port 0 picks a free port: read it with
 * mio_socket_local_addr. Returns the fd, -EINVAL (NULL or malformed addr), -EAFNOSUPPORT (a unix
 * address: use mio_unix_listener_bind), or -errno from socket/bind/listen (-EADDRINUSE, ...). */
MIO_EXTERN int mio_tcp_listener_bind(const mio_addr *addr);
/* accept4(NONBLOCK|CLOEXEC), retried on EINTR. Returns the new connection's fd (the caller owns
 * it), -EAGAIN when none is pending (edge-triggered: accept until -EAGAIN on each readable event),
 * or -errno (-ECONNABORTED, -EMFILE, ...). peer may be NULL; else it receives the peer address. */
MIO_EXTERN int mio_tcp_listener_accept(int lfd, mio_addr *peer);
/* Starts a non-blocking connect to addr (EINPROGRESS is swallowed) and returns the fd at once.
 * Completion is a WRITABLE event: then mio_socket_take_error says whether it failed (e.g.
 * -ECONNREFUSED) and mio_socket_peer_addr confirms the connection. A connect the kernel refuses
 * on the spot returns -errno (e.g. -ECONNREFUSED) and no fd. -EINVAL / -EAFNOSUPPORT as for
 * mio_tcp_listener_bind. */
MIO_EXTERN int mio_tcp_stream_connect(const mio_addr *addr);
/* TCP_NODELAY on or off. 0 or -errno (-ENOTSOCK, -ENOPROTOOPT for a non-TCP socket, -EBADF). */
MIO_EXTERN int mio_tcp_set_nodelay(int fd, bool on);
MIO_EXTERN int mio_tcp_nodelay(int fd); /* 1/0 or -errno */

/* ---- Any socket ---- */
/* IP_TTL for IPv4 sockets, IPV6_UNICAST_HOPS for IPv6 ones (1..255; > 255 -> -EINVAL).
 * 0 or -errno; -EAFNOSUPPORT for other families. */
MIO_EXTERN int mio_socket_set_ttl(int fd, unsigned ttl);
MIO_EXTERN int mio_socket_ttl(int fd); /* the value or -errno */
/* Reads and clears SO_ERROR: 0 when there is no pending error, else the -errno it held (a second
 * call returns 0). Use after a WRITABLE or error event on a connecting socket. */
MIO_EXTERN int mio_socket_take_error(int fd);
/* getsockname / getpeername into *out (out must not be NULL: -EINVAL). An unbound unix peer
 * comes back as the unnamed address ("unix:"). 0 or -errno (-ENOTCONN for an unconnected peer). */
MIO_EXTERN int mio_socket_local_addr(int fd, mio_addr *out);
MIO_EXTERN int mio_socket_peer_addr(int fd, mio_addr *out);
/* shutdown(2): SHUT_RD / SHUT_WR / SHUT_RDWR. The peer sees SHUT_WR as read-closed then EOF.
 * 0 or -errno (-ENOTCONN, -EINVAL for a bad `how`). */
MIO_EXTERN int mio_socket_shutdown(int fd, int how);

/* ---- I/O on any fd ----
 * Each returns a byte count (0 from mio_recv/mio_recvv means EOF) or -errno: -EAGAIN when the fd
 * is not ready (EWOULDBLOCK is reported as -EAGAIN), -EPIPE / -ECONNRESET on a broken connection.
 * None raises SIGPIPE. Sockets use send/sendmsg with MSG_NOSIGNAL (one syscall). On a fd that is
 * not a socket (pipe, tty, ...) the first syscall fails with ENOTSOCK and the call falls back to
 * write/writev with SIGPIPE blocked in the calling thread; a SIGPIPE that write raised is consumed
 * (only if SIGPIPE was not already pending before the call: that one is left alone), the thread's
 * mask is restored, and -EPIPE is returned. mio_recv/mio_recvv fall back to read/readv.
 * Thread-safe as the syscalls are; the SIGPIPE handling touches only the calling thread's mask. */
MIO_EXTERN ssize_t mio_send(int fd, const void *buf, size_t len);
/* Gathers iovcnt buffers (sendmsg with MSG_NOSIGNAL; writev for non-sockets). iovcnt < 0 or
 * > IOV_MAX fails (-EINVAL / -EMSGSIZE). */
MIO_EXTERN ssize_t mio_sendv(int fd, const struct iovec *iov, int iovcnt);
MIO_EXTERN ssize_t mio_recv(int fd, void *buf, size_t len);
MIO_EXTERN ssize_t mio_recvv(int fd, const struct iovec *iov, int iovcnt);
/* recv with MSG_PEEK: the bytes stay queued. Sockets only (-ENOTSOCK for a pipe). */
MIO_EXTERN ssize_t mio_peek(int fd, void *buf, size_t len);

/* ---- UDP ---- */
/* Creates an IPv4/IPv6 datagram socket bound to addr (port 0 = any). Returns the fd, -EINVAL,
 * -EAFNOSUPPORT (unix: use mio_unix_datagram_bind) or -errno. */
MIO_EXTERN int mio_udp_bind(const mio_addr *addr);
/* connect(2) on a datagram socket: fixes the peer for mio_send/mio_recv/mio_peek and filters what
 * is received. Also serves unix datagram sockets. 0, -EINVAL (NULL/malformed addr) or -errno. */
MIO_EXTERN int mio_udp_connect(int fd, const mio_addr *addr);
/* sendto with MSG_NOSIGNAL: the byte count, -EAGAIN, -EINVAL (to NULL or malformed), -errno.
 * Works for unix datagram sockets too (to = a unix address). */
MIO_EXTERN ssize_t mio_udp_send_to(int fd, const void *buf, size_t len, const mio_addr *to);
/* recvfrom: one datagram (truncated to len), its sender in *from (may be NULL; an unbound unix
 * sender is the unnamed address), -EAGAIN when none is queued, or -errno (e.g. -ECONNREFUSED
 * reported by ICMP for an earlier send). */
MIO_EXTERN ssize_t mio_udp_recv_from(int fd, void *buf, size_t len, mio_addr *from);
/* As mio_udp_recv_from, but the datagram stays queued (MSG_PEEK). */
MIO_EXTERN ssize_t mio_udp_peek_from(int fd, void *buf, size_t len, mio_addr *from);
/* Options. Setters return 0 or -errno; getters 1/0 (booleans) or the value, or -errno (e.g. an
 * IPv6 option on an IPv4 socket fails with -EOPNOTSUPP). TTL setters reject > 255 (-EINVAL). */
MIO_EXTERN int mio_udp_set_broadcast(int fd, bool on); /* SO_BROADCAST */
MIO_EXTERN int mio_udp_broadcast(int fd);
MIO_EXTERN int mio_udp_set_multicast_loop_v4(int fd, bool on); /* IP_MULTICAST_LOOP */
MIO_EXTERN int mio_udp_multicast_loop_v4(int fd);
MIO_EXTERN int mio_udp_set_multicast_ttl_v4(int fd, unsigned ttl); /* IP_MULTICAST_TTL */
MIO_EXTERN int mio_udp_multicast_ttl_v4(int fd);
MIO_EXTERN int mio_udp_set_multicast_loop_v6(int fd, bool on); /* IPV6_MULTICAST_LOOP */
MIO_EXTERN int mio_udp_multicast_loop_v6(int fd);
/* IP_ADD_MEMBERSHIP / IP_DROP_MEMBERSHIP for `group` on the interface with address `iface`
 * (NULL = INADDR_ANY, the kernel picks). 0, -EINVAL (group NULL) or -errno (-EADDRINUSE when
 * already joined, -EADDRNOTAVAIL when leaving a group not joined, -ENODEV without a route). */
MIO_EXTERN int mio_udp_join_multicast_v4(int fd, const struct in_addr *group,
                                         const struct in_addr *iface);
MIO_EXTERN int mio_udp_leave_multicast_v4(int fd, const struct in_addr *group,
                                          const struct in_addr *iface);
/* IPV6_ADD_MEMBERSHIP / IPV6_DROP_MEMBERSHIP on interface index `ifindex` (0 = kernel's choice).
 * 0, -EINVAL (group NULL) or -errno. */
MIO_EXTERN int mio_udp_join_multicast_v6(int fd, const struct in6_addr *group, unsigned ifindex);
MIO_EXTERN int mio_udp_leave_multicast_v6(int fd, const struct in6_addr *group, unsigned ifindex);
/* IPV6_V6ONLY of an IPv6 socket: 1/0 or -errno. */
MIO_EXTERN int mio_udp_only_v6(int fd);

/* ---- Unix domain sockets (pathname or abstract) ----
 * Addresses come from mio_addr_parse("unix:/path") or ("unix:@name"). A pathname listener leaves
 * its socket file behind when closed: unlink it yourself; abstract names vanish with the socket.
 * Non-unix addresses give -EAFNOSUPPORT, NULL or malformed ones -EINVAL.
 * Datagram send_to / recv_from / peek_from use the mio_udp_ functions above. */
/* A listening stream socket (backlog 1024). The fd or -errno (-EADDRINUSE when the path exists). */
MIO_EXTERN int mio_unix_listener_bind(const mio_addr *addr);
/* As mio_tcp_listener_accept; an unbound client's address is the unnamed one ("unix:"). */
MIO_EXTERN int mio_unix_listener_accept(int lfd, mio_addr *peer);
/* Connects a stream socket. Unix connects complete at once, so the returned fd is connected;
 * when the listener's backlog is full the kernel answers EAGAIN and this returns -EAGAIN (no fd:
 * retry later). -ENOENT (no such path), -ECONNREFUSED (nobody listens), other -errno. */
MIO_EXTERN int mio_unix_stream_connect(const mio_addr *addr);
/* socketpair(AF_UNIX, SOCK_STREAM): two connected fds in fds[0], fds[1]. 0 or -errno. */
MIO_EXTERN int mio_unix_stream_pair(int fds[2]);
/* A datagram socket bound to addr. The fd or -errno. */
MIO_EXTERN int mio_unix_datagram_bind(const mio_addr *addr);
/* An unbound datagram socket (its datagrams arrive from the unnamed address). The fd or -errno. */
MIO_EXTERN int mio_unix_datagram_unbound(void);
/* socketpair(AF_UNIX, SOCK_DGRAM). 0 or -errno. */
MIO_EXTERN int mio_unix_datagram_pair(int fds[2]);
/* connect(2) a datagram socket to addr, for mio_send / mio_recv. 0 or -errno. */
MIO_EXTERN int mio_unix_datagram_connect(int fd, const mio_addr *addr);

/* ---- Pipes and fds ---- */
/* pipe2(O_NONBLOCK | O_CLOEXEC): fds[0] is the receiving end, fds[1] the sending end. Closing the
 * sender shows on the receiver as read-closed; closing the receiver shows on the sender as an
 * error / write-closed event, and mio_send then returns -EPIPE without a signal. 0 or -errno. */
MIO_EXTERN int mio_pipe_new(int fds[2]);
/* Sets or clears O_NONBLOCK on any fd (no syscall beyond F_GETFL when it already matches).
 * 0 or -errno. Mind that the flag belongs to the open file description, shared by dup'd fds. */
MIO_EXTERN int mio_set_nonblocking(int fd, bool on);

/* ---- Service managers: systemd's socket activation and readiness protocols ---- */
/* The first inherited fd of socket activation: the fds passed are 3, 4, ... */
#define MIO_SD_LISTEN_FDS_START 3
/* One inherited fd and its name (LISTEN_FDNAMES, FileDescriptorName= in a .socket unit; systemd
 * caps a name at 255 characters). */
typedef struct mio_listen_fd {
    int fd;
    char name[256]; /* "unknown" when LISTEN_FDNAMES is not set, as libsystemd says */
} mio_listen_fd;
/* The fds a service manager (systemd, systemd-socket-activate, a server restarting itself) passed
 * to this process with the LISTEN_FDS protocol, without libsystemd: when LISTEN_PID is this
 * process's pid, LISTEN_FDS=n fds start at MIO_SD_LISTEN_FDS_START; each is made FD_CLOEXEC (so
 * a program this one runs does not inherit it by accident) and listed in out (the first cap of
 * them; out may be NULL when cap is 0) with its name from LISTEN_FDNAMES (colon-separated, one
 * per fd). With unset_env the three variables are removed from the environment whatever the
 * result, so a child this process starts does not take the fds for its own. Returns n (it may
 * exceed cap), 0 when the variables are not set or LISTEN_PID names another process (the fds
 * were meant for a parent), or -errno: -EINVAL (LISTEN_PID or LISTEN_FDS not a decimal number,
 * too many fds, LISTEN_FDNAMES not one name per fd, or out NULL with cap > 0), -ENAMETOOLONG (a
 * name over 255 characters), -EBADF (one of the fds is not open). Reads (and with unset_env
 * changes) the environment: call it from the main thread before other threads run. */
MIO_EXTERN int mio_sd_listen_fds(bool unset_env, mio_listen_fd *out, unsigned cap);
/* Sends state ("READY=1", "STOPPING=1", "MAINPID=1234\nREADY=1", "STATUS=...") to the service
 * manager as one datagram on the Unix socket named by NOTIFY_SOCKET ("/path" or "@abstract"),
 * as sd_notify(3) does, without libsystemd. Returns 1 (sent), 0 (NOTIFY_SOCKET not set: no
 * manager listens), -EINVAL (NULL or empty state; a socket name too long or not a path or
 * abstract name), -errno from the send (-ECONNREFUSED: nobody bound the name any more). Any
 * thread, provided no thread changes the environment meanwhile. */
MIO_EXTERN int mio_sd_notify(const char *state);

MIO_END_DECLS

#endif
