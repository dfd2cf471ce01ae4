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

/* ---- Zero-copy claims and releases (src/ring.c) ------------------------ */
#define SHMRING__FAULT_POINTS_CLAIM(X)                                                             \
    X(CLAIM_READ, "claim.read", "claimer read the oldest position, its claim not yet stored")      \
    X(CLAIM_Z1, "claim.Z1", "pending claim stored, read_index not moved: claimers wait on it")     \
    X(CLAIM_C3, "claim.C3", "pending claim checked, C3 on read_index not yet done")                \
    X(CLAIM_Z2, "claim.Z2", "producer loaded the claim word of the slot it wants, wrote nothing")  \
    X(CLAIM_Z3, "claim.Z3", "release: the claim is still held, the slot not yet given back")       \
    X(CLAIM_STALE, "claim.stale", "a stale claim found, not yet cleared: it still pins the slot")

/* ---- Parties and the producer lease (src/segment.c) -------------------- */
#define SHMRING__FAULT_POINTS_PARTY(X)

/* ---- The state table (src/state.c) ------------------------------------- */
#define SHMRING__FAULT_POINTS_STATE(X)

/* ---- The worker pool (src/pool.c) -------------------------------------- */
#define SHMRING__FAULT_POINTS_POOL(X)

#define SHMRING__FAULT_POINTS(X)                                                                   \
    SHMRING__FAULT_POINTS_RING(X)                                                                  \
    SHMRING__FAULT_POINTS_CLAIM(X)                                                                 \
    SHMRING__FAULT_POINTS_PARTY(X)                                                                 \
    SHMRING__FAULT_POINTS_STATE(X)                                                                 \
    SHMRING__FAULT_POINTS_POOL(X)

#endif /* SHMRING_FAULT_POINTS_H */
