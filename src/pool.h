/*
 * The worker pool's shared layout (shared-memory mode), private to src/.
 *
 * One anonymous shared mapping (MAP_SHARED | MAP_ANONYMOUS), made before the
 * workers are forked, so every worker sees it at the same address:
 *
 *   0                                                           ctl_size      + arena_size
 *   +--------+--------+-------+-------+-----------+------------+-------------------------+
 *   | round  | range  | abort | done  | worker    | chunk      | arena: blocks of         |
 *   | params | task   | line  | ec    | lines     | states,    | shmring_pool_alloc and   |
 *   | line   | line   |       | line  | 32 x 64 B | errors,    | the staging block of a   |
 *   |        |        |       |       |           | done counts| map that copies          |
 *   +--------+--------+-------+-------+-----------+------------+-------------------------+
 *
 * Every word here can be written by a worker's task (it runs with the whole
 * mapping writable). The parent decides with its own private copy of the
 * round (struct shmring__pool_round in pool.c's handle) and only checks what
 * it reads back; a worker checks the round parameters against the arena
 * before it addresses it.
 *
 * round params  written by the parent between rounds only (no chunk of the
 *               round is queued or owned then); read by a worker after it
 *               has claimed a chunk of the round. Offsets are from the
 *               arena's start. kind: POOL_KIND_ITEMS or POOL_KIND_RANGES.
 * range task    the function and ctx of a range map (pointers of the
 *               parent's address space, the same in its forked workers).
 * abort_gen     the generation of a round that has failed: workers stop
 *               between items. Written by the parent and by workers.
 * done_ec       eventcount (wait.h): workers notify after finishing a chunk,
 *               the parent sleeps on it.
 * worker line   cur_item: round index of the item (or first index of the
 *               range) the worker is running, or POOL_NO_ITEM; written by
 *               that worker only, read by the parent after the worker died
 *               to blame the item.
 * chunk state   (gen << 32) | state: QUEUED, OWNED by worker w (w + 1),
 *               DONE, DONE_ERR, CANCELLED, BROKEN. QUEUED -> OWNED by a
 *               worker's CAS (so a duplicate token cannot run a chunk
 *               twice); OWNED -> DONE/DONE_ERR/CANCELLED/BROKEN by the owner
 *               (release); OWNED -> QUEUED or CANCELLED by the parent once
 *               the owner has been reaped; QUEUED -> CANCELLED by the
 *               parent's CAS.
 * chunk error   (round index of the failing item << 12) | errno, written by
 *               the owner before the DONE_ERR release store.
 * chunk done    items (or indices of the range) the owner ran, written
 *               before the DONE release store; the parent checks it against
 *               the chunk's size.
 *
 * Work goes out through an anonymous shmring ring (the parent produces,
 * every worker consumes) as 8-byte tokens {gen, chunk}.
 */
#ifndef SHMRING_POOL_PRIVATE_H
#define SHMRING_POOL_PRIVATE_H

#include <stddef.h>
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
#define POOL_BROKEN       0x103u /* the owner found the round parameters corrupt */
#define POOL_STATE(g, s)  ((uint64_t)(g) << 32 | (uint32_t)(s))
#define POOL_STATE_GEN(x) ((uint32_t)((x) >> 32))
#define POOL_STATE_ST(x)  ((uint32_t)(x))

/* Round kinds. */
#define POOL_KIND_ITEMS  1u /* shmring_pool_map: the task per item */
#define POOL_KIND_RANGES 2u /* shmring_pool_map_range: the task per range */

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
    uint32_t kind;
    uint32_t pad0;
    uint64_t n;
    uint64_t item_size;
    uint64_t result_size;
    uint64_t chunk_items;
    uint64_t items_off;
    uint64_t results_off;
    /* line 1: the range task (parent, between rounds) */
    uint64_t range_fn;
    uint64_t range_ctx;
    uint64_t pad1[6];
    /* line 2 */
    uint32_t abort_gen;
    uint32_t pad2[15];
    /* line 3 */
    uint32_t done_ec;
    uint32_t pad3[15];
    /* lines 4..35 */
    struct shmring__pool_worker_line worker[SHMRING_POOL_MAX_WORKERS];
    uint64_t chunk_state[POOL_MAX_CHUNKS];
    uint64_t chunk_err[POOL_MAX_CHUNKS];
    uint64_t chunk_done[POOL_MAX_CHUNKS];
};

struct shmring_pool;
/* The control page of a shared-memory pool (NULL in the other modes): for
 * tests that play a task which corrupts it. */
struct shmring__pool_ctl *shmring__pool_control(const struct shmring_pool *p);

_Static_assert(sizeof(struct shmring__pool_worker_line) == SHMRING__LINE, "worker line");
_Static_assert(offsetof(struct shmring__pool_ctl, range_fn) == SHMRING__LINE, "params: one line");
_Static_assert(offsetof(struct shmring__pool_ctl, worker) == 4 * SHMRING__LINE, "four lines");
_Static_assert(SHMRING_POOL_MAX_WORKERS *POOL_CHUNKS_PER_WORKER <= POOL_MAX_CHUNKS,
               "every round fits the chunk table");

#endif /* SHMRING_POOL_PRIVATE_H */
