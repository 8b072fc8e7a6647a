/* uring_echo: an echo server on bare liburing, single-threaded, as the yardstick for what an
 * io_uring backend can gain over raw epoll (bench/baselines/raw_epoll_echo.c) on the machine at
 * hand.
 *
 *   uring_echo --listen ADDR [--bufs N] [--buf-size BYTES] [--sndbuf BYTES]
 *
 * One thread, one ring, one io_uring_submit_and_wait() per loop iteration, and nothing else on the
 * hot path that enters the kernel:
 *   - a multishot accept on the listener posts one completion per new connection;
 *   - each connection has one multishot recv that picks its buffers from a provided buffer ring
 *     shared by all connections, so an idle connection holds no buffer at all;
 *   - the received buffers are echoed from where the kernel put them (no copy): each connection has
 *     at most one send in flight, covering every buffer queued for it (sendmsg with one iovec per
 *     buffer when more than one is queued); a buffer goes back to the ring when all its bytes left;
 *   - closes are submitted as IORING_OP_CLOSE, and SIGINT/SIGTERM/SIGUSR1 arrive as a read on a
 *     signalfd, so the loop never leaves io_uring_enter for anything but its own work.
 *
 * Rules that keep every byte (mio-load verifies them):
 *   - a recv completion without IORING_CQE_F_MORE means the multishot recv has ended; it is armed
 *     again unless the connection saw EOF, failed, or is paused. -ENOBUFS ends it with nothing read
 *     (the bytes stay in the socket): the connection waits in a FIFO until buffers come back, then
 *     is armed again. The same rule re-arms the multishot accept.
 *   - sends of one connection are strictly serial (one in flight), so a short send is followed
 *     by a send of the rest, in order. Completions advance the queue by the bytes sent.
 *   - back-pressure: a connection with PAUSE_BYTES queued (its peer does not read) cancels its
 *     recv, so one slow reader cannot drain the shared ring; it is armed again at a quarter. Data
 *     that completes between the cancel and its final completion is queued like any other.
 *   - a connection's fd is closed only when none of its operations is in flight, so no completion
 *     can ever arrive for an fd number the kernel has given to someone else. On EOF the queued
 *     bytes are still sent first (the peer may have only half-closed).
 *
 * Ring flags: SINGLE_ISSUER|DEFER_TASKRUN (6.1+) fit a single-threaded loop that waits in
 * io_uring_enter anyway: completion work runs in that call, in a batch, instead of interrupting the
 * thread whenever a packet arrives; older kernels get COOP_TASKRUN, then no flags.
 *
 * Buffers: each recv completion fills at most one buffer, so the buffer size sets how many
 * completions, buffer returns and sends a bulk stream costs. 16 KiB (the bench's pipeline window)
 * keeps that near raw epoll's 64 KiB reads: on pipe16k, 4 KiB buffers cost 1.5-1.7x raw epoll's
 * CPU per MB, 16 KiB and 64 KiB about 1.0x. 256 of them (4 MiB) is what pp256 can hold at once
 * (one message per connection, held until its echo is sent), so the ring runs dry only under
 * heavier loads, and that path is handled. The pool is populated at start-up: it is a fixed cost
 * of the server, so it shows in its base RSS, not in RSS per idle connection. --bufs and
 * --buf-size change both; tiny values (--bufs 4 --buf-size 64) force the exhaustion path and
 * --sndbuf 4096 makes short sends common; tests/test_uring_echo.sh runs both.
 *
 * SIGUSR1 prints `worker=0 accepted=N ...` on stdout; SIGINT/SIGTERM stop it (exit 0). Exit status
 * 77 when the kernel refuses io_uring or a feature this server needs (so a test can skip). */
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "baseline.h"

#define N_BUFS_DEFAULT 256
#define BUF_SIZE_DEFAULT 16384
#define BGID 0
#define SQ_ENTRIES 1024
#define CQ_ENTRIES 8192
/* A sendmsg covers at most this many queued buffers. */
#define SEND_IOV 16
/* A connection stops reading when this much is queued for its peer (at least 2 buffers, at most
 * SEND_IOV, so one send round can always take the whole queue), and reads again at a quarter. */
#define PAUSE_BYTES (64 * 1024)
/* struct msghdr + iovecs for the sendmsgs of one submission (see send_next). */
#define MSG_POOL 256
#define EXIT_SKIP 77

/* user_data: operation in the top byte, recv generation in bits 32..39, fd in the low 32 bits. */
enum op {
    OP_ACCEPT = 1,
    OP_RECV,
    OP_SEND,
    OP_CANCEL,
    OP_CLOSE,
    OP_SIGNAL,
    OP_ACCEPT_RETRY,
    OP_DRAIN
};
#define UD(op, gen, fd) (((uint64_t)(op) << 56) | ((uint64_t)(uint8_t)(gen) << 32) | (uint32_t)(fd))
#define UD_OP(ud) ((enum op)((ud) >> 56))
#define UD_GEN(ud) ((uint8_t)((ud) >> 32))
#define UD_FD(ud) ((int)(uint32_t)(ud))

enum {
    C_LIVE = 1 << 0,
    C_RECV = 1 << 1,   /* a multishot recv is armed (its final completion not yet seen) */
    C_SEND = 1 << 2,   /* a send is in flight */
    C_EOF = 1 << 3,    /* the peer's FIN was read: send what is queued, then close */
    C_DEAD = 1 << 4,   /* failed: drop what is queued, close once nothing is in flight */
    C_PAUSED = 1 << 5, /* too much queued: recv cancelled until the queue drains */
    C_WAIT = 1 << 6,   /* on the ENOBUFS wait list */
};

/* 16 bytes per fd; the table is calloc'd for RLIMIT_NOFILE and touched only where fds are. */
struct conn {
    uint16_t head, tail; /* queued buffers (by id), linked through bnext; valid when nq > 0 */
    uint16_t nq;
    uint8_t flags;
    uint8_t gen;       /* bumped at each recv arm: a cancel can only hit the recv it was aimed at */
    uint32_t off;      /* bytes of the head buffer already sent */
    int32_t wait_next; /* ENOBUFS wait list link: fd + 1, 0 = end */
};

static struct io_uring ring;
static struct conn *conns;
static size_t nconns;
static int max_fd = -1;
static int lfd = -1, sfd = -1;
static bool stopping;
static int stop_sig;

static struct io_uring_buf_ring *br;
static char *bufs;
static size_t br_bytes, bufs_bytes;
static unsigned n_bufs = N_BUFS_DEFAULT, buf_size = BUF_SIZE_DEFAULT;
static unsigned sndbuf; /* --sndbuf: SO_SNDBUF of every connection (0: the kernel's default) */
static unsigned pause_at, resume_at; /* queued buffers; from PAUSE_BYTES and the buffer size */
static uint16_t *bnext;              /* next buffer in its connection's queue */
static uint32_t *blen;               /* bytes the kernel put in the buffer */
static unsigned held;                /* buffers the kernel handed us and we have not returned */
static unsigned returning;           /* buffers added to the ring since the last publish */

static int32_t wait_head, wait_tail; /* ENOBUFS FIFO: fd + 1, 0 = empty */

static struct msghdr msg_pool[MSG_POOL];
static struct iovec iov_pool[MSG_POOL][SEND_IOV];
static unsigned msg_used;
static unsigned inflight;  /* operations whose final completion (no IORING_CQE_F_MORE) is due */
static bool submit_stable; /* IORING_FEAT_SUBMIT_STABLE: sendmsg arguments may die after submit */

static struct signalfd_siginfo sig_info;
static struct __kernel_timespec accept_retry_ts = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};

static struct {
    uint64_t accepted, iterations, cqes, enobufs, paused, short_sends, sendmsgs, sq_full;
} st;

/* Submits what is prepared; the message pool is free again once the kernel has the SQEs. */
static int submit_and_wait(unsigned n)
{
    int r = io_uring_submit_and_wait(&ring, n);
    msg_used = 0;
    return r;
}

/* An SQE, submitting what is queued when the SQ is full (the rare extra syscall, counted). Every
 * operation posts exactly one final completion, so counting SQEs here and final completions in the
 * loop tells when nothing is in flight. */
static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (sqe == NULL) {
        st.sq_full++;
        submit_and_wait(0);
        sqe = io_uring_get_sqe(&ring);
    }
    inflight++;
    return sqe;
}

static char *buf_addr(unsigned bid)
{
    return bufs + (size_t)bid * buf_size;
}

/* Gives a buffer back to the kernel; published (one release store) at the end of the batch. */
static void buf_return(unsigned bid)
{
    io_uring_buf_ring_add(br, buf_addr(bid), buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(n_bufs), (int)returning);
    returning++;
    held--;
}

static void arm_accept(void)
{
    if (stopping)
        return;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD(OP_ACCEPT, 0, lfd));
}

static void arm_signal(void)
{
    if (stopping)
        return;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_read(sqe, sfd, &sig_info, sizeof(sig_info), 0);
    io_uring_sqe_set_data64(sqe, UD(OP_SIGNAL, 0, sfd));
}

static void arm_recv(int fd, struct conn *c)
{
    if (stopping)
        return;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    c->gen++;
    io_uring_sqe_set_data64(sqe, UD(OP_RECV, c->gen, fd));
    c->flags |= C_RECV;
}

static void cancel_recv(int fd, struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_cancel64(sqe, UD(OP_RECV, c->gen, fd), 0);
    io_uring_sqe_set_data64(sqe, UD(OP_CANCEL, 0, fd));
}

/* Sends from the head of the queue: one buffer with IORING_OP_SEND, several with one sendmsg. */
static void send_next(int fd, struct conn *c)
{
    if (stopping)
        return;
    struct io_uring_sqe *sqe = sqe_get();
    unsigned bid = c->head;

    if (c->nq == 1 || !submit_stable || msg_used == MSG_POOL) {
        io_uring_prep_send(sqe, fd, buf_addr(bid) + c->off, blen[bid] - c->off, MSG_NOSIGNAL);
    } else {
        /* The pool entry only has to live until the SQE is submitted: the kernel copies msghdr
         * and iovecs at submission (IORING_FEAT_SUBMIT_STABLE), so the pool is reset after each
         * submit. */
        struct msghdr *m = &msg_pool[msg_used];
        struct iovec *iov = iov_pool[msg_used];
        unsigned n = 0;
        msg_used++;
        for (unsigned b = bid, k = 0; k < c->nq && n < SEND_IOV; k++, b = bnext[b]) {
            iov[n].iov_base = buf_addr(b) + (n == 0 ? c->off : 0);
            iov[n].iov_len = blen[b] - (n == 0 ? c->off : 0);
            n++;
        }
        memset(m, 0, sizeof(*m));
        m->msg_iov = iov;
        m->msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, fd, m, MSG_NOSIGNAL);
        st.sendmsgs++;
    }
    io_uring_sqe_set_data64(sqe, UD(OP_SEND, 0, fd));
    c->flags |= C_SEND;
}

/* Returns every queued buffer to the ring; only when no send reads from them. */
static void drop_queue(struct conn *c)
{
    while (c->nq > 0) {
        unsigned bid = c->head;
        c->head = bnext[bid];
        c->nq--;
        buf_return(bid);
    }
    c->off = 0;
}

/* Closes the connection once nothing of it is in flight or waiting; the slot is clean before the
 * close is even submitted, and the fd number cannot come back from accept before the close ran. */
static void maybe_finish(int fd, struct conn *c)
{
    if (!(c->flags & (C_EOF | C_DEAD)) || (c->flags & (C_RECV | C_SEND | C_WAIT)))
        return;
    if (c->nq > 0 && !(c->flags & C_DEAD))
        return; /* EOF: the queued bytes still go out first */
    drop_queue(c);
    uint8_t gen = c->gen; /* kept across lives of the slot, like the fd number */
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    if (stopping) {
        close(fd);
        return;
    }
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, UD(OP_CLOSE, 0, fd));
}

static void conn_fail(int fd, struct conn *c)
{
    c->flags |= C_DEAD;
    if (!(c->flags & C_SEND))
        drop_queue(c);
    if (c->flags & C_RECV)
        cancel_recv(fd, c);
    maybe_finish(fd, c);
}

static void wait_push(int fd, struct conn *c)
{
    c->flags |= C_WAIT;
    c->wait_next = 0;
    if (wait_tail != 0)
        conns[wait_tail - 1].wait_next = fd + 1;
    else
        wait_head = fd + 1;
    wait_tail = fd + 1;
}

/* After a recv's last completion: arm it again unless the connection should not read now. */
static void recv_ended(int fd, struct conn *c, int res)
{
    c->flags &= (uint8_t)~C_RECV;
    if (c->flags & (C_EOF | C_DEAD)) {
        maybe_finish(fd, c);
        return;
    }
    if (c->flags & C_PAUSED)
        return; /* send_done arms it when the queue has drained */
    if (res == -ENOBUFS) {
        st.enobufs++;
        wait_push(fd, c);
        return;
    }
    arm_recv(fd, c);
}

static void on_recv(int fd, struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[fd];
    int res = cqe->res;

    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        held++;
        if (res > 0 && !(c->flags & C_DEAD)) {
            blen[bid] = (uint32_t)res;
            if (c->nq == 0)
                c->head = (uint16_t)bid;
            else
                bnext[c->tail] = (uint16_t)bid;
            c->tail = (uint16_t)bid;
            c->nq++;
            if (!(c->flags & C_SEND))
                send_next(fd, c);
            if (c->nq >= pause_at && !(c->flags & C_PAUSED)) {
                /* If this completion also ends the recv, recv_ended sees C_PAUSED and does not
                 * arm it again; otherwise the cancel ends it. */
                c->flags |= C_PAUSED;
                st.paused++;
                if (cqe->flags & IORING_CQE_F_MORE)
                    cancel_recv(fd, c);
            }
        } else {
            buf_return(bid);
        }
    }
    if (res == 0)
        c->flags |= C_EOF;
    else if (res < 0 && res != -ENOBUFS && res != -ECANCELED && res != -EINTR)
        c->flags |= C_DEAD; /* ECONNRESET and friends: drop what is queued */
    if ((c->flags & C_DEAD) && !(c->flags & C_SEND))
        drop_queue(c);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        recv_ended(fd, c, res);
}

static void on_send(int fd, int res)
{
    struct conn *c = &conns[fd];
    c->flags &= (uint8_t)~C_SEND;
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        conn_fail(fd, c);
        return;
    }
    if (c->flags & C_DEAD) {
        drop_queue(c);
        maybe_finish(fd, c);
        return;
    }
    /* Advance by what the kernel took; a short send leaves the rest at the head. */
    size_t left = res > 0 ? (size_t)res : 0;
    while (left > 0 && c->nq > 0) {
        unsigned bid = c->head;
        size_t in_head = blen[bid] - c->off;
        if (left < in_head) {
            c->off += (uint32_t)left;
            st.short_sends++;
            break;
        }
        left -= in_head;
        c->off = 0;
        c->head = bnext[bid];
        c->nq--;
        buf_return(bid);
    }
    if (c->nq > 0)
        send_next(fd, c);
    if ((c->flags & C_PAUSED) && c->nq <= resume_at) {
        c->flags &= (uint8_t)~C_PAUSED;
        /* If the cancelled recv's last completion is still to come, recv_ended re-arms it. */
        if (!(c->flags & (C_RECV | C_EOF)))
            arm_recv(fd, c);
    }
    maybe_finish(fd, c);
}

static void on_accept(struct io_uring_cqe *cqe)
{
    int fd = cqe->res;
    if (fd >= 0) {
        if ((size_t)fd >= nconns) {
            close(fd);
        } else {
            struct conn *c = &conns[fd];
            c->flags = C_LIVE; /* maybe_finish left the slot clean, generation kept */
            if (sndbuf != 0)   /* a test knob: small send buffers make short sends common */
                setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
            if (fd > max_fd)
                max_fd = fd;
            st.accepted++;
            arm_recv(fd, c);
        }
    }
    if (cqe->flags & IORING_CQE_F_MORE)
        return;
    if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM || fd == -ENOBUFS) {
        /* Out of fds or memory: the backlog keeps the connections; try again in 10 ms rather than
         * spin on a listener that cannot make progress. */
        struct io_uring_sqe *sqe = sqe_get();
        io_uring_prep_timeout(sqe, &accept_retry_ts, 0, 0);
        io_uring_sqe_set_data64(sqe, UD(OP_ACCEPT_RETRY, 0, 0));
    } else if (fd == -EINVAL || fd == -EBADF || fd == -ENOTSOCK || fd == -EOPNOTSUPP) {
        fprintf(stderr, "uring_echo: multishot accept: %s\n", strerror(-fd));
        stopping = true;
    } else {
        arm_accept();
    }
}

static void print_stats(FILE *f)
{
    fprintf(f,
            "worker=0 accepted=%llu iterations=%llu cqes=%llu enobufs=%llu paused=%llu "
            "short_sends=%llu sendmsgs=%llu sq_full=%llu\n",
            (unsigned long long)st.accepted, (unsigned long long)st.iterations,
            (unsigned long long)st.cqes, (unsigned long long)st.enobufs,
            (unsigned long long)st.paused, (unsigned long long)st.short_sends,
            (unsigned long long)st.sendmsgs, (unsigned long long)st.sq_full);
    fflush(f);
}

static void on_signal(int res)
{
    if (res == (int)sizeof(sig_info)) {
        if (sig_info.ssi_signo == SIGUSR1) {
            print_stats(stdout);
        } else {
            stop_sig = (int)sig_info.ssi_signo;
            stopping = true;
            return;
        }
    }
    if (!stopping)
        arm_signal();
}

/* Re-arms connections that ran out of buffers, at most as many as there are buffers to take. */
static void wake_waiters(void)
{
    unsigned budget = n_bufs - held;
    while (wait_head != 0 && budget > 0) {
        int fd = wait_head - 1;
        struct conn *c = &conns[fd];
        wait_head = c->wait_next;
        if (wait_head == 0)
            wait_tail = 0;
        c->wait_next = 0;
        c->flags &= (uint8_t)~C_WAIT;
        if (c->flags & (C_EOF | C_DEAD)) {
            maybe_finish(fd, c);
            continue;
        }
        if (!(c->flags & (C_RECV | C_PAUSED))) {
            arm_recv(fd, c);
            budget--;
        }
    }
}

static void dispatch(struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    int fd = UD_FD(ud);
    switch (UD_OP(ud)) {
    case OP_ACCEPT:
        on_accept(cqe);
        break;
    case OP_RECV:
        on_recv(fd, cqe);
        break;
    case OP_SEND:
        on_send(fd, cqe->res);
        break;
    case OP_SIGNAL:
        on_signal(cqe->res);
        break;
    case OP_ACCEPT_RETRY:
        arm_accept();
        break;
    case OP_CANCEL: /* -ENOENT / -EALREADY: the recv ended on its own; its completion says so */
    case OP_DRAIN:
    case OP_CLOSE:
        break;
    }
}

/* Stop: cancel every request and reap completions until none is in flight, so the kernel no longer
 * holds a pointer into our buffers when they are unmapped. Nothing is armed again (every arm_*
 * function checks `stopping`); connections that finish now are closed at once. Bounded by 2 s. */
static void drain(void)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, UD(OP_DRAIN, 0, 0));
    for (int rounds = 0; inflight > 0 && rounds < 20; rounds++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        struct io_uring_cqe *first;
        io_uring_submit_and_wait_timeout(&ring, &first, 1, &ts, NULL);
        msg_used = 0;
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            if (!(cqe->flags & IORING_CQE_F_MORE))
                inflight--;
            dispatch(cqe);
            n++;
        }
        io_uring_cq_advance(&ring, n);
    }
    if (inflight > 0)
        fprintf(stderr, "uring_echo: %u operations still in flight after 2 s\n", inflight);
}

static int setup_ring(void)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int r = -EINVAL;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        r = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
        if (r == 0) {
            submit_stable = (p.features & IORING_FEAT_SUBMIT_STABLE) != 0;
            if (!(p.features & IORING_FEAT_NODROP)) {
                fprintf(stderr, "uring_echo: kernel lacks IORING_FEAT_NODROP (5.5+)\n");
                io_uring_queue_exit(&ring);
                return -EOPNOTSUPP;
            }
            /* The registered ring fd saves a file lookup on every io_uring_enter; optional. */
            (void)io_uring_register_ring_fd(&ring);
            return 0;
        }
        if (r != -EINVAL)
            break; /* -ENOSYS, -EPERM (io_uring_disabled, seccomp), -ENOMEM: flags will not help */
    }
    fprintf(stderr, "uring_echo: io_uring_queue_init: %s\n", strerror(-r));
    return r;
}

/* The provided buffer ring: ring entries and buffers in anonymous memory, populated now (see the
 * header comment), registered as group BGID and filled with every buffer. */
static int setup_buffers(void)
{
    long page = sysconf(_SC_PAGESIZE);
    br_bytes =
        ((size_t)n_bufs * sizeof(struct io_uring_buf) + (size_t)page - 1) & ~((size_t)page - 1);
    bufs_bytes = (size_t)n_bufs * buf_size;
    void *r = mmap(NULL, br_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    void *b = mmap(NULL, bufs_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    bnext = calloc(n_bufs, sizeof(*bnext));
    blen = calloc(n_bufs, sizeof(*blen));
    if (r == MAP_FAILED || b == MAP_FAILED || bnext == NULL || blen == NULL) {
        perror("uring_echo: buffer memory");
        return -ENOMEM;
    }
    br = r;
    bufs = b;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = n_bufs;
    reg.bgid = BGID;
    int err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0) {
        fprintf(stderr, "uring_echo: io_uring_register_buf_ring: %s\n", strerror(-err));
        return err;
    }
    io_uring_buf_ring_init(br);
    held = n_bufs;
    for (unsigned i = 0; i < n_bufs; i++)
        buf_return(i);
    io_uring_buf_ring_advance(br, (int)returning);
    returning = 0;
    return 0;
}

static int listen_on(const char *text)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1;
    if (baseline_addr_parse(text, &ss, &len) < 0) {
        fprintf(stderr, "uring_echo: bad address '%s'\n", text);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, 4096) == -1) {
        int err = -errno;
        fprintf(stderr, "uring_echo: listen on %s: %s\n", text, strerror(errno));
        if (fd != -1)
            close(fd);
        return err;
    }
    return fd;
}

static bool parse_pow2(const char *s, unsigned lo, unsigned hi, unsigned *out, bool pow2)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi || (pow2 && (v & (v - 1)) != 0))
        return false;
    *out = (unsigned)v;
    return true;
}

int main(int argc, char **argv)
{
    /* --bufs / --buf-size are this server's own; the rest goes to the shared parser. */
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    int nrest = 0;
    if (rest == NULL)
        return 1;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bufs") == 0 && i + 1 < argc) {
            if (!parse_pow2(argv[++i], 1, 32768, &n_bufs, true)) {
                fprintf(stderr, "%s: --bufs wants a power of two in 1..32768\n", argv[0]);
                return 2;
            }
        } else if (strcmp(argv[i], "--buf-size") == 0 && i + 1 < argc) {
            if (!parse_pow2(argv[++i], 1, 1u << 20, &buf_size, false)) {
                fprintf(stderr, "%s: --buf-size wants 1..1048576\n", argv[0]);
                return 2;
            }
        } else if (strcmp(argv[i], "--sndbuf") == 0 && i + 1 < argc) {
            if (!parse_pow2(argv[++i], 1, 1u << 30, &sndbuf, false)) {
                fprintf(stderr, "%s: --sndbuf wants 1..2^30\n", argv[0]);
                return 2;
            }
        } else {
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
                fprintf(stderr,
                        "%s [--bufs N (power of two, default %d)] [--buf-size BYTES "
                        "(default %d)] [--sndbuf BYTES]\n",
                        argv[0], N_BUFS_DEFAULT, BUF_SIZE_DEFAULT);
            rest[nrest++] = argv[i];
        }
    }
    struct baseline_args a = baseline_parse(nrest, rest, false, false);
    free(rest);
    pause_at = PAUSE_BYTES / buf_size;
    pause_at = pause_at < 2 ? 2 : pause_at > SEND_IOV ? SEND_IOV : pause_at;
    resume_at = pause_at / 4;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* sends use MSG_NOSIGNAL; this is belt and braces */

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
        rl.rlim_cur = 1 << 20;
    nconns = (size_t)rl.rlim_cur;
    conns = calloc(nconns, sizeof(*conns));
    if (conns == NULL) {
        perror("calloc");
        return 1;
    }
    int err = setup_ring();
    if (err < 0)
        return err == -ENOMEM ? 1 : EXIT_SKIP;
    err = setup_buffers();
    if (err < 0)
        return err == -ENOMEM ? 1 : EXIT_SKIP;
    lfd = listen_on(a.listen);
    if (lfd < 0)
        return lfd == -EINVAL ? 2 : 1;
    /* Blocking on purpose: io_uring would complete a read of an O_NONBLOCK fd with -EAGAIN instead
     * of waiting for a signal. */
    sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd == -1) {
        perror("signalfd");
        return 1;
    }
    arm_accept();
    arm_signal();
    baseline_print_bound(lfd);

    while (!stopping) {
        int r = submit_and_wait(1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            fprintf(stderr, "uring_echo: io_uring_submit_and_wait: %s\n", strerror(-r));
            break;
        }
        st.iterations++;
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            if (!(cqe->flags & IORING_CQE_F_MORE))
                inflight--;
            dispatch(cqe);
            n++;
        }
        io_uring_cq_advance(&ring, n);
        st.cqes += n;
        if (returning > 0) {
            /* One release store publishes every buffer returned in this batch. */
            io_uring_buf_ring_advance(br, (int)returning);
            returning = 0;
        }
        if (wait_head != 0)
            wake_waiters();
    }

    drain();
    io_uring_queue_exit(&ring);
    for (int fd = 0; fd <= max_fd; fd++)
        if (conns[fd].flags & C_LIVE)
            close(fd);
    close(lfd);
    close(sfd);
    munmap(bufs, bufs_bytes);
    munmap(br, br_bytes);
    free(bnext);
    free(blen);
    free(conns);
    fprintf(stderr, "%s: stopped by signal %d: workers=1 accepted=%llu\n", argv[0], stop_sig,
            (unsigned long long)st.accepted);
    print_stats(stderr);
    return stop_sig != 0 ? 0 : 1;
}
