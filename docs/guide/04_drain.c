/* Guide step 4: edge triggering. An event says "the state changed", not "there is data":
 * whoever does not read until -EAGAIN may wait forever. */
#include <mio/mio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { RX = 7 };

/* Polls for up to `ms` and returns the number of events for RX. */
static int rx_events(mio_poll *poll, mio_events *events, int ms)
{
    int n = 0;
    if (mio_poll_poll(poll, events, ms) < 0)
        return -1;
    MIO_EVENTS_FOREACH(const mio_event *ev, events)
        if (mio_event_token(ev) == RX && mio_event_is_readable(ev))
            n++;
    return n;
}

int main(void)
{
    mio_poll *poll;
    mio_events *events;
    int fds[2]; /* a connected pair of unix stream sockets: fds[0] <-> fds[1] */
    char buf[256], data[3000];
    ssize_t n;
    size_t total = 0;

    if (mio_poll_new(&poll) < 0 || mio_events_new(16, &events) < 0 || mio_unix_stream_pair(fds) < 0)
        return 1;
    mio_registry_register(mio_poll_registry(poll), fds[0], RX, MIO_READABLE);

    memset(data, 'x', sizeof data);
    mio_send(fds[1], data, sizeof data); /* 3000 bytes arrive at once */

    /* 1. One event for the arrival. */
    if (rx_events(poll, events, 1000) != 1)
        return 1;
    printf("readable: reading only %zu of %zu bytes\n", sizeof buf, sizeof data);
    n = mio_recv(fds[0], buf, sizeof buf);
    total += (size_t)n;

    /* 2. The rest is still there, but nothing changed: edge-triggered polls stay silent. */
    if (rx_events(poll, events, 100) != 0) {
        fprintf(stderr, "unexpected event: the registration is not edge-triggered?\n");
        return 1;
    }
    printf("no new event although %zu bytes wait\n", sizeof data - total);

    /* 3. The rule: after an event, read until -EAGAIN (the queue is empty). */
    while ((n = mio_recv(fds[0], buf, sizeof buf)) > 0)
        total += (size_t)n;
    if (n != -EAGAIN)
        return 1;
    printf("drained: %zu bytes in total, then -EAGAIN\n", total);

    /* 4. New data is a new edge, so a new event. */
    mio_send(fds[1], "!", 1);
    if (rx_events(poll, events, 1000) != 1)
        return 1;
    printf("new data, new event\n");

    close(fds[0]);
    close(fds[1]);
    mio_events_free(events);
    mio_poll_free(poll);
    return total == sizeof data ? 0 : 1;
}
