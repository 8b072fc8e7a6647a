/* The conn / reactor / pool misuse contract (include/mio/conn.h, reactor.h, pool.h), as a matrix.
 *
 * Conn and reactor: every operation whose misuse behaviour is documented -- a second close,
 * write/writev after close or after shutdown, shutdown after close, set_idle_timeout /
 * set_watermarks after close (also while the conn still flushes), a failed send, a writev whose
 * lengths overflow, the idle timeout, run/run_once from a callback, stale tokens, and tokens whose
 * fd number now belongs to another fd -- runs in every calling context: outside callbacks, the
 * conn's own on_read, another conn's on_read, a posted task, a timer, another conn's on_close,
 * the conn's on_drain, and a pool worker's accept callback. Each (op, context) pair is its own
 * CMocka test named "<op>@<context>". For every pair the test checks the return values; that
 * on_close had not run when each call returned (it never runs inside a user call, only after the
 * current callback returns or in the next reactor iteration); that it then runs exactly once with
 * the expected reason and sees mio_conn_fd; that no on_read comes after mio_conn_close; that
 * everything written before a clean close reaches the peer, which then sees the close; that the
 * fd is closed afterwards; and that no fd leaks.
 *
 * Pool: mio_pool_stop from a pool thread returns -EDEADLK and mio_reactor_stop on a worker
 * returns -EPERM, called from the accept callback, a conn's on_read, a task and a timer on the
 * worker (and the main thread for the latter); afterwards the pool still serves a new client and
 * a mio_pool_stop from the main thread returns 0.
 *
 * Reactor free: conns still open get on_close(-ECANCELED) exactly once and their fds closed;
 * conns closed outside callbacks whose on_close had not run yet get it in mio_reactor_free.
 *
 * Failures seen inside callbacks (possibly on a worker thread) are recorded in the fixture and
 * reported by the test thread, with the op and context names, once the reactor settled: a broken
 * pair fails its own test and never stops the binary. When the library runs on_close too early
 * (inside the call), the op stops touching the conn at once, so the test itself never uses a
 * freed conn. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>
#include "helpers.h"

#define SETTLE_MS 5000 /* at most this long for one pair to settle */
#define TAIL_MS 300    /* once the conn closed: at most this long for the op's remaining work */
#define QUIET_MS 30    /* after everything settled: keep running, to catch a 2nd on_close */
#define BIG_WRITE (4u << 20)
#define PRE_WRITE (256u << 10)
#define SMALL_SNDBUF 4096
#define IDLE_MS 40

static const unsigned char zeros[BIG_WRITE];

/* ------------------------------------------------------------------ fixture */

enum ctx_kind {
    CTX_OUTSIDE,
    CTX_OWN_READ,
    CTX_OTHER_READ,
    CTX_TASK,
    CTX_TIMER,
    CTX_OTHER_CLOSE,
    CTX_DRAIN,
    CTX_POOL_ACCEPT,
    NCTX
};

static const char *const ctx_names[NCTX] = {
    "outside", "own_on_read",    "other_on_read", "task",
    "timer",   "other_on_close", "on_drain",      "pool_accept",
};

struct fx;

/* One conn and its peer. Counters are atomics: in the pool context the conn lives on a worker
 * while the test thread watches. */
struct tconn {
    struct fx *fx;
    mio_conn *c;
    int fd;          /* mio_conn_fd right after open */
    atomic_int peer; /* the other end (test side), -1 once closed */
    bool used;
    atomic_bool user_closed; /* mio_conn_close was called */
    atomic_int closes, reason, fd_in_close, reads, reads_after_close, drains;
    /* what the peer received (test thread) */
    size_t peer_bytes;
    unsigned char tail[2];
    bool peer_eof; /* read 0 or ECONNRESET */
};

struct op;

struct fx {
    const struct op *op;
    const char *op_name;
    enum ctx_kind ctx;
    mio_reactor *r;     /* the conn's reactor (the worker's in the pool context) */
    struct tconn a;     /* the conn the op works on */
    struct tconn b;     /* helper conn: other_on_read, other_on_close */
    bool started;       /* op->run entered (conn's reactor thread only) */
    atomic_bool ran;    /* op->run returned: publishes everything it recorded */
    atomic_int pending; /* op work due in later iterations (a new owner's event) */
    int expect_reason;
    size_t sent; /* bytes the conn accepted for sending (driver's and op's) */
    bool peer_closed_by_op;
    /* token ops */
    int efd;
    mio_token t_old, t_new;
    atomic_int old_calls, new_calls, new_writable;
    atomic_bool efd_closed;
    /* failures, first to last */
    char err[4096];
    size_t errlen;
};

static void fx_fail(struct fx *fx, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (fx->errlen + 200 >= sizeof fx->err)
        return;
    n = snprintf(fx->err + fx->errlen, sizeof fx->err - fx->errlen,
                 "\n  [%s @ %s] line %d: ", fx->op_name, ctx_names[fx->ctx], line);
    if (n > 0)
        fx->errlen += (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(fx->err + fx->errlen, sizeof fx->err - fx->errlen, fmt, ap);
    va_end(ap);
    if (n > 0)
        fx->errlen += (size_t)n;
    if (fx->errlen >= sizeof fx->err)
        fx->errlen = sizeof fx->err - 1;
}

#define FAIL(fx, ...) fx_fail((fx), __LINE__, __VA_ARGS__)

/* The conn is freed once on_close returned: when on_close already ran inside a call, the op
 * records it and stops touching the conn. */
#define GONE_RETURN(fx, what)                                                                      \
    do {                                                                                           \
        if (atomic_load(&(fx)->a.closes) != 0) {                                                   \
            FAIL(fx,                                                                               \
                 "on_close already ran when %s returned (it must run only after the current "      \
                 "callback returns, or in the next reactor iteration)",                            \
                 what);                                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_RC(fx, call, want)                                                                   \
    do {                                                                                           \
        int rc_ = (int)(call), want_ = (want);                                                     \
        if (rc_ != want_)                                                                          \
            FAIL(fx, "%s returned %d (%s), want %d (%s)", #call, rc_, mio_strerror(rc_), want_,    \
                 mio_strerror(want_));                                                             \
        GONE_RETURN(fx, #call);                                                                    \
    } while (0)

#define CONN (fx->a.c)

#define CLOSE(fx)                                                                                  \
    do {                                                                                           \
        atomic_store(&(fx)->a.user_closed, true);                                                  \
        mio_conn_close((fx)->a.c);                                                                 \
        GONE_RETURN(fx, "mio_conn_close");                                                         \
    } while (0)

/* mio_conn_write that counts what the conn accepted. */
static int write_counted(struct fx *fx, const void *data, size_t len)
{
    int rc = mio_conn_write(fx->a.c, data, len);

    if (rc == 0)
        fx->sent += len;
    return rc;
}

/* ------------------------------------------------------------------ callbacks */

static void run_op(struct fx *fx);

static void t_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct tconn *t = arg;
    struct fx *fx = t->fx;

    (void)c;
    (void)data;
    if (atomic_load(&t->user_closed) || atomic_load(&t->closes) > 0)
        atomic_fetch_add(&t->reads_after_close, 1);
    if (len == 0)
        return;
    atomic_fetch_add(&t->reads, 1);
    if ((fx->ctx == CTX_OWN_READ && t == &fx->a) || (fx->ctx == CTX_OTHER_READ && t == &fx->b))
        run_op(fx);
}

static void t_on_close(mio_conn *c, int reason, void *arg)
{
    struct tconn *t = arg;
    struct fx *fx = t->fx;

    atomic_store(&t->reason, reason);
    atomic_store(&t->fd_in_close, mio_conn_fd(c));
    atomic_fetch_add(&t->closes, 1);
    if (fx->ctx == CTX_OTHER_CLOSE && t == &fx->b)
        run_op(fx);
}

static void t_on_drain(mio_conn *c, void *arg)
{
    struct tconn *t = arg;
    struct fx *fx = t->fx;

    (void)c;
    atomic_fetch_add(&t->drains, 1);
    if (fx->ctx == CTX_DRAIN && t == &fx->a)
        run_op(fx);
}

static const mio_conn_ops t_ops = {t_on_read, t_on_close, t_on_drain};

static void ctx_task(mio_reactor *r, void *arg)
{
    (void)r;
    run_op(arg);
}

static void ctx_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)r;
    (void)id;
    run_op(arg);
}

/* Token ops: the handler of a token that was removed or whose fd is gone must never run. */
static void old_handler(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct fx *fx = arg;

    (void)r;
    (void)token;
    (void)ev;
    atomic_fetch_add(&fx->old_calls, 1);
}

/* The new owner: takes its event, then removes itself and closes its fd. */
static void new_handler(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct fx *fx = arg;
    int rc;

    atomic_fetch_add(&fx->new_calls, 1);
    if (mio_event_is_writable(ev))
        atomic_store(&fx->new_writable, 1);
    if (atomic_load(&fx->efd_closed))
        return;
    if (token != fx->t_new)
        FAIL(fx, "the new owner's handler got token %#llx, want %#llx", (unsigned long long)token,
             (unsigned long long)fx->t_new);
    rc = mio_reactor_remove(r, fx->t_new);
    if (rc != 0)
        FAIL(fx, "mio_reactor_remove(new token) = %d (%s), want 0", rc, mio_strerror(rc));
    close(fx->efd);
    atomic_store(&fx->efd_closed, true);
    atomic_fetch_sub(&fx->pending, 1);
}

/* A readable eventfd with the number `number` (moved there with dup3 when the kernel picked
 * another). */
static int eventfd_at(int number, unsigned initval)
{
    int fd = eventfd(initval, EFD_NONBLOCK | EFD_CLOEXEC);

    if (fd < 0 || fd == number)
        return fd;
    if (dup3(fd, number, O_CLOEXEC) != number) {
        close(fd);
        return -1;
    }
    close(fd);
    return number;
}

/* ------------------------------------------------------------------ operations */

struct op {
    const char *name;
    void (*run)(struct fx *);
    void (*check)(struct fx *); /* op-specific checks after settling (test thread), or NULL */
    bool closes_later;          /* the conn closes only after later iterations (flush, timer) */
    bool callback_only;         /* misuse only inside a callback (nested run) */
};

static void op_close_twice(struct fx *fx)
{
    CLOSE(fx);
    CHECK_RC(fx, mio_conn_fd(CONN), fx->a.fd);
    mio_conn_close(CONN);
    GONE_RETURN(fx, "the second mio_conn_close");
    CHECK_RC(fx, mio_conn_fd(CONN), fx->a.fd);
}

static char xy[2] = {'x', 'y'};

static void op_write_after_close(struct fx *fx)
{
    struct iovec v[2] = {{xy, 1}, {xy + 1, 1}};

    CLOSE(fx);
    CHECK_RC(fx, mio_conn_write(CONN, "x", 1), -EPIPE);
    CHECK_RC(fx, mio_conn_writev(CONN, v, 2), -EPIPE);
    CHECK_RC(fx, mio_conn_write(CONN, "x", 1), -EPIPE);
}

static void op_write_after_shutdown(struct fx *fx)
{
    struct iovec v[2] = {{xy, 1}, {xy + 1, 1}};

    CHECK_RC(fx, mio_conn_shutdown(CONN), 0);
    CHECK_RC(fx, mio_conn_write(CONN, "x", 1), -EPIPE);
    CHECK_RC(fx, mio_conn_writev(CONN, v, 2), -EPIPE);
    CLOSE(fx);
    CHECK_RC(fx, mio_conn_write(CONN, "x", 1), -EPIPE);
}

static void op_shutdown_after_close(struct fx *fx)
{
    CLOSE(fx);
    CHECK_RC(fx, mio_conn_shutdown(CONN), -EPIPE);
    CHECK_RC(fx, mio_conn_shutdown(CONN), -EPIPE);
}

static void op_set_after_close(struct fx *fx)
{
    CLOSE(fx);
    CHECK_RC(fx, mio_conn_set_idle_timeout(CONN, 1000), -EPIPE);
    CHECK_RC(fx, mio_conn_set_idle_timeout(CONN, 0), -EPIPE);
    CHECK_RC(fx, mio_conn_set_watermarks(CONN, 1, 2), -EPIPE);
    CHECK_RC(fx, mio_conn_pending(CONN), 0);
}

/* set_* after close while the queue still holds megabytes (tiny SO_SNDBUF, a peer that does not
 * read yet): -EPIPE all the same; pending and fd still answer. */
static void op_set_after_close_flushing(struct fx *fx)
{
    int small = SMALL_SNDBUF;
    size_t before;

    if (setsockopt(fx->a.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) != 0)
        FAIL(fx, "setsockopt(SO_SNDBUF): %s", strerror(errno));
    CHECK_RC(fx, write_counted(fx, zeros, BIG_WRITE), 0);
    before = mio_conn_pending(CONN);
    if (before == 0)
        FAIL(fx, "precondition: nothing queued after writing 4 MiB to a peer that does not read");
    CLOSE(fx);
    if (mio_conn_pending(CONN) != before)
        FAIL(fx, "mio_conn_pending after close = %zu, want %zu (still queued)",
             mio_conn_pending(CONN), before);
    CHECK_RC(fx, mio_conn_fd(CONN), fx->a.fd);
    CHECK_RC(fx, mio_conn_set_idle_timeout(CONN, 1000), -EPIPE);
    CHECK_RC(fx, mio_conn_set_watermarks(CONN, 0, 1u << 20), -EPIPE);
    CHECK_RC(fx, mio_conn_write(CONN, "x", 1), -EPIPE);
    CHECK_RC(fx, mio_conn_shutdown(CONN), -EPIPE);
    mio_conn_close(CONN);
    GONE_RETURN(fx, "the second mio_conn_close");
    if (mio_conn_pending(CONN) != before)
        FAIL(fx, "mio_conn_pending after the second close = %zu, want %zu", mio_conn_pending(CONN),
             before);
}

/* Closes the peer (with an RST for TCP) and waits until the conn's socket shows it, so the next
 * send fails for certain. */
static void peer_abort(struct fx *fx)
{
    struct pollfd pfd = {.fd = fx->a.fd, .events = POLLRDHUP};
    unsigned long long until = mio_test_now_ms() + 2000;
    int p;

    /* Pool context: the test thread publishes its client once connect returned (the accept
     * callback may run first); the atomic orders its connect before our close. */
    while (atomic_load(&fx->a.peer) < 0 && mio_test_now_ms() < until)
        usleep(1000);
    p = atomic_exchange(&fx->a.peer, -1);
    if (p < 0) {
        FAIL(fx, "no peer to close");
        return;
    }
    if (fx->ctx == CTX_POOL_ACCEPT) {
        struct linger l = {1, 0};

        (void)setsockopt(p, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(p);
    fx->peer_closed_by_op = true;
    while (mio_test_now_ms() < until) {
        pfd.revents = 0;
        if (poll(&pfd, 1, 50) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
            return;
    }
    FAIL(fx, "the peer's close never showed on the conn's socket");
}

/* A send that fails returns its -errno; the conn closes by itself after the callback; later
 * writes are -EPIPE; on_close reports the same -errno. */
static void op_send_failure(struct fx *fx)
{
    struct iovec v[2] = {{xy, 1}, {xy + 1, 1}};
    int rc;

    peer_abort(fx);
    rc = mio_conn_write(CONN, zeros, 64 * 1024);
    fx->expect_reason = rc < 0 ? rc : -EPIPE;
    if (rc != -EPIPE && rc != -ECONNRESET)
        FAIL(fx, "mio_conn_write to a closed peer returned %d (%s), want -EPIPE or -ECONNRESET", rc,
             mio_strerror(rc));
    GONE_RETURN(fx, "the failed mio_conn_write");
    CHECK_RC(fx, mio_conn_write(CONN, "x", 1), -EPIPE);
    CHECK_RC(fx, mio_conn_writev(CONN, v, 2), -EPIPE);
    CHECK_RC(fx, mio_conn_fd(CONN), fx->a.fd);
    CLOSE(fx); /* after a failure: harmless, and the reason stays the failure's */
    CHECK_RC(fx, mio_conn_write(CONN, "x", 1), -EPIPE);
}

/* iovec lengths whose sum overflows size_t: -EINVAL, nothing sent, the conn still works. Every
 * length has its top bit set, so even a library that passed them on would only get an error
 * from the kernel, never send memory. */
static void op_writev_overflow(struct fx *fx)
{
    static char buf[4];
    struct iovec wrap0[2] = {{buf, SIZE_MAX / 2 + 1}, {buf, SIZE_MAX / 2 + 1}}; /* sum 0 */
    struct iovec wrap1[2] = {{buf, SIZE_MAX}, {buf, 2}};                        /* sum 1 */
    struct iovec wrap2[3] = {{buf, 1}, {buf, SIZE_MAX - 1}, {buf, 3}};          /* sum 3 */

    if (mio_conn_pending(CONN) != 0) {
        FAIL(fx, "precondition: the queue is not empty (%zu bytes); overflow writes skipped",
             mio_conn_pending(CONN));
        CLOSE(fx);
        return;
    }
    CHECK_RC(fx, mio_conn_writev(CONN, wrap0, 2), -EINVAL);
    CHECK_RC(fx, mio_conn_writev(CONN, wrap1, 2), -EINVAL);
    CHECK_RC(fx, mio_conn_writev(CONN, wrap2, 3), -EINVAL);
    CHECK_RC(fx, mio_conn_pending(CONN), 0);
    CHECK_RC(fx, write_counted(fx, "ok", 2), 0);
    CLOSE(fx);
}

static void check_writev_overflow(struct fx *fx)
{
    if (fx->a.peer_bytes < 2 || memcmp(fx->a.tail, "ok", 2) != 0)
        FAIL(fx, "the peer's last bytes are not \"ok\" (%zu bytes received)", fx->a.peer_bytes);
}

static void op_idle_timeout(struct fx *fx)
{
    CHECK_RC(fx, mio_conn_set_idle_timeout(CONN, IDLE_MS), 0);
    fx->expect_reason = -ETIMEDOUT;
}

static void op_nested_run(struct fx *fx)
{
    int rc = mio_reactor_run_once(fx->r, 0);

    if (rc != -EBUSY)
        FAIL(fx, "mio_reactor_run_once inside a callback returned %d (%s), want -EBUSY", rc,
             mio_strerror(rc));
    GONE_RETURN(fx, "mio_reactor_run_once");
    if (rc == -EBUSY) /* only then: a run that is not refused would loop */
        CHECK_RC(fx, mio_reactor_run(fx->r), -EBUSY);
    CLOSE(fx);
}

/* remove / modify with a removed token: -ENOENT, and the slot's new owner is never touched. */
static void op_stale_token(struct fx *fx)
{
    int e1 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), rc;

    if (e1 < 0) {
        FAIL(fx, "eventfd: %s", strerror(errno));
        CLOSE(fx);
        return;
    }
    CHECK_RC(fx, mio_reactor_add(fx->r, e1, MIO_READABLE, old_handler, fx, &fx->t_old), 0);
    CHECK_RC(fx, mio_reactor_remove(fx->r, fx->t_old), 0);
    CHECK_RC(fx, mio_reactor_remove(fx->r, fx->t_old), -ENOENT);
    CHECK_RC(fx, mio_reactor_modify(fx->r, fx->t_old, MIO_READABLE), -ENOENT);
    close(e1);
    fx->efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC); /* readable: its handler must run */
    rc = mio_reactor_add(fx->r, fx->efd, MIO_READABLE, new_handler, fx, &fx->t_new);
    if (rc != 0) {
        FAIL(fx, "mio_reactor_add(new fd) = %d (%s)", rc, mio_strerror(rc));
        close(fx->efd);
        atomic_store(&fx->efd_closed, true);
    } else {
        atomic_store(&fx->pending, 1);
    }
    CHECK_RC(fx, mio_reactor_modify(fx->r, fx->t_old, MIO_WRITABLE), -ENOENT);
    CHECK_RC(fx, mio_reactor_remove(fx->r, fx->t_old), -ENOENT);
    CLOSE(fx);
}

/* The old token's fd was closed without remove, and its number now belongs to a new fd added to
 * the same reactor: modify(old) is -EBADF, remove(old) is 0, and neither touches the new fd. */
static void op_reused_fd_token(struct fx *fx)
{
    int e1 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), rc;

    if (e1 < 0) {
        FAIL(fx, "eventfd: %s", strerror(errno));
        CLOSE(fx);
        return;
    }
    CHECK_RC(fx, mio_reactor_add(fx->r, e1, MIO_READABLE, old_handler, fx, &fx->t_old), 0);
    close(e1);
    fx->efd = eventfd_at(e1, 1);
    if (fx->efd != e1) {
        FAIL(fx, "could not put a new eventfd on number %d", e1);
        if (fx->efd >= 0)
            close(fx->efd);
        atomic_store(&fx->efd_closed, true);
        CLOSE(fx);
        return;
    }
    rc = mio_reactor_add(fx->r, fx->efd, MIO_READABLE, new_handler, fx, &fx->t_new);
    if (rc != 0) {
        FAIL(fx, "mio_reactor_add(new fd on the old number) = %d (%s), want 0", rc,
             mio_strerror(rc));
        close(fx->efd);
        atomic_store(&fx->efd_closed, true);
    } else {
        atomic_store(&fx->pending, 1);
    }
    CHECK_RC(fx, mio_reactor_modify(fx->r, fx->t_old, MIO_WRITABLE), -EBADF);
    CHECK_RC(fx, mio_reactor_remove(fx->r, fx->t_old), 0);
    CHECK_RC(fx, mio_reactor_remove(fx->r, fx->t_old), -ENOENT);
    CHECK_RC(fx, mio_reactor_modify(fx->r, fx->t_old, MIO_WRITABLE), -ENOENT);
    CLOSE(fx);
}

static void check_tokens(struct fx *fx)
{
    if (atomic_load(&fx->old_calls) != 0)
        FAIL(fx, "the old token's handler ran %d times, want never", atomic_load(&fx->old_calls));
    if (atomic_load(&fx->new_calls) == 0)
        FAIL(fx, "the new owner's handler never got its event (its registration was removed or "
                 "changed through the old token)");
    if (atomic_load(&fx->new_writable))
        FAIL(fx, "the new owner got a WRITABLE event: the old token's modify reached it");
}

static const struct op ops[] = {
    {"close_twice", op_close_twice, NULL, false, false},
    {"write_after_close", op_write_after_close, NULL, false, false},
    {"write_after_shutdown", op_write_after_shutdown, NULL, false, false},
    {"shutdown_after_close", op_shutdown_after_close, NULL, false, false},
    {"set_after_close", op_set_after_close, NULL, false, false},
    {"set_after_close_flushing", op_set_after_close_flushing, NULL, true, false},
    {"send_failure", op_send_failure, NULL, false, false},
    {"writev_overflow", op_writev_overflow, check_writev_overflow, false, false},
    {"idle_timeout", op_idle_timeout, NULL, true, false},
    {"nested_run", op_nested_run, NULL, false, true},
    {"stale_token", op_stale_token, check_tokens, false, false},
    {"reused_fd_token", op_reused_fd_token, check_tokens, false, false},
};
#define NOPS (sizeof ops / sizeof ops[0])

static void run_op(struct fx *fx)
{
    if (fx->started)
        return;
    fx->started = true;
    fx->op->run(fx);
    atomic_store(&fx->ran, true);
}

/* ------------------------------------------------------------------ driving and checking */

static void open_tconn(struct fx *fx, struct tconn *t)
{
    int sv[2];

    t->fx = fx;
    t->used = true;
    assert_int_equal(mio_unix_stream_pair(sv), 0);
    t->fd = sv[0];
    atomic_store(&t->peer, sv[1]);
    assert_int_equal(mio_conn_open(fx->r, sv[0], &t_ops, t, &t->c), 0);
    assert_int_equal(mio_conn_fd(t->c), sv[0]);
}

/* Reads what the peer has (test thread, never blocks). */
static void peer_drain(struct tconn *t)
{
    static unsigned char buf[65536];
    int p = atomic_load(&t->peer);

    if (p < 0 || t->peer_eof)
        return;
    for (;;) {
        ssize_t n = recv(p, buf, sizeof buf, MSG_DONTWAIT);

        if (n > 0) {
            t->peer_bytes += (size_t)n;
            if (n >= 2) {
                memcpy(t->tail, buf + n - 2, 2);
            } else {
                t->tail[0] = t->tail[1];
                t->tail[1] = buf[0];
            }
            continue;
        }
        if (n == 0 || errno == ECONNRESET || errno == EPIPE)
            t->peer_eof = true;
        return;
    }
}

static bool tconn_settled(struct tconn *t)
{
    return !t->used || (atomic_load(&t->closes) > 0 && (atomic_load(&t->peer) < 0 || t->peer_eof));
}

/* Runs the reactor (or, in the pool context, watches the worker) until the op ran, the conns
 * closed, the peers saw it and the op's remaining work is done; then QUIET_MS more. Bounded. */
static void settle(struct fx *fx, bool pool)
{
    unsigned long long now = mio_test_now_ms(), deadline = now + SETTLE_MS, quiet_at = 0;
    bool late_sent = false, tail = false;

    for (;;) {
        bool ran, done;

        if (!pool) {
            int rc = mio_reactor_run_once(fx->r, 5);

            if (rc < 0 && rc != -EINTR) {
                FAIL(fx, "mio_reactor_run_once = %d (%s)", rc, mio_strerror(rc));
                return;
            }
        } else {
            usleep(1000);
        }
        ran = atomic_load(&fx->ran);
        if (ran && fx->b.used && !atomic_load(&fx->b.user_closed) &&
            atomic_load(&fx->b.closes) == 0) {
            atomic_store(&fx->b.user_closed, true);
            mio_conn_close(fx->b.c);
        }
        if (ran || fx->ctx == CTX_DRAIN)
            peer_drain(&fx->a);
        peer_drain(&fx->b);
        /* Data from the peer after the op: a closed conn must not deliver it (TCP would answer
         * unread data with an RST that can cut the flushed bytes short, so unix pairs only). */
        if (ran && !late_sent && !pool && atomic_load(&fx->a.peer) >= 0) {
            late_sent = true;
            (void)send(atomic_load(&fx->a.peer), "late", 4, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        done = ran && tconn_settled(&fx->a) && tconn_settled(&fx->b);
        now = mio_test_now_ms();
        if (done && !tail) {
            tail = true;
            if (deadline > now + TAIL_MS)
                deadline = now + TAIL_MS;
        }
        if (done && atomic_load(&fx->pending) == 0) {
            if (quiet_at == 0)
                quiet_at = now + QUIET_MS;
            if (now >= quiet_at)
                return;
        }
        if (now >= deadline)
            return;
    }
}

static bool fd_is_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

/* The checks every pair shares. */
static void check_tconn(struct fx *fx, struct tconn *t, const char *which, int want_reason)
{
    int closes = atomic_load(&t->closes);

    if (!t->used)
        return;
    if (closes != 1) {
        FAIL(fx, "%s: on_close ran %d times, want exactly once", which, closes);
        if (closes == 0)
            return;
    }
    if (atomic_load(&t->reason) != want_reason)
        FAIL(fx, "%s: on_close reason %d (%s), want %d (%s)", which, atomic_load(&t->reason),
             mio_strerror(atomic_load(&t->reason)), want_reason, mio_strerror(want_reason));
    if (atomic_load(&t->fd_in_close) != t->fd)
        FAIL(fx, "%s: mio_conn_fd inside on_close = %d, want %d", which,
             atomic_load(&t->fd_in_close), t->fd);
    if (atomic_load(&t->reads_after_close) != 0)
        FAIL(fx, "%s: on_read ran %d times after mio_conn_close / on_close", which,
             atomic_load(&t->reads_after_close));
    if (!fd_is_closed(t->fd))
        FAIL(fx, "%s: fd %d still open after on_close", which, t->fd);
    if (atomic_load(&t->peer) >= 0) {
        if (!t->peer_eof)
            FAIL(fx, "%s: the peer never saw the close", which);
        if (want_reason == 0 && t == &fx->a && t->peer_bytes != fx->sent)
            FAIL(fx,
                 "%s: the peer received %zu bytes, want %zu (all that was written before a "
                 "clean close)",
                 which, t->peer_bytes, fx->sent);
    }
}

static void check_all(struct fx *fx)
{
    if (!atomic_load(&fx->ran)) {
        FAIL(fx, "the context never ran the op");
        return;
    }
    check_tconn(fx, &fx->a, "conn", fx->expect_reason);
    check_tconn(fx, &fx->b, "helper conn", 0);
    if (fx->op->check != NULL)
        fx->op->check(fx);
}

static void close_peer(struct tconn *t)
{
    int p = atomic_exchange(&t->peer, -1);

    if (p >= 0)
        close(p);
}

/* Fails the test with every message recorded (after all cleanup is done). */
static void report(struct fx *fx)
{
    static char msg[sizeof fx->err];

    if (fx->errlen == 0) {
        free(fx);
        return;
    }
    memcpy(msg, fx->err, sizeof msg);
    free(fx);
    fail_msg("%s", msg);
}

static void drive_reactor(struct fx *fx)
{
    assert_int_equal(mio_reactor_new(NULL, &fx->r), 0);
    open_tconn(fx, &fx->a);
    if (fx->ctx == CTX_OTHER_READ || fx->ctx == CTX_OTHER_CLOSE)
        open_tconn(fx, &fx->b);
    switch (fx->ctx) {
    case CTX_OUTSIDE:
        run_op(fx);
        /* A close made outside callbacks completes in the next iteration, before it waits. */
        if (!fx->op->closes_later) {
            int rc = mio_reactor_run_once(fx->r, 0);

            if (rc < 0)
                FAIL(fx, "mio_reactor_run_once = %d", rc);
            if (atomic_load(&fx->a.closes) != 1)
                FAIL(fx, "on_close did not run in the next mio_reactor_run_once (closes=%d)",
                     atomic_load(&fx->a.closes));
        }
        break;
    case CTX_OWN_READ:
        assert_int_equal(send(atomic_load(&fx->a.peer), "ping", 4, MSG_NOSIGNAL), 4);
        break;
    case CTX_OTHER_READ:
        assert_int_equal(send(atomic_load(&fx->b.peer), "ping", 4, MSG_NOSIGNAL), 4);
        break;
    case CTX_TASK:
        assert_int_equal(mio_reactor_post(fx->r, ctx_task, fx), 0);
        break;
    case CTX_TIMER:
        assert_int_equal(mio_reactor_timer_start(fx->r, 0, 0, ctx_timer, fx, NULL), 0);
        break;
    case CTX_OTHER_CLOSE:
        atomic_store(&fx->b.user_closed, true);
        mio_conn_close(fx->b.c);
        break;
    case CTX_DRAIN: {
        /* Above the high mark with a peer that reads only later: on_drain when the queue empties.
         */
        int small = SMALL_SNDBUF;

        assert_int_equal(setsockopt(fx->a.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
        assert_int_equal(mio_conn_set_watermarks(fx->a.c, 0, 4096), 0);
        assert_int_equal(write_counted(fx, zeros, PRE_WRITE), 0);
        assert_true(mio_conn_pending(fx->a.c) > 4096);
        break;
    }
    default:
        fail();
    }
    settle(fx, false);
}

static void cleanup_reactor(struct fx *fx)
{
    if (!atomic_load(&fx->efd_closed) && fx->efd > 0) {
        (void)mio_reactor_remove(fx->r, fx->t_new);
        close(fx->efd);
        atomic_store(&fx->efd_closed, true);
    }
    mio_reactor_free(fx->r);
    close_peer(&fx->a);
    close_peer(&fx->b);
}

/* Pool context: the op runs in a worker's accept callback, on a conn opened on the accepted fd;
 * the peer is this thread's TCP client. */
static void pool_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    struct fx *fx = arg;
    int rc;

    (void)peer;
    if (fx->started) { /* only the first connection */
        close(fd);
        return;
    }
    if (w != fx->r)
        FAIL(fx, "the accept callback got another reactor than worker 0");
    if (!mio_test_fd_is_nb_cloexec(fd))
        FAIL(fx, "the accepted fd is not O_NONBLOCK|O_CLOEXEC");
    fx->a.fx = fx;
    fx->a.used = true;
    fx->a.fd = fd;
    rc = mio_conn_open(w, fd, &t_ops, &fx->a, &fx->a.c);
    if (rc != 0) {
        FAIL(fx, "mio_conn_open(accepted fd) = %d (%s)", rc, mio_strerror(rc));
        close(fd);
        fx->started = true;
        atomic_store(&fx->ran, true);
        return;
    }
    run_op(fx);
}

static int tcp_client(const mio_addr *addr)
{
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    return fd;
}

static void drive_pool(struct fx *fx)
{
    mio_pool_opts o = {.workers = 1};
    mio_pool *pool;
    mio_addr addr;
    int cli, rc;
    unsigned long long until;

    assert_int_equal(mio_pool_new(&o, &pool), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &addr), 0);
    assert_int_equal(mio_pool_listen(pool, &addr, pool_accept, fx), 0);
    assert_int_equal(mio_pool_local_addr(pool, 0, &addr), 0);
    fx->r = mio_pool_worker(pool, 0);
    assert_int_equal(mio_pool_start(pool), 0);
    cli = tcp_client(&addr);
    assert_int_equal(connect(cli, &addr.u.sa, addr.len), 0);
    atomic_store(&fx->a.peer, cli); /* the op may close it (peer_abort waits for it) */
    until = mio_test_now_ms() + SETTLE_MS;
    while (!atomic_load(&fx->ran) && mio_test_now_ms() < until)
        usleep(1000);
    if (atomic_load(&fx->ran)) {
        settle(fx, true);
        /* the worker closes the fd right after on_close returns */
        until = mio_test_now_ms() + 1000;
        while (atomic_load(&fx->a.closes) > 0 && !fd_is_closed(fx->a.fd) &&
               mio_test_now_ms() < until)
            usleep(1000);
    }
    check_all(fx);
    rc = mio_pool_stop(pool, 1000);
    if (rc != 0)
        FAIL(fx, "mio_pool_stop = %d (%s), want 0", rc, mio_strerror(rc));
    mio_pool_free(pool);
    if (!atomic_load(&fx->efd_closed) && fx->efd > 0)
        close(fx->efd); /* its handler never ran: the fd is still ours */
    close_peer(&fx->a);
}

/* ------------------------------------------------------------------ the matrix */

struct pair {
    const struct op *op;
    enum ctx_kind ctx;
    int fds_before;
    char name[64];
};

static int pair_setup(void **state)
{
    struct pair *p = *state;

    p->fds_before = mio_test_fd_count();
    return 0;
}

static int pair_teardown(void **state)
{
    struct pair *p = *state;
    int after = mio_test_fd_count();

    if (after != p->fds_before) {
        fprintf(stderr, "[%s] fd count changed: %d before, %d after\n", p->name, p->fds_before,
                after);
        return -1;
    }
    return 0;
}

static void test_pair(void **state)
{
    struct pair *p = *state;
    struct fx *fx = calloc(1, sizeof *fx);

    assert_non_null(fx);
    fx->op = p->op;
    fx->op_name = p->op->name;
    fx->ctx = p->ctx;
    fx->efd = -1;
    atomic_store(&fx->a.peer, -1);
    atomic_store(&fx->b.peer, -1);
    if (p->ctx == CTX_POOL_ACCEPT) {
        drive_pool(fx);
    } else {
        drive_reactor(fx);
        check_all(fx);
        cleanup_reactor(fx);
    }
    report(fx);
}

/* ------------------------------------------------------------------ pool: stop from inside */

enum pool_ctx { P_ACCEPT, P_ON_READ, P_TASK, P_TIMER, P_MAIN, NPCTX };
static const char *const pctx_names[NPCTX] = {"accept", "on_read", "task", "timer", "main_thread"};

struct pfx;
struct sconn {
    struct pfx *p;
    atomic_int closes;
};

#define PFX_CONNS 16
struct pfx {
    mio_pool *pool;
    int which; /* 0: mio_pool_stop, 1: mio_reactor_stop(worker) */
    enum pool_ctx ctx;
    atomic_bool started, ran;
    atomic_int rc, opened;
    struct sconn conns[PFX_CONNS];
};

static void pfx_run(struct pfx *p)
{
    if (atomic_exchange(&p->started, true))
        return;
    if (p->which == 0)
        atomic_store(&p->rc, mio_pool_stop(p->pool, 0));
    else
        atomic_store(&p->rc, mio_reactor_stop(mio_pool_worker(p->pool, 0)));
    atomic_store(&p->ran, true);
}

static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct sconn *s = arg;

    if (s->p->ctx == P_ON_READ && len > 0)
        pfx_run(s->p);
    if (len == 0)
        mio_conn_close(c);
    else
        (void)mio_conn_write(c, data, len);
}

static void echo_close(mio_conn *c, int reason, void *arg)
{
    struct sconn *s = arg;

    (void)c;
    (void)reason;
    atomic_fetch_add(&s->closes, 1);
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void echo_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    struct pfx *p = arg;
    int i;

    (void)peer;
    if (p->ctx == P_ACCEPT)
        pfx_run(p);
    i = atomic_fetch_add(&p->opened, 1);
    if (i >= PFX_CONNS || mio_conn_open(w, fd, &echo_ops, &p->conns[i], NULL) != 0)
        close(fd);
}

static void pfx_task(mio_reactor *r, void *arg)
{
    (void)r;
    pfx_run(arg);
}

static void pfx_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)r;
    (void)id;
    pfx_run(arg);
}

static void pfx_start_timer(mio_reactor *r, void *arg)
{
    if (mio_reactor_timer_start(r, 0, 0, pfx_timer, arg, NULL) != 0)
        pfx_run(arg); /* reported below as the wrong context only if it matters */
}

/* A blocking client with a receive timeout: one echo round trip. True when it came back. */
static bool echo_round_trip(int fd, const char *msg)
{
    char buf[64];
    size_t len = strlen(msg), got = 0;

    if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
        return false;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);

        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return memcmp(buf, msg, len) == 0;
}

static int connect_client(const mio_addr *addr)
{
    struct timeval tv = {.tv_sec = 3};
    int fd = tcp_client(addr);

    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    if (connect(fd, &addr->u.sa, addr->len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct ppair {
    int which;
    enum pool_ctx ctx;
    int fds_before;
    char name[64];
};

static void test_pool_pair(void **state)
{
    struct ppair *pp = *state;
    struct pfx *p = calloc(1, sizeof *p);
    mio_pool_opts o = {.workers = 1};
    mio_addr addr;
    int c1 = -1, c2 = -1, rc, want = pp->which == 0 ? -EDEADLK : -EPERM;
    bool served1 = true, served2, leak = false;
    unsigned long long until;
    char err[1024] = "";
    size_t el = 0;

    assert_non_null(p);
    p->which = pp->which;
    p->ctx = pp->ctx;
    for (int i = 0; i < PFX_CONNS; i++)
        p->conns[i].p = p;
    assert_int_equal(mio_pool_new(&o, &p->pool), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &addr), 0);
    assert_int_equal(mio_pool_listen(p->pool, &addr, echo_accept, p), 0);
    assert_int_equal(mio_pool_local_addr(p->pool, 0, &addr), 0);
    assert_int_equal(mio_pool_start(p->pool), 0);

    switch (pp->ctx) {
    case P_ACCEPT:
        c1 = connect_client(&addr);
        break;
    case P_ON_READ:
        c1 = connect_client(&addr);
        served1 = c1 >= 0 && echo_round_trip(c1, "ping");
        break;
    case P_TASK:
        assert_int_equal(mio_reactor_post(mio_pool_worker(p->pool, 0), pfx_task, p), 0);
        break;
    case P_TIMER:
        assert_int_equal(mio_reactor_post(mio_pool_worker(p->pool, 0), pfx_start_timer, p), 0);
        break;
    case P_MAIN:
        pfx_run(p);
        break;
    default:
        fail();
    }
    until = mio_test_now_ms() + 5000;
    while (!atomic_load(&p->ran) && mio_test_now_ms() < until)
        usleep(1000);
#define PFAIL(...)                                                                                 \
    do {                                                                                           \
        int n_ = snprintf(err + el, sizeof err - el, __VA_ARGS__);                                 \
        if (n_ > 0 && el + (size_t)n_ < sizeof err)                                                \
            el += (size_t)n_;                                                                      \
    } while (0)
    if (!atomic_load(&p->ran)) {
        PFAIL("\n  [%s] the context never ran the call", pp->name);
    } else {
        rc = atomic_load(&p->rc);
        if (rc != want)
            PFAIL("\n  [%s] %s returned %d (%s), want %d (%s)", pp->name,
                  pp->which == 0 ? "mio_pool_stop(pool)" : "mio_reactor_stop(worker)", rc,
                  mio_strerror(rc), want, mio_strerror(want));
        /* A pool stopped from its own worker could not join that worker: freeing it could free
         * a reactor a thread still runs. Leak it instead (the test fails anyway). */
        if (pp->which == 0 && rc != want)
            leak = true;
    }
    if (!served1)
        PFAIL("\n  [%s] the client whose data triggered the call got no echo", pp->name);
    c2 = connect_client(&addr);
    served2 = c2 >= 0 && echo_round_trip(c2, "hello");
    if (!served2)
        PFAIL("\n  [%s] a new client is no longer served after the call", pp->name);
    if (c1 >= 0)
        close(c1);
    if (c2 >= 0)
        close(c2);
    /* the server closes each conn on the client's FIN */
    until = mio_test_now_ms() + 2000;
    for (;;) {
        int open = 0, n = atomic_load(&p->opened);

        for (int i = 0; i < n && i < PFX_CONNS; i++)
            open += atomic_load(&p->conns[i].closes) == 0;
        if (open == 0 || mio_test_now_ms() >= until)
            break;
        usleep(1000);
    }
    rc = mio_pool_stop(p->pool, 1000);
    if (rc != 0)
        PFAIL("\n  [%s] mio_pool_stop from the main thread = %d (%s), want 0", pp->name, rc,
              mio_strerror(rc));
    for (int i = 0; i < atomic_load(&p->opened) && i < PFX_CONNS; i++)
        if (atomic_load(&p->conns[i].closes) != 1)
            PFAIL("\n  [%s] server conn %d: on_close ran %d times, want once", pp->name, i,
                  atomic_load(&p->conns[i].closes));
#undef PFAIL
    if (!leak) {
        mio_pool_free(p->pool);
        free(p);
    }
    if (el > 0)
        fail_msg("%s", err);
}

static int ppair_setup(void **state)
{
    struct ppair *p = *state;

    p->fds_before = mio_test_fd_count();
    return 0;
}

static int ppair_teardown(void **state)
{
    struct ppair *p = *state;
    int after = mio_test_fd_count();

    if (after != p->fds_before) {
        fprintf(stderr, "[%s] fd count changed: %d before, %d after\n", p->name, p->fds_before,
                after);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ reactor free */

struct fconn {
    mio_conn *c;
    int fd, peer;
    int closes, reason, fd_in_close;
};

static void f_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)c;
    (void)data;
    (void)len;
    (void)arg;
}

static void f_on_close(mio_conn *c, int reason, void *arg)
{
    struct fconn *f = arg;

    f->closes++;
    f->reason = reason;
    f->fd_in_close = mio_conn_fd(c);
}

static const mio_conn_ops f_ops = {f_on_read, f_on_close, NULL};

static void fconn_open(mio_reactor *r, struct fconn *f)
{
    int sv[2];

    memset(f, 0, sizeof *f);
    assert_int_equal(mio_unix_stream_pair(sv), 0);
    f->fd = sv[0];
    f->peer = sv[1];
    assert_int_equal(mio_conn_open(r, sv[0], &f_ops, f, &f->c), 0);
}

/* Queues `len` bytes behind a tiny send buffer and a peer that does not read. */
static void fconn_fill(struct fconn *f, size_t len)
{
    int small = SMALL_SNDBUF;

    assert_int_equal(setsockopt(f->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    assert_int_equal(mio_conn_write(f->c, zeros, len), 0);
    assert_true(mio_conn_pending(f->c) > 0);
}

static bool peer_sees_close(int peer)
{
    static unsigned char buf[65536];
    unsigned long long until = mio_test_now_ms() + 2000;

    while (mio_test_now_ms() < until) {
        ssize_t n = recv(peer, buf, sizeof buf, MSG_DONTWAIT);

        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return true;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        if (n < 0)
            usleep(1000);
    }
    return false;
}

/* Checks one conn after mio_reactor_free; appends failures to err. Closes what is still open so
 * that a failure does not leak fds into later tests. */
static void fconn_check(struct fconn *f, const char *name, int want1, int want2, char *err,
                        size_t errsz)
{
    size_t el = strlen(err);

    if (f->closes != 1)
        snprintf(err + el, errsz - el,
                 "\n  [%s] on_close ran %d times in mio_reactor_free, want once", name, f->closes);
    else if (f->reason != want1 && f->reason != want2)
        snprintf(err + el, errsz - el, "\n  [%s] on_close reason %d (%s), want %d (%s)", name,
                 f->reason, mio_strerror(f->reason), want1, mio_strerror(want1));
    else if (f->fd_in_close != f->fd)
        snprintf(err + el, errsz - el, "\n  [%s] mio_conn_fd inside on_close = %d, want %d", name,
                 f->fd_in_close, f->fd);
    el = strlen(err);
    if (!fd_is_closed(f->fd)) {
        snprintf(err + el, errsz - el, "\n  [%s] fd %d still open after mio_reactor_free", name,
                 f->fd);
        close(f->fd);
    } else if (f->peer >= 0 && !peer_sees_close(f->peer)) {
        snprintf(err + el, errsz - el, "\n  [%s] the peer never saw the close", name);
    }
    if (f->peer >= 0)
        close(f->peer);
}

/* Open conns at mio_reactor_free: on_close(-ECANCELED) once each, fds closed, peers see it.
 * One idle, one with megabytes queued, one closed by the user while still flushing (its close
 * could not complete: -ECANCELED, as for a pool stop past its drain time). */
static void test_free_closes_open_conns(void **state)
{
    mio_reactor *r;
    struct fconn idle, queued, flushing;
    char err[2048] = "";

    (void)state;
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    fconn_open(r, &idle);
    fconn_open(r, &queued);
    fconn_open(r, &flushing);
    fconn_fill(&queued, BIG_WRITE);
    fconn_fill(&flushing, BIG_WRITE);
    for (int i = 0; i < 3; i++)
        assert_true(mio_reactor_run_once(r, 0) >= 0);
    mio_conn_close(flushing.c);
    assert_int_equal(flushing.closes, 0); /* still flushing: no on_close yet */
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    assert_int_equal(idle.closes + queued.closes + flushing.closes, 0);
    mio_reactor_free(r);
    fconn_check(&idle, "idle", -ECANCELED, -ECANCELED, err, sizeof err);
    fconn_check(&queued, "queued", -ECANCELED, -ECANCELED, err, sizeof err);
    fconn_check(&flushing, "closed, still flushing", -ECANCELED, -ECANCELED, err, sizeof err);
    if (err[0] != '\0')
        fail_msg("%s", err);
}

/* Conns closed outside callbacks (no run_once since): on_close has not run when the call
 * returns and runs in mio_reactor_free, with reason 0 after mio_conn_close and the send's -errno
 * after a failed write. */
static void test_free_runs_pending_on_close(void **state)
{
    mio_reactor *r;
    struct fconn closed, failed, never;
    char err[2048] = "";
    size_t el;
    int rc;

    (void)state;
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    fconn_open(r, &closed);
    fconn_open(r, &failed);
    fconn_open(r, &never);
    assert_true(mio_reactor_run_once(r, 0) >= 0);
    mio_conn_close(closed.c);
    if (closed.closes != 0)
        snprintf(err, sizeof err,
                 "\n  [closed] on_close ran inside mio_conn_close (outside "
                 "callbacks it must wait for the next iteration or the free)");
    close(failed.peer);
    failed.peer = -1;
    rc = mio_conn_write(failed.c, zeros, 65536);
    el = strlen(err);
    if (rc != -EPIPE && rc != -ECONNRESET)
        snprintf(err + el, sizeof err - el, "\n  [failed] write to a closed peer = %d (%s)", rc,
                 mio_strerror(rc));
    else if (failed.closes != 0)
        snprintf(err + el, sizeof err - el, "\n  [failed] on_close ran inside mio_conn_write");
    /* `never` was never closed: it gets -ECANCELED */
    mio_reactor_free(r);
    fconn_check(&closed, "closed", 0, 0, err, sizeof err);
    fconn_check(&failed, "failed", rc < 0 ? rc : -EPIPE, rc < 0 ? rc : -EPIPE, err, sizeof err);
    fconn_check(&never, "never closed", -ECANCELED, -ECANCELED, err, sizeof err);
    if (err[0] != '\0')
        fail_msg("%s", err);
}

static int fd_setup(void **state)
{
    *state = (void *)(intptr_t)mio_test_fd_count();
    return 0;
}

static int fd_teardown(void **state)
{
    int before = (int)(intptr_t)*state, after = mio_test_fd_count();

    if (before != after) {
        fprintf(stderr, "fd count changed: %d before the test, %d after\n", before, after);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    static struct pair pairs[NOPS * NCTX];
    static struct ppair ppairs[2 * NPCTX];
    static struct CMUnitTest tests[NOPS * NCTX + 2 * NPCTX + 2];
    size_t n = 0, np = 0;

    mio_test_watchdog(250);
    signal(SIGPIPE, SIG_IGN); /* the test's own peer writes; the library never raises it */
    for (size_t o = 0; o < NOPS; o++)
        for (int c = 0; c < NCTX; c++) {
            struct pair *p = &pairs[np++];

            if (ops[o].callback_only && c == CTX_OUTSIDE) {
                np--;
                continue;
            }
            p->op = &ops[o];
            p->ctx = (enum ctx_kind)c;
            snprintf(p->name, sizeof p->name, "%s@%s", ops[o].name, ctx_names[c]);
            tests[n++] = (struct CMUnitTest){p->name, test_pair, pair_setup, pair_teardown, p};
        }
    for (int w = 0; w < 2; w++)
        for (int c = 0; c < NPCTX; c++) {
            struct ppair *p = &ppairs[w * NPCTX + c];

            if (w == 0 && c == P_MAIN) /* the owner thread's stop is the normal case */
                continue;
            p->which = w;
            p->ctx = (enum pool_ctx)c;
            snprintf(p->name, sizeof p->name, "%s@%s",
                     w == 0 ? "pool_stop_in_pool" : "reactor_stop_worker", pctx_names[c]);
            tests[n++] =
                (struct CMUnitTest){p->name, test_pool_pair, ppair_setup, ppair_teardown, p};
        }
    tests[n++] = (struct CMUnitTest){"free_closes_open_conns", test_free_closes_open_conns,
                                     fd_setup, fd_teardown, NULL};
    tests[n++] = (struct CMUnitTest){"free_runs_pending_on_close", test_free_runs_pending_on_close,
                                     fd_setup, fd_teardown, NULL};
    return _cmocka_run_group_tests("contract", tests, n, NULL, NULL);
}
