/* mio_registry: register / reregister / deregister, every errno case, registration from other
 * threads while a poll blocks, try_clone, and the epoll flags each interest asks for (mio's
 * registering.rs, poll.rs and regressions.rs, with socketpair/pipe/eventfd and loopback TCP). */
#include "core_helpers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <mio/event.h>
#include <mio/poll.h>

struct ctx {
    mio_poll *poll;
    mio_registry *reg;
    mio_events *ev;
};

static void ctx_init(struct ctx *c)
{
    assert_int_equal(mio_poll_new(&c->poll), 0);
    c->reg = mio_poll_registry(c->poll);
    assert_non_null(c->reg);
    assert_int_equal(mio_events_new(64, &c->ev), 0);
}

static void ctx_fini(struct ctx *c)
{
    mio_events_free(c->ev);
    mio_poll_free(c->poll);
}

/* Number of events in the last poll carrying `token`. */
static int count_token(const mio_events *ev, mio_token token)
{
    int n = 0;
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        if (mio_event_token(e) == token)
            n++;
    }
    return n;
}

static const mio_event *find_token(const mio_events *ev, mio_token token)
{
    MIO_EVENTS_FOREACH(const mio_event *e, ev)
    {
        if (mio_event_token(e) == token)
            return e;
    }
    return NULL;
}

/* Polls until an event with `token` arrives or `ms` pass. */
static const mio_event *wait_token(struct ctx *c, mio_token token, int ms)
{
    unsigned long long deadline = mio_test_now_ms() + (unsigned long long)ms;
    for (;;) {
        unsigned long long now = mio_test_now_ms();
        if (now >= deadline)
            return NULL;
        int n = mio_poll_poll(c->poll, c->ev, (int)(deadline - now));
        assert_true(n >= 0 || n == -EINTR);
        const mio_event *e = find_token(c->ev, token);
        if (e != NULL)
            return e;
    }
}

/* ---- basic lifecycle ---- */

static void test_register_poll_deregister(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int sv[2];
    core_socketpair(sv);
    assert_int_equal(mio_registry_register(c.reg, sv[0], 10, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    const mio_event *e = wait_token(&c, 10, 5000);
    assert_non_null(e);
    assert_true(mio_event_is_readable(e));
    assert_false(mio_event_is_writable(e));
    assert_int_equal(mio_registry_deregister(c.reg, sv[0]), 0);
    assert_int_equal(write(sv[1], "y", 1), 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 50), 0);
    core_close2(sv);
    ctx_fini(&c);
}

static void test_token_values_roundtrip(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    static const mio_token tokens[] = { 0, 1, UINTPTR_MAX, UINTPTR_MAX - 1, (mio_token)1 << 63 };
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = core_eventfd(1);
        assert_int_equal(mio_registry_register(c.reg, fds[i], tokens[i], MIO_READABLE), 0);
    }
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(count_token(c.ev, tokens[i]), 1);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    ctx_fini(&c);
}

/* ---- errno cases ---- */

static void test_register_twice_eexist(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int efd = core_eventfd(0);
    assert_int_equal(mio_registry_register(c.reg, efd, 1, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(c.reg, efd, 1, MIO_READABLE), -EEXIST);
    assert_int_equal(mio_registry_register(c.reg, efd, 2, MIO_WRITABLE), -EEXIST);
    /* The first registration is untouched: token 1 still reported. */
    core_eventfd_add(efd, 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 1);
    close(efd);
    ctx_fini(&c);
}

static void test_never_registered_enoent(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int efd = core_eventfd(0);
    assert_int_equal(mio_registry_reregister(c.reg, efd, 1, MIO_READABLE), -ENOENT);
    assert_int_equal(mio_registry_deregister(c.reg, efd), -ENOENT);
    /* Deregistering twice: the second is -ENOENT as well. */
    assert_int_equal(mio_registry_register(c.reg, efd, 1, MIO_READABLE), 0);
    assert_int_equal(mio_registry_deregister(c.reg, efd), 0);
    assert_int_equal(mio_registry_deregister(c.reg, efd), -ENOENT);
    assert_int_equal(mio_registry_reregister(c.reg, efd, 1, MIO_READABLE), -ENOENT);
    close(efd);
    ctx_fini(&c);
}

static void test_regular_file_eperm(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    FILE *tf = tmpfile();
    assert_non_null(tf);
    assert_int_equal(mio_registry_register(c.reg, fileno(tf), 1, MIO_READABLE), -EPERM);
    assert_int_equal(mio_registry_register(c.reg, fileno(tf), 1, MIO_WRITABLE), -EPERM);
    fclose(tf);
    int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(mio_registry_register(c.reg, fd, 1, MIO_READABLE), -EPERM);
    close(fd);
    ctx_fini(&c);
}

static void test_closed_fd_ebadf(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int fd = core_eventfd(0);
    close(fd); /* single-threaded here: the number stays unused */
    assert_int_equal(mio_registry_register(c.reg, fd, 1, MIO_READABLE), -EBADF);
    assert_int_equal(mio_registry_reregister(c.reg, fd, 1, MIO_READABLE), -EBADF);
    assert_int_equal(mio_registry_deregister(c.reg, fd), -EBADF);
    assert_int_equal(mio_registry_register(c.reg, -1, 1, MIO_READABLE), -EBADF);
    ctx_fini(&c);
}

static void test_bad_interest_and_null_einval(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int efd = core_eventfd(1);
    assert_int_equal(mio_registry_register(c.reg, efd, 1, 0), -EINVAL);
    assert_int_equal(mio_registry_register(c.reg, efd, 1, (mio_interest)0x04), -EINVAL);
    assert_int_equal(mio_registry_register(c.reg, efd, 1, (mio_interest)0x80), -EINVAL);
    assert_int_equal(mio_registry_register(c.reg, efd, 1, MIO_READABLE | (mio_interest)0x40),
                     -EINVAL);
    assert_int_equal(mio_registry_register(NULL, efd, 1, MIO_READABLE), -EINVAL);
    /* None of these registered anything. */
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    assert_int_equal(mio_registry_deregister(c.reg, efd), -ENOENT);

    assert_int_equal(mio_registry_register(c.reg, efd, 1, MIO_READABLE), 0);
    assert_int_equal(mio_registry_reregister(c.reg, efd, 1, 0), -EINVAL);
    assert_int_equal(mio_registry_reregister(NULL, efd, 1, MIO_READABLE), -EINVAL);
    assert_int_equal(mio_registry_deregister(NULL, efd), -EINVAL);
    /* The registration survived the rejected reregister. */
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 1);

    mio_registry *clone = (mio_registry *)0x1;
    assert_int_equal(mio_registry_try_clone(NULL, &clone), -EINVAL);
    assert_int_equal(mio_registry_try_clone(c.reg, NULL), -EINVAL);
    assert_int_equal(mio_registry_fd(NULL), -EINVAL);
    mio_registry_free(NULL);

    close(efd);
    ctx_fini(&c);
}

/* ---- reregister replaces token AND interest ---- */

static void test_reregister_replaces_token_and_interest(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int sv[2];
    core_socketpair(sv);

    /* READABLE with token 1: nothing to read yet, so no event. */
    assert_int_equal(mio_registry_register(c.reg, sv[0], 1, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);

    /* Switch to WRITABLE with token 2, without polling in between: writable at once, token 2. */
    assert_int_equal(mio_registry_reregister(c.reg, sv[0], 2, MIO_WRITABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    const mio_event *e = mio_events_get(c.ev, 0);
    assert_int_equal(mio_event_token(e), 2);
    assert_true(mio_event_is_writable(e));
    assert_false(mio_event_is_readable(e));

    /* Readable data arrives: not asked for any more, so no event (and never token 1). */
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 50), 0);

    /* Back to READABLE with token 3: the pending data is reported under the new token only. */
    assert_int_equal(mio_registry_reregister(c.reg, sv[0], 3, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    e = mio_events_get(c.ev, 0);
    assert_int_equal(mio_event_token(e), 3);
    assert_true(mio_event_is_readable(e));
    assert_false(mio_event_is_writable(e));

    /* Same interest, new token: still replaced. */
    assert_int_equal(mio_registry_reregister(c.reg, sv[0], 4, MIO_READABLE | MIO_WRITABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    e = mio_events_get(c.ev, 0);
    assert_int_equal(mio_event_token(e), 4);
    assert_true(mio_event_is_readable(e));
    assert_true(mio_event_is_writable(e));

    core_close2(sv);
    ctx_fini(&c);
}

/* ---- deregister drops pending readiness; registering again works ---- */

static void test_no_event_after_deregister_with_pending(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int efd = core_eventfd(0);
    assert_int_equal(mio_registry_register(c.reg, efd, 1, MIO_READABLE), 0);
    /* Readiness becomes pending in the kernel's ready list, then the fd is deregistered. */
    core_eventfd_add(efd, 1);
    assert_int_equal(mio_registry_deregister(c.reg, efd), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 50), 0);
    core_eventfd_add(efd, 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 50), 0);

    /* Registering again (different token) reports the readiness that is there. */
    assert_int_equal(mio_registry_register(c.reg, efd, 2, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 2);
    /* ... and new edges keep coming. */
    core_eventfd_add(efd, 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 2);

    /* Many register/deregister cycles with pending readiness. */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(mio_registry_deregister(c.reg, efd), 0);
        assert_int_equal(mio_registry_register(c.reg, efd, (mio_token)(100 + i), MIO_READABLE), 0);
        core_eventfd_add(efd, 1);
        assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
        assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 100 + i);
    }
    close(efd);
    ctx_fini(&c);
}

/* Deregister when the poll already harvested readiness but the next poll has not run. */
static void test_deregister_among_several_pending(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = core_eventfd(1);
        assert_int_equal(mio_registry_register(c.reg, fds[i], (mio_token)i, MIO_READABLE), 0);
    }
    /* Deregister the odd ones while all eight are pending. */
    for (int i = 1; i < 8; i += 2)
        assert_int_equal(mio_registry_deregister(c.reg, fds[i]), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 4);
    for (int i = 0; i < 8; i++)
        assert_int_equal(count_token(c.ev, (mio_token)i), i % 2 == 0 ? 1 : 0);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    ctx_fini(&c);
}

/* ---- registration from another thread while a poll blocks forever ---- */

struct late_reg {
    mio_registry *reg;
    int fd;
    atomic_int rc;
};

static void *late_register_main(void *arg)
{
    struct late_reg *l = arg;
    core_sleep_ms(150); /* let the main thread block in mio_poll_poll(-1) */
    atomic_store(&l->rc, mio_registry_register(l->reg, l->fd, 42, MIO_READABLE));
    return NULL;
}

static void test_register_from_other_thread_while_polling(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int efd = core_eventfd(1); /* already ready: registering it must wake the blocked poll */
    struct late_reg l = { .reg = c.reg, .fd = efd };
    atomic_init(&l.rc, 1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_register_main, &l), 0);
    int n = mio_poll_poll(c.poll, c.ev, -1);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&l.rc), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 42);
    close(efd);
    ctx_fini(&c);
}

/* Same through a clone of the registry (the way a registry is handed to another thread). */
static void test_register_through_clone_while_polling(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    mio_registry *clone;
    assert_int_equal(mio_registry_try_clone(c.reg, &clone), 0);
    int efd = core_eventfd(1);
    struct late_reg l = { .reg = clone, .fd = efd };
    atomic_init(&l.rc, 1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_register_main, &l), 0);
    int n = mio_poll_poll(c.poll, c.ev, -1);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&l.rc), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 42);
    mio_registry_free(clone);
    close(efd);
    ctx_fini(&c);
}

/* mio's registry_operations_are_thread_safe: several threads register, reregister, deregister their
 * own fds while the owner polls. Every call must succeed; the poll sees only live tokens. */
#define STRESS_THREADS 4
#define STRESS_ROUNDS 500

struct stress {
    mio_registry *reg;
    int id;
    atomic_int failures;
    atomic_int *done;
};

static void *stress_main(void *arg)
{
    struct stress *s = arg;
    int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd == -1) {
        atomic_fetch_add(&s->failures, 1);
        atomic_fetch_add(s->done, 1);
        return NULL;
    }
    mio_token base = (mio_token)(s->id + 1) * 1000000u;
    for (int i = 0; i < STRESS_ROUNDS; i++) {
        if (mio_registry_register(s->reg, efd, base + (mio_token)i, MIO_READABLE) != 0)
            atomic_fetch_add(&s->failures, 1);
        if (mio_registry_reregister(s->reg, efd, base + (mio_token)i,
                                    MIO_READABLE | MIO_WRITABLE) != 0)
            atomic_fetch_add(&s->failures, 1);
        if (mio_registry_deregister(s->reg, efd) != 0)
            atomic_fetch_add(&s->failures, 1);
    }
    close(efd);
    atomic_fetch_add(s->done, 1);
    return NULL;
}

static void test_registry_thread_safety(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    atomic_int done;
    atomic_init(&done, 0);
    struct stress s[STRESS_THREADS];
    pthread_t th[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        s[i].reg = c.reg;
        s[i].id = i;
        s[i].done = &done;
        atomic_init(&s[i].failures, 0);
        assert_int_equal(pthread_create(&th[i], NULL, stress_main, &s[i]), 0);
    }
    unsigned long long deadline = mio_test_now_ms() + 60000;
    while (atomic_load(&done) < STRESS_THREADS && mio_test_now_ms() < deadline) {
        int n = mio_poll_poll(c.poll, c.ev, 10);
        assert_true(n >= 0);
        MIO_EVENTS_FOREACH(const mio_event *e, c.ev)
        {
            mio_token t = mio_event_token(e);
            assert_true(t >= 1000000u && t < (STRESS_THREADS + 1) * 1000000u);
            assert_true(t % 1000000u < STRESS_ROUNDS);
        }
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&s[i].failures), 0);
    }
    /* Everything was deregistered (and closed): nothing is left to report. */
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    ctx_fini(&c);
}

/* "After deregister returns, no later poll reports that fd's token", with the deregistering thread
 * racing the polling one: a thread registers a ready eventfd under a fresh token each round, then
 * deregisters it and publishes the round number. A poll that began after round r was published
 * must never report a token <= r. */
#define DEREG_ROUNDS 2000

struct dereg_race {
    mio_registry *reg;
    atomic_ulong published; /* last round whose deregister returned */
    atomic_int failures;
    atomic_bool stop;
};

static void *dereg_race_main(void *arg)
{
    struct dereg_race *d = arg;
    int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd == -1) {
        atomic_fetch_add(&d->failures, 1);
        atomic_store(&d->stop, true);
        return NULL;
    }
    for (unsigned long r = 1; r <= DEREG_ROUNDS; r++) {
        if (mio_registry_register(d->reg, efd, (mio_token)r, MIO_READABLE) != 0)
            atomic_fetch_add(&d->failures, 1);
        if (r % 3 == 0) /* give the poll a chance to harvest it first */
            sched_yield();
        if (mio_registry_deregister(d->reg, efd) != 0)
            atomic_fetch_add(&d->failures, 1);
        atomic_store(&d->published, r);
    }
    close(efd);
    atomic_store(&d->stop, true);
    return NULL;
}

static void test_deregister_races_poll(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    struct dereg_race d = { .reg = c.reg };
    atomic_init(&d.published, 0);
    atomic_init(&d.failures, 0);
    atomic_init(&d.stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, dereg_race_main, &d), 0);
    unsigned long seen = 0, polls = 0;
    unsigned long long deadline = mio_test_now_ms() + 60000;
    while (!atomic_load(&d.stop) && mio_test_now_ms() < deadline) {
        unsigned long before = atomic_load(&d.published);
        int n = mio_poll_poll(c.poll, c.ev, 1);
        assert_true(n >= 0);
        polls++;
        MIO_EVENTS_FOREACH(const mio_event *e, c.ev)
        {
            mio_token t = mio_event_token(e);
            if (t <= before)
                fail_msg("token %lu reported by a poll that started after its deregister "
                         "(round %lu published)",
                         (unsigned long)t, before);
            seen++;
        }
    }
    pthread_join(th, NULL);
    assert_true(atomic_load(&d.stop));
    assert_int_equal(atomic_load(&d.failures), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    (void)seen;
    (void)polls;
    ctx_fini(&c);
}

/* ---- try_clone ---- */

static void test_try_clone(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int before = mio_test_fd_count();
    mio_registry *clone, *clone2;
    assert_int_equal(mio_registry_try_clone(c.reg, &clone), 0);
    assert_non_null(clone);
    assert_int_equal(mio_test_fd_count(), before + 1);
    int cfd = mio_registry_fd(clone);
    assert_true(cfd >= 0);
    assert_true(cfd != mio_poll_fd(c.poll));
    assert_true(cfd != mio_registry_fd(c.reg));
    assert_true(fcntl(cfd, F_GETFD) & FD_CLOEXEC);

    /* A clone of a clone also works. */
    assert_int_equal(mio_registry_try_clone(clone, &clone2), 0);
    assert_int_equal(mio_test_fd_count(), before + 2);

    /* Registered through the clone, reported by the poll (same instance). */
    int a = core_eventfd(0), b = core_eventfd(0);
    assert_int_equal(mio_registry_register(clone, a, 1, MIO_READABLE), 0);
    assert_int_equal(mio_registry_register(clone2, b, 2, MIO_READABLE), 0);
    /* Same instance: the poll's own registry sees the registration. */
    assert_int_equal(mio_registry_register(c.reg, a, 1, MIO_READABLE), -EEXIST);
    core_eventfd_add(a, 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 1);

    /* Freeing the clones closes their fds and keeps the poll and its registrations working. */
    mio_registry_free(clone2);
    mio_registry_free(clone);
    assert_int_equal(mio_test_fd_count(), before + 2); /* a and b */
    core_eventfd_add(a, 1);
    core_eventfd_add(b, 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 2);
    assert_int_equal(count_token(c.ev, 1), 1);
    assert_int_equal(count_token(c.ev, 2), 1);
    assert_int_equal(mio_registry_reregister(c.reg, a, 5, MIO_READABLE), 0);
    assert_int_equal(mio_registry_deregister(c.reg, b), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    assert_int_equal(mio_event_token(mio_events_get(c.ev, 0)), 5);

    close(a);
    close(b);
    ctx_fini(&c);
}

/* A clone outlives the poll: it holds its own dup of the epoll fd. */
static void test_clone_outlives_poll(void **state)
{
    (void)state;
    mio_poll *p;
    mio_registry *clone;
    assert_int_equal(mio_poll_new(&p), 0);
    assert_int_equal(mio_registry_try_clone(mio_poll_registry(p), &clone), 0);
    mio_poll_free(p);
    int efd = core_eventfd(0);
    assert_int_equal(mio_registry_register(clone, efd, 1, MIO_READABLE), 0);
    assert_int_equal(mio_registry_deregister(clone, efd), 0);
    close(efd);
    mio_registry_free(clone);
}

/* mio_registry_free on the poll's own registry is documented as ignored. */
static void test_free_own_registry_ignored(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int before = mio_test_fd_count();
    mio_registry_free(c.reg);
    assert_int_equal(mio_test_fd_count(), before);
    int efd = core_eventfd(1);
    assert_int_equal(mio_registry_register(mio_poll_registry(c.poll), efd, 1, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 1000), 1);
    close(efd);
    ctx_fini(&c);
}

/* ---- the epoll flags behind each interest ---- */

/* READABLE includes EPOLLRDHUP: a peer's shutdown(SHUT_WR) shows as read-closed. */
static void test_readable_reports_peer_shutdown(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int sv[2];
    core_socketpair(sv);
    assert_int_equal(mio_registry_register(c.reg, sv[0], 1, MIO_READABLE), 0);
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
    const mio_event *e = wait_token(&c, 1, 5000);
    assert_non_null(e);
    assert_true(mio_event_is_readable(e));
    assert_true(mio_event_is_read_closed(e));
    assert_false(mio_event_is_write_closed(e));
    assert_false(mio_event_is_error(e));

    /* The same with data in front of the FIN: still read-closed in the same event. */
    int sv2[2];
    core_socketpair(sv2);
    assert_int_equal(mio_registry_register(c.reg, sv2[0], 2, MIO_READABLE), 0);
    assert_int_equal(write(sv2[1], "last", 4), 4);
    assert_int_equal(shutdown(sv2[1], SHUT_WR), 0);
    /* Data and FIN may arrive as one or two edges; the last event must say read-closed. */
    bool closed = false;
    for (int i = 0; i < 4 && !closed; i++) {
        e = wait_token(&c, 2, 5000);
        assert_non_null(e);
        assert_true(mio_event_is_readable(e));
        closed = mio_event_is_read_closed(e);
    }
    assert_true(closed);

    core_close2(sv);
    core_close2(sv2);
    ctx_fini(&c);
}

static void test_peer_close_both_closed(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int sv[2];
    core_socketpair(sv);
    assert_int_equal(
        mio_registry_register(c.reg, sv[0], 1, mio_interest_add(MIO_READABLE, MIO_WRITABLE)), 0);
    assert_non_null(wait_token(&c, 1, 5000)); /* the initial writable edge */
    close(sv[1]);
    const mio_event *e = wait_token(&c, 1, 5000);
    assert_non_null(e);
    assert_true(mio_event_is_read_closed(e));
    assert_true(mio_event_is_write_closed(e));
    close(sv[0]);
    ctx_fini(&c);
}

static void test_pipe_closed_ends(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int p1[2], p2[2];
    assert_int_equal(pipe2(p1, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(p2, O_NONBLOCK | O_CLOEXEC), 0);

    /* Writer end closed -> reader is read-closed (EPOLLHUP). */
    assert_int_equal(mio_registry_register(c.reg, p1[0], 1, MIO_READABLE), 0);
    close(p1[1]);
    const mio_event *e = wait_token(&c, 1, 5000);
    assert_non_null(e);
    assert_true(mio_event_is_read_closed(e));

    /* Reader end closed -> writer is write-closed and errored (EPOLLERR). */
    assert_int_equal(mio_registry_register(c.reg, p2[1], 2, MIO_WRITABLE), 0);
    assert_non_null(wait_token(&c, 2, 5000)); /* initial writable edge */
    close(p2[0]);
    e = wait_token(&c, 2, 5000);
    assert_non_null(e);
    assert_true(mio_event_is_write_closed(e));
    assert_true(mio_event_is_error(e));

    close(p1[0]);
    close(p2[1]);
    ctx_fini(&c);
}

static void test_writable_socketpair_immediately(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int sv[2];
    core_socketpair(sv);
    assert_int_equal(mio_registry_register(c.reg, sv[0], 7, MIO_WRITABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 1);
    const mio_event *e = mio_events_get(c.ev, 0);
    assert_int_equal(mio_event_token(e), 7);
    assert_true(mio_event_is_writable(e));
    assert_false(mio_event_is_readable(e));
    assert_false(mio_event_is_read_closed(e));
    assert_false(mio_event_is_write_closed(e));
    core_close2(sv);
    ctx_fini(&c);
}

/* READABLE alone does not report writability. */
static void test_readable_only_no_writable(void **state)
{
    (void)state;
    struct ctx c;
    ctx_init(&c);
    int sv[2];
    core_socketpair(sv);
    assert_int_equal(mio_registry_register(c.reg, sv[0], 7, MIO_READABLE), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 50), 0);
    core_close2(sv);
    ctx_fini(&c);
}

/* PRIORITY maps to EPOLLPRI: TCP urgent data on loopback (plain libc, not the net module). */
static int tcp_loopback_pair(int *client, int *server)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l == -1)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof a) == -1 || listen(l, 1) == -1 ||
        getsockname(l, (struct sockaddr *)&a, &alen) == -1) {
        close(l);
        return -1;
    }
    *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*client == -1 || connect(*client, (struct sockaddr *)&a, sizeof a) == -1) {
        if (*client != -1)
            close(*client);
        close(l);
        return -1;
    }
    *server = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    close(l);
    if (*server == -1) {
        close(*client);
        return -1;
    }
    return 0;
}

static void test_priority_interest(void **state)
{
    (void)state;
    int cl = -1, sv = -1;
    if (tcp_loopback_pair(&cl, &sv) != 0) {
        skip(); /* no loopback TCP in this environment */
        return;
    }
    struct ctx c;
    ctx_init(&c);
    assert_int_equal(mio_registry_register(c.reg, sv, 3, MIO_PRIORITY), 0);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 0), 0);
    /* Ordinary data does not concern a PRIORITY-only registration. */
    assert_int_equal(send(cl, "n", 1, MSG_NOSIGNAL), 1);
    assert_int_equal(mio_poll_poll(c.poll, c.ev, 100), 0);
    /* Urgent data does. */
    assert_int_equal(send(cl, "u", 1, MSG_OOB | MSG_NOSIGNAL), 1);
    const mio_event *e = wait_token(&c, 3, 5000);
    assert_non_null(e);
    assert_true(mio_event_is_priority(e));
    assert_true(mio_event_is_readable(e));
    close(cl);
    close(sv);
    ctx_fini(&c);
}

int main(void)
{
    mio_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_register_poll_deregister),
        CORE_TEST(test_token_values_roundtrip),
        CORE_TEST(test_register_twice_eexist),
        CORE_TEST(test_never_registered_enoent),
        CORE_TEST(test_regular_file_eperm),
        CORE_TEST(test_closed_fd_ebadf),
        CORE_TEST(test_bad_interest_and_null_einval),
        CORE_TEST(test_reregister_replaces_token_and_interest),
        CORE_TEST(test_no_event_after_deregister_with_pending),
        CORE_TEST(test_deregister_among_several_pending),
        CORE_TEST(test_register_from_other_thread_while_polling),
        CORE_TEST(test_register_through_clone_while_polling),
        CORE_TEST(test_registry_thread_safety),
        CORE_TEST(test_deregister_races_poll),
        CORE_TEST(test_try_clone),
        CORE_TEST(test_clone_outlives_poll),
        CORE_TEST(test_free_own_registry_ignored),
        CORE_TEST(test_readable_reports_peer_shutdown),
        CORE_TEST(test_peer_close_both_closed),
        CORE_TEST(test_pipe_closed_ends),
        CORE_TEST(test_writable_socketpair_immediately),
        CORE_TEST(test_readable_only_no_writable),
        CORE_TEST(test_priority_interest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
