/* Crash scenarios for zero-copy claims and releases, and reservations: Z1, Z2, Z3 (see
 * fault_walk.h). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"
#include "fault_walk.h"
#include "harness.h"

#if defined(SHMRING_FAULT_INJECTION)

#define SLOTS 8u
#define SIZE  64u

/* One scenario's ring: the parent's consumer and observer (and producer,
 * unless a child holds the lease), and which ids were delivered. */
struct fw {
    const char *name;
    shmring_t *p, *c, *obs;
    uint32_t *seen; /* shared with the children */
    uint64_t n;     /* ids published so far */
};

#define FW_MAX 256u

static void fw_open(struct fw *f, const char *tag, int producer)
{
    f->name = test_name(tag);
    f->obs = test_make(f->name, SLOTS, SIZE, SHMRING_OBSERVER);
    f->p = producer ? test_open_as(f->name, SHMRING_PRODUCER) : NULL;
    f->c = test_open_as(f->name, SHMRING_CONSUMER);
    f->seen = test_shared_alloc(FW_MAX * sizeof *f->seen);
    f->n = 0;
}

static void fw_close(struct fw *f)
{
    test_shared_free(f->seen, FW_MAX * sizeof *f->seen);
    shmring_close(f->c);
    if (f->p != NULL)
        shmring_close(f->p);
    shmring_close(f->obs);
    shmring_unlink(f->name);
}

/* Push k more ids (waiting for room: a dead claimer's slot is reclaimed). */
static void fw_push(struct fw *f, uint64_t k)
{
    for (uint64_t i = 0; i < k; i++, f->n++) {
        unsigned char buf[SIZE];
        size_t len = test_len_of(f->n, SIZE);
        test_fill(buf, len, f->n);
        int rc = shmring_push_wait(f->p, buf, len, 5000 * 1000000LL);
        cr_assert_eq(rc, 0, "push of %llu: %d", (unsigned long long)f->n, rc);
    }
}

/* Claim, check, mark and release one message: 0, or the claim's error. */
static int fw_claim_one(shmring_t *c, uint32_t *seen, int64_t timeout_ns)
{
    shmring_msg_t m;
    int rc = shmring_claim_wait(c, &m, timeout_ns);
    if (rc != 0)
        return rc;
    uint64_t id, bad = 0;
    if (!test_check(m.data, m.len, &id))
        return -EBADMSG;
    h_mark(seen, FW_MAX, id, &bad);
    if (bad != 0)
        return -ERANGE;
    return shmring_release(c, &m);
}

/* The parent takes everything published: the ring keeps moving. */
static void fw_drain(struct fw *f)
{
    int rc;
    while ((rc = fw_claim_one(f->c, f->seen, 0)) == 0)
        ;
    cr_assert_eq(rc, -EAGAIN, "drain ended with %d", rc);
}

/* `rounds` times round the ring: push a ring's worth, take it all. */
static void fw_cycle(struct fw *f, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        fw_push(f, SLOTS);
        fw_drain(f);
    }
}

/* No id twice or torn, none lost; pushed = popped + in ring (a claimed
 * message counts as popped, and also as abandoned if its claimer died). */
static void fw_check(struct fw *f, uint64_t abandoned)
{
    h_check_exactly_once(f->seen, f->n);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(f->obs, &st), 0);
    cr_assert_eq(st.pushed, f->n);
    cr_assert_eq(st.count, 0);
    cr_assert_eq(st.popped + st.dropped + st.count, st.pushed, "popped %llu of %llu",
                 (unsigned long long)st.popped, (unsigned long long)st.pushed);
    cr_assert_eq(st.abandoned, abandoned);
    cr_assert_eq(st.consumers, 1, "only the parent's consumer is alive");
}

static int fw_wait_stopped(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, WUNTRACED) < 0)
        ;
    return WIFSTOPPED(st) ? WSTOPSIG(st) : -1;
}

/* A consumer child with `rule` armed: claims, marks and releases until the
 * ring is empty (exit 0) or the rule stops or kills it. */
static pid_t fw_claimer(struct fw *f, const char *rule)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid != 0)
        return pid;
    alarm(30);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* even when stopped at a point */
    shmring_t *c;
    if (shmring_open(f->name, SHMRING_CONSUMER, &c) != 0)
        _exit(2);
    shmring__fault_reset_hits(); /* @N counts this process's hits */
    if (shmring__fault_set(rule) != 0)
        _exit(3);
    int rc;
    while ((rc = fw_claim_one(c, f->seen, 0)) == 0)
        ;
    _exit(rc == -EAGAIN ? 0 : 4);
}

static void fw_expect_killed(pid_t pid, const char *point)
{
    int st = test_wait_child(pid);
    cr_assert_eq(st, 128 + SIGKILL, "%s: child status %d, not killed there", point, st);
}

/*
 * claim.read, claim.Z1, claim.C3: a claimer killed on its third claim,
 * before its claim is stored or with a pending claim of the oldest message.
 * The parent meets that claim, reclaims it, and takes the message: nothing
 * is abandoned, nothing lost.
 */
static unsigned kill_pending_claimer(const char *point)
{
    if (test_heap_forced())
        return 0; /* a heap ring is not shared with the processes that die */
    struct fw f;
    fw_open(&f, "fwpend", 1);
    fw_push(&f, SLOTS);
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill@3", point);
    fw_expect_killed(fw_claimer(&f, rule), point);
    fw_drain(&f);
    fw_cycle(&f, 2);
    fw_check(&f, 0);
    fw_close(&f);
    return 1;
}

/*
 * claim.Z3: a claimer killed in its second release, its claim still held:
 * the message is abandoned (counted once), its slot reclaimed when the
 * producer comes round to it.
 */
static unsigned kill_releasing_claimer(const char *point)
{
    if (test_heap_forced())
        return 0; /* a heap ring is not shared with the processes that die */
    struct fw f;
    fw_open(&f, "fwrel", 1);
    fw_push(&f, 4);
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill@2", point);
    fw_expect_killed(fw_claimer(&f, rule), point);
    fw_drain(&f);
    fw_cycle(&f, 3); /* over the pinned slot, three times */
    fw_check(&f, 1);
    fw_close(&f);
    return 1;
}

/*
 * claim.Z2: the producer killed having loaded the claim word of its fifth
 * slot, nothing written: consumers get 0..3, a new producer takes the lease
 * over and goes on from 4.
 */
static unsigned kill_producer_at_claim_check(const char *point)
{
    if (test_heap_forced())
        return 0; /* a heap ring is not shared with the processes that die */
    struct fw f;
    fw_open(&f, "fwz2", 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(30);
        shmring_t *p;
        if (shmring_open(f.name, SHMRING_PRODUCER, &p) != 0)
            _exit(2);
        char rule[64];
        snprintf(rule, sizeof rule, "%s:kill@5", point);
        shmring__fault_reset_hits(); /* @N counts this process's hits */
        if (shmring__fault_set(rule) != 0)
            _exit(3);
        for (uint64_t id = 0; id < SLOTS; id++) {
            unsigned char buf[SIZE];
            test_fill(buf, test_len_of(id, SIZE), id);
            if (shmring_push(p, buf, test_len_of(id, SIZE)) != 0)
                _exit(4);
        }
        _exit(0);
    }
    fw_expect_killed(pid, point);
    f.n = 4;
    fw_drain(&f);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim_wait(f.c, &m, -1), -EPIPE, "dead producer, drained");
    f.p = test_open_as(f.name, SHMRING_PRODUCER);
    fw_cycle(&f, 2);
    fw_check(&f, 0);
    fw_close(&f);
    return 1;
}

/*
 * claim.stale: a stale claim is left on slot 0 (a claimer read position 0,
 * was stopped while 0 was taken and the slot reused for 8, then stored its
 * claim and died), and a second claimer is killed as it is about to clear
 * it. The parent clears it and takes 8 on.
 */
static unsigned kill_stale_claim_clearer(const char *point)
{
    if (test_heap_forced())
        return 0; /* a heap ring is not shared with the processes that die */
    struct fw f;
    fw_open(&f, "fwstale", 1);
    fw_push(&f, SLOTS);
    pid_t stale = fw_claimer(&f, "claim.read:stop@1,claim.Z1:kill@1");
    cr_assert_eq(fw_wait_stopped(stale), SIGSTOP);
    fw_drain(&f);
    fw_push(&f, SLOTS);
    kill(stale, SIGCONT);
    fw_expect_killed(stale, "claim.Z1");
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill@1", point);
    fw_expect_killed(fw_claimer(&f, rule), point);
    fw_drain(&f);
    fw_cycle(&f, 2);
    fw_check(&f, 0);
    fw_close(&f);
    return 2;
}

#endif

const struct fault_scenario fault_claim_scenarios[] = {
#if defined(SHMRING_FAULT_INJECTION)
    {"claim.read", kill_pending_claimer},
    {"claim.Z1", kill_pending_claimer},
    {"claim.C3", kill_pending_claimer},
    {"claim.Z2", kill_producer_at_claim_check},
    {"claim.Z3", kill_releasing_claimer},
    {"claim.stale", kill_stale_claim_clearer},
#endif
    {NULL, NULL},
};
