/* mio_interest set operations and formatting: pure functions, any thread. */
#include <stdio.h>

#include <mio/interest.h>

#include "internal/format.h"

mio_interest mio_interest_add(mio_interest a, mio_interest b)
{
    return (mio_interest)(a | b);
}

mio_interest mio_interest_remove(mio_interest a, mio_interest b)
{
    return (mio_interest)(a & (mio_interest)~b);
}

bool mio_interest_is_readable(mio_interest i)
{
    return (i & MIO_READABLE) != 0;
}

bool mio_interest_is_writable(mio_interest i)
{
    return (i & MIO_WRITABLE) != 0;
}

bool mio_interest_is_priority(mio_interest i)
{
    return (i & MIO_PRIORITY) != 0;
}

int mio_interest_format(mio_interest i, char *buf, size_t len)
{
    struct mio__fmt f = MIO__FMT_INIT(buf, len);
    if (i & MIO_READABLE)
        mio__fmt_flag(&f, "READABLE");
    if (i & MIO_WRITABLE)
        mio__fmt_flag(&f, "WRITABLE");
    if (i & MIO_PRIORITY)
        mio__fmt_flag(&f, "PRIORITY");
    if (f.flags == 0)
        mio__fmt_add(&f, "(empty)");
    return mio__fmt_end(&f);
}
