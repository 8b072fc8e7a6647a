/* Private structures of the pool: listeners, workers with their hand-off rings, the acceptor.
 * Thread roles: the "owner" thread calls mio_pool_* (new, listen, start, stop, free); the acceptor
 * thread is the only producer of every ring; worker i's thread is the only consumer of ring i.
 * Include config.h before this header (cpu_set_t needs _GNU_SOURCE). */
#ifndef MIO_INTERNAL_POOL_INT_H
#define MIO_INTERNAL_POOL_INT_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <ck_ring.h>
#include <mio/poll.h>
#include <mio/pool.h>
#include <mio/reactor.h>
#include <mio/waker.h>
#include "pr.h"

/* One accepted connection travelling from the acceptor to a worker, by value. 40 bytes, not the
 * 144 of a whole mio_addr: the acceptor touches every slot of the ring as it wraps, so each worker
 * keeps ring_size entries resident (40 KiB at the default of 1024 slots), whatever its load.
 * IPv4/IPv6 and unnamed Unix peers travel inline; a longer (bound Unix) peer has peer_len 0 and
 * the worker asks getpeername. */
struct mio__handoff {
    int fd;
    unsigned listener;
    socklen_t peer_len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
};
CK_RING_PROTOTYPE(mio__handoff, mio__handoff)

/* Per-worker counters: written by the acceptor or the worker (atomic adds, internal/pr.h), read by
 * anyone (relaxed loads). Counters order nothing. */
struct mio__pool_counters {
    uint64_t accepted, handed_off, wakes_performed, wakes_elided, ring_full, emfile, accept_errors,
        accept_calls, listener_paused, wakes_ring;
    uint64_t loop_error; /* (int64_t) -errno once the worker's loop failed for good; written
                            once by the worker, before out_of_service */
};

static inline void mio__count(uint64_t *c, uint64_t n)
{
    mio__pr_add_64(c, n);
}

/* The acceptor's state (pool->acceptor_state): one at a time, only the acceptor thread stores it;
 * workers load it to know whether a drain must wake the acceptor (PAUSED_FULL). */
enum mio__acceptor_state {
    MIO__ACC_RUNNING,       /* listeners registered, accepting */
    MIO__ACC_PAUSED_FULL,   /* every ring was full: listeners out of the poll until a worker
                               drains and wakes us (the kernel backlog holds new connections) */
    MIO__ACC_PAUSED_EMFILE, /* out of fds or memory: listeners out of the poll for
                               MIO__POOL_ACCEPT_PAUSE_MS */
    MIO__ACC_STOPPING,      /* the owner asked us to stop: leave the loop */
};

struct mio__pool_listener {
    mio_accept_fn fn;
    void *arg;
    mio_addr addr;     /* as bound (port resolved) */
    int *fds;          /* acceptor mode: fds[0]; reuseport: one per worker. -1 once closed */
    mio_token *tokens; /* reuseport: each worker's registration of fds[i] */
    bool shared;       /* reuseport, adopted: fds[i > 0] are duplicates of fds[0], one socket */
};

struct mio__pool_worker {
    mio_pool *pool;
    unsigned index;
    mio_reactor *r;
    pthread_t thread;
    bool joinable;
    /* hand-off ring: acceptor produces, this worker consumes */
    ck_ring_t ring;
    struct mio__handoff *slots;
    struct mio__pool_counters st;
    unsigned out_of_service; /* 1 once the worker's loop failed for good: stored under the pool's
                                mu (a drain waits on it), loaded relaxed by the acceptor, which
                                then hands nothing more to it */
    bool drain_done;         /* reuseport drain: this worker closed its listeners (under mu) */
    /* worker thread only */
    bool stopping;
    uint64_t deadline;
    int spare_fd;       /* reuseport: spare fd for EMFILE */
    bool accept_paused; /* reuseport: EMFILE pause in progress */
    bool accept_more;   /* reuseport: a batch hit its limit, a continuation is queued */
    struct mio__worker_listen *listen; /* reuseport: this worker's state of each listener */
};

/* Any thread: the worker's loop has not failed for good (pool_worker.c, worker_failed). Relaxed:
 * the acceptor reads it as a hint (an fd it hands off meanwhile is closed at the pool's stop,
 * with the rest of the ring); the owner reads it under the pool's mu, where it is stored. */
static inline bool mio__pool_worker_in_service(const struct mio__pool_worker *w)
{
    return mio__pr_load_uint(&w->out_of_service) == 0;
}

enum { POOL_NEW, POOL_RUNNING, POOL_STOPPED };

struct mio_pool {
    mio_pool_opts opts; /* resolved: no zero left */
    int state;          /* owner thread only */
    struct mio__pool_listener *listeners;
    unsigned nlisteners;
    struct mio__pool_worker *workers;
    unsigned nworkers;
    /* acceptor (acceptor mode) */
    pthread_t acceptor;
    bool acceptor_joinable;
    mio_poll *apoll;
    mio_waker *awaker;
    int spare_fd;
    unsigned stop_accepting;  /* owner -> acceptor: 1 once stop began (then the waker is written) */
    unsigned acceptor_state;  /* enum mio__acceptor_state; acceptor stores, workers load */
    unsigned rearm_requested; /* a worker drained while PAUSED_FULL and woke us (once per pause) */
    unsigned rr_next;         /* acceptor only */
    /* start barrier */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned running; /* threads that reached their loop */
    int start_err;
    int drain_ms;
    unsigned draining; /* owner stores 1 when drain or stop begins; anyone loads (relaxed) */
    cpu_set_t cpus;    /* CPUs the process may run on (pinning) */
};

/* ring helpers (pool_worker.c) */
bool mio__pool_ring_push(struct mio__pool_worker *w, const struct mio__handoff *h);
bool mio__pool_ring_pop(struct mio__pool_worker *w, struct mio__handoff *h);
unsigned mio__pool_ring_len(struct mio__pool_worker *w);
bool mio__pool_ring_has_room(struct mio__pool_worker *w);

/* Returns res unchanged. Every completion of the pool's multishot accepts (the acceptor's and the
 * reuseport workers') passes through here with its listener's fd before it is acted on. Defined
 * alone in pool_accept_result.c so that the fault-injection tests can reroute it with -Wl,--wrap
 * (as mio__conn_ring_result, internal/conn_ring_result.h): a result that arrives in a CQE offers
 * them no call to fail. */
int mio__pool_ring_accept_result(int lfd, int res);

/* reuseport mode, worker thread (pool_worker_accept.c) */
/* Sets up accepting on the worker's listeners: the spare fd, and each listener registered for
 * accept4 on readiness (epoll) or its multishot accept armed on the worker's ring (io_uring).
 * Returns 0 or -errno. */
int mio__pool_worker_listen(struct mio__pool_worker *w);
/* Closes the worker's listeners (their accepts on the ring cancelled first). */
void mio__pool_worker_close_listeners(struct mio__pool_worker *w);
/* Releases what mio__pool_worker_listen set up (after the loop ended). */
void mio__pool_worker_listen_free(struct mio__pool_worker *w);
/* The peer of an accepted fd (AF_UNSPEC when the client has gone already). Any thread. */
void mio__pool_getpeer(int fd, mio_addr *peer);

/* worker side (pool_worker.c) */
void *mio__pool_worker_main(void *arg);
int mio__pool_worker_post_stop(struct mio__pool_worker *w);
/* Owner thread, reuseport mode: has worker w close its listeners and set its drain_done (under
 * mu, cv broadcast). Returns 0 or -EAGAIN (task queue full: retry). */
int mio__pool_worker_post_drain(struct mio__pool_worker *w);
/* The ring's consumer only (the worker, or the owner once the worker is joined): closes every fd
 * still queued. */
void mio__pool_worker_close_ring(struct mio__pool_worker *w);

/* acceptor (pool_acceptor.c) */
void *mio__pool_acceptor_main(void *arg);

/* shared helpers (pool.c) */
/* First thing on every pool thread: marks the thread as the pool's (mio_pool_stop refuses it). */
void mio__pool_thread_enter(const mio_pool *pool);
void mio__pool_thread_running(mio_pool *pool, int err);
void mio__pool_pin(mio_pool *pool, unsigned slot);
/* The spare fd for EMFILE/ENFILE (see mio__pool_accept_failed): /dev/null. The fd or -errno. */
int mio__pool_spare_open(void);
/* Closes *spare unless it is -1, and sets it to -1. */
void mio__pool_spare_close(int *spare);

/* How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM: the loop never spins. */
#define MIO__POOL_ACCEPT_PAUSE_MS 100

/* What an accepting thread does after mio__socket_accept (net/net_int.h, which retries EINTR)
 * failed with err. */
enum mio__accept_next {
    MIO__ACCEPT_DRAINED, /* -EAGAIN: the backlog is empty */
    MIO__ACCEPT_SKIP,    /* ECONNABORTED/EPROTO/EPERM: counted; accept the next one */
    MIO__ACCEPT_PAUSE,   /* out of fds (one connection shed with the spare fd) or of memory:
                            counted; pause accepting for MIO__POOL_ACCEPT_PAUSE_MS */
};
/* Classifies err, counts it in st (accept_errors or emfile) and, for EMFILE/ENFILE, sheds one
 * pending connection through *spare. The one place the accept error policy lives. */
enum mio__accept_next mio__pool_accept_failed(int err, int lfd, int *spare,
                                              struct mio__pool_counters *st);

#endif
