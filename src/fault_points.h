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
    X(RING_C3, "ring.C3", "consumer copied a message out, read_index not yet advanced")            \
    X(RING_P3, "ring.P3", "producer loaded read_index to find room, slot not yet marked")          \
    X(RING_C1, "ring.C1", "consumer saw the oldest slot published, payload not yet copied")        \
    X(RING_C2, "ring.C2", "consumer copied a payload, its sequence not yet re-checked")            \
    X(RING_O1, "ring.O1", "overwrite: read_index moved past the oldest messages, not yet counted") \
    X(RING_W, "ring.W", "write_index advanced, sleeping consumers not yet woken")                  \
    X(RING_PUSH_BATCH, "ring.push_batch", "a batch of slots published, write_index not yet moved") \
    X(RING_POP_BATCH, "ring.pop_batch", "consumer copied a batch, read_index not yet advanced")    \
    X(RING_SWEEP, "ring.sweep", "a claim of a leaving or dead consumer cleared, not yet counted")

/* ---- Zero-copy claims and releases (src/ring.c) ------------------------ */
#define SHMRING__FAULT_POINTS_CLAIM(X)                                                             \
    X(CLAIM_READ, "claim.read", "claimer read the oldest position, its claim not yet stored")      \
    X(CLAIM_Z1, "claim.Z1", "pending claim stored, read_index not moved: claimers wait on it")     \
    X(CLAIM_C3, "claim.C3", "pending claim checked, C3 on read_index not yet done")                \
    X(CLAIM_Z2, "claim.Z2", "producer loaded the claim word of the slot it wants, wrote nothing")  \
    X(CLAIM_Z3, "claim.Z3", "release: the claim is still held, the slot not yet given back")       \
    X(CLAIM_STALE, "claim.stale", "a stale claim found, not yet cleared: it still pins the slot")

/* ---- Messages larger than a slot (src/span.c, src/ring.c) ------------- */
#define SHMRING__FAULT_POINTS_SPAN(X)                                                              \
    X(SPAN_TAIL, "span.tail", "continuation slots of a spanning message published, head not yet")  \
    X(SPAN_COPY, "span.copy", "consumer copied part of a spanning message, nothing taken")         \
    X(SPAN_CLAIM, "span.claim", "claimer copied a spanning message under a pending claim, no C3")  \
    X(SPAN_RESUME, "span.resume", "new producer unmarked part of a dead one's leftover slots")

/* ---- Parties and the producer lease (src/party.c) ---------------------- */
#define SHMRING__FAULT_POINTS_PARTY(X)                                                             \
    X(PARTY_TAKE, "party.take", "entry CAS'd from FREE to TAKING by its taker, not yet ACTIVE")    \
    X(PARTY_RELEASE, "party.release", "a leaving party, its claims swept, entry not yet FREE")     \
    X(PARTY_JUDGE, "party.judge", "a reclaimer loaded an owner word, liveness not yet judged")     \
    X(PARTY_SEIZE, "party.seize", "a reclaimer judged a party dead, its CAS not yet done")         \
    X(PARTY_RECLAIM, "party.reclaim", "a reclaimer holds a dead party's entry, nothing released")  \
    X(PARTY_LEASE_TAKE, "party.lease_take", "free or closed lease CAS'd to TAKING, not ACTIVE")    \
    X(PARTY_LEASE_TAKEOVER, "party.lease_takeover", "a dead holder's lease seized, not yet ACTIVE")

/* ---- The state table (src/state.c) ------------------------------------- */
#define SHMRING__FAULT_POINTS_STATE(X)                                                             \
    X(STATE_W1, "state.W1",                                                                        \
      "entry taken for an update (odd, owner in the word), spare copy "                            \
      "untouched: readers read the previous value, writers wait")                                  \
    X(STATE_W2, "state.W2",                                                                        \
      "new value and length in the spare copy, not published: readers "                            \
      "read the previous value, writers wait")                                                     \
    X(STATE_W3, "state.W3", "new value published, entry free; the call has not returned")          \
    X(STATE_L1, "state.L1", "insert lock taken, new key not placed: inserts wait")                 \
    X(STATE_I1, "state.I1",                                                                        \
      "free entry taken for a new key, key and value not written: the key "                        \
      "does not exist yet, inserts wait")                                                          \
    X(STATE_L3, "state.L3",                                                                        \
      "new key published, insert lock still held: the key reads, inserts "                         \
      "wait")                                                                                      \
    X(STATE_T1, "state.T1",                                                                        \
      "entry taken for a delete, not yet a tombstone: readers read the "                           \
      "value, writers wait")                                                                       \
    X(STATE_X0, "state.X0", "recoverer found the holder dead, word not yet recovered: as before")  \
    X(STATE_X1, "state.X1",                                                                        \
      "dead writer's entry recovered (previous value), not yet counted or "                        \
      "logged")

/* ---- The worker pool (src/pool.c) -------------------------------------- */
#define SHMRING__FAULT_POINTS_POOL(X)                                                              \
    X(POOL_HANDOUT, "pool.handout",                                                                \
      "parent about to push a chunk token: workers lose their parent")                             \
    X(POOL_TAKE, "pool.take", "worker popped a chunk token, chunk not claimed: the token is lost") \
    X(POOL_CLAIM, "pool.claim", "worker owns a chunk, no item run yet")                            \
    X(POOL_ITEM, "pool.item", "worker about to run an item (or a range) of its chunk")             \
    X(POOL_COMPLETE, "pool.complete", "worker ran its chunk, completion not yet stored")           \
    X(POOL_NOTIFY, "pool.notify", "worker stored its chunk's completion, parent not yet woken")

/* ---- Ending waits (src/cancel.c) --------------------------------------- */
#define SHMRING__FAULT_POINTS_CANCEL(X)                                                            \
    X(CANCEL_WAKE, "cancel.wake",                                                                  \
      "interrupter bumped the word's counter, FUTEX_WAKE not issued: sleepers of the word still "  \
      "flagged for the next notifier")
/* ---- At-least-once redelivery (src/redeliver.c, SHMRING_REDELIVER) ---- */
#define SHMRING__FAULT_POINTS_REDELIVER(X)                                                         \
    X(REDELIVER_Z4, "redeliver.Z4", "claimer's C3 done, claim still pending (Z4 not stored)")      \
    X(REDELIVER_GIVEBACK, "redeliver.giveback",                                                    \
      "claimer's C3 failed, pending claim not given back")                                         \
    X(REDELIVER_SWEEP, "redeliver.sweep",                                                          \
      "a dead claimer's claim judged redeliverable, not marked")                                   \
    X(REDELIVER_MARK, "redeliver.mark", "claim marked redeliverable, the hint not yet raised")     \
    X(REDELIVER_TAKE, "redeliver.take", "consumer found a redeliverable claim, not yet taken")     \
    X(REDELIVER_TAKEN, "redeliver.taken",                                                          \
      "consumer holds a redelivered message, hint not lowered")                                    \
    X(REDELIVER_POP, "redeliver.pop", "copy pop copied its message out, claim not yet released")
/* ---- Event descriptors (src/event.c) ----------------------------------- */
#define SHMRING__FAULT_POINTS_EVENT(X)                                                             \
    X(EVENT_ARM, "event.arm",                                                                      \
      "descriptor's party entry marked armed, eventcount not yet flagged: no notifier looks")      \
    X(EVENT_SEND, "event.send",                                                                    \
      "notifier cleared an armed entry, datagram not yet sent: that descriptor is not signalled")
/* ---- Broadcast subscribers (src/subscriber.c) -------------------------- */
#define SHMRING__FAULT_POINTS_SUBSCRIBER(X)                                                        \
    X(SUB_ATTACH, "sub.attach",                                                                    \
      "subscriber registered at a conservative cursor, its start not yet chosen: the producer "    \
      "may wait for it")                                                                           \
    X(SUB_ADVANCE, "sub.advance", "subscriber read (or released) messages, cursor not yet moved")  \
    X(SUB_RESCAN, "sub.rescan",                                                                    \
      "producer announced its position and read the cursors, floor "                               \
      "not yet used")                                                                              \
    X(SUB_RECLAIM, "sub.reclaim", "a dead subscriber's registration cleared, not yet counted dead")

#define SHMRING__FAULT_POINTS(X)                                                                   \
    SHMRING__FAULT_POINTS_RING(X)                                                                  \
    SHMRING__FAULT_POINTS_CLAIM(X)                                                                 \
    SHMRING__FAULT_POINTS_SPAN(X)                                                                  \
    SHMRING__FAULT_POINTS_PARTY(X)                                                                 \
    SHMRING__FAULT_POINTS_STATE(X)                                                                 \
    SHMRING__FAULT_POINTS_POOL(X)                                                                  \
    SHMRING__FAULT_POINTS_CANCEL(X)                                                                \
    SHMRING__FAULT_POINTS_REDELIVER(X)                                                             \
    SHMRING__FAULT_POINTS_EVENT(X)                                                                 \
    SHMRING__FAULT_POINTS_SUBSCRIBER(X)

#endif /* SHMRING_FAULT_POINTS_H */
