/* Small pieces the example programs (and bench/mio-load) share: strict parsing of command-line
 * numbers and addresses, SIGINT/SIGTERM as a readable fd (signalfd, so no async-signal handler
 * runs), printing the bound address as the first line of output, and accepting on an
 * edge-triggered listener that survives running out of fds. */
#ifndef MIO_EXAMPLES_UTIL_H
#define MIO_EXAMPLES_UTIL_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <mio/mio.h>

/* Parses text, the value of command-line option opt, as a decimal integer from min to max: digits
 * only (no blank, sign or base prefix), nothing after them, no overflow. Returns true and sets
 * *out, or prints one line naming prog, opt and text on stderr and returns false (the caller
 * exits with status 2). */
static inline bool example_parse_ull(const char *prog, const char *opt, const char *text,
                                     unsigned long long min, unsigned long long max,
                                     unsigned long long *out)
{
    unsigned long long v;
    char *end;

    if (text[0] >= '0' && text[0] <= '9') {
        errno = 0;
        v = strtoull(text, &end, 10);
        if (errno == 0 && *end == '\0' && v >= min && v <= max) {
            *out = v;
            return true;
        }
    }
    fprintf(stderr, "%s: bad value '%s' for %s: want an integer from %llu to %llu\n", prog, text,
            opt, min, max);
    return false;
}

/* Parses text, the value of option opt, as a number of seconds from 0 to max: digits with at most
 * one decimal point ("2", "0.25"), no blank, sign or exponent. Returns true and sets *out, or
 * prints one line naming prog, opt and text on stderr and returns false. */
static inline bool example_parse_seconds(const char *prog, const char *opt, const char *text,
                                         double max, double *out)
{
    double v;
    char *end;

    if (text[0] >= '0' && text[0] <= '9' && text[strspn(text, "0123456789.")] == '\0') {
        v = strtod(text, &end);
        if (*end == '\0' && v <= max) {
            *out = v;
            return true;
        }
    }
    fprintf(stderr, "%s: bad value '%s' for %s: want seconds from 0 to %.15g\n", prog, text, opt,
            max);
    return false;
}

/* Parses text, the value of option opt, with mio_addr_parse. Returns true and sets *out, or prints
 * one line naming prog, opt and text on stderr and returns false. */
static inline bool example_parse_addr(const char *prog, const char *opt, const char *text,
                                      mio_addr *out)
{
    if (mio_addr_parse(text, out) == 0)
        return true;
    fprintf(stderr, "%s: bad address '%s' for %s: want a.b.c.d:port, [v6]:port or unix:path\n",
            prog, text, opt);
    return false;
}

/* Blocks SIGINT and SIGTERM in this (only) thread and returns a non-blocking signalfd for them,
 * or -errno. Register it READABLE; when it fires, read it with example_signal_read. */
static inline int example_signalfd(void)
{
    sigset_t set;
    int fd;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        return -errno;
    fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd == -1 ? -errno : fd;
}

/* The number of the signal that arrived, or 0 if none is pending. */
static inline int example_signal_read(int sfd)
{
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si)
        return 0;
    return (int)si.ssi_signo;
}

/* Prints the fd's bound address as one line on stdout (flushed: scripts read it to learn the
 * port when binding to port 0). Returns 0 or -errno. */
static inline int example_print_bound(int fd)
{
    mio_addr a;
    char text[MIO_ADDR_STRLEN];
    int r = mio_socket_local_addr(fd, &a);
    if (r < 0)
        return r;
    r = mio_addr_format(&a, text, sizeof text);
    if (r < 0)
        return r;
    printf("%s\n", text);
    fflush(stdout);
    return 0;
}

/* Copies the string s to o and returns the end of the copy: text assembled piece by piece without
 * the cost of a format string (the caller sizes o). */
static inline char *example_put(char *o, const char *s)
{
    size_t n = strlen(s);

    return (char *)memcpy(o, s, n) + n;
}

/* Writes v in decimal at o and returns the end (at most 20 characters). */
static inline char *example_put_uint(char *o, unsigned long long v)
{
    char digits[20], *end = digits + sizeof(digits), *d = end;

    do
        *--d = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return (char *)memcpy(o, d, (size_t)(end - d)) + (end - d);
}

/* What every single-threaded example sets up first: one mio_poll and its events, SIGINT/SIGTERM
 * as a signalfd registered with token EXAMPLE_SIGNALS, and one socket bound by bind_fn at addr,
 * registered READABLE with token EXAMPLE_SERVER, its address printed as the first line. */
enum { EXAMPLE_SERVER = 0, EXAMPLE_SIGNALS = 1 };

struct example_loop {
    mio_poll *poll;
    mio_events *events;
    mio_registry *reg;
    int sfd, fd;
};

/* Sets l up (events of capacity cap). Returns 0, or -errno after printing one line naming prog
 * (and the address text when the bind failed); the caller then calls example_loop_close and exits
 * with status 1. */
static inline int example_loop_open(struct example_loop *l, const char *prog, unsigned cap,
                                    int (*bind_fn)(const mio_addr *), const mio_addr *addr,
                                    const char *text)
{
    int r;

    *l = (struct example_loop){.sfd = -1, .fd = -1};
    if ((r = mio_poll_new(&l->poll)) < 0 || (r = mio_events_new(cap, &l->events)) < 0)
        goto err;
    l->reg = mio_poll_registry(l->poll);
    if ((l->sfd = r = example_signalfd()) < 0 ||
        (r = mio_registry_register(l->reg, l->sfd, EXAMPLE_SIGNALS, MIO_READABLE)) < 0)
        goto err;
    if ((l->fd = r = bind_fn(addr)) < 0) {
        fprintf(stderr, "%s: bind %s: %s\n", prog, text, mio_strerror(r));
        return r;
    }
    if ((r = mio_registry_register(l->reg, l->fd, EXAMPLE_SERVER, MIO_READABLE)) < 0 ||
        (r = example_print_bound(l->fd)) < 0)
        goto err;
    return 0;
err:
    fprintf(stderr, "%s: %s\n", prog, mio_strerror(r));
    return r;
}

/* Closes what example_loop_open set up (any part of it). */
static inline void example_loop_close(struct example_loop *l)
{
    if (l->fd >= 0)
        close(l->fd);
    if (l->sfd >= 0)
        close(l->sfd);
    mio_events_free(l->events);
    mio_poll_free(l->poll);
}

static inline unsigned long long example_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

/* Accepting on an edge-triggered listener in a single-threaded server. The listener reports a new
 * edge only when a connection arrives, so a server that stops accepting after a failure that
 * outlasts the call (EMFILE, ENFILE, ENOBUFS, ENOMEM) would leave its backlog waiting for the next
 * client. Instead accepting pauses: the server polls with example_accept_timeout and accepts again
 * once example_accept_due says so, EXAMPLE_ACCEPT_PAUSE_MS later or as soon as it closed an fd
 * (example_accept_fd_closed). Failures are reported on stderr at most once per
 * EXAMPLE_ACCEPT_REPORT_MS, with the number left unreported since the previous line. One thread
 * owns the struct; example_accept_init sets it up. */
#define EXAMPLE_ACCEPT_PAUSE_MS 100
#define EXAMPLE_ACCEPT_REPORT_MS 1000

struct example_accept {
    const char *prog;             /* names the program in reports */
    bool paused;                  /* accept again at resume_ms, or sooner once an fd is closed */
    unsigned long long resume_ms; /* example_now_ms() clock */
    bool reported;                /* a line was printed, at report_ms */
    unsigned long long report_ms;
    unsigned long long suppressed; /* failures not printed since report_ms */
    unsigned long long failures;   /* every failure but -EAGAIN and -ECONNABORTED */
};

static inline void example_accept_init(struct example_accept *a, const char *prog)
{
    memset(a, 0, sizeof *a);
    a->prog = prog;
}

/* Prints err unless a line went out less than EXAMPLE_ACCEPT_REPORT_MS ago (then counts it). */
static inline void example_accept_report(struct example_accept *a, int err, bool pausing,
                                         unsigned long long now)
{
    char more[64] = "";

    if (a->reported && now - a->report_ms < EXAMPLE_ACCEPT_REPORT_MS) {
        a->suppressed++;
        return;
    }
    if (a->suppressed > 0)
        snprintf(more, sizeof more, " (%llu more failures not reported)", a->suppressed);
    /* One call, so the line reaches unbuffered stderr in one write. */
    fprintf(stderr, "%s: accept: %s%s%s\n", a->prog, mio_strerror(err),
            pausing ? "; accepting paused" : "", more);
    a->reported = true;
    a->report_ms = now;
    a->suppressed = 0;
}

/* Takes err, what mio_tcp_listener_accept returned (< 0). Returns true when the caller should
 * accept again at once: the failure cost one pending connection and the next may be fine
 * (-ECONNABORTED silently; -EPROTO, -EPERM reported). Returns false when it should stop: on
 * -EAGAIN the backlog is empty (and any pause ends); on anything else (-EMFILE, -ENFILE,
 * -ENOBUFS, -ENOMEM, ...) accepting pauses. */
static inline bool example_accept_failed(struct example_accept *a, int err)
{
    unsigned long long now;

    if (err == -EAGAIN) {
        a->paused = false;
        return false;
    }
    if (err == -ECONNABORTED)
        return true;
    now = example_now_ms();
    a->failures++;
    if (err == -EPROTO || err == -EPERM) {
        example_accept_report(a, err, false, now);
        return true;
    }
    example_accept_report(a, err, true, now);
    a->paused = true;
    a->resume_ms = now + EXAMPLE_ACCEPT_PAUSE_MS;
    return false;
}

/* The server closed an fd: a paused listener may get one now, so the pause ends at once. */
static inline void example_accept_fd_closed(struct example_accept *a)
{
    if (a->paused)
        a->resume_ms = 0;
}

/* The timeout for mio_poll_poll: timeout_ms (-1: none), shortened to the end of a pause. */
static inline int example_accept_timeout(const struct example_accept *a, int timeout_ms)
{
    unsigned long long now, left;

    if (!a->paused)
        return timeout_ms;
    now = example_now_ms();
    left = a->resume_ms > now ? a->resume_ms - now : 0;
    return timeout_ms >= 0 && (unsigned long long)timeout_ms < left ? timeout_ms : (int)left;
}

/* True when a pause has ended and the caller should accept until example_accept_failed says stop
 * (a new pause may begin). */
static inline bool example_accept_due(struct example_accept *a)
{
    if (!a->paused || example_now_ms() < a->resume_ms)
        return false;
    a->paused = false;
    return true;
}

#endif
