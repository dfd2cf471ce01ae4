/*
 * The ring's shared layout, private to src/.
 *
 * Header page object lines (see segment.h for the page as a whole):
 *
 *   line 0  producer: write_index, pushed, bytes_pushed, full_events, dropped
 *   line 1  consumers: read_index (CAS)
 *   line 2  data eventcount (consumers sleep on it, the producer wakes)
 *   line 3  space eventcount (the producer sleeps on it, consumers wake)
 *   line 4  rare writes: abandoned (retired_*: never written any more, zero;
 *           consumers' counters stay in their party entries, see ring.c)
 *   line 5  wake_created: the wake-up path chosen at creation (immutable)
 *   line 6  redelivery (SHMRING_REDELIVER rings, src/redeliver.h):
 *           redeliver_hint, redelivered
 *   line 7  event_entries: party entries that may hold an event descriptor's
 *           token (src/event.h), so that a wake-up reads one line, not 33
 *   line 9  producer, subscribers (subscriber.c): sub_announce (the position
 *           of the producer's last look at subscribers), sub_skipped
 *   line 10 subscribers, rare (fetch-add / CAS by anyone): sub_count (live
 *           registrations), sub_dead (subscribers detached as dead)
 *   line 11 span: max_message (immutable), span_extra (producer); span.h
 *
 * Subscriber region (layout 3): one page after the header page, one line per
 * party entry (line i belongs to entry i; line 0 unused):
 *
 *   +--------+-------+-----------+-------+--------+-----+
 *   | cursor | state | delivered | bytes | missed | pad |   x 33, pad to 4096
 *   +--------+-------+-----------+-------+--------+-----+
 *   0        8       16          24      32       40    64
 *
 * cursor    next position the subscriber has not passed (it may still read
 *           or hold it): written by the subscriber only, release stores.
 * state     0, or the owner word of the registered subscriber (nonzero):
 *           stored by the subscriber at attach; cleared by it at close, or by
 *           whoever reclaims its dead entry (CAS).
 * delivered, bytes, missed: the entry's counters, written by the subscriber
 *           only, carried over from one owner to the next (like party
 *           counters).
 *
 * Data: `slots` slots of `stride` bytes (a multiple of 64) after the
 * subscriber region (at SHMRING__RING_DATA):
 *
 *   +-------+-------+-----+-----+----------------------------+
 *   | seq   | claim | len | pad | payload (slot_size bytes)  |  pad to 64
 *   +-------+-------+-----+-----+----------------------------+
 *   0       8       16    20    32
 *
 * seq   per-slot seqlock written by the producer: 2p+1 while position p is
 *       being written, 2p+2 once it is published (0: never written).
 * claim zero-copy claim: 0, or ((p+1) << 8 | consumer entry) while a
 *       consumer holds position p in place (not used in overwrite mode).
 * len   payload length of the published message.
 * reserved0  spanning messages (span.h): 0 in a head, the offset back to
 *       the head in a continuation slot.
 * reserved1  SHMRING_REDELIVER rings: p + 1 once a consumer released
 *       position p from this slot (src/redeliver.h), else 0.
 */
#ifndef SHMRING_RING_H
#define SHMRING_RING_H

#include <stdint.h>

#include "segment.h"

#define SHMRING__SLOT_HEADER 32u
#define SHMRING__SUB_REGION  4096u /* the subscriber region after the header page */
#define SHMRING__RING_DATA   (SHMRING__HEADER_SIZE + SHMRING__SUB_REGION)

struct shmring__ring_shared {
    /* line 0: written by the producer only */
    uint64_t write_index;
    uint64_t pushed;
    uint64_t bytes_pushed;
    uint64_t full_events;
    uint64_t dropped;
    uint64_t pad0[3];
    /* line 1: CAS by consumers (and by the producer in overwrite mode) */
    uint64_t read_index;
    uint64_t pad1[7];
    /* line 2 */
    uint32_t data_ec;
    uint32_t pad2[15];
    /* line 3 */
    uint32_t space_ec;
    uint32_t pad3[15];
    /* line 4: rare, fetch-add by anyone */
    uint64_t abandoned;
    uint64_t retired_popped;
    uint64_t retired_bytes;
    uint64_t retired_empty;
    uint64_t pad4[4];
    /* line 5: written by the creator before the segment is ready, then
     * read-only (docs/design.md, "Wake-ups") */
    uint32_t wake_created; /* SHMRING__WAKE_CREATED_* */
    uint32_t pad5[15];
    /* line 6: redelivery, rare writes (fetch-add / CAS by anyone) */
    uint64_t redeliver_hint; /* redeliverable claims waiting (a hint) */
    uint64_t redelivered;    /* claims made redeliverable since creation */
    uint64_t pad6[6];
    /* line 7: bit i set (CAS) by the owner of party entry i before it
     * stores a descriptor's token there; cleared only by the entry's next
     * owner (src/event.c) */
    uint64_t event_entries;
    uint64_t pad7[7];
    /* line 8: not used yet */
    uint64_t pad8[8];
    /* line 9: written by the producer only (subscriber.c) */
    uint64_t sub_announce;
    uint64_t sub_skipped;
    uint64_t pad9[6];
    /* line 10: subscribers, rare; fetch-add by anyone */
    uint64_t sub_count;
    uint64_t sub_dead;
    uint64_t pad10[6];
    /* line 11: messages larger than a slot (src/span.h). max_message: written
     * by the creator before the segment is ready, then read-only (0 or the
     * slot size: no message spans). span_extra: written by the producer
     * only, the continuation slots it committed (pushed + span_extra ==
     * write_index between two commits). */
    uint32_t max_message;
    uint32_t pad11a;
    uint64_t span_extra;
    uint64_t pad11[6];
};

/* One line per party entry in the subscriber region (see above). */
struct shmring__sub_line {
    uint64_t cursor;
    uint64_t state;
    uint64_t delivered;
    uint64_t bytes;
    uint64_t missed;
    uint64_t pad[3];
};

_Static_assert(sizeof(struct shmring__sub_line) == SHMRING__LINE, "sub line is one line");
_Static_assert(SHMRING__PARTIES *SHMRING__LINE <= SHMRING__SUB_REGION, "sub lines fit");

/* wake_created: every party may use membarrier (0), or none does. */
#define SHMRING__WAKE_CREATED_MEMBARRIER 0u
#define SHMRING__WAKE_CREATED_FENCED     1u

_Static_assert(sizeof(struct shmring__ring_shared) <= SHMRING__OBJECT_LINES * SHMRING__LINE,
               "ring lines fit the header page");

struct shmring__slot {
    uint64_t seq;
    uint64_t claim;
    uint32_t len;
    uint32_t reserved0;
    uint64_t reserved1;
    /* payload follows */
};

_Static_assert(sizeof(struct shmring__slot) == SHMRING__SLOT_HEADER, "slot header size");

/* Consumer party counters (segment.h: party.counter[]). */
#define SHMRING__C_POPPED 0
#define SHMRING__C_BYTES  1
#define SHMRING__C_EMPTY  2
#define SHMRING__C_CLAIMS 3
/* 4: SHMRING__C_EVENT, the event descriptor's token (src/event.h) */

/* Layout function of rings (segment.h), also used by the fuzzers. */
int shmring__ring_layout(const uint32_t param[4], uint32_t flags, uint64_t *total);

/* Wrap a segment as a ring handle with the given roles (internal entry for
 * fuzzers: shmring__seg_attach_image, then this). */
int shmring__ring_from_seg(struct shmring__seg *seg, uint32_t roles, shmring_t **out);

#endif /* SHMRING_RING_H */
