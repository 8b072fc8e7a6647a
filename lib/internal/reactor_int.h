/* What the layers above (conn, pool) may use of a reactor beyond the public API: its arena and
 * clock, handler slots by index, a walk over handlers, an extension point for per-reactor state,
 * a cross-thread source, wakes, and pool ownership. Reactor's thread only, unless a function says
 * "any thread". */
#ifndef MIO_INTERNAL_REACTOR_INT_H
#define MIO_INTERNAL_REACTOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mio/reactor.h>
#include "mem.h"

/* A handler slot's fd (-1 once the number went to another handler) and its current token, by
 * slot index (the low half of a token): what a layer that keeps only the index needs. */
int mio__reactor_slot_fd(const mio_reactor *r, uint32_t slot);
mio_token mio__reactor_slot_token(const mio_reactor *r, uint32_t slot);

/* For a layer that learns of its fd's state elsewhere (the conn layer's receives on the io_uring
 * backend) and wants the fd's wake-ups kept out of the epoll set until it needs readiness.
 *
 * mio__reactor_add_unwatched is mio_reactor_add without the registration: the handler gets a
 * token and the fd a slot, but the fd is not in the epoll set (no epoll_ctl) and reports nothing.
 * When a live slot already names the number (an fd closed without mio_reactor_remove, whose
 * number came back), it registers the fd parked instead, so the kernel says whether the number
 * is free (-EEXIST when it is not) and the stale slot loses it; *watched tells which happened.
 * mio__reactor_watch puts an unwatched fd into the epoll set with interest (EPOLL_CTL_ADD); call
 * it only for a token whose fd is not in the set. mio__reactor_park keeps a watched fd in the set
 * with a registration that reports nothing, not even errors or hang-ups; mio_reactor_modify
 * leaves it. Same returns as mio_reactor_add / mio_reactor_modify. */
int mio__reactor_add_unwatched(mio_reactor *r, int fd, mio_io_fn fn, void *arg, mio_token *out,
                               bool *watched);
int mio__reactor_watch(mio_reactor *r, mio_token token, mio_interest interest);
int mio__reactor_park(mio_reactor *r, mio_token token);

/* The handler arg of a live token whose handler is io, or NULL (stale token, released slot, or
 * another handler): how a layer turns a token that crossed threads back into its object. */
void *mio__reactor_lookup(const mio_reactor *r, mio_token token, mio_io_fn io);

/* The reactor's arena: allocate per-reactor objects (conns, write-queue chunks) from it. */
mio__arena mio__reactor_arena(const mio_reactor *r);

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

/* The rule for the reserved room of an options struct (mio_reactor_opts, mio_pool_opts): every
 * element zero, or the caller set an option this version does not know. */
static inline bool mio__reserved_zero(const uint64_t *reserved, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (reserved[i] != 0)
            return false;
    return true;
}

/* Any thread, after publishing work the reactor will find (with a release store or stronger):
 * writes the eventfd only if the reactor published SLEEPING and this caller wins the claim on the
 * wake (the CAS SLEEPING -> WOKEN); otherwise counts an elided wake. Returns true when it made
 * the syscall. The same as mio__reactor_wake_claim, then mio__reactor_kick on a won claim. */
bool mio__reactor_wake(mio_reactor *r);
/* Any thread, after publishing work (as for mio__reactor_wake): the claim alone, with its fence.
 * Returns true when this caller won the wake of a sleeping reactor, which then stays asleep until
 * the caller delivers the wake: with mio__reactor_kick, or as a ring message (mio__uring_wake to
 * mio__reactor_ring_fd), falling back to mio__reactor_kick when the message fails. Every other
 * producer elides its wake meanwhile, so a won claim must always be delivered. Returns false
 * (and counts an elided wake) otherwise. */
bool mio__reactor_wake_claim(mio_reactor *r);
/* Any thread: writes the eventfd, counted in wakes_performed: delivers a claimed wake. */
void mio__reactor_kick(mio_reactor *r);
/* Any thread: the fd of the reactor's ring (io_uring backend), for mio__uring_wake; -1 with
 * epoll. Fixed when the reactor is created. */
int mio__reactor_ring_fd(const mio_reactor *r);
/* Any thread: the reactor's epoll fd (both backends: the ring watches it). Fixed when the
 * reactor is created; for the fault-injection tests, which fail one reactor's waits. */
int mio__reactor_poll_fd(const mio_reactor *r);
/* Any thread: the reactor is not asleep in epoll_wait without a wake pending, so work published
 * now reaches it without a wake (a snapshot: it may fall asleep right after, and then
 * mio__reactor_wake sees SLEEPING). */
bool mio__reactor_awake(mio_reactor *r);

/* Calls fn(handler arg, ctx) for every live handler whose callback is io, in slot order, and
 * returns how many it called. Each slot is re-read just before its turn: fn may add or remove
 * handlers (a removed one is not visited; one added during the walk may or may not be). */
unsigned mio__reactor_each(mio_reactor *r, mio_io_fn io, void (*fn)(void *harg, void *ctx),
                           void *ctx);

/* One upper layer (the conn layer) may attach per-reactor state. `settle` runs deferred work at
 * safe points: only when requested with mio__reactor_request_settle, after the reactor callback
 * (handler, task, timer, source drain) during which it was requested has returned, and at the
 * start of the next iteration for requests made outside callbacks; never nested in itself.
 * `destroy` runs first thing in mio_reactor_free, while everything else still works (it may
 * call user callbacks), and must release ctx. */
struct mio__uring;

struct mio__reactor_ext {
    void (*settle)(mio_reactor *r, void *ctx);
    void (*destroy)(mio_reactor *r, void *ctx);
    /* io_uring backend: a completion of an operation the layer prepared on the reactor's ring
     * (internal/uring.h), called from the loop like a handler (a settle point follows). A buffer
     * it carries (bid) must be given back with mio__uring_buf_put before it returns. */
    void (*complete)(mio_reactor *r, void *ctx, uint64_t ud, int res, unsigned flags, unsigned bid);
    /* io_uring backend: called right before the wait's io_uring_enter (and at the end of an
     * iteration that is not followed by a wait at once), the last chance to prepare operations
     * for it; nothing runs between this call and the submission. Returns how many of the
     * operations it prepared must be seen before the loop may sleep (their completions come
     * back at once, or what they end must not wait for other events): the wait then does not
     * block.
     * Urgent completions (MIO__UD_URGENT) reach `complete` before any other and are followed by
     * no settle point until all of them have been seen: they must run no user callback. */
    unsigned (*submit)(mio_reactor *r, void *ctx);
};
/* io_uring backend: a second consumer of the ring's completions, beside the attached layer: the
 * pool's multishot accepts on a reuseport worker's ring. A completion whose user_data has
 * MIO__REACTOR_UD_AUX set (and not MIO__UD_URGENT) reaches fn, with the bit still set, instead of
 * the ext's complete; it is called from the loop like a handler (a settle point follows). Its
 * operations must not take provided buffers. The tag is above every conn token (below 2^56) and
 * below the bits the ring and the conn layer keep for themselves (61-63). Set it before the
 * reactor runs; fn NULL removes it. Returns 0, or -EEXIST when another fn is set. */
#define MIO__REACTOR_UD_AUX (UINT64_C(1) << 60)
typedef void (*mio__reactor_cqe_fn)(mio_reactor *r, void *ctx, uint64_t ud, int res,
                                    unsigned flags);
int mio__reactor_set_aux(mio_reactor *r, mio__reactor_cqe_fn fn, void *ctx);

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

/* The io_uring backend's ring, or NULL (epoll backend): a layer prepares its operations on it;
 * they go out with the reactor's next wait, and their completions reach its ext's complete. */
struct mio__uring *mio__reactor_uring(const mio_reactor *r);

/* io_uring backend: cancels and reaps everything in flight on the ring, on the calling thread,
 * which must be the one that ran the reactor (a pool worker, after its last callback), so that
 * the thread that frees the reactor never enters its ring (mio__uring_quiesce says why). The
 * aux consumer (mio__reactor_set_aux) still sees its completions reaped meanwhile; the attached
 * layer's are dropped. The reactor must not run again. A no-op with epoll. */
void mio__reactor_quiesce(mio_reactor *r);

/* Refreshes the cached clock (after a long callback). */
void mio__reactor_update_now(mio_reactor *r);

#endif
