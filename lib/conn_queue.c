/* Write queue of mio_conn: copied bytes in arena chunks, drained through writev (see
 * internal/conn_queue.h). The conn's reactor thread only. */
#include <errno.h>
#include <string.h>
#include "internal/conn_queue.h"

/* Small writes share 16 KiB chunks; a large remainder gets one chunk of its own size (capped so
 * the offsets fit in 32 bits), so a 64 MiB write costs one allocation, not thousands. The first
 * chunk of an empty queue is only as large as its bytes (1 KiB at least): most queues hold one
 * short write for one round trip (a write made while connecting, a reply the socket could not
 * take), and a 16 KiB block for each would stay in the allocator's dirty pages after it. */
#define WQ_CHUNK_FIRST (1u * 1024u)
#define WQ_CHUNK_MIN (16u * 1024u)
#define WQ_CHUNK_MAX (1u << 30)

struct mio__wq_chunk {
    struct mio__wq_chunk *next;
    uint32_t start; /* first unconsumed byte */
    uint32_t end;   /* one past the last byte written */
    uint32_t cap;
    char data[];
};

static struct mio__wq_chunk *wq_chunk_new(mio__arena arena, size_t want, bool first)
{
    size_t floor = (first && want < WQ_CHUNK_MIN / 2 ? WQ_CHUNK_FIRST : WQ_CHUNK_MIN) -
                   sizeof(struct mio__wq_chunk);
    size_t cap = want < floor ? floor : (want > WQ_CHUNK_MAX ? WQ_CHUNK_MAX : want);
    struct mio__wq_chunk *ch = mio__alloc(arena, sizeof(*ch) + cap);

    if (ch == NULL)
        return NULL;
    ch->next = NULL;
    ch->start = ch->end = 0;
    ch->cap = (uint32_t)cap;
    return ch;
}

int mio__wq_append(struct mio__wq *q, mio__arena arena, const struct iovec *iov, int iovcnt,
                   size_t skip)
{
    size_t left = 0;

    for (int i = 0; i < iovcnt; i++)
        left += iov[i].iov_len;
    left = left > skip ? left - skip : 0;

    for (int i = 0; i < iovcnt && left > 0; i++) {
        const char *src = iov[i].iov_base;
        size_t len = iov[i].iov_len;

        if (skip >= len) {
            skip -= len;
            continue;
        }
        src += skip;
        len -= skip;
        skip = 0;
        while (len > 0) {
            struct mio__wq_chunk *t = q->tail;
            size_t room, n;

            if (t == NULL || t->end == t->cap) {
                t = wq_chunk_new(arena, left, q->head == NULL);
                if (t == NULL)
                    return -ENOMEM;
                if (q->tail != NULL)
                    q->tail->next = t;
                else
                    q->head = t;
                q->tail = t;
            }
            room = t->cap - t->end;
            n = len < room ? len : room;
            memcpy(t->data + t->end, src, n);
            t->end += (uint32_t)n;
            q->bytes += n;
            src += n;
            len -= n;
            left -= n;
        }
    }
    return 0;
}

int mio__wq_peek(const struct mio__wq *q, struct iovec *iov, int max)
{
    int n = 0;

    for (const struct mio__wq_chunk *ch = q->head; ch != NULL && n < max; ch = ch->next) {
        iov[n].iov_base = (void *)(ch->data + ch->start);
        iov[n].iov_len = ch->end - ch->start;
        n++;
    }
    return n;
}

void mio__wq_consume(struct mio__wq *q, mio__arena arena, size_t n)
{
    while (n > 0) {
        struct mio__wq_chunk *ch = q->head;
        size_t avail = ch->end - ch->start;

        if (n < avail) {
            ch->start += (uint32_t)n;
            q->bytes -= n;
            return;
        }
        n -= avail;
        q->bytes -= avail;
        q->head = ch->next;
        if (q->head == NULL)
            q->tail = NULL;
        mio__free(arena, ch);
    }
}

void mio__wq_clear(struct mio__wq *q, mio__arena arena)
{
    struct mio__wq_chunk *ch = q->head;

    while (ch != NULL) {
        struct mio__wq_chunk *next = ch->next;

        mio__free(arena, ch);
        ch = next;
    }
    mio__wq_init(q);
}
