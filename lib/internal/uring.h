/* The io_uring wall: every liburing call of the library is in lib/sys/uring.c, as every epoll
 * call is in lib/sys/epoll.c. A ring belongs to one reactor and is used from its thread only.
 *
 * What it gives the reactor: a wait that submits everything prepared and blocks for a completion
 * in one io_uring_enter; a multishot poll on the reactor's epoll fd (so handlers added with
 * mio_reactor_add keep epoll's exact semantics); a provided buffer ring for receives.
 * Results are -errno at once; the wall knows nothing of tokens or conns: a completion is
 * (user_data, res, flags) for the caller to interpret. Built without liburing, every function
 * that would need it returns -EOPNOTSUPP. */
#ifndef MIO_INTERNAL_URING_H
#define MIO_INTERNAL_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mio__uring;

/* user_data values the wall reserves; the caller's are >= MIO__UD_FIRST. */
#define MIO__UD_NONE 0u  /* completions nobody waits for (cancels) */
#define MIO__UD_EPOLL 1u /* the multishot poll on the epoll fd: run epoll_wait(0) */
#define MIO__UD_WAKE 2u  /* a wake another ring sent (mio__uring_wake): it ends the wait */
#define MIO__UD_FIRST 3u
/* A caller's user_data with this bit set marks an urgent operation (a send): its completion
 * reaches fn before every other completion of the same reap, and the reap does not return while
 * an urgent operation is still in flight (see mio__uring_reap). */
#define MIO__UD_URGENT (UINT64_C(1) << 63)
/* Reported to fn by the urgent pass (mio__uring_reap, mio__uring_submit_urgent) once every
 * quiet send prepared so far has been submitted: those that posted no completion were sent in
 * full (see mio__uring_send). */
#define MIO__UD_SENDS_DONE (MIO__UD_URGENT | (UINT64_C(1) << 47))

/* The completion flags the caller reads. */
#define MIO__CQE_MORE 1u   /* a multishot operation stays armed */
#define MIO__CQE_BUFFER 2u /* a provided buffer holds the data (see mio__uring_buf) */

/* Whether this process can run the backend: ring set-up, buffer ring registration and a receive
 * into the provided buffers, tried once and cached. Returns 0, -EOPNOTSUPP (built without
 * liburing, or a kernel without provided buffer rings), -ENOSYS, -EPERM (io_uring_disabled,
 * seccomp), -ENOMEM. Any thread. */
int mio__uring_probe(void);

/* A ring watching epfd, with the provided buffers. Returns 0 and *out or -errno (-EINVAL: the
 * MIO_URING_RECV environment variable, read once, is set to neither "multishot" nor "single"). */
int mio__uring_new(int epfd, struct mio__uring **out);
/* A ring without provided buffers (receives cannot be prepared on it), watching epfd like
 * mio__uring_new's (epfd < 0: none): for a thread that only waits and sends wakes. Returns 0 and
 * *out or -errno. */
int mio__uring_new_plain(int epfd, struct mio__uring **out);
/* Cancels everything in flight and reaps it (bounded in time). Call it on the thread that ran
 * the ring before another thread frees it: the kernel's teardown of a ring interrupts every live
 * thread that ever entered it (a blocking call there may fail with EINTR), and a thread that
 * only created and frees a quiesced ring never enters it. The completions reaped meanwhile (and
 * those kept for the next reap) reach fn as mio__uring_reap's do, in one pass (urgent first only
 * as they arrive), or are dropped when fn is NULL: fn is for what must not be lost (a completion
 * that carries an fd). */
typedef void (*mio__uring_cqe_fn)(void *ctx, uint64_t ud, int res, unsigned flags, unsigned bid);
void mio__uring_quiesce(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx);
/* Quiesces (only when something is still in flight), frees the ring and its buffers. */
void mio__uring_free(struct mio__uring *u);

/* Submits what is prepared and waits up to timeout_ms (-1: no limit, 0: no wait) for at least
 * one completion. Returns 0 (completions may be ready), -ETIME, -EINTR or -errno. */
int mio__uring_wait(struct mio__uring *u, int timeout_ms);
/* Calls fn for every completion ready, then lets the kernel reuse their entries. Completions of
 * the epoll poll reach fn as MIO__UD_EPOLL (the poll re-arms itself), wakes from other rings as
 * MIO__UD_WAKE; MIO__UD_NONE ones do not reach fn. A buffer a completion carries must be given
 * back with mio__uring_buf_put before fn returns. Two passes: first the urgent completions
 * (MIO__UD_URGENT), waiting for the ones still in flight, then the others; so when fn sees its
 * first ordinary completion, every urgent operation submitted so far has completed and been seen.
 * Returns the number of completions. */
unsigned mio__uring_reap(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx);

/* Submits what is prepared now (no wait) and delivers the urgent completions it produced (and
 * any other urgent one ready) to fn, waiting for urgent operations still in flight; ordinary
 * completions found on the way are kept for the next mio__uring_reap, which delivers them first.
 * For the end of an iteration: its sends complete before the loop can wait or callbacks run
 * again, and the next wait does not return at once for their completions. Returns the number of
 * completions taken off the CQ. */
unsigned mio__uring_submit_urgent(struct mio__uring *u, mio__uring_cqe_fn fn, void *ctx);
/* Completions mio__uring_submit_urgent kept for the next reap: the next wait must not block. */
bool mio__uring_held(const struct mio__uring *u);

/* Prepares a receive into provided buffers (sent at the next wait). poll_first: the socket was
 * just drained, so the kernel waits for readiness instead of trying a receive at once.
 * Where the kernel can limit a multishot receive (Linux 6.17) and MIO_URING_RECV does not say
 * "single", the receive is multishot: each completion carries at most one buffer, with
 * MIO__CQE_MORE while it stays armed, and it ends (no MORE) once it has received
 * MIO__URING_BUF_SIZE bytes or more (so at most two buffers' worth per arm, however fast data
 * comes), on EOF, an error or a cancel. Otherwise it is single-shot: one completion, at most one
 * buffer. Returns 0 or -EBUSY (the SQ stayed full). */
int mio__uring_recv(struct mio__uring *u, int fd, uint64_t ud, bool poll_first);
/* Whether this ring's receives are multishot (set when the ring was created). */
bool mio__uring_recv_multishot(const struct mio__uring *u);
/* The size of a provided buffer: a receive that fills it has probably left data behind. */
#define MIO__URING_BUF_SIZE (16u * 1024u)
/* How many provided buffers a ring has. */
#define MIO__URING_BUFS 256u
/* Prepares a send of buf[0..len) with MSG_DONTWAIT | MSG_NOSIGNAL. The kernel tries it once,
 * while the io_uring_enter that submits it runs, and never waits for room: the completion's res
 * is the count sent (maybe short), -EAGAIN (the socket is full) or -errno. So buf is read only
 * during that call; the caller still keeps it until the completion is seen (urgent user_data:
 * the next reap). quiet (honoured where the kernel skips successful completions, len > 0): a send
 * that takes every byte posts no completion at all; one that does not (short, -EAGAIN, -errno)
 * completes as above, and after the enter that submitted it the next urgent pass reports
 * MIO__UD_SENDS_DONE, which stands for the successes. Quiet sends are not counted in flight (they
 * end inside their enter), so a wait does not return for them. Returns 1 (quiet), 0 (a completion
 * will come) or -EBUSY (the SQ stayed full). */
int mio__uring_send(struct mio__uring *u, int fd, const void *buf, size_t len, uint64_t ud,
                    bool quiet);
/* Whether quiet sends were prepared whose MIO__UD_SENDS_DONE has not been reported yet. */
bool mio__uring_sends_unseen(const struct mio__uring *u);
/* Prepares a multishot accept on the listening socket lfd (sent at the next wait or submission):
 * every connection it accepts posts a completion whose res is the new fd (non-blocking,
 * close-on-exec; the peer's address is not reported), with MIO__CQE_MORE set while it stays
 * armed. The kernel tries an accept only when a connection is pending (POLL_FIRST), so an error
 * means one is waiting, as accept4's on readiness does. It ends with a completion without
 * MIO__CQE_MORE: cancelled (-ECANCELED), or an error (-EMFILE, -ENFILE, -ENOBUFS, ...; -EINVAL
 * where the kernel has no multishot accept or no POLL_FIRST for it, before Linux 6.10), after
 * which the listener's pending connections wait in its backlog. Returns 0 or -EBUSY (the SQ
 * stayed full). */
int mio__uring_accept(struct mio__uring *u, int lfd, uint64_t ud);
/* The ring's fd: what another ring's mio__uring_wake names. Any thread (set at creation). */
int mio__uring_fd(const struct mio__uring *u);
/* Whether this ring can send wakes: the kernel runs IORING_OP_MSG_RING and honours
 * IOSQE_CQE_SKIP_SUCCESS (probed when the ring was set up). */
bool mio__uring_can_wake(const struct mio__uring *u);
/* Prepares a wake of the ring whose fd is target_fd (sent at the next wait or submission): the
 * kernel posts a completion with user_data MIO__UD_WAKE and res 0 on that ring, which ends its
 * wait. Such a message completes inside the io_uring_enter that submits it (our rings use
 * neither IOPOLL nor DEFER_TASKRUN, which would defer it), and posts nothing here when it
 * succeeded; when it failed (target gone, its CQ full: -EOVERFLOW, ...) a completion with ud
 * (below 2^48) and res < 0 reaches fn at the reap after that enter. Wakes are not counted as in
 * flight: mio__uring_quiesce does not wait for them. Returns 0, -EBUSY (the SQ stayed full) or
 * -EOPNOTSUPP (see mio__uring_can_wake). */
int mio__uring_wake(struct mio__uring *u, int target_fd, uint64_t ud);
/* Whether something prepared has not been submitted yet (an enter failed before submitting). */
bool mio__uring_unsubmitted(const struct mio__uring *u);
/* Submits what is prepared now, without waiting. Returns 0 or -errno. */
int mio__uring_submit(struct mio__uring *u);
/* Prepares a no-op: its completion (res 0) comes back with ud at the next wait. */
int mio__uring_nop(struct mio__uring *u, uint64_t ud);
/* Prepares a cancel of the operation whose user_data is ud. */
int mio__uring_cancel(struct mio__uring *u, uint64_t ud);
/* Submits now (no wait) when a cancel is prepared: a cancelled receive is what keeps a closed
 * conn's socket open, and the peer must see the close when the iteration ends, not whenever the
 * loop runs again. Returns 0 or -errno. */
int mio__uring_flush(struct mio__uring *u);
/* The data of provided buffer bid, and giving it back to the kernel. */
char *mio__uring_buf(const struct mio__uring *u, unsigned bid);
void mio__uring_buf_put(struct mio__uring *u, unsigned bid);

/* Counters: io_uring_enter calls made, completions seen, receives that ran out of buffers, sends
 * prepared, of those the ones whose bytes lie in the provided buffers, and receives armed. */
struct mio__uring_stats {
    uint64_t enters, cqes, nobufs, sends, sends_nocopy, recv_arms;
};
void mio__uring_stats(const struct mio__uring *u, struct mio__uring_stats *out);

#endif
