/* What lib/conn.c (life cycle, settings) and lib/conn_io.c (the read and write paths) share.
 * Reactor's thread only. */
#ifndef MIO_INTERNAL_CONN_INT_H
#define MIO_INTERNAL_CONN_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <mio/conn.h>
#include "conn_queue.h"
#include "reactor_int.h"

#define MIO__CONN_LOW_DEFAULT (64u * 1024u)
#define MIO__CONN_HIGH_DEFAULT (1024u * 1024u)
#define MIO__CONN_INPUT_LIMIT_DEFAULT (64u * 1024u)

enum {
    MIO__CF_DEAD = 1u << 0,      /* torn down: dying until on_close has run */
    MIO__CF_CLOSING = 1u << 1,   /* mio_conn_close called: flush, then close; no more on_read */
    MIO__CF_PAUSED = 1u << 2,    /* held output > high: not reading */
    MIO__CF_EOF = 1u << 3,       /* peer FIN delivered */
    MIO__CF_SHUT_REQ = 1u << 4,  /* mio_conn_shutdown called */
    MIO__CF_SHUT_DONE = 1u << 5, /* shutdown(SHUT_WR) issued */
    MIO__CF_TIMER = 1u << 6,     /* idle timer armed (x->timer valid) */
    MIO__CF_LISTED = 1u << 7,    /* dying and in mio__conn_ctx.dying (else the overflow walk) */
    MIO__CF_STAGED = 1u << 8,    /* has bytes in the reactor's coalescing stage (then wq is empty) */
    MIO__CF_DEADLINE = 1u << 9,  /* deadline timer armed (x->deadline_timer valid) */
    MIO__CF_CONNECTING = 1u << 10, /* mio_conn_connect in progress: writes queue, no reads */
    MIO__CF_READ_OFF = 1u << 11,   /* mio_conn_set_reading(c, false): the user paused reading */
    MIO__CF_SPLIT = 1u << 12,      /* staged in more than one record (other conns wrote between) */
    /* io_uring backend (conn_ring.c) */
    MIO__CF_RECV = 1u << 13,        /* a receive is armed on the ring (its completion unseen) */
    MIO__CF_RECV_CANCEL = 1u << 14, /* ... and its cancel is on the way */
    MIO__CF_HELD = 1u << 15, /* the input buffer holds bytes received while reading was off,
                                not yet delivered */
};

#define MIO__CONN_OPS_OWN 255u /* c->ops: the ops are x->own_ops (the intern table was full) */
/* c->interest of a conn whose fd is not in the reactor's epoll set at all (io_uring backend: its
 * receive reports data, EOF and errors; the fd joins the set the first time it needs readiness,
 * mio__reactor_watch). Not an interest bit, so no wanted interest equals it. */
#define MIO__CONN_UNWATCHED ((mio_interest)0x80)
#define MIO__CONN_INTERN_MAX 16u /* distinct ops the conn layer shares per reactor */
#define MIO__CONN_READ_BUF (64u * 1024u)

/* What only some conns need: allocated the first time bytes are queued or kept, a setting moves
 * from its default, or a timer is set, then kept until the conn dies. An idle conn that never
 * needed it costs one 32-byte object plus its reactor slot; a kept input tail has its own buffer,
 * freed as soon as the tail is consumed. */
struct mio__conn_ext {
    struct mio__wq wq;
    size_t low, high;
    uint64_t last_active; /* reactor time of the last received data (idle timer only) */
    uint64_t idle_ms;
    mio_timer_id timer;
    mio_timer_id deadline_timer;
    mio_conn_ops *own_ops; /* our own copy of the ops when c->ops == OPS_OWN, else NULL */
    mio_conn_connect_fn on_connect; /* mio_conn_connect's, until the attempt ends */
    char *in;              /* the kept input tail, in_len bytes of in_cap; NULL when none */
    uint32_t in_len, in_cap;
    uint32_t in_limit; /* a kept tail must stay below this */
};

/* Only what is not already held elsewhere: the fd and the token's generation live in the conn's
 * reactor slot (found by index), the ops in the conn layer's per-reactor table (by index). */
struct mio_conn {
    mio_reactor *r;
    void *arg;
    struct mio__conn_ext *x; /* NULL until needed */
    uint32_t slot;           /* our slab slot: fd, generation (the token) */
    uint16_t flags;
    uint8_t ops; /* index into the reactor's intern table, or MIO__CONN_OPS_OWN */
    union {
        mio_interest interest; /* what is registered now (while alive) */
        uint8_t dead_errno;    /* once dead: -(on_close's reason) */
    };
};

/* The per-connection budget (<= 64 bytes of RSS per idle conn, slot included): the conn must stay
 * in jemalloc's 32-byte class. */
_Static_assert(sizeof(struct mio_conn) <= 32, "mio_conn grew past its memory budget");
_Static_assert(MIO__CONN_INTERN_MAX < MIO__CONN_OPS_OWN, "an intern index must fit beside OPS_OWN");

/* The coalescing stage: writes made inside reactor callbacks are copied here and handed to the
 * kernel once per conn: on epoll at the reactor's next settle point (one send/sendmsg each), on
 * io_uring as sends on the ring submitted by the iteration's wait (so the stage covers a whole
 * iteration: a few hundred conns each answering once). */
#define MIO__STAGE_BYTES (256u * 1024u)
#define MIO__STAGE_RECS 512u
#define MIO__STAGE_MAX_WRITE (16u * 1024u) /* larger writes go straight to the socket */
#define MIO__CONN_DYING_MAX 32u

struct mio__stage_rec {
    mio_conn *c; /* NULL once sent or dropped */
    uint32_t off, len; /* off: in the stage, or MIO__REC_LENT | offset from the provided buffers */
    bool await; /* io_uring: sent on the ring, the outcome not seen yet */
    bool quiet; /* ... as a quiet send: no completion when it takes every byte */
};
/* io_uring: a record whose bytes stay in the provided buffer they were received into (a write,
 * inside on_read, of bytes on_read was given: the echo and proxy pattern), instead of being
 * copied to the stage. The buffer is kept out of the ring (lent) until the stage is reset, after
 * the record's send completed (or what the socket did not take was queued, copied). */
#define MIO__REC_LENT (UINT32_C(1) << 31)

/* The conn layer's per-reactor state, attached to the reactor at the first mio_conn_open.
 * dying: conns torn down whose on_close has not run yet. A fixed list, so that a teardown never
 * allocates (it cannot fail); past its size, settle finds the rest by walking the slab (dying
 * conns keep their slots), once per settle. */
struct mio__conn_ctx {
    /* "ops is copied": conns with equal ops share one copy, named by a one-byte index */
    mio_conn_ops interned[MIO__CONN_INTERN_MAX];
    unsigned ninterned, last_interned;
    char *read_buf; /* MIO__CONN_READ_BUF bytes: every conn without a kept tail reads here */
    uint64_t count; /* conns open; any thread reads it (mio__conn_count) */
    mio_conn *dying[MIO__CONN_DYING_MAX];
    unsigned ndying;
    bool overflow; /* some dying conns are not listed */
    struct mio__uring *ring; /* the reactor's ring (io_uring backend), else NULL */
    /* inside on_read: the conn being read, the length delivered, the bytes it keeps */
    mio_conn *reading;
    size_t read_len, keep;
    /* coalescing stage (MIO__STAGE_BYTES, allocated with the context) */
    char *stage;
    uint32_t stage_len;
    unsigned nrecs;
    unsigned nsent; /* io_uring: records sent on the ring whose outcome is unseen (await) */
    struct mio__stage_rec recs[MIO__STAGE_RECS];
    /* io_uring: the provided buffer on_read is being given now (NULL outside), whether a record
     * took it (it then stays out of the ring), and the buffers lent to the stage's records. */
    const char *lend_base;
    size_t lend_len;
    bool lend_taken;
    unsigned nlent;
    uint16_t lent[MIO__STAGE_RECS];
};

static inline struct mio__conn_ctx *mio__conn_ctx(const mio_conn *c)
{
    return mio__reactor_ext_ctx(c->r); /* set: the conn was opened */
}

static inline int mio__conn_fd(const mio_conn *c)
{
    return mio__reactor_slot_fd(c->r, c->slot);
}

static inline mio_token mio__conn_token(const mio_conn *c)
{
    return mio__reactor_slot_token(c->r, c->slot);
}

static inline const mio_conn_ops *mio__conn_ops(const mio_conn *c)
{
    if (c->ops == MIO__CONN_OPS_OWN)
        return c->x->own_ops;
    return &mio__conn_ctx(c)->interned[c->ops];
}

/* The conn's input limit: a kept tail must stay below it. */
static inline uint32_t mio__conn_in_limit(const mio_conn *c)
{
    return c->x != NULL ? c->x->in_limit : MIO__CONN_INPUT_LIMIT_DEFAULT;
}

/* Bytes in the write queue (not the stage). */
static inline bool mio__conn_has_wq(const mio_conn *c)
{
    return c->x != NULL && !mio__wq_is_empty(&c->x->wq);
}

/* Output the library still holds for the conn: queued or staged. */
static inline bool mio__conn_holds_output(const mio_conn *c)
{
    return (c->flags & MIO__CF_STAGED) || mio__conn_has_wq(c);
}

/* conn.c */
/* Wraps fd (non-blocking already) in a conn with the given initial flags (0, or CONNECTING:
 * registered for WRITABLE only). Returns 0 and *out, -ENOMEM, -EEXIST, -EBADF; on failure the fd
 * is still the caller's. mio__conn_unadopt undoes it before any callback ran (the fd is closed). */
int mio__conn_adopt(mio_reactor *r, int fd, const mio_conn_ops *ops, void *arg, uint16_t flags,
                    mio_conn **out);
void mio__conn_unadopt(mio_conn *c);
void mio__conn_clear_deadline(mio_conn *c);
struct mio__conn_ext *mio__conn_ext(mio_conn *c);
/* Frees the conn's extension block when nothing in it differs from a conn without one (the
 * block an idle conn keeps is its largest cost). Live conns only. */
void mio__conn_ext_trim(mio_conn *c);
void mio__conn_teardown(mio_conn *c, int reason);
int mio__conn_sync_interest(mio_conn *c);
/* The held output just reached zero: finish a requested shutdown or close. Returns < 0 when the
 * conn died. */
int mio__conn_flushed(mio_conn *c);

/* conn_connect.c: the connecting conn's socket reported (writable: it did) */
void mio__conn_connected(mio_conn *c, bool writable);

/* conn_io.c */
void mio__conn_on_io(mio_reactor *r, mio_token token, const mio_event *ev, void *arg);
/* Calls on_read(data, len), then keeps what it left unconsumed. from_tail: data is the conn's own
 * input buffer. */
void mio__conn_deliver(mio_conn *c, const char *data, size_t len, bool from_tail);
/* Frees the conn's input buffer (the kept tail) if it has one. */
void mio__conn_drop_tail(mio_conn *c);

/* conn_ring.c: the io_uring backend's receive path */
/* Arms or cancels the conn's receive on the ring as `reading` says. Returns 0 or -errno. */
int mio__conn_ring_sync(mio_conn *c, bool reading);
/* The conn's receive will never be wanted again (it is being finished): cancels it. */
void mio__conn_ring_stop(mio_conn *c);
/* The reactor's submit hook (mio__reactor_ext.submit): the stage's sends. */
unsigned mio__conn_ring_submit(mio_reactor *r, void *ctx);
/* The reactor's completion hook (mio__reactor_ext.complete). */
void mio__conn_ring_complete(mio_reactor *r, void *ctx, uint64_t ud, int res, unsigned flags,
                             unsigned bid);
/* Sends every conn's staged bytes; empties the stage. */
void mio__conn_stage_flush(struct mio__conn_ctx *ctx);
/* io_uring: prepares the staged records as sends on the ring (the reactor's submit hook). Returns
 * the number prepared. */
unsigned mio__conn_stage_submit(struct mio__conn_ctx *ctx);
/* io_uring: the completion of record i's send (res: bytes sent or -errno). */
void mio__conn_stage_sent(struct mio__conn_ctx *ctx, unsigned i, int res);
void mio__conn_stage_sends_done(struct mio__conn_ctx *ctx);
/* Forgets a dying conn's staged records. */
void mio__conn_stage_drop(mio_conn *c);
/* The conn's staged bytes. */
size_t mio__conn_staged_bytes(const mio_conn *c);

#endif
