/* The only file that calls epoll_*: everything else goes through lib/internal/sys.h. Any thread
 * (the syscalls are thread-safe; the callers serialise what must be). */
#include <errno.h>
#include <sys/epoll.h>

#include "internal/sys.h"

int mio__epoll_create(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd == -1 ? -errno : fd;
}

int mio__epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data = {.u64 = data}};
    /* EPOLL_CTL_DEL ignores the event, but kernels before 2.6.9 wanted a non-NULL pointer. */
    if (epoll_ctl(epfd, op, fd, &ev) == -1)
        return -errno;
    return 0;
}

int mio__epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms)
{
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    return n == -1 ? -errno : n;
}
