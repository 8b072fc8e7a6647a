/* Pool worker, reuseport mode: accepting on the worker's own listening sockets.
 *
 * On epoll, accept4 in bursts on each listener's readiness (edge-triggered). On the io_uring
 * backend, one multishot accept per listener on the worker's ring: each completion is a
 * connection (its fd; the peer from getpeername, as a multishot accept reports none), served at
 * once on this thread. An accept that ends with an error is handled as accept4's error would be
 * (mio__pool_accept_failed) and armed again, at once or after the pause; -EINVAL (a kernel
 * without multishot accept) sends that listener back to accept4 on readiness for good.
 *
 * Closing a listener whose accept is armed cancels the accept first: the ring holds a reference
 * to the socket until the cancel completes (the end of the iteration submits it), so the socket
 * leaves the reuseport group then, and a connection the kernel accepted meanwhile arrives with
 * the worker stopping and is closed, as the backlog of a closed listener is reset: during the
 * stop, or in the ring's quiesce after the loop (mio__reactor_quiesce hands these completions
 * here too).
 * Worker thread. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <mio/net.h>
#include "internal/mem.h"
#include "internal/pool_int.h"
#include "internal/reactor_int.h"
#include "internal/uring.h"
#include "net/net_int.h"

#define RETRY_ARM_MS 1 /* the ring's SQ stayed full: arm again this soon */

struct mio__worker_listen {
    struct mio__pool_worker *w;
    unsigned listener;
    bool ring;      /* accepts on the ring; false: accept4 on epoll readiness */
    bool polled;    /* ... and registered with the reactor for it */
    bool armed;     /* a multishot accept is in flight (its last completion not seen yet) */
    bool cancelled; /* ... and its cancel is prepared */
};

void mio__pool_getpeer(int fd, mio_addr *peer)
{
    peer->len = sizeof(peer->u);
    if (getpeername(fd, &peer->u.sa, &peer->len) == -1) {
        peer->len = sizeof(sa_family_t); /* gone already: an address of the family only */
        peer->u.sa.sa_family = AF_UNSPEC;
    }
}

static void worker_accept_burst(struct mio__pool_worker *w, unsigned l);
static void worker_ring_arm(struct mio__pool_worker *w, unsigned l);
static void worker_ring_cancel(struct mio__pool_worker *w);

static void worker_accept_all(struct mio__pool_worker *w)
{
    for (unsigned l = 0; l < w->pool->nlisteners && !w->accept_paused; l++) {
        if (w->listen[l].ring)
            worker_ring_arm(w, l);
        else
            worker_accept_burst(w, l);
    }
}

static void worker_on_resume(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct mio__pool_worker *w = arg;

    (void)r;
    (void)id;
    w->accept_paused = false;
    w->accept_more = false;
    if (!w->stopping)
        worker_accept_all(w);
}

static void worker_pause(struct mio__pool_worker *w, uint64_t ms)
{
    if (mio_reactor_timer_start(w->r, ms, 0, worker_on_resume, w, NULL) == 0)
        w->accept_paused = true;
}

/* ---- accept4 on readiness ---- */

/* Edge-triggered: a burst ends at -EAGAIN, or at the batch limit, in which case a zero-delay timer
 * continues it on the next iteration so other handlers get their turn. */
static void worker_accept_burst(struct mio__pool_worker *w, unsigned l)
{
    mio_pool *pool = w->pool;
    struct mio__pool_listener *ls = &pool->listeners[l];
    int lfd = ls->fds[w->index];
    mio_addr peer;

    for (unsigned k = 0; k < pool->opts.accept_batch; k++) {
        int fd;

        if (w->stopping || w->accept_paused || lfd < 0)
            return;
        fd = mio__socket_accept(lfd, &peer);
        mio__count(&w->st.accept_calls, 1);
        if (fd >= 0) {
            mio__count(&w->st.accepted, 1);
            ls->fn(w->r, fd, &peer, ls->arg);
            continue;
        }
        switch (mio__pool_accept_failed(fd, lfd, &w->spare_fd, &w->st)) {
        case MIO__ACCEPT_DRAINED:
            return;
        case MIO__ACCEPT_SKIP:
            continue;
        case MIO__ACCEPT_PAUSE:
            worker_pause(w, MIO__POOL_ACCEPT_PAUSE_MS);
            return;
        }
    }
    if (!w->accept_more) {
        w->accept_more = true;
        worker_pause(w, 0);
    }
}

static void worker_on_listen(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct mio__worker_listen *wl = arg;

    (void)r;
    (void)token;
    (void)ev;
    if (!wl->w->accept_paused)
        worker_accept_burst(wl->w, wl->listener);
}

static int worker_listen_on_epoll(struct mio__pool_worker *w, unsigned l)
{
    struct mio__pool_listener *ls = &w->pool->listeners[l];
    int err;

    w->listen[l].ring = false;
    err = mio_reactor_add(w->r, ls->fds[w->index], MIO_READABLE, worker_on_listen, &w->listen[l],
                          &ls->tokens[w->index]);
    w->listen[l].polled = err == 0;
    return err;
}

/* ---- a multishot accept on the ring ---- */

static uint64_t accept_ud(unsigned l)
{
    return MIO__REACTOR_UD_AUX | l;
}

/* Arms listener l's accept unless it is armed, paused, stopping or closed. An SQ that stays full
 * is retried shortly. */
static void worker_ring_arm(struct mio__pool_worker *w, unsigned l)
{
    struct mio__worker_listen *wl = &w->listen[l];
    int lfd = w->pool->listeners[l].fds[w->index];

    if (wl->armed || !wl->ring || w->accept_paused || w->stopping || lfd < 0)
        return;
    if (mio__uring_accept(mio__reactor_uring(w->r), lfd, accept_ud(l)) == 0)
        wl->armed = true;
    else
        worker_pause(w, RETRY_ARM_MS);
}

/* A completion of listener l's accept (the reactor's aux consumer). */
static void worker_on_ring_accept(mio_reactor *r, void *ctx, uint64_t ud, int res,
                                  unsigned flags)
{
    struct mio__pool_worker *w = ctx;
    mio_pool *pool = w->pool;
    unsigned l = (unsigned)(ud & ~MIO__REACTOR_UD_AUX);
    struct mio__pool_listener *ls;
    int lfd;
    mio_addr peer;

    if (l >= pool->nlisteners)
        return;
    ls = &pool->listeners[l];
    lfd = ls->fds[w->index];
    res = mio__pool_ring_accept_result(lfd, res);
    if (!(flags & MIO__CQE_MORE))
        w->listen[l].armed = w->listen[l].cancelled = false;
    if (w->stopping) {
        if (res >= 0)
            (void)close(res); /* accepted before the cancel took effect: reset like the backlog */
        return;
    }
    if (res == -ECANCELED) {
        worker_ring_arm(w, l); /* a pause's cancel (armed again unless it still lasts), or a
                                  drain's (the listener is closed: nothing to arm) */
        return;
    }
    mio__count(&w->st.accept_calls, 1);
    if (res >= 0) {
        if (lfd < 0) {
            (void)close(res); /* the listener closed (a drain) before the cancel took effect */
            return;
        }
        mio__count(&w->st.accepted, 1);
        mio__pool_getpeer(res, &peer);
        ls->fn(r, res, &peer, ls->arg);
    } else if (res == -EINVAL || res == -EOPNOTSUPP) {
        /* No multishot accept here (or a socket it refuses): accept4 on readiness from now on,
         * which reports the socket's own errors as before. */
        if (lfd >= 0 && worker_listen_on_epoll(w, l) == 0)
            worker_accept_burst(w, l);
        return;
    } else if (res != -EINTR && res != -EAGAIN &&
               mio__pool_accept_failed(res, lfd, &w->spare_fd, &w->st) == MIO__ACCEPT_PAUSE) {
        /* The pause stops every listener of this worker, as on epoll (where the readiness of
         * the others is ignored meanwhile): their armed accepts are cancelled, and all are
         * armed afresh when it ends. */
        worker_pause(w, MIO__POOL_ACCEPT_PAUSE_MS);
        worker_ring_cancel(w);
        return;
    }
    worker_ring_arm(w, l);
}

/* Prepares the cancel of every armed accept not cancelled yet (it goes out at the end of the
 * iteration). One that finds the SQ full stays armed: the ring's quiesce cancels it at the
 * latest. */
static void worker_ring_cancel(struct mio__pool_worker *w)
{
    for (unsigned l = 0; l < w->pool->nlisteners; l++) {
        struct mio__worker_listen *wl = &w->listen[l];

        if (wl->armed && !wl->cancelled)
            wl->cancelled = mio__uring_cancel(mio__reactor_uring(w->r), accept_ud(l)) == 0;
    }
}

/* ---- set-up and close ---- */

int mio__pool_worker_listen(struct mio__pool_worker *w)
{
    mio_pool *pool = w->pool;
    bool ring = mio__reactor_uring(w->r) != NULL;
    int err;

    err = mio__pool_spare_open();
    if (err < 0)
        return err;
    w->spare_fd = err;
    w->listen = mio__calloc(mio__reactor_arena(w->r), pool->nlisteners, sizeof(*w->listen));
    if (w->listen == NULL)
        return -ENOMEM;
    if (ring && (err = mio__reactor_set_aux(w->r, worker_on_ring_accept, w)) < 0)
        return err;
    for (unsigned l = 0; l < pool->nlisteners; l++) {
        w->listen[l].w = w;
        w->listen[l].listener = l;
        if (ring) {
            w->listen[l].ring = true;
            worker_ring_arm(w, l); /* submitted by the loop's first wait */
        } else if ((err = worker_listen_on_epoll(w, l)) < 0) {
            return err;
        }
    }
    return 0;
}

/* This worker's listeners leave its poll (or their accepts are cancelled) and close. Each worker
 * owns its slot fds[index] of every listener (the owner touches them only once the workers are
 * joined). */
void mio__pool_worker_close_listeners(struct mio__pool_worker *w)
{
    mio_pool *pool = w->pool;

    if (pool->opts.mode != MIO_POOL_REUSEPORT || w->listen == NULL)
        return;
    worker_ring_cancel(w);
    for (unsigned l = 0; l < pool->nlisteners; l++) {
        struct mio__pool_listener *ls = &pool->listeners[l];

        if (ls->fds[w->index] < 0)
            continue;
        if (w->listen[l].polled)
            (void)mio_reactor_remove(w->r, ls->tokens[w->index]);
        (void)close(ls->fds[w->index]);
        ls->fds[w->index] = -1;
    }
}

void mio__pool_worker_listen_free(struct mio__pool_worker *w)
{
    if (w->listen != NULL)
        (void)mio__reactor_set_aux(w->r, NULL, NULL);
    mio__free(mio__reactor_arena(w->r), w->listen);
    w->listen = NULL;
}
