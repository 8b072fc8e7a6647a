/* Load driver for tests/test_examples.sh.
 *
 *   echo_clients tcp ADDR N BYTES   N concurrent TCP clients on one mio_poll: each sends BYTES of
 *                                   its own pattern, shuts down writing, and must read back exactly
 *                                   those bytes followed by EOF.
 *   echo_clients udp ADDR N         N datagrams, a window at a time, each must come back intact
 *                                   (lost ones are re-sent).
 * Exits 0 when every check passed, 1 otherwise (with a message), within 120 s. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mio/mio.h>

#define LIMIT_MS 120000

struct client {
    int fd;
    size_t sent, recvd;
    bool shut, done;
};

static unsigned long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

static unsigned char pattern(size_t client, size_t off)
{
    return (unsigned char)((off * 7u + client * 13u + (off >> 9)) & 0xff);
}

static int die(const char *what, long id, long r)
{
    fprintf(stderr, "echo_clients: %s (client %ld): %s\n", what, id, mio_strerror((int)r));
    return 1;
}

static int run_tcp(const mio_addr *addr, long n, size_t bytes)
{
    struct client *cl = calloc((size_t)n, sizeof *cl);
    unsigned char buf[16384];
    mio_poll *poll;
    mio_events *events;
    long done = 0;
    int rc = 1;
    unsigned long long end = now_ms() + LIMIT_MS;

    if (cl == NULL || mio_poll_new(&poll) < 0 || mio_events_new(1024, &events) < 0)
        return die("setup", -1, -ENOMEM);
    for (long i = 0; i < n; i++) {
        cl[i].fd = mio_tcp_stream_connect(addr);
        if (cl[i].fd < 0)
            return die("connect", i, cl[i].fd);
        int r = mio_registry_register(mio_poll_registry(poll), cl[i].fd, (mio_token)i,
                                      MIO_READABLE | MIO_WRITABLE);
        if (r < 0)
            return die("register", i, r);
    }
    while (done < n) {
        if (now_ms() > end) {
            fprintf(stderr, "echo_clients: timed out with %ld of %ld clients done\n", done, n);
            goto out;
        }
        int r = mio_poll_poll(poll, events, 1000);
        if (r < 0 && r != -EINTR)
            return die("poll", -1, r);
        MIO_EVENTS_FOREACH(const mio_event *ev, events)
        {
            long i = (long)mio_event_token(ev);
            struct client *c = &cl[i];
            if (c->done)
                continue;
            if (mio_event_is_error(ev)) {
                int e = mio_socket_take_error(c->fd);
                if (e < 0)
                    return die("socket error", i, e);
            }
            while (mio_event_is_writable(ev) && c->sent < bytes) {
                size_t k = bytes - c->sent < sizeof buf ? bytes - c->sent : sizeof buf;
                for (size_t j = 0; j < k; j++)
                    buf[j] = pattern((size_t)i, c->sent + j);
                ssize_t s = mio_send(c->fd, buf, k);
                if (s == -EAGAIN)
                    break;
                if (s < 0)
                    return die("send", i, s);
                c->sent += (size_t)s;
            }
            if (c->sent == bytes && !c->shut) {
                int s = mio_socket_shutdown(c->fd, SHUT_WR);
                if (s < 0)
                    return die("shutdown", i, s);
                c->shut = true;
            }
            for (;;) {
                ssize_t got = mio_recv(c->fd, buf, sizeof buf);
                if (got == -EAGAIN)
                    break;
                if (got < 0)
                    return die("recv", i, got);
                if (got == 0) {
                    if (c->recvd != bytes) {
                        fprintf(stderr, "echo_clients: client %ld: EOF after %zu of %zu bytes\n",
                                i, c->recvd, bytes);
                        goto out;
                    }
                    c->done = true;
                    done++;
                    break;
                }
                for (ssize_t j = 0; j < got; j++) {
                    if (c->recvd + (size_t)j >= bytes ||
                        buf[j] != pattern((size_t)i, c->recvd + (size_t)j)) {
                        fprintf(stderr, "echo_clients: client %ld: wrong byte at %zu\n", i,
                                c->recvd + (size_t)j);
                        goto out;
                    }
                }
                c->recvd += (size_t)got;
            }
        }
    }
    printf("echo_clients: %ld tcp clients each got their %zu bytes back\n", n, bytes);
    rc = 0;
out:
    for (long i = 0; i < n; i++)
        close(cl[i].fd);
    free(cl);
    mio_events_free(events);
    mio_poll_free(poll);
    return rc;
}

#define WINDOW 32

static size_t dgram_fill(unsigned char *b, long id)
{
    size_t len = 8 + (size_t)(id % 1000);
    memcpy(b, &id, sizeof id);
    for (size_t j = sizeof id; j < len; j++)
        b[j] = pattern((size_t)id, j);
    return len;
}

static int run_udp(const mio_addr *addr, long n)
{
    mio_addr any;
    unsigned char buf[2048], want[2048];
    unsigned long long *sent_at = calloc((size_t)n, sizeof *sent_at);
    bool *got = calloc((size_t)n, sizeof *got);
    long next = 0, received = 0, resent = 0;
    mio_poll *poll;
    mio_events *events;
    unsigned long long end = now_ms() + LIMIT_MS;
    int fd, rc = 1;

    mio_addr_parse(addr->u.sa.sa_family == AF_INET6 ? "[::]:0" : "0.0.0.0:0", &any);
    if (sent_at == NULL || got == NULL || mio_poll_new(&poll) < 0 ||
        mio_events_new(64, &events) < 0)
        return die("setup", -1, -ENOMEM);
    fd = mio_udp_bind(&any);
    if (fd < 0)
        return die("bind", -1, fd);
    if (mio_registry_register(mio_poll_registry(poll), fd, 0, MIO_READABLE) < 0)
        return die("register", -1, -EINVAL);
    while (received < n) {
        unsigned long long now = now_ms();
        if (now > end) {
            fprintf(stderr, "echo_clients: udp timed out, %ld of %ld back\n", received, n);
            goto out;
        }
        /* Keep WINDOW datagrams in flight; re-send any unanswered for 500 ms. */
        for (long id = 0; id < next; id++)
            if (!got[id] && now - sent_at[id] > 500) {
                size_t len = dgram_fill(buf, id);
                if (mio_udp_send_to(fd, buf, len, addr) == (ssize_t)len) {
                    sent_at[id] = now;
                    resent++;
                }
            }
        while (next < n && next - received < WINDOW) {
            size_t len = dgram_fill(buf, next);
            ssize_t s = mio_udp_send_to(fd, buf, len, addr);
            if (s == -EAGAIN)
                break;
            if (s != (ssize_t)len)
                return die("send_to", next, s);
            sent_at[next++] = now;
        }
        int r = mio_poll_poll(poll, events, 100);
        if (r < 0 && r != -EINTR)
            return die("poll", -1, r);
        for (;;) {
            ssize_t k = mio_udp_recv_from(fd, buf, sizeof buf, NULL);
            long id;
            if (k == -EAGAIN)
                break;
            if (k < (ssize_t)sizeof id)
                return die("recv_from", -1, k < 0 ? k : -EPROTO);
            memcpy(&id, buf, sizeof id);
            if (id < 0 || id >= next) {
                fprintf(stderr, "echo_clients: unexpected datagram id %ld\n", id);
                goto out;
            }
            size_t len = dgram_fill(want, id);
            if ((size_t)k != len || memcmp(buf, want, len) != 0) {
                fprintf(stderr, "echo_clients: datagram %ld came back wrong\n", id);
                goto out;
            }
            if (!got[id]) {
                got[id] = true;
                received++;
            }
        }
    }
    printf("echo_clients: %ld udp datagrams echoed (%ld re-sent)\n", n, resent);
    rc = 0;
out:
    close(fd);
    free(sent_at);
    free(got);
    mio_events_free(events);
    mio_poll_free(poll);
    return rc;
}

int main(int argc, char **argv)
{
    mio_addr addr;
    if (argc >= 4 && mio_addr_parse(argv[2], &addr) == 0) {
        long n = strtol(argv[3], NULL, 10);
        if (strcmp(argv[1], "tcp") == 0 && argc == 5 && n > 0)
            return run_tcp(&addr, n, (size_t)strtoul(argv[4], NULL, 10));
        if (strcmp(argv[1], "udp") == 0 && argc == 4 && n > 0)
            return run_udp(&addr, n);
    }
    fprintf(stderr, "usage: echo_clients tcp ADDR N BYTES | udp ADDR N\n");
    return 2;
}
