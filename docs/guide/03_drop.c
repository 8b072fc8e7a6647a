/* Guide step 3: the drop server (mio's tutorial program): accept connections and drop them. */
#include <mio/mio.h>
#include <stdio.h>
#include <unistd.h>

enum { SERVER = 0, CLIENT = 1 };

int main(void)
{
    mio_poll *poll;
    mio_events *events;
    mio_addr addr;
    int server, client, dropped = 0;
    bool done = false;

    if (mio_poll_new(&poll) < 0 || mio_events_new(1024, &events) < 0)
        return 1;
    mio_addr_parse("127.0.0.1:0", &addr); /* mio's tutorial uses 127.0.0.1:13265 */
    server = mio_tcp_listener_bind(&addr);
    if (server < 0)
        return 1;
    mio_socket_local_addr(server, &addr);
    client = mio_tcp_stream_connect(&addr);
    if (client < 0)
        return 1;

    mio_registry_register(mio_poll_registry(poll), server, SERVER, MIO_READABLE);
    mio_registry_register(mio_poll_registry(poll), client, CLIENT,
                          mio_interest_add(MIO_READABLE, MIO_WRITABLE));

    while (!done) {
        int rc = mio_poll_poll(poll, events, 5000);
        if (rc == 0 || (rc < 0 && rc != -EINTR)) {
            fprintf(stderr, "poll: %s\n", rc == 0 ? "timed out" : mio_strerror(rc));
            return 1;
        }
        MIO_EVENTS_FOREACH(const mio_event *ev, events) {
            switch (mio_event_token(ev)) {
            case SERVER:
                /* Edge-triggered: accept every waiting connection, until -EAGAIN. */
                for (;;) {
                    int fd = mio_tcp_listener_accept(server, NULL);
                    if (fd == -EAGAIN)
                        break;
                    if (fd < 0) {
                        fprintf(stderr, "accept: %s\n", mio_strerror(fd));
                        break;
                    }
                    close(fd); /* drop it */
                    dropped++;
                }
                break;
            case CLIENT:
                if (mio_event_is_writable(ev)) {
                    /* We could (likely) write to the socket without blocking. */
                }
                if (mio_event_is_readable(ev)) {
                    /* We could (likely) read from the socket without blocking. */
                }
                /* The server drops every connection: once our client sees the close, we are done. */
                if (mio_event_is_read_closed(ev) || mio_event_is_error(ev))
                    done = true;
                break;
            }
        }
    }
    printf("dropped %d connection(s); the client saw the close\n", dropped);

    close(client);
    close(server);
    mio_events_free(events);
    mio_poll_free(poll);
    return dropped == 1 ? 0 : 1;
}
