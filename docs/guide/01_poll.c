/* Guide step 1: a Poll and an Events buffer, and a first (empty) poll. */
#include <mio/mio.h>
#include <stdio.h>

int main(void)
{
    mio_poll *poll;
    mio_events *events;
    int rc;

    rc = mio_poll_new(&poll);
    if (rc < 0) {
        fprintf(stderr, "mio_poll_new: %s\n", mio_strerror(rc));
        return 1;
    }
    rc = mio_events_new(128, &events);
    if (rc < 0) {
        fprintf(stderr, "mio_events_new: %s\n", mio_strerror(rc));
        mio_poll_free(poll);
        return 1;
    }

    /* Nothing is registered yet, so a poll with a 10 ms timeout returns 0: no events. */
    rc = mio_poll_poll(poll, events, 10);
    printf("poll returned %d, %zu events (capacity %zu)\n", rc, mio_events_len(events),
           mio_events_capacity(events));

    mio_events_free(events);
    mio_poll_free(poll);
    return rc == 0 ? 0 : 1;
}
