/* Guide step 6: the Waker. Another thread hands work to the polling thread through a queue and
 * wakes the poll; wakes may coalesce, so the loop drains the whole queue per wake event. */
#include <mio/mio.h>
#include <pthread.h>
#include <stdio.h>

enum { WAKER = 1 };
#define ITEMS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int queue[ITEMS], queued; /* filled by the producer, emptied by the polling thread */
static mio_waker *waker;

static void *producer(void *arg)
{
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&lock);
        queue[queued++] = i;
        pthread_mutex_unlock(&lock);
        mio_waker_wake(waker); /* any thread; cheap; may coalesce with earlier wakes */
    }
    return NULL;
}

int main(void)
{
    mio_poll *poll;
    mio_events *events;
    pthread_t thread;
    int taken = 0, wake_events = 0;
    long sum = 0;

    if (mio_poll_new(&poll) < 0 || mio_events_new(64, &events) < 0)
        return 1;
    if (mio_waker_new(mio_poll_registry(poll), WAKER, &waker) < 0)
        return 1;
    pthread_create(&thread, NULL, producer, NULL);

    while (taken < ITEMS) {
        int rc = mio_poll_poll(poll, events, 10000);
        if (rc == 0 || (rc < 0 && rc != -EINTR))
            return 1;
        MIO_EVENTS_FOREACH(const mio_event *ev, events) {
            if (mio_event_token(ev) != WAKER)
                continue;
            wake_events++;
            pthread_mutex_lock(&lock); /* take everything queued so far */
            for (int i = taken; i < queued; i++)
                sum += queue[i];
            taken = queued;
            pthread_mutex_unlock(&lock);
        }
    }
    pthread_join(thread, NULL);
    printf("%d items in %d wake events (wakes coalesce), sum %ld\n", taken, wake_events, sum);

    mio_waker_free(waker);
    mio_events_free(events);
    mio_poll_free(poll);
    return sum == (long)ITEMS * (ITEMS - 1) / 2 ? 0 : 1;
}
