/*
 * Helpers of the ring and party crash scenarios (tests/fault/ring.c, party.c):
 * children that run a step with a fault rule armed, a view of a ring's party
 * table, and the checks every scenario ends with.
 */
#ifndef SHMRING_TEST_FAULT_KIT_H
#define SHMRING_TEST_FAULT_KIT_H

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"
#include "segment.h"
#include "shmring.h"

/* Status of a child that could not arm its rule or reach its step. */
#define KIT_SETUP_FAILED 90

/* A private copy of a test_name() (which reuses a per-thread buffer). */
static inline char *kit_name(const char *tag)
{
    char *s = strdup(test_name(tag));
    cr_assert_not_null(s);
    return s;
}

/*
 * Fork a child that arms `spec` (SHMRING_FAULT syntax; NULL: none) with its
 * hit counters from zero, then
 * runs fn(arg) and exits with its return value. The parent gets the pid.
 */
static inline pid_t kit_child(int (*fn)(void *), void *arg, const char *spec)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(30);
        shmring__fault_reset_hits(); /* @N counts this child's hits only */
        if (spec != NULL && shmring__fault_set(spec) != 0)
            _exit(KIT_SETUP_FAILED);
        int rc = fn(arg);
        shmring__fault_set(NULL);
        _exit(rc);
    }
    return pid;
}

/* Run a child and expect it to die by SIGKILL at its armed point. */
static inline void kit_killed(int (*fn)(void *), void *arg, const char *spec)
{
    int st = test_wait_child(kit_child(fn, arg, spec));
    cr_assert_eq(st, 128 + SIGKILL, "child with %s: status %d, not killed at the point", spec, st);
}

/* The header page of ring `h`, mapped again (for what the API does not
 * show: the party table). Unmap with kit_unmap. */
static inline struct shmring__hdr *kit_hdr(shmring_t *h)
{
    int fd = shmring_fd(h);
    cr_assert_geq(fd, 0);
    void *p = mmap(NULL, SHMRING__HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert(p != MAP_FAILED);
    return p;
}

static inline void kit_unmap(struct shmring__hdr *h)
{
    munmap(h, SHMRING__HEADER_SIZE);
}

static inline uint64_t kit_owner(struct shmring__hdr *h, unsigned i)
{
    return __atomic_load_n(&h->party[i].owner, __ATOMIC_ACQUIRE);
}

/* A process that only sleeps: a live pid to stand for a reused one. */
static inline pid_t kit_sleeper(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(60);
        for (;;)
            pause();
    }
    return pid;
}

static inline void kit_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    test_wait_child(pid);
}

/* Stats through `h` (which reclaims dead parties on the way). */
static inline shmring_stats_t kit_stats(shmring_t *h)
{
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(h, &st), 0);
    return st;
}

/* Every message pushed was taken (popped counts claims, abandoned ones
 * too), dropped or is still in the ring, each counted once
 * (docs/stats.md, conservation). */
static inline void kit_reconcile(shmring_t *h)
{
    shmring_stats_t st = kit_stats(h);
    cr_assert_eq(st.pushed, st.popped + st.dropped + st.count,
                 "pushed %llu != popped %llu + dropped %llu + in ring %llu",
                 (unsigned long long)st.pushed, (unsigned long long)st.popped,
                 (unsigned long long)st.dropped, (unsigned long long)st.count);
    cr_assert_leq(st.abandoned, st.popped);
}

/* Pop ids first..last-1 in order through c. */
static inline void kit_pop_ids(shmring_t *c, uint64_t first, uint64_t last)
{
    char buf[256];
    for (uint64_t id = first; id < last; id++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
}

/* Pop ids first..last-1 in order through c, then find the ring empty. */
static inline void kit_drain(shmring_t *c, uint64_t first, uint64_t last)
{
    char buf[256];
    kit_pop_ids(c, first, last);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "a message after id %llu",
                 (unsigned long long)last);
}

/* Wait (bounded) for a flag in shared memory that another process sets. */
static inline int kit_await(const uint32_t *flag, uint32_t want)
{
    for (int i = 0; i < 20000; i++) {
        if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == want)
            return 1;
        usleep(500);
    }
    return 0;
}

static inline void kit_set(uint32_t *flag, uint32_t v)
{
    __atomic_store_n(flag, v, __ATOMIC_RELEASE);
}

#endif /* SHMRING_TEST_FAULT_KIT_H */
