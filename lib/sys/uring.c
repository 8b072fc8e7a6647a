/* The only file that calls liburing (internal/uring.h states the contract). Reactor's thread,
 * except mio__uring_probe (any thread).
 *
 * Ring flags: COOP_TASKRUN (the kernel runs completion work when the thread enters, instead of
 * interrupting it) with SUBMIT_ALL, falling back to none on older kernels. SINGLE_ISSUER and
 * DEFER_TASKRUN would tie the ring to the thread that creates it, and a reactor is created on one
 * thread and run on another (every pool worker is). The CQ is 8x the SQ: every armed receive
 * may complete in the same iteration, and they are not limited by the SQ's size.
 *
 * Provided buffers: BUFS x BUF_SIZE bytes, mapped and populated at set-up: the kernel takes them
 * in turn, so a reactor that served a few hundred receives has touched them all anyway, and this
 * makes them a fixed cost of the reactor rather than memory that grows with its first conns. A
 * completion's buffer goes back to the ring when the caller is done with it, so the ring only has
 * to cover one batch of receives.
 *
 * Wakes (mio__uring_wake): an IORING_OP_MSG_RING with IOSQE_CQE_SKIP_SUCCESS, so a wake that
 * arrives costs the sender no completion. Nothing accounts for them in flight: a success posts
 * nothing here, and a wake's failure completion is told apart by UD_WAKE_SENT, as the wakes other
 * rings post here are by MIO__UD_WAKE. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal/uring.h"

#ifdef HAVE_LIBURING

#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <liburing.h>

#define SQ_ENTRIES 256u
#define CQ_ENTRIES (8u * SQ_ENTRIES)
#define BUFS MIO__URING_BUFS
#define BUF_SIZE MIO__URING_BUF_SIZE
#define BGID 0
#define FREE_REAP_MS 2000 /* mio__uring_free waits this long for cancelled operations */
/* Tags the user_data of a wake we sent (callers' are below 2^48; conn tokens stay below 2^56,
 * and the urgent bit is 63), so its failure completion is not taken for an operation's end. */
#define UD_WAKE_SENT (UINT64_C(1) << 61)
/* Tags a quiet send (mio__uring_send): it is not counted in flight, since a success posts
 * nothing, and only its failure completes. */
#define UD_QUIET (UINT64_C(1) << 59)
/* IORING_ACCEPT_POLL_FIRST (Linux 6.10; Debian 12's liburing 2.3 does not name it): the accept
 * waits for a pending connection before it takes an fd. Without it the kernel reserves the fd
 * first, so with the fd table full an accept fails with -EMFILE as soon as it is armed, no
 * connection waiting, and the EMFILE shed (mio__pool_accept_failed) would close whichever
 * connection arrives next, or fight another thread for the number it frees. */
#define ACCEPT_POLL_FIRST (1U << 2)
/* A multishot receive ends (a completion without IORING_CQE_F_MORE) once it has received this
 * many bytes: the limit goes in sqe->optlen (Linux 6.17), the field liburing 2.3 calls
 * file_index. Without a limit a multishot receive keeps taking buffers for as long as data
 * arrives during one io_uring_enter, megabytes for one conn whatever its back-pressure; with it,
 * a conn takes at most RECV_LIMIT + BUF_SIZE - 1 bytes per arm. Kernels without the limit refuse
 * the field with -EINVAL (the probe tells), and their receives stay single-shot. */
#define RECV_LIMIT BUF_SIZE

struct mio__uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    size_t br_bytes;
    unsigned returned; /* buffers added since the last publish */
    int epfd;          /* -1: a plain ring watching nothing */
    bool poll_armed;
    bool can_wake;  /* plain rings: MSG_RING and CQE_SKIP_SUCCESS work (mio__uring_can_wake) */
    bool flush_due; /* a cancel is prepared (mio__uring_flush) */
    bool entered; /* something was submitted: the kernel may hold operations */
    bool recv_mshot; /* receives are multishot with a limit (mio__uring_recv_multishot) */
    bool skip_ok;    /* the kernel honours IOSQE_CQE_SKIP_SUCCESS: sends can be quiet */
    unsigned quiet_unseen; /* quiet sends prepared since the last MIO__UD_SENDS_DONE */
    unsigned inflight; /* operations whose final completion (no MORE flag) has not been seen */
    unsigned urgent_inflight; /* ... of them urgent (MIO__UD_URGENT) */
    /* Ordinary completions taken off the CQ by mio__uring_submit_urgent, for the next reap. */
    struct io_uring_cqe *held;
    unsigned nheld, held_cap;
    struct mio__uring_stats st;
};

static int ring_init(struct io_uring *ring, unsigned *features)
{
    static const unsigned flags[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_CQSIZE,
    };
    int err = -EINVAL;

    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        struct io_uring_params p;

        memset(&p, 0, sizeof p);
        p.flags = flags[i];
        p.cq_entries = CQ_ENTRIES;
        err = io_uring_queue_init_params(SQ_ENTRIES, ring, &p);
        *features = p.features;
        if (err != -EINVAL)
            break; /* 0, or a refusal no other flag set will change */
    }
    return err;
}

/* The buffer ring and its buffers, all given to the kernel. */
static int bufs_init(struct mio__uring *u)
{
    struct io_uring_buf_reg reg;
    int err;

    u->br_bytes = BUFS * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (u->br == MAP_FAILED) {
        u->br = NULL;
        return -ENOMEM;
    }
    u->bufs = mmap(NULL, (size_t)BUFS * BUF_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE, -1, 0);
    if (u->bufs == MAP_FAILED) {
        u->bufs = NULL;
        return -ENOMEM;
    }
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)u->br;
    reg.ring_entries = BUFS;
    reg.bgid = BGID;
    err = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (err < 0)
        return err == -EINVAL ? -EOPNOTSUPP : err;
    io_uring_buf_ring_init(u->br);
    for (unsigned i = 0; i < BUFS; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUFS), (int)i);
    io_uring_buf_ring_advance(u->br, BUFS);
    return 0;
}

/* Hands the buffers given back since the last submission to the kernel, before the next one: a
 * receive it submits finds them (else it fails with -ENOBUFS at once). */
static void bufs_publish(struct mio__uring *u)
{
    if (u->returned > 0) {
        io_uring_buf_ring_advance(u->br, (int)u->returned); /* one release store for the batch */
        u->returned = 0;
    }
}

/* An SQE; when the SQ is full, what is queued is submitted first (no wait). Every operation
 * posts exactly one final completion, so counting SQEs here and final completions in the reap
 * tells when nothing is in flight. */
static struct io_uring_sqe *sqe_get(struct mio__uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

    if (sqe == NULL) {
        bufs_publish(u);
        (void)io_uring_submit(&u->ring);
        u->entered = true;
        u->st.enters++;
        sqe = io_uring_get_sqe(&u->ring);
    }
    if (sqe != NULL)
        u->inflight++;
    return sqe;
}

/* A completion of ours (not liburing's own timeout) and whether it was an operation's last.
 * Wakes, received or failed, end no operation counted in flight. */
static bool cqe_count(struct mio__uring *u, const struct io_uring_cqe *cqe)
{
    if (cqe->user_data == LIBURING_UDATA_TIMEOUT)
        return false;
    if (cqe->user_data == MIO__UD_WAKE || (cqe->user_data & (UD_WAKE_SENT | UD_QUIET)) != 0)
        return true;
    if (!(cqe->flags & IORING_CQE_F_MORE))
        u->inflight--;
    return true;
}

static int poll_arm(struct mio__uring *u)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_poll_multishot(sqe, u->epfd, POLLIN);
    io_uring_sqe_set_data64(sqe, MIO__UD_EPOLL);
    u->poll_armed = true;
    return 0;
}

/* Ring and buffers are set up on a thread of its own, which exits before mio__uring_new returns:
 * the kernel later interrupts the task that created a ring (a blocking call there failed with
 * EINTR while a pool's workers, on rings their owner had created, ran), and a thread that has
 * exited cannot be interrupted. */
struct setup_job {
    struct mio__uring *u;
    bool plain;
    int ring_err, bufs_err;
};

/* Whether the kernel behind ring runs what mio__uring_wake prepares. */
static bool wake_probe(struct io_uring *ring, unsigned features)
{
    struct io_uring_probe *p;
    bool ok;

    if (!(features & IORING_FEAT_CQE_SKIP))
        return false;
    p = io_uring_get_probe_ring(ring);
    if (p == NULL)
        return false;
    ok = io_uring_opcode_supported(p, IORING_OP_MSG_RING) != 0;
    io_uring_free_probe(p);
    return ok;
}

static void *setup_thread(void *arg)
{
    struct setup_job *j = arg;
    unsigned features = 0;

    j->ring_err = ring_init(&j->u->ring, &features);
    if (j->ring_err == 0 && j->plain)
        j->u->can_wake = wake_probe(&j->u->ring, features);
    else if (j->ring_err == 0)
        j->bufs_err = bufs_init(j->u);
    if (j->ring_err == 0)
        j->u->skip_ok = (features & IORING_FEAT_CQE_SKIP) != 0;
    return NULL;
}

static int ring_new(int epfd, bool plain, bool mshot, struct mio__uring **out)
{
    struct mio__uring *u = calloc(1, sizeof *u);
    struct setup_job j = {u, plain, 0, 0};
    pthread_t t;
    int err;

    if (u == NULL)
        return -ENOMEM;
    u->epfd = epfd; /* its poll is armed by the first wait */
    u->recv_mshot = mshot;
    err = pthread_create(&t, NULL, setup_thread, &j);
    if (err != 0) {
        free(u);
        return -err;
    }
    (void)pthread_join(t, NULL);
    if (j.ring_err < 0) {
        free(u);
        return j.ring_err;
    }
    if (j.bufs_err < 0) {
        mio__uring_free(u);
        return j.bufs_err;
    }
    *out = u;
    return 0;
}

static bool probe_mshot; /* set by the probe: receives can be multishot with a limit */
static int env_recv; /* MIO_URING_RECV: 1 multishot where the kernel can, 0 single, -EINVAL */
static pthread_once_t env_recv_once = PTHREAD_ONCE_INIT;

static void env_recv_read(void)
{
    const char *v = getenv("MIO_URING_RECV");

    if (v == NULL || *v == '\0' || strcmp(v, "multishot") == 0)
        env_recv = 1;
    else if (strcmp(v, "single") == 0)
        env_recv = 0;
    else
        env_recv = -EINVAL;
}

int mio__uring_new(int epfd, struct mio__uring **out)
{
    int err = mio__uring_probe();

    if (err < 0)
        return err;
    (void)pthread_once(&env_recv_once, env_recv_read);
    if (env_recv < 0)
        return env_recv;
    return ring_new(epfd, false, env_recv == 1 && probe_mshot, out);
}

int mio__uring_new_plain(int epfd, struct mio__uring **out)
{
    return ring_new(epfd, true, false, out);
}

/* Accounts for a completion and hands it to fn (none: it is dropped). */
static void cqe_deliver(struct mio__uring *u, const struct io_uring_cqe *cqe, mio__uring_cqe_fn fn,
                        void *ctx)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    unsigned flags = 0, bid = 0;

    if (!cqe_count(u, cqe))
        return;
    if (ud & UD_QUIET)
        ud &= ~UD_QUIET; /* a quiet send failed: counted nowhere */
    else if (ud & MIO__UD_URGENT)
        u->urgent_inflight--; /* urgent operations are single-shot */
    if (cqe->flags & IORING_CQE_F_MORE)
        flags |= MIO__CQE_MORE;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        flags |= MIO__CQE_BUFFER;
        bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    }
    if (cqe->res == -ENOBUFS)
        u->st.nobufs++;
    if (ud == MIO__UD_EPOLL && !(flags & MIO__CQE_MORE))
        u->poll_armed = false; /* re-armed before the next wait */
    if (ud & UD_WAKE_SENT)
        ud &= ~UD_WAKE_SENT; /* a wake we sent failed: the caller's ud */
    if (ud != MIO__UD_NONE && fn != NULL)
        fn(ctx, ud, cqe->res, flags, bid);
}

/* Forgets the completions kept for the next reap (the ring is going away: nobody will want
 * them, and their buffers go with it), or hands them to fn when there is one. */
static void held_drop(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx)
{
    for (unsigned i = 0; i < u->nheld; i++)
        cqe_deliver(u, &u->held[i], fn, ctx);
    u->nheld = 0;
}

void mio__uring_quiesce(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx)
{
    struct io_uring_sqe *sqe;

    held_drop(u, fn, ctx);
    if (!u->entered) {
        u->inflight = u->urgent_inflight = u->quiet_unseen = 0; /* prepared only: dropped */
        return;
    }
    sqe = sqe_get(u);
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};

    if (sqe == NULL)
        return;
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, MIO__UD_NONE);
    for (int waited = 0; u->inflight > 0 && waited < FREE_REAP_MS; waited += 20) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        (void)io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
        io_uring_for_each_cqe(&u->ring, head, cqe)
        {
            n++;
            cqe_deliver(u, cqe, fn, ctx);
        }
        io_uring_cq_advance(&u->ring, n);
    }
    u->urgent_inflight = 0; /* completed or cancelled: nobody waits for them any more */
    u->quiet_unseen = 0;
    u->poll_armed = false;
}

void mio__uring_free(struct mio__uring *u)
{
    if (u == NULL)
        return;
    held_drop(u, NULL, NULL);
    /* Never entered: what was prepared never reached the kernel, and goes with the ring. */
    if (u->entered && u->inflight > 0)
        mio__uring_quiesce(u, NULL, NULL);
    if (u->br != NULL)
        (void)io_uring_unregister_buf_ring(&u->ring, BGID);
    io_uring_queue_exit(&u->ring);
    if (u->bufs != NULL)
        (void)munmap(u->bufs, (size_t)BUFS * BUF_SIZE);
    if (u->br != NULL)
        (void)munmap(u->br, u->br_bytes);
    free(u->held);
    free(u);
}

int mio__uring_wait(struct mio__uring *u, int timeout_ms)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts;
    int err;

    bufs_publish(u);
    if (!u->poll_armed && u->epfd >= 0)
        (void)poll_arm(u);
    u->st.enters++;
    u->entered = true;
    u->flush_due = false; /* this enter submits the cancels */
    if (timeout_ms == 0) {
        err = io_uring_submit_and_get_events(&u->ring);
    } else if (timeout_ms < 0) {
        err = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, NULL, NULL);
    } else {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        err = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    return err < 0 ? err : 0;
}


static struct io_uring_cqe *cqe_at(struct mio__uring *u, unsigned i)
{
    return &u->ring.cq.cqes[io_uring_cqe_index(&u->ring, i, u->ring.cq.ring_mask)];
}

/* Keeps an ordinary completion for later delivery. Returns false when there is no room. */
static bool cqe_hold(struct mio__uring *u, const struct io_uring_cqe *cqe)
{
    if (u->nheld == u->held_cap) {
        unsigned cap = u->held_cap != 0 ? 2 * u->held_cap : 64;
        struct io_uring_cqe *h = realloc(u->held, cap * sizeof *h);

        if (h == NULL)
            return false;
        u->held = h;
        u->held_cap = cap;
    }
    u->held[u->nheld++] = *cqe;
    return true;
}

/* Takes every completion off the CQ: urgent ones to fn, the others kept in order (held), and
 * while urgent operations are still in flight waits for more and takes those too. The CQ head
 * moves on each round, so an overflow the kernel keeps aside comes in with the next wait. A send
 * with MSG_DONTWAIT completes inside the enter that submits it, so the wait is a guard, not a
 * path taken. *room: false when the held array could not grow (then the rest stays in the CQ).
 * Returns the number of completions taken. */
static unsigned urgent_drain(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx, bool *room)
{
    unsigned taken = 0;

    *room = true;
    for (;;) {
        unsigned head = *u->ring.cq.khead, tail = io_uring_smp_load_acquire(u->ring.cq.ktail), i;

        for (i = head; i != tail; i++) {
            const struct io_uring_cqe *cqe = cqe_at(u, i);

            if (cqe->user_data & MIO__UD_URGENT)
                cqe_deliver(u, cqe, fn, ctx);
            else if (!cqe_hold(u, cqe))
                break;
        }
        io_uring_cq_advance(&u->ring, i - head);
        taken += i - head;
        if (i != tail)
            *room = false;
        if (!*room || u->urgent_inflight == 0)
            break;
        u->st.enters++;
        if (io_uring_submit_and_wait(&u->ring, 1) < 0)
            break;
    }
    u->st.cqes += taken;
    /* Quiet sends complete inside the enter that submits them, failures in the CQ just taken:
     * once all were submitted, the ones that reported nothing succeeded. */
    if (*room && u->quiet_unseen > 0 && io_uring_sq_ready(&u->ring) == 0) {
        u->quiet_unseen = 0;
        if (fn != NULL)
            fn(ctx, MIO__UD_SENDS_DONE, 0, 0, 0);
    }
    return taken;
}

/* Urgent completions first (urgent_drain), then the others in the order they came: those held
 * by an earlier mio__uring_submit_urgent, then this call's. */
unsigned mio__uring_reap(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx)
{
    unsigned before = u->nheld, n;
    bool room;

    n = urgent_drain(u, fn, ctx, &room);
    for (unsigned i = 0; i < u->nheld; i++) /* fn never reaps: nothing is added meanwhile */
        cqe_deliver(u, &u->held[i], fn, ctx);
    u->nheld = 0;
    if (!room) { /* out of memory for the held array: the rest in CQ order, as it comes */
        unsigned head = *u->ring.cq.khead, tail = io_uring_smp_load_acquire(u->ring.cq.ktail);

        for (unsigned i = head; i != tail; i++)
            cqe_deliver(u, cqe_at(u, i), fn, ctx);
        io_uring_cq_advance(&u->ring, tail - head);
        u->st.cqes += tail - head;
        n += tail - head;
    }
    return n + before;
}

unsigned mio__uring_submit_urgent(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx)
{
    bool room;

    (void)mio__uring_submit(u);
    return urgent_drain(u, fn, ctx, &room);
}

bool mio__uring_held(const struct mio__uring *u)
{
    return u->nheld > 0;
}

bool mio__uring_sends_unseen(const struct mio__uring *u)
{
    return u->quiet_unseen > 0;
}

int mio__uring_send(struct mio__uring *u, int fd, const void *buf, size_t len, uint64_t ud,
                    bool quiet)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL)
        return -EBUSY;
    /* MSG_WAITALL makes a short send a failure (the kernel ends it with what it sent, as the
     * socket is non-blocking here): so only a full send succeeds, and only a success is skipped. */
    quiet = quiet && u->skip_ok && len > 0;
    io_uring_prep_send(sqe, fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL | (quiet ? MSG_WAITALL : 0));
    if (quiet) {
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        ud |= UD_QUIET;
        u->inflight--; /* sqe_get counted it: no completion may come */
        u->quiet_unseen++;
    } else if (ud & MIO__UD_URGENT) {
        u->urgent_inflight++;
    }
    io_uring_sqe_set_data64(sqe, ud);
    u->st.sends++;
    if (u->bufs != NULL && (uintptr_t)buf - (uintptr_t)u->bufs < (size_t)BUFS * BUF_SIZE)
        u->st.sends_nocopy++;
    return quiet ? 1 : 0;
}

/* A receive into one provided buffer; limit > 0: multishot, ending after limit bytes. */
static int recv_prep(struct mio__uring *u, int fd, uint64_t ud, bool poll_first, unsigned limit)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_recv(sqe, fd, NULL, limit > 0 ? 0 : BUF_SIZE, 0);
    if (limit > 0) {
        sqe->ioprio |= IORING_RECV_MULTISHOT; /* len 0: each receive fills at most a buffer */
        sqe->file_index = limit;              /* optlen */
    }
    if (poll_first)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud);
    u->st.recv_arms++;
    return 0;
}

int mio__uring_recv(struct mio__uring *u, int fd, uint64_t ud, bool poll_first)
{
    return recv_prep(u, fd, ud, poll_first, u->recv_mshot ? RECV_LIMIT : 0);
}

bool mio__uring_recv_multishot(const struct mio__uring *u)
{
    return u->recv_mshot;
}

int mio__uring_accept(struct mio__uring *u, int lfd, uint64_t ud)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    sqe->ioprio |= ACCEPT_POLL_FIRST;
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int mio__uring_fd(const struct mio__uring *u)
{
    return u->ring.ring_fd;
}

bool mio__uring_can_wake(const struct mio__uring *u)
{
    return u->can_wake;
}

int mio__uring_wake(struct mio__uring *u, int target_fd, uint64_t ud)
{
    struct io_uring_sqe *sqe;

    if (!u->can_wake)
        return -EOPNOTSUPP;
    sqe = sqe_get(u);
    if (sqe == NULL)
        return -EBUSY;
    u->inflight--; /* its success posts no completion (see the top of this file) */
    io_uring_prep_msg_ring(sqe, target_fd, 0, MIO__UD_WAKE, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, ud | UD_WAKE_SENT);
    return 0;
}

bool mio__uring_unsubmitted(const struct mio__uring *u)
{
    return io_uring_sq_ready(&u->ring) > 0;
}

int mio__uring_submit(struct mio__uring *u)
{
    int err;

    u->entered = true;
    u->flush_due = false; /* this enter submits the cancels too */
    u->st.enters++;
    bufs_publish(u);
    err = io_uring_submit(&u->ring);
    return err < 0 ? err : 0;
}

int mio__uring_nop(struct mio__uring *u, uint64_t ud)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int mio__uring_cancel(struct mio__uring *u, uint64_t ud)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, MIO__UD_NONE);
    u->flush_due = true;
    return 0;
}

int mio__uring_flush(struct mio__uring *u)
{
    return u->flush_due ? mio__uring_submit(u) : 0;
}

char *mio__uring_buf(const struct mio__uring *u, unsigned bid)
{
    return u->bufs + (size_t)bid * BUF_SIZE;
}

void mio__uring_buf_put(struct mio__uring *u, unsigned bid)
{
    io_uring_buf_ring_add(u->br, mio__uring_buf(u, bid), BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUFS), (int)u->returned);
    u->returned++;
}

void mio__uring_stats(const struct mio__uring *u, struct mio__uring_stats *out)
{
    *out = u->st;
}

/* ------------------------------------------------------------------ the probe */

static int probe_result;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

/* The completion of the probe's operation ud, waited for up to half a second: its res (-ETIME
 * when none came) and flags. */
static int probe_reap(struct mio__uring *u, uint64_t ud, unsigned *flags)
{
    int got = -ETIME;

    for (int i = 0; i < 50 && got == -ETIME; i++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        (void)io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
        u->entered = true;
        io_uring_for_each_cqe(&u->ring, head, cqe)
        {
            n++;
            if (cqe_count(u, cqe) && io_uring_cqe_get_data64(cqe) == ud) {
                got = cqe->res;
                *flags = cqe->flags;
            }
        }
        io_uring_cq_advance(&u->ring, n);
    }
    return got;
}

/* One byte written to wfd and received on rfd by a receive armed with limit (0: single-shot).
 * Returns 0 when it came in a provided buffer and the receive ended with it, else what failed. */
static int probe_recv(struct mio__uring *u, int rfd, int wfd, unsigned limit)
{
    uint64_t ud = MIO__UD_FIRST + limit;
    unsigned flags = 0;
    int got;

    (void)recv_prep(u, rfd, ud, false, limit);
    if (write(wfd, "x", 1) != 1)
        return -errno;
    got = probe_reap(u, ud, &flags);
    if (got < 0)
        return got;
    if (flags & IORING_CQE_F_BUFFER)
        mio__uring_buf_put(u, flags >> IORING_CQE_BUFFER_SHIFT);
    return got == 1 && (flags & IORING_CQE_F_BUFFER) && !(flags & IORING_CQE_F_MORE) ? 0 : -EIO;
}

/* A ring with buffers, and a receive of one byte into them over a socketpair: what the backend
 * needs, tried rather than read off the kernel's version (distribution kernels backport). Then
 * the same with a multishot receive limited to one byte, which a kernel without the limit
 * refuses (-EINVAL) and one that ignored it would leave armed (MORE). */
static int probe_run(void)
{
    struct mio__uring *u;
    int sv[2], err;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    err = ring_new(sv[0], false, false, &u); /* any pollable fd stands in for the epoll fd */
    if (err == 0) {
        err = probe_recv(u, sv[0], sv[1], 0);
        if (err == -EINVAL || err == -ETIME || err == -EIO)
            err = -EOPNOTSUPP;
        probe_mshot = err == 0 && probe_recv(u, sv[0], sv[1], 1) == 0;
        mio__uring_free(u);
    }
    (void)close(sv[0]);
    (void)close(sv[1]);
    return err;
}

static void *probe_thread(void *unused)
{
    (void)unused;
    probe_result = probe_run();
    return NULL;
}

/* On a thread of its own, which exits before the caller goes on: the probe's ring is then never
 * entered by the caller's thread (see mio__uring_quiesce). */
static void probe_once_fn(void)
{
    pthread_t t;
    int err = pthread_create(&t, NULL, probe_thread, NULL);

    if (err != 0) {
        probe_result = -err;
        return;
    }
    (void)pthread_join(t, NULL);
}

int mio__uring_probe(void)
{
    (void)pthread_once(&probe_once, probe_once_fn);
    return probe_result;
}

#else /* !HAVE_LIBURING */

int mio__uring_probe(void)
{
    return -EOPNOTSUPP;
}

int mio__uring_new(int epfd, struct mio__uring **out)
{
    (void)epfd;
    (void)out;
    return -EOPNOTSUPP;
}

int mio__uring_new_plain(int epfd, struct mio__uring **out)
{
    (void)epfd;
    (void)out;
    return -EOPNOTSUPP;
}

int mio__uring_accept(struct mio__uring *u, int lfd, uint64_t ud)
{
    (void)u;
    (void)lfd;
    (void)ud;
    return -EOPNOTSUPP;
}

int mio__uring_fd(const struct mio__uring *u)
{
    (void)u;
    return -1;
}

bool mio__uring_can_wake(const struct mio__uring *u)
{
    (void)u;
    return false;
}

int mio__uring_wake(struct mio__uring *u, int target_fd, uint64_t ud)
{
    (void)u;
    (void)target_fd;
    (void)ud;
    return -EOPNOTSUPP;
}

bool mio__uring_unsubmitted(const struct mio__uring *u)
{
    (void)u;
    return false;
}

int mio__uring_submit(struct mio__uring *u)
{
    (void)u;
    return -EOPNOTSUPP;
}

void mio__uring_quiesce(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx)
{
    (void)u;
    (void)fn;
    (void)ctx;
}

void mio__uring_free(struct mio__uring *u)
{
    (void)u;
}

int mio__uring_wait(struct mio__uring *u, int timeout_ms)
{
    (void)u;
    (void)timeout_ms;
    return -EOPNOTSUPP;
}

unsigned mio__uring_reap(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx)
{
    (void)u;
    (void)fn;
    (void)ctx;
    return 0;
}

int mio__uring_recv(struct mio__uring *u, int fd, uint64_t ud, bool poll_first)
{
    (void)u;
    (void)fd;
    (void)ud;
    (void)poll_first;
    return -EOPNOTSUPP;
}

bool mio__uring_recv_multishot(const struct mio__uring *u)
{
    (void)u;
    return false;
}

int mio__uring_nop(struct mio__uring *u, uint64_t ud)
{
    (void)u;
    (void)ud;
    return -EOPNOTSUPP;
}

unsigned mio__uring_submit_urgent(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx)
{
    (void)u;
    (void)fn;
    (void)ctx;
    return 0;
}

bool mio__uring_held(const struct mio__uring *u)
{
    (void)u;
    return false;
}

int mio__uring_send(struct mio__uring *u, int fd, const void *buf, size_t len, uint64_t ud,
                    bool quiet)
{
    (void)u;
    (void)fd;
    (void)buf;
    (void)len;
    (void)ud;
    (void)quiet;
    return -EOPNOTSUPP;
}

bool mio__uring_sends_unseen(const struct mio__uring *u)
{
    (void)u;
    return false;
}

int mio__uring_cancel(struct mio__uring *u, uint64_t ud)
{
    (void)u;
    (void)ud;
    return -EOPNOTSUPP;
}

char *mio__uring_buf(const struct mio__uring *u, unsigned bid)
{
    (void)u;
    (void)bid;
    return NULL;
}

int mio__uring_flush(struct mio__uring *u)
{
    (void)u;
    return 0;
}

void mio__uring_buf_put(struct mio__uring *u, unsigned bid)
{
    (void)u;
    (void)bid;
}

void mio__uring_stats(const struct mio__uring *u, struct mio__uring_stats *out)
{
    (void)u;
    memset(out, 0, sizeof *out);
}

#endif
