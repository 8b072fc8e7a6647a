/* The reactor's cross-thread task queue (see internal/post_queue.h): any thread pushes, the
 * reactor's thread pops. */
#include <errno.h>
#include <sched.h>

#include "internal/post_queue.h"
#include "internal/pr.h"

/* A ring entry. The producer writes it in place (reserve / write / commit) through ck_pr stores,
 * so the function pointer travels as an integer. */
struct mio__ring_task {
    uint64_t fn;
    void *arg;
};
_Static_assert(sizeof(uintptr_t) <= sizeof(uint64_t), "function pointers fit in 64 bits");

CK_RING_PROTOTYPE(mio__ring_task, mio__ring_task)

int mio__post_queue_init(struct mio__post_queue *q, mio__arena arena, unsigned capacity)
{
    unsigned slots = 2;

    if (capacity == 0 || capacity > (1u << 30))
        return -EINVAL;
    while (slots - 1 < capacity)
        slots <<= 1;
    q->buf = mio__calloc(arena, slots, sizeof(struct mio__ring_task));
    if (q->buf == NULL)
        return -ENOMEM;
    ck_ring_init(&q->ring, slots);
    return 0;
}

void mio__post_queue_destroy(struct mio__post_queue *q, mio__arena arena)
{
    mio__free(arena, q->buf);
    q->buf = NULL;
}

int mio__post_queue_push(struct mio__post_queue *q, mio_task_fn fn, void *arg)
{
    struct mio__ring_task *slot;
    unsigned ticket, spins = 0;

    /* ThreadSanitizer cannot see ck's ordering (volatile accesses and standalone fences), so it
     * would not know that whatever a producer wrote before posting is visible to the task. The
     * annotations state exactly the order the ring provides: a push releases, the pop that
     * returns it acquires. */
    MIO_TSAN_RELEASE(q);
    slot = ck_ring_enqueue_reserve_mpsc_mio__ring_task(&q->ring, q->buf, &ticket);
    if (slot == NULL)
        return -EAGAIN;
    /* ck_pr stores: the consumer reads the entry once the commit below publishes it. */
    ck_pr_store_64(&slot->fn, (uint64_t)(uintptr_t)fn);
    ck_pr_store_ptr(&slot->arg, arg);
    /* ck commits reservations in ticket order and spins without yielding while an earlier
     * producer has not committed yet. With more producers than CPUs, that earlier producer may
     * be preempted, and every producer queued behind it would then spin away whole time slices.
     * So wait for our turn here, yielding after a short spin; ck's commit below then finds it is
     * our turn and publishes. */
    /* ck has no non-spinning "is it my turn" test: read p_tail, the field its commit spins on. */
    while (ck_pr_load_uint(&q->ring.p_tail) != ticket) {
        if (++spins < 128)
            ck_pr_stall();
        else
            sched_yield();
    }
    ck_ring_enqueue_commit_mpsc(&q->ring, ticket);
    return 0;
}

bool mio__post_queue_pop(struct mio__post_queue *q, struct mio__task *out)
{
    struct mio__ring_task e;

    if (!ck_ring_dequeue_mpsc_mio__ring_task(&q->ring, q->buf, &e))
        return false;
    MIO_TSAN_ACQUIRE(q); /* pairs with the push's release */
    out->fn = (mio_task_fn)(uintptr_t)e.fn;
    out->arg = e.arg;
    return true;
}

unsigned mio__post_queue_len(const struct mio__post_queue *q)
{
    return ck_ring_size(&q->ring);
}
