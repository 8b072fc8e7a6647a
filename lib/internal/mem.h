/* The one allocation path of libmio. With jemalloc, an arena handle selects a per-reactor arena
 * (mallocx(MALLOCX_ARENA)); without it, plain malloc. Tests wrap these symbols (-Wl,--wrap) to
 * inject allocation failure, so they stay out-of-line. */
#ifndef MIO_INTERNAL_MEM_H
#define MIO_INTERNAL_MEM_H

#include <stddef.h>
#include <stdint.h>

/* 0 is the default arena; other values are jemalloc arena index + 1. */
typedef unsigned mio__arena;

/* Any thread. Gives a private arena: one that an earlier mio__arena_destroy gave back (empty, its
 * pages returned to the kernel) or, when none is waiting, a new one, so the number of arenas ever
 * created is the peak number in use at once. Returns 0 and *out (0 without jemalloc), -ENOMEM. */
int mio__arena_create(mio__arena *out);
/* Any thread, once everything allocated from the arena is freed: gives the arena back for reuse
 * (the caller must not use the handle again); 0 is ignored. */
void mio__arena_destroy(mio__arena arena);

void *mio__alloc(mio__arena arena, size_t size); /* NULL on failure; size 0 -> NULL */
void *mio__calloc(mio__arena arena, size_t n, size_t size);
void *mio__realloc(mio__arena arena, void *p, size_t size);
void mio__free(mio__arena arena, void *p); /* NULL accepted */

/* An array of fixed-size pages that never move once allocated (the slab's slots, the timer
 * wheel's nodes): a pointer into a page stays valid while more pages are added. v[0..n) are the
 * pages; the array of pointers doubles as it fills. The owner's thread. */
struct mio__pages {
    void **v;
    uint32_t n, cap;
};

/* Allocates a page of `bytes` and appends it as v[n]. Returns the page (uninitialised), or NULL
 * when out of memory (then nothing changed). */
static inline void *mio__pages_add(struct mio__pages *p, mio__arena arena, size_t bytes)
{
    void *page;

    if (p->n == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 4;
        void **v = mio__realloc(arena, p->v, cap * sizeof *v);

        if (v == NULL)
            return NULL;
        p->v = v;
        p->cap = cap;
    }
    page = mio__alloc(arena, bytes);
    if (page != NULL)
        p->v[p->n++] = page;
    return page;
}

/* Frees every page and the array; leaves p empty. */
static inline void mio__pages_free(struct mio__pages *p, mio__arena arena)
{
    for (uint32_t i = 0; i < p->n; i++)
        mio__free(arena, p->v[i]);
    mio__free(arena, p->v);
    p->v = NULL;
    p->n = p->cap = 0;
}

/* Calling thread, once at its start: sets up the allocator's per-thread state (jemalloc's thread
 * cache, ~80 KiB) now, as part of the thread's fixed start-up cost, instead of on the thread's
 * first allocation, which for an acceptor-mode worker is its first connection. */
void mio__mem_thread_start(void);

#endif
