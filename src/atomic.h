/*
 * The only file that names ck_pr_* or __atomic_*.
 *
 * Normal builds map every access to Concurrency Kit (ck_pr), whose x86-64
 * atomics are inline assembly. ThreadSanitizer cannot see inline assembly,
 * so sanitizer builds (SHMRING_ATOMIC_BUILTINS) map the same functions to
 * the compiler's __atomic builtins, which TSan understands. The semantics of
 * each function are the C11 ones named in it; the ck mapping is at least as
 * strong on every architecture ck supports.
 *
 * Seqlock-protected data (slot payloads, state values) is copied with
 * shmring__copy_from_shared / shmring__copy_to_shared: memcpy in normal
 * builds, word-wise relaxed atomics in sanitizer builds, so that TSan
 * reports only real races and not the benign, validated ones of a seqlock.
 */
#ifndef SHMRING_ATOMIC_H
#define SHMRING_ATOMIC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if !defined(SHMRING_ATOMIC_BUILTINS)
#include <ck_pr.h>
#endif

#define SHMRING_INLINE static inline __attribute__((always_inline))

/* ThreadSanitizer build (gcc or clang). */
#if defined(__SANITIZE_THREAD__)
#define SHMRING__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMRING__TSAN 1
#endif
#endif

#if defined(SHMRING_ATOMIC_BUILTINS)

SHMRING_INLINE uint64_t shmring__load_relaxed_64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
SHMRING_INLINE uint64_t shmring__load_acquire_64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
SHMRING_INLINE uint32_t shmring__load_relaxed_32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
SHMRING_INLINE uint32_t shmring__load_acquire_32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
SHMRING_INLINE void shmring__store_relaxed_64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
SHMRING_INLINE void shmring__store_release_64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
SHMRING_INLINE void shmring__store_relaxed_32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
SHMRING_INLINE void shmring__store_release_32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
/* Sequentially consistent compare-and-swap; on failure *expected is updated. */
SHMRING_INLINE int shmring__cas_64(uint64_t *p, uint64_t *expected, uint64_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
SHMRING_INLINE int shmring__cas_32(uint32_t *p, uint32_t *expected, uint32_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
/* Sequentially consistent fetch-and-add. */
SHMRING_INLINE uint64_t shmring__faa_64(uint64_t *p, uint64_t d)
{
    return __atomic_fetch_add(p, d, __ATOMIC_SEQ_CST);
}
SHMRING_INLINE uint32_t shmring__faa_32(uint32_t *p, uint32_t d)
{
    return __atomic_fetch_add(p, d, __ATOMIC_SEQ_CST);
}
/* Sequentially consistent exchange. */
SHMRING_INLINE uint32_t shmring__xchg_32(uint32_t *p, uint32_t v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
SHMRING_INLINE uint64_t shmring__xchg_64(uint64_t *p, uint64_t v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
SHMRING_INLINE void shmring__fence_acquire(void)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}
SHMRING_INLINE void shmring__fence_release(void)
{
    __atomic_thread_fence(__ATOMIC_RELEASE);
}
/* Full fence: orders earlier stores before later loads (Dekker). */
SHMRING_INLINE void shmring__fence_seq_cst(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
/* Full fence after an atomic read-modify-write (free where RMWs serialise). */
SHMRING_INLINE void shmring__fence_after_atomic(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
/* Compiler barrier: no instruction; memory accesses are not moved across it
 * by the compiler (the CPU may still reorder them). */
SHMRING_INLINE void shmring__compiler_barrier(void)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}
SHMRING_INLINE void shmring__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#else /* Concurrency Kit */

/*
 * ck's read-modify-write operations are full barriers on x86-64 (lock
 * prefix) but not on every architecture: these fences make them sequentially
 * consistent everywhere, and compile to nothing on TSO machines.
 */
#define SHMRING__RMW_BEFORE()                                                                      \
    do {                                                                                           \
        ck_pr_fence_store_atomic();                                                                \
        ck_pr_fence_load_atomic();                                                                 \
    } while (0)
#define SHMRING__RMW_AFTER()                                                                       \
    do {                                                                                           \
        ck_pr_fence_atomic_load();                                                                 \
        ck_pr_fence_atomic_store();                                                                \
    } while (0)

SHMRING_INLINE uint64_t shmring__load_relaxed_64(const uint64_t *p)
{
    return ck_pr_load_64(p);
}
SHMRING_INLINE uint64_t shmring__load_acquire_64(const uint64_t *p)
{
    uint64_t v = ck_pr_load_64(p);
    ck_pr_fence_acquire();
    return v;
}
SHMRING_INLINE uint32_t shmring__load_relaxed_32(const uint32_t *p)
{
    return ck_pr_load_32(p);
}
SHMRING_INLINE uint32_t shmring__load_acquire_32(const uint32_t *p)
{
    uint32_t v = ck_pr_load_32(p);
    ck_pr_fence_acquire();
    return v;
}
SHMRING_INLINE void shmring__store_relaxed_64(uint64_t *p, uint64_t v)
{
    ck_pr_store_64(p, v);
}
SHMRING_INLINE void shmring__store_release_64(uint64_t *p, uint64_t v)
{
    ck_pr_fence_release();
    ck_pr_store_64(p, v);
}
SHMRING_INLINE void shmring__store_relaxed_32(uint32_t *p, uint32_t v)
{
    ck_pr_store_32(p, v);
}
SHMRING_INLINE void shmring__store_release_32(uint32_t *p, uint32_t v)
{
    ck_pr_fence_release();
    ck_pr_store_32(p, v);
}
SHMRING_INLINE int shmring__cas_64(uint64_t *p, uint64_t *expected, uint64_t desired)
{
    SHMRING__RMW_BEFORE();
    int ok = ck_pr_cas_64_value(p, *expected, desired, expected);
    SHMRING__RMW_AFTER();
    return ok;
}
SHMRING_INLINE int shmring__cas_32(uint32_t *p, uint32_t *expected, uint32_t desired)
{
    SHMRING__RMW_BEFORE();
    int ok = ck_pr_cas_32_value(p, *expected, desired, expected);
    SHMRING__RMW_AFTER();
    return ok;
}
SHMRING_INLINE uint64_t shmring__faa_64(uint64_t *p, uint64_t d)
{
    SHMRING__RMW_BEFORE();
    uint64_t v = ck_pr_faa_64(p, d);
    SHMRING__RMW_AFTER();
    return v;
}
SHMRING_INLINE uint32_t shmring__faa_32(uint32_t *p, uint32_t d)
{
    SHMRING__RMW_BEFORE();
    uint32_t v = ck_pr_faa_32(p, d);
    SHMRING__RMW_AFTER();
    return v;
}
SHMRING_INLINE uint32_t shmring__xchg_32(uint32_t *p, uint32_t v)
{
    SHMRING__RMW_BEFORE();
    uint32_t old = ck_pr_fas_32(p, v);
    SHMRING__RMW_AFTER();
    return old;
}
SHMRING_INLINE uint64_t shmring__xchg_64(uint64_t *p, uint64_t v)
{
    SHMRING__RMW_BEFORE();
    uint64_t old = ck_pr_fas_64(p, v);
    SHMRING__RMW_AFTER();
    return old;
}
SHMRING_INLINE void shmring__fence_acquire(void)
{
    ck_pr_fence_acquire();
}
SHMRING_INLINE void shmring__fence_release(void)
{
    ck_pr_fence_release();
}
SHMRING_INLINE void shmring__fence_seq_cst(void)
{
    ck_pr_fence_memory();
}
/* The wrappers above already end every RMW with a full barrier. */
SHMRING_INLINE void shmring__fence_after_atomic(void)
{
    ck_pr_barrier();
}
SHMRING_INLINE void shmring__compiler_barrier(void)
{
    ck_pr_barrier();
}
SHMRING_INLINE void shmring__cpu_relax(void)
{
    ck_pr_stall();
}

#endif

/*
 * memcpy, inlined for small messages (a call costs more than the copy): at
 * most four possibly overlapping moves of 16, 8, 4 or 1 bytes each, as
 * libc's memcpy does for small sizes, instead of a loop.
 */
SHMRING_INLINE void shmring__copy_small(void *dst, const void *src, size_t n)
{
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    if (n > 64) {
        memcpy(d, s, n);
    } else if (n > 32) {
        memcpy(d, s, 16);
        memcpy(d + 16, s + 16, 16);
        memcpy(d + n - 32, s + n - 32, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 16) {
        memcpy(d, s, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n > 0) {
        d[0] = s[0];
        d[n / 2] = s[n / 2];
        d[n - 1] = s[n - 1];
    }
}

/*
 * Copy n bytes out of seqlock-protected shared memory. The source may be
 * overwritten concurrently; the caller validates the sequence afterwards
 * and discards the copy if it changed.
 */
SHMRING_INLINE void shmring__copy_from_shared(void *dst, const void *src, size_t n)
{
#if defined(SHMRING_ATOMIC_BUILTINS)
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    if (((uintptr_t)s & 7u) == 0) {
        for (; i + 8 <= n; i += 8) {
            uint64_t w = __atomic_load_n((const uint64_t *)(const void *)(s + i), __ATOMIC_RELAXED);
            memcpy(d + i, &w, 8);
        }
    }
    for (; i < n; i++)
        d[i] = __atomic_load_n(s + i, __ATOMIC_RELAXED);
#else
    shmring__copy_small(dst, src, n);
#endif
}

/* Copy n bytes into seqlock-protected shared memory that readers may be
 * reading concurrently (they validate and retry). */
SHMRING_INLINE void shmring__copy_to_shared(void *dst, const void *src, size_t n)
{
#if defined(SHMRING_ATOMIC_BUILTINS)
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    if (((uintptr_t)d & 7u) == 0) {
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            __atomic_store_n((uint64_t *)(void *)(d + i), w, __ATOMIC_RELAXED);
        }
    }
    for (; i < n; i++)
        __atomic_store_n(d + i, s[i], __ATOMIC_RELAXED);
#else
    shmring__copy_small(dst, src, n);
#endif
}

#endif /* SHMRING_ATOMIC_H */
