/* A tiny snprintf-style accumulator for the *_format functions (mio_interest_format,
 * mio_event_format, mio_addr_format): appends pieces, truncates safely, and reports the length the
 * whole text needs. Caller's buffer and thread. */
#ifndef MIO_INTERNAL_FORMAT_H
#define MIO_INTERNAL_FORMAT_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

struct mio__fmt {
    char *buf;
    size_t len;  /* capacity of buf */
    size_t need; /* bytes the full text needs, without the NUL */
    int flags;   /* number of "A | B" items written */
};

#define MIO__FMT_INIT(b, l) {(b), (b) == NULL ? 0 : (l), 0, 0}

/* Appends the n bytes at s (as much as fits before the NUL's place). */
static inline void mio__fmt_addn(struct mio__fmt *f, const char *s, size_t n)
{
    if (f->len > 0 && f->need < f->len - 1) {
        size_t room = f->len - 1 - f->need;
        memcpy(f->buf + f->need, s, n < room ? n : room);
    }
    f->need += n;
}

static inline void mio__fmt_add(struct mio__fmt *f, const char *s)
{
    mio__fmt_addn(f, s, strlen(s));
}

static inline void mio__fmt_putc(struct mio__fmt *f, char c)
{
    mio__fmt_addn(f, &c, 1);
}

static inline void mio__fmt_flag(struct mio__fmt *f, const char *name)
{
    if (f->flags++ > 0)
        mio__fmt_add(f, " | ");
    mio__fmt_add(f, name);
}

static inline int mio__fmt_end(struct mio__fmt *f)
{
    if (f->len > 0)
        f->buf[f->need < f->len ? f->need : f->len - 1] = '\0';
    return (int)f->need;
}

#endif
