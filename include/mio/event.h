/* Events: the caller-owned buffer that mio_poll_poll fills, and the readiness event it holds. */
#ifndef MIO_EVENT_H
#define MIO_EVENT_H

#include <sys/epoll.h>
#include <mio/common.h>
#include <mio/token.h>

MIO_BEGIN_DECLS

/* One readiness event. The layout is the kernel's; read it only through the mio_event_* functions. */
typedef struct epoll_event mio_event;

/* A fixed-capacity events buffer. The fields are private: they are visible only so that
 * MIO_EVENTS_FOREACH can iterate without a function call per event. */
typedef struct mio_events {
    mio_event *mio__buf;
    size_t mio__len;
    size_t mio__cap;
} mio_events;

/* Creates a buffer for at most `capacity` events; it never grows.
 * Returns 0 and *out, -EINVAL for capacity 0 or NULL out (or capacity too large), -ENOMEM.
 * The caller owns *out and frees it with mio_events_free. */
MIO_EXTERN int mio_events_new(size_t capacity, mio_events **out);
/* Frees the buffer; NULL is accepted. */
MIO_EXTERN void mio_events_free(mio_events *events);
MIO_EXTERN size_t mio_events_capacity(const mio_events *events);
/* Number of events the last mio_poll_poll stored (0 after mio_events_clear). */
MIO_EXTERN size_t mio_events_len(const mio_events *events);
MIO_EXTERN bool mio_events_is_empty(const mio_events *events);
MIO_EXTERN void mio_events_clear(mio_events *events);
/* The i-th event in kernel order, or NULL when i >= len. The pointer is valid until the next poll
 * or clear on this buffer. */
MIO_EXTERN const mio_event *mio_events_get(const mio_events *events, size_t i);

/* Iterates over the events in kernel order: MIO_EVENTS_FOREACH(const mio_event *ev, events) {...}
 * The first argument is a declaration. `break` leaves the whole loop, `continue` goes to the next
 * event. No function is called per event. */
#define MIO__CAT2(a, b) a##b
#define MIO__CAT(a, b) MIO__CAT2(a, b)
#define MIO__I MIO__CAT(mio__i_, __LINE__)
#define MIO__K MIO__CAT(mio__k_, __LINE__)
#define MIO_EVENTS_FOREACH(decl, events)                                                          \
    for (size_t MIO__I = 0, MIO__K = 1; MIO__K && MIO__I < (events)->mio__len;                    \
         MIO__K = !MIO__K, MIO__I++)                                                               \
        for (decl = &(events)->mio__buf[MIO__I]; MIO__K; MIO__K = !MIO__K)

/* Predicates on one event; pure and thread-safe. */
MIO_EXTERN mio_token mio_event_token(const mio_event *ev);
MIO_EXTERN bool mio_event_is_readable(const mio_event *ev);     /* EPOLLIN or EPOLLPRI */
MIO_EXTERN bool mio_event_is_writable(const mio_event *ev);     /* EPOLLOUT */
MIO_EXTERN bool mio_event_is_error(const mio_event *ev);        /* EPOLLERR */
MIO_EXTERN bool mio_event_is_read_closed(const mio_event *ev);  /* EPOLLHUP, or EPOLLIN+EPOLLRDHUP */
MIO_EXTERN bool mio_event_is_write_closed(const mio_event *ev); /* EPOLLHUP, EPOLLOUT+EPOLLERR, or
                                                                   exactly EPOLLERR */
MIO_EXTERN bool mio_event_is_priority(const mio_event *ev);     /* EPOLLPRI */
/* Writes e.g. "token=7 READABLE | WRITABLE | READ_CLOSED" for logs; snprintf semantics. */
MIO_EXTERN int mio_event_format(const mio_event *ev, char *buf, size_t len);

/* The predicates are also inline, so that a loop over events makes no call per test: a C or C++
 * caller gets these through the macros below; the exported functions above (same results) stay
 * for taking their address, for `(mio_event_is_readable)(ev)`, and for other languages. */
static inline mio_token mio__event_token(const mio_event *ev)
{
    return (mio_token)ev->data.u64;
}
static inline bool mio__event_is_readable(const mio_event *ev)
{
    return (ev->events & (EPOLLIN | EPOLLPRI)) != 0;
}
static inline bool mio__event_is_writable(const mio_event *ev)
{
    return (ev->events & EPOLLOUT) != 0;
}
static inline bool mio__event_is_error(const mio_event *ev)
{
    return (ev->events & EPOLLERR) != 0;
}
static inline bool mio__event_is_read_closed(const mio_event *ev)
{
    return (ev->events & EPOLLHUP) != 0 ||
           (ev->events & (EPOLLIN | EPOLLRDHUP)) == (EPOLLIN | EPOLLRDHUP);
}
static inline bool mio__event_is_write_closed(const mio_event *ev)
{
    return (ev->events & EPOLLHUP) != 0 ||
           (ev->events & (EPOLLOUT | EPOLLERR)) == (EPOLLOUT | EPOLLERR) ||
           ev->events == EPOLLERR;
}
static inline bool mio__event_is_priority(const mio_event *ev)
{
    return (ev->events & EPOLLPRI) != 0;
}
#define mio_event_token(ev) mio__event_token(ev)
#define mio_event_is_readable(ev) mio__event_is_readable(ev)
#define mio_event_is_writable(ev) mio__event_is_writable(ev)
#define mio_event_is_error(ev) mio__event_is_error(ev)
#define mio_event_is_read_closed(ev) mio__event_is_read_closed(ev)
#define mio_event_is_write_closed(ev) mio__event_is_write_closed(ev)
#define mio_event_is_priority(ev) mio__event_is_priority(ev)

MIO_END_DECLS

#endif
