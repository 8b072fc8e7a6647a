/* soak-abuse: abusive peers against an echo server, for `make soak` (tests/soak.sh runs good
 * clients with bench/mio-load at the same time and judges the server's fds and RSS).
 *
 *   soak-abuse --target ADDR --seconds S [--slow N] [--noread N] [--rst N] [--halfopen N]
 *
 * For S seconds, from one poll loop:
 *   slow      N slowloris connections: one byte each every S/6 seconds (the "byte a minute" peer,
 *             time-scaled), whose echo is read and verified;
 *   noread    N peers that write as fast as the server takes it and never read: the server's write
 *             queue for them reaches the high water mark and it stops reading them;
 *   rst       N times over the run: connect, send 256 KiB, close with SO_LINGER 0 (RST) while the
 *             server is still writing the echo back;
 *   halfopen  N peers that send 10 bytes, shut down their write side and then never read again
 *             (and N more that connect and never send anything).
 * Exit 0 when every slowloris echo came back intact (the server kept serving them), 1 otherwise.
 * One `key=value` line on stdout. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <mio/mio.h>

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const mio_addr *a)
{
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || connect(fd, &a->u.sa, a->len) != 0) {
        perror("soak-abuse: connect");
        exit(1);
    }
    mio_set_nonblocking(fd, true);
    return fd;
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    double seconds = 60, t0, next_slow, end;
    unsigned nslow = 200, nnoread = 20, nrst = 100, nhalf = 50, slow_sent = 0, slow_bad = 0;
    unsigned long long noread_bytes = 0, rst_done = 0;
    static char junk[65536];
    mio_addr a;
    int *slow, *noread, *half;
    unsigned char *slow_next_echo;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--target") == 0)
            target = argv[i + 1];
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--slow") == 0)
            nslow = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--noread") == 0)
            nnoread = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rst") == 0)
            nrst = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--halfopen") == 0)
            nhalf = (unsigned)atoi(argv[i + 1]);
    }
    if (target == NULL || mio_addr_parse(target, &a) < 0 || seconds <= 0) {
        fprintf(stderr, "usage: soak-abuse --target ADDR --seconds S [--slow N] [--noread N] "
                        "[--rst N] [--halfopen N]\n");
        return 2;
    }
    memset(junk, 'j', sizeof junk);
    slow = calloc(nslow + 1, sizeof *slow);
    slow_next_echo = calloc(nslow + 1, 1);
    noread = calloc(nnoread + 1, sizeof *noread);
    half = calloc(2 * nhalf + 1, sizeof *half);
    for (unsigned i = 0; i < nslow; i++)
        slow[i] = dial(&a);
    for (unsigned i = 0; i < nnoread; i++)
        noread[i] = dial(&a);
    for (unsigned i = 0; i < 2 * nhalf; i++) {
        half[i] = dial(&a);
        if (i < nhalf) {
            (void)send(half[i], "half-open!", 10, MSG_NOSIGNAL);
            shutdown(half[i], SHUT_WR);
        }
    }
    t0 = now_s();
    end = t0 + seconds;
    next_slow = t0;
    while (now_s() < end) {
        double t = now_s(), progress = (t - t0) / seconds;

        /* slowloris: a byte per connection every seconds/6 */
        if (t >= next_slow) {
            for (unsigned i = 0; i < nslow; i++) {
                unsigned char b = (unsigned char)(slow_sent + i);

                if (send(slow[i], &b, 1, MSG_NOSIGNAL) != 1)
                    slow_bad++;
            }
            slow_sent++;
            next_slow = t + seconds / 6;
        }
        for (unsigned i = 0; i < nslow; i++) {
            unsigned char b;

            while (recv(slow[i], &b, 1, 0) == 1) {
                if (b != (unsigned char)(slow_next_echo[i] + i))
                    slow_bad++;
                slow_next_echo[i]++;
            }
        }
        /* never-read peers push what the kernel takes */
        for (unsigned i = 0; i < nnoread; i++) {
            ssize_t n = send(noread[i], junk, sizeof junk, MSG_NOSIGNAL);

            if (n > 0)
                noread_bytes += (unsigned long long)n;
        }
        /* RST mid-write, spread over the run */
        while (rst_done < (unsigned long long)(progress * nrst) && rst_done < nrst) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            int fd = dial(&a);

            for (int k = 0; k < 4; k++)
                (void)send(fd, junk, sizeof junk, MSG_NOSIGNAL);
            usleep(1000);
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(fd);
            rst_done++;
        }
        usleep(20000);
    }
    /* the last slowloris bytes come back */
    for (double until = now_s() + 10; now_s() < until;) {
        unsigned missing = 0;

        for (unsigned i = 0; i < nslow; i++) {
            unsigned char b;

            while (recv(slow[i], &b, 1, 0) == 1) {
                if (b != (unsigned char)(slow_next_echo[i] + i))
                    slow_bad++;
                slow_next_echo[i]++;
            }
            if (slow_next_echo[i] != (unsigned char)slow_sent)
                missing++;
        }
        if (missing == 0)
            break;
        usleep(10000);
    }
    for (unsigned i = 0; i < nslow; i++)
        if (slow_next_echo[i] != (unsigned char)slow_sent)
            slow_bad++;
    printf("abuse slow=%u slow_bytes_each=%u slow_bad=%u noread=%u noread_bytes_accepted=%llu "
           "rst=%llu halfopen=%u idle=%u\n",
           nslow, slow_sent, slow_bad, nnoread, noread_bytes, rst_done, nhalf, nhalf);
    fflush(stdout);
    for (unsigned i = 0; i < nslow; i++)
        close(slow[i]);
    for (unsigned i = 0; i < nnoread; i++)
        close(noread[i]);
    for (unsigned i = 0; i < 2 * nhalf; i++)
        close(half[i]);
    free(slow);
    free(slow_next_echo);
    free(noread);
    free(half);
    return slow_bad == 0 ? 0 : 1;
}
