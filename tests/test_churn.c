/* Churn: reactors and pools created and freed in long loops, as tests, reloads and per-request
 * loops do. Memory (RSS) and fd count must stay flat: with jemalloc every reactor that has its own
 * arena must not leave allocator metadata behind when it is freed.
 *
 * RSS is measured after a warm-up (allocator caches, glibc's thread-stack cache, the first arenas),
 * then again after the churn; the growth must stay under a stated bound, far below what a leak of
 * one page per reactor would add (10,000 reactors x 4 KiB = 40 MiB).
 *
 * Under ASan/TSan the RSS of a process says nothing about libmio (quarantine, shadow memory) and
 * every cycle is slow, so the counts are scaled down to a tenth and only the RSS assertion is
 * skipped; the cycles, the fd checks and the callback bookkeeping still run. MIO_TEST_CHURN_VERBOSE
 * in the environment prints the figures. */
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

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define SCALE 10
#else
#define SCALE 1
#endif

#define MIB (1024L * 1024L)

/* Resident bytes of this process (/proc/self/statm, second field, in pages). */
static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;

    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static unsigned long long t_start;

/* Fails when RSS grew by `limit` bytes or more since `before` (never under a sanitizer). */
static void check_rss(const char *what, long before, long limit, int cycles)
{
    long after = rss_bytes();

    assert_true(before > 0 && after > 0);
    if (getenv("MIO_TEST_CHURN_VERBOSE") != NULL)
        print_message("%s: %d cycles, RSS %ld KiB -> %ld KiB (%+ld KiB, bound %ld KiB), %llu ms\n",
                      what, cycles, before / 1024, after / 1024, (after - before) / 1024,
                      limit / 1024, mio_test_now_ms() - t_start);
#ifndef SANITIZED
    if (after - before >= limit)
        fail_msg("%s: RSS grew by %ld KiB over %d cycles (bound %ld KiB)", what,
                 (after - before) / 1024, cycles, limit / 1024);
#else
    (void)what;
    (void)limit;
    (void)cycles;
#endif
}

/* ---- (a) bare reactors, each with its own arena ---- */

static void reactor_cycle(void)
{
    mio_reactor *r;

    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    mio_reactor_free(r);
}

static void test_reactor_churn(void **state)
{
    const int warm = 300 / SCALE, n = 10000 / SCALE;
    int base = mio_test_fd_count();
    long before;

    (void)state;
    for (int i = 0; i < warm; i++)
        reactor_cycle();
    before = rss_bytes();
    for (int i = 0; i < n; i++)
        reactor_cycle();
    check_rss("reactors", before, 2 * MIB, n);
    assert_int_equal(mio_test_fd_count(), base);
}

/* Several live at once, freed in another order than created: arenas are taken and given back
 * out of order, and the number alive at once stays the peak. */
static void test_reactor_churn_overlapping(void **state)
{
    const int warm = 50 / SCALE, n = 1000 / SCALE;
    enum { LIVE = 8 };
    mio_reactor *r[LIVE];
    int base = mio_test_fd_count();
    long before = 0;

    (void)state;
    for (int i = 0; i < warm + n; i++) {
        if (i == warm)
            before = rss_bytes();
        for (int k = 0; k < LIVE; k++)
            assert_int_equal(mio_reactor_new(NULL, &r[k]), 0);
        for (int k = 0; k < LIVE; k++)
            mio_reactor_free(r[(k * 3 + i) % LIVE]); /* 3 is prime to LIVE: each freed once */
    }
    check_rss("reactors x8", before, 2 * MIB, n);
    assert_int_equal(mio_test_fd_count(), base);
}

/* Threads create and free reactors at once, each freeing the batch another thread created:
 * the shared list of arenas is taken from and given back to concurrently, and grows (peak
 * NTHREADS * BATCH arenas alive) while other threads use it. */
#define NTHREADS 4
#define BATCH 40

struct churn_shared {
    pthread_barrier_t barrier;
    mio_reactor *batch[NTHREADS][BATCH];
    int rounds;
    atomic_int errors;
};

struct churn_thread {
    struct churn_shared *sh;
    int id;
};

static void *churn_thread_main(void *arg)
{
    struct churn_thread *t = arg;
    struct churn_shared *sh = t->sh;

    for (int round = 0; round < sh->rounds; round++) {
        for (int k = 0; k < BATCH; k++)
            if (mio_reactor_new(NULL, &sh->batch[t->id][k]) != 0) {
                sh->batch[t->id][k] = NULL;
                atomic_fetch_add(&sh->errors, 1);
            }
        pthread_barrier_wait(&sh->barrier); /* every batch is complete */
        for (int k = 0; k < BATCH; k++)
            mio_reactor_free(sh->batch[(t->id + 1) % NTHREADS][k]);
        pthread_barrier_wait(&sh->barrier); /* every batch is freed before the next round */
    }
    return NULL;
}

static void run_threads(struct churn_shared *sh, int rounds)
{
    pthread_t th[NTHREADS];
    struct churn_thread t[NTHREADS];

    sh->rounds = rounds;
    for (int i = 0; i < NTHREADS; i++) {
        t[i] = (struct churn_thread){.sh = sh, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, churn_thread_main, &t[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
}

static void test_reactor_churn_threads(void **state)
{
    const int warm = 2, n = 40 / SCALE;
    struct churn_shared *sh = calloc(1, sizeof *sh);
    int base = mio_test_fd_count();
    long before;

    (void)state;
    assert_non_null(sh);
    assert_int_equal(pthread_barrier_init(&sh->barrier, NULL, NTHREADS), 0);
    run_threads(sh, warm);
    before = rss_bytes();
    run_threads(sh, n);
    check_rss("reactors, 4 threads", before, 2 * MIB, n * NTHREADS * BATCH);
    assert_int_equal(atomic_load(&sh->errors), 0);
    pthread_barrier_destroy(&sh->barrier);
    free(sh);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ---- (b) pools: 2 workers (two arenas) started, stopped and freed ---- */

static void close_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    (void)worker;
    (void)peer;
    atomic_fetch_add((atomic_int *)arg, 1);
    close(fd);
}

/* One pool life. When `connect_too`, a client connects and waits for the server's close (EOF),
 * so the connection has gone through the acceptor (or a reuseport worker) to a worker. */
static void pool_cycle(int mode, bool connect_too, atomic_int *accepted)
{
    mio_pool_opts o = {.workers = 2, .mode = mode};
    mio_pool *pool;
    mio_addr a;

    assert_int_equal(mio_pool_new(&o, &pool), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &a), 0);
    assert_int_equal(mio_pool_listen(pool, &a, close_accept, accepted), 0);
    assert_int_equal(mio_pool_local_addr(pool, 0, &a), 0);
    assert_int_equal(mio_pool_start(pool), 0);
    if (connect_too) {
        struct timeval tv = {.tv_sec = 10};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char c;

        assert_true(fd >= 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
        assert_int_equal(connect(fd, &a.u.sa, a.len), 0);
        assert_int_equal(recv(fd, &c, 1, 0), 0); /* EOF: the accept function closed it */
        close(fd);
    }
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
}

static void test_pool_churn(void **state)
{
    const int warm = 100 / SCALE, n = 2000 / SCALE, nreuse = 100 / SCALE;
    int base = mio_test_fd_count(), connects = 0;
    atomic_int accepted = 0;
    long before;

    (void)state;
    for (int i = 0; i < warm; i++) {
        pool_cycle(MIO_POOL_ACCEPTOR, true, &accepted);
        pool_cycle(MIO_POOL_REUSEPORT, true, &accepted);
        connects += 2;
    }
    before = rss_bytes();
    for (int i = 0; i < n; i++) {
        bool c = i % 4 == 0; /* a connection in one cycle of four keeps the loop short */

        pool_cycle(MIO_POOL_ACCEPTOR, c, &accepted);
        connects += c;
    }
    for (int i = 0; i < nreuse; i++) {
        pool_cycle(MIO_POOL_REUSEPORT, true, &accepted);
        connects++;
    }
    check_rss("pools", before, 4 * MIB, n + nreuse);
    assert_int_equal(atomic_load(&accepted), connects);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ---- (c) a reactor with conns: arenas that held conn memory are recycled ---- */

#define NCONN 8
#define BIG (32u * 1024u) /* more than the shrunk send buffer holds: most of it is queued */

struct cstate {
    int opened, closed, bad_reason;
    size_t got;
};

static void c_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct cstate *s = arg;

    (void)data;
    if (len == 0) {
        mio_conn_close(c);
        return;
    }
    s->got += len;
}

static void c_close(mio_conn *c, int reason, void *arg)
{
    struct cstate *s = arg;

    (void)c;
    if (reason != 0 && reason != -ECANCELED && reason != -ECONNRESET && reason != -EPIPE)
        s->bad_reason++;
    s->closed++;
}

static void conn_cycle(int cycle, struct cstate *s, unsigned char *big)
{
    static const mio_conn_ops ops = {.on_read = c_read, .on_close = c_close};
    int peer[NCONN];
    mio_conn *conn[NCONN];
    mio_reactor *r;

    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    for (int k = 0; k < NCONN; k++) {
        int sv[2], sndbuf = 4096;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
        assert_int_equal(mio_conn_open(r, sv[0], &ops, s, &conn[k]), 0);
        peer[k] = sv[1];
        s->opened++;
        /* the write queue, the conn's extension and its chunks come from the reactor's arena */
        assert_int_equal(mio_conn_write(conn[k], big, BIG), 0);
        assert_true(mio_conn_pending(conn[k]) > 0);
        assert_int_equal(mio_conn_set_idle_timeout(conn[k], 60000), 0);
        assert_int_equal(write(peer[k], "ping", 4), 4);
    }
    for (int spins = 0; spins < 100 && s->got < (size_t)(cycle + 1) * NCONN * 4; spins++)
        assert_true(mio_reactor_run_once(r, 10) >= 0);
    assert_int_equal(s->got, (size_t)(cycle + 1) * NCONN * 4);
    /* half of them see their peer go away (EOF, then the queued bytes cannot be sent: closed
     * here), the other half are still open, bytes queued, when the reactor is freed (-ECANCELED) */
    for (int k = 0; k < NCONN / 2; k++) {
        close(peer[k]);
        peer[k] = -1;
    }
    for (int spins = 0; spins < 100 && s->closed < (cycle + 1) * NCONN - NCONN / 2; spins++)
        assert_true(mio_reactor_run_once(r, 10) >= 0);
    assert_int_equal(s->closed, (cycle + 1) * NCONN - NCONN / 2);
    mio_reactor_free(r);
    assert_int_equal(s->closed, (cycle + 1) * NCONN);
    for (int k = 0; k < NCONN; k++)
        if (peer[k] >= 0)
            close(peer[k]);
}

static void test_conn_churn(void **state)
{
    const int warm = 50 / SCALE, n = 2000 / SCALE;
    int base = mio_test_fd_count();
    unsigned char *big = calloc(1, BIG);
    struct cstate s = {0};
    long before = 0;

    (void)state;
    assert_non_null(big);
    for (int i = 0; i < warm + n; i++) {
        if (i == warm)
            before = rss_bytes();
        conn_cycle(i, &s, big);
    }
    check_rss("reactors with conns", before, 2 * MIB, n);
    assert_int_equal(s.opened, (warm + n) * NCONN);
    assert_int_equal(s.closed, s.opened);
    assert_int_equal(s.bad_reason, 0);
    free(big);
    assert_int_equal(mio_test_fd_count(), base);
}

static int start_clock(void **state)
{
    (void)state;
    t_start = mio_test_now_ms();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_reactor_churn, start_clock),
        cmocka_unit_test_setup(test_reactor_churn_overlapping, start_clock),
        cmocka_unit_test_setup(test_reactor_churn_threads, start_clock),
        cmocka_unit_test_setup(test_pool_churn, start_clock),
        cmocka_unit_test_setup(test_conn_churn, start_clock),
    };

    mio_test_watchdog(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
