/* uv_echo: the idiomatic libuv echo server, one loop, as a yardstick.
 *
 *   uv_echo --listen ADDR
 *
 * uv_listen + uv_accept, uv_read_start with an alloc callback, and the reply through
 * uv_try_write with uv_write for whatever the kernel did not take. The read buffer is one static
 * 64 KiB block: libuv hands it to the read callback before it asks for the next one, and the
 * callback is done with it on return (uv_try_write copies into the kernel; the rare remainder is
 * copied into the write request). So, like the raw epoll baseline, nothing is allocated per message
 * on the common path, only a uv_tcp_t per connection, which is libuv's inherent cost.
 * SIGINT/SIGTERM (uv_signal) close every handle and let uv_run return; exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "baseline.h"

#define ECHO_BUF (64 * 1024)

struct write_req {
    uv_write_t req;
    uv_buf_t buf;
    char data[]; /* the unsent tail of one reply */
};

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_int, sig_term;
static char read_buf[ECHO_BUF];
static unsigned long long accepted;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_close_free(uv_handle_t *h)
{
    free(h);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_close_free);
    free(wr);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) { /* UV_EOF or an error */
        uv_close((uv_handle_t *)stream, on_close_free);
        return;
    }
    if (nread == 0)
        return; /* EAGAIN, nothing to do */
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int sent = uv_try_write(stream, &out, 1);
    if (sent == nread)
        return;
    if (sent < 0 && sent != UV_EAGAIN) {
        uv_close((uv_handle_t *)stream, on_close_free);
        return;
    }
    if (sent < 0)
        sent = 0;
    size_t rest = (size_t)nread - (size_t)sent;
    struct write_req *wr = malloc(sizeof(*wr) + rest);
    if (wr == NULL) {
        uv_close((uv_handle_t *)stream, on_close_free);
        return;
    }
    memcpy(wr->data, buf->base + sent, rest);
    wr->buf = uv_buf_init(wr->data, (unsigned)rest);
    if (uv_write(&wr->req, stream, &wr->buf, 1, on_write) < 0) {
        free(wr);
        uv_close((uv_handle_t *)stream, on_close_free);
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *client = malloc(sizeof(*client));
    if (client == NULL)
        return;
    uv_tcp_init(loop, client);
    if (uv_accept(srv, (uv_stream_t *)client) != 0 ||
        uv_read_start((uv_stream_t *)client, on_alloc, on_read) != 0) {
        uv_close((uv_handle_t *)client, on_close_free);
        return;
    }
    accepted++;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    /* Connections were malloc'd; the server and signal handles are static. */
    if (h->type == UV_TCP && h != (uv_handle_t *)&server)
        uv_close(h, on_close_free);
    else
        uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_walk(h->loop, close_walk, NULL);
}

int main(int argc, char **argv)
{
    struct baseline_args a = baseline_parse(argc, argv, false, false);
    struct sockaddr_storage ss;
    socklen_t len;
    int err;

    if (baseline_addr_parse(a.listen, &ss, &len) < 0) {
        fprintf(stderr, "%s: bad address '%s'\n", argv[0], a.listen);
        return 2;
    }
    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    err = uv_tcp_bind(&server, (const struct sockaddr *)&ss, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (err != 0) {
        fprintf(stderr, "%s: listen on %s: %s\n", argv[0], a.listen, uv_strerror(err));
        return 1;
    }
    uv_os_fd_t fd;
    uv_fileno((uv_handle_t *)&server, &fd);
    baseline_print_bound(fd);

    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);

    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    fprintf(stderr, "%s: stopped: accepted=%llu\n", argv[0], accepted);
    return 0;
}
