/* Pipes through mio_poll (mio's unix_pipe.rs) and the SIGPIPE contract of mio_send on non-sockets:
 * SIGPIPE stays at its default disposition here, so a raised SIGPIPE would kill the binary. */
#include "net_helpers.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

enum { RECV = 1, SEND = 2, OTHER = 3 };

static bool sigpipe_pending(void)
{
    sigset_t s;
    assert_int_equal(sigpending(&s), 0);
    return sigismember(&s, SIGPIPE) == 1;
}

static bool sigpipe_blocked(void)
{
    sigset_t s;
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &s), 0);
    return sigismember(&s, SIGPIPE) == 1;
}

static void test_flags(void **state)
{
    int p[2];
    (void)state;
    assert_int_equal(mio_pipe_new(p), 0);
    assert_true(mio_test_fd_is_nb_cloexec(p[0]));
    assert_true(mio_test_fd_is_nb_cloexec(p[1]));
    assert_int_equal(mio_pipe_new(NULL), -EINVAL);
    net_close2(p);
}

static void test_set_nonblocking(void **state)
{
    int p[2];
    (void)state;
    assert_int_equal(mio_pipe_new(p), 0);
    assert_int_equal(mio_set_nonblocking(p[0], false), 0);
    assert_int_equal(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    assert_int_equal(mio_set_nonblocking(p[0], false), 0);
    assert_int_equal(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    assert_int_equal(mio_set_nonblocking(p[0], true), 0);
    assert_int_not_equal(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    assert_true(mio_test_fd_is_nb_cloexec(p[0]));
    assert_int_equal(mio_set_nonblocking(-1, true), -EBADF);
    net_close2(p);
}

static void test_events_and_data(void **state)
{
    struct net_ctx c;
    int p[2];
    char buf[64];
    struct iovec iov[2] = {{(void *)"hel", 3}, {(void *)"lo", 2}};
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_pipe_new(p), 0);
    assert_int_equal(mio_registry_register(c.reg, p[0], RECV, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(c.reg, p[1], SEND, MIO_WRITABLE), 0);
    net_wait(&c, SEND, EV_W);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), -EAGAIN);
    assert_int_equal(mio_send(p[1], "abc", 3), 3);
    assert_int_equal(mio_sendv(p[1], iov, 2), 5);
    net_wait(&c, RECV, EV_R);
    assert_int_equal(mio_recv(p[0], buf, 3), 3);
    assert_memory_equal(buf, "abc", 3);
    char x[2], y[8];
    struct iovec riov[2] = {{x, 2}, {y, sizeof y}};
    assert_int_equal(mio_recvv(p[0], riov, 2), 5);
    assert_memory_equal(x, "he", 2);
    assert_memory_equal(y, "llo", 3);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), -EAGAIN);
    /* Not a socket: peeking is refused rather than faked. */
    assert_int_equal(mio_peek(p[0], buf, sizeof buf), -ENOTSOCK);
    net_close2(p);
    net_ctx_free(&c);
}

static void test_fill_then_writable_again(void **state)
{
    struct net_ctx c;
    int p[2];
    static char buf[65536];
    ssize_t r;
    size_t total = 0, drained = 0;
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_pipe_new(p), 0);
    assert_int_equal(mio_registry_register(c.reg, p[0], RECV, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(c.reg, p[1], SEND, MIO_WRITABLE), 0);
    net_wait(&c, SEND, EV_W);
    memset(buf, 'q', sizeof buf);
    while ((r = mio_send(p[1], buf, sizeof buf)) > 0)
        total += (size_t)r;
    assert_int_equal(r, -EAGAIN);
    assert_true(total > 0);
    net_wait(&c, RECV, EV_R);
    while ((r = mio_recv(p[0], buf, sizeof buf)) > 0)
        drained += (size_t)r;
    assert_int_equal(r, -EAGAIN);
    assert_int_equal(drained, total);
    net_wait(&c, SEND, EV_W);
    net_close2(p);
    net_ctx_free(&c);
}

static void test_sender_closed(void **state)
{
    struct net_ctx c;
    int p[2];
    char buf[8];
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_pipe_new(p), 0);
    assert_int_equal(mio_registry_register(c.reg, p[0], RECV, MIO_READABLE), 0);
    assert_int_equal(mio_send(p[1], "z", 1), 1);
    close(p[1]);
    net_wait(&c, RECV, EV_R | EV_RC);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 1);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 0);
    close(p[0]);
    net_ctx_free(&c);
}

static void test_receiver_closed_epipe_no_signal(void **state)
{
    struct net_ctx c;
    int p[2];
    struct iovec iov = {(void *)"v", 1};
    (void)state;
    net_ctx_init(&c);
    assert_false(sigpipe_blocked());
    assert_int_equal(mio_pipe_new(p), 0);
    assert_int_equal(mio_registry_register(c.reg, p[1], SEND, MIO_WRITABLE), 0);
    net_wait(&c, SEND, EV_W);
    close(p[0]);
    net_wait(&c, SEND, EV_WC);
    /* SIGPIPE is SIG_DFL: surviving these calls is the test. */
    assert_int_equal(mio_send(p[1], "x", 1), -EPIPE);
    assert_int_equal(mio_sendv(p[1], &iov, 1), -EPIPE);
    /* Nothing left pending and the mask is back as it was. */
    assert_false(sigpipe_pending());
    assert_false(sigpipe_blocked());
    close(p[1]);
    net_ctx_free(&c);
}

static void test_pending_sigpipe_is_not_consumed(void **state)
{
    /* A SIGPIPE that was already pending (blocked by the caller) belongs to someone else: mio_send
     * must leave it pending and leave the caller's mask blocking it. */
    sigset_t set, old;
    int p[2];
    struct timespec zero = {0, 0};
    (void)state;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    assert_int_equal(pthread_kill(pthread_self(), SIGPIPE), 0);
    assert_true(sigpipe_pending());
    assert_int_equal(mio_pipe_new(p), 0);
    close(p[0]);
    assert_int_equal(mio_send(p[1], "x", 1), -EPIPE);
    assert_true(sigpipe_pending());
    assert_true(sigpipe_blocked());
    /* Exactly one is pending (standard signals do not queue) and we take it ourselves. */
    assert_int_equal(sigtimedwait(&set, NULL, &zero), SIGPIPE);
    assert_false(sigpipe_pending());
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    close(p[1]);
}

static void test_caller_blocked_sigpipe_left_clean(void **state)
{
    /* Caller blocks SIGPIPE itself and nothing is pending: the SIGPIPE mio_send raises is consumed
     * and the caller's mask is kept. */
    sigset_t set, old;
    int p[2];
    (void)state;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    assert_int_equal(mio_pipe_new(p), 0);
    close(p[0]);
    assert_int_equal(mio_send(p[1], "x", 1), -EPIPE);
    assert_false(sigpipe_pending());
    assert_true(sigpipe_blocked());
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    close(p[1]);
}

static void *thread_send_broken(void *arg)
{
    int fd = *(int *)arg;
    for (int i = 0; i < 1000; i++)
        if (mio_send(fd, "t", 1) != -EPIPE)
            return (void *)1;
    return NULL;
}

static void test_sigpipe_from_threads(void **state)
{
    pthread_t t[2];
    int p[2];
    void *r0, *r1;
    (void)state;
    assert_int_equal(mio_pipe_new(p), 0);
    close(p[0]);
    assert_int_equal(pthread_create(&t[0], NULL, thread_send_broken, &p[1]), 0);
    assert_int_equal(pthread_create(&t[1], NULL, thread_send_broken, &p[1]), 0);
    assert_int_equal(pthread_join(t[0], &r0), 0);
    assert_int_equal(pthread_join(t[1], &r1), 0);
    assert_null(r0);
    assert_null(r1);
    assert_false(sigpipe_pending());
    close(p[1]);
}

static void test_deregister_reregister(void **state)
{
    struct net_ctx c;
    int p[2];
    char buf[4];
    (void)state;
    net_ctx_init(&c);
    assert_int_equal(mio_pipe_new(p), 0);
    assert_int_equal(mio_registry_register(c.reg, p[0], RECV, MIO_READABLE), 0);
    assert_int_equal(mio_registry_reregister(c.reg, p[0], OTHER, MIO_READABLE), 0);
    assert_int_equal(mio_send(p[1], "1", 1), 1);
    net_wait(&c, OTHER, EV_R);
    assert_int_equal(c.counts[RECV], 0);
    assert_int_equal(mio_recv(p[0], buf, sizeof buf), 1);
    assert_int_equal(mio_registry_deregister(c.reg, p[0]), 0);
    assert_int_equal(mio_send(p[1], "2", 1), 1);
    close(p[1]);
    net_expect_none(&c, OTHER, 200);
    close(p[0]);
    net_ctx_free(&c);
}

int main(void)
{
    mio_test_watchdog(120);
    signal(SIGPIPE, SIG_DFL);
    const struct CMUnitTest tests[] = {
        NET_TEST(test_flags),
        NET_TEST(test_set_nonblocking),
        NET_TEST(test_events_and_data),
        NET_TEST(test_fill_then_writable_again),
        NET_TEST(test_sender_closed),
        NET_TEST(test_receiver_closed_epipe_no_signal),
        NET_TEST(test_pending_sigpipe_is_not_consumed),
        NET_TEST(test_caller_blocked_sigpipe_left_clean),
        NET_TEST(test_sigpipe_from_threads),
        NET_TEST(test_deregister_reregister),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
