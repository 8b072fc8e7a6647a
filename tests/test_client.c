/* Outbound connections (mio_conn_connect) and thread-safe conn handles (mio_conn_handle_*), on
 * real loopback sockets: TCP and unix listeners, refused and hanging connects, close and shutdown
 * while connecting; handles used from other threads, on closed conns, on reused slots and on the
 * conns of a two-worker pool. The reactor runs on the main thread unless a pool is used. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>
#include "helpers.h"
#include "internal/conn_int.h" /* white box: the extension block an idle conn keeps */

/* Generous: the machine may be loaded by other builds and sanitizers. */
#define WAIT_MS 15000

static mio_reactor *r;
static int fd_base;
static pthread_t reactor_thread;

static int setup(void **state)
{
    (void)state;
    fd_base = mio_test_fd_count();
    reactor_thread = pthread_self();
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    return 0;
}

static int teardown(void **state)
{
    int now;

    (void)state;
    mio_reactor_free(r);
    r = NULL;
    now = mio_test_fd_count();
    if (now != fd_base) {
        fprintf(stderr, "fd count changed: %d before the test, %d after\n", fd_base, now);
        return -1;
    }
    return 0;
}

/* Runs the reactor until cond holds, at most WAIT_MS; then asserts cond. */
#define RUN_UNTIL(cond)                                                                           \
    do {                                                                                          \
        unsigned long long until_ = mio_test_now_ms() + WAIT_MS;                                  \
        while (!(cond) && mio_test_now_ms() < until_)                                             \
            assert_true(mio_reactor_run_once(r, 5) >= 0);                                         \
        if (!(cond))                                                                              \
            fprintf(stderr, "timed out waiting for: %s\n", #cond);                                \
        assert_true(cond);                                                                        \
    } while (0)

static void run_for(unsigned ms)
{
    unsigned long long until = mio_test_now_ms() + ms;

    while (mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void set_rcvtimeo(int fd, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000L};

    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
}

/* A TCP listener on 127.0.0.1 with a kernel-chosen port; its address in *addr. */
static int tcp_listener(mio_addr *addr)
{
    int lfd;

    assert_int_equal(mio_addr_parse("127.0.0.1:0", addr), 0);
    lfd = mio_tcp_listener_bind(addr);
    assert_true(lfd >= 0);
    assert_int_equal(mio_socket_local_addr(lfd, addr), 0);
    return lfd;
}

/* ---- the mio side of a connection: client (mio_conn_connect) or server (accepted) ---- */

struct end {
    mio_conn *c;
    bool client;
    int connects, closes, reason, eofs;
    bool connect_inside_call; /* on_connect ran inside mio_conn_connect */
    bool wrong_thread;        /* a callback ran on another thread than the reactor's */
    bool read_before_connect; /* on_read before on_connect */
    bool after_close;         /* a callback after on_close */
    bool echo, close_on_eof;
    const char *on_connect_write; /* written from on_connect */
    unsigned long long closed_at;
    size_t got;
    char buf[4096];
};

static bool in_connect_call;

static void end_check_thread(struct end *e)
{
    if (!pthread_equal(pthread_self(), reactor_thread))
        e->wrong_thread = true;
}

static void end_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct end *e = arg;

    end_check_thread(e);
    if (e->closes > 0)
        e->after_close = true;
    if (e->client && e->connects == 0)
        e->read_before_connect = true;
    if (len == 0) {
        e->eofs++;
        if (e->close_on_eof)
            mio_conn_close(c);
        return;
    }
    if (e->got + len <= sizeof e->buf)
        memcpy(e->buf + e->got, data, len);
    e->got += len;
    if (e->echo)
        assert_int_equal(mio_conn_write(c, data, len), 0);
}

static void end_on_close(mio_conn *c, int reason, void *arg)
{
    struct end *e = arg;

    (void)c;
    end_check_thread(e);
    e->closes++;
    e->reason = reason;
    e->closed_at = mio_test_now_ms();
}

static void end_on_connect(mio_conn *c, void *arg)
{
    struct end *e = arg;

    end_check_thread(e);
    if (in_connect_call)
        e->connect_inside_call = true;
    if (e->closes > 0)
        e->after_close = true;
    assert_ptr_equal(c, e->c);
    e->connects++;
    if (e->on_connect_write != NULL)
        assert_int_equal(mio_conn_write(c, e->on_connect_write, strlen(e->on_connect_write)), 0);
}

static const mio_conn_ops end_ops = {end_on_read, end_on_close, NULL};

/* mio_conn_connect for e, noting that the call is in progress (on_connect must not run in it). */
static int end_connect(struct end *e, const mio_addr *addr, uint64_t timeout_ms)
{
    int rc;

    e->client = true;
    in_connect_call = true;
    rc = mio_conn_connect(r, addr, &end_ops, end_on_connect, e, timeout_ms, &e->c);
    in_connect_call = false;
    return rc;
}

/* Accepts one connection on lfd (running the reactor meanwhile) and returns its fd. */
static int accept_fd(int lfd, bool unix_sock)
{
    unsigned long long until = mio_test_now_ms() + WAIT_MS;
    int fd;

    for (;;) {
        fd = unix_sock ? mio_unix_listener_accept(lfd, NULL) : mio_tcp_listener_accept(lfd, NULL);
        if (fd != -EAGAIN || mio_test_now_ms() > until)
            break;
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    }
    assert_true(fd >= 0);
    return fd;
}

/* Accepts one connection and opens it as a mio_conn server end on the reactor. */
static void accept_end(int lfd, bool unix_sock, struct end *s)
{
    int fd = accept_fd(lfd, unix_sock);

    assert_int_equal(mio_conn_open(r, fd, &end_ops, s, &s->c), 0);
}

/* Accepts one connection as a plain blocking socket (reads time out after 10 s). */
static int accept_plain(int lfd)
{
    int fd = accept_fd(lfd, false);

    assert_int_equal(mio_set_nonblocking(fd, false), 0);
    set_rcvtimeo(fd, 10000);
    return fd;
}

static void assert_client_clean(const struct end *e)
{
    assert_false(e->connect_inside_call);
    assert_false(e->wrong_thread);
    assert_false(e->read_before_connect);
    assert_false(e->after_close);
}

/* ---- connect to a TCP listener: queued writes, on_connect, echo, close ---- */

static void test_connect_tcp(void **state)
{
    static struct end k, s;
    static const char *parts[] = {"one,", "two,", "three,", "four"};
    const char *expect = "one,two,three,four[connected]";
    mio_addr addr;
    int lfd = tcp_listener(&addr);
    size_t queued = 0;

    (void)state;
    memset(&k, 0, sizeof k);
    memset(&s, 0, sizeof s);
    k.on_connect_write = "[connected]";
    s.echo = true;
    s.close_on_eof = true;
    assert_int_equal(end_connect(&k, &addr, 5000), 0);
    assert_non_null(k.c);
    assert_int_equal(k.connects, 0); /* never inside the call */
    assert_int_equal(mio_conn_fd(k.c) >= 0, 1);
    assert_ptr_equal(mio_conn_reactor(k.c), r);
    /* written before the connection exists: queued, in order, ahead of on_connect's write */
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        assert_int_equal(mio_conn_write(k.c, parts[i], strlen(parts[i])), 0);
        queued += strlen(parts[i]);
    }
    assert_int_equal(mio_conn_pending(k.c), queued);
    accept_end(lfd, false, &s);
    RUN_UNTIL(k.got >= strlen(expect));
    assert_int_equal(k.connects, 1);
    assert_int_equal(k.got, strlen(expect));
    assert_memory_equal(k.buf, expect, strlen(expect));
    assert_int_equal(s.got, strlen(expect));
    /* an ordinary conn now: a write outside callbacks is echoed to on_read */
    assert_int_equal(mio_conn_write(k.c, "ping", 4), 0);
    RUN_UNTIL(k.got >= strlen(expect) + 4);
    assert_memory_equal(k.buf + strlen(expect), "ping", 4);
    /* connected and its queue drained: what only the attempt needed (callback, timeout, queue) is
     * freed, so an idle outbound conn costs what an accepted one does */
    assert_null(k.c->x);
    /* a block that holds a setting stays */
    assert_int_equal(mio_conn_set_watermarks(k.c, 1000, 2000), 0);
    assert_non_null(k.c->x);
    assert_int_equal(mio_conn_write(k.c, "pong", 4), 0);
    RUN_UNTIL(k.got >= strlen(expect) + 8);
    assert_non_null(k.c->x);
    mio_conn_close(k.c);
    assert_int_equal(k.closes, 0);
    RUN_UNTIL(k.closes == 1 && s.closes == 1);
    assert_int_equal(k.reason, 0);
    assert_int_equal(s.reason, 0);
    assert_int_equal(s.eofs, 1);
    run_for(50);
    assert_int_equal(k.connects, 1);
    assert_int_equal(k.closes, 1);
    assert_client_clean(&k);
    assert_false(s.wrong_thread);
    assert_false(s.after_close);
    close(lfd);
}

/* ---- refused: nothing listens on the port ---- */

static void test_connect_refused(void **state)
{
    static struct end k;
    mio_addr addr;
    int hold, rc;

    (void)state;
    memset(&k, 0, sizeof k);
    /* A socket bound to the port but not listening keeps the port ours (no one else can listen
     * there) while a SYN to it meets no listener: RST, a refusal. */
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &addr), 0);
    hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(hold >= 0);
    assert_int_equal(bind(hold, &addr.u.sa, addr.len), 0);
    assert_int_equal(mio_socket_local_addr(hold, &addr), 0);
    rc = end_connect(&k, &addr, 5000);
    if (rc == 0) {
        /* the usual TCP case: the refusal comes later, through on_close */
        assert_int_equal(mio_conn_write(k.c, "dropped", 7), 0); /* queued, then dropped */
        assert_int_equal(k.closes, 0);
        RUN_UNTIL(k.closes > 0);
        assert_int_equal(k.reason, -ECONNREFUSED);
    } else {
        assert_int_equal(rc, -ECONNREFUSED);
    }
    run_for(100);
    assert_int_equal(k.closes, rc == 0 ? 1 : 0);
    assert_int_equal(k.connects, 0);
    assert_client_clean(&k);
    close(hold);
}

/* ---- timeout: a listener whose accept queue is full drops SYNs, so the connect hangs ---- */

struct hang {
    int lfd;
    int probes[16];
    int nprobes;
};

/* Returns true when h holds a listener to which a new connect hangs. */
static bool hang_make(struct hang *h, mio_addr *addr)
{
    assert_int_equal(mio_addr_parse("127.0.0.1:0", addr), 0);
    h->nprobes = 0;
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(h->lfd >= 0);
    assert_int_equal(bind(h->lfd, &addr->u.sa, addr->len), 0);
    assert_int_equal(listen(h->lfd, 0), 0);
    assert_int_equal(mio_socket_local_addr(h->lfd, addr), 0);
    /* Connect probes without accepting until one does not complete within 300 ms. */
    while (h->nprobes < 16) {
        struct pollfd p;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), rc;

        assert_true(fd >= 0);
        h->probes[h->nprobes++] = fd;
        rc = connect(fd, &addr->u.sa, addr->len);
        if (rc == -1 && errno != EINPROGRESS)
            return false;
        p.fd = fd;
        p.events = POLLOUT;
        p.revents = 0;
        rc = poll(&p, 1, 300);
        if (rc == 0)
            return true; /* this SYN was dropped: the queue is full */
        if (rc < 0 || mio_socket_take_error(fd) != 0)
            return false;
    }
    return false;
}

static void hang_free(struct hang *h)
{
    for (int i = 0; i < h->nprobes; i++)
        close(h->probes[i]);
    close(h->lfd);
}

static void close_in_timer(mio_reactor *rr, mio_timer_id id, void *arg)
{
    struct end *e = arg;

    (void)rr;
    (void)id;
    assert_int_equal(e->connects, 0); /* still connecting: the test means something */
    assert_int_equal(e->closes, 0);
    mio_conn_close(e->c);
    assert_int_equal(e->closes, 0); /* not inside the call */
}

static void test_connect_timeout(void **state)
{
    static struct end k, k2;
    struct hang h;
    mio_addr addr;
    unsigned long long t0, elapsed;

    (void)state;
    memset(&k, 0, sizeof k);
    memset(&k2, 0, sizeof k2);
    if (!hang_make(&h, &addr)) {
        hang_free(&h);
        fprintf(stderr, "skip: cannot produce a hanging connect here (the full accept queue of a "
                        "backlog-0 listener did not drop SYNs)\n");
        skip();
    }
    t0 = mio_test_now_ms();
    assert_int_equal(end_connect(&k, &addr, 300), 0);
    assert_int_equal(mio_conn_write(k.c, "never", 5), 0);
    RUN_UNTIL(k.closes > 0);
    elapsed = k.closed_at - t0;
    fprintf(stderr, "connect timeout 300 ms reported after %llu ms\n", elapsed);
    assert_int_equal(k.reason, -ETIMEDOUT);
    assert_true(elapsed >= 250 && elapsed <= 3000);
    run_for(100);
    assert_int_equal(k.closes, 1);
    assert_int_equal(k.connects, 0);
    assert_client_clean(&k);

    /* A later mio_conn_set_deadline replaces the connect timeout (0 clears it): the attempt
     * hangs past 300 ms, and a close in a timer ends it with on_close(0), never on_connect. */
    assert_int_equal(end_connect(&k2, &addr, 300), 0);
    assert_int_equal(mio_conn_set_deadline(k2.c, 0), 0);
    assert_int_equal(mio_reactor_timer_start(r, 600, 0, close_in_timer, &k2, NULL), 0);
    RUN_UNTIL(k2.closes > 0);
    assert_int_equal(k2.reason, 0);
    assert_true(k2.closed_at - t0 >= 600);
    run_for(50);
    assert_int_equal(k2.closes, 1);
    assert_int_equal(k2.connects, 0);
    assert_client_clean(&k2);
    hang_free(&h);
}

/* ---- unix: a listener works; a path nobody listens on fails at once ---- */

static void test_connect_unix(void **state)
{
    static struct end k, s, n;
    char text[128];
    mio_addr addr;
    int lfd, rc;

    (void)state;
    memset(&k, 0, sizeof k);
    memset(&s, 0, sizeof s);
    memset(&n, 0, sizeof n);
    snprintf(text, sizeof text, "unix:/tmp/mio-test-client-%d.sock", (int)getpid());
    assert_int_equal(mio_addr_parse(text, &addr), 0);
    unlink(text + 5);
    lfd = mio_unix_listener_bind(&addr);
    assert_true(lfd >= 0);
    s.echo = true;
    s.close_on_eof = true;
    assert_int_equal(end_connect(&k, &addr, 5000), 0);
    assert_int_equal(k.connects, 0);
    assert_int_equal(mio_conn_write(k.c, "over unix", 9), 0);
    accept_end(lfd, true, &s);
    RUN_UNTIL(k.got >= 9);
    assert_int_equal(k.connects, 1);
    assert_memory_equal(k.buf, "over unix", 9);
    mio_conn_close(k.c);
    RUN_UNTIL(k.closes == 1 && s.closes == 1);
    assert_int_equal(k.reason, 0);
    assert_client_clean(&k);

    /* the socket file stays, nobody listens: refused at once, no callback */
    close(lfd);
    rc = end_connect(&n, &addr, 5000);
    assert_true(rc == -ECONNREFUSED || rc == -ENOENT);
    /* no such path at all */
    unlink(text + 5);
    rc = end_connect(&n, &addr, 5000);
    assert_true(rc == -ECONNREFUSED || rc == -ENOENT);
    run_for(50);
    assert_int_equal(n.closes, 0);
    assert_int_equal(n.connects, 0);
}

/* ---- close while connecting: outside callbacks, inside a timer ---- */

static struct end tk;
static mio_addr task_addr;

static void connect_task(mio_reactor *rr, void *arg)
{
    (void)rr;
    (void)arg;
    assert_int_equal(end_connect(&tk, &task_addr, 5000), 0);
    /* due at the next timer run: in this iteration, before the connect's event is polled */
    assert_int_equal(mio_reactor_timer_start(r, 0, 0, close_in_timer, &tk, NULL), 0);
}

static void test_close_while_connecting(void **state)
{
    static struct end k;
    mio_addr addr;
    int lfd = tcp_listener(&addr), fd;
    char b;

    (void)state;
    memset(&k, 0, sizeof k);
    memset(&tk, 0, sizeof tk);
    /* outside callbacks */
    assert_int_equal(end_connect(&k, &addr, 5000), 0);
    mio_conn_close(k.c);
    mio_conn_close(k.c); /* a second close does nothing */
    assert_int_equal(k.closes, 0);
    assert_int_equal(mio_conn_write(k.c, "x", 1), -EPIPE);
    RUN_UNTIL(k.closes > 0);
    assert_int_equal(k.reason, 0);
    /* the kernel finished the handshake; the peer sees the close */
    fd = accept_plain(lfd);
    assert_true(recv(fd, &b, 1, 0) <= 0);
    close(fd);

    /* inside a timer */
    task_addr = addr;
    assert_int_equal(mio_reactor_post(r, connect_task, NULL), 0);
    RUN_UNTIL(tk.closes > 0);
    assert_int_equal(tk.reason, 0);
    fd = accept_plain(lfd);
    assert_true(recv(fd, &b, 1, 0) <= 0);
    close(fd);
    run_for(100);
    assert_int_equal(k.closes, 1);
    assert_int_equal(tk.closes, 1);
    assert_int_equal(k.connects, 0);
    assert_int_equal(tk.connects, 0);
    assert_client_clean(&k);
    assert_client_clean(&tk);
    close(lfd);
}

/* Runs the reactor until e has closed (at most ms) while reading what the plain peer fd receives
 * (non-blocking) into buf. Returns the bytes read; *eof says whether the peer saw EOF. */
static size_t run_and_drain(struct end *e, int fd, char *buf, size_t cap, unsigned ms, bool *eof)
{
    unsigned long long until = mio_test_now_ms() + ms;
    size_t got = 0;

    *eof = false;
    while (mio_test_now_ms() < until && !(e->closes > 0 && *eof)) {
        ssize_t n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);

        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            *eof = true;
        else
            assert_true(mio_reactor_run_once(r, 2) >= 0);
        if (got == cap)
            got = 0; /* big transfers: count bytes elsewhere, keep reading */
    }
    return got;
}

/* Close while connecting with bytes queued: mio_conn_close flushes then closes, so the peer reads
 * the bytes then EOF; on_close(0) once; the closed conn never gets on_connect. */
static void test_close_while_connecting_queued(void **state)
{
    static struct end k;
    mio_addr addr;
    int lfd = tcp_listener(&addr), fd, closes, connects, reason;
    char buf[16];
    size_t got;
    bool eof;

    (void)state;
    memset(&k, 0, sizeof k);
    assert_int_equal(end_connect(&k, &addr, 5000), 0);
    assert_int_equal(mio_conn_write(k.c, "queued", 6), 0);
    mio_conn_close(k.c);
    assert_int_equal(k.closes, 0);
    fd = accept_plain(lfd);
    got = run_and_drain(&k, fd, buf, sizeof buf, 3000, &eof);
    run_for(50);
    closes = k.closes;
    connects = k.connects;
    reason = k.reason;
    fprintf(stderr, "closed while connecting with 6 bytes queued: peer got %zu bytes%s, "
            "on_close ran %d time(s), on_connect %d time(s), pending %zu\n", got,
            eof ? " then EOF" : " and no EOF", closes, connects,
            closes == 0 ? mio_conn_pending(k.c) : 0);
    close(fd);
    close(lfd);
    assert_int_equal(closes, 1);
    assert_int_equal(reason, 0);
    assert_true(eof);
    assert_int_equal(got, 6);
    assert_memory_equal(buf, "queued", 6);
    assert_int_equal(connects, 0);
    assert_client_clean(&k);
}

/* More bytes written while connecting than the high mark (1 MiB by default): reading pauses, and
 * the whole queue still goes out once connected; then a close flushes and ends with EOF. */
#define CONNECT_BIG (2u << 20)

static void test_connect_big_queue(void **state)
{
    static struct end k;
    char *big = calloc(1, CONNECT_BIG);
    mio_addr addr;
    int lfd = tcp_listener(&addr), fd, connects;
    size_t total = 0;
    bool eof = false;

    (void)state;
    assert_non_null(big);
    memset(&k, 0, sizeof k);
    assert_int_equal(end_connect(&k, &addr, 5000), 0);
    assert_int_equal(mio_conn_write(k.c, big, CONNECT_BIG), 0);
    assert_int_equal(mio_conn_pending(k.c), CONNECT_BIG);
    fd = accept_plain(lfd);
    {
        unsigned long long until = mio_test_now_ms() + 3000;

        while (total < CONNECT_BIG && mio_test_now_ms() < until) {
            ssize_t n = recv(fd, big, CONNECT_BIG, MSG_DONTWAIT);

            if (n > 0)
                total += (size_t)n;
            else
                assert_true(mio_reactor_run_once(r, 2) >= 0);
        }
    }
    connects = k.connects;
    fprintf(stderr, "connect with %u bytes queued: peer got %zu, on_connect %d, pending %zu\n",
            CONNECT_BIG, total, connects, k.closes == 0 ? mio_conn_pending(k.c) : 0);
    if (total == CONNECT_BIG) {
        mio_conn_close(k.c);
        (void)run_and_drain(&k, fd, big, CONNECT_BIG, 3000, &eof);
    }
    close(fd);
    close(lfd);
    free(big);
    assert_int_equal(connects, 1);
    assert_int_equal(total, CONNECT_BIG);
    assert_true(eof);
    assert_int_equal(k.closes, 1);
    assert_int_equal(k.reason, 0);
    assert_client_clean(&k);
}

/* ---- shutdown requested while connecting: bytes, then FIN; reading goes on ---- */

static void test_shutdown_while_connecting(void **state)
{
    static struct end k, k2;
    mio_addr addr;
    int lfd = tcp_listener(&addr), fd, fd2;
    char buf[32];
    size_t got = 0;
    ssize_t n;

    (void)state;
    memset(&k, 0, sizeof k);
    memset(&k2, 0, sizeof k2);
    assert_int_equal(end_connect(&k, &addr, 5000), 0);
    assert_int_equal(mio_conn_write(k.c, "hello ", 6), 0);
    assert_int_equal(mio_conn_write(k.c, "world", 5), 0);
    assert_int_equal(mio_conn_shutdown(k.c), 0);
    assert_int_equal(mio_conn_write(k.c, "late", 4), -EPIPE);
    fd = accept_plain(lfd);
    set_rcvtimeo(fd, 50);
    {
        unsigned long long until = mio_test_now_ms() + WAIT_MS;

        for (;;) {
            n = recv(fd, buf + got, sizeof buf - got, 0);
            if (n > 0)
                got += (size_t)n;
            else if (n == 0 || mio_test_now_ms() > until)
                break;
            assert_true(mio_reactor_run_once(r, 5) >= 0);
        }
    }
    assert_int_equal(n, 0); /* EOF after the bytes */
    assert_int_equal(got, 11);
    assert_memory_equal(buf, "hello world", 11);
    assert_int_equal(k.connects, 1);
    assert_int_equal(k.closes, 0);
    /* half-closed only: reading goes on */
    assert_int_equal(send(fd, "back", 4, 0), 4);
    RUN_UNTIL(k.got == 4);
    assert_memory_equal(k.buf, "back", 4);
    mio_conn_close(k.c);
    RUN_UNTIL(k.closes == 1);
    assert_int_equal(k.reason, 0);
    assert_client_clean(&k);

    /* nothing queued: the FIN alone */
    assert_int_equal(end_connect(&k2, &addr, 5000), 0);
    assert_int_equal(mio_conn_shutdown(k2.c), 0);
    fd2 = accept_plain(lfd);
    set_rcvtimeo(fd2, 50);
    {
        unsigned long long until = mio_test_now_ms() + WAIT_MS;

        while ((n = recv(fd2, buf, sizeof buf, 0)) < 0 && mio_test_now_ms() < until)
            assert_true(mio_reactor_run_once(r, 5) >= 0);
    }
    assert_int_equal(n, 0);
    assert_int_equal(k2.connects, 1);
    mio_conn_close(k2.c);
    RUN_UNTIL(k2.closes == 1);
    assert_int_equal(k2.reason, 0);
    assert_client_clean(&k2);
    close(fd);
    close(fd2);
    close(lfd);
}

/* ---- bad arguments ---- */

static void test_connect_bad_args(void **state)
{
    static const mio_conn_ops no_read = {NULL, end_on_close, NULL};
    static struct end k;
    mio_conn *c = NULL;
    mio_addr addr;
    int lfd = tcp_listener(&addr);

    (void)state;
    memset(&k, 0, sizeof k);
    assert_int_equal(mio_conn_connect(NULL, &addr, &end_ops, end_on_connect, &k, 0, &c), -EINVAL);
    assert_int_equal(mio_conn_connect(r, NULL, &end_ops, end_on_connect, &k, 0, &c), -EINVAL);
    assert_int_equal(mio_conn_connect(r, &addr, NULL, end_on_connect, &k, 0, &c), -EINVAL);
    assert_int_equal(mio_conn_connect(r, &addr, &no_read, end_on_connect, &k, 0, &c), -EINVAL);
    assert_null(c);
    run_for(50);
    assert_int_equal(k.closes, 0);
    assert_int_equal(k.connects, 0);
    /* on_connect and out may be NULL */
    k.close_on_eof = true;
    assert_int_equal(mio_conn_connect(r, &addr, &end_ops, NULL, &k, 0, NULL), 0);
    {
        int fd = accept_plain(lfd);

        close(fd);
    }
    RUN_UNTIL(k.closes == 1); /* the peer went away: EOF, then our close */
    assert_int_equal(k.reason, 0);
    assert_int_equal(k.eofs, 1);
    close(lfd);
}

/* ================================================================ handles */

/* A connected pair: *peer is a plain blocking socket (reads time out after 10 s), and the other
 * end is opened as a mio_conn on the reactor into *e. */
static void open_pair(int lfd, const mio_addr *addr, struct end *e, int *peer)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), s;

    assert_true(c >= 0);
    assert_int_equal(connect(c, &addr->u.sa, addr->len), 0);
    set_rcvtimeo(c, 10000);
    s = accept_fd(lfd, false);
    assert_int_equal(mio_conn_open(r, s, &end_ops, e, &e->c), 0);
    *peer = c;
}

/* Reads exactly len bytes from fd (blocking, with its receive timeout) while nobody runs the
 * reactor. Returns the count read. */
static size_t read_full(int fd, char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);

        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* Asserts that nothing arrives on fd within ms (while the reactor runs). */
static void expect_silence(int fd, unsigned ms)
{
    unsigned long long until = mio_test_now_ms() + ms;
    char b;

    while (mio_test_now_ms() < until) {
        ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);

        if (n > 0)
            fprintf(stderr, "unexpected byte 0x%02x\n", (unsigned char)b);
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    }
}

/* ---- two threads write numbered messages through one handle: per-thread order ---- */

#define NMSG 20000
#define MSG_LEN 9 /* "A0001234\n" */

struct hsender {
    mio_conn_handle h;
    char id;
    int err;
    unsigned long eagain;
};

static void *hsender_main(void *arg)
{
    struct hsender *s = arg;
    unsigned long long until = mio_test_now_ms() + WAIT_MS;
    char msg[MSG_LEN + 1];

    for (int i = 0; i < NMSG; i++) {
        int rc;

        snprintf(msg, sizeof msg, "%c%07d\n", s->id, i);
        while ((rc = mio_conn_handle_write(s->h, msg, MSG_LEN)) == -EAGAIN &&
               mio_test_now_ms() < until) {
            s->eagain++;
            sched_yield();
        }
        if (rc != 0) {
            s->err = rc;
            return NULL;
        }
    }
    return NULL;
}

struct hreader {
    int fd;
    long next[2];
    long records, bad;
    atomic_bool done;
};

static void *hreader_main(void *arg)
{
    struct hreader *rd = arg;
    char buf[MSG_LEN * 512];
    size_t have = 0;

    while (rd->records < 2L * NMSG) {
        ssize_t n = recv(rd->fd, buf + have, sizeof buf - have, 0);
        size_t off = 0;

        if (n <= 0)
            break;
        have += (size_t)n;
        for (; have - off >= MSG_LEN; off += MSG_LEN) {
            const char *m = buf + off;
            int who = m[0] - 'A';
            long seq = strtol(m + 1, NULL, 10);

            if ((who != 0 && who != 1) || m[MSG_LEN - 1] != '\n' || seq != rd->next[who]) {
                if (rd->bad++ < 5)
                    fprintf(stderr, "out of order: %.8s (expected %c%07ld)\n", m,
                            who == 1 ? 'B' : 'A', rd->next[who == 1]);
                if (who == 0 || who == 1)
                    rd->next[who] = seq;
            }
            if (who == 0 || who == 1)
                rd->next[who]++;
            rd->records++;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    /* publishes the counters to the main thread, which joins afterwards anyway */
    atomic_store(&rd->done, true);
    return NULL;
}

static void test_handle_write_threads(void **state)
{
    static struct end e;
    struct hsender s[2] = {{.id = 'A'}, {.id = 'B'}};
    struct hreader rd = {0};
    struct mio_reactor_stats st;
    pthread_t ts[2], tr;
    mio_addr addr;
    int lfd = tcp_listener(&addr), peer;

    (void)state;
    memset(&e, 0, sizeof e);
    open_pair(lfd, &addr, &e, &peer);
    rd.fd = peer;
    atomic_init(&rd.done, false);
    for (int i = 0; i < 2; i++) {
        s[i].h = mio_conn_handle_get(e.c);
        assert_ptr_equal(s[i].h.reactor, r);
        assert_true(s[i].h.token != 0);
    }
    assert_int_equal(pthread_create(&tr, NULL, hreader_main, &rd), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&ts[i], NULL, hsender_main, &s[i]), 0);
    RUN_UNTIL(atomic_load(&rd.done));
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(ts[i], NULL), 0);
    assert_int_equal(pthread_join(tr, NULL), 0);
    assert_int_equal(mio_reactor_stats(r, &st), 0);
    fprintf(stderr,
            "handle writes: %d msgs x 2 threads, tasks_run %llu, wakes performed %llu, elided "
            "%llu, EAGAIN retries %lu+%lu\n",
            NMSG, (unsigned long long)st.tasks_run, (unsigned long long)st.wakes_performed,
            (unsigned long long)st.wakes_elided, s[0].eagain, s[1].eagain);
    assert_int_equal(s[0].err, 0);
    assert_int_equal(s[1].err, 0);
    assert_int_equal(rd.bad, 0);
    assert_int_equal(rd.records, 2L * NMSG);
    assert_int_equal(rd.next[0], NMSG);
    assert_int_equal(rd.next[1], NMSG);
    assert_int_equal(e.got, 0);
    mio_conn_close(e.c);
    RUN_UNTIL(e.closes == 1);
    close(peer);
    close(lfd);
}

/* ---- handle_call: on the reactor's thread, with the conn; NULL once it is gone ---- */

struct callrec {
    atomic_int runs;
    mio_conn *seen;
    bool seen_null;
    bool wrong_thread;
};

static void record_call(mio_conn *c, void *arg)
{
    struct callrec *cr = arg;

    if (!pthread_equal(pthread_self(), reactor_thread))
        cr->wrong_thread = true;
    cr->seen = c;
    cr->seen_null = c == NULL;
    atomic_fetch_add(&cr->runs, 1);
}

/* What a thread does through a handle: a call, then optionally a write and a close. */
struct hjob {
    mio_conn_handle h;
    struct callrec *cr;
    const char *write;
    bool close;
    int rc_call, rc_write, rc_close;
};

static void *hjob_main(void *arg)
{
    struct hjob *j = arg;

    if (j->cr != NULL)
        j->rc_call = mio_conn_handle_call(j->h, record_call, j->cr);
    if (j->write != NULL)
        j->rc_write = mio_conn_handle_write(j->h, j->write, strlen(j->write));
    if (j->close)
        j->rc_close = mio_conn_handle_close(j->h);
    return NULL;
}

static void run_job(struct hjob *j)
{
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, hjob_main, j), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(j->rc_call, 0);
    assert_int_equal(j->rc_write, 0);
    assert_int_equal(j->rc_close, 0);
}

static void test_handle_call(void **state)
{
    static struct end e, other;
    struct callrec cr;
    struct hjob j;
    mio_addr addr;
    int lfd = tcp_listener(&addr), peer, opeer;
    char buf[16];
    mio_conn_handle h;

    (void)state;
    memset(&e, 0, sizeof e);
    memset(&other, 0, sizeof other);
    open_pair(lfd, &addr, &e, &peer);
    open_pair(lfd, &addr, &other, &opeer);
    h = mio_conn_handle_get(e.c);

    /* live: fn runs on the reactor's thread with the conn; a write arrives; */
    memset(&cr, 0, sizeof cr);
    atomic_init(&cr.runs, 0);
    j = (struct hjob){.h = h, .cr = &cr, .write = "live"};
    run_job(&j);
    assert_int_equal(atomic_load(&cr.runs), 0); /* runs as a task, not in the caller */
    RUN_UNTIL(atomic_load(&cr.runs) == 1);
    assert_ptr_equal(cr.seen, e.c);
    assert_false(cr.wrong_thread);
    assert_int_equal(read_full(peer, buf, 4), 4);
    assert_memory_equal(buf, "live", 4);

    /* closed: a call gets NULL, a write goes nowhere, a close is harmless */
    mio_conn_close(e.c);
    RUN_UNTIL(e.closes == 1);
    assert_int_equal(recv(peer, buf, sizeof buf, 0), 0); /* EOF, nothing before it */
    memset(&cr, 0, sizeof cr);
    atomic_init(&cr.runs, 0);
    j = (struct hjob){.h = h, .cr = &cr, .write = "dropped", .close = true};
    run_job(&j);
    RUN_UNTIL(atomic_load(&cr.runs) == 1);
    assert_true(cr.seen_null);
    assert_false(cr.wrong_thread);
    run_for(100);
    assert_int_equal(e.closes, 1);
    assert_int_equal(recv(peer, buf, sizeof buf, MSG_DONTWAIT), 0); /* still just EOF */
    expect_silence(opeer, 50);
    assert_int_equal(other.closes, 0);
    assert_int_equal(other.got, 0);
    /* the other conn still works through its own handle */
    j = (struct hjob){.h = mio_conn_handle_get(other.c), .write = "other"};
    run_job(&j);
    run_for(20);
    assert_int_equal(read_full(opeer, buf, 5), 5);
    assert_memory_equal(buf, "other", 5);
    /* and a close through a handle closes it */
    j = (struct hjob){.h = mio_conn_handle_get(other.c), .close = true};
    run_job(&j);
    RUN_UNTIL(other.closes == 1);
    assert_int_equal(other.reason, 0);
    close(peer);
    close(opeer);
    close(lfd);
}

/* A closing conn (closed, still flushing its queue) counts as gone for handles: the call gets
 * NULL, the write is dropped, and the peer gets exactly what was queued before the close. */
#define FLUSH_BYTES (4u << 20)

static void test_handle_call_closing(void **state)
{
    static struct end e;
    struct callrec cr;
    struct hjob j;
    mio_addr addr;
    int lfd = tcp_listener(&addr), peer, small = 16 * 1024;
    char *big = calloc(1, FLUSH_BYTES);
    size_t got = 0;
    ssize_t n;
    bool seen_null;

    (void)state;
    assert_non_null(big);
    memset(&e, 0, sizeof e);
    memset(&cr, 0, sizeof cr);
    atomic_init(&cr.runs, 0);
    open_pair(lfd, &addr, &e, &peer);
    assert_int_equal(setsockopt(mio_conn_fd(e.c), SOL_SOCKET, SO_SNDBUF, &small, sizeof small),
                     0);
    assert_int_equal(mio_conn_write(e.c, big, FLUSH_BYTES), 0);
    assert_true(mio_conn_pending(e.c) > 0); /* the peer does not read yet */
    mio_conn_close(e.c);
    run_for(20);
    assert_int_equal(e.closes, 0); /* closing: still flushing */
    j = (struct hjob){.h = mio_conn_handle_get(e.c), .cr = &cr, .write = "Z"};
    run_job(&j);
    RUN_UNTIL(atomic_load(&cr.runs) == 1);
    assert_int_equal(e.closes, 0); /* the call came while the conn was closing */
    if (!cr.seen_null)
        fprintf(stderr, "handle_call on a closing conn got the conn, not NULL\n");
    seen_null = cr.seen_null; /* asserted once everything is closed */
    /* drain: exactly the queued bytes, then EOF */
    set_rcvtimeo(peer, 20);
    {
        unsigned long long until = mio_test_now_ms() + WAIT_MS;

        for (;;) {
            n = recv(peer, big, FLUSH_BYTES, 0);
            if (n > 0)
                got += (size_t)n;
            else if (n == 0 || mio_test_now_ms() > until)
                break;
            assert_true(mio_reactor_run_once(r, 1) >= 0);
        }
    }
    assert_int_equal(n, 0);
    assert_int_equal(got, FLUSH_BYTES);
    RUN_UNTIL(e.closes == 1);
    assert_int_equal(e.reason, 0);
    free(big);
    close(peer);
    close(lfd);
    assert_true(seen_null);
}

/* ---- slot reuse: a stale handle never reaches the slot's new conn ---- */

static void test_handle_slot_reuse(void **state)
{
    static struct end a, b;
    struct callrec cr;
    struct hjob j;
    mio_addr addr;
    int lfd = tcp_listener(&addr), pa, pb;
    mio_conn_handle ha, hb;
    char buf[16];

    (void)state;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&cr, 0, sizeof cr);
    atomic_init(&cr.runs, 0);
    open_pair(lfd, &addr, &a, &pa);
    ha = mio_conn_handle_get(a.c);
    mio_conn_close(a.c);
    RUN_UNTIL(a.closes == 1);
    open_pair(lfd, &addr, &b, &pb); /* right after A's on_close: takes A's slot */
    hb = mio_conn_handle_get(b.c);
    fprintf(stderr, "handle A %#llx, handle B %#llx\n", (unsigned long long)ha.token,
            (unsigned long long)hb.token);
    assert_int_equal((uint32_t)ha.token, (uint32_t)hb.token); /* same slot */
    assert_true(ha.token != hb.token);                       /* another generation */
    /* through A's old handle: the call sees NULL, the write and the close never reach B */
    j = (struct hjob){.h = ha, .cr = &cr, .write = "stale", .close = true};
    run_job(&j);
    RUN_UNTIL(atomic_load(&cr.runs) == 1);
    assert_true(cr.seen_null);
    /* then a write through B's handle from a thread: the stale one, posted first, would have
     * arrived before it */
    j = (struct hjob){.h = hb, .write = "fresh"};
    run_job(&j);
    run_for(50);
    assert_int_equal(b.closes, 0);
    assert_int_equal(read_full(pb, buf, 5), 5);
    assert_memory_equal(buf, "fresh", 5);
    expect_silence(pb, 50);
    mio_conn_close(b.c);
    RUN_UNTIL(b.closes == 1);
    close(pa);
    close(pb);
    close(lfd);
}

/* ---- handles of a pool's conns: broadcast from a thread to every client on both workers ---- */

#define NCLI 8

struct bslot {
    mio_conn_handle h; /* under bc.mu, valid once ready */
    bool ready;
    atomic_bool closed;
};

struct bcast {
    pthread_mutex_t mu;
    struct bslot slots[NCLI];
    int reserved, n; /* under mu: slots taken, slots ready */
    atomic_int closes, calls_null, calls_live;
    bool wrong_reason;
};

static struct bcast bc;

static void pool_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)data;
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
}

static void pool_on_close(mio_conn *c, int reason, void *arg)
{
    struct bslot *s = arg;

    (void)c;
    if (reason != 0)
        bc.wrong_reason = true; /* read by the owner after the pool stopped */
    atomic_store(&s->closed, true);
    atomic_fetch_add(&bc.closes, 1);
}

static const mio_conn_ops pool_ops = {pool_on_read, pool_on_close, NULL};

static void pool_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    struct bslot *s = NULL;
    mio_conn *c;

    (void)peer;
    (void)arg;
    /* both workers accept at once: each takes its own slot under the lock */
    pthread_mutex_lock(&bc.mu);
    if (bc.reserved < NCLI)
        s = &bc.slots[bc.reserved++];
    pthread_mutex_unlock(&bc.mu);
    if (s == NULL || mio_conn_open(worker, fd, &pool_ops, s, &c) < 0) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&bc.mu);
    s->h = mio_conn_handle_get(c);
    s->ready = true;
    bc.n++;
    pthread_mutex_unlock(&bc.mu);
}

static void count_call(mio_conn *c, void *arg)
{
    (void)arg;
    atomic_fetch_add(c == NULL ? &bc.calls_null : &bc.calls_live, 1);
}

struct bjob {
    const char *msg;
    bool call;
    int errors;
};

static void *broadcast_main(void *arg)
{
    struct bjob *j = arg;

    pthread_mutex_lock(&bc.mu);
    for (int i = 0; i < NCLI; i++) {
        if (!bc.slots[i].ready)
            continue;
        if (mio_conn_handle_write(bc.slots[i].h, j->msg, strlen(j->msg)) != 0)
            j->errors++;
        if (j->call && mio_conn_handle_call(bc.slots[i].h, count_call, NULL) != 0)
            j->errors++;
        if (j->call && mio_conn_handle_close(bc.slots[i].h) != 0)
            j->errors++;
    }
    pthread_mutex_unlock(&bc.mu);
    return NULL;
}

static void run_broadcast(struct bjob *j)
{
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, broadcast_main, j), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(j->errors, 0);
}

static int bc_count(void)
{
    int n;

    pthread_mutex_lock(&bc.mu);
    n = bc.n;
    pthread_mutex_unlock(&bc.mu);
    return n;
}

static void wait_for(atomic_int *v, int want)
{
    unsigned long long until = mio_test_now_ms() + WAIT_MS;

    while (atomic_load(v) < want && mio_test_now_ms() < until)
        sleep_ms(1);
    assert_int_equal(atomic_load(v), want);
}

static void test_handle_pool_broadcast(void **state)
{
    static const char msg[] = "hello everyone\n";
    mio_pool_opts o = {.workers = 2};
    mio_pool *pool;
    mio_addr addr;
    int cli[NCLI];
    mio_reactor *seen[2] = {NULL, NULL};
    struct bjob j1 = {.msg = msg}, j2 = {.msg = "lost\n", .call = true};
    char buf[64];

    (void)state;
    memset(&bc, 0, sizeof bc);
    assert_int_equal(pthread_mutex_init(&bc.mu, NULL), 0);
    atomic_init(&bc.closes, 0);
    atomic_init(&bc.calls_null, 0);
    atomic_init(&bc.calls_live, 0);
    for (int i = 0; i < NCLI; i++)
        atomic_init(&bc.slots[i].closed, false);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &addr), 0);
    assert_int_equal(mio_pool_new(&o, &pool), 0);
    assert_int_equal(mio_pool_listen(pool, &addr, pool_accept, NULL), 0);
    assert_int_equal(mio_pool_local_addr(pool, 0, &addr), 0);
    assert_int_equal(mio_pool_start(pool), 0);
    for (int i = 0; i < NCLI; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(cli[i] >= 0);
        assert_int_equal(connect(cli[i], &addr.u.sa, addr.len), 0);
        set_rcvtimeo(cli[i], 10000);
    }
    {
        unsigned long long until = mio_test_now_ms() + WAIT_MS;

        while (bc_count() < NCLI && mio_test_now_ms() < until)
            sleep_ms(1);
    }
    assert_int_equal(bc_count(), NCLI);
    /* the conns live on both workers */
    pthread_mutex_lock(&bc.mu);
    for (int i = 0; i < NCLI; i++)
        for (unsigned w = 0; w < 2; w++)
            if (bc.slots[i].h.reactor == mio_pool_worker(pool, w))
                seen[w] = mio_pool_worker(pool, w);
    pthread_mutex_unlock(&bc.mu);
    assert_non_null(seen[0]);
    assert_non_null(seen[1]);

    run_broadcast(&j1);
    for (int i = 0; i < NCLI; i++) {
        assert_int_equal(read_full(cli[i], buf, strlen(msg)), strlen(msg));
        assert_memory_equal(buf, msg, strlen(msg));
    }
    for (unsigned w = 0; w < 2; w++) {
        struct mio_reactor_stats st;

        assert_int_equal(mio_reactor_stats(mio_pool_worker(pool, w), &st), 0);
        fprintf(stderr, "pool worker %u: tasks_run %llu, wakes performed %llu, elided %llu\n", w,
                (unsigned long long)st.tasks_run, (unsigned long long)st.wakes_performed,
                (unsigned long long)st.wakes_elided);
    }
    /* clients leave; the handles go stale; writes, calls and closes through them are dropped */
    for (int i = 0; i < NCLI; i++)
        close(cli[i]);
    wait_for(&bc.closes, NCLI);
    run_broadcast(&j2);
    wait_for(&bc.calls_null, NCLI);
    sleep_ms(50);
    assert_int_equal(atomic_load(&bc.calls_live), 0);
    assert_int_equal(atomic_load(&bc.closes), NCLI);
    assert_int_equal(mio_pool_stop(pool, 1000), 0);
    mio_pool_free(pool);
    assert_false(bc.wrong_reason);
    pthread_mutex_destroy(&bc.mu);
}

/* ---- bad handles ---- */

static void never_call(mio_conn *c, void *arg)
{
    (void)c;
    (void)arg;
    fail_msg("a refused call ran");
}

static void test_handle_bad(void **state)
{
    static struct end e;
    mio_conn_handle zero = mio_conn_handle_get(NULL), h;
    mio_conn_handle no_token = {.reactor = NULL, .token = 0};
    mio_addr addr;
    int lfd = tcp_listener(&addr), peer;

    (void)state;
    memset(&e, 0, sizeof e);
    assert_null(zero.reactor);
    assert_int_equal(zero.token, 0);
    assert_int_equal(mio_conn_handle_call(zero, never_call, NULL), -EINVAL);
    assert_int_equal(mio_conn_handle_write(zero, "x", 1), -EINVAL);
    assert_int_equal(mio_conn_handle_write(zero, "", 0), -EINVAL);
    assert_int_equal(mio_conn_handle_close(zero), -EINVAL);
    no_token.reactor = r; /* a reactor but token 0 */
    assert_int_equal(mio_conn_handle_call(no_token, never_call, NULL), -EINVAL);
    assert_int_equal(mio_conn_handle_write(no_token, "x", 1), -EINVAL);
    assert_int_equal(mio_conn_handle_close(no_token), -EINVAL);
    open_pair(lfd, &addr, &e, &peer);
    h = mio_conn_handle_get(e.c);
    assert_int_equal(mio_conn_handle_call(h, NULL, NULL), -EINVAL);
    assert_int_equal(mio_conn_handle_write(h, NULL, 3), -EINVAL);
    assert_int_equal(mio_conn_handle_write(h, "", 0), 0);
    run_for(50);
    expect_silence(peer, 20);
    assert_int_equal(e.closes, 0);
    mio_conn_close(e.c);
    RUN_UNTIL(e.closes == 1);
    close(peer);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_unix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_connecting_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_big_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_write_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_call_closing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_slot_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_pool_broadcast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_bad, setup, teardown),
    };

    mio_test_watchdog(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
