/* The reactor's handler slab: token -> handler, with generation-checked tokens.
 *
 * A token is `slot index | generation << 32`. Releasing a slot bumps its generation, so a token
 * handed out before the release never matches the slot again, even after the slot is reused.
 * Slots live in fixed pages that never move or shrink while the slab exists: a pointer to a slot
 * stays valid across later allocations (handlers may add while the reactor iterates a batch).
 * Single-threaded (the reactor's thread). */
#ifndef MIO_INTERNAL_SLAB_H
#define MIO_INTERNAL_SLAB_H

#include <stdbool.h>
#include <stdint.h>
#include <mio/reactor.h>
#include "mem.h"

#define MIO__SLAB_PAGE_SHIFT 8u
#define MIO__SLAB_PAGE_SLOTS (1u << MIO__SLAB_PAGE_SHIFT)
/* Index limit: keeps every token below 0xffffffff in its low half, so the reactor may use
 * UINT64_MAX as a private token (its waker). */
#define MIO__SLAB_MAX_SLOTS (1u << 30)
#define MIO__SLAB_NONE UINT32_MAX

/* 24 bytes: one per registered handler, so it counts in every idle connection's footprint. */
struct mio__slot {
    mio_io_fn fn; /* NULL while the slot is free */
    union {
        void *arg;          /* while used */
        uint32_t next_free; /* free-list link while free */
    };
    int fd;
    uint32_t gen; /* never 0: tokens are never 0 */
};

struct mio__slab {
    struct mio__slot **pages;
    uint32_t npages, page_cap;
    uint32_t free_head; /* LIFO: the slot released last is reused first */
    uint32_t used;
    mio__arena arena;
};

void mio__slab_init(struct mio__slab *s, mio__arena arena);
/* Frees the pages; slots still used are simply forgotten. */
void mio__slab_destroy(struct mio__slab *s);
/* Takes a free slot (growing by one page when none is free). Returns 0 and *idx, or -ENOMEM. */
int mio__slab_alloc(struct mio__slab *s, uint32_t *idx);
/* Returns a used slot to the free list and bumps its generation. */
void mio__slab_release(struct mio__slab *s, uint32_t idx);

static inline struct mio__slot *mio__slab_at(const struct mio__slab *s, uint32_t idx)
{
    return &s->pages[idx >> MIO__SLAB_PAGE_SHIFT][idx & (MIO__SLAB_PAGE_SLOTS - 1)];
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

    if (idx >= s->npages * MIO__SLAB_PAGE_SLOTS)
        return NULL;
    slot = mio__slab_at(s, idx);
    if (slot->gen != gen || slot->fn == NULL)
        return NULL;
    return slot;
}

#endif
