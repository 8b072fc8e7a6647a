/* What conn.c and pool.c may use of a reactor beyond the public API. Reactor's thread only,
 * unless a function says "any thread". */
#ifndef MIO_INTERNAL_REACTOR_INT_H
#define MIO_INTERNAL_REACTOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mio/reactor.h>
#include "mem.h"
#include "slab.h"

#define MIO__INTERN_MAX 16 /* distinct interned entries; past that callers keep their own copies */

/* struct mio_reactor begins with this (reactor.c asserts it), so that conns read their slot (fd,
 * generation) and their interned ops inline on the per-event path instead of storing copies:
 * every byte of struct mio_conn counts in an idle connection's footprint. Reactor's thread only. */
struct mio__reactor_head {
    struct mio__slab slab;
    const void *interned[MIO__INTERN_MAX]; /* mio__reactor_intern_index's table, by index */
    size_t interned_len[MIO__INTERN_MAX];
    unsigned ninterned;
    unsigned last_interned; /* index found or added last (most opens repeat it) */
    void *read_buf;         /* mio__reactor_read_buffer's, read_len bytes */
    size_t read_len;
};

static inline struct mio__reactor_head *mio__reactor_head(mio_reactor *r)
{
    return (struct mio__reactor_head *)(void *)r;
}

/* The reactor's arena: allocate per-reactor objects (conns, write-queue chunks) from it. */
mio__arena mio__reactor_arena(const mio_reactor *r);

/* The reactor's shared read buffer (64 KiB), valid for the reactor's life. *len gets its size. */
void *mio__reactor_read_buffer(mio_reactor *r, size_t *len);

/* An extra cross-thread input, e.g. the pool's hand-off ring. `pending` is called (from the
 * reactor's thread) after the reactor has published SLEEPING and before it blocks: when it returns
 * true, the reactor does not block. `drain` runs every iteration in which pending returned true or
 * the waker fired. At most one source per reactor; set it before the reactor runs. */
struct mio__reactor_source {
    bool (*pending)(void *arg);
    void (*drain)(mio_reactor *r, void *arg);
    void *arg;
};
int mio__reactor_set_source(mio_reactor *r, const struct mio__reactor_source *src);

/* Releases a handler's token like mio_reactor_remove, but without the epoll_ctl(DEL) syscall.
 * Contract: the caller closes the fd right afterwards, and no other descriptor refers to the same
 * open file (no dup, no copy inherited by a child): closing the last reference takes the fd out of
 * the epoll set by itself. Should a copy exist after all, the registration outlives the close and
 * its events arrive with a stale token, which the dispatcher drops and counts as stale_events:
 * wasted work, never a wrong call. Events already harvested for the token are dropped the same way.
 * Returns 0 or -ENOENT (unknown or stale token). */
int mio__reactor_forget(mio_reactor *r, mio_token token);

/* Any thread, after publishing work the reactor will find (with a release store or stronger):
 * writes the eventfd only if the reactor published SLEEPING and this caller wins wake_pending;
 * otherwise counts an elided wake. Returns true when it made the syscall. */
bool mio__reactor_wake(mio_reactor *r);
/* Any thread: the reactor is not asleep in epoll_wait without a wake pending, so work published
 * now reaches it without a wake (a snapshot: it may fall asleep right after, and then
 * mio__reactor_wake sees SLEEPING). */
bool mio__reactor_awake(mio_reactor *r);

/* Calls fn(handler arg, ctx) for every live handler whose callback is io, in slot order, and
 * returns how many it called. Each slot is re-read just before its turn: fn may add or remove
 * handlers (a removed one is not visited; one added during the walk may or may not be). */
unsigned mio__reactor_each(mio_reactor *r, mio_io_fn io, void (*fn)(void *harg, void *ctx),
                           void *ctx);

/* Interns data[0..len): *idx names a reactor-owned copy (h->interned[*idx]) shared by every caller
 * that interns equal bytes, valid for the reactor's life (conns keep their ops this way, as a
 * one-byte index, instead of one copy each).
 * Returns 0, -ENOSPC when the table is full (it keeps a few distinct entries: the caller then
 * keeps a copy of its own), or -ENOMEM. */
int mio__reactor_intern_index(mio_reactor *r, const void *data, size_t len, uint8_t *idx);
/* Any thread (relaxed): number of mio_conns open on the reactor; conn.c adjusts it. */
uint64_t mio__reactor_conn_count(const mio_reactor *r);
void mio__reactor_conn_count_add(mio_reactor *r, int64_t delta);

/* One upper layer (the conn layer) may attach per-reactor state. `settle` runs deferred work at
 * safe points: only when requested with mio__reactor_request_settle, after the reactor callback
 * (handler, task, timer, source drain) during which it was requested has returned, and at the
 * start of the next iteration for requests made outside callbacks; never nested in itself.
 * `destroy` runs first thing in mio_reactor_free, while everything else still works (it may
 * call user callbacks), and must release ctx. */
struct mio__reactor_ext {
    void (*settle)(mio_reactor *r, void *ctx);
    void (*destroy)(mio_reactor *r, void *ctx);
};
/* Returns 0, or -EEXIST when another layer is attached already. */
int mio__reactor_attach(mio_reactor *r, const struct mio__reactor_ext *ext, void *ctx);
/* The attached ctx, or NULL. */
void *mio__reactor_ext_ctx(const mio_reactor *r);
/* Asks for a settle call at the next safe point. */
void mio__reactor_request_settle(mio_reactor *r);
/* Inside mio_reactor_run / run_once (so inside one of its callbacks, on its thread), or inside
 * mio_reactor_free's destroy hook: a settle point will follow. */
bool mio__reactor_in_loop(const mio_reactor *r);
/* Runs the settle hook now if one was requested and none is running. For code that is itself at
 * a safe point outside the loop (the pool worker after its loop ended). */
void mio__reactor_settle(mio_reactor *r);

/* A pool owns this reactor: the public mio_reactor_stop refuses it (-EPERM) and the public
 * mio_reactor_free ignores it; the pool uses mio__reactor_stop and clears the mark before it
 * frees. Set before the reactor's thread starts. */
void mio__reactor_set_pool_owned(mio_reactor *r, bool owned);
/* mio_reactor_stop without the ownership check. Any thread. */
void mio__reactor_stop(mio_reactor *r);

/* Refreshes the cached clock (after a long callback). */
void mio__reactor_update_now(mio_reactor *r);

/* Conn-side helpers the pool uses at stop (implemented in conn.c): closes every conn on the reactor
 * once flushed; conns still unflushed at deadline_ms (reactor time) close with -ECANCELED.
 * Returns the number of conns still open (0: done). */
int mio__conn_close_all(mio_reactor *r, uint64_t deadline_ms);

#endif
