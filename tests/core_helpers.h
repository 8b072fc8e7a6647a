/* Shared fixtures for the core CMocka suites (interest, events, poll, registry, waker):
 * a per-test fd-count check and small source helpers built directly on libc, so the core can be
 * tested without the net module. Header-only. */
#ifndef MIO_TESTS_CORE_HELPERS_H
#define MIO_TESTS_CORE_HELPERS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

/* Every test runs between these two: the teardown fails the test when the process holds a
 * different number of fds afterwards than before. */
static int core_fd_setup(void **state)
{
    *state = (void *)(intptr_t)mio_test_fd_count();
    return 0;
}

static int core_fd_teardown(void **state)
{
    int before = (int)(intptr_t)*state;
    int after = mio_test_fd_count();
    if (before != after) {
        fprintf(stderr, "fd count changed: %d before the test, %d after\n", before, after);
        return -1;
    }
    return 0;
}

#define CORE_TEST(f) cmocka_unit_test_setup_teardown(f, core_fd_setup, core_fd_teardown)

/* A non-blocking, close-on-exec eventfd with its counter at `initial` (readable when > 0). */
static inline int core_eventfd(unsigned initial)
{
    int fd = eventfd(initial, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static inline void core_eventfd_add(int fd, uint64_t v)
{
    assert_int_equal(write(fd, &v, sizeof v), (ssize_t)sizeof v);
}

static inline void core_socketpair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static inline void core_close2(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

static inline void core_sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

#endif
