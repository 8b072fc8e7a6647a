/* mio_pool as a server: worker start/stop hooks and per-reactor data, TCP_NODELAY on accepted
 * sockets, mio_pool_run (wait for SIGINT/SIGTERM, then stop). Two workers, both modes, real TCP
 * clients from this thread and helper threads.
 *
 * SIGINT and SIGTERM are blocked in main before any thread exists, so every thread (helpers and
 * pool threads alike) inherits the block and the signals these tests send can only be taken by
 * mio_pool_run's sigwait: the test cannot be killed by its own signal. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>
#include "helpers.h"

#define WORKERS 2
#define DEADLINE_MS 20000

/* ---- blocking TCP clients ---- */

/* A blocking client socket connected to addr (10 s receive timeout), or -errno. */
static int client_connect(const mio_addr *addr)
{
    struct timeval tv = {10, 0};
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd == -1)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
        connect(fd, &addr->u.sa, addr->len) == -1) {
        int err = -errno;

        close(fd);
        return err;
    }
    return fd;
}

/* Sends "ping" and expects it echoed. */
static bool client_ping(int fd)
{
    char buf[4];
    size_t got = 0;

    if (send(fd, "ping", 4, MSG_NOSIGNAL) != 4)
        return false;
    while (got < 4) {
        ssize_t n = recv(fd, buf + got, 4 - got, 0);

        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return memcmp(buf, "ping", 4) == 0;
}

/* ---- per-worker bookkeeping ---- */

struct wstate {
    atomic_int starts, stops;
    pthread_t start_thread, stop_thread;
    mio_reactor *reactor;
    atomic_int accepts, opened, closes;
    atomic_int bad; /* a check made on a pool thread failed */
    int closes_at_stop;  /* this worker's on_close count when its stop hook ran */
    int opened_at_stop;
    bool data_at_stop;   /* mio_reactor_data still ours in the stop hook */
};

static struct wstate ws[WORKERS];
static atomic_int hooks_misc_bad; /* bad index, bad arg */
static int hook_arg_token;
static mio_pool *cur_pool;
static atomic_int n_conn_reasons_bad;
static atomic_int late_callbacks; /* callbacks after mio_pool_stop returned */
static atomic_bool stop_returned;

static void reset_state(void)
{
    memset(ws, 0, sizeof(ws));
    atomic_store(&hooks_misc_bad, 0);
    atomic_store(&n_conn_reasons_bad, 0);
    atomic_store(&late_callbacks, 0);
    atomic_store(&stop_returned, false);
}

static void late_check(void)
{
    if (atomic_load(&stop_returned))
        atomic_fetch_add(&late_callbacks, 1);
}

static void on_start(mio_reactor *w, unsigned index, void *arg)
{
    late_check();
    if (index >= WORKERS || arg != &hook_arg_token) {
        atomic_fetch_add(&hooks_misc_bad, 1);
        return;
    }
    ws[index].start_thread = pthread_self();
    ws[index].reactor = w;
    if (mio_reactor_data(w) != NULL)
        atomic_fetch_add(&ws[index].bad, 1); /* NULL until set */
    mio_reactor_set_data(w, &ws[index]);
    /* published to the owner by the start barrier (mio_pool_start returns after every hook) */
    atomic_fetch_add(&ws[index].starts, 1);
}

static void on_stop(mio_reactor *w, unsigned index, void *arg)
{
    struct wstate *s;

    late_check();
    if (index >= WORKERS || arg != &hook_arg_token) {
        atomic_fetch_add(&hooks_misc_bad, 1);
        return;
    }
    s = &ws[index];
    s->stop_thread = pthread_self();
    if (w != s->reactor || !pthread_equal(s->start_thread, pthread_self()))
        atomic_fetch_add(&s->bad, 1);
    s->data_at_stop = mio_reactor_data(w) == s;
    s->closes_at_stop = atomic_load(&s->closes);
    s->opened_at_stop = atomic_load(&s->opened);
    atomic_fetch_add(&s->stops, 1);
}

/* The worker state of the reactor this callback runs on, checked against the thread. */
static struct wstate *my_worker(mio_reactor *w)
{
    struct wstate *s = mio_reactor_data(w);

    if (s == NULL || s < ws || s >= ws + WORKERS) {
        atomic_fetch_add(&hooks_misc_bad, 1);
        return NULL;
    }
    if (s->reactor != w || !pthread_equal(s->start_thread, pthread_self()) ||
        atomic_load(&s->starts) != 1)
        atomic_fetch_add(&s->bad, 1);
    return s;
}

static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    late_check();
    (void)my_worker(mio_conn_reactor(c));
    (void)arg;
    if (len == 0) {
        mio_conn_close(c);
        return;
    }
    (void)mio_conn_write(c, data, len);
}

static void echo_close(mio_conn *c, int reason, void *arg)
{
    struct wstate *s = my_worker(mio_conn_reactor(c));

    late_check();
    (void)arg;
    if (reason != 0)
        atomic_fetch_add(&n_conn_reasons_bad, 1);
    if (s != NULL)
        atomic_fetch_add(&s->closes, 1);
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void echo_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    struct wstate *s = my_worker(w);

    late_check();
    (void)peer;
    (void)arg;
    if (s != NULL)
        atomic_fetch_add(&s->accepts, 1);
    if (mio_conn_open(w, fd, &echo_ops, NULL, NULL) < 0) {
        close(fd);
        atomic_fetch_add(&hooks_misc_bad, 1);
        return;
    }
    if (s != NULL)
        atomic_fetch_add(&s->opened, 1);
}

static mio_pool *new_pool(int mode, mio_accept_fn fn, mio_addr *addr, const mio_pool_opts *extra)
{
    mio_pool_opts o = {0};
    mio_pool *pool;

    if (extra != NULL)
        o = *extra;
    o.workers = WORKERS;
    o.mode = mode;
    assert_int_equal(mio_pool_new(&o, &pool), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", addr), 0);
    assert_int_equal(mio_pool_listen(pool, addr, fn, NULL), 0);
    assert_int_equal(mio_pool_local_addr(pool, 0, addr), 0);
    return pool;
}

static void wait_int(atomic_int *v, int want, unsigned ms)
{
    unsigned long long until = mio_test_now_ms() + ms;

    while (atomic_load(v) < want && mio_test_now_ms() < until)
        usleep(1000);
    assert_int_equal(atomic_load(v), want);
}

/* ================================================================ hooks */

#define HOOK_CLIENTS 16

static void hooks_run(int mode)
{
    int base = mio_test_fd_count(), fds[HOOK_CLIENTS];
    mio_pool_opts o = {.on_worker_start = on_start, .on_worker_stop = on_stop,
                       .worker_arg = &hook_arg_token};
    mio_addr a;
    mio_pool *pool;
    int total = 0;

    reset_state();
    pool = new_pool(mode, echo_accept, &a, &o);
    cur_pool = pool;
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(atomic_load(&ws[i].starts), 0); /* no thread before start */
    assert_int_equal(mio_pool_start(pool), 0);
    /* every start hook has run, once, on its own worker thread */
    for (int i = 0; i < WORKERS; i++) {
        assert_int_equal(atomic_load(&ws[i].starts), 1);
        assert_ptr_equal(ws[i].reactor, mio_pool_worker(pool, (unsigned)i));
        assert_false(pthread_equal(ws[i].start_thread, pthread_self()));
        assert_ptr_equal(mio_reactor_data(mio_pool_worker(pool, (unsigned)i)), &ws[i]);
    }
    assert_false(pthread_equal(ws[0].start_thread, ws[1].start_thread));
    /* clients, served and kept open across the stop */
    for (int i = 0; i < HOOK_CLIENTS; i++) {
        fds[i] = client_connect(&a);
        assert_true(fds[i] >= 0);
        assert_true(client_ping(fds[i]));
    }
    for (int i = 0; i < WORKERS; i++) {
        total += atomic_load(&ws[i].opened);
        /* round robin in acceptor mode; 16 hashed connections in reuseport mode */
        assert_true(atomic_load(&ws[i].opened) >= 1);
        assert_int_equal(atomic_load(&ws[i].stops), 0);
        assert_int_equal(atomic_load(&ws[i].closes), 0);
    }
    assert_int_equal(total, HOOK_CLIENTS);
    assert_int_equal(mio_pool_stop(pool, 2000), 0);
    atomic_store(&stop_returned, true);
    /* every stop hook has run, once, on its worker's thread, after that worker's on_close
     * calls, and before mio_pool_stop returned */
    for (int i = 0; i < WORKERS; i++) {
        assert_int_equal(atomic_load(&ws[i].stops), 1);
        assert_true(pthread_equal(ws[i].stop_thread, ws[i].start_thread));
        assert_int_equal(ws[i].closes_at_stop, ws[i].opened_at_stop);
        assert_int_equal(ws[i].closes_at_stop, atomic_load(&ws[i].opened));
        assert_true(ws[i].data_at_stop);
        assert_int_equal(atomic_load(&ws[i].bad), 0);
        assert_int_equal(atomic_load(&ws[i].accepts), atomic_load(&ws[i].opened));
    }
    assert_int_equal(atomic_load(&hooks_misc_bad), 0);
    assert_int_equal(atomic_load(&n_conn_reasons_bad), 0); /* flushed: reason 0 */
    for (int i = 0; i < HOOK_CLIENTS; i++) {
        char c;

        assert_true(recv(fds[i], &c, 1, 0) <= 0); /* the server closed it */
        close(fds[i]);
    }
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    cur_pool = NULL;
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(atomic_load(&ws[i].stops), 1);
    assert_int_equal(atomic_load(&late_callbacks), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_hooks_acceptor(void **state)
{
    (void)state;
    hooks_run(MIO_POOL_ACCEPTOR);
}

static void test_hooks_reuseport(void **state)
{
    (void)state;
    hooks_run(MIO_POOL_REUSEPORT);
}

/* Reactor data on a plain reactor: NULL until set, then what was set. */
static void test_reactor_data(void **state)
{
    int base = mio_test_fd_count(), x;
    mio_reactor *r;

    (void)state;
    assert_null(mio_reactor_data(NULL));
    mio_reactor_set_data(NULL, &x); /* ignored */
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    assert_null(mio_reactor_data(r));
    mio_reactor_set_data(r, &x);
    assert_ptr_equal(mio_reactor_data(r), &x);
    mio_reactor_set_data(r, NULL);
    assert_null(mio_reactor_data(r));
    mio_reactor_free(r);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ================================================================ nodelay */

static atomic_int nd_seen, nd_value;

static void nodelay_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    int v = 0;
    socklen_t len = sizeof(v);

    (void)w;
    (void)peer;
    (void)arg;
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == -1)
        v = -errno;
    atomic_store(&nd_value, v);
    atomic_fetch_add(&nd_seen, 1);
    close(fd);
}

static void nodelay_run(int mode, bool on)
{
    int base = mio_test_fd_count(), fd;
    mio_pool_opts o = {.nodelay = on};
    mio_addr a;
    mio_pool *pool;

    atomic_store(&nd_seen, 0);
    atomic_store(&nd_value, -1);
    pool = new_pool(mode, nodelay_accept, &a, &o);
    assert_int_equal(mio_pool_start(pool), 0);
    fd = client_connect(&a);
    assert_true(fd >= 0);
    wait_int(&nd_seen, 1, DEADLINE_MS);
    assert_int_equal(atomic_load(&nd_value), on ? 1 : 0);
    close(fd);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_nodelay(void **state)
{
    (void)state;
    nodelay_run(MIO_POOL_ACCEPTOR, true);
    nodelay_run(MIO_POOL_ACCEPTOR, false);
    nodelay_run(MIO_POOL_REUSEPORT, true);
    nodelay_run(MIO_POOL_REUSEPORT, false);
}

/* ================================================================ mio_pool_run */

struct killer {
    pthread_t target;
    int sig;
    mio_addr addr;
    int fd;       /* a client left open across the stop */
    bool served;  /* the pool echoed before the signal */
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    unsigned long long until = mio_test_now_ms() + DEADLINE_MS;

    /* the pool may not be started yet: retry until it serves */
    do {
        k->fd = client_connect(&k->addr);
        if (k->fd < 0)
            usleep(2000);
    } while (k->fd < 0 && mio_test_now_ms() < until);
    if (k->fd >= 0)
        k->served = client_ping(k->fd);
    pthread_kill(k->target, k->sig);
    return NULL;
}

/* The signal mask blocks sig in the calling thread (main blocked both before any thread). */
static bool sig_blocked(int sig)
{
    sigset_t cur;

    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig) == 1;
}

static bool sig_pending(int sig)
{
    sigset_t p;

    sigpending(&p);
    return sigismember(&p, sig) == 1;
}

static void run_signalled(int mode, int sig, bool start_first)
{
    int base = mio_test_fd_count(), fd;
    mio_pool_opts o = {.on_worker_start = on_start, .on_worker_stop = on_stop,
                       .worker_arg = &hook_arg_token};
    struct killer k = {.target = pthread_self(), .sig = sig, .fd = -1};
    pthread_t th;
    mio_pool *pool;
    char c;

    reset_state();
    pool = new_pool(mode, echo_accept, &k.addr, &o);
    cur_pool = pool;
    if (start_first)
        assert_int_equal(mio_pool_start(pool), 0);
    assert_true(sig_blocked(SIGINT) && sig_blocked(SIGTERM));
    assert_int_equal(pthread_create(&th, NULL, killer_main, &k), 0);
    assert_int_equal(mio_pool_run(pool, 1000), sig);
    atomic_store(&stop_returned, true);
    pthread_join(th, NULL);
    assert_true(k.served);
    /* the pool is stopped: hooks ran, the open client was closed, connects are refused */
    for (int i = 0; i < WORKERS; i++) {
        assert_int_equal(atomic_load(&ws[i].starts), 1);
        assert_int_equal(atomic_load(&ws[i].stops), 1);
        assert_int_equal(ws[i].closes_at_stop, atomic_load(&ws[i].opened));
    }
    assert_int_equal(atomic_load(&n_conn_reasons_bad), 0);
    assert_true(recv(k.fd, &c, 1, 0) <= 0);
    close(k.fd);
    fd = client_connect(&k.addr);
    if (fd >= 0) {
        close(fd);
        fail_msg("a connect succeeded after mio_pool_run returned");
    }
    assert_int_equal(fd, -ECONNREFUSED);
    /* the signal was taken by mio_pool_run; the mask is as it was */
    assert_false(sig_pending(sig));
    assert_true(sig_blocked(SIGINT) && sig_blocked(SIGTERM));
    /* a stopped pool */
    assert_int_equal(mio_pool_run(pool, 0), -EINVAL);
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    mio_pool_free(pool);
    cur_pool = NULL;
    assert_int_equal(atomic_load(&late_callbacks), 0);
    assert_int_equal(atomic_load(&hooks_misc_bad), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_run_sigterm_acceptor(void **state)
{
    (void)state;
    run_signalled(MIO_POOL_ACCEPTOR, SIGTERM, false);
}

static void test_run_sigint_acceptor(void **state)
{
    (void)state;
    run_signalled(MIO_POOL_ACCEPTOR, SIGINT, true);
}

static void test_run_sigterm_reuseport(void **state)
{
    (void)state;
    run_signalled(MIO_POOL_REUSEPORT, SIGTERM, true);
}

static void test_run_sigint_reuseport(void **state)
{
    (void)state;
    run_signalled(MIO_POOL_REUSEPORT, SIGINT, false);
}

/* mio_pool_run from a worker callback: -EDEADLK, and the pool runs on */
static atomic_int run_rc_in_cb, run_rc_set;

static void run_in_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    int rc = mio_pool_run(cur_pool, 0);

    (void)peer;
    (void)arg;
    if (atomic_fetch_add(&run_rc_set, 1) == 0)
        atomic_store(&run_rc_in_cb, rc);
    else if (rc != atomic_load(&run_rc_in_cb))
        atomic_store(&run_rc_in_cb, rc); /* any deviation shows */
    if (mio_conn_open(w, fd, &echo_ops, NULL, NULL) < 0) {
        close(fd);
        atomic_fetch_add(&hooks_misc_bad, 1);
    }
}

static void deadlk_run(int mode)
{
    int base = mio_test_fd_count(), fds[4];
    mio_pool_opts o = {.on_worker_start = on_start, .on_worker_stop = on_stop,
                       .worker_arg = &hook_arg_token};
    mio_addr a;
    mio_pool *pool;

    reset_state();
    atomic_store(&run_rc_in_cb, 0);
    atomic_store(&run_rc_set, 0);
    assert_int_equal(mio_pool_run(NULL, 0), -EINVAL);
    pool = new_pool(mode, run_in_accept, &a, &o);
    cur_pool = pool;
    assert_int_equal(mio_pool_start(pool), 0);
    for (int i = 0; i < 4; i++) {
        fds[i] = client_connect(&a);
        assert_true(fds[i] >= 0);
        assert_true(client_ping(fds[i])); /* served after the refused run */
    }
    assert_int_equal(atomic_load(&run_rc_set), 4);
    assert_int_equal(atomic_load(&run_rc_in_cb), -EDEADLK);
    for (int i = 0; i < 4; i++) {
        assert_true(client_ping(fds[i])); /* still running */
        close(fds[i]);
    }
    assert_int_equal(mio_pool_stop(pool, 1000), 0);
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(atomic_load(&ws[i].stops), 1);
    mio_pool_free(pool);
    cur_pool = NULL;
    assert_int_equal(atomic_load(&hooks_misc_bad), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_run_deadlk_acceptor(void **state)
{
    (void)state;
    deadlk_run(MIO_POOL_ACCEPTOR);
}

static void test_run_deadlk_reuseport(void **state)
{
    (void)state;
    deadlk_run(MIO_POOL_REUSEPORT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reactor_data),
        cmocka_unit_test(test_hooks_acceptor),
        cmocka_unit_test(test_hooks_reuseport),
        cmocka_unit_test(test_nodelay),
        cmocka_unit_test(test_run_sigterm_acceptor),
        cmocka_unit_test(test_run_sigint_acceptor),
        cmocka_unit_test(test_run_sigterm_reuseport),
        cmocka_unit_test(test_run_sigint_reuseport),
        cmocka_unit_test(test_run_deadlk_acceptor),
        cmocka_unit_test(test_run_deadlk_reuseport),
    };
    sigset_t block;

    /* Before any thread: every thread inherits the block (see the top of the file). */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    signal(SIGPIPE, SIG_IGN);
    mio_test_watchdog(280);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
