/* event_echo: the idiomatic libevent echo server (evconnlistener + bufferevent), as a yardstick.
 *
 *   event_echo --listen ADDR
 *
 * One event_base. Each accepted connection gets a socket bufferevent; its read callback moves the
 * whole input evbuffer to the output evbuffer (no copy: evbuffer_add_buffer moves chains), and
 * libevent writes it out. EOF or an error frees the bufferevent (BEV_OPT_CLOSE_ON_FREE closes the
 * fd). SIGINT/SIGTERM break the loop; everything is freed and the exit status is 0. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"

static unsigned long long accepted;

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)sa;
    (void)salen;
    (void)arg;
    struct event_base *base = evconnlistener_get_base(l);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    if (bufferevent_enable(bev, EV_READ | EV_WRITE) != 0) {
        bufferevent_free(bev);
        return;
    }
    accepted++;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    struct baseline_args a = baseline_parse(argc, argv, false, false);
    struct sockaddr_storage ss;
    socklen_t len;

    if (baseline_addr_parse(a.listen, &ss, &len) < 0) {
        fprintf(stderr, "%s: bad address '%s'\n", argv[0], a.listen);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* bufferevents write with plain send() */
    struct event_base *base = event_base_new();
    if (base == NULL)
        return 1;
    struct evconnlistener *l = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        4096, (struct sockaddr *)&ss, (int)len);
    if (l == NULL) {
        fprintf(stderr, "%s: listen on %s failed\n", argv[0], a.listen);
        return 1;
    }
    baseline_print_bound(evconnlistener_get_fd(l));

    struct event *si = evsignal_new(base, SIGINT, on_signal, base);
    struct event *st = evsignal_new(base, SIGTERM, on_signal, base);
    if (si == NULL || st == NULL || event_add(si, NULL) != 0 || event_add(st, NULL) != 0)
        return 1;

    event_base_dispatch(base);
    /* Open connections' bufferevents are reclaimed by the process exit. */
    event_free(si);
    event_free(st);
    evconnlistener_free(l);
    event_base_free(base);
    fprintf(stderr, "%s: stopped: accepted=%llu\n", argv[0], accepted);
    return 0;
}
