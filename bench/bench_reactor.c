/* bench_reactor: the reactor's timers and cross-thread posts, on the public API only.
 *
 * Benchmarks (libuv's million_timers and async, see bench/baselines/uv_reactor.c for the libuv
 * side), each printing one machine-readable line of key=value pairs on stdout:
 *   timers_start_cancel  N timers started, then all cancelled (no loop run): ns per start+cancel
 *   million_timers       N timers due after i / (N / 1000) ms (0..999 ms) started and fired
 *                        (setup time and run time, like libuv's)
 *   post_roundtrip       two reactors on two threads bounce one task N times (each hop is a
 *                        mio_reactor_post waking a sleeping reactor): ns per round trip
 *   post_throughput      one producer thread posts N tasks as fast as it can (retrying on
 *                        -EAGAIN) to a reactor: tasks/s and how many wakes were elided
 *
 * Usage: bench_reactor [--only NAME] [--n N]    (N scales every benchmark; default 1000000) */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mio/mio.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_reactor: %s: %s\n", what, mio_strerror(err));
    exit(1);
}

static mio_reactor *reactor(unsigned post_capacity)
{
    mio_reactor_opts o;
    mio_reactor *r;
    int err;
    memset(&o, 0, sizeof o);
    o.post_capacity = post_capacity;
    if ((err = mio_reactor_new(&o, &r)) < 0)
        die("mio_reactor_new", err);
    return r;
}

/* ------------------------------------------------------------------ timers */

static void noop_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)r;
    (void)id;
    (void)arg;
}

static void bench_timers_start_cancel(unsigned long n)
{
    mio_reactor *r = reactor(0);
    mio_timer_id *ids = malloc(n * sizeof *ids);
    uint64_t t0, t1, t2;
    int err;

    if (ids == NULL)
        die("malloc", -ENOMEM);
    /* Warm the node pool so the measured pass allocates nothing, as in a long-running reactor. */
    for (unsigned long i = 0; i < n; i++)
        if ((err = mio_reactor_timer_start(r, 1 + i % 60000, 0, noop_timer, NULL, &ids[i])) < 0)
            die("timer_start", err);
    for (unsigned long i = 0; i < n; i++)
        (void)mio_reactor_timer_cancel(r, ids[i]);

    t0 = now_ns();
    for (unsigned long i = 0; i < n; i++)
        if ((err = mio_reactor_timer_start(r, 1 + i % 60000, 0, noop_timer, NULL, &ids[i])) < 0)
            die("timer_start", err);
    t1 = now_ns();
    for (unsigned long i = 0; i < n; i++)
        if ((err = mio_reactor_timer_cancel(r, ids[i])) < 0)
            die("timer_cancel", err);
    t2 = now_ns();
    printf("bench=timers_start_cancel impl=mio n=%lu start_ns_per_op=%.1f cancel_ns_per_op=%.1f "
           "total_ms=%.3f\n",
           n, (double)(t1 - t0) / (double)n, (double)(t2 - t1) / (double)n,
           (double)(t2 - t0) / 1e6);
    free(ids);
    mio_reactor_free(r);
}

static unsigned long fired;

static void count_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)r;
    (void)id;
    (void)arg;
    fired++;
}

static void bench_million_timers(unsigned long n)
{
    mio_reactor *r = reactor(0);
    unsigned long per_ms = n / 1000 ? n / 1000 : 1;
    struct mio_reactor_stats st;
    uint64_t t0, t1, t2;
    int err;

    fired = 0;
    t0 = now_ns();
    for (unsigned long i = 0; i < n; i++)
        if ((err = mio_reactor_timer_start(r, i / per_ms, 0, count_timer, NULL, NULL)) < 0)
            die("timer_start", err);
    t1 = now_ns();
    while (fired < n)
        if ((err = mio_reactor_run_once(r, -1)) < 0 && err != -EINTR)
            die("run_once", err);
    t2 = now_ns();
    mio_reactor_stats(r, &st);
    printf("bench=million_timers impl=mio n=%lu setup_ms=%.3f run_ms=%.3f total_ms=%.3f "
           "iterations=%llu fired=%lu\n",
           n, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(t2 - t0) / 1e6,
           (unsigned long long)st.iterations, fired);
    mio_reactor_free(r);
}

/* ------------------------------------------------------------------ posts */

struct pingpong {
    mio_reactor *a, *b;
    unsigned long left;
};

static void ping(mio_reactor *r, void *arg);

static void pong(mio_reactor *r, void *arg)
{
    struct pingpong *p = arg;
    int err;
    (void)r;
    if ((err = mio_reactor_post(p->a, ping, p)) < 0)
        die("post", err);
}

static void ping(mio_reactor *r, void *arg)
{
    struct pingpong *p = arg;
    int err;
    if (p->left == 0) {
        mio_reactor_stop(p->b);
        mio_reactor_stop(r);
        return;
    }
    p->left--;
    if ((err = mio_reactor_post(p->b, pong, p)) < 0)
        die("post", err);
}

static void *run_thread(void *arg)
{
    int err = mio_reactor_run(arg);
    if (err < 0)
        die("run", err);
    return NULL;
}

static void bench_post_roundtrip(unsigned long n)
{
    struct pingpong p = {reactor(0), reactor(0), n};
    struct mio_reactor_stats sa, sb;
    pthread_t th;
    uint64_t t0, t1;
    int err;

    if ((err = pthread_create(&th, NULL, run_thread, p.b)) != 0)
        die("pthread_create", -err);
    t0 = now_ns();
    if ((err = mio_reactor_post(p.a, ping, &p)) < 0)
        die("post", err);
    if ((err = mio_reactor_run(p.a)) < 0)
        die("run", err);
    t1 = now_ns();
    pthread_join(th, NULL);
    mio_reactor_stats(p.a, &sa);
    mio_reactor_stats(p.b, &sb);
    printf("bench=post_roundtrip impl=mio n=%lu ns_per_roundtrip=%.1f roundtrips_per_s=%.0f "
           "wakes_performed=%llu wakes_elided=%llu\n",
           n, (double)(t1 - t0) / (double)n, (double)n / ((double)(t1 - t0) / 1e9),
           (unsigned long long)(sa.wakes_performed + sb.wakes_performed),
           (unsigned long long)(sa.wakes_elided + sb.wakes_elided));
    mio_reactor_free(p.a);
    mio_reactor_free(p.b);
}

struct flood {
    mio_reactor *r;
    unsigned long n, ran, eagain;
};

static void flood_task(mio_reactor *r, void *arg)
{
    struct flood *f = arg;
    if (++f->ran == f->n)
        mio_reactor_stop(r);
}

static void *flood_producer(void *arg)
{
    struct flood *f = arg;
    for (unsigned long i = 0; i < f->n; i++) {
        int err;
        while ((err = mio_reactor_post(f->r, flood_task, f)) == -EAGAIN) {
            f->eagain++; /* producer-only counter */
            sched_yield();
        }
        if (err < 0)
            die("post", err);
    }
    return NULL;
}

static void bench_post_throughput(unsigned long n)
{
    struct flood f = {reactor(0), n, 0, 0};
    struct mio_reactor_stats st;
    pthread_t th;
    uint64_t t0, t1;
    int err;

    t0 = now_ns();
    if ((err = pthread_create(&th, NULL, flood_producer, &f)) != 0)
        die("pthread_create", -err);
    if ((err = mio_reactor_run(f.r)) < 0)
        die("run", err);
    t1 = now_ns();
    pthread_join(th, NULL);
    mio_reactor_stats(f.r, &st);
    printf("bench=post_throughput impl=mio producers=1 n=%lu tasks_per_s=%.0f ns_per_task=%.1f "
           "wakes_performed=%llu wakes_elided=%llu sleeps=%llu eagain=%lu\n",
           n, (double)n / ((double)(t1 - t0) / 1e9), (double)(t1 - t0) / (double)n,
           (unsigned long long)st.wakes_performed, (unsigned long long)st.wakes_elided,
           (unsigned long long)st.sleeps, f.eagain);
    mio_reactor_free(f.r);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    unsigned long n = 1000000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            n = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr,
                    "usage: %s [--only timers_start_cancel|million_timers|post_roundtrip|"
                    "post_throughput] [--n N]\n",
                    argv[0]);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (n == 0)
        n = 1;
    if (only == NULL || strcmp(only, "timers_start_cancel") == 0)
        bench_timers_start_cancel(n);
    if (only == NULL || strcmp(only, "million_timers") == 0)
        bench_million_timers(n);
    if (only == NULL || strcmp(only, "post_roundtrip") == 0)
        bench_post_roundtrip(n / 10 ? n / 10 : 1);
    if (only == NULL || strcmp(only, "post_throughput") == 0)
        bench_post_throughput(n);
    return 0;
}
