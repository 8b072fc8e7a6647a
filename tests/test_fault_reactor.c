/* Fault injection into the reactor: allocation failure at every site (reactor, slab pages and
 * their index, timer pool pages, task ring), epoll_wait/epoll_ctl/eventfd errors, and eventfd
 * write faults while a sleeping reactor is woken from another thread. Run on io_uring too
 * (tests/uring/): there the epoll_wait tests skip; test_fault_uring fails the ring's wait. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>

#include "helpers.h"
#include "fault.h"

#define NHANDLERS 1100 /* five slab pages: the page index is reallocated once */
#define NTIMERS 9000   /* three timer pool pages */

static int pipe_fds[2];
static int dups[NHANDLERS];

static void noop_io(mio_reactor *r, mio_token t, const mio_event *ev, void *arg)
{
    (void)r, (void)t, (void)ev, (void)arg;
}

static void noop_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)r, (void)id, (void)arg;
}

static void count_task(mio_reactor *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
}

/* ---- allocation failure at every site ---- */

static int reactor_scenario(void)
{
    mio_reactor_opts o = {.events_capacity = 64, .post_capacity = 64};
    static mio_token toks[NHANDLERS];
    struct mio_reactor_stats st;
    mio_reactor *r = NULL;
    int rc, added = 0, ran = 0;

    rc = mio_reactor_new(&o, &r);
    if (rc < 0)
        goto out;
    for (; added < NHANDLERS; added++) {
        rc = mio_reactor_add(r, dups[added], MIO_READABLE, noop_io, NULL, &toks[added]);
        if (rc < 0) {
            /* the failed add released its slot */
            mio_reactor_stats(r, &st);
            if (st.handlers != (uint64_t)added)
                rc = -EPROTO;
            goto out;
        }
    }
    for (int i = 0; i < NTIMERS; i++) {
        rc = mio_reactor_timer_start(r, 3600000, 0, noop_timer, NULL, NULL);
        if (rc < 0) {
            mio_reactor_stats(r, &st);
            if (st.timers != (uint64_t)i)
                rc = -EPROTO;
            goto out;
        }
    }
    rc = mio_reactor_post(r, count_task, &ran);
    if (rc < 0)
        goto out;
    rc = mio_reactor_run_once(r, 0);
    if (rc >= 0)
        rc = ran == 1 ? 0 : -EPROTO;
out:
    for (int i = 0; i < added; i++)
        if (mio_reactor_remove(r, toks[i]) != 0)
            rc = -EPROTO;
    mio_reactor_free(r);
    return rc;
}

static void test_alloc_every_site(void **state)
{
    long n;

    (void)state;
    assert_int_equal(mio_pipe_new(pipe_fds), 0);
    for (int i = 0; i < NHANDLERS; i++) {
        dups[i] = fcntl(pipe_fds[0], F_DUPFD_CLOEXEC, 0);
        assert_true(dups[i] >= 0);
    }
    n = fault_alloc_sweep(reactor_scenario, false);
    print_message("reactor: %ld allocation sites failed in turn\n", n);
    for (int i = 0; i < NHANDLERS; i++)
        close(dups[i]);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

/* ---- creation: epoll_create1 and eventfd failures ---- */

static void test_new_errors(void **state)
{
    static const int errs[] = {EMFILE, ENFILE, ENOMEM, ENODEV};
    mio_reactor *r = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        if (errs[i] != ENODEV) {
            fault_arm(FAULT_EPOLL_CREATE1, 0, 1, errs[i], -1);
            assert_int_equal(mio_reactor_new(NULL, &r), -errs[i]);
            assert_null(r);
        }
        fault_disarm_all();
        fault_arm(FAULT_EVENTFD, 0, 1, errs[i], -1);
        assert_int_equal(mio_reactor_new(NULL, &r), -errs[i]);
        assert_null(r);
        fault_arm(FAULT_EPOLL_CTL, 0, 1, errs[i] == ENODEV ? ENOSPC : errs[i], -1);
        assert_int_equal(mio_reactor_new(NULL, &r), errs[i] == ENODEV ? -ENOSPC : -errs[i]);
        assert_null(r);
        fault_disarm_all();
    }
}

/* ---- epoll_ctl on add / modify ---- */

static void test_ctl_errors(void **state)
{
    static const int errs[] = {ENOMEM, ENOSPC};
    struct mio_reactor_stats st;
    mio_reactor *r;
    mio_token t;
    int fds[2], ran = 0;

    (void)state;
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    assert_int_equal(mio_unix_stream_pair(fds), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_EPOLL_CTL, 0, 1, errs[i], fds[0]);
        assert_int_equal(mio_reactor_add(r, fds[0], MIO_READABLE, noop_io, NULL, &t), -errs[i]);
        assert_int_equal(mio_reactor_stats(r, &st), 0);
        assert_int_equal(st.handlers, 0);
        fault_disarm_all();
        /* no half registration left behind: the same fd adds fine now */
        assert_int_equal(mio_reactor_add(r, fds[0], MIO_READABLE, noop_io, NULL, &t), 0);
        fault_arm(FAULT_EPOLL_CTL, 0, 1, errs[i], fds[0]);
        assert_int_equal(mio_reactor_modify(r, t, MIO_READABLE | MIO_WRITABLE), -errs[i]);
        fault_disarm_all();
        assert_int_equal(mio_reactor_remove(r, t), 0);
    }
    /* the reactor still works */
    assert_int_equal(mio_reactor_post(r, count_task, &ran), 0);
    assert_int_equal(mio_reactor_run_once(r, 0), 1);
    assert_int_equal(ran, 1);
    close(fds[0]);
    close(fds[1]);
    mio_reactor_free(r);
}

/* ---- epoll_wait: run_once reports, run waits through EINTR, other errors end run ---- */

static void stop_task(mio_reactor *r, void *arg)
{
    (*(int *)arg)++;
    mio_reactor_stop(r);
}

static void test_wait_errors(void **state)
{
    mio_reactor *r;
    int ran = 0;

    (void)state;
    fault_skip_on_ring("the ring waits in io_uring_enter, not epoll_wait (test_fault_uring)");
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    fault_arm(FAULT_EPOLL_WAIT, 0, 1, EINTR, -1);
    assert_int_equal(mio_reactor_run_once(r, 1000), -EINTR);

    assert_int_equal(mio_reactor_post(r, stop_task, &ran), 0);
    fault_arm(FAULT_EPOLL_WAIT, 0, 3, EINTR, -1);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(fault_hits(FAULT_EPOLL_WAIT), 3);
    assert_int_equal(ran, 1); /* the task queued before the signals still ran */

    fault_arm(FAULT_EPOLL_WAIT, 0, 1, EBADF, -1);
    assert_int_equal(mio_reactor_run(r), -EBADF);
    fault_disarm_all();
    assert_int_equal(mio_reactor_post(r, stop_task, &ran), 0);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(ran, 2);
    mio_reactor_free(r);
}

/* ---- waking a sleeping reactor while the eventfd write fails transiently ---- */

struct sleeper {
    mio_reactor *r;
    atomic_int ran;
};

static void sleeper_task(mio_reactor *r, void *arg)
{
    struct sleeper *s = arg;

    (void)r;
    atomic_fetch_add(&s->ran, 1);
}

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;

    (void)mio_reactor_run(s->r);
    return NULL;
}

/* An idle reactor publishes SLEEPING before it enters epoll_wait (the only caller of epoll_wait
 * in this test). Once the last task ran, an entry with no matching return means it sleeps there
 * and a post must write the eventfd. (Counted by the wrapper rather than read from
 * mio_reactor_stats, whose ck_pr counters ThreadSanitizer reports as races.) */
static void wait_asleep(void)
{
    unsigned long long until = mio_test_now_ms() + 10000;

    for (;;) {
        long returned = atomic_load(&fault_epoll_wait_returns);

        if (fault_calls(FAULT_EPOLL_WAIT) > returned)
            break;
        assert_true(mio_test_now_ms() < until);
        usleep(1000);
    }
}

static void test_wake_write_faults(void **state)
{
    static const int errs[] = {EINTR, EAGAIN};
    struct sleeper s = {0};
    pthread_t th;

    (void)state;
    fault_skip_on_ring("asleep means in epoll_wait here; test_fault_uring wakes a ring reactor");
    assert_int_equal(mio_reactor_new(NULL, &s.r), 0);
    assert_int_equal(pthread_create(&th, NULL, sleeper_main, &s), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        unsigned long long until = mio_test_now_ms() + 10000;

        wait_asleep();
        /* only the wake writes to an fd with write() in this process */
        fault_arm(FAULT_WRITE, 0, 1, errs[i], -1);
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
        cmocka_unit_test_setup_teardown(test_alloc_every_site, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_new_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_ctl_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_wait_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_wake_write_faults, fault_setup, fault_teardown),
    };

    mio_test_watchdog(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
