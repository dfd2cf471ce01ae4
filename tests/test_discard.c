/* shmring_discard: dropping an open reservation publishes nothing. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

Test(discard, nothing_is_published_and_the_slot_is_reused)
{
    const char *name = test_name("disc");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    char buf[64];
    void *payload;

    test_push_id(p, 1, 32);
    cr_assert_eq(shmring_reserve(p, 40, &payload), 0);
    memset(payload, 0xAB, 40);
    cr_assert_eq(shmring_discard(p), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 1, "a discard is not counted as a push");

    /* The reservation is gone: a push is allowed again (it was -EBUSY). */
    test_push_id(p, 2, 24);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 1);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 2);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "the discarded bytes never arrive");

    /* Discard at the consumer's position: it still sees an empty ring. */
    cr_assert_eq(shmring_reserve(p, 16, &payload), 0);
    memset(payload, 0xCD, 16);
    cr_assert_eq(shmring_discard(p), 0);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);

    /* The same slot goes to the next reservation, and commit publishes it. */
    cr_assert_eq(shmring_reserve(p, 20, &payload), 0);
    test_fill(payload, 20, 3);
    cr_assert_eq(shmring_commit(p, 20), 0);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 3);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(discard, full_ring_and_overwrite_ring)
{
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("dfull"));
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    char buf[64];
    void *payload;
    for (uint64_t i = 0; i < 3; i++)
        test_push_id(p, i, 16);
    /* The last free slot: reserve, discard, reserve again. */
    cr_assert_eq(shmring_reserve(p, 16, &payload), 0);
    cr_assert_eq(shmring_discard(p), 0);
    cr_assert_eq(shmring_reserve(p, 16, &payload), 0);
    test_fill(payload, 16, 3);
    cr_assert_eq(shmring_commit(p, 16), 0);
    cr_assert_eq(shmring_reserve(p, 16, &payload), -EAGAIN, "the ring is full");
    for (uint64_t i = 0; i < 4; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);

    /* Overwrite: the reservation dropped the oldest message; a discard does
     * not bring it back, and the others arrive intact. */
    snprintf(name, sizeof name, "%s", test_name("dover"));
    p = test_make(name, 4, 64, SHMRING_PRODUCER | SHMRING_OVERWRITE);
    c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 16);
    cr_assert_eq(shmring_reserve(p, 16, &payload), 0);
    memset(payload, 0xEE, 16);
    cr_assert_eq(shmring_discard(p), 0);
    test_push_id(p, 4, 16);
    ssize_t n;
    uint64_t want = 1;
    while ((n = shmring_pop(c, buf, sizeof buf)) >= 0) {
        uint64_t id;
        cr_assert(test_check(buf, (size_t)n, &id), "torn or discarded bytes delivered");
        cr_assert_geq(id, want, "order");
        want = id + 1;
    }
    cr_assert_eq(n, -EAGAIN);
    cr_assert_eq(want, 5, "the last message arrived");
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(discard, errors)
{
    const char *name = test_name("derr");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER | SHMRING_OBSERVER);
    void *payload;
    cr_assert_eq(shmring_discard(NULL), -EINVAL);
    cr_assert_eq(shmring_discard(p), -EINVAL, "no reservation");
    cr_assert_eq(shmring_discard(c), -EPERM, "not a producer");
    cr_assert_eq(shmring_reserve(p, 8, &payload), 0);
    cr_assert_eq(shmring_discard(c), -EPERM, "another handle's reservation");
    cr_assert_eq(shmring_commit(p, 8), 0);
    cr_assert_eq(shmring_discard(p), -EINVAL, "already committed");
    cr_assert_eq(shmring_reserve(p, 8, &payload), 0);
    cr_assert_eq(shmring_discard(p), 0);
    cr_assert_eq(shmring_discard(p), -EINVAL, "discarded twice");
    cr_assert_eq(shmring_commit(p, 0), -EINVAL, "commit after discard");
    /* A failed reserve leaves nothing to discard. */
    cr_assert_eq(shmring_reserve(p, 65, &payload), -EMSGSIZE);
    cr_assert_eq(shmring_discard(p), -EINVAL);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- A consumer that races with reserve/discard/commit ------------------ */

/* The producer commits ids 0..n-1 in order, and before each one reserves
 * and discards a slot filled with garbage; consumers must get exactly the
 * committed ids, each once, and never the garbage. */
struct race {
    const char *name;
    uint64_t n;
    uint32_t *seen;
    uint64_t bad;
};

static void race_produce(shmring_t *p, uint64_t n)
{
    void *payload;
    for (uint64_t i = 0; i < n; i++) {
        int rc;
        while ((rc = shmring_reserve(p, 24, &payload)) == -EAGAIN)
            sched_yield();
        cr_assert_eq(rc, 0);
        memset(payload, 0x5A, 24);
        cr_assert_eq(shmring_discard(p), 0);
        cr_assert_eq(shmring_reserve_wait(p, 24, &payload, -1), 0);
        test_fill(payload, 24, i);
        cr_assert_eq(shmring_commit(p, 24), 0);
    }
}

static void race_consume(shmring_t *c, struct race *r)
{
    char buf[64];
    for (;;) {
        ssize_t n = shmring_pop_wait(c, buf, sizeof buf, -1);
        if (n == -EPIPE)
            return;
        uint64_t id;
        if (n != 24 || !test_check(buf, (size_t)n, &id))
            r->bad++;
        else
            h_mark(r->seen, r->n, id, &r->bad);
    }
}

static void race_verdict(struct race *r)
{
    uint64_t twice, never;
    h_tally(r->seen, r->n, &twice, &never);
    cr_assert_eq(r->bad, 0, "%llu bad messages", (unsigned long long)r->bad);
    cr_assert_eq(twice, 0);
    cr_assert_eq(never, 0);
}

static void *consume_thread(void *arg)
{
    struct race *r = arg;
    shmring_t *c = test_open_as(r->name, SHMRING_CONSUMER);
    race_consume(c, r);
    shmring_close(c);
    return NULL;
}

Test(discard, racing_consumer_thread, .timeout = 120)
{
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("dthr"));
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    struct race r = {name, h_count(50000), NULL, 0};
    r.seen = test_shared_alloc(r.n * sizeof *r.seen);
    h_arm_deadline(60);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, consume_thread, &r), 0);
    race_produce(p, r.n);
    shmring_close(p); /* end of stream */
    pthread_join(t, NULL);
    h_disarm_deadline();
    race_verdict(&r);
    test_shared_free(r.seen, r.n * sizeof *r.seen);
    shmring_unlink(name);
}

Test(discard, racing_consumer_process, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("dproc"));
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    struct race *r = test_shared_alloc(sizeof *r);
    r->name = name;
    r->n = h_count(50000);
    r->seen = test_shared_alloc(r->n * sizeof *r->seen);
    h_arm_deadline(60);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(h_sanitized() ? 360 : 60);
        shmring_t *c = NULL;
        if (shmring_open(name, SHMRING_CONSUMER, &c) != 0)
            _exit(2);
        race_consume(c, r);
        shmring_close(c);
        _exit(0);
    }
    race_produce(p, r->n);
    shmring_close(p);
    cr_assert_eq(test_wait_child(pid), 0);
    h_disarm_deadline();
    race_verdict(r);
    test_shared_free(r->seen, r->n * sizeof *r->seen);
    test_shared_free(r, sizeof *r);
    shmring_unlink(name);
}
