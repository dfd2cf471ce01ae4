/*
 * Messages larger than a slot (internal to src/): the slot-level half of
 * spanning messages. The ring (ring.c) keeps the positions, claims and
 * read_index; this module writes, copies and checks the slots that follow a
 * spanning message's head, and owns the private copies handed to claims.
 *
 * A message of len bytes takes span(len) = max(1, ceil(len / slot_size))
 * consecutive positions p .. p + span - 1 (wrapping around the slot array
 * like any positions):
 *
 *   position p        head: len = the whole length, payload = bytes
 *                     [0, slot_size); its seq is the message's seqlock
 *                     (P1 / P2 / C1 / C2 in ring.c), published last.
 *   position p + i    continuation i (1 <= i < span): reserved0 = i (the
 *                     offset back to the head), len = bytes in this slot,
 *                     payload = bytes [i * slot_size, ...); its own seq
 *                     goes 2(p+i)+1 (S1) then 2(p+i)+2 (S2) before the
 *                     head's P2.
 *
 * Edges (the labels of ring.c continue here):
 *   S1  producer: continuation seq := 2q+1 (release), release fence, payload.
 *   S2  producer: continuation seq := 2q+2 (release), before the head's P2
 *       in program order: a consumer whose C1 saw the head published sees
 *       every continuation published too.
 *   S3  consumer: continuation seq load (acquire), must be 2q+2 with
 *       reserved0 = q - p; pairs with S2. A newer value means the producer
 *       lapped the message, and it rewrites the head first: the head's C2
 *       then fails (or read_index moved), never a torn message.
 *   S4  consumer, after copying: acquire fence, every continuation's seq
 *       re-loaded (pairs with S1), as C2 does for the head.
 *
 * A continuation is never a message: read_index only ever moves from a head
 * to the next head (C3 takes span(len) positions; O1 moves to a head), and a
 * producer that takes over the lease marks any continuation a dead producer
 * published past its resume position as being written (S5, before its first
 * write), so that such a leftover cannot be taken for a message.
 *
 * The creator stores max_message in the ring's line 11 before the segment
 * is ready; every attach reads it once and validates it against the
 * validated slot geometry (a corrupt value fails the open with -EPROTO).
 */
#ifndef SHMRING_SPAN_H
#define SHMRING_SPAN_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

struct shmring__span_buf; /* a claim's private copy (span.c) */

struct shmring__span {
    unsigned char *data; /* the slot array */
    uint64_t mask;
    size_t stride;
    uint32_t slot_size;
    uint32_t max_message;           /* validated; == slot_size: no message spans */
    struct shmring__span_buf *bufs; /* copies held by claims of this handle */
    unsigned char *reserve_buf;     /* a spanning reservation is written here */
};

/* 1 if messages of this ring may span several slots. */
static inline int shmring__span_on(const struct shmring__span *sp)
{
    return sp->max_message > sp->slot_size;
}

/* Positions taken by a message of len bytes (len <= max_message). */
static inline uint64_t shmring__span_slots(const struct shmring__span *sp, uint64_t len)
{
    return len <= sp->slot_size ? 1 : (len + sp->slot_size - 1) / sp->slot_size;
}

/* The creator's check of cfg->max_message: the value to store, or -EINVAL
 * (0 < max < slot_size, or max > slots * slot_size / 2, or above UINT32_MAX). */
int64_t shmring__span_config(uint32_t slots, uint32_t slot_size, uint64_t max);

/* Creator, before the segment is ready: store max_message in line 11. */
void shmring__span_init(struct shmring__ring_shared *sh, uint32_t max_message);

/* Attach: read line 11 once and validate it against the validated
 * geometry. -EPROTO for a value no creator could have stored. */
int shmring__span_attach(struct shmring__span *sp, const struct shmring__ring_shared *sh,
                         unsigned char *data, uint32_t slots, uint32_t slot_size, size_t stride);

/* Free the handle's copies and reservation buffer (shmring_close). */
void shmring__span_detach(struct shmring__span *sp);

/* Producer: S1, payload, S2 for continuations 1 .. span - 1 of the message
 * at position w (its head is written by the caller, after this). */
void shmring__span_write_tail(const struct shmring__span *sp, uint64_t w, const void *msg,
                              size_t len);

/* Result of span_copy: a continuation did not hold what S3 expects. */
#define SHMRING__SPAN_MISMATCH (-EBADMSG)

/* Consumer: copy the len bytes of the message whose head (published, C1
 * done) is at pos into buf (S3 on each continuation). 0, or
 * SHMRING__SPAN_MISMATCH. */
int shmring__span_copy(const struct shmring__span *sp, uint64_t pos, size_t len, void *buf);

/* Consumer: S4. 1 if no continuation of the message at pos changed. */
int shmring__span_unchanged(const struct shmring__span *sp, uint64_t pos, size_t len);

/* A claim's private copy of len bytes: allocated here, listed in the
 * handle, given to the claim, freed by shmring__span_buf_free. NULL if out
 * of memory. */
void *shmring__span_buf_new(struct shmring__span *sp, size_t len);

/* 1 if p is a copy of this handle still held, and then frees it. */
int shmring__span_buf_free(struct shmring__span *sp, const void *p);

/* Reservation buffer of max_message bytes (allocated once). NULL: ENOMEM. */
void *shmring__span_reserve_buf(struct shmring__span *sp);

/*
 * Overwrite producer (O1): the first head at or after `target`, walking
 * messages from the head `ri` (never past w); *lost = messages skipped.
 * Every position in [ri, w) was written by this producer or a predecessor;
 * lengths are still checked, so a corrupt slot only shortens a step.
 */
uint64_t shmring__span_skip(const struct shmring__span *sp, uint64_t ri, uint64_t target,
                            uint64_t w, uint64_t *lost);

/* Messages (heads) among positions [ri, wi), for shmring_stats. */
uint64_t shmring__span_count(const struct shmring__span *sp, uint64_t ri, uint64_t wi);

/* S5: a new producer resuming at w marks continuations published past w
 * by a dead predecessor as being written. */
void shmring__span_resume(const struct shmring__span *sp, uint64_t w);

/*
 * A new producer resuming at w after a predecessor that died between
 * publishing and committing: messages, bytes and continuation slots among
 * [wi, w) (wi: the committed write_index, a head), for count_uncommitted.
 */
void shmring__span_uncommitted(const struct shmring__span *sp, uint64_t wi, uint64_t w,
                               uint64_t *msgs, uint64_t *bytes, uint64_t *extra);

#endif /* SHMRING_SPAN_H */
