/* Shared helpers for the CMocka suites: fd counting and a per-binary watchdog. Header-only. */
#ifndef MIO_TESTS_HELPERS_H
#define MIO_TESTS_HELPERS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

/* Number of open fds of this process (/proc/self/fd, not counting the directory's own fd). */
static inline int mio_test_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Running out of fds on purpose (the EMFILE tests). mio_test_fd_squeeze_begin lowers the soft fd
 * limit to the fds open now plus 64; call it before the pool starts, since an io_uring accept
 * reads the limit when it is armed. mio_test_fd_squeeze_fill then takes every number left and
 * returns 0 once the table is full (-errno otherwise, -ENOSPC when fill[] ran out first).
 * mio_test_fd_squeeze_end closes them and restores the limit (0 or -errno). */
struct mio_test_fd_squeeze {
    struct rlimit old;
    int fill[128];
    int n;
};

static inline int mio_test_fd_squeeze_begin(struct mio_test_fd_squeeze *s)
{
    struct rlimit low;

    s->n = 0;
    if (getrlimit(RLIMIT_NOFILE, &s->old) != 0)
        return -errno;
    low = s->old;
    low.rlim_cur = (rlim_t)mio_test_fd_count() + 64;
    return setrlimit(RLIMIT_NOFILE, &low) == 0 ? 0 : -errno;
}

static inline int mio_test_fd_squeeze_fill(struct mio_test_fd_squeeze *s)
{
    for (;;) {
        int fd;

        if (s->n == (int)(sizeof s->fill / sizeof s->fill[0]))
            return -ENOSPC;
        fd = dup(0);
        if (fd < 0)
            return errno == EMFILE ? 0 : -errno;
        s->fill[s->n++] = fd;
    }
}

static inline int mio_test_fd_squeeze_end(struct mio_test_fd_squeeze *s)
{
    while (s->n > 0)
        close(s->fill[--s->n]);
    return setrlimit(RLIMIT_NOFILE, &s->old) == 0 ? 0 : -errno;
}

/* True when fd has both O_NONBLOCK and FD_CLOEXEC. */
static inline int mio_test_fd_is_nb_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
    return fl != -1 && fdf != -1 && (fl & O_NONBLOCK) && (fdf & FD_CLOEXEC);
}

/* The fd registered in epoll instance epfd with event data `data` (the token), or -1: read from
 * /proc/self/fdinfo, so a test can reach an fd the library keeps private (a waker's eventfd). */
static inline int mio_test_epoll_fd_for(int epfd, unsigned long long data)
{
    char path[64], line[256];
    int fd = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fd < 0 && fgets(line, sizeof line, f) != NULL) {
        int tfd;
        unsigned events;
        unsigned long long d;

        if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &d) == 3 && d == data)
            fd = tfd;
    }
    fclose(f);
    return fd;
}

/* Monotonic milliseconds. */
static inline unsigned long long mio_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

static void mio_test_watchdog_fired(int sig)
{
    static const char msg[] = "test watchdog: time limit reached, failing\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    _exit(1);
}

/* Fails the whole binary (exit 1) if it runs longer than `seconds`: no test can hang. */
static inline void mio_test_watchdog(unsigned seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = mio_test_watchdog_fired;
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

#endif
