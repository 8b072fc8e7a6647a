/* Guide step 8: a multi-core echo server. A pool runs an acceptor thread and worker reactors;
 * each accepted fd becomes a mio_conn on its worker. Client threads check the echo, then the
 * pool is stopped gracefully. */
#include <mio/mio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 2
#define CLIENTS 8
#define CHUNK 4096
#define ROUNDS 16

static atomic_int closed_ok, clients_ok;
static mio_addr server_addr;

/* Worker thread: echo what arrives; on the peer's FIN (len 0), flush and close. */
static void on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    if (len == 0)
        mio_conn_close(c);
    else
        mio_conn_write(c, data, len); /* whatever the socket does not take now is queued */
}

/* Worker thread, exactly once per conn; the fd is closed right after. */
static void on_close(mio_conn *c, int reason, void *arg)
{
    if (reason == 0)
        atomic_fetch_add(&closed_ok, 1);
    else
        fprintf(stderr, "conn closed: %s\n", mio_strerror(reason));
}

static const mio_conn_ops echo_ops = {.on_read = on_read, .on_close = on_close};

/* Worker thread: the pool chose this worker for the new connection; the fd is ours now. */
static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    if (mio_conn_open(worker, fd, &echo_ops, NULL, NULL) < 0)
        close(fd);
}

/* A client thread with plain blocking I/O: send a chunk, read it back, compare. */
static void *client(void *arg)
{
    int id = (int)(intptr_t)arg, fd = mio_tcp_stream_connect(&server_addr), ok = fd >= 0;
    char out[CHUNK], in[CHUNK];

    if (ok)
        mio_set_nonblocking(fd, false);
    for (int round = 0; ok && round < ROUNDS; round++) {
        size_t got = 0;
        memset(out, 'a' + (id + round) % 26, sizeof out);
        ok = mio_send(fd, out, sizeof out) == (ssize_t)sizeof out;
        while (ok && got < sizeof in) {
            ssize_t n = mio_recv(fd, in + got, sizeof in - got);
            ok = n > 0;
            got += ok ? (size_t)n : 0;
        }
        ok = ok && memcmp(in, out, sizeof in) == 0;
    }
    if (ok) {
        char c;
        mio_socket_shutdown(fd, SHUT_WR);     /* our FIN: the server closes its side */
        ok = mio_recv(fd, &c, 1) == 0;        /* and we see its FIN */
    }
    if (fd >= 0)
        close(fd);
    if (ok)
        atomic_fetch_add(&clients_ok, 1);
    return NULL;
}

int main(void)
{
    mio_pool_opts opts = {.workers = WORKERS}; /* zero-filled fields: defaults */
    mio_pool *pool;
    pthread_t threads[CLIENTS];
    mio_addr addr;
    unsigned long long accepted = 0;
    int rc;

    alarm(60); /* a tutorial program must never hang `make check` */
    mio_addr_parse("127.0.0.1:0", &addr);
    rc = mio_pool_new(&opts, &pool);
    if (rc == 0)
        rc = mio_pool_listen(pool, &addr, on_accept, NULL); /* listener 0; binds now */
    if (rc >= 0)
        rc = mio_pool_local_addr(pool, 0, &server_addr); /* the port the kernel chose */
    if (rc >= 0)
        rc = mio_pool_start(pool); /* returns once every thread runs */
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", mio_strerror(rc));
        return 1;
    }

    for (int i = 0; i < CLIENTS; i++)
        pthread_create(&threads[i], NULL, client, (void *)(intptr_t)i);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(threads[i], NULL);

    for (unsigned w = 0; w < mio_pool_workers(pool); w++) {
        mio_worker_stats st;
        if (mio_pool_stats(pool, w, &st) == 0) {
            printf("worker %u: accepted %llu, wakes performed %llu, elided %llu\n", w,
                   (unsigned long long)st.accepted, (unsigned long long)st.wakes_performed,
                   (unsigned long long)st.wakes_elided);
            accepted += st.accepted;
        }
    }

    mio_pool_stop(pool, 1000); /* close listeners, flush and close conns, join threads */
    mio_pool_free(pool);
    printf("%d/%d clients ok, %d conns closed cleanly, %llu accepted\n",
           atomic_load(&clients_ok), CLIENTS, atomic_load(&closed_ok), accepted);
    return atomic_load(&clients_ok) == CLIENTS && atomic_load(&closed_ok) == CLIENTS &&
                   accepted == CLIENTS
               ? 0
               : 1;
}
