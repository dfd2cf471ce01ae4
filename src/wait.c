/* Eventcount sleep and wake on a futex in shared memory; membarrier(). */
#define _GNU_SOURCE
#include "wait.h"

#include "event.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *timeout)
{
    return syscall(SYS_futex, uaddr, op, val, timeout, NULL, 0);
}

/* ---- membarrier --------------------------------------------------------- */

#if defined(SYS_membarrier)
static long membarrier(int cmd)
{
    return syscall(SYS_membarrier, cmd, 0u, 0);
}
#else
static long membarrier(int cmd)
{
    (void)cmd;
    errno = ENOSYS;
    return -1;
}
#endif

static int barrier_cmd(enum shmring__barrier kind)
{
    return kind == SHMRING__BARRIER_PRIVATE ? MEMBARRIER_CMD_PRIVATE_EXPEDITED
                                            : MEMBARRIER_CMD_GLOBAL_EXPEDITED;
}

static int register_cmd(enum shmring__barrier kind)
{
    return kind == SHMRING__BARRIER_PRIVATE ? MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
                                            : MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
}

static int try_register(enum shmring__barrier kind)
{
    long cmds = membarrier(MEMBARRIER_CMD_QUERY);
    if (cmds < 0)
        return errno == EINVAL ? -ENOSYS : -errno;
    if (!(cmds & barrier_cmd(kind)) || !(cmds & register_cmd(kind)))
        return -ENOSYS;
    if (membarrier(register_cmd(kind)) != 0)
        return -errno;
    return 0;
}

/*
 * Per process: 0 not tried, 1 registered, else the negative errno. The
 * registration belongs to the address space: a child of fork() inherits it
 * (and this cache with it); exec() drops both.
 */
static int registered[3];

int shmring__membarrier_register(enum shmring__barrier kind)
{
    int *slot = &registered[kind == SHMRING__BARRIER_PRIVATE ? 1 : 2];
    /* Acquire: pairs with the release below; a racing thread registers
     * too, which is harmless (registration is idempotent). */
    int v = (int)shmring__load_acquire_32((const uint32_t *)slot);
    if (v == 0) {
        int rc = try_register(kind);
        v = rc == 0 ? 1 : rc;
        /* Release: the registration happened before the cached result. */
        shmring__store_release_32((uint32_t *)slot, (uint32_t)v);
    }
    return v == 1 ? 0 : v;
}

/* ---- Waiters ------------------------------------------------------------ */

/* Set SLEEPER (CAS, unless a notifier bumped the counter meanwhile). */
static uint32_t announce(uint32_t *word)
{
    /* Relaxed: the CAS below (or the barrier after it) gives the ordering. */
    uint32_t v = shmring__load_relaxed_32(word);
    while (!(v & SHMRING__EC_SLEEPER)) {
        if (shmring__cas_32(word, &v, v | SHMRING__EC_SLEEPER)) {
            v |= SHMRING__EC_SLEEPER;
            break;
        }
    }
    return v;
}

uint32_t shmring__ec_prepare(uint32_t *word)
{
    uint32_t v = announce(word);
    /* Full fence: the flag is visible before the caller re-checks its
     * condition; pairs with the fence in shmring__ec_notify() (Dekker). */
    shmring__fence_seq_cst();
    return v;
}

uint32_t shmring__ec_prepare_mb(uint32_t *word, enum shmring__barrier kind, int *covered)
{
    uint32_t v = announce(word);
    /* M2: membarrier, pairs with M1 in shmring__ec_notify_asym(). Every CPU
     * running a thread of a registered process executes a full barrier
     * before this returns: a notifier's publishing before that barrier is
     * visible to our re-check, and its load of the word after it sees
     * SLEEPER. */
    if (membarrier(barrier_cmd(kind)) == 0) {
        *covered = 1;
        return v;
    }
    /* Refused (seccomp installed after registration): symmetric only. */
    shmring__fence_seq_cst();
    *covered = 0;
    return v;
}

uint32_t shmring__ec_announce(uint32_t *word, int use_mb, enum shmring__barrier kind, int *covered)
{
    /* Relaxed: the CAS below decides. */
    uint32_t v = shmring__load_relaxed_32(word);
    /* V1: CAS (seq_cst) even when SLEEPER is already set: the caller's
     * earlier stores happen before any later CAS of a notifier that clears
     * the flag (pairs with the CAS in shmring__ec_wake()). */
    while (!shmring__cas_32(word, &v, v | SHMRING__EC_SLEEPER))
        ;
    v |= SHMRING__EC_SLEEPER;
    *covered = 0;
    /* M2: as in shmring__ec_prepare_mb(), pairs with M1. */
    if (use_mb && membarrier(barrier_cmd(kind)) == 0) {
        *covered = 1;
        return v;
    }
    /* Full fence: pairs with the notifiers' fences and RMWs (Dekker). */
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

/* ---- Notifiers ---------------------------------------------------------- */

void shmring__ec_wake(uint32_t *word)
{
    /* Relaxed: the caller's notify already ordered its publishing before
     * this; the CAS below decides which notifier wakes. */
    uint32_t v = shmring__load_relaxed_32(word);
    for (;;) {
        if (!(v & SHMRING__EC_SLEEPER))
            return; /* another notifier already woke them */
        /* CAS: bump the counter and clear SLEEPER in one step (FENCED and
         * ACK stay). */
        if (shmring__cas_32(word, &v, (v + SHMRING__EC_ONE) & ~SHMRING__EC_SLEEPER))
            break;
    }
    futex(word, FUTEX_WAKE, INT_MAX, NULL);
    /* V2: after the CAS that cleared SLEEPER: armed descriptors (V1). */
    shmring__event_woke(word);
}

uint32_t shmring__ec_set_flags(uint32_t *word, uint32_t flags)
{
    /* Relaxed: the CAS decides; a CAS reads the latest value of the word. */
    uint32_t v = shmring__load_relaxed_32(word);
    while (!shmring__cas_32(word, &v, v | flags))
        ;
    return v | flags;
}

void shmring__ec_notify_flagged(uint32_t *word, uint32_t v, int *fenced, int ack)
{
    if (v & SHMRING__EC_FENCED) {
        /* F1: a waiter of this ring cannot use membarrier(): from now on
         * this handle fences between publishing and its load of the word
         * (pairs with the fence in shmring__ec_prepare()). */
        shmring__fence_seq_cst();
        *fenced = 1;
        /* F2: ACK by CAS after the fence: a fenced waiter that sees ACK in
         * the value of its own SLEEPER CAS knows that this notifier fences
         * (docs/design.md, "Wake-ups"). */
        v = ack ? shmring__ec_set_flags(word, SHMRING__EC_ACK) : shmring__load_relaxed_32(word);
    }
    if (v & SHMRING__EC_SLEEPER)
        shmring__ec_wake(word);
}
