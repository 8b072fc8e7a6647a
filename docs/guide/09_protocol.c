/* Guide step 9: a protocol server. A line protocol ("GET key\n" -> "VALUE value\n") on a
 * 2-worker pool: framing with mio_conn_consume, an input limit, pipelined requests answered in
 * order and sent together, a request deadline beside the idle timeout, per-worker state set up
 * by worker hooks, and mio_pool_run. A client thread checks the answers, then sends SIGTERM to
 * the main thread, which waits in mio_pool_run. */
#include <mio/mio.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 2
#define MAX_LINE 256   /* an unfinished request must stay shorter than this */
#define REQUEST_MS 500 /* a request, once started, must be complete within this */
#define IDLE_MS 30000  /* a connection that sends nothing for this long is closed */

static const char *const table[][2] = {{"alpha", "1"}, {"beta", "22"}, {"gamma", "333"}};

/* Per-worker state: only its worker's thread touches it, so it needs no lock. */
struct worker {
    unsigned long requests;
};

/* Per-connection state, freed in on_close (the conn is gone once on_close returns). */
struct session {
    bool partial; /* a request has started and its newline has not come yet */
};

static atomic_ulong requests_total;
static atomic_int closed_ok, closed_too_long, closed_late;
static mio_addr server_addr;

/* One complete request line (without its newline): one write for the whole answer. */
static void answer(mio_conn *c, const char *line, size_t len)
{
    char out[64];
    int n = snprintf(out, sizeof out, "ERROR\n");

    if (len > 4 && memcmp(line, "GET ", 4) == 0) {
        n = snprintf(out, sizeof out, "MISSING\n");
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
            if (strlen(table[i][0]) == len - 4 && memcmp(line + 4, table[i][0], len - 4) == 0)
                n = snprintf(out, sizeof out, "VALUE %s\n", table[i][1]);
    }
    mio_conn_write(c, out, (size_t)n); /* gathered: sent with the others when on_read returns */
}

static void on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct session *s = arg;
    struct worker *w = mio_reactor_data(mio_conn_reactor(c));
    const char *start = data, *p = start, *end = start + len, *nl;

    if (len == 0) { /* the peer's FIN: flush the answers and close */
        mio_conn_close(c);
        return;
    }
    /* Every complete line, in order: the bytes may hold several requests (pipelining). */
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        answer(c, p, (size_t)(nl - p));
        w->requests++;
        p = nl + 1;
    }
    /* Keep the unfinished line: it comes back in front of the next bytes. At MAX_LINE kept
     * bytes the conn closes with -EMSGSIZE instead. */
    mio_conn_consume(c, (size_t)(p - start));

    /* The idle timeout cannot stop a peer that sends a byte now and then; a deadline can. */
    if (p == end) {
        mio_conn_set_deadline(c, 0); /* no request in progress */
        s->partial = false;
    } else if (p != start || !s->partial) {
        mio_conn_set_deadline(c, REQUEST_MS); /* a new request started */
        s->partial = true;
    }
}

static void on_close(mio_conn *c, int reason, void *arg)
{
    if (reason == 0)
        atomic_fetch_add(&closed_ok, 1);
    else if (reason == -EMSGSIZE)
        atomic_fetch_add(&closed_too_long, 1);
    else if (reason == -ETIMEDOUT)
        atomic_fetch_add(&closed_late, 1);
    else
        fprintf(stderr, "conn closed: %s\n", mio_strerror(reason));
    free(arg); /* the session */
}

static const mio_conn_ops line_ops = {.on_read = on_read, .on_close = on_close};

static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    struct session *s = calloc(1, sizeof *s);
    mio_conn *c;

    if (s == NULL || mio_reactor_data(worker) == NULL ||
        mio_conn_open(worker, fd, &line_ops, s, &c) < 0) {
        free(s);
        close(fd);
        return;
    }
    mio_conn_set_input_limit(c, MAX_LINE);
    mio_conn_set_idle_timeout(c, IDLE_MS);
}

/* On each worker's thread: before it accepts anything, and after its last conn closed. */
static void worker_start(mio_reactor *worker, unsigned index, void *arg)
{
    mio_reactor_set_data(worker, calloc(1, sizeof(struct worker)));
}

static void worker_stop(mio_reactor *worker, unsigned index, void *arg)
{
    struct worker *w = mio_reactor_data(worker);

    if (w != NULL) {
        printf("worker %u answered %lu requests\n", index, w->requests);
        atomic_fetch_add(&requests_total, w->requests);
    }
    free(w);
    mio_reactor_set_data(worker, NULL);
}

/* ---- the client: plain blocking I/O in its own thread ---- */

#define REQUESTS "GET alpha\nGET beta\nGET delta\nGET gamma\nPUT x\n"
#define ANSWERS "VALUE 1\nVALUE 22\nMISSING\nVALUE 333\nERROR\n"
#define NREQ 5

static int dial(void)
{
    int fd = mio_tcp_stream_connect(&server_addr);

    if (fd >= 0) {
        mio_set_nonblocking(fd, false);
        mio_tcp_set_nodelay(fd, true); /* every small send leaves at once */
    }
    return fd;
}

/* Sends all the requests in pieces of `piece` bytes, then reads and compares the answers. */
static bool exchange(int fd, size_t piece)
{
    const char *req = REQUESTS;
    char in[sizeof ANSWERS];
    size_t len = strlen(req), got = 0;

    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        if (mio_send(fd, req + off, n) != (ssize_t)n)
            return false;
        usleep(1000); /* so that the pieces arrive one by one */
    }
    while (got < strlen(ANSWERS)) {
        ssize_t n = mio_recv(fd, in + got, strlen(ANSWERS) - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return memcmp(in, ANSWERS, got) == 0;
}

/* Sends data (all at once, or one byte every gap_ms) and expects no answer: only the server
 * closing the connection (EOF, or a reset when it closed with our bytes unread). */
static bool closed_by_server(const char *data, size_t len, unsigned gap_ms)
{
    int fd = dial();
    size_t step = gap_ms > 0 ? 1 : len;
    ssize_t n;
    char c;

    if (fd < 0)
        return false;
    for (size_t off = 0; off < len; off += step) {
        mio_send(fd, data + off, step); /* fails once the server has closed: that is fine */
        usleep(gap_ms * 1000);
    }
    n = mio_recv(fd, &c, 1);
    close(fd);
    return n == 0 || n == -ECONNRESET;
}

static bool client_ok;

static void *client(void *arg)
{
    pthread_t waiter = *(pthread_t *)arg;
    char c, long_line[2 * MAX_LINE];
    int fd = dial();
    bool ok = fd >= 0;

    /* Pipelining: all requests in one send; then framing: the same cut into 7-byte pieces. */
    ok = ok && exchange(fd, strlen(REQUESTS)) && exchange(fd, 7);
    ok = ok && mio_socket_shutdown(fd, SHUT_WR) == 0 && mio_recv(fd, &c, 1) == 0;
    if (fd >= 0)
        close(fd);
    /* A line longer than the input limit, and a request that trickles in without an end. */
    memset(long_line, 'x', sizeof long_line);
    ok = ok && closed_by_server(long_line, sizeof long_line, 0);
    ok = ok && closed_by_server("GET alpha", 9, 100);
    client_ok = ok;
    pthread_kill(waiter, SIGTERM); /* what `kill -TERM <pid>` does to a server */
    return NULL;
}

int main(void)
{
    mio_pool_opts opts = {.workers = WORKERS,
                          .nodelay = true,
                          .on_worker_start = worker_start,
                          .on_worker_stop = worker_stop};
    pthread_t self = pthread_self(), thread;
    mio_pool *pool;
    sigset_t stop;
    int rc;

    alarm(60); /* a tutorial program must never hang `make check` */
    /* Threads inherit the mask: the client thread must not take SIGINT or SIGTERM. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    mio_addr_parse("127.0.0.1:0", &server_addr);
    rc = mio_pool_new(&opts, &pool);
    if (rc == 0)
        rc = mio_pool_listen(pool, &server_addr, on_accept, NULL);
    if (rc >= 0)
        rc = mio_pool_local_addr(pool, 0, &server_addr);
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", mio_strerror(rc));
        return 1;
    }
    pthread_create(&thread, NULL, client, &self);

    rc = mio_pool_run(pool, 1000); /* start; wait for SIGINT or SIGTERM; stop (1 s drain) */
    pthread_join(thread, NULL);
    mio_pool_free(pool);

    printf("stopped by signal %d; client %s; %lu requests; closed: %d ok, %d too long, %d late\n",
           rc, client_ok ? "ok" : "FAILED", atomic_load(&requests_total), atomic_load(&closed_ok),
           atomic_load(&closed_too_long), atomic_load(&closed_late));
    return rc == SIGTERM && client_ok && atomic_load(&requests_total) == 2 * NREQ &&
                   atomic_load(&closed_ok) == 1 && atomic_load(&closed_too_long) == 1 &&
                   atomic_load(&closed_late) == 1
               ? 0
               : 1;
}
