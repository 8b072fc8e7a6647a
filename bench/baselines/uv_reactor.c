/* uv_reactor: the libuv yardstick for bench/bench_reactor.c, same benchmarks, same output lines
 * (impl=libuv). Plain libuv, never libmio.
 *   timers_start_cancel  N uv_timer_start then N uv_timer_stop (handles initialised beforehand)
 *   million_timers       libuv's own benchmark: N timers due after i / (N / 1000) ms, run to end
 *   post_roundtrip       two loops on two threads bounce a message N times with uv_async_send
 * Usage: uv_reactor [--only NAME] [--n N] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void check(int err, const char *what)
{
    if (err < 0) {
        fprintf(stderr, "uv_reactor: %s: %s\n", what, uv_strerror(err));
        exit(1);
    }
}

static unsigned long fired;

static void timer_cb(uv_timer_t *t)
{
    (void)t;
    fired++;
}

static void bench_timers_start_cancel(unsigned long n)
{
    uv_loop_t loop;
    uv_timer_t *timers = malloc(n * sizeof *timers);
    uint64_t t0, t1, t2;

    if (timers == NULL)
        exit(1);
    check(uv_loop_init(&loop), "uv_loop_init");
    for (unsigned long i = 0; i < n; i++)
        check(uv_timer_init(&loop, &timers[i]), "uv_timer_init");
    t0 = now_ns();
    for (unsigned long i = 0; i < n; i++)
        check(uv_timer_start(&timers[i], timer_cb, 1 + i % 60000, 0), "uv_timer_start");
    t1 = now_ns();
    for (unsigned long i = 0; i < n; i++)
        check(uv_timer_stop(&timers[i]), "uv_timer_stop");
    t2 = now_ns();
    printf("bench=timers_start_cancel impl=libuv n=%lu start_ns_per_op=%.1f cancel_ns_per_op=%.1f "
           "total_ms=%.3f\n",
           n, (double)(t1 - t0) / (double)n, (double)(t2 - t1) / (double)n,
           (double)(t2 - t0) / 1e6);
    for (unsigned long i = 0; i < n; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(timers);
}

static void bench_million_timers(unsigned long n)
{
    uv_loop_t loop;
    uv_timer_t *timers = malloc(n * sizeof *timers);
    unsigned long per_ms = n / 1000 ? n / 1000 : 1;
    uint64_t t0, t1, t2;

    if (timers == NULL)
        exit(1);
    check(uv_loop_init(&loop), "uv_loop_init");
    fired = 0;
    t0 = now_ns();
    for (unsigned long i = 0; i < n; i++) {
        check(uv_timer_init(&loop, &timers[i]), "uv_timer_init");
        check(uv_timer_start(&timers[i], timer_cb, i / per_ms, 0), "uv_timer_start");
    }
    t1 = now_ns();
    check(uv_run(&loop, UV_RUN_DEFAULT), "uv_run");
    t2 = now_ns();
    printf("bench=million_timers impl=libuv n=%lu setup_ms=%.3f run_ms=%.3f total_ms=%.3f "
           "fired=%lu\n",
           n, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(t2 - t0) / 1e6, fired);
    for (unsigned long i = 0; i < n; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(timers);
}

/* Ping-pong: loop A (main thread) and loop B (second thread) each own an async handle. */
struct side {
    uv_loop_t loop;
    uv_async_t async;
    struct side *peer;
    unsigned long *left; /* A's only */
    atomic_int *done;    /* set by A before its last send: B closes instead of answering */
    int is_a;
};

static void async_cb(uv_async_t *h)
{
    struct side *s = h->data;
    if (s->is_a) {
        if (*s->left == 0) {
            atomic_store(s->done, 1);
            uv_close((uv_handle_t *)&s->async, NULL);
            uv_async_send(&s->peer->async); /* B sees done and closes too */
            return;
        }
        (*s->left)--;
        uv_async_send(&s->peer->async);
    } else {
        if (atomic_load(s->done)) {
            uv_close((uv_handle_t *)&s->async, NULL);
            return;
        }
        uv_async_send(&s->peer->async);
    }
}

static void *side_main(void *arg)
{
    struct side *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void bench_post_roundtrip(unsigned long n)
{
    static struct side a, b;
    unsigned long left = n;
    atomic_int done = 0;
    pthread_t th;
    uint64_t t0, t1;

    check(uv_loop_init(&a.loop), "uv_loop_init");
    check(uv_loop_init(&b.loop), "uv_loop_init");
    check(uv_async_init(&a.loop, &a.async, async_cb), "uv_async_init");
    check(uv_async_init(&b.loop, &b.async, async_cb), "uv_async_init");
    a.async.data = &a;
    b.async.data = &b;
    a.peer = &b;
    b.peer = &a;
    a.left = &left;
    a.done = b.done = &done;
    a.is_a = 1;
    pthread_create(&th, NULL, side_main, &b);
    t0 = now_ns();
    uv_async_send(&a.async);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    t1 = now_ns();
    pthread_join(th, NULL);
    printf("bench=post_roundtrip impl=libuv n=%lu ns_per_roundtrip=%.1f roundtrips_per_s=%.0f\n",
           n, (double)(t1 - t0) / (double)n, (double)n / ((double)(t1 - t0) / 1e9));
    uv_loop_close(&a.loop);
    uv_loop_close(&b.loop);
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
            fprintf(stderr, "usage: %s [--only timers_start_cancel|million_timers|post_roundtrip] "
                            "[--n N]\n",
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
    return 0;
}
