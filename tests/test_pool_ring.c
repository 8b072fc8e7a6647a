/* The acceptor's hand-off wakes on the io_uring backend: a worker asleep in its ring's wait is
 * woken by a ring message (IORING_OP_MSG_RING) the acceptor's own wait submits, not by an
 * eventfd write. Checked: every connection served with wakes_ring counting the wakes and no
 * eventfd written; a message the kernel fails (injected, see FAULT_URING_WAKE) falls back to the
 * eventfd and loses no connection; a stop with connections in flight leaks no fd, ring or
 * allocation; on epoll, nothing goes by ring. Real threads, loopback TCP clients with receive
 * timeouts, so a lost wake fails a test instead of hanging it.
 *
 * Exits 77 (skip) where io_uring or its ring messages cannot run. Built as a fault binary
 * (tests/fault.h): the library is linked with the wrappers. */
#include <errno.h>
#include <pthread.h>
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
#include "fault.h"
#include "internal/reactor_int.h"
#include "internal/uring.h"

#define WORKERS 2u
#define CONNS 100 /* one at a time: the workers fall asleep between them */
#define MSG_LEN 64u

static atomic_int n_accepted, n_closed;

static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
    else
        (void)mio_conn_write(c, data, len);
}

static void echo_close(mio_conn *c, int reason, void *arg)
{
    (void)c, (void)reason, (void)arg;
    atomic_fetch_add(&n_closed, 1);
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void on_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    (void)peer, (void)arg;
    atomic_fetch_add(&n_accepted, 1);
    if (mio_conn_open(w, fd, &echo_ops, NULL, NULL) < 0)
        close(fd);
}

static mio_pool *pool_up_mode(int backend, int mode, mio_addr *a)
{
    mio_pool_opts o = {.workers = WORKERS, .mode = mode, .backend = backend};
    mio_pool *p;

    atomic_store(&n_accepted, 0);
    atomic_store(&n_closed, 0);
    assert_int_equal(mio_pool_new(&o, &p), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", a), 0);
    assert_int_equal(mio_pool_listen(p, a, on_accept, NULL), 0);
    assert_int_equal(mio_pool_local_addr(p, 0, a), 0);
    assert_int_equal(mio_pool_start(p), 0);
    return p;
}

static mio_pool *pool_up(int backend, mio_addr *a)
{
    return pool_up_mode(backend, MIO_POOL_ACCEPTOR, a);
}

/* A connected client with 5 s send and receive timeouts, or -errno. */
static int client_connect(const mio_addr *a)
{
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, &a->u.sa, a->len) != 0) {
        int err = -errno;

        close(fd);
        return err;
    }
    return fd;
}

/* One connection served: MSG_LEN bytes echoed back (within the timeout). Returns 0 or -errno
 * (-ETIMEDOUT: nobody served it, e.g. a worker never woken). */
static int client_echo(const mio_addr *a, unsigned seed)
{
    unsigned char out[MSG_LEN], in[MSG_LEN];
    size_t got = 0;
    int fd = client_connect(a), rc = 0;

    if (fd < 0)
        return fd;
    for (unsigned i = 0; i < MSG_LEN; i++)
        out[i] = (unsigned char)(seed * 31u + i);
    if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t)sizeof out)
        rc = -errno;
    while (rc == 0 && got < sizeof in) {
        ssize_t k = recv(fd, in + got, sizeof in - got, 0);

        if (k <= 0)
            rc = k == 0 ? -ECONNRESET : (errno == EAGAIN ? -ETIMEDOUT : -errno);
        else
            got += (size_t)k;
    }
    if (rc == 0 && memcmp(in, out, sizeof in) != 0)
        rc = -EPROTO;
    close(fd);
    return rc;
}

/* Until the server has closed every conn it accepted (the last client's FIN handled: it would
 * wake its worker again) and every worker is asleep in its wait (SLEEPING published, no wake
 * claimed). */
static void wait_all_asleep(mio_pool *p)
{
    unsigned long long until = mio_test_now_ms() + 5000;

    while (atomic_load(&n_closed) < atomic_load(&n_accepted) && mio_test_now_ms() < until)
        usleep(200);
    assert_int_equal(atomic_load(&n_closed), atomic_load(&n_accepted));

    for (unsigned i = 0; i < WORKERS; i++) {
        while (mio__reactor_awake(mio_pool_worker(p, i)) && mio_test_now_ms() < until)
            usleep(200);
        assert_false(mio__reactor_awake(mio_pool_worker(p, i)));
    }
}

/* The pool's wake counters and the workers' eventfd writes, summed over the workers. */
struct wakes {
    uint64_t performed, elided, ring, eventfd, handed_off;
};

static void wakes_read(mio_pool *p, struct wakes *w)
{
    memset(w, 0, sizeof *w);
    for (unsigned i = 0; i < WORKERS; i++) {
        struct mio_reactor_stats rs;
        mio_worker_stats ws;

        assert_int_equal(mio_pool_stats(p, i, &ws), 0);
        assert_int_equal(mio_reactor_stats(mio_pool_worker(p, i), &rs), 0);
        w->performed += ws.wakes_performed;
        w->elided += ws.wakes_elided;
        w->ring += ws.wakes_ring;
        w->handed_off += ws.handed_off;
        w->eventfd += rs.wakes_performed; /* the reactor counts eventfd writes only */
    }
}

/* wakes_read once the acceptor has delivered the failed ring wakes by eventfd: want of them in
 * all (the count of eventfd writes). A connection can be served before that (its worker woken by
 * something else: the last connection's close), so the counters are read once they settle. */
static void wakes_settled(mio_pool *p, uint64_t want, struct wakes *w)
{
    unsigned long long until = mio_test_now_ms() + 5000;

    do
        wakes_read(p, w);
    while (w->eventfd < want && mio_test_now_ms() < until && usleep(1000) == 0);
}

/* CONNS connections one after the other, each echoed, with the workers asleep before each. */
static void serve_one_by_one(mio_pool *p, const mio_addr *a)
{
    for (int i = 0; i < CONNS; i++) {
        int rc;

        wait_all_asleep(p);
        rc = client_echo(a, (unsigned)i);
        if (rc != 0)
            fail_msg("connection %d of %d not served (%s)", i + 1, CONNS, mio_strerror(rc));
    }
}

static void pool_down(mio_pool *p)
{
    unsigned long long until = mio_test_now_ms() + 5000;

    while (atomic_load(&n_closed) < atomic_load(&n_accepted) && mio_test_now_ms() < until)
        usleep(1000);
    assert_int_equal(mio_pool_stop(p, 1000), 0);
    mio_pool_free(p);
}

/* (a) Workers asleep in their rings' waits are woken by ring messages only. */
static void test_ring_wakes(void **state)
{
    struct wakes w;
    mio_addr a;
    mio_pool *p;

    (void)state;
    p = pool_up(MIO_BACKEND_IO_URING, &a);
    for (unsigned i = 0; i < WORKERS; i++)
        assert_int_equal(mio_reactor_backend(mio_pool_worker(p, i)), MIO_BACKEND_IO_URING);
    serve_one_by_one(p, &a);
    wakes_read(p, &w);
    print_message("ring wakes: %d conns, handed off %llu, wakes performed %llu (by ring %llu), "
                  "elided %llu, eventfd writes %llu\n",
                  CONNS, (unsigned long long)w.handed_off, (unsigned long long)w.performed,
                  (unsigned long long)w.ring, (unsigned long long)w.elided,
                  (unsigned long long)w.eventfd);
    assert_int_equal(w.handed_off, CONNS);
    assert_int_equal(atomic_load(&n_accepted), CONNS);
    /* every connection found the workers asleep: each needed a wake */
    assert_int_equal(w.performed, CONNS);
    assert_int_equal(w.ring, w.performed);
    assert_int_equal(w.eventfd, 0);
    assert_int_equal(fault_hits(FAULT_URING_WAKE), 0);
    pool_down(p);
}

/* (b) Ring messages that the kernel fails: each wake falls back to the eventfd, no connection is
 * lost (a lost wake would leave its worker asleep, and the client would time out). */
static void test_ring_wake_fails(void **state)
{
    struct wakes w;
    mio_addr a;
    mio_pool *p;

    (void)state;
    p = pool_up(MIO_BACKEND_IO_URING, &a);
    fault_arm(FAULT_URING_WAKE, 0, -1, EBADF, -1); /* every one */
    serve_one_by_one(p, &a);
    fault_disarm(FAULT_URING_WAKE);
    wakes_settled(p, (uint64_t)fault_hits(FAULT_URING_WAKE), &w);
    print_message("failed ring wakes: %ld injected, wakes performed %llu (by ring %llu), "
                  "eventfd writes %llu\n",
                  fault_hits(FAULT_URING_WAKE), (unsigned long long)w.performed,
                  (unsigned long long)w.ring, (unsigned long long)w.eventfd);
    assert_int_equal(atomic_load(&n_accepted), CONNS);
    assert_true(w.performed >= CONNS / 2);
    assert_int_equal(fault_hits(FAULT_URING_WAKE), (long)w.performed);
    assert_int_equal(w.ring, 0);
    assert_int_equal(w.eventfd, w.performed);

    /* some fail, the others go by ring */
    fault_arm(FAULT_URING_WAKE, 3, 5, EBADF, -1);
    serve_one_by_one(p, &a);
    fault_disarm(FAULT_URING_WAKE);
    {
        struct wakes w2;

        wakes_settled(p, w.eventfd + 5, &w2);
        assert_int_equal(fault_hits(FAULT_URING_WAKE), 5);
        assert_int_equal(atomic_load(&n_accepted), 2 * CONNS);
        assert_int_equal(w2.eventfd - w.eventfd, 5);
        assert_int_equal(w2.ring, w2.performed - w2.eventfd);
        assert_true(w2.ring >= CONNS / 2 - 5);
    }
    pool_down(p);
}

/* (c) Stop while connections are in flight (queued in the backlog, in the hand-off rings, being
 * woken for): every fd the pool accepted is handed off or closed, the acceptor's ring is gone. */
struct burst {
    const mio_addr *a;
    int fds[200];
    int n;
};

static void *burst_thread(void *arg)
{
    struct burst *b = arg;

    for (b->n = 0; b->n < 200; b->n++) {
        b->fds[b->n] = client_connect(b->a);
        if (b->fds[b->n] < 0)
            break;
    }
    return NULL;
}

static void stop_in_flight(int mode)
{
    for (int round = 0; round < 5; round++) {
        struct burst b;
        pthread_t t;
        mio_addr a;
        mio_pool *p;

        fault_begin();
        p = pool_up_mode(MIO_BACKEND_IO_URING, mode, &a);
        b.a = &a;
        assert_int_equal(pthread_create(&t, NULL, burst_thread, &b), 0);
        /* stop at different points of the burst */
        usleep((useconds_t)(round * 500));
        assert_int_equal(mio_pool_stop(p, 0), 0);
        pthread_join(t, NULL);
        mio_pool_free(p);
        for (int i = 0; i < b.n; i++)
            close(b.fds[i]);
        print_message("stop in flight, round %d: %d connects, %d accepted\n", round, b.n,
                      atomic_load(&n_accepted));
        assert_int_equal(atomic_load(&n_closed), atomic_load(&n_accepted));
        fault_end(); /* fds, allocations, rings as before */
    }
}

static void test_stop_in_flight(void **state)
{
    (void)state;
    stop_in_flight(MIO_POOL_ACCEPTOR);
}

/* Reuseport workers on io_uring accept on their rings: the stop cancels the armed accepts, and
 * what they accepted before the cancel took effect is closed, not leaked. */
static void test_stop_in_flight_reuseport(void **state)
{
    (void)state;
    stop_in_flight(MIO_POOL_REUSEPORT);
}

/* The accepts of a reuseport pool, summed over the workers: FAULT_ACCEPT4 counts both accept4
 * calls and the ring accepts armed (tests/fault.h). */
static void reuseport_serve(int backend, long *calls, uint64_t *accept_calls)
{
    mio_addr a;
    mio_pool *p;

    p = pool_up_mode(backend, MIO_POOL_REUSEPORT, &a);
    fault_count_reset(FAULT_ACCEPT4);
    serve_one_by_one(p, &a);
    *accept_calls = 0;
    for (unsigned i = 0; i < WORKERS; i++) {
        mio_worker_stats ws;

        assert_int_equal(mio_pool_stats(p, i, &ws), 0);
        *accept_calls += ws.accept_calls;
    }
    *calls = fault_calls(FAULT_ACCEPT4);
    assert_int_equal(atomic_load(&n_accepted), CONNS);
    pool_down(p);
}

/* On io_uring each reuseport worker arms one multishot accept, at start, and every connection
 * is one of its completions: no accept4 at all. On epoll, an accept4 per connection and one more
 * that finds the backlog empty. */
static void test_reuseport_ring_accept(void **state)
{
    long calls;
    uint64_t accept_calls;

    (void)state;
    fault_count_reset(FAULT_ACCEPT4);
    reuseport_serve(MIO_BACKEND_IO_URING, &calls, &accept_calls);
    assert_int_equal(calls, 0); /* armed before the count was reset, never again */
    assert_int_equal(accept_calls, CONNS);
    reuseport_serve(MIO_BACKEND_EPOLL, &calls, &accept_calls);
    assert_true(calls >= 2 * CONNS);
    assert_int_equal(accept_calls, calls);
}

/* Out of fds on the ring: the pool's accept is armed with POLL_FIRST, so the kernel tries it only
 * when a connection is pending. After one real EMFILE (its client shed) and the pause, the accept
 * armed again with the table still full and nothing waiting stays quiet: no further EMFILE, which
 * would shed whichever client came next (the kernel reserves the fd before it looks at the
 * backlog). */
static void emfile_quiet(int mode)
{
    struct mio_test_fd_squeeze sq;
    int cl;
    mio_worker_stats st;
    mio_addr a;
    mio_pool *p;
    struct timeval tv = {.tv_sec = 10};
    char c;

    assert_int_equal(mio_test_fd_squeeze_begin(&sq), 0);
    cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cl >= 0);
    p = pool_up_mode(MIO_BACKEND_IO_URING, mode, &a);
    assert_int_equal(mio_test_fd_squeeze_fill(&sq), 0);
    assert_int_equal(connect(cl, &a.u.sa, a.len), 0);
    assert_int_equal(setsockopt(cl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_true(recv(cl, &c, 1, 0) <= 0); /* shed: the client sees its connection closed */
    usleep(500000); /* the pause (100 ms) ends, the accept is armed again, still no fd */
    memset(&st, 0, sizeof st);
    for (unsigned i = 0; i < WORKERS; i++) {
        mio_worker_stats ws;

        assert_int_equal(mio_pool_stats(p, i, &ws), 0);
        st.emfile += ws.emfile;
    }
    assert_int_equal(st.emfile, 1);
    close(cl);
    assert_int_equal(mio_test_fd_squeeze_end(&sq), 0);
    assert_int_equal(client_echo(&a, 1), 0); /* served again */
    pool_down(p);
}

static void test_emfile_quiet(void **state)
{
    (void)state;
    emfile_quiet(MIO_POOL_ACCEPTOR);
    emfile_quiet(MIO_POOL_REUSEPORT);
}

/* On epoll nothing goes by ring: wakes_ring stays 0, every performed wake writes the eventfd. */
static void test_epoll_no_ring(void **state)
{
    struct wakes w;
    mio_addr a;
    mio_pool *p;

    (void)state;
    p = pool_up(MIO_BACKEND_EPOLL, &a);
    serve_one_by_one(p, &a);
    wakes_read(p, &w);
    wakes_settled(p, w.performed, &w); /* the last wake may still be on its way */
    assert_int_equal(atomic_load(&n_accepted), CONNS);
    assert_true(w.performed >= CONNS / 2);
    assert_int_equal(w.ring, 0);
    assert_int_equal(w.eventfd, w.performed);
    pool_down(p);
}

/* Whether ring wakes can run here: a reactor on io_uring, and a plain ring that can send. */
static bool ring_wakes_run(void)
{
    mio_reactor_opts o = {.backend = MIO_BACKEND_IO_URING};
    struct mio__uring *u;
    mio_reactor *r;
    bool ok;

    if (mio_reactor_new(&o, &r) < 0) {
        printf("SKIP: the io_uring backend cannot run here\n");
        return false;
    }
    mio_reactor_free(r);
    if (mio__uring_new_plain(-1, &u) < 0) {
        printf("SKIP: no plain ring\n");
        return false;
    }
    ok = mio__uring_can_wake(u);
    mio__uring_free(u);
    if (!ok)
        printf("SKIP: this kernel has no IORING_OP_MSG_RING with CQE_SKIP_SUCCESS\n");
    return ok;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ring_wakes, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_ring_wake_fails, fault_setup, fault_teardown),
        cmocka_unit_test(test_stop_in_flight),
        cmocka_unit_test(test_stop_in_flight_reuseport),
        cmocka_unit_test_setup_teardown(test_reuseport_ring_accept, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_epoll_no_ring, fault_setup, fault_teardown),
        cmocka_unit_test(test_emfile_quiet),
    };

    mio_test_watchdog(240);
    if (!ring_wakes_run())
        return 77;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
