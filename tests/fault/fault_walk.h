/*
 * The crash walk of the fault-injection suite (tests/test_fault.c).
 *
 * Each module of the library has a file here (ring.c, claim.c, party.c, event.c,
 * state.c, pool.c) with a table of scenarios. A scenario names one point and
 * a function that makes a party die (or stall) at that point, then checks
 * the invariants that another party relies on: the object keeps moving, no
 * message is delivered twice, no torn message or value is accepted, counters
 * reconcile (pushed = popped + dropped + abandoned + in ring), no live party
 * is seized, the lease never has two writers.
 *
 * The walk (test fault.every_point_has_a_crash_test) fails for a compiled-in
 * point that no scenario names, then runs every scenario. A scenario returns
 * the number of processes it killed at the point, for the suite's count.
 */
#ifndef SHMRING_TEST_FAULT_WALK_H
#define SHMRING_TEST_FAULT_WALK_H

struct fault_scenario {
    const char *point;                  /* "ring.P1": a name from src/fault_points.h */
    unsigned (*run)(const char *point); /* kills at point, checks with cr_assert; returns kills */
};

/* One table per module, each ended by an entry whose point is NULL. */
extern const struct fault_scenario fault_ring_scenarios[];
extern const struct fault_scenario fault_claim_scenarios[];
extern const struct fault_scenario fault_party_scenarios[];
extern const struct fault_scenario fault_state_scenarios[];
extern const struct fault_scenario fault_pool_scenarios[];
extern const struct fault_scenario fault_cancel_scenarios[];
extern const struct fault_scenario fault_span_scenarios[];
extern const struct fault_scenario fault_redeliver_scenarios[];
extern const struct fault_scenario fault_event_scenarios[];
extern const struct fault_scenario fault_subscriber_scenarios[];

#endif /* SHMRING_TEST_FAULT_WALK_H */
