/* The acceptor's seam for the results of its accepts on the ring: see internal/pool_int.h
 * (mio__pool_ring_accept_result) for why it has a file of its own. */
#include "internal/pool_int.h"

int mio__pool_ring_accept_result(int lfd, int res)
{
    (void)lfd;
    return res;
}
