/* Reactor: life cycle and fd hygiene, handler slab and generation tokens (stale events never reach
 * a slot's new owner), add/modify/remove errors, run / run_once / stop, and the internal
 * interface conn/pool use (reactor_int.h: source, wake, read buffer, handler walk, intern table,
 * conn count). */
#include "core_helpers.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mio/mio.h>

#include "internal/reactor_int.h"

#define LOW32(t) ((uint32_t)(t))
#define HIGH32(t) ((uint32_t)((uint64_t)(t) >> 32))

static mio_reactor *new_reactor(void)
{
    mio_reactor *r = NULL;
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    assert_non_null(r);
    return r;
}

static struct mio_reactor_stats stats_of(const mio_reactor *r)
{
    struct mio_reactor_stats st;
    assert_int_equal(mio_reactor_stats(r, &st), 0);
    return st;
}

/* A handler that counts calls and remembers the last token. */
struct counter {
    int calls;
    mio_token last;
    bool readable, writable;
};

static void count_handler(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct counter *c = arg;
    (void)r;
    c->calls++;
    c->last = token;
    c->readable = mio_event_is_readable(ev);
    c->writable = mio_event_is_writable(ev);
    assert_int_equal(mio_event_token(ev), token);
}

/* ------------------------------------------------------------------ life cycle */

static void test_new_free_fds(void **state)
{
    (void)state;
    int before = mio_test_fd_count();
    mio_reactor *r = new_reactor();
    /* epoll + eventfd, both non-blocking close-on-exec is the core's business; two fds here, and
     * the ring's with the io_uring backend. */
    assert_int_equal(mio_test_fd_count(),
                     before + (mio_reactor_backend(r) == MIO_BACKEND_IO_URING ? 3 : 2));
    mio_reactor_free(r);
    assert_int_equal(mio_test_fd_count(), before);
    mio_reactor_free(NULL);
}

static void test_new_options(void **state)
{
    (void)state;
    mio_reactor *r = NULL;
    mio_reactor_opts o;

    assert_int_equal(mio_reactor_new(NULL, NULL), -EINVAL);
    memset(&o, 0, sizeof o);
    assert_int_equal(mio_reactor_new(&o, &r), 0); /* zero-filled = defaults */
    mio_reactor_free(r);
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++) {
        o.reserved[i] = 1; /* an option of a later version: refused, not ignored */
        assert_int_equal(mio_reactor_new(&o, &r), -EINVAL);
        o.reserved[i] = 0;
    }
    o.use_arena = -1;
    o.events_capacity = 1;
    o.post_capacity = 1;
    assert_int_equal(mio_reactor_new(&o, &r), 0);
    mio_reactor_free(r);
    o.use_arena = 5;
    assert_int_equal(mio_reactor_new(&o, &r), -EINVAL);
    o.use_arena = 0;
    o.post_capacity = (1u << 30) + 1;
    assert_int_equal(mio_reactor_new(&o, &r), -EINVAL);
}

/* The backend option: EPOLL always works; IO_URING works or says why; AUTO is one of the two;
 * out-of-range values are refused. The stats name the backend that runs. */
static void test_backend_option(void **state)
{
    mio_reactor_opts o = {0};
    struct mio_reactor_stats st;
    mio_reactor *r = NULL;
    int uring_err;

    (void)state;
    assert_int_equal(mio_reactor_backend(NULL), -EINVAL);
    o.backend = -1;
    assert_int_equal(mio_reactor_new(&o, &r), -EINVAL);
    o.backend = MIO_BACKEND_AUTO + 1;
    assert_int_equal(mio_reactor_new(&o, &r), -EINVAL);

    o.backend = MIO_BACKEND_EPOLL;
    assert_int_equal(mio_reactor_new(&o, &r), 0);
    assert_int_equal(mio_reactor_backend(r), MIO_BACKEND_EPOLL);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(mio_reactor_stats(r, &st), 0);
    assert_int_equal(st.backend, MIO_BACKEND_EPOLL);
    assert_int_equal(st.ring_enters, 0);
    mio_reactor_free(r);

    o.backend = MIO_BACKEND_IO_URING;
    uring_err = mio_reactor_new(&o, &r);
    if (uring_err == 0) {
        assert_int_equal(mio_reactor_backend(r), MIO_BACKEND_IO_URING);
        assert_true(mio_reactor_run_once(r, 0) >= 0);
        assert_true(mio_reactor_run_once(r, 1) >= 0);
        assert_int_equal(mio_reactor_stats(r, &st), 0);
        assert_int_equal(st.backend, MIO_BACKEND_IO_URING);
        assert_true(st.ring_enters >= 2); /* one enter per iteration */
        assert_true(st.iterations == 2);
        mio_reactor_free(r);
    } else {
        print_message("note: io_uring backend unavailable: %s\n", mio_strerror(uring_err));
        assert_true(uring_err == -EOPNOTSUPP || uring_err == -EPERM || uring_err == -ENOSYS ||
                    uring_err == -ENOMEM);
    }

    o.backend = MIO_BACKEND_AUTO;
    assert_int_equal(mio_reactor_new(&o, &r), 0);
    assert_int_equal(mio_reactor_backend(r),
                     uring_err == 0 ? MIO_BACKEND_IO_URING : MIO_BACKEND_EPOLL);
    mio_reactor_free(r);
}

/* MIO_BACKEND picks the default backend (read once per process, so each case is a new process:
 * this program run again with --backend-env-child). var2 (when not NULL) is set to value2 too. */
static int env_child2(const char *value, const char *var2, const char *value2)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    pid_t pid;
    int status;

    assert_true(n > 0);
    self[n] = '\0';
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (value != NULL)
            setenv("MIO_BACKEND", value, 1);
        else
            unsetenv("MIO_BACKEND");
        unsetenv("MIO_URING_RECV");
        if (var2 != NULL)
            setenv(var2, value2, 1);
        execl(self, self, "--backend-env-child", (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The child's exit without the receive mode: 100 + the backend, or 1 or 2. */
static int env_child(const char *value)
{
    int code = env_child2(value, NULL, NULL);

    return code >= 110 ? code - 10 : code;
}

/* The child: creates a reactor with the default backend; exits 100 + the backend (+ 10 when its
 * receives are multishot), or 1 with the -errno printed (2 for -EINVAL). */
static int backend_env_child(void)
{
    struct mio_reactor_stats st;
    mio_reactor *r;
    int err = mio_reactor_new(NULL, &r), b;

    if (err < 0) {
        printf("%d\n", err);
        return err == -EINVAL ? 2 : 1;
    }
    b = mio_reactor_backend(r);
    if (mio_reactor_stats(r, &st) == 0 && st.ring_recv_multishot)
        b += 10;
    mio_reactor_free(r);
    return 100 + b;
}

static void test_backend_env(void **state)
{
    mio_reactor_opts o = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor *r;
    bool uring = mio_reactor_new(&o, &r) == 0;

    (void)state;
    if (uring)
        mio_reactor_free(r);
    assert_int_equal(env_child(NULL), 100 + MIO_BACKEND_EPOLL);
    assert_int_equal(env_child(""), 100 + MIO_BACKEND_EPOLL);
    assert_int_equal(env_child("epoll"), 100 + MIO_BACKEND_EPOLL);
    assert_int_equal(env_child("auto"), 100 + (uring ? MIO_BACKEND_IO_URING : MIO_BACKEND_EPOLL));
    assert_int_equal(env_child("io_uring"), uring ? 100 + MIO_BACKEND_IO_URING : 1);
    assert_int_equal(env_child("kqueue"), 2); /* an unknown name: -EINVAL, not a silent epoll */
}

/* MIO_URING_RECV: "single" makes receives single-shot; unset, empty or "multishot" leaves them
 * multishot where the kernel can limit them (all three alike); anything else is -EINVAL, from
 * the io_uring backend and from AUTO too (not a silent fall-back to epoll); epoll ignores it. */
static void test_uring_recv_env(void **state)
{
    mio_reactor_opts o = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor *r;
    int dflt;

    (void)state;
    if (mio_reactor_new(&o, &r) < 0)
        skip();
    mio_reactor_free(r);
    dflt = env_child2("io_uring", NULL, NULL);
    assert_true(dflt == 100 + MIO_BACKEND_IO_URING || dflt == 110 + MIO_BACKEND_IO_URING);
    assert_int_equal(env_child2("io_uring", "MIO_URING_RECV", ""), dflt);
    assert_int_equal(env_child2("io_uring", "MIO_URING_RECV", "multishot"), dflt);
    assert_int_equal(env_child2("io_uring", "MIO_URING_RECV", "single"),
                     100 + MIO_BACKEND_IO_URING);
    assert_int_equal(env_child2("auto", "MIO_URING_RECV", "single"), 100 + MIO_BACKEND_IO_URING);
    assert_int_equal(env_child2("io_uring", "MIO_URING_RECV", "multi"), 2);
    assert_int_equal(env_child2("auto", "MIO_URING_RECV", "Single"), 2);
    assert_int_equal(env_child2("epoll", "MIO_URING_RECV", "bogus"), 100 + MIO_BACKEND_EPOLL);
}

static void test_null_arguments(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct mio_reactor_stats st;
    assert_int_equal(mio_reactor_add(NULL, 0, MIO_READABLE, count_handler, NULL, NULL), -EINVAL);
    assert_int_equal(mio_reactor_modify(NULL, 1, MIO_READABLE), -EINVAL);
    assert_int_equal(mio_reactor_remove(NULL, 1), -EINVAL);
    assert_int_equal(mio_reactor_run(NULL), -EINVAL);
    assert_int_equal(mio_reactor_run_once(NULL, 0), -EINVAL);
    assert_int_equal(mio_reactor_run_once(r, -2), -EINVAL);
    assert_int_equal(mio_reactor_stop(NULL), -EINVAL);
    assert_int_equal(mio_reactor_stats(NULL, &st), -EINVAL);
    assert_int_equal(mio_reactor_stats(r, NULL), -EINVAL);
    mio_reactor_free(r);
}

/* ------------------------------------------------------------------ add / modify / remove */

static void test_add_errors(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct counter c = {0};
    mio_token t;
    int efd = core_eventfd(0), closed = core_eventfd(0);
    char path[] = "/tmp/mio-reactor-XXXXXX";
    int file = mkstemp(path);
    assert_true(file >= 0);
    unlink(path);
    close(closed);

    assert_int_equal(mio_reactor_add(r, efd, 0, count_handler, &c, &t), -EINVAL);
    assert_int_equal(mio_reactor_add(r, efd, MIO_READABLE, NULL, &c, &t), -EINVAL);
    assert_int_equal(mio_reactor_add(r, -1, MIO_READABLE, count_handler, &c, &t), -EBADF);
    assert_int_equal(mio_reactor_add(r, closed, MIO_READABLE, count_handler, &c, &t), -EBADF);
    assert_int_equal(mio_reactor_add(r, file, MIO_READABLE, count_handler, &c, &t), -EPERM);
    assert_int_equal(stats_of(r).handlers, 0);

    assert_int_equal(mio_reactor_add(r, efd, MIO_READABLE, count_handler, &c, &t), 0);
    assert_true(t != 0);
    assert_int_equal(mio_reactor_add(r, efd, MIO_WRITABLE, count_handler, &c, NULL), -EEXIST);
    assert_int_equal(stats_of(r).handlers, 1);
    /* The failed adds did not leak slots or disturb the good one. */
    core_eventfd_add(efd, 1);
    assert_int_equal(mio_reactor_run_once(r, 5000), 1);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.last, t);
    assert_int_equal(mio_reactor_remove(r, t), 0);
    assert_int_equal(stats_of(r).handlers, 0);
    mio_reactor_free(r);
    close(efd);
    close(file);
}

static void test_dispatch_and_tokens(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    enum { N = 600 }; /* more than one slab page */
    static struct counter c[N];
    static int fds[N];
    static mio_token tok[N];

    memset(c, 0, sizeof c);
    for (int i = 0; i < N; i++) {
        fds[i] = core_eventfd(0);
        assert_int_equal(mio_reactor_add(r, fds[i], MIO_READABLE, count_handler, &c[i], &tok[i]),
                         0);
        for (int j = 0; j < i; j++)
            assert_true(tok[j] != tok[i]);
    }
    assert_int_equal(stats_of(r).handlers, N);
    for (int i = 0; i < N; i += 3)
        core_eventfd_add(fds[i], 1);
    int total = 0;
    for (int k = 0; k < 10 && total < (N + 2) / 3; k++) {
        int n = mio_reactor_run_once(r, 2000);
        assert_true(n >= 0);
        total += n;
    }
    assert_int_equal(total, (N + 2) / 3);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].calls, i % 3 == 0 ? 1 : 0);
        if (i % 3 == 0) {
            assert_int_equal(c[i].last, tok[i]);
            assert_true(c[i].readable);
        }
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(mio_reactor_remove(r, tok[i]), 0);
        close(fds[i]);
    }
    assert_int_equal(stats_of(r).handlers, 0);
    mio_reactor_free(r);
}

/* More distinct handler functions than the slab's function table holds (254): the rest are
 * stored boxed. Every handler must still get its own calls with its own arg, the handler walk must
 * find boxed ones, and boxes must be freed at remove and at reactor free (ASan/valgrind). */
#define NFN 300
struct fn_hit {
    int fn_id, calls;
};
#define FN_DEF(n)                                                                                  \
    static void fn_##n(mio_reactor *r, mio_token t, const mio_event *ev, void *arg)               \
    {                                                                                              \
        struct fn_hit *h = arg;                                                                    \
        (void)r, (void)t, (void)ev;                                                                \
        h->fn_id = n;                                                                              \
        h->calls++;                                                                                \
    }
#define FN_DEF10(n)                                                                                \
    FN_DEF(n##0) FN_DEF(n##1) FN_DEF(n##2) FN_DEF(n##3) FN_DEF(n##4) FN_DEF(n##5) FN_DEF(n##6)    \
    FN_DEF(n##7) FN_DEF(n##8) FN_DEF(n##9)
#define FN_DEF100(n)                                                                               \
    FN_DEF10(n##0) FN_DEF10(n##1) FN_DEF10(n##2) FN_DEF10(n##3) FN_DEF10(n##4) FN_DEF10(n##5)     \
    FN_DEF10(n##6) FN_DEF10(n##7) FN_DEF10(n##8) FN_DEF10(n##9)
FN_DEF100(1) FN_DEF100(2) FN_DEF100(3)
#define FN_REF(n) fn_##n,
#define FN_REF10(n)                                                                                \
    FN_REF(n##0) FN_REF(n##1) FN_REF(n##2) FN_REF(n##3) FN_REF(n##4) FN_REF(n##5) FN_REF(n##6)    \
    FN_REF(n##7) FN_REF(n##8) FN_REF(n##9)
#define FN_REF100(n)                                                                               \
    FN_REF10(n##0) FN_REF10(n##1) FN_REF10(n##2) FN_REF10(n##3) FN_REF10(n##4) FN_REF10(n##5)     \
    FN_REF10(n##6) FN_REF10(n##7) FN_REF10(n##8) FN_REF10(n##9)
static const mio_io_fn fn_table[NFN] = {FN_REF100(1) FN_REF100(2) FN_REF100(3)};

static void walk_count(void *harg, void *ctx)
{
    (void)harg;
    (*(int *)ctx)++;
}

static int run_until(mio_reactor *r, int want)
{
    int total = 0;
    for (int k = 0; k < 20 && total < want; k++) {
        int n = mio_reactor_run_once(r, 2000);
        assert_true(n >= 0);
        total += n;
    }
    return total;
}

static void test_many_distinct_handlers(void **state)
{
    (void)state;
    int before = mio_test_fd_count();
    mio_reactor *r = new_reactor();
    static struct fn_hit hit[NFN];
    static int fds[NFN];
    static mio_token tok[NFN];

    memset(hit, 0, sizeof hit);
    for (int i = 0; i < NFN; i++) {
        fds[i] = core_eventfd(0);
        assert_int_equal(mio_reactor_add(r, fds[i], MIO_READABLE, fn_table[i], &hit[i], &tok[i]),
                         0);
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NFN; i++)
            core_eventfd_add(fds[i], 1);
        assert_int_equal(run_until(r, NFN), NFN);
        for (int i = 0; i < NFN; i++) {
            assert_int_equal(hit[i].calls, round + 1);
            assert_int_equal(hit[i].fn_id, 100 + i); /* fn_100 .. fn_399 */
        }
    }
    for (int i = 0; i < NFN; i++) {
        int seen = 0;
        assert_int_equal(mio__reactor_each(r, fn_table[i], walk_count, &seen), 1);
        assert_int_equal(seen, 1);
    }
    /* Remove every other one (boxed ones included), then re-add them with other functions. */
    for (int i = 0; i < NFN; i += 2) {
        assert_int_equal(mio_reactor_remove(r, tok[i]), 0);
        assert_int_equal(mio_reactor_modify(r, tok[i], MIO_READABLE), -ENOENT);
    }
    assert_int_equal(stats_of(r).handlers, NFN / 2);
    for (int i = 0; i < NFN; i += 2) {
        memset(&hit[i], 0, sizeof hit[i]);
        assert_int_equal(
            mio_reactor_add(r, fds[i], MIO_READABLE, fn_table[NFN - 2 - i], &hit[i], &tok[i]), 0);
        core_eventfd_add(fds[i], 1);
    }
    assert_int_equal(run_until(r, NFN / 2), NFN / 2);
    for (int i = 0; i < NFN; i += 2) {
        assert_int_equal(hit[i].calls, 1);
        assert_int_equal(hit[i].fn_id, 100 + NFN - 2 - i);
    }
    /* The odd ones stay registered: mio_reactor_free must release their boxes. */
    mio_reactor_free(r);
    for (int i = 0; i < NFN; i++)
        close(fds[i]);
    assert_int_equal(mio_test_fd_count(), before);
}

static void test_modify(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct counter c = {0};
    int sv[2];
    mio_token t;
    core_socketpair(sv);

    assert_int_equal(mio_reactor_add(r, sv[0], MIO_READABLE, count_handler, &c, &t), 0);
    assert_int_equal(mio_reactor_run_once(r, 0), 0); /* writable, but only READABLE asked */
    assert_int_equal(mio_reactor_modify(r, t, 0), -EINVAL);
    assert_int_equal(mio_reactor_modify(r, t, MIO_WRITABLE), 0);
    assert_int_equal(mio_reactor_run_once(r, 5000), 1);
    assert_true(c.writable);
    assert_false(c.readable);
    assert_int_equal(mio_reactor_modify(r, t, MIO_READABLE), 0);
    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(mio_reactor_run_once(r, 5000), 1);
    assert_true(c.readable);
    assert_int_equal(c.calls, 2);
    assert_int_equal(mio_reactor_remove(r, t), 0);
    mio_reactor_free(r);
    core_close2(sv);
}

/* modify/remove with a stale token: -ENOENT, and the slot's new owner keeps working. */
static void test_stale_token_never_touches_new_owner(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct counter a = {0}, b = {0};
    int fa = core_eventfd(0), fb = core_eventfd(0);
    mio_token ta, tb;

    assert_int_equal(mio_reactor_add(r, fa, MIO_READABLE, count_handler, &a, &ta), 0);
    assert_int_equal(mio_reactor_remove(r, ta), 0);
    assert_int_equal(mio_reactor_remove(r, ta), -ENOENT);
    assert_int_equal(mio_reactor_add(r, fb, MIO_READABLE, count_handler, &b, &tb), 0);
    assert_int_equal(LOW32(tb), LOW32(ta)); /* same slot ... */
    assert_true(tb != ta);                  /* ... new generation */

    assert_int_equal(mio_reactor_modify(r, ta, MIO_WRITABLE), -ENOENT);
    assert_int_equal(mio_reactor_remove(r, ta), -ENOENT);
    /* Unknown slots and token 0. */
    assert_int_equal(mio_reactor_modify(r, (mio_token)0x7fffffffu, MIO_READABLE), -ENOENT);
    assert_int_equal(mio_reactor_remove(r, (mio_token)0x12345678u), -ENOENT);
    assert_int_equal(mio_reactor_remove(r, 0), -ENOENT);

    /* b is still registered READABLE (a modify to WRITABLE would have fired at once). */
    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    core_eventfd_add(fb, 1);
    core_eventfd_add(fa, 1); /* fa is no longer registered */
    assert_int_equal(mio_reactor_run_once(r, 5000), 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.last, tb);
    assert_int_equal(a.calls, 0);
    assert_int_equal(mio_reactor_remove(r, tb), 0);
    mio_reactor_free(r);
    close(fa);
    close(fb);
}

/* The stale-event scenario of DESIGN.md: two fds are ready in one batch; whichever handler runs
 * first removes the other, closes it, opens a new fd with the same number, and adds it: the new
 * registration gets the same slot. The old event, harvested already, must be dropped and must
 * never reach the new handler; the new fd's own readiness arrives in the next iteration. */
struct swap_ctx {
    int fd[2];
    mio_token tok[2];
    struct counter victim; /* the replacement's handler */
    mio_token new_tok;
    int new_fd;
    int first_calls;
    int swapped_index;
};

static void swap_first_handler(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct swap_ctx *s = arg;
    (void)ev;
    s->first_calls++;
    if (s->first_calls > 1)
        return;
    int me = token == s->tok[0] ? 0 : 1, other = 1 - me;
    assert_int_equal(token, s->tok[me]);
    int number = s->fd[other];
    assert_int_equal(mio_reactor_remove(r, s->tok[other]), 0);
    assert_int_equal(close(s->fd[other]), 0);
    /* A fresh eventfd that is readable too, forced onto the old number. */
    int tmp = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(tmp >= 0);
    if (tmp != number) {
        assert_int_equal(dup3(tmp, number, O_CLOEXEC), number);
        close(tmp);
    }
    s->new_fd = number;
    assert_int_equal(mio_reactor_add(r, number, MIO_READABLE, count_handler, &s->victim,
                                     &s->new_tok),
                     0);
    assert_int_equal(LOW32(s->new_tok), LOW32(s->tok[other])); /* the same slot, reused */
    assert_true(s->new_tok != s->tok[other]);
    s->swapped_index = other;
}

static void test_stale_event_never_reaches_new_owner(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct swap_ctx s;
    memset(&s, 0, sizeof s);
    s.fd[0] = core_eventfd(1);
    s.fd[1] = core_eventfd(1);
    assert_int_equal(mio_reactor_add(r, s.fd[0], MIO_READABLE, swap_first_handler, &s, &s.tok[0]),
                     0);
    assert_int_equal(mio_reactor_add(r, s.fd[1], MIO_READABLE, swap_first_handler, &s, &s.tok[1]),
                     0);
    uint64_t stale_before = stats_of(r).stale_events;

    /* Both ready before the poll: one batch holds both events. */
    int n = mio_reactor_run_once(r, 5000);
    assert_int_equal(n, 1);
    assert_int_equal(s.first_calls, 1);
    assert_int_equal(s.victim.calls, 0);
    assert_int_equal(stats_of(r).stale_events, stale_before + 1);

    /* The replacement's own readiness comes with the new token. */
    n = mio_reactor_run_once(r, 5000);
    assert_int_equal(n, 1);
    assert_int_equal(s.victim.calls, 1);
    assert_int_equal(s.victim.last, s.new_tok);
    assert_int_equal(s.first_calls, 1);

    int keep = 1 - s.swapped_index;
    assert_int_equal(mio_reactor_remove(r, s.new_tok), 0);
    assert_int_equal(mio_reactor_remove(r, s.tok[keep]), 0);
    mio_reactor_free(r);
    close(s.new_fd);
    close(s.fd[keep]);
}

/* Removal inside handlers: a handler removes itself; another removes a peer that is also in the
 * batch. */
struct remove_ctx {
    int fd[3];
    mio_token tok[3];
    int calls[3];
    int self_remove_rc, second_remove_rc;
};

static void self_remover(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct remove_ctx *s = arg;
    (void)ev;
    assert_int_equal(token, s->tok[0]);
    s->calls[0]++;
    s->self_remove_rc = mio_reactor_remove(r, token);
    s->second_remove_rc = mio_reactor_remove(r, token);
}

static void self_remove_test(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct remove_ctx s;
    memset(&s, 0, sizeof s);
    s.fd[0] = core_eventfd(1);
    assert_int_equal(mio_reactor_add(r, s.fd[0], MIO_READABLE, self_remover, &s, &s.tok[0]), 0);
    assert_int_equal(mio_reactor_run_once(r, 5000), 1);
    assert_int_equal(s.calls[0], 1);
    assert_int_equal(s.self_remove_rc, 0);
    assert_int_equal(s.second_remove_rc, -ENOENT);
    core_eventfd_add(s.fd[0], 1);
    assert_int_equal(mio_reactor_run_once(r, 50), 0);
    assert_int_equal(s.calls[0], 1);
    assert_int_equal(stats_of(r).handlers, 0);
    mio_reactor_free(r);
    close(s.fd[0]);
}

static void peer_remover(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct remove_ctx *s = arg;
    (void)ev;
    int me = token == s->tok[0] ? 0 : token == s->tok[1] ? 1 : 2;
    assert_true(token == s->tok[me]);
    s->calls[me]++;
    /* The first handler of the batch removes both others. */
    if (s->calls[0] + s->calls[1] + s->calls[2] == 1)
        for (int i = 0; i < 3; i++)
            if (i != me)
                assert_int_equal(mio_reactor_remove(r, s->tok[i]), 0);
}

static void test_remove_other_in_batch(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct remove_ctx s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 3; i++) {
        s.fd[i] = core_eventfd(1);
        assert_int_equal(mio_reactor_add(r, s.fd[i], MIO_READABLE, peer_remover, &s, &s.tok[i]),
                         0);
    }
    uint64_t stale = stats_of(r).stale_events;
    assert_int_equal(mio_reactor_run_once(r, 5000), 1);
    assert_int_equal(s.calls[0] + s.calls[1] + s.calls[2], 1);
    assert_int_equal(stats_of(r).stale_events, stale + 2);
    assert_int_equal(stats_of(r).handlers, 1);
    for (int i = 0; i < 3; i++) {
        if (s.calls[i] == 1)
            assert_int_equal(mio_reactor_remove(r, s.tok[i]), 0);
        else
            assert_int_equal(mio_reactor_remove(r, s.tok[i]), -ENOENT);
        close(s.fd[i]);
    }
    mio_reactor_free(r);
}

/* A handler that removes its own fd after the fd was closed: the token is still released. */
static void test_remove_after_close(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct counter c = {0};
    int fd = core_eventfd(0);
    mio_token t;
    assert_int_equal(mio_reactor_add(r, fd, MIO_READABLE, count_handler, &c, &t), 0);
    close(fd);
    assert_int_equal(mio_reactor_remove(r, t), 0);
    assert_int_equal(mio_reactor_remove(r, t), -ENOENT);
    assert_int_equal(stats_of(r).handlers, 0);
    mio_reactor_free(r);
}

/* ------------------------------------------------------------------ run, run_once, stop */

static void count_task(mio_reactor *r, void *arg)
{
    (void)r;
    (*(int *)arg)++;
}

static void count_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)r;
    (void)id;
    (*(int *)arg)++;
}

static void test_run_once_counts(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct counter a = {0}, b = {0};
    int fa = core_eventfd(1), fb = core_eventfd(1), tasks = 0, timers = 0;
    mio_token ta, tb;

    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    assert_int_equal(mio_reactor_add(r, fa, MIO_READABLE, count_handler, &a, &ta), 0);
    assert_int_equal(mio_reactor_add(r, fb, MIO_READABLE, count_handler, &b, &tb), 0);
    assert_int_equal(mio_reactor_post(r, count_task, &tasks), 0);
    assert_int_equal(mio_reactor_post(r, count_task, &tasks), 0);
    assert_int_equal(mio_reactor_timer_start(r, 0, 0, count_timer, &timers, NULL), 0);
    struct mio_reactor_stats st0 = stats_of(r);
    assert_int_equal(mio_reactor_run_once(r, 5000), 5);
    assert_int_equal(a.calls + b.calls + tasks + timers, 5);
    struct mio_reactor_stats st1 = stats_of(r);
    assert_int_equal(st1.iterations, st0.iterations + 1);
    assert_int_equal(st1.handlers_run, st0.handlers_run + 2);
    assert_int_equal(st1.tasks_run, st0.tasks_run + 2);
    assert_int_equal(st1.timers_fired, st0.timers_fired + 1);
    assert_true(st1.events >= st0.events + 2);
    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    assert_int_equal(mio_reactor_remove(r, ta), 0);
    assert_int_equal(mio_reactor_remove(r, tb), 0);
    mio_reactor_free(r);
    close(fa);
    close(fb);
}

static void test_run_once_timeout_waits(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    unsigned long long t0 = mio_test_now_ms();
    assert_int_equal(mio_reactor_run_once(r, 30), 0);
    assert_true(mio_test_now_ms() - t0 >= 29); /* it did wait (epoll may round, never early) */
    struct mio_reactor_stats st = stats_of(r);
    assert_int_equal(st.zero_event_wakeups, 1);
    assert_int_equal(st.sleeps, 1);
    mio_reactor_free(r);
}

static void nested_handler(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    (void)token;
    (void)ev;
    *(int *)arg = mio_reactor_run_once(r, 0) == -EBUSY && mio_reactor_run(r) == -EBUSY;
}

static void test_no_nested_run(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    int ok = 0, fd = core_eventfd(1);
    mio_token t;
    assert_int_equal(mio_reactor_add(r, fd, MIO_READABLE, nested_handler, &ok, &t), 0);
    assert_int_equal(mio_reactor_run_once(r, 5000), 1);
    assert_int_equal(ok, 1);
    assert_int_equal(mio_reactor_remove(r, t), 0);
    mio_reactor_free(r);
    close(fd);
}

static void test_stop_before_run(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    assert_int_equal(mio_reactor_stop(r), 0);
    assert_int_equal(mio_reactor_run(r), 0); /* returns at once */
    mio_reactor_free(r);
}

static void stop_task(mio_reactor *r, void *arg)
{
    (*(int *)arg)++;
    assert_int_equal(mio_reactor_stop(r), 0);
}

static void test_stop_from_task(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    int n = 0;
    assert_int_equal(mio_reactor_post(r, stop_task, &n), 0);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(n, 1);
    /* The stop was consumed: a second run needs a second stop. */
    assert_int_equal(mio_reactor_post(r, stop_task, &n), 0);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(n, 2);
    mio_reactor_free(r);
}

struct stopper {
    mio_reactor *r;
    unsigned delay_ms;
    atomic_int done;
};

static void *stopper_main(void *arg)
{
    struct stopper *s = arg;
    core_sleep_ms(s->delay_ms);
    assert_int_equal(mio_reactor_stop(s->r), 0);
    atomic_store(&s->done, 1);
    return NULL;
}

/* run blocks (no timers, no fds): only the stop from another thread can end it. */
static void test_stop_from_other_thread(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct stopper s = {r, 100, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopper_main, &s), 0);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&s.done), 1);
    struct mio_reactor_stats st = stats_of(r);
    assert_true(st.sleeps >= 1);
    assert_true(st.wakes_performed >= 1);
    assert_true(st.wakes_performed <= st.sleeps);
    mio_reactor_free(r);
}

/* Many stops from many threads while the reactor keeps being restarted: each run returns. */
static void test_stop_repeatedly(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    for (int i = 0; i < 20; i++) {
        struct stopper s = {r, (unsigned)(i % 3), 0};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, stopper_main, &s), 0);
        assert_int_equal(mio_reactor_run(r), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
    }
    mio_reactor_free(r);
}

/* ------------------------------------------------------------------ reactor_int.h */

static void each_io(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    (void)r;
    (void)token;
    (void)ev;
    (void)arg;
    fail_msg("each_io is never dispatched");
}

/* mio__reactor_each's callback: the handler arg is the fd it was registered with. */
static void each_visit(void *harg, void *ctx)
{
    int *visited = ctx;
    int fd = *(int *)harg;

    assert_true(fd >= 0);
    (*visited)++;
}


/* A stand-in for the conn layer's extension: counts settle and destroy calls. */
struct ext_probe {
    int settles, destroys;
};

static void probe_settle(mio_reactor *r, void *ctx)
{
    (void)r;
    ((struct ext_probe *)ctx)->settles++;
}

static void probe_destroy(mio_reactor *r, void *ctx)
{
    (void)r;
    ((struct ext_probe *)ctx)->destroys++;
}

static const struct mio__reactor_ext probe_ext = {probe_settle, probe_destroy, NULL, NULL};

static void settle_from_task(mio_reactor *r, void *arg)
{
    struct ext_probe *p = arg;

    mio__reactor_request_settle(r);
    assert_int_equal(p->settles, 0); /* not inside the callback that asked */
}

static void test_internal_accessors(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    void *p = mio__alloc(mio__reactor_arena(r), 100);
    assert_non_null(p);
    mio__free(mio__reactor_arena(r), p);

    /* The extension point: one layer; settle runs at the safe point after the callback that asked
     * (and once per request), destroy at free. */
    struct ext_probe probe = {0};
    assert_null(mio__reactor_ext_ctx(r));
    assert_int_equal(mio__reactor_attach(r, &probe_ext, &probe), 0);
    assert_int_equal(mio__reactor_attach(r, &probe_ext, &probe), -EEXIST);
    assert_ptr_equal(mio__reactor_ext_ctx(r), &probe);
    assert_int_equal(mio_reactor_post(r, settle_from_task, &probe), 0);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(probe.settles, 1);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(probe.settles, 1);
    mio__reactor_request_settle(r); /* outside callbacks: at the next iteration's start */
    assert_int_equal(probe.settles, 1);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(probe.settles, 2);

    /* The walk visits exactly the live handlers with the given callback, and not removed ones. */
    struct counter other = {0};
    int efd[4], visited = 0;
    mio_token etok[4];
    assert_int_equal(mio__reactor_each(r, each_io, each_visit, &visited), 0);
    for (int i = 0; i < 4; i++) {
        efd[i] = core_eventfd(0);
        assert_int_equal(mio_reactor_add(r, efd[i], MIO_READABLE, i == 3 ? count_handler : each_io,
                                         i == 3 ? (void *)&other : (void *)&efd[i], &etok[i]),
                         0);
    }
    assert_int_equal(mio__reactor_slot_fd(r, (uint32_t)etok[0]), efd[0]);
    assert_int_equal(mio__reactor_slot_token(r, (uint32_t)etok[0]), etok[0]);
    assert_int_equal(mio_reactor_remove(r, etok[1]), 0);
    assert_int_equal(mio__reactor_each(r, each_io, each_visit, &visited), 2);
    assert_int_equal(visited, 2);
    for (int i = 0; i < 4; i++) {
        if (i != 1)
            assert_int_equal(mio_reactor_remove(r, etok[i]), 0);
        close(efd[i]);
    }

    uint64_t before = mio_reactor_now_ms(r);
    core_sleep_ms(20);
    assert_int_equal(mio_reactor_now_ms(r), before); /* cached */
    mio__reactor_update_now(r);
    assert_true(mio_reactor_now_ms(r) >= before + 19);

    /* The reactor is not sleeping: a wake is elided. */
    struct mio_reactor_stats st0 = stats_of(r);
    assert_false(mio__reactor_wake(r));
    struct mio_reactor_stats st1 = stats_of(r);
    assert_int_equal(st1.wakes_elided, st0.wakes_elided + 1);
    assert_int_equal(st1.wakes_performed, st0.wakes_performed);
    mio_reactor_free(r);
    assert_int_equal(probe.destroys, 1);
}

/* An extra source, as the pool's hand-off ring uses it: another thread publishes items and calls
 * mio__reactor_wake; the reactor must drain them all, whether it was asleep or not. */
struct fake_source {
    mio_reactor *r;
    atomic_uint published;
    unsigned drained; /* reactor thread only */
    unsigned target;
    int drains;
};

static bool fake_pending(void *arg)
{
    struct fake_source *s = arg;
    return atomic_load(&s->published) != s->drained;
}

static void fake_drain(mio_reactor *r, void *arg)
{
    struct fake_source *s = arg;
    s->drains++;
    s->drained = atomic_load(&s->published);
    if (s->drained == s->target)
        assert_int_equal(mio_reactor_stop(r), 0);
}

static void *fake_producer(void *arg)
{
    struct fake_source *s = arg;
    for (unsigned i = 0; i < s->target; i++) {
        atomic_fetch_add(&s->published, 1);
        (void)mio__reactor_wake(s->r);
        if (i % 16 == 0)
            core_sleep_ms(1); /* let the reactor fall asleep */
    }
    return NULL;
}

static void test_source(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct fake_source s = {.r = r, .target = 400};
    struct mio__reactor_source src = {fake_pending, fake_drain, &s};
    struct mio__reactor_source bad = {NULL, fake_drain, &s};
    pthread_t th;

    assert_int_equal(mio__reactor_set_source(r, &bad), -EINVAL);
    assert_int_equal(mio__reactor_set_source(r, &src), 0);
    assert_int_equal(mio__reactor_set_source(r, &src), -EEXIST);
    assert_int_equal(pthread_create(&th, NULL, fake_producer, &s), 0);
    assert_int_equal(mio_reactor_run(r), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(s.drained, s.target);
    assert_true(s.drains >= 1);
    struct mio_reactor_stats st = stats_of(r);
    assert_true(st.wakes_performed <= st.sleeps);
    assert_int_equal(st.wakes_performed + st.wakes_elided, s.target + 1 /* the stop */);
    assert_int_equal(mio__reactor_set_source(r, NULL), 0);
    mio_reactor_free(r);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--backend-env-child") == 0)
        return backend_env_child();
    mio_test_watchdog(240);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_new_free_fds),
        CORE_TEST(test_new_options),
        CORE_TEST(test_backend_option),
        CORE_TEST(test_backend_env),
        CORE_TEST(test_uring_recv_env),
        CORE_TEST(test_null_arguments),
        CORE_TEST(test_add_errors),
        CORE_TEST(test_dispatch_and_tokens),
        CORE_TEST(test_many_distinct_handlers),
        CORE_TEST(test_modify),
        CORE_TEST(test_stale_token_never_touches_new_owner),
        CORE_TEST(test_stale_event_never_reaches_new_owner),
        CORE_TEST(self_remove_test),
        CORE_TEST(test_remove_other_in_batch),
        CORE_TEST(test_remove_after_close),
        CORE_TEST(test_run_once_counts),
        CORE_TEST(test_run_once_timeout_waits),
        CORE_TEST(test_no_nested_run),
        CORE_TEST(test_stop_before_run),
        CORE_TEST(test_stop_from_task),
        CORE_TEST(test_stop_from_other_thread),
        CORE_TEST(test_stop_repeatedly),
        CORE_TEST(test_internal_accessors),
        CORE_TEST(test_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
