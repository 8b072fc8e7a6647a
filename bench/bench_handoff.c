/* bench_handoff: what the pool's acceptor -> worker hand-off costs, on the public API only.
 *
 * A pool (acceptor mode, W workers) listens on loopback; a client thread connects and the accept
 * callback, on the worker's thread, stamps the time. Two benchmarks, one key=value line each:
 *   handoff_latency  one connect at a time: time from connect() to the worker's accept callback
 *                    (p50/p99/p99.9 in ns), and wakes performed/elided per hand-off. Workers are
 *                    idle between connects, so nearly every hand-off must wake one.
 *   handoff_burst    B connects at once, repeated: the same figures when connections arrive in
 *                    bursts, where one wake serves many hand-offs.
 *   handoff_busy     handoff_latency while every worker is busy: each runs a task that computes for
 *                    BUSY_US and posts itself again, so its loop never sleeps. This is the case
 *                    wake elision exists for: a hand-off to a running worker needs no wake at all.
 *   handoff_half_busy, handoff_half_busy_awake   only worker 0 is busy, the others sleep: round
 *                    robin wakes a sleeper for its share, MIO_BALANCE_AWAKE_FIRST gives the busy
 *                    one the connections its load margin allows (the accept callback here closes
 *                    the fd at once, so loads stay 0 and it takes them all).
 * The busy runs use N/5 connections: computing workers slow the client and the acceptor down.
 * Usage: bench_handoff [--workers W] [--n N] [--burst B] */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mio/mio.h>

static _Atomic uint64_t accepted;
static uint64_t *lat_ns;    /* one slot per connection, written by the worker that accepts it */
static uint64_t *start_ns;  /* written by the client before connect */
static _Atomic uint64_t seq_accept; /* order of accepts, to pair them with connects */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_handoff: %s: %s\n", what, mio_strerror(err));
    exit(1);
}

/* Connects within a burst race, so a burst's latencies pair accepts with connects in order:
 * the i-th accept of the run against the i-th connect. */
static void on_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    uint64_t t = now_ns();
    uint64_t i = atomic_fetch_add(&seq_accept, 1);
    (void)w;
    (void)peer;
    (void)arg;
    lat_ns[i] = t - start_ns[i];
    close(fd);
    atomic_fetch_add_explicit(&accepted, 1, memory_order_release);
}

/* ---- busy workers ---- */

#define BUSY_US 20
static atomic_bool busy_on;

static void busy_task(mio_reactor *r, void *arg)
{
    uint64_t until = now_ns() + BUSY_US * 1000u;
    volatile uint64_t sink = 0;

    while (now_ns() < until)
        sink++;
    if (atomic_load(&busy_on) && mio_reactor_post(r, busy_task, arg) < 0)
        fprintf(stderr, "bench_handoff: busy task could not repost\n");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void wait_accepted(uint64_t target)
{
    uint64_t deadline = now_ns() + 30ull * 1000000000u;
    while (atomic_load_explicit(&accepted, memory_order_acquire) < target) {
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_handoff: timed out waiting for accepts\n");
            exit(1);
        }
        sched_yield();
    }
}

static void run(const char *name, unsigned workers, unsigned long n, unsigned burst,
                unsigned busy, int balance)
{
    mio_pool_opts o;
    mio_pool *pool;
    mio_addr any, addr;
    uint64_t performed = 0, elided = 0, handed = 0;
    int err, *fds;

    memset(&o, 0, sizeof o);
    o.workers = workers;
    o.balance = balance;
    if ((err = mio_pool_new(&o, &pool)) < 0)
        die("mio_pool_new", err);
    mio_addr_parse("127.0.0.1:0", &any);
    if ((err = mio_pool_listen(pool, &any, on_accept, NULL)) < 0)
        die("mio_pool_listen", err);
    if ((err = mio_pool_local_addr(pool, 0, &addr)) < 0)
        die("mio_pool_local_addr", err);
    if ((err = mio_pool_start(pool)) < 0)
        die("mio_pool_start", err);
    atomic_store(&busy_on, busy > 0);
    for (unsigned i = 0; i < busy && i < mio_pool_workers(pool); i++)
        if ((err = mio_reactor_post(mio_pool_worker(pool, i), busy_task, NULL)) < 0)
            die("mio_reactor_post", err);

    atomic_store(&accepted, 0);
    atomic_store(&seq_accept, 0);
    fds = calloc(burst, sizeof *fds);
    if (fds == NULL)
        die("calloc", -ENOMEM);
    for (unsigned long done = 0; done < n; done += burst) {
        unsigned b = (unsigned)(n - done < burst ? n - done : burst);
        for (unsigned k = 0; k < b; k++) {
            start_ns[done + k] = now_ns();
            fds[k] = mio_tcp_stream_connect(&addr);
            if (fds[k] < 0)
                die("connect", fds[k]);
        }
        wait_accepted(done + b);
        for (unsigned k = 0; k < b; k++)
            close(fds[k]);
    }
    free(fds);
    for (unsigned i = 0; i < mio_pool_workers(pool); i++) {
        mio_worker_stats st;
        if (mio_pool_stats(pool, i, &st) == 0) {
            performed += st.wakes_performed;
            elided += st.wakes_elided;
            handed += st.handed_off;
        }
    }
    atomic_store(&busy_on, false);
    mio_pool_stop(pool, 1000);
    mio_pool_free(pool);

    qsort(lat_ns, n, sizeof *lat_ns, cmp_u64);
    printf("bench=%s workers=%u n=%lu burst=%u p50_ns=%llu p99_ns=%llu p999_ns=%llu "
           "handed_off=%llu wakes_performed=%llu wakes_elided=%llu wakes_per_handoff=%.4f\n",
           name, workers, n, burst, (unsigned long long)lat_ns[n / 2],
           (unsigned long long)lat_ns[n * 99 / 100], (unsigned long long)lat_ns[n * 999 / 1000],
           (unsigned long long)handed, (unsigned long long)performed,
           (unsigned long long)elided, handed ? (double)performed / (double)handed : 0.0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    unsigned workers = 2, burst = 64;
    unsigned long n = 20000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--burst") == 0 && i + 1 < argc)
            burst = (unsigned)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_handoff [--workers W] [--n N] [--burst B]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (n == 0 || burst == 0 || burst > 512) {
        fprintf(stderr, "bench_handoff: need n > 0 and 0 < burst <= 512\n");
        return 2;
    }
    lat_ns = calloc(n, sizeof *lat_ns);
    start_ns = calloc(n, sizeof *start_ns);
    if (lat_ns == NULL || start_ns == NULL)
        die("calloc", -ENOMEM);
    run("handoff_latency", workers, n, 1, 0, MIO_BALANCE_ROUND_ROBIN);
    run("handoff_burst", workers, n, burst, 0, MIO_BALANCE_ROUND_ROBIN);
    n = n / 5 > 0 ? n / 5 : 1;
    run("handoff_busy", workers, n, 1, workers, MIO_BALANCE_ROUND_ROBIN);
    run("handoff_half_busy", workers, n, 1, 1, MIO_BALANCE_ROUND_ROBIN);
    run("handoff_half_busy_awake", workers, n, 1, 1, MIO_BALANCE_AWAKE_FIRST);
    free(lat_ns);
    free(start_ns);
    return 0;
}
