/* The reactor's handler slab: token -> handler, with generation-checked tokens.
 *
 * A token is `slot index | generation << 32`. Releasing a slot bumps its generation, so a token
 * handed out before the release never matches the slot again, even after the slot is reused
 * (generations are 24 bits: a token can only be mistaken after 16,777,215 reuses of its slot).
 * Slots live in fixed pages that never move or shrink while the slab exists: a pointer to a slot
 * stays valid across later allocations (handlers may add while the reactor iterates a batch).
 *
 * A slot is 16 bytes (it counts in every idle connection's footprint): the handler function is
 * not stored in it but as an 8-bit index into the slab's table of distinct functions (programs
 * have a handful). Index 0 means "free"; once the table is full, further new functions are
 * stored "boxed": the slot's arg points to an allocated {fn, arg} pair (MIO__SLAB_FN_BOXED).
 * Single-threaded (the reactor's thread). */
#ifndef MIO_INTERNAL_SLAB_H
#define MIO_INTERNAL_SLAB_H

#include <stdbool.h>
#include <stdint.h>
#include <mio/reactor.h>
#include "mem.h"

#define MIO__SLAB_PAGE_SHIFT 8u
#define MIO__SLAB_PAGE_SLOTS (1u << MIO__SLAB_PAGE_SHIFT)
/* Index limit: keeps every token below 0xffffffff in its low half, so no slab token equals
 * MIO__WAKER_TOKEN (internal/waker_int.h), the reactor's private token for its waker. */
#define MIO__SLAB_MAX_SLOTS (1u << 30)
#define MIO__SLAB_NONE UINT32_MAX
#define MIO__SLAB_GEN_MASK 0xffffffu
#define MIO__SLAB_FN_FREE 0u
#define MIO__SLAB_FN_BOXED 255u
#define MIO__SLAB_FNS 255u /* table entries 1..254 hold functions */

struct mio__slot {
    union {
        void *arg;          /* while used (the box when fn == MIO__SLAB_FN_BOXED) */
        uint32_t next_free; /* free-list link while free */
    };
    int fd;
    unsigned gen : 24; /* never 0: tokens are never 0 */
    unsigned fn : 8;   /* MIO__SLAB_FN_FREE while the slot is free */
};

_Static_assert(sizeof(struct mio__slot) == 16, "the slab slot is part of every conn's budget");

struct mio__slab_box {
    mio_io_fn fn;
    void *arg;
};

struct mio__slab {
    /* pages of MIO__SLAB_PAGE_SLOTS slots each */
    struct mio__pages pages;
    uint32_t free_head; /* LIFO: the slot released last is reused first */
    uint32_t used;
    mio__arena arena;
    unsigned nfns;      /* table entries in use: fns[1..nfns] */
    unsigned last_fn;   /* index of the function set last (most adds repeat it) */
    mio_io_fn fns[MIO__SLAB_FNS];
};

void mio__slab_init(struct mio__slab *s, mio__arena arena);
/* Frees the pages and boxes; slots still used are simply forgotten. */
void mio__slab_destroy(struct mio__slab *s);
/* Takes a free slot (growing by one page when none is free). Returns 0 and *idx, or -ENOMEM. */
int mio__slab_alloc(struct mio__slab *s, uint32_t *idx);
/* Makes the slot taken by mio__slab_alloc used: handler fn (non-NULL) with arg, for fd.
 * Returns 0, or -ENOMEM when fn needs a box (table full) that cannot be allocated; the slot then
 * stays taken, the caller releases it. */
int mio__slab_set(struct mio__slab *s, uint32_t idx, mio_io_fn fn, void *arg, int fd);
/* Returns a taken slot to the free list and bumps its generation. */
void mio__slab_release(struct mio__slab *s, uint32_t idx);

static inline struct mio__slot *mio__slab_at(const struct mio__slab *s, uint32_t idx)
{
    struct mio__slot *page = s->pages.v[idx >> MIO__SLAB_PAGE_SHIFT];

    return &page[idx & (MIO__SLAB_PAGE_SLOTS - 1)];
}

static inline uint64_t mio__slab_token(const struct mio__slab *s, uint32_t idx)
{
    return (uint64_t)idx | (uint64_t)mio__slab_at(s, idx)->gen << 32;
}

/* The used slot a token names, or NULL when the token is stale, unknown or free. */
static inline struct mio__slot *mio__slab_lookup(const struct mio__slab *s, uint64_t token)
{
    uint32_t idx = (uint32_t)token, gen = (uint32_t)(token >> 32);
    struct mio__slot *slot;

    if (idx >= s->pages.n * MIO__SLAB_PAGE_SLOTS)
        return NULL;
    slot = mio__slab_at(s, idx);
    if (slot->gen != gen || slot->fn == MIO__SLAB_FN_FREE)
        return NULL;
    return slot;
}

/* A used slot's handler and argument. */
static inline mio_io_fn mio__slab_fn(const struct mio__slab *s, const struct mio__slot *slot)
{
    if (slot->fn == MIO__SLAB_FN_BOXED)
        return ((const struct mio__slab_box *)slot->arg)->fn;
    return s->fns[slot->fn];
}

static inline void *mio__slab_arg(const struct mio__slot *slot)
{
    if (slot->fn == MIO__SLAB_FN_BOXED)
        return ((const struct mio__slab_box *)slot->arg)->arg;
    return slot->arg;
}

#endif
