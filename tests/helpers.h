/* Shared helpers for the CMocka suites: fd counting and a per-binary watchdog. Header-only. */
#ifndef MIO_TESTS_HELPERS_H
#define MIO_TESTS_HELPERS_H

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
