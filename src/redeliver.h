/*
 * At-least-once redelivery (SHMRING_REDELIVER rings), private to src/.
 *
 * A claim that a consumer took but did not release when it died (or closed)
 * is not cleared: its claim word becomes a redeliverable marker, so that the
 * producer still cannot reuse the slot, and the next claim, pop or pop_batch
 * of any consumer takes it before anything newer.
 *
 * Claim words (see ring.h and the legend of src/ring.c):
 *
 *   63                            9    8     7        0
 *   +------------------------------+------+----------+
 *   | position + 1                 | HELD | owner    |
 *   +------------------------------+------+----------+
 *
 * owner is a consumer's party entry (1..32) or one of the two markers:
 *   REDELIVER_COUNTED   (0xff) the message was counted in `popped` when it
 *                       was first taken (a held claim, or a copy pop giving
 *                       back a message too large for its buffer);
 *   REDELIVER_UNCOUNTED (0xfe) it was not: a claimer that died between its
 *                       C3 and Z4. Whoever takes it counts it.
 * A marker always has HELD set: to the producer's Z2 it is a held claim of
 * the slot's last position (the ring is full there), and no party entry has
 * those numbers, so nobody reclaims it as a dead owner's.
 *
 * Ring line 6: redeliver_hint counts markers (a hint: fetch-add +1 after a
 * marker is stored, saturating -1 after one is taken, reset to 0 by a scan
 * that finds none), so that a consumer scans the slots only when it is not
 * zero: the fast path costs one load of a line that is written only when a
 * consumer dies. Idle consumers (a ring found empty, at most every
 * PEER_CHECK_NS, and always at the end of the stream) reclaim dead consumers
 * and scan whatever the hint says, so that a marker whose hint was lost
 * with a dying party is still found.
 *
 * Slot reserved1: p + 1 after a consumer released position p from the slot,
 * stored before the release (Z3, release order). It tells a dead claimer's
 * pending claim of a position below read_index whose C3 succeeded (nobody
 * released that position: redeliver it) from one whose C3 failed because
 * another consumer had taken and released the position first (clear it).
 * Every delivery of a SHMRING_REDELIVER ring goes through a claim (copy pops
 * too), so no consumer takes a position without a claim word that others see.
 */
#ifndef SHMRING_REDELIVER_H
#define SHMRING_REDELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "ring.h"

/* The claim word's fields (ring.c checks that its own macros agree). */
#define SHMRING__CLAIM_OWNER_BITS    8u
#define SHMRING__CLAIM_OWNER_MASK    ((1u << SHMRING__CLAIM_OWNER_BITS) - 1u)
#define SHMRING__CLAIM_HELD          ((uint64_t)1 << SHMRING__CLAIM_OWNER_BITS)
#define SHMRING__CLAIM_POS_SHIFT     (SHMRING__CLAIM_OWNER_BITS + 1u)
#define SHMRING__REDELIVER_COUNTED   0xffu
#define SHMRING__REDELIVER_UNCOUNTED 0xfeu

/* What redeliver.c needs of a ring handle (validated, process-local). */
struct shmring__rd_view {
    struct shmring__ring_shared *sh;
    unsigned char *data;
    size_t stride;
    uint64_t mask;
    uint32_t nslots;
};

/* Results of shmring__rd_sweep. */
#define SHMRING__RD_LOST    0 /* the claim changed meanwhile: nothing done */
#define SHMRING__RD_CLEARED 1 /* cleared: the slot is free for the producer */
#define SHMRING__RD_MARKED  2 /* made redeliverable (counted in `redelivered`) */

/*
 * A claim word c, found on slot `index` and owned by a consumer that died or
 * is closing: mark it redeliverable if it holds a message (held, or pending
 * after a successful C3), clear it otherwise. Wakes sleeping consumers for a
 * marker.
 */
int shmring__rd_sweep(const struct shmring__rd_view *v, uint64_t index, uint64_t c);

/*
 * Take the oldest redeliverable message for party `me` as a held claim:
 * 0 with its position in *pos and *counted (1 if its first delivery was
 * counted in `popped`), or -EAGAIN if there is none. Scans the slots only
 * when the hint is not zero, unless `force`.
 */
int shmring__rd_take(const struct shmring__rd_view *v, unsigned me, int force, uint64_t *pos,
                     int *counted);

/* Turn this party's held claim of pos into a counted marker (a copy pop
 * whose buffer is too small gives the message back). */
void shmring__rd_give_back(const struct shmring__rd_view *v, uint64_t pos, unsigned me);

/* Fast-path check: may a redeliverable message be waiting? */
static inline int shmring__rd_waiting(const struct shmring__ring_shared *sh)
{
    /* Relaxed: a hint. A marker stored before the hint was raised is found
     * by the next scan; the CAS that takes a marker decides. */
    return shmring__load_relaxed_64(&sh->redeliver_hint) != 0;
}

/* Before the release (Z3) of position pos: record it in the slot. */
static inline void shmring__rd_released(struct shmring__slot *s, uint64_t pos)
{
    /* Relaxed: published by the release (Z3) that follows; read by
     * shmring__rd_sweep after an acquire load of a later claim word. */
    shmring__store_relaxed_64(&s->reserved1, pos + 1);
}

#endif /* SHMRING_REDELIVER_H */
