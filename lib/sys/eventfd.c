/* The only file that calls eventfd: everything else goes through lib/internal/sys.h. Any thread. */
#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal/sys.h"

int mio__eventfd_create(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd == -1 ? -errno : fd;
}

int mio__eventfd_write(int fd, uint64_t value)
{
    ssize_t n;
    do {
        n = write(fd, &value, sizeof value);
    } while (n == -1 && errno == EINTR);
    if (n == -1)
        return -errno;
    return n == (ssize_t)sizeof value ? 0 : -EIO;
}

int mio__eventfd_read(int fd, uint64_t *value)
{
    uint64_t v;
    ssize_t n;
    do {
        n = read(fd, &v, sizeof v);
    } while (n == -1 && errno == EINTR);
    if (n == -1)
        return -errno;
    if (n != (ssize_t)sizeof v)
        return -EIO;
    if (value != NULL)
        *value = v;
    return 0;
}
