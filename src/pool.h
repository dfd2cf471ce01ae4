/*
 * The worker pool's shared layout (shared-memory mode), private to src/.
 *
 * One anonymous shared mapping (MAP_SHARED | MAP_ANONYMOUS), made before the
 * workers are forked, so every worker sees it at the same address:
 *
 *   0                                                   ctl_size          ctl_size + arena_size
 *   +----------+---------+---------+--------------------+------------------+
 *   | round    | abort   | done    | worker lines       | chunk states,    |  arena: items
 *   | params   | line    | ec line | 32 x 64 B          | chunk errors     |  [0, n*item_size),
 *   +----------+---------+---------+--------------------+------------------+  results from
 *                                                                             results_off
 *
 * round params  written by the parent between rounds only (no chunk of the
 *               round is queued or owned then); read by a worker after it
 *               has claimed a chunk of the round.
 * abort_gen     the generation of a round that has failed: workers stop
 *               between items. Written by the parent and by workers.
 * done_ec       eventcount (wait.h): workers notify after finishing a chunk,
 *               the parent sleeps on it.
 * worker line   cur_item: round index of the item the worker is running, or
 *               POOL_NO_ITEM; written by that worker only, read by the
 *               parent after the worker died to blame the item.
 * chunk state   (gen << 32) | state: QUEUED, OWNED by worker w (w + 1),
 *               DONE, DONE_ERR, CANCELLED. QUEUED -> OWNED by a worker's
 *               CAS (so a duplicate token cannot run a chunk twice);
 *               OWNED -> DONE/DONE_ERR/CANCELLED by the owner (release);
 *               OWNED -> QUEUED or CANCELLED by the parent once the owner
 *               has been reaped; QUEUED -> CANCELLED by the parent's CAS.
 * chunk error   (round index of the failing item << 12) | errno, written by
 *               the owner before the DONE_ERR release store.
 *
 * Work goes out through an anonymous shmring ring (the parent produces,
 * every worker consumes) as 8-byte tokens {gen, chunk}.
 */
#ifndef SHMRING_POOL_PRIVATE_H
#define SHMRING_POOL_PRIVATE_H

#include <stdint.h>

#include "segment.h"

#define POOL_MAX_CHUNKS        512u /* >= SHMRING_POOL_MAX_WORKERS * POOL_CHUNKS_PER_WORKER */
#define POOL_CHUNKS_PER_WORKER 8u
#define POOL_NO_ITEM           UINT64_MAX

/* Chunk states (low 32 bits of a chunk state word). */
#define POOL_QUEUED       0u
#define POOL_OWNED(w)     ((uint32_t)(w) + 1u) /* 1..SHMRING_POOL_MAX_WORKERS */
#define POOL_DONE         0x100u
#define POOL_DONE_ERR     0x101u
#define POOL_CANCELLED    0x102u
#define POOL_STATE(g, s)  ((uint64_t)(g) << 32 | (uint32_t)(s))
#define POOL_STATE_GEN(x) ((uint32_t)((x) >> 32))
#define POOL_STATE_ST(x)  ((uint32_t)(x))

struct shmring__pool_token {
    uint32_t gen;
    uint32_t chunk;
};

struct shmring__pool_worker_line {
    uint64_t cur_item;
    uint64_t pad[7];
};

struct shmring__pool_ctl {
    /* line 0: round parameters (parent, between rounds) */
    uint32_t gen;
    uint32_t nchunks;
    uint64_t n;
    uint64_t item_size;
    uint64_t result_size;
    uint64_t chunk_items;
    uint64_t results_off;
    uint64_t pad0[2];
    /* line 1 */
    uint32_t abort_gen;
    uint32_t pad1[15];
    /* line 2 */
    uint32_t done_ec;
    uint32_t pad2[15];
    /* lines 3..34 */
    struct shmring__pool_worker_line worker[SHMRING_POOL_MAX_WORKERS];
    uint64_t chunk_state[POOL_MAX_CHUNKS];
    uint64_t chunk_err[POOL_MAX_CHUNKS];
};

_Static_assert(sizeof(struct shmring__pool_worker_line) == SHMRING__LINE, "worker line");
_Static_assert(SHMRING_POOL_MAX_WORKERS *POOL_CHUNKS_PER_WORKER <= POOL_MAX_CHUNKS,
               "every round fits the chunk table");

#endif /* SHMRING_POOL_PRIVATE_H */
