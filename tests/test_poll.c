/* mio_poll: creation and fd hygiene, timeouts, -EINTR, argument checks and edge-triggered delivery
 * (mio's poll.rs and regressions.rs, with eventfd/pipe/socketpair sources). */
#include "core_helpers.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <mio/event.h>
#include <mio/poll.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_new_free(void **state)
{
    (void)state;
    mio_poll *p = NULL;
    assert_int_equal(mio_poll_new(NULL), -EINVAL);
    assert_int_equal(mio_poll_new(&p), 0);
    assert_non_null(p);
    assert_non_null(mio_poll_registry(p));
    assert_true(mio_poll_fd(p) >= 0);
    mio_poll_free(p);
    mio_poll_free(NULL);
    assert_int_equal(mio_poll_fd(NULL), -EINVAL);
}

static void test_poll_fd_is_cloexec_epoll(void **state)
{
    (void)state;
    mio_poll *p;
    int before = mio_test_fd_count();
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_test_fd_count(), before + 1);
    int fd = mio_poll_fd(p);
    int fdf = fcntl(fd, F_GETFD);
    assert_true(fdf != -1);
    assert_true(fdf & FD_CLOEXEC);
    /* It really is an epoll instance. */
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    assert_true(n > 0);
    link[n] = '\0';
    assert_string_equal(link, "anon_inode:[eventpoll]");
    mio_poll_free(p);
    assert_int_equal(mio_test_fd_count(), before);
    /* The fd is closed by free. */
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
}

/* mio's poll_closes_fd: many create/free cycles leak nothing. */
static void test_create_free_cycles_leak_no_fd(void **state)
{
    (void)state;
    int before = mio_test_fd_count();
    for (int i = 0; i < 2000; i++) {
        mio_poll *p;
        mio_events *ev;
        assert_int_equal(mio_poll_new(&p), 0);
        assert_int_equal(mio_events_new(8, &ev), 0);
        int efd = core_eventfd(1);
        assert_int_equal(mio_registry_register(mio_poll_registry(p), efd, 1, MIO_READABLE), 0);
        assert_int_equal(mio_poll_poll(p, ev, 0), 1);
        close(efd);
        mio_events_free(ev);
        mio_poll_free(p);
    }
    assert_int_equal(mio_test_fd_count(), before);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);

    assert_int_equal(mio_poll_poll(NULL, ev, 0), -EINVAL);
    assert_int_equal(mio_poll_poll(p, NULL, 0), -EINVAL);

    /* A ready source, re-armed before each call, so that a poll that wrongly passed a negative
     * timeout on to the kernel returns an event at once instead of blocking forever. */
    int efd = core_eventfd(1);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), efd, 1, MIO_READABLE), 0);
    static const int bad[] = { -2, -1000, INT_MIN };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(mio_registry_reregister(mio_poll_registry(p), efd, 1, MIO_READABLE), 0);
        assert_int_equal(mio_poll_poll(p, ev, bad[i]), -EINVAL);
    }
    /* The poll still works after rejected calls (the readiness is still queued). */
    assert_int_equal(mio_poll_poll(p, ev, 0), 1);
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);
    close(efd);

    mio_events_free(ev);
    mio_poll_free(p);
}

/* mio's zero_duration_polls_events: timeout 0 asks the kernel and returns what is ready. */
static void test_zero_timeout_returns_ready_events(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);

    assert_int_equal(mio_poll_poll(p, ev, 0), 0);
    assert_true(mio_events_is_empty(ev));

    int efd = core_eventfd(0);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), efd, 77, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);
    core_eventfd_add(efd, 1);
    assert_int_equal(mio_poll_poll(p, ev, 0), 1);
    assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 77);
    assert_true(mio_event_is_readable(mio_events_get(ev, 0)));

    close(efd);
    mio_events_free(ev);
    mio_poll_free(p);
}

static void test_timeout_expires(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    int efd = core_eventfd(0); /* registered but never ready */
    assert_int_equal(mio_registry_register(mio_poll_registry(p), efd, 1, MIO_READABLE), 0);

    static const int timeouts[] = { 1, 50, 200 };
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        uint64_t t0 = now_ns();
        assert_int_equal(mio_poll_poll(p, ev, timeouts[i]), 0);
        uint64_t elapsed = now_ns() - t0;
        assert_true(elapsed >= (uint64_t)timeouts[i] * 1000000ull);
        assert_true(mio_events_is_empty(ev));
    }

    close(efd);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* A poll clears the buffer first: stale events never survive a poll that finds nothing. */
static void test_poll_clears_events(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    int efd = core_eventfd(1);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), efd, 5, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(p, ev, 0), 1);
    assert_int_equal(mio_events_len(ev), 1);
    assert_int_equal(mio_poll_poll(p, ev, 10), 0);
    assert_int_equal(mio_events_len(ev), 0);
    assert_null(mio_events_get(ev, 0));
    close(efd);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* ---- -EINTR: a signal whose handler lacks SA_RESTART interrupts a blocking poll ---- */

static atomic_int sig_hits;

static void on_sigusr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&sig_hits, 1);
}

struct kicker {
    pthread_t target;
    int fallback_fd; /* registered in the poll; written when signalling did not end the poll */
    atomic_bool done;
};

static void *kicker_main(void *arg)
{
    struct kicker *k = arg;
    /* Keep signalling until the poll came back, so a signal that lands before the poll blocks
     * cannot make the test hang. A poll that wrongly retries after EINTR is ended after ~2 s by
     * making a source ready: it then returns 1 instead of -EINTR and the test fails fast. */
    core_sleep_ms(50);
    for (int i = 0; !atomic_load(&k->done); i++) {
        pthread_kill(k->target, SIGUSR1);
        if (i == 40) {
            uint64_t one = 1;
            if (write(k->fallback_fd, &one, sizeof one) != (ssize_t)sizeof one)
                break;
        }
        core_sleep_ms(50);
    }
    return NULL;
}

static void test_signal_interrupts_poll(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

    mio_poll *p;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);

    /* Leave a stale event in the buffer: an interrupted poll must still clear it. */
    int stale = core_eventfd(1);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), stale, 1, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(p, ev, 1000), 1);

    int fallback = core_eventfd(0);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), fallback, 2, MIO_READABLE), 0);
    struct kicker k = { .target = pthread_self(), .fallback_fd = fallback };
    atomic_init(&k.done, false);
    atomic_store(&sig_hits, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, kicker_main, &k), 0);

    int rc = mio_poll_poll(p, ev, -1);
    atomic_store(&k.done, true);
    pthread_join(th, NULL);

    assert_int_equal(rc, -EINTR);
    assert_true(atomic_load(&sig_hits) >= 1);
    assert_true(mio_events_is_empty(ev));

    /* Also with a finite timeout: -EINTR, not a retry that waits out the full timeout. */
    uint64_t drain;
    (void)!read(fallback, &drain, sizeof drain);
    atomic_store(&k.done, false);
    assert_int_equal(pthread_create(&th, NULL, kicker_main, &k), 0);
    uint64_t t0 = now_ns();
    rc = mio_poll_poll(p, ev, 60000);
    uint64_t elapsed_ms = (now_ns() - t0) / 1000000ull;
    atomic_store(&k.done, true);
    pthread_join(th, NULL);
    assert_int_equal(rc, -EINTR);
    assert_true(elapsed_ms < 60000);

    /* The poll keeps working afterwards. */
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);

    close(stale);
    close(fallback);
    mio_events_free(ev);
    mio_poll_free(p);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

/* ---- edge-triggered delivery ---- */

static void test_edge_triggered_pipe(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    int pfd[2];
    char buf[64];
    assert_int_equal(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), pfd[0], 3, MIO_READABLE), 0);

    assert_int_equal(mio_poll_poll(p, ev, 0), 0);
    assert_int_equal(write(pfd[1], "ab", 2), 2);
    assert_int_equal(mio_poll_poll(p, ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 3);
    assert_true(mio_event_is_readable(mio_events_get(ev, 0)));

    /* Data still unread, but no new edge: no new event. */
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);
    /* Reading part of it does not produce an event either. */
    assert_int_equal(read(pfd[0], buf, 1), 1);
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);

    /* New data: a new edge. */
    assert_int_equal(write(pfd[1], "c", 1), 1);
    assert_int_equal(mio_poll_poll(p, ev, 1000), 1);
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);

    /* Drain to EAGAIN, then new data is reported again. */
    assert_int_equal(read(pfd[0], buf, sizeof buf), 2);
    assert_int_equal(read(pfd[0], buf, sizeof buf), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);
    assert_int_equal(write(pfd[1], "d", 1), 1);
    assert_int_equal(mio_poll_poll(p, ev, 1000), 1);
    assert_true(mio_event_is_readable(mio_events_get(ev, 0)));

    /* Closing the write end: the reader sees HUP (read closed). */
    close(pfd[1]);
    assert_int_equal(mio_poll_poll(p, ev, 1000), 1);
    assert_true(mio_event_is_read_closed(mio_events_get(ev, 0)));

    close(pfd[0]);
    mio_events_free(ev);
    mio_poll_free(p);
}

static void test_edge_triggered_writable(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    int sv[2];
    core_socketpair(sv);
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), sv[0], 9, MIO_WRITABLE), 0);

    assert_int_equal(mio_poll_poll(p, ev, 1000), 1);
    assert_true(mio_event_is_writable(mio_events_get(ev, 0)));
    /* Still writable, but reported once only. */
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);

    /* Fill the socket until EAGAIN, then drain the peer: writable is reported again. */
    static char chunk[4096];
    size_t sent = 0;
    for (;;) {
        ssize_t n = send(sv[0], chunk, sizeof chunk, MSG_NOSIGNAL);
        if (n == -1) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        sent += (size_t)n;
        assert_true(sent < (64u << 20));
    }
    assert_int_equal(mio_poll_poll(p, ev, 0), 0);
    while (recv(sv[1], chunk, sizeof chunk, 0) > 0) {
    }
    int n = mio_poll_poll(p, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(mio_event_is_writable(mio_events_get(ev, 0)));
    assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 9);

    core_close2(sv);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* Closing the last reference to a registered fd removes it from epoll: no event afterwards, even
 * with readiness pending (mio's drop_cancels_interest). */
static void test_close_removes_pending(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    int efd = core_eventfd(1);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), efd, 1, MIO_READABLE), 0);
    close(efd);
    assert_int_equal(mio_poll_poll(p, ev, 50), 0);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* ---- a blocking poll returns when another thread makes a source ready ---- */

struct writer {
    int fd;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    core_sleep_ms(100);
    uint64_t one = 1;
    if (write(w->fd, &one, sizeof one) != (ssize_t)sizeof one)
        return (void *)1;
    return NULL;
}

static void test_infinite_poll_returns_on_readiness(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    int efd = core_eventfd(0);
    assert_int_equal(mio_registry_register(mio_poll_registry(p), efd, 11, MIO_READABLE), 0);
    struct writer w = { .fd = efd };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    int n = mio_poll_poll(p, ev, -1);
    void *ret;
    pthread_join(th, &ret);
    assert_null(ret);
    assert_int_equal(n, 1);
    assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 11);
    close(efd);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* Two polls are independent instances. */
static void test_two_polls_independent(void **state)
{
    (void)state;
    mio_poll *a, *b;
    mio_events *ev;
    assert_int_equal(mio_poll_new(&a), 0);
    assert_int_equal(mio_poll_new(&b), 0);
    assert_true(mio_poll_fd(a) != mio_poll_fd(b));
    assert_int_equal(mio_events_new(4, &ev), 0);
    int efd = core_eventfd(1);
    assert_int_equal(mio_registry_register(mio_poll_registry(a), efd, 1, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(b, ev, 0), 0);
    /* The same fd may be registered in both, each with its own token. */
    assert_int_equal(mio_registry_register(mio_poll_registry(b), efd, 2, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(a, ev, 0), 1);
    assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 1);
    assert_int_equal(mio_poll_poll(b, ev, 0), 1);
    assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 2);
    close(efd);
    mio_events_free(ev);
    mio_poll_free(a);
    mio_poll_free(b);
}

int main(void)
{
    mio_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_new_free),
        CORE_TEST(test_poll_fd_is_cloexec_epoll),
        CORE_TEST(test_create_free_cycles_leak_no_fd),
        CORE_TEST(test_bad_arguments),
        CORE_TEST(test_zero_timeout_returns_ready_events),
        CORE_TEST(test_timeout_expires),
        CORE_TEST(test_poll_clears_events),
        CORE_TEST(test_signal_interrupts_poll),
        CORE_TEST(test_edge_triggered_pipe),
        CORE_TEST(test_edge_triggered_writable),
        CORE_TEST(test_close_removes_pending),
        CORE_TEST(test_infinite_poll_returns_on_readiness),
        CORE_TEST(test_two_polls_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
