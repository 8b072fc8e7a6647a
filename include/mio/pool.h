/* Pool: an acceptor thread handing connections to N worker reactors (or N SO_REUSEPORT workers),
 * with balancing, back-pressure, graceful shutdown and per-worker stats.
 *
 * Acceptor mode (default): one thread accepts in batches and pushes {fd, peer} into a per-worker
 * single-producer ring; a worker is woken at most once per burst and only when it sleeps. When
 * every ring is full, the listeners are paused (the kernel backlog holds new connections) until
 * a worker drains. EMFILE/ENFILE: a spare fd is given up to accept and close one pending
 * connection, then accepting pauses ~100 ms, so the thread never spins.
 *
 * Reuseport mode: every worker owns its own SO_REUSEPORT listener and accepts itself; the kernel
 * spreads connections by hash (the balance option does not apply).
 * Caveat: the kernel resets (RST) the connections still waiting in a listener's accept queue when
 * that listener closes; it does not move them to the other listeners of the group unless the
 * net.ipv4.tcp_migrate_req sysctl (Linux >= 5.14) is 1. mio_pool_stop therefore has each worker
 * close its listener first, before flushing its connections, so the window in which a client can
 * still complete a handshake into a closing queue is as short as possible; clients in that window
 * see a reset instead of a refused connect. In acceptor mode the single listener closes at once
 * and connections queued on it are reset the same way.
 *
 * Listeners the pool did not create (systemd socket activation, a restart that hands the sockets
 * to a new copy of the server) come in through mio_pool_adopt; mio_pool_drain stops accepting
 * without closing connections, and mio_pool_listener_fds gives the sockets to pass on.
 *
 * Threads: mio_pool_new/listen/adopt/start/drain/stop/free are for one owner thread (never a pool
 * thread);
 * mio_pool_stats, mio_pool_workers and mio_pool_worker are for any thread. */
#ifndef MIO_POOL_H
#define MIO_POOL_H

#include <mio/common.h>
#include <mio/net.h>
#include <mio/reactor.h>

MIO_BEGIN_DECLS

typedef struct mio_pool mio_pool;

/* Runs on the chosen worker's thread; the fd (O_NONBLOCK|O_CLOEXEC) is now the callee's; peer is
 * never NULL and valid only during the call. (An io_uring pool's acceptor accepts with a multishot
 * accept, which reports no address: the worker asks getpeername(2) for it, and a peer that has
 * already reset the connection gives an address of family AF_UNSPEC.) */
typedef void (*mio_accept_fn)(mio_reactor *worker, int fd, const mio_addr *peer, void *arg);

#define MIO_POOL_ACCEPTOR 0       /* default: one acceptor thread hands fds to the workers */
#define MIO_POOL_REUSEPORT 1      /* each worker owns an SO_REUSEPORT listener and accepts itself */
#define MIO_BALANCE_ROUND_ROBIN 0 /* default */
#define MIO_BALANCE_LEAST_LOADED 1
/* Acceptor mode: round robin among the workers that are awake (running, or already due a wake),
 * so that a hand-off to them costs no wake-up; a sleeping worker is chosen (and woken) only when
 * no awake one has room or every awake one carries clearly more load (ring + conns) than the
 * least loaded: more than a quarter above it plus 16. Fewer wake-ups for a less even spread. */
#define MIO_BALANCE_AWAKE_FIRST 2

/* Options; NULL or zero-filled means defaults. Fixed size (128 bytes on 64-bit targets), as
 * mio_reactor_opts: options to come take their room from `reserved`, which must be zero
 * (mio_pool_new returns -EINVAL otherwise). */
typedef struct mio_pool_opts {
    unsigned workers;      /* 0: one per CPU this process may run on */
    int mode;              /* MIO_POOL_ACCEPTOR or MIO_POOL_REUSEPORT */
    int balance;           /* MIO_BALANCE_ROUND_ROBIN, _LEAST_LOADED or _AWAKE_FIRST */
    unsigned ring_size;    /* hand-off ring slots per worker (power of two); 0: 1024 */
    int backlog;           /* listen backlog; 0: 1024 */
    unsigned accept_batch; /* accepts per listener readiness before yielding; 0: 256
                              (accept4 on epoll readiness only: the io_uring backend's multishot
                              accepts post one completion per connection) */
    bool pin_cpus;         /* pin worker i (and the acceptor) to CPUs round robin */
    bool nodelay;          /* TCP_NODELAY on every accepted TCP connection (set once on the
                              listeners, which pass it on: no syscall per connection) */
    /* Run on each worker's own thread: start before the worker accepts anything (mio_pool_start
     * returns after every worker's start hook), stop after its last callback (its conns closed).
     * Per-worker state set up here can hang off the reactor: mio_reactor_set_data. */
    void (*on_worker_start)(mio_reactor *worker, unsigned index, void *arg);
    void (*on_worker_stop)(mio_reactor *worker, unsigned index, void *arg);
    void *worker_arg; /* the hooks' arg */
    int backend;      /* the workers' MIO_BACKEND_* (reactor.h); 0: MIO_BACKEND_DEFAULT */
    uint64_t reserved[8]; /* zero */
} mio_pool_opts;

/* Per-worker counters (relaxed snapshots). In acceptor mode the acceptor's own counters (emfile,
 * accept_errors, accept_calls, listener_paused) are reported on worker 0. Fixed size (256 bytes):
 * counters to come take their room from `reserved` (see struct mio_reactor_stats). */
typedef struct mio_worker_stats {
    uint64_t accepted;        /* connections handed to the accept function on this worker */
    uint64_t active;          /* mio_conns open on this worker's reactor now */
    uint64_t handed_off;      /* acceptor mode: fds pushed into this worker's ring */
    uint64_t wakes_performed; /* hand-off wakes performed (the worker was asleep): by eventfd
                                 write, or by ring message (wakes_ring) */
    uint64_t wakes_elided;    /* hand-off wakes skipped because the worker was not asleep */
    uint64_t ring_full;       /* times this worker's ring was found full and skipped */
    uint64_t emfile;          /* EMFILE/ENFILE on accept (a pending connection was shed) */
    uint64_t accept_errors;   /* ECONNABORTED / EPROTO / EPERM skipped, ENOBUFS / ENOMEM */
    uint64_t ring_len;        /* fds waiting in this worker's ring now */
    uint64_t accept_calls;    /* accept4 calls made (io_uring: accept completions) */
    uint64_t listener_paused; /* times accepting paused because every ring was full */
    uint64_t wakes_ring;      /* of wakes_performed, those sent as an io_uring message to the
                                 worker's ring (io_uring backend), no eventfd written; a message
                                 the kernel refuses is taken back out, and that wake writes the
                                 eventfd instead */
    int64_t loop_error;       /* 0 while this worker's loop runs; else the -errno with which its
                                 wait failed for good (transient failures, -ENOMEM, -ENOBUFS,
                                 -EAGAIN, -EBUSY, are retried after a pause). Such a worker is
                                 out of service: its conns are closed as by a stop with no time
                                 to drain (on_close: 0, or -ECANCELED for output still queued),
                                 the acceptor passes it over, a reuseport worker closes its
                                 listening socket so the kernel sends its share to the others */
    uint64_t reserved[19];    /* zero; room for counters to come */
} mio_worker_stats;

/* Creates a pool (no thread yet). Returns 0 and *out, -EINVAL (bad mode/balance), -ENOMEM. */
MIO_EXTERN int mio_pool_new(const mio_pool_opts *opts, mio_pool **out);
/* Binds a listener at once (port 0 resolved; see mio_pool_local_addr) and routes its connections
 * to fn(worker, fd, peer, arg). Before start only (-EINVAL after). Returns the listener index
 * (counting calls from 0) or -errno (-EADDRINUSE, ...). */
MIO_EXTERN int mio_pool_listen(mio_pool *pool, const mio_addr *addr, mio_accept_fn fn, void *arg);
/* Adopts a listening stream socket the pool did not create (inherited from a parent, passed by
 * systemd: see mio_sd_listen_fds) and routes its connections to fn(worker, fd, peer, arg), as
 * mio_pool_listen does. The socket must be SOCK_STREAM, AF_INET, AF_INET6 or AF_UNIX, and
 * listening. On success the pool owns fd (closed by mio_pool_drain, mio_pool_stop or
 * mio_pool_free) and has made it O_NONBLOCK and FD_CLOEXEC (the file status flag is shared with
 * every process holding the socket); TCP_NODELAY is set on it when opts.nodelay asks. Reuseport
 * mode: an adopted socket is not a SO_REUSEPORT group of its own; every worker registers its own
 * duplicate of it (F_DUPFD_CLOEXEC) in its own poll and accepts from it, so each new connection
 * wakes every idle worker and one of them wins the accept. Adopt one socket per worker (each
 * its own listener) to spread the wake-ups. Before start only. Returns the listener index
 * (shared with mio_pool_listen's) or -errno; on failure fd stays the caller's, untouched:
 * -EINVAL (NULL pool or fn, pool started or stopped, socket not listening), -EBADF (fd not
 * open), -ENOTSOCK (not a socket), -EPROTOTYPE (not SOCK_STREAM: UDP, SEQPACKET),
 * -EAFNOSUPPORT (another family), -ENOMEM, -EMFILE (reuseport duplicates). Owner thread. */
MIO_EXTERN int mio_pool_adopt(mio_pool *pool, int fd, mio_accept_fn fn, void *arg);
/* The sockets of listener i, to hand to another process (a restarted copy of the server): stores
 * up to cap of them in fds and returns how many there are: 1, or the number of workers for a
 * mio_pool_listen listener in reuseport mode (one SO_REUSEPORT socket per worker: pass them all,
 * or what waits in the queues of those not passed is reset when this pool closes them, unless
 * net.ipv4.tcp_migrate_req is 1). 0 once mio_pool_drain or mio_pool_stop closed them. The fds
 * stay the pool's (close-on-exec): dup them, never close them. -EINVAL: NULL pool, bad index, or
 * NULL fds with cap > 0. Owner thread. */
MIO_EXTERN int mio_pool_listener_fds(const mio_pool *pool, unsigned listener, int *fds,
                                     unsigned cap);
/* The bound address of listener i. Returns 0, -EINVAL (bad index). */
MIO_EXTERN int mio_pool_local_addr(const mio_pool *pool, unsigned listener, mio_addr *out);
/* Starts the threads and returns once every one runs. Pool threads block SIGINT, SIGTERM and
 * SIGPIPE. Returns 0, -EINVAL (already started, stopped, or no listener), -errno. */
MIO_EXTERN int mio_pool_start(mio_pool *pool);
/* Stops accepting and closes the listeners (new connects are refused; see the reuseport caveat
 * above), closes fds still queued for hand-off (their accept function never runs), then flushes
 * and closes every mio_conn open on the workers (on_close runs once each: reason 0 when flushed,
 * -ECANCELED if not flushed within drain_ms; negative drain_ms counts as 0), stops the workers and
 * joins every thread. Tasks a worker has not run when it stops are dropped. Returns as soon as all
 * is flushed or drain_ms passed; no callback runs after it returns. Any thread but a pool thread:
 * called on one (from a callback on a worker) it returns -EDEADLK and the pool runs on intact; a
 * callback that wants the server to stop tells the owner thread (a flag it polls, a pipe, or
 * kill(getpid(), SIGTERM) with the owner waiting in sigwait). Stop before start and a second stop
 * return 0. */
MIO_EXTERN int mio_pool_stop(mio_pool *pool, int drain_ms);
/* Stops accepting but keeps serving: the listeners leave the poll and are closed (a socket that
 * another process also holds, such as a restarted copy that inherited it, stays open there with
 * its queue: no connection is lost; a socket only this pool held is closed as mio_pool_stop
 * closes it), connections already accepted and waiting for hand-off are still delivered to their
 * accept function, open connections go on, and mio_pool_draining turns true so that protocol
 * code can wind them down (HTTP: answer the next request with Connection: close). Returns once
 * no pool thread accepts any more. Then mio_pool_stop(pool, drain_ms) ends what is left. The
 * building block of a zero-downtime restart (see docs/guide.md, Deploying). Returns 0 (a second
 * call too), -EINVAL (NULL, not started, or stopped), -EDEADLK (called on a pool thread: from a
 * callback; the pool runs on intact). Owner thread. */
MIO_EXTERN int mio_pool_drain(mio_pool *pool);
/* True once mio_pool_drain began (and after mio_pool_stop began); false for NULL. Any thread
 * (relaxed load: a worker sees it at the latest in the iteration after drain's task runs on it,
 * which happens before mio_pool_drain returns). */
MIO_EXTERN bool mio_pool_draining(const mio_pool *pool);
/* Starts the pool if it is not started yet, then blocks the calling thread until SIGINT or
 * SIGTERM arrives and stops the pool with drain_ms: the whole "run until signalled" of a server.
 * Both signals are blocked in the calling thread while it waits (and restored after), so their
 * default action cannot kill the process first; other threads the program created must block
 * them too (pool threads do). Returns the signal number, or -errno: -EINVAL (NULL, or a pool that
 * already stopped), -EDEADLK (called on a pool thread), or what mio_pool_start returned. */
MIO_EXTERN int mio_pool_run(mio_pool *pool, int drain_ms);
/* Stops (drain 0) if still running, then frees everything; NULL accepted. Owner thread: called
 * on a pool thread it does nothing (the stop it needs is refused with -EDEADLK). */
MIO_EXTERN void mio_pool_free(mio_pool *pool);
MIO_EXTERN unsigned mio_pool_workers(const mio_pool *pool);
/* Worker i's reactor (borrowed), NULL when i >= workers. The pool owns it: mio_reactor_stop on it
 * returns -EPERM and mio_reactor_free ignores it (stop and free the pool instead). */
MIO_EXTERN mio_reactor *mio_pool_worker(mio_pool *pool, unsigned i);
/* Any thread: worker i's counters. Returns 0 or -EINVAL (bad index). */
MIO_EXTERN int mio_pool_stats(const mio_pool *pool, unsigned worker, mio_worker_stats *out);

MIO_END_DECLS

#endif
