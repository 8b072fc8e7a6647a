/* Waker: an eventfd registered READABLE (edge-triggered). Each write makes the fd readable anew,
 * so every wake after a poll yields a new event without the owner ever reading the counter; the
 * counter is drained only when it would overflow, by mio_waker_wake itself. mio_waker_wake: any
 * thread; new and free: the owner's thread. */
#include <errno.h>
#include <unistd.h>

#include <mio/waker.h>

#include "internal/mem.h"
#include "internal/sys.h"

struct mio_waker {
    int fd;
};

int mio_waker_new(mio_registry *reg, mio_token token, mio_waker **out)
{
    mio_waker *w;
    int fd, rc;
    if (reg == NULL || out == NULL)
        return -EINVAL;
    w = mio__alloc(0, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    fd = mio__eventfd_create();
    if (fd < 0) {
        rc = fd;
        goto err_free;
    }
    rc = mio_registry_register(reg, fd, token, MIO_READABLE);
    if (rc < 0)
        goto err_close;
    w->fd = fd;
    *out = w;
    return 0;

err_close:
    close(fd);
err_free:
    mio__free(0, w);
    return rc;
}

int mio_waker_wake(mio_waker *waker)
{
    int rc;
    if (waker == NULL)
        return -EINVAL;
    rc = mio__eventfd_write(waker->fd, 1);
    if (rc == -EAGAIN) {
        /* The counter is at its maximum: drain it and write again. The fd stays readable-edge
         * triggered because the write below changes its state once more. */
        (void)mio__eventfd_read(waker->fd, NULL);
        rc = mio__eventfd_write(waker->fd, 1);
    }
    return rc;
}

void mio_waker_free(mio_waker *waker)
{
    if (waker == NULL)
        return;
    close(waker->fd);
    mio__free(0, waker);
}
