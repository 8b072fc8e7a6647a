/* Fault injection into the pool: accept4 errors in both modes are counted and the pool keeps
 * serving (ECONNABORTED/EPROTO/EPERM skipped, EMFILE/ENFILE shed one connection with the spare
 * fd and pause, ENOBUFS/ENOMEM pause, EINTR retried); allocation failure at every site of a
 * pool's life (new, listen, start, threads, conns on the workers) ends in a clean -ENOMEM or a
 * refused connection, never a leak or a hang. Real threads, loopback TCP clients. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>

#include "helpers.h"
#include "fault.h"
#include "internal/reactor_int.h"

static atomic_int open_enomem; /* mio_conn_open failed with -ENOMEM in the accept callback */
static atomic_int open_other;  /* ... with anything else */

static void e_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
    else
        (void)mio_conn_write(c, data, len);
}

static void e_on_close(mio_conn *c, int reason, void *arg)
{
    (void)c, (void)reason, (void)arg;
}

static const mio_conn_ops e_ops = {e_on_read, e_on_close, NULL};

static void on_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    int rc = mio_conn_open(w, fd, &e_ops, NULL, NULL);

    (void)peer, (void)arg;
    if (rc < 0) {
        close(fd);
        atomic_fetch_add(rc == -ENOMEM ? &open_enomem : &open_other, 1);
    }
}

static int setup(void **state)
{
    (void)state;
    fault_begin();
    atomic_store(&open_enomem, 0);
    atomic_store(&open_other, 0);
    return 0;
}


/* One client: connect, send n bytes, read them back. Returns 0 (echoed), -ECONNRESET/-EPIPE
 * (the server closed it: shed or refused), or -ETIMEDOUT. Blocking with a 20 s timeout. */
static int client_echo(const mio_addr *a, size_t n, unsigned seed)
{
    struct timeval tv = {.tv_sec = 20};
    unsigned char out[4096], in[4096];
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

    assert_true(fd >= 0 && n <= sizeof out);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, &a->u.sa, a->len) != 0) {
        rc = -errno;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(seed * 31 + i);
    if (send(fd, out, n, MSG_NOSIGNAL) != (ssize_t)n) {
        rc = -EPIPE;
        goto out;
    }
    while (got < n) {
        ssize_t k = recv(fd, in + got, n - got, 0);

        if (k == 0) {
            rc = -ECONNRESET;
            goto out;
        }
        if (k < 0) {
            rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
            goto out;
        }
        got += (size_t)k;
    }
    rc = memcmp(in, out, n) == 0 ? 0 : -EPROTO;
out:
    close(fd);
    return rc;
}

/* A pool listening on 127.0.0.1 (port in *a), not started yet. */
static void new_pool(int mode, unsigned workers, mio_pool **out, mio_addr *a)
{
    mio_pool_opts o = {.workers = workers, .mode = mode};

    assert_int_equal(mio_pool_new(&o, out), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", a), 0);
    assert_int_equal(mio_pool_listen(*out, a, on_accept, NULL), 0);
    assert_int_equal(mio_pool_local_addr(*out, 0, a), 0);
}

static void start_pool(int mode, mio_pool **out, mio_addr *a)
{
    new_pool(mode, 2, out, a);
    assert_int_equal(mio_pool_start(*out), 0);
}

static void sum_stats(mio_pool *p, mio_worker_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    for (unsigned i = 0; i < mio_pool_workers(p); i++) {
        mio_worker_stats st;

        assert_int_equal(mio_pool_stats(p, i, &st), 0);
        sum->accept_errors += st.accept_errors;
        sum->emfile += st.emfile;
        sum->accepted += st.accepted;
        sum->accept_calls += st.accept_calls;
    }
}

static void accept_errors(int mode)
{
    static const int skipped[] = {ECONNABORTED, EPROTO, EPERM};
    static const int shed[] = {EMFILE, ENFILE};
    static const int paused[] = {ENOBUFS, ENOMEM};
    mio_worker_stats st;
    mio_pool *p;
    mio_addr a;
    uint64_t errs = 0;

    start_pool(mode, &p, &a);
    assert_int_equal(client_echo(&a, 100, 1), 0);
    for (size_t i = 0; i < sizeof skipped / sizeof skipped[0]; i++) {
        /* only the pool calls accept4 in this process */
        fault_arm(FAULT_ACCEPT4, 0, 1, skipped[i], -1);
        assert_int_equal(client_echo(&a, 100, 2), 0);
        assert_int_equal(fault_hits(FAULT_ACCEPT4), 1);
        sum_stats(p, &st);
        assert_int_equal(st.accept_errors, ++errs);
    }
    for (size_t i = 0; i < sizeof paused / sizeof paused[0]; i++) {
        /* backs off for a moment, then the same connection is served */
        fault_arm(FAULT_ACCEPT4, 0, 1, paused[i], -1);
        assert_int_equal(client_echo(&a, 100, 3), 0);
        sum_stats(p, &st);
        assert_int_equal(st.accept_errors, ++errs);
    }
    for (size_t i = 0; i < sizeof shed / sizeof shed[0]; i++) {
        /* the pending connection is accepted on the spare fd and closed: the client sees it
         * closed, not hanging; the next one is served */
        fault_arm(FAULT_ACCEPT4, 0, 1, shed[i], -1);
        assert_int_not_equal(client_echo(&a, 100, 4), -ETIMEDOUT);
        assert_int_equal(fault_hits(FAULT_ACCEPT4), 1);
        sum_stats(p, &st);
        assert_int_equal(st.emfile, i + 1);
        assert_int_equal(client_echo(&a, 100, 5), 0);
    }
    fault_arm(FAULT_ACCEPT4, 0, 3, EINTR, -1);
    assert_int_equal(client_echo(&a, 100, 6), 0);
    assert_int_equal(fault_hits(FAULT_ACCEPT4), 3);
    sum_stats(p, &st);
    assert_int_equal(st.accept_errors, errs); /* EINTR is not an error */
    fault_disarm_all();
    assert_int_equal(mio_pool_stop(p, 1000), 0);
    mio_pool_free(p);
}

/* On io_uring the acceptor, or in reuseport mode each worker, accepts with a multishot accept on
 * its ring: FAULT_ACCEPT4 fails it when it is armed (tests/fault.h), and the pool arms it when it
 * starts and again after each error. So each error gets a pool of its own, faulted from its
 * start: the errors are counted as accept4's are, the accept is armed again (at once, or after
 * the pause), and the client that comes then is served. */
static bool ring_pool(void)
{
    mio_pool_opts o = {.workers = 1};
    mio_pool *p;
    bool ring;

    assert_int_equal(mio_pool_new(&o, &p), 0);
    ring = mio_reactor_backend(mio_pool_worker(p, 0)) == MIO_BACKEND_IO_URING;
    mio_pool_free(p);
    return ring;
}

static void accept_error_ring(int mode, int err, long count, uint64_t want_errors,
                              uint64_t want_emfile)
{
    mio_worker_stats st;
    mio_pool *p;
    mio_addr a;

    /* one reuseport worker: the client must land on the listener whose accept was faulted */
    new_pool(mode, mode == MIO_POOL_REUSEPORT ? 1 : 2, &p, &a);
    fault_arm(FAULT_ACCEPT4, 0, count, err, -1);
    assert_int_equal(mio_pool_start(p), 0);
    /* The client comes once the acceptor has acted on the errors: an EMFILE sheds a pending
     * connection, and this one must find nothing to shed it. */
    for (int i = 0; i < 2000; i++) {
        sum_stats(p, &st);
        if (fault_hits(FAULT_ACCEPT4) == count && st.accept_errors == want_errors &&
            st.emfile == want_emfile)
            break;
        usleep(1000);
    }
    assert_int_equal(client_echo(&a, 100, 7), 0);
    assert_int_equal(fault_hits(FAULT_ACCEPT4), count);
    sum_stats(p, &st);
    assert_int_equal(st.accept_errors, want_errors);
    assert_int_equal(st.emfile, want_emfile);
    assert_int_equal(st.accepted, 1);
    fault_disarm_all();
    assert_int_equal(mio_pool_stop(p, 1000), 0);
    mio_pool_free(p);
}

static void accept_errors_ring(int mode)
{
    static const int counted[] = {ECONNABORTED, EPROTO, EPERM, ENOBUFS, ENOMEM};

    for (size_t i = 0; i < sizeof counted / sizeof counted[0]; i++)
        accept_error_ring(mode, counted[i], 1, 1, 0);
    accept_error_ring(mode, EMFILE, 1, 0, 1); /* nothing pending to shed: counted, paused, served */
    accept_error_ring(mode, ENFILE, 1, 0, 1);
    accept_error_ring(mode, EINTR, 3, 0, 0); /* armed again at once, not an error */
    /* a kernel without multishot accept: the listeners go back to accept4 on epoll readiness */
    accept_error_ring(mode, EINVAL, 1, 0, 0);
}

static void test_accept_errors_acceptor(void **state)
{
    (void)state;
    if (ring_pool()) {
        accept_errors_ring(MIO_POOL_ACCEPTOR);
        return;
    }
    accept_errors(MIO_POOL_ACCEPTOR);
}

static void test_accept_errors_reuseport(void **state)
{
    (void)state;
    if (ring_pool()) {
        accept_errors_ring(MIO_POOL_REUSEPORT);
        return;
    }
    accept_errors(MIO_POOL_REUSEPORT);
}

/* ---- out of fds with nothing waiting: no shed ----
 * accept4 reserves the new fd before it looks at the backlog, so while the table stays full the
 * retry after each pause fails with EMFILE whether a client waits or not. The shed (close the
 * spare, accept4 one connection, close it, reopen the spare) runs only when one waits: closing
 * the spare otherwise frees a number another thread may take. So, with no client, every accept4
 * the process makes is one of the pool's counted attempts. On io_uring the accept is armed with
 * POLL_FIRST and makes no attempt at all then. */
static void emfile_no_blind_shed(int mode)
{
    struct mio_test_fd_squeeze sq;
    int cl;
    mio_worker_stats st0, st1;
    struct timeval tv = {.tv_sec = 10};
    long calls0;
    mio_pool *p;
    mio_addr a;
    char c;

    assert_int_equal(mio_test_fd_squeeze_begin(&sq), 0);
    cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cl >= 0);
    start_pool(mode, &p, &a);
    assert_int_equal(mio_test_fd_squeeze_fill(&sq), 0);
    /* one real EMFILE: its client is shed, and the pauses and retries begin */
    assert_int_equal(connect(cl, &a.u.sa, a.len), 0);
    assert_int_equal(setsockopt(cl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_true(recv(cl, &c, 1, 0) <= 0);
    usleep(50000);
    sum_stats(p, &st0);
    calls0 = fault_calls(FAULT_ACCEPT4);
    usleep(500000);
    sum_stats(p, &st1);
    if (mio_reactor_backend(mio_pool_worker(p, 0)) == MIO_BACKEND_EPOLL) {
        assert_int_equal(fault_calls(FAULT_ACCEPT4) - calls0,
                         (long)(st1.accept_calls - st0.accept_calls));
        assert_true(st1.accept_calls - st0.accept_calls >= 2); /* the retries did run */
    } else {
        /* FAULT_ACCEPT4 counts the ring's arms too: here the accepts simply stay quiet */
        assert_int_equal(st1.accept_calls, st0.accept_calls);
        assert_int_equal(st1.emfile, st0.emfile);
    }
    close(cl);
    assert_int_equal(mio_test_fd_squeeze_end(&sq), 0);
    assert_int_equal(client_echo(&a, 100, 8), 0); /* served again */
    assert_int_equal(mio_pool_stop(p, 1000), 0);
    mio_pool_free(p);
}

static void test_emfile_no_blind_shed(void **state)
{
    (void)state;
    emfile_no_blind_shed(MIO_POOL_ACCEPTOR);
    emfile_no_blind_shed(MIO_POOL_REUSEPORT);
}

/* ---- allocation failure at every site ---- */

static int sweep_mode;

static int pool_scenario(void)
{
    /* In reuseport mode the kernel hashes each client to a worker by its source port, so with two
     * workers the number of allocations (each worker's first conn makes its own) changes from run
     * to run and the sweep's k-th allocation would land on a different site. One worker runs the
     * same allocation sites in a fixed order; the acceptor's round robin is deterministic. */
    mio_pool_opts o = {.workers = sweep_mode == MIO_POOL_REUSEPORT ? 1 : 2, .mode = sweep_mode};
    mio_pool *p = NULL;
    mio_addr a;
    int rc, echo_fail = 0;

    atomic_store(&open_enomem, 0);
    atomic_store(&open_other, 0);
    rc = mio_pool_new(&o, &p);
    if (rc < 0)
        return rc;
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &a), 0);
    rc = mio_pool_listen(p, &a, on_accept, NULL);
    if (rc < 0)
        goto out;
    assert_int_equal(mio_pool_local_addr(p, 0, &a), 0);
    rc = mio_pool_start(p);
    if (rc < 0)
        goto out;
    for (unsigned i = 0; i < 4; i++) {
        int e = client_echo(&a, 512, i);

        if (e == -ETIMEDOUT || e == -EPROTO)
            rc = e;
        else if (e < 0)
            echo_fail++;
    }
    rc = rc < 0 ? rc : mio_pool_stop(p, 2000);
out:
    mio_pool_free(p);
    if (rc < 0)
        return rc;
    /* a connection refused by the server is explained by a failed conn open, and vice versa */
    if (atomic_load(&open_other) != 0 || atomic_load(&open_enomem) != echo_fail)
        return -EPROTO;
    return echo_fail > 0 ? -ENOMEM : 0;
}

static void test_alloc_every_site_acceptor(void **state)
{
    long n;

    (void)state;
    sweep_mode = MIO_POOL_ACCEPTOR;
    n = fault_alloc_sweep(pool_scenario, false);
    print_message("pool (acceptor): %ld allocation sites failed in turn\n", n);
}

static void test_alloc_every_site_reuseport(void **state)
{
    long n;

    (void)state;
    sweep_mode = MIO_POOL_REUSEPORT;
    n = fault_alloc_sweep(pool_scenario, false);
    print_message("pool (reuseport): %ld allocation sites failed in turn\n", n);
}

/* ---- a worker whose wait fails ---- */

static void noop_task(mio_reactor *r, void *arg)
{
    (void)r, (void)arg;
}

/* Fails worker w's blocking wait (epoll_wait, or the ring's wait on io_uring) `count` times with
 * err, then makes the worker wait again (a task wakes it). */
static void fail_waits(mio_reactor *w, int err, long count)
{
    if (mio_reactor_backend(w) == MIO_BACKEND_IO_URING) {
        fault_arm(FAULT_URING_WAIT, 0, count, err, mio__reactor_ring_fd(w));
    } else {
        fault_arm(FAULT_EPOLL_WAIT, 0, count, err, mio__reactor_poll_fd(w));
    }
    assert_int_equal(mio_reactor_post(w, noop_task, NULL), 0);
}

static long wait_hits(void)
{
    return fault_hits(FAULT_EPOLL_WAIT) + fault_hits(FAULT_URING_WAIT);
}

static int64_t loop_error(mio_pool *p, unsigned i)
{
    mio_worker_stats st;

    assert_int_equal(mio_pool_stats(p, i, &st), 0);
    return st.loop_error;
}

/* Transient failures of a worker's wait (-ENOMEM) are retried: it stays in service. A lasting
 * one (-EBADF) takes it out: loop_error says why, the acceptor passes it over (reuseport: its
 * listening socket closes), every client is served by the other worker, and drain and stop do
 * not wait for it. */
static void worker_wait_fails(int mode)
{
    unsigned long long until;
    mio_pool *p;
    mio_addr a;
    long hits;

    start_pool(mode, &p, &a);
    fail_waits(mio_pool_worker(p, 1), ENOMEM, 3);
    until = mio_test_now_ms() + 10000;
    while (wait_hits() < 3 && mio_test_now_ms() < until)
        usleep(1000);
    assert_int_equal(wait_hits(), 3);
    fault_disarm_all();
    for (unsigned i = 0; i < 20; i++)
        assert_int_equal(client_echo(&a, 100, i), 0);
    assert_int_equal(loop_error(p, 1), 0);

    fail_waits(mio_pool_worker(p, 1), EBADF, 1); /* once is for good: not retried */
    until = mio_test_now_ms() + 10000;
    while (loop_error(p, 1) == 0 && mio_test_now_ms() < until)
        usleep(1000);
    assert_int_equal(loop_error(p, 1), -EBADF);
    hits = wait_hits();
    fault_disarm_all();
    assert_int_equal(hits, 1);
    assert_int_equal(loop_error(p, 0), 0);
    for (unsigned i = 0; i < 40; i++)
        assert_int_equal(client_echo(&a, 100, 100 + i), 0);
    assert_int_equal(mio_pool_drain(p), 0);
    assert_int_equal(mio_pool_stop(p, 1000), 0);
    mio_pool_free(p);
}

static void test_worker_wait_fails_acceptor(void **state)
{
    (void)state;
    worker_wait_fails(MIO_POOL_ACCEPTOR);
}

static void test_worker_wait_fails_reuseport(void **state)
{
    (void)state;
    worker_wait_fails(MIO_POOL_REUSEPORT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept_errors_acceptor, setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_accept_errors_reuseport, setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_emfile_no_blind_shed, setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_every_site_acceptor, setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_every_site_reuseport, setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_worker_wait_fails_acceptor, setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_worker_wait_fails_reuseport, setup, fault_teardown),
    };

    mio_test_watchdog(280);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
