/* mio_strerror: any thread (the text of an unknown errno lives in a per-thread buffer). */
#include <limits.h>
#include <string.h>

#include <mio/common.h>

const char *mio_strerror(int result)
{
    if (result >= 0)
        return "success";
    /* -INT_MIN is not an int: no errno has that value anyway. */
    if (result == INT_MIN)
        return "unknown error";
    /* strerror's text for a known errno is a static string in glibc; the buffer only serves the
     * "Unknown error" case, and is per thread so concurrent callers cannot tear it. */
    static _Thread_local char buf[64];
    const char *s = strerror_r(-result, buf, sizeof buf);
    return s != NULL ? s : "unknown error";
}
