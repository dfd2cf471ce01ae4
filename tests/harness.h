/* Stress-test helpers: clocks, a whole-test deadline, sizes, and id tracking. */
#ifndef SHMRING_TEST_HARNESS_H
#define SHMRING_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static inline uint64_t h_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Monotonic clock in seconds. */
static inline double h_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One nanosleep of ns nanoseconds (a signal may end it early). */
static inline void h_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

static inline void h_sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* 1 in sanitizer builds, which run several times slower. */
static inline int h_sanitized(void)
{
#if defined(SHMRING_ATOMIC_BUILTINS)
    return 1;
#else
    return 0;
#endif
}

/* Message count of a stress test: n in the release build, n/4 under a
 * sanitizer, times $SHMRING_TEST_SCALE. */
static inline uint64_t h_count(uint64_t n)
{
    double v = (double)n * test_scale() / (h_sanitized() ? 4.0 : 1.0);
    return v < 1000.0 ? 1000 : (uint64_t)v;
}

static inline void h_deadline_hit(int sig)
{
    static const char msg[] = "test deadline exceeded: a shmring call never returned\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    signal(sig, SIG_DFL);
    raise(sig);
}

/*
 * Whole-test deadline: when it expires the process dies of SIGALRM, which
 * fails the test instead of hanging it. Longer under sanitizers. alarm() is
 * per process and not inherited by fork(): children arm their own.
 */
static inline void h_arm_deadline(unsigned seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_deadline_hit;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(h_sanitized() ? seconds * 6 : seconds);
}

static inline void h_disarm_deadline(void)
{
    alarm(0);
}

/* Small xorshift PRNG, one state per thread or process. */
static inline uint64_t h_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/*
 * Exactly-once bookkeeping: seen[id] counts deliveries of message id
 * (atomic, so it works between threads and, in shared memory, processes).
 */
static inline void h_mark(uint32_t *seen, uint64_t n, uint64_t id, uint64_t *bad)
{
    if (id >= n)
        (*bad)++;
    else
        __atomic_fetch_add(&seen[id], 1, __ATOMIC_RELAXED);
}

/* Counts ids delivered more than once and ids never delivered. */
static inline void h_tally(const uint32_t *seen, uint64_t n, uint64_t *twice, uint64_t *never)
{
    *twice = 0;
    *never = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = __atomic_load_n(&seen[i], __ATOMIC_RELAXED);
        if (v > 1)
            (*twice)++;
        else if (v == 0)
            (*never)++;
    }
}

/* Assert that each of the n ids was delivered exactly once. */
static inline void h_check_exactly_once(const uint32_t *seen, uint64_t n)
{
    uint64_t twice, never;
    h_tally(seen, n, &twice, &never);
    cr_assert_eq(twice, 0, "%llu ids delivered more than once", (unsigned long long)twice);
    cr_assert_eq(never, 0, "%llu ids never delivered", (unsigned long long)never);
}

#endif
