/* mio-chat-load: a load generator for mio-chat (examples/chat.c), on libmio's core and net layers.
 *
 *   mio-chat-load --target ADDR [--conns N] [--size S] [--window W] [--duration SEC]
 *
 * One thread holds N connections. Once every client is known to the server (a sync line sent
 * again every 50 ms until all the others received one), clients take turns, round robin, to send
 * an S-byte line "m<sender> <seq> ...\n", while the deliveries still owed (lines sent x (N - 1)
 * minus lines received) stay below W x (N - 1): a closed loop that keeps the server's workers
 * busy without ever tripping its slow-consumer reset. Every line received is checked: its sender
 * must not be the receiver, and its sequence number must follow the last one this receiver had
 * from that sender (a lost, duplicated or reordered line counts as an error). At the end (duration
 * or SIGINT) sending stops and what is owed gets --drain seconds to arrive.
 * Output: "phase=ready" once the sync is done and the measured run starts, "phase=stop" when
 * sending stops (a driver takes the server's counters at both), then one key=value line:
 * mode=chat ... msgs=D msgs_per_s=D/duration ... (D = lines received by all clients while
 * sending lasted). Exit 0 when every line arrived in
 * order and no connection failed, 1 otherwise, 2 for bad usage. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mio/mio.h>

#include "../examples/example_util.h"

#define SYNC_MS 50
#define READ_BUF (256u * 1024)

static struct {
    const char *target_text;
    mio_addr target;
    unsigned long long conns, size, window;
    double duration, drain;
} opt = {.conns = 64, .size = 64, .window = 64, .duration = 5.0, .drain = 2.0};

struct client {
    int fd;
    bool synced;            /* received a sync line: the server has it in its worker's list */
    bool failed;            /* reset or closed by the server */
    size_t carry_len;       /* a partial line kept from the last read */
    size_t out_len;         /* bytes of this client's line not yet taken by the socket */
    char *carry, *out;      /* opt.size bytes each */
    unsigned long long seq; /* lines this client sent */
    unsigned *last;         /* [sender]: the last seq received from that sender (0: none yet) */
};

static struct client *clients;
static unsigned long long sent, delivered, errors, failed_conns;
static bool syncing = true;
static unsigned synced;
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mio-chat-load --target ADDR [--conns N] [--size S] [--window W]\n"
               "                     [--duration SEC] [--drain SEC] [--no-progress]\n"
               "  --conns N       clients (default 64)\n"
               "  --size S        bytes per line, \"\\n\" included (default 64, at least 24)\n"
               "  --window W      lines in flight in the whole run (default 64)\n"
               "  --duration SEC  seconds of sending (default 5)\n"
               "  --drain SEC     time for owed lines to arrive at the end (default 2)\n"
               "Output: one key=value line on stdout. Exit: 0 all lines in order, 1 otherwise.\n");
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--no-progress") == 0 || strcmp(a, "--progress") == 0)
            continue; /* accepted as mio-load does; this client prints no progress */
        if (v == NULL)
            return -EINVAL;
        i++;
        if (strcmp(a, "--target") == 0) {
            opt.target_text = v;
            if (!example_parse_addr("mio-chat-load", a, v, &opt.target))
                return -EDOM;
        } else if (strcmp(a, "--conns") == 0) {
            if (!example_parse_ull("mio-chat-load", a, v, 2, 60000, &opt.conns))
                return -EDOM;
        } else if (strcmp(a, "--size") == 0) {
            if (!example_parse_ull("mio-chat-load", a, v, 24, 4096, &opt.size))
                return -EDOM;
        } else if (strcmp(a, "--window") == 0) {
            if (!example_parse_ull("mio-chat-load", a, v, 1, 1u << 20, &opt.window))
                return -EDOM;
        } else if (strcmp(a, "--duration") == 0 || strcmp(a, "--drain") == 0) {
            if (!example_parse_seconds("mio-chat-load", a, v, 1e6,
                                       a[2] == 'd' && a[3] == 'r' ? &opt.drain : &opt.duration))
                return -EDOM;
        } else {
            return -EINVAL;
        }
    }
    return opt.target_text == NULL ? -EINVAL : 0;
}

static void fail_client(struct client *c)
{
    if (!c->failed) {
        c->failed = true;
        failed_conns++;
    }
}

/* Writes what is left of c's line; false when the socket cannot take it all now. */
static bool flush_out(struct client *c)
{
    while (c->out_len > 0 && !c->failed) {
        ssize_t n = mio_send(c->fd, c->out + opt.size - c->out_len, c->out_len);

        if (n == -EAGAIN)
            return false;
        if (n < 0) {
            fail_client(c);
            return false;
        }
        c->out_len -= (size_t)n;
    }
    return true;
}

/* A line of exactly opt.size bytes: "m" or "y" (sync), the sender, the seq, padding, "\n". */
static void send_line(unsigned i, char kind)
{
    struct client *c = &clients[i];
    int n = snprintf(c->out, opt.size, "%c%u %llu ", kind, i, kind == 'm' ? ++c->seq : 0ull);

    memset(c->out + n, 'x', opt.size - 1 - (size_t)n);
    c->out[opt.size - 1] = '\n';
    c->out_len = opt.size;
    if (kind == 'm')
        sent++;
    (void)flush_out(c);
}

static void on_line(unsigned me, const char *line)
{
    struct client *c = &clients[me];
    char *end;
    unsigned long from = strtoul(line + 1, &end, 10);
    unsigned long long seq;

    if (from >= opt.conns || from == me || *end != ' ') {
        errors++;
        return;
    }
    if (line[0] == 'y') {
        if (!c->synced && syncing) {
            c->synced = true;
            synced++;
        }
        return;
    }
    seq = strtoull(end + 1, NULL, 10);
    if (line[0] != 'm' || seq != (unsigned long long)c->last[from] + 1)
        errors++;
    c->last[from] = (unsigned)seq;
    delivered++;
}

static void on_readable(unsigned me, char *buf)
{
    struct client *c = &clients[me];

    while (!c->failed) {
        ssize_t n = mio_recv(c->fd, buf + c->carry_len, READ_BUF);
        char *p = buf, *end, *nl;

        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            fail_client(c);
            return;
        }
        memcpy(buf, c->carry, c->carry_len); /* the partial line goes before the new bytes */
        end = buf + c->carry_len + n;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            if ((size_t)(nl + 1 - p) != opt.size)
                errors++;
            else
                on_line(me, p);
            p = nl + 1;
        }
        c->carry_len = (size_t)(end - p);
        if (c->carry_len >= opt.size) { /* a line longer than any sent */
            errors++;
            c->carry_len = 0;
        }
        memcpy(c->carry, p, c->carry_len);
    }
}

static int connect_all(mio_registry *reg)
{
    for (unsigned i = 0; i < opt.conns; i++) {
        struct client *c = &clients[i];
        int fd = socket(opt.target.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

        c->carry = malloc(opt.size);
        c->out = malloc(opt.size);
        c->last = calloc(opt.conns, sizeof(*c->last));
        if (fd == -1 || c->carry == NULL || c->out == NULL || c->last == NULL)
            return fd == -1 ? -errno : -ENOMEM;
        c->fd = fd;
        if (connect(fd, &opt.target.u.sa, opt.target.len) == -1)
            return -errno;
        (void)mio_tcp_set_nodelay(fd, true);
        if (mio_set_nonblocking(fd, true) < 0 ||
            mio_registry_register(reg, fd, i, MIO_READABLE | MIO_WRITABLE) < 0)
            return -EBADF;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_signal};
    struct rlimit rl;
    mio_poll *poll;
    mio_events *events;
    char *buf;
    unsigned turn = 0;
    int err = parse_args(argc, argv);
    uint64_t t_start, t_stop = 0, t_sync = 0, deadline = 0, now;
    unsigned long long delivered_at_stop = 0;

    if (err < 0) {
        if (err != -EDOM)
            usage(stderr);
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    clients = calloc(opt.conns, sizeof(*clients));
    buf = malloc(READ_BUF + opt.size);
    if (clients == NULL || buf == NULL || mio_poll_new(&poll) < 0 ||
        mio_events_new(1024, &events) < 0)
        return 1;
    if ((err = connect_all(mio_poll_registry(poll))) < 0) {
        fprintf(stderr, "mio-chat-load: %s: %s\n", opt.target_text, mio_strerror(err));
        return 1;
    }
    t_start = now_ms();
    for (;;) {
        now = now_ms();
        if (syncing && synced == opt.conns - 1) { /* every client but the sync's sender */
            syncing = false;
            t_start = now; /* the measured run starts here */
            printf("phase=ready conns=%llu\n", opt.conns);
            fflush(stdout);
        } else if (syncing && now - t_sync >= SYNC_MS) {
            if (now - t_start > 10000) {
                fprintf(stderr, "mio-chat-load: only %u of %llu clients synced in 10 s\n", synced,
                        opt.conns - 1);
                return 1;
            }
            t_sync = now;
            send_line(0, 'y');
        }
        if (!syncing && t_stop == 0 && (got_signal || now - t_start >= opt.duration * 1000)) {
            t_stop = now;
            delivered_at_stop = delivered;
            deadline = now + (uint64_t)(opt.drain * 1000);
            printf("phase=stop delivered=%llu\n", delivered);
            fflush(stdout);
        }
        if (t_stop != 0 && (delivered == sent * (opt.conns - 1) || now >= deadline))
            break;
        /* Closed loop: send while the deliveries owed stay under the window. */
        for (unsigned k = 0;
             !syncing && t_stop == 0 && k < opt.conns &&
             (sent + 1) * (opt.conns - 1) - delivered <= opt.window * (opt.conns - 1);
             k++) {
            struct client *c = &clients[turn];

            turn = (turn + 1) % (unsigned)opt.conns;
            if (!c->failed && c->out_len == 0)
                send_line((unsigned)(c - clients), 'm');
        }
        if (mio_poll_poll(poll, events, syncing ? SYNC_MS : 10) < 0)
            continue; /* -EINTR: the loop looks at got_signal */
        MIO_EVENTS_FOREACH(const mio_event *ev, events)
        {
            unsigned i = (unsigned)mio_event_token(ev);

            if (mio_event_is_writable(ev))
                (void)flush_out(&clients[i]);
            if (mio_event_is_readable(ev) || mio_event_is_read_closed(ev) || mio_event_is_error(ev))
                on_readable(i, buf);
        }
    }
    {
        double secs = (double)(t_stop - t_start) / 1e3;
        unsigned long long owed = sent * (opt.conns - 1) - delivered;
        bool complete = owed == 0 && errors == 0 && failed_conns == 0;

        printf("mode=chat target=%s conns=%llu size=%llu window=%llu duration_s=%.3f sent=%llu "
               "delivered=%llu msgs=%llu msgs_per_s=%.0f lost=%llu errors=%llu failed_conns=%llu "
               "complete=%d\n",
               opt.target_text, opt.conns, opt.size, opt.window, secs, sent, delivered,
               delivered_at_stop, secs > 0 ? (double)delivered_at_stop / secs : 0.0, owed,
               errors + failed_conns + owed, failed_conns, complete ? 1 : 0);
        fflush(stdout);
        for (unsigned i = 0; i < opt.conns; i++) {
            close(clients[i].fd);
            free(clients[i].carry);
            free(clients[i].out);
            free(clients[i].last);
        }
        free(clients);
        free(buf);
        mio_events_free(events);
        mio_poll_free(poll);
        return complete ? 0 : 1;
    }
}
