/* libFuzzer harness for the address grammar: mio_addr_parse on any bytes never crashes, never
 * writes *out on failure, and for every text it accepts, format -> parse is the identity, the
 * formatted text fits MIO_ADDR_STRLEN, and formatting into every shorter buffer truncates like
 * snprintf (same return, NUL-terminated, prefix of the full text). Built by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mio/mio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_addr: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), full[MIO_ADDR_STRLEN], small[MIO_ADDR_STRLEN];
    mio_addr a, b, untouched;
    int rc, n;

    memcpy(text, data, size);
    text[size] = '\0';
    memset(&a, 0xa5, sizeof a);
    untouched = a;
    rc = mio_addr_parse(text, &a);
    if (rc < 0) {
        check(rc == -EINVAL, "parse failed with something other than -EINVAL");
        check(memcmp(&a, &untouched, sizeof a) == 0, "failed parse wrote *out");
        free(text);
        return 0;
    }
    check(rc == 0, "parse returned > 0");
    n = mio_addr_format(&a, full, sizeof full);
    check(n > 0 && n < (int)sizeof full, "formatted text does not fit MIO_ADDR_STRLEN");
    check(strlen(full) == (size_t)n, "format length and text disagree");
    check(mio_addr_parse(full, &b) == 0, "formatted text does not parse");
    check(b.len == a.len && memcmp(&a.u, &b.u, a.len) == 0, "format -> parse changed the address");
    for (int len = 0; len <= n; len++) {
        memset(small, 'Z', sizeof small);
        check(mio_addr_format(&a, small, (size_t)len) == n, "truncated format changed its result");
        if (len > 0) {
            check(small[len - 1] == '\0', "truncated format not NUL-terminated");
            check(memcmp(small, full, (size_t)len - 1) == 0, "truncated text is not a prefix");
        }
        check(small[len] == 'Z', "format wrote past len");
    }
    check(mio_addr_format(&a, NULL, 0) == n, "format(NULL, 0) is not the needed length");
    free(text);
    return 0;
}
