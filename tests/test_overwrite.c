/* Overwrite mode: the producer drops the oldest messages, counted; readers never see torn data. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "harness.h"

Test(overwrite, keeps_the_newest_and_counts_the_rest)
{
    const char *name = test_name("ow");
    const uint32_t slots = 8;
    const uint64_t k = 13;
    shmring_t *p = test_make(name, slots, 64, SHMRING_OVERWRITE);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t id = 0; id < slots + k; id++)
        test_push_id(p, id, 16 + id % 40);
    shmring_t *late = test_open_as(name, SHMRING_CONSUMER);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.dropped, k);
    cr_assert_eq(st.pushed, slots + k);
    cr_assert_eq(st.count, slots);
    cr_assert_eq(st.full_events, 0, "overwrite mode never reports a full ring");
    cr_assert(st.flags & SHMRING_OVERWRITE);
    cr_assert_eq(shmring_missed(c), k);
    cr_assert_eq(shmring_missed(c), 0);
    cr_assert_eq(shmring_missed(late), 0, "nothing was dropped since this handle opened");
    cr_assert_eq(shmring_missed(NULL), 0);
    unsigned char buf[64];
    for (uint64_t id = k; id < slots + k; id++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.popped, slots);
    cr_assert_eq(st.dropped + st.popped, st.pushed);
    /* More drops later are reported to every consumer handle. */
    for (uint64_t id = 100; id < 100 + slots + 2; id++)
        test_push_id(p, id, 32);
    cr_assert_eq(shmring_missed(c), 2);
    cr_assert_eq(shmring_missed(late), 2);
    shmring_close(late);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(overwrite, every_push_variant_succeeds_when_full)
{
    const char *name = test_name("owv");
    const uint32_t slots = 4;
    shmring_t *p = test_make(name, slots, 64, SHMRING_OVERWRITE);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    uint64_t id = 0;
    for (; id < slots; id++)
        test_push_id(p, id, 32);
    unsigned char m[6][64];
    struct iovec iov[6];
    for (int i = 0; i < 6; i++) {
        test_fill(m[i], 40, id + (uint64_t)i);
        iov[i] = (struct iovec){.iov_base = m[i], .iov_len = 40};
    }
    cr_assert_eq(shmring_push_batch(p, iov, 6), 6, "push_batch on a full overwrite ring");
    id += 6;
    void *payload;
    cr_assert_eq(shmring_reserve(p, 48, &payload), 0, "reserve on a full overwrite ring");
    test_fill(payload, 48, id++);
    cr_assert_eq(shmring_commit(p, 48), 0);
    test_fill(m[0], 40, id);
    cr_assert_eq(shmring_push_wait(p, m[0], 40, 0), 0);
    cr_assert_eq(shmring_push_wait(p, m[0], 40, -1), 0, "push_wait must not wait");
    test_fill(m[0], 40, id + 1);
    cr_assert_eq(shmring_push(p, m[0], 40), 0);
    id += 2;
    unsigned char buf[64];
    /* The last `slots` pushes: ids id-3, id-2 (pushed twice), id-1. */
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id - 3);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id - 2);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id - 2);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id - 1);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, slots + 6 + 1 + 3);
    cr_assert_eq(st.dropped, st.pushed - slots);
    cr_assert_eq(shmring_missed(c), st.dropped);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(overwrite, release_tells_intact_from_overwritten)
{
    const char *name = test_name("owc");
    const uint32_t slots = 4;
    shmring_t *p = test_make(name, slots, 64, SHMRING_OVERWRITE);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    test_push_id(p, 0, 40);
    test_push_id(p, 1, 40);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), 0);
    test_expect_id(m.data, (ssize_t)m.len, 0);
    cr_assert_eq(shmring_release(c, &m), 0, "nothing overwrote the slot");
    cr_assert_eq(shmring_release(c, &m), -EINVAL, "release twice");

    cr_assert_eq(shmring_claim(c, &m), 0);
    unsigned char copy[64];
    memcpy(copy, m.data, m.len);
    test_expect_id(copy, (ssize_t)m.len, 1);
    /* Claims do not hold the producer back in overwrite mode. */
    for (uint64_t id = 2; id < 2 + slots + 1; id++)
        test_push_id(p, id, 40);
    cr_assert_eq(shmring_release(c, &m), -ESTALE, "the claimed slot was overwritten");
    cr_assert_eq(shmring_release(c, &m), -EINVAL, "a stale claim is released all the same");
    unsigned char buf[64];
    for (uint64_t id = 3; id < 2 + slots + 1; id++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.dropped, 1);
    cr_assert_eq(st.popped, 2 + slots);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Stress: a producer that never waits, consumers that must never see a
 * torn message ----------------------------------------------------------- */

#define NCONS 3

struct ow_consumer {
    const char *name;
    int claims;
    uint32_t *seen;
    uint64_t n;
    uint64_t got, stale, bad, order, missed;
    uint64_t last_id;
    int have_last;
    long last_rc;
};

static void ow_take(struct ow_consumer *o, const void *data, size_t len)
{
    uint64_t id;
    if (!test_check(data, len, &id)) {
        o->bad++; /* a torn message */
        return;
    }
    if (o->have_last && id <= o->last_id)
        o->order++;
    o->last_id = id;
    o->have_last = 1;
    h_mark(o->seen, o->n, id, &o->bad);
    o->got++;
}

static void *ow_consumer_main(void *arg)
{
    struct ow_consumer *o = arg;
    shmring_t *c = NULL;
    int rc = shmring_open(o->name, SHMRING_CONSUMER, &c);
    if (rc < 0) {
        o->bad++;
        o->last_rc = rc;
        return NULL;
    }
    unsigned char buf[64];
    for (;;) {
        if (o->claims) {
            shmring_msg_t m;
            rc = shmring_claim_wait(c, &m, -1);
            if (rc != 0)
                break;
            /* Copy out at once; the copy counts only if release says the
             * slot stayed intact. */
            size_t len = (size_t)shmring_msg_copy(&m, buf, sizeof buf);
            rc = shmring_release(c, &m);
            if (rc == -ESTALE) {
                o->stale++;
                continue;
            }
            if (rc != 0 || m.len > sizeof buf) {
                o->bad++;
                o->last_rc = rc;
                continue;
            }
            ow_take(o, buf, len);
        } else {
            ssize_t len = shmring_pop_wait(c, buf, sizeof buf, -1);
            if (len < 0) {
                rc = (int)len;
                break;
            }
            ow_take(o, buf, (size_t)len);
        }
    }
    if (rc != -EPIPE) {
        o->bad++;
        o->last_rc = rc;
    }
    o->missed = shmring_missed(c);
    shmring_close(c);
    return NULL;
}

static void overwrite_stress(int claims)
{
    const char *name = test_name(claims ? "owsc" : "ows");
    shmring_t *p = test_make(name, 32, 64, SHMRING_OVERWRITE);
    uint64_t n = h_count(1000000);
    uint32_t *seen = calloc(n, sizeof *seen);
    cr_assert_not_null(seen);
    struct ow_consumer o[NCONS];
    pthread_t t[NCONS];
    h_arm_deadline(60);
    for (int i = 0; i < NCONS; i++) {
        o[i] = (struct ow_consumer){.name = name, .claims = claims, .seen = seen, .n = n};
        cr_assert_eq(pthread_create(&t[i], NULL, ow_consumer_main, &o[i]), 0);
    }
    unsigned char buf[64];
    uint64_t seed = 0xfeedfaceull;
    for (uint64_t id = 0; id < n; id++) {
        size_t len = 16 + h_rand(&seed) % 49;
        test_fill(buf, len, id);
        int rc = shmring_push(p, buf, len);
        cr_assert_eq(rc, 0, "push %llu in overwrite mode: %d", (unsigned long long)id, rc);
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    uint64_t in_ring_at_close = st.count;
    shmring_close(p); /* end of stream: consumers drain, then get -EPIPE */
    uint64_t got = 0, stale = 0;
    for (int i = 0; i < NCONS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(o[i].bad, 0, "consumer %d: %llu torn or bad, last rc %ld", i,
                     (unsigned long long)o[i].bad, o[i].last_rc);
        cr_assert_eq(o[i].order, 0, "consumer %d: %llu ids out of order", i,
                     (unsigned long long)o[i].order);
        got += o[i].got;
        stale += o[i].stale;
    }
    h_disarm_deadline();
    uint64_t twice, never;
    h_tally(seen, n, &twice, &never);
    cr_assert_eq(twice, 0, "%llu ids delivered twice", (unsigned long long)twice);

    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    cr_assert_eq(shmring_stats(obs, &st), 0);
    cr_log_info("pushed %llu popped %llu dropped %llu stale %llu, %llu in the ring at close",
                (unsigned long long)st.pushed, (unsigned long long)st.popped,
                (unsigned long long)st.dropped, (unsigned long long)stale,
                (unsigned long long)in_ring_at_close);
    cr_assert_eq(st.pushed, n);
    cr_assert_eq(st.count, 0, "drained");
    cr_assert_eq(st.popped, got + stale);
    cr_assert_eq(st.dropped + st.popped, st.pushed);
    cr_assert_eq(never, st.dropped + stale);
    for (int i = 0; i < NCONS; i++)
        cr_assert_leq(o[i].missed, st.dropped);
    shmring_close(obs);
    free(seen);
    shmring_unlink(name);
}

Test(overwrite, stress_pop_never_torn)
{
    overwrite_stress(0);
}

Test(overwrite, stress_claim_copy_then_release)
{
    overwrite_stress(1);
}
