/* Pool acceptor thread (acceptor mode): owns a poll with the listeners and a waker. On readiness
 * it accepts in batches, picks a worker per connection (round robin, least loaded, or awake
 * first), pushes {fd, peer} into that worker's ring and, after the burst, wakes each worker that
 * received fds at most once (the wake is elided when the worker is not asleep).
 *
 * On the io_uring backend (a worker's reactor has a ring) the acceptor waits on a plain ring of
 * its own, which polls its epoll fd the way a reactor's ring does, and delivers a claimed wake
 * (mio__reactor_wake_claim) to a worker on a ring as an IORING_OP_MSG_RING to that worker's ring
 * instead of an eventfd write (mio__reactor_kick). The message is only prepared: the acceptor's
 * next wait submits it in the io_uring_enter that then blocks, so no wake costs a syscall of its
 * own, and every claimed wake has gone out before the acceptor sleeps. A message completes
 * inside that enter; a failed one posts a completion here, which ends that wait at once, and the
 * wake is delivered by eventfd instead: a claim is never left undelivered (reactor_int.h says why
 * that would stall the worker). Without a ring, or if ours cannot be set up or fails, the
 * acceptor waits in epoll_wait and kicks by eventfd, as on the epoll backend. With our ring, the
 * listeners accept on it too (a multishot accept each, see "accepting on the ring" below)
 * instead of being in the epoll set.
 *
 * Pressure is one state machine (enum mio__acceptor_state, pool_int.h): RUNNING; PAUSED_FULL when
 * every ring is full (listeners deregistered, the kernel backlog holds new connections, until a
 * worker drains and wakes us); PAUSED_EMFILE after EMFILE/ENFILE (one pending connection accepted
 * with the spare fd and closed) or ENOBUFS/ENOMEM, for MIO__POOL_ACCEPT_PAUSE_MS; STOPPING once the
 * owner asks. Only acceptor_set_state moves between them. The thread never spins: while paused it
 * sleeps in epoll_wait with a timeout or until woken.
 *
 * Memory ordering (internal/pr.h): the full-ring pause is a Dekker handshake with the workers.
 * Acceptor: store PAUSED_FULL (or clear rearm_requested when woken), full fence [A], look for
 * room. Worker (worker_drain): pop (room made), full fence [W], load the state, wake us if
 * PAUSED_FULL and it wins rearm_requested. [A] pairs with [W]: either we see the room or the worker
 * sees the pause. Hand-offs are published by the ring's own store fence (ck_ring) and the wake by
 * mio__reactor_wake's fence, which pairs with the worker's SLEEPING fence (reactor.c).
 *
 * The acceptor-wide counters (accept_calls, accept_errors, emfile, listener_paused) are kept on
 * worker 0's stats; ring_full, handed_off and the wake counters on the worker they concern. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>
#include <mio/event.h>
#include <mio/net.h>
#include "internal/mem.h"
#include "internal/conn_pool.h"
#include "internal/pool_int.h"
#include "internal/pr.h"
#include "internal/reactor_int.h"
#include "internal/timer_wheel.h"
#include "internal/uring.h"
#include "internal/waker_int.h"
#include "net/net_int.h"

#define NO_WORKER UINT_MAX

struct acceptor {
    mio_pool *pool;
    mio_registry *reg;
    bool *ready;                    /* listener i may have connections we have not accepted yet */
    bool *touched;                  /* worker i received fds in this burst */
    bool registered;                /* listeners are in the poll (exactly when RUNNING) */
    enum mio__acceptor_state state; /* our copy of pool->acceptor_state */
    uint64_t resume_at;             /* PAUSED_EMFILE: its end, monotonic ms */
    /* io_uring backend (NULL ring: epoll_wait and eventfd wakes) */
    struct mio__uring *ring;
    bool epoll_due;   /* the ring's poll saw the epoll fd ready: harvest it */
    int *ring_fd;     /* worker i's ring fd, or -1: woken by eventfd */
    bool *unsent;     /* a ring wake for worker i is prepared and not yet submitted */
    unsigned nunsent; /* how many of unsent are set */
    /* ... and the listeners accept on it (multishot accepts) instead of on epoll readiness */
    bool ring_accept;
    unsigned char *acc; /* listener l's accept: ACC_IDLE, ACC_ARMED, ACC_CANCELLING */
    int *acc_err;       /* listener l's accept ended with this error, for the loop (0: none) */
    struct pending *pend; /* fds the kernel accepted, not handed off yet: pend[head..n) */
    unsigned pend_head, pend_n;
};

struct pending {
    int fd;
    unsigned listener;
};

enum { ACC_IDLE, ACC_ARMED, ACC_CANCELLING };

/* Room for fds accepted while every ring is full (set up with the acceptor: no allocation per
 * connection). */
#define PEND_CAP 1024u

static void acceptor_ring_listen(struct acceptor *a, bool on);

static struct mio__pool_counters *acceptor_counters(mio_pool *pool)
{
    return &pool->workers[0].st;
}

static int acceptor_register(struct acceptor *a, bool on)
{
    mio_pool *pool = a->pool;
    int err = 0;

    if (a->registered == on)
        return 0;
    if (a->ring_accept) {
        acceptor_ring_listen(a, on);
        a->registered = on;
        return 0;
    }
    for (unsigned l = 0; l < pool->nlisteners; l++) {
        int fd = pool->listeners[l].fds[0];
        int e = on ? mio_registry_register(a->reg, fd, (mio_token)l, MIO_READABLE)
                   : mio_registry_deregister(a->reg, fd);

        if (e < 0 && err == 0)
            err = e;
        /* Connections that queued while we were away produce no new edge: look ourselves. */
        if (on)
            a->ready[l] = true;
    }
    a->registered = on;
    return err;
}

/* The one transition point: publishes the state for the workers and keeps the listeners in the
 * poll exactly while RUNNING. */
static void acceptor_set_state(struct acceptor *a, enum mio__acceptor_state st)
{
    a->state = st;
    mio__pr_store_uint(&a->pool->acceptor_state, st);
    (void)acceptor_register(a, st == MIO__ACC_RUNNING);
}

/* The worker's loop runs and its ring has room. */
static bool worker_has_room(struct mio__pool_worker *w)
{
    return mio__pool_worker_in_service(w) && mio__pool_ring_has_room(w);
}

static bool any_ring_has_room(mio_pool *pool)
{
    for (unsigned i = 0; i < pool->nworkers; i++)
        if (worker_has_room(&pool->workers[i]))
            return true;
    return false;
}

/* The worker can take a hand-off; a full ring is counted (ring_full) as a worker the pick had
 * to pass over. */
static bool worker_can_take(struct mio__pool_worker *w)
{
    if (!mio__pool_worker_in_service(w))
        return false;
    if (mio__pool_ring_has_room(w))
        return true;
    mio__count(&w->st.ring_full, 1);
    return false;
}

static uint64_t worker_load(struct mio__pool_worker *w)
{
    return mio__pool_ring_len(w) + mio__conn_count(w->r);
}

/* MIO_BALANCE_AWAKE_FIRST: the first awake worker in rotation order whose load is within the
 * margin of the least loaded one; else the first with room. A worker this burst already handed
 * fds to counts as awake: its one wake is paid for. The second pass reads the loads again
 * rather than keeping them: a worker may have moved a little since, and the margin is a
 * heuristic, not a promise. */
static unsigned acceptor_pick_awake(struct acceptor *a)
{
    mio_pool *pool = a->pool;
    unsigned n = pool->nworkers, start = pool->rr_next % n, first = NO_WORKER;
    uint64_t min_load = UINT64_MAX, margin;

    for (unsigned i = 0; i < n; i++) {
        struct mio__pool_worker *w = &pool->workers[i];
        uint64_t load;

        if (!worker_can_take(w))
            continue;
        load = worker_load(w);
        if (load < min_load)
            min_load = load;
    }
    if (min_load == UINT64_MAX)
        return NO_WORKER;
    margin = min_load + min_load / 4 + 16;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (start + k) % n;
        struct mio__pool_worker *w = &pool->workers[i];

        if (!worker_has_room(w))
            continue;
        if (first == NO_WORKER)
            first = i;
        if (worker_load(w) <= margin && (a->touched[i] || mio__reactor_awake(w->r)))
            return i;
    }
    return first;
}

/* Picks the worker for the next connection, or NO_WORKER when every ring is full. */
static unsigned acceptor_pick(struct acceptor *a)
{
    mio_pool *pool = a->pool;
    unsigned n = pool->nworkers, start = pool->rr_next % n, best = NO_WORKER;
    uint64_t best_load = UINT64_MAX;

    if (pool->opts.balance == MIO_BALANCE_AWAKE_FIRST)
        return acceptor_pick_awake(a);
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (start + k) % n;
        struct mio__pool_worker *w = &pool->workers[i];
        uint64_t load;

        if (!worker_can_take(w))
            continue;
        if (pool->opts.balance == MIO_BALANCE_ROUND_ROBIN) {
            best = i;
            break;
        }
        load = worker_load(w);
        if (load < best_load) {
            best_load = load;
            best = i;
        }
    }
    return best;
}

/* A connection went to worker wi: round robin and awake-first move past it; least loaded
 * rotates where ties start. Only a hand-off advances the rotation: a pick whose accept found
 * nothing (the -EAGAIN that ends every burst) must not, or bursts of one connection would all
 * land on the same worker. */
static void acceptor_advance(struct acceptor *a, unsigned wi)
{
    mio_pool *pool = a->pool;

    pool->rr_next = pool->opts.balance != MIO_BALANCE_LEAST_LOADED
                        ? wi + 1
                        : pool->rr_next % pool->nworkers + 1;
}

/* Every ring is full: RUNNING -> PAUSED_FULL unless a worker drained meanwhile. Returns true when
 * we paused. */
static bool acceptor_pause_full(struct acceptor *a)
{
    mio_pool *pool = a->pool;

    mio__pr_store_uint(&pool->rearm_requested, 0);
    mio__pr_store_uint(&pool->acceptor_state, MIO__ACC_PAUSED_FULL);
    mio__pr_fence_memory(); /* [A]: pairs with the worker's [W] (top of this file) */
    if (any_ring_has_room(pool)) {
        mio__pr_store_uint(&pool->acceptor_state, MIO__ACC_RUNNING);
        return false;
    }
    acceptor_set_state(a, MIO__ACC_PAUSED_FULL);
    mio__count(&acceptor_counters(pool)->listener_paused, 1);
    return true;
}

/* PAUSED_FULL, woken: clear the request before looking, so a drain after our look wakes us
 * again; resume when a ring has room. */
static void acceptor_check_full(struct acceptor *a)
{
    mio_pool *pool = a->pool;

    mio__pr_store_uint(&pool->rearm_requested, 0);
    mio__pr_fence_memory(); /* [A]: pairs with the worker's [W] */
    if (any_ring_has_room(pool))
        acceptor_set_state(a, MIO__ACC_RUNNING);
}

/* Pushes fd (accepted on listener l; peer NULL: unknown, the worker asks getpeername) onto
 * worker wi's ring, which acceptor_pick saw with room. */
static void acceptor_push(struct acceptor *a, unsigned wi, int fd, unsigned l,
                          const mio_addr *peer)
{
    struct mio__pool_worker *w = &a->pool->workers[wi];
    struct mio__handoff h;
    bool pushed;

    h.fd = fd;
    h.listener = l;
    h.peer_len = 0;
    if (peer != NULL && peer->len <= sizeof(h.peer)) {
        memcpy(&h.peer, &peer->u, peer->len);
        h.peer_len = peer->len;
    }
    /* acceptor_pick saw room and we are the ring's only producer (the consumer only makes
     * room), so the push cannot fail. */
    pushed = mio__pool_ring_push(w, &h);
    assert(pushed);
    (void)pushed;
    mio__count(&w->st.handed_off, 1);
    acceptor_advance(a, wi);
    a->touched[wi] = true;
}

/* Accepts from listener l until -EAGAIN, the batch limit, a pause, or stop. */
static void acceptor_burst(struct acceptor *a, unsigned l)
{
    mio_pool *pool = a->pool;
    struct mio__pool_counters *st = acceptor_counters(pool);
    int lfd = pool->listeners[l].fds[0];
    mio_addr peer;

    for (unsigned k = 0; k < pool->opts.accept_batch; k++) {
        unsigned wi = acceptor_pick(a);
        int fd;

        if (wi == NO_WORKER) {
            if (acceptor_pause_full(a))
                return;
            continue;
        }
        fd = mio__socket_accept(lfd, &peer);
        mio__count(&st->accept_calls, 1);
        if (fd >= 0) {
            acceptor_push(a, wi, fd, l, &peer);
            continue;
        }
        switch (mio__pool_accept_failed(fd, lfd, &pool->spare_fd, st)) {
        case MIO__ACCEPT_DRAINED:
            a->ready[l] = false;
            return;
        case MIO__ACCEPT_SKIP:
            continue;
        case MIO__ACCEPT_PAUSE:
            break;
        }
        a->resume_at = mio__clock_ms(0) + MIO__POOL_ACCEPT_PAUSE_MS;
        acceptor_set_state(a, MIO__ACC_PAUSED_EMFILE);
        return;
    }
    /* Batch limit hit: ready[l] stays set and the loop polls with timeout 0 to come back. */
}

/* ---- the io_uring backend: our ring, and wakes as ring messages ---- */

/* Tags the user_data of listener l's multishot accept (a wake's is MIO__UD_FIRST + worker). */
#define ACCEPT_UD (UINT64_C(1) << 40)

/* The user_data of the ring wake sent to worker i (its failure comes back with it). */
static uint64_t wake_ud(unsigned i)
{
    return MIO__UD_FIRST + i;
}

/* A claimed wake of worker i as a ring message, prepared for our next wait. Returns false when it
 * cannot go that way (the worker is on epoll, or our SQ stayed full): kick instead. */
static bool acceptor_ring_wake(struct acceptor *a, unsigned i)
{
    if (a->ring == NULL || a->ring_fd[i] < 0 ||
        mio__uring_wake(a->ring, a->ring_fd[i], wake_ud(i)) < 0)
        return false;
    if (!a->unsent[i]) {
        a->unsent[i] = true;
        a->nunsent++;
    }
    return true;
}

/* A ring wake that did not reach worker i: deliver the claim by eventfd, and take the wake out
 * of wakes_ring (pool.h). */
static void acceptor_wake_fallback(struct acceptor *a, unsigned i)
{
    struct mio__pool_worker *w = &a->pool->workers[i];

    /* Uncounted before the kick, which counts the eventfd write: a reader that sees the write
     * counted sees this wake out of wakes_ring. */
    mio__pr_sub_64(&w->st.wakes_ring, 1);
    mio__reactor_kick(w->r);
}

static void acceptor_on_accept(struct acceptor *a, unsigned l, int res, unsigned flags);

static void acceptor_on_cqe(void *arg, uint64_t ud, int res, unsigned flags, unsigned bid)
{
    struct acceptor *a = arg;

    (void)bid;
    if (ud == MIO__UD_EPOLL) {
        a->epoll_due = true;
        return;
    }
    if (ud & ACCEPT_UD) {
        acceptor_on_accept(a, (unsigned)(ud & ~ACCEPT_UD), res, flags);
        return;
    }
    /* Only a failed wake completes here (success posts nothing). */
    if (ud >= MIO__UD_FIRST && ud - MIO__UD_FIRST < a->pool->nworkers && res < 0)
        acceptor_wake_fallback(a, (unsigned)(ud - MIO__UD_FIRST));
}

/* After an enter: the wakes it submitted are out (their failures are in our CQ by now). */
static void acceptor_wakes_sent(struct acceptor *a)
{
    if (a->nunsent == 0 || mio__uring_unsubmitted(a->ring))
        return;
    memset(a->unsent, 0, a->pool->nworkers * sizeof(*a->unsent));
    a->nunsent = 0;
}

/* ---- accepting on the ring: a multishot accept per listener ----
 *
 * Each completion is a connection the kernel accepted (its fd; no peer address: the worker asks
 * getpeername for the accept callback's). It waits in pend until a worker can take it, handed off
 * exactly as an fd from accept4 is, so the balance policies and the pressure states are the same.
 * Pausing (every ring full, EMFILE, stop) cancels the accepts; a connection accepted before the
 * cancel took effect waits in pend (or, at stop, is closed, as the backlog is reset). An accept
 * that ends with an error is handled as accept4's error would be (mio__pool_accept_failed) and
 * armed again while RUNNING. */

/* Arms the accept of every listener that has none (on), or cancels the armed ones (off). An SQ
 * that stays full leaves a listener idle: the next loop arms it. */
static void acceptor_ring_listen(struct acceptor *a, bool on)
{
    mio_pool *pool = a->pool;

    for (unsigned l = 0; l < pool->nlisteners; l++) {
        if (on && a->acc[l] == ACC_IDLE &&
            mio__uring_accept(a->ring, pool->listeners[l].fds[0], ACCEPT_UD | l) == 0)
            a->acc[l] = ACC_ARMED;
        else if (!on && a->acc[l] == ACC_ARMED && mio__uring_cancel(a->ring, ACCEPT_UD | l) == 0)
            a->acc[l] = ACC_CANCELLING;
    }
}

/* Hands fd (accepted on listener l) to the worker the balance policy picks. Returns false when
 * every ring is full. */
static bool acceptor_handoff(struct acceptor *a, int fd, unsigned l)
{
    unsigned wi = acceptor_pick(a);

    if (wi == NO_WORKER)
        return false;
    acceptor_push(a, wi, fd, l, NULL);
    return true;
}

/* A completion of listener l's accept: the new fd goes to a worker at once, or waits in pend
 * behind the ones already waiting there (every ring was full); an error waits for the loop. A
 * pend that is full sheds the fd (the client sees it closed, as with EMFILE): the kernel only
 * fills it while every ring is full and the cancel of the accepts is on its way. */
static void acceptor_on_accept(struct acceptor *a, unsigned l, int res, unsigned flags)
{
    mio_pool *pool = a->pool;

    if (l >= pool->nlisteners)
        return;
    res = mio__pool_ring_accept_result(pool->listeners[l].fds[0], res);
    if (!(flags & MIO__CQE_MORE))
        a->acc[l] = ACC_IDLE;
    if (res == -ECANCELED)
        return;
    mio__count(&acceptor_counters(pool)->accept_calls, 1);
    if (res < 0) {
        a->acc_err[l] = res;
    } else if (a->pend_n > 0 || a->state != MIO__ACC_RUNNING || !acceptor_handoff(a, res, l)) {
        if (a->pend_n < PEND_CAP) {
            a->pend[a->pend_n].fd = res;
            a->pend[a->pend_n].listener = l;
            a->pend_n++;
        } else {
            (void)close(res);
            mio__count(&acceptor_counters(pool)->accept_errors, 1);
        }
    }
}

/* Hands the accepted fds to workers in order, until none is left or every ring is full (then
 * accepting pauses and the rest waits for room). */
static void acceptor_ring_handoff(struct acceptor *a)
{
    while (a->pend_head < a->pend_n && a->state == MIO__ACC_RUNNING) {
        const struct pending *p = &a->pend[a->pend_head];

        if (acceptor_handoff(a, p->fd, p->listener))
            a->pend_head++;
        else if (acceptor_pause_full(a))
            break;
    }
    if (a->pend_head == a->pend_n) {
        a->pend_head = a->pend_n = 0;
    } else if (a->pend_head > 0) { /* the rest to the front: on_accept appends at pend_n */
        memmove(a->pend, a->pend + a->pend_head, (a->pend_n - a->pend_head) * sizeof(*a->pend));
        a->pend_n -= a->pend_head;
        a->pend_head = 0;
    }
}

/* The listeners leave the ring for accept4 on epoll readiness, from now on (accepts still armed
 * are cancelled; what they accept meanwhile is still handed off from pend). */
static void acceptor_listen_on_epoll(struct acceptor *a)
{
    acceptor_ring_listen(a, false);
    a->ring_accept = false;
    a->registered = false;
    if (a->state == MIO__ACC_RUNNING)
        (void)acceptor_register(a, true);
}

static bool acceptor_accepts_live(const struct acceptor *a)
{
    for (unsigned l = 0; l < a->pool->nlisteners; l++)
        if (a->acc[l] != ACC_IDLE)
            return true;
    return false;
}

/* After a reap: hand off what was accepted, act on the accepts that ended with an error, and arm
 * the idle ones again while RUNNING. */
static void acceptor_ring_accepted(struct acceptor *a)
{
    mio_pool *pool = a->pool;

    acceptor_ring_handoff(a);
    for (unsigned l = 0; l < pool->nlisteners; l++) {
        int err = a->acc_err[l], lfd = pool->listeners[l].fds[0];

        a->acc_err[l] = 0;
        if (err == 0 || err == -EINTR || err == -EAGAIN)
            continue; /* armed again below */
        if ((err == -EINVAL || err == -EOPNOTSUPP) && a->ring_accept) {
            /* No multishot accept here (or a socket it refuses): accept4 on epoll readiness,
             * which reports a socket's own errors as before; the ring stays for the wakes. */
            acceptor_listen_on_epoll(a);
            continue;
        }
        if (mio__pool_accept_failed(err, lfd, &pool->spare_fd, acceptor_counters(pool)) ==
                MIO__ACCEPT_PAUSE &&
            a->state == MIO__ACC_RUNNING) {
            a->resume_at = mio__clock_ms(0) + MIO__POOL_ACCEPT_PAUSE_MS;
            acceptor_set_state(a, MIO__ACC_PAUSED_EMFILE);
        }
    }
    if (a->ring_accept && a->state == MIO__ACC_RUNNING)
        acceptor_ring_listen(a, true);
}

/* Sets up our ring when a worker has one and the kernel can send ring messages; otherwise (or
 * on any failure) we stay on epoll_wait and eventfd wakes, which work everywhere. */
static void acceptor_ring_open(struct acceptor *a)
{
    mio_pool *pool = a->pool;
    bool any = false;

    for (unsigned i = 0; i < pool->nworkers; i++) {
        a->ring_fd[i] = mio__reactor_ring_fd(pool->workers[i].r);
        any = any || a->ring_fd[i] >= 0;
    }
    if (!any || mio__uring_new_plain(mio_poll_fd(pool->apoll), &a->ring) < 0) {
        a->ring = NULL;
        return;
    }
    if (!mio__uring_can_wake(a->ring)) {
        mio__uring_free(a->ring); /* never entered: no thread to interrupt */
        a->ring = NULL;
        return;
    }
    a->ring_accept = true;
}

/* Leaves the ring for good (the loop ended, or the ring failed): what is prepared goes out now;
 * the wakes that failed, or that could not be submitted, are delivered by eventfd. Then the ring
 * is freed on this thread, the only one that entered it. */
static void acceptor_ring_close(struct acceptor *a)
{
    if (a->ring == NULL)
        return;
    if (a->ring_accept) /* stopping (nothing registers then), or the ring failed */
        acceptor_listen_on_epoll(a);
    if (mio__uring_unsubmitted(a->ring))
        (void)mio__uring_submit(a->ring);
    acceptor_wakes_sent(a);
    (void)mio__uring_reap(a->ring, acceptor_on_cqe, a);
    /* The accepts' last completions (bounded: a cancel completes at once), then what they
     * accepted: handed off while RUNNING (the ring failed), else closed like a reset backlog. */
    for (int i = 0; i < 200 && acceptor_accepts_live(a); i++) {
        (void)mio__uring_wait(a->ring, 10);
        acceptor_wakes_sent(a);
        (void)mio__uring_reap(a->ring, acceptor_on_cqe, a);
    }
    acceptor_ring_handoff(a);
    for (; a->pend_head < a->pend_n; a->pend_head++)
        (void)close(a->pend[a->pend_head].fd);
    a->pend_head = a->pend_n = 0;
    for (unsigned i = 0; i < a->pool->nworkers && a->nunsent > 0; i++)
        if (a->unsent[i]) {
            a->unsent[i] = false;
            a->nunsent--;
            acceptor_wake_fallback(a, i);
        }
    mio__uring_free(a->ring);
    a->ring = NULL;
    a->epoll_due = false;
}

/* The wait on our ring: submits the wakes prepared since the last one, then blocks for the
 * poll's readiness (or a failed wake). Returns the number of epoll events harvested into events,
 * or -EINTR. A failing ring is given up: the events come from epoll_wait from then on. */
static int acceptor_ring_wait(struct acceptor *a, mio_events *events, int timeout)
{
    mio_pool *pool = a->pool;
    int err, n;

    err = mio__uring_wait(a->ring, a->epoll_due ? 0 : timeout);
    acceptor_wakes_sent(a);
    (void)mio__uring_reap(a->ring, acceptor_on_cqe, a);
    if (err < 0 && err != -ETIME && err != -EBUSY && err != -EINTR) {
        acceptor_ring_close(a);
        return mio_poll_poll(pool->apoll, events, 0);
    }
    if (!a->epoll_due) {
        mio_events_clear(events);
        return err == -EINTR ? err : 0;
    }
    n = mio_poll_poll(pool->apoll, events, 0);
    /* A multishot poll fires on new readiness only: a full harvest may have left events. */
    a->epoll_due = n >= 0 && (size_t)n == mio_events_capacity(events);
    return n;
}

/* After a burst: one wake per worker that received fds, elided when it is not asleep (the fence
 * that orders our pushes before the sleep check is inside mio__reactor_wake_claim). A claimed
 * wake goes as a ring message when it can, else by eventfd. */
static void acceptor_wake_workers(struct acceptor *a)
{
    mio_pool *pool = a->pool;

    for (unsigned i = 0; i < pool->nworkers; i++) {
        struct mio__pool_worker *w = &pool->workers[i];

        if (!a->touched[i])
            continue;
        a->touched[i] = false;
        if (!mio__reactor_wake_claim(w->r)) {
            mio__count(&w->st.wakes_elided, 1);
            continue;
        }
        mio__count(&w->st.wakes_performed, 1);
        if (acceptor_ring_wake(a, i))
            mio__count(&w->st.wakes_ring, 1);
        else
            mio__reactor_kick(w->r);
    }
}

static int acceptor_timeout(const struct acceptor *a)
{
    uint64_t now;

    switch (a->state) {
    case MIO__ACC_PAUSED_EMFILE:
        now = mio__clock_ms(0);
        return a->resume_at > now ? (int)(a->resume_at - now) : 0;
    case MIO__ACC_RUNNING:
        for (unsigned l = 0; l < a->pool->nlisteners; l++)
            if (a->ready[l])
                return 0;
        return -1;
    default:
        return -1; /* PAUSED_FULL: until a worker wakes us */
    }
}

static void acceptor_loop(struct acceptor *a, mio_events *events)
{
    mio_pool *pool = a->pool;

    while (a->state != MIO__ACC_STOPPING) {
        int n = a->ring != NULL ? acceptor_ring_wait(a, events, acceptor_timeout(a))
                                : mio_poll_poll(pool->apoll, events, acceptor_timeout(a));

        /* The owner stores stop_accepting, then writes our waker: the eventfd write and the poll
         * that reports it (directly, or through our ring's poll of the epoll fd) order the two,
         * so this load after the poll sees the stop. */
        if ((n < 0 && n != -EINTR) || mio__pr_load_uint(&pool->stop_accepting) != 0) {
            acceptor_set_state(a, MIO__ACC_STOPPING);
            break;
        }
        MIO_EVENTS_FOREACH(const mio_event *ev, events)
        {
            mio_token t = mio_event_token(ev);

            if (t != MIO__WAKER_TOKEN && t < pool->nlisteners)
                a->ready[t] = true;
        }
        if (a->state == MIO__ACC_PAUSED_EMFILE && mio__clock_ms(0) >= a->resume_at)
            acceptor_set_state(a, MIO__ACC_RUNNING);
        else if (a->state == MIO__ACC_PAUSED_FULL)
            acceptor_check_full(a);
        if (a->ring != NULL)
            acceptor_ring_accepted(a);
        for (unsigned l = 0; l < pool->nlisteners && a->state == MIO__ACC_RUNNING; l++)
            if (a->ready[l])
                acceptor_burst(a, l);
        acceptor_wake_workers(a);
    }
}

void *mio__pool_acceptor_main(void *arg)
{
    mio_pool *pool = arg;
    struct acceptor a = {.pool = pool, .reg = mio_poll_registry(pool->apoll)};
    mio_events *events = NULL;
    int err;

    mio__pool_thread_enter(pool);
    if (pool->opts.pin_cpus)
        mio__pool_pin(pool, pool->nworkers);
    a.ready = mio__calloc(0, pool->nlisteners, sizeof(*a.ready));
    a.touched = mio__calloc(0, pool->nworkers, sizeof(*a.touched));
    a.ring_fd = mio__calloc(0, pool->nworkers, sizeof(*a.ring_fd));
    a.unsent = mio__calloc(0, pool->nworkers, sizeof(*a.unsent));
    a.acc = mio__calloc(0, pool->nlisteners, sizeof(*a.acc));
    a.acc_err = mio__calloc(0, pool->nlisteners, sizeof(*a.acc_err));
    a.pend = mio__calloc(0, PEND_CAP, sizeof(*a.pend));
    err = (a.ready == NULL || a.touched == NULL || a.ring_fd == NULL || a.unsent == NULL ||
           a.acc == NULL || a.acc_err == NULL || a.pend == NULL)
              ? -ENOMEM
              : mio_events_new(64, &events);
    if (err == 0)
        acceptor_ring_open(&a);
    if (err == 0)
        err = acceptor_register(&a, true);
    a.state = MIO__ACC_RUNNING;
    mio__pool_thread_running(pool, err);
    if (err == 0)
        acceptor_loop(&a, events);
    /* Leave the listeners out of the poll; the owner closes them after joining us. */
    acceptor_set_state(&a, MIO__ACC_STOPPING);
    acceptor_ring_close(&a); /* every claimed wake delivered before the owner stops the workers */
    mio_events_free(events);
    mio__free(0, a.ready);
    mio__free(0, a.touched);
    mio__free(0, a.ring_fd);
    mio__free(0, a.unsent);
    mio__free(0, a.acc);
    mio__free(0, a.acc_err);
    mio__free(0, a.pend);
    return NULL;
}
