/* Shared skeleton of the threaded example servers: flags, the pool, and a main thread that waits
 * on a signalfd (SIGINT/SIGTERM: graceful stop and a one-line summary; SIGUSR1: per-worker
 * stats). Each program supplies its name, a description and its accept function (pool_main), or
 * fills a struct pool_main_prog to add numeric options, pool options (worker hooks, nodelay) and
 * to wait in mio_pool_run instead (pool_main_prog). */
#ifndef MIO_EXAMPLES_POOL_MAIN_H
#define MIO_EXAMPLES_POOL_MAIN_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getopt_long, signalfd */
#endif
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <mio/mio.h>

#include "example_util.h"

/* A numeric option a program adds to the common ones: --name N, checked with example_parse_ull. */
struct pool_main_num {
    const char *name; /* long option name without the dashes; NULL ends the list */
    const char *arg;  /* the value's name in --help, e.g. "MS" */
    const char *help; /* what it does, on one line with its default */
    unsigned long long min, max;
    unsigned long long *value; /* holds the default; receives the value given */
};

#define POOL_MAIN_MAX_NUMS 8

/* What a program on pool_main_prog supplies. */
struct pool_main_prog {
    const char *what;                 /* one line for --help */
    mio_accept_fn accept;             /* gets NULL as its arg */
    const struct pool_main_num *nums; /* extra options (at most POOL_MAIN_MAX_NUMS), or NULL */
    mio_pool_opts opts;               /* hooks, nodelay, ...; --workers/--mode/--balance/--pin
                                         override their fields */
    bool pool_run;                    /* wait in mio_pool_run (SIGINT/SIGTERM; no SIGUSR1 stats) */
    void (*stats)(mio_pool *pool);    /* optional: the program's own stats lines on stdout, after
                                         the per-worker ones on SIGUSR1 and after the stop */
};

static void pool_main_usage(FILE *f, const char *prog, const struct pool_main_prog *p)
{
    const struct pool_main_num *n;

    fprintf(f,
            "usage: %s [--listen ADDR] [--workers N] [--mode acceptor|reuseport]\n"
            "          [--balance rr|least|awake] [--pin]",
            prog);
    for (n = p->nums; n != NULL && n->name != NULL; n++)
        fprintf(f, " [--%s %s]", n->name, n->arg);
    fprintf(f,
            " [--help]\n"
            "%s\n"
            "  --listen ADDR   address to listen on (default 127.0.0.1:7000; port 0 picks one)\n"
            "  --workers N     worker threads (default: online CPUs)\n"
            "  --mode M        acceptor (one accept thread hands off, default) or reuseport\n"
            "  --balance B     rr (round robin, default), least (least loaded) or awake\n"
            "                  (awake workers first: fewer wake-ups); acceptor mode\n"
            "  --pin           pin each thread to one CPU, round robin\n",
            p->what);
    for (n = p->nums; n != NULL && n->name != NULL; n++)
        fprintf(f, "  --%s %s  %s\n", n->name, n->arg, n->help);
    fprintf(f,
            "The first line printed is the address listened on. SIGINT/SIGTERM stop gracefully\n"
            "and print a summary%s.\n",
            p->pool_run ? "" : "; SIGUSR1 prints per-worker stats");
}

static void pool_main_stats(mio_pool *pool)
{
    for (unsigned i = 0; i < mio_pool_workers(pool); i++) {
        mio_worker_stats st;

        if (mio_pool_stats(pool, i, &st) < 0)
            continue;
        printf("worker %u: accepted=%llu active=%llu handed_off=%llu wakes_performed=%llu "
               "wakes_elided=%llu ring_full=%llu emfile=%llu accept_errors=%llu ring_len=%llu\n",
               i, (unsigned long long)st.accepted, (unsigned long long)st.active,
               (unsigned long long)st.handed_off, (unsigned long long)st.wakes_performed,
               (unsigned long long)st.wakes_elided, (unsigned long long)st.ring_full,
               (unsigned long long)st.emfile, (unsigned long long)st.accept_errors,
               (unsigned long long)st.ring_len);
    }
    fflush(stdout);
}

static int pool_main_prog(int argc, char **argv, const struct pool_main_prog *prog)
{
    struct option longopts[7 + POOL_MAIN_MAX_NUMS] = {
        {"listen", required_argument, NULL, 'l'}, {"workers", required_argument, NULL, 'w'},
        {"mode", required_argument, NULL, 'm'},   {"balance", required_argument, NULL, 'b'},
        {"pin", no_argument, NULL, 'p'},          {"help", no_argument, NULL, 'h'},
    };
    const char *listen = "127.0.0.1:7000";
    mio_pool_opts opts = prog->opts;
    mio_pool *pool;
    mio_addr addr;
    char text[MIO_ADDR_STRLEN];
    sigset_t sigs;
    unsigned long long workers;
    int opt, err, sfd = -1, nnums = 0;

    /* Extra options are getopt values 256 + their index; the array stays NULL-terminated. */
    for (; prog->nums != NULL && prog->nums[nnums].name != NULL; nnums++) {
        if (nnums == POOL_MAIN_MAX_NUMS)
            return 2; /* a program bug: more options than the table holds */
        longopts[6 + nnums] =
            (struct option){prog->nums[nnums].name, required_argument, NULL, 256 + nnums};
    }
    while ((opt = getopt_long(argc, argv, "l:w:m:b:ph", longopts, NULL)) != -1) {
        if (opt >= 256 && opt < 256 + nnums) {
            const struct pool_main_num *n = &prog->nums[opt - 256];
            char name[64];

            snprintf(name, sizeof(name), "--%s", n->name);
            if (!example_parse_ull(argv[0], name, optarg, n->min, n->max, n->value))
                return 2;
            continue;
        }
        switch (opt) {
        case 'l':
            listen = optarg;
            break;
        case 'w':
            /* 0 is the default (online CPUs); mio_pool_new allows up to 4096. */
            if (!example_parse_ull(argv[0], "--workers", optarg, 0, 4096, &workers))
                return 2;
            opts.workers = (unsigned)workers;
            break;
        case 'm':
            if (strcmp(optarg, "acceptor") == 0)
                opts.mode = MIO_POOL_ACCEPTOR;
            else if (strcmp(optarg, "reuseport") == 0)
                opts.mode = MIO_POOL_REUSEPORT;
            else
                goto usage;
            break;
        case 'b':
            if (strcmp(optarg, "rr") == 0)
                opts.balance = MIO_BALANCE_ROUND_ROBIN;
            else if (strcmp(optarg, "least") == 0)
                opts.balance = MIO_BALANCE_LEAST_LOADED;
            else if (strcmp(optarg, "awake") == 0)
                opts.balance = MIO_BALANCE_AWAKE_FIRST;
            else
                goto usage;
            break;
        case 'p':
            opts.pin_cpus = true;
            break;
        case 'h':
            pool_main_usage(stdout, argv[0], prog);
            return 0;
        default:
            goto usage;
        }
    }
    if (optind != argc)
        goto usage;
    if (!example_parse_addr(argv[0], "--listen", listen, &addr))
        return 2;
    /* Blocked before the pool starts, so its threads inherit the mask and only signalfd (or
     * mio_pool_run's sigwait) sees them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (!prog->pool_run)
        sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (!prog->pool_run && (sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) == -1) {
        perror("signalfd");
        return 1;
    }
    err = mio_pool_new(&opts, &pool);
    if (err == 0)
        err = mio_pool_listen(pool, &addr, prog->accept, NULL);
    if (err >= 0)
        err = mio_pool_local_addr(pool, 0, &addr);
    if (err >= 0)
        err = mio_pool_start(pool);
    if (err < 0) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], listen, mio_strerror(err));
        return 1;
    }
    mio_addr_format(&addr, text, sizeof(text));
    printf("%s\n", text);
    fflush(stdout);
    if (prog->pool_run) {
        err = mio_pool_run(pool, 1000); /* until SIGINT/SIGTERM, then a graceful stop */
        if (err < 0)
            fprintf(stderr, "%s: %s\n", argv[0], mio_strerror(err));
    }
    while (!prog->pool_run) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));

        if (n != (ssize_t)sizeof(si))
            continue;
        if (si.ssi_signo == SIGUSR1) {
            pool_main_stats(pool);
            if (prog->stats != NULL) {
                prog->stats(pool);
                fflush(stdout);
            }
            continue;
        }
        break;
    }
    {
        unsigned long long accepted = 0, emfile = 0, errors = 0;

        mio_pool_stop(pool, 1000);
        for (unsigned i = 0; i < mio_pool_workers(pool); i++) {
            mio_worker_stats st;

            if (mio_pool_stats(pool, i, &st) == 0) {
                accepted += st.accepted;
                emfile += st.emfile;
                errors += st.accept_errors;
            }
        }
        printf("stopped: workers=%u accepted=%llu emfile=%llu accept_errors=%llu\n",
               mio_pool_workers(pool), accepted, emfile, errors);
        if (prog->stats != NULL)
            prog->stats(pool); /* the workers are stopped; their reactors live until the free */
        fflush(stdout);
    }
    mio_pool_free(pool);
    if (sfd != -1)
        close(sfd);
    return err < 0 ? 1 : 0;

usage:
    pool_main_usage(stderr, argv[0], prog);
    return 2;
}

static inline int pool_main(int argc, char **argv, const char *what, mio_accept_fn fn)
{
    const struct pool_main_prog prog = {.what = what, .accept = fn};

    return pool_main_prog(argc, argv, &prog);
}

#endif
