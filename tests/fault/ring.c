/* Crash scenarios for the ring's producer and copy consumers: P1, P2, P3, C1, C2, C3, O1, W, the
 * batch commits, and the sweep of a leaving consumer's claims (see fault_walk.h). */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

#if defined(SHMRING_FAULT_INJECTION)

#include "kit.h"

struct job {
    const char *name;
    uint64_t first;  /* first id to push */
    int n;           /* messages to push or pop */
    int batch;       /* push or pop them in one batch */
    int pops;        /* producer: consumer pops to make first (room) */
    uint32_t *seen;  /* consumer: ids delivered, shared with the parent */
    int pause_after; /* producer: after that many pushes, set sync[0], wait for sync[1] */
    uint32_t *sync;
};

/* A producer: pushes ids first..first+n-1 (singly or as one batch), closes. */
static int producer_run(void *arg)
{
    struct job *j = arg;
    shmring_t *p;
    if (shmring_open(j->name, SHMRING_PRODUCER, &p) != 0)
        return 2;
    unsigned char buf[64][64];
    struct iovec iov[64];
    for (int i = 0; i < j->n && i < 64; i++) {
        test_fill(buf[i], 32, j->first + (uint64_t)i);
        iov[i].iov_base = buf[i];
        iov[i].iov_len = 32;
    }
    if (j->batch) {
        if (shmring_push_batch(p, iov, (size_t)j->n) != j->n)
            return 3;
    } else {
        for (int i = 0; i < j->n; i++) {
            if (j->sync != NULL && i == j->pause_after) {
                kit_set(&j->sync[0], 1);
                if (!kit_await(&j->sync[1], 1))
                    return 4;
            }
            if (shmring_push(p, iov[i].iov_base, 32) != 0)
                return 3;
        }
    }
    shmring_close(p);
    return 0;
}

/* A consumer: pops n messages (singly or as one batch), marking each id. */
static int consumer_run(void *arg)
{
    struct job *j = arg;
    shmring_t *c;
    if (shmring_open(j->name, SHMRING_CONSUMER, &c) != 0)
        return 2;
    char bufs[64][64];
    struct iovec iov[64];
    int got = 0;
    while (got < j->n) {
        int want = j->batch ? j->n - got : 1;
        for (int i = 0; i < want; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = sizeof bufs[i];
        }
        ssize_t k = j->batch ? shmring_pop_batch(c, iov, (size_t)want)
                             : shmring_pop(c, bufs[0], sizeof bufs[0]);
        if (k < 0)
            return 3;
        if (!j->batch) {
            iov[0].iov_len = (size_t)k;
            k = 1;
        }
        for (ssize_t i = 0; i < k; i++) {
            uint64_t id;
            if (!test_check(iov[i].iov_base, iov[i].iov_len, &id) || id >= 64)
                return 4;
            __atomic_fetch_add(&j->seen[id], 1, __ATOMIC_RELAXED);
        }
        got += (int)k;
    }
    shmring_close(c);
    return 0;
}

/* Every id below n delivered exactly once: by a dead consumer (marked in
 * seen before it died) or by c, which drains the ring. */
static void each_once(shmring_t *c, uint32_t *seen, uint64_t n)
{
    char buf[64];
    for (;;) {
        ssize_t k = shmring_pop(c, buf, sizeof buf);
        if (k == -EAGAIN)
            break;
        uint64_t id;
        cr_assert(k >= 16 && test_check(buf, (size_t)k, &id) && id < n, "bad pop %zd", k);
        seen[id]++;
    }
    for (uint64_t id = 0; id < n; id++)
        cr_assert_eq(seen[id], 1, "id %llu delivered %u times", (unsigned long long)id, seen[id]);
}

/* ---- Producer deaths: P1, P2, P3, W, push_batch ------------------------- */

/*
 * The producer dies at `spec` while pushing ids 0..n-1 (`batch`: in one
 * batch). A consumer gets the messages it published, each once and whole,
 * never the one it was writing; a new producer takes the lease over,
 * resumes after the last published slot and counts what it finds there;
 * counters reconcile.
 */
static void producer_killed(const char *spec, int n, int batch, uint64_t published)
{
    char *name = kit_name("rprod");
    shmring_t *c = test_make(name, 8, 64, SHMRING_CONSUMER);
    struct job j = {.name = name, .first = 0, .n = n, .batch = batch};
    kit_killed(producer_run, &j, spec);
    kit_drain(c, 0, published);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p), 0, "lease taken over");
    for (uint64_t id = published; id < published + 3; id++)
        test_push_id(p, id, 32);
    kit_drain(c, published, published + 3);
    shmring_stats_t st = kit_stats(c);
    cr_assert_eq(st.pushed, published + 3, "pushed %llu", (unsigned long long)st.pushed);
    kit_reconcile(c);
    shmring_close(p);
    shmring_close(c);
    shmring_unlink(name);
    free(name);
}

static unsigned p1_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    producer_killed("ring.P1:kill@3", 5, 0, 2); /* dies writing id 2 */
    producer_killed("ring.P1:kill@3", 5, 1, 2); /* in a batch: ids 0, 1 published */
    return 2;
}

static unsigned p2_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    producer_killed("ring.P2:kill@3", 5, 0, 3); /* id 2 published, not committed */
    producer_killed("ring.P2:kill@2", 5, 1, 2);
    return 2;
}

static unsigned push_batch_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    producer_killed("ring.push_batch:kill", 5, 1, 5); /* all published, none committed */
    return 1;
}

static unsigned w_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    producer_killed("ring.W:kill@2", 5, 0, 2); /* committed, nobody woken */
    return 1;
}

/* A consumer asleep in pop_wait when the producer dies after committing but
 * before waking it: it still gets the message, then the end of the stream. */
static unsigned w_sleeper(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("rw");
    shmring_t *c = test_make(name, 8, 64, SHMRING_CONSUMER);
    struct job j = {.name = name, .first = 0, .n = 1};
    pid_t pid = kit_child(producer_run, &j, "ring.W:kill");
    char buf[64];
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, -1), 0);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, -1), -EPIPE, "dead producer: end of stream");
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    kit_reconcile(c);
    shmring_close(c);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* P3 is on the producer's slow path: the ring looks full from its cache,
 * and consumers have made room since. */
static unsigned p3_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("rp3");
    shmring_t *c = test_make(name, 4, 64, SHMRING_CONSUMER);
    uint32_t *sync = test_shared_alloc(2 * sizeof *sync);
    struct job j = {.name = name, .first = 0, .n = 5, .pause_after = 4, .sync = sync};
    pid_t pid = kit_child(producer_run, &j, "ring.P3:kill@1");
    cr_assert(kit_await(&sync[0], 1), "producer filled the ring");
    kit_pop_ids(c, 0, 2);
    kit_set(&sync[1], 1);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL, "killed at P3");
    kit_drain(c, 2, 4);
    shmring_t *p = test_open_as(name, SHMRING_PRODUCER);
    for (uint64_t id = 4; id < 9; id++) {
        test_push_id(p, id, 32);
        char buf[64];
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
    }
    kit_reconcile(c);
    test_shared_free(sync, 2 * sizeof *sync);
    shmring_close(p);
    shmring_close(c);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* ---- Consumer deaths: C1, C2, C3, pop_batch ----------------------------- */

/* A consumer killed at `spec` while popping: it holds nothing; the others
 * get every message once. */
static void consumer_killed(const char *spec, int batch)
{
    char *name = kit_name("rcons");
    shmring_t *p = test_make(name, 16, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    uint32_t *seen = test_shared_alloc(64 * sizeof *seen);
    for (uint64_t id = 0; id < 8; id++)
        test_push_id(p, id, 32);
    struct job j = {.name = name, .n = 4, .batch = batch, .seen = seen};
    kit_killed(consumer_run, &j, spec);
    each_once(c, seen, 8);
    shmring_stats_t st = kit_stats(p);
    cr_assert_eq(st.consumers, 1, "the dead consumer was reclaimed");
    kit_reconcile(p);
    test_shared_free(seen, 64 * sizeof *seen);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
}

static unsigned c1_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    consumer_killed("ring.C1:kill@2", 0);
    return 1;
}

static unsigned c3_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    consumer_killed("ring.C3:kill@3", 0);
    return 1;
}

static unsigned pop_batch_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    consumer_killed("ring.pop_batch:kill", 1);
    return 1;
}

/*
 * C2 in an overwrite ring: a consumer stopped between copying the oldest
 * message and re-checking its sequence, while the producer laps the ring
 * (dropping that message). Resumed, it must not deliver what was dropped,
 * nor a torn copy: it retries and gets a whole, newer message. Then one is
 * killed there: it holds nothing.
 */
static unsigned c2_stalled_then_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("rc2");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER | SHMRING_OVERWRITE);
    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    uint32_t *seen = test_shared_alloc(64 * sizeof *seen);
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 32);
    struct job j = {.name = name, .n = 1, .seen = seen};
    pid_t pid = kit_child(consumer_run, &j, "ring.C2:stop@1");
    int st;
    cr_assert_eq(waitpid(pid, &st, WUNTRACED), pid);
    cr_assert(WIFSTOPPED(st), "consumer stopped at C2");
    for (uint64_t id = 4; id < 10; id++) /* laps the ring: ids 0..5 dropped */
        test_push_id(p, id, 32);
    kill(pid, SIGCONT);
    cr_assert_eq(test_wait_child(pid), 0);
    for (uint64_t id = 0; id < 6; id++)
        cr_assert_eq(seen[id], 0, "dropped id %llu delivered", (unsigned long long)id);
    cr_assert_eq(seen[6], 1, "the oldest message still in the ring");
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    j.n = 4;
    kit_killed(consumer_run, &j, "ring.C2:kill@2");
    char buf[64];
    for (uint64_t id = 6; id < 10; id++)
        if (seen[id] == 0)
            test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
        else
            cr_assert_eq(seen[id], 1);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    kit_reconcile(obs);
    test_shared_free(seen, 64 * sizeof *seen);
    shmring_close(c);
    shmring_close(obs);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* ---- O1: an overwrite producer dies after moving read_index ------------- */

/*
 * The messages it moved past are gone from the ring; consumers go on with
 * the newer ones, a new producer takes over. The one count it had not yet
 * made (dropped) is missing: pushed reconciles up to the messages of that
 * one move (documented in docs/hardening.md).
 */
static unsigned o1_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("ro1");
    shmring_t *c = test_make(name, 4, 64, SHMRING_CONSUMER | SHMRING_OVERWRITE);
    struct job j = {.name = name, .first = 0, .n = 6};
    kit_killed(producer_run, &j, "ring.O1:kill@1"); /* pushing id 4: drops id 0 */
    kit_drain(c, 1, 4);
    shmring_t *p = test_open_as(name, SHMRING_PRODUCER);
    for (uint64_t id = 4; id < 10; id++)
        test_push_id(p, id, 32); /* drops 4, 5 */
    kit_drain(c, 6, 10);
    shmring_stats_t st = kit_stats(c);
    cr_assert_eq(st.pushed, 10);
    cr_assert_eq(st.popped, 7);
    cr_assert_eq(st.dropped, 2, "the dead producer's move is the one not counted");
    cr_assert_eq(st.count, 0);
    shmring_close(p);
    shmring_close(c);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* ---- ring.sweep: a consumer closing with claims, killed mid-sweep ------- */

static int claim_close_run(void *arg)
{
    struct job *j = arg;
    shmring_t *c;
    if (shmring_open(j->name, SHMRING_CONSUMER, &c) != 0)
        return 2;
    for (int i = 0; i < j->n; i++) {
        shmring_msg_t m;
        if (shmring_claim(c, &m) != 0)
            return 3;
    }
    shmring_close(c); /* gives the unreleased claims back */
    return 0;
}

static unsigned sweep_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("rsw");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 32);
    struct job j = {.name = name, .n = 2};
    kit_killed(claim_close_run, &j, "ring.sweep:kill@1");
    /* The slot it gave back is free; the other claim is reclaimed with the
     * dead consumer (by the producer's slow path), and counted abandoned. */
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    kit_drain(c, 2, 4);
    test_push_id(p, 4, 32);
    test_push_id(p, 5, 32);
    kit_drain(c, 4, 6);
    shmring_stats_t st = kit_stats(obs);
    cr_assert_eq(st.consumers, 1);
    cr_assert_eq(st.abandoned, 1, "one claim left to reclaim, counted %llu",
                 (unsigned long long)st.abandoned);
    cr_assert_eq(st.pushed, 6);
    cr_assert_eq(st.popped, 6, "2 claims and 4 pops");
    shmring_close(c);
    shmring_close(obs);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

const struct fault_scenario fault_ring_scenarios[] = {
    {"ring.P1", p1_killed}, {"ring.P2", p2_killed},
    {"ring.P3", p3_killed}, {"ring.W", w_killed},
    {"ring.W", w_sleeper},  {"ring.push_batch", push_batch_killed},
    {"ring.C1", c1_killed}, {"ring.C2", c2_stalled_then_killed},
    {"ring.C3", c3_killed}, {"ring.pop_batch", pop_batch_killed},
    {"ring.O1", o1_killed}, {"ring.sweep", sweep_killed},
    {NULL, NULL},
};

#else

const struct fault_scenario fault_ring_scenarios[] = {
    {NULL, NULL},
};

#endif
