/* Small pieces the single-threaded examples share: SIGINT/SIGTERM as a readable fd (signalfd, so
 * no async-signal handler runs), and printing the bound address as the first line of output. */
#ifndef MIO_EXAMPLES_UTIL_H
#define MIO_EXAMPLES_UTIL_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <mio/mio.h>

/* Blocks SIGINT and SIGTERM in this (only) thread and returns a non-blocking signalfd for them,
 * or -errno. Register it READABLE; when it fires, read it with example_signal_read. */
static inline int example_signalfd(void)
{
    sigset_t set;
    int fd;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        return -errno;
    fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd == -1 ? -errno : fd;
}

/* The number of the signal that arrived, or 0 if none is pending. */
static inline int example_signal_read(int sfd)
{
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si)
        return 0;
    return (int)si.ssi_signo;
}

/* Prints the fd's bound address as one line on stdout (flushed: scripts read it to learn the
 * port when binding to port 0). Returns 0 or -errno. */
static inline int example_print_bound(int fd)
{
    mio_addr a;
    char text[MIO_ADDR_STRLEN];
    int r = mio_socket_local_addr(fd, &a);
    if (r < 0)
        return r;
    r = mio_addr_format(&a, text, sizeof text);
    if (r < 0)
        return r;
    printf("%s\n", text);
    fflush(stdout);
    return 0;
}

#endif
