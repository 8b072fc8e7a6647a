/* The skeleton shared by the raw epoll baselines (echo and drop): one thread per worker, each with
 * its own epoll instance and its own SO_REUSEPORT listener on the same port, so the kernel spreads
 * connections and no thread ever hands anything to another. This is the lower bound a framework is
 * measured against: no hand-off, no wakeups, no allocation per message.
 *
 * The program defines raw_handle() (one event on a connection or the listener of its worker) and
 * calls raw_main(). Signals: SIGINT/SIGTERM are blocked in every thread and taken by sigwait() in
 * the main thread, which then writes a shared eventfd that every worker watches; workers leave their
 * loop, the main thread joins them and exits 0. SIGUSR1 prints one line per worker on stdout:
 * `worker=I accepted=N`. */
#ifndef MIO_BENCH_RAW_EPOLL_H
#define MIO_BENCH_RAW_EPOLL_H

#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "baseline.h"

#define RAW_TOKEN_LISTENER UINT64_MAX
#define RAW_TOKEN_STOP (UINT64_MAX - 1)
#define RAW_MAX_EVENTS 256

struct raw_worker {
    unsigned id;
    int epfd;
    int lfd;
    pthread_t tid;
    bool short_read;
    _Atomic uint64_t accepted; /* written by the worker only; read by main for SIGUSR1 */
};

/* Single-writer counter: a relaxed load + store, no locked instruction on the accept path. */
static inline void raw_count(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Handles one event: a token that is neither the listener nor the stop token is a connection fd. */
static void raw_handle(struct raw_worker *w, uint64_t token, uint32_t events);
/* Called once before any worker starts (e.g. to size per-fd state by RLIMIT_NOFILE). */
static int raw_setup(void);
static void raw_teardown(void);

static int raw_stop_fd = -1;

static int raw_listener(const struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1 ||
        bind(fd, (const struct sockaddr *)ss, len) == -1 || listen(fd, 4096) == -1) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static void *raw_worker_main(void *arg)
{
    struct raw_worker *w = arg;
    struct epoll_event evs[RAW_MAX_EVENTS];

    for (;;) {
        int n = epoll_wait(w->epfd, evs, RAW_MAX_EVENTS, -1);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == RAW_TOKEN_STOP)
                return NULL;
            raw_handle(w, evs[i].data.u64, evs[i].events);
        }
    }
}

static int raw_epoll_add(int epfd, int fd, uint64_t token, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = token};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1 ? -errno : 0;
}

static int raw_main(int argc, char **argv, bool has_short)
{
    struct baseline_args a = baseline_parse(argc, argv, true, has_short);
    struct sockaddr_storage ss;
    socklen_t len;
    sigset_t sigs;
    int sig, err;

    if (baseline_addr_parse(a.listen, &ss, &len) < 0) {
        fprintf(stderr, "%s: bad address '%s'\n", argv[0], a.listen);
        return 2;
    }
    /* Blocked before any thread exists, so every worker inherits the mask and only sigwait sees
     * them. SIGPIPE is ignored outright: sends use MSG_NOSIGNAL, this is belt and braces. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (raw_setup() < 0)
        return 1;
    raw_stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (raw_stop_fd == -1) {
        perror("eventfd");
        return 1;
    }
    struct raw_worker *ws = calloc(a.workers, sizeof(*ws));
    if (ws == NULL)
        return 1;
    /* The first listener resolves port 0; the others join the same port through SO_REUSEPORT. */
    for (unsigned i = 0; i < a.workers; i++) {
        ws[i].id = i;
        ws[i].short_read = a.short_read;
        ws[i].lfd = raw_listener(&ss, len);
        if (ws[i].lfd < 0) {
            fprintf(stderr, "%s: listen on %s: %s\n", argv[0], a.listen, strerror(-ws[i].lfd));
            return 1;
        }
        if (i == 0)
            baseline_set_port(&ss, baseline_bound_port(ws[0].lfd));
        ws[i].epfd = epoll_create1(EPOLL_CLOEXEC);
        if (ws[i].epfd == -1 ||
            raw_epoll_add(ws[i].epfd, ws[i].lfd, RAW_TOKEN_LISTENER, EPOLLIN | EPOLLET) < 0 ||
            raw_epoll_add(ws[i].epfd, raw_stop_fd, RAW_TOKEN_STOP, EPOLLIN) < 0) {
            perror("epoll");
            return 1;
        }
    }
    baseline_print_bound(ws[0].lfd);
    for (unsigned i = 0; i < a.workers; i++) {
        err = pthread_create(&ws[i].tid, NULL, raw_worker_main, &ws[i]);
        if (err != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", argv[0], strerror(err));
            return 1;
        }
    }
    for (;;) {
        err = sigwait(&sigs, &sig);
        if (err != 0)
            continue;
        if (sig != SIGUSR1)
            break;
        for (unsigned i = 0; i < a.workers; i++)
            printf("worker=%u accepted=%llu\n", i,
                   (unsigned long long)atomic_load_explicit(&ws[i].accepted,
                                                            memory_order_relaxed));
        fflush(stdout);
    }

    uint64_t one = 1, accepted = 0;
    if (write(raw_stop_fd, &one, sizeof(one)) == -1)
        perror("write stop");
    for (unsigned i = 0; i < a.workers; i++) {
        pthread_join(ws[i].tid, NULL);
        accepted += atomic_load_explicit(&ws[i].accepted, memory_order_relaxed);
        close(ws[i].epfd);
        close(ws[i].lfd);
    }
    raw_teardown();
    close(raw_stop_fd);
    fprintf(stderr, "%s: stopped by signal %d: workers=%u accepted=%llu\n", argv[0], sig,
            a.workers, (unsigned long long)accepted);
    free(ws);
    return 0;
}

#endif
