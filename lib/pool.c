/* mio_pool: lifecycle (new, listen, start, stop, free), listeners, stats, and the small helpers the
 * acceptor and the workers share. The lifecycle runs on the owner thread (the one that created
 * the pool; never a pool thread), stats on any thread, the shared helpers on the acceptor and
 * worker threads. The threads themselves live in pool_acceptor.c and pool_worker.c. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <mio/net.h>
#include <mio/pool.h>
#include "internal/mem.h"
#include "internal/pool_int.h"
#include "internal/conn_pool.h"
#include "internal/reactor_int.h"
#include "internal/waker_int.h"
#include "net/net_int.h"

_Static_assert(sizeof(mio_worker_stats) == 256, "mio_worker_stats has a fixed size (pool.h)");
_Static_assert(sizeof(void *) != 8 || sizeof(mio_pool_opts) == 128,
               "mio_pool_opts has a fixed size (pool.h)");

#define POOL_RING_DEFAULT 1024u
#define POOL_BACKLOG_DEFAULT 1024
#define POOL_BATCH_DEFAULT 256u

static unsigned round_pow2(unsigned v)
{
    unsigned p = 2;

    while (p < v && p < (1u << 30))
        p <<= 1;
    return p;
}

static void pool_close_listeners(mio_pool *pool)
{
    unsigned nfds = pool->opts.mode == MIO_POOL_REUSEPORT ? pool->nworkers : 1;

    for (unsigned l = 0; l < pool->nlisteners; l++)
        for (unsigned i = 0; i < nfds; i++)
            if (pool->listeners[l].fds[i] >= 0) {
                (void)close(pool->listeners[l].fds[i]);
                pool->listeners[l].fds[i] = -1;
            }
}

static void pool_free_workers(mio_pool *pool)
{
    for (unsigned i = 0; i < pool->nworkers; i++) {
        struct mio__pool_worker *w = &pool->workers[i];

        if (w->r != NULL) {
            mio__reactor_set_pool_owned(w->r, false);
            mio_reactor_free(w->r);
        }
        mio__free(0, w->slots);
    }
    mio__free(0, pool->workers);
}

/* The CPUs the process may run on (CPU 0 alone when they cannot be read): the default worker
 * count and the set pinning picks from. */
static void pool_read_cpus(mio_pool *pool)
{
    CPU_ZERO(&pool->cpus);
    if (sched_getaffinity(0, sizeof(pool->cpus), &pool->cpus) == -1 ||
        CPU_COUNT(&pool->cpus) == 0) {
        CPU_ZERO(&pool->cpus);
        CPU_SET(0, &pool->cpus);
    }
}

/* Worker i of a pool being created: its hand-off ring and its reactor. Counted in nworkers once
 * it holds anything pool_free_workers must release. Returns 0 or -errno. */
static int pool_worker_init(mio_pool *pool, unsigned i)
{
    struct mio__pool_worker *w = &pool->workers[i];
    unsigned ring_size = pool->opts.ring_size;
    int err;

    w->pool = pool;
    w->index = i;
    w->spare_fd = -1;
    w->slots = mio__calloc(0, ring_size, sizeof(*w->slots));
    if (w->slots == NULL)
        return -ENOMEM;
    /* The acceptor cycles through every slot: fault the pages in now, a fixed cost of the
     * pool, rather than one page fault per 100 hand-offs on the first pass. Reuseport mode
     * never touches the ring. */
    if (pool->opts.mode == MIO_POOL_ACCEPTOR)
        memset(w->slots, 0, ring_size * sizeof(*w->slots));
    ck_ring_init(&w->ring, ring_size);
    pool->nworkers = i + 1;
    err = mio_reactor_new(&(mio_reactor_opts){.backend = pool->opts.backend}, &w->r);
    if (err < 0)
        return err;
    mio__reactor_set_pool_owned(w->r, true);
    /* Now, on this thread: the acceptor and mio_pool_stats read the conn count. */
    return mio__conn_attach(w->r);
}

int mio_pool_new(const mio_pool_opts *opts, mio_pool **out)
{
    mio_pool_opts o = {0};
    mio_pool *pool;
    int err = -ENOMEM;

    if (out == NULL)
        return -EINVAL;
    if (opts != NULL)
        o = *opts;
    if (!mio__reserved_zero(o.reserved, sizeof o.reserved / sizeof o.reserved[0]) ||
        (o.mode != MIO_POOL_ACCEPTOR && o.mode != MIO_POOL_REUSEPORT) ||
        (o.balance != MIO_BALANCE_ROUND_ROBIN && o.balance != MIO_BALANCE_LEAST_LOADED &&
         o.balance != MIO_BALANCE_AWAKE_FIRST) ||
        o.backlog < 0 || o.workers > 4096 || o.backend < MIO_BACKEND_DEFAULT ||
        o.backend > MIO_BACKEND_AUTO)
        return -EINVAL;
    pool = mio__calloc(0, 1, sizeof(*pool));
    if (pool == NULL)
        return -ENOMEM;
    pool_read_cpus(pool);
    if (o.workers == 0)
        o.workers = (unsigned)CPU_COUNT(&pool->cpus);
    o.ring_size = round_pow2(o.ring_size == 0 ? POOL_RING_DEFAULT : o.ring_size);
    if (o.backlog == 0)
        o.backlog = POOL_BACKLOG_DEFAULT;
    if (o.accept_batch == 0)
        o.accept_batch = POOL_BATCH_DEFAULT;
    pool->opts = o;
    pool->spare_fd = -1;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->workers = mio__calloc(0, o.workers, sizeof(*pool->workers));
    if (pool->workers == NULL)
        goto err_pool;
    for (unsigned i = 0; i < o.workers; i++) {
        err = pool_worker_init(pool, i);
        if (err < 0)
            goto err_workers;
    }
    *out = pool;
    return 0;

err_workers:
    pool_free_workers(pool);
err_pool:
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    mio__free(0, pool);
    return err;
}

/* A listening socket; SO_REUSEADDR for TCP; SO_REUSEPORT in reuseport mode (TCP only); TCP_NODELAY
 * when asked. Returns the fd or -errno. */
static int pool_bind(const mio_addr *addr, bool reuseport, int backlog, bool nodelay)
{
    unsigned flags = MIO__BIND_LISTEN;

    if (addr->u.sa.sa_family != AF_UNIX)
        flags |= MIO__BIND_REUSEADDR | (nodelay ? MIO__BIND_NODELAY : 0u);
    else if (reuseport)
        return -EINVAL;
    if (reuseport)
        flags |= MIO__BIND_REUSEPORT;
    return mio__socket_bind(addr, SOCK_STREAM, flags, backlog);
}

/* A new listener slot at the end of pool->listeners with room for nfds fds (all -1), not yet
 * counted in nlisteners. NULL: out of memory (nothing to undo but listener_forget). */
static struct mio__pool_listener *listener_new(mio_pool *pool, unsigned nfds, mio_accept_fn fn,
                                               void *arg)
{
    struct mio__pool_listener *ls, *l;

    ls = mio__realloc(0, pool->listeners, (pool->nlisteners + 1) * sizeof(*ls));
    if (ls == NULL)
        return NULL;
    pool->listeners = ls;
    l = &ls[pool->nlisteners];
    memset(l, 0, sizeof(*l));
    l->fn = fn;
    l->arg = arg;
    l->fds = mio__alloc(0, nfds * sizeof(*l->fds));
    l->tokens = mio__calloc(0, nfds, sizeof(*l->tokens));
    if (l->fds == NULL || l->tokens == NULL) {
        mio__free(0, l->fds);
        mio__free(0, l->tokens);
        return NULL;
    }
    for (unsigned i = 0; i < nfds; i++)
        l->fds[i] = -1;
    return l;
}

/* Undoes listener_new for a slot that failed: closes the fds it holds from index `keep` on
 * (those before it are the caller's) and frees its arrays. */
static void listener_forget(struct mio__pool_listener *l, unsigned nfds, unsigned keep)
{
    for (unsigned i = keep; i < nfds; i++)
        if (l->fds[i] >= 0)
            (void)close(l->fds[i]);
    mio__free(0, l->fds);
    mio__free(0, l->tokens);
}

int mio_pool_listen(mio_pool *pool, const mio_addr *addr, mio_accept_fn fn, void *arg)
{
    bool reuseport;
    unsigned nfds;
    struct mio__pool_listener *l;
    int err;

    if (pool == NULL || addr == NULL || fn == NULL || pool->state != POOL_NEW)
        return -EINVAL;
    reuseport = pool->opts.mode == MIO_POOL_REUSEPORT;
    nfds = reuseport ? pool->nworkers : 1;
    l = listener_new(pool, nfds, fn, arg);
    if (l == NULL)
        return -ENOMEM;
    /* The first bind resolves port 0; the others join the same port through SO_REUSEPORT. */
    err = pool_bind(addr, reuseport, pool->opts.backlog, pool->opts.nodelay);
    if (err < 0)
        goto err_listener;
    l->fds[0] = err;
    err = mio_socket_local_addr(l->fds[0], &l->addr);
    if (err < 0)
        goto err_listener;
    for (unsigned i = 1; i < nfds; i++) {
        err = pool_bind(&l->addr, true, pool->opts.backlog, pool->opts.nodelay);
        if (err < 0)
            goto err_listener;
        l->fds[i] = err;
    }
    return (int)pool->nlisteners++;

err_listener:
    listener_forget(l, nfds, 0);
    return err;
}

/* Checks that fd is a listening stream socket of a family the pool serves; returns the family
 * or -errno (mio_pool_adopt's list). Changes nothing. */
static int adopt_check(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int v;

    v = mio__sockopt_get(fd, SOL_SOCKET, SO_TYPE);
    if (v < 0)
        return v; /* -EBADF, -ENOTSOCK */
    if (v != SOCK_STREAM)
        return -EPROTOTYPE;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return -errno;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6 && ss.ss_family != AF_UNIX)
        return -EAFNOSUPPORT;
    v = mio__sockopt_get(fd, SOL_SOCKET, SO_ACCEPTCONN);
    if (v < 0)
        return v;
    return v == 0 ? -EINVAL : ss.ss_family;
}

int mio_pool_adopt(mio_pool *pool, int fd, mio_accept_fn fn, void *arg)
{
    bool reuseport;
    unsigned nfds;
    struct mio__pool_listener *l;
    int family, err;

    if (pool == NULL || fn == NULL || pool->state != POOL_NEW)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    family = adopt_check(fd);
    if (family < 0)
        return family;
    reuseport = pool->opts.mode == MIO_POOL_REUSEPORT;
    nfds = reuseport ? pool->nworkers : 1;
    l = listener_new(pool, nfds, fn, arg);
    if (l == NULL)
        return -ENOMEM;
    l->fds[0] = fd;
    l->shared = reuseport && nfds > 1;
    err = mio_socket_local_addr(fd, &l->addr);
    /* Reuseport mode has no acceptor: each worker gets a descriptor of its own for the one socket,
     * so that each registers, removes and closes its slot exactly as with a bound group. */
    for (unsigned i = 1; i < nfds && err == 0; i++) {
        l->fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (l->fds[i] == -1)
            err = -errno;
    }
    if (err < 0)
        goto err_listener;
    /* Last, once nothing can fail: the caller's fd is untouched on every error path. */
    err = mio_set_nonblocking(fd, true);
    if (err == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
        err = -errno;
    if (err == 0 && family != AF_UNIX && pool->opts.nodelay)
        (void)mio__sockopt_set(fd, IPPROTO_TCP, TCP_NODELAY, 1); /* best effort, as for a bind */
    if (err < 0)
        goto err_listener;
    return (int)pool->nlisteners++;

err_listener:
    listener_forget(l, nfds, 1);
    return err;
}

int mio_pool_listener_fds(const mio_pool *pool, unsigned listener, int *fds, unsigned cap)
{
    const struct mio__pool_listener *l;
    unsigned n = 0, nfds;

    if (pool == NULL || listener >= pool->nlisteners || (fds == NULL && cap > 0))
        return -EINVAL;
    l = &pool->listeners[listener];
    nfds = pool->opts.mode == MIO_POOL_REUSEPORT && !l->shared ? pool->nworkers : 1;
    for (unsigned i = 0; i < nfds; i++) {
        if (l->fds[i] < 0)
            continue;
        if (n < cap)
            fds[n] = l->fds[i];
        n++;
    }
    return (int)n;
}

int mio_pool_local_addr(const mio_pool *pool, unsigned listener, mio_addr *out)
{
    if (pool == NULL || out == NULL || listener >= pool->nlisteners)
        return -EINVAL;
    *out = pool->listeners[listener].addr;
    return 0;
}

void mio__pool_thread_running(mio_pool *pool, int err)
{
    pthread_mutex_lock(&pool->mu);
    pool->running++;
    if (err < 0 && pool->start_err == 0)
        pool->start_err = err;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

void mio__pool_pin(mio_pool *pool, unsigned slot)
{
    int n = CPU_COUNT(&pool->cpus), k = (int)(slot % (unsigned)n);
    cpu_set_t one;

    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &pool->cpus))
            continue;
        if (k-- == 0) {
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            /* Best effort: an unpinned thread still works. */
            (void)pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
            return;
        }
    }
}

int mio__pool_spare_open(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    return fd == -1 ? -errno : fd;
}

void mio__pool_spare_close(int *spare)
{
    if (*spare >= 0) {
        (void)close(*spare);
        *spare = -1;
    }
}

/* Spare-fd trick for EMFILE/ENFILE: when a connection is waiting, closes *spare, accepts and
 * closes one connection so the client sees it closed instead of hanging, reopens the spare.
 * accept4 reserves the new fd before it looks at the backlog, so its EMFILE says nothing of a
 * waiting client (the retry after each pause fails so while the table stays full): with none,
 * the spare stays, since closing it would only free a number another thread may take. */
static void pool_shed_one(int lfd, int *spare)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int fd;

    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLIN))
        return;
    mio__pool_spare_close(spare);
    fd = mio__socket_accept(lfd, NULL);
    if (fd >= 0)
        (void)close(fd);
    fd = mio__pool_spare_open();
    *spare = fd >= 0 ? fd : -1;
}

enum mio__accept_next mio__pool_accept_failed(int err, int lfd, int *spare,
                                              struct mio__pool_counters *st)
{
    switch (err) {
    case -EAGAIN:
        return MIO__ACCEPT_DRAINED;
    case -ECONNABORTED:
    case -EPROTO:
    case -EPERM:
        mio__count(&st->accept_errors, 1);
        return MIO__ACCEPT_SKIP;
    case -EMFILE:
    case -ENFILE:
        mio__count(&st->emfile, 1);
        pool_shed_one(lfd, spare);
        return MIO__ACCEPT_PAUSE;
    default: /* ENOBUFS, ENOMEM: the system is short; back off the same way */
        mio__count(&st->accept_errors, 1);
        return MIO__ACCEPT_PAUSE;
    }
}

/* Owner thread: stops threads that did start (start failure or mio_pool_stop). */
/* Owner thread: the acceptor leaves its loop (taking the listeners out of its poll) and is
 * joined; nothing if it is not running. */
static void pool_join_acceptor(mio_pool *pool)
{
    if (pool->acceptor_joinable) {
        mio__pr_store_uint(&pool->stop_accepting, 1); /* seen after the waker write below */
        (void)mio_waker_wake(pool->awaker);
        pthread_join(pool->acceptor, NULL);
        pool->acceptor_joinable = false;
    }
}

/* Under pool->mu: every worker closed its listeners, or left service (and closed them then). */
static bool pool_drained(mio_pool *pool)
{
    for (unsigned i = 0; i < pool->nworkers; i++)
        if (!pool->workers[i].drain_done && mio__pool_worker_in_service(&pool->workers[i]))
            return false;
    return true;
}

static void pool_shutdown(mio_pool *pool)
{
    pool_join_acceptor(pool);
    /* Acceptor mode: the acceptor is gone, so the listeners can close now (new connects are
     * refused). Reuseport: each worker closes its own listener first thing in its stop task. */
    if (pool->opts.mode == MIO_POOL_ACCEPTOR)
        pool_close_listeners(pool);
    for (unsigned i = 0; i < pool->nworkers; i++)
        if (pool->workers[i].joinable)
            while (mio__pool_worker_in_service(&pool->workers[i]) &&
                   mio__pool_worker_post_stop(&pool->workers[i]) == -EAGAIN)
                sched_yield();
    for (unsigned i = 0; i < pool->nworkers; i++) {
        struct mio__pool_worker *w = &pool->workers[i];

        if (w->joinable) {
            pthread_join(w->thread, NULL);
            w->joinable = false;
        }
        /* No thread touches the ring any more: close whatever is still queued. */
        mio__pool_worker_close_ring(w);
    }
    pool_close_listeners(pool);
    mio__pool_spare_close(&pool->spare_fd);
}

static int pool_start_acceptor_resources(mio_pool *pool)
{
    int err = mio_poll_new(&pool->apoll);

    if (err < 0)
        return err;
    err = mio_waker_new(mio_poll_registry(pool->apoll), MIO__WAKER_TOKEN, &pool->awaker);
    if (err < 0)
        return err;
    err = mio__pool_spare_open();
    if (err < 0)
        return err;
    pool->spare_fd = err;
    return 0;
}

int mio_pool_start(mio_pool *pool)
{
    sigset_t block, old;
    unsigned want = 0;
    int err = 0;

    if (pool == NULL || pool->state != POOL_NEW || pool->nlisteners == 0)
        return -EINVAL;
    if (pool->opts.mode == MIO_POOL_ACCEPTOR) {
        err = pool_start_acceptor_resources(pool);
        if (err < 0)
            goto err_state;
    }
    /* Pool threads inherit a mask that keeps the application's signals off them. */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (unsigned i = 0; i < pool->nworkers && err == 0; i++) {
        struct mio__pool_worker *w = &pool->workers[i];

        err = -pthread_create(&w->thread, NULL, mio__pool_worker_main, w);
        if (err == 0) {
            w->joinable = true;
            want++;
        }
    }
    if (err == 0 && pool->opts.mode == MIO_POOL_ACCEPTOR) {
        err = -pthread_create(&pool->acceptor, NULL, mio__pool_acceptor_main, pool);
        if (err == 0) {
            pool->acceptor_joinable = true;
            want++;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    pthread_mutex_lock(&pool->mu);
    while (pool->running < want)
        pthread_cond_wait(&pool->cv, &pool->mu);
    if (err == 0)
        err = pool->start_err;
    pthread_mutex_unlock(&pool->mu);
    if (err < 0)
        goto err_state;
    pool->state = POOL_RUNNING;
    return 0;

err_state:
    /* A failed start ends the pool's life: it cannot run again. */
    pool_shutdown(pool);
    pool->state = POOL_STOPPED;
    return err;
}

/* The pool whose thread this is (set by each worker and the acceptor when it starts), so that
 * mio_pool_stop can refuse to run on one: the thread would join itself and free its own reactor. */
static _Thread_local const mio_pool *pool_self;

void mio__pool_thread_enter(const mio_pool *pool)
{
    pool_self = pool;
}

int mio_pool_run(mio_pool *pool, int drain_ms)
{
    sigset_t stop, old;
    int sig = 0, err;

    if (pool != NULL && pool_self == pool)
        return -EDEADLK;
    if (pool == NULL || pool->state == POOL_STOPPED)
        return -EINVAL;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    err = pool->state == POOL_NEW ? mio_pool_start(pool) : 0;
    if (err == 0) {
        err = sigwait(&stop, &sig);
        err = err == 0 ? sig : -err;
        (void)mio_pool_stop(pool, drain_ms);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

/* Owner thread, running pool: no thread accepts when it returns. Acceptor mode: the acceptor
 * leaves its loop (taking the listeners out of its poll) and is joined, then the listeners
 * close; what it already pushed into the rings is still delivered by the workers. Reuseport:
 * each worker closes its own listeners in a task, and we wait for all of them. */
static void pool_stop_accepting(mio_pool *pool)
{
    pool_join_acceptor(pool);
    if (pool->opts.mode == MIO_POOL_ACCEPTOR) {
        pool_close_listeners(pool);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    for (unsigned i = 0; i < pool->nworkers; i++)
        pool->workers[i].drain_done = false;
    pthread_mutex_unlock(&pool->mu);
    for (unsigned i = 0; i < pool->nworkers; i++)
        while (mio__pool_worker_in_service(&pool->workers[i]) &&
               mio__pool_worker_post_drain(&pool->workers[i]) == -EAGAIN)
            sched_yield();
    pthread_mutex_lock(&pool->mu);
    while (!pool_drained(pool))
        pthread_cond_wait(&pool->cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

int mio_pool_drain(mio_pool *pool)
{
    if (pool == NULL)
        return -EINVAL;
    if (pool_self == pool)
        return -EDEADLK;
    if (pool->state != POOL_RUNNING)
        return -EINVAL;
    if (mio__pr_load_uint(&pool->draining) != 0)
        return 0;
    mio__pr_store_uint(&pool->draining, 1);
    pool_stop_accepting(pool);
    return 0;
}

bool mio_pool_draining(const mio_pool *pool)
{
    return pool != NULL && mio__pr_load_uint(&pool->draining) != 0;
}

int mio_pool_stop(mio_pool *pool, int drain_ms)
{
    if (pool == NULL)
        return -EINVAL;
    if (pool_self == pool)
        return -EDEADLK;
    if (pool->state == POOL_STOPPED)
        return 0;
    if (pool->state == POOL_NEW) {
        pool_close_listeners(pool);
        pool->state = POOL_STOPPED;
        return 0;
    }
    pool->drain_ms = drain_ms < 0 ? 0 : drain_ms;
    mio__pr_store_uint(&pool->draining, 1);
    pool_shutdown(pool);
    pool->state = POOL_STOPPED;
    return 0;
}

void mio_pool_free(mio_pool *pool)
{
    if (pool == NULL)
        return;
    if (mio_pool_stop(pool, 0) == -EDEADLK)
        return; /* called on a pool thread: refused, the pool runs on (see mio_pool_free(3)) */
    pool_close_listeners(pool);
    for (unsigned l = 0; l < pool->nlisteners; l++) {
        mio__free(0, pool->listeners[l].fds);
        mio__free(0, pool->listeners[l].tokens);
    }
    mio__free(0, pool->listeners);
    mio_waker_free(pool->awaker);
    mio_poll_free(pool->apoll);
    pool_free_workers(pool);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    mio__free(0, pool);
}

unsigned mio_pool_workers(const mio_pool *pool)
{
    return pool != NULL ? pool->nworkers : 0;
}

mio_reactor *mio_pool_worker(mio_pool *pool, unsigned i)
{
    if (pool == NULL || i >= pool->nworkers)
        return NULL;
    return pool->workers[i].r;
}

int mio_pool_stats(const mio_pool *pool, unsigned worker, mio_worker_stats *out)
{
    struct mio__pool_worker *w;

    if (pool == NULL || out == NULL || worker >= pool->nworkers)
        return -EINVAL;
    w = &pool->workers[worker];
    memset(out, 0, sizeof(*out));
#define LOAD(f) mio__pr_load_64(&w->st.f)
    out->accepted = LOAD(accepted);
    out->handed_off = LOAD(handed_off);
    out->wakes_performed = LOAD(wakes_performed);
    out->wakes_elided = LOAD(wakes_elided);
    out->wakes_ring = LOAD(wakes_ring);
    out->ring_full = LOAD(ring_full);
    out->emfile = LOAD(emfile);
    out->accept_errors = LOAD(accept_errors);
    out->accept_calls = LOAD(accept_calls);
    out->listener_paused = LOAD(listener_paused);
    out->loop_error = (int64_t)LOAD(loop_error);
#undef LOAD
    out->active = mio__conn_count(w->r);
    out->ring_len = mio__pool_ring_len(w);
    return 0;
}
