/* Listeners the pool did not create and the pieces of a zero-downtime restart, on real sockets:
 * mio_pool_adopt (every documented misuse, from the owner thread and from a callback on a
 * worker; adopted TCP and Unix listeners served in acceptor and reuseport mode, the accepted
 * fds echoing on the workers), mio_pool_listener_fds, mio_pool_drain / mio_pool_draining (the
 * listeners stop accepting, open connections go on, a queue another holder of the socket shares
 * is not lost), and systemd's protocols: mio_sd_listen_fds (wrong pid, bad numbers, names, the
 * fds at 3.. in a child process) and mio_sd_notify. Each test checks the fd count is flat. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>
#include <cmocka.h>
#include <mio/mio.h>
#include "helpers.h"

/* ---- server side: echo, counting conns per worker ---- */

static atomic_int n_accepted, n_bad_fd, n_closed;

static void echo_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    (void)arg;
    if (len == 0)
        mio_conn_close(c);
    else
        (void)mio_conn_write(c, data, len);
}

static void echo_close(mio_conn *c, int reason, void *arg)
{
    (void)c;
    (void)reason;
    (void)arg;
    atomic_fetch_add(&n_closed, 1);
}

static const mio_conn_ops echo_ops = {echo_read, echo_close, NULL};

static void echo_accept(mio_reactor *w, int fd, const mio_addr *peer, void *arg)
{
    (void)arg;
    if (peer == NULL || !mio_test_fd_is_nb_cloexec(fd))
        atomic_fetch_add(&n_bad_fd, 1);
    atomic_fetch_add(&n_accepted, 1);
    if (mio_conn_open(w, fd, &echo_ops, NULL, NULL) < 0) {
        atomic_fetch_add(&n_bad_fd, 1);
        close(fd);
    }
}

static void reset_counts(void)
{
    atomic_store(&n_accepted, 0);
    atomic_store(&n_bad_fd, 0);
    atomic_store(&n_closed, 0);
}

/* ---- sockets made the way another program would: blocking, inheritable ---- */

/* A plain TCP listener on 127.0.0.1 (port 0), without O_NONBLOCK or FD_CLOEXEC; listening unless
 * told otherwise. */
static int plain_tcp_listener(bool listening)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
    if (listening)
        assert_int_equal(listen(fd, 128), 0);
    return fd;
}

static int plain_unix_listener(const char *path)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
    (void)unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
    assert_int_equal(listen(fd, 128), 0);
    return fd;
}

static bool fd_flags_untouched(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0;
}

/* A blocking client: connects to a, sends n bytes, reads them back, checks them. */
static void echo_once(const mio_addr *a, size_t n)
{
    char out[4096], in[4096];
    size_t got = 0;
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 10};

    assert_true(n <= sizeof(out));
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    assert_int_equal(connect(fd, &a->u.sa, a->len), 0);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(i * 7 + 3);
    assert_int_equal(send(fd, out, n, MSG_NOSIGNAL), (ssize_t)n);
    while (got < n) {
        ssize_t r = recv(fd, in + got, n - got, 0);

        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_memory_equal(in, out, n);
    close(fd);
}

static void wait_for(atomic_int *v, int want, unsigned ms)
{
    unsigned long long until = mio_test_now_ms() + ms;

    while (atomic_load(v) < want && mio_test_now_ms() < until)
        usleep(1000);
    assert_int_equal(atomic_load(v), want);
}

static mio_pool *new_pool(unsigned workers, int mode)
{
    mio_pool_opts o = {.workers = workers, .mode = mode};
    mio_pool *pool;

    assert_int_equal(mio_pool_new(&o, &pool), 0);
    return pool;
}

/* ---- misuse from the owner thread ---- */

static void test_adopt_misuse(void **state)
{
    int base = mio_test_fd_count(), p[2], fd, ufd, sp[2];
    mio_pool *pool = new_pool(2, MIO_POOL_ACCEPTOR);

    (void)state;
    assert_int_equal(mio_pool_adopt(NULL, 0, echo_accept, NULL), -EINVAL);
    fd = plain_tcp_listener(true);
    assert_int_equal(mio_pool_adopt(pool, fd, NULL, NULL), -EINVAL);
    assert_true(fd_flags_untouched(fd));
    close(fd);
    assert_int_equal(mio_pool_adopt(pool, -1, echo_accept, NULL), -EBADF);
    assert_int_equal(mio_pool_adopt(pool, fd, echo_accept, NULL), -EBADF); /* closed now */
    /* not a socket */
    assert_int_equal(pipe(p), 0);
    assert_int_equal(mio_pool_adopt(pool, p[0], echo_accept, NULL), -ENOTSOCK);
    assert_true(fd_flags_untouched(p[0]));
    close(p[0]);
    close(p[1]);
    /* a bound TCP socket that does not listen */
    fd = plain_tcp_listener(false);
    assert_int_equal(mio_pool_adopt(pool, fd, echo_accept, NULL), -EINVAL);
    assert_true(fd_flags_untouched(fd));
    close(fd);
    /* a connected stream pair: not listening either */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    assert_int_equal(mio_pool_adopt(pool, sp[0], echo_accept, NULL), -EINVAL);
    close(sp[0]);
    close(sp[1]);
    /* UDP and SEQPACKET: the pool serves byte streams only */
    ufd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(ufd >= 0);
    assert_int_equal(mio_pool_adopt(pool, ufd, echo_accept, NULL), -EPROTOTYPE);
    assert_true(fd_flags_untouched(ufd));
    close(ufd);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    assert_int_equal(mio_pool_adopt(pool, sp[0], echo_accept, NULL), -EPROTOTYPE);
    close(sp[0]);
    close(sp[1]);
    /* a stream socket of a family the pool does not serve, where the kernel has one */
    fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd >= 0) {
        assert_int_equal(mio_pool_adopt(pool, fd, echo_accept, NULL), -EAFNOSUPPORT);
        close(fd);
    }
    /* none of the failures took a listener index */
    fd = plain_tcp_listener(true);
    assert_int_equal(mio_pool_adopt(pool, fd, echo_accept, NULL), 0);
    assert_true(mio_test_fd_is_nb_cloexec(fd));
    assert_int_equal(mio_pool_start(pool), 0);
    /* after start, and after stop: -EINVAL as for mio_pool_listen; the fd stays the caller's */
    fd = plain_tcp_listener(true);
    assert_int_equal(mio_pool_adopt(pool, fd, echo_accept, NULL), -EINVAL);
    assert_true(fd_flags_untouched(fd));
    assert_int_equal(mio_pool_stop(pool, 0), 0);
    assert_int_equal(mio_pool_adopt(pool, fd, echo_accept, NULL), -EINVAL);
    close(fd);
    mio_pool_free(pool);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ---- misuse from a callback on a worker ---- */

struct from_worker {
    mio_pool *pool;
    int fd;
    atomic_int adopt, drain, stop, listen, done;
    atomic_bool draining_seen;
};

static void worker_misuse_task(mio_reactor *r, void *arg)
{
    struct from_worker *fw = arg;
    mio_addr a;

    (void)r;
    (void)mio_addr_parse("127.0.0.1:0", &a);
    atomic_store(&fw->adopt, mio_pool_adopt(fw->pool, fw->fd, echo_accept, NULL));
    atomic_store(&fw->listen, mio_pool_listen(fw->pool, &a, echo_accept, NULL));
    atomic_store(&fw->drain, mio_pool_drain(fw->pool));
    atomic_store(&fw->stop, mio_pool_stop(fw->pool, 0));
    atomic_store(&fw->done, 1);
}

static void worker_draining_task(mio_reactor *r, void *arg)
{
    struct from_worker *fw = arg;

    (void)r;
    atomic_store(&fw->draining_seen, mio_pool_draining(fw->pool));
    atomic_store(&fw->done, 2);
}

static void misuse_from_worker(int mode)
{
    int base = mio_test_fd_count();
    struct from_worker fw = {.fd = plain_tcp_listener(true)};
    mio_addr a;
    int lfd = plain_tcp_listener(true);

    reset_counts();
    fw.pool = new_pool(2, mode);
    assert_int_equal(mio_pool_adopt(fw.pool, lfd, echo_accept, NULL), 0);
    assert_int_equal(mio_pool_start(fw.pool), 0);
    assert_int_equal(mio_reactor_post(mio_pool_worker(fw.pool, 1), worker_misuse_task, &fw), 0);
    wait_for(&fw.done, 1, 10000);
    assert_int_equal(atomic_load(&fw.adopt), -EINVAL);
    assert_int_equal(atomic_load(&fw.listen), -EINVAL);
    assert_int_equal(atomic_load(&fw.drain), -EDEADLK);
    assert_int_equal(atomic_load(&fw.stop), -EDEADLK);
    assert_true(fd_flags_untouched(fw.fd));
    close(fw.fd);
    /* the pool runs on intact: it still serves */
    assert_false(mio_pool_draining(fw.pool));
    assert_int_equal(mio_socket_local_addr(lfd, &a), 0);
    echo_once(&a, 100);
    /* a worker sees the drain by the time mio_pool_drain returned */
    assert_int_equal(mio_pool_drain(fw.pool), 0);
    assert_int_equal(mio_reactor_post(mio_pool_worker(fw.pool, 0), worker_draining_task, &fw), 0);
    wait_for(&fw.done, 2, 10000);
    assert_true(atomic_load(&fw.draining_seen));
    assert_int_equal(mio_pool_stop(fw.pool, 100), 0);
    mio_pool_free(fw.pool);
    assert_int_equal(atomic_load(&n_bad_fd), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_misuse_from_worker_acceptor(void **state)
{
    (void)state;
    misuse_from_worker(MIO_POOL_ACCEPTOR);
}

static void test_misuse_from_worker_reuseport(void **state)
{
    (void)state;
    misuse_from_worker(MIO_POOL_REUSEPORT);
}

/* ---- adopted listeners serve ---- */

/* A bound listener (index 0) and two adopted ones, TCP (1) and Unix (2): clients through each get
 * their bytes back, accepted on the workers. */
static void serve_adopted(int mode)
{
    int base = mio_test_fd_count(), tfd = plain_tcp_listener(true), ufd, fds[8], n = 60;
    char path[64];
    mio_pool *pool = new_pool(2, mode);
    mio_addr bound, ta, ua;
    uint64_t accepted = 0;

    reset_counts();
    snprintf(path, sizeof(path), "/tmp/mio-test-adopt-%d.sock", (int)getpid());
    ufd = plain_unix_listener(path);
    assert_int_equal(mio_addr_parse("127.0.0.1:0", &bound), 0);
    assert_int_equal(mio_pool_listen(pool, &bound, echo_accept, NULL), 0);
    assert_int_equal(mio_pool_adopt(pool, tfd, echo_accept, NULL), 1);
    assert_int_equal(mio_pool_adopt(pool, ufd, echo_accept, NULL), 2);
    assert_true(mio_test_fd_is_nb_cloexec(tfd));
    assert_true(mio_test_fd_is_nb_cloexec(ufd));
    assert_int_equal(mio_pool_local_addr(pool, 0, &bound), 0);
    assert_int_equal(mio_pool_local_addr(pool, 1, &ta), 0);
    assert_int_equal(mio_pool_local_addr(pool, 2, &ua), 0);
    assert_int_equal(ta.u.sa.sa_family, AF_INET);
    assert_int_equal(ua.u.sa.sa_family, AF_UNIX);
    /* the sockets to hand on: one per worker for a bound reuseport listener, else one */
    assert_int_equal(mio_pool_listener_fds(pool, 0, fds, 8), mode == MIO_POOL_REUSEPORT ? 2 : 1);
    assert_int_equal(mio_pool_listener_fds(pool, 0, NULL, 0), mode == MIO_POOL_REUSEPORT ? 2 : 1);
    assert_int_equal(mio_pool_listener_fds(pool, 1, fds, 8), 1);
    assert_int_equal(fds[0], tfd);
    assert_int_equal(mio_pool_listener_fds(pool, 2, fds, 1), 1);
    assert_int_equal(fds[0], ufd);
    assert_int_equal(mio_pool_listener_fds(pool, 3, fds, 8), -EINVAL);
    assert_int_equal(mio_pool_listener_fds(pool, 0, NULL, 1), -EINVAL);
    assert_int_equal(mio_pool_start(pool), 0);
    for (int i = 0; i < n; i++) {
        echo_once(&bound, 1 + (size_t)i);
        echo_once(&ta, 1000 + (size_t)i);
        echo_once(&ua, 4000 + (size_t)i % 64);
    }
    wait_for(&n_closed, 3 * n, 10000);
    assert_int_equal(atomic_load(&n_accepted), 3 * n);
    for (unsigned w = 0; w < 2; w++) {
        mio_worker_stats st;

        assert_int_equal(mio_pool_stats(pool, w, &st), 0);
        accepted += st.accepted;
        /* acceptor mode round robin: both workers served; reuseport: the kernel decides */
        if (mode == MIO_POOL_ACCEPTOR)
            assert_true(st.accepted > 0);
    }
    assert_int_equal(accepted, (uint64_t)(3 * n));
    assert_int_equal(mio_pool_stop(pool, 1000), 0);
    assert_int_equal(mio_pool_listener_fds(pool, 1, fds, 8), 0); /* closed with the pool */
    mio_pool_free(pool);
    (void)unlink(path);
    assert_int_equal(atomic_load(&n_bad_fd), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_serve_adopted_acceptor(void **state)
{
    (void)state;
    serve_adopted(MIO_POOL_ACCEPTOR);
}

static void test_serve_adopted_reuseport(void **state)
{
    (void)state;
    serve_adopted(MIO_POOL_REUSEPORT);
}

/* ---- drain: stop accepting, keep serving, lose no queued connection ---- */

static void drain_run(int mode)
{
    int base = mio_test_fd_count(), lfd = plain_tcp_listener(true), keep, held, late, fds[4];
    mio_pool *pool = new_pool(2, mode);
    mio_addr a;
    char buf[8];
    struct timeval tv = {.tv_sec = 10};

    reset_counts();
    assert_int_equal(mio_pool_drain(NULL), -EINVAL);
    assert_int_equal(mio_pool_drain(pool), -EINVAL); /* not started */
    assert_false(mio_pool_draining(NULL));
    /* another holder of the socket: what a restarted copy of the server would be */
    keep = fcntl(lfd, F_DUPFD_CLOEXEC, 0);
    assert_true(keep >= 0);
    assert_int_equal(mio_pool_adopt(pool, lfd, echo_accept, NULL), 0);
    assert_int_equal(mio_socket_local_addr(keep, &a), 0);
    assert_int_equal(mio_pool_start(pool), 0);
    /* a connection open across the drain */
    held = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(setsockopt(held, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    assert_int_equal(connect(held, &a.u.sa, a.len), 0);
    assert_int_equal(send(held, "ab", 2, 0), 2);
    assert_int_equal(recv(held, buf, 2, MSG_WAITALL), 2);
    wait_for(&n_accepted, 1, 5000);

    assert_int_equal(mio_pool_drain(pool), 0);
    assert_true(mio_pool_draining(pool));
    assert_int_equal(mio_pool_drain(pool), 0); /* a second call */
    assert_int_equal(mio_pool_listener_fds(pool, 0, fds, 4), 0);
    /* the open connection is still served */
    assert_int_equal(send(held, "cd", 2, 0), 2);
    assert_int_equal(recv(held, buf, 2, MSG_WAITALL), 2);
    assert_memory_equal(buf, "cd", 2);
    /* a new connection queues on the socket the other holder still has: the pool no longer
     * accepts it, and it is not lost */
    late = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(late, &a.u.sa, a.len), 0);
    assert_int_equal(send(late, "x", 1, MSG_NOSIGNAL), 1);
    usleep(50000);
    assert_int_equal(atomic_load(&n_accepted), 1);
    {
        int afd = accept4(keep, NULL, NULL, SOCK_CLOEXEC);
        char c = 0;

        assert_true(afd >= 0);
        assert_int_equal(recv(afd, &c, 1, 0), 1);
        assert_int_equal(c, 'x');
        close(afd);
    }
    close(late);
    /* stop ends the held connection (orderly: the client reads EOF) */
    assert_int_equal(mio_pool_stop(pool, 1000), 0);
    assert_int_equal(recv(held, buf, 1, 0), 0);
    assert_int_equal(mio_pool_drain(pool), -EINVAL); /* stopped */
    assert_true(mio_pool_draining(pool));
    close(held);
    close(keep);
    mio_pool_free(pool);
    assert_int_equal(atomic_load(&n_bad_fd), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

static void test_drain_acceptor(void **state)
{
    (void)state;
    drain_run(MIO_POOL_ACCEPTOR);
}

static void test_drain_reuseport(void **state)
{
    (void)state;
    drain_run(MIO_POOL_REUSEPORT);
}

/* ---- mio_sd_listen_fds ---- */

static void set_env(const char *pid, const char *fds, const char *names)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid != NULL)
        setenv("LISTEN_PID", pid, 1);
    if (fds != NULL)
        setenv("LISTEN_FDS", fds, 1);
    if (names != NULL)
        setenv("LISTEN_FDNAMES", names, 1);
}

static void test_listen_fds_env(void **state)
{
    char me[32], other[32], longname[300];
    mio_listen_fd out[2];

    (void)state;
    snprintf(me, sizeof(me), "%d", (int)getpid());
    snprintf(other, sizeof(other), "%d", (int)getpid() + 1);
    set_env(NULL, NULL, NULL);
    assert_int_equal(mio_sd_listen_fds(false, out, 2), 0);
    set_env(me, NULL, NULL);
    assert_int_equal(mio_sd_listen_fds(false, out, 2), 0);
    /* meant for another process: 0, not ours to touch */
    set_env(other, "2", NULL);
    assert_int_equal(mio_sd_listen_fds(false, out, 2), 0);
    /* unset_env removes the variables whatever the result */
    assert_int_equal(mio_sd_listen_fds(true, out, 2), 0);
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDS"));
    /* malformed numbers */
    const char *bad_pid[] = {"", "abc", "-1", "+5", " 5", "5x", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_pid) / sizeof(bad_pid[0]); i++) {
        set_env(bad_pid[i], "1", NULL);
        assert_int_equal(mio_sd_listen_fds(false, out, 2), -EINVAL);
    }
    const char *bad_count[] = {"", "x", "-1", "1x", " 1", "2147483645", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_count) / sizeof(bad_count[0]); i++) {
        set_env(me, bad_count[i], NULL);
        assert_int_equal(mio_sd_listen_fds(false, out, 2), -EINVAL);
    }
    set_env(me, "0", NULL);
    assert_int_equal(mio_sd_listen_fds(false, out, 2), 0);
    /* one name per fd, or -EINVAL */
    set_env(me, "2", "a");
    assert_int_equal(mio_sd_listen_fds(false, out, 2), -EINVAL);
    set_env(me, "1", "a:b");
    assert_int_equal(mio_sd_listen_fds(false, out, 2), -EINVAL);
    assert_int_equal(mio_sd_listen_fds(false, NULL, 1), -EINVAL);
    memset(longname, 'n', 256);
    longname[256] = '\0';
    set_env(me, "1", longname);
    /* fd 3 is open in a test binary (or -EBADF first): either error, never a success */
    {
        int r = mio_sd_listen_fds(true, out, 2);

        assert_true(r == -ENAMETOOLONG || r == -EBADF);
    }
    assert_null(getenv("LISTEN_FDNAMES"));
}

/* In a child, where fds 3 and 4 can be made what a service manager would pass: two listening
 * sockets (blocking, inheritable), named. The child checks, adopts them into a pool, serves one
 * echo through each and exits 0; any failure is a distinct exit status. */
static int child_listen_fds(int a, int b)
{
    mio_listen_fd out[3];
    char me[32];
    mio_pool *pool;
    mio_addr addr;
    int n;

    /* Moved out of the way first: a or b may be 3 or 4 already. */
    a = fcntl(a, F_DUPFD, 10);
    b = fcntl(b, F_DUPFD, 10);
    if (a < 0 || b < 0 || dup2(a, 3) != 3 || dup2(b, 4) != 4)
        return 10;
    close(a);
    close(b);
    snprintf(me, sizeof(me), "%d", (int)getpid());
    set_env(me, "2", "web:admin");
    n = mio_sd_listen_fds(false, out, 1); /* fewer slots than fds: the count still says 2 */
    if (n != 2 || out[0].fd != 3 || strcmp(out[0].name, "web") != 0)
        return 11;
    if (getenv("LISTEN_FDS") == NULL)
        return 12;
    n = mio_sd_listen_fds(true, out, 3);
    if (n != 2 || out[1].fd != 4 || strcmp(out[1].name, "admin") != 0)
        return 13;
    if (getenv("LISTEN_PID") != NULL || getenv("LISTEN_FDS") != NULL ||
        getenv("LISTEN_FDNAMES") != NULL)
        return 14;
    if (!(fcntl(3, F_GETFD) & FD_CLOEXEC) || !(fcntl(4, F_GETFD) & FD_CLOEXEC))
        return 15;
    /* without names: "unknown" */
    set_env(me, "2", NULL);
    if (mio_sd_listen_fds(true, out, 2) != 2 || strcmp(out[1].name, "unknown") != 0)
        return 16;
    /* an fd that is not open */
    set_env(me, "3", NULL);
    if (fcntl(5, F_GETFD) == -1 && mio_sd_listen_fds(true, out, 3) != -EBADF)
        return 17;
    if (mio_pool_new(&(mio_pool_opts){.workers = 2}, &pool) != 0)
        return 18;
    for (int i = 0; i < 2; i++)
        if (mio_pool_adopt(pool, out[i].fd, echo_accept, NULL) != i)
            return 19;
    if (mio_pool_start(pool) != 0)
        return 20;
    for (unsigned l = 0; l < 2; l++) {
        char c = 0;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (mio_pool_local_addr(pool, l, &addr) != 0 || connect(fd, &addr.u.sa, addr.len) != 0 ||
            send(fd, "z", 1, 0) != 1 || recv(fd, &c, 1, 0) != 1 || c != 'z')
            return 21;
        close(fd);
    }
    mio_pool_free(pool);
    return 0;
}

static void test_listen_fds_child(void **state)
{
    int base = mio_test_fd_count(), a = plain_tcp_listener(true), b = plain_tcp_listener(true),
        status;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_listen_fds(a, b));
    close(a);
    close(b);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(mio_test_fd_count(), base);
}

/* ---- mio_sd_notify ---- */

static void test_notify(void **state)
{
    int base = mio_test_fd_count(), fd;
    char name[108], buf[64];
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    socklen_t len;
    ssize_t n;

    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(mio_sd_notify("READY=1"), 0);
    assert_int_equal(mio_sd_notify(NULL), -EINVAL);
    assert_int_equal(mio_sd_notify(""), -EINVAL);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(mio_sd_notify("READY=1"), -EINVAL);
    /* an abstract name, as systemd's own */
    snprintf(name, sizeof(name), "@mio-test-notify-%d", (int)getpid());
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    memcpy(un.sun_path + 1, name + 1, strlen(name) - 1);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(mio_sd_notify("READY=1"), -ECONNREFUSED); /* nobody bound it yet */
    assert_int_equal(bind(fd, (struct sockaddr *)&un, len), 0);
    assert_int_equal(mio_sd_notify("READY=1\nMAINPID=42"), 1);
    n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    assert_int_equal(n, 18);
    assert_memory_equal(buf, "READY=1\nMAINPID=42", 18);
    close(fd);
    /* a path name */
    snprintf(name, sizeof(name), "/tmp/mio-test-notify-%d", (int)getpid());
    (void)unlink(name);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, name);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(mio_sd_notify("STOPPING=1"), 1);
    n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "STOPPING=1", 10);
    close(fd);
    (void)unlink(name);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(mio_test_fd_count(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adopt_misuse),
        cmocka_unit_test(test_misuse_from_worker_acceptor),
        cmocka_unit_test(test_misuse_from_worker_reuseport),
        cmocka_unit_test(test_serve_adopted_acceptor),
        cmocka_unit_test(test_serve_adopted_reuseport),
        cmocka_unit_test(test_drain_acceptor),
        cmocka_unit_test(test_drain_reuseport),
        cmocka_unit_test(test_listen_fds_env),
        cmocka_unit_test(test_listen_fds_child),
        cmocka_unit_test(test_notify),
    };

    mio_test_watchdog(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
