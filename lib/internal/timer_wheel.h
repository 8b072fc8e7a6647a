/* Hierarchical timing wheel with millisecond resolution (the reactor's timers).
 *
 * Six levels of 64 slots: level l holds timers whose deadline first differs from the wheel's time
 * in the l-th 6-bit digit, so one slot of level l spans 64^l ms. Start and cancel are O(1) (list
 * link/unlink plus a bit in a per-level occupancy mask); advancing visits only occupied slots and
 * re-files their timers one level down. Deadlines further than 2^36 ms (~2 years) away wait in an
 * overflow list re-filed whenever the wheel crosses a 2^36 boundary; a deadline of UINT64_MAX
 * never fires.
 *
 * Timer nodes come from a pool of fixed pages with a free list (no allocation per timer once the
 * pool is warm). An id is `node index | generation << 32`; freeing a node bumps the generation, so
 * a stale id is recognised (-ENOENT). Ids are never 0.
 *
 * Ordering: due timers fire sorted by (deadline, start order). Single-threaded. */
#ifndef MIO_INTERNAL_TIMER_WHEEL_H
#define MIO_INTERNAL_TIMER_WHEEL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "mem.h"

#define MIO__WHEEL_BITS 6u
#define MIO__WHEEL_SLOTS (1u << MIO__WHEEL_BITS)
#define MIO__WHEEL_LEVELS 6u
#define MIO__WHEEL_PAGE_SHIFT 12u /* 4096 nodes per pool page */

/* The monotonic clock in milliseconds: the time base of the reactors' wheels, also used for the
 * acceptor's pauses. Any thread. Returns `fallback` should clock_gettime fail (it cannot for
 * CLOCK_MONOTONIC): time then stands still rather than jumps. */
static inline uint64_t mio__clock_ms(uint64_t fallback)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
        return fallback;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* a + b saturated at UINT64_MAX: a deadline past the end of time is "never", not a wrap-around
 * into the past. */
static inline uint64_t mio__sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Circular doubly linked list link; a list head is a bare link (head.next == &head: empty). */
struct mio__tlink {
    struct mio__tlink *prev, *next;
};

/* Any function pointer, stored opaquely (the owner casts it back to its real type to call it). */
typedef void (*mio__fnptr)(void);

/* One timer (64 bytes). fn/arg are opaque to the wheel: the owner decides what they mean. */
struct mio__timer {
    struct mio__tlink link; /* first: a link maps back to its timer */
    uint64_t deadline;
    uint64_t repeat; /* 0: one-shot */
    mio__fnptr fn;
    void *arg;
    uint32_t seq; /* start order, for equal deadlines (compared modulo 2^32) */
    uint32_t idx; /* index in the node pool */
    uint32_t gen;
    uint16_t where; /* level * 64 + slot, or MIO__WHERE_* */
    uint8_t state;  /* MIO__TIMER_* */
    uint8_t cancelled;
};

enum { MIO__TIMER_FREE, MIO__TIMER_PENDING, MIO__TIMER_FIRING };

struct mio__wheel {
    struct mio__tlink slots[MIO__WHEEL_LEVELS * MIO__WHEEL_SLOTS];
    struct mio__tlink overflow; /* deadlines beyond the top level */
    struct mio__tlink due;      /* due; collected at the next mio__wheel_advance */
    struct mio__tlink firing;   /* collected by the last advance, taken by mio__wheel_pop */
    uint64_t occupied[MIO__WHEEL_LEVELS];
    uint64_t now; /* every timer with deadline <= now is in `due` or `firing` */
    uint32_t seq;
    uint64_t count; /* timers started and not yet freed (pending or firing) */
    /* pages of 2^MIO__WHEEL_PAGE_SHIFT nodes each */
    struct mio__pages pages;
    uint32_t fresh; /* nodes handed out at least once: indexes [0, fresh) are set up */
    struct mio__timer *free_list;
    mio__arena arena;
};

void mio__wheel_init(struct mio__wheel *w, mio__arena arena, uint64_t now);
/* Frees every node page; pending timers are dropped without firing. */
void mio__wheel_destroy(struct mio__wheel *w);

/* Starts a timer due at `deadline` (absolute ms; <= the wheel's time means "at the next advance"),
 * re-armed every `repeat` ms after firing when repeat > 0. Returns 0 and *id, or -ENOMEM. */
int mio__wheel_start(struct mio__wheel *w, uint64_t deadline, uint64_t repeat, mio__fnptr fn,
                     void *arg, uint64_t *id);
/* Cancels a pending timer (0), or marks the firing one so that it is not re-armed (0 when it
 * repeats, -ENOENT for a one-shot). -ENOENT for a stale or unknown id. */
int mio__wheel_cancel(struct mio__wheel *w, uint64_t id);

/* Moves the wheel to `now` and collects every timer due by then, in firing order, for
 * mio__wheel_pop. Timers started while they fire are due at the next advance at the earliest. */
void mio__wheel_advance(struct mio__wheel *w, uint64_t now);
/* Takes the next collected timer and marks it FIRING, or NULL. The owner calls its callback and
 * then mio__wheel_fired. */
struct mio__timer *mio__wheel_pop(struct mio__wheel *w);
/* After the callback: frees a one-shot or cancelled timer, re-arms a repeating one for the
 * wheel's time + repeat. */
void mio__wheel_fired(struct mio__wheel *w, struct mio__timer *t);
/* The id of a node. */
static inline uint64_t mio__wheel_id(const struct mio__timer *t)
{
    return (uint64_t)t->idx | (uint64_t)t->gen << 32;
}

/* Absolute time at which the wheel next needs an advance: the wheel's time when something is due
 * or collected, UINT64_MAX when no timer is pending. It may be earlier than the nearest deadline
 * (the time a higher-level slot must be re-filed), never later. */
uint64_t mio__wheel_next(const struct mio__wheel *w);

#endif
