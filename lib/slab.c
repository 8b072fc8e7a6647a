/* The reactor's handler slab (see internal/slab.h). */
#include <errno.h>
#include <string.h>

#include "internal/slab.h"

void mio__slab_init(struct mio__slab *s, mio__arena arena)
{
    memset(s, 0, sizeof *s);
    s->free_head = MIO__SLAB_NONE;
    s->arena = arena;
}

void mio__slab_destroy(struct mio__slab *s)
{
    for (uint32_t i = 0; i < s->npages; i++)
        mio__free(s->arena, s->pages[i]);
    mio__free(s->arena, s->pages);
    s->pages = NULL;
    s->npages = s->page_cap = 0;
    s->free_head = MIO__SLAB_NONE;
    s->used = 0;
}

/* Adds one page and threads its slots onto the free list in index order. */
static int slab_grow(struct mio__slab *s)
{
    struct mio__slot *page;
    uint32_t base;

    if ((s->npages + 1) * MIO__SLAB_PAGE_SLOTS > MIO__SLAB_MAX_SLOTS)
        return -ENOMEM;
    if (s->npages == s->page_cap) {
        uint32_t cap = s->page_cap ? s->page_cap * 2 : 4;
        struct mio__slot **pages = mio__realloc(s->arena, s->pages, cap * sizeof *pages);
        if (pages == NULL)
            return -ENOMEM;
        s->pages = pages;
        s->page_cap = cap;
    }
    page = mio__alloc(s->arena, MIO__SLAB_PAGE_SLOTS * sizeof *page);
    if (page == NULL)
        return -ENOMEM;
    base = s->npages * MIO__SLAB_PAGE_SLOTS;
    for (uint32_t i = 0; i < MIO__SLAB_PAGE_SLOTS; i++) {
        page[i].fn = NULL;
        page[i].fd = -1;
        page[i].gen = 1;
        page[i].next_free = i + 1 < MIO__SLAB_PAGE_SLOTS ? base + i + 1 : s->free_head;
    }
    s->pages[s->npages++] = page;
    s->free_head = base;
    return 0;
}

int mio__slab_alloc(struct mio__slab *s, uint32_t *idx)
{
    struct mio__slot *slot;

    if (s->free_head == MIO__SLAB_NONE) {
        int err = slab_grow(s);
        if (err < 0)
            return err;
    }
    *idx = s->free_head;
    slot = mio__slab_at(s, *idx);
    s->free_head = slot->next_free;
    slot->arg = NULL;
    s->used++;
    return 0;
}

void mio__slab_release(struct mio__slab *s, uint32_t idx)
{
    struct mio__slot *slot = mio__slab_at(s, idx);

    slot->fn = NULL;
    slot->fd = -1;
    /* Generation 0 is skipped so that no token is ever 0. */
    if (++slot->gen == 0)
        slot->gen = 1;
    slot->next_free = s->free_head;
    s->free_head = idx;
    s->used--;
}
