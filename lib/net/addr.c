/* Text <-> socket address: "a.b.c.d:port", "[v6%scope]:port", "unix:/path", "unix:@abstract".
 *
 * The parser is strict: the whole text must be consumed, ports are 1 to 5 decimal digits <= 65535,
 * no whitespace, no DNS. It parses into a local and copies to *out only on success, so a caller's
 * struct is never half-written. Abstract unix names may hold any byte, so the formatter escapes
 * control bytes, DEL and backslash as \xHH and the parser decodes them: parse -> format -> parse is
 * the identity for every address either side produces. Any thread: no state. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include "internal/format.h"
#include "net/net_int.h"

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

bool mio__addr_valid(const mio_addr *addr)
{
    if (addr == NULL)
        return false;
    switch (addr->u.sa.sa_family) {
    case AF_INET:
        return addr->len >= sizeof(struct sockaddr_in);
    case AF_INET6:
        return addr->len >= sizeof(struct sockaddr_in6);
    case AF_UNIX:
        return addr->len >= sizeof(sa_family_t) && addr->len <= sizeof(struct sockaddr_un);
    default:
        return false;
    }
}

void mio__addr_from_kernel(mio_addr *out, const struct sockaddr_storage *ss, socklen_t len)
{
    memset(out, 0, sizeof *out);
    if (len < sizeof(sa_family_t)) {
        /* Linux reports an unbound unix datagram sender with an empty address. */
        out->u.un.sun_family = AF_UNIX;
        out->len = sizeof(sa_family_t);
        return;
    }
    if (len > sizeof out->u.ss)
        len = sizeof out->u.ss;
    memcpy(&out->u.ss, ss, len);
    out->len = len;
}

/* Parses 1-5 decimal digits <= 65535 that make up the whole of s. */
static int parse_port(const char *s, in_port_t *out)
{
    unsigned long v = 0;
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 5)
            return -EINVAL;
        v = v * 10 + (unsigned long)(s[n] - '0');
    }
    if (n == 0 || v > 65535)
        return -EINVAL;
    *out = htons((in_port_t)v);
    return 0;
}

/* Copies the n bytes at s into dst as a string. -EINVAL when n is 0 or the string does not fit
 * in cap bytes. */
static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return -EINVAL;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int parse_v4(const char *text, mio_addr *a)
{
    const char *colon = strchr(text, ':');
    char host[INET_ADDRSTRLEN];

    if (colon == NULL || copy_part(host, sizeof host, text, (size_t)(colon - text)) < 0)
        return -EINVAL;
    a->u.in.sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &a->u.in.sin_addr) != 1)
        return -EINVAL;
    if (parse_port(colon + 1, &a->u.in.sin_port) < 0)
        return -EINVAL;
    a->len = sizeof(struct sockaddr_in);
    return 0;
}

/* A scope is a decimal interface index or an interface name; only link-local and multicast
 * addresses carry one. */
static int parse_scope(const char *s, size_t n, const struct in6_addr *ip, uint32_t *out)
{
    char name[IF_NAMESIZE];
    unsigned long long v = 0;
    bool numeric = true;

    if (copy_part(name, sizeof name, s, n) < 0)
        return -EINVAL;
    if (!IN6_IS_ADDR_LINKLOCAL(ip) && !IN6_IS_ADDR_MULTICAST(ip))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            numeric = false;
            break;
        }
        v = v * 10 + (unsigned long long)(s[i] - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
    }
    if (numeric) {
        *out = (uint32_t)v;
        return 0;
    }
    if (strchr(name, '/') != NULL)
        return -EINVAL;
    *out = if_nametoindex(name);
    return *out == 0 ? -EINVAL : 0;
}

static int parse_v6(const char *text, mio_addr *a)
{
    const char *close = strchr(text, ']');
    const char *pct, *host_end;
    char host[INET6_ADDRSTRLEN];

    if (text[0] != '[' || close == NULL || close[1] != ':')
        return -EINVAL;
    pct = memchr(text + 1, '%', (size_t)(close - text - 1));
    host_end = pct != NULL ? pct : close;
    if (copy_part(host, sizeof host, text + 1, (size_t)(host_end - (text + 1))) < 0)
        return -EINVAL;
    a->u.in6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, host, &a->u.in6.sin6_addr) != 1)
        return -EINVAL;
    if (pct != NULL && parse_scope(pct + 1, (size_t)(close - pct - 1), &a->u.in6.sin6_addr,
                                   &a->u.in6.sin6_scope_id) < 0)
        return -EINVAL;
    if (parse_port(close + 2, &a->u.in6.sin6_port) < 0)
        return -EINVAL;
    a->len = sizeof(struct sockaddr_in6);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_unix(const char *s, mio_addr *a)
{
    struct sockaddr_un *un = &a->u.un;
    size_t n = 0;

    un->sun_family = AF_UNIX;
    if (s[0] == '\0') { /* "unix:" is the unnamed address, the inverse of its formatting */
        a->len = sizeof(sa_family_t);
        return 0;
    }
    if (s[0] != '@') {
        size_t pl = strlen(s);
        if (pl >= SUN_PATH_MAX) /* room for the NUL is required */
            return -EINVAL;
        memcpy(un->sun_path, s, pl + 1);
        a->len = (socklen_t)(SUN_OFF + pl + 1);
        return 0;
    }
    /* Abstract: sun_path[0] = NUL, then the name bytes; \xHH escapes any byte. */
    for (s++; *s != '\0'; n++) {
        int c = (unsigned char)*s;
        if (n + 1 >= SUN_PATH_MAX)
            return -EINVAL;
        if (c == '\\') {
            int hi, lo;
            if (s[1] != 'x' || (hi = hexval(s[2])) < 0 || (lo = hexval(s[3])) < 0)
                return -EINVAL;
            c = hi << 4 | lo;
            s += 4;
        } else {
            s++;
        }
        un->sun_path[n + 1] = (char)c;
    }
    if (n == 0)
        return -EINVAL;
    a->len = (socklen_t)(SUN_OFF + 1 + n);
    return 0;
}

int mio_addr_parse(const char *text, mio_addr *out)
{
    mio_addr a;
    int r;

    if (text == NULL || out == NULL)
        return -EINVAL;
    memset(&a, 0, sizeof a);
    if (strncmp(text, "unix:", 5) == 0)
        r = parse_unix(text + 5, &a);
    else if (text[0] == '[')
        r = parse_v6(text, &a);
    else
        r = parse_v4(text, &a);
    if (r < 0)
        return r;
    *out = a;
    return 0;
}

static void format_port(struct mio__fmt *b, in_port_t port)
{
    char p[8];
    int n = snprintf(p, sizeof p, ":%u", (unsigned)ntohs(port));
    mio__fmt_addn(b, p, (size_t)n);
}

static void format_unix(struct mio__fmt *b, const mio_addr *a)
{
    static const char hex[] = "0123456789abcdef";
    const struct sockaddr_un *un = &a->u.un;
    size_t n = a->len > SUN_OFF ? a->len - SUN_OFF : 0;

    mio__fmt_add(b, "unix:");
    if (n == 0)
        return;
    if (un->sun_path[0] != '\0') { /* pathname; the kernel may omit the NUL at full length */
        mio__fmt_addn(b, un->sun_path, strnlen(un->sun_path, n));
        return;
    }
    mio__fmt_putc(b, '@');
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)un->sun_path[i];
        if (c < 0x20 || c == 0x7f || c == '\\') {
            mio__fmt_add(b, "\\x");
            mio__fmt_putc(b, hex[c >> 4]);
            mio__fmt_putc(b, hex[c & 15]);
        } else {
            mio__fmt_putc(b, (char)c);
        }
    }
}

int mio_addr_format(const mio_addr *addr, char *buf, size_t len)
{
    struct mio__fmt b = MIO__FMT_INIT(buf, len);
    char host[INET6_ADDRSTRLEN];

    if (!mio__addr_valid(addr))
        return -EINVAL;
    switch (addr->u.sa.sa_family) {
    case AF_INET:
        if (inet_ntop(AF_INET, &addr->u.in.sin_addr, host, sizeof host) == NULL)
            return -EINVAL;
        mio__fmt_add(&b, host);
        format_port(&b, addr->u.in.sin_port);
        break;
    case AF_INET6:
        if (inet_ntop(AF_INET6, &addr->u.in6.sin6_addr, host, sizeof host) == NULL)
            return -EINVAL;
        mio__fmt_putc(&b, '[');
        mio__fmt_add(&b, host);
        if (addr->u.in6.sin6_scope_id != 0) {
            char scope[IF_NAMESIZE + 1];
            uint32_t id = addr->u.in6.sin6_scope_id;
            /* A name only when it maps back to the same index and cannot be read as a number. */
            if (if_indextoname(id, scope) == NULL || (scope[0] >= '0' && scope[0] <= '9') ||
                if_nametoindex(scope) != id)
                snprintf(scope, sizeof scope, "%u", (unsigned)id);
            mio__fmt_putc(&b, '%');
            mio__fmt_add(&b, scope);
        }
        mio__fmt_putc(&b, ']');
        format_port(&b, addr->u.in6.sin6_port);
        break;
    default: /* AF_UNIX, checked by mio__addr_valid */
        format_unix(&b, addr);
        break;
    }
    return mio__fmt_end(&b);
}
