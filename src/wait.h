/*
 * Eventcounts in shared memory: wait for a condition without a lost
 * wake-up, and wake only when someone sleeps.
 *
 * The word holds a counter (upper 31 bits) and a "someone sleeps" flag
 * (bit 0). A waiter announces itself with shmring__ec_prepare (sets the
 * flag), re-checks its condition, and only then sleeps with shmring__ec_sleep
 * on the value prepare returned. A notifier makes the condition true, then
 * calls shmring__ec_notify, which costs one full fence and one load when
 * nobody sleeps, and bumps the counter and issues FUTEX_WAKE when someone
 * does. The futex is not FUTEX_PRIVATE, so waiters and notifiers may be in
 * different processes.
 *
 * This is the algorithm of Concurrency Kit's ck_ec, written against
 * src/atomic.h so that ThreadSanitizer sees every access.
 */
#ifndef SHMRING_WAIT_H
#define SHMRING_WAIT_H

#include <stdint.h>

#include "atomic.h"

/* Announce a waiter; returns the value to pass to shmring__ec_sleep. */
uint32_t shmring__ec_prepare(uint32_t *word);

/*
 * Sleep while *word == value, at most max_ns (> 0). Returns when woken, when
 * the word changed, on a signal, or when the time ran out; the caller
 * re-checks its condition and its deadline in every case.
 */
void shmring__ec_sleep(uint32_t *word, uint32_t value, uint64_t max_ns);

/* Wake every sleeper if there is one. Call after making the condition true. */
void shmring__ec_wake(uint32_t *word);

SHMRING_INLINE void shmring__ec_notify(uint32_t *word)
{
    /* Full fence: orders the caller's publishing stores before the load of
     * the flag; pairs with the fence in shmring__ec_prepare() (Dekker). */
    shmring__fence_seq_cst();
    if (shmring__load_relaxed_32(word) & 1u)
        shmring__ec_wake(word);
}

/*
 * Same, for a caller whose last publishing step was an atomic
 * read-modify-write (a CAS or exchange): that already orders the publishing
 * before the load of the flag on machines where RMWs are full barriers.
 */
SHMRING_INLINE void shmring__ec_notify_after_atomic(uint32_t *word)
{
    /* Pairs with the fence in shmring__ec_prepare() (Dekker). */
    shmring__fence_after_atomic();
    if (shmring__load_relaxed_32(word) & 1u)
        shmring__ec_wake(word);
}

#endif /* SHMRING_WAIT_H */
