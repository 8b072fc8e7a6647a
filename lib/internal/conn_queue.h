/* A connection's write queue: bytes copied from the caller, kept in a singly linked list of chunks
 * allocated from the reactor's arena, handed to writev as iovecs. An empty queue holds no memory.
 * Reactor's thread only. */
#ifndef MIO_INTERNAL_CONN_QUEUE_H
#define MIO_INTERNAL_CONN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "mem.h"

struct mio__wq_chunk;

struct mio__wq {
    struct mio__wq_chunk *head, *tail;
    size_t bytes; /* queued, not yet consumed */
};

static inline void mio__wq_init(struct mio__wq *q)
{
    q->head = q->tail = NULL;
    q->bytes = 0;
}

static inline bool mio__wq_is_empty(const struct mio__wq *q)
{
    return q->head == NULL;
}

/* Copies the bytes of iov[0..iovcnt) that follow the first `skip` bytes to the end of the queue.
 * Returns 0 or -ENOMEM (then a prefix may have been queued: the caller treats it as fatal). */
int mio__wq_append(struct mio__wq *q, mio__arena arena, const struct iovec *iov, int iovcnt,
                   size_t skip);
/* Fills at most max iovecs with the queued bytes in order. Returns the number filled. */
int mio__wq_peek(const struct mio__wq *q, struct iovec *iov, int max);
/* Drops the first n bytes (n <= q->bytes), freeing the chunks emptied. */
void mio__wq_consume(struct mio__wq *q, mio__arena arena, size_t n);
/* Frees every chunk. */
void mio__wq_clear(struct mio__wq *q, mio__arena arena);

#endif
