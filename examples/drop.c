/* mio's tutorial server: one thread, one Poll, a TCP listener that accepts every connection and
 * drops (closes) it at once.
 *
 *   mio-drop [--listen ADDR] [--self-test N]
 *
 * Prints the bound address first (so --listen 127.0.0.1:0 works). With --self-test N it also opens
 * N clients itself, a window of them at a time, and exits 0 once all N were accepted and every
 * client saw its connection closed. Out of fds (EMFILE/ENFILE), accepting pauses until a client
 * closes or 100 ms pass, so the backlog is served without waiting for a new connection; failures
 * are reported at most once a second. SIGINT/SIGTERM end it cleanly with a one-line summary. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mio/mio.h>

#include "example_util.h"

enum { SERVER = EXAMPLE_SERVER, SIGNALS = EXAMPLE_SIGNALS, CLIENT = 2 }; /* client i has token CLIENT + i */
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

/* Accepts and closes until the backlog is empty or accepting pauses (see example_accept_failed). */
static void accept_all(int lfd, long *accepted, struct example_accept *acc)
{
    for (;;) {
        int fd = mio_tcp_listener_accept(lfd, NULL);
        if (fd < 0) {
            if (example_accept_failed(acc, fd))
                continue;
            return;
        }
        close(fd);
        (*accepted)++;
    }
}

/* A client's connection is closed once a read says EOF or reset; then its fd is closed, which
 * ends an accept pause. */
static int client_event(struct self_test *t, long i, const mio_event *ev,
                        struct example_accept *acc)
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
    example_accept_fd_closed(acc);
    t->fds[i] = -1;
    t->done++;
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen_text = "127.0.0.1:13265";
    struct self_test t;
    struct example_accept acc;
    unsigned long long n;
    struct example_loop l = {.sfd = -1, .fd = -1};
    mio_registry *reg;
    mio_addr addr;
    long accepted = 0;
    int lfd, sfd, r, status = 1, sig = 0;
    unsigned long long deadline;

    memset(&t, 0, sizeof t);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_text = argv[++i];
        } else if (strcmp(argv[i], "--self-test") == 0 && i + 1 < argc) {
            if (!example_parse_ull("mio-drop", "--self-test", argv[++i], 1, 10000000, &n))
                return 2;
            t.n = (long)n;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!example_parse_addr("mio-drop", "--listen", listen_text, &addr))
        return 2;
    example_accept_init(&acc, "mio-drop");

    if ((r = example_loop_open(&l, "mio-drop", 1024, mio_tcp_listener_bind, &addr, listen_text)) < 0)
        goto out;
    reg = l.reg;
    lfd = l.fd;
    sfd = l.sfd;
    if (t.n > 0) {
        t.fds = calloc((size_t)t.n, sizeof *t.fds);
        if (t.fds == NULL) {
            r = -ENOMEM;
            goto err;
        }
        if ((r = mio_socket_local_addr(lfd, &t.target)) < 0 || (r = open_clients(&t, reg)) < 0)
            goto err;
    }

    deadline = example_now_ms() + SELF_TEST_LIMIT_MS;
    while (sig == 0 && !(t.n > 0 && accepted >= t.n && t.done == t.n)) {
        r = mio_poll_poll(l.poll, l.events, example_accept_timeout(&acc, t.n > 0 ? 1000 : -1));
        if (r == -EINTR)
            continue;
        if (r < 0)
            goto err;
        if (t.n > 0 && example_now_ms() > deadline) {
            fprintf(stderr, "mio-drop: self-test timed out: %ld accepted, %ld of %ld clients done\n",
                    accepted, t.done, t.n);
            goto out;
        }
        MIO_EVENTS_FOREACH(const mio_event *ev, l.events)
        {
            mio_token tok = mio_event_token(ev);
            if (tok == SERVER) {
                accept_all(lfd, &accepted, &acc);
            } else if (tok == SIGNALS) {
                sig = example_signal_read(sfd);
            } else if (t.n > 0 && tok >= CLIENT && tok - CLIENT < (mio_token)t.n) {
                if ((r = client_event(&t, (long)(tok - CLIENT), ev, &acc)) < 0)
                    goto err;
            }
        }
        /* The listener gives no new edge for connections left waiting by a pause. */
        if (example_accept_due(&acc))
            accept_all(lfd, &accepted, &acc);
        if (t.n > 0 && (r = open_clients(&t, reg)) < 0)
            goto err;
    }
    if (sig != 0)
        printf("mio-drop: stopped by signal %d: accepted %ld connections, %llu accept failures\n",
               sig, accepted, acc.failures);
    else
        printf("mio-drop: self-test ok: accepted %ld connections, %ld clients saw the close, "
               "%llu accept failures\n",
               accepted, t.done, acc.failures);
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
    example_loop_close(&l);
    return status;
}
