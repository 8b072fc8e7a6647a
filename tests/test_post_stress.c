/* Lost-wakeup stress: P producer threads post bursts of tasks to R reactors that go to sleep
 * between bursts. After each burst a producer waits until every task of it ran: a wake lost by
 * the elision handshake (the reactor sleeps with tasks queued) stalls that wait and fails the
 * test. Tasks also check FIFO order per producer on each reactor. Meant for ThreadSanitizer too
 * (smaller under sanitizers, MIO_STRESS_SCALE). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>

#include "helpers.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define BURSTS 300
#else
#define BURSTS 3000
#endif
#define PRODUCERS 4
#define REACTORS 2
#define MAX_BURST 64
#define STALL_MS 10000

struct reactor_ctx {
    mio_reactor *r;
    pthread_t th;
    uint32_t last[PRODUCERS]; /* reactor thread only: last seq seen per producer */
    int order_errors;         /* reactor thread only */
};

static struct reactor_ctx rc[REACTORS];
static atomic_ulong acked[PRODUCERS];
static atomic_int stalls;
static atomic_ulong full;

/* arg = producer << 32 | seq (seq from 1, per producer and reactor) */
static void task(mio_reactor *r, void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    unsigned p = (unsigned)(v >> 32);
    uint32_t seq = (uint32_t)v;
    struct reactor_ctx *c = NULL;

    for (int i = 0; i < REACTORS; i++)
        if (rc[i].r == r)
            c = &rc[i];
    if (c->last[p] + 1 != seq)
        c->order_errors++;
    c->last[p] = seq;
    atomic_fetch_add_explicit(&acked[p], 1, memory_order_release);
}

static void *reactor_main(void *arg)
{
    struct reactor_ctx *c = arg;

    (void)mio_reactor_run(c->r);
    return NULL;
}

static void *producer_main(void *arg)
{
    unsigned p = (unsigned)(uintptr_t)arg;
    unsigned seed = p * 7919u + 1;
    uint32_t seq[REACTORS] = {0};
    unsigned long posted = 0;

    for (int b = 0; b < BURSTS; b++) {
        unsigned target = (unsigned)rand_r(&seed) % REACTORS;
        unsigned n = 1 + (unsigned)rand_r(&seed) % MAX_BURST;
        unsigned long long until;

        for (unsigned i = 0; i < n; i++) {
            uintptr_t v = ((uintptr_t)p << 32) | ++seq[target];

            while (mio_reactor_post(rc[target].r, task, (void *)v) == -EAGAIN) {
                atomic_fetch_add(&full, 1);
                sched_yield();
            }
        }
        posted += n;
        /* Wait for the burst to run; the reactor then goes back to sleep. */
        until = mio_test_now_ms() + STALL_MS;
        while (atomic_load_explicit(&acked[p], memory_order_acquire) != posted) {
            if (mio_test_now_ms() > until) {
                atomic_fetch_add(&stalls, 1);
                return NULL;
            }
            sched_yield();
        }
        /* Let it fall asleep sometimes, post at once other times. */
        if (rand_r(&seed) % 2)
            usleep((unsigned)rand_r(&seed) % 300);
    }
    return NULL;
}

static void test_post_stress(void **state)
{
    pthread_t prod[PRODUCERS];
    mio_reactor_opts o = {.post_capacity = 128}; /* small: full rings happen too */
    struct mio_reactor_stats st;
    unsigned long total = 0;
    uint64_t performed = 0, elided = 0, sleeps = 0;

    (void)state;
    for (int i = 0; i < REACTORS; i++) {
        assert_int_equal(mio_reactor_new(&o, &rc[i].r), 0);
        assert_int_equal(pthread_create(&rc[i].th, NULL, reactor_main, &rc[i]), 0);
    }
    for (unsigned p = 0; p < PRODUCERS; p++)
        assert_int_equal(pthread_create(&prod[p], NULL, producer_main, (void *)(uintptr_t)p), 0);
    for (unsigned p = 0; p < PRODUCERS; p++)
        pthread_join(prod[p], NULL);
    for (int i = 0; i < REACTORS; i++) {
        assert_int_equal(mio_reactor_stop(rc[i].r), 0);
        pthread_join(rc[i].th, NULL);
        assert_int_equal(mio_reactor_stats(rc[i].r, &st), 0);
        assert_int_equal(rc[i].order_errors, 0);
        assert_true(st.wakes_performed <= st.sleeps);
        performed += st.wakes_performed;
        elided += st.wakes_elided;
        sleeps += st.sleeps;
        mio_reactor_free(rc[i].r);
    }
    for (unsigned p = 0; p < PRODUCERS; p++)
        total += atomic_load(&acked[p]);
    print_message("post stress: %lu tasks, %d stalls, wakes performed %llu elided %llu, sleeps %llu, "
                  "ring full %lu\n",
                  total, atomic_load(&stalls), (unsigned long long)performed,
                  (unsigned long long)elided, (unsigned long long)sleeps, atomic_load(&full));
    assert_int_equal(atomic_load(&stalls), 0);
    assert_true(performed > 0); /* the reactors did sleep and were woken */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_stress),
    };

    mio_test_watchdog(280);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
