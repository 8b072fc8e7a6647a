/* Guide step 5: an echo server on one Poll. The clients run in the same loop, so the program
 * checks itself: each client sends 256 KiB, reads everything back, compares, and hangs up. */
#include <mio/mio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NCLIENTS 4
#define MSG_SIZE (256 * 1024)
#define MAX_PEERS (1 + 2 * NCLIENTS)
#define SERVER 0 /* token 0 is the listener; token i > 0 is peers[i] */

struct peer {
    int fd;             /* -1: free slot */
    bool is_client;     /* our test client, or a connection the server accepted */
    /* server side: bytes read but not yet echoed (the socket would not take them) */
    char pending[64 * 1024];
    size_t pending_len;
    /* client side: how much of the message went out and came back */
    size_t sent, received;
};

static struct peer peers[MAX_PEERS];
static mio_registry *reg;
static int open_clients = NCLIENTS, open_server_conns;

static char pattern(size_t i, mio_token t)
{
    return (char)((i * 7 + t) & 0xff);
}

static mio_token add_peer(int fd, bool is_client, mio_interest interest)
{
    for (mio_token t = 1; t < MAX_PEERS; t++) {
        if (peers[t].fd == -1) {
            memset(&peers[t], 0, sizeof peers[t]);
            peers[t].fd = fd;
            peers[t].is_client = is_client;
            if (mio_registry_register(reg, fd, t, interest) < 0)
                break;
            return t;
        }
    }
    close(fd);
    return 0;
}

static void close_peer(mio_token t)
{
    mio_registry_deregister(reg, peers[t].fd);
    close(peers[t].fd);
    peers[t].fd = -1;
    if (peers[t].is_client)
        open_clients--;
    else
        open_server_conns--;
}

/* Server side: echo what arrives. When the socket will not take more, keep the rest, stop
 * reading (that is back-pressure: the client's sends will block, not our memory grow) and ask
 * for WRITABLE. Returns false when the connection is finished. */
static bool server_conn_ready(mio_token t, const mio_event *ev)
{
    struct peer *p = &peers[t];

    if (mio_event_is_writable(ev) && p->pending_len > 0) {
        ssize_t n = mio_send(p->fd, p->pending, p->pending_len);
        if (n == -EAGAIN)
            return true; /* still full: wait for the next WRITABLE */
        if (n < 0)
            return false;
        memmove(p->pending, p->pending + n, p->pending_len - (size_t)n);
        p->pending_len -= (size_t)n;
        if (p->pending_len > 0)
            return true;
        /* Flushed: back to reading. Reregistering re-arms the edge, so data that arrived while
         * we were not reading produces an event now. */
        mio_registry_reregister(reg, p->fd, t, MIO_READABLE);
        return true;
    }
    while (p->pending_len == 0) {
        char buf[16 * 1024];
        ssize_t n = mio_recv(p->fd, buf, sizeof buf), w;
        if (n == -EAGAIN)
            return true; /* drained: wait for the next edge */
        if (n <= 0)
            return false; /* 0: the client hung up; < 0: an error */
        w = mio_send(p->fd, buf, (size_t)n);
        if (w == -EAGAIN)
            w = 0;
        if (w < 0)
            return false;
        if (w < n) {
            memcpy(p->pending, buf + w, (size_t)(n - w));
            p->pending_len = (size_t)(n - w);
            mio_registry_reregister(reg, p->fd, t, MIO_WRITABLE);
        }
    }
    return true;
}

/* Client side: send the message, read the echo, check it. Returns false when done or failed. */
static bool client_ready(mio_token t)
{
    struct peer *p = &peers[t];
    char buf[16 * 1024];
    ssize_t n;

    while (p->sent < MSG_SIZE) {
        size_t len = MSG_SIZE - p->sent < sizeof buf ? MSG_SIZE - p->sent : sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = pattern(p->sent + i, t);
        n = mio_send(p->fd, buf, len);
        if (n == -EAGAIN)
            break; /* the socket is full; a WRITABLE event will tell when to go on */
        if (n < 0)
            return false;
        p->sent += (size_t)n;
    }
    while ((n = mio_recv(p->fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != pattern(p->received + (size_t)i, t)) {
                fprintf(stderr, "client %lu: wrong byte at %zu\n", (unsigned long)t,
                        p->received + (size_t)i);
                return false;
            }
        }
        p->received += (size_t)n;
    }
    if (p->received == MSG_SIZE) {
        printf("client %lu: %d bytes echoed intact\n", (unsigned long)t, MSG_SIZE);
        return false; /* done: hang up */
    }
    return n == -EAGAIN; /* 0 (EOF) or an error before the end is a failure */
}

int main(void)
{
    mio_poll *poll;
    mio_events *events;
    mio_addr addr;
    int server, verified = 0;

    alarm(60); /* a tutorial program must never hang `make check` */
    for (int i = 0; i < MAX_PEERS; i++)
        peers[i].fd = -1;
    if (mio_poll_new(&poll) < 0 || mio_events_new(256, &events) < 0)
        return 1;
    reg = mio_poll_registry(poll);

    mio_addr_parse("127.0.0.1:0", &addr);
    server = mio_tcp_listener_bind(&addr);
    if (server < 0)
        return 1;
    mio_socket_local_addr(server, &addr);
    mio_registry_register(reg, server, SERVER, MIO_READABLE);

    for (int i = 0; i < NCLIENTS; i++) {
        int fd = mio_tcp_stream_connect(&addr);
        if (fd < 0 || add_peer(fd, true, mio_interest_add(MIO_READABLE, MIO_WRITABLE)) == 0)
            return 1;
    }

    while (open_clients > 0 || open_server_conns > 0) {
        int rc = mio_poll_poll(poll, events, 10000);
        if (rc == 0 || (rc < 0 && rc != -EINTR)) {
            fprintf(stderr, "poll: %s\n", rc == 0 ? "stuck for 10 s" : mio_strerror(rc));
            return 1;
        }
        MIO_EVENTS_FOREACH(const mio_event *ev, events) {
            mio_token t = mio_event_token(ev);
            if (t == SERVER) {
                int fd;
                while ((fd = mio_tcp_listener_accept(server, NULL)) >= 0)
                    if (add_peer(fd, false, MIO_READABLE) != 0)
                        open_server_conns++;
                continue;
            }
            if (peers[t].fd == -1)
                continue; /* closed earlier in this batch */
            if (peers[t].is_client) {
                if (!client_ready(t)) {
                    verified += peers[t].received == MSG_SIZE;
                    close_peer(t);
                }
            } else if (!server_conn_ready(t, ev)) {
                close_peer(t);
            }
        }
    }

    close(server);
    mio_events_free(events);
    mio_poll_free(poll);
    printf("%d of %d clients verified\n", verified, NCLIENTS);
    return verified == NCLIENTS ? 0 : 1;
}
