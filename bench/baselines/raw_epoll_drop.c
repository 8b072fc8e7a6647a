/* raw_epoll_drop: accepts connections and closes them at once, on bare epoll, as a yardstick for
 * accept rate and per-connection server CPU.
 *
 *   raw_epoll_drop --listen ADDR [--workers N]
 *
 * Same skeleton as raw_epoll_echo (raw_epoll.h): one epoll and one SO_REUSEPORT listener per
 * thread, edge-triggered, accept4 until EAGAIN, close. Two syscalls per connection plus the
 * amortised epoll_wait: nothing a framework can do costs less. */
#include "raw_epoll.h"

static int raw_setup(void)
{
    return 0;
}

static void raw_teardown(void)
{
}

static void raw_handle(struct raw_worker *w, uint64_t token, uint32_t events)
{
    (void)events;
    if (token != RAW_TOKEN_LISTENER)
        return;
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            return; /* EAGAIN: drained; EMFILE and friends: the next connection retries */
        }
        close(fd);
        raw_count(&w->accepted);
    }
}

int main(int argc, char **argv)
{
    return raw_main(argc, argv, false);
}
