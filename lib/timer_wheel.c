/* Hierarchical timing wheel (see internal/timer_wheel.h for the contract). The owning reactor's
 * thread only. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "internal/timer_wheel.h"

#define SLOT_MASK (MIO__WHEEL_SLOTS - 1u)
#define TOP_BITS (MIO__WHEEL_BITS * MIO__WHEEL_LEVELS) /* 36: span of the wheel, log2 ms */
#define WHERE_OVERFLOW (MIO__WHEEL_LEVELS * MIO__WHEEL_SLOTS)
#define WHERE_DUE (WHERE_OVERFLOW + 1)
#define WHERE_FIRING (WHERE_OVERFLOW + 2)
#define WHERE_NONE 0xffffu
#define PAGE_NODES (1u << MIO__WHEEL_PAGE_SHIFT)
#define MAX_PAGES (UINT32_MAX / PAGE_NODES)

static inline struct mio__timer *timer_of(struct mio__tlink *l)
{
    return (struct mio__timer *)(void *)((char *)l - offsetof(struct mio__timer, link));
}

static inline void tl_init(struct mio__tlink *h)
{
    h->prev = h->next = h;
}

static inline bool tl_empty(const struct mio__tlink *h)
{
    return h->next == h;
}

static inline void tl_append(struct mio__tlink *h, struct mio__tlink *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void tl_del(struct mio__tlink *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Moves every element of src to the end of dst; src ends empty. */
static inline void tl_splice_tail(struct mio__tlink *dst, struct mio__tlink *src)
{
    if (tl_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    tl_init(src);
}

static inline uint64_t rotl64(uint64_t x, unsigned k)
{
    k &= 63u;
    return k == 0 ? x : (x << k) | (x >> (64u - k));
}

static inline uint64_t rotr64(uint64_t x, unsigned k)
{
    k &= 63u;
    return k == 0 ? x : (x >> k) | (x << (64u - k));
}

static inline bool timer_before(const struct mio__timer *a, const struct mio__timer *b)
{
    if (a->deadline != b->deadline)
        return a->deadline < b->deadline;
    return (int32_t)(a->seq - b->seq) < 0;
}

void mio__wheel_init(struct mio__wheel *w, mio__arena arena, uint64_t now)
{
    memset(w, 0, sizeof *w);
    for (unsigned i = 0; i < MIO__WHEEL_LEVELS * MIO__WHEEL_SLOTS; i++)
        tl_init(&w->slots[i]);
    tl_init(&w->overflow);
    tl_init(&w->due);
    tl_init(&w->firing);
    w->now = now;
    w->arena = arena;
}

void mio__wheel_destroy(struct mio__wheel *w)
{
    mio__pages_free(&w->pages, w->arena);
    w->free_list = NULL;
    w->fresh = 0;
    w->count = 0;
}

/* ---- node pool ---- */

/* A page's nodes are set up as they are first handed out (w->fresh counts them), not when the
 * page is added: a reactor that never has more than a few timers at once touches a few nodes of
 * its first page, not all of it (4096 nodes, 256 KiB). */
static int pool_grow(struct mio__wheel *w)
{
    if (w->pages.n >= MAX_PAGES)
        return -ENOMEM;
    return mio__pages_add(&w->pages, w->arena, PAGE_NODES * sizeof(struct mio__timer)) != NULL
               ? 0
               : -ENOMEM;
}

static struct mio__timer *node_get(struct mio__wheel *w)
{
    struct mio__timer *t;

    if (w->free_list != NULL) {
        t = w->free_list;
        w->free_list = t->link.next ? timer_of(t->link.next) : NULL;
        return t;
    }
    if (w->fresh == w->pages.n * PAGE_NODES && pool_grow(w) < 0)
        return NULL;
    t = (struct mio__timer *)w->pages.v[w->fresh / PAGE_NODES] + w->fresh % PAGE_NODES;
    memset(t, 0, sizeof *t);
    t->idx = w->fresh++;
    t->gen = 1;
    t->state = MIO__TIMER_FREE;
    t->where = WHERE_NONE;
    return t;
}

static void node_put(struct mio__wheel *w, struct mio__timer *t)
{
    t->state = MIO__TIMER_FREE;
    t->where = WHERE_NONE;
    t->fn = NULL;
    t->arg = NULL;
    /* Generation 0 is skipped so that no id is ever 0. */
    if (++t->gen == 0)
        t->gen = 1;
    t->link.prev = NULL;
    t->link.next = w->free_list ? &w->free_list->link : NULL;
    w->free_list = t;
    w->count--;
}

static struct mio__timer *node_at(const struct mio__wheel *w, uint64_t id)
{
    uint32_t idx = (uint32_t)id, gen = (uint32_t)(id >> 32);
    struct mio__timer *t;

    if (idx >= w->fresh)
        return NULL; /* never handed out: its node may not even be set up */
    t = (struct mio__timer *)w->pages.v[idx / PAGE_NODES] + idx % PAGE_NODES;
    if (t->gen != gen || t->state == MIO__TIMER_FREE)
        return NULL;
    return t;
}

/* ---- filing ---- */

/* Files t relative to the wheel's time: into `due`, a slot, or the overflow list. */
static void file_timer(struct mio__wheel *w, struct mio__timer *t)
{
    unsigned level, slot, hb;

    if (t->deadline <= w->now) {
        t->where = WHERE_DUE;
        tl_append(&w->due, &t->link);
        return;
    }
    /* The highest bit in which deadline and now differ picks the level: all higher digits are
     * equal, so the slot comes round exactly when the wheel's time enters it. */
    hb = 63u - (unsigned)__builtin_clzll(t->deadline ^ w->now);
    level = hb / MIO__WHEEL_BITS;
    if (level >= MIO__WHEEL_LEVELS) {
        t->where = WHERE_OVERFLOW;
        tl_append(&w->overflow, &t->link);
        return;
    }
    slot = (unsigned)(t->deadline >> (level * MIO__WHEEL_BITS)) & SLOT_MASK;
    t->where = (uint16_t)(level * MIO__WHEEL_SLOTS + slot);
    tl_append(&w->slots[t->where], &t->link);
    w->occupied[level] |= 1ull << slot;
}

static void unfile_timer(struct mio__wheel *w, struct mio__timer *t)
{
    unsigned where = t->where;

    tl_del(&t->link);
    if (where < WHERE_OVERFLOW && tl_empty(&w->slots[where]))
        w->occupied[where / MIO__WHEEL_SLOTS] &= ~(1ull << (where % MIO__WHEEL_SLOTS));
    t->where = WHERE_NONE;
}

int mio__wheel_start(struct mio__wheel *w, uint64_t deadline, uint64_t repeat, mio__fnptr fn,
                     void *arg, uint64_t *id)
{
    struct mio__timer *t = node_get(w);

    if (t == NULL)
        return -ENOMEM;
    t->deadline = deadline;
    t->repeat = repeat;
    t->fn = fn;
    t->arg = arg;
    t->seq = w->seq++;
    t->state = MIO__TIMER_PENDING;
    t->cancelled = 0;
    file_timer(w, t);
    w->count++;
    *id = mio__wheel_id(t);
    return 0;
}

int mio__wheel_cancel(struct mio__wheel *w, uint64_t id)
{
    struct mio__timer *t = node_at(w, id);

    if (t == NULL)
        return -ENOENT;
    if (t->state == MIO__TIMER_FIRING) {
        /* Inside its own callback (or a callback it led to): a repeating timer stops; a one-shot
         * one has fired already. */
        if (t->repeat == 0 || t->cancelled)
            return -ENOENT;
        t->cancelled = 1;
        return 0;
    }
    unfile_timer(w, t);
    node_put(w, t);
    return 0;
}

/* ---- advancing and firing ---- */

/* The list is in (deadline, start order) order already. */
static bool list_sorted(struct mio__tlink *head)
{
    for (struct mio__tlink *l = head->next; l != head && l->next != head; l = l->next)
        if (timer_before(timer_of(l->next), timer_of(l)))
            return false;
    return true;
}

/* Makes the NULL-terminated chain `list` (linked by next only) the list under head again. */
static void list_relink(struct mio__tlink *head, struct mio__tlink *list)
{
    struct mio__tlink *prev = head;

    for (struct mio__tlink *l = list; l != NULL; l = l->next) {
        l->prev = prev;
        prev->next = l;
        prev = l;
    }
    prev->next = head;
    head->prev = prev;
}

/* Sorts a list by (deadline, start order); stable, O(n) when already sorted (the usual case). */
static void sort_list(struct mio__tlink *head)
{
    struct mio__tlink *list;
    size_t k = 1;

    if (list_sorted(head))
        return;
    /* Bottom-up merge sort on the singly linked chain. */
    list = head->next;
    head->prev->next = NULL;
    for (;;) {
        struct mio__tlink *p = list, *tail = NULL;
        size_t merges = 0;
        list = NULL;
        while (p != NULL) {
            struct mio__tlink *q = p;
            size_t psize = 0, qsize = k;
            merges++;
            while (psize < k && q != NULL) {
                psize++;
                q = q->next;
            }
            while (psize > 0 || (qsize > 0 && q != NULL)) {
                struct mio__tlink *e;
                if (psize == 0) {
                    e = q;
                    q = q->next;
                    qsize--;
                } else if (qsize == 0 || q == NULL || !timer_before(timer_of(q), timer_of(p))) {
                    e = p;
                    p = p->next;
                    psize--;
                } else {
                    e = q;
                    q = q->next;
                    qsize--;
                }
                if (tail != NULL)
                    tail->next = e;
                else
                    list = e;
                tail = e;
            }
            p = q;
        }
        tail->next = NULL;
        if (merges <= 1)
            break;
        k *= 2;
    }
    list_relink(head, list);
}

void mio__wheel_advance(struct mio__wheel *w, uint64_t now)
{
    struct mio__tlink todo;

    tl_init(&todo);
    if (now > w->now) {
        for (unsigned l = 0; l < MIO__WHEEL_LEVELS; l++) {
            unsigned shift = l * MIO__WHEEL_BITS;
            uint64_t old_l = w->now >> shift, new_l = now >> shift, diff, mask;
            if (old_l == new_l)
                break; /* higher levels did not move either */
            diff = new_l - old_l;
            /* Slots entered since the last advance: old_l + 1 .. new_l, modulo 64. */
            if (diff >= MIO__WHEEL_SLOTS)
                mask = UINT64_MAX;
            else
                mask = rotl64((1ull << diff) - 1, (unsigned)((old_l + 1) & SLOT_MASK));
            mask &= w->occupied[l];
            while (mask != 0) {
                unsigned s = (unsigned)__builtin_ctzll(mask);
                mask &= mask - 1;
                tl_splice_tail(&todo, &w->slots[l * MIO__WHEEL_SLOTS + s]);
                w->occupied[l] &= ~(1ull << s);
            }
        }
        if ((w->now >> TOP_BITS) != (now >> TOP_BITS))
            tl_splice_tail(&todo, &w->overflow);
        w->now = now;
        while (!tl_empty(&todo)) {
            struct mio__timer *t = timer_of(todo.next);
            tl_del(&t->link);
            file_timer(w, t);
        }
    }
    for (struct mio__tlink *l = w->due.next; l != &w->due; l = l->next)
        timer_of(l)->where = WHERE_FIRING;
    tl_splice_tail(&w->firing, &w->due);
    sort_list(&w->firing);
}

struct mio__timer *mio__wheel_pop(struct mio__wheel *w)
{
    struct mio__timer *t;

    if (tl_empty(&w->firing))
        return NULL;
    t = timer_of(w->firing.next);
    tl_del(&t->link);
    t->where = WHERE_NONE;
    t->state = MIO__TIMER_FIRING;
    return t;
}

void mio__wheel_fired(struct mio__wheel *w, struct mio__timer *t)
{
    if (t->repeat == 0 || t->cancelled) {
        node_put(w, t);
        return;
    }
    /* As libuv does: the next period starts when this one fired, so two runs of a repeating
     * timer are never closer than `repeat` (at the price of drift when the reactor is late). */
    t->deadline = mio__sat_add(w->now, t->repeat);
    t->seq = w->seq++;
    t->state = MIO__TIMER_PENDING;
    file_timer(w, t);
}

uint64_t mio__wheel_next(const struct mio__wheel *w)
{
    uint64_t best = UINT64_MAX;

    if (!tl_empty(&w->due) || !tl_empty(&w->firing))
        return w->now;
    for (unsigned l = 0; l < MIO__WHEEL_LEVELS; l++) {
        unsigned shift = l * MIO__WHEEL_BITS;
        uint64_t cur, at;
        unsigned k;
        if (w->occupied[l] == 0)
            continue;
        /* The first occupied slot after the current digit; the current one is always empty. */
        cur = w->now >> shift;
        k = (unsigned)__builtin_ctzll(
                rotr64(w->occupied[l], (unsigned)((cur + 1) & SLOT_MASK))) + 1;
        at = (cur + k) << shift;
        if (at < best)
            best = at;
    }
    if (!tl_empty(&w->overflow)) {
        uint64_t at = ((w->now >> TOP_BITS) + 1) << TOP_BITS;
        if (at < best)
            best = at;
    }
    return best;
}
