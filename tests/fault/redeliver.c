/* Crash scenarios for at-least-once redelivery (SHMRING_REDELIVER rings; see
 * fault_walk.h and src/redeliver.c). Each kills a consumer or a reclaimer at
 * a step of a redelivery, then checks that every message is delivered to the
 * parent exactly when no dead process had returned it to its caller, and
 * that the counters reconcile. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"
#include "fault_walk.h"
#include "harness.h"

#if defined(SHMRING_FAULT_INJECTION)
#include "kit.h"

#define RD_SLOTS 8u
#define RD_SIZE  64u
#define RD_N     4u /* ids pushed by every scenario */

struct rd {
    const char *name;
    shmring_t *p, *c, *obs;
};

static void rd_open(struct rd *f, const char *tag)
{
    f->name = kit_name(tag);
    f->obs = test_make(f->name, RD_SLOTS, RD_SIZE, SHMRING_OBSERVER | SHMRING_REDELIVER);
    f->p = test_open_as(f->name, SHMRING_PRODUCER);
    f->c = test_open_as(f->name, SHMRING_CONSUMER);
    for (uint64_t id = 0; id < RD_N; id++)
        test_push_id(f->p, id, test_len_of(id, RD_SIZE));
}

static void rd_close(struct rd *f)
{
    shmring_close(f->c);
    shmring_close(f->p);
    shmring_close(f->obs);
    shmring_unlink(f->name);
    free((void *)f->name);
}

/* Children: open as a consumer (or observer), then do one thing. */
static int child_claim_hold(void *arg)
{
    shmring_t *c;
    if (shmring_open(arg, SHMRING_CONSUMER, &c) != 0)
        return 2;
    shmring_msg_t m;
    if (shmring_claim(c, &m) != 0)
        return 3;
    raise(SIGKILL); /* dies holding it */
    return 4;
}

static int child_claim_release(void *arg)
{
    shmring_t *c;
    if (shmring_open(arg, SHMRING_CONSUMER, &c) != 0)
        return 2;
    shmring_msg_t m;
    if (shmring_claim(c, &m) != 0)
        return 3;
    return shmring_release(c, &m) == 0 ? 0 : 4;
}

static int child_pop(void *arg)
{
    shmring_t *c;
    if (shmring_open(arg, SHMRING_CONSUMER, &c) != 0)
        return 2;
    char buf[RD_SIZE];
    return shmring_pop(c, buf, sizeof buf) > 0 ? 0 : 3;
}

static int child_stats(void *arg)
{
    shmring_t *o;
    if (shmring_open(arg, SHMRING_OBSERVER, &o) != 0)
        return 2;
    shmring_stats_t st;
    return shmring_stats(o, &st) == 0 ? 0 : 3;
}

/* The parent takes every id in `order` and then finds the ring empty;
 * pushed = popped + in ring; nothing abandoned; `redelivered` as given. */
static void rd_expect(struct rd *f, const uint64_t *order, unsigned n, uint32_t redelivered)
{
    for (unsigned i = 0; i < n; i++) {
        shmring_msg_t m;
        int rc = shmring_claim(f->c, &m);
        cr_assert_eq(rc, 0, "claim %u: %d", i, rc);
        uint64_t id;
        cr_assert(test_check(m.data, m.len, &id), "torn message");
        cr_assert_eq(id, order[i], "delivery %u: id %llu, wanted %llu", i, (unsigned long long)id,
                     (unsigned long long)order[i]);
        cr_assert_eq(shmring_release(f->c, &m), 0);
    }
    char buf[RD_SIZE];
    cr_assert_eq(shmring_pop(f->c, buf, sizeof buf), -EAGAIN);
    shmring_stats_t st = kit_stats(f->obs);
    cr_assert_eq(st.pushed, RD_N);
    cr_assert_eq(st.count, 0);
    cr_assert_eq(st.popped, RD_N, "popped %llu", (unsigned long long)st.popped);
    cr_assert_eq(st.abandoned, 0);
    cr_assert_eq(st.redelivered, redelivered);
    /* The producer gets every slot back. */
    for (uint64_t id = RD_N; id < RD_N + RD_SLOTS; id++)
        cr_assert_eq(shmring_push_wait(f->p, buf, 16, 5000 * 1000000LL), 0);
}

/*
 * redeliver.Z4: a claimer killed after its C3, its claim still pending. Its
 * message went to nobody's caller: the parent gets it (after the newer
 * ones: it looks when the ring is empty), once.
 */
static unsigned kill_after_c3(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct rd f;
    rd_open(&f, "rdz4");
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill", point);
    kit_killed(child_claim_release, (void *)f.name, rule);
    const uint64_t order[] = {1, 2, 3, 0};
    rd_expect(&f, order, 4, 1);
    rd_close(&f);
    return 1;
}

/*
 * redeliver.giveback: a claimer stopped after reading position 0; the parent
 * takes and releases 0; the claimer's claim then succeeds on the free word,
 * its C3 fails and it is killed before giving the claim back. That pending
 * claim below read_index held nothing (0 was released from the slot): it is
 * cleared, not redelivered.
 */
static unsigned kill_before_giveback(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct rd f;
    rd_open(&f, "rdgive");
    char rule[96];
    snprintf(rule, sizeof rule, "claim.read:stop@1,%s:kill@1", point);
    pid_t pid = kit_child(child_claim_release, (void *)f.name, rule);
    int st = 0;
    while (waitpid(pid, &st, WUNTRACED) < 0)
        ;
    cr_assert(WIFSTOPPED(st), "claimer not stopped at claim.read");
    const uint64_t first[] = {0};
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(f.c, &m), 0);
    uint64_t id;
    cr_assert(test_check(m.data, m.len, &id));
    cr_assert_eq(id, first[0]);
    cr_assert_eq(shmring_release(f.c, &m), 0);
    kill(pid, SIGCONT);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL, "claimer not killed at %s", point);
    kit_stats(f.obs); /* sweeps the dead claimer */
    const uint64_t rest[] = {1, 2, 3};
    rd_expect(&f, rest, 3, 0);
    rd_close(&f);
    return 1;
}

/* A consumer child killed holding id 0. */
static void rd_dead_holder(struct rd *f)
{
    int st = test_wait_child(kit_child(child_claim_hold, (void *)f->name, NULL));
    cr_assert_eq(st, 128 + SIGKILL, "holder: status %d", st);
}

/*
 * redeliver.sweep: a reclaimer killed having judged a dead holder's claim
 * redeliverable, before marking it. The next reclaimer seizes the entry
 * again and marks it: 0 comes first to the parent.
 */
static unsigned kill_sweeper(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct rd f;
    rd_open(&f, "rdsweep");
    rd_dead_holder(&f);
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill", point);
    kit_killed(child_stats, (void *)f.name, rule);
    kit_stats(f.obs);
    const uint64_t order[] = {0, 1, 2, 3};
    rd_expect(&f, order, 4, 1);
    rd_close(&f);
    return 1;
}

/*
 * redeliver.mark: a reclaimer killed after marking, before raising the hint
 * (and counting): consumers do not know of it until they find the ring empty
 * and scan; 0 then arrives after the newer ones, uncounted.
 */
static unsigned kill_marker(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct rd f;
    rd_open(&f, "rdmark");
    rd_dead_holder(&f);
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill", point);
    kit_killed(child_stats, (void *)f.name, rule);
    const uint64_t order[] = {1, 2, 3, 0};
    rd_expect(&f, order, 4, 0);
    rd_close(&f);
    return 1;
}

/*
 * redeliver.take, redeliver.taken: a consumer killed as it takes the
 * redelivery of 0, before or after its CAS. Before: the marker stays. After:
 * it holds 0 and died, so 0 is redelivered again, and the hint it did not
 * lower is found stale and reset.
 */
static unsigned kill_taker(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct rd f;
    rd_open(&f, "rdtake");
    rd_dead_holder(&f);
    kit_stats(f.obs); /* marks 0 */
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill", point);
    kit_killed(child_claim_release, (void *)f.name, rule);
    int after = strcmp(point, "redeliver.taken") == 0;
    kit_stats(f.obs);
    const uint64_t order[] = {0, 1, 2, 3};
    rd_expect(&f, order, 4, after ? 2 : 1);
    rd_close(&f);
    return 1;
}

/*
 * redeliver.pop: a copy pop killed having copied 0 out, before its release:
 * its caller never got 0, which goes to the parent.
 */
static unsigned kill_popper(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct rd f;
    rd_open(&f, "rdpop");
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill", point);
    kit_killed(child_pop, (void *)f.name, rule);
    kit_stats(f.obs);
    const uint64_t order[] = {0, 1, 2, 3};
    rd_expect(&f, order, 4, 1);
    rd_close(&f);
    return 1;
}

#endif

const struct fault_scenario fault_redeliver_scenarios[] = {
#if defined(SHMRING_FAULT_INJECTION)
    {"redeliver.Z4", kill_after_c3},
    {"redeliver.giveback", kill_before_giveback},
    {"redeliver.sweep", kill_sweeper},
    {"redeliver.mark", kill_marker},
    {"redeliver.take", kill_taker},
    {"redeliver.taken", kill_taker},
    {"redeliver.pop", kill_popper},
#endif
    {NULL, NULL},
};
