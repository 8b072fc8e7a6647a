/* mio_events and mio_event: the buffer, MIO_EVENTS_FOREACH, capacity spreading across polls, the
 * exact epoll-flag mapping of every predicate, mio_event_format and mio_strerror (mio's events.rs
 * and event tests). */
#include "core_helpers.h"

#include <limits.h>
#include <stdbool.h>

#include <mio/common.h>
#include <mio/event.h>
#include <mio/poll.h>

/* ---- a poll with n eventfds already readable, token = TOKEN_BASE + i ---- */
#define TOKEN_BASE 100u
#define MAX_SRC 16

struct fixture {
    mio_poll *poll;
    int fds[MAX_SRC];
    size_t n;
};

static void fixture_init(struct fixture *f, size_t n)
{
    assert_true(n <= MAX_SRC);
    assert_int_equal(mio_poll_new(&f->poll), 0);
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        f->fds[i] = core_eventfd(1);
        assert_int_equal(mio_registry_register(mio_poll_registry(f->poll), f->fds[i],
                                               TOKEN_BASE + i, MIO_READABLE),
                         0);
    }
}

static void fixture_fini(struct fixture *f)
{
    for (size_t i = 0; i < f->n; i++)
        close(f->fds[i]);
    mio_poll_free(f->poll);
}

/* ---- buffer basics ---- */

static void test_new_rejects_capacity_zero(void **state)
{
    (void)state;
    mio_events *ev = (mio_events *)0x1;
    assert_int_equal(mio_events_new(0, &ev), -EINVAL);
    assert_int_equal(mio_events_new(8, NULL), -EINVAL);
    assert_int_equal(mio_events_new(SIZE_MAX, &ev), -EINVAL);
    mio_events_free(NULL);
}

static void test_new_empty(void **state)
{
    (void)state;
    mio_events *ev;
    assert_int_equal(mio_events_new(16, &ev), 0);
    assert_non_null(ev);
    assert_int_equal(mio_events_capacity(ev), 16);
    assert_int_equal(mio_events_len(ev), 0);
    assert_true(mio_events_is_empty(ev));
    assert_null(mio_events_get(ev, 0));
    assert_null(mio_events_get(ev, 15));
    size_t n = 0;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        (void)e;
        n++;
    }
    assert_int_equal(n, 0);
    mio_events_free(ev);

    assert_int_equal(mio_events_new(1, &ev), 0);
    assert_int_equal(mio_events_capacity(ev), 1);
    mio_events_free(ev);
}

static void test_len_get_clear(void **state)
{
    (void)state;
    struct fixture f;
    mio_events *ev;
    fixture_init(&f, 4);
    assert_int_equal(mio_events_new(8, &ev), 0);

    assert_int_equal(mio_poll_poll(f.poll, ev, 1000), 4);
    assert_int_equal(mio_events_len(ev), 4);
    assert_false(mio_events_is_empty(ev));
    assert_int_equal(mio_events_capacity(ev), 8);
    bool seen[4] = { false };
    for (size_t i = 0; i < 4; i++) {
        const mio_event *e = mio_events_get(ev, i);
        assert_non_null(e);
        mio_token t = mio_event_token(e);
        assert_true(t >= TOKEN_BASE && t < TOKEN_BASE + 4);
        assert_false(seen[t - TOKEN_BASE]);
        seen[t - TOKEN_BASE] = true;
        assert_true(mio_event_is_readable(e));
        assert_false(mio_event_is_writable(e));
    }
    assert_null(mio_events_get(ev, 4));
    assert_null(mio_events_get(ev, 7));
    assert_null(mio_events_get(ev, SIZE_MAX));

    mio_events_clear(ev);
    assert_int_equal(mio_events_len(ev), 0);
    assert_true(mio_events_is_empty(ev));
    assert_null(mio_events_get(ev, 0));
    assert_int_equal(mio_events_capacity(ev), 8);

    mio_events_free(ev);
    fixture_fini(&f);
}

/* ---- MIO_EVENTS_FOREACH ---- */

static void test_foreach_order(void **state)
{
    (void)state;
    struct fixture f;
    mio_events *ev;
    fixture_init(&f, 6);
    assert_int_equal(mio_events_new(16, &ev), 0);
    assert_int_equal(mio_poll_poll(f.poll, ev, 1000), 6);

    size_t i = 0;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        assert_ptr_equal(e, mio_events_get(ev, i));
        i++;
    }
    assert_int_equal(i, 6);

    mio_events_free(ev);
    fixture_fini(&f);
}

static void test_foreach_break_leaves_whole_loop(void **state)
{
    (void)state;
    struct fixture f;
    mio_events *ev;
    fixture_init(&f, 5);
    assert_int_equal(mio_events_new(16, &ev), 0);
    assert_int_equal(mio_poll_poll(f.poll, ev, 1000), 5);

    size_t visits = 0;
    const mio_event *last = NULL;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        visits++;
        last = e;
        if (visits == 2)
            break;
    }
    assert_int_equal(visits, 2);
    assert_ptr_equal(last, mio_events_get(ev, 1));

    /* break on the very first event */
    visits = 0;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        (void)e;
        visits++;
        break;
    }
    assert_int_equal(visits, 1);

    /* break on the last event also ends cleanly */
    visits = 0;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        visits++;
        if (e == mio_events_get(ev, 4))
            break;
    }
    assert_int_equal(visits, 5);

    mio_events_free(ev);
    fixture_fini(&f);
}

static void test_foreach_continue(void **state)
{
    (void)state;
    struct fixture f;
    mio_events *ev;
    fixture_init(&f, 7);
    assert_int_equal(mio_events_new(16, &ev), 0);
    assert_int_equal(mio_poll_poll(f.poll, ev, 1000), 7);

    size_t visits = 0, bodies = 0, i = 0;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        assert_ptr_equal(e, mio_events_get(ev, i));
        i++;
        visits++;
        if (visits % 2 == 1)
            continue;
        bodies++;
    }
    assert_int_equal(visits, 7);
    assert_int_equal(bodies, 3);

    mio_events_free(ev);
    fixture_fini(&f);
}

static void test_foreach_nested_and_single_statement(void **state)
{
    (void)state;
    struct fixture f;
    mio_events *ev;
    fixture_init(&f, 3);
    assert_int_equal(mio_events_new(16, &ev), 0);
    assert_int_equal(mio_poll_poll(f.poll, ev, 1000), 3);

    /* Nested on separate lines: must compile cleanly under -Wshadow and visit 3 x 3 pairs;
     * a break in the inner loop leaves only the inner loop. */
    size_t pairs = 0, outer = 0, inner_broken = 0;
    MIO_EVENTS_FOREACH(const mio_event *a, ev)
    {
        outer++;
        MIO_EVENTS_FOREACH(const mio_event *b, ev)
        {
            (void)a;
            (void)b;
            pairs++;
        }
        MIO_EVENTS_FOREACH(const mio_event *c, ev)
        {
            (void)c;
            inner_broken++;
            break;
        }
    }
    assert_int_equal(outer, 3);
    assert_int_equal(pairs, 9);
    assert_int_equal(inner_broken, 3);

    /* Body as a single statement without braces. */
    size_t n = 0;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
        n += mio_event_is_readable(e) ? 1 : 0;
    assert_int_equal(n, 3);

    /* Used as the body of an if/else without braces. */
    n = 0;
    if (mio_events_len(ev) > 0)
        MIO_EVENTS_FOREACH(const mio_event *e, ev)
            n += e != NULL ? 1 : 0;
    else
        n = 99;
    assert_int_equal(n, 3);

    mio_events_free(ev);
    fixture_fini(&f);
}

/* ---- capacity spreading: more ready sources than the capacity ---- */

static void test_capacity_spreads_over_polls(void **state)
{
    (void)state;
    struct fixture f;
    mio_events *ev;
    const size_t nsrc = 11, cap = 3;
    fixture_init(&f, nsrc);
    assert_int_equal(mio_events_new(cap, &ev), 0);

    int seen[MAX_SRC] = { 0 };
    size_t total = 0;
    for (int round = 0; round < 20 && total < nsrc; round++) {
        int n = mio_poll_poll(f.poll, ev, 1000);
        assert_true(n > 0);
        assert_true((size_t)n <= cap);
        assert_int_equal(mio_events_len(ev), (size_t)n);
        MIO_EVENTS_FOREACH(const mio_event *e, ev)
        {
            mio_token t = mio_event_token(e);
            assert_true(t >= TOKEN_BASE && t < TOKEN_BASE + nsrc);
            seen[t - TOKEN_BASE]++;
            total++;
        }
    }
    assert_int_equal(total, nsrc);
    for (size_t i = 0; i < nsrc; i++)
        assert_int_equal(seen[i], 1);
    /* Edge-triggered: all of them were reported once, nothing is left. */
    assert_int_equal(mio_poll_poll(f.poll, ev, 0), 0);
    assert_true(mio_events_is_empty(ev));

    mio_events_free(ev);
    fixture_fini(&f);
}

static void test_capacity_one(void **state)
{
    (void)state;
    struct fixture f;
    mio_events *ev;
    fixture_init(&f, 2);
    assert_int_equal(mio_events_new(1, &ev), 0);
    assert_int_equal(mio_poll_poll(f.poll, ev, 1000), 1);
    mio_token first = mio_event_token(mio_events_get(ev, 0));
    assert_int_equal(mio_poll_poll(f.poll, ev, 1000), 1);
    mio_token second = mio_event_token(mio_events_get(ev, 0));
    assert_true(first != second);
    assert_true(first == TOKEN_BASE || first == TOKEN_BASE + 1);
    assert_true(second == TOKEN_BASE || second == TOKEN_BASE + 1);
    assert_int_equal(mio_poll_poll(f.poll, ev, 0), 0);
    mio_events_free(ev);
    fixture_fini(&f);
}

/* ---- predicates: exact flag mapping from API.md ---- */

static mio_event make_event(uint32_t flags, uint64_t token)
{
    mio_event e;
    memset(&e, 0, sizeof e);
    e.events = flags;
    e.data.u64 = token;
    return e;
}

/* Reference mapping, written from API.md. */
static bool ref_readable(uint32_t f) { return (f & (EPOLLIN | EPOLLPRI)) != 0; }
static bool ref_writable(uint32_t f) { return (f & EPOLLOUT) != 0; }
static bool ref_error(uint32_t f) { return (f & EPOLLERR) != 0; }
static bool ref_priority(uint32_t f) { return (f & EPOLLPRI) != 0; }
static bool ref_read_closed(uint32_t f)
{
    return (f & EPOLLHUP) || ((f & EPOLLIN) && (f & EPOLLRDHUP));
}
static bool ref_write_closed(uint32_t f)
{
    return (f & EPOLLHUP) || ((f & EPOLLOUT) && (f & EPOLLERR)) || f == EPOLLERR;
}

static void test_predicates_exhaustive(void **state)
{
    (void)state;
    static const uint32_t bits[] = { EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP,
                                     EPOLLRDNORM, EPOLLWRNORM };
    const size_t nbits = sizeof bits / sizeof bits[0];
    for (unsigned combo = 0; combo < (1u << nbits); combo++) {
        uint32_t f = 0;
        for (size_t b = 0; b < nbits; b++)
            if (combo & (1u << b))
                f |= bits[b];
        mio_event e = make_event(f, combo);
        if (mio_event_is_readable(&e) != ref_readable(f) ||
            mio_event_is_writable(&e) != ref_writable(f) || mio_event_is_error(&e) != ref_error(f) ||
            mio_event_is_priority(&e) != ref_priority(f) ||
            mio_event_is_read_closed(&e) != ref_read_closed(f) ||
            mio_event_is_write_closed(&e) != ref_write_closed(f))
            fail_msg("predicate mismatch for epoll flags 0x%x", (unsigned)f);
        assert_int_equal(mio_event_token(&e), combo);
    }
}

static void test_predicates_named_cases(void **state)
{
    (void)state;
    mio_event e;

    e = make_event(0, 0);
    assert_false(mio_event_is_readable(&e) || mio_event_is_writable(&e) || mio_event_is_error(&e) ||
                 mio_event_is_read_closed(&e) || mio_event_is_write_closed(&e) ||
                 mio_event_is_priority(&e));

    e = make_event(EPOLLIN, 1);
    assert_true(mio_event_is_readable(&e));
    assert_false(mio_event_is_read_closed(&e));
    assert_false(mio_event_is_priority(&e));

    /* EPOLLPRI alone is readable and priority. */
    e = make_event(EPOLLPRI, 1);
    assert_true(mio_event_is_readable(&e));
    assert_true(mio_event_is_priority(&e));

    /* A peer's shutdown(SHUT_WR) with data or EOF: EPOLLIN | EPOLLRDHUP. */
    e = make_event(EPOLLIN | EPOLLRDHUP, 1);
    assert_true(mio_event_is_read_closed(&e));
    assert_false(mio_event_is_write_closed(&e));
    /* EPOLLRDHUP without EPOLLIN is not read-closed. */
    e = make_event(EPOLLRDHUP, 1);
    assert_false(mio_event_is_read_closed(&e));
    assert_false(mio_event_is_readable(&e));

    /* EPOLLHUP closes both directions. */
    e = make_event(EPOLLHUP, 1);
    assert_true(mio_event_is_read_closed(&e));
    assert_true(mio_event_is_write_closed(&e));
    assert_false(mio_event_is_error(&e));

    /* The read end of a pipe closed: the writer sees exactly EPOLLERR. */
    e = make_event(EPOLLERR, 1);
    assert_true(mio_event_is_error(&e));
    assert_true(mio_event_is_write_closed(&e));
    assert_false(mio_event_is_read_closed(&e));
    assert_false(mio_event_is_writable(&e));

    e = make_event(EPOLLOUT | EPOLLERR, 1);
    assert_true(mio_event_is_write_closed(&e));
    assert_true(mio_event_is_writable(&e));

    /* EPOLLERR with EPOLLIN only is not "exactly EPOLLERR" and has no EPOLLOUT. */
    e = make_event(EPOLLIN | EPOLLERR, 1);
    assert_false(mio_event_is_write_closed(&e));
    assert_true(mio_event_is_error(&e));
    e = make_event(EPOLLERR | EPOLLRDHUP, 1);
    assert_false(mio_event_is_write_closed(&e));

    e = make_event(EPOLLOUT, 1);
    assert_true(mio_event_is_writable(&e));
    assert_false(mio_event_is_write_closed(&e));
    assert_false(mio_event_is_readable(&e));
}

static void test_token_roundtrip(void **state)
{
    (void)state;
    static const mio_token tokens[] = { 0, 1, 42, (mio_token)UINT32_MAX, (mio_token)UINT32_MAX + 1u,
                                        UINTPTR_MAX, UINTPTR_MAX - 1 };
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        mio_event e = make_event(EPOLLIN, (uint64_t)tokens[i]);
        assert_true(mio_event_token(&e) == tokens[i]);
    }
}

/* ---- mio_event_format ---- */

static void test_event_format(void **state)
{
    (void)state;
    char buf[256], small[8];
    mio_event e = make_event(EPOLLIN | EPOLLOUT | EPOLLRDHUP, 7);

    int need = mio_event_format(&e, NULL, 0);
    assert_true(need > 0);
    assert_true((size_t)need < sizeof buf);
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_event_format(&e, buf, sizeof buf), need);
    assert_int_equal(strlen(buf), (size_t)need);
    assert_non_null(strstr(buf, "7"));
    assert_non_null(strstr(buf, "READABLE"));
    assert_non_null(strstr(buf, "WRITABLE"));
    assert_non_null(strstr(buf, "READ_CLOSED"));

    /* truncation: prefix of the full text, NUL-terminated, nothing past len */
    memset(small, 'x', sizeof small);
    assert_int_equal(mio_event_format(&e, small, 5), need);
    assert_int_equal(strlen(small), 4);
    assert_memory_equal(small, buf, 4);
    assert_int_equal(small[5], 'x');

    memset(small, 'x', sizeof small);
    assert_int_equal(mio_event_format(&e, small, 1), need);
    assert_int_equal(small[0], '\0');
    assert_int_equal(small[1], 'x');

    /* Different tokens and flags give different text. */
    mio_event e2 = make_event(EPOLLERR, UINTPTR_MAX);
    char buf2[256];
    int need2 = mio_event_format(&e2, buf2, sizeof buf2);
    assert_int_equal(need2, (int)strlen(buf2));
    assert_string_not_equal(buf, buf2);
}

/* ---- mio_strerror ---- */

static void test_strerror(void **state)
{
    (void)state;
    static const int errs[] = { EEXIST, ENOENT, EPERM, EBADF, EINVAL, EINTR, EAGAIN, ENOMEM, EPIPE };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        char want[256];
        snprintf(want, sizeof want, "%s", strerror(errs[i]));
        const char *got = mio_strerror(-errs[i]);
        assert_non_null(got);
        assert_string_equal(got, want);
    }
    assert_string_equal(mio_strerror(0), "success");
    assert_string_equal(mio_strerror(12), "success");
    assert_string_equal(mio_strerror(INT_MAX), "success");
    /* Unknown and extreme values still give a usable string (no UB on -INT_MIN). */
    const char *s = mio_strerror(-99999);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    s = mio_strerror(INT_MIN);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
}

/* The inline predicates (the macros of event.h) and the exported functions agree on every
 * combination of the bits they read, and the exported ones can still be taken by address. */
static void test_inline_matches_exported(void **state)
{
    static const uint32_t bits[] = {EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLPRI};
    bool (*readable)(const mio_event *) = mio_event_is_readable;

    (void)state;
    for (unsigned m = 0; m < 1u << 6; m++) {
        mio_event ev = {0};

        for (unsigned b = 0; b < 6; b++)
            if (m & (1u << b))
                ev.events |= bits[b];
        ev.data.u64 = m * 7919u;
        assert_int_equal(mio_event_token(&ev), (mio_event_token)(&ev));
        assert_int_equal(mio_event_is_readable(&ev), readable(&ev));
        assert_int_equal(mio_event_is_writable(&ev), (mio_event_is_writable)(&ev));
        assert_int_equal(mio_event_is_error(&ev), (mio_event_is_error)(&ev));
        assert_int_equal(mio_event_is_read_closed(&ev), (mio_event_is_read_closed)(&ev));
        assert_int_equal(mio_event_is_write_closed(&ev), (mio_event_is_write_closed)(&ev));
        assert_int_equal(mio_event_is_priority(&ev), (mio_event_is_priority)(&ev));
    }
}

int main(void)
{
    mio_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_new_rejects_capacity_zero),
        CORE_TEST(test_new_empty),
        CORE_TEST(test_len_get_clear),
        CORE_TEST(test_foreach_order),
        CORE_TEST(test_foreach_break_leaves_whole_loop),
        CORE_TEST(test_foreach_continue),
        CORE_TEST(test_foreach_nested_and_single_statement),
        CORE_TEST(test_capacity_spreads_over_polls),
        CORE_TEST(test_capacity_one),
        CORE_TEST(test_predicates_exhaustive),
        CORE_TEST(test_predicates_named_cases),
        CORE_TEST(test_token_roundtrip),
        CORE_TEST(test_event_format),
        CORE_TEST(test_strerror),
        CORE_TEST(test_inline_matches_exported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
