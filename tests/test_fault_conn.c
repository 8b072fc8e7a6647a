/* Fault injection into mio_conn: recv, send and sendmsg errors on one connection close exactly that
 * connection with the errno as on_close's reason (and mio_conn_write's result) while a second
 * connection keeps echoing every byte; EINTR is retried, EAGAIN queues and flushes later;
 * epoll_ctl failure on the WRITABLE change and allocation failure at every site (conn, write-queue
 * chunk, slab, idle timer) close cleanly. Reactor driven by this thread; peers are blocking
 * loopback TCP sockets. Run on io_uring too (tests/uring/): there a conn receives on the ring, so
 * the recv tests fail its receives' results instead (FAULT_RING_RECV_RES), and the send tests
 * also run with the echo sent at the settle point, as a send on the ring (FAULT_RING_SEND_RES,
 * FAULT_RING_SEND_SHORT); explicit flushes and writes made outside callbacks use send() and
 * sendmsg() and are failed the same way on both backends. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>

#include "helpers.h"
#include "fault.h"

static int lfd = -1;
static mio_addr laddr;
static mio_reactor *r;

struct econn {
    mio_conn *c;
    int srv;          /* the conn's fd */
    int cli;          /* our blocking peer */
    int closes;       /* on_close calls */
    int reason;       /* on_close reason */
    int write_err;    /* first failing mio_conn_write / mio_conn_flush result */
    size_t echoed;    /* bytes handed back to mio_conn_write successfully */
    bool staged;      /* echo without mio_conn_flush: the bytes go at the settle point (on the
                         io_uring backend as a send on the ring) */
};

static void e_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct econn *e = arg;
    int rc;

    if (len == 0) {
        mio_conn_close(c);
        return;
    }
    /* Written inside on_read, the bytes would wait for the settle point; the explicit flush sends
     * them now, so that a failing send surfaces in this call (the send/sendmsg faults below). */
    rc = mio_conn_write(c, data, len);
    if (rc == 0 && !e->staged)
        rc = mio_conn_flush(c);
    if (rc < 0 && e->write_err == 0)
        e->write_err = rc;
    if (rc == 0)
        e->echoed += len;
}

static void e_on_close(mio_conn *c, int reason, void *arg)
{
    struct econn *e = arg;

    (void)c;
    e->closes++;
    e->reason = reason;
    e->c = NULL;
}

static const mio_conn_ops e_ops = {e_on_read, e_on_close, NULL};

static int setup(void **state)
{
    (void)state;
    fault_begin();
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &laddr), 0);
    lfd = mio_tcp_listener_bind(&laddr);
    assert_true(lfd >= 0);
    assert_int_equal(mio_socket_local_addr(lfd, &laddr), 0);
    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fault_disarm_all();
    mio_reactor_free(r);
    close(lfd);
    fault_end();
    return 0;
}

/* A connected pair: cli blocking (with a receive timeout), srv non-blocking. */
static void make_pair(int *cli, int *srv)
{
    struct timeval tv = {.tv_sec = 20};
    unsigned long long until = mio_test_now_ms() + 10000;
    int c = mio_tcp_stream_connect(&laddr), s;

    assert_true(c >= 0);
    do {
        s = mio_tcp_listener_accept(lfd, NULL);
        if (s == -EAGAIN)
            usleep(1000);
    } while (s == -EAGAIN && mio_test_now_ms() < until);
    assert_true(s >= 0);
    assert_int_equal(mio_set_nonblocking(c, false), 0);
    assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    *cli = c;
    *srv = s;
}

static void econn_open(struct econn *e)
{
    memset(e, 0, sizeof *e);
    make_pair(&e->cli, &e->srv);
    assert_int_equal(mio_conn_open(r, e->srv, &e_ops, e, &e->c), 0);
}

static void econn_done(struct econn *e)
{
    if (e->c != NULL) {
        mio_conn_close(e->c);
        for (int i = 0; i < 1000 && e->closes == 0; i++)
            assert_true(mio_reactor_run_once(r, 10) >= 0);
    }
    assert_int_equal(e->closes, 1);
    close(e->cli);
}

static void run_until_closed(struct econn *e)
{
    unsigned long long until = mio_test_now_ms() + 20000;

    while (e->closes == 0 && mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(r, 10) >= 0);
    assert_int_equal(e->closes, 1);
}

/* Sends len pattern bytes on e and reads them back, running the reactor in between. */
static void echo_roundtrip(struct econn *e, size_t len, unsigned seed)
{
    unsigned char *out = malloc(len), *in = malloc(len);
    size_t got = 0;
    unsigned long long until = mio_test_now_ms() + 20000;

    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)(seed + i * 7 + (i >> 8));
    for (size_t sent = 0; sent < len;) {
        ssize_t n = send(e->cli, out + sent, len - sent, MSG_NOSIGNAL);

        assert_true(n > 0 || (n < 0 && errno == EINTR)); /* see assert_peer_closed */
        sent += n > 0 ? (size_t)n : 0;
    }
    while (got < len && mio_test_now_ms() < until) {
        ssize_t n;

        assert_true(mio_reactor_run_once(r, 5) >= 0);
        n = recv(e->cli, in + got, len - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, len);
    assert_memory_equal(in, out, len);
    free(out);
    free(in);
}

/* Reads the echo of n bytes (running the reactor in between) and compares it with want. */
static void echo_expect(struct econn *e, const char *want, size_t n)
{
    char b[64];
    size_t got = 0;
    unsigned long long until = mio_test_now_ms() + 20000;

    assert_true(n <= sizeof b);
    while (got < n && mio_test_now_ms() < until) {
        ssize_t k;

        assert_true(mio_reactor_run_once(r, 5) >= 0);
        k = recv(e->cli, b + got, n - got, MSG_DONTWAIT);
        if (k > 0)
            got += (size_t)k;
    }
    assert_int_equal(got, n);
    assert_memory_equal(b, want, n);
}

/* Runs the reactor until site s has injected `hits` faults. */
static void run_until_hits(enum fault_site s, long hits)
{
    for (int i = 0; i < 2000 && fault_hits(s) < hits; i++)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    assert_int_equal(fault_hits(s), hits);
}

static bool on_ring(void)
{
    return mio_reactor_backend(r) == MIO_BACKEND_IO_URING;
}

/* The peer of a conn closed by the server sees EOF or a reset, never a hang. (A blocking call
 * of this thread may fail with EINTR on the io_uring backend: the kernel's teardown of a ring
 * interrupts the threads that entered it, see internal/uring.h.) */
static void assert_peer_closed(int cli)
{
    char b[64];
    ssize_t n;

    do
        n = recv(cli, b, sizeof b, 0);
    while (n > 0 || (n < 0 && errno == EINTR));
    assert_true(n == 0 || (n == -1 && errno == ECONNRESET));
}

/* ---- recv errors: that conn closes with the errno, the other one is untouched ---- */

/* On the ring, has e's next receive prepared now: a multishot receive stays armed across
 * messages, so a fault decided when a receive is prepared needs a fresh one. Reading off cancels
 * the armed receive (its end comes back within an iteration or two), on again arms the next. */
static void ring_rearm(struct econn *e)
{
    assert_int_equal(mio_conn_set_reading(e->c, false), 0);
    for (int i = 0; i < 5; i++)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    assert_int_equal(mio_conn_set_reading(e->c, true), 0);
}

/* On the io_uring backend a conn receives on the ring: the fault is the result of its next
 * receive (ring_rearm). -ENOBUFS is not among them: there it means the provided
 * buffers ran out, and the receive is tried again (recv_transient_ring). */
static void recv_errors_ring(void)
{
    static const int errs[] = {ECONNRESET, ENOMEM, ENOTCONN, ETIMEDOUT, EPIPE};
    struct econn a, b;

    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        econn_open(&a);
        econn_open(&b);
        echo_roundtrip(&a, 1000, 1);
        fault_arm(FAULT_RING_RECV_RES, 0, 1, errs[i], a.srv);
        ring_rearm(&a);
        assert_int_equal(fault_hits(FAULT_RING_RECV_RES), 1);
        assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
        run_until_closed(&a);
        assert_int_equal(fault_hits(FAULT_RING_RECV_RES), 1);
        assert_false(fault_ring_due_for(MIO__RING_RECV, a.srv)); /* the conn saw the result */
        assert_int_equal(a.reason, -errs[i]);
        assert_peer_closed(a.cli);
        echo_roundtrip(&b, 200000, 2);
        fault_disarm_all();
        econn_done(&a);
        econn_done(&b);
    }
}

static void test_recv_errors(void **state)
{
    static const int errs[] = {ECONNRESET, ENOMEM, ENOTCONN, ETIMEDOUT, ENOBUFS};
    struct econn a, b;

    (void)state;
    if (on_ring()) {
        recv_errors_ring();
        return;
    }
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        econn_open(&a);
        econn_open(&b);
        echo_roundtrip(&a, 1000, 1);
        fault_arm(FAULT_RECV, 0, 1, errs[i], a.srv);
        assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
        run_until_closed(&a);
        assert_int_equal(a.reason, -errs[i]);
        assert_peer_closed(a.cli);
        echo_roundtrip(&b, 200000, 2);
        fault_disarm_all();
        econn_done(&a);
        econn_done(&b);
    }
}

/* On the ring, -EINTR, -EAGAIN and -ENOBUFS as a receive's result arm the receive again: the
 * conn stays, and bytes that wait in the socket meanwhile ("abcd", sent once the first faulted
 * receive is prepared, "efgh" after the second) arrive in order, with no further bytes to wake
 * it. */
static void recv_transient_ring(void)
{
    static const int errs[] = {EINTR, EAGAIN, ENOBUFS};
    struct econn a;

    econn_open(&a);
    echo_roundtrip(&a, 5000, 3);
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_RING_RECV_RES, 0, 2, errs[i], a.srv);
        ring_rearm(&a);
        assert_int_equal(fault_hits(FAULT_RING_RECV_RES), 1);
        assert_int_equal(send(a.cli, "abcd", 4, MSG_NOSIGNAL), 4);
        run_until_hits(FAULT_RING_RECV_RES, 2);
        assert_int_equal(send(a.cli, "efgh", 4, MSG_NOSIGNAL), 4);
        echo_expect(&a, "abcdefgh", 8);
        assert_int_equal(fault_hits(FAULT_RING_RECV_RES), 2);
        assert_false(fault_ring_due_for(MIO__RING_RECV, a.srv));
        assert_int_equal(a.closes, 0);
    }
    econn_done(&a);
}

/* EINTR is retried; a spurious EAGAIN loses nothing: the next edge delivers everything. */
static void test_recv_transient(void **state)
{
    struct econn a;
    char buf[8];
    size_t got = 0;
    unsigned long long until;

    (void)state;
    if (on_ring()) {
        recv_transient_ring();
        return;
    }
    econn_open(&a);
    fault_arm(FAULT_RECV, 0, 3, EINTR, a.srv);
    echo_roundtrip(&a, 5000, 3);
    assert_int_equal(fault_hits(FAULT_RECV), 3);

    fault_arm(FAULT_RECV, 0, 1, EAGAIN, a.srv);
    assert_int_equal(send(a.cli, "abcd", 4, MSG_NOSIGNAL), 4);
    for (int i = 0; i < 20; i++)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    assert_int_equal(fault_hits(FAULT_RECV), 1);
    assert_int_equal(a.echoed, 5000); /* nothing read yet: the fault said "no data" */
    assert_int_equal(send(a.cli, "efgh", 4, MSG_NOSIGNAL), 4);
    until = mio_test_now_ms() + 20000;
    while (got < 8 && mio_test_now_ms() < until) {
        ssize_t n;

        assert_true(mio_reactor_run_once(r, 5) >= 0);
        n = recv(a.cli, buf + got, sizeof buf - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, 8);
    assert_memory_equal(buf, "abcdefgh", 8);
    assert_int_equal(a.closes, 0);
    econn_done(&a);
}

/* ---- send errors: mio_conn_write returns the errno, on_close reports it once ---- */

/* On the ring, the echo written in on_read without a flush goes as a send on the ring: its
 * completion's errno closes the conn, and on_close reports it (mio_conn_write had staged the
 * bytes and returned 0, as on epoll for a write sent at the settle point). */
static void send_errors_ring(void)
{
    static const int errs[] = {EPIPE, ECONNRESET, ENOBUFS, ENOMEM, ETIMEDOUT};
    struct econn a, b;

    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        econn_open(&a);
        a.staged = true;
        econn_open(&b);
        b.staged = true;
        fault_arm(FAULT_RING_SEND_RES, 0, 1, errs[i], a.srv);
        assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
        run_until_closed(&a);
        assert_int_equal(fault_hits(FAULT_RING_SEND_RES), 1);
        assert_false(fault_ring_due_for(MIO__RING_SEND, a.srv));
        assert_int_equal(a.write_err, 0);
        assert_int_equal(a.reason, -errs[i]);
        assert_peer_closed(a.cli);
        echo_roundtrip(&b, 200000, 4);
        fault_disarm_all();
        econn_done(&a);
        econn_done(&b);
    }
}

/* An explicit mio_conn_flush sends with send() on either backend; on the ring the settle point's
 * sends are failed too (send_errors_ring). */
static void test_send_errors(void **state)
{
    static const int errs[] = {EPIPE, ECONNRESET, ENOBUFS, ENOMEM, ETIMEDOUT};
    struct econn a, b;

    (void)state;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        econn_open(&a);
        econn_open(&b);
        fault_arm(FAULT_SEND, 0, 1, errs[i], a.srv); /* mio_conn_write sends one buffer: send() */
        assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
        run_until_closed(&a);
        assert_int_equal(a.write_err, -errs[i]);
        assert_int_equal(a.reason, -errs[i]);
        assert_peer_closed(a.cli);
        echo_roundtrip(&b, 200000, 4);
        fault_disarm_all();
        econn_done(&a);
        econn_done(&b);
    }
    if (on_ring())
        send_errors_ring();
}

/* On the ring, -EINTR and -EAGAIN as a send's result (the kernel took nothing) queue the bytes
 * and WRITABLE flushes them; a short send (the kernel took half) queues the rest; the echo
 * arrives whole and in order, and nothing fails. */
static void send_transient_ring(void)
{
    static const int errs[] = {EINTR, EAGAIN};
    struct econn a;

    econn_open(&a);
    a.staged = true;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fault_arm(FAULT_RING_SEND_RES, 0, 1, errs[i], a.srv);
        assert_int_equal(send(a.cli, "abcd", 4, MSG_NOSIGNAL), 4);
        echo_expect(&a, "abcd", 4);
        assert_int_equal(fault_hits(FAULT_RING_SEND_RES), 1);
        assert_false(fault_ring_due_for(MIO__RING_SEND, a.srv));
        echo_roundtrip(&a, 30000, 11);
    }
    fault_arm(FAULT_RING_SEND_SHORT, 0, 1, 0, a.srv);
    assert_int_equal(send(a.cli, "abcdefgh", 8, MSG_NOSIGNAL), 8);
    echo_expect(&a, "abcdefgh", 8);
    assert_int_equal(fault_hits(FAULT_RING_SEND_SHORT), 1);
    fault_arm(FAULT_RING_SEND_SHORT, 0, -1, 0, a.srv); /* every send on the ring */
    echo_roundtrip(&a, 300000, 12);
    assert_true(fault_hits(FAULT_RING_SEND_SHORT) >= 1);
    assert_int_equal(a.write_err, 0);
    assert_int_equal(a.closes, 0);
    econn_done(&a);
}

/* EINTR is retried; EAGAIN queues the bytes and WRITABLE flushes them, in order. Only the direct
 * send is made to fail with EAGAIN: the change to WRITABLE interest re-polls the socket, which
 * is writable, so the flush follows. (A fake EAGAIN in the flush itself would wait for an edge the
 * kernel never sends, since the buffer never filled: no real kernel says EAGAIN with room.) */
static void test_send_transient(void **state)
{
    struct econn a;

    (void)state;
    econn_open(&a);
    fault_arm(FAULT_SEND, 0, 2, EINTR, a.srv);
    echo_roundtrip(&a, 3000, 5);
    assert_int_equal(fault_hits(FAULT_SEND), 2);
    fault_arm(FAULT_SEND, 0, 1, EAGAIN, a.srv);
    echo_roundtrip(&a, 300000, 6);
    assert_int_equal(fault_hits(FAULT_SEND), 1);
    assert_int_equal(a.write_err, 0);
    assert_int_equal(a.closes, 0);
    econn_done(&a);
    if (on_ring())
        send_transient_ring();
}

/* On the ring: the send on the ring says -EAGAIN (bytes queued, WRITABLE requested), the flush
 * (sendmsg) then fails. */
static void flush_error_ring(void)
{
    struct econn a, b;

    econn_open(&a);
    a.staged = true;
    econn_open(&b);
    fault_arm(FAULT_RING_SEND_RES, 0, 1, EAGAIN, a.srv);
    assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
    run_until_hits(FAULT_RING_SEND_RES, 1);
    for (int i = 0; i < 200 && fault_ring_due_for(MIO__RING_SEND, a.srv); i++)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    assert_false(fault_ring_due_for(MIO__RING_SEND, a.srv));
    assert_int_equal(mio_conn_pending(a.c), 4); /* queued, not flushed yet */
    fault_arm(FAULT_SENDMSG, 0, -1, EPIPE, a.srv);
    run_until_closed(&a);
    assert_int_equal(a.reason, -EPIPE);
    assert_int_equal(a.write_err, 0);
    assert_peer_closed(a.cli);
    echo_roundtrip(&b, 100000, 7);
    fault_disarm_all();
    econn_done(&a);
    econn_done(&b);
}

/* A queued conn whose flush fails: closes with that errno, nothing else is affected. */
static void test_flush_error(void **state)
{
    struct econn a, b;

    (void)state;
    econn_open(&a);
    econn_open(&b);
    /* first send (send()) says "full" (bytes queued, WRITABLE requested), the flush (sendmsg)
     * then fails */
    fault_arm(FAULT_SEND, 0, 1, EAGAIN, a.srv);
    assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
    for (int i = 0; i < 200 && fault_hits(FAULT_SEND) == 0; i++)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    assert_int_equal(fault_hits(FAULT_SEND), 1);
    fault_arm(FAULT_SENDMSG, 0, -1, EPIPE, a.srv);
    run_until_closed(&a);
    assert_int_equal(a.reason, -EPIPE);
    assert_int_equal(a.write_err, 0); /* the write itself had succeeded (queued) */
    echo_roundtrip(&b, 100000, 7);
    fault_disarm_all();
    econn_done(&a);
    econn_done(&b);
    if (on_ring())
        flush_error_ring();
}

/* On the ring: the send on the ring says -EAGAIN and the conn's WRITABLE change fails; the write
 * was staged, so only on_close reports it. */
static void modify_error_ring(void)
{
    struct econn a, b;

    econn_open(&a);
    a.staged = true;
    econn_open(&b);
    fault_arm(FAULT_RING_SEND_RES, 0, 1, EAGAIN, a.srv);
    fault_arm(FAULT_EPOLL_CTL, 0, 1, ENOMEM, a.srv);
    assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
    run_until_closed(&a);
    assert_int_equal(fault_hits(FAULT_RING_SEND_RES), 1);
    assert_int_equal(fault_hits(FAULT_EPOLL_CTL), 1);
    assert_int_equal(a.reason, -ENOMEM);
    assert_int_equal(a.write_err, 0);
    assert_peer_closed(a.cli);
    echo_roundtrip(&b, 100000, 8);
    fault_disarm_all();
    econn_done(&a);
    econn_done(&b);
}

/* epoll_ctl fails when the conn asks for WRITABLE: it closes with that errno. */
static void test_modify_error(void **state)
{
    struct econn a, b;

    (void)state;
    econn_open(&a);
    econn_open(&b);
    fault_arm(FAULT_SEND, 0, 1, EAGAIN, a.srv);
    fault_arm(FAULT_EPOLL_CTL, 0, 1, ENOMEM, a.srv);
    assert_int_equal(send(a.cli, "ping", 4, MSG_NOSIGNAL), 4);
    run_until_closed(&a);
    assert_int_equal(a.reason, -ENOMEM);
    assert_int_equal(a.write_err, -ENOMEM);
    assert_peer_closed(a.cli);
    echo_roundtrip(&b, 100000, 8);
    fault_disarm_all();
    econn_done(&a);
    econn_done(&b);
    if (on_ring())
        modify_error_ring();
}

/* ---- writes made outside callbacks: sent at once, with send(), on either backend ---- */

/* Reads n bytes from the blocking peer (20 s receive timeout) and compares them. */
static void peer_expect(int cli, const char *want, size_t n)
{
    char b[64];
    size_t got = 0;

    assert_true(n <= sizeof b);
    while (got < n) {
        ssize_t k = recv(cli, b + got, n - got, 0);

        if (k < 0 && errno == EINTR)
            continue; /* see assert_peer_closed */
        assert_true(k > 0);
        got += (size_t)k;
    }
    assert_memory_equal(b, want, n);
}

static void test_write_outside_errors(void **state)
{
    static const int errs[] = {EPIPE, ECONNRESET, ENOBUFS, ENOMEM};
    struct econn a, b;

    (void)state;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        econn_open(&a);
        econn_open(&b);
        fault_arm(FAULT_SEND, 0, 1, errs[i], a.srv);
        assert_int_equal(mio_conn_write(a.c, "hello", 5), -errs[i]);
        assert_int_equal(fault_hits(FAULT_SEND), 1);
        run_until_closed(&a);
        assert_int_equal(a.reason, -errs[i]);
        assert_peer_closed(a.cli);
        echo_roundtrip(&b, 100000, 9);
        fault_disarm_all();
        econn_done(&a);
        econn_done(&b);
    }
}

/* EINTR is retried; EAGAIN queues, and the queue's flush (sendmsg, on WRITABLE) delivers in
 * order, or, when it fails, closes that conn with its errno. */
static void test_write_outside_queue(void **state)
{
    struct econn a, b;

    (void)state;
    econn_open(&a);
    econn_open(&b);
    fault_arm(FAULT_SEND, 0, 2, EINTR, a.srv);
    assert_int_equal(mio_conn_write(a.c, "abcd", 4), 0);
    assert_int_equal(fault_hits(FAULT_SEND), 2);
    peer_expect(a.cli, "abcd", 4);

    fault_arm(FAULT_SEND, 0, 1, EAGAIN, a.srv);
    fault_count_reset(FAULT_SENDMSG);
    assert_int_equal(mio_conn_write(a.c, "efgh", 4), 0);
    assert_int_equal(mio_conn_pending(a.c), 4);
    assert_int_equal(mio_conn_write(a.c, "ijkl", 4), 0); /* behind the queue, not before it */
    for (int i = 0; i < 200 && mio_conn_pending(a.c) > 0; i++)
        assert_true(mio_reactor_run_once(r, 5) >= 0);
    assert_int_equal(mio_conn_pending(a.c), 0);
    assert_true(fault_calls(FAULT_SENDMSG) >= 1);
    peer_expect(a.cli, "efghijkl", 8);

    fault_arm(FAULT_SEND, 0, 1, EAGAIN, a.srv);
    fault_arm(FAULT_SENDMSG, 0, -1, EPIPE, a.srv);
    assert_int_equal(mio_conn_write(a.c, "mnop", 4), 0);
    run_until_closed(&a);
    assert_int_equal(a.reason, -EPIPE);
    assert_int_equal(a.write_err, 0);
    assert_peer_closed(a.cli);
    echo_roundtrip(&b, 100000, 10);
    fault_disarm_all();
    econn_done(&a);
    econn_done(&b);
}

/* ---- allocation failure at every site of a conn's life ---- */

#define SWEEP_BYTES (4u * 1024u * 1024u) /* far above the socket buffers: the queue is used */

struct sweep {
    int closes, reason, err;
    size_t got;
};

static void s_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)c, (void)data, (void)len, (void)arg;
}

static void s_on_close(mio_conn *c, int reason, void *arg)
{
    struct sweep *s = arg;

    (void)c;
    s->closes++;
    s->reason = reason;
}

static const mio_conn_ops s_ops = {s_on_read, s_on_close, NULL};

static int conn_scenario(void)
{
    static unsigned char *out, in[65536];
    struct sweep s = {0};
    mio_reactor *rr = NULL;
    mio_conn *c = NULL;
    unsigned long long until;
    int fds[2] = {-1, -1}, rc;

    if (out == NULL) {
        out = malloc(SWEEP_BYTES);
        for (size_t i = 0; i < SWEEP_BYTES; i++)
            out[i] = (unsigned char)(i * 13 + (i >> 12));
    }
    rc = mio_reactor_new(NULL, &rr);
    if (rc < 0)
        return rc;
    rc = mio_unix_stream_pair(fds);
    if (rc < 0)
        goto out;
    rc = mio_conn_open(rr, fds[0], &s_ops, &s, &c);
    if (rc < 0) {
        close(fds[0]); /* still ours on failure */
        goto out;
    }
    rc = mio_conn_set_idle_timeout(c, 600000);
    if (rc < 0)
        goto close_conn;
    rc = mio_conn_write(c, out, SWEEP_BYTES);
    if (rc < 0)
        goto out; /* the conn closed itself */
close_conn:
    mio_conn_close(c); /* after the flush */
    until = mio_test_now_ms() + 30000;
    while (s.closes == 0 && mio_test_now_ms() < until) {
        ssize_t n;

        if (mio_reactor_run_once(rr, 1) < 0)
            break;
        while ((n = recv(fds[1], in, sizeof in, MSG_DONTWAIT)) > 0) {
            if (s.got + (size_t)n > SWEEP_BYTES || memcmp(in, out + s.got, (size_t)n) != 0)
                s.err = -EPROTO;
            s.got += (size_t)n;
        }
    }
    if (s.closes != 1)
        rc = -ETIME;
    else if (rc == 0 && (s.err < 0 || s.reason != 0 || s.got != SWEEP_BYTES))
        rc = s.err < 0 ? s.err : -EPROTO;
out:
    if (s.closes == 1 && s.reason < 0 && rc == 0)
        rc = s.reason;
    if (fds[1] >= 0)
        close(fds[1]);
    mio_reactor_free(rr);
    return rc;
}

static void test_alloc_every_site(void **state)
{
    long n;

    (void)state;
    n = fault_alloc_sweep(conn_scenario, false);
    print_message("conn: %ld allocation sites failed in turn\n", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recv_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recv_transient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_transient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modify_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_outside_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_outside_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_every_site, setup, teardown),
    };

    mio_test_watchdog(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
