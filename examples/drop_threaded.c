/* mio-drop-threaded: accepts, hands each connection to a worker, and the worker closes it at
 * once. Measures the accept and hand-off path alone. */
#include "pool_main.h"

static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    (void)worker;
    (void)peer;
    (void)arg;
    close(fd);
}

int main(int argc, char **argv)
{
    return pool_main(argc, argv, "Accepts connections and closes them at once.", on_accept);
}
