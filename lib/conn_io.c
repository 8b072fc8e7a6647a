/* mio_conn's data paths. Reactor's thread only.
 *
 * Reading: edge-triggered; a conn that keeps no input reads into the reactor's shared 64 KiB
 * buffer, and a short read means the socket is drained (no extra -EAGAIN read) unless the event
 * said read-closed, in which case we read on until 0 so the FIN is never lost. A callback that
 * consumes only part of what it got (mio_conn_consume) leaves a tail that the conn keeps in a
 * buffer of its own; the next reads go straight after that tail, so the tail and the new bytes
 * reach on_read as one span. The buffer is freed as soon as the tail is consumed.
 * Writing: inside a reactor callback a small write is copied to the reactor's stage and the
 * conn's staged bytes go out in one send/sendmsg when the callback returns (the settle point; on
 * io_uring, as one send on the ring submitted by the iteration's wait, with every other conn's;
 * there a write of bytes on_read was given points into their receive buffer instead, conn_lend);
 * outside callbacks, and for large writes, the bytes go to the socket at once. Whatever the socket
 * does not take is copied into the write queue (arena chunks), flushed with writev when WRITABLE
 * fires. WRITABLE interest is held only while something is queued. Above the high water mark
 * reading stops (READABLE interest dropped), at the low mark it resumes (re-adding READABLE
 * re-arms the edge for data that arrived meanwhile) and on_drain runs. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <mio/net.h>
#include "internal/conn_int.h"
#include "internal/conn_ring_result.h"
#include "internal/uring.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define IN_GROW (16u * 1024u) /* a kept tail's buffer grows by this much at least */

static void conn_flush_queue(mio_conn *c);

/* ------------------------------------------------------------------ reading */

void mio__conn_drop_tail(mio_conn *c)
{
    struct mio__conn_ext *x = c->x;

    if (x == NULL || x->in == NULL)
        return;
    mio__free(mio__reactor_arena(c->r), x->in);
    x->in = NULL;
    x->in_len = x->in_cap = 0;
}

/* Keeps the last `keep` bytes of the len just delivered from data. from_tail: data is the conn's
 * own tail buffer (so the bytes are moved to its front, not copied to a new one). */
static void conn_keep(mio_conn *c, const char *data, size_t len, size_t keep, bool from_tail)
{
    struct mio__conn_ext *x = c->x;
    uint32_t limit = mio__conn_in_limit(c);
    size_t cap;

    if (keep == 0) {
        mio__conn_drop_tail(c);
        return;
    }
    /* An incomplete message of `limit` bytes or more is longer than the limit. */
    if (keep >= limit) {
        mio__conn_teardown(c, -EMSGSIZE);
        return;
    }
    if (from_tail) {
        memmove(x->in, x->in + (len - keep), keep);
        x->in_len = (uint32_t)keep;
        return;
    }
    x = mio__conn_ext(c);
    cap = keep + IN_GROW < limit ? keep + IN_GROW : limit;
    if (x == NULL || (x->in = mio__alloc(mio__reactor_arena(c->r), cap)) == NULL) {
        mio__conn_teardown(c, -ENOMEM);
        return;
    }
    memcpy(x->in, data + (len - keep), keep);
    x->in_len = (uint32_t)keep;
    x->in_cap = (uint32_t)cap;
}

void mio__conn_deliver(mio_conn *c, const char *data, size_t len, bool from_tail)
{
    struct mio__conn_ctx *ctx = mio__conn_ctx(c);
    size_t keep;

    ctx->reading = c;
    ctx->read_len = len;
    ctx->keep = 0;
    mio__conn_ops(c)->on_read(c, data, len, c->arg);
    keep = ctx->keep;
    ctx->reading = NULL;
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING))
        mio__conn_drop_tail(c); /* no on_read will come again */
    else if (len > 0)
        conn_keep(c, data, len, keep, from_tail);
}

/* Makes room after the kept tail. Returns 0 or -ENOMEM (the conn is then torn down). */
static int conn_tail_room(mio_conn *c)
{
    struct mio__conn_ext *x = c->x;
    size_t cap;
    char *in;

    if (x->in_len < x->in_cap)
        return 0;
    cap = (size_t)x->in_cap * 2u > x->in_len + IN_GROW ? (size_t)x->in_cap * 2u
                                                        : x->in_len + IN_GROW;
    if (cap > x->in_limit)
        cap = x->in_limit; /* > in_len: a kept tail stays below the limit */
    in = mio__realloc(mio__reactor_arena(c->r), x->in, cap);
    if (in == NULL) {
        mio__conn_teardown(c, -ENOMEM);
        return -ENOMEM;
    }
    x->in = in;
    x->in_cap = (uint32_t)cap;
    return 0;
}

/* Reads while data comes. `rdhup`: the event carried read-closed, so a short read is not proof of
 * a drained socket: read on until 0 (EOF) or -EAGAIN. */
static void conn_read(mio_conn *c, bool rdhup)
{
    const struct mio__conn_ctx *ctx = mio__conn_ctx(c);
    /* Stays valid while the loop runs: a dying conn keeps its slot until on_close. */
    int fd = mio__conn_fd(c);

    while (!(c->flags &
             (MIO__CF_DEAD | MIO__CF_CLOSING | MIO__CF_PAUSED | MIO__CF_EOF | MIO__CF_READ_OFF))) {
        struct mio__conn_ext *x = c->x;
        bool tail = x != NULL && x->in_len > 0;
        char *buf = ctx->read_buf;
        size_t cap = MIO__CONN_READ_BUF;
        ssize_t n;

        if (tail) {
            if (conn_tail_room(c) < 0)
                return;
            buf = x->in + x->in_len;
            cap = x->in_cap - x->in_len;
        }
        n = mio_recv(fd, buf, cap);
        if (n > 0) {
            if (x != NULL)
                x->last_active = mio_reactor_now_ms(c->r);
            if (tail) {
                x->in_len += (uint32_t)n;
                mio__conn_deliver(c, x->in, x->in_len, true);
            } else {
                mio__conn_deliver(c, buf, (size_t)n, false);
            }
            if ((size_t)n < cap && !rdhup)
                break;
        } else if (n == 0) {
            c->flags |= MIO__CF_EOF;
            mio__conn_drop_tail(c); /* an incomplete last message: the peer will not finish it */
            if (x != NULL)
                x->last_active = mio_reactor_now_ms(c->r);
            mio__conn_deliver(c, ctx->read_buf, 0, false);
            if (!(c->flags & MIO__CF_DEAD))
                (void)mio__conn_sync_interest(c);
            break;
        } else if (n == -EINTR) {
            continue;
        } else if (n == -EAGAIN) {
            break;
        } else {
            mio__conn_teardown(c, (int)n);
            break;
        }
    }
}

/* An error or hang-up counts as both "writable" (the flush finds out) and "readable" (the read
 * finds out); read-closed means a short read is no proof of a drained socket. */
void mio__conn_on_io(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    mio_conn *c = arg;
    bool err = mio_event_is_error(ev), rdhup = mio_event_is_read_closed(ev);

    (void)r;
    (void)token;
    if (c->flags & MIO__CF_DEAD)
        return; /* dying: on_close is pending, nothing more to do */
    if (c->flags & MIO__CF_CONNECTING) {
        if (err || mio_event_is_writable(ev) || mio_event_is_write_closed(ev))
            mio__conn_connected(c, mio_event_is_writable(ev) && !err);
        return;
    }
    if (err) {
        int so_error = mio_socket_take_error(mio__conn_fd(c));

        if (so_error < 0) {
            mio__conn_teardown(c, so_error);
            return;
        }
    }
    if ((err || mio_event_is_writable(ev) || mio_event_is_write_closed(ev)) &&
        mio__conn_has_wq(c))
        conn_flush_queue(c);
    /* On the io_uring backend the receive on the ring reads (conn_ring.c), never the event. */
    if (!(c->flags & MIO__CF_DEAD) && (err || rdhup || mio_event_is_readable(ev)) &&
        mio__conn_ctx(c)->ring == NULL)
        conn_read(c, rdhup);
}

int mio_conn_consume(mio_conn *c, size_t n)
{
    struct mio__conn_ctx *ctx;
    uint32_t limit;

    if (c == NULL)
        return -EINVAL;
    ctx = mio__conn_ctx(c);
    if (ctx->reading != c || n > ctx->read_len)
        return -EINVAL;
    ctx->keep = ctx->read_len - n;
    limit = mio__conn_in_limit(c);
    return ctx->keep >= limit ? -EMSGSIZE : 0;
}

/* ------------------------------------------------------------------ writing */

/* Reading pauses once the held output passes the high mark. */
static void conn_check_high(mio_conn *c)
{
    struct mio__conn_ext *x = c->x;

    if (x != NULL && !(c->flags & MIO__CF_PAUSED) && x->wq.bytes > x->high)
        c->flags |= MIO__CF_PAUSED;
}

/* Queues iov minus its first `skip` bytes. Returns 0 or -ENOMEM (the conn is then torn down). */
static int conn_enqueue(mio_conn *c, const struct iovec *iov, int iovcnt, size_t skip)
{
    struct mio__conn_ext *x = mio__conn_ext(c);
    int err = x != NULL ? mio__wq_append(&x->wq, mio__reactor_arena(c->r), iov, iovcnt, skip)
                        : -ENOMEM;

    if (err < 0)
        mio__conn_teardown(c, err);
    return err;
}

/* The bytes of a stage record: in the stage, or in the provided buffer lent to it. */
static char *stage_rec_data(const struct mio__conn_ctx *ctx, const struct mio__stage_rec *rec)
{
    if (rec->off & MIO__REC_LENT)
        return mio__uring_buf(ctx->ring, 0) + (rec->off & ~MIO__REC_LENT);
    return ctx->stage + rec->off;
}

/* Empties the stage once every record was sent, queued or dropped: the provided buffers lent to
 * records go back to the ring, except the one on_read is still being given (it goes back when
 * on_read returns, unless a later write takes it again). */
static void stage_reset(struct mio__conn_ctx *ctx)
{
    ctx->nrecs = 0;
    ctx->stage_len = 0;
    for (unsigned i = 0; i < ctx->nlent; i++)
        mio__uring_buf_put(ctx->ring, ctx->lent[i]);
    ctx->nlent = 0;
    ctx->lend_taken = false;
}

static void conn_unstage(mio_conn *c)
{
    struct mio__conn_ctx *ctx = mio__conn_ctx(c);

    for (unsigned i = 0; i < ctx->nrecs; i++)
        if (ctx->recs[i].c == c)
            ctx->recs[i].c = NULL;
    c->flags &= (uint16_t)~(MIO__CF_STAGED | MIO__CF_SPLIT);
}

void mio__conn_stage_drop(mio_conn *c)
{
    if (c->flags & MIO__CF_STAGED)
        conn_unstage(c);
}

size_t mio__conn_staged_bytes(const mio_conn *c)
{
    const struct mio__conn_ctx *ctx;
    size_t n = 0;

    if (!(c->flags & MIO__CF_STAGED))
        return 0;
    ctx = mio__conn_ctx(c);
    if (!(c->flags & MIO__CF_SPLIT) && ctx->recs[ctx->nrecs - 1].c == c)
        return ctx->recs[ctx->nrecs - 1].len; /* its only record is the last one */
    for (unsigned i = 0; i < ctx->nrecs; i++)
        if (ctx->recs[i].c == c)
            n += ctx->recs[i].len;
    return n;
}

/* After a send of iov[0..n) (total bytes) returned sent: tears the conn down on a failure, else
 * queues what the socket did not take, then rest[0..rest_cnt), in order, before the stage lets go
 * of the conn's staged bytes. Returns 0 or -errno (the conn then died). */
static int conn_after_send(mio_conn *c, const struct iovec *iov, int n, size_t total, ssize_t sent,
                           const struct iovec *rest, int rest_cnt)
{
    int err;

    if (sent < 0 && sent != -EAGAIN) {
        mio__conn_stage_drop(c);
        mio__conn_teardown(c, (int)sent);
        return (int)sent;
    }
    if (sent == (ssize_t)total && rest_cnt == 0) {
        mio__conn_stage_drop(c); /* all sent: the common case */
        return 0;
    }
    err = conn_enqueue(c, iov, n, sent > 0 ? (size_t)sent : 0);
    if (err == 0 && rest_cnt > 0)
        err = conn_enqueue(c, rest, rest_cnt, 0);
    mio__conn_stage_drop(c);
    if (err < 0)
        return err;
    conn_check_high(c);
    return mio__conn_sync_interest(c);
}

/* Sends the conn's staged bytes followed by extra[0..extra_cnt) in one send/sendmsg, and queues
 * whatever the socket did not take, in order. Returns 0 or the -errno of a failed send or of a
 * queue that could not grow (the conn is then torn down). */
static int conn_send_gather(mio_conn *c, const struct iovec *extra, int extra_cnt)
{
    struct iovec iov[IOV_MAX];
    int n = 0, ex = 0;
    size_t total = 0;
    ssize_t sent;

    if (c->flags & MIO__CF_STAGED) {
        const struct mio__conn_ctx *ctx = mio__conn_ctx(c);

        for (unsigned i = 0; i < ctx->nrecs; i++)
            if (ctx->recs[i].c == c) {
                iov[n++] = (struct iovec){stage_rec_data(ctx, &ctx->recs[i]), ctx->recs[i].len};
                total += ctx->recs[i].len;
            }
    }
    for (; ex < extra_cnt && n < IOV_MAX; ex++) {
        iov[n++] = extra[ex];
        total += extra[ex].iov_len;
    }
    /* One buffer (every plain mio_conn_write): send(), not sendmsg(): the kernel then skips
     * copying and checking a msghdr and an iovec array, measurably cheaper per message. */
    do
        sent = n == 1 ? mio_send(mio__conn_fd(c), iov[0].iov_base, iov[0].iov_len)
                      : mio_sendv(mio__conn_fd(c), iov, n);
    while (sent == -EINTR);
    return conn_after_send(c, iov, n, total, sent, ex < extra_cnt ? extra + ex : NULL,
                           extra_cnt - ex);
}

/* Sends the conn's staged bytes (one send/sendmsg). Returns 0 or -errno (the conn then died). */
static int conn_send_staged(mio_conn *c)
{
    int err = conn_send_gather(c, NULL, 0);

    if (err == 0 && !mio__conn_holds_output(c))
        err = mio__conn_flushed(c); /* a close or shutdown waited for these bytes */
    return err;
}

/* The send of a conn's only record returned sent. Returns 0 or -errno (the conn then died). */
static int conn_record_sent(mio_conn *c, struct mio__stage_rec *rec, ssize_t sent)
{
    struct iovec iov = {stage_rec_data(mio__conn_ctx(c), rec), rec->len};

    if (sent == (ssize_t)iov.iov_len) {
        rec->c = NULL;
        c->flags &= (uint16_t)~MIO__CF_STAGED;
        return mio__conn_flushed(c); /* a close or shutdown waited for these bytes */
    }
    return conn_after_send(c, &iov, 1, iov.iov_len, sent, NULL, 0); /* short, full or failed */
}

/* A conn whose staged bytes are one record (one write, or writes no other conn's came between:
 * nearly always) sends it without searching the records or building an iovec array. */
static int conn_send_record(mio_conn *c, struct mio__stage_rec *rec)
{
    const char *data;
    ssize_t sent;

    if (c->flags & MIO__CF_SPLIT)
        return conn_send_staged(c);
    data = stage_rec_data(mio__conn_ctx(c), rec);
    do
        sent = mio_send(mio__conn_fd(c), data, rec->len);
    while (sent == -EINTR);
    return conn_record_sent(c, rec, sent);
}

void mio__conn_stage_flush(struct mio__conn_ctx *ctx)
{
    /* A send may tear its conn down, which only drops that conn's records. A record the ring
     * took (await) is the kernel's: sent again, its bytes would go twice. */
    for (unsigned i = 0; i < ctx->nrecs; i++)
        if (ctx->recs[i].c != NULL && !ctx->recs[i].await)
            (void)conn_send_record(ctx->recs[i].c, &ctx->recs[i]);
    stage_reset(ctx);
}

/* io_uring: the stage's records go out as sends on the ring, prepared right before the reactor's
 * wait (or the end of an iteration) submits them (nothing runs in between, so no conn's fd can be
 * closed under a prepared send), and their outcomes are seen in the reap's first pass, before any
 * callback can write to the stage again: the kernel reads the stage only while the stage stands
 * still (a send with MSG_DONTWAIT reads it during the enter). The sends are quiet where the kernel
 * allows (mio__uring_send): a full send posts nothing and is seen at MIO__UD_SENDS_DONE, so a
 * wait that submits them still blocks. A conn staged in several records (SPLIT) sends with one
 * sendmsg syscall instead: sends of one socket must not overtake each other, and two on the ring
 * could (the first short, the second taken). A record the ring cannot take (the SQ stayed full)
 * is sent at once. Returns how many sends must be seen before the loop may sleep (not 0: the
 * wait does not block): those that will complete either way, quiet ones of a conn whose close or
 * shutdown waits for them, and one more when many provided buffers are lent. */
unsigned mio__conn_stage_submit(struct mio__conn_ctx *ctx)
{
    unsigned n = 0, must = 0;

    if (ctx->nsent > 0)
        return 0; /* the last wait's sends are unseen (its enter failed): they come first */
    for (unsigned i = 0; i < ctx->nrecs; i++) {
        struct mio__stage_rec *rec = &ctx->recs[i];
        mio_conn *c = rec->c;
        int q;

        if (c == NULL)
            continue;
        if (!(c->flags & MIO__CF_SPLIT) &&
            (q = mio__uring_send(ctx->ring, mio__conn_fd(c), stage_rec_data(ctx, rec), rec->len,
                                 MIO__UD_URGENT | i, true)) >= 0) {
            rec->await = true;
            rec->quiet = q == 1;
            n++;
            if (q == 0 || (c->flags & (MIO__CF_CLOSING | MIO__CF_SHUT_REQ)))
                must++;
            continue;
        }
        (void)conn_send_record(c, rec);
    }
    ctx->nsent = n;
    if (n == 0)
        stage_reset(ctx);
    /* The buffers lent to records stay out of the ring until the outcomes are seen: a wait that
     * submitted the sends would run with that many fewer buffers for its receives. */
    else if (ctx->nlent * 8 > MIO__URING_BUFS)
        must++;
    return must;
}

/* The outcome of record i's send. */
static void stage_seen(struct mio__conn_ctx *ctx, struct mio__stage_rec *rec, int res)
{
    rec->await = false;
    if (rec->c != NULL) { /* else the conn was torn down meanwhile: its bytes do not matter */
        res = mio__conn_ring_result(MIO__RING_SEND, rec->c, res);
        (void)conn_record_sent(rec->c, rec, res == -EINTR ? -EAGAIN : res);
    }
    if (--ctx->nsent == 0)
        stage_reset(ctx); /* every record was sent, queued or dropped */
}

void mio__conn_stage_sent(struct mio__conn_ctx *ctx, unsigned i, int res)
{
    stage_seen(ctx, &ctx->recs[i], res);
}

void mio__conn_stage_sends_done(struct mio__conn_ctx *ctx)
{
    /* The quiet sends that reported nothing took every byte. stage_seen resets the stage (no
     * records left) when the last outcome is seen. */
    for (unsigned j = 0; j < ctx->nrecs; j++)
        if (ctx->recs[j].await && ctx->recs[j].quiet)
            stage_seen(ctx, &ctx->recs[j], (int)ctx->recs[j].len);
}

/* io_uring, inside on_read: a write of bytes that lie in the provided buffer on_read is being
 * given is staged as a record that points there (MIO__REC_LENT), with no copy, when it is the
 * conn's first staged write (a later one then takes it into the stage, conn_stage). Returns
 * true when the write was staged so. */
static bool conn_lend(struct mio__conn_ctx *ctx, mio_conn *c, const struct iovec *iov,
                      int iovcnt, size_t total)
{
    /* addresses as integers: the bytes may lie in any object, not only in the buffer */
    uintptr_t p = (uintptr_t)iov[0].iov_base, base = (uintptr_t)ctx->lend_base;

    if (ctx->lend_base == NULL || iovcnt != 1 || (c->flags & MIO__CF_STAGED) ||
        ctx->nrecs == MIO__STAGE_RECS || p < base || p - base > ctx->lend_len ||
        total > ctx->lend_len - (p - base))
        return false;
    ctx->recs[ctx->nrecs++] = (struct mio__stage_rec){
        c, MIO__REC_LENT | (uint32_t)(p - (uintptr_t)mio__uring_buf(ctx->ring, 0)),
        (uint32_t)total, false, false};
    ctx->lend_taken = true;
    c->flags |= MIO__CF_STAGED;
    mio__reactor_request_settle(c->r);
    return true;
}

/* Copies iov into the stage (or lends it, conn_lend). Returns 1 (staged), 0 (not staged: write
 * it now) or -errno (the conn failed while the stage made room). */
static int conn_stage(mio_conn *c, const struct iovec *iov, int iovcnt, size_t total)
{
    struct mio__conn_ctx *ctx = mio__conn_ctx(c);
    size_t high = c->x != NULL ? c->x->high : MIO__CONN_HIGH_DEFAULT;
    struct mio__stage_rec *last;

    if (total > MIO__STAGE_MAX_WRITE || mio__conn_staged_bytes(c) + total > high)
        return 0; /* large, or staging would pass the high mark: straight to the socket */
    if (conn_lend(ctx, c, iov, iovcnt, total))
        return 1;
    last = ctx->nrecs > 0 ? &ctx->recs[ctx->nrecs - 1] : NULL;
    if (last != NULL && last->c == c && (last->off & MIO__REC_LENT) &&
        ctx->stage_len + last->len + total <= MIO__STAGE_BYTES) {
        /* the conn's lent bytes move into the stage, so that this write joins them: one send */
        memcpy(ctx->stage + ctx->stage_len, stage_rec_data(ctx, last), last->len);
        last->off = ctx->stage_len;
        ctx->stage_len += last->len;
    }
    if (ctx->stage_len + total > MIO__STAGE_BYTES ||
        (ctx->nrecs == MIO__STAGE_RECS &&
         !(last->c == c && last->off + last->len == ctx->stage_len))) {
        mio__conn_stage_flush(ctx); /* full: hand everything staged to the kernel now */
        if (c->flags & MIO__CF_DEAD)
            return -(int)c->dead_errno; /* its own staged bytes failed */
        if (mio__conn_has_wq(c))
            return 0; /* the socket left some of them queued: this write goes behind them */
        last = NULL;
    }
    if (last != NULL && last->c == c && last->off + last->len == ctx->stage_len) {
        last->len += (uint32_t)total;
    } else {
        if (c->flags & MIO__CF_STAGED)
            c->flags |= MIO__CF_SPLIT;
        ctx->recs[ctx->nrecs++] =
            (struct mio__stage_rec){c, ctx->stage_len, (uint32_t)total, false, false};
    }
    for (int i = 0; i < iovcnt; i++) {
        memcpy(ctx->stage + ctx->stage_len, iov[i].iov_base, iov[i].iov_len);
        ctx->stage_len += (uint32_t)iov[i].iov_len;
    }
    c->flags |= MIO__CF_STAGED;
    mio__reactor_request_settle(c->r);
    return 1;
}

static void conn_output_progress(mio_conn *c);

/* Writes the queue out until it is empty or the socket is full, then the held-output bookkeeping.
 * Runs on WRITABLE only, so the common case (nothing queued) never gets here. */
static void conn_flush_queue(mio_conn *c)
{
    mio__arena arena = mio__reactor_arena(c->r);
    struct mio__conn_ext *x = c->x; /* set: only called with bytes queued */
    struct iovec iov[IOV_MAX];

    while (!mio__wq_is_empty(&x->wq)) {
        int cnt = mio__wq_peek(&x->wq, iov, IOV_MAX);
        ssize_t n = mio_sendv(mio__conn_fd(c), iov, cnt);

        if (n == -EINTR)
            continue;
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            mio__conn_teardown(c, (int)n);
            return;
        }
        mio__wq_consume(&x->wq, arena, (size_t)n);
    }
    conn_output_progress(c);
    if (!(c->flags & MIO__CF_DEAD))
        mio__conn_ext_trim(c); /* a drained queue may have been all the block held */
}

/* After output progressed: close or shut down when nothing is held, resume reading (on_drain)
 * at the low mark, keep the interest in line. */
static void conn_output_progress(mio_conn *c)
{
    struct mio__conn_ext *x = c->x;

    if (!mio__conn_holds_output(c) && mio__conn_flushed(c) < 0)
        return;
    if (x != NULL && (c->flags & MIO__CF_PAUSED) && x->wq.bytes <= x->low) {
        c->flags &= (uint16_t)~MIO__CF_PAUSED;
        if (mio__conn_sync_interest(c) < 0)
            return;
        if (mio__conn_ops(c)->on_drain != NULL)
            mio__conn_ops(c)->on_drain(c, c->arg);
        if (c->flags & MIO__CF_DEAD)
            return;
    }
    (void)mio__conn_sync_interest(c);
}

int mio_conn_writev(mio_conn *c, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    int err;

    if (c == NULL || iovcnt < 0 || (iovcnt > 0 && iov == NULL))
        return -EINVAL;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SIZE_MAX - total)
            return -EINVAL; /* the lengths overflow size_t: no such buffer exists */
        total += iov[i].iov_len;
    }
    if (c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING | MIO__CF_SHUT_REQ))
        return -EPIPE;
    if (total == 0)
        return 0;
    if (!mio__conn_has_wq(c) && !(c->flags & MIO__CF_CONNECTING)) {
        if (mio__reactor_in_loop(c->r)) {
            err = conn_stage(c, iov, iovcnt, total);
            if (err != 0)
                return err < 0 ? err : 0;
        }
        /* Staging may have flushed a full stage, leaving some of this conn's bytes queued: then
         * this write must go behind them, not past them. */
        if (!mio__conn_has_wq(c))
            return conn_send_gather(c, iov, iovcnt); /* at once; the leftover is queued */
    }
    err = conn_enqueue(c, iov, iovcnt, 0); /* behind the queue, or until connected */
    if (err == 0)
        conn_check_high(c);
    return err < 0 ? err : mio__conn_sync_interest(c);
}

int mio_conn_write(mio_conn *c, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};

    if (len > 0 && data == NULL)
        return -EINVAL;
    return mio_conn_writev(c, &iov, 1);
}

int mio_conn_flush(mio_conn *c)
{
    int err;

    if (c == NULL)
        return -EINVAL;
    if (c->flags & MIO__CF_DEAD)
        return -EPIPE;
    if (!(c->flags & MIO__CF_STAGED))
        return 0;
    err = conn_send_staged(c);
    /* Sending the last bytes of a closed conn completes its close: that is a success. */
    return (c->flags & MIO__CF_DEAD) && c->dead_errno == 0 ? 0 : err;
}
