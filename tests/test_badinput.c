/* Bad input, table-driven: every public function that takes a handle, an fd, a capacity or a
 * timeout is called with NULL, a closed fd, -1, a non-socket fd (a pipe, /dev/null), capacity 0,
 * timeouts below -1, unknown option values. Each call runs in a forked child, so a crash is
 * reported as that row's failure and the table goes on; the row passes when the result is one of
 * the -errno values the headers define for it (or the documented value for accessors).
 * Not covered on purpose: mio_event_* accessors and mio_reactor_now_ms take pointers the library
 * handed out and are documented without a NULL case (hot path, no check). */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <mio/mio.h>

#include "helpers.h"

static int closed_fd, pipe_fd, devnull_fd, tcp_fd, udp_fd;
static mio_poll *poll_;
static mio_registry *reg;
static mio_events *events;
static mio_reactor *r;
static mio_pool *pool, *pool_nolisten;
static mio_addr addr4, out_addr;
static char buf[64];
static struct iovec iov = {.iov_base = buf, .iov_len = 1};

static void io_fn(mio_reactor *rr, mio_token t, const mio_event *ev, void *arg)
{
    (void)rr, (void)t, (void)ev, (void)arg;
}
static void task_fn(mio_reactor *rr, void *arg)
{
    (void)rr, (void)arg;
}
static void timer_fn(mio_reactor *rr, mio_timer_id id, void *arg)
{
    (void)rr, (void)id, (void)arg;
}
static void on_read(mio_conn *c, const void *d, size_t n, void *arg)
{
    (void)c, (void)d, (void)n, (void)arg;
}
static void accept_fn(mio_reactor *w, int fd, const mio_addr *p, void *arg)
{
    (void)w, (void)p, (void)arg;
    close(fd);
}
static const mio_conn_ops ops_ok = {on_read, NULL, NULL}, ops_noread = {NULL, NULL, NULL};

#define E(x) (-(x))
/* Each row: a name, an expression evaluated in the child, and up to 3 accepted results. */
#define ROWS(X) \
    X(poll_new_null, mio_poll_new(NULL), E(EINVAL), 0, 0) \
    X(poll_poll_null, mio_poll_poll(NULL, events, 0), E(EINVAL), 0, 0) \
    X(poll_poll_null_events, mio_poll_poll(poll_, NULL, 0), E(EINVAL), 0, 0) \
    X(poll_poll_timeout_m2, mio_poll_poll(poll_, events, -2), E(EINVAL), 0, 0) \
    X(poll_poll_timeout_min, mio_poll_poll(poll_, events, INT_MIN), E(EINVAL), 0, 0) \
    X(poll_fd_null, mio_poll_fd(NULL), E(EINVAL), 0, 0) \
    X(poll_registry_null, (long)(mio_poll_registry(NULL) != NULL), 0, 0, 0) \
    X(registry_fd_null, mio_registry_fd(NULL), E(EINVAL), 0, 0) \
    X(register_null, mio_registry_register(NULL, tcp_fd, 1, MIO_READABLE), E(EINVAL), 0, 0) \
    X(register_closed, mio_registry_register(reg, closed_fd, 1, MIO_READABLE), E(EBADF), 0, 0) \
    X(register_minus1, mio_registry_register(reg, -1, 1, MIO_READABLE), E(EBADF), 0, 0) \
    X(register_devnull, mio_registry_register(reg, devnull_fd, 1, MIO_READABLE), E(EPERM), 0, 0) \
    X(register_interest0, mio_registry_register(reg, tcp_fd, 1, 0), E(EINVAL), 0, 0) \
    X(register_interest_bad, mio_registry_register(reg, tcp_fd, 1, 0x80), E(EINVAL), 0, 0) \
    X(reregister_unknown, mio_registry_reregister(reg, pipe_fd, 1, MIO_READABLE), E(ENOENT), 0, 0) \
    X(reregister_closed, mio_registry_reregister(reg, closed_fd, 1, MIO_READABLE), E(EBADF), 0, 0) \
    X(deregister_null, mio_registry_deregister(NULL, tcp_fd), E(EINVAL), 0, 0) \
    X(deregister_closed, mio_registry_deregister(reg, closed_fd), E(EBADF), 0, 0) \
    X(deregister_unknown, mio_registry_deregister(reg, pipe_fd), E(ENOENT), 0, 0) \
    X(clone_null, mio_registry_try_clone(NULL, &(mio_registry *){0}), E(EINVAL), 0, 0) \
    X(clone_null_out, mio_registry_try_clone(reg, NULL), E(EINVAL), 0, 0) \
    X(registry_free_null, (mio_registry_free(NULL), 0), 0, 0, 0) \
    X(registry_free_own, (mio_registry_free(reg), mio_registry_fd(reg) >= 0 ? 0 : 1), 0, 0, 0) \
    X(events_new_cap0, mio_events_new(0, &(mio_events *){0}), E(EINVAL), 0, 0) \
    X(events_new_huge, mio_events_new((size_t)1 << 40, &(mio_events *){0}), E(EINVAL), E(ENOMEM), 0) \
    X(events_new_null, mio_events_new(8, NULL), E(EINVAL), 0, 0) \
    X(events_accessors_null, (long)(mio_events_len(NULL) + mio_events_capacity(NULL) + \
        !mio_events_is_empty(NULL) + (mio_events_get(NULL, 0) != NULL)), 0, 0, 0) \
    X(events_get_oob, (long)(mio_events_get(events, 1000) != NULL), 0, 0, 0) \
    X(events_free_null, (mio_events_free(NULL), mio_events_clear(NULL), 0), 0, 0, 0) \
    X(event_format_null, (long)(mio_event_format(NULL, buf, sizeof buf) < 0), 0, 0, 0) \
    X(interest_format_null_buf, (long)(mio_interest_format(MIO_READABLE, NULL, 0) <= 0), 0, 0, 0) \
    X(strerror_int_min, (long)(mio_strerror(INT_MIN) == NULL), 0, 0, 0) \
    X(waker_new_null, mio_waker_new(NULL, 1, &(mio_waker *){0}), E(EINVAL), 0, 0) \
    X(waker_new_null_out, mio_waker_new(reg, 1, NULL), E(EINVAL), 0, 0) \
    X(waker_wake_null, mio_waker_wake(NULL), E(EINVAL), 0, 0) \
    X(waker_free_null, (mio_waker_free(NULL), 0), 0, 0, 0) \
    X(addr_parse_null, mio_addr_parse(NULL, &out_addr), E(EINVAL), 0, 0) \
    X(addr_parse_null_out, mio_addr_parse("127.0.0.1:1", NULL), E(EINVAL), 0, 0) \
    X(addr_parse_empty, mio_addr_parse("", &out_addr), E(EINVAL), 0, 0) \
    X(addr_format_null, mio_addr_format(NULL, buf, sizeof buf), E(EINVAL), 0, 0) \
    X(tcp_bind_null, mio_tcp_listener_bind(NULL), E(EINVAL), 0, 0) \
    X(tcp_accept_closed, mio_tcp_listener_accept(closed_fd, NULL), E(EBADF), 0, 0) \
    X(tcp_accept_minus1, mio_tcp_listener_accept(-1, NULL), E(EBADF), 0, 0) \
    X(tcp_accept_pipe, mio_tcp_listener_accept(pipe_fd, &out_addr), E(ENOTSOCK), 0, 0) \
    X(tcp_accept_not_listening, mio_tcp_listener_accept(udp_fd, NULL), E(EOPNOTSUPP), E(EINVAL), 0) \
    X(tcp_connect_null, mio_tcp_stream_connect(NULL), E(EINVAL), 0, 0) \
    X(nodelay_set_closed, mio_tcp_set_nodelay(closed_fd, true), E(EBADF), 0, 0) \
    X(nodelay_pipe, mio_tcp_nodelay(pipe_fd), E(ENOTSOCK), 0, 0) \
    X(ttl_set_pipe, mio_socket_set_ttl(pipe_fd, 5), E(ENOTSOCK), 0, 0) \
    X(ttl_set_too_big, mio_socket_set_ttl(tcp_fd, 256), E(EINVAL), 0, 0) \
    X(ttl_closed, mio_socket_ttl(closed_fd), E(EBADF), 0, 0) \
    X(take_error_closed, mio_socket_take_error(closed_fd), E(EBADF), 0, 0) \
    X(take_error_pipe, mio_socket_take_error(pipe_fd), E(ENOTSOCK), 0, 0) \
    X(local_addr_null, mio_socket_local_addr(tcp_fd, NULL), E(EINVAL), 0, 0) \
    X(local_addr_closed, mio_socket_local_addr(closed_fd, &out_addr), E(EBADF), 0, 0) \
    X(peer_addr_pipe, mio_socket_peer_addr(pipe_fd, &out_addr), E(ENOTSOCK), 0, 0) \
    X(peer_addr_unconnected, mio_socket_peer_addr(tcp_fd, &out_addr), E(ENOTCONN), 0, 0) \
    X(shutdown_closed, mio_socket_shutdown(closed_fd, SHUT_WR), E(EBADF), 0, 0) \
    X(shutdown_bad_how, mio_socket_shutdown(tcp_fd, 99), E(EINVAL), 0, 0) \
    X(send_closed, mio_send(closed_fd, buf, 1), E(EBADF), 0, 0) \
    X(send_minus1, mio_send(-1, buf, 1), E(EBADF), 0, 0) \
    X(sendv_negative_cnt, mio_sendv(tcp_fd, &iov, -1), E(EINVAL), 0, 0) \
    X(sendv_closed, mio_sendv(closed_fd, &iov, 1), E(EBADF), 0, 0) \
    X(send_unconnected, mio_send(tcp_fd, buf, 1), E(EPIPE), E(ENOTCONN), 0) \
    X(recv_closed, mio_recv(closed_fd, buf, 1), E(EBADF), 0, 0) \
    X(recvv_negative_cnt, mio_recvv(tcp_fd, &iov, -1), E(EINVAL), 0, 0) \
    X(recv_devnull_eof, mio_recv(devnull_fd, buf, 1), 0, 0, 0) \
    X(peek_pipe, mio_peek(pipe_fd, buf, 1), E(ENOTSOCK), 0, 0) \
    X(udp_bind_null, mio_udp_bind(NULL), E(EINVAL), 0, 0) \
    X(udp_connect_null, mio_udp_connect(udp_fd, NULL), E(EINVAL), 0, 0) \
    X(udp_connect_closed, mio_udp_connect(closed_fd, &addr4), E(EBADF), 0, 0) \
    X(udp_send_to_null, mio_udp_send_to(udp_fd, buf, 1, NULL), E(EINVAL), 0, 0) \
    X(udp_send_to_closed, mio_udp_send_to(closed_fd, buf, 1, &addr4), E(EBADF), 0, 0) \
    X(udp_recv_from_closed, mio_udp_recv_from(closed_fd, buf, 1, NULL), E(EBADF), 0, 0) \
    X(udp_peek_from_pipe, mio_udp_peek_from(pipe_fd, buf, 1, &out_addr), E(ENOTSOCK), 0, 0) \
    X(udp_broadcast_closed, mio_udp_broadcast(closed_fd), E(EBADF), 0, 0) \
    X(udp_mcast_ttl_big, mio_udp_set_multicast_ttl_v4(udp_fd, 1000), E(EINVAL), 0, 0) \
    X(udp_join_v4_null, mio_udp_join_multicast_v4(udp_fd, NULL, NULL), E(EINVAL), 0, 0) \
    X(udp_leave_v6_null, mio_udp_leave_multicast_v6(udp_fd, NULL, 0), E(EINVAL), 0, 0) \
    X(udp_only_v6_pipe, mio_udp_only_v6(pipe_fd), E(ENOTSOCK), 0, 0) \
    X(unix_bind_null, mio_unix_listener_bind(NULL), E(EINVAL), 0, 0) \
    X(unix_bind_inet, mio_unix_listener_bind(&addr4), E(EAFNOSUPPORT), 0, 0) \
    X(unix_accept_closed, mio_unix_listener_accept(closed_fd, NULL), E(EBADF), 0, 0) \
    X(unix_connect_null, mio_unix_stream_connect(NULL), E(EINVAL), 0, 0) \
    X(unix_stream_pair_null, mio_unix_stream_pair(NULL), E(EINVAL), 0, 0) \
    X(unix_dgram_pair_null, mio_unix_datagram_pair(NULL), E(EINVAL), 0, 0) \
    X(unix_dgram_bind_null, mio_unix_datagram_bind(NULL), E(EINVAL), 0, 0) \
    X(unix_dgram_connect_null, mio_unix_datagram_connect(udp_fd, NULL), E(EINVAL), 0, 0) \
    X(pipe_new_null, mio_pipe_new(NULL), E(EINVAL), 0, 0) \
    X(set_nonblocking_closed, mio_set_nonblocking(closed_fd, true), E(EBADF), 0, 0) \
    X(reactor_new_null, mio_reactor_new(NULL, NULL), E(EINVAL), 0, 0) \
    X(reactor_new_bad_arena, mio_reactor_new(&(mio_reactor_opts){.use_arena = 5}, &(mio_reactor *){0}), E(EINVAL), 0, 0) \
    X(reactor_new_big_events, mio_reactor_new(&(mio_reactor_opts){.events_capacity = 1u << 25}, &(mio_reactor *){0}), E(EINVAL), 0, 0) \
    X(reactor_free_null, (mio_reactor_free(NULL), 0), 0, 0, 0) \
    X(reactor_add_null, mio_reactor_add(NULL, tcp_fd, MIO_READABLE, io_fn, NULL, NULL), E(EINVAL), 0, 0) \
    X(reactor_add_closed, mio_reactor_add(r, closed_fd, MIO_READABLE, io_fn, NULL, NULL), E(EBADF), 0, 0) \
    X(reactor_add_minus1, mio_reactor_add(r, -1, MIO_READABLE, io_fn, NULL, NULL), E(EBADF), 0, 0) \
    X(reactor_add_devnull, mio_reactor_add(r, devnull_fd, MIO_READABLE, io_fn, NULL, NULL), E(EPERM), 0, 0) \
    X(reactor_add_interest0, mio_reactor_add(r, tcp_fd, 0, io_fn, NULL, NULL), E(EINVAL), 0, 0) \
    X(reactor_add_interest_bad, mio_reactor_add(r, tcp_fd, 0x40, io_fn, NULL, NULL), E(EINVAL), 0, 0) \
    X(reactor_add_null_fn, mio_reactor_add(r, tcp_fd, MIO_READABLE, NULL, NULL, NULL), E(EINVAL), 0, 0) \
    X(reactor_modify_unknown, mio_reactor_modify(r, 12345, MIO_READABLE), E(ENOENT), 0, 0) \
    X(reactor_modify_null, mio_reactor_modify(NULL, 1, MIO_READABLE), E(EINVAL), 0, 0) \
    X(reactor_remove_zero, mio_reactor_remove(r, 0), E(ENOENT), 0, 0) \
    X(reactor_remove_huge, mio_reactor_remove(r, UINT64_MAX), E(ENOENT), 0, 0) \
    X(reactor_remove_null, mio_reactor_remove(NULL, 1), E(EINVAL), 0, 0) \
    X(reactor_run_null, mio_reactor_run(NULL), E(EINVAL), 0, 0) \
    X(reactor_run_once_null, mio_reactor_run_once(NULL, 0), E(EINVAL), 0, 0) \
    X(reactor_run_once_m2, mio_reactor_run_once(r, -2), E(EINVAL), 0, 0) \
    X(reactor_run_once_min, mio_reactor_run_once(r, INT_MIN), E(EINVAL), 0, 0) \
    X(reactor_stop_null, mio_reactor_stop(NULL), E(EINVAL), 0, 0) \
    X(reactor_post_null, mio_reactor_post(NULL, task_fn, NULL), E(EINVAL), 0, 0) \
    X(reactor_post_null_fn, mio_reactor_post(r, NULL, NULL), E(EINVAL), 0, 0) \
    X(timer_start_null, mio_reactor_timer_start(NULL, 1, 0, timer_fn, NULL, NULL), E(EINVAL), 0, 0) \
    X(timer_start_null_fn, mio_reactor_timer_start(r, 1, 0, NULL, NULL, NULL), E(EINVAL), 0, 0) \
    X(timer_cancel_unknown, mio_reactor_timer_cancel(r, 999999), E(ENOENT), 0, 0) \
    X(timer_cancel_zero, mio_reactor_timer_cancel(r, 0), E(ENOENT), 0, 0) \
    X(timer_cancel_null, mio_reactor_timer_cancel(NULL, 1), E(EINVAL), 0, 0) \
    X(reactor_stats_null, mio_reactor_stats(NULL, &(struct mio_reactor_stats){0}), E(EINVAL), 0, 0) \
    X(reactor_stats_null_out, mio_reactor_stats(r, NULL), E(EINVAL), 0, 0) \
    X(conn_open_null, mio_conn_open(NULL, tcp_fd, &ops_ok, NULL, NULL), E(EINVAL), 0, 0) \
    X(conn_open_closed, mio_conn_open(r, closed_fd, &ops_ok, NULL, NULL), E(EBADF), 0, 0) \
    X(conn_open_minus1, mio_conn_open(r, -1, &ops_ok, NULL, NULL), E(EINVAL), E(EBADF), 0) \
    X(conn_open_devnull, mio_conn_open(r, devnull_fd, &ops_ok, NULL, NULL), E(EPERM), 0, 0) \
    X(conn_open_null_ops, mio_conn_open(r, tcp_fd, NULL, NULL, NULL), E(EINVAL), 0, 0) \
    X(conn_open_no_on_read, mio_conn_open(r, tcp_fd, &ops_noread, NULL, NULL), E(EINVAL), 0, 0) \
    X(conn_write_null, mio_conn_write(NULL, buf, 1), E(EINVAL), 0, 0) \
    X(conn_writev_null, mio_conn_writev(NULL, &iov, 1), E(EINVAL), 0, 0) \
    X(conn_shutdown_null, mio_conn_shutdown(NULL), E(EINVAL), 0, 0) \
    X(conn_close_null, (mio_conn_close(NULL), 0), 0, 0, 0) \
    X(conn_pending_null, (long)mio_conn_pending(NULL), 0, 0, 0) \
    X(conn_watermarks_null, mio_conn_set_watermarks(NULL, 1, 2), E(EINVAL), 0, 0) \
    X(conn_idle_null, mio_conn_set_idle_timeout(NULL, 5), E(EINVAL), 0, 0) \
    X(conn_fd_null, mio_conn_fd(NULL), E(EINVAL), 0, 0) \
    X(conn_reactor_null, (long)(mio_conn_reactor(NULL) != NULL), 0, 0, 0) \
    X(pool_new_null, mio_pool_new(NULL, NULL), E(EINVAL), 0, 0) \
    X(pool_new_bad_mode, mio_pool_new(&(mio_pool_opts){.mode = 7}, &(mio_pool *){0}), E(EINVAL), 0, 0) \
    X(pool_new_bad_balance, mio_pool_new(&(mio_pool_opts){.balance = -1}, &(mio_pool *){0}), E(EINVAL), 0, 0) \
    X(pool_new_bad_backlog, mio_pool_new(&(mio_pool_opts){.backlog = -5}, &(mio_pool *){0}), E(EINVAL), 0, 0) \
    X(pool_listen_null, mio_pool_listen(NULL, &addr4, accept_fn, NULL), E(EINVAL), 0, 0) \
    X(pool_listen_null_addr, mio_pool_listen(pool, NULL, accept_fn, NULL), E(EINVAL), 0, 0) \
    X(pool_listen_null_fn, mio_pool_listen(pool, &addr4, NULL, NULL), E(EINVAL), 0, 0) \
    X(pool_local_addr_null, mio_pool_local_addr(NULL, 0, &out_addr), E(EINVAL), 0, 0) \
    X(pool_local_addr_bad_index, mio_pool_local_addr(pool, 7, &out_addr), E(EINVAL), 0, 0) \
    X(pool_start_null, mio_pool_start(NULL), E(EINVAL), 0, 0) \
    X(pool_start_no_listener, mio_pool_start(pool_nolisten), E(EINVAL), 0, 0) \
    X(pool_stop_null, mio_pool_stop(NULL, 0), E(EINVAL), 0, 0) \
    X(pool_stop_negative_drain_not_started, mio_pool_stop(pool, -5), 0, 0, 0) \
    X(pool_free_null, (mio_pool_free(NULL), 0), 0, 0, 0) \
    X(pool_workers_null, (long)mio_pool_workers(NULL), 0, 0, 0) \
    X(pool_worker_null, (long)(mio_pool_worker(NULL, 0) != NULL), 0, 0, 0) \
    X(pool_worker_bad_index, (long)(mio_pool_worker(pool, 99) != NULL), 0, 0, 0) \
    X(pool_stats_null, mio_pool_stats(NULL, 0, &(mio_worker_stats){0}), E(EINVAL), 0, 0) \
    X(pool_stats_bad_index, mio_pool_stats(pool, 99, &(mio_worker_stats){0}), E(EINVAL), 0, 0) \
    X(pool_stats_null_out, mio_pool_stats(pool, 0, NULL), E(EINVAL), 0, 0)

#define FN(name, expr, a, b, c) static long row_##name(void) { return (long)(expr); }
ROWS(FN)
#undef FN

struct row {
    const char *name;
    long (*fn)(void);
    long ok[3];
};

#define ROW(name, expr, a, b, c) {#name, row_##name, {a, b, c}},
static const struct row rows[] = {ROWS(ROW)};
#undef ROW

int main(void)
{
    int failed = 0, n = (int)(sizeof rows / sizeof rows[0]);

    mio_test_watchdog(120);
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would be a bug: let it kill the row */
    /* a number no fd uses, checked, far from where new fds are numbered */
    closed_fd = 900;
    if (fcntl(closed_fd, F_GETFD) != -1)
        return 99;
    devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    {
        int p[2];

        if (mio_pipe_new(p) < 0)
            return 99;
        pipe_fd = p[0];
    }
    tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (mio_addr_parse("127.0.0.1:9", &addr4) < 0 || mio_poll_new(&poll_) < 0 ||
        mio_events_new(8, &events) < 0 || mio_reactor_new(NULL, &r) < 0 ||
        mio_pool_new(&(mio_pool_opts){.workers = 1}, &pool) < 0 ||
        mio_pool_new(&(mio_pool_opts){.workers = 1}, &pool_nolisten) < 0)
        return 99;
    reg = mio_poll_registry(poll_);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        int st;

        if (pid == 0) {
            long v = rows[i].fn();

            for (int k = 0; k < 3; k++)
                if (v == rows[i].ok[k])
                    _exit(0);
            fprintf(stderr, "badinput: %s returned %ld (%s)\n", rows[i].name, v,
                    v < 0 && v > INT_MIN ? mio_strerror((int)v) : "-");
            _exit(1);
        }
        if (pid < 0 || waitpid(pid, &st, 0) != pid) {
            perror("fork");
            return 99;
        }
        if (WIFSIGNALED(st)) {
            fprintf(stderr, "badinput: %s crashed (signal %d)\n", rows[i].name, WTERMSIG(st));
            failed++;
        } else if (WEXITSTATUS(st) != 0) {
            failed++;
        }
    }
    printf("badinput: %d calls, %d failed\n", n, failed);
    mio_pool_free(pool);
    mio_pool_free(pool_nolisten);
    mio_reactor_free(r);
    mio_events_free(events);
    mio_poll_free(poll_);
    close(devnull_fd);
    close(pipe_fd);
    close(tcp_fd);
    close(udp_fd);
    return failed == 0 ? 0 : 1;
}
