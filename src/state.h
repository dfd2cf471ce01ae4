/*
 * The state table's shared layout, private to src/.
 *
 * Header page object lines (see segment.h for the page as a whole):
 *
 *   line 0     insert lock: a lock word (below), CAS by writers of new keys
 *              and by deleters; `keys` and `keys_version`, written under it
 *   line 1     rare fetch-adds: recovered, counters of users that left; the
 *              state layout version (immutable after creation)
 *   lines 2-4  handle_gen[party index]: written when a handle opens
 *   line 5     wake[16]: eventcounts (wait.h) of shmring_state_wait, one per
 *              class of keys (hash of the key % 16); loaded by every writer
 *              after it publishes, stored only when someone sleeps
 *
 * Sizes (header params): param[0] entries (capacity in keys), param[1]
 * value_size, param[2] stride, param[3] index slots = 2 * entries, so that
 * a table holding `entries` keys is at most half full and its linear probe
 * sequences stay short (about 1.5 entries for a hit, 2.5 for a miss).
 *
 * Data: param[3] entries of `stride` bytes (a multiple of 64) after the
 * page, entry i at data + i * stride:
 *
 *   +-----+------------+------------+--------+--------+---------+---------+
 *   | seq | writer_seq | writer_pid | len[0] | len[1] | key[64] | copy 0  | copy 1 | pad to 64
 *   +-----+------------+------------+--------+--------+---------+---------+
 *   0     8            16           24       28       32        96        96 + vstride
 *
 * seq          the entry's seqlock word (a lock word, below).
 * writer_seq   the odd seq value whose writer stored writer_pid.
 * writer_pid   pid of that writer, for the log only: liveness never uses it.
 * len[c]       length of value copy c.
 * key          the key, NUL-padded to 64 bytes.
 * copy c       value copy c: value_size bytes, vstride = value_size rounded
 *              up to 8.
 *
 * A lock word (seq of an entry, or the insert lock) packs:
 *
 *   bits  0..31  version: odd while a writer holds the word, even otherwise;
 *                +1 when taken, +1 when published (or recovered)
 *   bits 32..33  committed state: EMPTY (never used), LIVE, TOMB (deleted)
 *   bit  34      committed copy: which value copy is current
 *   bits 35..63  owner while odd, 0 when even: the writer's party index
 *                (bits 35..40, 1..32) and its handle generation (41..63)
 *
 * The committed state and copy stay in the word while a writer holds it:
 * a writer only ever writes the copy that is not current (and the key only
 * into an entry whose committed state is not LIVE), so readers read the
 * committed copy whatever the parity, and recovery from a dead writer just
 * publishes the committed fields again.
 *
 * Who holds a word. Every handle takes a party entry (segment.h) and holds
 * its open-file-description lock for as long as it is open, and bumps
 * handle_gen[index] (below) when it takes the entry. A held word names that
 * entry and generation. Its writer is dead if the generation is no longer
 * the entry's (the handle is gone: the entry was freed or taken again), or
 * if the party is not alive (its lock dropped: the kernel drops it when the
 * last thread of the process exits, so a process whose main thread exited
 * while others run is alive, whatever pid namespace either side is in).
 */
#ifndef SHMRING_STATE_PRIVATE_H
#define SHMRING_STATE_PRIVATE_H

#include <stdint.h>

#include "segment.h"

#define SHMRING__STATE_KEY_FIELD    64u
#define SHMRING__STATE_ENTRY_HEADER 96u
#define SHMRING__STATE_WAKE_WORDS   16u /* a power of two */

/* Index slots for a capacity of `entries` keys (a load of at most 1/2). */
#define SHMRING__STATE_SLOTS(entries) (2u * (uint32_t)(entries))
/* Layout of the state object itself (line 1: layout), beside SHMRING__LAYOUT. */
#define SHMRING__STATE_LAYOUT 2u

#define SHMRING__STATE_EMPTY 0u
#define SHMRING__STATE_LIVE  1u
#define SHMRING__STATE_TOMB  2u

#define SHMRING__SEQ_VERSION(w) ((uint32_t)(w))
#define SHMRING__SEQ_STATE(w)   ((uint32_t)((w) >> 32) & 3u)
#define SHMRING__SEQ_COPY(w)    ((uint32_t)((w) >> 34) & 1u)
#define SHMRING__SEQ_OWNER(w)   ((uint32_t)((w) >> 35))
#define SHMRING__SEQ_ODD(w)     (((w)&1u) != 0)
#define SHMRING__SEQ_OWNER_MAX  ((1u << 29) - 1u)
#define SHMRING__SEQ_MAKE(version, state, copy, owner)                                             \
    ((uint64_t)(uint32_t)(version) | (uint64_t)((state)&3u) << 32 | (uint64_t)((copy)&1u) << 34 |  \
     (uint64_t)((uint32_t)(owner)&SHMRING__SEQ_OWNER_MAX) << 35)

/* Owner field of a held word: party index (6 bits) and handle generation (23 bits). */
#define SHMRING__OWNER_INDEX_BITS 6u
#define SHMRING__OWNER_GEN_MASK   ((1u << 23) - 1u)
#define SHMRING__STATE_OWNER(index, gen)                                                           \
    ((uint32_t)(index) | ((uint32_t)(gen)&SHMRING__OWNER_GEN_MASK) << SHMRING__OWNER_INDEX_BITS)
#define SHMRING__STATE_OWNER_INDEX(o) ((o) & ((1u << SHMRING__OWNER_INDEX_BITS) - 1u))
#define SHMRING__STATE_OWNER_GEN(o)   ((o) >> SHMRING__OWNER_INDEX_BITS)

_Static_assert(SHMRING__PARTIES <= (1u << SHMRING__OWNER_INDEX_BITS), "party index fits");

/* A word that writers take with CAS, and how a dead holder is recognised. */
struct shmring__state_lock {
    uint64_t seq;
    uint64_t writer_seq;
    uint64_t writer_pid;
};

struct shmring__state_entry {
    struct shmring__state_lock lock;
    uint32_t len[2];
    char key[SHMRING__STATE_KEY_FIELD];
    /* value copies follow */
};

_Static_assert(sizeof(struct shmring__state_entry) == SHMRING__STATE_ENTRY_HEADER,
               "entry header size");

struct shmring__state_shared {
    /* line 0: CAS by writers of new keys and by deleters */
    struct shmring__state_lock insert;
    uint64_t keys;         /* LIVE entries, written under the insert lock */
    uint64_t keys_version; /* insert-lock version `keys` was last right at */
    uint64_t pad0[3];
    /* line 1: rare, fetch-add by anyone */
    uint64_t recovered;
    uint64_t retired[5]; /* counters of users that closed or died, by SHMRING__S_* */
    uint32_t layout;     /* SHMRING__STATE_LAYOUT, written before the segment is ready */
    uint32_t pad1[3];
    /* lines 2..4: generation of the handle holding each party entry, bumped
     * by each handle that takes the entry (written by that handle only) */
    uint32_t handle_gen[SHMRING__PARTIES];
    uint32_t pad2[48 - SHMRING__PARTIES];
    /* line 5: wait words of key waiters (stores only when someone sleeps) */
    uint32_t wake[SHMRING__STATE_WAKE_WORDS];
};

_Static_assert(sizeof(struct shmring__state_shared) <= SHMRING__OBJECT_LINES * SHMRING__LINE,
               "state lines fit the header page");
_Static_assert(sizeof(struct shmring__state_shared) == 6 * SHMRING__LINE, "six lines");

/* User party counters (segment.h: party.counter[]), written by the owner. */
#define SHMRING__S_WRITES      0
#define SHMRING__S_READS       1
#define SHMRING__S_RETRIES     2
#define SHMRING__S_EAGAIN      3
#define SHMRING__S_WRITE_WAITS 4

/* Layout function of state tables (segment.h), also for fuzzers. */
int shmring__state_layout(const uint32_t param[4], uint32_t flags, uint64_t *total);

/* Wrap a validated segment as a state handle (internal entry for fuzzers:
 * shmring__seg_attach_image, then this). */
int shmring__state_from_seg(struct shmring__seg *seg, shmring_state_t **out);

#endif /* SHMRING_STATE_PRIVATE_H */
