/* The one allocation path: jemalloc arenas when built with jemalloc, plain malloc otherwise (see
 * internal/mem.h). Any thread: an arena may be used, created and given back from any thread. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/mem.h"

#ifdef MIO_HAVE_JEMALLOC
#include <ck_spinlock.h>
#include <jemalloc/jemalloc.h>

#include "internal/pr.h"

/* Arena handles are jemalloc's index + 1 so that 0 can mean "default". The thread cache is
 * bypassed for private arenas: a worker's objects must return to its own arena even when another
 * thread frees them (pool stop). */
static int flags_of(mio__arena a)
{
    return a == 0 ? 0 : (int)(MALLOCX_ARENA(a - 1) | MALLOCX_TCACHE_NONE);
}

/* ---- recycled arenas ----
 *
 * Private arenas are never destroyed: mio__arena_destroy parks them here, emptied, and
 * mio__arena_create hands a parked one out before it asks jemalloc for a new one. So the number of
 * arenas ever created is the peak number alive at once.
 *
 * Why not arena.<i>.destroy: it unmaps the arena's memory, and the next arena maps its first
 * extent at fresh addresses (2 MiB lower each time). jemalloc's global page map (the rtree, which
 * is never freed) then touches one more 4 KiB page of leaf nodes for every new 2 MiB of address
 * space: ~4 KiB of RSS per reactor created and freed (per arena that allocated anything). A
 * recycled arena keeps its address range (jemalloc retains its mappings), so the map stops growing;
 * its unused pages are purged when it is parked, so a parked arena keeps only its own metadata.
 *
 * Threads: mio__arena_create and mio__arena_destroy are called from any thread (a reactor is
 * created and freed on any thread, a pool's workers on the pool's owner thread). idle_lock guards
 * idle, nidle and idle_cap; nothing is allocated or freed while it is held. */
static ck_spinlock_t idle_lock = CK_SPINLOCK_INITIALIZER;
static unsigned *idle; /* jemalloc indexes of parked arenas, nidle of them */
static size_t nidle, idle_cap;

static void idle_lock_acquire(void)
{
    ck_spinlock_lock(&idle_lock);
    MIO_TSAN_ACQUIRE(&idle_lock); /* pairs with the release below: TSan cannot see ck's lock */
}

static void idle_lock_release(void)
{
    MIO_TSAN_RELEASE(&idle_lock);
    ck_spinlock_unlock(&idle_lock);
}

static int arena_ctl(const char *verb, unsigned idx)
{
    char name[64];

    snprintf(name, sizeof name, "arena.%u.%s", idx, verb);
    return mallctl(name, NULL, NULL, NULL, 0);
}

/* Parks idx. The array grows (doubling) outside the lock; a thread that finds it already grown
 * by another drops its own copy. Returns false when no room could be made (out of memory). */
static bool idle_push(unsigned idx)
{
    unsigned *grown = NULL, *old = NULL;
    size_t grown_cap = 0, want;
    bool parked = false;

    for (;;) {
        idle_lock_acquire();
        if (nidle == idle_cap && grown_cap > idle_cap) {
            if (nidle > 0)
                memcpy(grown, idle, nidle * sizeof *idle);
            old = idle;
            idle = grown;
            idle_cap = grown_cap;
            grown = NULL;
        }
        if (nidle < idle_cap) {
            idle[nidle++] = idx;
            parked = true;
        }
        want = idle_cap < 16 ? 16 : idle_cap * 2;
        idle_lock_release();
        if (parked)
            break;
        if (grown != NULL) /* another thread grew the array past this copy meanwhile */
            dallocx(grown, 0);
        grown = mallocx(want * sizeof *grown, 0);
        grown_cap = want;
        if (grown == NULL)
            break;
    }
    if (grown != NULL) /* another thread made room first */
        dallocx(grown, 0);
    if (old != NULL)
        dallocx(old, 0);
    return parked;
}

static bool idle_pop(unsigned *idx)
{
    bool found = false;

    idle_lock_acquire();
    if (nidle > 0) {
        *idx = idle[--nidle];
        found = true;
    }
    idle_lock_release();
    return found;
}

int mio__arena_create(mio__arena *out)
{
    unsigned idx;
    size_t sz = sizeof idx;

    if (!idle_pop(&idx) && mallctl("arenas.create", &idx, &sz, NULL, 0) != 0)
        return -ENOMEM;
    *out = idx + 1;
    return 0;
}

void mio__arena_destroy(mio__arena arena)
{
    unsigned idx;

    if (arena == 0)
        return;
    idx = arena - 1;
    /* reset discards whatever is left (by the contract, nothing: mio_reactor_free frees all it
     * allocated, and since private arenas bypass the thread caches (flags_of) no thread cache
     * holds any of it, as reset requires); purge returns the unused pages to the kernel while
     * the arena keeps its address range for its next owner. Nothing checks the contract here:
     * jemalloc's per-arena counters are only current after an "epoch" refresh, which merges
     * every arena's stats (~0.5 ms with 60 arenas); the builds without jemalloc check it instead,
     * where LeakSanitizer reports anything mio_reactor_free leaves behind. */
    if (arena_ctl("reset", idx) != 0 || arena_ctl("purge", idx) != 0 || !idle_push(idx))
        (void)arena_ctl("destroy", idx); /* the fallback costs its metadata page, see above */
}

void *mio__alloc(mio__arena arena, size_t size)
{
    if (size == 0)
        return NULL;
    return mallocx(size, flags_of(arena));
}

void *mio__calloc(mio__arena arena, size_t n, size_t size)
{
    if (n == 0 || size == 0 || n > SIZE_MAX / size)
        return NULL;
    return mallocx(n * size, flags_of(arena) | MALLOCX_ZERO);
}

void *mio__realloc(mio__arena arena, void *p, size_t size)
{
    if (p == NULL)
        return mio__alloc(arena, size);
    if (size == 0)
        return NULL;
    return rallocx(p, size, flags_of(arena));
}

void mio__free(mio__arena arena, void *p)
{
    if (p != NULL)
        dallocx(p, flags_of(arena));
}

void mio__mem_thread_start(void)
{
    bool on;
    size_t sz = sizeof on;

    /* Any jemalloc entry point initialises the thread's state; a read of a thread setting is the
     * cheapest one that allocates nothing for us. */
    (void)mallctl("thread.tcache.enabled", &on, &sz, NULL, 0);
}

#else /* plain malloc */

int mio__arena_create(mio__arena *out)
{
    *out = 0;
    return 0;
}

void mio__arena_destroy(mio__arena arena)
{
    (void)arena;
}

void mio__mem_thread_start(void) {}

void *mio__alloc(mio__arena arena, size_t size)
{
    (void)arena;
    return size == 0 ? NULL : malloc(size);
}

void *mio__calloc(mio__arena arena, size_t n, size_t size)
{
    (void)arena;
    return (n == 0 || size == 0) ? NULL : calloc(n, size);
}

void *mio__realloc(mio__arena arena, void *p, size_t size)
{
    (void)arena;
    if (size == 0)
        return NULL;
    return realloc(p, size);
}

void mio__free(mio__arena arena, void *p)
{
    (void)arena;
    free(p);
}

#endif
