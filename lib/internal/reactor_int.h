/* What conn.c and pool.c may use of a reactor beyond the public API. Reactor's thread only,
 * unless a function says "any thread". */
#ifndef MIO_INTERNAL_REACTOR_INT_H
#define MIO_INTERNAL_REACTOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mio/reactor.h>
#include "mem.h"

/* Intrusive doubly linked list node/head (head->next == head when empty). */
struct mio__list {
    struct mio__list *prev, *next;
};

/* The reactor's arena: allocate per-reactor objects (conns, write-queue chunks) from it. */
mio__arena mio__reactor_arena(const mio_reactor *r);

/* The reactor's shared read buffer (64 KiB), valid for the reactor's life. *len gets its size. */
void *mio__reactor_read_buffer(mio_reactor *r, size_t *len);

/* An extra cross-thread input, e.g. the pool's hand-off ring. `pending` is called (from the
 * reactor's thread) after the reactor has published SLEEPING and before it blocks: when it returns
 * true, the reactor does not block. `drain` runs every iteration in which pending returned true or
 * the waker fired. At most one source per reactor; set it before the reactor runs. */
struct mio__reactor_source {
    bool (*pending)(void *arg);
    void (*drain)(mio_reactor *r, void *arg);
    void *arg;
};
int mio__reactor_set_source(mio_reactor *r, const struct mio__reactor_source *src);

/* Any thread, after publishing work the reactor will find (with a release store or stronger):
 * writes the eventfd only if the reactor published SLEEPING and this caller wins wake_pending;
 * otherwise counts an elided wake. Returns true when it made the syscall. */
bool mio__reactor_wake(mio_reactor *r);

/* The list of open mio_conns on this reactor (conn.c links and unlinks its nodes here). */
struct mio__list *mio__reactor_conns(mio_reactor *r);
/* Any thread (relaxed): number of mio_conns open on the reactor; conn.c adjusts it. */
uint64_t mio__reactor_conn_count(const mio_reactor *r);
void mio__reactor_conn_count_add(mio_reactor *r, int64_t delta);

/* Refreshes the cached clock (after a long callback). */
void mio__reactor_update_now(mio_reactor *r);

/* Conn-side helpers the pool uses at stop (implemented in conn.c): closes every conn on the reactor
 * once flushed; conns still unflushed at deadline_ms (reactor time) close with -ECANCELED.
 * Returns the number of conns still open (0: done). */
int mio__conn_close_all(mio_reactor *r, uint64_t deadline_ms);

#endif
