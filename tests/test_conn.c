/* mio_conn on a reactor driven by this thread, peers are plain loopback sockets (some driven by
 * helper threads). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>
#include "helpers.h"
#include "internal/reactor_int.h"

#define TABLE_LEN 1000003u /* prime, so the pattern does not line up with buffer sizes */
static unsigned char *table;

/* Copies pattern bytes [off, off+len) into buf. */
static void pattern_fill(unsigned char *buf, size_t off, size_t len)
{
    while (len > 0) {
        size_t at = off % TABLE_LEN, n = TABLE_LEN - at;

        if (n > len)
            n = len;
        memcpy(buf, table + at, n);
        buf += n;
        off += n;
        len -= n;
    }
}

static bool pattern_check(const unsigned char *buf, size_t off, size_t len)
{
    while (len > 0) {
        size_t at = off % TABLE_LEN, n = TABLE_LEN - at;

        if (n > len)
            n = len;
        if (memcmp(buf, table + at, n) != 0)
            return false;
        buf += n;
        off += n;
        len -= n;
    }
    return true;
}

/* ---- fixture: a listener, pairs of (client fd, server fd) ---- */

static int listener_fd = -1;
static mio_addr listen_addr;

static void set_blocking(int fd)
{
    assert_int_equal(mio_set_nonblocking(fd, false), 0);
}

/* Returns a connected pair: *cli (blocking) and *srv (non-blocking, for mio_conn_open). */
static void make_pair(int *cli, int *srv)
{
    unsigned long long until = mio_test_now_ms() + 10000;
    int c = mio_tcp_stream_connect(&listen_addr), s;

    assert_true(c >= 0);
    do {
        s = mio_tcp_listener_accept(listener_fd, NULL);
        if (s == -EAGAIN)
            usleep(1000);
    } while (s == -EAGAIN && mio_test_now_ms() < until);
    assert_true(s >= 0);
    set_blocking(c);
    *cli = c;
    *srv = s;
}

struct tconn {
    mio_conn *c;
    int closes, reason, eofs, drains, trips;
    size_t got;
    bool reads_after_close;
    bool closed_by_user;
    bool echo;
    bool check_pattern; /* echo checker: received bytes follow the pattern */
    bool bad_data;
    struct tconn *close_other; /* on first read: close self and this one */
    size_t max_pending_at_read;
};

static void t_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct tconn *t = arg;

    if (t->closed_by_user || t->closes > 0)
        t->reads_after_close = true;
    if (mio_conn_pending(c) > t->max_pending_at_read)
        t->max_pending_at_read = mio_conn_pending(c);
    if (len == 0) {
        t->eofs++;
        return;
    }
    if (t->check_pattern && !pattern_check(data, t->got, len))
        t->bad_data = true;
    t->got += len;
    if (t->echo) {
        size_t high = 128 * 1024;

        assert_int_equal(mio_conn_write(c, data, len), 0);
        if (mio_conn_pending(c) > high)
            t->trips++;
    }
    if (t->close_other != NULL) {
        struct tconn *o = t->close_other;

        t->close_other = NULL;
        t->closed_by_user = true;
        mio_conn_close(c);
        o->closed_by_user = true;
        mio_conn_close(o->c);
    }
}

static void t_on_close(mio_conn *c, int reason, void *arg)
{
    struct tconn *t = arg;

    t->closes++;
    t->reason = reason;
    /* inside on_close every call is harmless */
    assert_int_equal(mio_conn_write(c, "x", 1), -EPIPE);
    mio_conn_close(c);
}

static void t_on_drain(mio_conn *c, void *arg)
{
    struct tconn *t = arg;

    assert_true(mio_conn_pending(c) <= 32 * 1024);
    t->drains++;
}

static const mio_conn_ops t_ops = {t_on_read, t_on_close, t_on_drain};

static mio_reactor *r;
static int fd_base;

static int setup(void **state)
{
    (void)state;
    fd_base = mio_test_fd_count();
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &listen_addr), 0);
    listener_fd = mio_tcp_listener_bind(&listen_addr);
    assert_true(listener_fd >= 0);
    assert_int_equal(mio_socket_local_addr(listener_fd, &listen_addr), 0);
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mio_reactor_free(r);
    close(listener_fd);
    assert_int_equal(mio_test_fd_count(), fd_base);
    return 0;
}

static void run_for(unsigned ms)
{
    unsigned long long until = mio_test_now_ms() + ms;

    while (mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
}

static bool is_closed(struct tconn *t)
{
    return t->closes > 0;
}

static void run_until_closed(struct tconn *t)
{
    unsigned long long until = mio_test_now_ms() + 90000;

    while (!is_closed(t) && mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 10) >= 0);
    assert_int_equal(t->closes, 1);
}

/* ---- 64 MiB with a small send buffer, complete and in order ---- */

#define BIG (64u * 1024u * 1024u)

struct reader {
    int fd;
    size_t got;
    bool bad;
    size_t delay_every; /* sleep 1 ms after this many bytes (0: never) */
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    unsigned char *buf = malloc(65536);
    size_t since = 0;

    for (;;) {
        ssize_t n = recv(rd->fd, buf, rd->delay_every ? 4096 : 65536, 0);

        if (n <= 0)
            break;
        if (!pattern_check(buf, rd->got, (size_t)n))
            rd->bad = true;
        rd->got += (size_t)n;
        since += (size_t)n;
        if (rd->delay_every && since >= rd->delay_every) {
            since = 0;
            usleep(1000);
        }
    }
    free(buf);
    return NULL;
}

static void test_big_write(void **state)
{
    struct tconn t = {0};
    struct reader rd = {0};
    pthread_t th;
    int cli, srv, small = 128 * 1024;
    unsigned char *big = malloc(BIG);
    size_t off = 0;

    (void)state;
    assert_non_null(big);
    pattern_fill(big, 0, BIG);
    make_pair(&cli, &srv);
    assert_int_equal(setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    assert_int_equal(mio_conn_set_watermarks(t.c, 0, SIZE_MAX), 0);
    /* several writes of odd sizes, then one huge one: order across queue chunks matters */
    for (size_t step = 1; off + step < BIG / 2; step = step * 3 + 7) {
        assert_int_equal(mio_conn_write(t.c, big + off, step), 0);
        off += step;
    }
    assert_int_equal(mio_conn_write(t.c, big + off, BIG - off), 0);
    assert_true(mio_conn_pending(t.c) > 0);
    rd.fd = cli;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &rd), 0);
    mio_conn_close(t.c); /* close after flush */
    run_until_closed(&t);
    assert_int_equal(t.reason, 0);
    pthread_join(th, NULL);
    assert_false(rd.bad);
    assert_int_equal(rd.got, BIG);
    close(cli);
    free(big);
}

/* ---- slow reader: high mark trips, low mark resumes, on_drain once per cycle ---- */

struct sender {
    int fd;
    size_t total;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    unsigned char *buf = malloc(65536);
    size_t off = 0;

    while (off < s->total) {
        size_t n = s->total - off < 65536 ? s->total - off : 65536;
        ssize_t k;

        pattern_fill(buf, off, n);
        k = send(s->fd, buf, n, MSG_NOSIGNAL);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    free(buf);
    return NULL;
}

static void test_watermarks(void **state)
{
    struct tconn t = {.echo = true, .check_pattern = true};
    struct reader rd = {.delay_every = 16 * 1024};
    struct sender sd = {.total = 4u * 1024u * 1024u};
    pthread_t th_r, th_s;
    int cli, srv, small = 16 * 1024;

    (void)state;
    make_pair(&cli, &srv);
    /* small kernel buffers so the echo queue, not the kernel, absorbs the slow reader */
    assert_int_equal(setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(setsockopt(cli, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    assert_int_equal(mio_conn_set_watermarks(t.c, 64 * 1024, 32 * 1024), -EINVAL);
    assert_int_equal(mio_conn_set_watermarks(t.c, 32 * 1024, 128 * 1024), 0);
    rd.fd = cli;
    sd.fd = cli;
    assert_int_equal(pthread_create(&th_r, NULL, reader_main, &rd), 0);
    assert_int_equal(pthread_create(&th_s, NULL, sender_main, &sd), 0);
    {
        unsigned long long until = mio_test_now_ms() + 60000;

        while (t.got < sd.total && mio_test_now_ms() < until)
            assert_true(mio_reactor_run_once(r, 10) >= 0);
    }
    assert_int_equal(t.got, sd.total);
    assert_false(t.bad_data);
    /* reading stopped above the high mark: no on_read ever saw more than high pending */
    assert_true(t.max_pending_at_read <= 128 * 1024);
    assert_true(t.trips >= 1);
    mio_conn_close(t.c);
    run_until_closed(&t);
    assert_int_equal(t.reason, 0);
    /* every trip was followed by exactly one drain (the last one may end with the close) */
    assert_true(t.drains == t.trips || t.drains + 1 == t.trips);
    pthread_join(th_s, NULL);
    pthread_join(th_r, NULL);
    assert_int_equal(rd.got, sd.total);
    assert_false(rd.bad);
    close(cli);
}

/* ---- half-close ---- */

static void test_half_close(void **state)
{
    struct tconn t = {0};
    int cli, srv;
    char buf[16];

    (void)state;
    make_pair(&cli, &srv);
    /* data and FIN before the conn exists: the first event carries both */
    assert_int_equal(send(cli, "hello", 5, 0), 5);
    assert_int_equal(shutdown(cli, SHUT_WR), 0);
    usleep(20000);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    {
        unsigned long long until = mio_test_now_ms() + 10000;

        while (t.eofs == 0 && mio_test_now_ms() < until)
            assert_true(mio_reactor_run_once(r, 10) >= 0);
    }
    assert_int_equal(t.got, 5);
    assert_int_equal(t.eofs, 1);
    run_for(50);
    assert_int_equal(t.eofs, 1);
    /* still writable */
    assert_int_equal(mio_conn_write(t.c, "bye", 3), 0);
    assert_int_equal(recv(cli, buf, sizeof(buf), 0), 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(mio_conn_shutdown(t.c), 0);
    assert_int_equal(recv(cli, buf, sizeof(buf), 0), 0);
    assert_int_equal(mio_conn_write(t.c, "z", 1), -EPIPE);
    assert_int_equal(t.closes, 0);
    mio_conn_close(t.c);
    /* on_close never runs inside the call: it waits for the reactor's next iteration */
    assert_int_equal(t.closes, 0);
    assert_int_equal(mio_conn_write(t.c, "z", 1), -EPIPE);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(t.closes, 1);
    assert_int_equal(t.reason, 0);
    assert_int_equal(t.eofs, 1);
    close(cli);
}

/* ---- RST while writing: -ECONNRESET / -EPIPE, no SIGPIPE ---- */

static void rst_close(int fd)
{
    struct linger lg = {1, 0};

    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

static void test_rst_during_write(void **state)
{
    struct tconn t = {0}, u = {0};
    int cli, srv, small = 4096, err;
    unsigned char *buf = calloc(1, 8 << 20);

    (void)state;
    assert_ptr_not_equal(signal(SIGPIPE, SIG_DFL), SIG_ERR);
    /* queued data, peer resets: the reactor reports it */
    make_pair(&cli, &srv);
    assert_int_equal(setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    assert_int_equal(mio_conn_write(t.c, buf, 8 << 20), 0);
    assert_true(mio_conn_pending(t.c) > 0);
    run_for(20);
    rst_close(cli);
    run_until_closed(&t);
    assert_true(t.reason == -ECONNRESET || t.reason == -EPIPE);

    /* nothing queued, peer resets, we write before the reactor notices: the write fails, the
     * conn closes by itself with the same reason */
    make_pair(&cli, &srv);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &u, &u.c), 0);
    rst_close(cli);
    usleep(50000);
    err = mio_conn_write(u.c, buf, 8 << 20);
    assert_true(err == -ECONNRESET || err == -EPIPE);
    assert_int_equal(u.closes, 0); /* not inside the failed call: at the next iteration */
    assert_int_equal(mio_conn_write(u.c, "z", 1), -EPIPE);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(u.closes, 1);
    assert_int_equal(u.reason, err);
    free(buf);
}

/* ---- idle timeout ---- */

static void test_idle_timeout(void **state)
{
    struct tconn busy = {0}, idle = {0};
    int cb, sb, ci, si;
    char c;

    (void)state;
    make_pair(&cb, &sb);
    make_pair(&ci, &si);
    assert_int_equal(mio_conn_open(r, sb, &t_ops, &busy, &busy.c), 0);
    assert_int_equal(mio_conn_open(r, si, &t_ops, &idle, &idle.c), 0);
    assert_int_equal(mio_conn_set_idle_timeout(busy.c, 300), 0);
    assert_int_equal(mio_conn_set_idle_timeout(idle.c, 300), 0);
    for (int i = 0; i < 24; i++) { /* ~1.2 s of traffic every 50 ms */
        assert_int_equal(send(cb, "k", 1, 0), 1);
        run_for(50);
    }
    assert_int_equal(idle.closes, 1);
    assert_int_equal(idle.reason, -ETIMEDOUT);
    assert_int_equal(recv(ci, &c, 1, 0), 0); /* the peer sees the close */
    assert_int_equal(busy.closes, 0);
    assert_int_equal(busy.got, 24);
    /* silence now: the busy one times out too */
    run_until_closed(&busy);
    assert_int_equal(busy.reason, -ETIMEDOUT);
    close(cb);
    close(ci);
}

/* ---- close from inside callbacks ---- */

static void test_close_in_callbacks(void **state)
{
    struct tconn a = {0}, b = {0}, q = {0};
    int ca, sa, cb, sb, cq, sq;
    char buf[64];
    unsigned char *big = calloc(1, 4 << 20);

    (void)state;
    make_pair(&ca, &sa);
    make_pair(&cb, &sb);
    assert_int_equal(mio_conn_open(r, sa, &t_ops, &a, &a.c), 0);
    assert_int_equal(mio_conn_open(r, sb, &t_ops, &b, &b.c), 0);
    /* whichever reads first closes itself and the other; both are readable in one batch */
    a.close_other = &b;
    b.close_other = &a;
    assert_int_equal(send(ca, "aaaa", 4, 0), 4);
    assert_int_equal(send(cb, "bbbb", 4, 0), 4);
    usleep(20000);
    run_for(100);
    assert_int_equal(a.closes, 1);
    assert_int_equal(b.closes, 1);
    assert_int_equal(a.reason, 0);
    assert_int_equal(b.reason, 0);
    assert_false(a.reads_after_close);
    assert_false(b.reads_after_close);
    assert_int_equal(a.got + b.got, 4);
    /* the peers see the close (an RST for the one whose bytes were never read) */
    assert_true(recv(ca, buf, sizeof(buf), 0) <= 0);
    assert_true(recv(cb, buf, sizeof(buf), 0) <= 0);

    /* close with data queued: flushed first, no on_read meanwhile */
    make_pair(&cq, &sq);
    assert_int_equal(mio_conn_open(r, sq, &t_ops, &q, &q.c), 0);
    assert_int_equal(mio_conn_write(q.c, big, 4 << 20), 0);
    mio_conn_close(q.c);
    q.closed_by_user = true;
    assert_int_equal(q.closes, 0);
    /* the peer's FIN would be an on_read(len 0): it must not come after close */
    assert_int_equal(shutdown(cq, SHUT_WR), 0);
    {
        unsigned long long until = mio_test_now_ms() + 20000;
        size_t got = 0;
        ssize_t n;

        while ((n = recv(cq, big, 65536, MSG_DONTWAIT)) != 0 && mio_test_now_ms() < until) {
            if (n > 0)
                got += (size_t)n;
            else
                assert_true(mio_reactor_run_once(r, 5) >= 0);
        }
        assert_int_equal(n, 0);
        assert_int_equal(got, 4 << 20);
    }
    run_until_closed(&q);
    assert_int_equal(q.reason, 0);
    assert_false(q.reads_after_close);
    assert_int_equal(q.eofs, 0);
    close(ca);
    close(cb);
    close(cq);
    free(big);
}

/* ---- more distinct ops than the reactor interns: the conns past the table keep their own copy ---- */

#define NOPS 24

#define DRAIN_FN(i)                                                                               \
    static void drain_##i(mio_conn *c, void *arg)                                                 \
    {                                                                                             \
        t_on_drain(c, arg);                                                                       \
    }
DRAIN_FN(0) DRAIN_FN(1) DRAIN_FN(2) DRAIN_FN(3) DRAIN_FN(4) DRAIN_FN(5) DRAIN_FN(6) DRAIN_FN(7)
DRAIN_FN(8) DRAIN_FN(9) DRAIN_FN(10) DRAIN_FN(11) DRAIN_FN(12) DRAIN_FN(13) DRAIN_FN(14)
DRAIN_FN(15) DRAIN_FN(16) DRAIN_FN(17) DRAIN_FN(18) DRAIN_FN(19) DRAIN_FN(20) DRAIN_FN(21)
DRAIN_FN(22) DRAIN_FN(23)

static void (*const drain_fns[NOPS])(mio_conn *, void *) = {
    drain_0,  drain_1,  drain_2,  drain_3,  drain_4,  drain_5,  drain_6,  drain_7,
    drain_8,  drain_9,  drain_10, drain_11, drain_12, drain_13, drain_14, drain_15,
    drain_16, drain_17, drain_18, drain_19, drain_20, drain_21, drain_22, drain_23,
};

static void test_many_ops(void **state)
{
    static struct tconn t[NOPS];
    mio_conn_ops ops[NOPS];
    int cli[NOPS], srv[NOPS];
    char buf[8];

    (void)state;
    memset(t, 0, sizeof t);
    for (int i = 0; i < NOPS; i++) {
        ops[i] = (mio_conn_ops){t_on_read, t_on_close, drain_fns[i]};
        make_pair(&cli[i], &srv[i]);
        t[i].echo = true;
        assert_int_equal(mio_conn_open(r, srv[i], &ops[i], &t[i], &t[i].c), 0);
        assert_int_equal(mio_conn_fd(t[i].c), srv[i]);
    }
    /* Every conn echoes through its own ops (the caller's copies are gone). */
    memset(ops, 0, sizeof ops);
    for (int i = 0; i < NOPS; i++)
        assert_int_equal(send(cli[i], "ping", 4, 0), 4);
    for (int i = 0; i < NOPS; i++) {
        unsigned long long until = mio_test_now_ms() + 30000;

        while (t[i].got < 4 && mio_test_now_ms() < until)
            assert_true(mio_reactor_run_once(r, 10) >= 0);
        assert_int_equal(t[i].got, 4);
        assert_int_equal(recv(cli[i], buf, sizeof buf, 0), 4);
        assert_memory_equal(buf, "ping", 4);
    }
    for (int i = 0; i < NOPS; i++) {
        t[i].closed_by_user = true;
        mio_conn_close(t[i].c);
        assert_int_equal(t[i].closes, 0);
        assert_true(mio_reactor_run_once(r, 0) >= 0);
        assert_int_equal(t[i].closes, 1);
        assert_int_equal(t[i].reason, 0);
        assert_int_equal(recv(cli[i], buf, sizeof buf, 0), 0); /* the server side is closed */
        close(cli[i]);
    }
}

/* ---- more conns closed in one callback than the deferred-close list holds ---- */

#define MANY 100

struct many {
    struct tconn t[MANY];
    int cli[MANY];
    int order[MANY], norder;
};

static struct many *many_ctx;

static void many_close_all(mio_reactor *rr, void *arg)
{
    struct many *m = arg;

    (void)rr;
    for (int i = 0; i < MANY; i++) {
        mio_conn_close(m->t[i].c);
        assert_int_equal(m->t[i].closes, 0); /* never inside the call */
    }
    for (int i = 0; i < MANY; i++)
        assert_int_equal(m->t[i].closes, 0); /* nor before the task returns */
}

static void many_on_close(mio_conn *c, int reason, void *arg)
{
    struct tconn *t = arg;

    (void)c;
    t->closes++;
    t->reason = reason;
    many_ctx->order[many_ctx->norder++] = (int)(t - many_ctx->t);
}

static void test_close_many_in_one_callback(void **state)
{
    static const mio_conn_ops ops = {t_on_read, many_on_close, NULL};
    struct many *m = calloc(1, sizeof(*m));
    char b;

    (void)state;
    many_ctx = m;
    for (int i = 0; i < MANY; i++) {
        int srv;

        make_pair(&m->cli[i], &srv);
        assert_int_equal(mio_conn_open(r, srv, &ops, &m->t[i], &m->t[i].c), 0);
    }
    assert_int_equal(mio_reactor_post(r, many_close_all, m), 0);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    /* Every on_close ran exactly once, right after the task (the first 32 in close order, the
     * rest found by the walk), and every peer sees the close. */
    assert_int_equal(m->norder, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(m->t[i].closes, 1);
        assert_int_equal(m->t[i].reason, 0);
        assert_int_equal(recv(m->cli[i], &b, 1, 0), 0);
        close(m->cli[i]);
    }
    for (int i = 0; i < 32; i++)
        assert_int_equal(m->order[i], i);
    free(m);
}

/* ---- reading stopped and resumed by the user ---- */

static void test_set_reading(void **state)
{
    struct tconn t = {0};
    int cli, srv;

    (void)state;
    make_pair(&cli, &srv);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    assert_int_equal(mio_conn_set_reading(t.c, false), 0);
    assert_int_equal(send(cli, "abcd", 4, 0), 4);
    run_for(100);
    assert_int_equal(t.got, 0); /* stopped: the bytes wait in the kernel */
    assert_int_equal(mio_conn_set_reading(t.c, false), 0);
    assert_int_equal(mio_conn_set_reading(t.c, true), 0);
    run_for(100);
    assert_int_equal(t.got, 4); /* resumed: no new data needed to see them */
    assert_int_equal(send(cli, "ef", 2, 0), 2);
    run_for(50);
    assert_int_equal(t.got, 6);
    assert_int_equal(mio_conn_set_reading(NULL, true), -EINVAL);
    mio_conn_close(t.c);
    assert_int_equal(mio_conn_set_reading(t.c, true), -EPIPE);
    run_until_closed(&t);
    close(cli);
}

/* ---- reading stopped by another conn's callback while its bytes are on their way ---- */

/* Two conns whose bytes arrive in the same batch; the first one read stops the other (a relay
 * pausing its source). The stopped one must get nothing until it is resumed (on the io_uring
 * backend its receive may already have completed in that batch: those bytes are held), then
 * every byte, in order, once, without new bytes arriving. */
struct xstop {
    mio_conn *c;
    struct xstop *other;
    size_t got, got_while_off;
    size_t got_at_eof; /* bytes received when on_read reported EOF */
    int eofs;
    bool off;
    unsigned char next;
    bool bad;
};

static bool xstop_armed; /* the first read of a round stops the other conn */

static void xstop_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct xstop *x = arg;
    const unsigned char *p = data;

    (void)c;
    if (len == 0) {
        x->eofs++;
        x->got_at_eof = x->got;
        return;
    }
    if (x->off)
        x->got_while_off += len;
    for (size_t i = 0; i < len; i++)
        if (p[i] != x->next++)
            x->bad = true;
    x->got += len;
    if (xstop_armed && len > 0) {
        xstop_armed = false;
        x->other->off = true;
        assert_int_equal(mio_conn_set_reading(x->other->c, false), 0);
    }
}

static const mio_conn_ops xstop_ops = {xstop_read, NULL, NULL};

/* Two xstop conns, each the other's "other", open on r (pair i: cli[i], srv[i]). */
static void xstop_open(struct xstop *both[2], int cli[2])
{
    int srv;

    both[0]->other = both[1];
    both[1]->other = both[0];
    for (int i = 0; i < 2; i++) {
        make_pair(&cli[i], &srv);
        assert_int_equal(mio_conn_open(r, srv, &xstop_ops, both[i], &both[i]->c), 0);
    }
    assert_true(mio_reactor_run_once(r, 0) >= 0);
}

/* Arms the stop and runs until the first read of the batch has stopped the other conn. */
static void xstop_run_armed(void)
{
    unsigned long long until = mio_test_now_ms() + 5000;

    xstop_armed = true;
    while (xstop_armed && mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 100) >= 0);
    assert_false(xstop_armed);
    run_for(10);
}

static void test_stop_reading_other_in_batch(void **state)
{
    struct xstop a = {0}, b = {0};
    struct xstop *both[2] = {&a, &b};
    int cli[2];
    unsigned char buf[300];
    size_t sent = 0;

    (void)state;
    xstop_open(both, cli);
    for (int round = 0; round < 40; round++) {
        unsigned long long until;

        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(sent + i);
        for (int i = 0; i < 2; i++)
            assert_int_equal(send(cli[i], buf, sizeof buf, 0), (ssize_t)sizeof buf);
        sent += sizeof buf;
        usleep(2000); /* both arrive before the next wait */
        xstop_run_armed();
        assert_int_equal(a.got_while_off + b.got_while_off, 0); /* stopped: nothing delivered */
        for (int i = 0; i < 2; i++)
            if (both[i]->off) {
                assert_true(both[i]->got < sent);
                both[i]->off = false;
                assert_int_equal(mio_conn_set_reading(both[i]->c, true), 0);
            }
        until = mio_test_now_ms() + 5000;
        while ((a.got < sent || b.got < sent) && mio_test_now_ms() < until)
            assert_true(mio_reactor_run_once(r, 10) >= 0);
        assert_int_equal(a.got, sent); /* resumed: every byte, no new bytes needed */
        assert_int_equal(b.got, sent);
    }
    assert_false(a.bad);
    assert_false(b.bad);
    for (int i = 0; i < 2; i++) {
        mio_conn_close(both[i]->c);
        close(cli[i]);
    }
    run_for(20);
}

/* The same with the peers' FIN right behind their bytes: the stopped conn's bytes (held on the
 * io_uring backend) all reach on_read before its EOF, once it is resumed. */
static void test_stop_reading_other_then_eof(void **state)
{
    struct xstop a = {0}, b = {0};
    struct xstop *both[2] = {&a, &b};
    int cli[2];
    unsigned char buf[3000];
    unsigned long long until;

    (void)state;
    xstop_open(both, cli);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)i;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(send(cli[i], buf, sizeof buf, 0), (ssize_t)sizeof buf);
        assert_int_equal(shutdown(cli[i], SHUT_WR), 0);
    }
    usleep(2000); /* bytes and FINs arrive before the next wait */
    xstop_run_armed();
    assert_int_equal(a.got_while_off + b.got_while_off, 0);
    for (int i = 0; i < 2; i++)
        if (both[i]->off) {
            assert_int_equal(both[i]->eofs, 0); /* not reading: not even the EOF */
            both[i]->off = false;
            assert_int_equal(mio_conn_set_reading(both[i]->c, true), 0);
        }
    until = mio_test_now_ms() + 5000;
    while ((a.eofs == 0 || b.eofs == 0) && mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 10) >= 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(both[i]->eofs, 1);
        assert_int_equal(both[i]->got_at_eof, sizeof buf); /* every byte, then the EOF */
        assert_false(both[i]->bad);
        mio_conn_close(both[i]->c);
        close(cli[i]);
    }
    run_for(20);
}

/* ---- order across a full stage: a write after a partial flush goes behind the queue ---- */

#define ORDER_CHUNK 8192
#define ORDER_CHUNKS 40

static unsigned char order_byte(size_t i)
{
    return (unsigned char)(i * 7u + i / 251u);
}

static void order_writes(mio_reactor *rr, void *arg)
{
    mio_conn *c = arg;
    unsigned char buf[ORDER_CHUNK];

    (void)rr;
    /* 320 KiB in one task: the 64 KiB stage fills, its flush meets a full socket and queues the
     * rest, and every later write must line up behind that queue. */
    for (size_t k = 0; k < ORDER_CHUNKS; k++) {
        for (size_t i = 0; i < ORDER_CHUNK; i++)
            buf[i] = order_byte(k * ORDER_CHUNK + i);
        assert_int_equal(mio_conn_write(c, buf, ORDER_CHUNK), 0);
    }
}

static void test_order_across_full_stage(void **state)
{
    struct tconn t = {0};
    int cli, srv, small = 4096;
    size_t got = 0, total = (size_t)ORDER_CHUNK * ORDER_CHUNKS;
    unsigned char buf[65536];
    unsigned long long until = mio_test_now_ms() + 30000;

    (void)state;
    make_pair(&cli, &srv);
    assert_int_equal(setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    assert_int_equal(mio_reactor_post(r, order_writes, t.c), 0);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    while (got < total && mio_test_now_ms() < until) {
        ssize_t n = recv(cli, buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] != order_byte(got + (size_t)i))
                    fail_msg("byte %zu out of order", got + (size_t)i);
            got += (size_t)n;
        } else {
            assert_true(mio_reactor_run_once(r, 5) >= 0);
        }
    }
    assert_int_equal(got, total);
    mio_conn_close(t.c);
    run_until_closed(&t);
    close(cli);
}

static void order_writes_one(mio_reactor *rr, void *arg)
{
    (void)rr;
    assert_int_equal(mio_conn_write(arg, "one;", 4), 0);
}
/* ---- records split by another conn's writes: each conn still gets its bytes in order ---- */

struct split_job {
    mio_conn *a, *b;
    int round;
    bool close_a; /* close a after its writes: the close must wait for all three records */
};

static void split_writes(mio_reactor *rr, void *arg)
{
    struct split_job *j = arg;
    char text[32];

    (void)rr;
    /* a, b, a, b, a: a's bytes lie in three records of the stage, b's in two */
    for (int i = 0; i < 5; i++) {
        mio_conn *c = i % 2 == 0 ? j->a : j->b;
        int n = snprintf(text, sizeof(text), "%c%d.%d;", i % 2 == 0 ? 'a' : 'b', j->round, i);

        assert_int_equal(mio_conn_write(c, text, (size_t)n), 0);
    }
    if (j->close_a)
        mio_conn_close(j->a);
}

static void expect_bytes(int fd, const char *want)
{
    size_t len = strlen(want), got = 0;
    char buf[256];
    unsigned long long until = mio_test_now_ms() + 10000;

    while (got < len && mio_test_now_ms() < until) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);

        if (n > 0)
            got += (size_t)n;
        else
            assert_true(mio_reactor_run_once(r, 5) >= 0);
    }
    buf[got] = '\0';
    assert_string_equal(buf, want);
}

static void test_split_records(void **state)
{
    struct tconn ta = {0}, tb = {0};
    struct split_job j = {0};
    int ca, sa, cb, sb;
    char buf_eof[8];

    (void)state;
    make_pair(&ca, &sa);
    make_pair(&cb, &sb);
    assert_int_equal(mio_conn_open(r, sa, &t_ops, &ta, &ta.c), 0);
    assert_int_equal(mio_conn_open(r, sb, &t_ops, &tb, &tb.c), 0);
    j.a = ta.c;
    j.b = tb.c;
    for (j.round = 0; j.round < 3; j.round++) {
        char wa[64], wb[64];

        snprintf(wa, sizeof(wa), "a%d.0;a%d.2;a%d.4;", j.round, j.round, j.round);
        snprintf(wb, sizeof(wb), "b%d.1;b%d.3;", j.round, j.round);
        assert_int_equal(mio_reactor_post(r, split_writes, &j), 0);
        assert_true(mio_reactor_run_once(r, 0) >= 0);
        assert_int_equal(mio_conn_pending(ta.c), 0); /* all sent at the task's settle point */
        assert_int_equal(mio_conn_pending(tb.c), 0);
        expect_bytes(ca, wa);
        expect_bytes(cb, wb);
        /* one record alone the next time: a plain write from a task */
        assert_int_equal(mio_reactor_post(r, order_writes_one, ta.c), 0);
        assert_true(mio_reactor_run_once(r, 0) >= 0);
        expect_bytes(ca, "one;");
    }
    /* closed in the task right after its split writes: every byte, then EOF */
    j.close_a = true;
    assert_int_equal(mio_reactor_post(r, split_writes, &j), 0);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    expect_bytes(ca, "a3.0;a3.2;a3.4;");
    expect_bytes(cb, "b3.1;b3.3;");
    run_until_closed(&ta);
    assert_int_equal(ta.reason, 0);
    assert_int_equal(recv(ca, buf_eof, sizeof(buf_eof), 0), 0);
    mio_conn_close(tb.c);
    run_until_closed(&tb);
    close(ca);
    close(cb);
}

/* a's records split by b's write, and the socket takes only part of the first: the rest of it
 * and a's later record are queued in order, none dropped */
#define SPLIT_BIG 12000

static void split_big_writes(mio_reactor *rr, void *arg)
{
    struct split_job *j = arg;
    unsigned char buf[SPLIT_BIG];

    (void)rr;
    for (int part = 0; part < 2; part++) {
        for (size_t i = 0; i < SPLIT_BIG; i++)
            buf[i] = order_byte((size_t)part * SPLIT_BIG + i);
        assert_int_equal(mio_conn_write(j->a, buf, SPLIT_BIG), 0);
        if (part == 0)
            assert_int_equal(mio_conn_write(j->b, "b", 1), 0);
    }
}

static void test_split_records_short_send(void **state)
{
    struct tconn ta = {0}, tb = {0};
    struct split_job j = {0};
    int ca, sa, cb, sb, small = 4096, rcv = 4096;
    size_t got = 0, pre = 0;
    unsigned char buf[4096];
    unsigned long long until = mio_test_now_ms() + 30000;

    (void)state;
    make_pair(&ca, &sa);
    make_pair(&cb, &sb);
    assert_int_equal(setsockopt(sa, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(setsockopt(ca, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
    assert_int_equal(mio_conn_open(r, sa, &t_ops, &ta, &ta.c), 0);
    assert_int_equal(mio_conn_open(r, sb, &t_ops, &tb, &tb.c), 0);
    /* fill a's socket first (zero bytes), so that the stage's send is refused or short */
    memset(buf, 0, sizeof(buf));
    for (;;) {
        ssize_t n = send(sa, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n <= 0)
            break;
        pre += (size_t)n;
    }
    j.a = ta.c;
    j.b = tb.c;
    assert_int_equal(mio_reactor_post(r, split_big_writes, &j), 0);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_true(mio_conn_pending(ta.c) > 0); /* the full socket took little or none of it */
    while (got < pre + 2 * SPLIT_BIG && mio_test_now_ms() < until) {
        ssize_t n = recv(ca, buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0) {
            for (ssize_t i = 0; i < n; i++) {
                size_t at = got + (size_t)i;

                if (buf[i] != (at < pre ? 0 : order_byte(at - pre)))
                    fail_msg("byte %zu out of order", at);
            }
            got += (size_t)n;
        } else {
            assert_true(mio_reactor_run_once(r, 5) >= 0);
        }
    }
    assert_int_equal(got, pre + 2 * SPLIT_BIG);
    expect_bytes(cb, "b");
    mio_conn_close(ta.c);
    mio_conn_close(tb.c);
    run_until_closed(&ta);
    run_until_closed(&tb);
    close(ca);
    close(cb);
}

/* ---- one record, socket full: the stage's send (a send on the ring on io_uring) is refused or
 * short, and the rest is queued in order ---- */

static void one_big_write(mio_reactor *rr, void *arg)
{
    unsigned char buf[SPLIT_BIG];

    (void)rr;
    for (size_t i = 0; i < SPLIT_BIG; i++)
        buf[i] = order_byte(i);
    assert_int_equal(mio_conn_write(arg, buf, SPLIT_BIG), 0);
}

static void test_short_send_one_record(void **state)
{
    struct tconn t = {0};
    int cli, srv, small = 4096, rcv = 4096;
    size_t got = 0, pre = 0;
    unsigned char buf[4096];
    unsigned long long until = mio_test_now_ms() + 30000;

    (void)state;
    make_pair(&cli, &srv);
    assert_int_equal(setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(setsockopt(cli, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    memset(buf, 0, sizeof(buf));
    for (;;) {
        ssize_t n = send(srv, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n <= 0)
            break;
        pre += (size_t)n;
    }
    assert_int_equal(mio_reactor_post(r, one_big_write, t.c), 0);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_true(mio_conn_pending(t.c) > 0); /* queued: the full socket took little or none */
    while (got < pre + SPLIT_BIG && mio_test_now_ms() < until) {
        ssize_t n = recv(cli, buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0) {
            for (ssize_t i = 0; i < n; i++) {
                size_t at = got + (size_t)i;

                if (buf[i] != (at < pre ? 0 : order_byte(at - pre)))
                    fail_msg("byte %zu out of order", at);
            }
            got += (size_t)n;
        } else {
            assert_true(mio_reactor_run_once(r, 5) >= 0);
        }
    }
    assert_int_equal(got, pre + SPLIT_BIG);
    assert_int_equal(mio_conn_pending(t.c), 0);
    mio_conn_close(t.c);
    run_until_closed(&t);
    close(cli);
}

/* ---- on io_uring, one iteration's writes to many conns go out as one send each, in one
 * submission, and are sent when run_once returns ---- */

#define BATCH_CONNS 8

static void batch_writes(mio_reactor *rr, void *arg)
{
    struct tconn *t = arg;

    (void)rr;
    for (int i = 0; i < BATCH_CONNS; i++) {
        assert_int_equal(mio_conn_write(t[i].c, "hel", 3), 0);
        assert_int_equal(mio_conn_write(t[i].c, "lo", 2), 0); /* the same record */
    }
}

static void test_iteration_sends(void **state)
{
    struct tconn t[BATCH_CONNS];
    int cli[BATCH_CONNS], srv;
    struct mio_reactor_stats before, after;
    bool ring = mio_reactor_backend(r) == MIO_BACKEND_IO_URING;

    (void)state;
    memset(t, 0, sizeof(t));
    for (int i = 0; i < BATCH_CONNS; i++) {
        make_pair(&cli[i], &srv);
        assert_int_equal(mio_conn_open(r, srv, &t_ops, &t[i], &t[i].c), 0);
    }
    run_for(10);
    assert_int_equal(mio_reactor_stats(r, &before), 0);
    assert_int_equal(mio_reactor_post(r, batch_writes, t), 0);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(mio_reactor_stats(r, &after), 0);
    for (int i = 0; i < BATCH_CONNS; i++) {
        char buf[8];

        assert_int_equal(mio_conn_pending(t[i].c), 0);
        assert_int_equal(recv(cli[i], buf, sizeof(buf), MSG_DONTWAIT), 5);
        assert_memory_equal(buf, "hello", 5);
    }
    if (ring) {
        assert_int_equal(after.ring_sends - before.ring_sends, BATCH_CONNS);
        /* the wait, and the one submission of the sends at the iteration's end */
        assert_true(after.ring_enters - before.ring_enters <= 2);
    } else {
        assert_int_equal(after.ring_sends, 0);
    }
    for (int i = 0; i < BATCH_CONNS; i++) {
        mio_conn_close(t[i].c);
        run_until_closed(&t[i]);
        close(cli[i]);
    }
}


/* ---- relaying what on_read was given: on io_uring the bytes go out from the receive buffer they
 * came in (no copy into the stage), whatever the relay does around the write ---- */

enum relay_how {
    RELAY_ONE,    /* write to one conn: sent from the receive buffer */
    RELAY_TWO,    /* the same bytes to two conns: both sends from the buffer */
    RELAY_SUFFIX, /* then a suffix to the same conn: the bytes move into the stage, one send */
    RELAY_FLUSH,  /* then mio_conn_flush: sent at once, from the buffer, not on the ring */
    RELAY_TAIL,   /* all but the last RELAY_KEEP bytes, which are kept for the next on_read */
};

#define RELAY_MSGS 50
#define RELAY_LEN 1000
#define RELAY_KEEP 100

struct relay {
    enum relay_how how;
    mio_conn *to[2];
};

static void relay_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct relay *rl = arg;

    if (len == 0)
        return;
    if (rl->how == RELAY_TAIL) {
        size_t n = len > RELAY_KEEP ? len - RELAY_KEEP : 0;

        assert_int_equal(mio_conn_consume(c, n), 0);
        len = n; /* the next on_read starts with the kept bytes, from the conn's own buffer */
        if (len == 0)
            return;
    }
    assert_int_equal(mio_conn_write(rl->to[0], data, len), 0);
    if (rl->how == RELAY_TWO)
        assert_int_equal(mio_conn_write(rl->to[1], data, len), 0);
    if (rl->how == RELAY_SUFFIX)
        assert_int_equal(mio_conn_write(rl->to[0], "!", 1), 0);
    if (rl->how == RELAY_FLUSH)
        assert_int_equal(mio_conn_flush(rl->to[0]), 0);
}

static const mio_conn_ops relay_ops = {relay_read, NULL, NULL};

static void sink_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)c, (void)data, (void)len, (void)arg;
}

static const mio_conn_ops sink_ops = {sink_read, NULL, NULL};

/* Reads exactly want bytes from fd, running the reactor meanwhile (bounded in time). */
static void read_exactly(int fd, unsigned char *buf, size_t want)
{
    size_t got = 0;
    unsigned long long until = mio_test_now_ms() + 10000;

    while (got < want && mio_test_now_ms() < until) {
        ssize_t n;

        assert_true(mio_reactor_run_once(r, 1) >= 0);
        n = recv(fd, buf + got, want - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, want);
}

/* RELAY_MSGS messages of the pattern sent on src's client one at a time; after each, the
 * destinations' clients receive the stream so far, intact (with the suffix after each message
 * where one is written). Returns the nocopy sends the relay took; *ring_sends: its sends on the
 * ring. */
static uint64_t relay_round(enum relay_how how, uint64_t *ring_sends)
{
    struct relay rl = {.how = how};
    mio_conn *src, *dst[2];
    int cli[3], srv, ndst = how == RELAY_TWO ? 2 : 1;
    unsigned char out[RELAY_LEN], in[RELAY_LEN + 1];
    size_t sent = 0, recvd[2] = {0, 0};
    struct mio_reactor_stats before, after;

    for (int i = 0; i < 3; i++) {
        make_pair(&cli[i], &srv);
        assert_int_equal(mio_conn_open(r, srv, i == 0 ? &relay_ops : &sink_ops, &rl,
                                       i == 0 ? &src : &dst[i - 1]),
                         0);
    }
    rl.to[0] = dst[0];
    rl.to[1] = dst[1];
    run_for(5);
    assert_int_equal(mio_reactor_stats(r, &before), 0);
    for (size_t m = 0; m < RELAY_MSGS; m++) {
        pattern_fill(out, sent, RELAY_LEN);
        assert_int_equal(send(cli[0], out, RELAY_LEN, MSG_NOSIGNAL), RELAY_LEN);
        sent += RELAY_LEN;
        for (int d = 0; d < ndst; d++) {
            size_t n = (how == RELAY_TAIL ? sent - RELAY_KEEP : sent) - recvd[d];

            read_exactly(cli[1 + d], in, n + (how == RELAY_SUFFIX ? 1 : 0));
            assert_true(pattern_check(in, recvd[d], n));
            if (how == RELAY_SUFFIX)
                assert_int_equal(in[n], '!');
            recvd[d] += n;
        }
    }
    assert_int_equal(mio_reactor_stats(r, &after), 0);
    mio_conn_close(src);
    mio_conn_close(dst[0]);
    mio_conn_close(dst[1]);
    run_for(10);
    for (int i = 0; i < 3; i++)
        close(cli[i]);
    *ring_sends = after.ring_sends - before.ring_sends;
    return after.ring_sends_nocopy - before.ring_sends_nocopy;
}

/* ---- receives on the ring: multishot where the kernel limits them ---- */

#define ARM_MSGS 200

/* Whether this kernel's release is at least major.minor (uname). */
static bool kernel_at_least(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;

    assert_int_equal(uname(&u), 0);
    assert_true(sscanf(u.release, "%d.%d", &ma, &mi) == 2);
    return ma > major || (ma == major && mi >= minor);
}

/* ARM_MSGS small messages echoed one at a time on one conn: with multishot receives one arm
 * serves many of them (it ends after a buffer's worth of bytes), with single-shot receives each
 * message needs an arm of its own. MIO_URING_RECV=single (the .single runs) says which is
 * wanted; otherwise a kernel from 6.17 on must give multishot. */
static void test_ring_receive_arms(void **state)
{
    const char *env = getenv("MIO_URING_RECV");
    struct tconn t = {.echo = true, .check_pattern = true};
    struct mio_reactor_stats before, after;
    unsigned char out[32], in[32];
    uint64_t arms;
    int cli, srv;

    (void)state;
    assert_int_equal(mio_reactor_stats(r, &before), 0);
    if (before.backend != MIO_BACKEND_IO_URING) {
        assert_int_equal(before.ring_recv_multishot, 0);
        skip();
    }
    if (env != NULL && strcmp(env, "single") == 0)
        assert_int_equal(before.ring_recv_multishot, 0);
    else if (kernel_at_least(6, 17))
        assert_int_equal(before.ring_recv_multishot, 1);
    make_pair(&cli, &srv);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    run_for(5);
    assert_int_equal(mio_reactor_stats(r, &before), 0);
    for (size_t m = 0; m < ARM_MSGS; m++) {
        pattern_fill(out, m * sizeof out, sizeof out);
        assert_int_equal(send(cli, out, sizeof out, MSG_NOSIGNAL), (ssize_t)sizeof out);
        read_exactly(cli, in, sizeof in);
        assert_memory_equal(in, out, sizeof out);
    }
    assert_int_equal(mio_reactor_stats(r, &after), 0);
    assert_false(t.bad_data);
    arms = after.ring_recv_arms - before.ring_recv_arms;
    print_message("note: %d receive arms for %d messages (multishot: %d)\n", (int)arms, ARM_MSGS,
                  (int)after.ring_recv_multishot);
    if (after.ring_recv_multishot)
        assert_true(arms <= 2); /* 200 x 32 bytes: under one limit's worth */
    else
        assert_true(arms >= ARM_MSGS);
    mio_conn_close(t.c);
    run_for(10);
    close(cli);
}

/* ---- what a conn takes after it stops reading ---- */

#define FLOOD (1024u * 1024u)

struct stopper {
    mio_conn *c;
    size_t got, first, resumed; /* bytes in all, in the first on_read, in the first after resume */
    int reads;
    bool stopped, resumed_seen, bad_data;
};

static void stopper_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct stopper *st = arg;

    if (len == 0)
        return;
    if (!pattern_check(data, st->got, len))
        st->bad_data = true;
    st->got += len;
    st->reads++;
    if (!st->stopped) {
        st->stopped = true;
        st->first = len;
        assert_int_equal(mio_conn_set_reading(c, false), 0);
    } else if (!st->resumed_seen) {
        st->resumed_seen = true;
        st->resumed = len;
    }
}

static const mio_conn_ops stopper_ops = {stopper_read, NULL, NULL};

/* A megabyte waits in the socket; the first on_read turns reading off. What the conn still takes
 * before that takes effect is bounded: on the ring, what its receive completes before the cancel
 * (at most two 16 KiB buffers: the multishot receive's limit, or one single-shot buffer), which
 * the first on_read after the resume brings along with at most one fresh buffer; on epoll nothing
 * (the next read, after the resume, is one 64 KiB read). Without the limit a multishot receive
 * would take buffers for as long as data waited. Then everything arrives, intact. */
static void test_stop_reading_bound(void **state)
{
    struct stopper st = {0};
    unsigned char *out = malloc(FLOOD);
    bool ring = mio_reactor_backend(r) == MIO_BACKEND_IO_URING;
    unsigned long long until;
    size_t sent = 0;
    int cli, srv;

    (void)state;
    assert_non_null(out);
    pattern_fill(out, 0, FLOOD);
    make_pair(&cli, &srv);
    assert_int_equal(mio_set_nonblocking(cli, true), 0);
    while (sent < FLOOD) { /* as much as the sockets hold */
        ssize_t n = send(cli, out + sent, FLOOD - sent, MSG_NOSIGNAL);

        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    assert_true(sent > 256u * 1024u);
    assert_int_equal(mio_conn_open(r, srv, &stopper_ops, &st, &st.c), 0);
    until = mio_test_now_ms() + 10000;
    while (!st.stopped && mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    assert_true(st.stopped);
    run_for(50);
    assert_int_equal(st.reads, 1);
    assert_int_equal(mio_conn_set_reading(st.c, true), 0);
    until = mio_test_now_ms() + 20000;
    while (st.got < FLOOD && mio_test_now_ms() < until) {
        ssize_t n;

        assert_true(mio_reactor_run_once(r, 5) >= 0);
        if (sent < FLOOD && (n = send(cli, out + sent, FLOOD - sent, MSG_NOSIGNAL)) > 0)
            sent += (size_t)n;
    }
    print_message("note: first on_read %zu bytes, first after the resume %zu\n", st.first,
                  st.resumed);
    assert_int_equal(st.got, FLOOD);
    assert_false(st.bad_data);
    assert_true(st.first <= (ring ? 16u : 64u) * 1024u);
    assert_true(st.resumed <= (ring ? 3u * 16u : 64u) * 1024u);
    mio_conn_close(st.c);
    run_for(10);
    close(cli);
    free(out);
}

/* ---- mio_reactor_run on the ring: one io_uring_enter per echoed message ---- */

static void *run_thread(void *arg)
{
    return (void *)(intptr_t)mio_reactor_run(arg);
}

/* A single connection echoed one message at a time under mio_reactor_run: the wait that returns
 * a message also submits the answer to the one before (its send is quiet: a full send posts no
 * completion to end the wait), so the ring makes about one enter per message, where the end of
 * each iteration submitting its sends on its own would make two. Every byte comes back, in
 * order; the stop then sends what the last iteration wrote. */
static void test_run_one_enter_per_message(void **state)
{
    struct tconn t = {.echo = true, .check_pattern = true};
    struct mio_reactor_stats before, after;
    unsigned char out[64], in[64];
    pthread_t th;
    void *rc;
    int cli, srv;

    struct timeval tv = {.tv_sec = 10};

    (void)state;
    make_pair(&cli, &srv);
    assert_int_equal(setsockopt(cli, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    run_for(5);
    assert_int_equal(mio_reactor_stats(r, &before), 0);
    assert_int_equal(pthread_create(&th, NULL, run_thread, r), 0);
    for (size_t m = 0; m < ARM_MSGS; m++) {
        size_t got = 0;

        pattern_fill(out, m * sizeof out, sizeof out);
        assert_int_equal(send(cli, out, sizeof out, MSG_NOSIGNAL), (ssize_t)sizeof out);
        while (got < sizeof in) {
            ssize_t n = recv(cli, in + got, sizeof in - got, 0); /* bounded: SO_RCVTIMEO */

            assert_true(n > 0 || (n < 0 && errno == EINTR));
            got += n > 0 ? (size_t)n : 0;
        }
        assert_memory_equal(in, out, sizeof out);
    }
    mio_reactor_stop(r);
    assert_int_equal(pthread_join(th, &rc), 0);
    assert_int_equal((int)(intptr_t)rc, 0);
    assert_int_equal(mio_reactor_stats(r, &after), 0);
    assert_false(t.bad_data);
    if (after.backend == MIO_BACKEND_IO_URING) {
        uint64_t enters = after.ring_enters - before.ring_enters;

        print_message("note: %d enters for %d messages\n", (int)enters, ARM_MSGS);
        assert_true(enters <= ARM_MSGS + ARM_MSGS / 4);
    }
    mio_conn_close(t.c);
    run_for(10);
    close(cli);
}

static void test_relay_from_receive_buffer(void **state)
{
    bool ring = mio_reactor_backend(r) == MIO_BACKEND_IO_URING;
    uint64_t n, sends;

    (void)state;
    /* a message may come in two receives (two nocopy sends): at least one per message */
    n = relay_round(RELAY_ONE, &sends);
    assert_true(ring ? n >= RELAY_MSGS : n == 0);
    n = relay_round(RELAY_TWO, &sends);
    assert_true(ring ? n >= 2 * RELAY_MSGS : n == 0);
    /* the suffix joins the bytes in the stage: still one send on the ring per message, not a
     * sendmsg of two records */
    assert_int_equal(relay_round(RELAY_SUFFIX, &sends), 0);
    assert_true(ring ? sends >= RELAY_MSGS : sends == 0);
    assert_int_equal(relay_round(RELAY_FLUSH, &sends), 0);
    /* after the first message the bytes come from the conn's own buffer (kept tail + new):
     * copied into the stage, but intact */
    n = relay_round(RELAY_TAIL, &sends);
    assert_true(ring ? n >= 1 && n < RELAY_MSGS : n == 0);
}

/* ---- which conns are in the reactor's epoll set: on io_uring, a conn joins it only when it
 * needs readiness (output queued: WRITABLE; reading off: errors and hang-ups), so an echo conn
 * that never fills its socket costs no epoll_ctl; on epoll, every conn is in it ---- */

/* Whether fd is in the epoll set epfd, from the kernel's own list (/proc/self/fdinfo). */
static bool in_epoll_set(int epfd, int fd)
{
    char path[64], line[256];
    bool found = false;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", epfd);
    f = fopen(path, "r");
    assert_non_null(f);
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        int tfd;

        found = sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd;
    }
    fclose(f);
    return found;
}

#define SET_FILL (8u * 1024u * 1024u)

static void test_epoll_set_membership(void **state)
{
    struct tconn t = {.echo = true}, u = {0};
    bool ring = mio_reactor_backend(r) == MIO_BACKEND_IO_URING;
    int epfd = mio__reactor_poll_fd(r), cli, srv, cli2, srv2;
    unsigned char *big = malloc(SET_FILL), *in = malloc(SET_FILL);
    size_t got = 0;
    char buf[8];

    (void)state;
    assert_non_null(big);
    assert_non_null(in);
    make_pair(&cli, &srv);
    assert_int_equal(mio_conn_open(r, srv, &t_ops, &t, &t.c), 0);
    assert_int_equal(send(cli, "ping", 4, 0), 4);
    run_for(50);
    assert_int_equal(recv(cli, buf, sizeof(buf), MSG_DONTWAIT), 4);
    assert_int_equal(in_epoll_set(epfd, srv), !ring);

    /* Output the peer does not read: queued, so WRITABLE is needed; then every byte arrives. */
    pattern_fill(big, 0, SET_FILL);
    assert_int_equal(mio_conn_write(t.c, big, SET_FILL), 0);
    run_for(20);
    assert_true(mio_conn_pending(t.c) > 0);
    assert_true(in_epoll_set(epfd, srv));
    while (got < SET_FILL) {
        ssize_t k;

        assert_true(mio_reactor_run_once(r, 0) >= 0);
        k = recv(cli, in + got, SET_FILL - got, MSG_DONTWAIT);
        if (k > 0)
            got += (size_t)k;
        else
            assert_true(k < 0 && errno == EAGAIN);
    }
    assert_true(pattern_check(in, 0, SET_FILL));
    assert_int_equal(mio_conn_pending(t.c), 0);
    /* still in the set (parked), and still echoing */
    assert_int_equal(send(cli, "pong", 4, 0), 4);
    run_for(50);
    assert_int_equal(recv(cli, buf, sizeof(buf), MSG_DONTWAIT), 4);
    assert_memory_equal(buf, "pong", 4);

    /* Reading turned off by the user: hang-ups and errors must still be seen. */
    make_pair(&cli2, &srv2);
    assert_int_equal(mio_conn_open(r, srv2, &t_ops, &u, &u.c), 0);
    run_for(10);
    assert_int_equal(in_epoll_set(epfd, srv2), !ring);
    assert_int_equal(mio_conn_set_reading(u.c, false), 0);
    run_for(10);
    assert_true(in_epoll_set(epfd, srv2));

    mio_conn_close(t.c);
    mio_conn_close(u.c);
    run_until_closed(&t);
    run_until_closed(&u);
    close(cli);
    close(cli2);
    free(big);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_big_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watermarks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rst_during_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_many_in_one_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_reading_other_in_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_reading_other_then_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_across_full_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_records_short_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_send_one_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iteration_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoll_set_membership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_from_receive_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_receive_arms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_reading_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_one_enter_per_message, setup, teardown),
    };

    mio_test_watchdog(280);
    table = malloc(TABLE_LEN);
    srand(12345);
    for (size_t i = 0; i < TABLE_LEN; i++)
        table[i] = (unsigned char)(rand() >> 7);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
