/*
 * Ending a wait from outside (shmring_interrupt, shmring_state_interrupt);
 * private to src/.
 *
 * Each handle carries one struct shmring__cancel, process-local (the
 * handle is, too): nothing of it is shared with other processes. A wait
 * announces the eventcount it may sleep on (arm), polls `pending` on every
 * pass, and consumes it when it returns -ECANCELED. The interrupter sets
 * `pending` and then wakes the armed word; it may run in a signal handler,
 * so it uses only atomics and a raw futex call (async-signal-safe).
 *
 * Edges (a Dekker pattern, as between a notifier and a sleeper in wait.h):
 *
 *   I1  interrupter: pending := 1 (exchange), full fence, load word.
 *   I2  waiter: store word before its eventcount announce, then (on the
 *       sleeping path) a full fence and the load of pending. Either the
 *       waiter sees pending, or the interrupter sees the word and bumps its
 *       counter after the waiter's announce, so that the waiter's futex
 *       sleep returns at once or is woken (I3).
 *   I3  interrupter: fetch-add one counter step on the word, then
 *       FUTEX_WAKE. The sleep flag is left as it is: a notifier that comes
 *       later still sees the other sleepers of the word (the interrupt gives
 *       them one spurious wake-up, never a lost one), also if the
 *       interrupter dies between the two steps (fault point cancel.wake).
 */
#ifndef SHMRING_CANCEL_H
#define SHMRING_CANCEL_H

#include <stdint.h>

#include "atomic.h"

struct shmring__cancel {
    uint32_t pending; /* 1: an interrupt no wait has consumed yet */
    uint32_t pad;
    uint64_t word; /* (uintptr_t) the eventcount the wait in progress sleeps on, or 0 */
};

/* I1, I3: interrupt the wait in progress, or the next one. Async-signal-safe. */
void shmring__cancel_raise(struct shmring__cancel *c);

/* I2: the wait in progress may sleep on `word` (NULL: the wait is over). */
SHMRING_INLINE void shmring__cancel_arm(struct shmring__cancel *c, uint32_t *word)
{
    /* Relaxed: ordered before the load of pending by the waiter's announce
     * and the fence of shmring__cancel_check(sleeping = 1) (I2, pairs with
     * I1). */
    shmring__store_relaxed_64(&c->word, (uint64_t)(uintptr_t)word);
}

/*
 * Is an interrupt pending? If so, consume it and return 1. `sleeping`: the
 * caller announced itself on the armed word and may sleep next, so the load
 * must be ordered after that announce (I2).
 */
SHMRING_INLINE int shmring__cancel_check(struct shmring__cancel *c, int sleeping)
{
    if (sleeping)
        /* I2: full fence, pairs with the fence of I1. */
        shmring__fence_seq_cst();
    /* Relaxed: a poll; the exchange below decides who consumes it. */
    if (shmring__load_relaxed_32(&c->pending) == 0)
        return 0;
    /* Exchange: two waits of one handle (from two threads, against the
     * rules) cannot both consume one interrupt. */
    return shmring__xchg_32(&c->pending, 0) != 0;
}

#endif /* SHMRING_CANCEL_H */
