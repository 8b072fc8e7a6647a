/* Guide step 10: clients and cross-thread calls. One reactor holds a small echo server and two
 * outbound connections: one to a port nobody listens on (refused: on_close says so), one to the
 * echo server, written to before its connect completes. Once connected, a second thread writes
 * to it through a mio_conn_handle and asks for a shutdown; after the conn is gone, a last call
 * through the same handle is told so (it gets NULL). */
#include <mio/mio.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EXPECTED "written before the connect\nline 1\nline 2\nline 3\n"

static char echoed[256];
static size_t echoed_len;
static int refused_reason = 1, client_reason = 1; /* on_close's reasons; 1 until it ran */
static bool connected, gone_seen;
static mio_conn_handle handle; /* the client conn's: a plain value any thread may copy */
static pthread_t writer;

/* ---- the echo server: every byte goes back; the peer's FIN closes the conn */
static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    if (len == 0)
        mio_conn_close(c); /* what it queued still goes out, then it closes */
    else
        (void)mio_conn_write(c, data, len);
}

static void echo_close(mio_conn *c, int reason, void *arg) {}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void on_listener(mio_reactor *r, mio_token t, const mio_event *ev, void *arg)
{
    int lfd = *(int *)arg, fd;

    while ((fd = mio_tcp_listener_accept(lfd, NULL)) >= 0) {
        if (mio_conn_open(r, fd, &echo_ops, NULL, NULL) < 0)
            close(fd);
    }
}

/* ---- the refused connection: its only callback is on_close, with the reason */
static void refused_read(mio_conn *c, const void *data, size_t len, void *arg) {}

static void refused_close(mio_conn *c, int reason, void *arg)
{
    refused_reason = reason;
    printf("refused connect: on_close(%s)\n", mio_strerror(reason));
}

static const mio_conn_ops refused_ops = {refused_read, refused_close, NULL};

/* ---- the client connection */
static void finish(mio_conn *c, void *arg) /* runs on the reactor's thread */
{
    if (c != NULL)
        (void)mio_conn_shutdown(c); /* FIN once the queue is out; reading goes on */
}

static void *write_from_thread(void *arg)
{
    mio_conn_handle h = handle; /* copied: nothing here touches the conn itself */
    char line[16];

    for (int i = 1; i <= 3; i++) {
        snprintf(line, sizeof(line), "line %d\n", i);
        if (mio_conn_handle_write(h, line, strlen(line)) < 0) /* the bytes are copied */
            return NULL;
    }
    (void)mio_conn_handle_call(h, finish, NULL); /* after the writes: one sender, in order */
    return NULL;
}

static void client_connected(mio_conn *c, void *arg)
{
    connected = true;
    handle = mio_conn_handle_get(c);
    if (pthread_create(&writer, NULL, write_from_thread, NULL) != 0)
        mio_conn_close(c);
}

static void client_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    if (len == 0) { /* the server closed after our FIN: all the echo is in */
        mio_conn_close(c);
        return;
    }
    if (len > sizeof(echoed) - echoed_len)
        len = sizeof(echoed) - echoed_len;
    memcpy(echoed + echoed_len, data, len);
    echoed_len += len;
}

static void client_close(mio_conn *c, int reason, void *arg)
{
    client_reason = reason;
}

static const mio_conn_ops client_ops = {client_read, client_close, NULL};

static void gone(mio_conn *c, void *arg)
{
    gone_seen = c == NULL; /* the conn closed: the call runs, without it */
}

int main(void)
{
    mio_reactor *r;
    mio_conn *client;
    mio_addr server, nobody;
    int lfd, spare, rc;
    static const char early[] = "written before the connect\n";

    alarm(30); /* a tutorial program must never hang `make check` */
    mio_addr_parse("127.0.0.1:0", &server);
    nobody = server;
    lfd = mio_tcp_listener_bind(&server);
    spare = mio_tcp_listener_bind(&nobody); /* a free port, closed at once: nobody listens */
    if (lfd < 0 || spare < 0 || mio_reactor_new(NULL, &r) < 0)
        return 1;
    mio_socket_local_addr(lfd, &server);
    mio_socket_local_addr(spare, &nobody);
    close(spare);
    mio_reactor_add(r, lfd, MIO_READABLE, on_listener, &lfd, NULL);

    rc = mio_conn_connect(r, &nobody, &refused_ops, NULL, NULL, 1000, NULL);
    if (rc < 0) /* the kernel may know at once: then no callback runs */
        refused_close(NULL, rc, NULL);
    rc = mio_conn_connect(r, &server, &client_ops, client_connected, NULL, 1000, &client);
    if (rc < 0) {
        fprintf(stderr, "connect: %s\n", mio_strerror(rc));
        return 1;
    }
    mio_conn_write(client, early, sizeof(early) - 1); /* queued until the connect completes */

    while (client_reason == 1 || refused_reason == 1)
        mio_reactor_run_once(r, 100);
    pthread_join(writer, NULL);
    if (mio_conn_handle_call(handle, gone, NULL) < 0) /* the conn is gone by now */
        return 1;
    while (!gone_seen)
        mio_reactor_run_once(r, 100);
    mio_reactor_free(r);
    close(lfd);

    printf("connected %s; echoed %zu bytes, %s; client on_close(%d); late call saw %s\n",
           connected ? "yes" : "no", echoed_len,
           echoed_len == strlen(EXPECTED) && memcmp(echoed, EXPECTED, echoed_len) == 0
               ? "in order"
               : "WRONG",
           client_reason, gone_seen ? "no conn" : "a conn");
    return connected && refused_reason == -ECONNREFUSED && client_reason == 0 && gone_seen &&
                   echoed_len == strlen(EXPECTED) && memcmp(echoed, EXPECTED, echoed_len) == 0
               ? 0
               : 1;
}
