/*
 * Claims held at named points (src/fault.h): a stale or dead claimer never
 * makes claim or push say "empty" or "full" when the ring is neither, and
 * never wedges the ring. Runs only in the fault-injection build (make
 * test-fault); elsewhere it skips itself. The races without points are in
 * test_contention.c.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"
#include "harness.h"

/* ---- Held at a point (fault-injection build) ---------------------------- */

#if defined(SHMRING_FAULT_INJECTION)

/* Wait until the child stops (SIGSTOP at a point) or ends; returns the
 * signal that stopped it, or -1 if it ended. */
static int wait_stopped(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, WUNTRACED) < 0)
        ;
    return WIFSTOPPED(st) ? WSTOPSIG(st) : -1;
}

/*
 * A consumer child that claims once with the rules of `spec` armed, then
 * releases and exits with 10 + the id it got (or 2..5 for errors). It stops
 * or dies at the points the rules name.
 */
static pid_t claimer_child(const char *name, const char *spec)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid != 0)
        return pid;
    alarm(30);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* even when stopped at a point */
    shmring_t *c;
    if (shmring_open(name, SHMRING_CONSUMER, &c) != 0)
        _exit(2);
    shmring__fault_reset_hits(); /* @N counts this process's hits */
    if (shmring__fault_set(spec) != 0)
        _exit(3);
    shmring_msg_t m;
    int rc = shmring_claim(c, &m);
    uint64_t id = 0;
    if (rc != 0)
        _exit(4);
    if (!test_check(m.data, m.len, &id) || id > 100)
        _exit(5);
    shmring_release(c, &m);
    shmring_close(c);
    _exit(10 + (int)id);
}

static void claim_expect(shmring_t *c, uint64_t want)
{
    shmring_msg_t m;
    int rc = shmring_claim(c, &m);
    cr_assert_eq(rc, 0, "claim of id %llu: %d", (unsigned long long)want, rc);
    test_expect_id(m.data, (ssize_t)m.len, want);
    cr_assert_eq(shmring_release(c, &m), 0);
}

/*
 * Issue: plain push said "full" on a ring with room while a stale claimer
 * (its position already taken) held a pending claim on the slot it wanted.
 * Now it says -EINPROGRESS, counts no full event, and succeeds once the
 * claimer moves on.
 */
Test(fault_claims, push_against_a_stale_claim_is_not_full)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("stalepush");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    char buf[64];
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 32);
    pid_t d = claimer_child(name, "claim.read:stop@1,claim.Z1:stop@1");
    cr_assert_eq(wait_stopped(d), SIGSTOP, "stopped having read position 0");
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    kill(d, SIGCONT);
    cr_assert_eq(wait_stopped(d), SIGSTOP, "stopped with its stale claim of 0 stored");

    /* The ring holds 3 of 4: not full. Slot 0 is pinned by a claim whose
     * owner has not finished. */
    test_fill(buf, 32, 4);
    cr_assert_eq(shmring_push(p, buf, 32), -EINPROGRESS);
    cr_assert_eq(shmring_push_wait(p, buf, 32, 20 * 1000000LL), -ETIMEDOUT);
    void *payload;
    cr_assert_eq(shmring_reserve(p, 32, &payload), -EINPROGRESS);
    struct iovec iov = {.iov_base = buf, .iov_len = 32};
    cr_assert_eq(shmring_push_batch(p, &iov, 1), -EINPROGRESS);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.full_events, 0, "contention counted as full");

    /* It moves on: its C3 fails, it gives the slot back and takes 1. */
    kill(d, SIGCONT);
    cr_assert_eq(test_wait_child(d), 11);
    cr_assert_eq(shmring_push(p, buf, 32), 0);
    for (uint64_t id = 2; id < 5; id++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);

    /* A ring really full says so, and counts it. */
    for (uint64_t id = 5; id < 9; id++)
        test_push_id(p, id, 32);
    cr_assert_eq(shmring_push(p, buf, 32), -EAGAIN);
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.full_events, 1);
    cr_assert_eq(st.pushed, 9);
    cr_assert_eq(st.popped, 5);
    cr_assert_eq(st.count, 4);
    cr_assert_eq(st.abandoned, 0);
    cr_assert_eq(st.empty_events, 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/*
 * A consumer part-way through a claim of the oldest message (stopped between
 * storing its claim and taking the message): the ring is not empty, so a
 * plain claim says -EINPROGRESS, not -EAGAIN, and counts no empty event; a
 * waiting claim times out; once the claimer finishes, the next one is free.
 */
Test(fault_claims, claim_behind_a_claim_part_way_through_is_not_empty)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("pending");
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t id = 0; id < 3; id++)
        test_push_id(p, id, 32);
    pid_t d = claimer_child(name, "claim.C3:stop@1");
    cr_assert_eq(wait_stopped(d), SIGSTOP);
    shmring_msg_t m;
    char buf[64];
    cr_assert_eq(shmring_claim(c, &m), -EINPROGRESS);
    cr_assert_eq(shmring_claim_wait(c, &m, 20 * 1000000LL), -ETIMEDOUT);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.empty_events, 0, "contention counted as empty");
    /* A copy pop does not wait for claims: it takes 0 under the claimer,
     * whose C3 then fails. */
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    kill(d, SIGCONT);
    cr_assert_eq(test_wait_child(d), 11, "the claimer moved on to 1");
    claim_expect(c, 2);
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.empty_events, 1);
    cr_assert_eq(st.popped, 3);
    cr_assert_eq(st.abandoned, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* A producer child: pushes ids [from, to) each time it reads a byte from
 * the pipe, then (after the last batch) waits to be killed. */
static pid_t producer_child(const char *name, int cmd, uint64_t per_batch, unsigned batches)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid != 0)
        return pid;
    alarm(30);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* even when stopped at a point */
    shmring_t *p;
    if (shmring_open(name, SHMRING_PRODUCER, &p) != 0)
        _exit(2);
    uint64_t id = 0;
    for (unsigned b = 0; b < batches; b++) {
        char x;
        if (read(cmd, &x, 1) != 1)
            _exit(3);
        for (uint64_t i = 0; i < per_batch; i++, id++) {
            unsigned char buf[64];
            test_fill(buf, 32, id);
            if (shmring_push(p, buf, 32) != 0)
                _exit(4);
        }
    }
    pause();
    _exit(0);
}

static void producer_go(int cmd)
{
    cr_assert_eq(write(cmd, "g", 1), 1);
}

/* Waits until the ring has published `n` messages. */
static void wait_pushed(shmring_t *obs, uint64_t n)
{
    shmring_stats_t st;
    for (;;) {
        cr_assert_eq(shmring_stats(obs, &st), 0);
        if (st.pushed >= n)
            return;
        h_sleep_us(200);
    }
}

/*
 * Issue: a claimer that read position 0, stalled while 0 was taken and its
 * slot reused for 4, then stored its claim (0, D) and died, wedged every
 * claimer at 4 ("contended" forever: claim said -EAGAIN, claim_wait(-1)
 * busy-spun without noticing the dead producer). Whoever meets the stale
 * claim now clears it; the waits run their dead-peer check.
 */
Test(fault_claims, a_dead_stale_claimer_never_wedges_claimers)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    h_arm_deadline(30);
    const char *name = test_name("stale");
    shmring_t *obs = test_make(name, 4, 64, SHMRING_OBSERVER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int cmd[2];
    cr_assert_eq(pipe(cmd), 0);
    pid_t prod = producer_child(name, cmd[0], 4, 2);
    producer_go(cmd[1]);
    wait_pushed(obs, 4);

    pid_t d = claimer_child(name, "claim.read:stop@1,claim.Z1:kill@1");
    cr_assert_eq(wait_stopped(d), SIGSTOP, "stopped having read position 0");
    for (uint64_t id = 0; id < 4; id++)
        claim_expect(c, id);
    producer_go(cmd[1]); /* 4..7: slot 0 now holds 4 */
    wait_pushed(obs, 8);
    kill(prod, SIGKILL);
    cr_assert_eq(test_wait_child(prod), 128 + SIGKILL);
    kill(d, SIGCONT);
    cr_assert_eq(test_wait_child(d), 128 + SIGKILL, "died with (0, D) stored on slot 0");

    claim_expect(c, 4);
    shmring_msg_t m;
    for (uint64_t id = 5; id < 8; id++) {
        cr_assert_eq(shmring_claim_wait(c, &m, -1), 0);
        test_expect_id(m.data, (ssize_t)m.len, id);
        cr_assert_eq(shmring_release(c, &m), 0);
    }
    cr_assert_eq(shmring_claim_wait(c, &m, -1), -EPIPE, "drained, producer dead");
    h_disarm_deadline();
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(obs, &st), 0);
    cr_assert_eq(st.pushed, 8);
    cr_assert_eq(st.popped, 8);
    cr_assert_eq(st.count, 0);
    cr_assert_eq(st.abandoned, 0, "a stale claim held nothing");
    cr_assert_eq(st.consumers, 1);
    close(cmd[0]);
    close(cmd[1]);
    shmring_close(c);
    shmring_close(obs);
    shmring_unlink(name);
}

/*
 * The producer meets a pending claim of a dead claimer on the slot it wants
 * (the claimer died between storing its claim of 0, already taken by a copy
 * pop, and giving it back): it reclaims it and pushes; nothing is abandoned.
 */
Test(fault_claims, push_reclaims_the_claim_of_a_dead_claimer)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("deadpend");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    char buf[64];
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 32);
    pid_t d = claimer_child(name, "claim.read:stop@1,claim.C3:kill@1");
    cr_assert_eq(wait_stopped(d), SIGSTOP);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    kill(d, SIGCONT);
    cr_assert_eq(test_wait_child(d), 128 + SIGKILL);
    test_push_id(p, 4, 32);
    for (uint64_t id = 1; id < 5; id++)
        claim_expect(c, id);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.pushed, 5);
    cr_assert_eq(st.popped, 5);
    cr_assert_eq(st.abandoned, 0, "the dead claimer's claim was stale");
    cr_assert_eq(st.full_events, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

#else

Test(fault_claims, claimers_held_at_points)
{
    cr_skip_test("built without SHMRING_FAULT_INJECTION: make test-fault runs these");
}

#endif
