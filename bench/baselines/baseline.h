/* Shared plumbing for the baseline servers in bench/baselines/.
 *
 * The baselines are deliberately written on plain libc (and libuv/libevent), never on libmio: they
 * are the yardsticks libmio is measured against. This header holds only what every one of them
 * needs and what has no bearing on the measured hot path: command-line parsing, address text,
 * printing the bound address. Everything here runs once at start-up. */
#ifndef MIO_BENCH_BASELINE_H
#define MIO_BENCH_BASELINE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct baseline_args {
    const char *listen;  /* "127.0.0.1:0", "[::1]:8080" */
    unsigned workers;    /* threads, where the baseline has them */
    bool short_read;     /* raw epoll echo: a short read means the socket is drained */
};

static inline void baseline_usage(const char *prog, bool has_workers, bool has_short)
{
    fprintf(stderr, "usage: %s --listen ADDR%s%s\n", prog, has_workers ? " [--workers N]" : "",
            has_short ? " [--short-read]" : "");
    fprintf(stderr, "  ADDR is IPv4 'host:port' or IPv6 '[host]:port'; port 0 picks a free port.\n"
                    "  The first line on stdout is the bound address. SIGINT/SIGTERM stop it.\n");
}

/* Parses the command line; exits with status 2 on bad usage (start-up only). */
static inline struct baseline_args baseline_parse(int argc, char **argv, bool has_workers,
                                                  bool has_short)
{
    struct baseline_args a = {"127.0.0.1:0", 1, false};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            a.listen = argv[++i];
        } else if (has_workers && strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            char *end;
            unsigned long n = strtoul(argv[++i], &end, 10);
            if (*end != '\0' || n == 0 || n > 256) {
                fprintf(stderr, "%s: --workers wants 1..256\n", argv[0]);
                exit(2);
            }
            a.workers = (unsigned)n;
        } else if (has_short && strcmp(argv[i], "--short-read") == 0) {
            a.short_read = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            baseline_usage(argv[0], has_workers, has_short);
            exit(0);
        } else {
            baseline_usage(argv[0], has_workers, has_short);
            exit(2);
        }
    }
    return a;
}

/* "1.2.3.4:80" or "[::1]:80" into a sockaddr_storage. Returns 0 or -EINVAL. */
static inline int baseline_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    const char *h = text;
    size_t hl;
    bool v6 = text[0] == '[';

    if (v6) {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        h = text + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return -EINVAL;
        hl = (size_t)(colon - text);
    }
    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port > 65535)
        return -EINVAL;

    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            return -EINVAL;
        *len = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            return -EINVAL;
        *len = sizeof(*in);
    }
    return 0;
}

/* Prints "host:port" (or "[host]:port") of a bound socket as one flushed line on stdout. */
static inline int baseline_print_bound(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return -errno;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        printf("[%s]:%u\n", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        printf("%s:%u\n", host, (unsigned)ntohs(in->sin_port));
    }
    fflush(stdout);
    return 0;
}

/* The port a socket is bound to (host order), or 0 on error. */
static inline unsigned baseline_bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
}

static inline void baseline_set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

#endif
