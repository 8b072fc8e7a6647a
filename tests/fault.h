/* Fault injection for the tests/test_fault_*.c binaries. They are linked with
 * -Wl,--wrap=<symbol> for every symbol below, so the library's calls (lib/libmio-internal.la is
 * linked statically) go through the __wrap_ functions here. A wrapper passes the call through
 * unless a fault is armed for its symbol: then the `skip`+1-th matching call (and the `count`-1
 * after it) fails with the armed errno (allocation: returns NULL). `fd` narrows a socket fault to
 * one descriptor (-1: any), so other connections are untouched.
 *
 * The allocation wrappers also keep a live-allocation count (successful allocs - frees), so every
 * build, not only the ASan one, sees a leak: a scenario must end with the count it started with.
 * mmap/munmap and, built with liburing, the io_uring backend's calls keep the same kind of count
 * for mappings, rings and registered buffer rings. The liburing wrappers fail by returning -err
 * (liburing's convention); their `fd` is the ring's fd (-1 for io_uring_queue_init_params).
 * A conn's receive and send on the ring (FAULT_RING_*) end in a completion, not a call: their
 * results are injected through the conn layer's seam, see the wrappers; their `fd` is the conn's.
 * The test's own calls to read/recv/... go through the wrappers too; arm with an fd filter when
 * that matters. Include this header in exactly one file per binary. Thread-safe (atomics). */
#ifndef MIO_TESTS_FAULT_H
#define MIO_TESTS_FAULT_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "internal/conn_ring_result.h"
#include "internal/mem.h"

#ifdef HAVE_LIBURING
#include <liburing.h>
#include "internal/uring.h"
#endif

enum fault_site {
    FAULT_ACCEPT4, /* accept4, and the acceptor's multishot accept on its ring (see below) */
    FAULT_EPOLL_CREATE1,
    FAULT_EPOLL_CTL,
    FAULT_EPOLL_WAIT,
    FAULT_EVENTFD,
    FAULT_READ,
    FAULT_WRITE,
    FAULT_RECV,
    FAULT_SEND,
    FAULT_SENDMSG,
    FAULT_WRITEV,
    FAULT_ALLOC, /* mio__alloc, mio__calloc and mio__realloc share one counter */
    FAULT_MMAP,
    FAULT_URING_INIT,     /* io_uring_queue_init_params */
    FAULT_URING_BUF_RING, /* io_uring_register_buf_ring */
    FAULT_URING_SUBMIT,   /* io_uring_submit */
    FAULT_URING_WAIT,     /* io_uring_submit_and_wait_timeout */
    FAULT_URING_PEEK,     /* io_uring_submit_and_get_events (a wait with timeout 0) */
    FAULT_URING_WAKE,     /* mio__uring_wake: the message is sent to no ring (fd -1), so the
                             kernel fails it with -EBADF; `fd` filters on the target ring's fd */
    FAULT_RING_RECV_RES,   /* a conn's receive on the ring: its completion reports -err */
    FAULT_RING_SEND_RES,   /* a conn's send on the ring: its completion reports -err */
    FAULT_RING_SEND_SHORT, /* a conn's send on the ring: the kernel is given half its bytes */
    FAULT_NSITES
};

struct fault_plan {
    atomic_int armed;
    atomic_long skip;  /* matching calls to let through first */
    atomic_long count; /* failures left to inject (-1: forever) */
    atomic_long calls; /* matching calls seen (armed or not) */
    atomic_long hits;  /* failures injected */
    atomic_int err;
    atomic_int fd;
};

static struct fault_plan fault_plans[FAULT_NSITES];
static atomic_long fault_live_allocs;
static atomic_long fault_epoll_wait_returns; /* epoll_wait calls that returned (entries: calls) */
static atomic_long fault_live_maps;          /* mmap successes - munmap successes */
static atomic_long fault_live_rings;         /* io_uring_queue_init_params successes - exits */
static atomic_long fault_live_buf_rings;     /* buffer ring registrations - unregistrations */
static atomic_long fault_uring_wait_returns; /* like fault_epoll_wait_returns, for the ring */

/* Arms site: let `skip` matching calls pass, then fail `count` (-1: all) with errno `err`. */
static inline void fault_arm(enum fault_site s, long skip, long count, int err, int fd)
{
    struct fault_plan *p = &fault_plans[s];

    atomic_store(&p->armed, 0);
    atomic_store(&p->err, err);
    atomic_store(&p->fd, fd);
    atomic_store(&p->skip, skip);
    atomic_store(&p->count, count);
    atomic_store(&p->hits, 0);
    atomic_store(&p->armed, 1);
}

static inline void fault_disarm(enum fault_site s)
{
    atomic_store(&fault_plans[s].armed, 0);
}

static inline void fault_disarm_all(void)
{
    for (int s = 0; s < FAULT_NSITES; s++)
        fault_disarm((enum fault_site)s);
}

/* Starts counting calls of site s from zero. */
static inline void fault_count_reset(enum fault_site s)
{
    atomic_store(&fault_plans[s].calls, 0);
}

static inline long fault_calls(enum fault_site s)
{
    return atomic_load(&fault_plans[s].calls);
}

static inline long fault_hits(enum fault_site s)
{
    return atomic_load(&fault_plans[s].hits);
}

static inline long fault_live(void)
{
    return atomic_load(&fault_live_allocs);
}

/* io_uring_submit_and_wait_timeout calls that returned: fault_calls(FAULT_URING_WAIT) minus this
 * is the number of threads in the ring's blocking wait now (while the site has no fd filter). */
static inline long fault_uring_waits_returned(void)
{
    return atomic_load(&fault_uring_wait_returns);
}

/* Each test starts with every fault disarmed and must end with the fds, live allocations,
 * mappings, rings and buffer rings it started with. Needs cmocka.h and helpers.h included first
 * (every fault test does). */
static int fault_fd_base;
static long fault_live_base, fault_maps_base, fault_rings_base, fault_buf_rings_base;

/* Results due for the completions of a conn's faulted operations on the ring (the wrappers of
 * mio__uring_recv and mio__uring_send below). */
#define FAULT_RING_FDS 4096
static atomic_int fault_ring_due[2][FAULT_RING_FDS]; /* [op][fd]: its next result (0: none) */

static inline bool fault_ring_fd(int fd)
{
    return fd >= 0 && fd < FAULT_RING_FDS;
}

/* True while the completion of a faulted operation of fd has not reached the conn yet. */
static inline bool fault_ring_due_for(enum mio__ring_op op, int fd)
{
    return fault_ring_fd(fd) && atomic_load(&fault_ring_due[op][fd]) != 0;
}

/* ... and of a listener's faulted multishot accept (the wrapper of mio__uring_accept). */
static atomic_int fault_accept_due[FAULT_RING_FDS]; /* [listener fd]: its next result */

static inline void fault_ring_clear(void)
{
    for (int op = 0; op < 2; op++)
        for (int fd = 0; fd < FAULT_RING_FDS; fd++)
            atomic_store(&fault_ring_due[op][fd], 0);
    for (int fd = 0; fd < FAULT_RING_FDS; fd++)
        atomic_store(&fault_accept_due[fd], 0);
}

static inline void fault_begin(void)
{
    fault_disarm_all();
    fault_ring_clear();
    fault_fd_base = mio_test_fd_count();
    fault_live_base = fault_live();
    fault_maps_base = atomic_load(&fault_live_maps);
    fault_rings_base = atomic_load(&fault_live_rings);
    fault_buf_rings_base = atomic_load(&fault_live_buf_rings);
}

static inline void fault_end(void)
{
    fault_disarm_all();
    assert_int_equal(mio_test_fd_count(), fault_fd_base);
    assert_int_equal(fault_live(), fault_live_base);
    assert_int_equal(atomic_load(&fault_live_maps), fault_maps_base);
    assert_int_equal(atomic_load(&fault_live_rings), fault_rings_base);
    assert_int_equal(atomic_load(&fault_live_buf_rings), fault_buf_rings_base);
}

/* For a test that injects into a call the io_uring backend does not make: skips it (cmocka's
 * skip(), with `why` printed) when reactors created with default options run on io_uring
 * (MIO_BACKEND=io_uring: the tests/uring/ runs). Needs mio/mio.h included first. */
static inline void fault_skip_on_ring(const char *why)
{
    mio_reactor *r;
    int backend;

    assert_int_equal(mio_reactor_new(NULL, &r), 0);
    backend = mio_reactor_backend(r);
    mio_reactor_free(r);
    if (backend == MIO_BACKEND_IO_URING) {
        print_message("skipped on io_uring: %s\n", why);
        skip();
    }
}

/* cmocka setup/teardown for tests that need nothing else. */
static inline int fault_setup(void **state)
{
    (void)state;
    fault_begin();
    return 0;
}

static inline int fault_teardown(void **state)
{
    (void)state;
    fault_end();
    return 0;
}

/* True when this call must fail; sets errno. */
static bool fault_hit(enum fault_site s, int fd)
{
    struct fault_plan *p = &fault_plans[s];

    if (atomic_load(&p->armed) && atomic_load(&p->fd) >= 0 && fd != atomic_load(&p->fd))
        return false;
    atomic_fetch_add(&p->calls, 1);
    if (!atomic_load(&p->armed))
        return false;
    if (atomic_load(&p->skip) > 0 && atomic_fetch_sub(&p->skip, 1) > 0)
        return false;
    for (;;) {
        long c = atomic_load(&p->count);

        if (c == 0)
            return false;
        if (c < 0 || atomic_compare_exchange_weak(&p->count, &c, c - 1))
            break;
    }
    atomic_fetch_add(&p->hits, 1);
    errno = atomic_load(&p->err);
    return true;
}

/* ---- the wrappers ---- */

int __real_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    if (fault_hit(FAULT_ACCEPT4, fd))
        return -1;
    return __real_accept4(fd, addr, len, flags);
}

int __real_epoll_create1(int flags);
int __wrap_epoll_create1(int flags);
int __wrap_epoll_create1(int flags)
{
    if (fault_hit(FAULT_EPOLL_CREATE1, -1))
        return -1;
    return __real_epoll_create1(flags);
}

int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (fault_hit(FAULT_EPOLL_CTL, fd))
        return -1;
    return __real_epoll_ctl(epfd, op, fd, ev);
}

int __real_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout);
int __wrap_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout);
int __wrap_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
    int n;

    if (fault_hit(FAULT_EPOLL_WAIT, epfd)) {
        atomic_fetch_add(&fault_epoll_wait_returns, 1);
        return -1;
    }
    n = __real_epoll_wait(epfd, evs, max, timeout);
    atomic_fetch_add(&fault_epoll_wait_returns, 1);
    return n;
}

int __real_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags)
{
    if (fault_hit(FAULT_EVENTFD, -1))
        return -1;
    return __real_eventfd(initval, flags);
}

ssize_t __real_read(int fd, void *buf, size_t len);
ssize_t __wrap_read(int fd, void *buf, size_t len);
ssize_t __wrap_read(int fd, void *buf, size_t len)
{
    if (fault_hit(FAULT_READ, fd))
        return -1;
    return __real_read(fd, buf, len);
}

ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
    if (fault_hit(FAULT_WRITE, fd))
        return -1;
    return __real_write(fd, buf, len);
}

ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
    if (fault_hit(FAULT_RECV, fd))
        return -1;
    return __real_recv(fd, buf, len, flags);
}

ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    if (fault_hit(FAULT_SEND, fd))
        return -1;
    return __real_send(fd, buf, len, flags);
}

ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (fault_hit(FAULT_SENDMSG, fd))
        return -1;
    return __real_sendmsg(fd, msg, flags);
}

ssize_t __real_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (fault_hit(FAULT_WRITEV, fd))
        return -1;
    return __real_writev(fd, iov, iovcnt);
}

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p;

    if (fault_hit(FAULT_MMAP, fd))
        return MAP_FAILED;
    p = __real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED)
        atomic_fetch_add(&fault_live_maps, 1);
    return p;
}

/* Counted only: an unmap that fails leaves the mapping in place. */
int __real_munmap(void *addr, size_t len);
int __wrap_munmap(void *addr, size_t len);
int __wrap_munmap(void *addr, size_t len)
{
    int rc = __real_munmap(addr, len);

    if (rc == 0)
        atomic_fetch_sub(&fault_live_maps, 1);
    return rc;
}

#ifdef HAVE_LIBURING
int __real_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                                      struct io_uring_params *p);
int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                                      struct io_uring_params *p);
int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                                      struct io_uring_params *p)
{
    int rc;

    if (fault_hit(FAULT_URING_INIT, -1))
        return -errno;
    rc = __real_io_uring_queue_init_params(entries, ring, p);
    if (rc == 0)
        atomic_fetch_add(&fault_live_rings, 1);
    return rc;
}

void __real_io_uring_queue_exit(struct io_uring *ring);
void __wrap_io_uring_queue_exit(struct io_uring *ring);
void __wrap_io_uring_queue_exit(struct io_uring *ring)
{
    atomic_fetch_sub(&fault_live_rings, 1);
    __real_io_uring_queue_exit(ring);
}

int __real_io_uring_register_buf_ring(struct io_uring *ring, struct io_uring_buf_reg *reg,
                                      unsigned int flags);
int __wrap_io_uring_register_buf_ring(struct io_uring *ring, struct io_uring_buf_reg *reg,
                                      unsigned int flags);
int __wrap_io_uring_register_buf_ring(struct io_uring *ring, struct io_uring_buf_reg *reg,
                                      unsigned int flags)
{
    int rc;

    if (fault_hit(FAULT_URING_BUF_RING, ring->ring_fd))
        return -errno;
    rc = __real_io_uring_register_buf_ring(ring, reg, flags);
    if (rc == 0)
        atomic_fetch_add(&fault_live_buf_rings, 1);
    return rc;
}

int __real_io_uring_unregister_buf_ring(struct io_uring *ring, int bgid);
int __wrap_io_uring_unregister_buf_ring(struct io_uring *ring, int bgid);
int __wrap_io_uring_unregister_buf_ring(struct io_uring *ring, int bgid)
{
    int rc = __real_io_uring_unregister_buf_ring(ring, bgid);

    if (rc == 0)
        atomic_fetch_sub(&fault_live_buf_rings, 1);
    return rc;
}

int __real_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit(struct io_uring *ring)
{
    if (fault_hit(FAULT_URING_SUBMIT, ring->ring_fd))
        return -errno;
    return __real_io_uring_submit(ring);
}

int __real_io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe,
                                            unsigned wait_nr, struct __kernel_timespec *ts,
                                            sigset_t *sigmask);
int __wrap_io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe,
                                            unsigned wait_nr, struct __kernel_timespec *ts,
                                            sigset_t *sigmask);
int __wrap_io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe,
                                            unsigned wait_nr, struct __kernel_timespec *ts,
                                            sigset_t *sigmask)
{
    int rc;

    if (fault_hit(FAULT_URING_WAIT, ring->ring_fd)) {
        rc = -errno;
        atomic_fetch_add(&fault_uring_wait_returns, 1);
        return rc;
    }
    rc = __real_io_uring_submit_and_wait_timeout(ring, cqe, wait_nr, ts, sigmask);
    atomic_fetch_add(&fault_uring_wait_returns, 1);
    return rc;
}

/* A conn's receive and send on the ring. Their result arrives in a completion, and replacing it
 * there would misstate what the kernel did (a receive's bytes already sit in its buffer, a send's
 * are on the wire). So the fault is decided when the conn prepares the operation, and the kernel
 * is made to do nothing: the receive is prepared as a no-op with its user_data, the send with no
 * bytes; the completion then reports -err through the conn layer's seam
 * (mio__conn_ring_result, wrapped), as if the kernel had failed the operation. A short send is a
 * real one: the kernel is given half the bytes. `fd` is the conn's (fds from FAULT_RING_FDS on
 * are never faulted). */
/* A faulted operation prepared as a no-op with its user_data; its completion will report -errno
 * (the error fault_hit just set) through *due. */
static int fault_nop_due(struct mio__uring *u, uint64_t ud, atomic_int *due)
{
    int err = errno, rc = mio__uring_nop(u, ud);

    if (rc == 0)
        atomic_store(due, -err);
    return rc;
}

int __real_mio__uring_recv(struct mio__uring *u, int fd, uint64_t ud, bool poll_first);
int __wrap_mio__uring_recv(struct mio__uring *u, int fd, uint64_t ud, bool poll_first);
int __wrap_mio__uring_recv(struct mio__uring *u, int fd, uint64_t ud, bool poll_first)
{
    if (!fault_ring_fd(fd) || !fault_hit(FAULT_RING_RECV_RES, fd))
        return __real_mio__uring_recv(u, fd, ud, poll_first);
    return fault_nop_due(u, ud, &fault_ring_due[MIO__RING_RECV][fd]);
}

int __real_mio__uring_send(struct mio__uring *u, int fd, const void *buf, size_t len, uint64_t ud,
                           bool quiet);
int __wrap_mio__uring_send(struct mio__uring *u, int fd, const void *buf, size_t len, uint64_t ud,
                           bool quiet);
/* A faulted send is never quiet: its completion must come, to carry the fault (a short one's
 * success would otherwise stand for the whole record). */
int __wrap_mio__uring_send(struct mio__uring *u, int fd, const void *buf, size_t len, uint64_t ud,
                           bool quiet)
{
    int err, rc;

    if (!fault_ring_fd(fd))
        return __real_mio__uring_send(u, fd, buf, len, ud, quiet);
    if (fault_hit(FAULT_RING_SEND_RES, fd)) {
        err = errno;
        rc = __real_mio__uring_send(u, fd, buf, 0, ud, false);
        if (rc == 0)
            atomic_store(&fault_ring_due[MIO__RING_SEND][fd], -err);
        return rc;
    }
    if (len > 1 && fault_hit(FAULT_RING_SEND_SHORT, fd))
        return __real_mio__uring_send(u, fd, buf, len / 2, ud, false);
    return __real_mio__uring_send(u, fd, buf, len, ud, quiet);
}

int __real_mio__conn_ring_result(enum mio__ring_op op, const mio_conn *c, int res);
int __wrap_mio__conn_ring_result(enum mio__ring_op op, const mio_conn *c, int res);
int __wrap_mio__conn_ring_result(enum mio__ring_op op, const mio_conn *c, int res)
{
    int fd = mio_conn_fd(c);
    int due = fault_ring_fd(fd) ? atomic_exchange(&fault_ring_due[op][fd], 0) : 0;

    return due != 0 ? due : __real_mio__conn_ring_result(op, c, res);
}

/* The acceptor's multishot accept on its ring, faulted like a conn's receive: decided when it is
 * armed (FAULT_ACCEPT4, filtered on the listener's fd), the kernel is given a no-op instead, and
 * its completion reports -err through the acceptor's seam, as if the kernel's accept had failed
 * and ended the multishot accept. */
int __real_mio__uring_accept(struct mio__uring *u, int lfd, uint64_t ud);
int __wrap_mio__uring_accept(struct mio__uring *u, int lfd, uint64_t ud);
int __wrap_mio__uring_accept(struct mio__uring *u, int lfd, uint64_t ud)
{
    if (!fault_ring_fd(lfd) || !fault_hit(FAULT_ACCEPT4, lfd))
        return __real_mio__uring_accept(u, lfd, ud);
    return fault_nop_due(u, ud, &fault_accept_due[lfd]);
}

int __real_mio__pool_ring_accept_result(int lfd, int res);
int __wrap_mio__pool_ring_accept_result(int lfd, int res);
int __wrap_mio__pool_ring_accept_result(int lfd, int res)
{
    int due = fault_ring_fd(lfd) ? atomic_exchange(&fault_accept_due[lfd], 0) : 0;

    return due != 0 ? due : __real_mio__pool_ring_accept_result(lfd, res);
}

int __real_io_uring_submit_and_get_events(struct io_uring *ring);
int __wrap_io_uring_submit_and_get_events(struct io_uring *ring);
int __wrap_io_uring_submit_and_get_events(struct io_uring *ring)
{
    if (fault_hit(FAULT_URING_PEEK, ring->ring_fd))
        return -errno;
    return __real_io_uring_submit_and_get_events(ring);
}
#endif

/* The library's own door to IORING_OP_MSG_RING (lib/sys/uring.c). A hit does not fail the call:
 * it makes the kernel fail the message, as it would one sent to a ring that is gone, so the
 * failure reaches the sender the way a real one does (a completion, after the submission). */
struct mio__uring;
int __real_mio__uring_wake(struct mio__uring *u, int target_fd, uint64_t ud);
int __wrap_mio__uring_wake(struct mio__uring *u, int target_fd, uint64_t ud);
int __wrap_mio__uring_wake(struct mio__uring *u, int target_fd, uint64_t ud)
{
    if (fault_hit(FAULT_URING_WAKE, target_fd))
        target_fd = -1;
    return __real_mio__uring_wake(u, target_fd, ud);
}

void *__real_mio__alloc(mio__arena arena, size_t size);
void *__real_mio__calloc(mio__arena arena, size_t n, size_t size);
void *__real_mio__realloc(mio__arena arena, void *p, size_t size);
void __real_mio__free(mio__arena arena, void *p);
void *__wrap_mio__alloc(mio__arena arena, size_t size);
void *__wrap_mio__calloc(mio__arena arena, size_t n, size_t size);
void *__wrap_mio__realloc(mio__arena arena, void *p, size_t size);
void __wrap_mio__free(mio__arena arena, void *p);

void *__wrap_mio__alloc(mio__arena arena, size_t size)
{
    void *p;

    if (fault_hit(FAULT_ALLOC, -1))
        return NULL;
    p = __real_mio__alloc(arena, size);
    if (p != NULL)
        atomic_fetch_add(&fault_live_allocs, 1);
    return p;
}

void *__wrap_mio__calloc(mio__arena arena, size_t n, size_t size)
{
    void *p;

    if (fault_hit(FAULT_ALLOC, -1))
        return NULL;
    p = __real_mio__calloc(arena, n, size);
    if (p != NULL)
        atomic_fetch_add(&fault_live_allocs, 1);
    return p;
}

void *__wrap_mio__realloc(mio__arena arena, void *old, size_t size)
{
    void *p;

    if (fault_hit(FAULT_ALLOC, -1))
        return NULL;
    p = __real_mio__realloc(arena, old, size);
    if (p != NULL && old == NULL)
        atomic_fetch_add(&fault_live_allocs, 1);
    return p;
}

void __wrap_mio__free(mio__arena arena, void *p)
{
    if (p != NULL)
        atomic_fetch_sub(&fault_live_allocs, 1);
    __real_mio__free(arena, p);
}

/* ---- allocation sweep (include <cmocka.h> and "helpers.h" before this header) ---- */

/* Runs scenario() once clean to count the allocations N it makes, then N more times failing the
 * k-th allocation (k = 1..N). Each run must return 0 (clean) or exactly -ENOMEM (failed), leave
 * the fd count and the live-allocation count where they were, and have consumed the fault.
 * Returns N. A scenario that absorbs the failure (retries, or degrades and still succeeds) may
 * return 0 when `absorb_ok`. */
static inline long fault_alloc_sweep(int (*scenario)(void), bool absorb_ok)
{
    int fds = mio_test_fd_count();
    long live = fault_live(), n;

    fault_disarm_all();
    fault_count_reset(FAULT_ALLOC);
    assert_int_equal(scenario(), 0);
    n = fault_calls(FAULT_ALLOC);
    assert_true(n > 0);
    assert_int_equal(fault_live(), live);
    assert_int_equal(mio_test_fd_count(), fds);
    for (long k = 0; k < n; k++) {
        int rc;

        fault_arm(FAULT_ALLOC, k, 1, ENOMEM, -1);
        rc = scenario();
        fault_disarm(FAULT_ALLOC);
        if (!(rc == -ENOMEM || (absorb_ok && rc == 0)))
            fail_msg("allocation %ld of %ld failed: scenario returned %d (%s), want -ENOMEM", k + 1,
                     n, rc, mio_strerror(rc));
        if (fault_hits(FAULT_ALLOC) != 1)
            fail_msg("allocation %ld of %ld: fault not reached (path changed between runs)", k + 1,
                     n);
        if (fault_live() != live)
            fail_msg("allocation %ld of %ld failed: %ld allocations leaked", k + 1, n,
                     fault_live() - live);
        if (mio_test_fd_count() != fds)
            fail_msg("allocation %ld of %ld failed: fd count %d, want %d", k + 1, n,
                     mio_test_fd_count(), fds);
    }
    return n;
}

#endif
