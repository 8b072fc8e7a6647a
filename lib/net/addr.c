/* Text <-> socket address: "a.b.c.d:port", "[v6%scope]:port", "unix:/path", "unix:@abstract".
 *
 * The parser is strict: the whole text must be consumed, ports are 1 to 5 decimal digits <= 65535,
 * no whitespace, no DNS. It parses into a local and copies to *out only on success, so a caller's
 * struct is never half-written. Abstract unix names may hold any byte, so the formatter escapes
 * control bytes, DEL and backslash as \xHH and the parser decodes them: parse -> format -> parse is
 * the identity for every address either side produces. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

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

static int parse_v4(const char *text, mio_addr *a)
{
    const char *colon = strchr(text, ':');
    char host[INET_ADDRSTRLEN];
    size_t hl;

    if (colon == NULL)
        return -EINVAL;
    hl = (size_t)(colon - text);
    if (hl == 0 || hl >= sizeof host)
        return -EINVAL;
    memcpy(host, text, hl);
    host[hl] = '\0';
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

    if (n == 0 || n >= sizeof name)
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
    memcpy(name, s, n);
    name[n] = '\0';
    if (strchr(name, '/') != NULL)
        return -EINVAL;
    *out = if_nametoindex(name);
    return *out == 0 ? -EINVAL : 0;
}

static int parse_v6(const char *text, mio_addr *a)
{
    const char *close = strchr(text, ']');
    const char *pct;
    char host[INET6_ADDRSTRLEN];
    size_t hl;

    if (text[0] != '[' || close == NULL || close[1] != ':')
        return -EINVAL;
    pct = memchr(text + 1, '%', (size_t)(close - text - 1));
    hl = (size_t)((pct != NULL ? pct : close) - (text + 1));
    if (hl == 0 || hl >= sizeof host)
        return -EINVAL;
    memcpy(host, text + 1, hl);
    host[hl] = '\0';
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

/* Appends to a snprintf-style buffer, tracking the full length wanted. */
struct sbuf {
    char *buf;
    size_t len;
    size_t pos;
};

static void sb_putc(struct sbuf *b, char c)
{
    if (b->pos + 1 < b->len)
        b->buf[b->pos] = c;
    b->pos++;
}

static void sb_puts(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_putc(b, s[i]);
}

static int sb_finish(struct sbuf *b)
{
    if (b->len > 0)
        b->buf[b->pos < b->len ? b->pos : b->len - 1] = '\0';
    return (int)b->pos;
}

static void format_port(struct sbuf *b, in_port_t port)
{
    char p[8];
    int n = snprintf(p, sizeof p, ":%u", (unsigned)ntohs(port));
    sb_puts(b, p, (size_t)n);
}

static void format_unix(struct sbuf *b, const mio_addr *a)
{
    static const char hex[] = "0123456789abcdef";
    const struct sockaddr_un *un = &a->u.un;
    size_t n = a->len > SUN_OFF ? a->len - SUN_OFF : 0;

    sb_puts(b, "unix:", 5);
    if (n == 0)
        return;
    if (un->sun_path[0] != '\0') { /* pathname; the kernel may omit the NUL at full length */
        sb_puts(b, un->sun_path, strnlen(un->sun_path, n));
        return;
    }
    sb_putc(b, '@');
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)un->sun_path[i];
        if (c < 0x20 || c == 0x7f || c == '\\') {
            sb_puts(b, "\\x", 2);
            sb_putc(b, hex[c >> 4]);
            sb_putc(b, hex[c & 15]);
        } else {
            sb_putc(b, (char)c);
        }
    }
}

int mio_addr_format(const mio_addr *addr, char *buf, size_t len)
{
    struct sbuf b = {buf, buf != NULL ? len : 0, 0};
    char host[INET6_ADDRSTRLEN];

    if (!mio__addr_valid(addr))
        return -EINVAL;
    switch (addr->u.sa.sa_family) {
    case AF_INET:
        if (inet_ntop(AF_INET, &addr->u.in.sin_addr, host, sizeof host) == NULL)
            return -EINVAL;
        sb_puts(&b, host, strlen(host));
        format_port(&b, addr->u.in.sin_port);
        break;
    case AF_INET6:
        if (inet_ntop(AF_INET6, &addr->u.in6.sin6_addr, host, sizeof host) == NULL)
            return -EINVAL;
        sb_putc(&b, '[');
        sb_puts(&b, host, strlen(host));
        if (addr->u.in6.sin6_scope_id != 0) {
            char scope[IF_NAMESIZE + 1];
            uint32_t id = addr->u.in6.sin6_scope_id;
            /* A name only when it maps back to the same index and cannot be read as a number. */
            if (if_indextoname(id, scope) == NULL || (scope[0] >= '0' && scope[0] <= '9') ||
                if_nametoindex(scope) != id)
                snprintf(scope, sizeof scope, "%u", (unsigned)id);
            sb_putc(&b, '%');
            sb_puts(&b, scope, strlen(scope));
        }
        sb_putc(&b, ']');
        format_port(&b, addr->u.in6.sin6_port);
        break;
    default: /* AF_UNIX, checked by mio__addr_valid */
        format_unix(&b, addr);
        break;
    }
    return sb_finish(&b);
}
