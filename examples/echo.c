/* Single-threaded TCP echo server on one mio_poll.
 *
 *   mio-echo [--listen ADDR]
 *
 * Prints the bound address first (so --listen 127.0.0.1:0 works). Connections live in a token
 * table (a growable array with a free list; token = CONN_BASE + index). Each readable edge reads
 * into one 64 KiB buffer and writes back what it read; bytes the socket does not take are kept,
 * reading pauses (interest WRITABLE only) and resumes once they are flushed. A short read means
 * the socket is drained (no extra read for EAGAIN) unless the event also says read-closed, in
 * which case reading goes on to see the EOF. EOF or an error closes the connection. Events for
 * unknown tokens are ignored. Out of fds (EMFILE/ENFILE), accepting pauses until a connection
 * closes or 100 ms pass, so the backlog is served without waiting for a new client; failures are
 * reported at most once a second. SIGINT/SIGTERM end it cleanly with a one-line summary. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mio/mio.h>

#include "example_util.h"

enum { SERVER = EXAMPLE_SERVER, SIGNALS = EXAMPLE_SIGNALS, CONN_BASE = 2 };
#define BUF_SIZE 65536

struct conn {
    int fd;           /* -1 when the slot is free */
    long next_free;   /* free list link while free */
    char *pending;    /* unsent bytes (malloc'd), NULL when none */
    size_t plen, poff;
};

struct table {
    struct conn *slots;
    long cap;
    long free_head; /* -1 when empty */
    long open;
};

struct stats {
    unsigned long long accepted, closed, bytes;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: mio-echo [--listen ADDR] [--help]\n"
               "  Single-threaded TCP echo server on one mio_poll.\n"
               "  --listen ADDR   address to bind (default 127.0.0.1:7001; port 0 = any)\n"
               "  Prints the bound address as its first line; SIGINT/SIGTERM stop it.\n");
}

/* Takes a free slot (growing the array when none is left); -1 when out of memory. */
static long table_take(struct table *t)
{
    long i;
    if (t->free_head < 0) {
        long ncap = t->cap ? t->cap * 2 : 64;
        struct conn *n = realloc(t->slots, (size_t)ncap * sizeof *n);
        if (n == NULL)
            return -1;
        for (i = ncap - 1; i >= t->cap; i--) {
            n[i].fd = -1;
            n[i].pending = NULL;
            n[i].next_free = t->free_head;
            t->free_head = i;
        }
        t->slots = n;
        t->cap = ncap;
    }
    i = t->free_head;
    t->free_head = t->slots[i].next_free;
    t->open++;
    return i;
}

static struct conn *table_get(struct table *t, mio_token tok)
{
    if (tok < CONN_BASE || tok - CONN_BASE >= (mio_token)t->cap)
        return NULL;
    struct conn *c = &t->slots[tok - CONN_BASE];
    return c->fd >= 0 ? c : NULL;
}

static void conn_close(struct table *t, mio_registry *reg, long i, struct stats *st)
{
    struct conn *c = &t->slots[i];
    mio_registry_deregister(reg, c->fd);
    close(c->fd);
    free(c->pending);
    c->fd = -1;
    c->pending = NULL;
    c->next_free = t->free_head;
    t->free_head = i;
    t->open--;
    st->closed++;
}

/* Accepts until the backlog is empty or accepting pauses (see example_accept_failed). */
static void accept_all(int lfd, struct table *t, mio_registry *reg, struct stats *st,
                       struct example_accept *acc)
{
    for (;;) {
        int fd = mio_tcp_listener_accept(lfd, NULL);
        if (fd < 0) {
            if (example_accept_failed(acc, fd))
                continue;
            return;
        }
        long i = table_take(t);
        if (i < 0) {
            close(fd);
            continue;
        }
        t->slots[i].fd = fd;
        st->accepted++;
        if (mio_registry_register(reg, fd, CONN_BASE + (mio_token)i, MIO_READABLE) < 0)
            conn_close(t, reg, i, st);
    }
}

/* Sends what is pending; 1 when all is out, 0 when some is left, -errno on failure. */
static int conn_flush(struct conn *c)
{
    while (c->poff < c->plen) {
        ssize_t n = mio_send(c->fd, c->pending + c->poff, c->plen - c->poff);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        c->poff += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->plen = c->poff = 0;
    return 1;
}

/* Echoes what `len` bytes of buf allow; keeps the rest pending. 1 when all sent, 0 when some
 * are pending now, -errno on failure. */
static int conn_echo(struct conn *c, const char *buf, size_t len, struct stats *st)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = mio_send(c->fd, buf + off, len - off);
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        off += (size_t)n;
    }
    st->bytes += off;
    if (off == len)
        return 1;
    c->pending = malloc(len - off);
    if (c->pending == NULL)
        return -ENOMEM;
    memcpy(c->pending, buf + off, len - off);
    c->plen = len - off;
    c->poff = 0;
    return 0;
}

/* Handles one event of a connection; returns < 0 when it must be closed. */
static int conn_event(struct conn *c, mio_registry *reg, mio_token tok, const mio_event *ev,
                      char *buf, struct stats *st)
{
    bool read_closed = mio_event_is_read_closed(ev);
    int r;

    if (c->pending != NULL) {
        if (!mio_event_is_writable(ev) && !mio_event_is_error(ev) &&
            !mio_event_is_write_closed(ev))
            return 0;
        size_t before = c->plen - c->poff;
        r = conn_flush(c);
        if (r < 0)
            return r;
        st->bytes += before - (c->pending ? c->plen - c->poff : 0);
        if (r == 0)
            return 0;
        /* Flushed: read again. MOD re-arms the edge, so data that waited meanwhile is reported. */
        return mio_registry_reregister(reg, c->fd, tok, MIO_READABLE);
    }
    if (!mio_event_is_readable(ev) && !read_closed && !mio_event_is_error(ev))
        return 0;
    for (;;) {
        ssize_t n = mio_recv(c->fd, buf, BUF_SIZE);
        if (n == -EAGAIN)
            return 0;
        if (n == 0)
            return -ECONNRESET; /* EOF: close (the reason is not reported) */
        if (n < 0)
            return (int)n;
        r = conn_echo(c, buf, (size_t)n, st);
        if (r < 0)
            return r;
        if (r == 0) /* unsent bytes: pause reading until they are flushed */
            return mio_registry_reregister(reg, c->fd, tok, MIO_WRITABLE);
        if ((size_t)n < BUF_SIZE && !read_closed)
            return 0; /* short read: drained */
    }
}

int main(int argc, char **argv)
{
    const char *listen_text = "127.0.0.1:7001";
    struct table t = {NULL, 0, -1, 0};
    struct stats st = {0, 0, 0};
    struct example_accept acc;
    struct example_loop l = {.sfd = -1, .fd = -1};
    mio_registry *reg;
    mio_addr addr;
    char *buf = NULL;
    int lfd, sfd, r, status = 1, sig = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_text = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!example_parse_addr("mio-echo", "--listen", listen_text, &addr))
        return 2;
    example_accept_init(&acc, "mio-echo");
    buf = malloc(BUF_SIZE);
    if (buf == NULL) {
        r = -ENOMEM;
        goto err;
    }
    if ((r = example_loop_open(&l, "mio-echo", 1024, mio_tcp_listener_bind, &addr, listen_text)) < 0)
        goto out;
    reg = l.reg;
    lfd = l.fd;
    sfd = l.sfd;

    while (sig == 0) {
        r = mio_poll_poll(l.poll, l.events, example_accept_timeout(&acc, -1));
        if (r == -EINTR)
            continue;
        if (r < 0)
            goto err;
        MIO_EVENTS_FOREACH(const mio_event *ev, l.events)
        {
            mio_token tok = mio_event_token(ev);
            if (tok == SERVER) {
                accept_all(lfd, &t, reg, &st, &acc);
            } else if (tok == SIGNALS) {
                sig = example_signal_read(sfd);
            } else {
                struct conn *c = table_get(&t, tok);
                if (c == NULL)
                    continue; /* unknown or already closed: ignore */
                if (conn_event(c, reg, tok, ev, buf, &st) < 0) {
                    conn_close(&t, reg, (long)(tok - CONN_BASE), &st);
                    example_accept_fd_closed(&acc);
                }
            }
        }
        /* The listener gives no new edge for connections left waiting by a pause. */
        if (example_accept_due(&acc))
            accept_all(lfd, &t, reg, &st, &acc);
    }
    printf("mio-echo: stopped by signal %d: %llu connections accepted, %llu closed, %llu bytes "
           "echoed, %llu accept failures\n",
           sig, st.accepted, st.closed, st.bytes, acc.failures);
    status = 0;
    goto out;

err:
    fprintf(stderr, "mio-echo: %s\n", mio_strerror(r));
out:
    for (long i = 0; i < t.cap; i++)
        if (t.slots[i].fd >= 0) {
            close(t.slots[i].fd);
            free(t.slots[i].pending);
        }
    free(t.slots);
    free(buf);
    example_loop_close(&l);
    return status;
}
