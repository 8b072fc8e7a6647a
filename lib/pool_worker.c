/* Pool worker: a thread running one reactor. In acceptor mode it drains its hand-off ring (the
 * reactor's cross-thread source) and calls the user's accept function; in reuseport mode it owns
 * one SO_REUSEPORT listener per mio_pool_listen and accepts itself (pool_worker_accept.c). On stop it closes its
 * listeners, closes fds still in its ring, flushes and closes its conns, and leaves its loop.
 * Worker thread, except the ring helpers, whose comments name their thread. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <mio/net.h>
#include "internal/mem.h"
#include "internal/conn_pool.h"
#include "internal/pool_int.h"
#include "internal/pr.h"
#include "internal/reactor_int.h"
#include "net/net_int.h"

#define STOP_TICK_MS 2

/* ---- the hand-off ring (single producer: the acceptor; single consumer: this worker) ---- */

/* The real ck_ring in every build. ThreadSanitizer cannot see ck's ordering (volatile accesses
 * and standalone fences; tests/tsan.supp names those ck internals), so the annotations state the
 * order the ring provides: a push releases, the pop that returns the entry acquires. Then TSan
 * checks everything the acceptor wrote before a hand-off against what the worker does with it. */

/* Acceptor thread. Publishes the slot with ck_ring's store fence before the producer index. */
bool mio__pool_ring_push(struct mio__pool_worker *w, const struct mio__handoff *h)
{
    MIO_TSAN_RELEASE(&w->ring);
    return ck_ring_enqueue_spsc_mio__handoff(&w->ring, w->slots, (struct mio__handoff *)h);
}

/* Worker thread (or the owner once the worker is joined). */
bool mio__pool_ring_pop(struct mio__pool_worker *w, struct mio__handoff *h)
{
    if (!ck_ring_dequeue_spsc_mio__handoff(&w->ring, w->slots, h))
        return false;
    MIO_TSAN_ACQUIRE(&w->ring);
    return true;
}

/* Any thread: entries queued now (a snapshot). */
unsigned mio__pool_ring_len(struct mio__pool_worker *w)
{
    return ck_ring_size(&w->ring);
}

/* Acceptor thread: a push would succeed (ck_ring keeps one slot free). */
bool mio__pool_ring_has_room(struct mio__pool_worker *w)
{
    return mio__pool_ring_len(w) + 1 < ck_ring_capacity(&w->ring);
}

/* The ring's consumer (the worker at stop, or the owner once the worker is joined): closes every
 * fd still queued; no accept callback runs for them. */
void mio__pool_worker_close_ring(struct mio__pool_worker *w)
{
    struct mio__handoff h;

    while (mio__pool_ring_pop(w, &h))
        (void)close(h.fd);
}

/* ---- acceptor mode: the reactor source ---- */

static bool worker_pending(void *arg)
{
    return mio__pool_ring_len(arg) > 0;
}

/* The peer address of a hand-off, as the accept callback receives it. */
static void handoff_peer(const struct mio__handoff *h, mio_addr *peer)
{
    if (h->peer_len > 0) {
        peer->len = h->peer_len;
        memcpy(&peer->u, &h->peer, h->peer_len);
        return;
    }
    mio__pool_getpeer(h->fd, peer);
}

/* Worker thread. Delivers at most one ring's worth per call so a producer refilling the ring
 * cannot keep the reactor here forever (pending() keeps the loop from blocking meanwhile). */
static void worker_drain(mio_reactor *r, void *arg)
{
    struct mio__pool_worker *w = arg;
    mio_pool *pool = w->pool;
    unsigned budget = ck_ring_capacity(&w->ring);
    struct mio__handoff h;
    mio_addr peer;
    bool took = false;

    while (budget-- > 0 && mio__pool_ring_pop(w, &h)) {
        took = true;
        if (w->stopping) {
            (void)close(h.fd);
            continue;
        }
        mio__count(&w->st.accepted, 1);
        handoff_peer(&h, &peer);
        pool->listeners[h.listener].fn(r, h.fd, &peer, pool->listeners[h.listener].arg);
    }
    /* [W]: pairs with the acceptor's [A] (pool_acceptor.c): either it sees the room we made, or
     * we see PAUSED_FULL and wake it (once per pause, thanks to rearm_requested). */
    if (took) {
        mio__pr_fence_memory();
        if (mio__pr_load_uint(&pool->acceptor_state) == MIO__ACC_PAUSED_FULL &&
            mio__pr_fas_uint(&pool->rearm_requested, 1) == 0)
            (void)mio_waker_wake(pool->awaker);
    }
}

static void worker_drain_task(mio_reactor *r, void *arg)
{
    struct mio__pool_worker *w = arg;
    mio_pool *pool = w->pool;

    (void)r;
    mio__pool_worker_close_listeners(w);
    /* The mutex publishes the closed slots to the owner, which waits for every ack. */
    pthread_mutex_lock(&pool->mu);
    w->drain_done = true;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

/* Failures of the loop's wait that may pass (memory, a busy ring): retried after a pause. */
static bool loop_error_transient(int err)
{
    return err == -ENOMEM || err == -ENOBUFS || err == -EAGAIN || err == -EBUSY;
}

/* Runs the worker's loop until it is stopped (0) or its wait fails for good (-errno). A
 * transient failure is retried after a pause that doubles from 1 ms up to 100 ms. */
static int worker_run(struct mio__pool_worker *w)
{
    unsigned pause_ms = 1;

    for (;;) {
        int err = mio_reactor_run(w->r);

        if (err == 0 || !loop_error_transient(err))
            return err;
        (void)usleep(pause_ms * 1000u);
        pause_ms = pause_ms >= 50 ? 100 : pause_ms * 2;
    }
}

/* The loop failed for good: the worker leaves service, and says so in its stats (loop_error).
 * The acceptor passes it over from now on; what it handed off before it saw that is closed here
 * or at the pool's stop, so those clients see their connection closed rather than wait. In
 * reuseport mode its listening sockets close: the kernel then gives new connections to the
 * other workers' sockets (those queued on these are reset). A drain in progress stops waiting
 * for this worker. Its conns are closed by the caller, as after a stop. */
static void worker_failed(struct mio__pool_worker *w, int err)
{
    mio_pool *pool = w->pool;

    mio__pr_store_64(&w->st.loop_error, (uint64_t)(int64_t)err);
    w->stopping = true;
    mio__pool_worker_close_listeners(w);
    mio__pool_spare_close(&w->spare_fd);
    pthread_mutex_lock(&pool->mu);
    mio__pr_store_uint(&w->out_of_service, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    mio__pool_worker_close_ring(w);
}

int mio__pool_worker_post_drain(struct mio__pool_worker *w)
{
    return mio_reactor_post(w->r, worker_drain_task, w);
}

static void worker_stop_tick(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct mio__pool_worker *w = arg;

    if (mio__conn_close_all(r, w->deadline) == 0) {
        (void)mio_reactor_timer_cancel(r, id);
        mio__reactor_stop(r);
    }
}

/* Reuseport on io_uring: the listeners' accepts are cancelled here, and what they accepted before
 * the cancel took effect reaches the worker as it stops, or at the latest in the quiesce after
 * its loop (mio__reactor_quiesce hands the pool its completions), and is closed. */
static void worker_stop_task(mio_reactor *r, void *arg)
{
    struct mio__pool_worker *w = arg;
    mio_pool *pool = w->pool;

    w->stopping = true;
    /* Close to new SYNs as early as possible: what the kernel queued on this listener is reset
     * when it closes (see pool.h). */
    mio__pool_worker_close_listeners(w);
    mio__pool_spare_close(&w->spare_fd);
    mio__pool_worker_close_ring(w);
    mio__reactor_update_now(r);
    w->deadline = mio_reactor_now_ms(r) + (uint64_t)pool->drain_ms;
    if (mio__conn_close_all(r, w->deadline) == 0 ||
        mio_reactor_timer_start(r, STOP_TICK_MS, STOP_TICK_MS, worker_stop_tick, w, NULL) < 0)
        mio__reactor_stop(r);
}

/* Owner thread, with every producer stopped. Returns 0 or -EAGAIN (task queue full: retry). */
int mio__pool_worker_post_stop(struct mio__pool_worker *w)
{
    return mio_reactor_post(w->r, worker_stop_task, w);
}

/* ---- the thread ---- */

static int worker_setup(struct mio__pool_worker *w)
{
    if (w->pool->opts.mode == MIO_POOL_ACCEPTOR) {
        struct mio__reactor_source src = {worker_pending, worker_drain, w};

        return mio__reactor_set_source(w->r, &src);
    }
    return mio__pool_worker_listen(w);
}
void *mio__pool_worker_main(void *arg)
{
    struct mio__pool_worker *w = arg;
    int err, run_err;

    mio__pool_thread_enter(w->pool);
    mio__mem_thread_start();
    if (w->pool->opts.pin_cpus)
        mio__pool_pin(w->pool, w->index);
    err = worker_setup(w);
    /* Before the start barrier: mio_pool_start returns after every worker's hook, and the loop
     * (where fds are accepted or taken from the ring) has not run yet. */
    if (err == 0 && w->pool->opts.on_worker_start != NULL)
        w->pool->opts.on_worker_start(w->r, w->index, w->pool->opts.worker_arg);
    mio__pool_thread_running(w->pool, err);
    /* Even after a failed setup the loop runs, so the stop task posted by the owner finds it. */
    if ((run_err = worker_run(w)) < 0)
        worker_failed(w, run_err);
    /* A conn opened by a task after the last sweep (or a loop that failed) must not outlive the
     * pool: close it here, still on this thread and before the owner's join returns. */
    (void)mio__conn_close_all(w->r, 0);
    mio__reactor_settle(w->r); /* their on_close calls, before the owner's join returns */
    if (err == 0 && w->pool->opts.on_worker_stop != NULL)
        w->pool->opts.on_worker_stop(w->r, w->index, w->pool->opts.worker_arg);
    mio__reactor_quiesce(w->r); /* the owner frees the reactor without entering its ring */
    mio__pool_worker_listen_free(w);
    return NULL;
}
