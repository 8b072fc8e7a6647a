/* Cross-thread accessors for libmio's own flags and counters.
 *
 * Normal builds use Concurrency Kit's ck_pr. ThreadSanitizer cannot see ck_pr loads and stores
 * as atomic (even with CK_USE_CC_BUILTINS=1 they are plain volatile accesses), so under TSan the
 * same operations map to the equivalent __atomic builtins: relaxed loads and stores, sequentially
 * consistent read-modify-writes. That keeps libmio's own shared variables checked by TSan with no
 * suppression at all; tests/tsan.supp only names ck internals (the rings). Fences stay ck's in both
 * builds (TSan does not model fences; nothing here relies on it to). */
#ifndef MIO_INTERNAL_PR_H
#define MIO_INTERNAL_PR_H

#include <stdbool.h>
#include <stdint.h>
#include <ck_pr.h>

#if defined(__SANITIZE_THREAD__)
#define MIO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MIO_TSAN 1
#endif
#endif

#ifdef MIO_TSAN
/* Happens-before annotations (TSan's public interface) for orderings made by ck's fences. */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define MIO_TSAN_RELEASE(p) __tsan_release(p)
#define MIO_TSAN_ACQUIRE(p) __tsan_acquire(p)

static inline unsigned mio__pr_load_uint(const unsigned *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void mio__pr_store_uint(unsigned *p, unsigned v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline bool mio__pr_cas_uint(unsigned *p, unsigned expect, unsigned v)
{
    return __atomic_compare_exchange_n(p, &expect, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline unsigned mio__pr_fas_uint(unsigned *p, unsigned v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline uint64_t mio__pr_load_64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void mio__pr_store_64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void mio__pr_add_64(uint64_t *p, uint64_t d)
{
    (void)__atomic_fetch_add(p, d, __ATOMIC_SEQ_CST);
}
static inline void mio__pr_sub_64(uint64_t *p, uint64_t d)
{
    (void)__atomic_fetch_sub(p, d, __ATOMIC_SEQ_CST);
}
#else
#define MIO_TSAN_RELEASE(p) ((void)(p))
#define MIO_TSAN_ACQUIRE(p) ((void)(p))

static inline unsigned mio__pr_load_uint(const unsigned *p)
{
    return ck_pr_load_uint(p);
}
static inline void mio__pr_store_uint(unsigned *p, unsigned v)
{
    ck_pr_store_uint(p, v);
}
static inline bool mio__pr_cas_uint(unsigned *p, unsigned expect, unsigned v)
{
    return ck_pr_cas_uint(p, expect, v);
}
static inline unsigned mio__pr_fas_uint(unsigned *p, unsigned v)
{
    return ck_pr_fas_uint(p, v);
}
static inline uint64_t mio__pr_load_64(const uint64_t *p)
{
    return ck_pr_load_64(p);
}
static inline void mio__pr_store_64(uint64_t *p, uint64_t v)
{
    ck_pr_store_64(p, v);
}
static inline void mio__pr_add_64(uint64_t *p, uint64_t d)
{
    ck_pr_add_64(p, d);
}
static inline void mio__pr_sub_64(uint64_t *p, uint64_t d)
{
    ck_pr_sub_64(p, d);
}
#endif

/* Full fence (the Dekker handshake of the reactor's wake elision). */
static inline void mio__pr_fence_memory(void)
{
    ck_pr_fence_memory();
}

#endif
