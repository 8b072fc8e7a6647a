/* Interest: which readiness a registration asks for. Never 0 when registering. */
#ifndef MIO_INTEREST_H
#define MIO_INTEREST_H

#include <mio/common.h>

MIO_BEGIN_DECLS

typedef uint8_t mio_interest;
#define MIO_READABLE ((mio_interest)0x01) /* epoll: EPOLLIN | EPOLLRDHUP */
#define MIO_WRITABLE ((mio_interest)0x02) /* epoll: EPOLLOUT */
#define MIO_PRIORITY ((mio_interest)0x10) /* epoll: EPOLLPRI */

/* All interest functions are pure and thread-safe. */

/* Union of a and b. */
MIO_EXTERN mio_interest mio_interest_add(mio_interest a, mio_interest b);
/* a without b; 0 when nothing is left (0 is not a valid interest to register). */
MIO_EXTERN mio_interest mio_interest_remove(mio_interest a, mio_interest b);
MIO_EXTERN bool mio_interest_is_readable(mio_interest i);
MIO_EXTERN bool mio_interest_is_writable(mio_interest i);
MIO_EXTERN bool mio_interest_is_priority(mio_interest i);
/* Writes e.g. "READABLE | WRITABLE" ("(empty)" for 0). Behaves like snprintf: returns the length
 * the full text needs and always NUL-terminates when len > 0; buf may be NULL when len is 0. */
MIO_EXTERN int mio_interest_format(mio_interest i, char *buf, size_t len);

MIO_END_DECLS

#endif
