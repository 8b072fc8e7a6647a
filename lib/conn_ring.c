/* mio_conn's receive path on the io_uring backend, and the ring's side of its sends (the stage's
 * records, conn_io.c). Reactor's thread only.
 *
 * A conn that wants to read has one receive armed on the reactor's ring, into the reactor's
 * provided buffers, so the read path makes no recv syscall, and the receive reports EOF and
 * errors. Its fd joins the reactor's epoll set only when it first needs readiness: WRITABLE while
 * output is queued, PRIORITY (errors and hang-ups) while the user has reading off; a conn that
 * never fills its socket costs no epoll_ctl and no epoll wake-up per segment. A
 * completion's bytes are delivered like a read (after the kept tail, contiguous), the buffer goes
 * back to the ring at once (the conn holds no read buffer of its own), and the receive is armed
 * again when it ended while the conn still reads. Where the kernel can limit a multishot receive,
 * the receive is multishot (mio__uring_recv): one arm serves many messages, without a poll arm
 * per message, and ends after a buffer's worth of bytes, so a conn takes at most two buffers per
 * arm and back-pressure (the high mark, mio_conn_set_reading) takes effect within two buffers
 * (32 KiB; within one 64 KiB read on epoll). Elsewhere it is single-shot: one buffer per arm. A
 * receive that found the socket drained re-arms with POLL_FIRST: the kernel waits for data
 * instead of trying at once.
 *
 * The receive's user_data is the conn's token (slot | generation << 32), so a completion that
 * arrives after the conn was finished (its slot released, maybe reused) finds no conn and only
 * gives its buffer back. -ENOBUFS (every buffer taken in this iteration) re-arms at once: the
 * buffers go back before the next wait submits it. -EAGAIN and -EINTR re-arm too, as the epoll
 * backend's recv() loop retries them: only other errors close the conn.
 *
 * Stopping reading (back-pressure, mio_conn_set_reading(c, false), close) cancels the receive.
 * Bytes that complete between the request and the cancel are held in the conn's input buffer
 * (HELD), not delivered, and reach on_read once reading is allowed again: a no-op on the ring
 * (user_data | KICK) brings the conn a turn in the loop for them, so they never wait for more
 * bytes. An EOF or error seen while not reading is not acted on: the receive armed at the resume
 * reports it again, and may complete before that no-op does, so an EOF first delivers what is
 * held (it came before the EOF). */
#include <errno.h>
#include <string.h>
#include "internal/conn_int.h"
#include "internal/conn_ring_result.h"
#include "internal/uring.h"

#define KICK (UINT64_C(1) << 62) /* above every token (generations are 24 bits) */

static int conn_arm(mio_conn *c, bool poll_first)
{
    int err = mio__uring_recv(mio__conn_ctx(c)->ring, mio__conn_fd(c),
                              (uint64_t)mio__conn_token(c), poll_first);

    if (err == 0)
        c->flags |= MIO__CF_RECV;
    return err;
}

static void conn_cancel(mio_conn *c)
{
    if ((c->flags & (MIO__CF_RECV | MIO__CF_RECV_CANCEL)) != MIO__CF_RECV)
        return;
    if (mio__uring_cancel(mio__conn_ctx(c)->ring, (uint64_t)mio__conn_token(c)) == 0)
        c->flags |= MIO__CF_RECV_CANCEL;
}

static int conn_ring_sync(mio_conn *c, bool reading, bool poll_first)
{
    int err = 0;

    if (!reading) {
        conn_cancel(c);
        return 0;
    }
    if (!(c->flags & MIO__CF_RECV))
        err = conn_arm(c, poll_first);
    /* else armed (or its cancel is on the way: the last completion re-arms) */
    if (err == 0 && (c->flags & MIO__CF_HELD))
        err = mio__uring_nop(mio__conn_ctx(c)->ring, (uint64_t)mio__conn_token(c) | KICK);
    return err;
}

int mio__conn_ring_sync(mio_conn *c, bool reading)
{
    return conn_ring_sync(c, reading, false);
}

void mio__conn_ring_stop(mio_conn *c)
{
    conn_cancel(c);
}

static bool conn_reading(const mio_conn *c)
{
    return !(c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING | MIO__CF_PAUSED | MIO__CF_EOF |
                         MIO__CF_CONNECTING | MIO__CF_READ_OFF));
}

/* Appends data to the conn's input buffer (growing it to fit). Returns 0 or -ENOMEM (the conn
 * is then torn down). */
static int conn_append(mio_conn *c, const char *data, size_t len)
{
    struct mio__conn_ext *x = mio__conn_ext(c);
    char *in;

    if (x == NULL || (size_t)x->in_len + len > UINT32_MAX)
        goto nomem;
    if (x->in_len + len > x->in_cap) {
        in = mio__realloc(mio__reactor_arena(c->r), x->in, x->in_len + len);
        if (in == NULL)
            goto nomem;
        x->in = in;
        x->in_cap = (uint32_t)(x->in_len + len);
    }
    memcpy(x->in + x->in_len, data, len);
    x->in_len += (uint32_t)len;
    return 0;
nomem:
    mio__conn_teardown(c, -ENOMEM);
    return -ENOMEM;
}

/* Bytes for the conn, in provided buffer bid: delivered after its kept tail, or held while it
 * does not read. Returns true when a write on_read made lent the buffer to the stage (conn_io.c,
 * conn_lend): the stage gives it back, not the caller. */
static bool conn_data(mio_conn *c, const char *data, size_t len, unsigned bid)
{
    struct mio__conn_ctx *ctx = mio__conn_ctx(c);
    struct mio__conn_ext *x = c->x;
    bool lent;

    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        return false; /* no on_read will come again */
    if (!conn_reading(c)) {
        if (conn_append(c, data, len) == 0)
            c->flags |= MIO__CF_HELD;
        return false;
    }
    if (x != NULL)
        x->last_active = mio_reactor_now_ms(c->r);
    if (x != NULL && x->in_len > 0) {
        if (conn_append(c, data, len) == 0) {
            c->flags &= (uint16_t)~MIO__CF_HELD;
            mio__conn_deliver(c, x->in, x->in_len, true);
        }
        return false;
    }
    ctx->lend_base = data;
    ctx->lend_len = len;
    ctx->lend_taken = false;
    mio__conn_deliver(c, data, len, false);
    ctx->lend_base = NULL;
    lent = ctx->lend_taken;
    if (lent)
        ctx->lent[ctx->nlent++] = (uint16_t)bid;
    ctx->lend_taken = false;
    return lent;
}

/* The held bytes, now that reading is allowed again. */
static void conn_kick(mio_conn *c)
{
    if (!(c->flags & MIO__CF_HELD) || !conn_reading(c))
        return;
    c->flags &= (uint16_t)~MIO__CF_HELD;
    if (c->x->last_active < mio_reactor_now_ms(c->r))
        c->x->last_active = mio_reactor_now_ms(c->r);
    mio__conn_deliver(c, c->x->in, c->x->in_len, true);
}

static void conn_eof(mio_conn *c)
{
    c->flags |= MIO__CF_EOF;
    mio__conn_drop_tail(c); /* an incomplete last message: the peer will not finish it */
    c->flags &= (uint16_t)~MIO__CF_HELD;
    if (c->x != NULL)
        c->x->last_active = mio_reactor_now_ms(c->r);
    mio__conn_deliver(c, "", 0, false);
    if (!(c->flags & MIO__CF_DEAD))
        (void)mio__conn_sync_interest(c);
}

unsigned mio__conn_ring_submit(mio_reactor *r, void *ctx)
{
    (void)r;
    return mio__conn_stage_submit(ctx);
}

/* A receive result that only means "receive again", as a recv() of the epoll backend retries
 * -EINTR and takes -EAGAIN for "nothing yet": -ENOBUFS (every provided buffer was taken), the
 * cancel the conn asked for, and the same transient errors a socket call gives. */
static bool recv_retry(int res)
{
    return res == -ENOBUFS || res == -ECANCELED || res == -EAGAIN || res == -EINTR;
}

/* The receive found the socket drained (a single-shot one came back short, or said there was
 * nothing): the next one waits for data instead of trying at once. A multishot receive that
 * ends with bytes ended at its limit, with the socket maybe still full. */
static bool recv_drained(const struct mio__uring *ring, int res)
{
    if (res > 0 && mio__uring_recv_multishot(ring))
        return false;
    return (res >= 0 && res < (int)MIO__URING_BUF_SIZE) || res == -EAGAIN;
}

/* A send's completion (urgent: the reap's first pass) or a receive's. */
void mio__conn_ring_complete(mio_reactor *r, void *ctx, uint64_t ud, int res, unsigned flags,
                             unsigned bid)
{
    struct mio__uring *ring = ((struct mio__conn_ctx *)ctx)->ring;
    mio_conn *c;

    if (ud == MIO__UD_SENDS_DONE) {
        mio__conn_stage_sends_done(ctx);
        return;
    }
    if (ud & MIO__UD_URGENT) {
        mio__conn_stage_sent(ctx, (unsigned)(ud & ~MIO__UD_URGENT), res);
        return;
    }
    c = mio__reactor_lookup(r, (mio_token)(ud & ~KICK), mio__conn_on_io);
    if (ud & KICK) {
        if (c != NULL)
            conn_kick(c);
        return;
    }
    if (c == NULL) {
        if (flags & MIO__CQE_BUFFER)
            mio__uring_buf_put(ring, bid); /* the conn is gone: only the buffer is left */
        return;
    }
    res = mio__conn_ring_result(MIO__RING_RECV, c, res);
    if (!(flags & MIO__CQE_MORE))
        c->flags &= (uint16_t)~(MIO__CF_RECV | MIO__CF_RECV_CANCEL);
    if (flags & MIO__CQE_BUFFER) {
        if (res <= 0 || !conn_data(c, mio__uring_buf(ring, bid), (size_t)res, bid))
            mio__uring_buf_put(ring, bid); /* whatever the result says, unless lent */
    } else if (res == 0 && conn_reading(c)) {
        conn_kick(c); /* bytes held while reading was off came before the EOF */
        if (conn_reading(c))
            conn_eof(c);
    }
    if (res < 0 && !recv_retry(res) && conn_reading(c))
        mio__conn_teardown(c, res);
    /* The receive ended: armed again if the conn still reads (after a retry result too). */
    if (!(flags & MIO__CQE_MORE) && !(c->flags & MIO__CF_DEAD) &&
        conn_ring_sync(c, conn_reading(c), recv_drained(ring, res)) < 0)
        mio__conn_teardown(c, -EBUSY); /* the ring's queue stayed full */
}
