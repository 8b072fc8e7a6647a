/* raw_epoll_echo: the fastest echo server we know how to write on bare epoll, as a yardstick.
 *
 *   raw_epoll_echo --listen ADDR [--workers N] [--short-read]
 *
 * One thread per worker, each with its own epoll and SO_REUSEPORT listener (raw_epoll.h). Every
 * connection is registered once, edge-triggered, for IN|OUT|RDHUP, so no epoll_ctl is ever needed
 * after accept. Reading goes into one per-thread buffer and is written straight back. Per-connection
 * state is a 16-byte slot in an fd-indexed table sized at start-up, so nothing is allocated per
 * connection or per message; only when the kernel refuses part of a reply (a full send buffer, the
 * rare case) are the unsent bytes copied to the heap until EPOLLOUT, and reading pauses meanwhile.
 *
 * --short-read: a read that returns less than the buffer size means the socket is drained, so the
 * extra read that would return EAGAIN is skipped (3 syscalls per echoed message instead of 4). A FIN
 * that came with the data shows as EPOLLRDHUP in the same event; then reading continues to EOF. */
#include "raw_epoll.h"

#define ECHO_BUF (64 * 1024)

struct echo_slot {
    char *pend;        /* unsent reply bytes (heap, only under back-pressure) */
    uint32_t off, len; /* pend[off..len) is still to be sent */
};

static struct echo_slot *slots; /* indexed by fd; each fd is touched only by its own worker */
static size_t nslots;

static int raw_setup(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
        rl.rlim_cur = 1 << 20;
    nslots = (size_t)rl.rlim_cur;
    /* calloc of a large table maps zero pages lazily: an idle connection costs its 16-byte slot. */
    slots = calloc(nslots, sizeof(*slots));
    if (slots == NULL) {
        perror("calloc");
        return -1;
    }
    return 0;
}

static void raw_teardown(void)
{
    for (size_t i = 0; i < nslots; i++)
        free(slots[i].pend);
    free(slots);
}

static void conn_close(int fd)
{
    struct echo_slot *s = &slots[fd];
    free(s->pend);
    s->pend = NULL;
    s->off = s->len = 0;
    close(fd); /* the last reference: the kernel drops the epoll registration with it */
}

/* Sends what is pending; returns 1 when all of it left, 0 when the kernel is full, -1 on error. */
static int flush_pending(int fd, struct echo_slot *s)
{
    while (s->off < s->len) {
        ssize_t n = send(fd, s->pend + s->off, s->len - s->off, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        s->off += (uint32_t)n;
    }
    free(s->pend);
    s->pend = NULL;
    s->off = s->len = 0;
    return 1;
}

/* Echoes buf[0..n); returns 1 when all was sent, 0 when the rest is now pending, -1 on error. */
static int echo_out(int fd, struct echo_slot *s, const char *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, buf + done, n - done, MSG_NOSIGNAL);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            break;
        }
        done += (size_t)w;
    }
    if (done == n)
        return 1;
    /* Back-pressure: the cold path, the only allocation in this server. */
    s->pend = malloc(n - done);
    if (s->pend == NULL)
        return -1;
    memcpy(s->pend, buf + done, n - done);
    s->off = 0;
    s->len = (uint32_t)(n - done);
    return 0;
}

static void on_accept(struct raw_worker *w)
{
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            return; /* EAGAIN: drained; EMFILE and friends: the next connection retries */
        }
        if ((size_t)fd >= nslots ||
            raw_epoll_add(w->epfd, fd, (uint64_t)fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
            close(fd);
            continue;
        }
        raw_count(&w->accepted);
    }
}

static void raw_handle(struct raw_worker *w, uint64_t token, uint32_t events)
{
    static _Thread_local char buf[ECHO_BUF];
    if (token == RAW_TOKEN_LISTENER) {
        on_accept(w);
        return;
    }
    int fd = (int)token;
    struct echo_slot *s = &slots[fd];

    if (s->len != 0) {
        int r = flush_pending(fd, s);
        if (r < 0) {
            conn_close(fd);
            return;
        }
        if (r == 0)
            return; /* still full: reading stays paused until the next EPOLLOUT edge */
        /* Flushed: fall through and read, since input edges were ignored while paused. */
    } else if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        return; /* a bare EPOLLOUT edge with nothing pending */
    }
    bool eof_seen = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
            int r = echo_out(fd, s, buf, (size_t)n);
            if (r < 0) {
                conn_close(fd);
                return;
            }
            if (r == 0)
                return;
            if (w->short_read && (size_t)n < sizeof(buf) && !eof_seen)
                return;
            continue;
        }
        if (n == 0) {
            conn_close(fd);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            conn_close(fd);
        return;
    }
}

int main(int argc, char **argv)
{
    return raw_main(argc, argv, true);
}
