/* mio's udp_server example: a UDP socket on one mio_poll that echoes every datagram back to its
 * sender.
 *
 *   mio-udp-echo [--listen ADDR]
 *
 * Prints the bound address first (so --listen 127.0.0.1:0 works). On each readable edge it
 * receives until -EAGAIN and sends each datagram straight back; a datagram the socket cannot take
 * at that moment (-EAGAIN) is dropped and counted, as UDP allows. SIGINT/SIGTERM end it cleanly
 * with a one-line summary. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mio/mio.h>

#include "example_util.h"

enum { UDP = EXAMPLE_SERVER, SIGNALS = EXAMPLE_SIGNALS };
#define DGRAM_MAX 65536

static void usage(FILE *f)
{
    fprintf(f, "usage: mio-udp-echo [--listen ADDR] [--help]\n"
               "  Echoes every UDP datagram back to its sender (mio's udp_server).\n"
               "  --listen ADDR   address to bind (default 127.0.0.1:9000; port 0 = any)\n"
               "  Prints the bound address as its first line; SIGINT/SIGTERM stop it.\n");
}

int main(int argc, char **argv)
{
    const char *listen_text = "127.0.0.1:9000";
    unsigned long long echoed = 0, dropped = 0, bytes = 0;
    struct example_loop l = {.sfd = -1, .fd = -1};
    mio_addr addr, from;
    char *buf = NULL;
    int ufd, sfd, r, status = 1, sig = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_text = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!example_parse_addr("mio-udp-echo", "--listen", listen_text, &addr))
        return 2;
    buf = malloc(DGRAM_MAX);
    if (buf == NULL) {
        r = -ENOMEM;
        goto err;
    }
    if ((r = example_loop_open(&l, "mio-udp-echo", 64, mio_udp_bind, &addr, listen_text)) < 0)
        goto out;
    ufd = l.fd;
    sfd = l.sfd;

    while (sig == 0) {
        r = mio_poll_poll(l.poll, l.events, -1);
        if (r == -EINTR)
            continue;
        if (r < 0)
            goto err;
        MIO_EVENTS_FOREACH(const mio_event *ev, l.events)
        {
            if (mio_event_token(ev) == SIGNALS) {
                sig = example_signal_read(sfd);
                continue;
            }
            if (mio_event_token(ev) != UDP)
                continue;
            for (;;) {
                ssize_t n = mio_udp_recv_from(ufd, buf, DGRAM_MAX, &from);
                if (n == -EAGAIN)
                    break;
                if (n == -ECONNREFUSED || n == -EHOSTUNREACH || n == -ENETUNREACH)
                    continue; /* ICMP for an earlier reply: not fatal for a server */
                if (n < 0) {
                    fprintf(stderr, "mio-udp-echo: recv: %s\n", mio_strerror((int)n));
                    break;
                }
                ssize_t s = mio_udp_send_to(ufd, buf, (size_t)n, &from);
                if (s == n) {
                    echoed++;
                    bytes += (unsigned long long)n;
                } else {
                    dropped++;
                }
            }
        }
    }
    printf("mio-udp-echo: stopped by signal %d: %llu datagrams (%llu bytes) echoed, %llu dropped\n",
           sig, echoed, bytes, dropped);
    status = 0;
    goto out;

err:
    fprintf(stderr, "mio-udp-echo: %s\n", mio_strerror(r));
out:
    free(buf);
    example_loop_close(&l);
    return status;
}
