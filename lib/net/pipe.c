/* Unix pipes and the O_NONBLOCK switch for any fd (mio_conn_open uses it too). Any thread: no
 * state. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <mio/net.h>

int mio_pipe_new(int fds[2])
{
    int p[2];

    if (fds == NULL)
        return -EINVAL;
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1)
        return -errno;
    fds[0] = p[0];
    fds[1] = p[1];
    return 0;
}

int mio_set_nonblocking(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    int want;

    if (fl == -1)
        return -errno;
    want = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    if (want != fl && fcntl(fd, F_SETFL, want) == -1)
        return -errno;
    return 0;
}
