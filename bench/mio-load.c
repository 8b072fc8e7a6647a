/* mio-load: a load generator for echo and drop servers, written on libmio's core and net layers.
 *
 *   mio-load --target ADDR --mode pingpong|pipeline|connect|idle [options]
 *
 * T threads, each with its own mio_poll, share C connections. Every byte sent is drawn from a
 * per-connection position in a fixed pseudo-random pattern, and every byte received is compared
 * with what was sent at that position, so a lost, duplicated, reordered or corrupted byte is seen.
 * Modes:
 *   pingpong  send an S-byte message, wait for all of it to come back, repeat; msgs/s and latency
 *             percentiles from a log-linear histogram (3% buckets). --interval-us paces each
 *             connection (idle-paced runs, for syscalls per message).
 *   pipeline  keep W bytes in flight per connection; MB/s of verified echo.
 *   connect   C loops of: connect, send 1 byte, wait for its echo or the server's close, close.
 *   idle      open C connections (each proven with a 1-byte echo), hold them for --duration,
 *             prove them again, close. Raises RLIMIT_NOFILE to the hard limit and spreads source
 *             addresses over 127.0.0.1..127.0.0.K (--sources K) so 10,000+ connections fit.
 * At the end (duration, --count reached, or SIGINT) no new work starts; what is in flight gets
 * --drain seconds to come back. The result is one `key=value ...` line on stdout; in idle mode a
 * `phase=ready ...` line comes first, once every connection is up. A live progress line goes to
 * stderr when it is a terminal. Exit status: 0 when every byte came back and no error was counted,
 * 1 otherwise, 2 for bad usage. */
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mio/mio.h>

#include "../examples/example_util.h"

/* ------------------------------------------------------------------ options */

enum mode { MODE_PINGPONG, MODE_PIPELINE, MODE_CONNECT, MODE_IDLE };
static const char *const mode_names[] = {"pingpong", "pipeline", "connect", "idle"};

static struct {
    enum mode mode;
    const char *target_text;
    mio_addr target;
    unsigned threads;
    unsigned conns;
    size_t size;           /* pingpong message size */
    size_t window;         /* pipeline bytes in flight per connection */
    double duration;       /* seconds of load (idle: seconds of holding after ready) */
    uint64_t count;        /* stop after this many messages / connections / bytes (0: none) */
    unsigned sources;      /* bind sources over 127.0.0.1..K (0: let the kernel choose) */
    unsigned interval_us;  /* pingpong pacing per connection (0: as fast as possible) */
    unsigned max_connecting; /* connects in flight per thread while opening connections */
    double drain;          /* seconds allowed for in-flight bytes to come back at the end */
    int progress;          /* -1 auto (stderr is a terminal), 0 off, 1 on */
} opt = {
    .mode = MODE_PINGPONG,
    .threads = 1,
    .conns = 1,
    .size = 64,
    .window = 16384,
    .duration = 5.0,
    .max_connecting = 64,
    .drain = 2.0,
    .progress = -1,
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mio-load --target ADDR [--mode pingpong|pipeline|connect|idle] [options]\n"
            "  --threads T        client threads (default 1)\n"
            "  --conns C          connections in total (connect: concurrent loops) (default 1)\n"
            "  --size S           pingpong message bytes (default 64)\n"
            "  --window W         pipeline bytes in flight per connection (default 16384)\n"
            "  --duration SEC     seconds of load; idle: seconds to hold (default 5)\n"
            "  --count N          stop after N messages (pingpong), connections (connect) or\n"
            "                     bytes (pipeline), whichever of duration/count comes first\n"
            "  --interval-us U    pingpong: pause U us between a reply and the next message\n"
            "  --sources K        bind source addresses 127.0.0.1..127.0.0.K (idle default 4)\n"
            "  --max-connecting N connects in flight per thread while opening (default 64)\n"
            "  --drain SEC        time for in-flight bytes to come back at the end (default 2)\n"
            "  --progress / --no-progress   live line on stderr (default: if a terminal)\n"
            "Output: one key=value line on stdout (idle: a phase=ready line first).\n"
            "Exit: 0 all bytes verified and no errors, 1 otherwise, 2 bad usage.\n");
}

/* Returns 0, -EINVAL for bad usage (the caller prints it), or -EDOM for a bad value (already
 * reported in one line by the example_parse_* functions). */
static int parse_args(int argc, char **argv)
{
    bool sources_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long n = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--progress") == 0) {
            opt.progress = 1;
            continue;
        } else if (strcmp(a, "--no-progress") == 0) {
            opt.progress = 0;
            continue;
        }
        if (v == NULL)
            return -EINVAL;
        i++;
        if (strcmp(a, "--target") == 0) {
            opt.target_text = v;
            if (!example_parse_addr("mio-load", a, v, &opt.target))
                return -EDOM;
        } else if (strcmp(a, "--mode") == 0) {
            unsigned m;
            for (m = 0; m < 4 && strcmp(v, mode_names[m]) != 0; m++)
                ;
            if (m == 4)
                return -EINVAL;
            opt.mode = (enum mode)m;
        } else if (strcmp(a, "--duration") == 0 || strcmp(a, "--drain") == 0) {
            if (!example_parse_seconds("mio-load", a, v, 1e6,
                                       strcmp(a, "--drain") == 0 ? &opt.drain : &opt.duration))
                return -EDOM;
        } else if (strcmp(a, "--threads") == 0) {
            if (!example_parse_ull("mio-load", a, v, 1, 256, &n))
                return -EDOM;
            opt.threads = (unsigned)n;
        } else if (strcmp(a, "--conns") == 0) {
            if (!example_parse_ull("mio-load", a, v, 1, 1000000, &n))
                return -EDOM;
            opt.conns = (unsigned)n;
        } else if (strcmp(a, "--size") == 0) {
            if (!example_parse_ull("mio-load", a, v, 1, 1u << 24, &n))
                return -EDOM;
            opt.size = (size_t)n;
        } else if (strcmp(a, "--window") == 0) {
            if (!example_parse_ull("mio-load", a, v, 1, 1u << 26, &n))
                return -EDOM;
            opt.window = (size_t)n;
        } else if (strcmp(a, "--count") == 0) {
            if (!example_parse_ull("mio-load", a, v, 0, UINT64_MAX, &n))
                return -EDOM;
            opt.count = n;
        } else if (strcmp(a, "--interval-us") == 0) {
            if (!example_parse_ull("mio-load", a, v, 0, 10000000, &n))
                return -EDOM;
            opt.interval_us = (unsigned)n;
        } else if (strcmp(a, "--sources") == 0) {
            if (!example_parse_ull("mio-load", a, v, 0, 254, &n))
                return -EDOM;
            opt.sources = (unsigned)n;
            sources_set = true;
        } else if (strcmp(a, "--max-connecting") == 0) {
            if (!example_parse_ull("mio-load", a, v, 1, 100000, &n))
                return -EDOM;
            opt.max_connecting = (unsigned)n;
        } else {
            return -EINVAL;
        }
    }
    if (opt.target_text == NULL)
        return -EINVAL;
    if (opt.threads > opt.conns)
        opt.threads = opt.conns;
    if (!sources_set && opt.mode == MODE_IDLE && opt.target.u.sa.sa_family == AF_INET &&
        (ntohl(opt.target.u.in.sin_addr.s_addr) >> 24) == 127)
        opt.sources = 4;
    if (opt.sources > 0 && opt.target.u.sa.sa_family != AF_INET)
        opt.sources = 0; /* 127.0.0.x sources only make sense towards IPv4 loopback */
    return 0;
}

/* ------------------------------------------------------------------ time, pattern, histogram */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The byte at stream position p of a connection with seed s is pat[(p + s) % PAT_LEN]. The pattern
 * is stored twice over so any run of up to PAT_LEN bytes is contiguous. PAT_LEN is prime so no
 * message size lines up with it. */
#define PAT_LEN 65521u
static unsigned char pat[2 * PAT_LEN];

static void pattern_init(void)
{
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pat[i] = (unsigned char)(x >> 32);
    }
    memcpy(pat + PAT_LEN, pat, PAT_LEN);
}

/* Log-linear histogram of nanoseconds: exact below 32, then 32 buckets per power of two
 * (relative error under 3.2%), up to 2^64. */
#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
    uint64_t n[HIST_BUCKETS];
    uint64_t count, max;
    double sum;
};

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= HIST_SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return (e - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* The midpoint of bucket i, in the histogram's unit. */
static double hist_value(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned e = i / HIST_SUB + HIST_SUB_BITS - 1;
    unsigned sub = i % HIST_SUB;
    double lo = (double)((uint64_t)(HIST_SUB + sub) << (e - HIST_SUB_BITS));
    double width = (double)((uint64_t)1 << (e - HIST_SUB_BITS));
    return lo + width / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->n[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->n[i] += from->n[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

static double hist_percentile(const struct hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->count);
    uint64_t seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ------------------------------------------------------------------ counters */

/* Errors by kind. Each is counted once per connection that suffered it. */
enum err_kind {
    ERR_CONNECT,   /* connect refused, unreachable, or failed asynchronously */
    ERR_ADDRINUSE, /* no local port/address left (EADDRNOTAVAIL, EADDRINUSE) */
    ERR_EMFILE,    /* out of file descriptors */
    ERR_RESET,     /* ECONNRESET/EPIPE on an established connection */
    ERR_EOF,       /* the server closed a connection that still had work */
    ERR_MISMATCH,  /* a received byte differs from the byte sent at that position */
    ERR_EXTRA,     /* more bytes came back than were sent */
    ERR_TIMEOUT,   /* bytes still missing when the drain time ran out */
    ERR_OTHER,
    ERR_KINDS
};
static const char *const err_names[ERR_KINDS] = {"connect", "addr",     "emfile",
                                                 "reset",   "eof",      "mismatch",
                                                 "extra",   "timeout",  "other"};

/* Counters are written by their thread only and read by the main thread for progress: relaxed
 * atomics, updated with a plain load + store (no locked instruction on the hot path). */
typedef _Atomic uint64_t counter;
#define CNT_ADD(c, v) \
    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (v), \
                          memory_order_relaxed)
#define CNT_GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

struct counters {
    counter msgs;     /* pingpong messages / connect completions / idle connections proven */
    counter sent;     /* bytes handed to the kernel */
    counter recvd;    /* bytes received and verified */
    counter open;     /* connections currently established */
    counter ready;    /* idle: connections proven with their first echo */
    counter echoed;   /* connect: completions by echo */
    counter closed;   /* connect: completions by the server's close (EOF or reset) */
    counter errors[ERR_KINDS];
};

/* ------------------------------------------------------------------ connections and threads */

enum conn_state { C_UNUSED, C_CONNECTING, C_OPEN, C_DONE };

struct lconn {
    int fd;
    enum conn_state state;
    uint32_t seed;
    uint64_t sent, recvd; /* stream positions */
    uint64_t target;      /* send up to this position (pingpong: end of the current message) */
    uint64_t t0;          /* pingpong: message start; connect: connect start */
    uint64_t next_send;   /* paced pingpong: when the next message may go */
    bool write_blocked;
};

struct lthread {
    unsigned id;
    pthread_t tid;
    mio_poll *poll;
    mio_events *events;
    struct lconn *conns;
    unsigned n;            /* connections (connect mode: loops) owned by this thread */
    unsigned first;        /* global index of conns[0] */
    unsigned next_open;    /* next connection to open */
    unsigned connecting;   /* connects in flight */
    uint64_t quota;        /* --count share (0: none) */
    uint64_t done;         /* progress towards the quota */
    bool draining;
    _Atomic bool finished; /* set when the thread leaves its loop */
    struct hist hist;
    struct counters c;
    unsigned char rbuf[256 * 1024];
};

enum phase { PHASE_RUN, PHASE_DRAIN };
static _Atomic int phase = PHASE_RUN;
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void count_err(struct lthread *t, enum err_kind k)
{
    CNT_ADD(t->c.errors[k], 1);
}

/* Says once per thread and kind which errno was behind an error, for diagnosis. */
static void count_errno(struct lthread *t, enum err_kind k, int err)
{
    if (CNT_GET(t->c.errors[k]) == 0)
        fprintf(stderr, "mio-load: thread %u: first %s error: %s\n", t->id, err_names[k],
                mio_strerror(err));
    count_err(t, k);
}

static enum err_kind kind_of(int err, bool connecting)
{
    switch (err) {
    case -EADDRNOTAVAIL:
    case -EADDRINUSE:
        return ERR_ADDRINUSE;
    case -EMFILE:
    case -ENFILE:
        return ERR_EMFILE;
    case -ECONNRESET:
    case -EPIPE:
        return connecting ? ERR_CONNECT : ERR_RESET;
    case -ECONNREFUSED:
    case -ETIMEDOUT:
    case -ENETUNREACH:
    case -EHOSTUNREACH:
        return ERR_CONNECT;
    default:
        return connecting ? ERR_CONNECT : ERR_OTHER;
    }
}

/* A socket towards the target, connecting. With --sources the source address is chosen here
 * (IP_BIND_ADDRESS_NO_PORT leaves the port to connect(), so the 4-tuple, not the port alone, must
 * be unique); otherwise libmio's mio_tcp_stream_connect does it all. */
static int open_socket(unsigned global_index)
{
    if (opt.sources == 0)
        return mio_tcp_stream_connect(&opt.target);

    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + global_index % opt.sources);
#ifdef IP_BIND_ADDRESS_NO_PORT
    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#else
    (void)one;
#endif
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1 ||
        (connect(fd, &opt.target.u.sa, opt.target.len) == -1 && errno != EINPROGRESS)) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static void conn_finish(struct lthread *t, struct lconn *c)
{
    if (c->state == C_OPEN)
        CNT_ADD(t->c.open, (uint64_t)-1);
    if (c->state == C_CONNECTING)
        t->connecting--;
    if (c->fd >= 0)
        close(c->fd); /* our only reference: the epoll registration goes with it */
    c->fd = -1;
    c->state = C_DONE;
}

/* Closes a connection after an error; the bytes it still owed count as lost. */
static void conn_fail(struct lthread *t, struct lconn *c, enum err_kind k)
{
    count_err(t, k);
    conn_finish(t, c);
}

static int start_connect(struct lthread *t, struct lconn *c)
{
    unsigned gi = t->first + (unsigned)(c - t->conns);
    int fd = open_socket(gi);
    if (fd < 0) {
        count_errno(t, kind_of(fd, true), fd);
        c->state = C_DONE;
        c->fd = -1;
        return fd;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->sent = c->recvd = c->target = 0;
    c->write_blocked = false;
    c->t0 = now_ns();
    t->connecting++;
    int err = mio_registry_register(mio_poll_registry(t->poll), fd, (mio_token)(c - t->conns),
                                    MIO_READABLE | MIO_WRITABLE);
    if (err < 0) {
        conn_fail(t, c, ERR_OTHER);
        return err;
    }
    return 0;
}

/* Opens connections up to the in-flight limit (connect mode: all loops at once). */
static void open_more(struct lthread *t)
{
    unsigned limit = opt.mode == MODE_CONNECT ? t->n : opt.max_connecting;
    while (!t->draining && t->next_open < t->n && t->connecting < limit) {
        struct lconn *c = &t->conns[t->next_open++];
        int err = start_connect(t, c);
        if (err == -EMFILE || err == -ENFILE || err == -EADDRNOTAVAIL) {
            /* Out of resources: keep what we have; the rest count as failed to open. */
            CNT_ADD(t->c.errors[kind_of(err, true)], t->n - t->next_open);
            t->next_open = t->n;
            break;
        }
    }
}

/* Sends the stream up to c->target. Returns 1 when all of it left, 0 when the kernel is full
 * (wait for WRITABLE), < 0 after failing the connection. */
static int send_to_target(struct lthread *t, struct lconn *c)
{
    while (c->sent < c->target) {
        size_t off = (size_t)((c->sent + c->seed) % PAT_LEN);
        uint64_t left = c->target - c->sent;
        size_t len = left < PAT_LEN ? (size_t)left : PAT_LEN;
        ssize_t n = mio_send(c->fd, pat + off, len);
        if (n < 0) {
            if (n == -EAGAIN) {
                c->write_blocked = true;
                return 0;
            }
            count_errno(t, kind_of((int)n, false), (int)n);
            conn_finish(t, c);
            return -1;
        }
        c->sent += (uint64_t)n;
        CNT_ADD(t->c.sent, (uint64_t)n);
    }
    c->write_blocked = false;
    return 1;
}

static bool quota_left(struct lthread *t)
{
    return t->quota == 0 || t->done < t->quota;
}

/* Pingpong: the next message, unless the run is over or pacing holds it back. */
static void pingpong_next(struct lthread *t, struct lconn *c, uint64_t now)
{
    if (t->draining || !quota_left(t))
        return;
    if (opt.interval_us > 0 && now < c->next_send)
        return;
    c->target = c->sent + opt.size;
    c->t0 = now;
    t->done++; /* --count counts messages started, so exactly that many are sent */
    send_to_target(t, c);
}

/* Pipeline: tops the window up. */
static void pipeline_fill(struct lthread *t, struct lconn *c)
{
    if (t->draining)
        return;
    uint64_t limit = c->recvd + opt.window;
    if (t->quota != 0) {
        uint64_t room = t->quota > t->done ? t->quota - t->done : 0;
        uint64_t inflight = c->sent - c->recvd;
        room = room > inflight ? room - inflight : 0;
        if (limit > c->sent + room)
            limit = c->sent + room;
    }
    if (limit > c->target)
        c->target = limit;
    send_to_target(t, c);
}

static void on_established(struct lthread *t, struct lconn *c, uint64_t now)
{
    t->connecting--;
    c->state = C_OPEN;
    CNT_ADD(t->c.open, 1);
    (void)mio_tcp_set_nodelay(c->fd, true);
    switch (opt.mode) {
    case MODE_PINGPONG:
        c->next_send = now;
        pingpong_next(t, c, now);
        break;
    case MODE_PIPELINE:
        pipeline_fill(t, c);
        break;
    case MODE_CONNECT:
    case MODE_IDLE:
        c->target = 1; /* one byte proves the server serves this connection */
        send_to_target(t, c);
        break;
    }
}

/* All bytes sent so far have come back. */
static void on_caught_up(struct lthread *t, struct lconn *c, uint64_t now)
{
    switch (opt.mode) {
    case MODE_PINGPONG:
        if (c->target != c->sent)
            return; /* part of the message is still waiting for WRITABLE */
        hist_add(&t->hist, now - c->t0);
        CNT_ADD(t->c.msgs, 1);
        c->next_send = now + (uint64_t)opt.interval_us * 1000u;
        pingpong_next(t, c, now);
        break;
    case MODE_PIPELINE:
        break;
    case MODE_CONNECT:
        hist_add(&t->hist, now - c->t0);
        CNT_ADD(t->c.msgs, 1);
        CNT_ADD(t->c.echoed, 1);
        t->done++;
        conn_finish(t, c);
        break;
    case MODE_IDLE:
        if (c->recvd == 1) {
            CNT_ADD(t->c.ready, 1);
            open_more(t);
        } else {
            CNT_ADD(t->c.msgs, 1); /* proven a second time at the end */
        }
        break;
    }
}

/* Reads until drained; a short read means drained unless the peer's FIN came with it. */
static void on_readable(struct lthread *t, struct lconn *c, const mio_event *ev, uint64_t now)
{
    bool closing = mio_event_is_read_closed(ev) || mio_event_is_error(ev);
    for (;;) {
        ssize_t n = mio_recv(c->fd, t->rbuf, sizeof(t->rbuf));
        if (n > 0) {
            if (c->recvd + (uint64_t)n > c->sent) {
                conn_fail(t, c, ERR_EXTRA);
                return;
            }
            size_t done = 0;
            while (done < (size_t)n) {
                size_t off = (size_t)((c->recvd + done + c->seed) % PAT_LEN);
                size_t len = (size_t)n - done < PAT_LEN ? (size_t)n - done : PAT_LEN;
                if (memcmp(t->rbuf + done, pat + off, len) != 0) {
                    conn_fail(t, c, ERR_MISMATCH);
                    return;
                }
                done += len;
            }
            c->recvd += (uint64_t)n;
            CNT_ADD(t->c.recvd, (uint64_t)n);
            if (opt.mode == MODE_PIPELINE) {
                t->done += (uint64_t)n;
                pipeline_fill(t, c);
                if (c->state != C_OPEN)
                    return;
            } else if (c->recvd == c->sent) {
                on_caught_up(t, c, now);
                if (c->state != C_OPEN)
                    return;
            }
            if ((size_t)n < sizeof(t->rbuf) && !closing)
                return;
            continue;
        }
        if (n == -EAGAIN)
            return;
        if (opt.mode == MODE_CONNECT && (n == 0 || n == -ECONNRESET)) {
            /* The server closed (a drop server): a completed loop. */
            hist_add(&t->hist, now - c->t0);
            CNT_ADD(t->c.msgs, 1);
            CNT_ADD(t->c.closed, 1);
            t->done++;
            c->sent = c->recvd; /* nothing is owed by a server that closes on purpose */
            conn_finish(t, c);
            return;
        }
        count_errno(t, n == 0 ? ERR_EOF : kind_of((int)n, false), n == 0 ? 0 : (int)n);
        conn_finish(t, c);
        return;
    }
}

static void on_event(struct lthread *t, const mio_event *ev, uint64_t now)
{
    mio_token tok = mio_event_token(ev);
    if (tok >= t->n)
        return;
    struct lconn *c = &t->conns[tok];

    if (c->state == C_CONNECTING) {
        if (!mio_event_is_writable(ev) && !mio_event_is_error(ev) &&
            !mio_event_is_write_closed(ev))
            return;
        int err = mio_socket_take_error(c->fd);
        if (err == 0 && mio_event_is_write_closed(ev))
            err = -ECONNREFUSED;
        if (err < 0) {
            count_errno(t, kind_of(err, true), err);
            conn_finish(t, c);
            open_more(t);
            return;
        }
        on_established(t, c, now);
        if (opt.mode != MODE_IDLE)
            open_more(t);
        if (c->state != C_OPEN)
            return;
    } else if (c->state != C_OPEN) {
        return;
    }
    if (mio_event_is_writable(ev) && c->write_blocked) {
        if (send_to_target(t, c) < 0)
            return;
    }
    if (mio_event_is_readable(ev) || mio_event_is_read_closed(ev) || mio_event_is_error(ev))
        on_readable(t, c, ev, now);
}

/* Connection loops in connect mode restart here; idle connections get their final echo. */
static void after_batch(struct lthread *t, uint64_t now)
{
    if (opt.mode == MODE_CONNECT && !t->draining && quota_left(t)) {
        for (unsigned i = 0; i < t->n; i++)
            if (t->conns[i].state == C_DONE && t->conns[i].fd < 0)
                start_connect(t, &t->conns[i]);
    }
    if (opt.mode == MODE_PINGPONG && opt.interval_us > 0 && !t->draining) {
        for (unsigned i = 0; i < t->n; i++) {
            struct lconn *c = &t->conns[i];
            if (c->state == C_OPEN && c->recvd == c->sent && c->target == c->sent &&
                now >= c->next_send)
                pingpong_next(t, c, now);
        }
    }
}

static bool quiescent(const struct lthread *t)
{
    for (unsigned i = 0; i < t->n; i++) {
        const struct lconn *c = &t->conns[i];
        if (c->state == C_CONNECTING)
            return false;
        if (c->state == C_OPEN && (c->recvd != c->sent || c->sent != c->target))
            return false;
    }
    return true;
}

static int poll_timeout(const struct lthread *t, uint64_t now)
{
    if (t->draining)
        return 10;
    if (opt.mode == MODE_PINGPONG && opt.interval_us > 0) {
        uint64_t next = UINT64_MAX;
        for (unsigned i = 0; i < t->n; i++) {
            const struct lconn *c = &t->conns[i];
            if (c->state == C_OPEN && c->recvd == c->sent && c->next_send < next)
                next = c->next_send;
        }
        if (next <= now)
            return 0;
        if (next != UINT64_MAX) {
            uint64_t ms = (next - now + 999999) / 1000000;
            return ms < 50 ? (int)ms : 50;
        }
    }
    return 50;
}

static void begin_drain(struct lthread *t, uint64_t now)
{
    t->draining = true;
    if (opt.mode != MODE_IDLE)
        return;
    /* Prove every held connection once more: the server must still serve it. */
    for (unsigned i = 0; i < t->n; i++) {
        struct lconn *c = &t->conns[i];
        if (c->state == C_OPEN && c->recvd == c->sent && c->sent >= 1) {
            c->target = c->sent + 1;
            send_to_target(t, c);
        }
    }
    (void)now;
}

static void *thread_main(void *arg)
{
    struct lthread *t = arg;
    uint64_t deadline = 0;

    open_more(t);
    for (;;) {
        uint64_t now = now_ns();
        if (!t->draining &&
            (atomic_load_explicit(&phase, memory_order_acquire) != PHASE_RUN || !quota_left(t))) {
            begin_drain(t, now);
            deadline = now + (uint64_t)(opt.drain * 1e9);
        }
        if (t->draining && (quiescent(t) || now >= deadline))
            break;
        int n = mio_poll_poll(t->poll, t->events, poll_timeout(t, now));
        if (n < 0 && n != -EINTR) {
            fprintf(stderr, "mio-load: poll: %s\n", mio_strerror(n));
            break;
        }
        now = now_ns();
        MIO_EVENTS_FOREACH(const mio_event *ev, t->events) {
            on_event(t, ev, now);
        }
        after_batch(t, now);
    }
    /* Whatever is still owed now is lost. */
    for (unsigned i = 0; i < t->n; i++) {
        struct lconn *c = &t->conns[i];
        if (c->state == C_CONNECTING || (c->state == C_OPEN && c->recvd != c->sent))
            count_err(t, ERR_TIMEOUT);
        if (c->state == C_CONNECTING || c->state == C_OPEN)
            conn_finish(t, c);
    }
    atomic_store_explicit(&t->finished, true, memory_order_release);
    return NULL;
}

/* ------------------------------------------------------------------ main */

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

struct totals {
    uint64_t msgs, sent, recvd, open, ready, echoed, closed, errors[ERR_KINDS], err_total;
};

static void sum(struct lthread *ts, struct totals *s)
{
    memset(s, 0, sizeof(*s));
    for (unsigned i = 0; i < opt.threads; i++) {
        struct counters *c = &ts[i].c;
        s->msgs += CNT_GET(c->msgs);
        s->sent += CNT_GET(c->sent);
        s->recvd += CNT_GET(c->recvd);
        s->open += CNT_GET(c->open);
        s->ready += CNT_GET(c->ready);
        s->echoed += CNT_GET(c->echoed);
        s->closed += CNT_GET(c->closed);
        for (unsigned k = 0; k < ERR_KINDS; k++) {
            s->errors[k] += CNT_GET(c->errors[k]);
            s->err_total += CNT_GET(c->errors[k]);
        }
    }
}

static void progress_line(const struct totals *cur, const struct totals *prev, double dt,
                          double elapsed)
{
    double msgs = (double)(cur->msgs - prev->msgs) / dt;
    double mb = (double)(cur->recvd - prev->recvd) / dt / 1e6;
    const char *unit = opt.mode == MODE_CONNECT ? "conns/s" : "msgs/s";
    if (opt.mode == MODE_IDLE)
        fprintf(stderr, "\r[mio-load idle] %6.1fs  ready %llu/%u  open %llu  errors %llu   ",
                elapsed, (unsigned long long)cur->ready, opt.conns,
                (unsigned long long)cur->open, (unsigned long long)cur->err_total);
    else
        fprintf(stderr, "\r[mio-load %s] %6.1fs  %s %10.0f  MB/s %8.2f  open %llu  errors %llu   ",
                mode_names[opt.mode], elapsed, unit, msgs, mb, (unsigned long long)cur->open,
                (unsigned long long)cur->err_total);
}

int main(int argc, char **argv)
{
    int r = parse_args(argc, argv);
    if (r < 0) {
        if (r != -EDOM)
            usage(stderr);
        return 2;
    }
    if (opt.progress < 0)
        opt.progress = isatty(STDERR_FILENO);
    raise_nofile();
    pattern_init();

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Client threads must not take SIGINT: the main thread watches for it. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    struct lthread *ts = calloc(opt.threads, sizeof(*ts));
    if (ts == NULL)
        return 1;
    unsigned per = opt.conns / opt.threads, extra = opt.conns % opt.threads, first = 0;
    for (unsigned i = 0; i < opt.threads; i++) {
        struct lthread *t = &ts[i];
        t->id = i;
        t->n = per + (i < extra ? 1 : 0);
        t->first = first;
        first += t->n;
        if (opt.count > 0)
            t->quota = opt.count / opt.threads + (i < opt.count % opt.threads ? 1 : 0);
        if (opt.count > 0 && t->quota == 0)
            t->quota = 1;
        t->conns = calloc(t->n, sizeof(*t->conns));
        int err = t->conns == NULL ? -ENOMEM : mio_poll_new(&t->poll);
        if (err == 0)
            err = mio_events_new(1024, &t->events);
        if (err < 0) {
            fprintf(stderr, "mio-load: setup: %s\n", mio_strerror(err));
            return 1;
        }
        for (unsigned j = 0; j < t->n; j++) {
            t->conns[j].fd = -1;
            t->conns[j].seed = (uint32_t)(((uint64_t)(t->first + j) * 2654435761u) % PAT_LEN);
        }
    }

    uint64_t t_start = now_ns();
    for (unsigned i = 0; i < opt.threads; i++) {
        int err = pthread_create(&ts[i].tid, NULL, thread_main, &ts[i]);
        if (err != 0) {
            fprintf(stderr, "mio-load: pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* The main thread only watches: the clock, the signal, progress, idle readiness. */
    struct totals cur, prev, at_stop;
    memset(&prev, 0, sizeof(prev));
    uint64_t t_prev = t_start, t_ready = 0, t_stop = 0;
    bool ready_printed = opt.mode != MODE_IDLE;
    for (;;) {
        struct timespec ts100 = {0, 20 * 1000 * 1000};
        nanosleep(&ts100, NULL);
        uint64_t now = now_ns();
        sum(ts, &cur);
        if (!ready_printed) {
            /* Every connection is proven, or has failed: the server holds all it will hold. */
            uint64_t failed = cur.err_total;
            if (cur.ready + failed >= opt.conns) {
                t_ready = now;
                ready_printed = true;
                printf("phase=ready mode=idle conns=%llu errors=%llu connect_s=%.3f\n",
                       (unsigned long long)cur.ready, (unsigned long long)failed,
                       (double)(now - t_start) / 1e9);
                fflush(stdout);
            }
        }
        double run_for = (double)(now - (opt.mode == MODE_IDLE ? (t_ready ? t_ready : now)
                                                               : t_start)) / 1e9;
        bool all_finished = true; /* e.g. every thread reached its --count share */
        for (unsigned i = 0; i < opt.threads && all_finished; i++)
            all_finished = atomic_load_explicit(&ts[i].finished, memory_order_acquire);
        if (got_signal || (ready_printed && run_for >= opt.duration) || all_finished ||
            (opt.mode == MODE_IDLE && !ready_printed && (double)(now - t_start) / 1e9 >
                                                            opt.duration + 120)) {
            t_stop = now;
            at_stop = cur;
            atomic_store_explicit(&phase, PHASE_DRAIN, memory_order_release);
            break;
        }
        if (opt.progress && now - t_prev >= 500 * 1000 * 1000u) {
            progress_line(&cur, &prev, (double)(now - t_prev) / 1e9,
                          (double)(now - t_start) / 1e9);
            prev = cur;
            t_prev = now;
        }
    }
    for (unsigned i = 0; i < opt.threads; i++)
        pthread_join(ts[i].tid, NULL);
    if (opt.progress)
        fprintf(stderr, "\n");

    struct hist *h = calloc(1, sizeof(*h));
    uint64_t lost = 0;
    if (h == NULL)
        return 1;
    for (unsigned i = 0; i < opt.threads; i++) {
        hist_merge(h, &ts[i].hist);
        for (unsigned j = 0; j < ts[i].n; j++)
            lost += ts[i].conns[j].sent - ts[i].conns[j].recvd;
    }
    sum(ts, &cur);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double secs = (double)(t_stop - (opt.mode == MODE_IDLE && t_ready ? t_ready : t_start)) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    bool complete = lost == 0 && cur.err_total == 0;

    printf("mode=%s target=%s threads=%u conns=%u duration_s=%.3f", mode_names[opt.mode],
           opt.target_text, opt.threads, opt.conns, secs);
    switch (opt.mode) {
    case MODE_PINGPONG:
        printf(" size=%zu interval_us=%u msgs=%llu msgs_per_s=%.0f", opt.size, opt.interval_us,
               (unsigned long long)cur.msgs, (double)at_stop.msgs / secs);
        break;
    case MODE_PIPELINE:
        printf(" window=%zu MB_per_s=%.2f", opt.window, (double)at_stop.recvd / secs / 1e6);
        break;
    case MODE_CONNECT:
        printf(" conns_done=%llu conns_per_s=%.0f echoed=%llu server_closed=%llu",
               (unsigned long long)cur.msgs, (double)at_stop.msgs / secs,
               (unsigned long long)cur.echoed, (unsigned long long)cur.closed);
        break;
    case MODE_IDLE:
        printf(" conns_held=%llu conns_proven_at_end=%llu connect_s=%.3f",
               (unsigned long long)at_stop.ready, (unsigned long long)cur.msgs,
               t_ready ? (double)(t_ready - t_start) / 1e9 : -1.0);
        break;
    }
    if (opt.mode == MODE_PINGPONG || opt.mode == MODE_CONNECT)
        printf(" p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f",
               hist_percentile(h, 50) / 1e3, hist_percentile(h, 90) / 1e3,
               hist_percentile(h, 99) / 1e3, hist_percentile(h, 99.9) / 1e3,
               (double)h->max / 1e3, h->count ? h->sum / (double)h->count / 1e3 : 0.0);
    printf(" bytes_sent=%llu bytes_recv=%llu lost_bytes=%llu errors=%llu",
           (unsigned long long)cur.sent, (unsigned long long)cur.recvd, (unsigned long long)lost,
           (unsigned long long)cur.err_total);
    for (unsigned k = 0; k < ERR_KINDS; k++)
        printf(" err_%s=%llu", err_names[k], (unsigned long long)cur.errors[k]);
    printf(" client_cpu_s=%.3f complete=%d\n", cpu, complete ? 1 : 0);
    fflush(stdout);

    for (unsigned i = 0; i < opt.threads; i++) {
        mio_events_free(ts[i].events);
        mio_poll_free(ts[i].poll);
        free(ts[i].conns);
    }
    free(ts);
    free(h);
    return complete ? 0 : 1;
}
