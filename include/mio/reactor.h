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

/* How a reactor waits and does its conns' I/O (mio_reactor_opts.backend, mio_pool_opts.backend).
 * DEFAULT: what the MIO_BACKEND environment variable names ("epoll", "io_uring" or "auto"; read
 * once per process), else EPOLL. EPOLL: epoll readiness, one recv/send per message. IO_URING: one
 * io_uring_enter per iteration that submits the iteration's work and waits; conns receive on the
 * ring into the reactor's provided buffers (handlers added with mio_reactor_add keep their epoll
 * semantics: the ring watches the reactor's epoll fd). Creating it fails where io_uring cannot run
 * (-EOPNOTSUPP: built without liburing, or a kernel without provided buffer rings; -EPERM:
 * kernel.io_uring_disabled or a seccomp filter; -ENOSYS). AUTO:
 * IO_URING where it runs, else EPOLL (also for a reactor whose own ring cannot be set up: out of
 * memory or fds). mio_reactor_backend says which one a reactor got. On IO_URING a conn's receive
 * is multishot where the kernel can limit one (Linux 6.17), else single-shot; the
 * MIO_URING_RECV environment variable (read once per process) set to "single" keeps it
 * single-shot, "multishot" or unset is the default, anything else makes creating an io_uring
 * reactor (IO_URING or AUTO) fail with -EINVAL. */
enum {
    MIO_BACKEND_DEFAULT = 0,
    MIO_BACKEND_EPOLL = 1,
    MIO_BACKEND_IO_URING = 2,
    MIO_BACKEND_AUTO = 3
};

/* Options; NULL or zero-filled means defaults. The struct has a fixed size (64 bytes on 64-bit
 * targets): options to come take their room from `reserved`, which must be zero (mio_reactor_new
 * returns -EINVAL otherwise). So a program built against this header keeps working with a newer
 * library, and an older library refuses an option it does not know instead of ignoring it. */
typedef struct mio_reactor_opts {
    unsigned events_capacity; /* events harvested per iteration (at most 2^24); 0: 1024 */
    unsigned post_capacity;   /* tasks the cross-thread queue holds at least (at most 2^30; the
                                 ring is the next power of two above it); 0: 65535 */
    int use_arena;            /* with jemalloc: 0 default (own arena), -1 use the default arena */
    int backend;              /* MIO_BACKEND_*; 0: MIO_BACKEND_DEFAULT */
    uint64_t reserved[6];     /* zero */
} mio_reactor_opts;

/* Counters; read with mio_reactor_stats from any thread (relaxed). The struct has a fixed size
 * (256 bytes): later versions add counters by taking them from `reserved`, so a program built
 * against this header keeps working with a newer library (it sees zeros there) and the other way
 * round. There is no typedef: the name mio_reactor_stats is the function's, so (as with
 * `struct stat` and stat()) callers write `struct mio_reactor_stats st; mio_reactor_stats(r, &st);`.
 * mio_worker_stats (pool.h) has the same tag and, since no function takes that name, a typedef. */
struct mio_reactor_stats {
    uint64_t iterations, events, handlers_run, tasks_run, timers_fired, wakes_performed,
        wakes_elided, zero_event_wakeups;
    uint64_t handlers;        /* handlers currently added */
    uint64_t timers;          /* timers currently pending */
    uint64_t stale_events;    /* harvested events dropped because their token was removed */
    uint64_t sleeps;          /* times the reactor published SLEEPING before a wait with a
                                 non-zero timeout; each admits at most one performed wake, so
                                 wakes_performed <= sleeps */
    uint64_t tasks_queued;    /* posted tasks waiting now (a snapshot) */
    uint64_t backend;         /* MIO_BACKEND_EPOLL or MIO_BACKEND_IO_URING */
    uint64_t ring_enters;     /* io_uring backend: io_uring_enter calls (0 with epoll) */
    uint64_t ring_completions; /* io_uring backend: completions reaped (0 with epoll) */
    uint64_t ring_sends;      /* io_uring backend: sends submitted on the ring (0 with epoll) */
    uint64_t ring_sends_nocopy; /* ... of them sent straight from the receive buffer the bytes
                                   came in (a write, inside on_read, of what on_read was given:
                                   no copy into the stage) */
    uint64_t ring_recv_arms;  /* io_uring backend: receives armed on the ring (0 with epoll) */
    uint64_t ring_recv_multishot; /* io_uring backend: 1 when this reactor's receives are
                                     multishot (each arm serves many completions), else 0 */
    uint64_t reserved[12];    /* zero; room for counters to come */
};
/* Field notes: iterations counts poll calls; events every harvested event (the internal waker's
 * too); handlers_run / tasks_run / timers_fired the callbacks run; wakes_performed the eventfd
 * writes made by posts, stops and internal producers (not the ring messages a pool's acceptor
 * wakes io_uring workers with: wakes_ring in mio_pool_stats), wakes_elided the ones skipped
 * because the reactor was awake or another producer had already woken it; zero_event_wakeups the
 * waits with a non-zero timeout that returned no event (timer expiry, or a timer-wheel re-file). */

/* Creates a reactor (poll, events, waker, slab, timers, task queue, 64 KiB read buffer); with
 * jemalloc and use_arena 0 it allocates all of that from its own arena. Uses two fds (epoll,
 * eventfd), three with the io_uring backend (its ring; the provided buffers, 4 MiB of address
 * space, are backed by memory only as receives touch them). Returns 0 and *out, -EINVAL (NULL
 * out, bad option, or MIO_BACKEND set to an unknown name), -ENOMEM, -EMFILE, or the io_uring
 * backend's refusal (see MIO_BACKEND_IO_URING). Any thread. */
MIO_EXTERN int mio_reactor_new(const mio_reactor_opts *opts, mio_reactor **out);
/* Frees everything the reactor owns; tasks still queued are dropped without running, pending
 * timers without firing; fds added with mio_reactor_add stay the caller's (their registrations
 * go with the epoll fd). mio_conns still open are closed first: each on_close runs once, reason
 * -ECANCELED (also for a closed conn still flushing; a conn whose on_close is merely pending keeps
 * its reason), and their fds are closed. NULL accepted;
 * a reactor owned by a pool (mio_pool_worker) is ignored. Not while the reactor runs, not from a
 * callback, and only once no other thread can still post or stop it. */
MIO_EXTERN void mio_reactor_free(mio_reactor *r);
/* Registers fd (edge-triggered) with interest and handler fn(r, token, ev, arg). Returns 0 and
 * *out (may be NULL; the token: slot index | generation << 32, never 0), -EINVAL (interest 0 or
 * unknown bits, NULL fn), -EEXIST (fd already in this reactor), -EBADF, -EPERM, -ENOMEM. The fd
 * stays the caller's: remove it before closing it. Safe inside any callback; a handler added
 * during a batch only sees events of later polls. */
MIO_EXTERN int mio_reactor_add(mio_reactor *r, int fd, mio_interest interest, mio_io_fn fn,
                               void *arg, mio_token *out);
/* Changes the interest of a token. Returns 0, -EINVAL (interest 0 or unknown bits), -ENOENT
 * (stale or unknown token: the slot's new owner is never touched), -EBADF (the fd was closed;
 * if its number now belongs to another fd added here, that fd's registration is not touched). */
MIO_EXTERN int mio_reactor_modify(mio_reactor *r, mio_token token, mio_interest interest);
/* Deregisters a token; the fd stays the caller's. An event for it already harvested in the current
 * batch is dropped, never dispatched (counted in stale_events), even when a later add in the same
 * batch reuses the slot (and the fd number). Returns 0 or -ENOENT (stale or unknown: the slot's
 * new owner is never touched). Safe inside any callback, including the token's own handler.
 * If the fd was already closed the token is released all the same (0), and when its number now
 * belongs to another fd added here, that fd stays registered. */
MIO_EXTERN int mio_reactor_remove(mio_reactor *r, mio_token token);
/* Runs iterations until mio_reactor_stop (consuming that stop). Signals (-EINTR) are waited
 * through. Returns 0, -EBUSY (called from a callback of this reactor), or -errno when polling
 * fails. */
MIO_EXTERN int mio_reactor_run(mio_reactor *r);
/* One iteration: waits at most timeout_ms (-1: until something happens; 0: no wait; shortened
 * to the nearest timer, and no wait while tasks are queued or a stop is pending), dispatches the
 * events, runs the tasks queued when the iteration began, then the due timers. Returns the number
 * of handlers + tasks + timers run, or -errno: -EINVAL (timeout below -1), -EBUSY (called from a
 * callback of this reactor), -EINTR when a signal interrupts the wait. */
MIO_EXTERN int mio_reactor_run_once(mio_reactor *r, int timeout_ms);
/* Any thread: makes mio_reactor_run return after the current iteration (wakes it if asleep).
 * A stop before run makes the next run return at once. Returns 0, -EINVAL, or -EPERM for a
 * pool's worker reactor (stop the pool: a worker that left its loop would still be handed
 * connections). */
MIO_EXTERN int mio_reactor_stop(mio_reactor *r);
/* Any thread (the reactor's own too): queues fn(r, arg) to run on the reactor's thread. Lock-free
 * (a Concurrency Kit MPSC ring). FIFO per producer; never silently lost: returns 0, or -EAGAIN
 * when the bounded queue is full (retry later), -EINVAL for NULL fn. Wakes the reactor only if it
 * sleeps and nobody woke it yet (wake elision). Whatever the poster wrote before posting is
 * visible to fn. A task posted from a task runs in the next iteration. */
MIO_EXTERN int mio_reactor_post(mio_reactor *r, mio_task_fn fn, void *arg);
/* Starts a timer due after_ms from mio_reactor_now_ms (0: at the next timer run, never inside
 * this call), repeating when repeat_ms > 0 (each period counts from the run that fired it, so two
 * runs are never closer than repeat_ms). Never fires before its deadline in reactor time; due
 * timers fire in deadline order, equal deadlines in start order; after_ms near UINT64_MAX
 * saturates (never fires). O(1); timer nodes come from a per-reactor pool. Returns 0 and *out
 * (may be NULL; ids are never 0), -EINVAL (NULL fn), -ENOMEM. Safe in any callback. */
MIO_EXTERN int mio_reactor_timer_start(mio_reactor *r, uint64_t after_ms, uint64_t repeat_ms,
                                       mio_timer_fn fn, void *arg, mio_timer_id *out);
/* Cancels a timer in O(1). Returns 0, or -ENOENT once it fired (one-shot) or was cancelled. A
 * repeat timer cancelled in its own callback stops (0); a one-shot timer cancelling itself in
 * its own callback gets -ENOENT. A timer due in the same run may be cancelled by an earlier
 * callback and then does not fire. */
MIO_EXTERN int mio_reactor_timer_cancel(mio_reactor *r, mio_timer_id id);
/* Monotonic milliseconds (CLOCK_MONOTONIC), read when the wait returns and again before the
 * timers run if any callback ran in between. */
MIO_EXTERN uint64_t mio_reactor_now_ms(const mio_reactor *r);
/* A pointer the application hangs off the reactor (per-worker state of a pool, for instance, set
 * in the pool's on_worker_start hook); NULL until set. The reactor never touches it. */
MIO_EXTERN void mio_reactor_set_data(mio_reactor *r, void *data);
MIO_EXTERN void *mio_reactor_data(const mio_reactor *r);
/* Any thread: the backend the reactor runs, MIO_BACKEND_EPOLL or MIO_BACKEND_IO_URING (never
 * DEFAULT or AUTO: those are resolved when it is created); -EINVAL for NULL. */
MIO_EXTERN int mio_reactor_backend(const mio_reactor *r);
/* Any thread: copies the counters (relaxed reads). Returns 0 or -EINVAL. */
MIO_EXTERN int mio_reactor_stats(const mio_reactor *r, struct mio_reactor_stats *out);

MIO_END_DECLS

#endif
