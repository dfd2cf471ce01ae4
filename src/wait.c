/* Eventcount sleep and wake on a futex in shared memory. */
#define _GNU_SOURCE
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *timeout)
{
    return syscall(SYS_futex, uaddr, op, val, timeout, NULL, 0);
}

uint32_t shmring__ec_prepare(uint32_t *word)
{
    /* Relaxed: the CAS below (or the fence after it) gives the ordering. */
    uint32_t v = shmring__load_relaxed_32(word);
    while (!(v & 1u)) {
        /* CAS: sets the flag unless a notifier bumped the counter meanwhile. */
        if (shmring__cas_32(word, &v, v | 1u)) {
            v |= 1u;
            break;
        }
    }
    /* Full fence: the flag is visible before the caller re-checks its
     * condition; pairs with the fence in shmring__ec_notify(). */
    shmring__fence_seq_cst();
    return v;
}

void shmring__ec_sleep(uint32_t *word, uint32_t value, uint64_t max_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(max_ns / 1000000000ull);
    ts.tv_nsec = (long)(max_ns % 1000000000ull);
    /* Shared (not FUTEX_PRIVATE): sleepers and wakers may be in different
     * processes. EAGAIN (value changed), EINTR and ETIMEDOUT all return to
     * the caller, which re-checks. */
    futex(word, FUTEX_WAIT, value, &ts);
}

void shmring__ec_wake(uint32_t *word)
{
    /* Relaxed: the caller's notify already ordered its publishing before
     * this; the CAS below decides which notifier wakes. */
    uint32_t v = shmring__load_relaxed_32(word);
    for (;;) {
        if (!(v & 1u))
            return; /* another notifier already woke them */
        /* CAS: bump the counter and clear the flag in one step. */
        if (shmring__cas_32(word, &v, (v + 2u) & ~1u))
            break;
    }
    futex(word, FUTEX_WAKE, INT_MAX, NULL);
}
