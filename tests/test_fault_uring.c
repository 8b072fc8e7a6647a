/* Fault injection into the io_uring backend (lib/sys/uring.c): ring set-up, buffer ring
 * registration and the buffers' mmap fail on reactors and pools asking for IO_URING (a clear
 * -errno, nothing leaked) and on AUTO (epoll instead); the ring's wait fails with EINTR (retried by
 * mio_reactor_run), EBUSY (the CQ is full: not an error), or anything else (reported, and the
 * reactor still frees or stops cleanly); a flush whose submit fails still closes the conn; more
 * conns receive in one iteration than there are provided buffers (-ENOBUFS) and every byte
 * arrives in order. Each test ends with the fds, allocations, mappings, rings and buffer rings it
 * started with (tests/fault.h). Skips (77) where io_uring cannot run. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>

#include "helpers.h"
#include "fault.h"
#include "internal/reactor_int.h"
#include "internal/uring.h"

/* Asserts that nothing the backend holds is left over since fault_begin (fault_end's checks,
 * without ending the test). */
static void assert_released(void)
{
    assert_int_equal(mio_test_fd_count(), fault_fd_base);
    assert_int_equal(fault_live(), fault_live_base);
    assert_int_equal(atomic_load(&fault_live_maps), fault_maps_base);
    assert_int_equal(atomic_load(&fault_live_rings), fault_rings_base);
    assert_int_equal(atomic_load(&fault_live_buf_rings), fault_buf_rings_base);
}

static void count_task(mio_reactor *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
}

static void stop_task(mio_reactor *r, void *arg)
{
    (void)arg;
    mio_reactor_stop(r);
}

static void stop_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)id;
    (*(int *)arg)++;
    mio_reactor_stop(r);
}

/* One iteration. A real -EINTR is an iteration that did nothing: the kernel's teardown of a ring
 * interrupts every thread that entered it (internal/uring.h), and this thread runs and frees
 * rings. (The injected ones are asserted where they are armed.) */
static int run1(mio_reactor *r, int timeout_ms)
{
    int rc = mio_reactor_run_once(r, timeout_ms);

    assert_true(rc >= 0 || rc == -EINTR);
    return rc < 0 ? 0 : rc;
}

/* ---- a conn that collects what it receives (writes nothing) ---- */

struct sink {
    mio_conn *c;
    int peer;
    unsigned char *got;
    size_t len, cap;
    int closes, reason;
};

static void sink_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct sink *s = arg;

    (void)c;
    if (len == 0)
        return;
    if (s->len + len > s->cap) {
        s->cap = (s->len + len) * 2;
        s->got = realloc(s->got, s->cap);
        assert_non_null(s->got);
    }
    memcpy(s->got + s->len, data, len);
    s->len += len;
}

static void sink_close(mio_conn *c, int reason, void *arg)
{
    struct sink *s = arg;

    (void)c;
    s->closes++;
    s->reason = reason;
    s->c = NULL;
}

static const mio_conn_ops sink_ops = {sink_read, sink_close, NULL};

static void sink_open(mio_reactor *r, struct sink *s)
{
    int fds[2];

    memset(s, 0, sizeof *s);
    assert_int_equal(mio_unix_stream_pair(fds), 0);
    s->peer = fds[1];
    assert_int_equal(mio_conn_open(r, fds[0], &sink_ops, s, &s->c), 0);
}

static void pattern(unsigned char *b, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 9));
}

/* Runs r until s holds len bytes (fails after 20 s), and checks them against pattern(seed). */
static void sink_expect(mio_reactor *r, struct sink *s, size_t len, unsigned seed)
{
    unsigned long long until = mio_test_now_ms() + 20000;
    unsigned char *want = malloc(len);

    while (s->len < len && mio_test_now_ms() < until)
        (void)run1(r, 10);
    assert_int_equal(s->len, len);
    pattern(want, len, seed);
    assert_memory_equal(s->got, want, len);
    free(want);
    s->len = 0;
}

static void sink_send(struct sink *s, size_t len, unsigned seed)
{
    unsigned char *b = malloc(len);

    pattern(b, len, seed);
    assert_int_equal(send(s->peer, b, len, MSG_NOSIGNAL), (ssize_t)len);
    free(b);
}

/* Closes the conn, runs r until on_close ran and the peer saw the close. */
static void sink_done(mio_reactor *r, struct sink *s)
{
    unsigned long long until = mio_test_now_ms() + 20000;
    char b[64];
    ssize_t n = 1;

    if (s->c != NULL)
        mio_conn_close(s->c);
    while ((s->closes == 0 || n != 0) && mio_test_now_ms() < until) {
        (void)run1(r, 5);
        n = recv(s->peer, b, sizeof b, MSG_DONTWAIT);
    }
    assert_int_equal(s->closes, 1);
    assert_int_equal(n, 0);
    close(s->peer);
    free(s->got);
}

/* ---- creation: ring set-up, buffer ring registration, the buffers' mappings ---- */

struct new_fault {
    enum fault_site site;
    long skip;
    int err, want;
};

static const struct new_fault new_faults[] = {
    {FAULT_URING_INIT, 0, ENOMEM, -ENOMEM},
    {FAULT_URING_INIT, 0, EMFILE, -EMFILE},
    {FAULT_URING_INIT, 0, ENFILE, -ENFILE},
    {FAULT_URING_INIT, 0, EPERM, -EPERM},
    {FAULT_URING_INIT, 0, ENOSYS, -ENOSYS},
    {FAULT_URING_BUF_RING, 0, ENOMEM, -ENOMEM},
    {FAULT_URING_BUF_RING, 0, EFAULT, -EFAULT},
    {FAULT_URING_BUF_RING, 0, EINVAL, -EOPNOTSUPP}, /* a kernel without provided buffer rings */
    {FAULT_MMAP, 0, ENOMEM, -ENOMEM},               /* the buffer ring */
    {FAULT_MMAP, 1, ENOMEM, -ENOMEM},               /* the buffers, the buffer ring mapped */
    {FAULT_MMAP, 1, EAGAIN, -ENOMEM},
};
#define NEW_FAULTS (sizeof new_faults / sizeof new_faults[0])

static void test_reactor_new_errors(void **state)
{
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor_opts any = {.backend = MIO_BACKEND_AUTO};

    (void)state;
    for (size_t i = 0; i < NEW_FAULTS; i++) {
        const struct new_fault *f = &new_faults[i];
        mio_reactor *r = NULL;
        int ran = 0;

        fault_arm(f->site, f->skip, 1, f->err, -1);
        assert_int_equal(mio_reactor_new(&ring, &r), f->want);
        assert_int_equal(fault_hits(f->site), 1);
        assert_null(r);
        assert_released();

        /* AUTO: the same failure leaves the reactor on epoll, working */
        fault_arm(f->site, f->skip, 1, f->err, -1);
        assert_int_equal(mio_reactor_new(&any, &r), 0);
        assert_int_equal(fault_hits(f->site), 1);
        assert_int_equal(mio_reactor_backend(r), MIO_BACKEND_EPOLL);
        assert_int_equal(mio_reactor_post(r, count_task, &ran), 0);
        assert_int_equal(mio_reactor_run_once(r, 1000), 1);
        assert_int_equal(ran, 1);
        mio_reactor_free(r);
        assert_released();
    }
    /* EINVAL from the set-up: flags this kernel lacks; the next set is tried */
    {
        mio_reactor *r = NULL;

        fault_arm(FAULT_URING_INIT, 0, 1, EINVAL, -1);
        assert_int_equal(mio_reactor_new(&ring, &r), 0);
        assert_int_equal(fault_hits(FAULT_URING_INIT), 1);
        assert_int_equal(mio_reactor_backend(r), MIO_BACKEND_IO_URING);
        mio_reactor_free(r);
    }
}

/* ---- a pool's workers: the second worker's ring fails ---- */

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
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void on_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    (void)peer, (void)arg;
    if (mio_conn_open(w, fd, &echo_ops, NULL, NULL) < 0)
        close(fd);
}

/* connect() on a blocking socket, through EINTR (see run1: this thread may be interrupted):
 * an interrupted connect goes on in the background, its end is reported by poll and SO_ERROR. */
static int connect_nointr(int fd, const mio_addr *a)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    socklen_t len = sizeof(int);
    int err = 0;

    if (connect(fd, &a->u.sa, a->len) == 0)
        return 0;
    if (errno != EINTR)
        return -errno;
    while (poll(&p, 1, 20000) < 0)
        if (errno != EINTR)
            return -errno;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
    return -err;
}

/* One blocking client: connect, send n bytes, read them back. Returns 0 (echoed), -ECONNRESET
 * (closed by the server), -ETIMEDOUT (20 s), -EPROTO (other bytes), or -errno. EINTR is retried
 * (see connect_nointr). */
static int client_echo(const mio_addr *a, size_t n, unsigned seed)
{
    struct timeval tv = {.tv_sec = 20};
    unsigned char out[4096], in[4096];
    size_t got = 0;
    ssize_t k;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

    assert_true(fd >= 0 && n <= sizeof out);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    rc = connect_nointr(fd, a);
    if (rc < 0)
        goto out;
    pattern(out, n, seed);
    do
        k = send(fd, out, n, MSG_NOSIGNAL);
    while (k < 0 && errno == EINTR);
    if (k != (ssize_t)n) {
        rc = -ECONNRESET;
        goto out;
    }
    while (got < n) {
        do
            k = recv(fd, in + got, n - got, 0);
        while (k < 0 && errno == EINTR);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            rc = -ECONNRESET;
        else if (k < 0)
            rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
        if (k <= 0)
            goto out;
        got += (size_t)k;
    }
    rc = memcmp(in, out, n) == 0 ? 0 : -EPROTO;
out:
    close(fd);
    return rc;
}

static void pool_up(int backend, int mode, mio_pool **p, mio_addr *a)
{
    mio_pool_opts o = {.workers = 2, .mode = mode, .backend = backend};

    assert_int_equal(mio_pool_new(&o, p), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", a), 0);
    assert_int_equal(mio_pool_listen(*p, a, on_accept, NULL), 0);
    assert_int_equal(mio_pool_local_addr(*p, 0, a), 0);
    assert_int_equal(mio_pool_start(*p), 0);
}

static void test_pool_new_errors(void **state)
{
    mio_pool_opts ring = {.workers = 2, .backend = MIO_BACKEND_IO_URING};

    (void)state;
    for (size_t i = 0; i < NEW_FAULTS; i++) {
        const struct new_fault *f = &new_faults[i];
        /* the second worker's: the first worker's reactor, complete, must be freed */
        long skip = f->site == FAULT_MMAP ? f->skip + 2 : 1;
        mio_pool *p = NULL;
        mio_addr a;

        fault_arm(f->site, skip, 1, f->err, -1);
        assert_int_equal(mio_pool_new(&ring, &p), f->want);
        assert_int_equal(fault_hits(f->site), 1);
        assert_null(p);
        assert_released();

        /* AUTO: the failing worker runs on epoll, the pool serves */
        fault_arm(f->site, skip, 1, f->err, -1);
        pool_up(MIO_BACKEND_AUTO, MIO_POOL_ACCEPTOR, &p, &a);
        assert_int_equal(fault_hits(f->site), 1);
        assert_int_equal(mio_reactor_backend(mio_pool_worker(p, 0)), MIO_BACKEND_IO_URING);
        assert_int_equal(mio_reactor_backend(mio_pool_worker(p, 1)), MIO_BACKEND_EPOLL);
        for (unsigned k = 0; k < 4; k++)
            assert_int_equal(client_echo(&a, 1000, k), 0);
        assert_int_equal(mio_pool_stop(p, 1000), 0);
        mio_pool_free(p);
        assert_released();
    }
}

/* ---- the wait: EINTR, EBUSY, other errors ---- */

static void test_wait_eintr(void **state)
{
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor *r;
    struct sink s;
    int ran = 0, fired = 0;

    (void)state;
    assert_int_equal(mio_reactor_new(&ring, &r), 0);
    sink_open(r, &s);
    (void)run1(r, 0); /* the receive is in the kernel */

    /* run_once reports the signal, for a blocking wait and for a wait of 0 */
    fault_arm(FAULT_URING_WAIT, 0, 1, EINTR, -1);
    assert_int_equal(mio_reactor_run_once(r, 1000), -EINTR);
    assert_int_equal(fault_hits(FAULT_URING_WAIT), 1);
    fault_arm(FAULT_URING_PEEK, 0, 1, EINTR, -1);
    assert_int_equal(mio_reactor_run_once(r, 0), -EINTR);
    assert_int_equal(fault_hits(FAULT_URING_PEEK), 1);

    /* run waits through it: a timer 30 ms on stops the loop after three interrupted waits */
    assert_int_equal(mio_reactor_timer_start(r, 30, 0, stop_timer, &fired, NULL), 0);
    fault_arm(FAULT_URING_WAIT, 0, 3, EINTR, -1);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(fault_hits(FAULT_URING_WAIT), 3);
    assert_int_equal(fired, 1);
    /* tasks queued before the signals (a wait of 0) still run */
    assert_int_equal(mio_reactor_post(r, count_task, &ran), 0);
    assert_int_equal(mio_reactor_post(r, stop_task, NULL), 0);
    fault_arm(FAULT_URING_PEEK, 0, 2, EINTR, -1);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(fault_hits(FAULT_URING_PEEK), 2);
    assert_int_equal(ran, 1);

    /* the armed receive survived: bytes sent during interrupted waits arrive, in order */
    fault_arm(FAULT_URING_WAIT, 0, 2, EINTR, -1);
    sink_send(&s, 40000, 1);
    sink_expect(r, &s, 40000, 1);
    assert_int_equal(fault_hits(FAULT_URING_WAIT), 2);
    assert_int_equal(s.closes, 0);
    fault_disarm_all();
    sink_done(r, &s);
    mio_reactor_free(r);
}

/* -EBUSY: the kernel did not take the submissions because the CQ is full; the iteration reaps
 * and the next wait submits them. Not an error for run_once, and nothing is lost. */
static void test_wait_ebusy(void **state)
{
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor *r;
    struct sink s;
    int ran = 0;

    (void)state;
    assert_int_equal(mio_reactor_new(&ring, &r), 0);
    sink_open(r, &s); /* its first receive is prepared, not submitted */
    fault_arm(FAULT_URING_WAIT, 0, 1, EBUSY, -1);
    assert_true(mio_reactor_run_once(r, 1000) >= 0);
    assert_int_equal(fault_hits(FAULT_URING_WAIT), 1);
    fault_arm(FAULT_URING_PEEK, 0, 1, EBUSY, -1);
    assert_int_equal(mio_reactor_post(r, count_task, &ran), 0);
    assert_int_equal(mio_reactor_run_once(r, 1000), 1);
    assert_int_equal(fault_hits(FAULT_URING_PEEK), 1);
    assert_int_equal(ran, 1);
    fault_disarm_all();
    sink_send(&s, 50000, 2);
    sink_expect(r, &s, 50000, 2);
    assert_int_equal(s.closes, 0);
    sink_done(r, &s);
    mio_reactor_free(r);
}

/* Any other error: run_once and run report it; the reactor works again once the wait does, and
 * frees everything, also while the wait still fails (its teardown waits only a bounded time). */
static void test_wait_errors(void **state)
{
    static const int errs[] = {EBADF, ENOMEM, EFAULT, ENXIO, EOWNERDEAD};
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor *r;
    struct sink s;
    unsigned long long t0;

    (void)state;
    assert_int_equal(mio_reactor_new(&ring, &r), 0);
    sink_open(r, &s);
    (void)run1(r, 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_URING_WAIT, 0, 1, errs[i], -1);
        assert_int_equal(mio_reactor_run_once(r, 1000), -errs[i]);
        fault_arm(FAULT_URING_PEEK, 0, 1, errs[i], -1);
        assert_int_equal(mio_reactor_run_once(r, 0), -errs[i]);
        fault_arm(FAULT_URING_WAIT, 0, 1, errs[i], -1);
        assert_int_equal(mio_reactor_run(r), -errs[i]);
        fault_disarm_all();
        sink_send(&s, 20000, (unsigned)i);
        sink_expect(r, &s, 20000, (unsigned)i);
        assert_int_equal(s.closes, 0);
    }

    /* free with a receive in the kernel, bytes unread and every wait failing */
    sink_send(&s, 1000, 9);
    fault_arm(FAULT_URING_WAIT, 0, -1, EBADF, -1);
    fault_arm(FAULT_URING_PEEK, 0, -1, EBADF, -1);
    fault_arm(FAULT_URING_SUBMIT, 0, -1, EBADF, -1);
    assert_int_equal(mio_reactor_run_once(r, 10), -EBADF);
    t0 = mio_test_now_ms();
    mio_reactor_free(r);
    assert_true(mio_test_now_ms() - t0 < 10000);
    assert_int_equal(s.closes, 1);
    assert_int_equal(s.reason, -ECANCELED);
    fault_disarm_all();
    close(s.peer);
    free(s.got);
}

/* A pool worker whose wait fails leaves its loop and closes its conns; mio_pool_stop and
 * mio_pool_free then release everything. */
static void test_pool_wait_error(void **state)
{
    mio_pool *p;
    mio_addr a;
    unsigned long long until;

    (void)state;
    pool_up(MIO_BACKEND_IO_URING, MIO_POOL_ACCEPTOR, &p, &a);
    assert_int_equal(client_echo(&a, 1000, 1), 0);
    fault_arm(FAULT_URING_WAIT, 0, -1, EBADF, -1);
    fault_arm(FAULT_URING_PEEK, 0, -1, EBADF, -1);
    /* a connection wakes a worker; its next wait fails: the client sees the close, no hang */
    assert_int_equal(client_echo(&a, 1000, 2), -ECONNRESET);
    until = mio_test_now_ms() + 10000;
    while (fault_hits(FAULT_URING_WAIT) + fault_hits(FAULT_URING_PEEK) == 0 &&
           mio_test_now_ms() < until)
        usleep(1000);
    assert_true(fault_hits(FAULT_URING_WAIT) + fault_hits(FAULT_URING_PEEK) > 0);
    assert_int_equal(mio_pool_stop(p, 1000), 0);
    fault_disarm_all();
    mio_pool_free(p);
}

/* ---- a flush (the cancels of conns closed in this iteration) that fails ---- */

static void close_task(mio_reactor *r, void *arg)
{
    struct sink *s = arg;

    (void)r;
    mio_conn_close(s->c);
}

static void test_flush_error(void **state)
{
    static const int errs[] = {EINTR, EAGAIN, EBUSY, ENOMEM};
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor *r;

    (void)state;
    assert_int_equal(mio_reactor_new(&ring, &r), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        unsigned long long until = mio_test_now_ms() + 10000;
        struct sink s, t;

        sink_open(r, &s);
        sink_open(r, &t);
        sink_send(&s, 100, 3);
        sink_expect(r, &s, 100, 3);
        /* closed in a task: the iteration's flush submits the cancel, and fails; the next wait
         * submits it instead, and the peer still sees the close */
        fault_arm(FAULT_URING_SUBMIT, 0, 1, errs[i], -1);
        assert_int_equal(mio_reactor_post(r, close_task, &s), 0);
        while (s.closes == 0 && mio_test_now_ms() < until)
            (void)run1(r, 0);
        assert_int_equal(s.closes, 1);
        sink_done(r, &s);
        assert_int_equal(fault_hits(FAULT_URING_SUBMIT), 1);
        assert_int_equal(s.reason, 0);
        sink_send(&t, 30000, 4);
        sink_expect(r, &t, 30000, 4);
        sink_done(r, &t);
    }
    mio_reactor_free(r);
}

/* ---- receive-buffer exhaustion ---- */

#define NCONNS 400u     /* more receives in one iteration than the ring's 256 buffers */
#define PER_CONN 20000u /* more than one 16 KiB buffer each */

static void test_nobufs(void **state)
{
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    struct mio__uring_stats us;
    struct sink *s = calloc(NCONNS, sizeof *s);
    unsigned long long until;
    unsigned char *want = malloc(PER_CONN);
    mio_reactor *r;
    size_t done = 0;

    (void)state;
    assert_int_equal(mio_reactor_new(&ring, &r), 0);
    for (unsigned i = 0; i < NCONNS; i++) {
        sink_open(r, &s[i]);
        sink_send(&s[i], PER_CONN, i);
    }
    until = mio_test_now_ms() + 30000;
    while (done < NCONNS && mio_test_now_ms() < until) {
        (void)run1(r, 10);
        done = 0;
        for (unsigned i = 0; i < NCONNS; i++)
            done += s[i].len == PER_CONN;
    }
    mio__uring_stats(mio__reactor_uring(r), &us);
    print_message("%u conns: %llu receives ran out of buffers\n", NCONNS,
                  (unsigned long long)us.nobufs);
    assert_true(us.nobufs > 0); /* the path under test was taken */
    for (unsigned i = 0; i < NCONNS; i++) {
        assert_int_equal(s[i].closes, 0);
        assert_int_equal(s[i].len, PER_CONN);
        pattern(want, PER_CONN, i);
        assert_memory_equal(s[i].got, want, PER_CONN);
    }
    for (unsigned i = 0; i < NCONNS; i++)
        sink_done(r, &s[i]);
    mio_reactor_free(r);
    free(want);
    free(s);
}

/* ---- allocation failure at every site of a ring reactor and its conn ---- */

struct asweep {
    int closes, reason;
    size_t got;
};

#define AS_BYTES 40000u /* under the 64 KiB input limit, over two 16 KiB buffers */

/* Keeps everything until the whole message is there: every receive after the first appends to
 * the kept bytes (the allocations of the ring's input path). */
static void as_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct asweep *a = arg;

    (void)data;
    if (len < AS_BYTES && mio_conn_consume(c, 0) == 0)
        return;
    a->got = len;
}

static void as_close(mio_conn *c, int reason, void *arg)
{
    struct asweep *a = arg;

    (void)c;
    a->closes++;
    a->reason = reason;
}

static const mio_conn_ops as_ops = {as_read, as_close, NULL};

static int ring_scenario(void)
{
    static unsigned char buf[AS_BYTES];
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    struct asweep a = {0};
    mio_reactor *r = NULL;
    mio_conn *c;
    unsigned long long until;
    int fds[2] = {-1, -1}, rc;

    rc = mio_reactor_new(&ring, &r);
    if (rc < 0)
        return rc;
    rc = mio_unix_stream_pair(fds);
    if (rc < 0)
        goto out;
    rc = mio_conn_open(r, fds[0], &as_ops, &a, &c);
    if (rc < 0) {
        close(fds[0]); /* still ours on failure */
        goto out;
    }
    if (send(fds[1], buf, sizeof buf, MSG_NOSIGNAL) != (ssize_t)sizeof buf)
        rc = -EPROTO;
    until = mio_test_now_ms() + 20000;
    while (rc >= 0 && a.closes == 0 && a.got < sizeof buf && mio_test_now_ms() < until) {
        rc = mio_reactor_run_once(r, 5);
        if (rc == -EINTR)
            rc = 0; /* see run1 */
    }
    if (rc > 0)
        rc = 0;
    if (a.closes == 0)
        mio_conn_close(c);
    while (a.closes == 0 && mio_test_now_ms() < until)
        (void)mio_reactor_run_once(r, 5);
    if (a.closes != 1)
        rc = -ETIME;
    else if (a.reason < 0 && rc == 0)
        rc = a.reason;
    else if (rc == 0 && a.got != sizeof buf)
        rc = -EPROTO;
out:
    if (fds[1] >= 0)
        close(fds[1]);
    mio_reactor_free(r);
    return rc;
}

static void test_alloc_every_site(void **state)
{
    long n;

    (void)state;
    n = fault_alloc_sweep(ring_scenario, false);
    print_message("ring reactor and conn: %ld allocation sites failed in turn\n", n);
}

/* ---- the quiesce hands the aux consumer its completions ---- */

struct aux_seen {
    int fds, ended;
};

static void aux_cqe(mio_reactor *r, void *ctx, uint64_t ud, int res, unsigned flags)
{
    struct aux_seen *seen = ctx;

    (void)r;
    assert_true((ud & MIO__REACTOR_UD_AUX) != 0);
    if (res >= 0) {
        close(res);
        seen->fds++;
    }
    if (!(flags & MIO__CQE_MORE))
        seen->ended++;
}

/* A multishot accept on a ring reactor (the pool's, on a reuseport worker) accepted a connection
 * that nobody reaped when the reactor's loop ended: the quiesce hands that completion to the aux
 * consumer, which closes the fd, then the accept's last one (cancelled). Dropped, the fd would
 * stay open (fault_teardown counts them). */
static void test_quiesce_hands_aux(void **state)
{
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    struct aux_seen seen = {0};
    mio_reactor *r;
    int lfd, c;

    (void)state;
    assert_int_equal(mio_reactor_new(&ring, &r), 0);
    assert_int_equal(mio__reactor_set_aux(r, aux_cqe, &seen), 0);
    assert_int_equal(mio__reactor_set_aux(r, aux_cqe, &seen), -EEXIST);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    assert_int_equal(mio__uring_accept(mio__reactor_uring(r), lfd, MIO__REACTOR_UD_AUX | 1u), 0);
    assert_int_equal(mio__uring_submit(mio__reactor_uring(r)), 0);
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof sin), 0);
    usleep(20000); /* the kernel's accept runs; its completion waits in the CQ */
    mio__reactor_quiesce(r);
    assert_int_equal(seen.fds, 1);
    assert_int_equal(seen.ended, 1);
    mio_reactor_free(r);
    close(c);
    close(lfd);
}

/* ---- waking a ring reactor asleep in its wait while the eventfd write fails ---- */

struct sleeper {
    mio_reactor *r;
    atomic_int ran;
};

static void sleeper_task(mio_reactor *r, void *arg)
{
    (void)r;
    atomic_fetch_add(&((struct sleeper *)arg)->ran, 1);
}

/* Quiesces the ring on the thread that ran it, so that the thread freeing the reactor never
 * enters it (internal/uring.h). */
static void *sleeper_main(void *arg)
{
    mio_reactor *r = ((struct sleeper *)arg)->r;

    (void)mio_reactor_run(r);
    mio__reactor_quiesce(r);
    return NULL;
}

/* The reactor publishes SLEEPING before its blocking wait: a wait entered and not returned. */
static void wait_asleep(void)
{
    unsigned long long until = mio_test_now_ms() + 10000;

    while (fault_calls(FAULT_URING_WAIT) <= fault_uring_waits_returned()) {
        assert_true(mio_test_now_ms() < until);
        usleep(1000);
    }
}

static void test_wake_write_faults(void **state)
{
    static const int errs[] = {EINTR, EAGAIN};
    mio_reactor_opts ring = {.backend = MIO_BACKEND_IO_URING};
    struct sleeper s = {0};
    pthread_t th;

    (void)state;
    assert_int_equal(mio_reactor_new(&ring, &s.r), 0);
    assert_int_equal(pthread_create(&th, NULL, sleeper_main, &s), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        unsigned long long until = mio_test_now_ms() + 10000;

        wait_asleep();
        fault_arm(FAULT_WRITE, 0, 1, errs[i], -1); /* only the wake calls write() here */
        assert_int_equal(mio_reactor_post(s.r, sleeper_task, &s), 0);
        while (atomic_load(&s.ran) != (int)i + 1 && mio_test_now_ms() < until)
            usleep(1000);
        fault_disarm_all();
        assert_int_equal(atomic_load(&s.ran), (int)i + 1);
        assert_int_equal(fault_hits(FAULT_WRITE), 1);
    }
    assert_int_equal(mio_reactor_stop(s.r), 0);
    pthread_join(th, NULL);
    mio_reactor_free(s.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reactor_new_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_pool_new_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_wait_eintr, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_wait_ebusy, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_wait_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_pool_wait_error, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_flush_error, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_nobufs, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_wake_write_faults, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_every_site, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_quiesce_hands_aux, fault_setup, fault_teardown),
    };
    int err;

    /* Before any fault is armed: the probe's result is kept for the whole process. */
    err = mio__uring_probe();
    if (err < 0) {
        printf("SKIP: the io_uring backend cannot run here: %s\n", mio_strerror(err));
        return 77;
    }
    mio_test_watchdog(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
