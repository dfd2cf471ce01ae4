/*
 * Broadcast subscribers of a ring (SHMRING_SUBSCRIBER), private to src/.
 *
 * A subscriber reads every message from the position where it attached on,
 * in order, through a cursor of its own; competing consumers and other
 * subscribers do not take messages from it. Its cursor line (ring.h, the
 * subscriber region) is written by the subscriber alone, with release
 * stores. In the normal (lossless) mode the producer's room is bounded by
 * the slowest live subscriber as well as by read_index; in overwrite mode
 * the producer ignores subscribers and a lapped one jumps forward.
 *
 * ring.c keeps one `struct shmring__subs` per handle (its validated
 * geometry, and the subscriber state when the handle is one) and calls the
 * hooks below. docs/design.md, "Broadcast subscribers", has the argument.
 */
#ifndef SHMRING_SUBSCRIBER_H
#define SHMRING_SUBSCRIBER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "ring.h"

struct shmring__subs {
    /* The ring's validated geometry (copies; never re-read from shared memory). */
    struct shmring__seg *seg;
    struct shmring__ring_shared *sh;
    struct shmring__sub_line *lines; /* SHMRING__PARTIES lines; index = party entry */
    unsigned char *data;
    uint64_t mask;
    size_t stride;
    uint32_t nslots;
    uint32_t slot_size;
    int overwrite;
    int single;
    /* Subscriber handles only (index >= 1); -1 otherwise. */
    int index;
    uint64_t word;   /* the registration word stored in our line's state */
    uint64_t next;   /* next position to read */
    uint64_t base;   /* lossless claims: oldest position possibly still held */
    uint64_t nheld;  /* lossless claims held */
    uint64_t *held;  /* lossless claims: bitmap of nslots bits by slot, or NULL */
    uint64_t missed; /* lost to lapping, not yet reported by shmring_missed */
    uint32_t cookie; /* the handle's claim cookie */
};

/* Fill the geometry of a handle's subscriber view (index -1: not a subscriber). */
void shmring__subs_init(struct shmring__subs *s, struct shmring__seg *seg,
                        struct shmring__ring_shared *sh, unsigned char *data, uint32_t nslots,
                        uint32_t slot_size, size_t stride, int overwrite, int single,
                        uint32_t cookie);

/* ---- Subscriber handles ---------------------------------------------------- */

/* Register party entry `index` (taken by the caller) as a subscriber starting
 * at the current end of the stream. 0, or -EPROTO (corrupt segment). */
int shmring__sub_attach(struct shmring__subs *s, unsigned index);
/* Unregister (close); wakes a producer that waited for this subscriber. */
void shmring__sub_detach(struct shmring__subs *s);

/* Copy pop: length, -EAGAIN (nothing new), -EPIPE (and the producer
 * closed), -EMSGSIZE, -EPROTO. *fenced: the handle's symmetric-notify flag. */
ssize_t shmring__sub_pop(struct shmring__subs *s, void *buf, size_t cap, int *fenced);
/* Batch pop (n >= 1, at most `max`): count, or as shmring__sub_pop. */
ssize_t shmring__sub_pop_batch(struct shmring__subs *s, struct iovec *iov, size_t n, int *fenced);
/* Zero-copy: claim the next message / release one (-EINVAL: not ours;
 * -ESTALE: overwrite mode, the slot was rewritten while held; -ENOMEM: the
 * first claim of a handle could not allocate its bookkeeping). */
int shmring__sub_claim(struct shmring__subs *s, shmring_msg_t *m);
int shmring__sub_release(struct shmring__subs *s, shmring_msg_t *m, int *fenced);
/* Messages this subscriber lost to lapping since it last asked. */
uint64_t shmring__sub_missed(struct shmring__subs *s);
/* Readiness (for an event descriptor): 1 if a message may be waiting,
 * i.e. this subscriber's next position is below write_index. */
int shmring__sub_ready(const struct shmring__subs *s);

/* ---- Producer ------------------------------------------------------------ */

/*
 * The producer's look at subscribers when it reaches its cached floor, for
 * position w, lossless mode only (G1..G3 in subscriber.c). *floor comes in
 * as read_index (also in *cached_read) and leaves as the lowest position a
 * live subscriber has not passed, if lower. On a ring with live subscribers
 * and no consumer attached, read_index is moved up to the subscribers
 * (counted as skipped), updating *cached_read. *blocker: the entry of the
 * slowest subscriber (0: none). 0 or -EPROTO.
 */
int shmring__sub_floor(struct shmring__subs *s, uint64_t w, uint64_t *cached_read, uint64_t *floor,
                       unsigned *blocker);

/* ---- Everyone ------------------------------------------------------------ */

/* Reclaim hook for a dead party entry `index` (held by the caller): drops its
 * subscription, if any, and counts it dead. */
void shmring__sub_reclaim(struct shmring__subs *s, unsigned index);
/* Stats: delivered, subscribers_dead, skipped. */
void shmring__sub_stats(const struct shmring__subs *s, shmring_stats_t *st);

#endif /* SHMRING_SUBSCRIBER_H */
