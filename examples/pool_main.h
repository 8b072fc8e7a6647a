/* Shared skeleton of the threaded example servers: flags, the pool, and a main thread that waits
 * on a signalfd (SIGINT/SIGTERM: graceful stop and a one-line summary; SIGUSR1: per-worker
 * stats; SIGHUP: zero-downtime restart). Each program supplies its name, a description and its
 * accept function (pool_main), or fills a struct pool_main_prog to add numeric options and pool
 * options (worker hooks, nodelay).
 *
 * Listeners: --listen ADDR (bound here), --listen-fd N (an inherited listening socket, adopted;
 * may be repeated), and socket activation: when LISTEN_FDS/LISTEN_PID name this process
 * (systemd, systemd-socket-activate, or a restart below), the inherited sockets are the
 * listeners and --listen / --listen-fd are ignored. Readiness is reported once the pool runs:
 * "READY=1" on NOTIFY_SOCKET (systemd Type=notify, with MAINPID= so that a restarted copy
 * becomes the service's main process) and a byte on the fd named by MIO_READY_FD (the restart
 * handshake).
 *
 * Restart (SIGHUP): the server starts a new copy of itself (fork, then exec of the program file
 * it was run from, which may have been upgraded meanwhile, with the same command line) that
 * inherits every listening socket as LISTEN_FDS and a pipe as MIO_READY_FD; once the copy reports
 * ready, this process stops accepting (mio_pool_drain: the sockets stay open in the copy, their
 * queues with them, so no connect is refused or reset), waits --drain-ms at most for its
 * connections to finish (mio_pool_draining tells protocol code to wind them down), stops and exits
 * 0. If the copy fails (exec error, exit, no ready within 10 s), this process says why on stderr
 * and goes on serving. */
#ifndef MIO_EXAMPLES_POOL_MAIN_H
#define MIO_EXAMPLES_POOL_MAIN_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getopt_long, signalfd, pipe2 */
#endif
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
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
    void (*stats)(mio_pool *pool);    /* optional: the program's own stats lines on stdout, after
                                         the per-worker ones on SIGUSR1 and after the stop */
};

/* The running pool, for protocol code that asks mio_pool_draining (set before it starts). */
static mio_pool *pool_main_pool;

#define POOL_MAIN_MAX_FDS 64 /* --listen-fd values, inherited and passed-on sockets */
#define POOL_MAIN_READY_TIMEOUT_MS 10000

static void pool_main_usage(FILE *f, const char *prog, const struct pool_main_prog *p)
{
    const struct pool_main_num *n;

    fprintf(f,
            "usage: %s [--listen ADDR] [--listen-fd N]... [--workers N]\n"
            "          [--mode acceptor|reuseport] [--balance rr|least|awake] [--pin]\n"
            "          [--backend epoll|uring|auto] [--drain-ms MS]",
            prog);
    for (n = p->nums; n != NULL && n->name != NULL; n++)
        fprintf(f, " [--%s %s]", n->name, n->arg);
    fprintf(f,
            " [--help]\n"
            "%s\n"
            "  --listen ADDR   address to listen on (default 127.0.0.1:7000; port 0 picks one)\n"
            "  --listen-fd N   serve the listening socket inherited as fd N (repeatable); then\n"
            "                  --listen binds only when given too\n"
            "  --workers N     worker threads (default: online CPUs)\n"
            "  --mode M        acceptor (one accept thread hands off, default) or reuseport\n"
            "  --balance B     rr (round robin, default), least (least loaded) or awake\n"
            "                  (awake workers first: fewer wake-ups); acceptor mode\n"
            "  --pin           pin each thread to one CPU, round robin\n"
            "  --backend B     epoll, uring (io_uring; fails where it cannot run) or auto\n"
            "                  (io_uring where it runs); default: $MIO_BACKEND, else epoll\n"
            "  --drain-ms MS   restart: time the old process gives its connections (10000)\n",
            p->what);
    for (n = p->nums; n != NULL && n->name != NULL; n++)
        fprintf(f, "  --%s %s  %s\n", n->name, n->arg, n->help);
    fprintf(f,
            "The first line printed is the address listened on. SIGINT/SIGTERM stop gracefully\n"
            "and print a summary; SIGUSR1 prints per-worker stats; SIGHUP restarts without\n"
            "downtime (a new copy inherits the sockets; this one drains and exits).\n"
            "Socket activation: with LISTEN_FDS and LISTEN_PID set for this process (systemd,\n"
            "systemd-socket-activate), the inherited sockets replace --listen and --listen-fd.\n");
}

static void pool_main_stats(mio_pool *pool)
{
    for (unsigned i = 0; i < mio_pool_workers(pool); i++) {
        mio_worker_stats st;

        if (mio_pool_stats(pool, i, &st) < 0)
            continue;
        printf("worker %u: accepted=%llu active=%llu handed_off=%llu wakes_performed=%llu "
               "wakes_elided=%llu ring_full=%llu emfile=%llu accept_errors=%llu ring_len=%llu "
               "wakes_ring=%llu loop_error=%lld\n",
               i, (unsigned long long)st.accepted, (unsigned long long)st.active,
               (unsigned long long)st.handed_off, (unsigned long long)st.wakes_performed,
               (unsigned long long)st.wakes_elided, (unsigned long long)st.ring_full,
               (unsigned long long)st.emfile, (unsigned long long)st.accept_errors,
               (unsigned long long)st.ring_len, (unsigned long long)st.wakes_ring,
               (long long)st.loop_error);
    }
    fflush(stdout);
}

/* The original command line, from /proc/self/cmdline: the argv pointers may have been permuted
 * by getopt or edited by the program. NULL-terminated array of pointers into *buf (both
 * malloc'd), or NULL. */
static char **pool_main_cmdline(char **buf)
{
    size_t cap = 4096, len = 0, n = 0;
    char **av;
    FILE *f = fopen("/proc/self/cmdline", "re");

    *buf = NULL;
    if (f == NULL)
        return NULL;
    for (;;) {
        char *nb = realloc(*buf, cap + 1);

        if (nb == NULL)
            break;
        *buf = nb;
        len += fread(*buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
    }
    fclose(f);
    if (*buf == NULL || len == 0)
        return NULL;
    (*buf)[len] = '\0';
    for (size_t i = 0; i < len; i++)
        n += (*buf)[i] == '\0';
    av = calloc(n + 2, sizeof(*av));
    if (av == NULL)
        return NULL;
    n = 0;
    for (size_t i = 0; i < len; i += strlen(*buf + i) + 1)
        av[n++] = *buf + i;
    return av;
}

extern char **environ;

/* The environment of the new copy: ours without LISTEN_* and MIO_READY_FD, plus LISTEN_FDS=nfds,
 * LISTEN_FDNAMES, MIO_READY_FD and a LISTEN_PID= entry with room for the digits the child
 * writes (pidvar). NULL on allocation failure; free with pool_main_env_free. */
static char **pool_main_env(unsigned nfds, char **pidvar)
{
    size_t n = 0, k = 0;
    char **env;
    bool ok = true;

    while (environ[n] != NULL)
        n++;
    env = calloc(n + 5, sizeof(*env));
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LISTEN_", 7) != 0 && strncmp(environ[i], "MIO_READY_FD=", 13) != 0)
            ok &= (env[k++] = strdup(environ[i])) != NULL;
    ok &= (env[k] = malloc((size_t)nfds * 4 + 32)) != NULL;
    if (env[k] != NULL) {
        strcpy(env[k], "LISTEN_FDNAMES=");
        for (unsigned i = 0; i < nfds; i++)
            strcat(env[k], i == 0 ? "mio" : ":mio");
    }
    k++;
    ok &= (env[k] = malloc(48)) != NULL;
    if (env[k] != NULL)
        snprintf(env[k], 48, "LISTEN_FDS=%u", nfds);
    k++;
    ok &= (env[k] = malloc(48)) != NULL;
    if (env[k] != NULL)
        snprintf(env[k], 48, "MIO_READY_FD=%u", MIO_SD_LISTEN_FDS_START + nfds);
    k++;
    ok &= (env[k] = malloc(48)) != NULL; /* digits go after the '=' in the child */
    if (env[k] != NULL)
        strcpy(env[k], "LISTEN_PID=");
    *pidvar = env[k++];
    if (!ok) {
        for (size_t i = 0; i < k; i++)
            free(env[i]);
        free(env);
        return NULL;
    }
    return env;
}

static void pool_main_strv_free(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

/* The child between fork and exec (a threaded parent: async-signal-safe calls only). Puts src[i]
 * at fd 3 + i (without FD_CLOEXEC), writes our pid into pidvar, execs. Never returns. */
static void pool_main_exec_child(const int *src, unsigned n, char *pidvar, const char *exe,
                                 char **av, char **env)
{
    int tmp[POOL_MAIN_MAX_FDS + 1];
    int top = MIO_SD_LISTEN_FDS_START + (int)n + 1;
    char digits[24];
    int d = 0;
    sigset_t none;

    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL); /* the new program starts with no signal blocked */
    /* First above every target, so moving one into place never overwrites a source. */
    for (unsigned i = 0; i < n; i++)
        if ((tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, top)) == -1)
            _exit(127);
    for (unsigned i = 0; i < n; i++)
        if (dup2(tmp[i], MIO_SD_LISTEN_FDS_START + (int)i) == -1) /* dup2 clears FD_CLOEXEC */
            _exit(127);
    for (pid_t p = getpid(); p > 0; p /= 10)
        digits[d++] = (char)('0' + p % 10);
    for (int i = 0; i < d; i++)
        pidvar[11 + i] = digits[d - 1 - i];
    pidvar[11 + d] = '\0';
    execve(exe, av, env);
    execve("/proc/self/exe", av, env);
    _exit(127);
}

/* Waits for the child's ready byte on rfd. 0 when it came; else -ETIMEDOUT or -ECHILD (the
 * child closed the pipe: it exited or exec failed). */
static int pool_main_wait_ready(int rfd)
{
    struct pollfd p = {.fd = rfd, .events = POLLIN};
    unsigned long long until = example_now_ms() + POOL_MAIN_READY_TIMEOUT_MS;
    char c;

    for (;;) {
        unsigned long long now = example_now_ms();
        int n;

        if (now >= until)
            return -ETIMEDOUT;
        n = poll(&p, 1, (int)(until - now));
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? -ETIMEDOUT : -errno;
        n = (int)read(rfd, &c, 1);
        if (n == -1 && errno == EINTR)
            continue;
        return n == 1 ? 0 : -ECHILD;
    }
}

/* The program file to run for a restart: the path this process was run from, as the kernel
 * tells it. When the file was replaced (an upgrade installs the new binary by renaming it over the
 * old path), the link reads "PATH (deleted)" and PATH is the new binary: that is what a restart
 * should run. /proc/self/exe (the old binary) is the fallback. */
static void pool_main_exe(char *buf, size_t len)
{
    static const char deleted[] = " (deleted)";
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    size_t dl = sizeof(deleted) - 1;

    if (n <= 0) {
        snprintf(buf, len, "/proc/self/exe");
        return;
    }
    buf[n] = '\0';
    if ((size_t)n > dl && strcmp(buf + n - dl, deleted) == 0)
        buf[n - dl] = '\0';
}

/* SIGHUP: starts the new copy and waits until it is ready. Returns its pid, or -1 (said why on
 * stderr; this process goes on serving). */
static pid_t pool_main_restart(mio_pool *pool, const char *prog)
{
    int src[POOL_MAIN_MAX_FDS + 1], ready[2], err, status;
    unsigned n = 0;
    char *cmdbuf, **av = pool_main_cmdline(&cmdbuf), **env = NULL, *pidvar = NULL;
    pid_t pid = -1;
    char exe[4096];

    pool_main_exe(exe, sizeof(exe));
    for (unsigned l = 0;; l++) {
        int k = mio_pool_listener_fds(pool, l, src + n, POOL_MAIN_MAX_FDS - n);

        if (k < 0)
            break;
        n += (unsigned)k < POOL_MAIN_MAX_FDS - n ? (unsigned)k : POOL_MAIN_MAX_FDS - n;
    }
    if (av == NULL || n == 0 || pipe2(ready, O_CLOEXEC) == -1) {
        fprintf(stderr, "%s: restart: %s; still serving\n", prog,
                n == 0 ? "no listening socket to pass on" : "out of memory or fds");
        goto out;
    }
    src[n] = ready[1];
    env = pool_main_env(n, &pidvar);
    if (env != NULL)
        pid = fork();
    if (pid == 0)
        pool_main_exec_child(src, n + 1, pidvar, exe, av, env);
    close(ready[1]);
    if (pid == -1) {
        fprintf(stderr, "%s: restart: cannot start a new process: %s; still serving\n", prog,
                env == NULL ? "out of memory" : strerror(errno));
        close(ready[0]);
        goto out;
    }
    err = pool_main_wait_ready(ready[0]);
    close(ready[0]);
    if (err == 0)
        goto out;
    if (err == -ETIMEDOUT) {
        kill(pid, SIGKILL);
        fprintf(stderr,
                "%s: restart: new process %d not ready within %d ms: killed; still serving\n", prog,
                (int)pid, POOL_MAIN_READY_TIMEOUT_MS);
    }
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
        ;
    if (err != -ETIMEDOUT) {
        if (WIFEXITED(status))
            fprintf(stderr, "%s: restart: new process %d exited with status %d%s; still serving\n",
                    prog, (int)pid, WEXITSTATUS(status),
                    WEXITSTATUS(status) == 127 ? " (its fd setup or exec failed)" : "");
        else
            fprintf(stderr, "%s: restart: new process %d killed by signal %d; still serving\n",
                    prog, (int)pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    pid = -1;
out:
    if (env != NULL) {
        pool_main_strv_free(env); /* pidvar is one of its entries */
    }
    free(av);
    free(cmdbuf);
    return pid;
}

/* After the handover: connections get drain_ms to finish (protocol code sees
 * mio_pool_draining), then the pool stops. */
static void pool_main_drain(mio_pool *pool, unsigned long long drain_ms)
{
    unsigned long long until = example_now_ms() + drain_ms;

    (void)mio_pool_drain(pool);
    while (example_now_ms() < until) {
        uint64_t left = 0;

        for (unsigned i = 0; i < mio_pool_workers(pool); i++) {
            mio_worker_stats st;

            if (mio_pool_stats(pool, i, &st) == 0)
                left += st.active + st.ring_len;
        }
        if (left == 0)
            break;
        usleep(10000);
    }
    {
        unsigned long long now = example_now_ms();

        mio_pool_stop(pool, now < until ? (int)(until - now) : 0);
    }
}

/* Sockets inherited by socket activation (adopted), else --listen-fd ones (adopted) and --listen
 * (bound, when given or when nothing else is). Returns 0, 1 (a failure, said on stderr) or 2 (a
 * bad --listen-fd). */
static int pool_main_listeners(mio_pool *pool, const char *prog, const struct pool_main_prog *p,
                               const mio_listen_fd *act, int nact, const int *lfds, unsigned nlfds,
                               const char *listen, bool listen_given)
{
    mio_addr addr;
    int err;

    for (int i = 0; i < nact; i++)
        if ((err = mio_pool_adopt(pool, act[i].fd, p->accept, NULL)) < 0) {
            fprintf(stderr, "%s: inherited fd %d (LISTEN_FDS, %s): %s\n", prog, act[i].fd,
                    act[i].name, mio_strerror(err));
            return 1;
        }
    if (nact > 0)
        return 0;
    for (unsigned i = 0; i < nlfds; i++)
        if ((err = mio_pool_adopt(pool, lfds[i], p->accept, NULL)) < 0) {
            fprintf(stderr, "%s: bad value '%d' for --listen-fd: %s%s\n", prog, lfds[i],
                    mio_strerror(err),
                    err == -EINVAL || err == -EPROTOTYPE ? " (want a listening stream socket)"
                                                         : "");
            return 2;
        }
    if (nlfds > 0 && !listen_given)
        return 0;
    if (!example_parse_addr(prog, "--listen", listen, &addr))
        return 2;
    if ((err = mio_pool_listen(pool, &addr, p->accept, NULL)) < 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, listen, mio_strerror(err));
        return 1;
    }
    return 0;
}

/* Tells whoever started us that we serve: the restart handshake's pipe (MIO_READY_FD) and the
 * service manager (NOTIFY_SOCKET; MAINPID so that a restarted copy becomes the main process). */
static void pool_main_ready(const char *prog, int ready_fd)
{
    char state[64];
    int err;

    if (ready_fd >= 0) {
        if (write(ready_fd, "R", 1) != 1)
            fprintf(stderr, "%s: MIO_READY_FD %d: %s\n", prog, ready_fd, strerror(errno));
        close(ready_fd);
    }
    snprintf(state, sizeof(state), "MAINPID=%d\nREADY=1", (int)getpid());
    if ((err = mio_sd_notify(state)) < 0)
        fprintf(stderr, "%s: NOTIFY_SOCKET: %s\n", prog, mio_strerror(err));
}

/* MIO_READY_FD, taken out of the environment (a child of ours must not inherit it): the fd, made
 * close-on-exec, or -1. */
static int pool_main_ready_fd(void)
{
    const char *s = getenv("MIO_READY_FD");
    unsigned long long v = 0;
    int fd = -1;

    if (s != NULL && s[0] >= '0' && s[0] <= '9' && s[strspn(s, "0123456789")] == '\0' &&
        (v = strtoull(s, NULL, 10)) <= 65535 && fcntl((int)v, F_SETFD, FD_CLOEXEC) == 0)
        fd = (int)v;
    unsetenv("MIO_READY_FD");
    return fd;
}

static int pool_main_prog(int argc, char **argv, const struct pool_main_prog *prog)
{
    struct option longopts[10 + POOL_MAIN_MAX_NUMS] = {
        {"listen", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'},
        {"mode", required_argument, NULL, 'm'},
        {"balance", required_argument, NULL, 'b'},
        {"pin", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {"listen-fd", required_argument, NULL, 'f'},
        {"drain-ms", required_argument, NULL, 'd'},
        {"backend", required_argument, NULL, 'B'},
    };
    const char *listen = "127.0.0.1:7000";
    bool listen_given = false;
    mio_pool_opts opts = prog->opts;
    mio_pool *pool;
    mio_addr addr;
    char text[MIO_ADDR_STRLEN];
    sigset_t sigs;
    unsigned long long workers, v, drain_ms = 10000;
    int lfds[POOL_MAIN_MAX_FDS];
    unsigned nlfds = 0;
    mio_listen_fd act[POOL_MAIN_MAX_FDS];
    pid_t successor = -1;
    int opt, err, sfd = -1, nnums = 0, nact, ready_fd;

    /* Extra options are getopt values 256 + their index; the array stays NULL-terminated. */
    for (; prog->nums != NULL && prog->nums[nnums].name != NULL; nnums++) {
        if (nnums == POOL_MAIN_MAX_NUMS)
            return 2; /* a program bug: more options than the table holds */
        longopts[9 + nnums] =
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
            listen_given = true;
            break;
        case 'f':
            if (!example_parse_ull(argv[0], "--listen-fd", optarg, 0, 65535, &v))
                return 2;
            if (nlfds == POOL_MAIN_MAX_FDS) {
                fprintf(stderr, "%s: bad value '%s' for --listen-fd: at most %d of them\n", argv[0],
                        optarg, POOL_MAIN_MAX_FDS);
                return 2;
            }
            lfds[nlfds++] = (int)v;
            break;
        case 'd':
            if (!example_parse_ull(argv[0], "--drain-ms", optarg, 0, 3600000, &drain_ms))
                return 2;
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
        case 'B':
            if (strcmp(optarg, "epoll") == 0)
                opts.backend = MIO_BACKEND_EPOLL;
            else if (strcmp(optarg, "uring") == 0 || strcmp(optarg, "io_uring") == 0)
                opts.backend = MIO_BACKEND_IO_URING;
            else if (strcmp(optarg, "auto") == 0)
                opts.backend = MIO_BACKEND_AUTO;
            else {
                fprintf(stderr, "%s: bad value '%s' for --backend: epoll, uring or auto\n",
                        argv[0], optarg);
                return 2;
            }
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
    /* Before any thread runs: both read and clear the environment. */
    ready_fd = pool_main_ready_fd();
    nact = mio_sd_listen_fds(true, act, POOL_MAIN_MAX_FDS);
    if (nact < 0 || nact > POOL_MAIN_MAX_FDS) {
        fprintf(stderr, "%s: LISTEN_FDS: %s\n", argv[0],
                nact < 0 ? mio_strerror(nact) : "too many inherited fds");
        return 1;
    }
    /* Blocked before the pool starts, so its threads inherit the mask and only signalfd sees
     * them (a restarted copy unblocks them again before its exec). */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if ((sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) == -1) {
        perror("signalfd");
        return 1;
    }
    err = mio_pool_new(&opts, &pool);
    if (err < 0) {
        fprintf(stderr, "%s: cannot create the pool%s: %s\n", argv[0],
                opts.backend == MIO_BACKEND_IO_URING ? " on the io_uring backend" : "",
                mio_strerror(err));
        return 1;
    }
    pool_main_pool = pool;
    err = pool_main_listeners(pool, argv[0], prog, act, nact, lfds, nlfds, listen, listen_given);
    if (err != 0) {
        mio_pool_free(pool);
        close(sfd);
        return err;
    }
    err = mio_pool_local_addr(pool, 0, &addr);
    if (err >= 0)
        err = mio_pool_start(pool);
    if (err < 0) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], listen, mio_strerror(err));
        mio_pool_free(pool);
        close(sfd);
        return 1;
    }
    mio_addr_format(&addr, text, sizeof(text));
    printf("%s\n", text);
    fflush(stdout);
    pool_main_ready(argv[0], ready_fd);
    for (;;) {
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
        if (si.ssi_signo == SIGHUP) {
            successor = pool_main_restart(pool, argv[0]);
            if (successor < 0)
                continue;
            printf("restarted: new pid %d serves; draining\n", (int)successor);
            fflush(stdout);
        }
        break;
    }
    {
        unsigned long long accepted = 0, emfile = 0, errors = 0;

        if (successor > 0) {
            pool_main_drain(pool, drain_ms);
        } else {
            (void)mio_sd_notify("STOPPING=1");
            mio_pool_stop(pool, 1000);
        }
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
    close(sfd);
    return 0;

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
