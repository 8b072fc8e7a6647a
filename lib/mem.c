/* The one allocation path: jemalloc arenas when built with jemalloc, plain malloc otherwise. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/mem.h"

#ifdef MIO_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

/* Arena handles are jemalloc's index + 1 so that 0 can mean "default". The thread cache is
 * bypassed for private arenas: a worker's objects must return to its own arena even when another
 * thread frees them (pool stop). */
static int flags_of(mio__arena a)
{
    return a == 0 ? 0 : (int)(MALLOCX_ARENA(a - 1) | MALLOCX_TCACHE_NONE);
}

int mio__arena_create(mio__arena *out)
{
    unsigned idx;
    size_t sz = sizeof idx;
    if (mallctl("arenas.create", &idx, &sz, NULL, 0) != 0)
        return -ENOMEM;
    *out = idx + 1;
    return 0;
}

void mio__arena_destroy(mio__arena arena)
{
    char name[64];
    if (arena == 0)
        return;
    /* Arenas cannot be reused safely after destroy if anything remains; jemalloc frees the pages. */
    snprintf(name, sizeof name, "arena.%u.destroy", arena - 1);
    (void)mallctl(name, NULL, NULL, NULL, 0);
}

size_t mio__arena_allocated(mio__arena arena)
{
    char name[96];
    size_t small = 0, large = 0, sz = sizeof(size_t);
    uint64_t epoch = 1;
    size_t esz = sizeof epoch;
    if (arena == 0)
        return 0;
    (void)mallctl("epoch", &epoch, &esz, &epoch, esz);
    snprintf(name, sizeof name, "stats.arenas.%u.small.allocated", arena - 1);
    if (mallctl(name, &small, &sz, NULL, 0) != 0)
        return 0;
    snprintf(name, sizeof name, "stats.arenas.%u.large.allocated", arena - 1);
    sz = sizeof(size_t);
    if (mallctl(name, &large, &sz, NULL, 0) != 0)
        return small;
    return small + large;
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

size_t mio__arena_allocated(mio__arena arena)
{
    (void)arena;
    return 0;
}

void mio__mem_thread_start(void)
{
}

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
