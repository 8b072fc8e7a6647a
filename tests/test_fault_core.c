/* Fault injection into the core and net layers (poll, registry, events, waker, sockets): every
 * errno the man pages list for the wrapped calls comes back as that -errno (or is retried where
 * the API promises it), nothing leaks, and what was pending before the fault is still there
 * after it. Linked with -Wl,--wrap (see tests/fault.h). */
#include <fcntl.h>
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

/* ---- allocation failure at every site ---- */

static int core_scenario(void)
{
    mio_poll *p = NULL;
    mio_events *ev = NULL;
    mio_waker *w = NULL;
    mio_registry *clone = NULL;
    int rc;

    rc = mio_poll_new(&p);
    if (rc < 0)
        goto out;
    rc = mio_events_new(16, &ev);
    if (rc < 0)
        goto out;
    rc = mio_waker_new(mio_poll_registry(p), 7, &w);
    if (rc < 0)
        goto out;
    rc = mio_registry_try_clone(mio_poll_registry(p), &clone);
    if (rc < 0)
        goto out;
    rc = mio_waker_wake(w);
    if (rc < 0)
        goto out;
    rc = mio_poll_poll(p, ev, 5000);
    if (rc >= 0)
        rc = (rc == 1 && mio_event_token(mio_events_get(ev, 0)) == 7) ? 0 : -EPROTO;
out:
    mio_registry_free(clone);
    mio_waker_free(w);
    mio_events_free(ev);
    mio_poll_free(p);
    return rc;
}

static void test_alloc_every_site(void **state)
{
    (void)state;
    /* poll, events (2), waker, clone: 5 allocations */
    assert_int_equal(fault_alloc_sweep(core_scenario, false), 5);
}

/* ---- epoll_create1, eventfd, epoll_ctl ---- */

static void test_epoll_create_errors(void **state)
{
    static const int errs[] = {EMFILE, ENFILE, ENOMEM};
    mio_poll *p = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_EPOLL_CREATE1, 0, 1, errs[i], -1);
        assert_int_equal(mio_poll_new(&p), -errs[i]);
        assert_int_equal(fault_hits(FAULT_EPOLL_CREATE1), 1);
        assert_null(p);
    }
    fault_disarm_all();
    assert_int_equal(mio_poll_new(&p), 0);
    mio_poll_free(p);
}

static void test_eventfd_errors(void **state)
{
    static const int errs[] = {EMFILE, ENFILE, ENODEV, ENOMEM};
    mio_poll *p;
    mio_waker *w = NULL;

    (void)state;
    assert_int_equal(mio_poll_new(&p), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_EVENTFD, 0, 1, errs[i], -1);
        assert_int_equal(mio_waker_new(mio_poll_registry(p), 1, &w), -errs[i]);
        assert_null(w);
    }
    fault_disarm_all();
    assert_int_equal(mio_waker_new(mio_poll_registry(p), 1, &w), 0);
    mio_waker_free(w);
    mio_poll_free(p);
}

static void test_epoll_ctl_errors(void **state)
{
    static const int errs[] = {ENOMEM, ENOSPC};
    mio_poll *p;
    mio_events *ev;
    mio_waker *w = NULL;
    int fds[2];

    (void)state;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(8, &ev), 0);
    assert_int_equal(mio_unix_stream_pair(fds), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        /* register, reregister and the waker's own registration (its eventfd must not leak) */
        fault_arm(FAULT_EPOLL_CTL, 0, 1, errs[i], -1);
        assert_int_equal(mio_registry_register(mio_poll_registry(p), fds[0], 1, MIO_READABLE),
                         -errs[i]);
        fault_arm(FAULT_EPOLL_CTL, 0, 1, errs[i], -1);
        assert_int_equal(mio_waker_new(mio_poll_registry(p), 2, &w), -errs[i]);
        assert_null(w);
        fault_disarm_all();
        assert_int_equal(mio_registry_register(mio_poll_registry(p), fds[0], 1, MIO_READABLE), 0);
        fault_arm(FAULT_EPOLL_CTL, 0, 1, errs[i], -1);
        assert_int_equal(
            mio_registry_reregister(mio_poll_registry(p), fds[0], 3, MIO_READABLE | MIO_WRITABLE),
            -errs[i]);
        fault_disarm_all();
        /* the registration is intact after the failed change: token 1, readable */
        assert_int_equal(mio_send(fds[1], "x", 1), 1);
        assert_int_equal(mio_poll_poll(p, ev, 5000), 1);
        assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 1);
        assert_int_equal(mio_registry_deregister(mio_poll_registry(p), fds[0]), 0);
        assert_int_equal(mio_recv(fds[0], (char[4]){0}, 4), 1);
    }
    close(fds[0]);
    close(fds[1]);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* ---- epoll_wait: EINTR is returned, never retried, and the readiness is not lost ---- */

static void test_epoll_wait_errors(void **state)
{
    static const int errs[] = {EINTR, EBADF, EINVAL, EFAULT};
    mio_poll *p;
    mio_events *ev;
    mio_waker *w;

    (void)state;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(8, &ev), 0);
    assert_int_equal(mio_waker_new(mio_poll_registry(p), 9, &w), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        assert_int_equal(mio_waker_wake(w), 0);
        fault_arm(FAULT_EPOLL_WAIT, 0, 1, errs[i], mio_poll_fd(p));
        assert_int_equal(mio_poll_poll(p, ev, -1), -errs[i]);
        assert_int_equal(fault_hits(FAULT_EPOLL_WAIT), 1);
        assert_int_equal(mio_events_len(ev), 0);
        assert_int_equal(mio_poll_poll(p, ev, 5000), 1);
        assert_int_equal(mio_event_token(mio_events_get(ev, 0)), 9);
    }
    mio_waker_free(w);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* ---- waker: EINTR on the eventfd write is retried; a full counter (EAGAIN) is drained ---- */

static void test_waker_write_faults(void **state)
{
    mio_poll *p;
    mio_events *ev;
    mio_waker *w;
    int wfd;

    (void)state;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(8, &ev), 0);
    assert_int_equal(mio_waker_new(mio_poll_registry(p), 5, &w), 0);
    wfd = mio_test_epoll_fd_for(mio_poll_fd(p), 5);
    assert_true(wfd >= 0);

    fault_arm(FAULT_WRITE, 0, 2, EINTR, wfd);
    assert_int_equal(mio_waker_wake(w), 0);
    assert_int_equal(fault_hits(FAULT_WRITE), 2);
    assert_int_equal(mio_poll_poll(p, ev, 5000), 1);

    fault_arm(FAULT_WRITE, 0, 1, EAGAIN, wfd); /* as if the counter were at its maximum */
    fault_count_reset(FAULT_READ);
    fault_arm(FAULT_READ, 0, 0, 0, wfd); /* count the drain read on this fd */
    assert_int_equal(mio_waker_wake(w), 0);
    assert_int_equal(fault_calls(FAULT_READ), 1);
    assert_int_equal(mio_poll_poll(p, ev, 5000), 1);

    /* the counter stays full even after the drain: a clear -EAGAIN, not a silent success */
    fault_arm(FAULT_WRITE, 0, 2, EAGAIN, wfd);
    assert_int_equal(mio_waker_wake(w), -EAGAIN);
    fault_disarm_all();
    assert_int_equal(mio_waker_wake(w), 0);
    assert_int_equal(mio_poll_poll(p, ev, 5000), 1);

    mio_waker_free(w);
    mio_events_free(ev);
    mio_poll_free(p);
}

/* ---- accept4 ---- */

static void test_accept_errors(void **state)
{
    static const int errs[] = {ECONNABORTED, EMFILE, ENFILE, ENOBUFS, ENOMEM, EPERM, EPROTO};
    mio_addr a, peer;
    int lfd, c, s;

    (void)state;
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &a), 0);
    lfd = mio_tcp_listener_bind(&a);
    assert_true(lfd >= 0);
    assert_int_equal(mio_socket_local_addr(lfd, &a), 0);
    c = mio_tcp_stream_connect(&a);
    assert_true(c >= 0);
    usleep(20000);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_ACCEPT4, 0, 1, errs[i], lfd);
        assert_int_equal(mio_tcp_listener_accept(lfd, &peer), -errs[i]);
    }
    /* EAGAIN/EWOULDBLOCK is -EAGAIN; EINTR is retried inside */
    fault_arm(FAULT_ACCEPT4, 0, 1, EWOULDBLOCK, lfd);
    assert_int_equal(mio_tcp_listener_accept(lfd, &peer), -EAGAIN);
    fault_arm(FAULT_ACCEPT4, 0, 3, EINTR, lfd);
    s = mio_tcp_listener_accept(lfd, &peer);
    assert_int_equal(fault_hits(FAULT_ACCEPT4), 3);
    /* the pending connection survived every injected failure */
    assert_true(s >= 0);
    assert_true(mio_test_fd_is_nb_cloexec(s));
    close(s);
    close(c);
    close(lfd);
}

/* ---- recv / send / sendmsg / writev / read ---- */

static void test_socket_io_errors(void **state)
{
    static const int rerrs[] = {EINTR, ECONNRESET, ENOMEM, ENOTCONN, ETIMEDOUT};
    static const int werrs[] = {EINTR, EPIPE, ECONNRESET, ENOBUFS, ENOMEM};
    char buf[8];
    int fds[2];

    (void)state;
    assert_int_equal(mio_unix_stream_pair(fds), 0);
    assert_int_equal(mio_send(fds[1], "abc", 3), 3);
    for (size_t i = 0; i < sizeof rerrs / sizeof rerrs[0]; i++) {
        fault_arm(FAULT_RECV, 0, 1, rerrs[i], fds[0]);
        assert_int_equal(mio_recv(fds[0], buf, sizeof buf), -rerrs[i]);
    }
    fault_arm(FAULT_RECV, 0, 1, EWOULDBLOCK, fds[0]);
    assert_int_equal(mio_recv(fds[0], buf, sizeof buf), -EAGAIN);
    fault_disarm_all();
    assert_int_equal(mio_recv(fds[0], buf, sizeof buf), 3); /* nothing was lost */
    assert_memory_equal(buf, "abc", 3);

    for (size_t i = 0; i < sizeof werrs / sizeof werrs[0]; i++) {
        struct iovec iov = {.iov_base = "x", .iov_len = 1};

        fault_arm(FAULT_SEND, 0, 1, werrs[i], fds[1]);
        assert_int_equal(mio_send(fds[1], "x", 1), -werrs[i]);
        fault_arm(FAULT_SENDMSG, 0, 1, werrs[i], fds[1]);
        assert_int_equal(mio_sendv(fds[1], &iov, 1), -werrs[i]);
    }
    fault_arm(FAULT_SENDMSG, 0, 1, EWOULDBLOCK, fds[1]);
    assert_int_equal(mio_sendv(fds[1], &(struct iovec){.iov_base = "x", .iov_len = 1}, 1),
                     -EAGAIN);
    fault_disarm_all();
    assert_int_equal(mio_recv(fds[0], buf, sizeof buf), -EAGAIN); /* no byte went out */
    close(fds[0]);
    close(fds[1]);
}

/* Pipes: mio_recv falls back to read, mio_send / mio_sendv to write / writev with SIGPIPE
 * blocked; their errors come back the same way. */
static void test_pipe_io_errors(void **state)
{
    static const int errs[] = {EINTR, EPIPE, EIO, ENOSPC};
    struct iovec iov = {.iov_base = "y", .iov_len = 1};
    char buf[4];
    int p[2];

    (void)state;
    assert_int_equal(mio_pipe_new(p), 0);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_WRITEV, 0, 1, errs[i], p[1]);
        assert_int_equal(mio_sendv(p[1], &iov, 1), -errs[i]);
        fault_arm(FAULT_WRITE, 0, 1, errs[i], p[1]);
        assert_int_equal(mio_send(p[1], "y", 1), -errs[i]);
        fault_arm(FAULT_READ, 0, 1, errs[i], p[0]);
        assert_int_equal(mio_recv(p[0], buf, sizeof buf), -errs[i]);
    }
    fault_disarm_all();
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), -EAGAIN);
    assert_int_equal(mio_sendv(p[1], &iov, 1), 1);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 1);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alloc_every_site, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_epoll_create_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_eventfd_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_epoll_ctl_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_epoll_wait_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_waker_write_faults, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_accept_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_socket_io_errors, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_pipe_io_errors, fault_setup, fault_teardown),
    };

    mio_test_watchdog(120);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
