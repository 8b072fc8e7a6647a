/* The reactor's cross-thread task queue: a bounded MPSC ring (Concurrency Kit ck_ring, typed
 * entries {fn, arg} carried by value). Any thread pushes; only the reactor's thread pops.
 * Per producer, tasks come out in the order they went in. A full ring refuses (-EAGAIN): a task is
 * never dropped silently. */
#ifndef MIO_INTERNAL_POST_QUEUE_H
#define MIO_INTERNAL_POST_QUEUE_H

#include <stdbool.h>
#include <ck_ring.h>
#include <mio/reactor.h>
#include "mem.h"

struct mio__task {
    mio_task_fn fn;
    void *arg;
};

struct mio__post_queue {
    struct ck_ring ring; /* ck pads producer and consumer counters onto their own lines */
    void *buf;           /* the ring's entries (private to post_queue.c) */
};

/* Sizes the ring to the next power of two above `capacity`, so at least `capacity` tasks fit
 * (ck_ring keeps one slot empty). Returns 0, -EINVAL (capacity 0 or above 2^30), -ENOMEM. */
int mio__post_queue_init(struct mio__post_queue *q, mio__arena arena, unsigned capacity);
void mio__post_queue_destroy(struct mio__post_queue *q, mio__arena arena);
/* Any thread. Returns 0 or -EAGAIN (full). The push is published (store fence inside ck) before
 * it returns. */
int mio__post_queue_push(struct mio__post_queue *q, mio_task_fn fn, void *arg);
/* Consumer only. Returns true and *out, or false when empty. */
bool mio__post_queue_pop(struct mio__post_queue *q, struct mio__task *out);
/* Any thread (a snapshot): tasks queued. */
unsigned mio__post_queue_len(const struct mio__post_queue *q);

#endif
