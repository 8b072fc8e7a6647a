/* mio-chat: line-based broadcast across the workers of a mio_pool. Every line a client sends
 * ("\n"-terminated, passed on byte for byte) reaches every other client exactly once, in the
 * order sent, whichever worker holds it. It is not echoed to its sender (the sender already has
 * it); a last line without "\n" before EOF is dropped.
 *
 * - Per-worker state: each worker keeps the list of its own clients (struct worker, hung off its
 *   reactor in on_worker_start). Only that worker's thread touches it: no lock anywhere.
 * - Framing: mio_conn_consume keeps a partial line until its end arrives. The complete lines of
 *   one read go out as one span: written at once to the worker's own clients, and posted
 *   (mio_reactor_post) to every other worker as one refcounted copy that the last worker to
 *   deliver it frees. That is one post and one copy per worker and read, where a global registry
 *   of mio_conn_handles would need a lock on it and one copy per remote client; and per-sender
 *   order holds, for posts are FIFO per posting thread and a sender lives on one thread. With
 *   two workers so does causal order as clients see it: a line sent after its sender received
 *   another reaches every client after that one (a worker delivers a span to all its clients at
 *   once, and what one worker posts to another arrives in the order posted). With more, a reply
 *   can overtake the line it answers at a third worker (a line's posts to the workers are not
 *   one atomic step). Lines whose senders had not seen each other's may arrive in different
 *   orders at different clients.
 * - A line over --max-line bytes ("\n" not counted) is refused: the lines before it go out, the
 *   client gets "ERR line too long" and a lingering close (FIN, input discarded until its FIN,
 *   LINGER_MS at most), so the answer is not destroyed by a reset.
 * - Slow consumers: a client whose output queue (mio_conn_pending) exceeds --max-pending is
 *   disconnected with a reset, which frees its queue here and in the kernel at once.
 * - Cross-worker backlog: bytes posted and not yet delivered by every worker are counted; above
 *   BACKLOG_MAX a sender's reading pauses (its kernel buffers push back on it) until the workers
 *   catch up. Memory thus stays within about clients x (max-pending + 64 KiB + max-line) plus
 *   BACKLOG_MAX.
 * - Stats (SIGUSR1, and after the stop): per worker, the spans it posted to other workers and
 *   the posted spans it delivered, with its reactor's wake counters: wakes per cross-worker
 *   message is reactor_wakes / posted, summed over the workers (bench/run-bench's chat section). */
#include <stdatomic.h>
#include <sys/socket.h>

#include "pool_main.h"

#define MAX_WORKERS 4096       /* mio_pool_new's limit */
#define BACKLOG_MAX (8u << 20) /* bytes posted to other workers and not yet delivered by all */
/* Charged per message on top of its bytes: at most 32768 messages are in flight, so a worker's
 * task queue (65536 by default) never fills. */
#define MSG_OVERHEAD 256
#define LINGER_MS 2000

static const char refusal[] = "ERR line too long\n";
static unsigned long long max_line = 4096, max_pending = 1u << 20;

struct client {
    mio_conn *conn;
    struct client *prev, *next; /* in its worker's list */
    mio_timer_id resume;        /* reading paused while the backlog is over BACKLOG_MAX */
    bool out;                   /* refused or dropped: receives and sends no more lines */
};

struct worker {
    struct client clients; /* list head (a sentinel): this worker's clients */
    unsigned index;
};

struct msg { /* a span of lines on its way to the other workers */
    atomic_uint refs;
    size_t len;
    char data[];
};

/* Worker reactors by index, published by each worker's start hook and cleared by its stop hook.
 * A worker not started yet has no client to deliver to, so a NULL slot is skipped. The reactors
 * themselves live until mio_pool_free. */
static _Atomic(mio_reactor *) workers[MAX_WORKERS];
static atomic_uint nworkers;  /* highest index started + 1 */
static atomic_size_t backlog; /* bytes of live messages, MSG_OVERHEAD each included */
/* Per worker, written by its own thread, read by chat_stats: relaxed counts that publish nothing.
 */
static struct {
    atomic_ullong posted;    /* spans posted to other workers (one per worker and read) */
    atomic_ullong delivered; /* spans from other workers delivered here */
} counts[MAX_WORKERS];

static void worker_start(mio_reactor *r, unsigned index, void *arg)
{
    struct worker *w = index < MAX_WORKERS ? malloc(sizeof(*w)) : NULL;
    unsigned n = atomic_load(&nworkers);

    if (w == NULL) {
        fprintf(stderr, "mio-chat: cannot start worker %u\n", index);
        kill(getpid(), SIGTERM); /* the main thread stops the server */
        return;
    }
    w->clients.prev = w->clients.next = &w->clients;
    w->index = index;
    mio_reactor_set_data(r, w);
    /* release: publishes w (set as the reactor's data) to fan_out's acquire load */
    atomic_store_explicit(&workers[index], r, memory_order_release);
    while (n <= index && !atomic_compare_exchange_weak(&nworkers, &n, index + 1))
        ;
}

static void worker_stop(mio_reactor *r, unsigned index, void *arg)
{
    /* Its clients are closed; other workers stop posting to it (what they post meanwhile is
     * dropped with the pool's task queues). */
    if (index < MAX_WORKERS)
        atomic_store_explicit(&workers[index], NULL, memory_order_relaxed);
    free(mio_reactor_data(r));
}

/* A slow consumer: SO_LINGER 0 makes its close a reset, so the kernel keeps nothing for it
 * either; the 1 ms deadline ends the flush that a close would otherwise wait for. */
static void drop(struct client *cl)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    cl->out = true;
    (void)setsockopt(mio_conn_fd(cl->conn), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    (void)mio_conn_set_deadline(cl->conn, 1);
    mio_conn_close(cl->conn);
}

static void broadcast(struct worker *w, const struct client *from, const char *data, size_t len)
{
    for (struct client *cl = w->clients.next; cl != &w->clients; cl = cl->next) {
        /* A failed write closes the conn by itself; its on_close unlinks it. */
        if (cl != from && !cl->out && mio_conn_write(cl->conn, data, len) == 0 &&
            mio_conn_pending(cl->conn) > max_pending)
            drop(cl);
    }
}

static void msg_unref(struct msg *m)
{
    /* acq_rel: every owner's reads of m->data come before the last owner's free. */
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        atomic_fetch_sub_explicit(&backlog, m->len + MSG_OVERHEAD, memory_order_relaxed);
        free(m);
    }
}

static void count(atomic_ullong *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void deliver(mio_reactor *r, void *arg) /* a task, on the receiving worker */
{
    struct msg *m = arg;
    struct worker *w = mio_reactor_data(r);

    broadcast(w, NULL, m->data, m->len);
    count(&counts[w->index].delivered);
    msg_unref(m);
}

/* Sends complete lines to every client but their sender. Returns false when out of memory. */
static bool fan_out(struct client *from, const char *data, size_t len)
{
    mio_reactor *self = mio_conn_reactor(from->conn);
    struct worker *w = mio_reactor_data(self);
    unsigned n = atomic_load(&nworkers);
    struct msg *m = NULL;

    broadcast(w, from, data, len);
    for (unsigned i = 0; i < n; i++) {
        /* acquire: pairs with worker_start's release (the worker's data is set) */
        mio_reactor *r = atomic_load_explicit(&workers[i], memory_order_acquire);

        if (r == NULL || r == self)
            continue;
        if (m == NULL) {
            if ((m = malloc(sizeof(*m) + len)) == NULL)
                return false;
            atomic_init(&m->refs, 1); /* ours, given up below */
            m->len = len;
            memcpy(m->data, data, len); /* published to the task by mio_reactor_post */
            atomic_fetch_add_explicit(&backlog, len + MSG_OVERHEAD, memory_order_relaxed);
        }
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
        if (mio_reactor_post(r, deliver, m) < 0) /* -EAGAIN: ruled out by BACKLOG_MAX */
            atomic_fetch_sub_explicit(&m->refs, 1, memory_order_relaxed);
        else
            count(&counts[w->index].posted);
    }
    if (m != NULL)
        msg_unref(m);
    return true;
}

static void resume_tick(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct client *cl = arg;

    if (atomic_load_explicit(&backlog, memory_order_relaxed) > BACKLOG_MAX)
        return; /* still behind: this repeating timer looks again in 1 ms */
    (void)mio_reactor_timer_cancel(r, id);
    cl->resume = 0;
    (void)mio_conn_set_reading(cl->conn, true);
}

static void chat_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct client *cl = arg;
    const char *p = data, *end = p + len, *nl;
    size_t done;

    if (len == 0 || cl->out) { /* EOF; or refused, discarding input until EOF */
        if (len == 0)
            mio_conn_close(c);
        return;
    }
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL && (size_t)(nl - p) <= max_line)
        p = nl + 1;
    done = (size_t)(p - (const char *)data);
    if (done > 0 && !fan_out(cl, data, done)) {
        mio_conn_close(c); /* its later lines could not reach everyone */
        return;
    }
    if (nl != NULL || (size_t)(end - p) > max_line) { /* a line too long, complete or not */
        cl->out = true;
        (void)mio_conn_write(c, refusal, sizeof(refusal) - 1);
        (void)mio_conn_set_deadline(c, LINGER_MS);
        (void)mio_conn_shutdown(c); /* FIN once the answer is out; reading goes on */
        return;
    }
    (void)mio_conn_consume(c, done); /* keeps at most max_line bytes: below the input limit */
    if (cl->resume == 0 && atomic_load_explicit(&backlog, memory_order_relaxed) > BACKLOG_MAX &&
        mio_reactor_timer_start(mio_conn_reactor(c), 1, 1, resume_tick, cl, &cl->resume) == 0)
        (void)mio_conn_set_reading(c, false);
}

static void chat_close(mio_conn *c, int reason, void *arg)
{
    struct client *cl = arg;

    if (cl->resume != 0)
        (void)mio_reactor_timer_cancel(mio_conn_reactor(c), cl->resume);
    cl->prev->next = cl->next;
    cl->next->prev = cl->prev;
    free(cl);
}

static const mio_conn_ops chat_ops = {chat_read, chat_close, NULL};

/* Main thread (SIGUSR1, and after the stop): one line per worker. */
static void chat_stats(mio_pool *pool)
{
    for (unsigned i = 0; i < mio_pool_workers(pool) && i < MAX_WORKERS; i++) {
        struct mio_reactor_stats st;

        if (mio_reactor_stats(mio_pool_worker(pool, i), &st) < 0)
            continue;
        printf("chat worker=%u posted=%llu delivered=%llu reactor_wakes=%llu "
               "reactor_wakes_elided=%llu sleeps=%llu tasks_run=%llu\n",
               i, atomic_load_explicit(&counts[i].posted, memory_order_relaxed),
               atomic_load_explicit(&counts[i].delivered, memory_order_relaxed),
               (unsigned long long)st.wakes_performed, (unsigned long long)st.wakes_elided,
               (unsigned long long)st.sleeps, (unsigned long long)st.tasks_run);
    }
}

static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    struct worker *w = mio_reactor_data(worker);
    struct client *cl = calloc(1, sizeof(*cl));

    if (w == NULL || cl == NULL || mio_conn_open(worker, fd, &chat_ops, cl, &cl->conn) < 0) {
        free(cl);
        close(fd);
        return;
    }
    cl->prev = w->clients.prev;
    cl->next = &w->clients;
    cl->prev->next = cl->next->prev = cl;
    if (mio_conn_set_input_limit(cl->conn, max_line + 1) < 0)
        mio_conn_close(cl->conn);
}

int main(int argc, char **argv)
{
    static const struct pool_main_num nums[] = {
        {"max-line", "BYTES", "refuse longer lines: ERR line too long, close (4096)", 1,
         (1u << 24) - 1, &max_line},
        {"max-pending", "BYTES", "reset a client with more output queued (1048576)", 1, 1u << 30,
         &max_pending},
        {NULL, NULL, NULL, 0, 0, NULL},
    };
    const struct pool_main_prog prog = {
        .what = "Line chat: each line a client sends goes to every other client (not back to it).\n"
                "A client with over --max-pending bytes of output queued (a slow reader) is\n"
                "reset; a line over --max-line bytes gets \"ERR line too long\" and a close.",
        .accept = on_accept,
        .nums = nums,
        .opts = {.nodelay = true, .on_worker_start = worker_start, .on_worker_stop = worker_stop},
        .stats = chat_stats,
    };

    return pool_main_prog(argc, argv, &prog);
}
