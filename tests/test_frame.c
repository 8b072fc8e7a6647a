/* Server-ready conns on a reactor driven by this thread, peers are plain sockets (unix socketpairs
 * and loopback TCP): input framing with mio_conn_consume and the input limit, write coalescing,
 * on_close deferral from every calling context, deadlines.
 *
 * Send syscalls are counted with SOCK_SEQPACKET socketpairs: every send/sendmsg makes exactly one
 * record at the peer, so "one record of 160 bytes" means one syscall and "16 records of 10" means
 * sixteen. (/proc/self/io's syscw does not count send/sendmsg, only write/writev.) */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>
#include "helpers.h"

#define DEADLINE_MS 20000 /* generous bound for anything that should take milliseconds */

static mio_reactor *g_r;
static int fd_base;
static int listener_fd = -1;
static mio_addr listen_addr;

static int setup(void **state)
{
    (void)state;
    fd_base = mio_test_fd_count();
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &listen_addr), 0);
    listener_fd = mio_tcp_listener_bind(&listen_addr);
    assert_true(listener_fd >= 0);
    assert_int_equal(mio_socket_local_addr(listener_fd, &listen_addr), 0);
    assert_int_equal(mio_reactor_new(NULL, &g_r), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mio_reactor_free(g_r);
    g_r = NULL;
    close(listener_fd);
    assert_int_equal(mio_test_fd_count(), fd_base);
    return 0;
}

#define RUN_UNTIL(cond, ms)                                                                       \
    do {                                                                                          \
        unsigned long long until_ = mio_test_now_ms() + (ms);                                     \
        while (!(cond) && mio_test_now_ms() < until_)                                             \
            assert_true(mio_reactor_run_once(g_r, 5) >= 0);                                       \
        assert_true(cond);                                                                        \
    } while (0)

static void run_for(unsigned ms)
{
    unsigned long long until = mio_test_now_ms() + ms;

    while (mio_test_now_ms() < until)
        assert_true(mio_reactor_run_once(g_r, 5) >= 0);
}

/* A loopback TCP pair: *peer blocking, *srv non-blocking (for mio_conn_open). */
static void tcp_pair(int *peer, int *srv)
{
    unsigned long long until = mio_test_now_ms() + DEADLINE_MS;
    int c = mio_tcp_stream_connect(&listen_addr), s;

    assert_true(c >= 0);
    do {
        s = mio_tcp_listener_accept(listener_fd, NULL);
        if (s == -EAGAIN)
            usleep(1000);
    } while (s == -EAGAIN && mio_test_now_ms() < until);
    assert_true(s >= 0);
    assert_int_equal(mio_set_nonblocking(c, false), 0);
    *peer = c;
    *srv = s;
}

/* A unix stream socketpair: *peer blocking, *srv non-blocking. */
static void unix_pair(int *peer, int *srv)
{
    int fds[2];

    assert_int_equal(mio_unix_stream_pair(fds), 0);
    assert_int_equal(mio_set_nonblocking(fds[0], false), 0);
    *peer = fds[0];
    *srv = fds[1];
}

/* A unix SOCK_SEQPACKET socketpair (record boundaries = send syscalls), both non-blocking. */
static void seq_pair(int *peer, int *srv)
{
    int fds[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds),
                     0);
    *peer = fds[0];
    *srv = fds[1];
}

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n == -1 && errno == EINTR)
            continue;
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* One record (or stream chunk) from a non-blocking read: its length, or -errno. */
static ssize_t recv_now(int fd, void *buf, size_t cap)
{
    ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);

    return n == -1 ? -errno : n;
}

/* SO_LINGER {1, 0}: the close sends RST. */
static void rst_close(int fd)
{
    struct linger lg = {1, 0};

    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

/* Waits (poll, not the reactor) until fd reports an error or a hang-up. */
static void wait_error(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    unsigned long long until = mio_test_now_ms() + DEADLINE_MS;

    for (;;) {
        p.revents = 0;
        if (poll(&p, 1, 10) == 1 && (p.revents & (POLLERR | POLLHUP)))
            return;
        if (mio_test_now_ms() > until)
            fail_msg("no error on fd %d", fd);
    }
}

/* ================================================================ framing */

/* Message i (a global index) has length lens[i % nlens] and bytes msg_byte(i, j), never '\n'. */
static unsigned char msg_byte(size_t i, size_t j)
{
    return (unsigned char)('A' + (i * 7u + j * 13u) % 26u);
}

enum proto { P_LEN, P_LINE }; /* 4-byte big-endian length + payload; or payload + '\n' */

/* Encodes messages [first, first + count) into buf; returns the length. */
static size_t encode(enum proto proto, const size_t *lens, size_t nlens, size_t first, size_t count,
                     unsigned char *buf)
{
    size_t off = 0;

    for (size_t i = first; i < first + count; i++) {
        size_t len = lens[i % nlens];

        if (proto == P_LEN) {
            buf[off++] = (unsigned char)(len >> 24);
            buf[off++] = (unsigned char)(len >> 16);
            buf[off++] = (unsigned char)(len >> 8);
            buf[off++] = (unsigned char)len;
        }
        for (size_t j = 0; j < len; j++)
            buf[off++] = msg_byte(i, j);
        if (proto == P_LINE)
            buf[off++] = '\n';
    }
    return off;
}

#define KEPT_MAX (512u * 1024u)

struct fconn {
    mio_conn *c;
    enum proto proto;
    const size_t *lens;
    size_t nlens;
    /* behaviour */
    bool lazy;        /* no mio_conn_consume call when everything was used */
    bool twice;       /* call consume(0) first, then the real value (the last call wins) */
    /* what was seen */
    size_t nmsgs;     /* messages parsed, each checked against its index */
    size_t new_bytes; /* bytes delivered for the first time */
    size_t reads, eofs;
    bool bad_msg;      /* a message with the wrong length or bytes */
    bool discontig;    /* a call did not start with the bytes kept by the previous one */
    bool wrong_conn;   /* on_read with another conn than ours */
    bool read_after_close;
    int consume_fail;  /* consume returned something else than 0 / -EMSGSIZE */
    int emsgsize;      /* consume returned -EMSGSIZE */
    int closes, reason;
    bool close_in_read; /* on_close ran while our on_read was on the stack */
    bool in_read;
    unsigned char *kept; /* a copy of the tail kept by the last on_read */
    size_t kept_len;
    /* misuse probes, run inside on_read when set */
    void (*probe)(struct fconn *f, mio_conn *c, const unsigned char *data, size_t len);
    struct fconn *other;
    int probe_rc[8];
    bool probe_done;
    int consume_in_close;
};

static void fconn_init(struct fconn *f, enum proto proto, const size_t *lens, size_t nlens)
{
    memset(f, 0, sizeof(*f));
    f->proto = proto;
    f->lens = lens;
    f->nlens = nlens;
    f->kept = malloc(KEPT_MAX);
    assert_non_null(f->kept);
}

static void fconn_fini(struct fconn *f)
{
    free(f->kept);
    f->kept = NULL;
}

/* Parses whole messages from data; returns the bytes used. */
static size_t parse(struct fconn *f, const unsigned char *p, size_t len)
{
    size_t used = 0;

    for (;;) {
        size_t want = f->lens[f->nmsgs % f->nlens], mlen, body;

        if (f->proto == P_LEN) {
            if (len - used < 4)
                break;
            mlen = (size_t)p[used] << 24 | (size_t)p[used + 1] << 16 | (size_t)p[used + 2] << 8 |
                   (size_t)p[used + 3];
            if (len - used - 4 < mlen)
                break;
            body = used + 4;
            used = body + mlen;
        } else {
            const unsigned char *nl = memchr(p + used, '\n', len - used);

            if (nl == NULL)
                break;
            body = used;
            mlen = (size_t)(nl - (p + used));
            used = body + mlen + 1;
        }
        if (mlen != want)
            f->bad_msg = true;
        for (size_t j = 0; j < mlen && !f->bad_msg; j++)
            if (p[body + j] != msg_byte(f->nmsgs, j))
                f->bad_msg = true;
        f->nmsgs++;
    }
    return used;
}

static void f_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct fconn *f = arg;
    const unsigned char *p = data;
    size_t used;
    int rc;

    f->reads++;
    if (c != f->c)
        f->wrong_conn = true;
    if (f->closes > 0)
        f->read_after_close = true;
    f->in_read = true;
    if (f->probe != NULL)
        f->probe(f, c, p, len);
    if (len == 0) {
        f->eofs++;
        f->kept_len = 0; /* dropped at EOF */
        f->in_read = false;
        return;
    }
    if (len < f->kept_len || memcmp(p, f->kept, f->kept_len) != 0)
        f->discontig = true;
    else
        f->new_bytes += len - f->kept_len;
    used = parse(f, p, len);
    if (!(f->lazy && used == len)) {
        if (f->twice)
            (void)mio_conn_consume(c, 0);
        rc = mio_conn_consume(c, used);
        if (rc == -EMSGSIZE)
            f->emsgsize++;
        else if (rc != 0)
            f->consume_fail++;
    }
    f->kept_len = len - used;
    assert_true(f->kept_len <= KEPT_MAX);
    memcpy(f->kept, p + used, f->kept_len);
    f->in_read = false;
}

static void f_on_close(mio_conn *c, int reason, void *arg)
{
    struct fconn *f = arg;

    f->closes++;
    f->reason = reason;
    if (f->in_read)
        f->close_in_read = true;
    f->consume_in_close = mio_conn_consume(c, 0);
}

static const mio_conn_ops f_ops = {f_on_read, f_on_close, NULL};

static void fconn_open(struct fconn *f, int srv)
{
    assert_int_equal(mio_conn_open(g_r, srv, &f_ops, f, &f->c), 0);
}

static void fconn_close(struct fconn *f)
{
    if (f->closes == 0) {
        mio_conn_close(f->c);
        RUN_UNTIL(f->closes == 1, DEADLINE_MS);
    }
    fconn_fini(f);
}

static void fconn_expect_clean(const struct fconn *f)
{
    assert_false(f->bad_msg);
    assert_false(f->discontig);
    assert_false(f->wrong_conn);
    assert_false(f->read_after_close);
    assert_false(f->close_in_read);
    assert_int_equal(f->consume_fail, 0);
}

/* ~200 bytes of several messages, lengths chosen to land boundaries everywhere */
static const size_t small_lens[] = {0, 1, 2, 13, 40, 3, 57, 5, 20, 1, 11};
#define NSMALL (sizeof(small_lens) / sizeof(small_lens[0]))

/* Number of whole messages in the first k bytes of a round encoded from message `first`. */
static size_t whole_in(enum proto proto, size_t first, size_t k)
{
    size_t off = 0, n = 0;

    for (size_t i = first;; i++) {
        off += small_lens[i % NSMALL] + (proto == P_LEN ? 4 : 1);
        if (off > k)
            return n;
        n++;
    }
}

/* For every split point k of a round: the first k bytes, a reactor pass, the rest. */
static void split_sweep(enum proto proto, bool tcp)
{
    unsigned char buf[512];
    static struct fconn f;
    int peer, srv;
    size_t total = encode(proto, small_lens, NSMALL, 0, NSMALL, buf), round = 0, sent = 0;

    assert_true(total > 150 && total < 256);
    fconn_init(&f, proto, small_lens, NSMALL);
    if (tcp)
        tcp_pair(&peer, &srv);
    else
        unix_pair(&peer, &srv);
    fconn_open(&f, srv);
    for (size_t k = 1; k < total; k++, round++) {
        size_t first = round * NSMALL, n = encode(proto, small_lens, NSMALL, first, NSMALL, buf);

        assert_int_equal(n, total);
        send_all(peer, buf, k);
        sent += k;
        RUN_UNTIL(f.new_bytes == sent || f.discontig, DEADLINE_MS);
        /* exactly the whole messages of the first k bytes, the partial one kept */
        assert_int_equal(f.nmsgs, first + whole_in(proto, first, k));
        send_all(peer, buf + k, n - k);
        sent += n - k;
        RUN_UNTIL(f.new_bytes == sent || f.discontig, DEADLINE_MS);
        assert_int_equal(f.nmsgs, first + NSMALL);
        assert_int_equal(f.kept_len, 0);
        fconn_expect_clean(&f);
    }
    assert_int_equal(f.closes, 0);
    fconn_close(&f);
    assert_int_equal(f.reason, 0);
    close(peer);
}

static void test_split_every_byte_len(void **state)
{
    (void)state;
    split_sweep(P_LEN, false);
}

static void test_split_every_byte_line(void **state)
{
    (void)state;
    split_sweep(P_LINE, true);
}

/* One byte per send, a reactor pass after each; then several rounds in one send. */
static void test_byte_at_a_time_and_batch(void **state)
{
    unsigned char buf[4096];
    static struct fconn f, g;
    int peer, srv, peer2, srv2;
    size_t n, sent = 0;

    (void)state;
    fconn_init(&f, P_LEN, small_lens, NSMALL);
    f.lazy = true; /* no consume call when a message ends exactly: everything counts as used */
    tcp_pair(&peer, &srv);
    fconn_open(&f, srv);
    for (size_t round = 0; round < 3; round++) {
        n = encode(P_LEN, small_lens, NSMALL, round * NSMALL, NSMALL, buf);
        for (size_t k = 0; k < n; k++) {
            send_all(peer, buf + k, 1);
            sent++;
            RUN_UNTIL(f.new_bytes == sent || f.discontig, DEADLINE_MS);
            assert_int_equal(f.nmsgs, round * NSMALL + whole_in(P_LEN, round * NSMALL, k + 1));
        }
        assert_int_equal(f.nmsgs, (round + 1) * NSMALL);
        fconn_expect_clean(&f);
    }
    /* whole rounds in one send: every message once, in order, in one on_read */
    n = encode(P_LEN, small_lens, NSMALL, 3 * NSMALL, 4 * NSMALL, buf);
    assert_true(n < sizeof(buf));
    f.reads = 0;
    f.twice = true; /* consume(0) then consume(used): the last call wins */
    send_all(peer, buf, n);
    sent += n;
    RUN_UNTIL(f.new_bytes == sent || f.discontig, DEADLINE_MS);
    assert_int_equal(f.nmsgs, 7 * NSMALL);
    assert_int_equal(f.reads, 1);
    assert_int_equal(f.kept_len, 0);
    fconn_expect_clean(&f);
    fconn_close(&f);
    close(peer);

    /* the line protocol, several messages and a partial one per send */
    fconn_init(&g, P_LINE, small_lens, NSMALL);
    unix_pair(&peer2, &srv2);
    fconn_open(&g, srv2);
    n = encode(P_LINE, small_lens, NSMALL, 0, 5 * NSMALL, buf);
    sent = 0;
    for (size_t off = 0; off < n; off += 97) {
        size_t k = n - off < 97 ? n - off : 97;

        send_all(peer2, buf + off, k);
        sent += k;
        RUN_UNTIL(g.new_bytes == sent || g.discontig, DEADLINE_MS);
    }
    assert_int_equal(g.nmsgs, 5 * NSMALL);
    fconn_expect_clean(&g);
    fconn_close(&g);
    close(peer2);
}

/* ================================================================ input limit */

/* Sends buf with non-blocking sends, running the reactor meanwhile, until all is sent or `stop`. */
static void pump(int peer, const unsigned char *buf, size_t len, const int *stop)
{
    unsigned long long until = mio_test_now_ms() + DEADLINE_MS;
    size_t off = 0;

    while (off < len && !*stop && mio_test_now_ms() < until) {
        ssize_t n = send(peer, buf + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n > 0)
            off += (size_t)n;
        else
            assert_true(n == -1 && (errno == EAGAIN || errno == EINTR || errno == EPIPE ||
                                    errno == ECONNRESET));
        if (n == -1 && (errno == EPIPE || errno == ECONNRESET))
            break;
        assert_true(mio_reactor_run_once(g_r, 1) >= 0);
    }
}

/* Inside an on_read that delivers a kept tail: raising the limit must leave `data` readable (the
 * parser reads it after this call). */
static void probe_limit_in_read(struct fconn *f, mio_conn *c, const unsigned char *data,
                                size_t len)
{
    (void)data;
    if (len > f->kept_len && f->kept_len > 0 && !f->probe_done) {
        f->probe_done = true;
        f->probe_rc[0] = mio_conn_set_input_limit(c, 4096);
        f->probe_rc[1] = mio_conn_set_input_limit(c, 2); /* below what it got: refused or not,
                                                           the data stays readable */
        f->probe_rc[2] = mio_conn_set_input_limit(c, 4096);
    }
}

static void test_input_limit(void **state)
{
    static const size_t huge_len[] = {5000};
    static const size_t big_lens[] = {200u * 1024u, 7};
    unsigned char *buf = malloc(300 * 1024);
    static struct fconn a, b, x, y, z, w; /* static: a failed assert must not leave the conns
                                             pointing into a dead stack frame */
    int pa, sa, pb, sb, px, sx, py, sy, pz, sz, pw, sw;
    char ch;
    size_t n;

    (void)state;
    assert_non_null(buf);
    assert_int_equal(mio_conn_input_limit(NULL), 0);

    /* a: limit 1000; a partial message of 999 bytes is kept, one more byte closes it */
    fconn_init(&a, P_LEN, huge_len, 1);
    fconn_init(&b, P_LEN, small_lens, NSMALL);
    unix_pair(&pa, &sa);
    unix_pair(&pb, &sb);
    fconn_open(&a, sa);
    fconn_open(&b, sb);
    assert_int_equal(mio_conn_input_limit(a.c), 64u * 1024u);
    /* bad arguments */
    assert_int_equal(mio_conn_set_input_limit(NULL, 1000), -EINVAL);
    assert_int_equal(mio_conn_set_input_limit(a.c, 0), -EINVAL);
    assert_int_equal(mio_conn_set_input_limit(a.c, 1), -EINVAL);
#if SIZE_MAX > UINT32_MAX
    assert_int_equal(mio_conn_set_input_limit(a.c, (size_t)UINT32_MAX + 1u), -EINVAL);
#endif
    assert_int_equal(mio_conn_input_limit(a.c), 64u * 1024u);
    assert_int_equal(mio_conn_set_input_limit(a.c, UINT32_MAX), 0);
    assert_int_equal(mio_conn_input_limit(a.c), UINT32_MAX);
    assert_int_equal(mio_conn_set_input_limit(a.c, 2), 0);
    assert_int_equal(mio_conn_set_input_limit(a.c, 1000), 0);
    assert_int_equal(mio_conn_input_limit(a.c), 1000);

    n = encode(P_LEN, huge_len, 1, 0, 1, buf);
    send_all(pa, buf, 999);
    RUN_UNTIL(a.new_bytes == 999, DEADLINE_MS);
    assert_int_equal(a.kept_len, 999);
    assert_int_equal(a.emsgsize, 0);
    run_for(20);
    assert_int_equal(a.closes, 0);
    /* b works meanwhile */
    n = encode(P_LEN, small_lens, NSMALL, 0, NSMALL, buf);
    send_all(pb, buf, n);
    RUN_UNTIL(b.nmsgs == NSMALL, DEADLINE_MS);
    /* the 1000th byte: the partial message reaches the limit */
    n = encode(P_LEN, huge_len, 1, 0, 1, buf);
    send_all(pa, buf + 999, 1);
    RUN_UNTIL(a.closes == 1, DEADLINE_MS);
    assert_int_equal(a.reason, -EMSGSIZE);
    assert_int_equal(a.emsgsize, 1);
    assert_int_equal(a.nmsgs, 0);
    assert_int_equal(a.consume_in_close, -EINVAL);
    fconn_expect_clean(&a);
    assert_int_equal(recv(pa, &ch, 1, 0), 0); /* the peer sees the close */
    /* b is untouched and keeps working */
    n = encode(P_LEN, small_lens, NSMALL, NSMALL, 2 * NSMALL, buf);
    send_all(pb, buf, n);
    RUN_UNTIL(b.nmsgs == 3 * NSMALL, DEADLINE_MS);
    assert_int_equal(b.closes, 0);
    assert_int_equal(b.emsgsize, 0);
    fconn_expect_clean(&b);

    /* x (default 64 KiB) and y (256 KiB) both get a 200 KiB message: only y gets it whole */
    fconn_init(&x, P_LEN, big_lens, 2);
    fconn_init(&y, P_LEN, big_lens, 2);
    unix_pair(&px, &sx);
    unix_pair(&py, &sy);
    fconn_open(&x, sx);
    fconn_open(&y, sy);
    assert_int_equal(mio_conn_set_input_limit(y.c, 256u * 1024u), 0);
    n = encode(P_LEN, big_lens, 2, 0, 2, buf);
    pump(px, buf, n, &x.closes);
    RUN_UNTIL(x.closes == 1, DEADLINE_MS);
    assert_int_equal(x.reason, -EMSGSIZE);
    assert_int_equal(x.emsgsize, 1);
    assert_int_equal(x.nmsgs, 0);
    assert_true(x.kept_len < 64u * 1024u + 64u * 1024u);
    pump(py, buf, n, &y.closes);
    RUN_UNTIL(y.nmsgs == 2 || y.closes > 0, DEADLINE_MS);
    assert_int_equal(y.closes, 0);
    assert_int_equal(y.emsgsize, 0);
    assert_int_equal(y.new_bytes, n);
    fconn_expect_clean(&x);
    fconn_expect_clean(&y);

    /* z: a kept tail of 100 bytes; a limit at or below it is refused, a larger one lets the
     * message through */
    {
        static const size_t mid_len[] = {150};

        fconn_init(&z, P_LEN, mid_len, 1);
        fconn_init(&w, P_LEN, mid_len, 1);
    }
    unix_pair(&pz, &sz);
    unix_pair(&pw, &sw);
    fconn_open(&z, sz);
    fconn_open(&w, sw);
    n = encode(P_LEN, z.lens, 1, 0, 1, buf);
    assert_int_equal(n, 154);
    send_all(pz, buf, 100);
    send_all(pw, buf, 100);
    RUN_UNTIL(z.new_bytes == 100 && w.new_bytes == 100, DEADLINE_MS);
    assert_int_equal(z.kept_len, 100);
    assert_int_equal(mio_conn_set_input_limit(z.c, 50), -EMSGSIZE);
    assert_int_equal(mio_conn_set_input_limit(z.c, 100), -EMSGSIZE);
    assert_int_equal(mio_conn_input_limit(z.c), 64u * 1024u); /* unchanged */
    assert_int_equal(mio_conn_set_input_limit(z.c, 155), 0);
    assert_int_equal(mio_conn_input_limit(z.c), 155);
    z.probe = probe_limit_in_read;
    send_all(pz, buf + 100, n - 100);
    RUN_UNTIL(z.nmsgs == 1 || z.closes > 0, DEADLINE_MS);
    assert_int_equal(z.closes, 0);
    assert_true(z.probe_done);
    assert_int_equal(z.probe_rc[0], 0);
    assert_int_equal(z.probe_rc[2], 0);
    assert_int_equal(mio_conn_input_limit(z.c), 4096);
    assert_int_equal(z.kept_len, 0);
    fconn_expect_clean(&z);
    /* w: limit 101 over a tail of 100: one more byte of the same message makes a kept tail of
     * 101, which closes it */
    assert_int_equal(mio_conn_set_input_limit(w.c, 101), 0);
    send_all(pw, buf + 100, 1);
    RUN_UNTIL(w.closes == 1, DEADLINE_MS);
    assert_int_equal(w.reason, -EMSGSIZE);
    assert_int_equal(w.emsgsize, 1);
    assert_int_equal(w.nmsgs, 0);
    fconn_expect_clean(&w);

    /* closing: -EPIPE */
    mio_conn_close(z.c);
    assert_int_equal(mio_conn_set_input_limit(z.c, 1000), -EPIPE);
    RUN_UNTIL(z.closes == 1, DEADLINE_MS);

    fconn_close(&a);
    fconn_close(&b);
    fconn_close(&x);
    fconn_close(&y);
    fconn_close(&z);
    fconn_close(&w);
    close(pa);
    close(pb);
    close(px);
    close(py);
    close(pz);
    close(pw);
    free(buf);
}

/* ================================================================ consume misuse */

static mio_conn *other_reactor_conn;

static void probe_misuse(struct fconn *f, mio_conn *c, const unsigned char *data, size_t len)
{
    (void)data;
    if (f->probe_done || len == 0)
        return;
    f->probe_done = true;
    f->probe_rc[0] = mio_conn_consume(f->other->c, 0); /* another conn, same reactor */
    f->probe_rc[1] = mio_conn_consume(other_reactor_conn, 0); /* another reactor's conn */
    f->probe_rc[2] = mio_conn_consume(c, len + 1);
    f->probe_rc[3] = mio_conn_consume(c, SIZE_MAX);
    f->probe_rc[4] = mio_conn_consume(c, len); /* n == len: fine */
    f->probe_rc[5] = mio_conn_consume(NULL, 0);
}

static void probe_eof(struct fconn *f, mio_conn *c, const unsigned char *data, size_t len)
{
    (void)data;
    if (len != 0)
        return;
    f->probe_rc[6] = mio_conn_consume(c, 0);
    f->probe_rc[7] = mio_conn_consume(c, 1);
}

static int task_consume_rc, timer_consume_rc;

static void task_consume(mio_reactor *rr, void *arg)
{
    (void)rr;
    task_consume_rc = mio_conn_consume(arg, 0);
}

static void timer_consume(mio_reactor *rr, mio_timer_id id, void *arg)
{
    (void)rr;
    (void)id;
    timer_consume_rc = mio_conn_consume(arg, 0);
}

/* Raw on_read: keeps the last 2 bytes of its first call (after refused and overridden calls),
 * and records the start of the next call. */
struct kconn {
    mio_conn *c;
    unsigned char first[8];
    size_t calls, lens[4];
    int rc[4];
    int closes;
};

static void k_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct kconn *k = arg;

    if (k->calls < 4) {
        k->lens[k->calls] = len;
        if (k->calls == 0 && len >= 2) {
            k->rc[0] = mio_conn_consume(c, len - 2);
            k->rc[1] = mio_conn_consume(c, len + 5); /* refused: the kept 2 stay */
            k->rc[2] = mio_conn_consume(c, 1);       /* the last call wins: keep len - 1 */
            k->rc[3] = mio_conn_consume(c, len - 2); /* ... and now len - 2 again */
        }
        if (k->calls == 1)
            memcpy(k->first, data, len < 8 ? len : 8);
    }
    k->calls++;
}

static void k_on_close(mio_conn *c, int reason, void *arg)
{
    struct kconn *k = arg;

    (void)c;
    (void)reason;
    k->closes++;
}

static const mio_conn_ops k_ops = {k_on_read, k_on_close, NULL};

static void test_consume_misuse(void **state)
{
    static struct fconn f, o, e;
    static struct kconn k;
    mio_reactor *r2;
    int pf, sf, po, so, pe, se, pk, sk, p2, s2;
    int other_closes = 0;
    unsigned char buf[512];
    size_t n;

    (void)state;
    memset(&k, 0, sizeof(k));
    assert_int_equal(mio_conn_consume(NULL, 0), -EINVAL);
    assert_int_equal(mio_reactor_new(NULL, &r2), 0);
    fconn_init(&f, P_LEN, small_lens, NSMALL);
    fconn_init(&o, P_LEN, small_lens, NSMALL);
    fconn_init(&e, P_LEN, small_lens, NSMALL);
    unix_pair(&pf, &sf);
    unix_pair(&po, &so);
    unix_pair(&p2, &s2);
    fconn_open(&f, sf);
    fconn_open(&o, so);
    {
        static struct fconn r2f;

        fconn_init(&r2f, P_LEN, small_lens, NSMALL);
        assert_int_equal(mio_conn_open(r2, s2, &f_ops, &r2f, &r2f.c), 0);
        other_reactor_conn = r2f.c;
        /* outside any on_read: before and after reads */
        assert_int_equal(mio_conn_consume(f.c, 0), -EINVAL);
        assert_int_equal(mio_conn_consume(r2f.c, 0), -EINVAL);
        f.other = &o;
        f.probe = probe_misuse;
        /* o gets a partial message first, f then probes o (and r2's conn) from its on_read */
        n = encode(P_LEN, small_lens, NSMALL, 0, NSMALL, buf);
        send_all(po, buf, 30);
        RUN_UNTIL(o.new_bytes == 30, DEADLINE_MS);
        assert_int_equal(o.kept_len, 30 - 4 - 1 - 4 - 2 - 4); /* messages 0, 1, 2 */
        send_all(pf, buf, n);
        RUN_UNTIL(f.nmsgs == NSMALL, DEADLINE_MS);
        assert_true(f.probe_done);
        assert_int_equal(f.probe_rc[0], -EINVAL);
        assert_int_equal(f.probe_rc[1], -EINVAL);
        assert_int_equal(f.probe_rc[2], -EINVAL);
        assert_int_equal(f.probe_rc[3], -EINVAL);
        assert_int_equal(f.probe_rc[4], 0);
        assert_int_equal(f.probe_rc[5], -EINVAL);
        fconn_expect_clean(&f);
        /* o's kept tail was not touched by f's calls: the rest completes its messages */
        send_all(po, buf + 30, n - 30);
        RUN_UNTIL(o.nmsgs == NSMALL, DEADLINE_MS);
        fconn_expect_clean(&o);
        assert_int_equal(mio_conn_consume(f.c, 0), -EINVAL); /* after on_read returned */
        /* the other reactor's conn still reads normally */
        send_all(p2, buf, n);
        {
            unsigned long long until = mio_test_now_ms() + DEADLINE_MS;

            while (r2f.nmsgs < NSMALL && mio_test_now_ms() < until)
                assert_true(mio_reactor_run_once(r2, 5) >= 0);
        }
        assert_int_equal(r2f.nmsgs, NSMALL);
        fconn_expect_clean(&r2f);
        mio_reactor_free(r2); /* closes r2f with -ECANCELED */
        assert_int_equal(r2f.closes, 1);
        assert_int_equal(r2f.reason, -ECANCELED);
        fconn_fini(&r2f);
        close(p2);
        (void)other_closes;
    }

    /* n > len refused, the last accepted call wins; the next on_read starts with the kept bytes */
    unix_pair(&pk, &sk);
    assert_int_equal(mio_conn_open(g_r, sk, &k_ops, &k, &k.c), 0);
    send_all(pk, "abcdefgh", 8);
    RUN_UNTIL(k.calls == 1, DEADLINE_MS);
    assert_int_equal(k.lens[0], 8);
    assert_int_equal(k.rc[0], 0);
    assert_int_equal(k.rc[1], -EINVAL);
    assert_int_equal(k.rc[2], 0);
    assert_int_equal(k.rc[3], 0);
    send_all(pk, "XY", 2);
    RUN_UNTIL(k.calls == 2, DEADLINE_MS);
    assert_int_equal(k.lens[1], 4);
    assert_memory_equal(k.first, "ghXY", 4);
    /* tasks and timers are not inside its on_read */
    task_consume_rc = timer_consume_rc = 1;
    assert_int_equal(mio_reactor_post(g_r, task_consume, k.c), 0);
    assert_int_equal(mio_reactor_timer_start(g_r, 0, 0, timer_consume, k.c, NULL), 0);
    RUN_UNTIL(task_consume_rc != 1 && timer_consume_rc != 1, DEADLINE_MS);
    assert_int_equal(task_consume_rc, -EINVAL);
    assert_int_equal(timer_consume_rc, -EINVAL);
    mio_conn_close(k.c);
    RUN_UNTIL(k.closes == 1, DEADLINE_MS);
    close(pk);

    /* EOF: consume(0) is fine, consume(1) is not; a kept partial message is dropped, never
     * delivered again */
    e.probe = probe_eof;
    e.probe_rc[6] = e.probe_rc[7] = 1;
    unix_pair(&pe, &se);
    fconn_open(&e, se);
    n = encode(P_LEN, small_lens, NSMALL, 0, NSMALL, buf);
    send_all(pe, buf, 20);
    RUN_UNTIL(e.new_bytes == 20, DEADLINE_MS);
    assert_true(e.kept_len > 0);
    assert_int_equal(shutdown(pe, SHUT_WR), 0);
    RUN_UNTIL(e.eofs == 1, DEADLINE_MS);
    assert_int_equal(e.probe_rc[6], 0);
    assert_int_equal(e.probe_rc[7], -EINVAL);
    run_for(30);
    assert_int_equal(e.eofs, 1);
    assert_int_equal(e.reads, 2);
    fconn_expect_clean(&e);
    fconn_close(&e);
    assert_int_equal(e.consume_in_close, -EINVAL);

    fconn_close(&f);
    fconn_close(&o);
    assert_int_equal(f.consume_in_close, -EINVAL);
    close(pf);
    close(po);
    close(pe);
}

/* ================================================================ coalescing */

static unsigned char pat[256 * 1024];

/* Scripted conn: what on_read does is a function of the test. */
struct wconn {
    mio_conn *c;
    int peer;
    int closes, reason;
    bool in_cb;
    bool close_in_cb;
    void (*script)(struct wconn *w);
    /* results recorded inside callbacks */
    size_t pending[8];
    ssize_t peer_got[8];
    int rc[8];
    int step;
    struct wconn *other;
};

static void w_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct wconn *w = arg;

    (void)c;
    (void)data;
    if (len == 0 || w->script == NULL)
        return;
    w->in_cb = true;
    w->script(w);
    w->in_cb = false;
}

static void w_on_close(mio_conn *c, int reason, void *arg)
{
    struct wconn *w = arg;

    (void)c;
    w->closes++;
    w->reason = reason;
    if (w->in_cb)
        w->close_in_cb = true;
    if (w->other != NULL && w->script != NULL) /* on_close as a writing context */
        w->script(w->other);
}

static const mio_conn_ops w_ops = {w_on_read, w_on_close, NULL};

static void wconn_open_seq(struct wconn *w)
{
    int srv;

    memset(w, 0, sizeof(*w));
    seq_pair(&w->peer, &srv);
    assert_int_equal(mio_conn_open(g_r, srv, &w_ops, w, &w->c), 0);
}

static void wconn_close(struct wconn *w)
{
    if (w->closes == 0) {
        mio_conn_close(w->c);
        RUN_UNTIL(w->closes == 1, DEADLINE_MS);
    }
    close(w->peer);
}

static void trigger(struct wconn *w)
{
    assert_int_equal(send(w->peer, "go", 2, MSG_NOSIGNAL), 2);
}

/* 16 writes of 10 bytes */
static void script_16x10(struct wconn *w)
{
    for (int i = 0; i < 16; i++)
        w->rc[0] |= mio_conn_write(w->c, pat + i * 10, 10);
    w->pending[0] = mio_conn_pending(w->c);
    w->peer_got[0] = recv_now(w->peer, (char[64]){0}, 64); /* nothing sent yet */
}

static void expect_record(int peer, size_t off, size_t len)
{
    static unsigned char buf[128 * 1024];
    ssize_t n = recv_now(peer, buf, sizeof(buf));

    assert_int_equal(n, (ssize_t)len);
    assert_memory_equal(buf, pat + off, len);
}

static void expect_no_record(int peer)
{
    char b[16];

    assert_int_equal(recv_now(peer, b, sizeof(b)), -EAGAIN);
}

static void test_coalesce_count(void **state)
{
    static struct wconn w;

    (void)state;
    /* inside on_read: 16 writes, one send */
    wconn_open_seq(&w);
    w.script = script_16x10;
    trigger(&w);
    RUN_UNTIL(w.pending[0] != 0, DEADLINE_MS);
    assert_int_equal(w.rc[0], 0);
    assert_int_equal(w.pending[0], 160);
    assert_int_equal(w.peer_got[0], -EAGAIN);
    assert_int_equal(mio_conn_pending(w.c), 0);
    expect_record(w.peer, 0, 160); /* ONE record: one syscall */
    expect_no_record(w.peer);
    /* outside callbacks: 16 writes, 16 sends, each readable at once */
    for (int i = 0; i < 16; i++) {
        assert_int_equal(mio_conn_write(w.c, pat + i * 10, 10), 0);
        assert_int_equal(mio_conn_pending(w.c), 0);
        expect_record(w.peer, (size_t)i * 10, 10);
    }
    expect_no_record(w.peer);
    /* a writev outside callbacks: one send of its three parts */
    {
        struct iovec iov[3] = {{pat, 3}, {pat + 3, 4}, {pat + 7, 5}};

        assert_int_equal(mio_conn_writev(w.c, iov, 3), 0);
        expect_record(w.peer, 0, 12);
    }
    wconn_close(&w);
    assert_int_equal(w.reason, 0);
    assert_false(w.close_in_cb);
}

/* 16 KiB is staged, 16 KiB + 1 goes at once together with what is staged */
static void script_boundary(struct wconn *w)
{
    static unsigned char buf[64 * 1024];

    w->rc[0] = mio_conn_write(w->c, pat, 16384);
    w->pending[0] = mio_conn_pending(w->c);
    w->peer_got[0] = recv_now(w->peer, buf, sizeof(buf));
    w->rc[1] = mio_conn_write(w->c, pat + 16384, 16385);
    w->pending[1] = mio_conn_pending(w->c);
    w->peer_got[1] = recv_now(w->peer, buf, sizeof(buf)); /* one record: both, in order */
    w->rc[2] = memcmp(buf, pat, 32769) == 0 ? 0 : 1;
    w->rc[3] = mio_conn_write(w->c, pat + 32769, 5); /* staged again */
    w->pending[2] = mio_conn_pending(w->c);
    w->peer_got[2] = recv_now(w->peer, buf, sizeof(buf));
}

/* flush: what is staged goes now; later writes are staged again */
static void script_flush(struct wconn *w)
{
    static unsigned char buf[1024];

    w->rc[0] = mio_conn_flush(w->c); /* nothing staged: 0 */
    for (int i = 0; i < 3; i++)
        w->rc[1] |= mio_conn_write(w->c, pat + i * 10, 10);
    w->pending[0] = mio_conn_pending(w->c);
    w->peer_got[0] = recv_now(w->peer, buf, sizeof(buf));
    w->rc[2] = mio_conn_flush(w->c);
    w->pending[1] = mio_conn_pending(w->c);
    w->peer_got[1] = recv_now(w->peer, buf, sizeof(buf));
    w->rc[3] = memcmp(buf, pat, 30) == 0 ? 0 : 1;
    w->rc[4] = mio_conn_write(w->c, pat + 30, 10);
    w->rc[5] = mio_conn_write(w->c, pat + 40, 10);
    w->pending[2] = mio_conn_pending(w->c);
    w->peer_got[2] = recv_now(w->peer, buf, sizeof(buf));
}

static void test_coalesce_boundary_flush(void **state)
{
    static struct wconn w;

    (void)state;
    wconn_open_seq(&w);
    w.script = script_boundary;
    trigger(&w);
    RUN_UNTIL(w.pending[0] != 0, DEADLINE_MS);
    assert_int_equal(w.rc[0], 0);
    assert_int_equal(w.pending[0], 16384);
    assert_int_equal(w.peer_got[0], -EAGAIN);
    assert_int_equal(w.rc[1], 0);
    assert_int_equal(w.pending[1], 0);
    assert_int_equal(w.peer_got[1], 32769);
    assert_int_equal(w.rc[2], 0);
    assert_int_equal(w.rc[3], 0);
    assert_int_equal(w.pending[2], 5);
    assert_int_equal(w.peer_got[2], -EAGAIN);
    expect_record(w.peer, 32769, 5);
    expect_no_record(w.peer);

    memset(w.rc, 0, sizeof(w.rc));
    memset(w.pending, 0, sizeof(w.pending));
    w.script = script_flush;
    trigger(&w);
    RUN_UNTIL(w.pending[0] != 0, DEADLINE_MS);
    assert_int_equal(w.rc[0], 0);
    assert_int_equal(w.rc[1], 0);
    assert_int_equal(w.pending[0], 30);
    assert_int_equal(w.peer_got[0], -EAGAIN);
    assert_int_equal(w.rc[2], 0);
    assert_int_equal(w.pending[1], 0);
    assert_int_equal(w.peer_got[1], 30); /* the peer had it inside on_read */
    assert_int_equal(w.rc[3], 0);
    assert_int_equal(w.rc[4], 0);
    assert_int_equal(w.rc[5], 0);
    assert_int_equal(w.pending[2], 20);
    assert_int_equal(w.peer_got[2], -EAGAIN);
    expect_record(w.peer, 30, 20);
    expect_no_record(w.peer);
    assert_int_equal(mio_conn_flush(w.c), 0); /* outside callbacks, nothing staged */
    assert_int_equal(mio_conn_flush(NULL), -EINVAL);
    wconn_close(&w);
}

/* tasks, timers, I/O handlers and on_close stage too */
static void script_3x10(struct wconn *w)
{
    static unsigned char buf[64];

    w->rc[0] = 0;
    for (int i = 0; i < 3; i++)
        w->rc[0] |= mio_conn_write(w->c, pat + i * 10, 10);
    w->pending[0] = mio_conn_pending(w->c);
    w->peer_got[0] = recv_now(w->peer, buf, sizeof(buf));
    w->step++;
}

static void task_write(mio_reactor *rr, void *arg)
{
    (void)rr;
    script_3x10(arg);
}

static void timer_write(mio_reactor *rr, mio_timer_id id, void *arg)
{
    (void)rr;
    (void)id;
    script_3x10(arg);
}

static void io_write(mio_reactor *rr, mio_token t, const mio_event *ev, void *arg)
{
    struct wconn *w = arg;
    char b[8];

    (void)rr;
    (void)t;
    (void)ev;
    if (read(w->rc[7], b, sizeof(b)) > 0)
        script_3x10(w);
}

static void task_write_ab(mio_reactor *rr, void *arg)
{
    struct wconn *a = arg, *b = a->other;

    (void)rr;
    for (int i = 0; i < 8; i++) {
        a->rc[0] |= mio_conn_write(a->c, pat + i * 10, 5);
        a->rc[0] |= mio_conn_write(b->c, pat + i * 10 + 5, 5);
    }
    a->pending[0] = mio_conn_pending(a->c);
    a->pending[1] = mio_conn_pending(b->c);
    a->step++;
}

static void expect_staged_then_one(struct wconn *w, int step)
{
    RUN_UNTIL(w->step == step, DEADLINE_MS);
    assert_int_equal(w->rc[0], 0);
    assert_int_equal(w->pending[0], 30);
    assert_int_equal(w->peer_got[0], -EAGAIN);
    assert_int_equal(mio_conn_pending(w->c), 0);
    expect_record(w->peer, 0, 30);
    expect_no_record(w->peer);
}

static void test_coalesce_contexts(void **state)
{
    static struct wconn w, h, a, b;
    int pfd[2];
    mio_token tok;

    (void)state;
    wconn_open_seq(&w);
    assert_int_equal(mio_reactor_post(g_r, task_write, &w), 0);
    expect_staged_then_one(&w, 1);
    assert_int_equal(mio_reactor_timer_start(g_r, 0, 0, timer_write, &w, NULL), 0);
    expect_staged_then_one(&w, 2);
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(mio_set_nonblocking(pfd[0], true), 0);
    w.rc[7] = pfd[0];
    assert_int_equal(mio_reactor_add(g_r, pfd[0], MIO_READABLE, io_write, &w, &tok), 0);
    assert_int_equal(write(pfd[1], "x", 1), 1);
    expect_staged_then_one(&w, 3);
    assert_int_equal(mio_reactor_remove(g_r, tok), 0);
    close(pfd[0]);
    close(pfd[1]);
    /* another conn's on_close writes to w */
    wconn_open_seq(&h);
    h.other = &w;
    h.script = script_3x10;
    mio_conn_close(h.c);
    expect_staged_then_one(&w, 4);
    assert_int_equal(h.closes, 1);
    close(h.peer);

    /* two conns written alternately in one task: one send each, each conn's bytes in order */
    wconn_open_seq(&a);
    wconn_open_seq(&b);
    a.other = &b;
    assert_int_equal(mio_reactor_post(g_r, task_write_ab, &a), 0);
    RUN_UNTIL(a.step == 1, DEADLINE_MS);
    assert_int_equal(a.rc[0], 0);
    assert_int_equal(a.pending[0], 5 * 8);
    assert_int_equal(a.pending[1], 5 * 8);
    {
        static unsigned char buf[256], want[256];

        for (int i = 0; i < 8; i++) {
            memcpy(want + i * 5, pat + i * 10, 5);
            memcpy(want + 128 + i * 5, pat + i * 10 + 5, 5);
        }
        assert_int_equal(recv_now(a.peer, buf, sizeof(buf)), 40);
        assert_memory_equal(buf, want, 40);
        assert_int_equal(recv_now(b.peer, buf, sizeof(buf)), 40);
        assert_memory_equal(buf, want + 128, 40);
    }
    expect_no_record(a.peer);
    expect_no_record(b.peer);
    a.other = NULL;
    wconn_close(&a);
    wconn_close(&b);
    wconn_close(&w);
}

/* ---- order: small (staged) and large (at once) writes interleaved, from on_read, tasks,
 * timers and outside callbacks, over TCP with a small send buffer so the queue is used too;
 * every byte checked at the peer ---- */

#define BIGPAT_LEN (4u * 1024u * 1024u)
static unsigned char *bigpat;

static const size_t order_sizes[] = {10,    20000, 5,  7,     17000, 16384, 16385, 1,
                                     100000, 3,    4096, 70000, 2,   16383, 40000, 9};
#define NORDER (sizeof(order_sizes) / sizeof(order_sizes[0]))

struct oconn {
    mio_conn *c;
    size_t off; /* pattern bytes written so far */
    int rc;
    int closes, reason;
    int rounds;
};

static void order_round(struct oconn *o)
{
    for (size_t i = 0; i < NORDER; i++) {
        size_t n = order_sizes[i];

        assert_true(o->off + n <= BIGPAT_LEN);
        if (i % 5 == 4) { /* some as a writev of two parts */
            struct iovec iov[2] = {{bigpat + o->off, n / 2}, {bigpat + o->off + n / 2, n - n / 2}};

            o->rc |= mio_conn_writev(o->c, iov, 2);
        } else {
            o->rc |= mio_conn_write(o->c, bigpat + o->off, n);
        }
        o->off += n;
    }
    o->rounds++;
}

static void o_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)c;
    (void)data;
    if (len > 0)
        order_round(arg);
}

static void o_on_close(mio_conn *c, int reason, void *arg)
{
    struct oconn *o = arg;

    (void)c;
    o->closes++;
    o->reason = reason;
}

static const mio_conn_ops o_ops = {o_on_read, o_on_close, NULL};

static void o_task(mio_reactor *rr, void *arg)
{
    (void)rr;
    order_round(arg);
}

static void o_timer(mio_reactor *rr, mio_timer_id id, void *arg)
{
    (void)rr;
    (void)id;
    order_round(arg);
}

struct oreader {
    int fd;
    size_t got;
    bool bad;
};

static void *oreader_main(void *arg)
{
    struct oreader *rd = arg;
    unsigned char *buf = malloc(65536);

    for (;;) {
        ssize_t n = recv(rd->fd, buf, 65536, 0);

        if (n <= 0)
            break;
        if (rd->got + (size_t)n > BIGPAT_LEN || memcmp(buf, bigpat + rd->got, (size_t)n) != 0)
            rd->bad = true;
        rd->got += (size_t)n;
    }
    free(buf);
    return NULL;
}

static void test_coalesce_order(void **state)
{
    static struct oconn o;
    struct oreader rd = {0};
    pthread_t th;
    int peer, srv, small = 16 * 1024;

    (void)state;
    memset(&o, 0, sizeof(o));
    tcp_pair(&peer, &srv);
    assert_int_equal(setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(mio_conn_open(g_r, srv, &o_ops, &o, &o.c), 0);
    assert_int_equal(mio_conn_set_watermarks(o.c, 0, SIZE_MAX), 0);
    rd.fd = peer;
    assert_int_equal(pthread_create(&th, NULL, oreader_main, &rd), 0);
    order_round(&o); /* outside callbacks */
    for (int i = 0; i < 3; i++) {
        int want = o.rounds + 1;

        assert_int_equal(send(peer, "t", 1, 0), 1);
        RUN_UNTIL(o.rounds == want, DEADLINE_MS);
        assert_int_equal(mio_reactor_post(g_r, o_task, &o), 0);
        RUN_UNTIL(o.rounds == want + 1, DEADLINE_MS);
        assert_int_equal(mio_reactor_timer_start(g_r, 0, 0, o_timer, &o, NULL), 0);
        RUN_UNTIL(o.rounds == want + 2, DEADLINE_MS);
        order_round(&o); /* outside again, maybe while bytes are queued */
    }
    assert_int_equal(o.rc, 0);
    mio_conn_close(o.c); /* flushed first */
    RUN_UNTIL(o.closes == 1, 60000);
    assert_int_equal(o.reason, 0);
    pthread_join(th, NULL);
    assert_false(rd.bad);
    assert_int_equal(rd.got, o.off);
    close(peer);
}

/* ---- close after staged writes: the bytes, then EOF; on_close(0) after the callback ---- */

static void script_write_close(struct wconn *w)
{
    for (int i = 0; i < 3; i++)
        w->rc[0] |= mio_conn_write(w->c, pat + i * 10, 10);
    mio_conn_close(w->c);
    w->rc[1] = w->closes; /* not inside the call */
    w->pending[0] = mio_conn_pending(w->c);
    w->rc[2] = mio_conn_write(w->c, "z", 1);
    w->step++;
}

static void test_close_after_staged(void **state)
{
    static struct wconn w;
    char b[8];

    (void)state;
    wconn_open_seq(&w);
    w.script = script_write_close;
    trigger(&w);
    RUN_UNTIL(w.closes == 1, DEADLINE_MS);
    assert_int_equal(w.step, 1);
    assert_int_equal(w.rc[0], 0);
    assert_int_equal(w.rc[1], 0);
    assert_int_equal(w.pending[0], 30);
    assert_int_equal(w.rc[2], -EPIPE);
    assert_int_equal(w.reason, 0);
    assert_false(w.close_in_cb);
    expect_record(w.peer, 0, 30); /* one send */
    assert_int_equal(recv_now(w.peer, b, sizeof(b)), 0); /* then EOF */
    close(w.peer);
}

/* ================================================================ on_close deferral */

enum dctx { D_OUTSIDE, D_OWN_READ, D_OTHER_READ, D_TASK, D_TIMER, D_OTHER_CLOSE, D_DRAIN, D_N };
enum dact { A_CLOSE, A_FAIL_WRITE, A_FAIL_FLUSH, A_N };
static const char *const dctx_names[D_N] = {"outside",  "own on_read",     "other on_read", "task",
                                            "timer",    "other on_close", "on_drain"};

struct dconn {
    mio_conn *c;
    int peer, fd;
    int closes, reason;
    bool is_target;
};

static struct {
    struct dconn t, h; /* target, helper */
    enum dctx where;
    enum dact act;
    bool in_call;      /* the action is on the stack */
    bool close_in_call; /* the target's on_close ran inside it */
    bool done;
    int rc;
    int closes_at_return;
    bool fd_ok;
    int write_after, setter_after;
    int closes_after_second;
} D;

static unsigned char junk[64 * 1024];

static void d_action(void)
{
    struct dconn *t = &D.t;

    if (D.done)
        return;
    D.done = true;
    if (D.act != A_CLOSE) {
        rst_close(t->peer);
        t->peer = -1;
        wait_error(t->fd);
    }
    D.in_call = true;
    switch (D.act) {
    case A_CLOSE:
        mio_conn_close(t->c);
        D.rc = 0;
        break;
    case A_FAIL_WRITE: /* over 16 KiB: sent at once in every context */
        D.rc = mio_conn_write(t->c, junk, sizeof(junk));
        break;
    case A_FAIL_FLUSH: /* small: staged in callbacks, then flushed; sent at once outside */
        D.rc = mio_conn_write(t->c, junk, 10);
        if (D.rc == 0)
            D.rc = mio_conn_flush(t->c);
        break;
    case A_N:
        break;
    }
    D.in_call = false;
    D.closes_at_return = t->closes;
    D.fd_ok = mio_conn_fd(t->c) == t->fd;
    D.write_after = mio_conn_write(t->c, "x", 1);
    D.setter_after = mio_conn_set_deadline(t->c, 100);
    mio_conn_close(t->c); /* does nothing now */
    D.closes_after_second = t->closes;
}

static void d_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct dconn *d = arg;

    (void)c;
    (void)data;
    if (len == 0)
        return;
    if ((d->is_target && D.where == D_OWN_READ) || (!d->is_target && D.where == D_OTHER_READ))
        d_action();
}

static void d_on_close(mio_conn *c, int reason, void *arg)
{
    struct dconn *d = arg;

    (void)c;
    d->closes++;
    d->reason = reason;
    if (d->is_target && D.in_call)
        D.close_in_call = true;
    if (!d->is_target && D.where == D_OTHER_CLOSE)
        d_action();
}

static void d_on_drain(mio_conn *c, void *arg)
{
    struct dconn *d = arg;

    (void)c;
    if (!d->is_target && D.where == D_DRAIN)
        d_action();
}

static const mio_conn_ops d_ops = {d_on_read, d_on_close, d_on_drain};

static void d_task(mio_reactor *rr, void *arg)
{
    (void)rr;
    (void)arg;
    d_action();
}

static void d_timer(mio_reactor *rr, mio_timer_id id, void *arg)
{
    (void)rr;
    (void)id;
    (void)arg;
    d_action();
}

static void d_open(struct dconn *d, bool target)
{
    int srv;

    memset(d, 0, sizeof(*d));
    d->is_target = target;
    tcp_pair(&d->peer, &srv);
    d->fd = srv;
    assert_int_equal(mio_conn_open(g_r, srv, &d_ops, d, &d->c), 0);
}

static void deferral_case(enum dctx where, enum dact act)
{
    memset(&D, 0, sizeof(D));
    D.where = where;
    D.act = act;
    d_open(&D.t, true);
    d_open(&D.h, false);
    switch (where) {
    case D_OUTSIDE:
        d_action();
        break;
    case D_OWN_READ:
        assert_int_equal(send(D.t.peer, "r", 1, 0), 1);
        break;
    case D_OTHER_READ:
        assert_int_equal(send(D.h.peer, "r", 1, 0), 1);
        break;
    case D_TASK:
        assert_int_equal(mio_reactor_post(g_r, d_task, NULL), 0);
        break;
    case D_TIMER:
        assert_int_equal(mio_reactor_timer_start(g_r, 0, 0, d_timer, NULL, NULL), 0);
        break;
    case D_OTHER_CLOSE:
        mio_conn_close(D.h.c);
        break;
    case D_DRAIN: {
        /* the helper queues more than its high mark; the peer then reads it all: on_drain */
        int small = 4096;
        unsigned long long until = mio_test_now_ms() + DEADLINE_MS;
        static unsigned char sink[65536];

        assert_int_equal(setsockopt(D.h.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        assert_int_equal(mio_conn_set_watermarks(D.h.c, 0, 1024), 0);
        for (int i = 0; i < 8; i++)
            assert_int_equal(mio_conn_write(D.h.c, junk, sizeof(junk)), 0);
        assert_true(mio_conn_pending(D.h.c) > 1024);
        while (!D.done && mio_test_now_ms() < until) {
            while (recv_now(D.h.peer, sink, sizeof(sink)) > 0) {
            }
            assert_true(mio_reactor_run_once(g_r, 1) >= 0);
        }
        break;
    }
    case D_N:
        break;
    }
    RUN_UNTIL(D.done, DEADLINE_MS);
    if (act != A_CLOSE && D.rc == 0)
        fail_msg("%s: the write to a reset peer returned 0", dctx_names[where]);
    if (D.closes_at_return != 0 || D.close_in_call)
        fail_msg("%s, action %d: on_close ran inside the call", dctx_names[where], (int)act);
    assert_int_equal(D.closes_after_second, 0);
    assert_true(D.fd_ok);
    assert_int_equal(D.write_after, -EPIPE);
    assert_int_equal(D.setter_after, -EPIPE);
    RUN_UNTIL(D.t.closes == 1, DEADLINE_MS);
    run_for(20);
    assert_int_equal(D.t.closes, 1);
    if (act == A_CLOSE) {
        assert_int_equal(D.t.reason, 0);
    } else {
        assert_true(D.rc == -ECONNRESET || D.rc == -EPIPE);
        assert_int_equal(D.t.reason, D.rc);
    }
    if (D.h.closes == 0) {
        mio_conn_close(D.h.c);
        RUN_UNTIL(D.h.closes == 1, DEADLINE_MS);
    }
    assert_int_equal(D.h.closes, 1);
    if (D.t.peer >= 0)
        close(D.t.peer);
    close(D.h.peer);
}

static void test_close_deferral(void **state)
{
    (void)state;
    for (int where = 0; where < D_N; where++)
        for (int act = 0; act < A_N; act++)
            deferral_case((enum dctx)where, (enum dact)act);
}

/* ================================================================ deadline */

/* One run of the trickle scenario. Returns false, with nothing asserted about timing, when this
 * thread itself stalled so long that the trickle did not happen as planned (a gap over 150 ms
 * between two sends, or the move at i == 2 later than 150 ms): on a loaded machine the idle
 * timeout then fires legitimately. The caller runs it again. */
static bool deadline_round(void)
{
    static struct dconn idle, dl, mv, clr, cl;
    unsigned long long t0, fired = 0, mv_fired = 0, last = 0, gap = 0, moved_at = 0;
    static unsigned char sink[64];
    bool valid;

    memset(&D, 0, sizeof(D));
    D.where = D_N; /* no action anywhere */
    d_open(&idle, false);
    d_open(&dl, false);
    d_open(&mv, false);
    d_open(&clr, false);
    d_open(&cl, false);
    assert_int_equal(mio_conn_set_deadline(NULL, 10), -EINVAL);
    assert_true(mio_reactor_run_once(g_r, 0) >= 0); /* a fresh reactor clock */
    assert_int_equal(mio_conn_set_idle_timeout(idle.c, 300), 0);
    assert_int_equal(mio_conn_set_idle_timeout(dl.c, 300), 0);
    t0 = mio_test_now_ms();
    assert_int_equal(mio_conn_set_deadline(dl.c, 400), 0);
    assert_int_equal(mio_conn_set_deadline(mv.c, 200), 0);
    assert_int_equal(mio_conn_set_deadline(clr.c, 200), 0);
    assert_int_equal(mio_conn_set_deadline(clr.c, 0), 0); /* cleared */
    assert_int_equal(mio_conn_set_deadline(clr.c, 0), 0);
    /* ~1.2 s of one byte every 50 ms to idle, dl and mv; clr gets nothing and has no timer */
    for (int i = 0; i < 24; i++) {
        unsigned long long now = mio_test_now_ms();

        if (last != 0 && now - last > gap)
            gap = now - last;
        last = now;
        if (idle.closes == 0)
            assert_int_equal(send(idle.peer, "k", 1, MSG_NOSIGNAL), 1);
        if (dl.closes == 0)
            assert_int_equal(send(dl.peer, "k", 1, MSG_NOSIGNAL), 1);
        if (mv.closes == 0)
            assert_int_equal(send(mv.peer, "k", 1, MSG_NOSIGNAL), 1);
        if (i == 2 && mv.closes == 0) { /* at ~100 ms: moved to ~500 ms */
            moved_at = now - t0;
            assert_int_equal(mio_conn_set_deadline(mv.c, 400), 0);
        }
        while (mio_test_now_ms() < now + 50) {
            assert_true(mio_reactor_run_once(g_r, 5) >= 0);
            if (dl.closes > 0 && fired == 0)
                fired = mio_test_now_ms() - t0;
            if (mv.closes > 0 && mv_fired == 0)
                mv_fired = mio_test_now_ms() - t0;
        }
    }
    valid = gap <= 150 && moved_at != 0 && moved_at <= 150;
    if (valid) {
        assert_int_equal(idle.closes, 0); /* the trickle keeps the idle timeout off */
        assert_int_equal(clr.closes, 0);
        assert_int_equal(dl.closes, 1);
        assert_int_equal(dl.reason, -ETIMEDOUT);
        if (fired < 350 || fired > 2000)
            fail_msg("deadline 400 ms fired after %llu ms", fired);
        assert_int_equal(mv.closes, 1);
        assert_int_equal(mv.reason, -ETIMEDOUT);
        if (mv_fired < 450 || mv_fired > 2000)
            fail_msg("deadline moved to ~500 ms fired after %llu ms", mv_fired);
        assert_true(recv(dl.peer, sink, sizeof(sink), 0) >= 0); /* the peer sees the close */
        /* closing: -EPIPE */
        mio_conn_close(cl.c);
        assert_int_equal(mio_conn_set_deadline(cl.c, 100), -EPIPE);
        assert_int_equal(mio_conn_set_deadline(cl.c, 0), -EPIPE);
        RUN_UNTIL(cl.closes == 1, DEADLINE_MS);
        /* silence now: idle times out by itself */
        RUN_UNTIL(idle.closes == 1, DEADLINE_MS);
        assert_int_equal(idle.reason, -ETIMEDOUT);
    }
    {
        struct dconn *all[5] = {&idle, &dl, &mv, &clr, &cl};

        for (int i = 0; i < 5; i++) {
            if (all[i]->closes == 0) {
                mio_conn_close(all[i]->c);
                RUN_UNTIL(all[i]->closes == 1, DEADLINE_MS);
            }
            close(all[i]->peer);
        }
    }
    if (valid)
        assert_int_equal(clr.reason, 0);
    return valid;
}

static void test_deadline(void **state)
{
    (void)state;
    for (int attempt = 0;; attempt++) {
        if (deadline_round())
            return;
        if (attempt == 4)
            fail_msg("this thread stalled in 5 runs of the trickle: the machine is too loaded");
    }
}

/* A deadline set outside callbacks, after the reactor has not run for a while, still counts from
 * the call ("ms from now"), not from the reactor's last wait. */
static void test_deadline_after_idle_reactor(void **state)
{
    static struct dconn c;
    unsigned long long t0, fired = 0;

    (void)state;
    memset(&D, 0, sizeof(D));
    D.where = D_N;
    d_open(&c, false);
    assert_true(mio_reactor_run_once(g_r, 0) >= 0);
    usleep(300 * 1000); /* the application does other work; the reactor's clock is not read */
    t0 = mio_test_now_ms();
    assert_int_equal(mio_conn_set_deadline(c.c, 400), 0);
    {
        unsigned long long until = t0 + 5000;

        while (c.closes == 0 && mio_test_now_ms() < until)
            assert_true(mio_reactor_run_once(g_r, 5) >= 0);
        fired = mio_test_now_ms() - t0;
    }
    close(c.peer); /* before the checks: a failure must not also leak the fd */
    assert_int_equal(c.closes, 1);
    assert_int_equal(c.reason, -ETIMEDOUT);
    if (fired < 350)
        fail_msg("mio_conn_set_deadline(c, 400) fired %llu ms after the call", fired);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_split_every_byte_len, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_every_byte_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_at_a_time_and_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_boundary_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_contexts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_after_staged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_deferral, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_after_idle_reactor, setup, teardown),
    };

    mio_test_watchdog(280);
    signal(SIGPIPE, SIG_IGN);
    srand(777);
    for (size_t i = 0; i < sizeof(pat); i++)
        pat[i] = (unsigned char)(rand() >> 7);
    bigpat = malloc(BIGPAT_LEN);
    if (bigpat == NULL)
        return 1;
    for (size_t i = 0; i < BIGPAT_LEN; i++)
        bigpat[i] = (unsigned char)(rand() >> 7);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
