/* fd-number reuse, for every API that keeps an fd number.
 *
 * Reactor: a token whose fd was closed and whose number now belongs to a new fd added to the same
 * reactor: remove(old token) returns 0 and leaves the new fd registered, modify(old token) returns
 * -EBADF and leaves the new fd's registration as it was; the new handler keeps getting its events
 * and the old handler is never called. A closed fd whose number was not reused: modify -EBADF,
 * remove 0. A removed token: -ENOENT, also after its number was reused.
 * Conn: a conn closes; a new fd with the same number gets a new conn (also in the same batch of
 * events); the new conn's data and writes go to its own peer, and nothing reaches the old conn's
 * callbacks. Also a plain reactor handler on a number a conn used.
 * Pool: the accept callback closes the accepted fd, puts a BLOCKING socket on the same number and
 * passes it to mio_conn_open, which must make it non-blocking; and many connect/close cycles
 * through a pool with echo, where workers get fds whose numbers closed conns just used: every
 * byte comes back right and every conn closes once.
 * Registry: register / reregister / deregister on a closed number (-EBADF) and on a number reused
 * by a new fd (register succeeds; the new token is reported), as epoll gives them.
 * Every test checks that the process holds as many fds afterwards as before. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>
#include "helpers.h"

#define DEADLINE_MS 5000

static int fd_setup(void **state)
{
    *state = (void *)(intptr_t)mio_test_fd_count();
    return 0;
}

static int fd_teardown(void **state)
{
    int before = (int)(intptr_t)*state, after = mio_test_fd_count();

    if (before != after) {
        fprintf(stderr, "fd count changed: %d before the test, %d after\n", before, after);
        return -1;
    }
    return 0;
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, fd_setup, fd_teardown)

/* Assertions that say what went wrong. */
#define EXPECT_RC(call, want)                                                                      \
    do {                                                                                           \
        int rc_ = (int)(call), want_ = (want);                                                     \
        if (rc_ != want_)                                                                          \
            fail_msg("%s returned %d (%s), want %d (%s)", #call, rc_, mio_strerror(rc_), want_,    \
                     mio_strerror(want_));                                                         \
    } while (0)
#define EXPECT_EQ(got, want, what)                                                                 \
    do {                                                                                           \
        long long got_ = (long long)(got), want_ = (long long)(want);                              \
        if (got_ != want_)                                                                         \
            fail_msg("%s: %lld, want %lld", what, got_, want_);                                    \
    } while (0)

/* Moves fd onto `number` (dup3, keeping close-on-exec) unless it is there already. */
static int move_to(int fd, int number)
{
    assert_true(fd >= 0);
    if (fd == number)
        return fd;
    assert_int_equal(dup3(fd, number, O_CLOEXEC), number);
    close(fd);
    return number;
}

/* A connected non-blocking unix pair whose first end has the number `number`. */
static void pair_at(int number, int sv[2])
{
    assert_int_equal(mio_unix_stream_pair(sv), 0);
    if (sv[1] == number) { /* the kernel picked the number for the other end: swap */
        int t = sv[0];

        sv[0] = sv[1];
        sv[1] = t;
    }
    sv[0] = move_to(sv[0], number);
}

static bool fd_is_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

/* ------------------------------------------------------------------ reactor */

struct hcount {
    int calls, readable, writable;
    mio_token last;
};

static void count_handler(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct hcount *h = arg;

    (void)r;
    h->calls++;
    h->last = token;
    h->readable += mio_event_is_readable(ev);
    h->writable += mio_event_is_writable(ev);
}

/* Runs iterations until `h` was called `want` times (bounded), then a few more. */
static void run_until_calls(mio_reactor *r, struct hcount *h, int want)
{
    unsigned long long until = mio_test_now_ms() + DEADLINE_MS;

    while (h->calls < want && mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 10) >= 0);
    for (int i = 0; i < 3; i++)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
}

/* Token t_old on a socket that is then closed; a new socket on the same number, added anew. */
struct reuse {
    mio_reactor *r;
    int number, old_peer, sv[2];
    mio_token t_old, t_new;
    struct hcount old_h, new_h;
};

static void reuse_setup(struct reuse *u)
{
    int old[2];

    memset(u, 0, sizeof *u);
    assert_int_equal(mio_reactor_new(NULL, &u->r), 0);
    assert_int_equal(mio_unix_stream_pair(old), 0);
    u->number = old[0];
    u->old_peer = old[1];
    assert_int_equal(
        mio_reactor_add(u->r, old[0], MIO_READABLE, count_handler, &u->old_h, &u->t_old), 0);
    assert_int_equal(mio_reactor_run_once(u->r, 0), 0);
    close(old[0]); /* without remove */
    pair_at(u->number, u->sv);
    assert_int_equal(
        mio_reactor_add(u->r, u->sv[0], MIO_READABLE, count_handler, &u->new_h, &u->t_new), 0);
    assert_true(u->t_new != u->t_old);
}

static void reuse_teardown(struct reuse *u)
{
    EXPECT_RC(mio_reactor_remove(u->r, u->t_new), 0);
    mio_reactor_free(u->r);
    close(u->sv[0]);
    close(u->sv[1]);
    close(u->old_peer);
}

/* remove(old token) after the number was reused: 0, and the new fd stays registered. */
static void test_reactor_remove_reused(void **state)
{
    struct reuse u;

    (void)state;
    reuse_setup(&u);
    EXPECT_RC(mio_reactor_remove(u.r, u.t_old), 0);
    EXPECT_RC(mio_reactor_remove(u.r, u.t_old), -ENOENT);
    EXPECT_RC(mio_reactor_modify(u.r, u.t_old, MIO_READABLE), -ENOENT);
    assert_int_equal(send(u.sv[1], "a", 1, 0), 1);
    run_until_calls(u.r, &u.new_h, 1);
    EXPECT_EQ(u.new_h.calls, 1,
              "new owner's handler calls (remove(old token) must leave the new fd registered)");
    EXPECT_EQ(u.new_h.last, u.t_new, "token the new owner's handler got");
    EXPECT_EQ(u.old_h.calls, 0, "old handler calls");
    assert_int_equal(send(u.sv[1], "b", 1, 0), 1);
    run_until_calls(u.r, &u.new_h, 2);
    EXPECT_EQ(u.new_h.calls, 2, "new owner's handler calls");
    EXPECT_EQ(u.old_h.calls, 0,
              "old handler calls (the old token must never get the new fd's events)");
    reuse_teardown(&u);
}

/* modify(old token) after the number was reused: -EBADF, and the new fd's registration (token
 * and interest) is untouched: no WRITABLE event, none for the old handler. */
static void test_reactor_modify_reused(void **state)
{
    struct reuse u;

    (void)state;
    reuse_setup(&u);
    EXPECT_RC(mio_reactor_modify(u.r, u.t_old, MIO_WRITABLE), -EBADF);
    EXPECT_RC(mio_reactor_modify(u.r, u.t_old, MIO_READABLE | MIO_WRITABLE), -EBADF);
    /* a writable socket registered WRITABLE would report at once */
    for (int i = 0; i < 3; i++)
        assert_true(mio_reactor_run_once(u.r, 10) >= 0);
    EXPECT_EQ(u.old_h.calls, 0,
              "old handler calls (the old token must never get the new fd's events)");
    EXPECT_EQ(u.new_h.calls, 0,
              "new owner's handler calls before its peer wrote (the old token's modify made it "
              "WRITABLE)");
    assert_int_equal(send(u.sv[1], "a", 1, 0), 1);
    run_until_calls(u.r, &u.new_h, 1);
    EXPECT_EQ(u.new_h.calls, 1, "new owner's handler calls");
    EXPECT_EQ(u.new_h.last, u.t_new, "token the new owner's handler got");
    EXPECT_EQ(u.new_h.writable, 0,
              "WRITABLE events to the new owner (the old token's modify reached its registration)");
    EXPECT_EQ(u.old_h.calls, 0,
              "old handler calls (the old token must never get the new fd's events)");
    /* the old token is released by remove all the same, still without touching the new fd */
    EXPECT_RC(mio_reactor_remove(u.r, u.t_old), 0);
    EXPECT_RC(mio_reactor_modify(u.r, u.t_old, MIO_WRITABLE), -ENOENT);
    assert_int_equal(send(u.sv[1], "b", 1, 0), 1);
    run_until_calls(u.r, &u.new_h, 2);
    EXPECT_EQ(u.new_h.calls, 2, "new owner's handler calls");
    EXPECT_EQ(u.new_h.writable, 0,
              "WRITABLE events to the new owner (the old token's modify reached its registration)");
    EXPECT_EQ(u.old_h.calls, 0,
              "old handler calls (the old token must never get the new fd's events)");
    reuse_teardown(&u);
}

/* A closed fd whose number nobody reused: modify -EBADF, remove 0, then -ENOENT. */
static void test_reactor_closed_not_reused(void **state)
{
    mio_reactor *r;
    struct hcount h = {0};
    mio_token t;
    int fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    assert_int_equal(mio_reactor_add(r, fd, MIO_READABLE, count_handler, &h, &t), 0);
    close(fd);
    assert_true(fd_is_closed(fd));
    EXPECT_RC(mio_reactor_modify(r, t, MIO_WRITABLE), -EBADF);
    EXPECT_RC(mio_reactor_modify(r, t, MIO_READABLE), -EBADF);
    EXPECT_RC(mio_reactor_remove(r, t), 0);
    EXPECT_RC(mio_reactor_remove(r, t), -ENOENT);
    EXPECT_RC(mio_reactor_modify(r, t, MIO_READABLE), -ENOENT);
    assert_int_equal(mio_reactor_run_once(r, 10), 0);
    EXPECT_EQ(h.calls, 0, "handler calls of the closed fd");
    mio_reactor_free(r);
}

/* Removed first, then closed, then the number reused: the stale token is -ENOENT for both calls
 * and the new owner is untouched. */
static void test_reactor_removed_then_reused(void **state)
{
    struct reuse u;

    (void)state;
    memset(&u, 0, sizeof u);
    assert_int_equal(mio_reactor_new(NULL, &u.r), 0);
    {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(mio_reactor_add(u.r, fd, MIO_READABLE, count_handler, &u.old_h, &u.t_old),
                         0);
        EXPECT_RC(mio_reactor_remove(u.r, u.t_old), 0);
        u.number = fd;
        close(fd);
    }
    pair_at(u.number, u.sv);
    assert_int_equal(mio_reactor_add(u.r, u.sv[0], MIO_READABLE, count_handler, &u.new_h, &u.t_new),
                     0);
    EXPECT_RC(mio_reactor_modify(u.r, u.t_old, MIO_WRITABLE), -ENOENT);
    EXPECT_RC(mio_reactor_remove(u.r, u.t_old), -ENOENT);
    assert_int_equal(send(u.sv[1], "a", 1, 0), 1);
    run_until_calls(u.r, &u.new_h, 1);
    EXPECT_EQ(u.new_h.calls, 1, "new owner's handler calls");
    EXPECT_EQ(u.new_h.writable, 0,
              "WRITABLE events to the new owner (the old token's modify reached its registration)");
    EXPECT_EQ(u.old_h.calls, 0,
              "old handler calls (the old token must never get the new fd's events)");
    u.old_peer = -1;
    EXPECT_RC(mio_reactor_remove(u.r, u.t_new), 0);
    mio_reactor_free(u.r);
    close(u.sv[0]);
    close(u.sv[1]);
}

/* ------------------------------------------------------------------ conn */

struct rconn {
    mio_conn *c;
    int fd, peer;
    int closes, reason, reads_after_close;
    bool closed_by_user;
    char got[256];
    size_t len;
    /* batch test */
    struct rconn *close_this;        /* on first data: close this conn */
    void (*on_data)(struct rconn *); /* on first data: run this */
    bool fired;
};

static void r_on_read(mio_conn *c, const void *data, size_t n, void *arg)
{
    struct rconn *t = arg;

    (void)c;
    if (t->closed_by_user || t->closes > 0)
        t->reads_after_close++;
    if (n == 0)
        return;
    if (t->len + n <= sizeof t->got) {
        memcpy(t->got + t->len, data, n);
        t->len += n;
    }
    if (!t->fired) {
        t->fired = true;
        if (t->close_this != NULL && t->close_this->closes == 0) {
            t->close_this->closed_by_user = true;
            mio_conn_close(t->close_this->c);
        }
        if (t->on_data != NULL)
            t->on_data(t);
    }
}

static void r_on_close(mio_conn *c, int reason, void *arg)
{
    struct rconn *t = arg;

    (void)c;
    t->closes++;
    t->reason = reason;
}

static const mio_conn_ops r_ops = {r_on_read, r_on_close, NULL};

static mio_reactor *conn_r;

static void rconn_open_on(struct rconn *t, int sv[2])
{
    memset(t, 0, sizeof *t);
    t->fd = sv[0];
    t->peer = sv[1];
    assert_int_equal(mio_conn_open(conn_r, sv[0], &r_ops, t, &t->c), 0);
    assert_int_equal(mio_conn_fd(t->c), sv[0]);
}

static void run_until(bool (*done)(void *), void *arg)
{
    unsigned long long until = mio_test_now_ms() + DEADLINE_MS;

    while (!done(arg) && mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(conn_r, 10) >= 0);
}

static bool is_closed(void *arg)
{
    return ((struct rconn *)arg)->closes > 0;
}

struct want_len {
    struct rconn *t;
    size_t len;
};

static bool has_len(void *arg)
{
    struct want_len *w = arg;

    return w->t->len >= w->len;
}

/* Reads exactly `len` bytes from a blocking-enough peer (polls with a deadline). */
static void peer_expect(int peer, const char *want, size_t len)
{
    char buf[256];
    size_t got = 0;
    unsigned long long until = mio_test_now_ms() + DEADLINE_MS;

    while (got < len && mio_test_now_ms() < until) {
        ssize_t n = recv(peer, buf + got, len - got, MSG_DONTWAIT);

        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break;
        else
            usleep(1000);
    }
    assert_int_equal(got, len);
    assert_memory_equal(buf, want, len);
}

/* The peer of a closed conn: no data, then EOF (or a reset, for data it left unread). */
static void peer_expect_close_only(int peer)
{
    char c;
    ssize_t n = recv(peer, &c, 1, MSG_DONTWAIT);

    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
}

static int conn_setup(void **state)
{
    fd_setup(state);
    return mio_reactor_new(NULL, &conn_r) == 0 ? 0 : -1;
}

static int conn_teardown(void **state)
{
    mio_reactor_free(conn_r);
    conn_r = NULL;
    return fd_teardown(state);
}

/* A conn closes (with unread data), a new socket gets its number and a new conn; the new conn's
 * data and writes go to its own peer, nothing reaches the old conn or its peer. 50 cycles on one
 * reactor (each conn's arg stays valid until its on_close). */
static void test_conn_reused_cycles(void **state)
{
    enum { CYCLES = 50 };
    static struct rconn conns[CYCLES + 1];
    int sv[2], number;

    (void)state;
    memset(conns, 0, sizeof conns);
    assert_int_equal(mio_unix_stream_pair(sv), 0);
    number = sv[0];
    rconn_open_on(&conns[0], sv);
    for (int i = 0; i < CYCLES; i++) {
        struct rconn *old = &conns[i], *cur = &conns[i + 1];
        char msg[32], reply[32];
        int n = snprintf(msg, sizeof msg, "to-new-%d", i);
        int m = snprintf(reply, sizeof reply, "from-new-%d", i);
        struct want_len w = {cur, (size_t)n};
        size_t old_len = old->len;

        /* the old conn has unread data when it closes */
        assert_int_equal(send(old->peer, "stale", 5, 0), 5);
        old->closed_by_user = true;
        mio_conn_close(old->c);
        run_until(is_closed, old);
        assert_int_equal(old->closes, 1);
        assert_int_equal(old->reason, 0);
        assert_true(fd_is_closed(number));

        pair_at(number, sv);
        rconn_open_on(cur, sv);
        assert_int_equal(mio_conn_fd(cur->c), number);
        assert_int_equal(send(cur->peer, msg, (size_t)n, 0), n);
        w.t = cur;
        run_until(has_len, &w);
        assert_int_equal(cur->len, (size_t)n);
        assert_memory_equal(cur->got, msg, (size_t)n);
        assert_int_equal(mio_conn_write(cur->c, reply, (size_t)m), 0);
        peer_expect(cur->peer, reply, (size_t)m);
        /* nothing reached the old conn or its peer */
        assert_int_equal(old->closes, 1);
        assert_int_equal(old->reads_after_close, 0);
        assert_int_equal(old->len, old_len);
        peer_expect_close_only(old->peer);
        close(old->peer);
    }
    conns[CYCLES].closed_by_user = true;
    mio_conn_close(conns[CYCLES].c);
    run_until(is_closed, &conns[CYCLES]);
    assert_int_equal(conns[CYCLES].closes, 1);
    close(conns[CYCLES].peer);
}

/* A plain reactor handler on the number a conn just used: its events go to it alone. */
static void test_conn_number_to_handler(void **state)
{
    struct rconn old;
    struct hcount h = {0};
    int sv[2], efd;
    mio_token t;

    (void)state;
    assert_int_equal(mio_unix_stream_pair(sv), 0);
    rconn_open_on(&old, sv);
    assert_int_equal(send(old.peer, "x", 1, 0), 1);
    old.closed_by_user = true;
    mio_conn_close(old.c);
    run_until(is_closed, &old);
    assert_int_equal(old.closes, 1);
    efd = move_to(eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC), old.fd);
    assert_int_equal(mio_reactor_add(conn_r, efd, MIO_READABLE, count_handler, &h, &t), 0);
    run_until_calls(conn_r, &h, 1);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.last, t);
    assert_int_equal(old.closes, 1);
    assert_int_equal(old.reads_after_close, 0);
    assert_int_equal(mio_reactor_remove(conn_r, t), 0);
    close(efd);
    close(old.peer);
}

/* Reuse inside one batch of events. Peers write in the order X, Y, A so that (epoll reports in
 * readiness order) the batch is usually X, Y, A: X's on_read closes A (its on_close runs once X's
 * callback returned, closing A's fd); Y's on_read puts a new socket on A's number and opens conn
 * B on it (its peer wrote already). A's event, harvested earlier in the batch, must reach neither
 * A (closed) nor B (a new owner), and B's own data arrives by itself. */
static struct rconn bx, by, ba, bb;
static int bb_peer_data_len;

static void open_b_on_a_number(struct rconn *y)
{
    int sv[2];

    (void)y;
    if (ba.closes == 0 || !fd_is_closed(ba.fd))
        return; /* A's fd is not closed yet (another order): B is opened later */
    pair_at(ba.fd, sv);
    bb_peer_data_len = (int)send(sv[1], "to-B", 4, 0);
    rconn_open_on(&bb, sv);
}

static bool bb_got_data(void *arg)
{
    (void)arg;
    return bb.c != NULL && bb.len >= 4;
}

static void test_conn_reused_in_batch(void **state)
{
    int sx[2], sy[2], sa[2];

    (void)state;
    memset(&bb, 0, sizeof bb);
    assert_int_equal(mio_unix_stream_pair(sx), 0);
    assert_int_equal(mio_unix_stream_pair(sy), 0);
    assert_int_equal(mio_unix_stream_pair(sa), 0);
    rconn_open_on(&bx, sx);
    rconn_open_on(&by, sy);
    rconn_open_on(&ba, sa);
    bx.close_this = &ba;
    by.on_data = open_b_on_a_number;
    assert_int_equal(mio_reactor_run_once(conn_r, 0), 0);
    assert_int_equal(send(bx.peer, "x", 1, 0), 1);
    assert_int_equal(send(by.peer, "y", 1, 0), 1);
    assert_int_equal(send(ba.peer, "to-A", 4, 0), 4);
    assert_true(mio_reactor_run_once(conn_r, 1000) >= 1);
    if (bb.c == NULL) { /* another batch order: reuse the number now */
        print_message("note: the batch order did not allow reuse inside it; reusing after\n");
        run_until(is_closed, &ba);
        open_b_on_a_number(&by);
    }
    assert_non_null(bb.c);
    assert_int_equal(bb_peer_data_len, 4);
    run_until(bb_got_data, NULL);
    assert_int_equal(bb.len, 4);
    assert_memory_equal(bb.got, "to-B", 4);
    assert_int_equal(ba.closes, 1);
    assert_int_equal(ba.reason, 0);
    assert_int_equal(ba.reads_after_close, 0);
    assert_true(ba.len == 0 || (ba.len == 4 && memcmp(ba.got, "to-A", 4) == 0));
    assert_int_equal(mio_conn_write(bb.c, "from-B", 6), 0);
    peer_expect(bb.peer, "from-B", 6);
    peer_expect_close_only(ba.peer);
    for (int i = 0; i < 3; i++)
        assert_true(mio_reactor_run_once(conn_r, 5) >= 0);
    assert_int_equal(bb.len, 4);
    assert_int_equal(bb.closes, 0);
    /* close the rest */
    bx.closed_by_user = by.closed_by_user = bb.closed_by_user = true;
    mio_conn_close(bx.c);
    mio_conn_close(by.c);
    mio_conn_close(bb.c);
    run_until(is_closed, &bb);
    run_until(is_closed, &bx);
    run_until(is_closed, &by);
    assert_int_equal(bx.closes + by.closes + bb.closes, 3);
    close(bx.peer);
    close(by.peer);
    close(ba.peer);
    close(bb.peer);
}

/* ------------------------------------------------------------------ pool */

/* The accept callback swaps the accepted fd for a blocking socket on the same number. */
struct swap {
    atomic_bool done;
    atomic_int peer; /* the socketpair end the test thread talks to */
    atomic_int closes;
    int number, open_rc;
    bool accepted_nb_cloexec, same_number, was_blocking, nonblocking_after;
    char err[256];
};

static void swap_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
    else
        (void)mio_conn_write(c, data, len);
}

static void swap_close(mio_conn *c, int reason, void *arg)
{
    struct swap *s = arg;

    (void)c;
    (void)reason;
    atomic_fetch_add(&s->closes, 1);
}

static const mio_conn_ops swap_ops = {swap_read, swap_close, NULL};

static void swap_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    struct swap *s = arg;
    int sv[2], mine, other, fl;

    (void)peer;
    if (s->number != 0) { /* only the first connection */
        close(fd);
        return;
    }
    s->number = fd;
    s->accepted_nb_cloexec = mio_test_fd_is_nb_cloexec(fd);
    close(fd);
    /* blocking, no SOCK_NONBLOCK: the number is free again, so one end usually gets it */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(s->err, sizeof s->err, "socketpair: %s", strerror(errno));
        atomic_store(&s->done, true);
        return;
    }
    mine = sv[0];
    other = sv[1];
    if (sv[1] == fd) {
        mine = sv[1];
        other = sv[0];
    }
    if (mine != fd) {
        if (dup3(mine, fd, O_CLOEXEC) != fd) {
            snprintf(s->err, sizeof s->err, "dup3: %s", strerror(errno));
            close(sv[0]);
            close(sv[1]);
            atomic_store(&s->done, true);
            return;
        }
        close(mine);
        mine = fd;
    }
    fl = fcntl(mine, F_GETFL);
    s->same_number = mine == s->number;
    s->was_blocking = fl != -1 && !(fl & O_NONBLOCK);
    s->open_rc = mio_conn_open(w, mine, &swap_ops, s, NULL);
    if (s->open_rc != 0) {
        close(mine);
    } else {
        fl = fcntl(mine, F_GETFL);
        s->nonblocking_after = fl != -1 && (fl & O_NONBLOCK);
    }
    atomic_store(&s->peer, other);
    atomic_store(&s->done, true);
}

static mio_pool *start_pool(unsigned workers, mio_accept_fn fn, void *arg, mio_addr *addr)
{
    mio_pool_opts o = {.workers = workers};
    mio_pool *pool;

    assert_int_equal(mio_pool_new(&o, &pool), 0);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", addr), 0);
    assert_int_equal(mio_pool_listen(pool, addr, fn, arg), 0);
    assert_int_equal(mio_pool_local_addr(pool, 0, addr), 0);
    assert_int_equal(mio_pool_start(pool), 0);
    return pool;
}

static int connect_blocking(const mio_addr *addr)
{
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(connect(fd, &addr->u.sa, addr->len), 0);
    return fd;
}

static void test_pool_blocking_fd_on_accepted_number(void **state)
{
    static struct swap s;
    mio_addr addr;
    mio_pool *pool;
    int cli, peer, open_rc;
    unsigned long long until;
    char buf[8];
    struct timeval tv = {.tv_sec = 5};
    bool nb_after;

    (void)state;
    memset(&s, 0, sizeof s);
    atomic_store(&s.peer, -1);
    pool = start_pool(1, swap_accept, &s, &addr);
    cli = connect_blocking(&addr);
    until = mio_test_now_ms() + DEADLINE_MS;
    while (!atomic_load(&s.done) && mio_test_now_ms() < until)
        usleep(1000);
    assert_true(atomic_load(&s.done));
    if (s.err[0] != '\0')
        fail_msg("accept callback: %s", s.err);
    assert_true(s.accepted_nb_cloexec);
    assert_true(s.same_number);
    assert_true(s.was_blocking);
    open_rc = s.open_rc;
    nb_after = s.nonblocking_after;
    peer = atomic_load(&s.peer);
    /* the client's own server end was closed by the callback */
    assert_int_equal(recv(cli, buf, sizeof buf, 0), 0);
    close(cli);
    if (open_rc == 0) {
        /* The conn works on the swapped-in socket: echo, then EOF closes it. */
        assert_int_equal(setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
        assert_int_equal(send(peer, "ping", 4, 0), 4);
        assert_int_equal(recv(peer, buf, 4, MSG_WAITALL), 4);
        assert_memory_equal(buf, "ping", 4);
        assert_int_equal(shutdown(peer, SHUT_WR), 0);
        until = mio_test_now_ms() + DEADLINE_MS;
        while (atomic_load(&s.closes) == 0 && mio_test_now_ms() < until)
            usleep(1000);
    }
    assert_int_equal(mio_pool_stop(pool, 1000), 0);
    mio_pool_free(pool);
    close(peer);
    assert_int_equal(open_rc, 0);
    assert_int_equal(atomic_load(&s.closes), 1);
    if (!nb_after)
        fail_msg("mio_conn_open left the blocking fd %d (swapped in on the accepted number) "
                 "blocking: \"made non-blocking if it is not\" must hold for any fd",
                 s.number);
}

/* Many connect/echo/close cycles through a 2-worker pool: the workers keep getting fds whose
 * numbers closed conns just used. */
#define CYCLE_MAX 4096
#define CYCLES 400
struct cyc {
    atomic_int opened, closed, bad_close, bad_fd, reused;
    atomic_int closes[CYCLE_MAX];
    atomic_uchar seen[65536]; /* fd numbers the accept callback got */
};
static struct cyc cyc;

static void cyc_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
    else
        (void)mio_conn_write(c, data, len);
}

static void cyc_close(mio_conn *c, int reason, void *arg)
{
    atomic_int *n = arg;

    (void)c;
    (void)reason;
    if (atomic_fetch_add(n, 1) != 0)
        atomic_fetch_add(&cyc.bad_close, 1);
    atomic_fetch_add(&cyc.closed, 1);
}

static const mio_conn_ops cyc_ops = {cyc_read, cyc_close, NULL};

static void cyc_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    int i = atomic_fetch_add(&cyc.opened, 1);

    (void)peer;
    (void)arg;
    if (!mio_test_fd_is_nb_cloexec(fd))
        atomic_fetch_add(&cyc.bad_fd, 1);
    if (fd >= 0 && fd < 65536 && atomic_exchange(&cyc.seen[fd], 1) != 0)
        atomic_fetch_add(&cyc.reused, 1);
    if (i >= CYCLE_MAX || mio_conn_open(w, fd, &cyc_ops, &cyc.closes[i], NULL) != 0) {
        atomic_fetch_add(&cyc.bad_fd, 1);
        close(fd);
    }
}

/* Sends len pattern bytes (seeded by `seed`) and checks the echo. */
/* recv on a socket with SO_RCVTIMEO: such a call is not restarted after an interruption, and the
 * kernel interrupts this thread once shortly after it freed an io_uring reactor it ran (see
 * mio_reactor_free): retried, as after any signal. */
static ssize_t recv_timed(int fd, void *buf, size_t len)
{
    ssize_t n;

    do
        n = recv(fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    return n;
}

static bool echo_check(int fd, unsigned seed, size_t len)
{
    unsigned char out[4096] = {0}, in[4096];
    size_t got = 0;

    if (len > sizeof out)
        return false;
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)((seed * 2654435761u + i * 40503u) >> 7);
    if (send(fd, out, len, MSG_NOSIGNAL) != (ssize_t)len)
        return false;
    while (got < len) {
        ssize_t n = recv_timed(fd, in + got, len - got);

        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return memcmp(in, out, len) == 0;
}

static void test_pool_reuse_cycles(void **state)
{
    mio_addr addr;
    mio_pool *pool;
    int ok = 0, clients = 0;
    unsigned long long until;

    (void)state;
    memset(&cyc, 0, sizeof cyc);
    pool = start_pool(2, cyc_accept, NULL, &addr);
    for (int i = 0; i < CYCLES; i++) {
        /* mostly one at a time (the freed number comes straight back), sometimes three */
        int k = i % 10 == 0 ? 3 : 1, fds[3];

        for (int j = 0; j < k; j++) {
            fds[j] = connect_blocking(&addr);
            clients++;
        }
        for (int j = 0; j < k; j++)
            ok += echo_check(fds[j], (unsigned)(i * 3 + j), 100 + (size_t)((i * 37 + j) % 3900));
        for (int j = 0; j < k; j++) {
            char c;

            /* the client's FIN closes the server conn; wait for its close so the number frees */
            shutdown(fds[j], SHUT_WR);
            assert_int_equal(recv_timed(fds[j], &c, 1), 0);
            close(fds[j]);
        }
    }
    until = mio_test_now_ms() + DEADLINE_MS;
    while (atomic_load(&cyc.closed) < clients && mio_test_now_ms() < until)
        usleep(1000);
    assert_int_equal(mio_pool_stop(pool, 1000), 0);
    mio_pool_free(pool);
    assert_int_equal(ok, clients);
    assert_int_equal(atomic_load(&cyc.opened), clients);
    assert_int_equal(atomic_load(&cyc.closed), clients);
    assert_int_equal(atomic_load(&cyc.bad_close), 0);
    assert_int_equal(atomic_load(&cyc.bad_fd), 0);
    /* the point of the test: numbers were in fact reused */
    assert_true(atomic_load(&cyc.reused) > CYCLES / 2);
}

/* ------------------------------------------------------------------ registry */

static int poll_tokens(mio_poll *p, mio_events *ev, mio_token *out, int max)
{
    int n = 0, k;
    unsigned long long until = mio_test_now_ms() + 200;

    /* a short window: whatever is ready is reported at once */
    while (mio_test_now_ms() < until) {
        k = mio_poll_poll(p, ev, 20);
        assert_true(k >= 0 || k == -EINTR);
        MIO_EVENTS_FOREACH(const mio_event *e, ev)
        {
            if (n < max)
                out[n] = mio_event_token(e);
            n++;
        }
        if (n > 0 && k == 0)
            break;
    }
    return n;
}

static void test_registry_closed_and_reused(void **state)
{
    mio_poll *p;
    mio_events *ev;
    mio_registry *reg;
    mio_token got[8];
    int e1, e2, num, n;
    uint64_t one = 1;

    (void)state;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(16, &ev), 0);
    reg = mio_poll_registry(p);

    e1 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(e1 >= 0);
    num = e1;
    assert_int_equal(mio_registry_register(reg, e1, 1, MIO_READABLE), 0);
    close(e1);
    /* closed, number free: the fd is bad */
    assert_int_equal(mio_registry_deregister(reg, num), -EBADF);
    assert_int_equal(mio_registry_reregister(reg, num, 1, MIO_READABLE), -EBADF);
    assert_int_equal(mio_registry_register(reg, num, 1, MIO_READABLE), -EBADF);

    /* reused: the closed file's registration went with it, so the new fd registers afresh */
    e2 = move_to(eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC), num);
    assert_int_equal(mio_registry_reregister(reg, e2, 2, MIO_READABLE), -ENOENT);
    assert_int_equal(mio_registry_deregister(reg, e2), -ENOENT);
    assert_int_equal(mio_registry_register(reg, e2, 2, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(reg, e2, 2, MIO_READABLE), -EEXIST);
    n = poll_tokens(p, ev, got, 8);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 2);
    assert_int_equal(mio_registry_reregister(reg, e2, 3, MIO_READABLE), 0);
    assert_int_equal(write(e2, &one, sizeof one), (ssize_t)sizeof one);
    n = poll_tokens(p, ev, got, 8);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 3);
    assert_int_equal(mio_registry_deregister(reg, e2), 0);
    assert_int_equal(mio_registry_deregister(reg, e2), -ENOENT);
    assert_int_equal(mio_registry_reregister(reg, e2, 4, MIO_READABLE), -ENOENT);
    assert_int_equal(write(e2, &one, sizeof one), (ssize_t)sizeof one);
    assert_int_equal(poll_tokens(p, ev, got, 8), 0);
    close(e2);
    assert_int_equal(mio_registry_deregister(reg, num), -EBADF);

    mio_events_free(ev);
    mio_poll_free(p);
}

/* A dup keeps the closed fd's file, and with it epoll's registration (epoll keys on file and
 * number): a new fd on the same number still registers (0, not -EEXIST) and gets its own token,
 * while the old token keeps coming from the dup'd file. deregister by number reaches only the
 * fd the number names now. This is why the reactor needs generation tokens. */
static void test_registry_reused_while_dup_alive(void **state)
{
    mio_poll *p;
    mio_events *ev;
    mio_registry *reg;
    mio_token got[8];
    int e1, d, e2, num, n;
    bool saw5 = false, saw4 = false;
    uint64_t one = 1;

    (void)state;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_events_new(16, &ev), 0);
    reg = mio_poll_registry(p);
    e1 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(e1 >= 0);
    num = e1;
    assert_int_equal(mio_registry_register(reg, e1, 4, MIO_READABLE), 0);
    d = dup(e1);
    assert_true(d >= 0);
    close(e1);
    e2 = move_to(eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC), num);
    assert_int_equal(mio_registry_register(reg, e2, 5, MIO_READABLE), 0);
    assert_int_equal(write(d, &one, sizeof one), (ssize_t)sizeof one);
    n = poll_tokens(p, ev, got, 8);
    for (int i = 0; i < n && i < 8; i++) {
        saw4 |= got[i] == 4;
        saw5 |= got[i] == 5;
    }
    assert_true(saw5);
    assert_true(saw4);
    assert_int_equal(mio_registry_deregister(reg, e2), 0);
    assert_int_equal(write(e2, &one, sizeof one), (ssize_t)sizeof one);
    n = poll_tokens(p, ev, got, 8);
    for (int i = 0; i < n && i < 8; i++)
        assert_int_not_equal(got[i], 5);
    close(d);
    close(e2);
    mio_events_free(ev);
    mio_poll_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_reactor_remove_reused),
        TEST(test_reactor_modify_reused),
        TEST(test_reactor_closed_not_reused),
        TEST(test_reactor_removed_then_reused),
        cmocka_unit_test_setup_teardown(test_conn_reused_cycles, conn_setup, conn_teardown),
        cmocka_unit_test_setup_teardown(test_conn_number_to_handler, conn_setup, conn_teardown),
        cmocka_unit_test_setup_teardown(test_conn_reused_in_batch, conn_setup, conn_teardown),
        TEST(test_pool_blocking_fd_on_accepted_number),
        TEST(test_pool_reuse_cycles),
        TEST(test_registry_closed_and_reused),
        TEST(test_registry_reused_while_dup_alive),
    };

    mio_test_watchdog(250);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
