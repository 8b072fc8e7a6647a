/* mio_addr_parse / mio_addr_format: a table of good and bad texts, the round trip, the length
 * rules for unix addresses and the snprintf contract of the formatter. */
#include "net_helpers.h"

#include <arpa/inet.h>
#include <net/if.h>

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

/* canonical: what mio_addr_format gives back; NULL = the input itself; "*" = not checked (depends
 * on the host's interface names). */
struct good {
    const char *text;
    const char *canonical;
};

static const struct good goods[] = {
    {"127.0.0.1:80", NULL},
    {"0.0.0.0:0", NULL},
    {"255.255.255.255:65535", NULL},
    {"10.1.2.3:8080", NULL},
    {"192.168.0.1:1", NULL},
    {"127.0.0.1:00080", "127.0.0.1:80"},
    {"[::1]:80", NULL},
    {"[::]:0", NULL},
    {"[2001:db8::1]:443", NULL},
    {"[2001:DB8::A]:1", "[2001:db8::a]:1"},
    {"[1:2:3:4:5:6:7:8]:65535", NULL},
    {"[0:0:0:0:0:0:0:1]:7", "[::1]:7"},
    {"[::ffff:1.2.3.4]:9", NULL},
    {"[fe80::1%1]:80", "*"},
    {"[fe80::abcd%4294967295]:1", "*"},
    {"[ff02::1%1]:5353", "*"},
    {"[fe80::1]:80", NULL},
    {"unix:/tmp/sock", NULL},
    {"unix:relative/sock", NULL},
    {"unix:/", NULL},
    {"unix:@abstract", NULL},
    {"unix:@with space", NULL},
    {"unix:@\\x00\\x01zero", NULL},
    {"unix:@\\x5C", "unix:@\\x5c"},
    {"unix:@a:b]c[%d", NULL},
    {"unix:", NULL},
};

static const char *const bads[] = {
    "",
    ":80",
    "127.0.0.1",
    "127.0.0.1:",
    "127.0.0.1:65536",
    "127.0.0.1:99999",
    "127.0.0.1:123456",
    "127.0.0.1:000080",
    "127.0.0.1:-1",
    "127.0.0.1:+80",
    "127.0.0.1:0x50",
    "127.0.0.1:80 ",
    " 127.0.0.1:80",
    "127.0.0.1:80\n",
    "127.0.0.1:80x",
    "127.0.0.1:8 0",
    "127.0.0.1:80:80",
    "256.0.0.1:80",
    "1.2.3:80",
    "1.2.3.4.5:80",
    "01.2.3.4:80",
    "localhost:80",
    "example.com:80",
    "::1:80",
    "[::1]",
    "[::1]:",
    "[::1]:65536",
    "[::1]80",
    "[::1:80",
    "::1]:80",
    "[[::1]]:80",
    "[::1]]:80",
    "[]:80",
    "[1.2.3.4]:80",
    "[::g]:80",
    "[::1]:80:80",
    "[::1%1]:80",
    "[fe80::1%]:80",
    "[fe80::1%no-such-if9]:80",
    "[fe80::1%4294967296]:1",
    "[fe80::1%lo%lo]:80",
    "[fe80::1%0123456789abcdefx]:80",
    "unix:@",
    "unix:@\\x",
    "unix:@\\x0",
    "unix:@\\xzz",
    "unix:@\\n",
    "unix:@back\\",
    "UNIX:/tmp/x",
    "unix/tmp/x",
};

static void assert_same_addr(const mio_addr *a, const mio_addr *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(&a->u, &b->u, a->len);
}

static void round_trip(const char *text, const char *canonical)
{
    mio_addr a, b;
    char buf[MIO_ADDR_STRLEN];
    int n;

    if (mio_addr_parse(text, &a) != 0) {
        fprintf(stderr, "should parse: \"%s\"\n", text);
        fail();
    }
    n = mio_addr_format(&a, buf, sizeof buf);
    assert_true(n > 0 && n < (int)sizeof buf);
    assert_int_equal((size_t)n, strlen(buf));
    if (canonical == NULL)
        canonical = text;
    if (strcmp(canonical, "*") != 0)
        assert_string_equal(buf, canonical);
    assert_int_equal(mio_addr_parse(buf, &b), 0);
    assert_same_addr(&a, &b);
}

static void test_table_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++)
        round_trip(goods[i].text, goods[i].canonical);
}

static void expect_bad(const char *text)
{
    mio_addr a, pattern;
    memset(&pattern, 0x5a, sizeof pattern);
    memcpy(&a, &pattern, sizeof a);
    if (mio_addr_parse(text, &a) != -EINVAL) {
        fprintf(stderr, "should be rejected: \"%s\"\n", text);
        fail();
    }
    /* Nothing was written on error. */
    assert_memory_equal(&a, &pattern, sizeof a);
}

static void test_table_bad(void **state)
{
    (void)state;
    assert_true(sizeof bads / sizeof bads[0] + sizeof goods / sizeof goods[0] >= 40);
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++)
        expect_bad(bads[i]);
}

static void test_null_arguments(void **state)
{
    mio_addr a;
    char buf[8];
    (void)state;
    assert_int_equal(mio_addr_parse(NULL, &a), -EINVAL);
    assert_int_equal(mio_addr_parse("127.0.0.1:1", NULL), -EINVAL);
    assert_int_equal(mio_addr_format(NULL, buf, sizeof buf), -EINVAL);
}

static void test_ipv4_fields(void **state)
{
    mio_addr a = net_addr("1.2.3.4:258");
    (void)state;
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(a.u.in.sin_family, AF_INET);
    assert_int_equal(a.u.in.sin_port, htons(258));
    assert_int_equal(a.u.in.sin_addr.s_addr, htonl(0x01020304));
}

static void test_ipv6_fields(void **state)
{
    mio_addr a = net_addr("[fe80::1%7]:65535");
    struct in6_addr want;
    (void)state;
    assert_int_equal(inet_pton(AF_INET6, "fe80::1", &want), 1);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_int_equal(a.u.in6.sin6_family, AF_INET6);
    assert_int_equal(a.u.in6.sin6_port, htons(65535));
    assert_int_equal(a.u.in6.sin6_scope_id, 7);
    assert_int_equal(a.u.in6.sin6_flowinfo, 0);
    assert_memory_equal(&a.u.in6.sin6_addr, &want, sizeof want);
}

static void test_ipv6_scope_by_name(void **state)
{
    unsigned idx = if_nametoindex("lo");
    char buf[MIO_ADDR_STRLEN];
    mio_addr a;
    (void)state;
    if (idx == 0)
        skip(); /* no interface named lo here */
    assert_int_equal(mio_addr_parse("[fe80::1%lo]:80", &a), 0);
    assert_int_equal(a.u.in6.sin6_scope_id, idx);
    assert_true(mio_addr_format(&a, buf, sizeof buf) > 0);
    assert_string_equal(buf, "[fe80::1%lo]:80");
    /* A numeric scope naming lo formats with the name and parses back the same. */
    snprintf(buf, sizeof buf, "[fe80::1%%%u]:80", idx);
    round_trip(buf, "[fe80::1%lo]:80");
}

static void test_unix_lengths(void **state)
{
    mio_addr a;
    (void)state;
    a = net_addr("unix:/tmp/s");
    assert_int_equal(a.u.un.sun_family, AF_UNIX);
    assert_int_equal(a.len, SUN_OFF + strlen("/tmp/s") + 1);
    assert_string_equal(a.u.un.sun_path, "/tmp/s");

    a = net_addr("unix:@name");
    assert_int_equal(a.len, SUN_OFF + 1 + 4);
    assert_int_equal(a.u.un.sun_path[0], '\0');
    assert_memory_equal(a.u.un.sun_path + 1, "name", 4);

    a = net_addr("unix:@\\x00\\xff");
    assert_int_equal(a.len, SUN_OFF + 1 + 2);
    assert_int_equal((unsigned char)a.u.un.sun_path[1], 0);
    assert_int_equal((unsigned char)a.u.un.sun_path[2], 0xff);

    a = net_addr("unix:");
    assert_int_equal(a.len, sizeof(sa_family_t));
    assert_int_equal(a.u.un.sun_family, AF_UNIX);
}

static void test_unix_length_limits(void **state)
{
    char text[300];
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1; /* 107 on Linux */
    (void)state;

    /* Pathname: up to sun_path - 1 bytes (the NUL must fit). */
    strcpy(text, "unix:/");
    memset(text + 6, 'p', max - 1);
    text[5 + max] = '\0';
    round_trip(text, NULL);
    assert_int_equal(net_addr(text).len, sizeof(struct sockaddr_un));
    strcat(text, "p");
    expect_bad(text);

    /* Abstract: up to sun_path - 1 name bytes after the leading NUL. */
    strcpy(text, "unix:@");
    memset(text + 6, 'a', max);
    text[6 + max] = '\0';
    round_trip(text, NULL);
    assert_int_equal(net_addr(text).len, sizeof(struct sockaddr_un));
    strcat(text, "a");
    expect_bad(text);
}

static void test_unix_abstract_any_bytes(void **state)
{
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    char buf[MIO_ADDR_STRLEN];
    mio_addr a, b;
    int n;
    (void)state;

    for (unsigned start = 0; start < 256; start += (unsigned)max) {
        memset(&a, 0, sizeof a);
        a.u.un.sun_family = AF_UNIX;
        for (size_t i = 0; i < max; i++)
            a.u.un.sun_path[1 + i] = (char)((start + i) & 0xff);
        a.len = (socklen_t)(SUN_OFF + 1 + max);
        n = mio_addr_format(&a, buf, sizeof buf);
        assert_true(n > 0 && n < MIO_ADDR_STRLEN);
        assert_int_equal(mio_addr_parse(buf, &b), 0);
        assert_same_addr(&a, &b);
    }
    /* The worst case fits MIO_ADDR_STRLEN exactly as documented. */
    memset(a.u.un.sun_path + 1, 1, max);
    n = mio_addr_format(&a, buf, sizeof buf);
    assert_int_equal(n, 6 + 4 * (int)max);
    assert_true(n < MIO_ADDR_STRLEN);
}

static void test_unnamed_and_kernel_forms(void **state)
{
    mio_addr a;
    char buf[64];
    (void)state;
    memset(&a, 0, sizeof a);
    a.u.un.sun_family = AF_UNIX;
    a.len = sizeof(sa_family_t);
    assert_int_equal(mio_addr_format(&a, buf, sizeof buf), 5);
    assert_string_equal(buf, "unix:");

    /* A full-length pathname without a trailing NUL, as the kernel may report it. */
    memset(&a, 0, sizeof a);
    a.u.un.sun_family = AF_UNIX;
    memset(a.u.un.sun_path, 'x', sizeof a.u.un.sun_path);
    a.len = sizeof(struct sockaddr_un);
    assert_int_equal(mio_addr_format(&a, NULL, 0), 5 + (int)sizeof a.u.un.sun_path);
}

static void test_format_rejects(void **state)
{
    mio_addr a;
    char buf[64];
    (void)state;
    memset(&a, 0, sizeof a);
    a.u.sa.sa_family = AF_APPLETALK;
    a.len = sizeof(struct sockaddr_in);
    assert_int_equal(mio_addr_format(&a, buf, sizeof buf), -EINVAL);

    a = net_addr("127.0.0.1:1");
    a.len = 4;
    assert_int_equal(mio_addr_format(&a, buf, sizeof buf), -EINVAL);
    a = net_addr("[::1]:1");
    a.len = sizeof(struct sockaddr_in);
    assert_int_equal(mio_addr_format(&a, buf, sizeof buf), -EINVAL);
}

static void test_format_snprintf_semantics(void **state)
{
    mio_addr a = net_addr("127.0.0.1:80");
    char buf[32];
    (void)state;

    assert_int_equal(mio_addr_format(&a, NULL, 0), 12);
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_addr_format(&a, buf, 0), 12);
    assert_int_equal(buf[0], 'x');

    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_addr_format(&a, buf, 5), 12);
    assert_string_equal(buf, "127.");
    assert_int_equal(buf[5], 'x');

    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_addr_format(&a, buf, 12), 12);
    assert_string_equal(buf, "127.0.0.1:8");

    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_addr_format(&a, buf, 13), 12);
    assert_string_equal(buf, "127.0.0.1:80");
    assert_int_equal(buf[13], 'x');

    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_addr_format(&a, buf, 1), 12);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'x');
}

int main(void)
{
    mio_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        NET_TEST(test_table_good),
        NET_TEST(test_table_bad),
        NET_TEST(test_null_arguments),
        NET_TEST(test_ipv4_fields),
        NET_TEST(test_ipv6_fields),
        NET_TEST(test_ipv6_scope_by_name),
        NET_TEST(test_unix_lengths),
        NET_TEST(test_unix_length_limits),
        NET_TEST(test_unix_abstract_any_bytes),
        NET_TEST(test_unnamed_and_kernel_forms),
        NET_TEST(test_format_rejects),
        NET_TEST(test_format_snprintf_semantics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
