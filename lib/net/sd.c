/* Service-manager protocols spoken without libsystemd: socket activation (LISTEN_PID, LISTEN_FDS,
 * LISTEN_FDNAMES, see sd_listen_fds(3)) and readiness notification (NOTIFY_SOCKET, see
 * sd_notify(3)). mio_sd_listen_fds reads and may change the environment: main thread, before
 * other threads run. mio_sd_notify only reads it: any thread. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/net_int.h"

/* A decimal number with no sign, blank or trailing text, at most max. Returns 0 or -EINVAL. */
static int parse_decimal(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;

    if (s == NULL || *s == '\0')
        return -EINVAL;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        if (v > (max - (unsigned long)(*s - '0')) / 10)
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Copies the i-th colon-separated name of names (NULL: "unknown") into out. Returns 0,
 * -ENAMETOOLONG. The count was checked by the caller. */
static int name_at(const char *names, unsigned i, char *out, size_t len)
{
    const char *p = names, *end;
    size_t n;

    if (names == NULL) {
        strcpy(out, "unknown");
        return 0;
    }
    while (i-- > 0)
        p = strchr(p, ':') + 1;
    end = strchr(p, ':');
    n = end != NULL ? (size_t)(end - p) : strlen(p);
    if (n >= len)
        return -ENAMETOOLONG;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static unsigned count_names(const char *names)
{
    unsigned n = 1;

    for (; *names != '\0'; names++)
        n += *names == ':';
    return n;
}

static int listen_fds(mio_listen_fd *out, unsigned cap)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    unsigned long pid, n;
    int err;

    if (pid_s == NULL || fds_s == NULL)
        return 0;
    if (parse_decimal(pid_s, ULONG_MAX, &pid) < 0)
        return -EINVAL;
    if (pid != (unsigned long)getpid())
        return 0; /* meant for the process that set them, not for us */
    if (parse_decimal(fds_s, (unsigned long)(INT_MAX - MIO_SD_LISTEN_FDS_START), &n) < 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (names != NULL && count_names(names) != n)
        return -EINVAL;
    for (unsigned long i = 0; i < n; i++) {
        int fd = MIO_SD_LISTEN_FDS_START + (int)i, fl = fcntl(fd, F_GETFD);

        if (fl == -1 || ((fl & FD_CLOEXEC) == 0 && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) == -1))
            return -errno;
        if (i < cap) {
            out[i].fd = fd;
            err = name_at(names, (unsigned)i, out[i].name, sizeof(out[i].name));
            if (err < 0)
                return err;
        }
    }
    return (int)n;
}

int mio_sd_listen_fds(bool unset_env, mio_listen_fd *out, unsigned cap)
{
    int n = out == NULL && cap > 0 ? -EINVAL : listen_fds(out, cap);

    if (unset_env) {
        (void)unsetenv("LISTEN_PID");
        (void)unsetenv("LISTEN_FDS");
        (void)unsetenv("LISTEN_FDNAMES");
    }
    return n;
}

int mio_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t len;
    socklen_t alen;
    ssize_t sent;
    int fd;

    if (state == NULL || *state == '\0')
        return -EINVAL;
    if (path == NULL)
        return 0;
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof(un.sun_path))
        return -EINVAL;
    memcpy(un.sun_path, path, len);
    alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (path[0] == '@')
        un.sun_path[0] = '\0'; /* abstract: the name is the bytes after the NUL, no terminator */
    else
        alen++; /* pathname: with its NUL */
    fd = mio__socket_new(AF_UNIX, SOCK_DGRAM);
    if (fd < 0)
        return fd;
    sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&un, alen);
    if (sent == -1)
        sent = -errno;
    (void)close(fd);
    return sent < 0 ? (int)sent : 1;
}
