/* Shared fixtures for the net CMocka suites (tcp, udp, unix, pipe): per-test fd-count check, a poll
 * with an event accumulator so edge-triggered events for one token are never lost while waiting for
 * another, and small address helpers. Header-only. */
#ifndef MIO_TESTS_NET_HELPERS_H
#define MIO_TESTS_NET_HELPERS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <mio/mio.h>

#include "helpers.h"

/* Generous: the machine may be loaded by other builds and sanitizers. */
#define NET_DEADLINE_MS 20000

static int net_fd_setup(void **state)
{
    *state = (void *)(intptr_t)mio_test_fd_count();
    return 0;
}

static int net_fd_teardown(void **state)
{
    int before = (int)(intptr_t)*state;
    int after = mio_test_fd_count();
    if (before != after) {
        fprintf(stderr, "fd count changed: %d before the test, %d after\n", before, after);
        return -1;
    }
    return 0;
}

#define NET_TEST(f) cmocka_unit_test_setup_teardown(f, net_fd_setup, net_fd_teardown)

/* Readiness flags accumulated per token (tokens < NET_MAX_TOKENS in these tests). */
enum {
    EV_R = 1u << 0,
    EV_W = 1u << 1,
    EV_ERR = 1u << 2,
    EV_RC = 1u << 3,
    EV_WC = 1u << 4,
};
#define NET_MAX_TOKENS 64

struct net_ctx {
    mio_poll *poll;
    mio_registry *reg;
    mio_events *events;
    unsigned seen[NET_MAX_TOKENS];
    unsigned counts[NET_MAX_TOKENS];
};

static inline void net_ctx_init(struct net_ctx *c)
{
    memset(c, 0, sizeof *c);
    assert_int_equal(mio_poll_new(&c->poll), 0);
    assert_int_equal(mio_events_new(256, &c->events), 0);
    c->reg = mio_poll_registry(c->poll);
}

static inline void net_ctx_free(struct net_ctx *c)
{
    mio_events_free(c->events);
    mio_poll_free(c->poll);
}

static inline unsigned net_event_flags(const mio_event *ev)
{
    return (mio_event_is_readable(ev) ? EV_R : 0u) | (mio_event_is_writable(ev) ? EV_W : 0u) |
           (mio_event_is_error(ev) ? EV_ERR : 0u) | (mio_event_is_read_closed(ev) ? EV_RC : 0u) |
           (mio_event_is_write_closed(ev) ? EV_WC : 0u);
}

/* One poll; folds the events into the accumulator. Returns the number of events. */
static inline int net_poll_once(struct net_ctx *c, int timeout_ms)
{
    int n = mio_poll_poll(c->poll, c->events, timeout_ms);
    if (n == -EINTR)
        return 0;
    assert_true(n >= 0);
    MIO_EVENTS_FOREACH(const mio_event *ev, c->events)
    {
        mio_token t = mio_event_token(ev);
        assert_true(t < NET_MAX_TOKENS);
        c->seen[t] |= net_event_flags(ev);
        c->counts[t]++;
    }
    return n;
}

/* Polls until events for `token` together carried every flag in `want`; returns the flags seen
 * and forgets them. Fails the test after NET_DEADLINE_MS. */
static inline unsigned net_wait(struct net_ctx *c, mio_token token, unsigned want)
{
    unsigned long long end = mio_test_now_ms() + NET_DEADLINE_MS;
    unsigned got;

    while ((c->seen[token] & want) != want || c->counts[token] == 0) {
        if (mio_test_now_ms() > end) {
            fprintf(stderr, "net_wait: token %u wanted 0x%x, saw 0x%x\n", (unsigned)token, want,
                    c->seen[token]);
            fail();
        }
        net_poll_once(c, 100);
    }
    got = c->seen[token];
    c->seen[token] = 0;
    c->counts[token] = 0;
    return got;
}

/* Polls for `ms` and fails if any event arrives for `token`. */
static inline void net_expect_none(struct net_ctx *c, mio_token token, int ms)
{
    unsigned long long end = mio_test_now_ms() + (unsigned long long)ms;
    c->seen[token] = 0;
    c->counts[token] = 0;
    while (mio_test_now_ms() < end)
        net_poll_once(c, 20);
    assert_int_equal(c->counts[token], 0);
}

/* Forgets everything seen so far for `token`. */
static inline void net_forget(struct net_ctx *c, mio_token token)
{
    c->seen[token] = 0;
    c->counts[token] = 0;
}

static inline mio_addr net_addr(const char *text)
{
    mio_addr a;
    assert_int_equal(mio_addr_parse(text, &a), 0);
    return a;
}

static inline mio_addr net_local(int fd)
{
    mio_addr a;
    assert_int_equal(mio_socket_local_addr(fd, &a), 0);
    return a;
}

static inline void net_assert_addr_equal(const mio_addr *a, const mio_addr *b)
{
    char ta[MIO_ADDR_STRLEN], tb[MIO_ADDR_STRLEN];
    assert_true(mio_addr_format(a, ta, sizeof ta) > 0);
    assert_true(mio_addr_format(b, tb, sizeof tb) > 0);
    assert_string_equal(ta, tb);
}

static inline void net_close2(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* SO_LINGER {on, 0}: close() then sends RST instead of FIN. */
static inline void net_set_linger0(int fd)
{
    struct linger l = {1, 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
}

static inline void net_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

#endif
