#include <string.h>

#include <mio/common.h>

const char *mio_strerror(int result)
{
    if (result >= 0)
        return "success";
    /* strerror's text for a known errno is a static string in glibc; the buffer only serves the
     * "Unknown error" case, and is per thread so concurrent callers cannot tear it. */
    static _Thread_local char buf[64];
    const char *s = strerror_r(-result, buf, sizeof buf);
    return s != NULL ? s : "unknown error";
}
