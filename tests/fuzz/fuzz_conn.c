/* libFuzzer harness for mio_conn's read path with random segmentation. The input is a script run
 * against an echo conn on one end of a unix stream socketpair (the peer is this code):
 *   byte 0        watermarks: high = 1 KiB << (b % 8), low = high >> (1 + b / 8 % 4)
 *   byte 1        the conn's SO_SNDBUF: 4 KiB << (b % 6) (small buffers force queueing)
 *   then ops      0x00-0xbf: send the next (op % 64 + 1) * (1 + op / 64 * 15) script bytes
 *                 0xc0-0xdf: run the reactor (op & 7) + 1 times without reading the echo
 *                 0xe0-0xef: read the echo (what is there), verify it
 *                 0xf0-0xff: half-close: shutdown(SHUT_WR) and stop sending
 * At the end the peer half-closes (if it has not) and drains: every byte sent must come back in
 * order, then EOF (the conn shuts down after the peer's FIN), and on_close runs once with 0.
 * Built by `make fuzz` with -fsanitize=fuzzer,address; the reactor is made once per process. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <mio/mio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mio_reactor *r;

struct state {
    int closes, reason, reads_after_eof;
    int eof_seen;
};

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_conn: %s\n", what);
    abort();
}

static void on_read(mio_conn *c, const void *buf, size_t len, void *arg)
{
    struct state *st = arg;

    if (st->eof_seen)
        st->reads_after_eof++;
    if (len == 0) {
        st->eof_seen = 1;
        if (mio_conn_shutdown(c) < 0)
            fail("shutdown after EOF failed");
        return;
    }
    if (mio_conn_write(c, buf, len) != 0)
        fail("echo write failed");
}

static void on_close(mio_conn *c, int reason, void *arg)
{
    struct state *st = arg;

    (void)c;
    st->closes++;
    st->reason = reason;
}

static const mio_conn_ops ops = {on_read, on_close, NULL};

/* libFuzzer's -timeout runs a SIGALRM timer, so a wait may end with -EINTR. */
static void run(int timeout_ms)
{
    int rc = mio_reactor_run_once(r, timeout_ms);

    if (rc < 0 && rc != -EINTR) {
        fprintf(stderr, "fuzz_conn: run_once: %s\n", mio_strerror(rc));
        abort();
    }
}

/* Reads what the conn echoed so far and checks it against the bytes sent. */
static int drain(int fd, const uint8_t *sent, size_t nsent, size_t *got)
{
    uint8_t buf[65536];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

        if (n == 0)
            return 1; /* EOF */
        if (n < 0)
            return 0;
        if (*got + (size_t)n > nsent || memcmp(buf, sent + *got, (size_t)n) != 0)
            fail("echo differs from what was sent");
        *got += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct state st = {0};
    uint8_t *sent = malloc(size + 1);
    size_t nsent = 0, got = 0, i = 2;
    int fds[2], sndbuf, eof = 0, wr_closed = 0;
    mio_conn *c;

    if (r == NULL && mio_reactor_new(NULL, &r) < 0)
        fail("reactor");
    if (size < 2) {
        free(sent);
        return 0;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
        fail("socketpair");
    sndbuf = 4096 << (data[1] % 6);
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (mio_conn_open(r, fds[0], &ops, &st, &c) != 0)
        fail("open");
    {
        size_t high = (size_t)1024 << (data[0] % 8), low = high >> (1 + data[0] / 8 % 4);

        if (mio_conn_set_watermarks(c, low, high) != 0)
            fail("watermarks");
    }
    while (i < size && !eof) {
        uint8_t op = data[i++];

        if (op < 0xc0) {
            size_t want = (size_t)(op % 64 + 1) * (1 + op / 64 * 15), n;
            ssize_t k;

            if (wr_closed)
                continue;
            n = want < size - i ? want : size - i;
            if (n == 0)
                continue;
            k = send(fds[1], data + i, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k > 0) {
                memcpy(sent + nsent, data + i, (size_t)k);
                nsent += (size_t)k;
                i += (size_t)k;
            }
            run(0);
        } else if (op < 0xe0) {
            for (int k = 0; k <= (op & 7); k++)
                run(0);
        } else if (op < 0xf0) {
            eof = drain(fds[1], sent, nsent, &got);
        } else if (!wr_closed) {
            shutdown(fds[1], SHUT_WR);
            wr_closed = 1;
        }
    }
    if (!wr_closed)
        shutdown(fds[1], SHUT_WR);
    for (int spins = 0; !eof; spins++) {
        if (spins > 100000)
            fail("echo never completed");
        run(10);
        eof = drain(fds[1], sent, nsent, &got);
    }
    if (got != nsent)
        fail("EOF before every byte came back");
    if (!st.eof_seen || st.reads_after_eof != 0)
        fail("EOF not delivered exactly once, last");
    /* both directions are shut: closing the conn now tears it down at once; its on_close(0)
     * never runs inside the call, but in the reactor's next iteration */
    if (st.closes == 0) {
        mio_conn_close(c);
        if (st.closes != 0)
            fail("on_close ran inside mio_conn_close");
        run(0);
    }
    if (st.closes != 1 || st.reason != 0)
        fail("on_close not exactly once with 0");
    close(fds[1]);
    free(sent);
    return 0;
}
