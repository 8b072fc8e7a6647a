/* mio_interest: union, removal, predicates and the snprintf-like formatter (mio's interest.rs). */
#include "core_helpers.h"

#include <mio/interest.h>

static const mio_interest R = MIO_READABLE, W = MIO_WRITABLE, P = MIO_PRIORITY;

static void test_values_are_distinct_bits(void **state)
{
    (void)state;
    assert_int_equal(R, 0x01);
    assert_int_equal(W, 0x02);
    assert_int_equal(P, 0x10);
}

static void test_predicates(void **state)
{
    (void)state;
    assert_true(mio_interest_is_readable(R));
    assert_false(mio_interest_is_writable(R));
    assert_false(mio_interest_is_priority(R));

    assert_false(mio_interest_is_readable(W));
    assert_true(mio_interest_is_writable(W));
    assert_false(mio_interest_is_priority(W));

    assert_false(mio_interest_is_readable(P));
    assert_false(mio_interest_is_writable(P));
    assert_true(mio_interest_is_priority(P));

    assert_false(mio_interest_is_readable(0));
    assert_false(mio_interest_is_writable(0));
    assert_false(mio_interest_is_priority(0));
}

static void test_add(void **state)
{
    (void)state;
    mio_interest rw = mio_interest_add(R, W);
    assert_true(mio_interest_is_readable(rw));
    assert_true(mio_interest_is_writable(rw));
    assert_false(mio_interest_is_priority(rw));
    assert_int_equal(rw, R | W);

    mio_interest all = mio_interest_add(rw, P);
    assert_true(mio_interest_is_readable(all));
    assert_true(mio_interest_is_writable(all));
    assert_true(mio_interest_is_priority(all));

    /* Adding is idempotent and commutative. */
    assert_int_equal(mio_interest_add(R, R), R);
    assert_int_equal(mio_interest_add(W, R), rw);
    assert_int_equal(mio_interest_add(all, W), all);
}

static void test_remove(void **state)
{
    (void)state;
    mio_interest rw = mio_interest_add(R, W);
    assert_int_equal(mio_interest_remove(rw, W), R);
    assert_int_equal(mio_interest_remove(rw, R), W);
    assert_false(mio_interest_is_writable(mio_interest_remove(rw, W)));
    /* Removing what is not there changes nothing. */
    assert_int_equal(mio_interest_remove(R, W), R);
    assert_int_equal(mio_interest_remove(R, P), R);
    /* Nothing left -> 0. */
    assert_int_equal(mio_interest_remove(R, R), 0);
    assert_int_equal(mio_interest_remove(rw, rw), 0);
    assert_int_equal(mio_interest_remove(mio_interest_add(rw, P), mio_interest_add(rw, P)), 0);
    assert_int_equal(mio_interest_remove(mio_interest_add(rw, P), rw), P);
}

static void check_format(mio_interest i, const char *want)
{
    char buf[64];
    memset(buf, 'x', sizeof buf);
    int n = mio_interest_format(i, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
}

static void test_format(void **state)
{
    (void)state;
    check_format(R, "READABLE");
    check_format(W, "WRITABLE");
    check_format(P, "PRIORITY");
    check_format(R | W, "READABLE | WRITABLE");
    check_format(R | P, "READABLE | PRIORITY");
    check_format(W | P, "WRITABLE | PRIORITY");
    /* The order is fixed, whatever order the bits were added in. */
    check_format(mio_interest_add(mio_interest_add(P, W), R), "READABLE | WRITABLE | PRIORITY");
    check_format(0, "(empty)");
}

static void test_format_snprintf_semantics(void **state)
{
    (void)state;
    const char *full = "READABLE | WRITABLE";
    const int need = (int)strlen(full);
    char buf[32];

    /* len 0: nothing written, buf may be NULL, the return is the needed length. */
    assert_int_equal(mio_interest_format(R | W, NULL, 0), need);
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_interest_format(R | W, buf, 0), need);
    assert_int_equal(buf[0], 'x');

    /* len 1: only the NUL. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_interest_format(R | W, buf, 1), need);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'x');

    /* Truncation keeps a prefix, NUL-terminates, never writes past len. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_interest_format(R | W, buf, 5), need);
    assert_string_equal(buf, "READ");
    assert_int_equal(buf[5], 'x');

    /* One byte short: the last character is dropped. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_interest_format(R | W, buf, (size_t)need), need);
    assert_int_equal(strlen(buf), (size_t)need - 1);
    assert_memory_equal(buf, full, (size_t)need - 1);
    assert_int_equal(buf[need], 'x');

    /* Exactly enough. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_interest_format(R | W, buf, (size_t)need + 1), need);
    assert_string_equal(buf, full);
    assert_int_equal(buf[need + 1], 'x');

    /* Truncation inside a separator too. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(mio_interest_format(R | W, buf, 11), need);
    assert_string_equal(buf, "READABLE |");
}

int main(void)
{
    mio_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        CORE_TEST(test_values_are_distinct_bits),
        CORE_TEST(test_predicates),
        CORE_TEST(test_add),
        CORE_TEST(test_remove),
        CORE_TEST(test_format),
        CORE_TEST(test_format_snprintf_semantics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
