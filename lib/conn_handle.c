/* Thread-safe conn handles: a value naming a conn (its reactor and its token) that any thread may
 * copy and use to have work done on the conn's own reactor. Every call travels as a task through
 * mio_reactor_post (lock-free, FIFO per producer, wake elision: a busy reactor gets it without a
 * syscall). On arrival the token is looked up in the reactor's handler slots: a conn that closed
 * meanwhile, or whose slot now holds another handler (the generation differs), is never touched.
 * The handle's reactor must outlive the calls (a pool's workers live until mio_pool_free). */
#include <errno.h>
#include <string.h>
#include <mio/conn.h>
#include "internal/conn_int.h"

struct handle_msg {
    mio_conn_handle h;
    mio_conn_call_fn fn; /* NULL: a write of len bytes, or a close when len is SIZE_MAX */
    void *arg;
    size_t len;
    char data[];
};

#define MSG_CLOSE SIZE_MAX

mio_conn_handle mio_conn_handle_get(const mio_conn *c)
{
    mio_conn_handle h = {NULL, 0};

    if (c != NULL) {
        h.reactor = c->r;
        h.token = (uint64_t)mio__conn_token(c);
    }
    return h;
}

/* Reactor's thread: the live conn a handle names, or NULL (closed, closing, or slot reused). */
static mio_conn *handle_conn(mio_conn_handle h)
{
    mio_conn *c = mio__reactor_lookup(h.reactor, (mio_token)h.token, mio__conn_on_io);

    return c != NULL && !(c->flags & (MIO__CF_DEAD | MIO__CF_CLOSING)) ? c : NULL;
}

static void handle_task(mio_reactor *r, void *arg)
{
    struct handle_msg *m = arg;
    mio_conn *c = handle_conn(m->h);

    (void)r;
    if (m->fn != NULL)
        m->fn(c, m->arg);
    else if (c != NULL && m->len == MSG_CLOSE)
        mio_conn_close(c);
    else if (c != NULL)
        (void)mio_conn_write(c, m->data, m->len); /* a failure closes the conn by itself */
    mio__free(0, m);
}

static int handle_post(mio_conn_handle h, mio_conn_call_fn fn, void *arg, const void *data,
                       size_t len)
{
    size_t extra = data != NULL ? len : 0;
    struct handle_msg *m;
    int err;

    if (h.reactor == NULL || h.token == 0 || (len > 0 && len != MSG_CLOSE && data == NULL))
        return -EINVAL;
    if (extra > SIZE_MAX - sizeof(*m))
        return -ENOMEM;
    /* Allocated here, freed on the reactor's thread: the default arena, which any thread uses. */
    m = mio__alloc(0, sizeof(*m) + extra);
    if (m == NULL)
        return -ENOMEM;
    m->h = h;
    m->fn = fn;
    m->arg = arg;
    m->len = len;
    if (extra > 0)
        memcpy(m->data, data, extra);
    err = mio_reactor_post(h.reactor, handle_task, m);
    if (err < 0)
        mio__free(0, m);
    return err;
}

int mio_conn_handle_call(mio_conn_handle h, mio_conn_call_fn fn, void *arg)
{
    if (fn == NULL)
        return -EINVAL;
    return handle_post(h, fn, arg, NULL, 0);
}

int mio_conn_handle_write(mio_conn_handle h, const void *data, size_t len)
{
    if (len == MSG_CLOSE)
        return -EINVAL;
    if (len == 0)
        return h.reactor != NULL && h.token != 0 ? 0 : -EINVAL;
    return handle_post(h, NULL, NULL, data, len);
}

int mio_conn_handle_close(mio_conn_handle h)
{
    return handle_post(h, NULL, NULL, NULL, MSG_CLOSE);
}
