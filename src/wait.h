/*
 * Eventcounts in shared memory: wait for a condition without a lost
 * wake-up, and wake only when someone sleeps.
 *
 * The word holds a counter (bits 3..31) and three flags:
 *
 *   bit 0  SLEEPER  someone sleeps, or is about to (set by waiters)
 *   bit 1  FENCED   a party of the ring cannot use membarrier(): every
 *                   notifier must order its change before its load of the
 *                   word with a full barrier (set at attach, never cleared)
 *   bit 2  ACK      the notifier has seen FENCED and fences from now on
 *                   (the ring's producer, on the data eventcount only)
 *
 * A waiter announces itself with a prepare call (sets SLEEPER), re-checks
 * its condition, and only then sleeps with shmring__ec_sleep on the value
 * prepare returned. A notifier makes the condition true, then loads the word
 * and, only if SLEEPER is set, bumps the counter, clears SLEEPER and issues
 * FUTEX_WAKE. The futex is not FUTEX_PRIVATE, so waiters and notifiers may
 * be in different processes.
 *
 * The notifier's change and its load of the word, and the waiter's store of
 * SLEEPER and its re-check, are the two halves of a Dekker pattern: each
 * side needs its store ordered before its load, or both may miss the other
 * (the waiter sleeps, the notifier does not wake it). Two ways to get that:
 *
 *   symmetric   both sides execute a full barrier: the waiter a fence after
 *               its CAS (shmring__ec_prepare), the notifier a fence or an
 *               atomic read-modify-write (shmring__ec_notify,
 *               shmring__ec_notify_after_atomic). Concurrency Kit's ck_ec.
 *   asymmetric  the notifier executes no barrier, only a compiler barrier
 *               (shmring__ec_notify_asym); the waiter, after setting
 *               SLEEPER, calls membarrier(), which makes every CPU running
 *               a thread of the registered processes execute a full barrier
 *               before it returns (shmring__ec_prepare_mb). Either that
 *               barrier falls after the notifier's change, which is then
 *               visible to the waiter's re-check, or before the notifier's
 *               load of the word, which then sees SLEEPER (M1/M2 in
 *               docs/design.md). Only processes registered for it are
 *               covered: every process that notifies registers once
 *               (shmring__membarrier_register) before its first notify.
 *
 * A waiter using membarrier is safe against both kinds of notifier; a
 * waiter using a fence is safe only against symmetric notifiers, hence the
 * FENCED flag (docs/design.md, "Wake-ups").
 *
 * The symmetric algorithm is Concurrency Kit's ck_ec, written against
 * src/atomic.h so that ThreadSanitizer sees every access.
 */
#ifndef SHMRING_WAIT_H
#define SHMRING_WAIT_H

#include <stdint.h>

#include "atomic.h"

#define SHMRING__EC_SLEEPER 1u
#define SHMRING__EC_FENCED  2u
#define SHMRING__EC_ACK     4u
#define SHMRING__EC_ONE     8u /* one step of the counter */

/* Which membarrier() covers the notifiers of a ring. */
enum shmring__barrier {
    SHMRING__BARRIER_PRIVATE = 1, /* all in this process (heap backend) */
    SHMRING__BARRIER_GLOBAL = 2,  /* several processes (shared backends) */
};

/*
 * Register this process for membarrier() of `kind` (once per process; later
 * calls return the first result). 0 on success, or -ENOSYS (no membarrier
 * or no such command: old kernel), -EPERM (seccomp), -EINVAL.
 * Makes system calls: call at attach time, never on a fast path.
 */
int shmring__membarrier_register(enum shmring__barrier kind);

/* Announce a waiter (symmetric); returns the value to pass to shmring__ec_sleep. */
uint32_t shmring__ec_prepare(uint32_t *word);

/*
 * Announce a waiter (asymmetric): set SLEEPER, then membarrier(kind). The
 * caller's process must be registered for `kind`. Returns the value for
 * shmring__ec_sleep; *covered is 1 if the barrier ran, 0 if it failed (then
 * a fence ran instead, which covers symmetric notifiers only).
 */
uint32_t shmring__ec_prepare_mb(uint32_t *word, enum shmring__barrier kind, int *covered);

/*
 * Announce a waiter that does not sleep on the word (an event descriptor,
 * src/event.c): set SLEEPER with a CAS even when it is already set, so that
 * the announcement is an RMW in the word's modification order: a notifier
 * whose CAS in shmring__ec_wake() clears SLEEPER after it also sees every
 * store the caller made before this call (V1 in src/event.c). Then
 * membarrier(kind) with use_mb (M2), else a fence. Returns the new value;
 * *covered as for shmring__ec_prepare_mb (0 without use_mb).
 */
uint32_t shmring__ec_announce(uint32_t *word, int use_mb, enum shmring__barrier kind, int *covered);

/*
 * Sleep while *word == value, at most max_ns (> 0). Returns when woken, when
 * the word changed, on a signal, or when the time ran out; the caller
 * re-checks its condition and its deadline in every case.
 */
void shmring__ec_sleep(uint32_t *word, uint32_t value, uint64_t max_ns);

/*
 * Wake every sleeper if there is one. Call after making the condition true.
 * The notifier that clears SLEEPER also signals the event descriptors armed
 * on the word (shmring__event_woke, src/event.c).
 */
void shmring__ec_wake(uint32_t *word);

/* Set `flags` (FENCED, ACK) in the word; returns the word's new value. */
uint32_t shmring__ec_set_flags(uint32_t *word, uint32_t flags);

SHMRING_INLINE void shmring__ec_notify(uint32_t *word)
{
    /* Full fence: orders the caller's publishing stores before the load of
     * the flag; pairs with the fence in shmring__ec_prepare() (Dekker) and
     * with the membarrier() of shmring__ec_prepare_mb(). */
    shmring__fence_seq_cst();
    if (shmring__load_relaxed_32(word) & SHMRING__EC_SLEEPER)
        shmring__ec_wake(word);
}

/*
 * Same, for a caller whose last publishing step was an atomic
 * read-modify-write (a CAS or exchange): that already orders the publishing
 * before the load of the flag on machines where RMWs are full barriers.
 */
SHMRING_INLINE void shmring__ec_notify_after_atomic(uint32_t *word)
{
    /* Pairs with the fence in shmring__ec_prepare() (Dekker) and with the
     * membarrier() of shmring__ec_prepare_mb(). */
    shmring__fence_after_atomic();
    if (shmring__load_relaxed_32(word) & SHMRING__EC_SLEEPER)
        shmring__ec_wake(word);
}

/* The rare branch of shmring__ec_notify_asym: FENCED or SLEEPER is set. */
void shmring__ec_notify_flagged(uint32_t *word, uint32_t v, int *fenced, int ack);

/*
 * Asymmetric notify: no barrier, only a compiler barrier, then a plain load
 * of the word. The caller's process is registered for membarrier(). If the
 * word says FENCED, the caller switches to symmetric notifies for good
 * (*fenced = 1): it fences, reloads, and with `ack` sets ACK.
 */
SHMRING_INLINE void shmring__ec_notify_asym(uint32_t *word, int *fenced, int ack)
{
    /* M1: compiler barrier only: the load below stays after the caller's
     * publishing stores in program order; the CPU may still let it pass
     * them, which the waiter's membarrier() (M2) covers. */
    shmring__compiler_barrier();
    /* M1: relaxed, pairs with M2 in shmring__ec_prepare_mb(). */
    uint32_t v = shmring__load_relaxed_32(word);
    if (v & (SHMRING__EC_SLEEPER | SHMRING__EC_FENCED))
        shmring__ec_notify_flagged(word, v, fenced, ack);
}

#endif /* SHMRING_WAIT_H */
