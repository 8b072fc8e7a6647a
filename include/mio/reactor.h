/* Reactor: one thread's event loop — token dispatch through a slab of handlers, a timer wheel and a
 * queue of tasks posted from any thread.
 *
 * The reactor's own thread is whichever thread runs mio_reactor_run / mio_reactor_run_once (it may
 * have been created elsewhere). Every function is for that thread unless marked "any thread". */
#ifndef MIO_REACTOR_H
#define MIO_REACTOR_H

#include <mio/common.h>
#include <mio/event.h>
#include <mio/interest.h>
#include <mio/token.h>

MIO_BEGIN_DECLS

typedef struct mio_reactor mio_reactor;
typedef uint64_t mio_timer_id;

typedef void (*mio_io_fn)(mio_reactor *r, mio_token token, const mio_event *ev, void *arg);
typedef void (*mio_task_fn)(mio_reactor *r, void *arg);
typedef void (*mio_timer_fn)(mio_reactor *r, mio_timer_id id, void *arg);

/* Options; NULL or zero-filled means defaults. Later versions may add fields at the end. */
typedef struct mio_reactor_opts {
    unsigned events_capacity; /* events harvested per iteration; 0: 1024 */
    unsigned post_capacity;   /* tasks the cross-thread queue holds (power of two); 0: 65536 */
    int use_arena;            /* with jemalloc: 0 default (own arena), -1 use the default arena */
} mio_reactor_opts;

/* Counters; read with mio_reactor_stats from any thread (relaxed). More may follow.
 * There is no typedef: the name mio_reactor_stats is the function's, so (as with `struct stat` and
 * stat()) callers write `struct mio_reactor_stats st; mio_reactor_stats(r, &st);`. */
struct mio_reactor_stats {
    uint64_t iterations, events, handlers_run, tasks_run, timers_fired, wakes_performed,
        wakes_elided, zero_event_wakeups;
    uint64_t handlers;        /* handlers currently added */
    uint64_t timers;          /* timers currently pending */
    uint64_t stale_events;    /* harvested events dropped because their token was removed */
};

/* Creates a reactor (poll, events, waker, slab, timers, task queue).
 * Returns 0 and *out, -EINVAL, -ENOMEM, -EMFILE. Any thread. */
MIO_EXTERN int mio_reactor_new(const mio_reactor_opts *opts, mio_reactor **out);
/* Frees everything the reactor owns; tasks still queued are dropped without running; fds added
 * with mio_reactor_add stay the caller's. NULL accepted. Not while the reactor runs. */
MIO_EXTERN void mio_reactor_free(mio_reactor *r);
/* Registers fd with interest and handler fn(arg). Returns 0 and *out (the token: slot index |
 * generation << 32), -EINVAL (interest 0, NULL fn), -EEXIST (fd already in this reactor), -EBADF,
 * -EPERM, -ENOMEM. The fd stays the caller's. */
MIO_EXTERN int mio_reactor_add(mio_reactor *r, int fd, mio_interest interest, mio_io_fn fn,
                               void *arg, mio_token *out);
/* Changes the interest of a token. Returns 0, -EINVAL, -ENOENT (stale or unknown token). */
MIO_EXTERN int mio_reactor_modify(mio_reactor *r, mio_token token, mio_interest interest);
/* Deregisters a token; the fd stays the caller's. An event for it already harvested in the current
 * batch is dropped, never dispatched. Returns 0 or -ENOENT (stale or unknown: the slot's new owner
 * is never touched). Safe inside any handler, including the token's own. */
MIO_EXTERN int mio_reactor_remove(mio_reactor *r, mio_token token);
/* Runs iterations until mio_reactor_stop. Returns 0, or -errno when polling fails. */
MIO_EXTERN int mio_reactor_run(mio_reactor *r);
/* One iteration: waits at most timeout_ms (-1: until something happens; shortened to the nearest
 * timer), dispatches events, runs tasks and due timers. Returns the number of handlers + tasks +
 * timers run, or -errno (-EINTR when a signal interrupts the wait). */
MIO_EXTERN int mio_reactor_run_once(mio_reactor *r, int timeout_ms);
/* Any thread: makes mio_reactor_run return after the current iteration (wakes it if asleep).
 * A stop before run makes the next run return at once. Returns 0 or -errno. */
MIO_EXTERN int mio_reactor_stop(mio_reactor *r);
/* Any thread: queues fn(r, arg) to run on the reactor's thread. FIFO per producer; never silently
 * lost: returns 0, or -EAGAIN when the bounded queue is full, -EINVAL for NULL fn. Wakes the reactor
 * only if it sleeps (wake elision). */
MIO_EXTERN int mio_reactor_post(mio_reactor *r, mio_task_fn fn, void *arg);
/* Starts a timer due after_ms from mio_reactor_now_ms (0: at the next iteration), repeating every
 * repeat_ms when repeat_ms > 0. Never fires before its deadline in reactor time; equal deadlines
 * fire in start order. Returns 0 and *out (may be NULL), -EINVAL (NULL fn), -ENOMEM. */
MIO_EXTERN int mio_reactor_timer_start(mio_reactor *r, uint64_t after_ms, uint64_t repeat_ms,
                                       mio_timer_fn fn, void *arg, mio_timer_id *out);
/* Cancels a timer. Returns 0, or -ENOENT once it fired (one-shot) or was cancelled. A repeat timer
 * cancelled in its own callback stops. */
MIO_EXTERN int mio_reactor_timer_cancel(mio_reactor *r, mio_timer_id id);
/* Monotonic milliseconds, read once per iteration (and after long callbacks). */
MIO_EXTERN uint64_t mio_reactor_now_ms(const mio_reactor *r);
/* Any thread: copies the counters (relaxed reads). Returns 0 or -EINVAL. */
MIO_EXTERN int mio_reactor_stats(const mio_reactor *r, struct mio_reactor_stats *out);

MIO_END_DECLS

#endif
