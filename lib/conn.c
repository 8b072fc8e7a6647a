/* mio_conn: a buffered connection on a reactor.
 *
 * Reading: edge-triggered; every read call offers the reactor's shared 64 KiB buffer, and a short
 * read means the socket is drained (no extra -EAGAIN read) unless the event said read-closed, in
 * which case we read on until 0 so the FIN is never lost.
 * Writing: straight to the socket while nothing is queued; the rest is copied into the write queue
 * (arena chunks) and flushed with writev when WRITABLE fires. WRITABLE interest is held only while
 * something is queued. Above the high water mark reading stops (READABLE interest dropped), at the
 * low mark it resumes (re-adding READABLE re-arms the edge for data that arrived meanwhile) and
 * on_drain runs.
 * Lifetime: teardown happens once (F_DEAD): reading and writing stop and the conn joins the
 * reactor's list of dying conns. on_close runs when the reactor settles that list, at the first safe
 * point after the callback that caused it (see mio__reactor_ext), never inside a call the user
 * made; then the token is released, the fd closed and the memory freed. So a mio_conn * stays
 * valid until its on_close returns, whichever context closed it; events that reach a dying conn
 * meanwhile are ignored. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <mio/conn.h>
#include <mio/net.h>
#include "internal/conn_queue.h"
#include "internal/reactor_int.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define CONN_LOW_DEFAULT (64u * 1024u)
#define CONN_HIGH_DEFAULT (1024u * 1024u)

enum {
    F_DEAD = 1u << 1,       /* torn down: on the dying list until on_close has run */
    F_CLOSING = 1u << 2,    /* mio_conn_close called: flush, then close; no more on_read */
    F_PAUSED = 1u << 3,     /* pending > high: not reading */
    F_EOF = 1u << 4,        /* peer FIN delivered */
    F_SHUT_REQ = 1u << 5,   /* mio_conn_shutdown called */
    F_SHUT_DONE = 1u << 6,  /* shutdown(SHUT_WR) issued */
    F_TIMER = 1u << 7,      /* idle timer armed (c->x->timer valid) */
    F_LISTED = 1u << 8,     /* dying and in conn_ctx.dying (else found by the overflow walk) */
};

#define OPS_OWN 255u /* c->ops: the ops are x->own_ops (the reactor's intern table was full) */

/* What only some conns need: allocated the first time bytes are queued, watermarks are moved or
 * an idle timeout is set, then kept until the conn dies. An idle conn that never needed it costs
 * one 32-byte object plus its reactor slot. */
struct conn_ext {
    struct mio__wq wq;
    size_t low, high;
    uint64_t last_active; /* reactor time of the last received data (idle timer only) */
    uint64_t idle_ms;
    mio_timer_id timer;
    mio_conn_ops *own_ops; /* our own copy of the ops when c->ops == OPS_OWN, else NULL */
};

/* Only what the reactor does not already hold: the fd and the token's generation live in the
 * conn's slab slot (found by index), the ops in the reactor's intern table (found by index). */
struct mio_conn {
    mio_reactor *r;
    void *arg;
    struct conn_ext *x;    /* NULL until needed */
    uint32_t slot;         /* our slab slot: fd, generation (the token) */
    uint16_t flags;
    uint8_t ops;           /* index into the reactor's intern table, or OPS_OWN */
    union {
        mio_interest interest; /* what is registered now (while alive) */
        uint8_t dead_errno;    /* once F_DEAD: -(on_close's reason) */
    };
};

/* The conn layer's per-reactor state (attached to the reactor at the first mio_conn_open): conns
 * torn down whose on_close has not run yet. A fixed list, so that a teardown never allocates (it
 * cannot fail); past its size, settle finds the rest by walking the slab (dying conns keep their
 * slots), once per settle: the price of closing more than CONN_DYING_MAX conns in one callback. */
#define CONN_DYING_MAX 32u

struct conn_ctx {
    mio_conn *dying[CONN_DYING_MAX];
    unsigned ndying;
    bool overflow; /* some dying conns are not listed */
};

/* The per-connection budget (issue 6: <= 64 bytes of RSS per idle conn, slot included): the conn
 * must stay in jemalloc's 32-byte class. */
_Static_assert(sizeof(struct mio_conn) <= 32, "mio_conn grew past its memory budget");
_Static_assert(MIO__INTERN_MAX < OPS_OWN, "an intern index must fit beside OPS_OWN");

/* Valid until conn_finish releases the slot. */
static inline int conn_fd(const mio_conn *c)
{
    return mio__slab_at(&mio__reactor_head(c->r)->slab, c->slot)->fd;
}

static inline mio_token conn_token(const mio_conn *c)
{
    return (mio_token)mio__slab_token(&mio__reactor_head(c->r)->slab, c->slot);
}

static inline const mio_conn_ops *conn_ops(const mio_conn *c)
{
    if (c->ops == OPS_OWN)
        return c->x->own_ops;
    return mio__reactor_head(c->r)->interned[c->ops];
}

static inline bool conn_has_queue(const mio_conn *c)
{
    return c->x != NULL && !mio__wq_is_empty(&c->x->wq);
}

static struct conn_ext *conn_ext(mio_conn *c)
{
    struct conn_ext *x = c->x;

    if (x != NULL)
        return x;
    x = mio__alloc(mio__reactor_arena(c->r), sizeof(*x));
    if (x == NULL)
        return NULL;
    mio__wq_init(&x->wq);
    x->low = CONN_LOW_DEFAULT;
    x->high = CONN_HIGH_DEFAULT;
    x->last_active = mio_reactor_now_ms(c->r);
    x->idle_ms = 0;
    x->timer = 0;
    x->own_ops = NULL;
    c->x = x;
    return x;
}

static void conn_release(mio_conn *c)
{
    mio__arena arena = mio__reactor_arena(c->r);

    if (c->x != NULL)
        mio__free(arena, c->x->own_ops);
    mio__free(arena, c->x);
    mio__free(arena, c);
}

static void conn_defer(mio_conn *c);

/* Tears the conn down exactly once: cancels the timer, drops the queue and puts the conn on the
 * dying list; conn_finish runs on_close(reason) later, from the reactor's settle point. Only the
 * errno is kept (one byte): every errno fits. */
static void conn_teardown(mio_conn *c, int reason)
{
    mio_reactor *r = c->r;

    if (c->flags & F_DEAD)
        return;
    c->flags |= F_DEAD;
    if (c->flags & F_TIMER) {
        (void)mio_reactor_timer_cancel(r, c->x->timer);
        c->flags &= (uint16_t)~F_TIMER;
    }
    mio__reactor_conn_count_add(r, -1);
    if (c->x != NULL)
        mio__wq_clear(&c->x->wq, mio__reactor_arena(r));
    c->dead_errno = reason < 0 && reason > -256 ? (uint8_t)-reason : (reason == 0 ? 0 : EIO);
    conn_defer(c);
}

/* Runs on_close, then releases the token (the slot, which holds the fd, goes only now, so
 * mio_conn_fd still answers inside on_close), closes the fd and frees the conn.
 * The token is released with mio__reactor_forget (no epoll_ctl): the conn owns its fd and closes it
 * here, which takes it out of epoll. A user who dup()s mio_conn_fd keeps the registration alive
 * past the close; its events then carry a stale token and are dropped (see reactor_int.h). */
static void conn_finish(mio_conn *c)
{
    int fd;

    if (conn_ops(c)->on_close != NULL)
        conn_ops(c)->on_close(c, -(int)c->dead_errno, c->arg);
    fd = conn_fd(c);
    (void)mio__reactor_forget(c->r, conn_token(c));
    (void)close(fd);
    conn_release(c);
}

/* Brings the registered interest in line with the state. READABLE while reading is allowed and
 * the peer has not finished; WRITABLE while something is queued. A conn that wants nothing (EOF
 * seen, queue empty) keeps READABLE: errors and hang-ups are reported whatever the interest. */
static int conn_sync_interest(mio_conn *c)
{
    mio_interest want = 0;
    int err;

    if (!(c->flags & (F_CLOSING | F_PAUSED | F_EOF)))
        want |= MIO_READABLE;
    if (conn_has_queue(c))
        want |= MIO_WRITABLE;
    if (want == 0)
        want = MIO_READABLE;
    if (want == c->interest)
        return 0;
    err = mio_reactor_modify(c->r, conn_token(c), want);
    if (err < 0) {
        conn_teardown(c, err);
        return err;
    }
    c->interest = want;
    return 0;
}

/* Queue just emptied: finish a requested shutdown or close. Returns < 0 when the conn died. */
static int conn_flushed(mio_conn *c)
{
    if (c->flags & F_CLOSING) {
        conn_teardown(c, 0);
        return -EPIPE;
    }
    if ((c->flags & F_SHUT_REQ) && !(c->flags & F_SHUT_DONE)) {
        int err = mio_socket_shutdown(conn_fd(c), SHUT_WR);

        c->flags |= F_SHUT_DONE;
        if (err < 0 && err != -ENOTCONN) {
            conn_teardown(c, err);
            return err;
        }
    }
    return 0;
}

/* Writes the queue out until it is empty or the socket is full. Runs on WRITABLE only, so the
 * common case (nothing queued) never gets here. */
static void conn_flush(mio_conn *c)
{
    mio__arena arena = mio__reactor_arena(c->r);
    struct conn_ext *x = c->x; /* set: only called with bytes queued */
    struct iovec iov[IOV_MAX];

    while (!mio__wq_is_empty(&x->wq)) {
        int cnt = mio__wq_peek(&x->wq, iov, IOV_MAX);
        ssize_t n = mio_sendv(conn_fd(c), iov, cnt);

        if (n == -EINTR)
            continue;
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            conn_teardown(c, (int)n);
            return;
        }
        mio__wq_consume(&x->wq, arena, (size_t)n);
    }
    if (mio__wq_is_empty(&x->wq) && conn_flushed(c) < 0)
        return;
    if ((c->flags & F_PAUSED) && x->wq.bytes <= x->low) {
        c->flags &= (uint16_t)~F_PAUSED;
        if (conn_sync_interest(c) < 0)
            return;
        if (conn_ops(c)->on_drain != NULL)
            conn_ops(c)->on_drain(c, c->arg);
        if (c->flags & F_DEAD)
            return;
    }
    (void)conn_sync_interest(c);
}

/* Reads while data comes. `rdhup`: the event carried read-closed, so a short read is not proof of
 * a drained socket: read on until 0 (EOF) or -EAGAIN. */
static void conn_read(mio_conn *c, bool rdhup)
{
    const struct mio__reactor_head *h = mio__reactor_head(c->r);
    size_t cap = h->read_len;
    void *buf = h->read_buf;
    /* Both stay valid while the loop runs: it stops at F_DEAD, before the slot is released. */
    int fd = mio__slab_at(&h->slab, c->slot)->fd;
    const mio_conn_ops *ops = conn_ops(c);

    while (!(c->flags & (F_DEAD | F_CLOSING | F_PAUSED | F_EOF))) {
        ssize_t n = mio_recv(fd, buf, cap);

        if (n > 0) {
            if (c->x != NULL)
                c->x->last_active = mio_reactor_now_ms(c->r);
            ops->on_read(c, buf, (size_t)n, c->arg);
            if ((size_t)n < cap && !rdhup)
                break;
        } else if (n == 0) {
            c->flags |= F_EOF;
            if (c->x != NULL)
                c->x->last_active = mio_reactor_now_ms(c->r);
            ops->on_read(c, buf, 0, c->arg);
            if (!(c->flags & F_DEAD))
                (void)conn_sync_interest(c);
            break;
        } else if (n == -EINTR) {
            continue;
        } else if (n == -EAGAIN) {
            break;
        } else {
            conn_teardown(c, (int)n);
            break;
        }
    }
}

/* The readiness bits are tested here directly (mio_event is struct epoll_event) rather than with
 * five out-of-line mio_event_is_* calls per event; the sets are those of lib/event.c:
 * writable|write_closed|error = OUT|HUP|ERR, readable|read_closed|error = IN|PRI|HUP|ERR,
 * read_closed = HUP, or IN with RDHUP. */
static void conn_on_io(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    mio_conn *c = arg;
    uint32_t e = ev->events;

    (void)r;
    (void)token;
    if (c->flags & F_DEAD)
        return; /* dying: on_close is pending, nothing more to do */
    if (e & EPOLLERR) {
        int err = mio_socket_take_error(conn_fd(c));

        if (err < 0) {
            conn_teardown(c, err);
            return;
        }
    }
    if ((e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && conn_has_queue(c))
        conn_flush(c);
    if (!(c->flags & F_DEAD) && (e & (EPOLLIN | EPOLLPRI | EPOLLHUP | EPOLLERR)))
        conn_read(c, (e & EPOLLHUP) || (e & (EPOLLIN | EPOLLRDHUP)) == (EPOLLIN | EPOLLRDHUP));
}

static int conn_arm_timer(mio_conn *c, uint64_t after_ms);

static void conn_on_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    mio_conn *c = arg;
    uint64_t now = mio_reactor_now_ms(r), due;

    (void)id;
    c->flags &= (uint16_t)~F_TIMER;
    if (c->x->idle_ms == 0)
        return;
    /* Reads only stamp last_active; the timer re-arms lazily for the time left. */
    due = c->x->last_active + c->x->idle_ms;
    if (now >= due)
        conn_teardown(c, -ETIMEDOUT);
    else if (conn_arm_timer(c, due - now) < 0)
        conn_teardown(c, -ENOMEM);
}

static int conn_arm_timer(mio_conn *c, uint64_t after_ms)
{
    int err = mio_reactor_timer_start(c->r, after_ms, 0, conn_on_timer, c, &c->x->timer);

    if (err < 0)
        return err;
    c->flags |= F_TIMER;
    return 0;
}

/* ---- the conn layer's reactor extension: the dying list ---- */

static void conn_settle(mio_reactor *r, void *arg);
static void conn_ctx_destroy(mio_reactor *r, void *arg);

static const struct mio__reactor_ext conn_ext_ops = {conn_settle, conn_ctx_destroy};

static struct conn_ctx *conn_ctx(mio_reactor *r)
{
    struct conn_ctx *ctx = mio__reactor_ext_ctx(r);

    if (ctx != NULL)
        return ctx;
    ctx = mio__calloc(mio__reactor_arena(r), 1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    if (mio__reactor_attach(r, &conn_ext_ops, ctx) < 0) {
        mio__free(mio__reactor_arena(r), ctx);
        return NULL;
    }
    return ctx;
}

/* Lists a torn-down conn for conn_settle and asks the reactor to settle. */
static void conn_defer(mio_conn *c)
{
    struct conn_ctx *ctx = mio__reactor_ext_ctx(c->r); /* set: the conn was opened */

    if (ctx->ndying < CONN_DYING_MAX) {
        ctx->dying[ctx->ndying++] = c;
        c->flags |= F_LISTED;
    } else {
        ctx->overflow = true;
    }
    mio__reactor_request_settle(c->r);
}

static void conn_finish_unlisted(void *harg, void *unused)
{
    mio_conn *c = harg;

    (void)unused;
    if ((c->flags & (F_DEAD | F_LISTED)) == F_DEAD)
        conn_finish(c);
}

/* The reactor's settle point: runs the pending on_close calls, listed ones in teardown order. An
 * on_close may close other conns (handled in this same call) or open new ones. */
static void conn_settle(mio_reactor *r, void *arg)
{
    struct conn_ctx *ctx = arg;

    for (;;) {
        if (ctx->ndying > 0) {
            mio_conn *c = ctx->dying[0];

            memmove(&ctx->dying[0], &ctx->dying[1], --ctx->ndying * sizeof(ctx->dying[0]));
            conn_finish(c);
        } else if (ctx->overflow) {
            ctx->overflow = false;
            (void)mio__reactor_each(r, conn_on_io, conn_finish_unlisted, NULL);
        } else {
            return;
        }
    }
}

static void conn_cancel_one(void *harg, void *unused)
{
    (void)unused;
    conn_teardown(harg, -ECANCELED); /* a no-op for a conn already dying */
}

/* mio_reactor_free: every conn still open closes with -ECANCELED (each on_close once, fds
 * closed), dying ones with their own reason. on_close may open conns again; a few rounds catch
 * those, and what an on_close keeps reopening past that is closed without its callback. */
static void conn_ctx_destroy(mio_reactor *r, void *arg)
{
    struct conn_ctx *ctx = arg;

    for (int round = 0; round < 8; round++) {
        (void)mio__reactor_each(r, conn_on_io, conn_cancel_one, NULL);
        mio__reactor_settle(r);
        if (mio__reactor_conn_count(r) == 0 && ctx->ndying == 0)
            break;
    }
    mio__free(mio__reactor_arena(r), ctx);
}

/* ---- public API ---- */

int mio_conn_open(mio_reactor *r, int fd, const mio_conn_ops *ops, void *arg, mio_conn **out)
{
    mio__arena arena;
    mio_conn *c;
    mio_token token;
    int fl, err;

    if (r == NULL || fd < 0 || ops == NULL || ops->on_read == NULL)
        return -EINVAL;
    /* Checked for every fd, even one fresh from accept4(SOCK_NONBLOCK): an accept callback may
     * have closed that fd and passed another that got the same number. */
    fl = fcntl(fd, F_GETFL);
    if (fl == -1)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
        return -errno;
    if (conn_ctx(r) == NULL)
        return -ENOMEM;
    arena = mio__reactor_arena(r);
    c = mio__alloc(arena, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->r = r;
    c->arg = arg;
    c->x = NULL;
    c->flags = 0;
    c->interest = MIO_READABLE;
    /* "ops is copied": conns with equal ops share one copy kept by the reactor. */
    err = mio__reactor_intern_index(r, ops, sizeof(*ops), &c->ops);
    if (err == -ENOMEM)
        goto err_free;
    if (err < 0) {
        struct conn_ext *x = conn_ext(c);

        if (x == NULL) {
            err = -ENOMEM;
            goto err_free;
        }
        x->own_ops = mio__alloc(arena, sizeof(*x->own_ops));
        if (x->own_ops == NULL) {
            err = -ENOMEM;
            goto err_ops;
        }
        *x->own_ops = *ops;
        c->ops = OPS_OWN;
    }
    err = mio_reactor_add(r, fd, MIO_READABLE, conn_on_io, c, &token);
    if (err < 0)
        goto err_ops;
    c->slot = (uint32_t)token;
    mio__reactor_conn_count_add(r, 1);
    if (out != NULL)
        *out = c;
    return 0;

err_ops:
    if (c->x != NULL)
        mio__free(arena, c->x->own_ops);
    mio__free(arena, c->x);
err_free:
    mio__free(arena, c);
    return err;
}

static int conn_enqueue(mio_conn *c, const struct iovec *iov, int iovcnt, size_t sent);

int mio_conn_writev(mio_conn *c, const struct iovec *iov, int iovcnt)
{
    size_t total = 0, sent = 0;
    bool was_empty;

    if (c == NULL || iovcnt < 0 || (iovcnt > 0 && iov == NULL))
        return -EINVAL;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SIZE_MAX - total)
            return -EINVAL; /* the lengths overflow size_t: no such buffer exists */
        total += iov[i].iov_len;
    }
    if (c->flags & (F_DEAD | F_CLOSING | F_SHUT_REQ))
        return -EPIPE;
    if (total == 0)
        return 0;
    was_empty = !conn_has_queue(c);
    if (was_empty) {
        ssize_t n;

        /* One buffer (every mio_conn_write): send(), not sendmsg(): the kernel then skips
         * copying and checking a msghdr and an iovec array, measurably cheaper per message. */
        do
            n = iovcnt == 1 ? mio_send(conn_fd(c), iov[0].iov_base, iov[0].iov_len)
                            : mio_sendv(conn_fd(c), iov, iovcnt < IOV_MAX ? iovcnt : IOV_MAX);
        while (n == -EINTR);
        if (n < 0 && n != -EAGAIN) {
            conn_teardown(c, (int)n);
            return (int)n;
        }
        sent = n > 0 ? (size_t)n : 0;
        if (sent == total)
            return 0;
    }
    return conn_enqueue(c, iov, iovcnt, sent);
}

/* Queues iov minus its first `sent` bytes (the socket took those) and asks for WRITABLE. */
static int conn_enqueue(mio_conn *c, const struct iovec *iov, int iovcnt, size_t sent)
{
    struct conn_ext *x = conn_ext(c);
    int err;

    err = x != NULL ? mio__wq_append(&x->wq, mio__reactor_arena(c->r), iov, iovcnt, sent)
                    : -ENOMEM;
    if (err < 0) {
        conn_teardown(c, err);
        return err;
    }
    if (!(c->flags & F_PAUSED) && x->wq.bytes > x->high)
        c->flags |= F_PAUSED;
    return conn_sync_interest(c);
}

int mio_conn_write(mio_conn *c, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};

    if (len > 0 && data == NULL)
        return -EINVAL;
    /* One iovec: mio_conn_writev sends it with send(), the echo fast path. */
    return mio_conn_writev(c, &iov, 1);
}

int mio_conn_shutdown(mio_conn *c)
{
    if (c == NULL)
        return -EINVAL;
    if (c->flags & (F_DEAD | F_CLOSING))
        return -EPIPE;
    if (c->flags & F_SHUT_REQ)
        return 0;
    c->flags |= F_SHUT_REQ;
    if (!conn_has_queue(c))
        return conn_flushed(c);
    return 0;
}

void mio_conn_close(mio_conn *c)
{
    if (c == NULL || (c->flags & (F_DEAD | F_CLOSING)))
        return;
    c->flags |= F_CLOSING;
    if (!conn_has_queue(c))
        conn_teardown(c, 0);
    else
        (void)conn_sync_interest(c);
}

size_t mio_conn_pending(const mio_conn *c)
{
    return c != NULL && c->x != NULL ? c->x->wq.bytes : 0;
}

int mio_conn_set_watermarks(mio_conn *c, size_t low, size_t high)
{
    struct conn_ext *x;

    if (c == NULL || low > high)
        return -EINVAL;
    if (c->flags & (F_DEAD | F_CLOSING))
        return -EPIPE;
    x = conn_ext(c);
    if (x == NULL)
        return -ENOMEM;
    x->low = low;
    x->high = high;
    if (!(c->flags & F_PAUSED) && x->wq.bytes > high)
        c->flags |= F_PAUSED;
    else if ((c->flags & F_PAUSED) && x->wq.bytes <= low)
        c->flags &= (uint16_t)~F_PAUSED; /* no on_drain: the caller moved the marks itself */
    return conn_sync_interest(c);
}

int mio_conn_set_idle_timeout(mio_conn *c, uint64_t ms)
{
    struct conn_ext *x;

    if (c == NULL)
        return -EINVAL;
    if (c->flags & (F_DEAD | F_CLOSING))
        return -EPIPE;
    if (c->flags & F_TIMER) {
        (void)mio_reactor_timer_cancel(c->r, c->x->timer);
        c->flags &= (uint16_t)~F_TIMER;
    }
    if (ms == 0) {
        if (c->x != NULL)
            c->x->idle_ms = 0;
        return 0;
    }
    x = conn_ext(c);
    if (x == NULL)
        return -ENOMEM;
    x->idle_ms = ms;
    x->last_active = mio_reactor_now_ms(c->r);
    return conn_arm_timer(c, ms);
}

int mio_conn_fd(const mio_conn *c)
{
    if (c == NULL)
        return -EINVAL;
    return conn_fd(c);
}

mio_reactor *mio_conn_reactor(const mio_conn *c)
{
    return c != NULL ? c->r : NULL;
}

/* Pool stop: asks every conn to close after flushing; at or past the deadline the ones still
 * flushing close with -ECANCELED. The conns are found through the reactor's handler table (every
 * live conn holds a slot whose callback is conn_on_io). on_close callbacks may close or open other
 * conns during the walk: the walk re-reads each slot, so a conn freed meanwhile is skipped and one
 * opened meanwhile may be missed, which the caller's next sweep catches (it repeats until 0). */
struct close_all_ctx {
    bool late;
};

static void conn_close_one(void *harg, void *ctx)
{
    mio_conn *c = harg;
    const struct close_all_ctx *cc = ctx;

    /* Either call may free c: it is not touched afterwards. */
    if (cc->late && conn_has_queue(c))
        conn_teardown(c, -ECANCELED);
    else
        mio_conn_close(c);
}

int mio__conn_close_all(mio_reactor *r, uint64_t deadline_ms)
{
    struct close_all_ctx cc = {.late = mio_reactor_now_ms(r) >= deadline_ms};
    uint64_t left;

    if (mio__reactor_conn_count(r) == 0)
        return 0;
    (void)mio__reactor_each(r, conn_on_io, conn_close_one, &cc);
    left = mio__reactor_conn_count(r);
    return left > INT_MAX ? INT_MAX : (int)left;
}
