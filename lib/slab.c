/* The reactor's handler slab (see internal/slab.h). The reactor's thread only. */
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
    for (uint32_t i = 0; i < s->pages.n; i++) {
        struct mio__slot *page = s->pages.v[i];

        for (uint32_t j = 0; j < MIO__SLAB_PAGE_SLOTS; j++)
            if (page[j].fn == MIO__SLAB_FN_BOXED)
                mio__free(s->arena, page[j].arg);
    }
    mio__pages_free(&s->pages, s->arena);
    s->free_head = MIO__SLAB_NONE;
    s->used = 0;
}

/* Adds one page and threads its slots onto the free list in index order. */
static int slab_grow(struct mio__slab *s)
{
    struct mio__slot *page;
    uint32_t base;

    if ((s->pages.n + 1) * MIO__SLAB_PAGE_SLOTS > MIO__SLAB_MAX_SLOTS)
        return -ENOMEM;
    base = s->pages.n * MIO__SLAB_PAGE_SLOTS;
    page = mio__pages_add(&s->pages, s->arena, MIO__SLAB_PAGE_SLOTS * sizeof *page);
    if (page == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < MIO__SLAB_PAGE_SLOTS; i++) {
        page[i].fn = MIO__SLAB_FN_FREE;
        page[i].fd = -1;
        page[i].gen = 1;
        page[i].next_free = i + 1 < MIO__SLAB_PAGE_SLOTS ? base + i + 1 : s->free_head;
    }
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

/* The table index of fn: the last one set, else a scan of the (few) entries, else a new entry;
 * MIO__SLAB_FN_BOXED when the table is full. */
static unsigned slab_fn_index(struct mio__slab *s, mio_io_fn fn)
{
    if (s->last_fn != 0 && s->fns[s->last_fn] == fn)
        return s->last_fn;
    for (unsigned i = 1; i <= s->nfns; i++)
        if (s->fns[i] == fn)
            return s->last_fn = i;
    if (s->nfns + 1 >= MIO__SLAB_FNS)
        return MIO__SLAB_FN_BOXED;
    s->fns[++s->nfns] = fn;
    return s->last_fn = s->nfns;
}

int mio__slab_set(struct mio__slab *s, uint32_t idx, mio_io_fn fn, void *arg, int fd)
{
    struct mio__slot *slot = mio__slab_at(s, idx);
    unsigned fi = slab_fn_index(s, fn);

    if (fi == MIO__SLAB_FN_BOXED) {
        struct mio__slab_box *box = mio__alloc(s->arena, sizeof(*box));

        if (box == NULL)
            return -ENOMEM;
        box->fn = fn;
        box->arg = arg;
        arg = box;
    }
    slot->arg = arg;
    slot->fd = fd;
    slot->fn = fi & 0xffu;
    return 0;
}

void mio__slab_release(struct mio__slab *s, uint32_t idx)
{
    struct mio__slot *slot = mio__slab_at(s, idx);

    if (slot->fn == MIO__SLAB_FN_BOXED)
        mio__free(s->arena, slot->arg);
    slot->fn = MIO__SLAB_FN_FREE;
    slot->fd = -1;
    /* Generation 0 is skipped so that no token is ever 0. */
    slot->gen = (slot->gen + 1) & MIO__SLAB_GEN_MASK;
    if (slot->gen == 0)
        slot->gen = 1;
    slot->next_free = s->free_head;
    s->free_head = idx;
    s->used--;
}
