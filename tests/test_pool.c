/* mio_pool end to end: real threads, loopback sockets, clients driven by this thread's own mio_poll
 * (or a client thread). Every echoed byte is checked against a random table.
 *
 * Size: each echo client sends MIO_TEST_POOL_BYTES (default 1 MiB; 64 KiB when built with a
 * sanitizer, where the full size takes minutes on two cores). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
#define DEFAULT_BYTES (64u * 1024u)
#else
#define DEFAULT_BYTES (1024u * 1024u)
#endif

#define TABLE_LEN 1000003u
static unsigned char *table;
static size_t echo_bytes;

/* ---- server side: echo on mio_conn, with exactly-once bookkeeping ---- */

#define MAX_SCONN 20000
struct sconn {
    atomic_int closes;
    int reason;
};
static struct sconn sconns[MAX_SCONN];
static atomic_int n_opened, n_closed, n_bad_close, n_late, n_bad_fd;
static atomic_bool stop_returned;

static void reset_server(void)
{
    memset(sconns, 0, sizeof(sconns));
    atomic_store(&n_opened, 0);
    atomic_store(&n_closed, 0);
    atomic_store(&n_bad_close, 0);
    atomic_store(&n_late, 0);
    atomic_store(&n_bad_fd, 0);
    atomic_store(&stop_returned, false);
}

static void late_check(void)
{
    if (atomic_load(&stop_returned))
        atomic_fetch_add(&n_late, 1);
}

static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    late_check();
    if (len == 0) {
        mio_conn_close(c);
        return;
    }
    (void)mio_conn_write(c, data, len);
}

static void echo_close(mio_conn *c, int reason, void *arg)
{
    struct sconn *s = arg;

    (void)c;
    late_check();
    s->reason = reason;
    if (atomic_fetch_add(&s->closes, 1) != 0)
        atomic_fetch_add(&n_bad_close, 1);
    atomic_fetch_add(&n_closed, 1);
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void echo_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    int i = atomic_fetch_add(&n_opened, 1);

    (void)arg;
    late_check();
    if (peer == NULL || !mio_test_fd_is_nb_cloexec(fd))
        atomic_fetch_add(&n_bad_fd, 1);
    if (i >= MAX_SCONN || mio_conn_open(w, fd, &echo_ops, &sconns[i], NULL) < 0) {
        atomic_fetch_add(&n_bad_fd, 1);
        close(fd);
    }
}

static void drop_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    (void)w;
    (void)arg;
    late_check();
    if (peer == NULL || !mio_test_fd_is_nb_cloexec(fd))
        atomic_fetch_add(&n_bad_fd, 1);
    atomic_fetch_add(&n_opened, 1);
    close(fd);
}

static void wait_for(atomic_int *v, int want, unsigned ms)
{
    unsigned long long until = mio_test_now_ms() + ms;

    while (atomic_load(v) < want && mio_test_now_ms() < until)
        usleep(1000);
    assert_int_equal(atomic_load(v), want);
}

static mio_pool *start_pool(unsigned workers, int mode, int balance, mio_accept_fn fn,
                            mio_addr *addr, const mio_pool_opts *extra)
{
    mio_pool_opts o = {0};
    mio_pool *pool;

    if (extra != NULL)
        o = *extra;
    o.workers = workers;
    o.mode = mode;
    o.balance = balance;
    assert_int_equal(mio_pool_new(&o, &pool), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", addr), 0);
    assert_int_equal(mio_pool_listen(pool, addr, fn, NULL), 0);
    assert_int_equal(mio_pool_local_addr(pool, 0, addr), 0);
    assert_int_not_equal(ntohs(addr->u.in.sin_port), 0);
    assert_int_equal(mio_pool_start(pool), 0);
    return pool;
}

static uint64_t sum_stat(mio_pool *pool, size_t field_off)
{
    uint64_t s = 0;

    for (unsigned i = 0; i < mio_pool_workers(pool); i++) {
        mio_worker_stats st;

        assert_int_equal(mio_pool_stats(pool, i, &st), 0);
        s += *(uint64_t *)((char *)&st + field_off);
    }
    return s;
}

/* ---- clients: one mio_poll, many non-blocking sockets, every echoed byte checked ---- */

struct client {
    int fd;
    size_t off, sent, recvd, total;
    bool done, failed;
    const char *why; /* what failed it, for the message */
    int err;
};

/* Runs n echo clients of `bytes` each to addr. Returns the number that got every byte back. */
static int run_echo_clients(const mio_addr *addr, int n, size_t bytes, unsigned timeout_ms)
{
    struct client *cl = calloc((size_t)n, sizeof(*cl));
    unsigned char *buf = malloc(65536);
    mio_poll *poll;
    mio_events *events;
    int left = n, ok = 0;
    unsigned long long until = mio_test_now_ms() + timeout_ms;

    assert_int_equal(mio_poll_new(&poll), 0);
    assert_int_equal(mio_events_new(1024, &events), 0);
    for (int i = 0; i < n; i++) {
        cl[i].fd = mio_tcp_stream_connect(addr);
        assert_true(cl[i].fd >= 0);
        cl[i].off = (size_t)i * 7919u;
        cl[i].total = bytes;
        assert_int_equal(mio_registry_register(mio_poll_registry(poll), cl[i].fd, (mio_token)i,
                                               MIO_READABLE | MIO_WRITABLE),
                         0);
    }
    while (left > 0 && mio_test_now_ms() < until) {
        int k = mio_poll_poll(poll, events, 100);

        assert_true(k >= 0 || k == -EINTR);
        MIO_EVENTS_FOREACH(const mio_event *ev, events) {
            struct client *c = &cl[mio_event_token(ev)];

            if (c->done)
                continue;
            while (c->sent < c->total) {
                size_t pos = (c->off + c->sent) % TABLE_LEN, len = c->total - c->sent;
                ssize_t w;

                if (len > TABLE_LEN - pos)
                    len = TABLE_LEN - pos;
                if (len > 65536)
                    len = 65536;
                w = mio_send(c->fd, table + pos, len);
                if (w == -EAGAIN)
                    break;
                if (w < 0) {
                    c->failed = true, c->why = "send", c->err = (int)w;
                    break;
                }
                c->sent += (size_t)w;
            }
            while (!c->failed) {
                ssize_t r = mio_recv(c->fd, buf, 65536);

                if (r == -EAGAIN)
                    break;
                if (r <= 0) {
                    c->failed = true, c->why = r == 0 ? "EOF" : "recv", c->err = (int)r;
                    break;
                }
                for (ssize_t j = 0; j < r; j++)
                    if (buf[j] != table[(c->off + c->recvd + (size_t)j) % TABLE_LEN]) {
                        c->failed = true, c->why = "wrong byte";
                        break;
                    }
                c->recvd += (size_t)r;
                if (c->recvd > c->total)
                    c->failed = true, c->why = "extra bytes";
            }
            if (c->failed || c->recvd == c->total) {
                if (!c->failed)
                    ok++;
                c->done = true;
                left--;
                (void)mio_registry_deregister(mio_poll_registry(poll), c->fd);
                close(c->fd);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (!cl[i].done) {
            cl[i].why = "timed out";
            close(cl[i].fd);
        }
        if (cl[i].why != NULL)
            print_message("echo client %d of %d failed: %s (%s), sent %zu, received %zu of %zu\n",
                          i, n, cl[i].why, mio_strerror(cl[i].err), cl[i].sent, cl[i].recvd,
                          cl[i].total);
    }
    mio_events_free(events);
    mio_poll_free(poll);
    free(buf);
    free(cl);
    return ok;
}

/* ---- lifecycle ---- */

static void test_lifecycle(void **state)
{
    int base = mio_test_fd_count();
    mio_pool_opts bad = {.mode = 7};
    mio_pool *pool;
    mio_addr a;
    mio_worker_stats st;

    (void)state;
    assert_int_equal(mio_pool_new(&bad, &pool), -EINVAL);
    bad.mode = 0;
    bad.balance = 9;
    assert_int_equal(mio_pool_new(&bad, &pool), -EINVAL);
    bad.balance = 0;
    bad.backend = MIO_BACKEND_AUTO + 1;
    assert_int_equal(mio_pool_new(&bad, &pool), -EINVAL);
    bad.backend = -1;
    assert_int_equal(mio_pool_new(&bad, &pool), -EINVAL);
    bad.backend = 0;
    for (size_t i = 0; i < sizeof bad.reserved / sizeof bad.reserved[0]; i++) {
        bad.reserved[i] = 1; /* an option of a later version: refused, not ignored */
        assert_int_equal(mio_pool_new(&bad, &pool), -EINVAL);
        bad.reserved[i] = 0;
    }
    /* the workers get the pool's backend */
    bad.backend = MIO_BACKEND_EPOLL;
    bad.workers = 2;
    assert_int_equal(mio_pool_new(&bad, &pool), 0);
    assert_int_equal(mio_reactor_backend(mio_pool_worker(pool, 1)), MIO_BACKEND_EPOLL);
    mio_pool_free(pool);
    bad.backend = MIO_BACKEND_AUTO;
    assert_int_equal(mio_pool_new(&bad, &pool), 0);
    {
        mio_reactor_opts ro = {.backend = MIO_BACKEND_AUTO};
        mio_reactor *r;

        assert_int_equal(mio_reactor_new(&ro, &r), 0);
        assert_int_equal(mio_reactor_backend(mio_pool_worker(pool, 0)), mio_reactor_backend(r));
        mio_reactor_free(r);
    }
    mio_pool_free(pool);

    /* stop before start, twice; start after stop */
    assert_int_equal(mio_pool_new(NULL, &pool), 0);
    assert_true(mio_pool_workers(pool) >= 1);
    assert_null(mio_pool_worker(pool, mio_pool_workers(pool)));
    assert_non_null(mio_pool_worker(pool, 0));
    assert_int_equal(mio_pool_stats(pool, mio_pool_workers(pool), &st), -EINVAL);
    assert_int_equal(mio_pool_start(pool), -EINVAL); /* no listener */
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &a), 0);
    assert_int_equal(mio_pool_listen(pool, &a, drop_accept, NULL), 0);
    assert_int_equal(mio_pool_listen(pool, &a, drop_accept, NULL), 1);
    assert_int_equal(mio_pool_local_addr(pool, 2, &a), -EINVAL);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    assert_int_equal(mio_pool_start(pool), -EINVAL);
    assert_int_equal(mio_pool_listen(pool, &a, drop_accept, NULL), -EINVAL);
    mio_pool_free(pool);

    /* a normal life: start, stop, stop again, no restart */
    pool = start_pool(2, MIO_POOL_ACCEPTOR, MIO_BALANCE_ROUND_ROBIN, drop_accept, &a, NULL);
    assert_int_equal(mio_pool_start(pool), -EINVAL);
    assert_int_equal(mio_pool_listen(pool, &a, drop_accept, NULL), -EINVAL);
    assert_int_equal(mio_pool_stop(pool, 100), 0);
    assert_int_equal(mio_pool_stop(pool, 100), 0);
    assert_int_equal(mio_pool_start(pool), -EINVAL);
    /* listeners are closed: new connects are refused */
    {
        int fd = mio_tcp_stream_connect(&a);

        if (fd >= 0) {
            char c;

            usleep(20000);
            assert_true(recv(fd, &c, 1, 0) <= 0);
            close(fd);
        } else {
            assert_int_equal(fd, -ECONNREFUSED);
        }
    }
    mio_pool_free(pool);
    mio_pool_free(NULL);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ---- end to end echo ---- */

static void echo_run(unsigned workers, int mode, int balance)
{
    int base = mio_test_fd_count(), n = 1000;
    mio_addr a;
    mio_pool *pool;

    reset_server();
    pool = start_pool(workers, mode, balance, echo_accept, &a, NULL);
    assert_int_equal(run_echo_clients(&a, n, echo_bytes, 240000), n);
    /* the server closes each conn on the client's FIN */
    wait_for(&n_closed, n, 20000);
    assert_int_equal(atomic_load(&n_opened), n);
    assert_int_equal(sum_stat(pool, offsetof(mio_worker_stats, accepted)), (uint64_t)n);
    if (mode == MIO_POOL_ACCEPTOR)
        assert_int_equal(sum_stat(pool, offsetof(mio_worker_stats, handed_off)), (uint64_t)n);
    assert_int_equal(sum_stat(pool, offsetof(mio_worker_stats, active)), 0);
    assert_int_equal(mio_pool_stop(pool, 1000), 0);
    atomic_store(&stop_returned, true);
    mio_pool_free(pool);
    assert_int_equal(atomic_load(&n_bad_close), 0);
    assert_int_equal(atomic_load(&n_bad_fd), 0);
    assert_int_equal(atomic_load(&n_late), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(sconns[i].reason, 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_echo_acceptor_rr_2(void **state)
{
    (void)state;
    echo_run(2, MIO_POOL_ACCEPTOR, MIO_BALANCE_ROUND_ROBIN);
}

static void test_echo_acceptor_least_4(void **state)
{
    (void)state;
    echo_run(4, MIO_POOL_ACCEPTOR, MIO_BALANCE_LEAST_LOADED);
}

static void test_echo_reuseport_2(void **state)
{
    (void)state;
    echo_run(2, MIO_POOL_REUSEPORT, MIO_BALANCE_LEAST_LOADED);
}

static void test_echo_reuseport_4(void **state)
{
    (void)state;
    echo_run(4, MIO_POOL_REUSEPORT, MIO_BALANCE_ROUND_ROBIN);
}

/* ---- CPU pinning: threads still serve ---- */

static void test_pin_cpus(void **state)
{
    int base = mio_test_fd_count();
    mio_pool_opts o = {.pin_cpus = true};
    mio_addr a;
    mio_pool *pool;

    (void)state;
    reset_server();
    pool = start_pool(3, MIO_POOL_ACCEPTOR, MIO_BALANCE_ROUND_ROBIN, echo_accept, &a, &o);
    assert_int_equal(run_echo_clients(&a, 30, 4096, 20000), 30);
    wait_for(&n_closed, 30, 10000);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ---- balance ---- */

static void rst_close(int fd)
{
    struct linger lg = {1, 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void test_rr_spread(void **state)
{
    int base = mio_test_fd_count(), total = 10000, batch = 250;
    unsigned workers = 4;
    int fds[250];
    mio_addr a;
    mio_pool *pool;

    (void)state;
    reset_server();
    pool = start_pool(workers, MIO_POOL_ACCEPTOR, MIO_BALANCE_ROUND_ROBIN, drop_accept, &a, NULL);
    for (int done = 0; done < total; done += batch) {
        for (int i = 0; i < batch; i++) {
            fds[i] = mio_tcp_stream_connect(&a);
            assert_true(fds[i] >= 0);
        }
        wait_for(&n_opened, done + batch, 30000);
        for (int i = 0; i < batch; i++)
            rst_close(fds[i]);
    }
    for (unsigned i = 0; i < workers; i++) {
        mio_worker_stats st;
        double share;

        assert_int_equal(mio_pool_stats(pool, i, &st), 0);
        share = (double)st.accepted / ((double)total / workers);
        assert_true(share >= 0.9 && share <= 1.1);
    }
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    assert_int_equal(atomic_load(&n_bad_fd), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

/* worker 0 gets 20 busy conns (socketpairs) through a task; then new clients must all go to 1 */
#define PRELOAD 20
static int preload_peer[PRELOAD];
static atomic_int preload_done;

static void preload_task(mio_reactor *r, void *arg)
{
    (void)arg;
    for (int i = 0; i < PRELOAD; i++) {
        int fds[2], k = atomic_fetch_add(&n_opened, 1);

        assert_int_equal(mio_unix_stream_pair(fds), 0);
        assert_int_equal(mio_conn_open(r, fds[0], &echo_ops, &sconns[k], NULL), 0);
        preload_peer[i] = fds[1];
    }
    atomic_store(&preload_done, 1);
}

static void test_least_loaded(void **state)
{
    int base = mio_test_fd_count(), fds[10];
    mio_addr a;
    mio_pool *pool;
    mio_worker_stats s0, s1;

    (void)state;
    reset_server();
    atomic_store(&preload_done, 0);
    pool = start_pool(2, MIO_POOL_ACCEPTOR, MIO_BALANCE_LEAST_LOADED, echo_accept, &a, NULL);
    assert_int_equal(mio_reactor_post(mio_pool_worker(pool, 0), preload_task, NULL), 0);
    wait_for(&preload_done, 1, 10000);
    assert_int_equal(mio_pool_stats(pool, 0, &s0), 0);
    assert_int_equal(s0.active, PRELOAD);
    for (int i = 0; i < 10; i++) {
        fds[i] = mio_tcp_stream_connect(&a);
        assert_true(fds[i] >= 0);
    }
    wait_for(&n_opened, PRELOAD + 10, 10000);
    assert_int_equal(mio_pool_stats(pool, 0, &s0), 0);
    assert_int_equal(mio_pool_stats(pool, 1, &s1), 0);
    assert_int_equal(s0.accepted, 0);
    assert_int_equal(s1.accepted, 10);
    assert_int_equal(s1.active, 10);
    for (int i = 0; i < 10; i++)
        close(fds[i]);
    for (int i = 0; i < PRELOAD; i++)
        close(preload_peer[i]);
    wait_for(&n_closed, PRELOAD + 10, 10000);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    assert_int_equal(atomic_load(&n_bad_close), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

/* awake first: worker 0 stays busy (a task that reposts itself, so its loop never sleeps) while
 * worker 1 sleeps: new connections go to worker 0 without a wake until its load passes the
 * margin over worker 1's (a quarter above it plus 16); then worker 1 is woken for one. */
static atomic_bool keep_busy;
static atomic_int busy_runs;

static void busy_task(mio_reactor *r, void *arg)
{
    atomic_fetch_add(&busy_runs, 1);
    if (atomic_load(&keep_busy)) {
        usleep(50);
        assert_int_equal(mio_reactor_post(r, busy_task, arg), 0);
    }
}

static void connect_one(const mio_addr *a, int *fd, int opened)
{
    *fd = mio_tcp_stream_connect(a);
    assert_true(*fd >= 0);
    wait_for(&n_opened, opened, 10000);
}

static void test_awake_first(void **state)
{
    int base = mio_test_fd_count(), fds[40], n = 0;
    unsigned long long until;
    struct mio_reactor_stats rs;
    mio_worker_stats s0, s1;
    mio_addr a;
    mio_pool *pool;

    (void)state;
    reset_server();
    atomic_store(&keep_busy, true);
    atomic_store(&busy_runs, 0);
    pool = start_pool(2, MIO_POOL_ACCEPTOR, MIO_BALANCE_AWAKE_FIRST, echo_accept, &a, NULL);
    assert_int_equal(mio_reactor_post(mio_pool_worker(pool, 0), busy_task, NULL), 0);
    /* worker 1 has nothing to do: wait until it has gone to sleep, and until worker 0 runs its
     * busy loop (its thread may not have been scheduled yet when worker 1 first sleeps) */
    until = mio_test_now_ms() + 10000;
    do {
        usleep(1000);
        assert_int_equal(mio_reactor_stats(mio_pool_worker(pool, 1), &rs), 0);
    } while ((rs.sleeps == 0 || atomic_load(&busy_runs) == 0) && mio_test_now_ms() < until);
    assert_true(rs.sleeps > 0);
    assert_true(atomic_load(&busy_runs) > 0);

    for (; n < 10; n++)
        connect_one(&a, &fds[n], n + 1);
    assert_int_equal(mio_pool_stats(pool, 0, &s0), 0);
    assert_int_equal(mio_pool_stats(pool, 1, &s1), 0);
    assert_int_equal(s0.handed_off, 10);
    assert_int_equal(s0.wakes_performed, 0);
    assert_int_equal(s1.handed_off, 0);
    assert_int_equal(s1.wakes_performed, 0);

    /* past the margin the sleeping worker gets its share, and the spread stays within it */
    for (; n < 40; n++) {
        connect_one(&a, &fds[n], n + 1);
        assert_int_equal(mio_pool_stats(pool, 0, &s0), 0);
        assert_int_equal(mio_pool_stats(pool, 1, &s1), 0);
        assert_true(s0.active <= s1.active + s1.active / 4 + 17);
    }
    assert_int_equal(s0.handed_off + s1.handed_off, 40);
    assert_true(s1.handed_off >= 1);
    assert_true(s1.wakes_performed >= 1);
    assert_true(s0.handed_off >= 17);

    atomic_store(&keep_busy, false);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    wait_for(&n_closed, n, 10000);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    assert_int_equal(atomic_load(&n_bad_close), 0);
    assert_int_equal(atomic_load(&n_bad_fd), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_echo_acceptor_awake_2(void **state)
{
    (void)state;
    echo_run(2, MIO_POOL_ACCEPTOR, MIO_BALANCE_AWAKE_FIRST);
}

/* ---- ring full: workers stuck, listener paused, re-armed, nothing lost ---- */

static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t block_cv = PTHREAD_COND_INITIALIZER;
static bool block_release;
static atomic_int blocked;

static void block_task(mio_reactor *r, void *arg)
{
    (void)r;
    (void)arg;
    atomic_fetch_add(&blocked, 1);
    pthread_mutex_lock(&block_mu);
    while (!block_release)
        pthread_cond_wait(&block_cv, &block_mu);
    pthread_mutex_unlock(&block_mu);
}

static void test_ring_full(void **state)
{
    int base = mio_test_fd_count(), n = 40, fds[40];
    mio_pool_opts o = {.ring_size = 4, .accept_batch = 8};
    mio_addr a;
    mio_pool *pool;
    mio_worker_stats st;
    unsigned long long until;

    (void)state;
    reset_server();
    block_release = false;
    atomic_store(&blocked, 0);
    pool = start_pool(2, MIO_POOL_ACCEPTOR, MIO_BALANCE_ROUND_ROBIN, echo_accept, &a, &o);
    assert_int_equal(mio_reactor_post(mio_pool_worker(pool, 0), block_task, NULL), 0);
    assert_int_equal(mio_reactor_post(mio_pool_worker(pool, 1), block_task, NULL), 0);
    wait_for(&blocked, 2, 10000);
    for (int i = 0; i < n; i++) {
        fds[i] = mio_tcp_stream_connect(&a);
        assert_true(fds[i] >= 0);
    }
    /* both rings fill (3 usable slots each), then the acceptor stops listening */
    until = mio_test_now_ms() + 10000;
    do {
        usleep(1000);
        assert_int_equal(mio_pool_stats(pool, 0, &st), 0);
    } while (st.listener_paused == 0 && mio_test_now_ms() < until);
    assert_true(st.listener_paused >= 1);
    assert_int_equal(sum_stat(pool, offsetof(mio_worker_stats, ring_len)), 6);
    assert_int_equal(sum_stat(pool, offsetof(mio_worker_stats, handed_off)), 6);
    assert_true(sum_stat(pool, offsetof(mio_worker_stats, ring_full)) >= 2);
    assert_int_equal(atomic_load(&n_opened), 0);
    pthread_mutex_lock(&block_mu);
    block_release = true;
    pthread_cond_broadcast(&block_cv);
    pthread_mutex_unlock(&block_mu);
    /* every connection arrives and echoes */
    wait_for(&n_opened, n, 20000);
    for (int i = 0; i < n; i++) {
        char c = 0;

        assert_int_equal(mio_set_nonblocking(fds[i], false), 0);
        assert_int_equal(send(fds[i], "p", 1, 0), 1);
        assert_int_equal(recv(fds[i], &c, 1, 0), 1);
        assert_int_equal(c, 'p');
        close(fds[i]);
    }
    wait_for(&n_closed, n, 10000);
    assert_int_equal(sum_stat(pool, offsetof(mio_worker_stats, handed_off)), (uint64_t)n);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    assert_int_equal(atomic_load(&n_bad_close), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ---- EMFILE: pending clients are shed, the acceptor does not spin, service resumes ---- */

static void emfile_run(int mode)
{
    int base = mio_test_fd_count(), nc = 4, cl[4];
    struct mio_test_fd_squeeze sq;
    mio_addr a;
    mio_pool *pool;
    mio_worker_stats st0, st1;
    uint64_t calls0, emf;

    reset_server();
    for (int i = 0; i < nc; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(cl[i] >= 0);
    }
    /* The limit is lowered before the pool starts: an io_uring acceptor's multishot accept counts
     * the limit in force when it was armed (the kernel reads it then), as accept4 reads it per
     * call. */
    assert_int_equal(mio_test_fd_squeeze_begin(&sq), 0);
    pool = start_pool(1, mode, MIO_BALANCE_ROUND_ROBIN, echo_accept, &a, NULL);
    assert_int_equal(mio_test_fd_squeeze_fill(&sq), 0);
    assert_int_equal(mio_pool_stats(pool, 0, &st0), 0);
    calls0 = st0.accept_calls;
    for (int i = 0; i < nc; i++)
        assert_int_equal(connect(cl[i], &a.u.sa, a.len), 0);
    /* each pending client sees its connection closed */
    for (int i = 0; i < nc; i++) {
        struct timeval tv = {10, 0};
        char c;

        assert_int_equal(setsockopt(cl[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        assert_true(recv(cl[i], &c, 1, 0) <= 0);
        assert_true(errno != EAGAIN);
    }
    usleep(500000); /* still exhausted: the acceptor must stay quiet */
    assert_int_equal(mio_pool_stats(pool, 0, &st1), 0);
    emf = st1.emfile;
    assert_true(emf >= (uint64_t)nc);
    assert_true(st1.accept_calls - calls0 < 60);
    assert_int_equal(atomic_load(&n_opened), 0);
    for (int i = 0; i < nc; i++)
        close(cl[i]);
    assert_int_equal(mio_test_fd_squeeze_end(&sq), 0);
    /* service resumes */
    assert_int_equal(run_echo_clients(&a, 4, 4096, 20000), 4);
    wait_for(&n_closed, 4, 10000);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_emfile_acceptor(void **state)
{
    (void)state;
    emfile_run(MIO_POOL_ACCEPTOR);
}

static void test_emfile_reuseport(void **state)
{
    (void)state;
    emfile_run(MIO_POOL_REUSEPORT);
}

/* ---- stop under load ---- */

struct load {
    mio_addr addr;
    int n;
    atomic_int connected, ended;
};

/* Client thread: n connections sending forever and reading what comes back, until the server
 * closes each of them. */
static void *load_main(void *arg)
{
    struct load *ld = arg;
    int *fds = calloc((size_t)ld->n, sizeof(int));
    bool *dead = calloc((size_t)ld->n, sizeof(bool));
    unsigned char *buf = malloc(65536);
    mio_poll *poll;
    mio_events *events;
    unsigned long long until = mio_test_now_ms() + 120000;

    mio_poll_new(&poll);
    mio_events_new(256, &events);
    for (int i = 0; i < ld->n; i++) {
        fds[i] = mio_tcp_stream_connect(&ld->addr);
        if (fds[i] < 0) {
            dead[i] = true;
            atomic_fetch_add(&ld->ended, 1);
            continue;
        }
        mio_registry_register(mio_poll_registry(poll), fds[i], (mio_token)i,
                              MIO_READABLE | MIO_WRITABLE);
    }
    atomic_store(&ld->connected, 1);
    while (atomic_load(&ld->ended) < ld->n && mio_test_now_ms() < until) {
        mio_poll_poll(poll, events, 50);
        MIO_EVENTS_FOREACH(const mio_event *ev, events) {
            int i = (int)mio_event_token(ev);
            ssize_t k;

            if (dead[i])
                continue;
            while ((k = mio_send(fds[i], table, 16384)) > 0) {
            }
            while ((k = mio_recv(fds[i], buf, 65536)) > 0) {
            }
            if (k == 0 || (k < 0 && k != -EAGAIN)) {
                dead[i] = true;
                atomic_fetch_add(&ld->ended, 1);
                mio_registry_deregister(mio_poll_registry(poll), fds[i]);
                close(fds[i]);
            }
        }
    }
    for (int i = 0; i < ld->n; i++)
        if (!dead[i])
            close(fds[i]);
    mio_events_free(events);
    mio_poll_free(poll);
    free(buf);
    free(dead);
    free(fds);
    return NULL;
}

static atomic_int tasks_run;
static atomic_bool posting;

static void count_task(mio_reactor *r, void *arg)
{
    (void)r;
    (void)arg;
    late_check();
    atomic_fetch_add(&tasks_run, 1);
}

struct poster {
    mio_pool *pool;
};

static void *poster_main(void *arg)
{
    struct poster *p = arg;

    while (atomic_load(&posting)) {
        for (unsigned i = 0; i < mio_pool_workers(p->pool); i++)
            (void)mio_reactor_post(mio_pool_worker(p->pool, i), count_task, NULL);
        usleep(100);
    }
    return NULL;
}

static void stop_under_load(int mode)
{
    int base = mio_test_fd_count();
    struct load ld = {.n = 200};
    struct poster ps;
    pthread_t th_load, th_post;
    mio_pool *pool;

    reset_server();
    atomic_store(&tasks_run, 0);
    atomic_store(&posting, true);
    pool = start_pool(2, mode, MIO_BALANCE_ROUND_ROBIN, echo_accept, &ld.addr, NULL);
    ps.pool = pool;
    assert_int_equal(pthread_create(&th_load, NULL, load_main, &ld), 0);
    assert_int_equal(pthread_create(&th_post, NULL, poster_main, &ps), 0);
    wait_for(&n_opened, ld.n, 30000);
    usleep(200000); /* let data flow both ways */
    assert_int_equal(mio_pool_stop(pool, 50), 0);
    atomic_store(&stop_returned, true);
    assert_int_equal(atomic_load(&n_closed), atomic_load(&n_opened));
    atomic_store(&posting, false);
    pthread_join(th_post, NULL);
    usleep(50000); /* a late callback would show up now */
    mio_pool_free(pool);
    pthread_join(th_load, NULL);
    assert_int_equal(atomic_load(&ld.ended), ld.n);
    assert_int_equal(atomic_load(&n_bad_close), 0);
    assert_int_equal(atomic_load(&n_late), 0);
    assert_true(atomic_load(&tasks_run) > 0);
    for (int i = 0; i < atomic_load(&n_opened); i++)
        assert_true(sconns[i].reason == 0 || sconns[i].reason == -ECANCELED ||
                    sconns[i].reason == -ECONNRESET || sconns[i].reason == -EPIPE);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_stop_under_load_acceptor(void **state)
{
    (void)state;
    stop_under_load(MIO_POOL_ACCEPTOR);
}

static void test_stop_under_load_reuseport(void **state)
{
    (void)state;
    stop_under_load(MIO_POOL_REUSEPORT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_echo_acceptor_rr_2),
        cmocka_unit_test(test_echo_acceptor_least_4),
        cmocka_unit_test(test_echo_reuseport_2),
        cmocka_unit_test(test_echo_reuseport_4),
        cmocka_unit_test(test_pin_cpus),
        cmocka_unit_test(test_rr_spread),
        cmocka_unit_test(test_least_loaded),
        cmocka_unit_test(test_awake_first),
        cmocka_unit_test(test_echo_acceptor_awake_2),
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_emfile_acceptor),
        cmocka_unit_test(test_emfile_reuseport),
        cmocka_unit_test(test_stop_under_load_acceptor),
        cmocka_unit_test(test_stop_under_load_reuseport),
    };
    const char *env = getenv("MIO_TEST_POOL_BYTES");

    mio_test_watchdog(900);
    echo_bytes = env != NULL ? (size_t)strtoull(env, NULL, 10) : DEFAULT_BYTES;
    table = malloc(TABLE_LEN);
    srand(4242);
    for (size_t i = 0; i < TABLE_LEN; i++)
        table[i] = (unsigned char)(rand() >> 7);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
