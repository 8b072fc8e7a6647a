/* Poll and Registry over one epoll instance. Edge-triggered always. One thread at a time polls a
 * given poll; registry calls may come from any thread meanwhile (epoll_ctl is thread-safe). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <mio/poll.h>

#include "internal/mem.h"
#include "internal/sys.h"

struct mio_registry {
    int epfd;
    bool is_clone; /* clones own a dup'd fd and their memory; the poll's own registry does not */
};

struct mio_poll {
    struct mio_registry reg;
};

#define MIO_INTEREST_ALL (MIO_READABLE | MIO_WRITABLE | MIO_PRIORITY)

static uint32_t epoll_flags(mio_interest interest)
{
    uint32_t e = EPOLLET;
    if (interest & MIO_READABLE)
        e |= EPOLLIN | EPOLLRDHUP;
    if (interest & MIO_WRITABLE)
        e |= EPOLLOUT;
    if (interest & MIO_PRIORITY)
        e |= EPOLLPRI;
    return e;
}

int mio_poll_new(mio_poll **out)
{
    mio_poll *p;
    int fd;
    if (out == NULL)
        return -EINVAL;
    p = mio__alloc(0, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    fd = mio__epoll_create();
    if (fd < 0) {
        mio__free(0, p);
        return fd;
    }
    p->reg.epfd = fd;
    p->reg.is_clone = false;
    *out = p;
    return 0;
}

void mio_poll_free(mio_poll *poll)
{
    if (poll == NULL)
        return;
    close(poll->reg.epfd);
    mio__free(0, poll);
}

mio_registry *mio_poll_registry(mio_poll *poll)
{
    return poll == NULL ? NULL : &poll->reg;
}

int mio_poll_fd(const mio_poll *poll)
{
    return poll == NULL ? -EINVAL : poll->reg.epfd;
}

int mio_poll_poll(mio_poll *poll, mio_events *events, int timeout_ms)
{
    int n;
    if (poll == NULL || events == NULL || timeout_ms < -1)
        return -EINVAL;
    events->mio__len = 0;
    /* The capacity is bounded by mio_events_new, so it fits epoll_wait's int. */
    n = mio__epoll_wait(poll->reg.epfd, events->mio__buf, (int)events->mio__cap, timeout_ms);
    if (n < 0)
        return n;
    events->mio__len = (size_t)n;
    return n;
}

/* EPOLL_CTL_ADD or _MOD after the argument checks register and reregister share. */
static int registry_ctl(mio_registry *reg, int op, int fd, mio_token token, mio_interest interest)
{
    if (reg == NULL)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    if (interest == 0 || (interest & ~MIO_INTEREST_ALL) != 0)
        return -EINVAL;
    return mio__epoll_ctl(reg->epfd, op, fd, epoll_flags(interest), (uint64_t)token);
}

int mio_registry_register(mio_registry *reg, int fd, mio_token token, mio_interest interest)
{
    return registry_ctl(reg, EPOLL_CTL_ADD, fd, token, interest);
}

int mio_registry_reregister(mio_registry *reg, int fd, mio_token token, mio_interest interest)
{
    return registry_ctl(reg, EPOLL_CTL_MOD, fd, token, interest);
}

int mio_registry_deregister(mio_registry *reg, int fd)
{
    if (reg == NULL)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    return mio__epoll_ctl(reg->epfd, EPOLL_CTL_DEL, fd, 0, 0);
}

int mio_registry_try_clone(const mio_registry *reg, mio_registry **out)
{
    mio_registry *c;
    int fd;
    if (reg == NULL || out == NULL)
        return -EINVAL;
    c = mio__alloc(0, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    fd = fcntl(reg->epfd, F_DUPFD_CLOEXEC, 0);
    if (fd == -1) {
        int err = -errno;
        mio__free(0, c);
        return err;
    }
    c->epfd = fd;
    c->is_clone = true;
    *out = c;
    return 0;
}

void mio_registry_free(mio_registry *reg)
{
    if (reg == NULL || !reg->is_clone)
        return;
    close(reg->epfd);
    mio__free(0, reg);
}

int mio_registry_fd(const mio_registry *reg)
{
    return reg == NULL ? -EINVAL : reg->epfd;
}
