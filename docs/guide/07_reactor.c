/* Guide step 7: the reactor. Handlers per token instead of a switch, timers, and tasks posted
 * from another thread. A client thread (plain blocking I/O) talks to the echo handlers, then
 * posts a task with the result; a repeating timer notices it and stops the reactor. */
#include <mio/mio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 100

struct echo_conn {
    int fd;
    mio_token token;
};

static mio_addr server_addr;
static int client_result = -1; /* written by a posted task: it runs on the reactor's thread */
static int ticks;

static void on_echo(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    struct echo_conn *c = arg;
    char buf[4096];
    ssize_t n;

    /* Edge-triggered, as always: read until -EAGAIN. The messages are small, so each send
     * takes all of it; step 8's mio_conn handles partial writes for us. */
    while ((n = mio_recv(c->fd, buf, sizeof buf)) > 0)
        mio_send(c->fd, buf, (size_t)n);
    if (n == -EAGAIN)
        return;
    /* EOF or error: remove the handler (its token goes stale at once), then close the fd. */
    mio_reactor_remove(r, token);
    close(c->fd);
    free(c);
}

static void on_listener(mio_reactor *r, mio_token token, const mio_event *ev, void *arg)
{
    int lfd = *(int *)arg, fd;

    while ((fd = mio_tcp_listener_accept(lfd, NULL)) >= 0) {
        struct echo_conn *c = malloc(sizeof *c);
        if (c != NULL)
            c->fd = fd;
        if (c == NULL || mio_reactor_add(r, fd, MIO_READABLE, on_echo, c, &c->token) < 0) {
            free(c);
            close(fd);
        }
    }
}

/* A repeating timer: counts, and stops the reactor once the client reported. */
static void on_tick(mio_reactor *r, mio_timer_id id, void *arg)
{
    ticks++;
    if (client_result != -1)
        mio_reactor_stop(r);
}

static void on_deadline(mio_reactor *r, mio_timer_id id, void *arg)
{
    fprintf(stderr, "deadline passed: stopping\n");
    mio_reactor_stop(r);
}

/* Runs on the reactor's thread, posted by the client thread: no lock is needed to share
 * client_result with the timer, which runs on the same thread. */
static void client_finished(mio_reactor *r, void *arg)
{
    client_result = (int)(intptr_t)arg;
}

static void *client(void *arg)
{
    mio_reactor *r = arg;
    int fd = mio_tcp_stream_connect(&server_addr), ok = fd >= 0;

    if (ok)
        mio_set_nonblocking(fd, false); /* this thread does plain blocking I/O */
    for (int i = 0; ok && i < ROUNDS; i++) {
        char out[32], in[32];
        size_t len = (size_t)snprintf(out, sizeof out, "message %d", i), got = 0;
        ok = mio_send(fd, out, len) == (ssize_t)len;
        while (ok && got < len) {
            ssize_t n = mio_recv(fd, in + got, len - got);
            ok = n > 0;
            got += ok ? (size_t)n : 0;
        }
        ok = ok && memcmp(in, out, len) == 0;
    }
    if (fd >= 0)
        close(fd);
    /* Any thread may post; the task runs on the reactor's thread. */
    while (mio_reactor_post(r, client_finished, (void *)(intptr_t)ok) == -EAGAIN)
        usleep(1000);
    return NULL;
}

int main(void)
{
    mio_reactor *r;
    mio_timer_id deadline;
    struct mio_reactor_stats st;
    pthread_t thread;
    int lfd;

    if (mio_reactor_new(NULL, &r) < 0)
        return 1;
    mio_addr_parse("127.0.0.1:0", &server_addr);
    lfd = mio_tcp_listener_bind(&server_addr);
    if (lfd < 0)
        return 1;
    mio_socket_local_addr(lfd, &server_addr);

    /* The reactor picks the token; we keep it to remove the handler later. */
    mio_token listener;
    if (mio_reactor_add(r, lfd, MIO_READABLE, on_listener, &lfd, &listener) < 0)
        return 1;
    mio_reactor_timer_start(r, 10, 10, on_tick, NULL, NULL);          /* every 10 ms */
    mio_reactor_timer_start(r, 30000, 0, on_deadline, NULL, &deadline); /* once, in 30 s */

    pthread_create(&thread, NULL, client, r);
    mio_reactor_run(r); /* until a mio_reactor_stop */
    pthread_join(thread, NULL);

    mio_reactor_timer_cancel(r, deadline);
    mio_reactor_stats(r, &st);
    printf("client %s; %d ticks; %llu iterations, %llu handlers, %llu tasks, %llu timers\n",
           client_result == 1 ? "ok" : "FAILED", ticks, (unsigned long long)st.iterations,
           (unsigned long long)st.handlers_run, (unsigned long long)st.tasks_run,
           (unsigned long long)st.timers_fired);

    mio_reactor_remove(r, listener);
    close(lfd);
    mio_reactor_free(r);
    return client_result == 1 ? 0 : 1;
}
