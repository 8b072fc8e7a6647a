/* mio_events, the buffer one mio_poll_poll fills (owned by the thread that polls with it), its
 * accessors and formatting, and the exported forms of event.h's inline predicates (pure: any
 * thread). */
#include <errno.h>
#include <stdio.h>

#include <mio/event.h>

#include "internal/format.h"
#include "internal/mem.h"

/* epoll_wait takes an int count; the buffer must also fit in memory. */
#define MIO_EVENTS_MAX (1u << 24)

int mio_events_new(size_t capacity, mio_events **out)
{
    mio_events *e;
    if (out == NULL || capacity == 0 || capacity > MIO_EVENTS_MAX)
        return -EINVAL;
    e = mio__alloc(0, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    e->mio__buf = mio__calloc(0, capacity, sizeof *e->mio__buf);
    if (e->mio__buf == NULL) {
        mio__free(0, e);
        return -ENOMEM;
    }
    e->mio__len = 0;
    e->mio__cap = capacity;
    *out = e;
    return 0;
}

void mio_events_free(mio_events *events)
{
    if (events == NULL)
        return;
    mio__free(0, events->mio__buf);
    mio__free(0, events);
}

size_t mio_events_capacity(const mio_events *events)
{
    return events == NULL ? 0 : events->mio__cap;
}

size_t mio_events_len(const mio_events *events)
{
    return events == NULL ? 0 : events->mio__len;
}

bool mio_events_is_empty(const mio_events *events)
{
    return events == NULL || events->mio__len == 0;
}

void mio_events_clear(mio_events *events)
{
    if (events != NULL)
        events->mio__len = 0;
}

const mio_event *mio_events_get(const mio_events *events, size_t i)
{
    if (events == NULL || i >= events->mio__len)
        return NULL;
    return &events->mio__buf[i];
}

/* The exported forms of the inline predicates in event.h (the parentheses keep the macros out). */
mio_token(mio_event_token)(const mio_event *ev)
{
    return mio__event_token(ev);
}

bool(mio_event_is_readable)(const mio_event *ev)
{
    return mio__event_is_readable(ev);
}

bool(mio_event_is_writable)(const mio_event *ev)
{
    return mio__event_is_writable(ev);
}

bool(mio_event_is_error)(const mio_event *ev)
{
    return mio__event_is_error(ev);
}

bool(mio_event_is_read_closed)(const mio_event *ev)
{
    return mio__event_is_read_closed(ev);
}

bool(mio_event_is_write_closed)(const mio_event *ev)
{
    return mio__event_is_write_closed(ev);
}

bool(mio_event_is_priority)(const mio_event *ev)
{
    return mio__event_is_priority(ev);
}

int mio_event_format(const mio_event *ev, char *buf, size_t len)
{
    struct mio__fmt f = MIO__FMT_INIT(buf, len);
    char head[48];
    if (ev == NULL) {
        mio__fmt_add(&f, "(null)");
        return mio__fmt_end(&f);
    }
    snprintf(head, sizeof head, "token=%llu ", (unsigned long long)mio_event_token(ev));
    mio__fmt_add(&f, head);
    if (mio_event_is_readable(ev))
        mio__fmt_flag(&f, "READABLE");
    if (mio_event_is_writable(ev))
        mio__fmt_flag(&f, "WRITABLE");
    if (mio_event_is_error(ev))
        mio__fmt_flag(&f, "ERROR");
    if (mio_event_is_read_closed(ev))
        mio__fmt_flag(&f, "READ_CLOSED");
    if (mio_event_is_write_closed(ev))
        mio__fmt_flag(&f, "WRITE_CLOSED");
    if (mio_event_is_priority(ev))
        mio__fmt_flag(&f, "PRIORITY");
    if (f.flags == 0)
        mio__fmt_add(&f, "(none)");
    return mio__fmt_end(&f);
}
