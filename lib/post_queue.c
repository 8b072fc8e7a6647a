/* The reactor's cross-thread task queue (see internal/post_queue.h). */
#include <errno.h>
#include <sched.h>

#include "internal/post_queue.h"

CK_RING_PROTOTYPE(mio__task, mio__task)

/* ThreadSanitizer cannot see ck's ordering (volatile accesses and standalone fences), so it would
 * not know that whatever a producer wrote before posting is visible to the task. The annotations
 * state exactly the order the ring provides: a push releases, the pop that returns it acquires. */
#if defined(__SANITIZE_THREAD__)
#define MIO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MIO_TSAN 1
#endif
#endif
#ifdef MIO_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TSAN_RELEASE(p) __tsan_release(p)
#define TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define TSAN_RELEASE(p) ((void)(p))
#define TSAN_ACQUIRE(p) ((void)(p))
#endif

int mio__post_queue_init(struct mio__post_queue *q, mio__arena arena, unsigned capacity)
{
    unsigned slots = 2;

    if (capacity == 0 || capacity > (1u << 30))
        return -EINVAL;
    while (slots - 1 < capacity)
        slots <<= 1;
    q->buf = mio__calloc(arena, slots, sizeof *q->buf);
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
    struct mio__task *slot;
    unsigned ticket, spins = 0;

    TSAN_RELEASE(q);
    slot = ck_ring_enqueue_reserve_mpsc_mio__task(&q->ring, q->buf, &ticket);
    if (slot == NULL)
        return -EAGAIN;
    slot->fn = fn;
    slot->arg = arg;
    /* ck commits reservations in ticket order and spins without yielding while an earlier
     * producer has not committed yet. With more producers than CPUs, that earlier producer may
     * be preempted and the spinners then burn whole time slices (a convoy that slowed a
     * 4-producer test on 2 CPUs to ~100 tasks/s). So wait for our turn here, yielding after a
     * short spin; ck's commit below then finds it is our turn and publishes. */
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
    if (!ck_ring_dequeue_mpsc_mio__task(&q->ring, q->buf, out))
        return false;
    TSAN_ACQUIRE(q);
    return true;
}

unsigned mio__post_queue_len(const struct mio__post_queue *q)
{
    return ck_ring_size(&q->ring);
}

unsigned mio__post_queue_capacity(const struct mio__post_queue *q)
{
    return ck_ring_capacity(&q->ring) - 1;
}
