/* mio's tutorial server: one thread, one Poll, a TCP listener that accepts every connection and
 * drops (closes) it at once.
 *
 *   mio-drop [--listen ADDR] [--self-test N]
 *
 * Prints the bound address first (so --listen 127.0.0.1:0 works). With --self-test N it also opens
 * N clients itself, a window of them at a time, and exits 0 once all N were accepted and every
 * client saw its connection closed. SIGINT/SIGTERM end it cleanly with a one-line summary. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mio/mio.h>

#include "example_util.h"

enum { SERVER = 0, SIGNALS = 1, CLIENT = 2 }; /* client i has token CLIENT + i */
#define WINDOW 128                             /* self-test clients connecting at once */
#define SELF_TEST_LIMIT_MS 120000

struct self_test {
    long n;          /* clients to run, 0 = no self test */
    long opened;     /* clients connected so far */
    long done;       /* clients that saw their connection closed */
    int *fds;        /* by client index; -1 once finished */
    mio_addr target; /* where to connect */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: mio-drop [--listen ADDR] [--self-test N] [--help]\n"
               "  Accepts TCP connections and closes each at once (mio's tutorial server).\n"
               "  --listen ADDR   address to bind (default 127.0.0.1:13265; port 0 = any)\n"
               "  --self-test N   also open N clients and exit 0 once all were accepted and\n"
               "                  each saw its connection closed\n"
               "  Prints the bound address as its first line; SIGINT/SIGTERM stop it.\n");
}

static unsigned long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

/* Opens clients until WINDOW are in flight or all N are open. */
static int open_clients(struct self_test *t, mio_registry *reg)
{
    while (t->opened < t->n && t->opened - t->done < WINDOW) {
        int fd = mio_tcp_stream_connect(&t->target);
        if (fd < 0) {
            fprintf(stderr, "mio-drop: connect: %s\n", mio_strerror(fd));
            return fd;
        }
        int r = mio_registry_register(reg, fd, CLIENT + (mio_token)t->opened, MIO_READABLE);
        if (r < 0) {
            close(fd);
            fprintf(stderr, "mio-drop: register client: %s\n", mio_strerror(r));
            return r;
        }
        t->fds[t->opened++] = fd;
    }
    return 0;
}

/* A client's connection is closed once a read says EOF or reset. */
static int client_event(struct self_test *t, long i, const mio_event *ev)
{
    char buf[64];
    ssize_t n;
    int fd;

    if (i >= t->opened || t->fds[i] < 0)
        return 0; /* already finished: a late event for it */
    fd = t->fds[i];
    (void)ev;
    while ((n = mio_recv(fd, buf, sizeof buf)) > 0) {
    }
    if (n == -EAGAIN)
        return 0;
    if (n != 0 && n != -ECONNRESET) {
        fprintf(stderr, "mio-drop: client %ld: %s\n", i, mio_strerror((int)n));
        return (int)n;
    }
    close(fd);
    t->fds[i] = -1;
    t->done++;
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen_text = "127.0.0.1:13265";
    struct self_test t;
    mio_poll *poll = NULL;
    mio_events *events = NULL;
    mio_registry *reg;
    mio_addr addr;
    long accepted = 0;
    int lfd = -1, sfd = -1, r, status = 1, sig = 0;
    unsigned long long deadline;

    memset(&t, 0, sizeof t);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_text = argv[++i];
        } else if (strcmp(argv[i], "--self-test") == 0 && i + 1 < argc) {
            char *end;
            t.n = strtol(argv[++i], &end, 10);
            if (*end != '\0' || t.n <= 0 || t.n > 10000000) {
                fprintf(stderr, "mio-drop: bad --self-test count\n");
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (mio_addr_parse(listen_text, &addr) < 0) {
        fprintf(stderr, "mio-drop: bad address '%s'\n", listen_text);
        return 2;
    }

    if ((r = mio_poll_new(&poll)) < 0 || (r = mio_events_new(1024, &events)) < 0)
        goto err;
    reg = mio_poll_registry(poll);
    if ((sfd = r = example_signalfd()) < 0 ||
        (r = mio_registry_register(reg, sfd, SIGNALS, MIO_READABLE)) < 0)
        goto err;
    if ((lfd = r = mio_tcp_listener_bind(&addr)) < 0) {
        fprintf(stderr, "mio-drop: bind %s: %s\n", listen_text, mio_strerror(r));
        goto out;
    }
    if ((r = mio_registry_register(reg, lfd, SERVER, MIO_READABLE)) < 0 ||
        (r = example_print_bound(lfd)) < 0)
        goto err;
    if (t.n > 0) {
        t.fds = calloc((size_t)t.n, sizeof *t.fds);
        if (t.fds == NULL) {
            r = -ENOMEM;
            goto err;
        }
        if ((r = mio_socket_local_addr(lfd, &t.target)) < 0 || (r = open_clients(&t, reg)) < 0)
            goto err;
    }

    deadline = now_ms() + SELF_TEST_LIMIT_MS;
    while (sig == 0 && !(t.n > 0 && accepted >= t.n && t.done == t.n)) {
        r = mio_poll_poll(poll, events, t.n > 0 ? 1000 : -1);
        if (r == -EINTR)
            continue;
        if (r < 0)
            goto err;
        if (t.n > 0 && now_ms() > deadline) {
            fprintf(stderr, "mio-drop: self-test timed out: %ld accepted, %ld of %ld clients done\n",
                    accepted, t.done, t.n);
            goto out;
        }
        MIO_EVENTS_FOREACH(const mio_event *ev, events)
        {
            mio_token tok = mio_event_token(ev);
            if (tok == SERVER) {
                int fd;
                /* Edge-triggered: accept until the backlog is empty, dropping each. */
                while ((fd = mio_tcp_listener_accept(lfd, NULL)) >= 0) {
                    close(fd);
                    accepted++;
                }
                if (fd != -EAGAIN && fd != -ECONNABORTED)
                    fprintf(stderr, "mio-drop: accept: %s\n", mio_strerror(fd));
            } else if (tok == SIGNALS) {
                sig = example_signal_read(sfd);
            } else if (t.n > 0 && tok >= CLIENT && tok - CLIENT < (mio_token)t.n) {
                if ((r = client_event(&t, (long)(tok - CLIENT), ev)) < 0)
                    goto err;
            }
        }
        if (t.n > 0 && (r = open_clients(&t, reg)) < 0)
            goto err;
    }
    if (sig != 0)
        printf("mio-drop: stopped by signal %d: accepted %ld connections\n", sig, accepted);
    else
        printf("mio-drop: self-test ok: accepted %ld connections, %ld clients saw the close\n",
               accepted, t.done);
    status = 0;
    goto out;

err:
    fprintf(stderr, "mio-drop: %s\n", mio_strerror(r));
out:
    if (t.fds != NULL) {
        for (long i = 0; i < t.opened; i++)
            if (t.fds[i] >= 0)
                close(t.fds[i]);
        free(t.fds);
    }
    if (lfd >= 0)
        close(lfd);
    if (sfd >= 0)
        close(sfd);
    mio_events_free(events);
    mio_poll_free(poll);
    return status;
}
