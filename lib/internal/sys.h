/* The only doors to epoll and eventfd (lib/sys/epoll.c, lib/sys/eventfd.c). Each returns >= 0 or a
 * negative errno, checked exactly as the man page says. */
#ifndef MIO_INTERNAL_SYS_H
#define MIO_INTERNAL_SYS_H

#include <stdint.h>
#include <sys/epoll.h>

int mio__epoll_create(void);                                   /* epoll_create1(EPOLL_CLOEXEC) */
int mio__epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int mio__epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms); /* no retry */
int mio__eventfd_create(void);                               /* EFD_NONBLOCK | EFD_CLOEXEC */
int mio__eventfd_write(int fd, uint64_t value);                /* -EAGAIN when it would overflow */
int mio__eventfd_read(int fd, uint64_t *value);                /* -EAGAIN when zero */

#endif
