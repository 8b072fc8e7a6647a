/* mio-proxy: a TCP proxy on mio_pool + mio_conn. Each accepted client is paired with an outbound
 * mio_conn_connect to the next upstream (round robin over the whole process: one relaxed atomic
 * counter) on the same worker reactor, so a pair never crosses threads. Bytes are relayed both
 * ways; what the client sends before the upstream answers the connect is queued by the library.
 *
 * Back-pressure: a destination whose queue passes HIGH_MARK stops the reading of its source
 * (mio_conn_set_reading) until the queue is back at LOW_MARK, so each direction holds at most
 * HIGH_MARK plus one read (64 KiB), whatever the peers do. The directions must stay independent
 * (a client that stops reading for a while must not stop its requests reaching the upstream,
 * whose answers it will read later), so the library's own pause, which stops reading a conn whose
 * own queue is above its high mark, must never act: it cannot, for that bound stays below the
 * library's default high mark (1 MiB), and the default marks cost no memory per conn where set
 * ones would. Without a high mark passed there is no on_drain either, so a held pair polls the
 * queue every WATCH_MS instead.
 *
 * Half-close: a side's FIN is passed on as mio_conn_shutdown of the other side (FIN once its
 * queue is out); when both directions have ended both sides close, their queues flushed. A failed
 * side (connect refused or timed out, reset, ...) closes the other one: what is queued towards it
 * still goes out, for FLUSH_MS at most, then is dropped. */
#include <stdatomic.h>

#include "pool_main.h"

#define LOW_MARK (64u * 1024)
#define HIGH_MARK (256u * 1024) /* + one read: below the library's default high mark, 1 MiB */
#define FLUSH_MS 5000 /* a closing side gets this long to take its queued bytes */
#define WATCH_MS 2    /* how often a held pair looks whether its destination drained */
#define MAX_UPSTREAMS 64

static mio_addr upstreams[MAX_UPSTREAMS];
static unsigned n_upstreams;
static atomic_uint next_upstream; /* relaxed: only its own value matters, it publishes nothing */
static unsigned long long connect_timeout_ms = 5000;

struct pair {
    mio_conn *side[2];  /* CLIENT, UPSTREAM; NULL once that side's on_close ran */
    bool eof[2];        /* that side sent its FIN, passed on to the other */
    bool held[2];       /* that side's reading is stopped: the other's queue passed HIGH_MARK */
    mio_timer_id watch; /* runs while a side is held */
};

enum { CLIENT = 0, UPSTREAM = 1 };

/* Which side of p the conn c is. */
static int side_of(const struct pair *p, const mio_conn *c)
{
    return p->side[UPSTREAM] == c ? UPSTREAM : CLIENT;
}

/* The other side failed or closed: closes side s, if still open, giving its queued bytes
 * FLUSH_MS to go out (a peer that stopped reading does not keep it open). */
static void close_side(struct pair *p, int s)
{
    if (p->side[s] == NULL)
        return;
    (void)mio_conn_set_deadline(p->side[s], FLUSH_MS); /* -EPIPE if already closing: fine */
    mio_conn_close(p->side[s]);
}

/* A held side reads again once the other side's queue is back at the low mark. */
static void watch(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct pair *p = arg;

    for (int s = CLIENT; s <= UPSTREAM; s++) {
        if (p->held[s] && mio_conn_pending(p->side[!s]) <= LOW_MARK) {
            p->held[s] = false;
            (void)mio_conn_set_reading(p->side[s], true); /* on failure it closes by itself */
        }
    }
    if (!p->held[CLIENT] && !p->held[UPSTREAM]) {
        (void)mio_reactor_timer_cancel(r, id);
        p->watch = 0;
    }
}

static void relay_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct pair *p = arg;
    int s = side_of(p, c);
    mio_conn *dst = p->side[!s];

    if (dst == NULL) /* the other side is gone: its on_close is closing this one */
        return;
    if (len == 0) { /* FIN: pass it on; done when both directions are */
        p->eof[s] = true;
        if (p->eof[!s]) { /* both queues flush, however long the peers take */
            mio_conn_close(c);
            mio_conn_close(dst);
        } else {
            (void)mio_conn_shutdown(dst); /* on failure dst closes and its on_close ends it all */
        }
        return;
    }
    if (mio_conn_write(dst, data, len) < 0)
        return; /* dst fails by itself; its on_close closes c */
    if (mio_conn_pending(dst) > HIGH_MARK && mio_conn_set_reading(c, false) == 0) {
        p->held[s] = true;
        if (p->watch == 0 && mio_reactor_timer_start(mio_conn_reactor(c), WATCH_MS, WATCH_MS, watch,
                                                     p, &p->watch) < 0)
            mio_conn_close(c); /* out of timers: this pair cannot go on */
    }
}

static void relay_close(mio_conn *c, int reason, void *arg)
{
    struct pair *p = arg;
    int s = side_of(p, c);

    (void)reason; /* 0 (closed by us), or the failure: either way the other side goes too */
    p->side[s] = NULL;
    if (p->watch != 0)
        (void)mio_reactor_timer_cancel(mio_conn_reactor(c), p->watch);
    p->watch = 0;
    close_side(p, !s);
    if (p->side[!s] == NULL)
        free(p);
}

static const mio_conn_ops relay_ops = {relay_read, relay_close, NULL};

static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    struct pair *p = calloc(1, sizeof(*p));
    unsigned i = atomic_fetch_add_explicit(&next_upstream, 1, memory_order_relaxed) % n_upstreams;
    const mio_addr *up = &upstreams[i];

    (void)peer;
    (void)arg;
    if (p == NULL || mio_conn_open(worker, fd, &relay_ops, p, &p->side[CLIENT]) < 0) {
        free(p);
        close(fd);
        return;
    }
    if (mio_conn_connect(worker, up, &relay_ops, NULL, p, connect_timeout_ms,
                         &p->side[UPSTREAM]) < 0) {
        mio_conn_close(p->side[CLIENT]); /* its on_close frees p */
        return;
    }
    (void)mio_tcp_set_nodelay(mio_conn_fd(p->side[UPSTREAM]), true); /* as the listener's */
}

/* --upstream ADDR[,ADDR...] (repeatable; the list, an argv string, is cut at its commas).
 * Returns false after a message on stderr. */
static bool add_upstreams(const char *prog, char *list)
{
    for (char *item = list, *next; item != NULL; item = next) {
        if ((next = strchr(item, ',')) != NULL)
            *next++ = '\0';
        if (n_upstreams == MAX_UPSTREAMS) {
            fprintf(stderr, "%s: more than %d upstreams\n", prog, MAX_UPSTREAMS);
            return false;
        }
        if (!example_parse_addr(prog, "--upstream", item, &upstreams[n_upstreams++]))
            return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    static const struct pool_main_num nums[] = {
        {"connect-timeout", "MS", "give up an upstream connect after MS (5000; 0: the kernel's)", 0,
         86400000, &connect_timeout_ms},
        {NULL, NULL, NULL, 0, 0, NULL},
    };
    const struct pool_main_prog prog = {
        .what = "TCP proxy: relays each client to the next --upstream ADDR[,ADDR...] (required;\n"
                "round robin over all workers), with back-pressure and half-close both ways.",
        .accept = on_accept,
        .nums = nums,
        .opts = {.nodelay = true},
    };
    bool help = false;
    int n = 1;

    /* --upstream is this program's own: taken out before the shared parser reads the rest. */
    for (int i = 1; i < argc; i++) {
        char *list = NULL;

        if (strcmp(argv[i], "--upstream") == 0 && i + 1 < argc)
            list = argv[++i];
        else if (strncmp(argv[i], "--upstream=", 11) == 0)
            list = argv[i] + 11;
        else
            argv[n++] = argv[i];
        help |= strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
        if (list != NULL && !add_upstreams(argv[0], list))
            return 2;
    }
    argv[n] = NULL;
    if (n_upstreams == 0 && !help) {
        fprintf(stderr, "%s: --upstream ADDR[,ADDR...] is required (see --help)\n", argv[0]);
        return 2;
    }
    return pool_main_prog(n, argv, &prog);
}
