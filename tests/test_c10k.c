/* c10k: a pool with 2 workers holds 10,000 concurrent echo connections (mio_conn), every byte
 * verified. The clients live in a forked child so that each process needs ~10,000 fds rather than
 * 20,000 in one (RLIMIT_NOFILE is raised to the hard limit in both; skip 77 when it cannot reach
 * what one side needs). Sources spread over 127.0.0.1..4 so ephemeral ports never run short.
 * While the child holds every connection, the parent checks the workers' active counts add up to
 * all of them, with both workers carrying a share. 2,000 under ThreadSanitizer (C10K_CONNS) to keep
 * that build's run short. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <mio/mio.h>

#include "helpers.h"

#ifndef C10K_CONNS
#if defined(__SANITIZE_THREAD__)
#define C10K_CONNS 2000
#else
#define C10K_CONNS 10000
#endif
#endif
#define MSG 64
#define SOURCES 4

static void die(const char *what, int err)
{
    fprintf(stderr, "c10k: %s: %s\n", what, mio_strerror(err));
    exit(1);
}

static int raise_nofile(rlim_t need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    return rl.rlim_cur >= need ? 0 : -1;
}

/* ---- server side (parent): echo conns on a 2-worker pool ---- */

static void e_on_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
    else if (mio_conn_write(c, data, len) < 0)
        fprintf(stderr, "c10k: server write failed\n");
}

static void e_on_close(mio_conn *c, int reason, void *arg)
{
    (void)c, (void)arg;
    if (reason != 0)
        fprintf(stderr, "c10k: server conn closed: %s\n", mio_strerror(reason));
}

static const mio_conn_ops e_ops = {e_on_read, e_on_close, NULL};

static void on_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    (void)peer, (void)arg;
    if (mio_conn_open(w, fd, &e_ops, NULL, NULL) < 0) {
        fprintf(stderr, "c10k: conn open failed\n");
        close(fd);
    }
}

/* ---- client side (child) ---- */

static void fill(unsigned char *b, unsigned i, unsigned round)
{
    for (unsigned k = 0; k < MSG; k++)
        b[k] = (unsigned char)(i * 131u + k * 7u + round * 17u + (i >> 8));
}

/* Sends one message on every connection and reads all of them back, verified. */
static void echo_round(const int *fds, mio_poll *poll, mio_events *ev, unsigned round)
{
    static unsigned char got[C10K_CONNS][MSG];
    static unsigned short have[C10K_CONNS];
    unsigned done = 0;
    unsigned long long until = mio_test_now_ms() + 120000;
    unsigned char want[MSG];

    memset(have, 0, sizeof have);
    for (unsigned i = 0; i < C10K_CONNS; i++) {
        fill(want, i, round);
        if (mio_send(fds[i], want, MSG) != MSG)
            die("send", -EIO);
    }
    while (done < C10K_CONNS) {
        int n = mio_poll_poll(poll, ev, 1000);

        if (n < 0 && n != -EINTR)
            die("poll", n);
        if (mio_test_now_ms() > until) {
            fprintf(stderr, "c10k: round %u: only %u of %u echoed in time\n", round, done,
                    C10K_CONNS);
            exit(1);
        }
        MIO_EVENTS_FOREACH(const mio_event *e, ev)
        {
            unsigned i = (unsigned)mio_event_token(e);

            for (;;) {
                ssize_t k;

                if (have[i] == MSG)
                    break;
                k = mio_recv(fds[i], got[i] + have[i], MSG - have[i]);
                if (k == -EAGAIN)
                    break;
                if (k <= 0)
                    die("recv (connection lost)", k == 0 ? -ECONNRESET : (int)k);
                have[i] = (unsigned short)(have[i] + k);
                if (have[i] == MSG) {
                    fill(want, i, round);
                    if (memcmp(got[i], want, MSG) != 0)
                        die("echo corrupted", -EPROTO);
                    done++;
                }
            }
        }
    }
}

static int client(const mio_addr *server, int ready_w, int go_r)
{
    static int fds[C10K_CONNS];
    mio_poll *poll;
    mio_events *ev;
    char c = 'r';

    if (mio_poll_new(&poll) < 0 || mio_events_new(1024, &ev) < 0)
        die("poll", -ENOMEM);
    for (unsigned i = 0; i < C10K_CONNS; i++) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err;

        if (fd < 0)
            die("socket", -errno);
        src.sin_addr.s_addr = htonl(0x7f000001u + i % SOURCES);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
            die("bind source", -errno);
        /* blocking connect: the handshake completes in the kernel; the acceptor keeps up */
        if (connect(fd, &server->u.sa, server->len) != 0)
            die("connect", -errno);
        if ((err = mio_set_nonblocking(fd, true)) < 0)
            die("nonblocking", err);
        if ((err = mio_registry_register(mio_poll_registry(poll), fd, i, MIO_READABLE)) < 0)
            die("register", err);
        fds[i] = fd;
    }
    echo_round(fds, poll, ev, 1);
    /* every connection is up and verified: let the parent count them, then go again */
    if (write(ready_w, &c, 1) != 1 || read(go_r, &c, 1) != 1)
        die("sync", -EPIPE);
    echo_round(fds, poll, ev, 2);
    for (unsigned i = 0; i < C10K_CONNS; i++)
        close(fds[i]);
    mio_events_free(ev);
    mio_poll_free(poll);
    return 0;
}

int main(void)
{
    mio_pool_opts o = {.workers = 2, .backlog = 4096};
    mio_pool *pool;
    mio_addr a;
    int ready[2], go[2], status, err, fd_base;
    uint64_t active = 0, per[2];
    pid_t pid;
    char c;

    mio_test_watchdog(280);
    signal(SIGPIPE, SIG_IGN);
    if (raise_nofile(C10K_CONNS + 200) != 0) {
        fprintf(stderr, "c10k: RLIMIT_NOFILE hard limit below %d: skipped\n", C10K_CONNS + 200);
        return 77;
    }
    fd_base = mio_test_fd_count();
    if ((err = mio_pool_new(&o, &pool)) < 0)
        die("pool_new", err);
    if ((err = mio_addr_parse("127.0.0.1:0", &a)) < 0 ||
        (err = mio_pool_listen(pool, &a, on_accept, NULL)) < 0 ||
        (err = mio_pool_local_addr(pool, 0, &a)) < 0 || (err = mio_pool_start(pool)) < 0)
        die("pool", err);
    if (pipe(ready) != 0 || pipe(go) != 0)
        die("pipe", -errno);
    pid = fork();
    if (pid < 0)
        die("fork", -errno);
    if (pid == 0) {
        /* the child uses only its own sockets; the pool's threads do not exist here */
        close(ready[0]);
        close(go[1]);
        _exit(client(&a, ready[1], go[0]));
    }
    close(ready[1]);
    close(go[0]);
    if (read(ready[0], &c, 1) != 1) {
        waitpid(pid, &status, 0);
        fprintf(stderr, "c10k: client failed before all connections were up\n");
        return 1;
    }
    for (unsigned i = 0; i < 2; i++) {
        mio_worker_stats st;

        if (mio_pool_stats(pool, i, &st) < 0)
            die("stats", -EINVAL);
        per[i] = st.active;
        active += st.active;
    }
    printf("c10k: %llu connections held (worker 0: %llu, worker 1: %llu)\n",
           (unsigned long long)active, (unsigned long long)per[0], (unsigned long long)per[1]);
    if (write(go[1], "g", 1) != 1)
        die("sync", -EPIPE);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "c10k: client failed\n");
        return 1;
    }
    if ((err = mio_pool_stop(pool, 5000)) < 0)
        die("stop", err);
    mio_pool_free(pool);
    close(ready[0]);
    close(go[1]);
    if (active != C10K_CONNS || per[0] == 0 || per[1] == 0) {
        fprintf(stderr, "c10k: expected %d connections on both workers\n", C10K_CONNS);
        return 1;
    }
    if (mio_test_fd_count() != fd_base) {
        fprintf(stderr, "c10k: fd leak: %d open, %d before\n", mio_test_fd_count(), fd_base);
        return 1;
    }
    printf("c10k: %d connections x 2 rounds x %d bytes verified\n", C10K_CONNS, MSG);
    return 0;
}
