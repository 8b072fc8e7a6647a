/* TCP listener and stream on loopback, driven through mio_poll: the Linux behaviours of mio's
 * tcp.rs, tcp_listener.rs, tcp_stream.rs and close_on_drop.rs. */
#include "net_helpers.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>

enum { LISTENER = 1, CLIENT = 2, SERVER = 3, OTHER = 4 };

/* A listener on 127.0.0.1:0 and its resolved address. */
static int listen_v4(mio_addr *bound)
{
    mio_addr a = net_addr("127.0.0.1:0");
    int lfd = mio_tcp_listener_bind(&a);
    assert_true(lfd >= 0);
    *bound = net_local(lfd);
    assert_int_not_equal(bound->u.in.sin_port, 0);
    return lfd;
}

/* Accepts one connection, polling the listener (registered with `token`) until it is there. */
static int accept_one(struct net_ctx *c, int lfd, mio_token token, mio_addr *peer)
{
    unsigned long long end = mio_test_now_ms() + NET_DEADLINE_MS;
    for (;;) {
        int fd = mio_tcp_listener_accept(lfd, peer);
        if (fd >= 0)
            return fd;
        assert_int_equal(fd, -EAGAIN);
        assert_true(mio_test_now_ms() < end);
        net_wait(c, token, EV_R);
    }
}

/* Connected pair through a listener: *client registered RW as CLIENT, *server RW as SERVER. */
static void connected_pair(struct net_ctx *c, int *client, int *server)
{
    mio_addr bound;
    int lfd = listen_v4(&bound);
    assert_int_equal(mio_registry_register(c->reg, lfd, LISTENER, MIO_READABLE), 0);
    *client = mio_tcp_stream_connect(&bound);
    assert_true(*client >= 0);
    *server = accept_one(c, lfd, LISTENER, NULL);
    assert_int_equal(mio_registry_register(c->reg, *client, CLIENT, MIO_READABLE | MIO_WRITABLE), 0);
    assert_int_equal(mio_registry_register(c->reg, *server, SERVER, MIO_READABLE | MIO_WRITABLE), 0);
    net_wait(c, CLIENT, EV_W);
    assert_int_equal(mio_socket_take_error(*client), 0);
    net_wait(c, SERVER, EV_W);
    close(lfd);
}

static void test_fds_are_nonblocking_cloexec(void **state)
{
    struct net_ctx c;
    mio_addr bound, peer;
    int lfd, cfd, sfd;
    (void)state;
    net_ctx_init(&c);
    lfd = listen_v4(&bound);
    assert_true(mio_test_fd_is_nb_cloexec(lfd));
    assert_int_equal(mio_registry_register(c.reg, lfd, LISTENER, MIO_READABLE), 0);
    cfd = mio_tcp_stream_connect(&bound);
    assert_true(cfd >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(cfd));
    sfd = accept_one(&c, lfd, LISTENER, &peer);
    assert_true(mio_test_fd_is_nb_cloexec(sfd));
    /* accept's peer is the client's local address; the server's local is the listener's. */
    mio_addr cl = net_local(cfd), sl = net_local(sfd);
    net_assert_addr_equal(&peer, &cl);
    net_assert_addr_equal(&sl, &bound);
    close(sfd);
    close(cfd);
    close(lfd);
    net_ctx_free(&c);
}

static void test_listener_reuseaddr_and_errors(void **state)
{
    mio_addr bound, un = net_addr("unix:/tmp/x");
    int lfd, again;
    (void)state;
    lfd = listen_v4(&bound);
    int one = 0;
    socklen_t ol = sizeof one;
    assert_int_equal(getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, &ol), 0);
    assert_int_equal(one, 1);
    /* The port is taken by a listening socket: even with SO_REUSEADDR the second bind fails. */
    again = mio_tcp_listener_bind(&bound);
    assert_int_equal(again, -EADDRINUSE);
    close(lfd);
    assert_int_equal(mio_tcp_listener_bind(NULL), -EINVAL);
    assert_int_equal(mio_tcp_listener_bind(&un), -EAFNOSUPPORT);
    assert_int_equal(mio_tcp_stream_connect(&un), -EAFNOSUPPORT);
    assert_int_equal(mio_tcp_stream_connect(NULL), -EINVAL);
}

static void test_accept_until_eagain(void **state)
{
    enum { N = 16 };
    struct net_ctx c;
    mio_addr bound;
    int lfd, clients[N], accepted = 0;
    (void)state;
    net_ctx_init(&c);
    lfd = listen_v4(&bound);
    assert_int_equal(mio_tcp_listener_accept(lfd, NULL), -EAGAIN);
    assert_int_equal(mio_registry_register(c.reg, lfd, LISTENER, MIO_READABLE), 0);
    for (int i = 0; i < N; i++) {
        clients[i] = mio_tcp_stream_connect(&bound);
        assert_true(clients[i] >= 0);
    }
    while (accepted < N) {
        int fd;
        net_wait(&c, LISTENER, EV_R);
        /* Edge-triggered: drain the backlog each time. */
        while ((fd = mio_tcp_listener_accept(lfd, NULL)) >= 0) {
            assert_true(mio_test_fd_is_nb_cloexec(fd));
            close(fd);
            accepted++;
        }
        assert_int_equal(fd, -EAGAIN);
    }
    assert_int_equal(accepted, N);
    /* Drained: no new event without new connections. */
    net_expect_none(&c, LISTENER, 100);
    for (int i = 0; i < N; i++)
        close(clients[i]);
    close(lfd);
    net_ctx_free(&c);
}

static void test_connect_then_writable_and_peer_addr(void **state)
{
    struct net_ctx c;
    mio_addr bound, peer;
    int lfd, cfd, sfd;
    (void)state;
    net_ctx_init(&c);
    lfd = listen_v4(&bound);
    cfd = mio_tcp_stream_connect(&bound);
    assert_true(cfd >= 0);
    assert_int_equal(mio_registry_register(c.reg, cfd, CLIENT, MIO_WRITABLE), 0);
    net_wait(&c, CLIENT, EV_W);
    assert_int_equal(mio_socket_take_error(cfd), 0);
    assert_int_equal(mio_socket_peer_addr(cfd, &peer), 0);
    net_assert_addr_equal(&peer, &bound);
    assert_int_equal(mio_socket_peer_addr(lfd, &peer), -ENOTCONN);
    assert_int_equal(mio_socket_local_addr(cfd, NULL), -EINVAL);
    sfd = mio_tcp_listener_accept(lfd, NULL);
    assert_true(sfd >= 0);
    close(sfd);
    close(cfd);
    close(lfd);
    net_ctx_free(&c);
}

static void test_connect_refused(void **state)
{
    struct net_ctx c;
    mio_addr bound;
    int lfd, cfd;
    unsigned got;
    (void)state;
    net_ctx_init(&c);
    lfd = listen_v4(&bound);
    close(lfd); /* nothing listens on that port now */
    cfd = mio_tcp_stream_connect(&bound);
    if (cfd < 0) {
        assert_int_equal(cfd, -ECONNREFUSED);
    } else {
        assert_int_equal(mio_registry_register(c.reg, cfd, CLIENT, MIO_WRITABLE | MIO_READABLE),
                         0);
        got = net_wait(&c, CLIENT, EV_W);
        assert_true(got & (EV_ERR | EV_WC));
        assert_int_equal(mio_socket_take_error(cfd), -ECONNREFUSED);
        assert_int_equal(mio_socket_take_error(cfd), 0); /* cleared by the first read */
        close(cfd);
    }
    net_ctx_free(&c);
}

static void fill_pattern(unsigned char *p, size_t n, size_t off)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((off + i) * 131u >> 3);
}

/* Moves `total` bytes from `wfd` (token wt) to `rfd` (token rt) in one thread, writing until
 * -EAGAIN and reading until -EAGAIN on each edge. `vectored` uses sendv/recvv. */
static void transfer(struct net_ctx *c, int wfd, mio_token wt, int rfd, mio_token rt, size_t total,
                     bool vectored)
{
    enum { CHUNK = 65536 };
    unsigned char *wbuf = malloc(CHUNK), *rbuf = malloc(CHUNK), *want = malloc(CHUNK);
    size_t written = 0, readn = 0;
    unsigned events = 0;
    unsigned long long end = mio_test_now_ms() + 60000;
    assert_non_null(wbuf);
    assert_non_null(rbuf);
    assert_non_null(want);
    /* The writer's first WRITABLE edge was consumed when the pair was set up. */
    c->seen[wt] |= EV_W;

    while (readn < total) {
        assert_true(mio_test_now_ms() < end);
        net_poll_once(c, 100);
        if (c->seen[wt] & EV_W) {
            net_forget(c, wt);
            while (written < total) {
                size_t n = total - written < CHUNK ? total - written : CHUNK;
                ssize_t r;
                fill_pattern(wbuf, n, written);
                if (vectored) {
                    struct iovec iov[2] = {{wbuf, n / 2}, {wbuf + n / 2, n - n / 2}};
                    r = mio_sendv(wfd, iov, 2);
                } else {
                    r = mio_send(wfd, wbuf, n);
                }
                if (r == -EAGAIN)
                    break;
                assert_true(r > 0);
                written += (size_t)r;
            }
        }
        if (c->seen[rt] & EV_R) {
            net_forget(c, rt);
            events++;
            for (;;) {
                ssize_t r;
                if (vectored) {
                    struct iovec iov[2] = {{rbuf, 100}, {rbuf + 100, CHUNK - 100}};
                    r = mio_recvv(rfd, iov, 2);
                } else {
                    r = mio_recv(rfd, rbuf, CHUNK);
                }
                if (r == -EAGAIN)
                    break;
                assert_true(r > 0);
                fill_pattern(want, (size_t)r, readn);
                assert_memory_equal(rbuf, want, (size_t)r);
                readn += (size_t)r;
            }
        }
    }
    assert_int_equal(written, total);
    assert_int_equal(readn, total);
    /* 16 MiB cannot fit in socket buffers: it took many edges. */
    assert_true(events > 1);
    free(wbuf);
    free(rbuf);
    free(want);
}

static void test_large_transfer_both_ways(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    transfer(&c, cfd, CLIENT, sfd, SERVER, 16u << 20, false);
    net_forget(&c, CLIENT);
    net_forget(&c, SERVER);
    transfer(&c, sfd, SERVER, cfd, CLIENT, 16u << 20, true);
    close(cfd);
    close(sfd);
    net_ctx_free(&c);
}

static void test_peek(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    char buf[16];
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    assert_int_equal(mio_peek(sfd, buf, sizeof buf), -EAGAIN);
    assert_int_equal(mio_send(cfd, "hello", 5), 5);
    net_wait(&c, SERVER, EV_R);
    memset(buf, 0, sizeof buf);
    assert_int_equal(mio_peek(sfd, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    memset(buf, 0, sizeof buf);
    assert_int_equal(mio_peek(sfd, buf, 2), 2); /* still there */
    assert_memory_equal(buf, "he", 2);
    assert_int_equal(mio_recv(sfd, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(mio_recv(sfd, buf, sizeof buf), -EAGAIN);
    close(cfd);
    close(sfd);
    net_ctx_free(&c);
}

static void test_peer_shutdown_write_is_read_closed(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    char buf[8];
    unsigned got;
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    assert_int_equal(mio_socket_shutdown(cfd, SHUT_WR), 0);
    got = net_wait(&c, SERVER, EV_R | EV_RC);
    assert_false(got & EV_WC);
    assert_int_equal(mio_recv(sfd, buf, sizeof buf), 0);
    /* Half-closed: the server can still write to the client. */
    assert_int_equal(mio_send(sfd, "x", 1), 1);
    net_wait(&c, CLIENT, EV_R);
    assert_int_equal(mio_recv(cfd, buf, sizeof buf), 1);
    close(cfd);
    close(sfd);
    net_ctx_free(&c);
}

static void test_shutdown_read_and_both(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    char buf[8];
    unsigned got;
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    net_forget(&c, CLIENT);
    /* Linux reports our own SHUT_RD as read-closed, and reads return EOF. */
    assert_int_equal(mio_socket_shutdown(cfd, SHUT_RD), 0);
    got = net_wait(&c, CLIENT, EV_RC);
    assert_true(got & EV_R);
    assert_int_equal(mio_recv(cfd, buf, sizeof buf), 0);
    /* Both ways shut: also write-closed. */
    assert_int_equal(mio_socket_shutdown(cfd, SHUT_RDWR), 0);
    got = net_wait(&c, CLIENT, EV_RC | EV_WC);
    assert_int_equal(mio_socket_shutdown(cfd, 42), -EINVAL);
    close(cfd);
    close(sfd);
    net_ctx_free(&c);
}

static void test_peer_close_read_closed(void **state)
{
    /* close_on_drop.rs: the server reads what the client wrote, drops it, the client sees EOF. */
    struct net_ctx c;
    int cfd, sfd;
    char buf[16];
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    assert_int_equal(mio_send(cfd, "ping", 4), 4);
    net_wait(&c, SERVER, EV_R);
    assert_int_equal(mio_recv(sfd, buf, sizeof buf), 4);
    assert_int_equal(mio_registry_deregister(c.reg, sfd), 0);
    close(sfd);
    net_wait(&c, CLIENT, EV_R | EV_RC);
    assert_int_equal(mio_recv(cfd, buf, sizeof buf), 0);
    close(cfd);
    net_ctx_free(&c);
}

static void test_rst_error_and_both_closed(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    char buf[8];
    unsigned got;
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    net_forget(&c, CLIENT);
    assert_int_equal(mio_registry_deregister(c.reg, sfd), 0);
    net_set_linger0(sfd);
    close(sfd); /* RST */
    got = net_wait(&c, CLIENT, EV_RC | EV_WC);
    assert_true(got & EV_ERR);
    assert_int_equal(mio_socket_take_error(cfd), -ECONNRESET);
    assert_int_equal(mio_recv(cfd, buf, sizeof buf), 0);
    close(cfd);
    net_ctx_free(&c);
}

static void test_write_after_reset(void **state)
{
    /* SIGPIPE is at its default disposition (main): a raised SIGPIPE would kill the test. */
    struct net_ctx c;
    int cfd, sfd;
    ssize_t r = 0;
    char buf[1024];
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    net_forget(&c, CLIENT);
    assert_int_equal(mio_registry_deregister(c.reg, sfd), 0);
    net_set_linger0(sfd);
    close(sfd);
    net_wait(&c, CLIENT, EV_RC);
    memset(buf, 'z', sizeof buf);
    for (int i = 0; i < 100 && r >= 0; i++)
        r = mio_send(cfd, buf, sizeof buf);
    assert_true(r == -EPIPE || r == -ECONNRESET);
    /* And once the error was reported, further writes are EPIPE (never a signal). */
    assert_int_equal(mio_send(cfd, buf, sizeof buf), -EPIPE);
    struct iovec iov = {buf, sizeof buf};
    assert_int_equal(mio_sendv(cfd, &iov, 1), -EPIPE);
    close(cfd);
    net_ctx_free(&c);
}

static void test_write_after_peer_close(void **state)
{
    /* Peer closed normally: the first write may succeed (and draws an RST), later ones fail. */
    struct net_ctx c;
    int cfd, sfd;
    ssize_t r = 0;
    char buf[1024] = {0};
    unsigned long long end;
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    assert_int_equal(mio_registry_deregister(c.reg, sfd), 0);
    close(sfd);
    net_wait(&c, CLIENT, EV_RC);
    end = mio_test_now_ms() + NET_DEADLINE_MS;
    while (r >= 0 && mio_test_now_ms() < end) {
        r = mio_send(cfd, buf, sizeof buf);
        if (r >= 0)
            net_sleep_ms(5);
    }
    assert_true(r == -EPIPE || r == -ECONNRESET);
    close(cfd);
    net_ctx_free(&c);
}

static void test_no_events_after_deregister(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    assert_int_equal(mio_registry_deregister(c.reg, sfd), 0);
    assert_int_equal(mio_send(cfd, "data", 4), 4);
    net_expect_none(&c, SERVER, 200);
    assert_int_equal(mio_registry_deregister(c.reg, sfd), -ENOENT);
    close(cfd);
    close(sfd);
    net_ctx_free(&c);
}

static void test_reregister_switches_token(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    char buf[8];
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    assert_int_equal(mio_registry_reregister(c.reg, sfd, OTHER, MIO_READABLE), 0);
    net_forget(&c, SERVER);
    assert_int_equal(mio_send(cfd, "data", 4), 4);
    net_wait(&c, OTHER, EV_R);
    assert_int_equal(c.counts[SERVER], 0);
    assert_int_equal(mio_recv(sfd, buf, sizeof buf), 4);
    /* Interest was replaced too: WRITABLE is gone, so no writable edge arrives for OTHER. */
    net_expect_none(&c, OTHER, 100);
    close(cfd);
    close(sfd);
    net_ctx_free(&c);
}

static void test_options(void **state)
{
    struct net_ctx c;
    int cfd, sfd;
    (void)state;
    net_ctx_init(&c);
    connected_pair(&c, &cfd, &sfd);
    assert_int_equal(mio_tcp_set_nodelay(cfd, true), 0);
    assert_int_equal(mio_tcp_nodelay(cfd), 1);
    assert_int_equal(mio_tcp_set_nodelay(cfd, false), 0);
    assert_int_equal(mio_tcp_nodelay(cfd), 0);
    assert_int_equal(mio_socket_set_ttl(cfd, 42), 0);
    assert_int_equal(mio_socket_ttl(cfd), 42);
    assert_int_equal(mio_socket_set_ttl(cfd, 256), -EINVAL);
    assert_int_equal(mio_socket_take_error(cfd), 0);
    assert_int_equal(mio_tcp_nodelay(-1), -EBADF);
    assert_int_equal(mio_socket_ttl(-1), -EBADF);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(mio_tcp_nodelay(p[0]), -ENOTSOCK);
    net_close2(p);
    close(cfd);
    close(sfd);
    net_ctx_free(&c);
}

static void test_ipv6_loopback(void **state)
{
    struct net_ctx c;
    mio_addr a = net_addr("[::1]:0"), bound, peer;
    int lfd, cfd, sfd;
    char text[MIO_ADDR_STRLEN], buf[8];
    (void)state;
    lfd = mio_tcp_listener_bind(&a);
    if (lfd == -EADDRNOTAVAIL || lfd == -EAFNOSUPPORT)
        skip(); /* no IPv6 loopback in this environment */
    assert_true(lfd >= 0);
    net_ctx_init(&c);
    bound = net_local(lfd);
    assert_int_equal(bound.u.sa.sa_family, AF_INET6);
    assert_true(mio_addr_format(&bound, text, sizeof text) > 0);
    assert_memory_equal(text, "[::1]:", 6);
    assert_int_equal(mio_registry_register(c.reg, lfd, LISTENER, MIO_READABLE), 0);
    cfd = mio_tcp_stream_connect(&bound);
    assert_true(cfd >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(cfd));
    sfd = accept_one(&c, lfd, LISTENER, &peer);
    assert_int_equal(peer.u.sa.sa_family, AF_INET6);
    assert_int_equal(mio_registry_register(c.reg, cfd, CLIENT, MIO_READABLE | MIO_WRITABLE), 0);
    net_wait(&c, CLIENT, EV_W);
    assert_int_equal(mio_socket_take_error(cfd), 0);
    assert_int_equal(mio_socket_set_ttl(cfd, 9), 0); /* IPv6: unicast hop limit */
    assert_int_equal(mio_socket_ttl(cfd), 9);
    assert_int_equal(mio_send(cfd, "v6", 2), 2);
    assert_int_equal(mio_registry_register(c.reg, sfd, SERVER, MIO_READABLE), 0);
    net_wait(&c, SERVER, EV_R);
    assert_int_equal(mio_recv(sfd, buf, sizeof buf), 2);
    assert_memory_equal(buf, "v6", 2);
    close(sfd);
    close(cfd);
    close(lfd);
    net_ctx_free(&c);
}

static void test_kernel_addresses_round_trip(void **state)
{
    mio_addr bound, back;
    char text[MIO_ADDR_STRLEN];
    int lfd;
    (void)state;
    lfd = listen_v4(&bound);
    assert_true(mio_addr_format(&bound, text, sizeof text) > 0);
    assert_int_equal(mio_addr_parse(text, &back), 0);
    assert_int_equal(back.len, bound.len);
    assert_memory_equal(&back.u, &bound.u, bound.len);
    close(lfd);
}

int main(void)
{
    mio_test_watchdog(240);
    signal(SIGPIPE, SIG_DFL); /* a stray SIGPIPE must kill us, so the tests can see it */
    const struct CMUnitTest tests[] = {
        NET_TEST(test_fds_are_nonblocking_cloexec),
        NET_TEST(test_listener_reuseaddr_and_errors),
        NET_TEST(test_accept_until_eagain),
        NET_TEST(test_connect_then_writable_and_peer_addr),
        NET_TEST(test_connect_refused),
        NET_TEST(test_large_transfer_both_ways),
        NET_TEST(test_peek),
        NET_TEST(test_peer_shutdown_write_is_read_closed),
        NET_TEST(test_shutdown_read_and_both),
        NET_TEST(test_peer_close_read_closed),
        NET_TEST(test_rst_error_and_both_closed),
        NET_TEST(test_write_after_reset),
        NET_TEST(test_write_after_peer_close),
        NET_TEST(test_no_events_after_deregister),
        NET_TEST(test_reregister_switches_token),
        NET_TEST(test_options),
        NET_TEST(test_ipv6_loopback),
        NET_TEST(test_kernel_addresses_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
