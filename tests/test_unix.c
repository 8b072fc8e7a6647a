/* Unix domain sockets (stream, datagram; pathname, abstract, unnamed) through mio_poll: the Linux
 * behaviours of mio's unix_listener.rs, unix_stream.rs and unix_datagram.rs. */
#include "net_helpers.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

enum { LISTENER = 1, CLIENT = 2, SERVER = 3, OTHER = 4 };

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/mio-unix-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

static mio_addr path_addr(const char *name)
{
    char text[256];
    snprintf(text, sizeof text, "unix:%s/%s", tmpdir, name);
    return net_addr(text);
}

static mio_addr abstract_addr(const char *name)
{
    static unsigned seq;
    char text[256];
    snprintf(text, sizeof text, "unix:@mio-test-%ld-%u-%s", (long)getpid(), seq++, name);
    return net_addr(text);
}

static void unlink_addr(const mio_addr *a)
{
    if (a->u.un.sun_path[0] != '\0')
        unlink(a->u.un.sun_path);
}

/* Listener + connected client + accepted server, both registered RW. */
static void stream_through_listener(struct net_ctx *c, const mio_addr *addr, int *lfd_out,
                                    int *client, int *server)
{
    mio_addr local, peer;
    int lfd = mio_unix_listener_bind(addr);
    assert_true(lfd >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(lfd));
    local = net_local(lfd);
    net_assert_addr_equal(&local, addr);
    assert_int_equal(mio_unix_listener_accept(lfd, NULL), -EAGAIN);
    assert_int_equal(mio_registry_register(c->reg, lfd, LISTENER, MIO_READABLE), 0);
    *client = mio_unix_stream_connect(addr);
    assert_true(*client >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(*client));
    net_wait(c, LISTENER, EV_R);
    *server = mio_unix_listener_accept(lfd, &peer);
    assert_true(*server >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(*server));
    /* The client never bound: its address is the unnamed one. */
    assert_int_equal(peer.u.sa.sa_family, AF_UNIX);
    assert_int_equal(peer.len, sizeof(sa_family_t));
    char text[16];
    assert_int_equal(mio_addr_format(&peer, text, sizeof text), 5);
    assert_string_equal(text, "unix:");
    assert_int_equal(mio_unix_listener_accept(lfd, NULL), -EAGAIN);
    assert_int_equal(mio_registry_register(c->reg, *client, CLIENT, MIO_READABLE | MIO_WRITABLE),
                     0);
    assert_int_equal(mio_registry_register(c->reg, *server, SERVER, MIO_READABLE | MIO_WRITABLE),
                     0);
    net_wait(c, CLIENT, EV_W);
    net_wait(c, SERVER, EV_W);
    assert_int_equal(mio_socket_take_error(*client), 0);
    assert_int_equal(mio_socket_peer_addr(*client, &peer), 0);
    net_assert_addr_equal(&peer, addr);
    *lfd_out = lfd;
}

static void exchange(struct net_ctx *c, int client, int server)
{
    char buf[32];
    assert_int_equal(mio_send(client, "ping", 4), 4);
    net_wait(c, SERVER, EV_R);
    assert_int_equal(mio_peek(server, buf, sizeof buf), 4);
    assert_int_equal(mio_recv(server, buf, sizeof buf), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(mio_recv(server, buf, sizeof buf), -EAGAIN);
    assert_int_equal(mio_send(server, "pong!", 5), 5);
    net_wait(c, CLIENT, EV_R);
    assert_int_equal(mio_recv(client, buf, sizeof buf), 5);
    assert_memory_equal(buf, "pong!", 5);
}

static void test_stream_pathname(void **state)
{
    struct net_ctx c;
    mio_addr a = path_addr("stream.sock");
    int lfd, cfd, sfd;
    char buf[8];
    (void)state;
    net_ctx_init(&c);
    stream_through_listener(&c, &a, &lfd, &cfd, &sfd);
    exchange(&c, cfd, sfd);
    /* Peer shutdown(WR) shows as read-closed, then EOF. */
    assert_int_equal(mio_socket_shutdown(cfd, SHUT_WR), 0);
    net_wait(&c, SERVER, EV_R | EV_RC);
    assert_int_equal(mio_recv(sfd, buf, sizeof buf), 0);
    /* A second bind to a path that exists fails. */
    assert_int_equal(mio_unix_listener_bind(&a), -EADDRINUSE);
    close(sfd);
    close(cfd);
    close(lfd);
    unlink_addr(&a);
    net_ctx_free(&c);
}

static void test_stream_abstract(void **state)
{
    struct net_ctx c;
    mio_addr a = abstract_addr("stream"), local;
    int lfd, cfd, sfd;
    char t1[MIO_ADDR_STRLEN], t2[MIO_ADDR_STRLEN];
    (void)state;
    net_ctx_init(&c);
    stream_through_listener(&c, &a, &lfd, &cfd, &sfd);
    local = net_local(lfd);
    assert_int_equal(local.len, a.len);
    assert_true(mio_addr_format(&local, t1, sizeof t1) > 0);
    assert_true(mio_addr_format(&a, t2, sizeof t2) > 0);
    assert_string_equal(t1, t2);
    assert_memory_equal(t1, "unix:@mio-test-", 15);
    exchange(&c, cfd, sfd);
    /* Abstract names need no unlink: the name disappears with the socket. */
    close(sfd);
    close(cfd);
    close(lfd);
    lfd = mio_unix_listener_bind(&a);
    assert_true(lfd >= 0);
    close(lfd);
    net_ctx_free(&c);
}

static void test_connect_errors(void **state)
{
    mio_addr missing = path_addr("missing.sock"), a = path_addr("dead.sock");
    mio_addr v4 = net_addr("127.0.0.1:1");
    int lfd;
    (void)state;
    assert_int_equal(mio_unix_stream_connect(&missing), -ENOENT);
    /* The socket file stays, but nobody listens: refused. */
    lfd = mio_unix_listener_bind(&a);
    assert_true(lfd >= 0);
    close(lfd);
    assert_int_equal(mio_unix_stream_connect(&a), -ECONNREFUSED);
    unlink_addr(&a);
    assert_int_equal(mio_unix_stream_connect(&v4), -EAFNOSUPPORT);
    assert_int_equal(mio_unix_listener_bind(NULL), -EINVAL);
    assert_int_equal(mio_unix_datagram_bind(&v4), -EAFNOSUPPORT);
}

static void test_connect_backlog_full_is_eagain(void **state)
{
    /* A non-blocking unix connect to a listener whose backlog is full fails with EAGAIN (not
     * EINPROGRESS): mio_unix_stream_connect returns -EAGAIN. The backlog is 1024 (or somaxconn
     * if smaller), so this needs more than 1024 fds. */
    struct rlimit rl;
    mio_addr a = abstract_addr("backlog");
    enum { MAX = 5000 };
    int *fds = calloc(MAX, sizeof *fds), n = 0, lfd, r = 0;
    (void)state;
    assert_non_null(fds);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < MAX + 64) {
        rlim_t want = rl.rlim_max < MAX + 64 ? rl.rlim_max : MAX + 64;
        struct rlimit nl = {want, rl.rlim_max};
        if (want < 1200 || setrlimit(RLIMIT_NOFILE, &nl) != 0) {
            free(fds);
            skip(); /* cannot hold enough fds here */
        }
    }
    lfd = mio_unix_listener_bind(&a);
    assert_true(lfd >= 0);
    while (n < MAX - 1 && (r = mio_unix_stream_connect(&a)) >= 0)
        fds[n++] = r;
    assert_int_equal(r, -EAGAIN);
    assert_true(n >= 1);
    /* Accepting one makes room again. */
    int s = mio_unix_listener_accept(lfd, NULL);
    assert_true(s >= 0);
    close(s);
    r = mio_unix_stream_connect(&a);
    assert_true(r >= 0);
    close(r);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
    free(fds);
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void test_stream_pair_and_sigpipe(void **state)
{
    /* SIGPIPE is at its default disposition: if mio_send raised it, the process would die. */
    struct net_ctx c;
    int p[2];
    char buf[8];
    struct iovec iov = {(void *)"x", 1};
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_unix_stream_pair(p), 0);
    assert_true(mio_test_fd_is_nb_cloexec(p[0]));
    assert_true(mio_test_fd_is_nb_cloexec(p[1]));
    assert_int_equal(mio_registry_register(c.reg, p[0], CLIENT, MIO_READABLE | MIO_WRITABLE), 0);
    net_wait(&c, CLIENT, EV_W);
    assert_int_equal(mio_send(p[1], "ab", 2), 2);
    net_wait(&c, CLIENT, EV_R);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 2);
    close(p[1]);
    net_wait(&c, CLIENT, EV_RC);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 0);
    assert_int_equal(mio_send(p[0], "x", 1), -EPIPE);
    assert_int_equal(mio_sendv(p[0], &iov, 1), -EPIPE);
    close(p[0]);
    assert_int_equal(mio_unix_stream_pair(NULL), -EINVAL);
    net_ctx_free(&c);
}

static void test_stream_shutdown_read_and_both(void **state)
{
    struct net_ctx c;
    int p[2];
    char buf[8];
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_unix_stream_pair(p), 0);
    assert_int_equal(mio_registry_register(c.reg, p[0], CLIENT, MIO_READABLE | MIO_WRITABLE), 0);
    net_wait(&c, CLIENT, EV_W);
    /* Our own SHUT_RD: read-closed and EOF on Linux. */
    assert_int_equal(mio_socket_shutdown(p[0], SHUT_RD), 0);
    net_wait(&c, CLIENT, EV_RC);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 0);
    /* Both ways: write-closed too; writing now fails with EPIPE, no signal. */
    assert_int_equal(mio_socket_shutdown(p[0], SHUT_RDWR), 0);
    net_wait(&c, CLIENT, EV_RC | EV_WC);
    assert_int_equal(mio_send(p[0], "x", 1), -EPIPE);
    net_close2(p);
    net_ctx_free(&c);
}

static void test_deregister_reregister(void **state)
{
    struct net_ctx c;
    int p[2];
    char buf[8];
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_unix_stream_pair(p), 0);
    assert_int_equal(mio_registry_register(c.reg, p[0], CLIENT, MIO_READABLE), 0);
    assert_int_equal(mio_registry_reregister(c.reg, p[0], OTHER, MIO_READABLE), 0);
    assert_int_equal(mio_send(p[1], "a", 1), 1);
    net_wait(&c, OTHER, EV_R);
    assert_int_equal(c.counts[CLIENT], 0);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 1);
    assert_int_equal(mio_registry_deregister(c.reg, p[0]), 0);
    assert_int_equal(mio_send(p[1], "b", 1), 1);
    net_expect_none(&c, OTHER, 200);
    net_close2(p);
    net_ctx_free(&c);
}

static void test_datagram_bound_and_unbound(void **state)
{
    struct net_ctx c;
    mio_addr pa = path_addr("dgram.sock"), aa = abstract_addr("dgram"), from;
    int p, ab, unb;
    char buf[32], text[MIO_ADDR_STRLEN];
    (void)state;
    net_ctx_init(&c);
    p = mio_unix_datagram_bind(&pa);
    ab = mio_unix_datagram_bind(&aa);
    unb = mio_unix_datagram_unbound();
    assert_true(p >= 0 && ab >= 0 && unb >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(p));
    assert_true(mio_test_fd_is_nb_cloexec(ab));
    assert_true(mio_test_fd_is_nb_cloexec(unb));
    assert_int_equal(mio_registry_register(c.reg, p, SERVER, MIO_READABLE), 0);
    assert_int_equal(mio_udp_recv_from(p, buf, sizeof buf, &from), -EAGAIN);

    /* From an unbound socket: the sender is the unnamed address. */
    assert_int_equal(mio_udp_send_to(unb, "anon", 4, &pa), 4);
    net_wait(&c, SERVER, EV_R);
    memset(&from, 0x77, sizeof from);
    assert_int_equal(mio_udp_peek_from(p, buf, sizeof buf, &from), 4);
    assert_int_equal(from.len, sizeof(sa_family_t));
    assert_int_equal(from.u.sa.sa_family, AF_UNIX);
    assert_int_equal(mio_udp_recv_from(p, buf, sizeof buf, &from), 4);
    assert_memory_equal(buf, "anon", 4);
    assert_int_equal(mio_addr_format(&from, text, sizeof text), 5);

    /* From the abstract-bound socket: its name comes back and can be answered. */
    assert_int_equal(mio_udp_send_to(ab, "named", 5, &pa), 5);
    net_wait(&c, SERVER, EV_R);
    assert_int_equal(mio_udp_recv_from(p, buf, sizeof buf, &from), 5);
    net_assert_addr_equal(&from, &aa);
    assert_int_equal(mio_registry_register(c.reg, ab, CLIENT, MIO_READABLE), 0);
    assert_int_equal(mio_udp_send_to(p, "reply", 5, &from), 5);
    net_wait(&c, CLIENT, EV_R);
    assert_int_equal(mio_udp_recv_from(ab, buf, sizeof buf, &from), 5);
    net_assert_addr_equal(&from, &pa);

    /* Connected datagram: plain send/recv. */
    assert_int_equal(mio_unix_datagram_connect(unb, &aa), 0);
    assert_int_equal(mio_send(unb, "conn", 4), 4);
    net_wait(&c, CLIENT, EV_R);
    assert_int_equal(mio_recv(ab, buf, sizeof buf), 4);
    assert_memory_equal(buf, "conn", 4);
    assert_int_equal(mio_unix_datagram_connect(unb, NULL), -EINVAL);

    close(p);
    close(ab);
    close(unb);
    unlink_addr(&pa);
    net_ctx_free(&c);
}

static void test_datagram_pair(void **state)
{
    struct net_ctx c;
    int p[2];
    char buf[16];
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_unix_datagram_pair(p), 0);
    assert_true(mio_test_fd_is_nb_cloexec(p[0]));
    assert_true(mio_test_fd_is_nb_cloexec(p[1]));
    assert_int_equal(mio_registry_register(c.reg, p[1], SERVER, MIO_READABLE), 0);
    assert_int_equal(mio_send(p[0], "one", 3), 3);
    assert_int_equal(mio_send(p[0], "two!", 4), 4);
    net_wait(&c, SERVER, EV_R);
    assert_int_equal(mio_recv(p[1], buf, sizeof buf), 3);
    assert_int_equal(mio_recv(p[1], buf, sizeof buf), 4);
    assert_int_equal(mio_recv(p[1], buf, sizeof buf), -EAGAIN);
    /* Peer gone: writes fail with an errno (ECONNREFUSED for datagrams), never a signal. */
    close(p[1]);
    ssize_t r = mio_send(p[0], "x", 1);
    assert_true(r == -ECONNREFUSED || r == -EPIPE || r == -ENOTCONN);
    close(p[0]);
    net_ctx_free(&c);
}

int main(void)
{
    mio_test_watchdog(180);
    signal(SIGPIPE, SIG_DFL);
    const struct CMUnitTest tests[] = {
        NET_TEST(test_stream_pathname),
        NET_TEST(test_stream_abstract),
        NET_TEST(test_connect_errors),
        NET_TEST(test_connect_backlog_full_is_eagain),
        NET_TEST(test_stream_pair_and_sigpipe),
        NET_TEST(test_stream_shutdown_read_and_both),
        NET_TEST(test_deregister_reregister),
        NET_TEST(test_datagram_bound_and_unbound),
        NET_TEST(test_datagram_pair),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
