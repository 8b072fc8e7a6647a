/* Guide step 11: serving a socket the program did not create. Under systemd (or
 * systemd-socket-activate) the sockets arrive as LISTEN_FDS; run by hand or by make check, the
 * program makes one itself the way a supervisor would, adopts it, serves a client, then drains:
 * the pool stops accepting while the socket, still held here, keeps its queue. */
#include <mio/mio.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
    else
        mio_conn_write(c, data, len);
}

static void echo_close(mio_conn *c, int reason, void *arg)
{
    (void)c, (void)reason, (void)arg;
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    (void)peer, (void)arg;
    if (mio_conn_open(worker, fd, &echo_ops, NULL, NULL) < 0)
        close(fd);
}

/* A blocking, inheritable listener on 127.0.0.1 (port 0): what a supervisor would pass. */
static int supervisor_socket(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof(in)) < 0 || listen(fd, 128) < 0)
        return -1;
    return fd;
}

int main(void)
{
    mio_listen_fd fds[8];
    mio_pool_opts opts = {.workers = 2};
    mio_pool *pool;
    mio_addr addr;
    char buf[5] = {0};
    int n, lfd, keep, c;

    if (mio_pool_new(&opts, &pool) < 0)
        return 1;
    /* Socket activation: the inherited sockets, named, made close-on-exec; the variables go. */
    n = mio_sd_listen_fds(true, fds, 8);
    for (int i = 0; i < n && i < 8; i++)
        if (mio_pool_adopt(pool, fds[i].fd, on_accept, NULL) < 0)
            return 1;
    lfd = supervisor_socket();
    keep = dup(lfd); /* a second holder of the socket, as a restarted copy would be */
    if (lfd < 0 || keep < 0 || mio_pool_adopt(pool, lfd, on_accept, NULL) < 0)
        return 1;
    if (mio_pool_local_addr(pool, n > 0 ? (unsigned)n : 0, &addr) < 0 || mio_pool_start(pool) < 0)
        return 1;
    mio_sd_notify("READY=1"); /* 0 when no service manager listens */

    c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, &addr.u.sa, addr.len) < 0 || write(c, "ping", 4) != 4 ||
        read(c, buf, 4) != 4 || strcmp(buf, "ping") != 0)
        return 1;

    /* Restart, first half: stop accepting, keep serving, keep the queue for the other holder. */
    if (mio_pool_drain(pool) < 0 || !mio_pool_draining(pool))
        return 1;
    if (write(c, "pong", 4) != 4 || read(c, buf, 4) != 4 || strcmp(buf, "pong") != 0)
        return 1;
    close(c);
    mio_pool_stop(pool, 1000);
    mio_pool_free(pool);
    close(keep);
    printf("adopted, served, drained\n");
    return 0;
}
