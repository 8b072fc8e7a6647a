/* Timers: the hierarchical wheel against a reference model on a synthetic clock (exact firing
 * times, order, cancel, overflow), then reactor timers on the real clock: never early, order and
 * repeat, cancel inside callbacks, after_ms 0, huge timeouts, the poll timeout follows the nearest
 * timer, and 1,000,000 timers started+cancelled and fired. */
#include "core_helpers.h"

#include <stdbool.h>
#include <stdlib.h>

#include <mio/mio.h>

#include "internal/reactor_int.h"
#include "internal/timer_wheel.h"

static struct mio_reactor_stats stats_of(const mio_reactor *r)
{
    struct mio_reactor_stats st;
    assert_int_equal(mio_reactor_stats(r, &st), 0);
    return st;
}

static mio_reactor *new_reactor(void)
{
    mio_reactor *r = NULL;
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    return r;
}

/* xorshift64*: deterministic test randomness. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* ------------------------------------------------------------------ the wheel alone */

static void dummy_fn(void)
{
}

static void test_wheel_basic(void **state)
{
    (void)state;
    struct mio__wheel w;
    uint64_t id1, id2, id3;
    struct mio__timer *t;

    mio__wheel_init(&w, 0, 1000);
    assert_int_equal(mio__wheel_next(&w), UINT64_MAX);
    assert_int_equal(mio__wheel_start(&w, 1005, 0, dummy_fn, NULL, &id1), 0);
    assert_int_equal(mio__wheel_start(&w, 1005, 0, dummy_fn, NULL, &id2), 0);
    assert_int_equal(mio__wheel_start(&w, 1000, 0, dummy_fn, NULL, &id3), 0); /* due already */
    assert_true(id1 != 0 && id2 != 0 && id3 != 0 && id1 != id2);
    assert_int_equal(mio__wheel_next(&w), 1000);
    mio__wheel_advance(&w, 1000);
    t = mio__wheel_pop(&w);
    assert_non_null(t);
    assert_int_equal(mio__wheel_id(t), id3);
    mio__wheel_fired(&w, t);
    assert_null(mio__wheel_pop(&w));
    assert_int_equal(mio__wheel_next(&w), 1005);
    mio__wheel_advance(&w, 1004);
    assert_null(mio__wheel_pop(&w)); /* never early */
    mio__wheel_advance(&w, 1005);
    t = mio__wheel_pop(&w);
    assert_int_equal(mio__wheel_id(t), id1); /* equal deadlines: start order */
    mio__wheel_fired(&w, t);
    t = mio__wheel_pop(&w);
    assert_int_equal(mio__wheel_id(t), id2);
    mio__wheel_fired(&w, t);
    assert_int_equal(mio__wheel_cancel(&w, id1), -ENOENT); /* fired */
    assert_int_equal(w.count, 0);
    /* Huge deadlines sit in the overflow list and never fire; next() stays finite but far. */
    assert_int_equal(mio__wheel_start(&w, UINT64_MAX, 0, dummy_fn, NULL, &id1), 0);
    assert_true(mio__wheel_next(&w) > 1005 + (1ull << 35));
    mio__wheel_advance(&w, 1ull << 40);
    assert_null(mio__wheel_pop(&w));
    assert_int_equal(mio__wheel_cancel(&w, id1), 0);
    assert_int_equal(mio__wheel_cancel(&w, id1), -ENOENT);
    assert_int_equal(w.count, 0);
    /* ids of nodes never handed out (the page exists, its later nodes are not set up yet), with
     * every generation a node of the page could have: unknown, never a match */
    for (uint64_t gen = 0; gen < 4; gen++) {
        assert_int_equal(mio__wheel_cancel(&w, gen << 32 | 5), -ENOENT);
        assert_int_equal(mio__wheel_cancel(&w, gen << 32 | 4095), -ENOENT);
        assert_int_equal(mio__wheel_cancel(&w, gen << 32 | 4096), -ENOENT);
    }
    /* only the nodes used are set up: three (the fourth start reused a freed node) */
    assert_int_equal(w.fresh, 3);
    mio__wheel_destroy(&w);
}

/* Reference model: random starts (deadlines near and far, across every level and the overflow),
 * random cancels, random advances (small steps and big jumps). Each timer must fire at the first
 * advance whose time reaches its deadline (never early, never late), in (deadline, start) order,
 * and next() must never be later than the earliest pending deadline. */
struct model_timer {
    uint64_t id, deadline, seq;
    bool live;
};

static void test_wheel_model(void **state)
{
    (void)state;
    enum { MAXT = 20000 };
    static struct model_timer m[MAXT];
    struct mio__wheel w;
    uint64_t now = 123456789, seq = 0;
    size_t n = 0, live = 0;

    mio__wheel_init(&w, 0, now);
    for (int round = 0; round < 3000; round++) {
        int starts = (int)(rnd() % 8);
        for (int i = 0; i < starts && n < MAXT; i++) {
            uint64_t r = rnd(), delta;
            switch (r % 6) {
            case 0: delta = r >> 60; break;                      /* 0..15 ms */
            case 1: delta = (r >> 20) % 300; break;              /* levels 0-1 */
            case 2: delta = (r >> 20) % 100000; break;           /* levels 0-2 */
            case 3: delta = (r >> 20) % (1ull << 30); break;     /* up to level 4 */
            case 4: delta = (r >> 20) % (1ull << 38); break;     /* top level and overflow */
            default: delta = (r >> 20) % 5000; break;
            }
            m[n].deadline = now + delta;
            m[n].seq = seq++;
            m[n].live = true;
            assert_int_equal(mio__wheel_start(&w, m[n].deadline, 0, dummy_fn, &m[n], &m[n].id), 0);
            n++;
            live++;
        }
        if (n > 0 && rnd() % 3 == 0) {
            size_t k = (size_t)(rnd() % n);
            assert_int_equal(mio__wheel_cancel(&w, m[k].id), m[k].live ? 0 : -ENOENT);
            if (m[k].live)
                live--;
            m[k].live = false;
        }
        /* next() is never later than the earliest live deadline, and not before now. */
        uint64_t earliest = UINT64_MAX;
        for (size_t k = 0; k < n; k++)
            if (m[k].live && m[k].deadline < earliest)
                earliest = m[k].deadline;
        uint64_t next = mio__wheel_next(&w);
        assert_true(next <= (earliest > now ? earliest : now));
        if (live > 0)
            assert_true(next >= now);

        uint64_t step;
        switch (rnd() % 10) {
        case 0: step = rnd() % (1ull << 32); break; /* big jump */
        case 1: step = next != UINT64_MAX && next > now ? next - now : 1; break; /* exact */
        case 2: step = 0; break;
        default: step = rnd() % 200; break;
        }
        now += step;
        mio__wheel_advance(&w, now);
        struct mio__timer *t;
        uint64_t last_deadline = 0, last_seq = 0;
        bool first = true;
        while ((t = mio__wheel_pop(&w)) != NULL) {
            struct model_timer *mt = t->arg;
            assert_true(mt->live);
            assert_true(mt->deadline <= now);
            if (!first)
                assert_true(mt->deadline > last_deadline ||
                            (mt->deadline == last_deadline && mt->seq > last_seq));
            first = false;
            last_deadline = mt->deadline;
            last_seq = mt->seq;
            mt->live = false;
            live--;
            mio__wheel_fired(&w, t);
        }
        /* Not late: nothing due is left behind. */
        for (size_t k = 0; k < n; k++)
            if (m[k].live)
                assert_true(m[k].deadline > now);
        assert_int_equal(w.count, live);
    }
    mio__wheel_destroy(&w);
}

/* Repeating timers in the wheel re-arm from the time they fired (on time: same cadence). */
static void test_wheel_repeat(void **state)
{
    (void)state;
    struct mio__wheel w;
    uint64_t id;
    struct mio__timer *t;

    mio__wheel_init(&w, 0, 0);
    assert_int_equal(mio__wheel_start(&w, 10, 10, dummy_fn, NULL, &id), 0);
    for (uint64_t k = 1; k <= 5; k++) {
        mio__wheel_advance(&w, k * 10 - 1);
        assert_null(mio__wheel_pop(&w));
        mio__wheel_advance(&w, k * 10);
        t = mio__wheel_pop(&w);
        assert_non_null(t);
        assert_int_equal(t->deadline, k * 10);
        mio__wheel_fired(&w, t);
    }
    mio__wheel_advance(&w, 1000); /* late: one firing, next period from now */
    t = mio__wheel_pop(&w);
    assert_non_null(t);
    mio__wheel_fired(&w, t);
    assert_null(mio__wheel_pop(&w));
    assert_int_equal(mio__wheel_next(&w), 1010);
    assert_int_equal(mio__wheel_cancel(&w, id), 0);
    assert_int_equal(w.count, 0);
    mio__wheel_destroy(&w);
}

/* ------------------------------------------------------------------ reactor timers */

struct fire_log {
    mio_reactor *r;
    int order[64];
    int n;
    uint64_t start_now[64], after[64], fired_now[64];
    unsigned long long fired_real[64];
};

struct fire_arg {
    struct fire_log *log;
    int index;
};

static void log_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct fire_arg *a = arg;
    (void)id;
    a->log->order[a->log->n++] = a->index;
    a->log->fired_now[a->index] = mio_reactor_now_ms(r);
    a->log->fired_real[a->index] = mio_test_now_ms();
}

static void run_until(mio_reactor *r, int *counter, int target)
{
    while (*counter < target)
        assert_true(mio_reactor_run_once(r, -1) >= 0);
}

static void test_never_early_and_order(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    static struct fire_log log;
    static struct fire_arg args[8];
    /* Started in reverse order of deadline, two pairs with equal deadlines. */
    static const uint64_t after[8] = {90, 70, 70, 45, 30, 30, 10, 1};
    memset(&log, 0, sizeof log);
    mio__reactor_update_now(r);
    for (int i = 0; i < 8; i++) {
        args[i].log = &log;
        args[i].index = i;
        log.start_now[i] = mio_reactor_now_ms(r);
        log.after[i] = after[i];
        assert_int_equal(mio_reactor_timer_start(r, after[i], 0, log_timer, &args[i], NULL), 0);
    }
    assert_int_equal(stats_of(r).timers, 8);
    run_until(r, &log.n, 8);
    static const int expect[8] = {7, 6, 4, 5, 3, 1, 2, 0};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(log.order[i], expect[i]);
        int k = log.order[i];
        assert_true(log.fired_now[k] >= log.start_now[k] + log.after[k]);
        /* Real time too: the cached start time is never ahead of the real clock. */
        assert_true(log.fired_real[k] >= log.start_now[k] + log.after[k]);
    }
    assert_int_equal(stats_of(r).timers, 0);
    assert_int_equal(stats_of(r).timers_fired, 8);
    mio_reactor_free(r);
}

/* The poll timeout follows the nearest timer: one 40 ms timer, run(-1) sleeps instead of
 * spinning, and returns once it fired. */
static void test_poll_timeout_follows_timer(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    int fired;
    mio__reactor_update_now(r);
    uint64_t start = mio_reactor_now_ms(r);
    assert_int_equal(mio_reactor_timer_start(r, 40, 0, NULL, NULL, NULL), -EINVAL);
    struct fire_log log;
    struct fire_arg a = {&log, 0};
    memset(&log, 0, sizeof log);
    assert_int_equal(mio_reactor_timer_start(r, 40, 0, log_timer, &a, NULL), 0);
    run_until(r, &log.n, 1);
    fired = log.n;
    assert_int_equal(fired, 1);
    assert_true(log.fired_now[0] >= start + 40);
    /* At most one wake per wheel level crossed plus the firing one: no busy loop. */
    assert_true(stats_of(r).iterations <= 8);
    mio_reactor_free(r);
}

struct repeat_ctx {
    mio_reactor *r;
    mio_timer_id id;
    int fired;
    int stop_at;
    uint64_t times[16];
    int cancel_rc;
};

static void repeat_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct repeat_ctx *c = arg;
    assert_int_equal(id, c->id);
    c->times[c->fired++] = mio_reactor_now_ms(r);
    if (c->fired == c->stop_at)
        c->cancel_rc = mio_reactor_timer_cancel(r, id);
}

static void test_repeat_and_cancel_in_own_callback(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct repeat_ctx c;
    memset(&c, 0, sizeof c);
    c.stop_at = 4;
    mio__reactor_update_now(r);
    uint64_t start = mio_reactor_now_ms(r);
    assert_int_equal(mio_reactor_timer_start(r, 15, 10, repeat_timer, &c, &c.id), 0);
    run_until(r, &c.fired, 4);
    assert_int_equal(c.cancel_rc, 0); /* a repeating timer cancelled in its callback stops */
    assert_true(c.times[0] >= start + 15);
    for (int i = 1; i < 4; i++)
        assert_true(c.times[i] >= c.times[i - 1] + 10);
    assert_int_equal(stats_of(r).timers, 0);
    assert_int_equal(mio_reactor_timer_cancel(r, c.id), -ENOENT);
    /* It stays stopped. */
    assert_int_equal(mio_reactor_run_once(r, 60), 0);
    assert_int_equal(c.fired, 4);
    mio_reactor_free(r);
}

struct cancel_ctx {
    mio_timer_id ids[3];
    int fired[3];
    int rc_self, rc_other;
};

static void canceller(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct cancel_ctx *c = arg;
    int me = id == c->ids[0] ? 0 : id == c->ids[1] ? 1 : 2;
    c->fired[me]++;
    if (me == 0) {
        c->rc_self = mio_reactor_timer_cancel(r, id);
        c->rc_other = mio_reactor_timer_cancel(r, c->ids[1]); /* due in this same run */
    }
}

static void test_cancel_in_callback(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct cancel_ctx c;
    memset(&c, 0, sizeof c);
    /* Equal deadlines: 0 fires first (start order), cancels itself and 1; 2 still fires. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mio_reactor_timer_start(r, 5, 0, canceller, &c, &c.ids[i]), 0);
    while (c.fired[2] == 0)
        assert_true(mio_reactor_run_once(r, -1) >= 0);
    assert_int_equal(c.fired[0], 1);
    assert_int_equal(c.fired[1], 0);
    assert_true(c.rc_self == 0 || c.rc_self == -ENOENT);
    assert_int_equal(c.rc_other, 0);
    assert_int_equal(mio_reactor_timer_cancel(r, c.ids[0]), -ENOENT);
    assert_int_equal(mio_reactor_timer_cancel(r, c.ids[1]), -ENOENT);
    assert_int_equal(mio_reactor_timer_cancel(r, c.ids[2]), -ENOENT);
    assert_int_equal(mio_reactor_timer_cancel(r, 0), -ENOENT);
    assert_int_equal(mio_reactor_timer_cancel(r, 0xffffffffffffull), -ENOENT);
    assert_int_equal(stats_of(r).timers, 0);
    mio_reactor_free(r);
}

/* Cancelling a timer from an I/O handler and from a task. */
static void cancel_task(mio_reactor *r, void *arg)
{
    mio_timer_id *id = arg;
    assert_int_equal(mio_reactor_timer_cancel(r, *id), 0);
}

static void never_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    (void)r;
    (void)id;
    (void)arg;
    fail_msg("a cancelled timer fired");
}

static void test_cancel_from_task(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    mio_timer_id id;
    assert_int_equal(mio_reactor_timer_start(r, 0, 0, never_timer, NULL, &id), 0);
    assert_int_equal(mio_reactor_post(r, cancel_task, &id), 0);
    assert_int_equal(mio_reactor_run_once(r, 0), 1); /* the task; the timer is gone */
    assert_int_equal(mio_reactor_run_once(r, 20), 0);
    mio_reactor_free(r);
}

struct zero_ctx {
    int fired;
    int restarts;
};

static void zero_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct zero_ctx *c = arg;
    (void)id;
    c->fired++;
    if (c->restarts-- > 0)
        assert_int_equal(mio_reactor_timer_start(r, 0, 0, zero_timer, c, NULL), 0);
}

static void test_after_zero(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    struct zero_ctx c = {0, 3};
    assert_int_equal(mio_reactor_timer_start(r, 0, 0, zero_timer, &c, NULL), 0);
    assert_int_equal(c.fired, 0); /* never inside start */
    /* Each run fires exactly one: a timer started with 0 inside a timer waits for the next run. */
    for (int i = 1; i <= 4; i++) {
        assert_int_equal(mio_reactor_run_once(r, 1000), 1);
        assert_int_equal(c.fired, i);
    }
    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    mio_reactor_free(r);
}

static void test_huge_timeouts(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    mio_timer_id a, b, c;
    assert_int_equal(mio_reactor_timer_start(r, UINT64_MAX, 0, never_timer, NULL, &a), 0);
    assert_int_equal(mio_reactor_timer_start(r, UINT64_MAX - 1, UINT64_MAX, never_timer, NULL, &b),
                     0);
    assert_int_equal(mio_reactor_timer_start(r, 1ull << 40, 0, never_timer, NULL, &c), 0);
    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    unsigned long long t0 = mio_test_now_ms();
    assert_int_equal(mio_reactor_run_once(r, 30), 0); /* the wait is not cut to 0 by overflow */
    assert_true(mio_test_now_ms() - t0 >= 29);
    assert_int_equal(stats_of(r).timers, 3);
    assert_int_equal(mio_reactor_timer_cancel(r, a), 0);
    assert_int_equal(mio_reactor_timer_cancel(r, b), 0);
    assert_int_equal(mio_reactor_timer_cancel(r, c), 0);
    assert_int_equal(stats_of(r).timers, 0);
    mio_reactor_free(r);
}

/* Freeing a reactor with pending timers drops them (ASan: nothing leaks). */
static void test_free_with_pending(void **state)
{
    (void)state;
    mio_reactor *r = new_reactor();
    for (int i = 0; i < 10000; i++)
        assert_int_equal(mio_reactor_timer_start(r, (uint64_t)i, 0, never_timer, NULL, NULL), 0);
    mio_reactor_free(r);
}

/* 1,000,000 timers started and cancelled: O(1) each, bounded by the watchdog. Ids unique while
 * live; cancelled in a scrambled order. */
static void test_million_start_cancel(void **state)
{
    (void)state;
    enum { N = 1000000 };
    mio_reactor *r = new_reactor();
    mio_timer_id *ids = malloc(N * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++)
        assert_int_equal(mio_reactor_timer_start(r, 1 + (uint64_t)(i % 100000) * 7, 0, never_timer,
                                                 NULL, &ids[i]),
                         0);
    assert_int_equal(stats_of(r).timers, N);
    for (int i = 0; i < N; i++) {
        int k = (int)(((uint64_t)i * 7919u) % N); /* 7919 is prime and does not divide N */
        assert_int_equal(mio_reactor_timer_cancel(r, ids[k]), 0);
    }
    assert_int_equal(stats_of(r).timers, 0);
    assert_int_equal(mio_reactor_timer_cancel(r, ids[0]), -ENOENT);
    assert_int_equal(mio_reactor_run_once(r, 0), 0);
    free(ids);
    mio_reactor_free(r);
}

/* 1,000,000 timers fired, spread over 0..49 ms: each exactly once, never early. */
struct million_ctx {
    uint64_t start_now;
    int fired;
    unsigned char *seen;
    bool early;
};
static struct million_ctx mctx;

static void million_timer(mio_reactor *r, mio_timer_id id, void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    (void)id;
    if (mio_reactor_now_ms(r) < mctx.start_now + i % 50)
        mctx.early = true;
    mctx.seen[i]++;
    mctx.fired++;
}

static void test_million_fired(void **state)
{
    (void)state;
    enum { N = 1000000 };
    mio_reactor *r = new_reactor();
    memset(&mctx, 0, sizeof mctx);
    mctx.seen = calloc(N, 1);
    assert_non_null(mctx.seen);
    mio__reactor_update_now(r);
    mctx.start_now = mio_reactor_now_ms(r);
    for (uintptr_t i = 0; i < N; i++)
        assert_int_equal(
            mio_reactor_timer_start(r, i % 50, 0, million_timer, (void *)i, NULL), 0);
    run_until(r, &mctx.fired, N);
    assert_int_equal(mctx.fired, N);
    assert_false(mctx.early);
    for (int i = 0; i < N; i++)
        assert_int_equal(mctx.seen[i], 1);
    struct mio_reactor_stats st = stats_of(r);
    assert_int_equal(st.timers_fired, N);
    assert_int_equal(st.timers, 0);
    free(mctx.seen);
    mio_reactor_free(r);
}

int main(void)
{
    mio_test_watchdog(280);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_wheel_basic),
        CORE_TEST(test_wheel_model),
        CORE_TEST(test_wheel_repeat),
        CORE_TEST(test_never_early_and_order),
        CORE_TEST(test_poll_timeout_follows_timer),
        CORE_TEST(test_repeat_and_cancel_in_own_callback),
        CORE_TEST(test_cancel_in_callback),
        CORE_TEST(test_cancel_from_task),
        CORE_TEST(test_after_zero),
        CORE_TEST(test_huge_timeouts),
        CORE_TEST(test_free_with_pending),
        CORE_TEST(test_million_start_cancel),
        CORE_TEST(test_million_fired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
