/* mio_waker: cross-thread wake of a blocked poll, coalescing, a new event for each wake after a
 * poll without the owner ever reading the eventfd, counter overflow, fd hygiene (mio's waker.rs). */
#include "core_helpers.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <mio/event.h>
#include <mio/poll.h>
#include <mio/waker.h>

#define WAKE_TOKEN ((mio_token)10)

struct ctx {
    mio_poll *poll;
    mio_events *ev;
    mio_waker *waker;
};

static void ctx_init(struct ctx *c)
{
    assert_int_equal(mio_poll_new(&c->poll), 0);
    assert_int_equal(mio_events_new(16, &c->ev), 0);
    assert_int_equal(mio_waker_new(mio_poll_registry(c->poll), WAKE_TOKEN, &c->waker), 0);
    assert_non_null(c->waker);
}

static void ctx_fini(struct ctx *c)
{
    mio_waker_free(c->waker);
    mio_events_free(c->ev);
    mio_poll_free(c->poll);
}

static void assert_one_wake_event(const mio_events *ev)
{
    assert_int_equal(mio_events_len(ev), 1);
    const mio_event *e = mio_events_get(ev, 0);
    assert_int_equal(mio_event_token(e), WAKE_TOKEN);
    assert_true(mio_event_is_readable(e));
    assert_false(mio_event_is_writable(e));
    assert_false(mio_event_is_error(e));
}

static void test_new_free_fds(void **state)
{
    (void)state;
    mio_poll *p;
    mio_waker *w;
    assert_int_equal(mio_poll_new(&p), 0);
    int before = mio_test_fd_count();
    assert_int_equal(mio_waker_new(mio_poll_registry(p), 1, &w), 0);
    assert_int_equal(mio_test_fd_count(), before + 1);
    int fd = mio_test_epoll_fd_for(mio_poll_fd(p), 1);
    assert_true(fd >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(fd));
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    assert_true(n > 0);
    link[n] = '\0';
    assert_string_equal(link, "anon_inode:[eventfd]");
    /* It is registered: registering it again is -EEXIST. */
    assert_int_equal(mio_registry_register(mio_poll_registry(p), fd, 2, MIO_READABLE), -EEXIST);
    mio_waker_free(w);
    assert_int_equal(mio_test_fd_count(), before);
    mio_waker_free(NULL);

    /* Bad arguments leak nothing. */
    assert_int_equal(mio_waker_new(NULL, 1, &w), -EINVAL);
    assert_int_equal(mio_waker_new(mio_poll_registry(p), 1, NULL), -EINVAL);
    assert_int_equal(mio_test_fd_count(), before);
    mio_poll_free(p);
}

static void test_no_event_without_wake(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 50), 0);
    ctx_fini(&c);
}

/* Each wake after a poll yields a new event; the owner never reads the eventfd. */
static void test_each_wake_after_poll_is_new_event(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(mio_waker_wake(c.waker), 0);
        assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
        assert_one_wake_event(c.ev);
        /* No new wake, no new event. */
        assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    }
    ctx_fini(&c);
}

/* Several wakes before a poll coalesce into one event; after it, nothing until the next wake. */
static void test_several_wakes_before_poll(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 5; i++)
            assert_int_equal(mio_waker_wake(c.waker), 0);
        assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
        assert_one_wake_event(c.ev);
        assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
        assert_int_equal(mio_poll_poll(c.poll, c.ev, 20), 0);
    }
    ctx_fini(&c);
}

static void test_many_wakes_without_poll(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    ctx_fini(&c);
}

/* The counter at its maximum (0xfffffffffffffffe): the next wake must drain and write again. */
static void test_counter_overflow(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int fd = mio_test_epoll_fd_for(mio_poll_fd(c.poll), WAKE_TOKEN);
    assert_true(fd >= 0);
    uint64_t v = UINT64_MAX - 1;
    assert_int_equal(write(fd, &v, sizeof v), (ssize_t)sizeof v);
    /* Really full: one more by hand would block. */
    uint64_t one = 1;
    assert_int_equal(write(fd, &one, sizeof one), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);

    /* A wake on the full counter succeeds and yields a new event. */
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    /* ... and the waker keeps working. */
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);

    /* Full again while a poll is pending: wake, then poll. */
    uint64_t cur;
    assert_int_equal(read(fd, &cur, sizeof cur), (ssize_t)sizeof cur);
    assert_int_equal(write(fd, &v, sizeof v), (ssize_t)sizeof v);
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    ctx_fini(&c);
}

/* ---- wake from another thread while the owner blocks forever ---- */

struct waker_thread {
    mio_waker *waker;
    unsigned delay_ms;
    atomic_int rc;
};

static void *wake_later_main(void *arg)
{
    struct waker_thread *t = arg;
    core_sleep_ms(t->delay_ms);
    atomic_store(&t->rc, mio_waker_wake(t->waker));
    return NULL;
}

static void test_wake_from_thread_wakes_infinite_poll(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    for (unsigned round = 0; round < 20; round++) {
        struct waker_thread t = { .waker = c.waker, .delay_ms = round % 4 == 0 ? 100 : round % 4 };
        atomic_init(&t.rc, 1);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, wake_later_main, &t), 0);
        int n = mio_poll_poll(c.poll, c.ev, -1);
        pthread_join(th, NULL);
        assert_int_equal(atomic_load(&t.rc), 0);
        assert_int_equal(n, 1);
        assert_one_wake_event(c.ev);
    }
    ctx_fini(&c);
}

/* A waker made on a clone of the registry wakes the poll of the original. */
static void test_waker_on_cloned_registry(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    mio_registry *clone;
    mio_waker *w;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    assert_int_equal(mio_registry_try_clone(mio_poll_registry(p), &clone), 0);
    assert_int_equal(mio_waker_new(clone, 99, &w), 0);
    mio_registry_free(clone); /* the registration lives in the shared instance */
    struct waker_thread t = { .waker = w, .delay_ms = 50 };
    atomic_init(&t.rc, 1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wake_later_main, &t), 0);
    int n = mio_poll_poll(p, ev, -1);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&t.rc), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 99);
    mio_waker_free(w);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* Two wakers on one poll: only the woken one reports. */
static void test_two_wakers_distinct_tokens(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    mio_waker *w2;
    assert_int_equal(mio_waker_new(mio_poll_registry(c.poll), 20, &w2), 0);
    assert_int_equal(mio_waker_wake(w2), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 20);
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_waker_wake(w2), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 2);
    mio_waker_free(w2);
    ctx_fini(&c);
}

/* A waker wakes only the poll it is registered with (mio's waker_with_different_poll). */
static void test_waker_other_poll_unaffected(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    mio_poll *other;
    assert_int_equal(mio_poll_new(&other), 0);
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(other, c.ev, 50), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    mio_poll_free(other);
    ctx_fini(&c);
}

/* Freeing a waker closes (and so deregisters) its eventfd: a pending wake is never reported. */
static void test_free_drops_pending_wake(void **state)
{
    (void)state;
    mio_poll *p;
    mio_events *ev;
    mio_waker *w;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(4, &ev), 0);
    assert_int_equal(mio_waker_new(mio_poll_registry(p), 1, &w), 0);
    assert_int_equal(mio_waker_wake(w), 0);
    mio_waker_free(w);
    assert_int_equal(mio_poll_poll(p, ev, 50), 0);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* Many threads wake concurrently while the owner polls: every wake succeeds, and a wake issued
 * after the owner's last poll returned is never lost. */
#define WAKERS 4
#define WAKES_PER_THREAD 20000

struct storm {
    mio_waker *waker;
    atomic_int failures;
    atomic_int *done;
};

static void *storm_main(void *arg)
{
    struct storm *s = arg;
    for (int i = 0; i < WAKES_PER_THREAD; i++)
        if (mio_waker_wake(s->waker) != 0)
            atomic_fetch_add(&s->failures, 1);
    atomic_fetch_add(s->done, 1);
    return NULL;
}

static void test_concurrent_wakes(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    atomic_int done;
    atomic_init(&done, 0);
    struct storm s[WAKERS];
    pthread_t th[WAKERS];
    for (int i = 0; i < WAKERS; i++) {
        s[i].waker = c.waker;
        s[i].done = &done;
        atomic_init(&s[i].failures, 0);
        assert_int_equal(pthread_create(&th[i], NULL, storm_main, &s[i]), 0);
    }
    unsigned long long deadline = mio_test_now_ms() + 60000;
    while (atomic_load(&done) < WAKERS && mio_test_now_ms() < deadline) {
        int n = mio_poll_poll(c.poll, c.ev, 100);
        assert_true(n == 0 || n == 1);
        if (n == 1) {
            assert_one_wake_event(c.ev);
        }
    }
    for (int i = 0; i < WAKERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&s[i].failures), 0);
    }
    assert_int_equal(atomic_load(&done), WAKERS);
    /* Drain whatever edge is left, then one more wake is reported. */
    (void)mio_poll_poll(c.poll, c.ev, 0);
    assert_int_equal(mio_waker_wake(c.waker), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_one_wake_event(c.ev);
    ctx_fini(&c);
}

int main(void)
{
    mio_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_new_free_fds),
        CORE_TEST(test_no_event_without_wake),
        CORE_TEST(test_each_wake_after_poll_is_new_event),
        CORE_TEST(test_several_wakes_before_poll),
        CORE_TEST(test_many_wakes_without_poll),
        CORE_TEST(test_counter_overflow),
        CORE_TEST(test_wake_from_thread_wakes_infinite_poll),
        CORE_TEST(test_waker_on_cloned_registry),
        CORE_TEST(test_two_wakers_distinct_tokens),
        CORE_TEST(test_waker_other_poll_unaffected),
        CORE_TEST(test_free_drops_pending_wake),
        CORE_TEST(test_concurrent_wakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
