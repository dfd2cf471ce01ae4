/* Zero-copy: reserve/commit on the producer side, claim/release on the consumer side. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

/* ---- reserve / commit --------------------------------------------------- */

Test(zerocopy, nothing_visible_before_commit)
{
    const char *name = test_name("zvis");
    shmring_t *p = test_make(name, 4, 128, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[128];
    shmring_msg_t m;
    void *payload = NULL;
    cr_assert_eq(shmring_reserve(p, 100, &payload), 0);
    cr_assert_not_null(payload);
    test_fill(payload, 100, 11);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.pushed, 0);
    cr_assert_eq(st.count, 0);
    cr_assert_eq(shmring_commit(p, 100), 0);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 11);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(zerocopy, commit_smaller_length)
{
    const char *name = test_name("zshort");
    shmring_t *p = test_make(name, 4, 128, SHMRING_PRODUCER | SHMRING_CONSUMER);
    unsigned char buf[128];
    void *payload;
    cr_assert_eq(shmring_reserve(p, 128, &payload), 0);
    test_fill(payload, 30, 3);
    cr_assert_eq(shmring_commit(p, 30), 0);
    cr_assert_eq(shmring_reserve(p, 10, &payload), 0);
    cr_assert_eq(shmring_commit(p, 0), 0);
    ssize_t n = shmring_pop(p, buf, sizeof buf);
    cr_assert_eq(n, 30);
    test_expect_id(buf, n, 3);
    cr_assert_eq(shmring_pop(p, buf, sizeof buf), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 2);
    cr_assert_eq(st.bytes_pushed, 30);
    cr_assert_eq(st.bytes_popped, 30);
    shmring_close(p);
    shmring_unlink(name);
}

Test(zerocopy, reserve_and_commit_errors)
{
    const char *name = test_name("zerr");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64] = {0};
    void *payload = NULL, *again = NULL;

    cr_assert_eq(shmring_commit(p, 0), -EINVAL, "commit without reserve");
    cr_assert_eq(shmring_commit(NULL, 0), -EINVAL);
    cr_assert_eq(shmring_reserve(NULL, 8, &payload), -EINVAL);
    cr_assert_eq(shmring_reserve(p, 8, NULL), -EINVAL);
    cr_assert_eq(shmring_reserve(p, 65, &payload), -EMSGSIZE);
    cr_assert_eq(shmring_reserve(c, 8, &payload), -EPERM);
    cr_assert_eq(shmring_commit(c, 0), -EINVAL);

    cr_assert_eq(shmring_reserve(p, 40, &payload), 0);
    cr_assert_eq(shmring_reserve(p, 40, &again), -EBUSY, "reserve twice");
    cr_assert_eq(shmring_push(p, buf, 8), -EBUSY, "push with a reservation open");
    struct iovec iov = {.iov_base = buf, .iov_len = 8};
    cr_assert_eq(shmring_push_batch(p, &iov, 1), -EBUSY);
    cr_assert_eq(shmring_commit(p, 41), -EINVAL, "commit larger than reserved");
    /* The failed calls changed nothing: the reservation is still open. */
    test_fill(payload, 40, 77);
    cr_assert_eq(shmring_commit(p, 40), 0);
    cr_assert_eq(shmring_commit(p, 40), -EINVAL, "commit twice");
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 77);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);

    /* Full ring: reserve fails like push, and leaves no reservation open. */
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 20);
    cr_assert_eq(shmring_reserve(p, 8, &payload), -EAGAIN);
    cr_assert_eq(shmring_commit(p, 0), -EINVAL);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    cr_assert_eq(shmring_reserve(p, 20, &payload), 0);
    test_fill(payload, 20, 4);
    cr_assert_eq(shmring_commit(p, 20), 0);
    for (uint64_t i = 1; i < 5; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- claim / release ---------------------------------------------------- */

Test(zerocopy, claim_points_at_the_message)
{
    const char *name = test_name("zclaim");
    shmring_t *p = test_make(name, 4, 200, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char want[200];
    test_fill(want, 150, 5);
    cr_assert_eq(shmring_push(p, want, 150), 0);
    cr_assert_eq(shmring_push(p, want, 0), 0);
    shmring_msg_t m;
    memset(&m, 0, sizeof m);
    cr_assert_eq(shmring_claim(c, &m), 0);
    cr_assert_not_null(m.data);
    cr_assert_eq(m.len, 150);
    cr_assert(memcmp(m.data, want, 150) == 0);
    cr_assert_eq(shmring_release(c, &m), 0);
    cr_assert_eq(shmring_claim(c, &m), 0);
    cr_assert_eq(m.len, 0);
    cr_assert_eq(shmring_release(c, &m), 0);
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.popped, 2);
    cr_assert_eq(st.bytes_popped, 150);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(zerocopy, claim_errors)
{
    const char *name = test_name("zcerr");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *c2 = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    shmring_msg_t m, zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(shmring_claim(p, &m), -EPERM, "claim on a producer-only handle");
    cr_assert_eq(shmring_claim(o, &m), -EPERM, "claim on an observer handle");
    cr_assert_eq(shmring_claim(c, NULL), -EINVAL);
    cr_assert_eq(shmring_claim(NULL, &m), -EINVAL);
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    cr_assert_eq(shmring_release(c, NULL), -EINVAL);
    cr_assert_eq(shmring_release(NULL, &m), -EINVAL);
    cr_assert_eq(shmring_release(c, &zero), -EINVAL, "release of something never claimed");

    test_push_id(p, 1, 32);
    cr_assert_eq(shmring_claim(c, &m), 0);
    shmring_msg_t copy = m;
    cr_assert_eq(shmring_release(c2, &copy), -EINVAL, "release through another handle");
    cr_assert_eq(shmring_release(p, &copy), -EINVAL, "release through the producer");
    cr_assert_eq(shmring_release(c, &m), 0);
    cr_assert_eq(shmring_release(c, &m), -EINVAL, "release twice");
    cr_assert_eq(shmring_release(c, &copy), -EINVAL, "release twice through a copy");
    shmring_close(o);
    shmring_close(c2);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(zerocopy, several_claims_released_in_any_order)
{
    const char *name = test_name("zmany");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 6; i++)
        test_push_id(p, i, 16 + i * 8);
    shmring_msg_t m[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(shmring_claim(c, &m[i]), 0);
        test_expect_id(m[i].data, (ssize_t)m[i].len, (uint64_t)i);
    }
    static const int order[4] = {2, 0, 3, 1};
    for (int k = 0; k < 4; k++) {
        /* Every claim still held is intact. */
        for (int j = k; j < 4; j++)
            test_expect_id(m[order[j]].data, (ssize_t)m[order[j]].len, (uint64_t)order[j]);
        cr_assert_eq(shmring_release(c, &m[order[k]]), 0, "release %d", order[k]);
    }
    unsigned char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 4);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 5);
    /* Every slot is free again: the ring takes 8 more. */
    for (uint64_t i = 6; i < 14; i++)
        test_push_id(p, i, 32);
    for (uint64_t i = 6; i < 14; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(zerocopy, claimed_slot_not_reused_before_release)
{
    const char *name = test_name("zpin");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 48);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), 0);
    unsigned char saved[64];
    memcpy(saved, m.data, m.len);
    test_expect_id(saved, (ssize_t)m.len, 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.count, 3, "read_index advanced past the claimed message");
    unsigned char buf[64];
    test_fill(buf, 48, 4);
    cr_assert_eq(shmring_push(p, buf, 48), -EAGAIN, "the producer would reuse a claimed slot");
    void *payload;
    cr_assert_eq(shmring_reserve(p, 48, &payload), -EAGAIN);
    struct iovec iov = {.iov_base = buf, .iov_len = 48};
    cr_assert_eq(shmring_push_batch(p, &iov, 1), -EAGAIN);
    /* Drain everything else: the claimed slot still blocks the producer. */
    for (uint64_t i = 1; i < 4; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    test_fill(buf, 48, 4);
    cr_assert_eq(shmring_push(p, buf, 48), -EAGAIN);
    cr_assert_eq(shmring_push_wait(p, buf, 48, 20000000), -ETIMEDOUT);
    cr_assert(memcmp(m.data, saved, m.len) == 0, "claimed bytes changed before release");
    cr_assert_eq(shmring_release(c, &m), 0);
    cr_assert_eq(shmring_push(p, buf, 48), 0);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 4);
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_geq(st.full_events, 4);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(zerocopy, close_releases_claims)
{
    const char *name = test_name("zclose");
    shmring_t *p = test_make(name, 2, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    test_push_id(p, 0, 32);
    test_push_id(p, 1, 32);
    shmring_msg_t m[2];
    cr_assert_eq(shmring_claim(c, &m[0]), 0);
    cr_assert_eq(shmring_claim(c, &m[1]), 0);
    unsigned char buf[64];
    test_fill(buf, 32, 2);
    cr_assert_eq(shmring_push(p, buf, 32), -EAGAIN);
    shmring_close(c);
    cr_assert_eq(shmring_push(p, buf, 32), 0);
    test_fill(buf, 32, 3);
    cr_assert_eq(shmring_push(p, buf, 32), 0);
    shmring_t *c2 = test_open_as(name, SHMRING_CONSUMER);
    test_expect_id(buf, shmring_pop(c2, buf, sizeof buf), 2);
    test_expect_id(buf, shmring_pop(c2, buf, sizeof buf), 3);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.abandoned, 0, "a clean close abandons nothing");
    cr_assert_eq(st.popped, 4);
    shmring_close(c2);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Stress: reserve/commit producer, claim and pop consumers ---------- */

#define STOP_ID    UINT64_MAX
#define NCONS      3
#define MAX_HELD   3
#define SLOT_BYTES 64

struct zc_consumer {
    const char *name;
    int claims; /* 1: claim/release (holding up to MAX_HELD), 0: pop */
    uint32_t *seen;
    uint64_t n, got, bad, seed;
    long last_rc;
};

static int zc_take(struct zc_consumer *z, const void *data, size_t len)
{
    uint64_t id;
    if (len == 8) {
        memcpy(&id, data, 8);
        if (id == STOP_ID)
            return 1;
    }
    if (!test_check(data, len, &id)) {
        z->bad++;
        return 0;
    }
    h_mark(z->seen, z->n, id, &z->bad);
    z->got++;
    return 0;
}

static int zc_release_all(struct zc_consumer *z, shmring_t *c, shmring_msg_t *held, int *nheld)
{
    int stop = 0;
    while (*nheld > 0) {
        int i = (int)(h_rand(&z->seed) % (uint64_t)*nheld);
        /* Read in place, just before giving the slot back. */
        stop |= zc_take(z, held[i].data, held[i].len);
        int rc = shmring_release(c, &held[i]);
        if (rc != 0) {
            z->bad++;
            z->last_rc = rc;
        }
        held[i] = held[--*nheld];
    }
    return stop;
}

static void zc_claim_loop(struct zc_consumer *z, shmring_t *c)
{
    shmring_msg_t held[MAX_HELD];
    int nheld = 0, stop = 0;
    while (!stop) {
        int rc;
        if (nheld == 0) {
            rc = shmring_claim_wait(c, &held[0], -1);
        } else {
            /* Never sleep while holding claims: the producer may wait for one. */
            rc = shmring_claim(c, &held[nheld]);
            if (rc == -EAGAIN) {
                stop = zc_release_all(z, c, held, &nheld);
                continue;
            }
        }
        if (rc != 0) {
            z->bad++;
            z->last_rc = rc;
            break;
        }
        /* A stop message ends the claiming at once, so that each consumer
         * takes exactly one of them. */
        uint64_t id = 0;
        if (held[nheld].len == 8)
            memcpy(&id, held[nheld].data, 8);
        nheld++;
        if (id == STOP_ID || nheld == MAX_HELD || h_rand(&z->seed) % 2 == 0)
            stop = zc_release_all(z, c, held, &nheld);
    }
    zc_release_all(z, c, held, &nheld);
}

static void zc_pop_loop(struct zc_consumer *z, shmring_t *c)
{
    unsigned char buf[SLOT_BYTES];
    for (;;) {
        ssize_t len = shmring_pop_wait(c, buf, sizeof buf, -1);
        if (len < 0) {
            z->bad++;
            z->last_rc = (long)len;
            break;
        }
        if (zc_take(z, buf, (size_t)len))
            break;
    }
}

static void *zc_consumer_main(void *arg)
{
    struct zc_consumer *z = arg;
    shmring_t *c = NULL;
    int rc = shmring_open(z->name, SHMRING_CONSUMER, &c);
    if (rc < 0) {
        z->bad++;
        z->last_rc = rc;
        return NULL;
    }
    if (z->claims)
        zc_claim_loop(z, c);
    else
        zc_pop_loop(z, c);
    shmring_close(c);
    return NULL;
}

Test(zerocopy, stress_claim_and_pop_consumers)
{
    const char *name = test_name("zstress");
    shmring_t *p = test_make(name, 64, SLOT_BYTES, 0);
    uint64_t n = h_count(1000000);
    uint32_t *seen = calloc(n, sizeof *seen);
    cr_assert_not_null(seen);
    struct zc_consumer z[NCONS];
    pthread_t t[NCONS];
    h_arm_deadline(60);
    for (int i = 0; i < NCONS; i++) {
        z[i] = (struct zc_consumer){
            .name = name, .claims = i < 2, .seen = seen, .n = n, .seed = 77u + (uint64_t)i};
        cr_assert_eq(pthread_create(&t[i], NULL, zc_consumer_main, &z[i]), 0);
    }
    uint64_t seed = 0x31415926ull;
    for (uint64_t id = 0; id < n; id++) {
        size_t len = 16 + h_rand(&seed) % (SLOT_BYTES - 15);
        void *payload;
        int rc = shmring_reserve_wait(p, SLOT_BYTES, &payload, -1);
        cr_assert_eq(rc, 0, "reserve_wait: %d", rc);
        test_fill(payload, len, id);
        cr_assert_eq(shmring_commit(p, len), 0);
    }
    uint64_t stop = STOP_ID;
    for (int i = 0; i < NCONS; i++)
        cr_assert_eq(shmring_push_wait(p, &stop, sizeof stop, -1), 0);
    uint64_t total = 0;
    for (int i = 0; i < NCONS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(z[i].bad, 0, "consumer %d: %llu bad, last rc %ld", i,
                     (unsigned long long)z[i].bad, z[i].last_rc);
        total += z[i].got;
        cr_assert_gt(z[i].got, 0, "consumer %d got nothing", i);
    }
    h_disarm_deadline();
    uint64_t twice, never;
    h_tally(seen, n, &twice, &never);
    cr_assert_eq(twice, 0, "%llu ids delivered twice", (unsigned long long)twice);
    cr_assert_eq(never, 0, "%llu ids lost", (unsigned long long)never);
    cr_assert_eq(total, n);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, n + NCONS);
    cr_assert_eq(st.popped, n + NCONS);
    cr_assert_eq(st.abandoned, 0);
    free(seen);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- A large message between processes, without a copy on either side -- */

#define BIG (1u << 20)

Test(zerocopy, one_mib_between_processes)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("zbig");
    shmring_t *p = test_make(name, 2, BIG, 0);
    h_arm_deadline(60);
    enum { ROUNDS = 4 };
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(h_sanitized() ? 360 : 60);
        shmring_t *c = NULL;
        if (shmring_open(name, SHMRING_CONSUMER, &c) != 0)
            _exit(2);
        for (uint64_t i = 0; i < ROUNDS; i++) {
            shmring_msg_t m;
            int rc = shmring_claim_wait(c, &m, 10000000000LL);
            if (rc != 0)
                _exit(3);
            uint64_t id;
            if (m.len != BIG - i || !test_check(m.data, m.len, &id) || id != 1000 + i)
                _exit(4);
            if (shmring_release(c, &m) != 0)
                _exit(5);
        }
        shmring_close(c);
        _exit(0);
    }
    for (uint64_t i = 0; i < ROUNDS; i++) {
        void *payload;
        int rc = shmring_reserve_wait(p, BIG, &payload, 10000000000LL);
        cr_assert_eq(rc, 0, "reserve_wait: %d", rc);
        test_fill(payload, BIG - i, 1000 + i);
        cr_assert_eq(shmring_commit(p, BIG - i), 0);
    }
    int status = test_wait_child(pid);
    h_disarm_deadline();
    cr_assert_eq(status, 0, "consumer exit status %d", status);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.popped, ROUNDS);
    cr_assert_eq(st.bytes_popped, (uint64_t)ROUNDS * BIG - (0 + 1 + 2 + 3));
    shmring_close(p);
    shmring_unlink(name);
}
