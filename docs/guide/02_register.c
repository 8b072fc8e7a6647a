/* Guide step 2: register a listener with a token and an interest, poll, dispatch by token. */
#include <mio/mio.h>
#include <stdio.h>
#include <unistd.h>

enum { SERVER = 0, CLIENT = 1 }; /* our tokens: any values we like */

int main(void)
{
    mio_poll *poll;
    mio_events *events;
    mio_registry *reg;
    mio_addr addr;
    char text[MIO_ADDR_STRLEN];
    int server, client, rc;
    bool accepted = false;

    if (mio_poll_new(&poll) < 0 || mio_events_new(128, &events) < 0)
        return 1;
    reg = mio_poll_registry(poll);

    /* Port 0: the kernel picks a free port; we read it back to connect to it. */
    mio_addr_parse("127.0.0.1:0", &addr);
    server = mio_tcp_listener_bind(&addr);
    if (server < 0) {
        fprintf(stderr, "bind: %s\n", mio_strerror(server));
        return 1;
    }
    mio_socket_local_addr(server, &addr);
    mio_addr_format(&addr, text, sizeof text);
    printf("listening on %s\n", text);

    /* The listener becomes readable when a connection waits to be accepted. */
    rc = mio_registry_register(reg, server, SERVER, MIO_READABLE);
    if (rc < 0) {
        fprintf(stderr, "register: %s\n", mio_strerror(rc));
        return 1;
    }

    /* A client in the same process, so that something happens. */
    client = mio_tcp_stream_connect(&addr);
    if (client < 0)
        return 1;
    mio_registry_register(reg, client, CLIENT, MIO_WRITABLE);

    while (!accepted) {
        rc = mio_poll_poll(poll, events, 5000);
        if (rc == 0) {
            fprintf(stderr, "no event within 5 s\n");
            return 1;
        }
        if (rc < 0 && rc != -EINTR)
            return 1;
        MIO_EVENTS_FOREACH(const mio_event *ev, events) {
            char what[96];
            mio_event_format(ev, what, sizeof what);
            printf("event: %s\n", what);

            switch (mio_event_token(ev)) {
            case SERVER: {
                int fd = mio_tcp_listener_accept(server, NULL);
                if (fd >= 0) {
                    printf("accepted fd %d\n", fd);
                    close(fd);
                    accepted = true;
                }
                break;
            }
            case CLIENT:
                printf("client connected: %s\n", mio_strerror(mio_socket_take_error(client)));
                break;
            }
        }
    }

    close(client);
    close(server);
    mio_events_free(events);
    mio_poll_free(poll);
    return 0;
}
