/* Poll and Registry: mio's readiness core on epoll. Always edge-triggered.
 *
 * A mio_poll owns one epoll instance; its registry (borrowed through mio_poll_registry) adds,
 * changes and removes sources. Sources are plain fds that stay the caller's: the library never
 * closes them. No allocation happens inside mio_poll_poll. */
#ifndef MIO_POLL_H
#define MIO_POLL_H

#include <mio/common.h>
#include <mio/event.h>
#include <mio/interest.h>
#include <mio/token.h>

MIO_BEGIN_DECLS

typedef struct mio_poll mio_poll;
typedef struct mio_registry mio_registry;

/* Creates a poll (epoll_create1(EPOLL_CLOEXEC)). Returns 0 and *out, -EINVAL (out NULL), -EMFILE,
 * -ENFILE, -ENOMEM. The caller owns *out. */
MIO_EXTERN int mio_poll_new(mio_poll **out);
/* Closes the epoll fd and frees the poll; NULL is accepted. Clones of its registry stay valid
 * (they hold their own dup of the fd). Not while another thread is inside mio_poll_poll. */
MIO_EXTERN void mio_poll_free(mio_poll *poll);
/* The poll's registry: borrowed, lives as long as the poll; never pass it to mio_registry_free. */
MIO_EXTERN mio_registry *mio_poll_registry(mio_poll *poll);
/* The epoll fd (owned by the poll), or -EINVAL for NULL. */
MIO_EXTERN int mio_poll_fd(const mio_poll *poll);
/* Clears `events`, then waits for readiness: timeout_ms -1 blocks, 0 still asks the kernel once,
 * > 0 waits at most that many ms (other negative values -> -EINVAL). Returns the number of events
 * stored (at most the capacity; the rest come on the next call), 0 on timeout, -EINTR when a
 * signal interrupts (never retried), -EINVAL for NULL arguments, other -errno.
 * One thread at a time per poll; registry calls from other threads may run concurrently. */
MIO_EXTERN int mio_poll_poll(mio_poll *poll, mio_events *events, int timeout_ms);

/* Registers fd with token and interest, edge-triggered. Any thread.
 * Returns 0, -EINVAL (interest 0 or unknown bits, NULL registry), -EEXIST (already registered
 * here), -EPERM (regular file or other fd epoll cannot watch), -EBADF, -ENOMEM, -ENOSPC. */
MIO_EXTERN int mio_registry_register(mio_registry *reg, int fd, mio_token token,
                                     mio_interest interest);
/* Replaces the token AND the interest of a registered fd. Any thread.
 * Returns 0, -EINVAL, -ENOENT (never registered here), -EBADF. */
MIO_EXTERN int mio_registry_reregister(mio_registry *reg, int fd, mio_token token,
                                       mio_interest interest);
/* Removes fd. After it returns, no later poll reports that fd's token, even for readiness that was
 * already pending. Any thread. Returns 0, -EINVAL, -ENOENT, -EBADF. */
MIO_EXTERN int mio_registry_deregister(mio_registry *reg, int fd);
/* A new registry handle on the same epoll instance (its own dup'd fd, O_CLOEXEC), e.g. to hand to
 * another thread. Returns 0 and *out, -EINVAL, -EMFILE, -ENOMEM. Free it with mio_registry_free. */
MIO_EXTERN int mio_registry_try_clone(const mio_registry *reg, mio_registry **out);
/* Frees a clone and closes its fd; NULL is accepted. Never for a poll's own registry (ignored). */
MIO_EXTERN void mio_registry_free(mio_registry *reg);
/* The registry's epoll fd, or -EINVAL for NULL. */
MIO_EXTERN int mio_registry_fd(const mio_registry *reg);

MIO_END_DECLS

#endif
