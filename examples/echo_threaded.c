/* mio-echo-threaded: a multi-threaded echo server on mio_pool + mio_conn. Every connection is
 * handed to a worker, which echoes what it reads and closes after the peer's FIN. */
#include "pool_main.h"

static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c); /* the echo of what came before is flushed first */
    else
        (void)mio_conn_write(c, data, len); /* on failure the conn closes by itself */
}

static void echo_close(mio_conn *c, int reason, void *arg)
{
    (void)c;
    (void)reason;
    (void)arg;
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    (void)peer;
    (void)arg;
    if (mio_conn_open(worker, fd, &echo_ops, NULL, NULL) < 0)
        close(fd);
}

int main(int argc, char **argv)
{
    return pool_main(argc, argv, "Echoes every byte back on each connection.", on_accept);
}
