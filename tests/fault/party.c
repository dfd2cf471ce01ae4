/* Crash scenarios for party take, release and seize, and the producer lease takeover (see
 * fault_walk.h). Each defect of the party table has a scenario here that failed before it was
 * fixed: counters folded twice, a TAKING entry or lease stuck behind a reused pid, a live party
 * seized by a stale CAS (ABA), a producer that kept writing after it learned it lost the lease. */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

#if defined(SHMRING_FAULT_INJECTION)

#include "kit.h"

/* ---- Children ------------------------------------------------------------ */

struct job {
    const char *name;
    uint32_t flags; /* roles to open with */
    int pops;       /* copy pops to do before closing */
    int claims;     /* claims to take and keep */
    int close;      /* close the handle at the end (else exit holding it) */
};

/* Open, pop or claim, then close (or die holding everything). */
static int job_run(void *arg)
{
    struct job *j = arg;
    shmring_t *h;
    if (shmring_open(j->name, j->flags, &h) != 0)
        return 2;
    char buf[256];
    for (int i = 0; i < j->pops; i++)
        if (shmring_pop(h, buf, sizeof buf) < 16)
            return 3;
    for (int i = 0; i < j->claims; i++) {
        shmring_msg_t m;
        if (shmring_claim(h, &m) != 0)
            return 4;
    }
    if (j->close)
        shmring_close(h);
    return 0;
}

/* A handle whose stats reclaim every dead party on the way. */
static int stats_run(void *arg)
{
    struct job *j = arg;
    shmring_t *h;
    if (shmring_open(j->name, SHMRING_OBSERVER, &h) != 0)
        return 2;
    shmring_stats_t st;
    if (shmring_stats(h, &st) != 0)
        return 3;
    shmring_close(h);
    return 0;
}

static void run_ok(int (*fn)(void *), void *arg)
{
    int st = test_wait_child(kit_child(fn, arg, NULL));
    cr_assert_eq(st, 0, "child status %d", st);
}

/* ---- party.take / party.lease_take: a taker dies; its pid is reused ---- */

/*
 * A consumer killed between taking a free entry (TAKING) and setting it up.
 * With `reuse`, its pid is then given to a live process, as pid reuse would.
 * The entry is reclaimed all the same (its lock is gone), and the counters
 * its previous owner left there are counted once, not again.
 */
static void take_killed_once(int reuse)
{
    char *name = kit_name("ptake");
    shmring_t *p = test_make(name, 64, 64, SHMRING_PRODUCER);
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 32);
    struct job pop3 = {.name = name, .flags = SHMRING_CONSUMER, .pops = 3, .close = 1};
    run_ok(job_run, &pop3); /* entry 1: free again, 3 pops counted in it */
    struct job open = {.name = name, .flags = SHMRING_CONSUMER, .close = 1};
    kit_killed(job_run, &open, "party.take:kill");
    struct shmring__hdr *hdr = kit_hdr(p);
    uint64_t o = kit_owner(hdr, 1);
    cr_assert_eq(SHMRING__OWNER_STATE(o), SHMRING__PARTY_TAKING, "taker died in TAKING");
    pid_t sleeper = 0;
    if (reuse) {
        sleeper = kit_sleeper();
        __atomic_store_n(&hdr->party[1].owner, (o & 0xffffffffull) | (uint64_t)sleeper << 32,
                         __ATOMIC_RELEASE);
    }
    /* Fill every other entry; the last handle can only get the dead taker's. */
    shmring_t *h[SHMRING__PARTIES - 1];
    for (unsigned i = 0; i + 1 < SHMRING__PARTIES - 1; i++)
        h[i] = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *last = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &last), 0,
                 "entry of a dead taker (pid %s) not reclaimed", reuse ? "reused" : "gone");
    h[SHMRING__PARTIES - 2] = last;
    shmring_stats_t st = kit_stats(p);
    cr_assert_eq(st.consumers, SHMRING__PARTIES - 1);
    cr_assert_eq(st.popped, 3, "3 pops counted %llu times over", (unsigned long long)st.popped);
    char buf[64];
    test_expect_id(buf, shmring_pop(last, buf, sizeof buf), 3);
    kit_reconcile(p);
    for (unsigned i = 0; i < SHMRING__PARTIES - 1; i++)
        shmring_close(h[i]);
    if (reuse)
        kit_reap(sleeper);
    kit_unmap(hdr);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
}

static unsigned take_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    take_killed_once(0);
    take_killed_once(1);
    return 2;
}

static int produce_run(void *arg)
{
    struct job *j = arg;
    shmring_t *h;
    if (shmring_open(j->name, SHMRING_PRODUCER, &h) != 0)
        return 2;
    for (int i = 0; i < j->pops; i++) {
        unsigned char buf[64];
        test_fill(buf, 32, 100u + (uint64_t)i);
        if (shmring_push(h, buf, 32) != 0)
            return 3;
    }
    if (j->close)
        shmring_close(h);
    return 0;
}

/* A producer killed while taking a closed lease (TAKING), its pid reused:
 * the next producer takes the lease over instead of waiting forever. */
static unsigned lease_take_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("plt");
    shmring_t *p = test_make(name, 16, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 2; i++)
        test_push_id(p, i, 32);
    shmring_close(p); /* the lease is CLOSED */
    struct job prod = {.name = name, .flags = SHMRING_PRODUCER, .pops = 0, .close = 1};
    kit_killed(produce_run, &prod, "party.lease_take:kill");
    struct shmring__hdr *hdr = kit_hdr(c);
    uint64_t o = kit_owner(hdr, 0);
    cr_assert_eq(SHMRING__OWNER_STATE(o), SHMRING__PARTY_TAKING);
    pid_t sleeper = kit_sleeper();
    __atomic_store_n(&hdr->party[0].owner, (o & 0xffffffffull) | (uint64_t)sleeper << 32,
                     __ATOMIC_RELEASE);
    p = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p), 0,
                 "lease left TAKING by a dead producer whose pid was reused: stuck");
    for (uint64_t i = 2; i < 4; i++)
        test_push_id(p, i, 32);
    kit_drain(c, 0, 4);
    kit_reconcile(c);
    kit_reap(sleeper);
    kit_unmap(hdr);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* ---- party.release: counted once whoever dies while leaving ------------- */

/*
 * A consumer killed in its close, and a reclaimer killed while freeing the
 * entry it reclaimed: the entry is reclaimed again, and the pops counted in
 * it are counted once (they were folded twice, the flaky `popped <= n` of
 * crash.killed_consumers_never_wedge_the_ring).
 */
static unsigned release_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("prel");
    shmring_t *p = test_make(name, 64, 64, SHMRING_PRODUCER);
    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    for (uint64_t i = 0; i < 8; i++)
        test_push_id(p, i, 32);
    struct job closing = {.name = name, .flags = SHMRING_CONSUMER, .pops = 3, .close = 1};
    kit_killed(job_run, &closing, "party.release:kill");
    shmring_stats_t st = kit_stats(obs);
    cr_assert_eq(st.popped, 3, "3 pops of a consumer killed in close counted as %llu",
                 (unsigned long long)st.popped);
    cr_assert_eq(st.consumers, 0);
    kit_reconcile(obs);

    /* A consumer that dies holding its entry, then a reclaimer killed as it frees it. */
    struct job dying = {.name = name, .flags = SHMRING_CONSUMER, .pops = 2, .close = 0};
    run_ok(job_run, &dying);
    struct job reclaimer = {.name = name};
    kit_killed(stats_run, &reclaimer, "party.release:kill@1");
    st = kit_stats(obs);
    cr_assert_eq(st.popped, 5, "5 pops counted as %llu", (unsigned long long)st.popped);
    cr_assert_eq(st.consumers, 0);
    cr_assert_eq(st.observers, 1, "the dead reclaimer was reclaimed too");
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    kit_drain(c, 5, 8);
    kit_reconcile(obs);
    shmring_close(c);
    shmring_close(obs);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 2;
}

/* ---- party.judge / party.seize: no live party is ever seized (ABA) ----- */

struct aba {
    uint32_t at_judge, closed, at_seize, reopened;
    int32_t child_rc;
};

static struct aba *aba;

/* In the reclaimer: hold still at judge until the party closed, and at
 * seize until it took an entry again, as a descheduled reclaimer would. */
static void aba_hook(int point, void *ctx)
{
    (void)ctx;
    if (point == SHMRING__FP_PARTY_JUDGE) {
        kit_set(&aba->at_judge, 1);
        kit_await(&aba->closed, 1);
    } else if (point == SHMRING__FP_PARTY_SEIZE) {
        kit_set(&aba->at_seize, 1);
        kit_await(&aba->reopened, 1);
    }
}

static int aba_stats(void *arg)
{
    shmring__fault_hook_set(aba_hook, NULL);
    return stats_run(arg);
}

/* The consumer variant: a reclaimer that judged a closed consumer dead must
 * not seize the entry that consumer took again (same pid): its claims would
 * be swept from under it. */
static void aba_consumer(void)
{
    char *name = kit_name("paba");
    shmring_t *p = test_make(name, 16, 64, SHMRING_PRODUCER);
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 32);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER); /* entry 1, judged first */
    memset(aba, 0, sizeof *aba);
    struct job reclaimer = {.name = name};
    pid_t r = kit_child(aba_stats, &reclaimer, "party.judge:hook@1,party.seize:hook@1");
    cr_assert(kit_await(&aba->at_judge, 1), "reclaimer never judged the consumer");
    shmring_close(c);
    kit_set(&aba->closed, 1);
    int seized = kit_await(&aba->at_seize, 1); /* it judged the closed entry dead */
    c = test_open_as(name, SHMRING_CONSUMER);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), 0);
    kit_set(&aba->reopened, 1);
    cr_assert_eq(test_wait_child(r), 0);
    cr_assert(seized, "the reclaimer never reached its CAS");
    cr_assert_eq(shmring_release(c, &m), 0, "a live consumer's claim was swept by a stale CAS");
    char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 1);
    shmring_stats_t st = kit_stats(p);
    cr_assert_eq(st.abandoned, 0);
    cr_assert_eq(st.consumers, 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
}

static int aba_producer(void *arg)
{
    shmring__fault_hook_set(aba_hook, NULL);
    struct job *j = arg;
    shmring_t *h = NULL;
    int rc = shmring_open(j->name, SHMRING_PRODUCER, &h);
    __atomic_store_n(&aba->child_rc, rc, __ATOMIC_RELEASE);
    if (rc == 0) {
        unsigned char buf[64];
        test_fill(buf, 32, 1000);
        shmring_push(h, buf, 32); /* the second writer, if it got in */
        shmring_close(h);
    }
    return 0;
}

/* The lease variant: a producer that judged a closing holder dead must not
 * take the lease its holder took again: two producers would write. */
static void aba_lease(void)
{
    char *name = kit_name("plaba");
    shmring_t *p = test_make(name, 16, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    test_push_id(p, 0, 32);
    memset(aba, 0, sizeof *aba);
    struct job rival = {.name = name};
    pid_t r = kit_child(aba_producer, &rival, "party.judge:hook@1,party.seize:hook@1");
    cr_assert(kit_await(&aba->at_judge, 1), "rival never judged the lease");
    shmring_close(p);
    kit_set(&aba->closed, 1);
    kit_await(&aba->at_seize, 1);
    p = NULL;
    int mine = shmring_open(name, SHMRING_PRODUCER, &p);
    kit_set(&aba->reopened, 1);
    cr_assert_eq(test_wait_child(r), 0);
    int theirs = __atomic_load_n(&aba->child_rc, __ATOMIC_ACQUIRE);
    cr_assert(mine != 0 || theirs != 0, "two producers hold the lease at once");
    if (mine != 0)
        cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p), 0, "lease free again");
    test_push_id(p, 1, 32);
    char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    ssize_t n = shmring_pop(c, buf, sizeof buf);
    uint64_t id = 0;
    cr_assert(n >= 16 && test_check(buf, (size_t)n, &id));
    if (theirs == 0) {
        cr_assert_eq(id, 1000, "the rival's message");
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 1);
    } else {
        cr_assert_eq(id, 1);
    }
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    kit_reconcile(c);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
}

static unsigned stale_seize(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    aba = test_shared_alloc(sizeof *aba);
    aba_consumer();
    aba_lease();
    test_shared_free(aba, sizeof *aba);
    return 0;
}

/*
 * A reclaimer killed at `spec` while reclaiming a dead consumer that held a
 * claim and had popped: the next reclaimer finishes the job; the claim is
 * counted abandoned once, the pops once, and the slot is free again.
 */
static unsigned reclaimer_killed(const char *spec)
{
    char *name = kit_name("prk");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 32);
    struct job dying = {.name = name, .flags = SHMRING_CONSUMER, .pops = 1, .claims = 1};
    run_ok(job_run, &dying); /* pops id 0, dies holding id 1 */
    struct job reclaimer = {.name = name};
    kit_killed(stats_run, &reclaimer, spec);
    shmring_stats_t st = kit_stats(obs);
    cr_assert_eq(st.consumers, 0);
    cr_assert_eq(st.observers, 1, "the dead reclaimer was reclaimed");
    cr_assert_eq(st.abandoned, 1, "one claim abandoned, counted %llu times",
                 (unsigned long long)st.abandoned);
    cr_assert_eq(st.popped, 2, "a pop and a claim counted as %llu", (unsigned long long)st.popped);
    /* The slots of ids 0 and 1 are free for the producer again. */
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    kit_drain(c, 2, 4);
    for (uint64_t i = 4; i < 8; i++)
        test_push_id(p, i, 32);
    kit_drain(c, 4, 8);
    shmring_close(c);
    shmring_close(obs);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

static unsigned judge_killed(const char *point)
{
    (void)point;
    return test_heap_forced() ? 0 : reclaimer_killed("party.judge:kill@1");
}

static unsigned seize_killed(const char *point)
{
    (void)point;
    return test_heap_forced() ? 0 : reclaimer_killed("party.seize:kill@1");
}

static unsigned reclaim_killed(const char *point)
{
    (void)point;
    return test_heap_forced() ? 0 : reclaimer_killed("party.reclaim:kill@1");
}

/* ---- party.reclaim: a producer that learns it lost the lease stops ------ */

struct steal {
    shmring_t *c;
    struct shmring__hdr *hdr;
    int done;
};

static struct steal steal;

/* Runs in the producer's own dead-peer check, as it reclaims a dead
 * consumer: the lease is taken from under it (as a stale CAS used to) and
 * room appears at the same moment. */
static void steal_hook(int point, void *ctx)
{
    (void)point;
    (void)ctx;
    if (steal.done++)
        return;
    uint64_t o = kit_owner(steal.hdr, 0);
    uint64_t other = SHMRING__OWNER_WORD(SHMRING__PARTY_ACTIVE, SHMRING__OWNER_GEN(o) + 1,
                                         SHMRING__OWNER_PID(o));
    __atomic_store_n(&steal.hdr->party[0].owner, other, __ATOMIC_RELEASE);
    /* The epoch shown in the stats moves on with it. */
    __atomic_fetch_add(&steal.hdr->party[0].generation, 1, __ATOMIC_RELEASE);
    char buf[64];
    test_expect_id(buf, shmring_pop(steal.c, buf, sizeof buf), 0);
}

static unsigned lost_lease_stops(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("plost");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    struct job dead = {.name = name, .flags = SHMRING_CONSUMER};
    run_ok(job_run, &dead); /* a dead consumer for the check to reclaim */
    steal.c = test_open_as(name, SHMRING_CONSUMER);
    steal.hdr = kit_hdr(p);
    steal.done = 0;
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 32);
    shmring__fault_hook_set(steal_hook, NULL);
    cr_assert_eq(shmring__fault_set("party.reclaim:hook"), 0);
    unsigned char msg[64];
    test_fill(msg, 32, 99);
    int rc = shmring_push_wait(p, msg, 32, -1);
    cr_assert_eq(shmring__fault_set(NULL), 0);
    cr_assert_eq(steal.done, 1, "the dead-peer check ran");
    cr_assert_eq(rc, -EOWNERDEAD, "push_wait after losing the lease returned %d", rc);
    cr_assert_eq(shmring_push(p, msg, 32), -EOWNERDEAD, "the handle writes no more");
    void *payload;
    cr_assert_eq(shmring_reserve(p, 8, &payload), -EOWNERDEAD);
    /* Nothing was written into the room that appeared. */
    kit_drain(steal.c, 1, 4);
    kit_unmap(steal.hdr);
    shmring_close(steal.c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 0;
}

/* ---- party.lease_takeover ---------------------------------------------- */

/* A producer dies holding the lease, the one taking it over dies too: a
 * third takes it over, resumes after every published message, and the
 * consumer gets each message once, in order. */
static unsigned takeover_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("pto");
    shmring_t *c = test_make(name, 16, 64, SHMRING_CONSUMER);
    struct job first = {.name = name, .pops = 3, .close = 0};
    run_ok(produce_run, &first); /* ids 100..102, dies holding the lease */
    struct job second = {.name = name, .pops = 3, .close = 1};
    kit_killed(produce_run, &second, "party.lease_takeover:kill");
    shmring_t *p = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p), 0, "lease taken over");
    test_push_id(p, 103, 32);
    kit_drain(c, 100, 104);
    shmring_stats_t st = kit_stats(c);
    cr_assert_eq(st.pushed, 4);
    cr_assert(st.producer_alive);
    kit_reconcile(c);
    shmring_close(p);
    shmring_close(c);
    shmring_unlink(name);
    free(name);
    return 1;
}

const struct fault_scenario fault_party_scenarios[] = {
    {"party.take", take_killed},
    {"party.lease_take", lease_take_killed},
    {"party.release", release_killed},
    {"party.judge", stale_seize},
    {"party.judge", judge_killed},
    {"party.seize", seize_killed},
    {"party.reclaim", reclaim_killed},
    {"party.reclaim", lost_lease_stops},
    {"party.lease_takeover", takeover_killed},
    {NULL, NULL},
};

#else

const struct fault_scenario fault_party_scenarios[] = {
    {NULL, NULL},
};

#endif
