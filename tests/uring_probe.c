/* Exits 0 when a reactor can be created on the io_uring backend, else prints why and exits 1
 * (tests/run-uring turns that into a skip). */
#include <stdio.h>
#include <mio/mio.h>

int main(void)
{
    mio_reactor_opts o = {.backend = MIO_BACKEND_IO_URING};
    mio_reactor *r;
    int err = mio_reactor_new(&o, &r);

    if (err < 0) {
        printf("mio_reactor_new: %s\n", mio_strerror(err));
        return 1;
    }
    mio_reactor_free(r);
    return 0;
}
