/* Batches: push_batch and pop_batch limits, sizes, errors, and a mixed stress. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "harness.h"

/* n messages with ids first.. and lengths 16 + (id * 7) % (max - 15). */
struct msgs {
    unsigned char buf[128][128];
    struct iovec iov[128];
};

static size_t len_of(uint64_t id, size_t max)
{
    return 16 + (size_t)(id * 7) % (max - 15);
}

static void make_msgs(struct msgs *m, size_t n, uint64_t first, size_t max)
{
    cr_assert_leq(n, 128);
    for (size_t i = 0; i < n; i++) {
        size_t len = len_of(first + i, max);
        test_fill(m->buf[i], len, first + i);
        m->iov[i] = (struct iovec){.iov_base = m->buf[i], .iov_len = len};
    }
}

static void out_iov(struct msgs *m, size_t n, size_t cap)
{
    for (size_t i = 0; i < n; i++)
        m->iov[i] = (struct iovec){.iov_base = m->buf[i], .iov_len = cap};
}

Test(batch, push_batch_pushes_in_order)
{
    const char *name = test_name("bpush");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static struct msgs in;
    make_msgs(&in, 5, 0, 64);
    cr_assert_eq(shmring_push_batch(p, in.iov, 5), 5);
    unsigned char buf[64];
    for (uint64_t i = 0; i < 5; i++) {
        ssize_t n = shmring_pop(c, buf, sizeof buf);
        cr_assert_eq(n, (ssize_t)len_of(i, 64));
        test_expect_id(buf, n, i);
    }
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 5);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(batch, push_batch_stops_when_full)
{
    const char *name = test_name("bfull");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static struct msgs in;
    make_msgs(&in, 3, 0, 64);
    cr_assert_eq(shmring_push_batch(p, in.iov, 3), 3);
    make_msgs(&in, 10, 3, 64);
    cr_assert_eq(shmring_push_batch(p, in.iov, 10), 5, "only 5 fit");
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    uint64_t full = st.full_events;
    cr_assert_eq(shmring_push_batch(p, in.iov + 5, 5), -EAGAIN, "none fit");
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 8);
    cr_assert_eq(st.full_events, full + 1);
    unsigned char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 1);
    /* The rest of the batch goes on where it stopped. */
    cr_assert_eq(shmring_push_batch(p, in.iov + 5, 5), 2);
    for (uint64_t i = 2; i < 10; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(batch, push_batch_too_big_pushes_nothing)
{
    const char *name = test_name("bbig");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static struct msgs in;
    make_msgs(&in, 4, 0, 64);
    in.iov[2].iov_len = 65;
    cr_assert_eq(shmring_push_batch(p, in.iov, 4), -EMSGSIZE);
    in.iov[2].iov_len = 64;
    in.iov[3].iov_len = 1000;
    cr_assert_eq(shmring_push_batch(p, in.iov, 4), -EMSGSIZE);
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "something was pushed");
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 0);
    cr_assert_eq(st.bytes_pushed, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(batch, argument_errors)
{
    const char *name = test_name("barg");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static struct msgs in;
    make_msgs(&in, 2, 0, 64);
    cr_assert_eq(shmring_push_batch(p, in.iov, 0), 0);
    cr_assert_eq(shmring_pop_batch(c, in.iov, 0), 0);
    cr_assert_eq(shmring_push_batch(p, NULL, 0), 0);
    cr_assert_eq(shmring_pop_batch(c, NULL, 0), 0);
    cr_assert_eq(shmring_push_batch(p, NULL, 1), -EINVAL);
    cr_assert_eq(shmring_pop_batch(c, NULL, 3), -EINVAL);
    cr_assert_eq(shmring_push_batch(NULL, in.iov, 1), -EINVAL);
    cr_assert_eq(shmring_pop_batch(NULL, in.iov, 1), -EINVAL);
    cr_assert_eq(shmring_push_batch(c, in.iov, 1), -EPERM);
    cr_assert_eq(shmring_pop_batch(p, in.iov, 1), -EPERM);
    struct iovec bad[2] = {in.iov[0], {.iov_base = NULL, .iov_len = 4}};
    cr_assert_eq(shmring_push_batch(p, bad, 2), -EINVAL);
    /* A zero-length message needs no buffer. */
    struct iovec empty = {.iov_base = NULL, .iov_len = 0};
    cr_assert_eq(shmring_push_batch(p, &empty, 1), 1);
    cr_assert_eq(shmring_pop_batch(c, bad, 2), -EINVAL);
    struct iovec out = {.iov_base = NULL, .iov_len = 0};
    cr_assert_eq(shmring_pop_batch(c, &out, 1), 1);
    cr_assert_eq(out.iov_len, 0);
    /* Empty ring, and the counts of n = 0 changed nothing. */
    out_iov(&in, 2, 64);
    cr_assert_eq(shmring_pop_batch(c, in.iov, 2), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 1);
    cr_assert_eq(st.popped, 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(batch, pop_batch_in_order_with_lengths)
{
    const char *name = test_name("bpop");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static struct msgs in, out;
    make_msgs(&in, 6, 0, 64);
    cr_assert_eq(shmring_push_batch(p, in.iov, 6), 6);
    out_iov(&out, 4, 64);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 4), 4);
    for (uint64_t i = 0; i < 4; i++) {
        cr_assert_eq(out.iov[i].iov_len, len_of(i, 64));
        test_expect_id(out.buf[i], (ssize_t)out.iov[i].iov_len, i);
    }
    out_iov(&out, 4, 64);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 4), 2, "only 2 left");
    for (uint64_t i = 0; i < 2; i++)
        test_expect_id(out.buf[i], (ssize_t)out.iov[i].iov_len, 4 + i);
    cr_assert_eq(out.iov[2].iov_len, 64, "an iov past the batch was changed");
    out_iov(&out, 4, 64);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 4), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.popped, 6);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(batch, pop_batch_more_than_a_batch)
{
    const char *name = test_name("blong");
    shmring_t *p = test_make(name, 128, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static struct msgs in, out;
    make_msgs(&in, 100, 0, 64);
    cr_assert_eq(shmring_push_batch(p, in.iov, 100), 100);
    uint64_t next = 0;
    while (next < 100) {
        out_iov(&out, 100, 64);
        ssize_t k = shmring_pop_batch(c, out.iov, 100);
        cr_assert_gt(k, 0, "pop_batch: %zd after %llu", k, (unsigned long long)next);
        cr_assert_leq(k, 100 - (ssize_t)next);
        for (ssize_t i = 0; i < k; i++, next++)
            test_expect_id(out.buf[i], (ssize_t)out.iov[i].iov_len, next);
    }
    cr_assert_eq(shmring_pop_batch(c, out.iov, 100), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(batch, message_too_big_for_its_iov_ends_the_batch)
{
    const char *name = test_name("bfit");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char m[4][64];
    size_t lens[4] = {20, 20, 50, 20};
    struct iovec in[4];
    for (int i = 0; i < 4; i++) {
        test_fill(m[i], lens[i], (uint64_t)i);
        in[i] = (struct iovec){.iov_base = m[i], .iov_len = lens[i]};
    }
    cr_assert_eq(shmring_push_batch(p, in, 4), 4);
    static struct msgs out;
    out_iov(&out, 4, 64);
    out.iov[2].iov_len = 30;
    cr_assert_eq(shmring_pop_batch(c, out.iov, 4), 2, "the batch ends before message 2");
    test_expect_id(out.buf[0], (ssize_t)out.iov[0].iov_len, 0);
    test_expect_id(out.buf[1], (ssize_t)out.iov[1].iov_len, 1);
    cr_assert_eq(out.iov[2].iov_len, 30, "the iov of a message not taken was changed");
    /* First in the batch: -EMSGSIZE, nothing taken. */
    out_iov(&out, 4, 64);
    out.iov[0].iov_len = 49;
    cr_assert_eq(shmring_pop_batch(c, out.iov, 4), -EMSGSIZE);
    cr_assert_eq(out.iov[0].iov_len, 49);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 1), -EMSGSIZE);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.popped, 2);
    out_iov(&out, 4, 64);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 4), 2);
    test_expect_id(out.buf[0], (ssize_t)out.iov[0].iov_len, 2);
    cr_assert_eq(out.iov[0].iov_len, 50);
    test_expect_id(out.buf[1], (ssize_t)out.iov[1].iov_len, 3);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(batch, pop_batch_end_of_stream)
{
    const char *name = test_name("beos");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static struct msgs in, out;
    make_msgs(&in, 3, 0, 64);
    cr_assert_eq(shmring_push_batch(p, in.iov, 3), 3);
    shmring_close(p);
    out_iov(&out, 2, 64);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 2), 2);
    out_iov(&out, 2, 64);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 2), 1);
    test_expect_id(out.buf[0], (ssize_t)out.iov[0].iov_len, 2);
    out_iov(&out, 2, 64);
    cr_assert_eq(shmring_pop_batch(c, out.iov, 2), -EPIPE);
    shmring_close(c);
    shmring_unlink(name);
}

/* ---- Stress: batch producer, batch and single consumers ----------------- */

#define NCONS 3
#define MAXB  16

struct bconsumer {
    const char *name;
    int batch; /* 1: pop_batch, 0: pop_wait */
    uint32_t *seen;
    uint64_t n, got, bad, batches, seed;
    long last_rc;
};

static void take(struct bconsumer *b, const void *data, size_t len)
{
    uint64_t id;
    if (!test_check(data, len, &id)) {
        b->bad++;
        return;
    }
    h_mark(b->seen, b->n, id, &b->bad);
    b->got++;
}

static void *bconsumer_main(void *arg)
{
    struct bconsumer *b = arg;
    shmring_t *c = NULL;
    int rc = shmring_open(b->name, SHMRING_CONSUMER, &c);
    if (rc < 0) {
        b->bad++;
        b->last_rc = rc;
        return NULL;
    }
    unsigned char buf[MAXB][64];
    struct iovec iov[MAXB];
    for (;;) {
        ssize_t k;
        if (b->batch) {
            size_t want = 1 + h_rand(&b->seed) % MAXB;
            for (size_t i = 0; i < want; i++)
                iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = sizeof buf[i]};
            k = shmring_pop_batch(c, iov, want);
            if (k == -EAGAIN) {
                sched_yield();
                continue;
            }
            if (k > (ssize_t)want) {
                b->bad++;
                break;
            }
            for (ssize_t i = 0; i < k; i++)
                take(b, buf[i], iov[i].iov_len);
            if (k > 0)
                b->batches++;
        } else {
            k = shmring_pop_wait(c, buf[0], sizeof buf[0], -1);
            if (k >= 0)
                take(b, buf[0], (size_t)k);
        }
        if (k == -EPIPE)
            break;
        if (k < 0) {
            b->bad++;
            b->last_rc = (long)k;
            break;
        }
    }
    shmring_close(c);
    return NULL;
}

Test(batch, stress_batch_producer_mixed_consumers)
{
    const char *name = test_name("bstress");
    shmring_t *p = test_make(name, 256, 64, 0);
    uint64_t n = h_count(1000000);
    uint32_t *seen = calloc(n, sizeof *seen);
    cr_assert_not_null(seen);
    struct bconsumer b[NCONS];
    pthread_t t[NCONS];
    h_arm_deadline(60);
    for (int i = 0; i < NCONS; i++) {
        b[i] = (struct bconsumer){
            .name = name, .batch = i < 2, .seen = seen, .n = n, .seed = 99u + (uint64_t)i};
        cr_assert_eq(pthread_create(&t[i], NULL, bconsumer_main, &b[i]), 0);
    }
    static unsigned char msg[MAXB][64];
    struct iovec iov[MAXB];
    uint64_t seed = 0x2718281828ull, id = 0, partial = 0;
    while (id < n) {
        size_t want = 1 + h_rand(&seed) % MAXB;
        if (want > n - id)
            want = (size_t)(n - id);
        for (size_t i = 0; i < want; i++) {
            size_t len = 16 + h_rand(&seed) % 49;
            test_fill(msg[i], len, id + i);
            iov[i] = (struct iovec){.iov_base = msg[i], .iov_len = len};
        }
        size_t done = 0;
        while (done < want) {
            ssize_t k = shmring_push_batch(p, iov + done, want - done);
            if (k == -EAGAIN) {
                sched_yield();
                continue;
            }
            cr_assert_gt(k, 0, "push_batch: %zd", k);
            cr_assert_leq((size_t)k, want - done);
            if ((size_t)k < want - done)
                partial++;
            done += (size_t)k;
        }
        id += want;
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, n);
    shmring_close(p); /* end of stream: consumers drain, then get -EPIPE */
    uint64_t total = 0;
    for (int i = 0; i < NCONS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(b[i].bad, 0, "consumer %d: %llu bad, last rc %ld", i,
                     (unsigned long long)b[i].bad, b[i].last_rc);
        total += b[i].got;
    }
    h_disarm_deadline();
    cr_log_info("partial pushes %llu, batches %llu + %llu", (unsigned long long)partial,
                (unsigned long long)b[0].batches, (unsigned long long)b[1].batches);
    uint64_t twice, never;
    h_tally(seen, n, &twice, &never);
    cr_assert_eq(twice, 0, "%llu ids delivered twice", (unsigned long long)twice);
    cr_assert_eq(never, 0, "%llu ids lost", (unsigned long long)never);
    cr_assert_eq(total, n);
    free(seen);
    shmring_unlink(name);
}
