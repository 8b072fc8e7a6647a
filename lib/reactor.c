/* Reactor: one thread's event loop (the API contract is include/mio/reactor.h; wake elision,
 * tokens and timers are drawn in docs/architecture.md). Reactor's thread, except where a function
 * says "any thread" (post, stop, the wake and awake checks, stats).
 *
 * An iteration: compute the wait (0 when tasks are queued or a timer is due, else the time to the
 * nearest timer), publish SLEEPING and re-check the inputs when it would block, wait, set RUNNING,
 * dispatch the harvested events through the slab, drain the extra source and the task queue,
 * then run the timers that are due.
 *
 * Wake elision. The state word is RUNNING, SLEEPING, or WOKEN (= still asleep, and one producer
 * has claimed the wake). Reactor, before a wait with a non-zero timeout: store SLEEPING; full
 * fence; re-check the task queue, the stop flag and the source; wait; store RUNNING (which also
 * ends WOKEN, before anything is drained). Producer (mio__reactor_wake): after publishing its
 * work, full fence; load the state; only if it is SLEEPING and a CAS SLEEPING -> WOKEN wins does
 * it write the eventfd. The claim (mio__reactor_wake_claim) and the write (mio__reactor_kick) are
 * also offered apart, so that a producer with an io_uring of its own can deliver a claimed wake
 * as a ring message instead (the pool's acceptor): the ring's wait then ends on a MIO__UD_WAKE
 * completion as it would on the eventfd, and wakes_performed counts only eventfd writes.
 * The two fences make it a Dekker handshake: either the producer sees SLEEPING, or the reactor's
 * re-check sees the work. Only the reactor stores SLEEPING, so every publication of SLEEPING
 * admits at most one performed wake: wakes_performed <= sleeps, always. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <mio/poll.h>
#include <mio/waker.h>

#include "internal/post_queue.h"
#include "internal/pr.h"
#include "internal/reactor_int.h"
#include "internal/slab.h"
#include "internal/sys.h"
#include "internal/timer_wheel.h"
#include "internal/uring.h"
#include "internal/waker_int.h"

_Static_assert(sizeof(mio_token) == 8, "reactor tokens need a 64-bit mio_token");
_Static_assert(sizeof(void *) != 8 || sizeof(mio_reactor_opts) == 64,
               "mio_reactor_opts has a fixed size (reactor.h)");
_Static_assert(sizeof(struct mio_reactor_stats) == 256,
               "struct mio_reactor_stats has a fixed size (reactor.h)");

#define DEFAULT_EVENTS 1024u
#define DEFAULT_POST 65535u /* a 65536-slot ring */
#define PAD 64

enum { STATE_RUNNING = 0, STATE_SLEEPING = 1, STATE_WOKEN = 2 };

struct mio_reactor {
    /* Reactor's thread only. */
    struct mio__slab slab;
    mio__arena arena;
    bool own_arena;
    bool in_loop; /* inside run / run_once: no nesting */
    bool in_run;  /* inside mio_reactor_run: another iteration follows this one */
    bool has_src;
    bool settle_req; /* mio__reactor_request_settle: the ext's settle runs at the next safe point */
    bool settling;
    uint64_t now;
    const struct mio__reactor_ext *ext;
    void *ext_ctx;
    void *user_data; /* mio_reactor_set_data */
    /* Which fd numbers a live slot holds (one bit each): a token whose fd was closed must never
     * act on the number's next owner (see fd_claim). */
    uint64_t *fd_bits;
    size_t fd_words;
    mio_poll *poll;
    mio_registry *reg;
    mio_events *events;
    mio_waker *waker;
    struct mio__uring *uring; /* the io_uring backend's ring; NULL with epoll */
    bool epoll_due;           /* io_uring backend: the epoll fd has (or may have) events */
    int ring_ran;             /* io_uring backend: completions handed to the ext this iteration */
    bool waited;              /* io_uring backend: this iteration's wait had a non-zero timeout */
    bool ring_woke;           /* io_uring backend: a wake came as a ring message (MIO__UD_WAKE) */
    struct mio__reactor_source src;
    mio__reactor_cqe_fn aux_fn; /* io_uring backend: completions tagged MIO__REACTOR_UD_AUX */
    void *aux_ctx;
    struct mio__post_queue tasks; /* ck_ring pads its own producer/consumer lines */
    char pad0[PAD];

    /* Written by other threads (internal/pr.h): the sleep state is CASed by producers, read on
     * every post. */
    unsigned state;
    unsigned stop;
    unsigned pool_owned; /* set before the pool's threads start, cleared after they are joined */
    char pad1[PAD];
    uint64_t wakes_performed, wakes_elided; /* atomic adds by producers */
    char pad2[PAD];

    /* Written by the reactor's thread only (single stores), read from any thread. */
    struct mio_reactor_stats st;
    char pad3[PAD];

    struct mio__wheel wheel;
};

/* A counter only the reactor writes: a plain read-modify-write published with a single store. */
static inline void ctr_add(uint64_t *c, uint64_t n)
{
    mio__pr_store_64(c, mio__pr_load_64(c) + n);
}

static inline void ctr_set(uint64_t *c, uint64_t v)
{
    mio__pr_store_64(c, v);
}

/* ------------------------------------------------------------------ life cycle */

/* The caller's options (NULL: all defaults) with every 0 replaced by its default. Returns 0 or
 * -EINVAL. */
static int reactor_opts_resolve(const mio_reactor_opts *opts, mio_reactor_opts *o)
{
    if (opts != NULL)
        *o = *opts;
    if (!mio__reserved_zero(o->reserved, sizeof o->reserved / sizeof o->reserved[0]))
        return -EINVAL;
    if (o->events_capacity == 0)
        o->events_capacity = DEFAULT_EVENTS;
    if (o->post_capacity == 0)
        o->post_capacity = DEFAULT_POST;
    if (o->post_capacity > (1u << 30) || o->events_capacity > (1u << 24) ||
        (o->use_arena != 0 && o->use_arena != -1) || o->backend < MIO_BACKEND_DEFAULT ||
        o->backend > MIO_BACKEND_AUTO)
        return -EINVAL;
    return 0;
}

static int env_backend;
static pthread_once_t env_backend_once = PTHREAD_ONCE_INIT;

static void env_backend_read(void)
{
    const char *v = getenv("MIO_BACKEND");

    if (v == NULL || *v == '\0' || strcmp(v, "epoll") == 0)
        env_backend = MIO_BACKEND_EPOLL;
    else if (strcmp(v, "io_uring") == 0 || strcmp(v, "uring") == 0)
        env_backend = MIO_BACKEND_IO_URING;
    else if (strcmp(v, "auto") == 0)
        env_backend = MIO_BACKEND_AUTO;
    else
        env_backend = -EINVAL;
}

/* The backend a reactor gets: DEFAULT becomes MIO_BACKEND's (read once), AUTO becomes IO_URING
 * where the probe succeeds. Returns EPOLL, IO_URING or -errno; *fallback: epoll is to be used
 * if this reactor's ring cannot be set up (AUTO). */
static int backend_choose(int want, bool *fallback)
{
    int err;

    if (want == MIO_BACKEND_DEFAULT) {
        (void)pthread_once(&env_backend_once, env_backend_read);
        want = env_backend;
        if (want < 0)
            return want;
    }
    *fallback = want == MIO_BACKEND_AUTO;
    if (want == MIO_BACKEND_EPOLL)
        return want;
    err = mio__uring_probe();
    if (err == 0)
        return MIO_BACKEND_IO_URING;
    return want == MIO_BACKEND_AUTO ? MIO_BACKEND_EPOLL : err;
}

int mio_reactor_new(const mio_reactor_opts *opts, mio_reactor **out)
{
    mio_reactor_opts o = {0};
    mio__arena arena = 0;
    bool own_arena = false, fallback = false;
    mio_reactor *r;
    int err, backend;

    if (out == NULL || reactor_opts_resolve(opts, &o) < 0)
        return -EINVAL;
    backend = backend_choose(o.backend, &fallback);
    if (backend < 0)
        return backend;
    if (o.use_arena == 0) {
        err = mio__arena_create(&arena);
        if (err < 0)
            return err;
        own_arena = arena != 0;
    }
    r = mio__calloc(arena, 1, sizeof *r);
    if (r == NULL) {
        err = -ENOMEM;
        goto err_arena;
    }
    r->arena = arena;
    r->own_arena = own_arena;
    r->now = mio__clock_ms(0);
    mio__slab_init(&r->slab, arena);
    mio__wheel_init(&r->wheel, arena, r->now);

    err = mio__post_queue_init(&r->tasks, arena, o.post_capacity);
    if (err < 0)
        goto err_free;
    err = mio_poll_new(&r->poll);
    if (err < 0)
        goto err_queue;
    r->reg = mio_poll_registry(r->poll);
    err = mio_events_new(o.events_capacity, &r->events);
    if (err < 0)
        goto err_poll;
    err = mio_waker_new(r->reg, MIO__WAKER_TOKEN, &r->waker);
    if (err < 0)
        goto err_events;
    if (backend == MIO_BACKEND_IO_URING) {
        err = mio__uring_new(mio_poll_fd(r->poll), &r->uring);
        if (err < 0 && (!fallback || err == -EINVAL)) /* -EINVAL: MIO_URING_RECV */
            goto err_waker;
        if (err < 0)
            backend = MIO_BACKEND_EPOLL; /* AUTO: the probe's ring ran, this one cannot */
    }
    ctr_set(&r->st.backend, (uint64_t)backend);
    if (r->uring != NULL)
        ctr_set(&r->st.ring_recv_multishot, mio__uring_recv_multishot(r->uring));
    *out = r;
    return 0;

err_waker:
    mio_waker_free(r->waker);
err_events:
    mio_events_free(r->events);
err_poll:
    mio_poll_free(r->poll);
err_queue:
    mio__post_queue_destroy(&r->tasks, arena);
err_free:
    mio__free(arena, r);
err_arena:
    if (own_arena)
        mio__arena_destroy(arena);
    return err;
}

void mio_reactor_free(mio_reactor *r)
{
    mio__arena arena;
    bool own_arena;

    if (r == NULL || mio__pr_load_uint(&r->pool_owned) != 0)
        return;
    if (r->ext != NULL) {
        r->in_loop = true; /* the ext's destroy may run user callbacks: no loop inside them */
        r->ext->destroy(r, r->ext_ctx);
        r->in_loop = false;
    }
    arena = r->arena;
    own_arena = r->own_arena;
    mio__uring_free(r->uring); /* cancels and reaps what is in flight */
    mio_waker_free(r->waker);
    mio_events_free(r->events);
    mio_poll_free(r->poll);
    mio__slab_destroy(&r->slab);
    mio__wheel_destroy(&r->wheel);
    mio__post_queue_destroy(&r->tasks, arena); /* queued tasks are dropped unrun */
    mio__free(arena, r->fd_bits);
    mio__free(arena, r);
    if (own_arena)
        mio__arena_destroy(arena);
}

/* ------------------------------------------------------------------ handlers */

/* Makes room for fd's bit in fd_bits. Returns 0 or -ENOMEM. */
static int fd_bits_reserve(mio_reactor *r, int fd)
{
    size_t need = (size_t)fd / 64u + 1u, words;
    uint64_t *bits;

    if (need <= r->fd_words)
        return 0;
    words = r->fd_words * 2u > need ? r->fd_words * 2u : need;
    if (words < 16u)
        words = 16u;
    bits = mio__realloc(r->arena, r->fd_bits, words * sizeof(*bits));
    if (bits == NULL)
        return -ENOMEM;
    memset(bits + r->fd_words, 0, (words - r->fd_words) * sizeof(*bits));
    r->fd_bits = bits;
    r->fd_words = words;
    return 0;
}

static bool fd_bit(const mio_reactor *r, int fd)
{
    return (size_t)fd / 64u < r->fd_words && (r->fd_bits[fd / 64] >> (fd % 64) & 1u) != 0;
}

static void fd_bit_set(mio_reactor *r, int fd, bool on)
{
    uint64_t m = (uint64_t)1 << (fd % 64);

    if (on)
        r->fd_bits[fd / 64] |= m;
    else
        r->fd_bits[fd / 64] &= ~m;
}

/* Slot idx has just registered fd, so the kernel held no registration of the number here: a live
 * slot that still names it registered an fd that was closed since without being removed. That
 * slot loses the number (fd -1), so its token can no longer modify or remove the new owner's
 * registration. A walk over the slab, but only on this misuse path. */
static void fd_claim(mio_reactor *r, int fd, uint32_t idx)
{
    if (!fd_bit(r, fd)) {
        fd_bit_set(r, fd, true);
        return;
    }
    for (uint32_t i = 0; i < r->slab.pages.n * MIO__SLAB_PAGE_SLOTS; i++) {
        struct mio__slot *slot = mio__slab_at(&r->slab, i);

        if (i != idx && slot->fn != MIO__SLAB_FN_FREE && slot->fd == fd)
            slot->fd = -1;
    }
}

/* A registration that reports nothing at all (not even errors or hang-ups): EPOLLET and no event
 * bit, which epoll treats as disabled, so the socket's wake-ups never reach the epoll set. */
#define PARKED_EVENTS ((uint32_t)EPOLLET)

/* How reactor_add registers the fd. */
enum add_how { ADD_INTEREST, ADD_PARKED, ADD_UNWATCHED };

/* Registers fd with interest, parked, or not at all (ADD_UNWATCHED, see reactor_int.h). */
static int reactor_add(mio_reactor *r, int fd, enum add_how how, mio_interest interest,
                       mio_io_fn fn, void *arg, mio_token *out)
{
    uint64_t token;
    uint32_t idx;
    int err;

    if (fd < 0)
        return -EBADF;
    err = fd_bits_reserve(r, fd);
    if (err < 0)
        return err;
    err = mio__slab_alloc(&r->slab, &idx);
    if (err < 0)
        return err;
    token = mio__slab_token(&r->slab, idx);
    err = mio__slab_set(&r->slab, idx, fn, arg, fd);
    if (err == 0 && how == ADD_INTEREST)
        err = mio_registry_register(r->reg, fd, (mio_token)token, interest);
    else if (err == 0 && how == ADD_PARKED)
        err = mio__epoll_ctl(mio_poll_fd(r->poll), EPOLL_CTL_ADD, fd, PARKED_EVENTS, token);
    if (err < 0) {
        mio__slab_release(&r->slab, idx);
        return err;
    }
    fd_claim(r, fd, idx);
    ctr_set(&r->st.handlers, r->slab.used);
    if (out != NULL)
        *out = (mio_token)token;
    return 0;
}

int mio_reactor_add(mio_reactor *r, int fd, mio_interest interest, mio_io_fn fn, void *arg,
                    mio_token *out)
{
    if (r == NULL || fn == NULL || interest == 0)
        return -EINVAL;
    return reactor_add(r, fd, ADD_INTEREST, interest, fn, arg, out);
}

int mio__reactor_add_unwatched(mio_reactor *r, int fd, mio_io_fn fn, void *arg, mio_token *out,
                               bool *watched)
{
    /* A number a live slot still names: only the kernel can tell a stale slot from a second
     * registration of a live fd, and it tells at an EPOLL_CTL_ADD. */
    *watched = fd >= 0 && fd_bit(r, fd);
    return reactor_add(r, fd, *watched ? ADD_PARKED : ADD_UNWATCHED, 0, fn, arg, out);
}

int mio__reactor_watch(mio_reactor *r, mio_token token, mio_interest interest)
{
    struct mio__slot *slot = mio__slab_lookup(&r->slab, token);

    if (slot == NULL)
        return -ENOENT;
    if (slot->fd < 0)
        return -EBADF;
    return mio_registry_register(r->reg, slot->fd, token, interest);
}

int mio__reactor_park(mio_reactor *r, mio_token token)
{
    struct mio__slot *slot = mio__slab_lookup(&r->slab, token);
    int err;

    if (slot == NULL)
        return -ENOENT;
    if (slot->fd < 0)
        return -EBADF;
    err = mio__epoll_ctl(mio_poll_fd(r->poll), EPOLL_CTL_MOD, slot->fd, PARKED_EVENTS, token);
    return err == -ENOENT ? -EBADF : err;
}

int mio_reactor_modify(mio_reactor *r, mio_token token, mio_interest interest)
{
    struct mio__slot *slot;
    int err;

    if (r == NULL || interest == 0)
        return -EINVAL;
    slot = mio__slab_lookup(&r->slab, token);
    if (slot == NULL)
        return -ENOENT;
    if (slot->fd < 0)
        return -EBADF; /* closed, and the number went to another handler (fd_claim) */
    err = mio_registry_reregister(r->reg, slot->fd, token, interest);
    /* The slot registered this number, so "not registered" means the fd was closed (and the
     * number is now unused, or used by a file this reactor does not watch). */
    if (err == -ENOENT)
        return -EBADF;
    return err < 0 ? err : 0;
}

int mio_reactor_remove(mio_reactor *r, mio_token token)
{
    struct mio__slot *slot;
    int err;

    if (r == NULL)
        return -EINVAL;
    slot = mio__slab_lookup(&r->slab, token);
    if (slot == NULL)
        return -ENOENT;
    if (slot->fd < 0)
        return mio__reactor_forget(r, token); /* the number has a new owner: leave it alone */
    err = mio_registry_deregister(r->reg, slot->fd);
    /* -EBADF / -ENOENT: the fd was closed before the remove, which already dropped the kernel's
     * registration; the token is released all the same. */
    if (err < 0 && err != -EBADF && err != -ENOENT)
        return err;
    return mio__reactor_forget(r, token);
}

int mio__reactor_forget(mio_reactor *r, mio_token token)
{
    struct mio__slot *slot = mio__slab_lookup(&r->slab, token);

    if (slot == NULL)
        return -ENOENT;
    if (slot->fd >= 0)
        fd_bit_set(r, slot->fd, false);
    /* Bumping the generation is what drops events of this token already harvested in the
     * current batch: the dispatcher compares generations before every call. The slot itself may
     * be reused at once (slab pages never move or shrink while the reactor lives). */
    mio__slab_release(&r->slab, (uint32_t)token);
    ctr_set(&r->st.handlers, r->slab.used);
    return 0;
}

/* ------------------------------------------------------------------ cross-thread */

bool mio__reactor_wake_claim(mio_reactor *r)
{
    /* Orders the caller's publication before the state load (the producer half of the Dekker
     * handshake described at the top of this file; pairs with the fence after the SLEEPING
     * store in wait_events). */
    mio__pr_fence_memory();
    if (mio__pr_load_uint(&r->state) == STATE_SLEEPING &&
        mio__pr_cas_uint(&r->state, STATE_SLEEPING, STATE_WOKEN))
        return true;
    mio__pr_add_64(&r->wakes_elided, 1);
    return false;
}

void mio__reactor_kick(mio_reactor *r)
{
    /* Counted first: whoever sees the wake's effect (the reactor ran) also sees it counted. */
    mio__pr_add_64(&r->wakes_performed, 1);
    (void)mio_waker_wake(r->waker);
}

bool mio__reactor_wake(mio_reactor *r)
{
    if (!mio__reactor_wake_claim(r))
        return false;
    mio__reactor_kick(r);
    return true;
}

bool mio__reactor_awake(mio_reactor *r)
{
    return mio__pr_load_uint(&r->state) != STATE_SLEEPING;
}

int mio_reactor_post(mio_reactor *r, mio_task_fn fn, void *arg)
{
    int err;

    if (r == NULL || fn == NULL)
        return -EINVAL;
    err = mio__post_queue_push(&r->tasks, fn, arg);
    if (err < 0)
        return err;
    (void)mio__reactor_wake(r);
    return 0;
}

void mio__reactor_stop(mio_reactor *r)
{
    mio__pr_store_uint(&r->stop, 1);
    (void)mio__reactor_wake(r);
}

int mio_reactor_stop(mio_reactor *r)
{
    if (r == NULL)
        return -EINVAL;
    if (mio__pr_load_uint(&r->pool_owned) != 0)
        return -EPERM; /* a worker that left its loop would still be handed connections */
    mio__reactor_stop(r);
    return 0;
}

void mio__reactor_set_pool_owned(mio_reactor *r, bool owned)
{
    mio__pr_store_uint(&r->pool_owned, owned ? 1u : 0u);
}

/* ------------------------------------------------------------------ timers */

int mio_reactor_timer_start(mio_reactor *r, uint64_t after_ms, uint64_t repeat_ms, mio_timer_fn fn,
                            void *arg, mio_timer_id *out)
{
    uint64_t id;
    int err;

    if (r == NULL || fn == NULL)
        return -EINVAL;
    err = mio__wheel_start(&r->wheel, mio__sat_add(r->now, after_ms), repeat_ms, (mio__fnptr)fn,
                           arg, &id);
    if (err < 0)
        return err;
    ctr_set(&r->st.timers, r->wheel.count);
    if (out != NULL)
        *out = id;
    return 0;
}

int mio_reactor_timer_cancel(mio_reactor *r, mio_timer_id id)
{
    int err;

    if (r == NULL)
        return -EINVAL;
    err = mio__wheel_cancel(&r->wheel, id);
    ctr_set(&r->st.timers, r->wheel.count);
    return err;
}

uint64_t mio_reactor_now_ms(const mio_reactor *r)
{
    return r->now;
}

void mio__reactor_update_now(mio_reactor *r)
{
    r->now = mio__clock_ms(r->now);
}

/* ------------------------------------------------------------------ the loop */

/* The wait for this iteration: the caller's limit shortened to the next timer; 0 when work is
 * already waiting. */
static int wait_timeout(const mio_reactor *r, int timeout_ms)
{
    uint64_t next, d;

    if (mio__post_queue_len(&r->tasks) != 0)
        return 0;
    next = mio__wheel_next(&r->wheel);
    if (next == UINT64_MAX)
        return timeout_ms;
    d = next > r->now ? next - r->now : 0;
    if (d > INT_MAX)
        d = INT_MAX;
    if (timeout_ms < 0 || (uint64_t)timeout_ms > d)
        timeout_ms = (int)d;
    return timeout_ms;
}

/* A safe point: no user callback of this reactor is on the stack. */
static inline void settle_point(mio_reactor *r)
{
    if (r->settle_req)
        mio__reactor_settle(r);
}

static int run_tasks(mio_reactor *r)
{
    /* Only what is queued now: tasks that post tasks cannot keep this iteration going forever. */
    unsigned n = mio__post_queue_len(&r->tasks);
    struct mio__task t;
    int ran = 0;

    while (n-- > 0 && mio__post_queue_pop(&r->tasks, &t)) {
        t.fn(r, t.arg);
        settle_point(r);
        ran++;
    }
    if (ran > 0)
        ctr_add(&r->st.tasks_run, (uint64_t)ran);
    return ran;
}

static int run_timers(mio_reactor *r)
{
    struct mio__timer *t;
    int ran = 0;

    mio__wheel_advance(&r->wheel, r->now);
    while ((t = mio__wheel_pop(&r->wheel)) != NULL) {
        mio_timer_fn fn = (mio_timer_fn)t->fn;
        fn(r, mio__wheel_id(t), t->arg);
        mio__wheel_fired(&r->wheel, t);
        settle_point(r);
        ran++;
    }
    if (ran > 0)
        ctr_add(&r->st.timers_fired, (uint64_t)ran);
    ctr_set(&r->st.timers, r->wheel.count);
    return ran;
}

static int ring_wait(mio_reactor *r, int timeout);

/* The wait of one iteration: publishes SLEEPING and re-checks the inputs when it would block,
 * polls, sets RUNNING and reads the clock. *src_pending: the source had work before the wait.
 * Returns the number of events harvested or -errno. */
static int wait_events(mio_reactor *r, int timeout_ms, bool *src_pending)
{
    int timeout = wait_timeout(r, timeout_ms), n;
    bool published = false;

    /* Writes left staged by the end of the last iteration (or made outside the loop's callbacks
     * after it) go now. Sends complete inside the enter: this wait would not block, so it does
     * not publish SLEEPING either (a poster's wake would be a wasted syscall). */
    if (r->uring != NULL && r->ext != NULL && r->ext->submit != NULL &&
        r->ext->submit(r, r->ext_ctx) > 0)
        timeout = 0;
    if (r->uring != NULL && mio__uring_held(r->uring))
        timeout = 0; /* completions the end of the last iteration took off the CQ wait */
    if (timeout != 0) {
        mio__pr_store_uint(&r->state, STATE_SLEEPING);
        mio__pr_fence_memory();
        published = true;
        ctr_add(&r->st.sleeps, 1);
        if (mio__post_queue_len(&r->tasks) != 0 || mio__pr_load_uint(&r->stop) != 0)
            timeout = 0;
    }
    /* Every iteration asks the source, so a reactor that never sleeps cannot starve it. */
    if (r->has_src && r->src.pending(r->src.arg))
        *src_pending = true, timeout = 0;
    n = r->uring != NULL ? ring_wait(r, timeout) : mio_poll_poll(r->poll, r->events, timeout);
    if (published)
        mio__pr_store_uint(&r->state, STATE_RUNNING); /* ends WOKEN before any draining */
    r->now = mio__clock_ms(r->now);
    ctr_add(&r->st.iterations, 1);
    if (n < 0 || r->uring != NULL)
        return n; /* the ring's completions are counted as they are reaped */
    ctr_add(&r->st.events, (uint64_t)n);
    if (n == 0 && timeout != 0)
        ctr_add(&r->st.zero_event_wakeups, 1);
    return n;
}

/* ------------------------------------------------------------------ the io_uring backend's wait
 *
 * One io_uring_enter per iteration submits what the last one prepared and waits. The ring watches
 * the epoll fd with a multishot poll, so handlers, the waker and the pool's sources keep their
 * epoll semantics: when that poll fires, the iteration harvests the epoll set without waiting. A
 * multishot poll fires on new readiness only, so a harvest that filled the events array leaves
 * the next iteration a zero wait and a harvest of the rest. */

static int ring_wait(mio_reactor *r, int timeout)
{
    int err;

    if (r->epoll_due)
        timeout = 0;
    r->waited = timeout != 0;
    err = mio__uring_wait(r->uring, timeout);

    /* -ETIME: the timeout passed; -EBUSY: the CQ is full, the completions are there to reap.
     * -EINTR (a signal ended the wait, after the submission) is reported, as on epoll, once the
     * iteration has reaped what is there. */
    return err == -ETIME || err == -EBUSY ? 0 : err;
}

/* The ring's counters, copied into the reactor's stats. */
static void ring_stats_publish(mio_reactor *r)
{
    struct mio__uring_stats us;

    mio__uring_stats(r->uring, &us);
    ctr_set(&r->st.ring_enters, us.enters);
    ctr_set(&r->st.ring_completions, us.cqes);
    ctr_set(&r->st.ring_sends, us.sends);
    ctr_set(&r->st.ring_sends_nocopy, us.sends_nocopy);
    ctr_set(&r->st.ring_recv_arms, us.recv_arms);
}

/* The completion is the aux consumer's (mio__reactor_set_aux), not the attached layer's. */
static bool ring_cqe_aux(const mio_reactor *r, uint64_t ud)
{
    return (ud & MIO__REACTOR_UD_AUX) && !(ud & MIO__UD_URGENT) && r->aux_fn != NULL;
}

static void ring_on_cqe(void *arg, uint64_t ud, int res, unsigned flags, unsigned bid)
{
    mio_reactor *r = arg;

    if (ud == MIO__UD_EPOLL) {
        r->epoll_due = true;
        return;
    }
    if (ud == MIO__UD_WAKE) {
        r->ring_woke = true; /* the waker's event by another road: no handler ran */
        return;
    }
    if (ring_cqe_aux(r, ud)) {
        r->aux_fn(r, r->aux_ctx, ud, res, flags);
        settle_point(r);
        r->ring_ran++;
    } else if (r->ext != NULL && r->ext->complete != NULL) {
        r->ext->complete(r, r->ext_ctx, ud, res, flags, bid);
        if (ud & MIO__UD_URGENT)
            return; /* no callback ran; the settle waits for the end of the urgent pass */
        settle_point(r);
        r->ring_ran++;
    } else if (flags & MIO__CQE_BUFFER) {
        mio__uring_buf_put(r->uring, bid); /* nobody left to take it */
    }
}

/* Reaps the completions (the attached layer's run their callbacks), then harvests the epoll set
 * when it is due. Returns the number of epoll events harvested (0 when none was due), or -errno;
 * *cqes: the completions reaped. */
static int ring_harvest(mio_reactor *r, unsigned *cqes)
{
    int n = 0;

    r->ring_ran = 0;
    *cqes = mio__uring_reap(r->uring, ring_on_cqe, r);
    settle_point(r); /* what the urgent completions deferred, when no other completion came */
    if (r->ring_ran > 0)
        ctr_add(&r->st.handlers_run, (uint64_t)r->ring_ran);
    ring_stats_publish(r);
    if (r->epoll_due) {
        n = mio_poll_poll(r->poll, r->events, 0);
        if (n < 0)
            return n;
        r->epoll_due = (unsigned)n == mio_events_capacity(r->events);
        ctr_add(&r->st.events, (uint64_t)n);
    }
    return n;
}

/* The end of an iteration on the ring. Inside mio_reactor_run (fold) another wait follows at
 * once: what the callbacks wrote is prepared and submitted by it, quiet sends do not end it, and
 * their outcomes are seen in its reap before any callback runs; one io_uring_enter per
 * iteration. Otherwise (mio_reactor_run_once, or the end of a run) it goes to the kernel now, as
 * one submission of sends whose outcomes are seen at once (so the next wait blocks, and
 * mio_conn_pending says 0 when run_once returns). Those outcomes may close conns, whose on_close
 * may write again: a few rounds take that too; what is left goes with the next wait. Then the
 * cancels of conns closed in this iteration, if no submission took them. */
static void ring_end_iteration(mio_reactor *r, bool fold)
{
    for (int round = 0; !fold && round < 4 && r->ext != NULL && r->ext->submit != NULL; round++) {
        if (r->ext->submit(r, r->ext_ctx) == 0 && !mio__uring_sends_unseen(r->uring))
            break; /* no send prepared or unseen (receives armed go with the next wait) */
        (void)mio__uring_submit_urgent(r->uring, ring_on_cqe, r);
        settle_point(r);
    }
    (void)mio__uring_flush(r->uring); /* conns closed in this iteration close now */
    ring_stats_publish(r);
}

/* Calls the handler of every harvested event whose token is still live, with a settle point
 * after each. *woke: the waker's event was among them. Returns the number of handlers called. */
static int dispatch_events(mio_reactor *r, bool *woke)
{
    int handlers = 0;
    uint64_t stale = 0;

    MIO_EVENTS_FOREACH(const mio_event *ev, r->events)
    {
        mio_token token = mio_event_token(ev); /* inline (event.h) */
        struct mio__slot *slot;
        if (token == MIO__WAKER_TOKEN) {
            /* The eventfd is not read: every write re-arms the edge, and mio_waker_wake drains
             * the counter itself when it is full. That saves a syscall per wake. */
            *woke = true;
            continue;
        }
        slot = mio__slab_lookup(&r->slab, token);
        if (slot == NULL) {
            stale++; /* removed (maybe reused) earlier in this batch */
            continue;
        }
        mio__slab_fn(&r->slab, slot)(r, token, ev, mio__slab_arg(slot));
        settle_point(r);
        handlers++;
    }
    if (handlers > 0)
        ctr_add(&r->st.handlers_run, (uint64_t)handlers);
    if (stale > 0)
        ctr_add(&r->st.stale_events, stale);
    return handlers;
}

static int iterate(mio_reactor *r, int timeout_ms)
{
    bool src_pending = false, woke = false;
    int n, ran;

    settle_point(r); /* work deferred by calls made outside the loop */
    n = wait_events(r, timeout_ms, &src_pending);
    if (n < 0 && r->uring == NULL)
        return n;
    if (r->uring != NULL) {
        unsigned cqes;
        int werr = n;

        /* Reaped even after a failed wait: the enter submitted before it waited, and the sends
         * it submitted must be seen before any callback writes to the stage again. */
        n = ring_harvest(r, &cqes);
        if (werr < 0 || n < 0)
            return werr < 0 ? werr : n;
        ran = r->ring_ran + (n > 0 ? dispatch_events(r, &woke) : 0);
        woke = woke || r->ring_woke;
        r->ring_woke = false;
        if (cqes == 0 && n == 0 && r->waited)
            ctr_add(&r->st.zero_event_wakeups, 1);
    } else {
        ran = dispatch_events(r, &woke);
    }
    if (r->has_src && (woke || src_pending)) {
        r->src.drain(r, r->src.arg);
        settle_point(r);
    }
    ran += run_tasks(r);
    /* Callbacks ran: refresh the clock so that timers see the time they actually run at. */
    if (ran > 0)
        r->now = mio__clock_ms(r->now);
    ran += run_timers(r);
    if (r->uring != NULL)
        ring_end_iteration(r, r->in_run);
    return ran;
}

int mio_reactor_run_once(mio_reactor *r, int timeout_ms)
{
    int ran;

    if (r == NULL || timeout_ms < -1)
        return -EINVAL;
    if (r->in_loop)
        return -EBUSY;
    r->in_loop = true;
    ran = iterate(r, timeout_ms);
    r->in_loop = false;
    return ran;
}

int mio_reactor_run(mio_reactor *r)
{
    int rc;

    if (r == NULL)
        return -EINVAL;
    if (r->in_loop)
        return -EBUSY;
    r->in_run = true;
    for (;;) {
        if (mio__pr_load_uint(&r->stop) != 0 && mio__pr_fas_uint(&r->stop, 0) != 0) {
            rc = 0;
            break;
        }
        rc = mio_reactor_run_once(r, -1);
        if (rc < 0 && rc != -EINTR)
            break;
    }
    r->in_run = false;
    /* A stop: the last iteration's writes, left for a wait that will not come. (After a failed
     * wait the ring is not entered again: what it holds goes with the conns the error closes.) */
    if (r->uring != NULL && rc == 0) {
        r->in_loop = true;
        ring_end_iteration(r, false);
        r->in_loop = false;
    }
    return rc;
}

/* ------------------------------------------------------------------ stats and internals */

int mio_reactor_stats(const mio_reactor *r, struct mio_reactor_stats *out)
{
    if (r == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->iterations = mio__pr_load_64(&r->st.iterations);
    out->events = mio__pr_load_64(&r->st.events);
    out->handlers_run = mio__pr_load_64(&r->st.handlers_run);
    out->tasks_run = mio__pr_load_64(&r->st.tasks_run);
    out->timers_fired = mio__pr_load_64(&r->st.timers_fired);
    out->wakes_performed = mio__pr_load_64(&r->wakes_performed);
    out->wakes_elided = mio__pr_load_64(&r->wakes_elided);
    out->zero_event_wakeups = mio__pr_load_64(&r->st.zero_event_wakeups);
    out->handlers = mio__pr_load_64(&r->st.handlers);
    out->timers = mio__pr_load_64(&r->st.timers);
    out->stale_events = mio__pr_load_64(&r->st.stale_events);
    out->sleeps = mio__pr_load_64(&r->st.sleeps);
    out->tasks_queued = mio__post_queue_len(&r->tasks);
    out->backend = mio__pr_load_64(&r->st.backend);
    out->ring_enters = mio__pr_load_64(&r->st.ring_enters);
    out->ring_completions = mio__pr_load_64(&r->st.ring_completions);
    out->ring_sends = mio__pr_load_64(&r->st.ring_sends);
    out->ring_sends_nocopy = mio__pr_load_64(&r->st.ring_sends_nocopy);
    out->ring_recv_arms = mio__pr_load_64(&r->st.ring_recv_arms);
    out->ring_recv_multishot = mio__pr_load_64(&r->st.ring_recv_multishot);
    return 0;
}

int mio_reactor_backend(const mio_reactor *r)
{
    return r == NULL ? -EINVAL : (int)mio__pr_load_64(&r->st.backend);
}

struct mio__uring *mio__reactor_uring(const mio_reactor *r)
{
    return r->uring;
}

int mio__reactor_poll_fd(const mio_reactor *r)
{
    return mio_poll_fd(r->poll);
}

int mio__reactor_ring_fd(const mio_reactor *r)
{
    return r->uring != NULL ? mio__uring_fd(r->uring) : -1;
}

/* The quiesce's completions: the aux consumer's reach it (an accept's carries an fd, which it
 * closes: the reactor is done), the rest are dropped. */
static void quiesce_on_cqe(void *arg, uint64_t ud, int res, unsigned flags, unsigned bid)
{
    mio_reactor *r = arg;

    if (ring_cqe_aux(r, ud))
        r->aux_fn(r, r->aux_ctx, ud, res, flags);
    if (flags & MIO__CQE_BUFFER)
        mio__uring_buf_put(r->uring, bid);
}

void mio__reactor_quiesce(mio_reactor *r)
{
    if (r->uring != NULL)
        mio__uring_quiesce(r->uring, quiesce_on_cqe, r);
}

mio__arena mio__reactor_arena(const mio_reactor *r)
{
    return r->arena;
}

void *mio__reactor_lookup(const mio_reactor *r, mio_token token, mio_io_fn io)
{
    const struct mio__slot *slot = mio__slab_lookup(&r->slab, token);

    if (slot == NULL || mio__slab_fn(&r->slab, slot) != io)
        return NULL;
    return mio__slab_arg(slot);
}

int mio__reactor_slot_fd(const mio_reactor *r, uint32_t slot)
{
    return mio__slab_at(&r->slab, slot)->fd;
}

mio_token mio__reactor_slot_token(const mio_reactor *r, uint32_t slot)
{
    return (mio_token)mio__slab_token(&r->slab, slot);
}

int mio__reactor_attach(mio_reactor *r, const struct mio__reactor_ext *ext, void *ctx)
{
    if (r->ext != NULL)
        return -EEXIST;
    r->ext = ext;
    r->ext_ctx = ctx;
    return 0;
}

int mio__reactor_set_aux(mio_reactor *r, mio__reactor_cqe_fn fn, void *ctx)
{
    if (fn != NULL && r->aux_fn != NULL)
        return -EEXIST;
    r->aux_fn = fn;
    r->aux_ctx = fn != NULL ? ctx : NULL;
    return 0;
}

void *mio__reactor_ext_ctx(const mio_reactor *r)
{
    return r->ext_ctx;
}

void mio_reactor_set_data(mio_reactor *r, void *data)
{
    if (r != NULL)
        r->user_data = data;
}

void *mio_reactor_data(const mio_reactor *r)
{
    return r != NULL ? r->user_data : NULL;
}

bool mio__reactor_in_loop(const mio_reactor *r)
{
    return r->in_loop;
}

void mio__reactor_request_settle(mio_reactor *r)
{
    r->settle_req = true;
}

void mio__reactor_settle(mio_reactor *r)
{
    if (!r->settle_req || r->settling || r->ext == NULL)
        return;
    r->settling = true;
    /* Settling may defer more work (an on_close that closes another conn): loop until none. */
    while (r->settle_req) {
        r->settle_req = false;
        r->ext->settle(r, r->ext_ctx);
    }
    r->settling = false;
}

int mio__reactor_set_source(mio_reactor *r, const struct mio__reactor_source *src)
{
    if (r == NULL)
        return -EINVAL;
    if (src == NULL) {
        r->has_src = false;
        memset(&r->src, 0, sizeof r->src);
        return 0;
    }
    if (src->pending == NULL || src->drain == NULL)
        return -EINVAL;
    if (r->has_src)
        return -EEXIST;
    r->src = *src;
    r->has_src = true;
    return 0;
}

unsigned mio__reactor_each(mio_reactor *r, mio_io_fn io, void (*fn)(void *harg, void *ctx),
                           void *ctx)
{
    unsigned n = 0;

    /* Index by index, re-reading the bound: fn may grow the slab (pages never move). */
    for (uint32_t i = 0; i < r->slab.pages.n * MIO__SLAB_PAGE_SLOTS; i++) {
        struct mio__slot *slot = mio__slab_at(&r->slab, i);

        if (slot->fn != MIO__SLAB_FN_FREE && mio__slab_fn(&r->slab, slot) == io) {
            fn(mio__slab_arg(slot), ctx);
            n++;
        }
    }
    return n;
}
