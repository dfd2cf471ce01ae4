/*
 * At-least-once redelivery: markers on the claim words of messages whose
 * consumer died holding them (see redeliver.h for the encoding and the
 * rules). Edges, in the labels of src/ring.c:
 *
 *   R1  sweeper: claim := marker (CAS, seq_cst) on a dead owner's claim.
 *       The slot stays held for the producer's Z2.
 *   R2  sweeper: redeliver_hint += 1 (fetch-add) after R1; data eventcount
 *       notified, so that sleeping consumers look.
 *   R3  consumer: redeliver_hint load (relaxed, a hint), then the claim
 *       words of every slot (acquire, pairs with R1: the message's payload,
 *       written before its first claim, is visible).
 *   R4  consumer: claim := held (pos, me) (CAS from the marker, seq_cst):
 *       exactly one consumer gets each marker.
 *   R5  consumer: redeliver_hint -= 1 (CAS, never below 0) after R4.
 *   R6  releaser: slot.reserved1 := pos + 1 (relaxed) before Z3 (release);
 *       a sweeper that loads a later claim word with acquire sees it.
 *
 * Peers are untrusted: a marker's position is checked against its slot and
 * read_index, the slot's sequence against the position, and every loop is
 * bounded by the slot count.
 */
#include "redeliver.h"

#include <errno.h>

#include "fault.h"
#include "wait.h"

#define SCAN_TRIES 64u /* markers taken by others under us before giving up */

static inline struct shmring__slot *slot_of(const struct shmring__rd_view *v, uint64_t index)
{
    return (struct shmring__slot *)(void *)(v->data + (size_t)(index & v->mask) * v->stride);
}

static inline uint64_t pos_of(uint64_t c)
{
    return (c >> SHMRING__CLAIM_POS_SHIFT) - 1;
}

static inline unsigned owner_of(uint64_t c)
{
    return (unsigned)(c & SHMRING__CLAIM_OWNER_MASK);
}

static inline uint64_t marker(uint64_t pos, unsigned kind)
{
    return ((pos + 1) << SHMRING__CLAIM_POS_SHIFT) | SHMRING__CLAIM_HELD | kind;
}

static inline int is_marker(uint64_t c)
{
    unsigned o = owner_of(c);
    return (c & SHMRING__CLAIM_HELD) &&
           (o == SHMRING__REDELIVER_COUNTED || o == SHMRING__REDELIVER_UNCOUNTED);
}

/* R2: one more marker; wake consumers sleeping on an empty ring. */
static void hint_raise(const struct shmring__rd_view *v)
{
    /* R2: fetch-add after R1; a consumer that misses it finds the marker
     * at its next idle scan. */
    shmring__faa_64(&v->sh->redeliver_hint, 1);
    shmring__ec_notify_after_atomic(&v->sh->data_ec);
}

/* R5: one marker fewer; never below zero (a marker found by a forced scan
 * may never have been counted). */
static void hint_lower(const struct shmring__rd_view *v)
{
    /* Relaxed: the CAS below decides. */
    uint64_t h = shmring__load_relaxed_64(&v->sh->redeliver_hint);
    for (unsigned i = 0; i < SCAN_TRIES && h != 0; i++)
        /* R5: CAS; pairs with R2 and other consumers' R5. */
        if (shmring__cas_64(&v->sh->redeliver_hint, &h, h - 1))
            return;
}

/*
 * Does a dead owner's pending claim c of position p hold a message? Only if
 * its C3 succeeded: p is below read_index, the slot still holds p, and no
 * consumer released p from it (a claimer's C3 can fail only because another
 * consumer took p first, which every consumer of this ring does with a claim
 * that it released before this one could be stored).
 */
static int pending_took(const struct shmring__rd_view *v, struct shmring__slot *s, uint64_t p)
{
    /* Acquire: pairs with C3 (seq_cst) of the dead owner: it died after it,
     * and its death was observed (an OFD lock, a syscall) before this. */
    uint64_t ri = shmring__load_acquire_64(&v->sh->read_index);
    if (p >= ri)
        return 0;
    /* Acquire: pairs with P2. Peer-written: compared only. */
    if (shmring__load_acquire_64(&s->seq) != 2 * p + 2)
        return 0;
    /* Relaxed: ordered by the acquire load of the claim word in
     * shmring__rd_sweep (R6 pairs with it). */
    return shmring__load_relaxed_64(&s->reserved1) != p + 1;
}

int shmring__rd_sweep(const struct shmring__rd_view *v, uint64_t index, uint64_t c)
{
    struct shmring__slot *s = slot_of(v, index);
    /* Acquire: pairs with Z1/Z4 of the owner and with R6 of the consumer
     * whose release let this claim be stored. */
    if (shmring__load_acquire_64(&s->claim) != c)
        return SHMRING__RD_LOST;
    uint64_t p = pos_of(c);
    uint64_t want = 0;
    unsigned kind = SHMRING__REDELIVER_UNCOUNTED;
    /* Peer-written: a claim of another slot's position is garbage: cleared. */
    if ((p & v->mask) == (index & v->mask)) {
        if (c & SHMRING__CLAIM_HELD)
            kind = SHMRING__REDELIVER_COUNTED; /* counted in popped after Z4 */
        if ((c & SHMRING__CLAIM_HELD) || pending_took(v, s, p))
            want = marker(p, kind);
    }
    if (want != 0)
        SHMRING_FAULT(REDELIVER_SWEEP);
    /* R1 (or Z3 for a claim that held nothing): CAS, pairs with Z2 of the
     * producer and R3 of consumers. */
    if (!shmring__cas_64(&s->claim, &c, want))
        return SHMRING__RD_LOST;
    if (want == 0)
        return SHMRING__RD_CLEARED;
    SHMRING_FAULT(REDELIVER_MARK);
    /* Fetch-add: any sweeper may count; one claim at a time. */
    shmring__faa_64(&v->sh->redelivered, 1);
    hint_raise(v);
    return SHMRING__RD_MARKED;
}

/* R3: the oldest marker of a position below ri, or 0 if none. */
static uint64_t oldest_marker(const struct shmring__rd_view *v, uint64_t ri)
{
    uint64_t best = 0;
    for (uint64_t i = 0; i < v->nslots; i++) {
        /* R3: acquire, pairs with R1. */
        uint64_t c = shmring__load_acquire_64(&slot_of(v, i)->claim);
        if (!is_marker(c))
            continue;
        uint64_t p = pos_of(c);
        /* Peer-written: a marker is of a position already taken (below
         * read_index) and of this slot; anything else is skipped (the
         * producer and claimers clear it as stale). */
        if (p >= ri || (p & v->mask) != i)
            continue;
        if (best == 0 || p < pos_of(best))
            best = c;
    }
    return best;
}

int shmring__rd_take(const struct shmring__rd_view *v, unsigned me, int force, uint64_t *pos,
                     int *counted)
{
    /* R3: relaxed, a hint (see shmring__rd_waiting). */
    uint64_t h = shmring__load_relaxed_64(&v->sh->redeliver_hint);
    if (h == 0 && !force)
        return -EAGAIN;
    for (unsigned tries = 0; tries < SCAN_TRIES; tries++) {
        /* Acquire: pairs with C3; markers are of positions below it. */
        uint64_t ri = shmring__load_acquire_64(&v->sh->read_index);
        uint64_t c = oldest_marker(v, ri);
        if (c == 0) {
            /* None: the hint counted a marker that a dying party never
             * stored, or one taken since. Reset it unless it moved. */
            if (h != 0)
                /* CAS: pairs with R2 and R5; a raise since then wins. */
                shmring__cas_64(&v->sh->redeliver_hint, &h, 0);
            return -EAGAIN;
        }
        uint64_t p = pos_of(c);
        struct shmring__slot *s = slot_of(v, p);
        SHMRING_FAULT(REDELIVER_TAKE);
        uint64_t mine = ((p + 1) << SHMRING__CLAIM_POS_SHIFT) | SHMRING__CLAIM_HELD | me;
        /* R4: CAS, seq_cst; exactly one taker per marker. */
        if (!shmring__cas_64(&s->claim, &c, mine))
            continue;
        SHMRING_FAULT(REDELIVER_TAKEN);
        hint_lower(v);
        /* Acquire: pairs with P2. Peer-written: a marker on a slot that does
         * not hold its position is garbage: free the slot and look again. */
        if (shmring__load_acquire_64(&s->seq) != 2 * p + 2) {
            /* Z3: CAS, pairs with Z2. */
            shmring__cas_64(&s->claim, &mine, 0);
            continue;
        }
        *pos = p;
        *counted = owner_of(c) == SHMRING__REDELIVER_COUNTED;
        return 0;
    }
    return -EAGAIN;
}

void shmring__rd_give_back(const struct shmring__rd_view *v, uint64_t pos, unsigned me)
{
    struct shmring__slot *s = slot_of(v, pos);
    uint64_t mine = ((pos + 1) << SHMRING__CLAIM_POS_SHIFT) | SHMRING__CLAIM_HELD | me;
    /* R1: CAS from our own held claim (only a sweeper of ours could change
     * it, and we are alive). Counted: this handle, or the one before it,
     * counted the message in popped when it took it. */
    if (shmring__cas_64(&s->claim, &mine, marker(pos, SHMRING__REDELIVER_COUNTED)))
        hint_raise(v);
}
