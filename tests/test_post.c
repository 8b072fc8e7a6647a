/* mio_reactor_post: cross-thread tasks. 4 producers x 100,000 tasks into a reactor that sleeps
 * between bursts (each task exactly once, in per-producer order; wake elision bounded by sleeps),
 * a full queue refuses with -EAGAIN and loses nothing, tasks posted by tasks wait for the next
 * iteration, and a task sees what its poster wrote (no data race under TSan). */
#include "core_helpers.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <mio/mio.h>

static struct mio_reactor_stats stats_of(const mio_reactor *r)
{
    struct mio_reactor_stats st;
    assert_int_equal(mio_reactor_stats(r, &st), 0);
    return st;
}

static mio_reactor *new_reactor(unsigned post_capacity)
{
    mio_reactor_opts o;
    mio_reactor *r = NULL;
    memset(&o, 0, sizeof o);
    o.post_capacity = post_capacity;
    assert_int_equal(mio_reactor_new(&o, &r), 0);
    return r;
}

/* ------------------------------------------------------------------ many producers */

enum { PRODUCERS = 4 };

struct flood {
    mio_reactor *r;
    unsigned per_producer;
    unsigned burst;      /* tasks per burst */
    unsigned pause_us;   /* pause between bursts: the reactor falls asleep */
    /* reactor thread only */
    uint64_t next[PRODUCERS];
    uint64_t total;
    bool order_broken;
    /* producers */
    atomic_ullong eagain;
};

struct producer {
    struct flood *f;
    unsigned id;
};

static struct flood *flood_current; /* tasks carry only (producer, seq) in their arg */

static void flood_task(mio_reactor *r, void *arg)
{
    struct flood *f = flood_current;
    uintptr_t v = (uintptr_t)arg;
    unsigned p = (unsigned)(v >> 32);
    uint64_t seq = v & 0xffffffffu;
    if (p >= PRODUCERS || f->next[p] != seq)
        f->order_broken = true;
    else
        f->next[p]++;
    if (++f->total == (uint64_t)PRODUCERS * f->per_producer)
        assert_int_equal(mio_reactor_stop(r), 0);
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct flood *f = p->f;
    for (unsigned i = 0; i < f->per_producer; i++) {
        uintptr_t v = (uintptr_t)p->id << 32 | i;
        int rc;
        while ((rc = mio_reactor_post(f->r, flood_task, (void *)v)) == -EAGAIN) {
            atomic_fetch_add(&f->eagain, 1);
            sched_yield();
        }
        assert_int_equal(rc, 0);
        if (f->burst != 0 && (i + 1) % f->burst == 0 && f->pause_us != 0) {
            struct timespec ts = {0, (long)f->pause_us * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void run_flood(struct flood *f)
{
    pthread_t th[PRODUCERS];
    struct producer p[PRODUCERS];
    unsigned long long t0 = mio_test_now_ms();

    flood_current = f;
    for (unsigned i = 0; i < PRODUCERS; i++) {
        p[i].f = f;
        p[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &p[i]), 0);
    }
    /* This thread is the reactor's: run returns when the last task stops it. */
    assert_int_equal(mio_reactor_run(f->r), 0);
    for (unsigned i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    /* Correctness deadline only (the watchdog is the hard limit): generous for TSan on a loaded
     * 2-core machine. */
    assert_true(mio_test_now_ms() - t0 < 200000);

    assert_false(f->order_broken);
    assert_int_equal(f->total, (uint64_t)PRODUCERS * f->per_producer);
    for (unsigned i = 0; i < PRODUCERS; i++)
        assert_int_equal(f->next[i], f->per_producer);
    /* Nothing ran twice or late: the queue is empty and one more run finds nothing. */
    assert_int_equal(mio_reactor_run_once(f->r, 0), 0);
    struct mio_reactor_stats st = stats_of(f->r);
    assert_int_equal(st.tasks_run, f->total);
    assert_int_equal(st.tasks_queued, 0);
    /* Elision: every post either woke the reactor or was elided (plus the final stop), and a
     * wake is only ever performed against a published sleep, at most once per sleep. */
    assert_int_equal(st.wakes_performed + st.wakes_elided, f->total + 1);
    assert_true(st.wakes_performed <= st.sleeps);
    print_message("flood: %llu tasks, %llu sleeps, %llu wakes performed, %llu elided, "
                  "%llu EAGAIN retries\n",
                  (unsigned long long)f->total, (unsigned long long)st.sleeps,
                  (unsigned long long)st.wakes_performed, (unsigned long long)st.wakes_elided,
                  (unsigned long long)atomic_load(&f->eagain));
}

static void test_four_producers_sleeping_reactor(void **state)
{
    (void)state;
    static struct flood f;
    memset(&f, 0, sizeof f);
    f.r = new_reactor(0);
    f.per_producer = 100000;
    f.burst = 2000;
    f.pause_us = 2000;
    run_flood(&f);
    /* The reactor did sleep between bursts, and sleeping reactors were woken. */
    struct mio_reactor_stats st = stats_of(f.r);
    assert_true(st.sleeps >= 1);
    assert_true(st.wakes_performed >= 1);
    mio_reactor_free(f.r);
}

/* A tiny queue under four producers: -EAGAIN is frequent, and still nothing is lost or
 * reordered. */
static void test_four_producers_small_queue(void **state)
{
    (void)state;
    static struct flood f;
    memset(&f, 0, sizeof f);
    f.r = new_reactor(63);
    f.per_producer = 20000;
    run_flood(&f);
    mio_reactor_free(f.r);
}

/* ------------------------------------------------------------------ full queue, one thread */

struct seq_log {
    int n;
    int vals[64];
};

static struct seq_log seq_log;

static void seq_task(mio_reactor *r, void *arg)
{
    (void)r;
    if (seq_log.n < 64)
        seq_log.vals[seq_log.n++] = (int)(intptr_t)arg;
}

static void test_full_queue_eagain(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor(10); /* holds at least 10 (a 16-slot ring holds 15) */
    int accepted = 0, rc;
    memset(&seq_log, 0, sizeof seq_log);
    while ((rc = mio_reactor_post(r, seq_task, (void *)(intptr_t)accepted)) == 0)
        accepted++;
    assert_int_equal(rc, -EAGAIN);
    assert_true(accepted >= 10);
    assert_true(accepted < 64);
    assert_int_equal(stats_of(r).tasks_queued, (uint64_t)accepted);
    assert_int_equal(mio_reactor_post(r, NULL, NULL), -EINVAL);
    assert_int_equal(mio_reactor_post(NULL, seq_task, NULL), -EINVAL);
    /* Drain, then the refused task goes in on retry. */
    assert_int_equal(mio_reactor_run_once(r, 0), accepted);
    assert_int_equal(mio_reactor_post(r, seq_task, (void *)(intptr_t)accepted), 0);
    assert_int_equal(mio_reactor_run_once(r, 0), 1);
    assert_int_equal(seq_log.n, accepted + 1);
    for (int i = 0; i <= accepted; i++)
        assert_int_equal(seq_log.vals[i], i);
    mio_reactor_free(r);
}

/* The exact capacity when it is a power of two minus one. */
static void test_capacity_exact(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor(15);
    for (int i = 0; i < 15; i++)
        assert_int_equal(mio_reactor_post(r, seq_task, NULL), 0);
    assert_int_equal(mio_reactor_post(r, seq_task, NULL), -EAGAIN);
    mio_reactor_free(r); /* queued tasks are dropped unrun */
}

/* ------------------------------------------------------------------ tasks posting tasks */

struct chain {
    int ran;
    int left;
};

static void chain_task(mio_reactor *r, void *arg)
{
    struct chain *c = arg;
    c->ran++;
    if (c->left-- > 0)
        assert_int_equal(mio_reactor_post(r, chain_task, c), 0);
}

static void test_task_posts_task(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor(0);
    struct chain c = {0, 3};
    assert_int_equal(mio_reactor_post(r, chain_task, &c), 0);
    /* One per iteration: a task posted by a task waits for the next one (and does not sleep). */
    for (int i = 1; i <= 4; i++) {
        assert_int_equal(mio_reactor_run_once(r, -1), 1);
        assert_int_equal(c.ran, i);
    }
    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    mio_reactor_free(r);
}

/* ------------------------------------------------------------------ visibility */

struct payload {
    int values[32];
    int sum;
};

struct vis {
    mio_reactor *r;
    atomic_int done;
    int checked; /* reactor thread */
    int bad;
};
static struct vis vis;

static void payload_task(mio_reactor *r, void *arg)
{
    struct payload *p = arg;
    int sum = 0;
    for (int i = 0; i < 32; i++)
        sum += p->values[i];
    if (sum != p->sum)
        vis.bad++;
    free(p);
    if (++vis.checked == 4 * 5000)
        assert_int_equal(mio_reactor_stop(r), 0);
}

static void *payload_producer(void *arg)
{
    (void)arg;
    for (int k = 0; k < 5000; k++) {
        struct payload *p = malloc(sizeof *p);
        assert_non_null(p);
        p->sum = 0;
        for (int i = 0; i < 32; i++) {
            p->values[i] = k * i;
            p->sum += k * i;
        }
        while (mio_reactor_post(vis.r, payload_task, p) == -EAGAIN)
            sched_yield();
    }
    return NULL;
}

/* Whatever a producer wrote before posting is visible to the task (and TSan agrees). */
static void test_payload_visibility(void **state)
{
    (void)state;
    pthread_t th[4];
    memset(&vis, 0, sizeof vis);
    vis.r = new_reactor(255);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, payload_producer, NULL), 0);
    assert_int_equal(mio_reactor_run(vis.r), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(vis.checked, 4 * 5000);
    assert_int_equal(vis.bad, 0);
    mio_reactor_free(vis.r);
}

/* Stats are readable from another thread while the reactor runs. */
struct reader {
    mio_reactor *r;
    atomic_int stop;
    uint64_t reads;
};

static void *stats_reader(void *arg)
{
    struct reader *rd = arg;
    struct mio_reactor_stats st, prev;
    memset(&prev, 0, sizeof prev);
    while (!atomic_load(&rd->stop)) {
        assert_int_equal(mio_reactor_stats(rd->r, &st), 0);
        assert_true(st.iterations >= prev.iterations); /* monotonic counters */
        assert_true(st.tasks_run >= prev.tasks_run);
        prev = st;
        rd->reads++;
    }
    return NULL;
}

static void test_stats_from_other_thread(void **state)
{
    (void)state;
    static struct flood f;
    struct reader rd = {0};
    pthread_t th;
    memset(&f, 0, sizeof f);
    f.r = new_reactor(0);
    f.per_producer = 10000;
    f.burst = 500;
    f.pause_us = 500;
    rd.r = f.r;
    assert_int_equal(pthread_create(&th, NULL, stats_reader, &rd), 0);
    run_flood(&f);
    atomic_store(&rd.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(rd.reads > 0);
    mio_reactor_free(f.r);
}

int main(void)
{
    mio_test_watchdog(290);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_full_queue_eagain),
        CORE_TEST(test_capacity_exact),
        CORE_TEST(test_task_posts_task),
        CORE_TEST(test_payload_visibility),
        CORE_TEST(test_four_producers_sleeping_reactor),
        CORE_TEST(test_four_producers_small_queue),
        CORE_TEST(test_stats_from_other_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
