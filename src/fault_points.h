/*
 * The table of fault-injection points (see fault.h). One line per point:
 * X(identifier, "module.label", "what another party sees if a process stops
 * or dies right here"). The name is what SHMRING_FAULT=... selects; the
 * labels of the ring are the ordering edges drawn at the top of src/ring.c.
 *
 * Each module keeps its own list; the crash suite (tests/test_fault.c) walks
 * every entry and fails for a point that has no crash test.
 */
#ifndef SHMRING_FAULT_POINTS_H
#define SHMRING_FAULT_POINTS_H

/* ---- The ring (src/ring.c) --------------------------------------------- */
#define SHMRING__FAULT_POINTS_RING(X)                                                              \
    X(RING_P1, "ring.P1", "slot marked as being written, payload not yet copied")                  \
    X(RING_P2, "ring.P2", "slot published, write_index not yet advanced")                          \
    X(RING_C3, "ring.C3", "consumer copied a message out, read_index not yet advanced")

/* ---- Parties and the producer lease (src/segment.c) -------------------- */
#define SHMRING__FAULT_POINTS_PARTY(X)

/* ---- The state table (src/state.c) ------------------------------------- */
#define SHMRING__FAULT_POINTS_STATE(X)

/* ---- The worker pool (src/pool.c) -------------------------------------- */
#define SHMRING__FAULT_POINTS_POOL(X)                                                              \
    X(POOL_HANDOUT, "pool.handout",                                                                \
      "parent about to push a chunk token: workers lose their parent")                             \
    X(POOL_TAKE, "pool.take", "worker popped a chunk token, chunk not claimed: the token is lost") \
    X(POOL_CLAIM, "pool.claim", "worker owns a chunk, no item run yet")                            \
    X(POOL_ITEM, "pool.item", "worker about to run an item (or a range) of its chunk")             \
    X(POOL_COMPLETE, "pool.complete", "worker ran its chunk, completion not yet stored")           \
    X(POOL_NOTIFY, "pool.notify", "worker stored its chunk's completion, parent not yet woken")

#define SHMRING__FAULT_POINTS(X)                                                                   \
    SHMRING__FAULT_POINTS_RING(X)                                                                  \
    SHMRING__FAULT_POINTS_PARTY(X)                                                                 \
    SHMRING__FAULT_POINTS_STATE(X)                                                                 \
    SHMRING__FAULT_POINTS_POOL(X)

#endif /* SHMRING_FAULT_POINTS_H */
