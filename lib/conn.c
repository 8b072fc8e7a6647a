/* mio_conn's life cycle and settings: open, close, shutdown, teardown and on_close, timers
 * (idle timeout, deadline), water marks and input limit, and the conn layer's per-reactor state.
 * The read and write paths live in conn_io.c. Reactor's thread only.
 *
 * Lifetime: teardown happens once (MIO__CF_DEAD): reading and writing stop and the conn joins the
 * reactor's list of dying conns. on_close runs when the reactor settles, at the first safe point
 * after the callback that caused it (see mio__reactor_ext in reactor_int.h), never inside a call
 * the user made; then the token is released, the fd closed and the memory freed. So a mio_conn *
 * stays valid until its on_close returns, whichever context closed it; events that reach a dying
 * conn meanwhile are ignored. The same settle point sends the writes that callbacks staged (on
 * io_uring: the iteration's wait does, as sends on the ring). */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>
#include <mio/conn.h>
#include <mio/net.h>
#include "internal/conn_int.h"
#include "internal/conn_pool.h"
#include "internal/pr.h"

/* ------------------------------------------------------------------ ext, release, teardown */

struct mio__conn_ext *mio__conn_ext(mio_conn *c)
{
    struct mio__conn_ext *x = c->x;

    if (x != NULL)
        return x;
    x = mio__alloc(mio__reactor_arena(c->r), sizeof(*x));
    if (x == NULL)
        return NULL;
    mio__wq_init(&x->wq);
    x->low = MIO__CONN_LOW_DEFAULT;
    x->high = MIO__CONN_HIGH_DEFAULT;
    x->last_active = mio_reactor_now_ms(c->r);
    x->idle_ms = 0;
    x->timer = 0;
    x->deadline_timer = 0;
    x->own_ops = NULL;
    x->on_connect = NULL;
    x->in = NULL;
    x->in_len = x->in_cap = 0;
    x->in_limit = MIO__CONN_INPUT_LIMIT_DEFAULT;
    c->x = x;
    return x;
}

void mio__conn_ext_trim(mio_conn *c)
{
    struct mio__conn_ext *x = c->x;

    if (x == NULL || (c->flags & (MIO__CF_TIMER | MIO__CF_DEADLINE)) || x->idle_ms != 0 ||
        !mio__wq_is_empty(&x->wq) || x->low != MIO__CONN_LOW_DEFAULT ||
        x->high != MIO__CONN_HIGH_DEFAULT || x->own_ops != NULL || x->on_connect != NULL ||
        x->in != NULL || x->in_limit != MIO__CONN_INPUT_LIMIT_DEFAULT)
        return;
    mio__free(mio__reactor_arena(c->r), x);
    c->x = NULL;
}

static void conn_release(mio_conn *c)
{
    mio__arena arena = mio__reactor_arena(c->r);

    if (c->x != NULL) {
        mio__free(arena, c->x->own_ops);
        mio__free(arena, c->x->in);
    }
    mio__free(arena, c->x);
    mio__free(arena, c);
}

static void conn_cancel_timers(mio_conn *c)
{
    if (c->flags & MIO__CF_TIMER)
        (void)mio_reactor_timer_cancel(c->r, c->x->timer);
    if (c->flags & MIO__CF_DEADLINE)
        (void)mio_reactor_timer_cancel(c->r, c->x->deadline_timer);
    c->flags &= (uint16_t)~(MIO__CF_TIMER | MIO__CF_DEADLINE);
}

/* Lists a torn-down conn for conn_settle and asks the reactor to settle. */
static void conn_defer(mio_conn *c)
{
    struct mio__conn_ctx *ctx = mio__conn_ctx(c);

    if (ctx->ndying < MIO__CONN_DYING_MAX) {
        ctx->dying[ctx->ndying++] = c;
        c->flags |= MIO__CF_LISTED;
    } else {
        ctx->overflow = true;
    }
    mio__reactor_request_settle(c->r);
}

/* Tears the conn down exactly once: cancels its timers, drops what it holds (queue, stage, input
 * tail) and lists it for conn_finish, which runs on_close(reason) from the reactor's settle point.
 * Only the errno is kept (one byte): every errno fits. */
void mio__conn_teardown(mio_conn *c, int reason)
{
    mio_reactor *r = c->r;

    if (c->flags & MIO__CF_DEAD)
        return;
    c->flags |= MIO__CF_DEAD;
    conn_cancel_timers(c);
    mio__pr_sub_64(&mio__conn_ctx(c)->count, 1);
    mio__conn_stage_drop(c);
    if (c->x != NULL) {
        mio__wq_clear(&c->x->wq, mio__reactor_arena(r));
        mio__free(mio__reactor_arena(r), c->x->in);
        c->x->in = NULL;
        c->x->in_len = c->x->in_cap = 0;
    }
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

    if (mio__conn_ops(c)->on_close != NULL)
        mio__conn_ops(c)->on_close(c, -(int)c->dead_errno, c->arg);
    if (mio__conn_ctx(c)->ring != NULL)
        mio__conn_ring_stop(c); /* the receive holds the socket open until it is cancelled */
    fd = mio__conn_fd(c);
    (void)mio__reactor_forget(c->r, mio__conn_token(c));
    (void)close(fd);
    conn_release(c);
}

/* Brings the registered interest in line with the state. READABLE while reading is allowed and
 * the peer has not finished; WRITABLE while something is queued. A conn that wants nothing (EOF
 * seen, queue empty) keeps READABLE: errors and hang-ups are reported whatever the interest. */
int mio__conn_sync_interest(mio_conn *c)
{
    bool ring = mio__conn_ctx(c)->ring != NULL;
    bool reading = !(c->flags & (MIO__CF_CLOSING | MIO__CF_PAUSED | MIO__CF_EOF |
                                 MIO__CF_CONNECTING | MIO__CF_READ_OFF));
    mio_interest want = 0;
    int err;

    if (c->flags & MIO__CF_DEAD)
        return -EPIPE;
    if (reading && !ring)
        want |= MIO_READABLE;
    if (mio__conn_has_wq(c))
        want |= MIO_WRITABLE;
    /* Wanting nothing: errors and hang-ups come whatever the interest. A paused reader parks on
     * PRIORITY (no edge for ordinary data), so that resuming is a real change that re-arms the
     * READABLE edge for bytes that arrived meanwhile. On the io_uring backend the receive reads,
     * so epoll never watches READABLE, and a conn with nothing queued is parked: its socket's
     * wake-ups (a PRIORITY registration sees every incoming segment) stay out of the epoll set. */
    if (want == 0 && !ring)
        want = (c->flags & MIO__CF_CONNECTING) ? MIO_WRITABLE
               : (c->flags & MIO__CF_READ_OFF) ? MIO_PRIORITY
                                                : MIO_READABLE;
    else if (want == 0 && (c->flags & MIO__CF_CONNECTING))
        want = MIO_WRITABLE;
    else if (want == 0 && (c->flags & MIO__CF_READ_OFF))
        want = MIO_PRIORITY; /* no receive armed: errors and hang-ups come from epoll */
    /* want 0 (io_uring backend): parked, or still out of the epoll set; the receive reports
     * EOF and errors. */
    if (want != c->interest && !(want == 0 && c->interest == MIO__CONN_UNWATCHED)) {
        if (c->interest == MIO__CONN_UNWATCHED)
            err = mio__reactor_watch(c->r, mio__conn_token(c), want);
        else
            err = want != 0 ? mio_reactor_modify(c->r, mio__conn_token(c), want)
                            : mio__reactor_park(c->r, mio__conn_token(c));
        if (err < 0)
            goto fail;
        c->interest = want;
    }
    if (ring && (err = mio__conn_ring_sync(c, reading)) < 0)
        goto fail;
    return 0;
fail:
    mio__conn_teardown(c, err);
    return err;
}

int mio__conn_flushed(mio_conn *c)
{
    if (c->flags & MIO__CF_CONNECTING)
        return 0; /* a shutdown waits for the connection (mio__conn_connected comes back) */
    if (c->flags & MIO__CF_CLOSING) {
        mio__conn_teardown(c, 0);
        return -EPIPE;
    }
    if ((c->flags & MIO__CF_SHUT_REQ) && !(c->flags & MIO__CF_SHUT_DONE)) {
        int err = mio_socket_shutdown(mio__conn_fd(c), SHUT_WR);

        c->flags |= MIO__CF_SHUT_DONE;
        if (err < 0 && err != -ENOTCONN) {
            mio__conn_teardown(c, err);
            return err;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ the reactor extension */

static void conn_finish_unlisted(void *harg, void *unused)
{
    mio_conn *c = harg;

    (void)unused;
    if ((c->flags & (MIO__CF_DEAD | MIO__CF_LISTED)) == MIO__CF_DEAD)
        conn_finish(c);
}

/* The reactor's settle point: sends what callbacks staged, then runs the pending on_close calls,
 * listed ones in teardown order. An on_close may write (staged, sent in this same call), close
 * other conns (finished in this same call) or open new ones. On io_uring the staged bytes wait
 * for the iteration's wait (the ring's sends) while the loop runs; outside it they go now. */
static void conn_settle(mio_reactor *r, void *arg)
{
    struct mio__conn_ctx *ctx = arg;

    for (;;) {
        if (ctx->nrecs > 0 && (ctx->ring == NULL || !mio__reactor_in_loop(r))) {
            mio__conn_stage_flush(ctx);
        } else if (ctx->ndying > 0) {
            mio_conn *c = ctx->dying[0];

            memmove(&ctx->dying[0], &ctx->dying[1], --ctx->ndying * sizeof(ctx->dying[0]));
            conn_finish(c);
        } else if (ctx->overflow) {
            ctx->overflow = false;
            (void)mio__reactor_each(r, mio__conn_on_io, conn_finish_unlisted, NULL);
        } else {
            return;
        }
    }
}

static void conn_cancel_one(void *harg, void *unused)
{
    (void)unused;
    mio__conn_teardown(harg, -ECANCELED); /* a no-op for a conn already dying */
}

/* mio_reactor_free: every conn still open closes with -ECANCELED (each on_close once, fds
 * closed), dying ones with their own reason. on_close may open conns again; a few rounds catch
 * those, and what an on_close keeps reopening past that is closed without its callback. */
static void conn_ctx_destroy(mio_reactor *r, void *arg)
{
    struct mio__conn_ctx *ctx = arg;

    if (ctx->nrecs > 0)
        mio__conn_stage_flush(ctx); /* io_uring: what the last iteration's callbacks wrote */
    for (int round = 0; round < 8; round++) {
        (void)mio__reactor_each(r, mio__conn_on_io, conn_cancel_one, NULL);
        mio__reactor_settle(r);
        if (mio__pr_load_64(&ctx->count) == 0 && ctx->ndying == 0)
            break;
    }
    mio__free(mio__reactor_arena(r), ctx->stage);
    mio__free(mio__reactor_arena(r), ctx->read_buf);
    mio__free(mio__reactor_arena(r), ctx);
}

static const struct mio__reactor_ext conn_ext_ops = {conn_settle, conn_ctx_destroy,
                                                     mio__conn_ring_complete,
                                                     mio__conn_ring_submit};

static struct mio__conn_ctx *conn_ctx_get(mio_reactor *r)
{
    struct mio__conn_ctx *ctx = mio__reactor_ext_ctx(r);

    if (ctx != NULL)
        return ctx;
    ctx = mio__calloc(mio__reactor_arena(r), 1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    /* With the context, so that no read or write meets a missing buffer (the stage's pages are
     * touched only as writes fill it). On the io_uring backend the ring's buffers are read into. */
    ctx->ring = mio__reactor_uring(r);
    if (ctx->ring == NULL)
        ctx->read_buf = mio__alloc(mio__reactor_arena(r), MIO__CONN_READ_BUF);
    ctx->stage = mio__alloc(mio__reactor_arena(r), MIO__STAGE_BYTES);
    if ((ctx->read_buf == NULL && ctx->ring == NULL) || ctx->stage == NULL ||
        mio__reactor_attach(r, &conn_ext_ops, ctx) < 0) {
        mio__free(mio__reactor_arena(r), ctx->read_buf);
        mio__free(mio__reactor_arena(r), ctx->stage);
        mio__free(mio__reactor_arena(r), ctx);
        return NULL;
    }
    return ctx;
}

int mio__conn_attach(mio_reactor *r)
{
    return conn_ctx_get(r) != NULL ? 0 : -ENOMEM;
}

uint64_t mio__conn_count(const mio_reactor *r)
{
    const struct mio__conn_ctx *ctx = mio__reactor_ext_ctx(r);

    return ctx != NULL ? mio__pr_load_64(&ctx->count) : 0;
}

/* The index of ops in the shared table (added when new). Returns 0, or -ENOSPC when the table is
 * full of other ops (the conn then keeps a copy of its own). Most opens repeat the last ops. */
static int conn_intern(struct mio__conn_ctx *ctx, const mio_conn_ops *ops, uint8_t *idx)
{
    unsigned i = ctx->last_interned;

    if (i < ctx->ninterned && memcmp(&ctx->interned[i], ops, sizeof(*ops)) == 0)
        goto found;
    for (i = 0; i < ctx->ninterned; i++)
        if (memcmp(&ctx->interned[i], ops, sizeof(*ops)) == 0)
            goto found;
    if (ctx->ninterned == MIO__CONN_INTERN_MAX)
        return -ENOSPC;
    i = ctx->ninterned++;
    ctx->interned[i] = *ops;
found:
    ctx->last_interned = i;
    *idx = (uint8_t)i;
    return 0;
}

/* ------------------------------------------------------------------ timers */

static int conn_arm_idle(mio_conn *c, uint64_t after_ms);

/* Outside the loop the reactor's cached clock may be as old as its last iteration: "ms from now"
 * must count from now. Inside callbacks the cached time is the iteration's, as for every timer. */
static void conn_fresh_clock(mio_conn *c)
{
    if (!mio__reactor_in_loop(c->r))
        mio__reactor_update_now(c->r);
}

static void conn_on_idle(mio_reactor *r, mio_timer_id id, void *arg)
{
    mio_conn *c = arg;
    uint64_t now = mio_reactor_now_ms(r), due;

    (void)id;
    c->flags &= (uint16_t)~MIO__CF_TIMER;
    if (c->x->idle_ms == 0)
        return;
    /* Reads only stamp last_active; the timer re-arms lazily for the time left. */
    due = c->x->last_active + c->x->idle_ms;
    if (now >= due)
        mio__conn_teardown(c, -ETIMEDOUT);
    else if (conn_arm_idle(c, due - now) < 0)
        mio__conn_teardown(c, -ENOMEM);
}

static int conn_arm_idle(mio_conn *c, uint64_t after_ms)
{
    int err = mio_reactor_timer_start(c->r, after_ms, 0, conn_on_idle, c, &c->x->timer);

    if (err < 0)
        return err;
    c->flags |= MIO__CF_TIMER;
    return 0;
}

static void conn_on_deadline(mio_reactor *r, mio_timer_id id, void *arg)
{
    mio_conn *c = arg;

    (void)r;
    (void)id;
    c->flags &= (uint16_t)~MIO__CF_DEADLINE;
    mio__conn_teardown(c, -ETIMEDOUT);
}

/* ------------------------------------------------------------------ public API */

int mio__conn_adopt(mio_reactor *r, int fd, const mio_conn_ops *ops, void *arg, uint16_t flags,
                    mio_conn **out)
{
    struct mio__conn_ctx *ctx = conn_ctx_get(r);
    bool ring = ctx != NULL && ctx->ring != NULL, watched = true;
    mio_interest interest = (flags & MIO__CF_CONNECTING) ? MIO_WRITABLE
                            : ring                          ? 0 /* added unwatched */
                                                            : MIO_READABLE;
    mio__arena arena = mio__reactor_arena(r);
    mio_conn *c;
    mio_token token;
    int err;

    if (ctx == NULL)
        return -ENOMEM;
    c = mio__alloc(arena, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->r = r;
    c->arg = arg;
    c->x = NULL;
    c->flags = flags;
    c->interest = interest;
    /* "ops is copied": conns with equal ops share one copy in the table. */
    if (conn_intern(ctx, ops, &c->ops) < 0) {
        struct mio__conn_ext *x = mio__conn_ext(c);

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
        c->ops = MIO__CONN_OPS_OWN;
    }
    err = interest != 0
              ? mio_reactor_add(r, fd, interest, mio__conn_on_io, c, &token)
              : mio__reactor_add_unwatched(r, fd, mio__conn_on_io, c, &token, &watched);
    if (err < 0)
        goto err_ops;
    if (!watched)
        c->interest = MIO__CONN_UNWATCHED;
    c->slot = (uint32_t)token;
    if (ctx->ring != NULL && !(flags & MIO__CF_CONNECTING)) {
        err = mio__conn_ring_sync(c, true); /* the first receive */
        if (err < 0) {
            (void)(watched ? mio_reactor_remove(r, token) : mio__reactor_forget(r, token));
            goto err_ops;
        }
    }
    mio__pr_add_64(&ctx->count, 1);
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

void mio__conn_unadopt(mio_conn *c)
{
    int fd = mio__conn_fd(c);

    conn_cancel_timers(c);
    mio__pr_sub_64(&mio__conn_ctx(c)->count, 1);
    if (mio__conn_ctx(c)->ring != NULL)
        mio__conn_ring_stop(c);
    (void)mio__reactor_forget(c->r, mio__conn_token(c));
    (void)close(fd);
    conn_release(c);
}

int mio_conn_open(mio_reactor *r, int fd, const mio_conn_ops *ops, void *arg, mio_conn **out)
{
    mio_conn *c;
    int err;

    if (r == NULL || fd < 0 || ops == NULL || ops->on_read == NULL)
        return -EINVAL;
    /* Checked for every fd, even one fresh from accept4(SOCK_NONBLOCK): an accept callback may
     * have closed that fd and passed another that got the same number. */
    err = mio_set_nonblocking(fd, true);
    if (err < 0)
        return err;
    err = mio__conn_adopt(r, fd, ops, arg, 0, &c);
    if (err == 0 && out != NULL)
        *out = c;
    return err;
}

int mio_conn_shutdown(mio_conn *c)
{
    if (c == NULL)
        return -EINVAL;
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        return -EPIPE;
    if (c->flags & MIO__CF_SHUT_REQ)
        return 0;
    c->flags |= MIO__CF_SHUT_REQ;
    if (!mio__conn_holds_output(c))
        return mio__conn_flushed(c);
    return 0;
}

void mio_conn_close(mio_conn *c)
{
    if (c == NULL || (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING)))
        return;
    c->flags |= MIO__CF_CLOSING;
    if (!mio__conn_holds_output(c))
        mio__conn_teardown(c, 0);
    else
        (void)mio__conn_sync_interest(c); /* staged bytes: the settle point sends, then closes */
}

size_t mio_conn_pending(const mio_conn *c)
{
    if (c == NULL)
        return 0;
    return (c->x != NULL ? c->x->wq.bytes : 0) + mio__conn_staged_bytes(c);
}

int mio_conn_set_watermarks(mio_conn *c, size_t low, size_t high)
{
    struct mio__conn_ext *x;

    if (c == NULL || low > high)
        return -EINVAL;
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        return -EPIPE;
    x = mio__conn_ext(c);
    if (x == NULL)
        return -ENOMEM;
    x->low = low;
    x->high = high;
    if (!(c->flags & MIO__CF_PAUSED) && x->wq.bytes > high)
        c->flags |= MIO__CF_PAUSED;
    else if ((c->flags & MIO__CF_PAUSED) && x->wq.bytes <= low)
        c->flags &= (uint16_t)~MIO__CF_PAUSED; /* no on_drain: the caller moved the marks itself */
    return mio__conn_sync_interest(c);
}

int mio_conn_set_idle_timeout(mio_conn *c, uint64_t ms)
{
    struct mio__conn_ext *x;

    if (c == NULL)
        return -EINVAL;
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        return -EPIPE;
    if (c->flags & MIO__CF_TIMER) {
        (void)mio_reactor_timer_cancel(c->r, c->x->timer);
        c->flags &= (uint16_t)~MIO__CF_TIMER;
    }
    if (ms == 0) {
        if (c->x != NULL)
            c->x->idle_ms = 0;
        return 0;
    }
    x = mio__conn_ext(c);
    if (x == NULL)
        return -ENOMEM;
    conn_fresh_clock(c);
    x->idle_ms = ms;
    x->last_active = mio_reactor_now_ms(c->r);
    return conn_arm_idle(c, ms);
}

int mio_conn_set_reading(mio_conn *c, bool on)
{
    if (c == NULL)
        return -EINVAL;
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        return -EPIPE;
    if (on)
        c->flags &= (uint16_t)~MIO__CF_READ_OFF;
    else
        c->flags |= MIO__CF_READ_OFF;
    /* Dropping READABLE stops the edges; adding it back re-arms them, so bytes that arrived
     * meanwhile are reported by the next wait. */
    return mio__conn_sync_interest(c);
}

void mio__conn_clear_deadline(mio_conn *c)
{
    if (c->flags & MIO__CF_DEADLINE) {
        (void)mio_reactor_timer_cancel(c->r, c->x->deadline_timer);
        c->flags &= (uint16_t)~MIO__CF_DEADLINE;
    }
}

int mio_conn_set_deadline(mio_conn *c, uint64_t ms)
{
    struct mio__conn_ext *x;
    int err;

    if (c == NULL)
        return -EINVAL;
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        return -EPIPE;
    mio__conn_clear_deadline(c);
    if (ms == 0)
        return 0;
    x = mio__conn_ext(c);
    if (x == NULL)
        return -ENOMEM;
    conn_fresh_clock(c);
    err = mio_reactor_timer_start(c->r, ms, 0, conn_on_deadline, c, &x->deadline_timer);
    if (err < 0)
        return err;
    c->flags |= MIO__CF_DEADLINE;
    return 0;
}

int mio_conn_set_input_limit(mio_conn *c, size_t bytes)
{
    struct mio__conn_ext *x;

    if (c == NULL || bytes < 2 || bytes > UINT32_MAX)
        return -EINVAL;
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        return -EPIPE;
    if (c->x == NULL && bytes == MIO__CONN_INPUT_LIMIT_DEFAULT)
        return 0;
    x = mio__conn_ext(c);
    if (x == NULL)
        return -ENOMEM;
    if (x->in_len >= bytes)
        return -EMSGSIZE; /* the tail kept now is already that long */
    /* The tail buffer is left as it is (on_read may be reading it right now): a buffer larger
     * than a lowered limit only means a read may go past the limit, and the tail it leaves is
     * checked against the limit all the same. */
    x->in_limit = (uint32_t)bytes;
    return 0;
}

size_t mio_conn_input_limit(const mio_conn *c)
{
    if (c == NULL)
        return 0;
    return mio__conn_in_limit(c);
}

int mio_conn_fd(const mio_conn *c)
{
    if (c == NULL)
        return -EINVAL;
    return mio__conn_fd(c);
}

mio_reactor *mio_conn_reactor(const mio_conn *c)
{
    return c != NULL ? c->r : NULL;
}

/* Pool stop: asks every conn to close after flushing; at or past the deadline the ones still
 * flushing close with -ECANCELED. The conns are found through the reactor's handler table (every
 * live conn holds a slot whose callback is mio__conn_on_io). The walk re-reads each slot, so a
 * conn opened meanwhile may be missed, which the caller's next sweep catches (it repeats until 0). */
struct close_all_ctx {
    bool late;
};

static void conn_close_one(void *harg, void *ctx)
{
    mio_conn *c = harg;
    const struct close_all_ctx *cc = ctx;

    if (cc->late && mio__conn_holds_output(c))
        mio__conn_teardown(c, -ECANCELED);
    else
        mio_conn_close(c);
}

int mio__conn_close_all(mio_reactor *r, uint64_t deadline_ms)
{
    struct close_all_ctx cc = {.late = mio_reactor_now_ms(r) >= deadline_ms};
    uint64_t left;

    struct mio__conn_ctx *ctx = mio__reactor_ext_ctx(r);

    if (mio__conn_count(r) == 0)
        return 0;
    if (ctx != NULL && ctx->nrecs > 0)
        mio__conn_stage_flush(ctx); /* io_uring: what the last iteration's callbacks wrote */
    (void)mio__reactor_each(r, mio__conn_on_io, conn_close_one, &cc);
    left = mio__conn_count(r);
    return left > INT_MAX ? INT_MAX : (int)left;
}
