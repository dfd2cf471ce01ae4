/*
 * Broadcast subscribers (SHMRING_SUBSCRIBER): every subscriber sees every
 * message pushed after it attached, in order, beside competing consumers;
 * back-pressure in the normal mode, lapping and shmring_missed in overwrite
 * mode; dead subscribers stop holding the producer back.
 *
 * Multi-party tests run their readers as processes, or as threads when the
 * suite runs on the heap backend (SHMRING_FORCE_HEAP).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

#define SLOT_SIZE   128u
#define MAX_READERS 8

/* Payload lengths vary over 16..SLOT_SIZE. */
static size_t len_of(uint64_t id)
{
    return 16 + (size_t)((id * 7919u) % (SLOT_SIZE - 15));
}

/* Messages of a long run: 1,000,000 in release builds, fewer under sanitizers. */
static uint64_t long_count(void)
{
    uint64_t n = h_count(1000000);
    return h_sanitized() ? n / 4 : n;
}

/* What one reader saw. */
struct reader_result {
    uint64_t received;
    uint64_t torn;     /* failed test_check, or a wrong length for its id */
    uint64_t disorder; /* lossless: an id other than the one expected; overwrite: not above */
    uint64_t gaps;     /* overwrite: ids skipped between two received */
    uint64_t missed;   /* sum of shmring_missed */
    int end;           /* how the stream ended: -EPIPE expected */
    int opened;        /* 1, or the negative errno of the open */
};

/* Shared between the test and its readers (shared memory across fork()). */
struct run {
    char name[64];
    uint64_t n;
    int ready;
    int overwrite;
    int slow; /* readers nap now and then (to be lapped or to hold the producer back) */
    struct reader_result res[MAX_READERS];
    uint32_t seen[]; /* consumers: deliveries per id */
};

enum read_mode { READ_POP, READ_POP_WAIT, READ_BATCH, READ_CLAIM, READ_MODES };

/* Check one message of a subscriber; `next` is the id it expects. */
static void sub_got(struct run *run, struct reader_result *res, const void *buf, size_t len,
                    uint64_t *next)
{
    uint64_t id;
    res->received++;
    if (!test_check(buf, len, &id) || len != len_of(id)) {
        res->torn++;
        return;
    }
    if (run->overwrite) {
        if (id < *next)
            res->disorder++;
        else
            res->gaps += id - *next;
    } else if (id != *next) {
        res->disorder++;
    }
    *next = id + 1;
}

/* One read of a subscriber in `mode`: messages read (>= 0) or a negative errno. */
static ssize_t sub_read(shmring_t *s, enum read_mode mode, struct run *run,
                        struct reader_result *res, uint64_t *next)
{
    unsigned char buf[4][SLOT_SIZE];
    switch (mode) {
    case READ_POP: {
        ssize_t len = shmring_pop(s, buf[0], sizeof buf[0]);
        if (len < 0)
            return len;
        sub_got(run, res, buf[0], (size_t)len, next);
        return 1;
    }
    case READ_POP_WAIT: {
        ssize_t len = shmring_pop_wait(s, buf[0], sizeof buf[0], -1);
        if (len < 0)
            return len;
        sub_got(run, res, buf[0], (size_t)len, next);
        return 1;
    }
    case READ_BATCH: {
        struct iovec iov[4];
        for (int i = 0; i < 4; i++)
            iov[i] = (struct iovec){buf[i], sizeof buf[i]};
        ssize_t k = shmring_pop_batch(s, iov, 4);
        for (ssize_t i = 0; i < k; i++)
            sub_got(run, res, buf[i], iov[i].iov_len, next);
        return k;
    }
    case READ_CLAIM: {
        shmring_msg_t m;
        int rc = shmring_claim_wait(s, &m, -1);
        if (rc < 0)
            return rc;
        ssize_t len = shmring_msg_copy(&m, buf[0], sizeof buf[0]);
        rc = shmring_release(s, &m);
        if (rc == -ESTALE) {
            res->missed++; /* overwrite: torn while held; not delivered */
            return 0;
        }
        if (rc < 0)
            return rc;
        sub_got(run, res, buf[0], (size_t)len, next);
        return 1;
    }
    default:
        return -EINVAL;
    }
}

/* A subscriber until the end of the stream. */
static void subscriber_body(struct run *run, unsigned i, enum read_mode mode, uint64_t seed)
{
    struct reader_result *res = &run->res[i];
    shmring_t *s = NULL;
    int rc = shmring_open(run->name, SHMRING_SUBSCRIBER, &s);
    res->opened = rc == 0 ? 1 : rc;
    __atomic_fetch_add(&run->ready, 1, __ATOMIC_RELEASE);
    if (rc < 0)
        return;
    uint64_t next = 0;
    for (uint64_t k = 0;; k++) {
        ssize_t got = sub_read(s, mode, run, res, &next);
        res->missed += shmring_missed(s);
        if (got == -EAGAIN) {
            sched_yield();
            continue;
        }
        if (got < 0) {
            res->end = (int)got;
            break;
        }
        if (run->slow && h_rand(&seed) % 512 == 0)
            h_sleep_us(200);
    }
    res->missed += shmring_missed(s);
    shmring_close(s);
}

/* A competing consumer until the end of the stream. */
static void consumer_body(struct run *run, unsigned i)
{
    struct reader_result *res = &run->res[i];
    shmring_t *c = NULL;
    int rc = shmring_open(run->name, SHMRING_CONSUMER, &c);
    res->opened = rc == 0 ? 1 : rc;
    __atomic_fetch_add(&run->ready, 1, __ATOMIC_RELEASE);
    if (rc < 0)
        return;
    unsigned char buf[SLOT_SIZE];
    uint64_t last = 0, foreign = 0;
    int any = 0;
    for (;;) {
        ssize_t len = shmring_pop_wait(c, buf, sizeof buf, -1);
        if (len < 0) {
            res->end = (int)len;
            break;
        }
        res->received++;
        uint64_t id;
        if (!test_check(buf, (size_t)len, &id) || (size_t)len != len_of(id)) {
            res->torn++;
            continue;
        }
        if (any && id <= last)
            res->disorder++;
        last = id;
        any = 1;
        h_mark(run->seen, run->n, id, &foreign);
    }
    res->torn += foreign;
    shmring_close(c);
}

/* ---- Readers as processes or threads ------------------------------------- */

struct reader {
    struct run *run;
    unsigned i;
    int consumer;
    enum read_mode mode;
    pid_t pid;
    pthread_t th;
};

static void reader_main(struct reader *rd)
{
    if (rd->consumer)
        consumer_body(rd->run, rd->i);
    else
        subscriber_body(rd->run, rd->i, rd->mode, 0x9e3779b97f4a7c15ull * (rd->i + 1));
}

static void *reader_thread(void *p)
{
    reader_main(p);
    return NULL;
}

static struct run *run_new(const char *tag, uint64_t n, int overwrite)
{
    size_t size = sizeof(struct run) + n * sizeof(uint32_t);
    struct run *run = test_shared_alloc(size);
    memset(run, 0, size);
    snprintf(run->name, sizeof run->name, "%s", test_name(tag));
    run->n = n;
    run->overwrite = overwrite;
    return run;
}

static void run_free(struct run *run)
{
    test_shared_free(run, sizeof(struct run) + run->n * sizeof(uint32_t));
}

static void reader_start(struct reader *rd)
{
    if (test_heap_forced()) {
        cr_assert_eq(pthread_create(&rd->th, NULL, reader_thread, rd), 0);
        return;
    }
    rd->pid = fork();
    cr_assert_geq(rd->pid, 0);
    if (rd->pid == 0) {
        h_arm_deadline(120);
        reader_main(rd);
        _exit(0);
    }
}

/* 0 if the reader ended normally (128 + signal for a killed process). */
static int reader_join(struct reader *rd)
{
    if (test_heap_forced())
        return pthread_join(rd->th, NULL);
    return test_wait_child(rd->pid);
}

static void wait_ready(struct run *run, int n)
{
    while (__atomic_load_n(&run->ready, __ATOMIC_ACQUIRE) < n)
        h_sleep_us(1000);
}

/* Push ids 0..n-1 (waiting for room); kill victim[k] when id reaches at[k]. */
static int produce(shmring_t *p, uint64_t n, const pid_t *victim, const uint64_t *at,
                   unsigned victims)
{
    unsigned char buf[SLOT_SIZE];
    for (uint64_t id = 0; id < n; id++) {
        for (unsigned k = 0; k < victims; k++)
            if (id == at[k])
                kill(victim[k], SIGKILL);
        size_t len = len_of(id);
        test_fill(buf, len, id);
        int rc = shmring_push_wait(p, buf, len, -1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void check_subscriber(const struct run *run, unsigned i)
{
    const struct reader_result *r = &run->res[i];
    cr_log_info("subscriber %u: %llu messages, %llu missed", i, (unsigned long long)r->received,
                (unsigned long long)r->missed);
    cr_assert_eq(r->opened, 1, "subscriber %u could not open: %s", i, shmring_strerror(r->opened));
    cr_assert_eq(r->torn, 0, "subscriber %u: %llu torn", i, (unsigned long long)r->torn);
    cr_assert_eq(r->disorder, 0, "subscriber %u: %llu out of order", i,
                 (unsigned long long)r->disorder);
    cr_assert_eq(r->end, -EPIPE, "subscriber %u ended with %s", i, shmring_strerror(r->end));
    if (run->overwrite) {
        cr_assert_eq(r->received + r->missed, run->n, "subscriber %u: %llu + %llu missed != %llu",
                     i, (unsigned long long)r->received, (unsigned long long)r->missed,
                     (unsigned long long)run->n);
    } else {
        cr_assert_eq(r->received, run->n, "subscriber %u: %llu of %llu", i,
                     (unsigned long long)r->received, (unsigned long long)run->n);
        cr_assert_eq(r->missed, 0);
    }
}

/* ---- 1 producer, 4 subscribers --------------------------------------------- */

Test(subscriber, four_subscribers_get_every_message_in_order, .timeout = 600)
{
    h_arm_deadline(120);
    struct run *run = run_new("fan4", long_count(), 0);
    shmring_t *p = test_make(run->name, 1024, SLOT_SIZE, SHMRING_PRODUCER);
    struct reader rd[4];
    for (unsigned i = 0; i < 4; i++) {
        rd[i] = (struct reader){.run = run, .i = i, .mode = (enum read_mode)(i % READ_MODES)};
        reader_start(&rd[i]);
    }
    wait_ready(run, 4);
    uint64_t t0 = h_now_ns();
    int produced = produce(p, run->n, NULL, NULL, 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    shmring_close(p);
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(reader_join(&rd[i]), 0, "reader %u", i);
    cr_log_info("%llu messages to 4 subscribers in %.2f s", (unsigned long long)run->n,
                (double)(h_now_ns() - t0) / 1e9);
    h_disarm_deadline();
    cr_assert_eq(produced, 0, "producer: %s", shmring_strerror(produced));
    for (unsigned i = 0; i < 4; i++)
        check_subscriber(run, i);
    cr_assert_eq(st.pushed, run->n);
    cr_assert_eq(st.popped, 0);
    cr_assert_eq(st.subscribers_dead, 0);
    shmring_unlink(run->name);
    run_free(run);
}

/* ---- Consumers and subscribers on one ring ------------------------------- */

Test(subscriber, consumers_share_while_subscribers_see_all, .timeout = 600)
{
    h_arm_deadline(120);
    struct run *run = run_new("mixed", long_count() / 2, 0);
    shmring_t *p = test_make(run->name, 512, SLOT_SIZE, SHMRING_PRODUCER);
    struct reader rd[4];
    for (unsigned i = 0; i < 4; i++) {
        rd[i] = (struct reader){.run = run, .i = i, .consumer = i >= 2, .mode = READ_POP_WAIT};
        if (i == 1)
            rd[i].mode = READ_CLAIM;
        reader_start(&rd[i]);
    }
    wait_ready(run, 4);
    int produced = produce(p, run->n, NULL, NULL, 0);
    shmring_close(p);
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(reader_join(&rd[i]), 0, "reader %u", i);
    h_disarm_deadline();
    cr_assert_eq(produced, 0, "producer: %s", shmring_strerror(produced));
    for (unsigned i = 0; i < 2; i++)
        check_subscriber(run, i);
    uint64_t total = 0;
    for (unsigned i = 2; i < 4; i++) {
        const struct reader_result *r = &run->res[i];
        cr_assert_eq(r->opened, 1);
        cr_assert_eq(r->torn, 0);
        cr_assert_eq(r->disorder, 0);
        cr_assert_eq(r->end, -EPIPE);
        total += r->received;
    }
    h_check_exactly_once(run->seen, run->n);
    cr_assert_eq(total, run->n);
    shmring_unlink(run->name);
    run_free(run);
}

/* ---- Subscribers killed at random ---------------------------------------- */

static void killed_at_random(int overwrite)
{
    if (test_heap_forced())
        cr_skip_test("kills processes");
    h_arm_deadline(120);
    struct run *run = run_new(overwrite ? "killo" : "killl", long_count() / 4, overwrite);
    run->slow = 1;
    shmring_t *p = test_make(run->name, 256, SLOT_SIZE,
                             SHMRING_PRODUCER | (overwrite ? SHMRING_OVERWRITE : 0));
    enum { READERS = 5, VICTIMS = 3 };
    struct reader rd[READERS];
    for (unsigned i = 0; i < READERS; i++) {
        rd[i] = (struct reader){.run = run, .i = i, .mode = (enum read_mode)(i % READ_MODES)};
        reader_start(&rd[i]);
    }
    wait_ready(run, READERS);
    /* Readers 2..4 die at random points of the stream. */
    uint64_t seed = (uint64_t)h_now_ns() | 1, at[VICTIMS];
    pid_t victim[VICTIMS];
    for (unsigned k = 0; k < VICTIMS; k++) {
        victim[k] = rd[2 + k].pid;
        at[k] = h_rand(&seed) % run->n;
    }
    int produced = produce(p, run->n, victim, at, VICTIMS);
    for (unsigned i = 2; i < READERS; i++) {
        int status = reader_join(&rd[i]);
        cr_assert_eq(status, 128 + SIGKILL, "victim %u: status %d", i, status);
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0); /* reclaims the dead not yet reclaimed */
    shmring_close(p);
    for (unsigned i = 0; i < 2; i++) {
        int status = reader_join(&rd[i]);
        cr_assert_eq(status, 0, "survivor %u: status %d", i, status);
    }
    h_disarm_deadline();
    cr_assert_eq(produced, 0, "producer: %s", shmring_strerror(produced));
    for (unsigned i = 0; i < 2; i++)
        check_subscriber(run, i);
    cr_assert_eq(st.subscribers_dead, VICTIMS, "%llu dead counted",
                 (unsigned long long)st.subscribers_dead);
    cr_assert_eq(st.subscribers, 2);
    shmring_unlink(run->name);
    run_free(run);
}

Test(subscriber, killed_subscribers_never_block_the_producer, .timeout = 600)
{
    killed_at_random(0);
}

Test(subscriber, killed_subscribers_overwrite, .timeout = 600)
{
    killed_at_random(1);
}

/* ---- Overwrite mode: lapped subscribers ---------------------------------- */

Test(subscriber, lapped_subscriber_jumps_and_counts_missed)
{
    const char *name = test_name("lap");
    shmring_t *p = test_make(name, 8, SLOT_SIZE, SHMRING_PRODUCER | SHMRING_OVERWRITE);
    shmring_t *s = test_open_as(name, SHMRING_SUBSCRIBER);
    for (uint64_t id = 0; id < 100; id++)
        test_push_id(p, id, len_of(id));
    unsigned char buf[SLOT_SIZE];
    uint64_t received = 0, last = 0;
    ssize_t len;
    while ((len = shmring_pop(s, buf, sizeof buf)) >= 0) {
        uint64_t id;
        cr_assert(test_check(buf, (size_t)len, &id));
        cr_assert(received == 0 || id == last + 1);
        last = id;
        received++;
    }
    cr_assert_eq(len, -EAGAIN);
    cr_assert_eq(last, 99);
    cr_assert_geq(received, 7);
    cr_assert_leq(received, 8);
    cr_assert_eq(shmring_missed(s), 100 - received);
    cr_assert_eq(shmring_missed(s), 0, "reported once");
    /* A claim lapped while held is refused at release. */
    test_push_id(p, 100, 32);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(s, &m), 0);
    for (uint64_t id = 101; id < 120; id++)
        test_push_id(p, id, 32);
    cr_assert_eq(shmring_release(s, &m), -ESTALE);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.sub_missed, 100 - received);
    cr_assert_eq(st.delivered, received + 1);
    shmring_close(s);
    shmring_close(p);
    shmring_unlink(name);
}

Test(subscriber, slow_subscribers_lapped_under_load_verify_checksums, .timeout = 600)
{
    h_arm_deadline(120);
    struct run *run = run_new("lapload", long_count() / 4, 1);
    run->slow = 1;
    shmring_t *p = test_make(run->name, 64, SLOT_SIZE, SHMRING_PRODUCER | SHMRING_OVERWRITE);
    struct reader rd[3];
    for (unsigned i = 0; i < 3; i++) {
        rd[i] = (struct reader){.run = run, .i = i, .mode = (enum read_mode)(i % READ_MODES)};
        if (i == 1)
            rd[i].mode = READ_CLAIM;
        reader_start(&rd[i]);
    }
    wait_ready(run, 3);
    int produced = produce(p, run->n, NULL, NULL, 0);
    shmring_close(p);
    for (unsigned i = 0; i < 3; i++)
        cr_assert_eq(reader_join(&rd[i]), 0);
    h_disarm_deadline();
    cr_assert_eq(produced, 0);
    for (unsigned i = 0; i < 3; i++) {
        check_subscriber(run, i);
        /* Claims torn while held are counted in missed by the reader, not
         * in gaps: gaps + torn claims == missed. */
        if (rd[i].mode != READ_CLAIM)
            cr_assert_eq(run->res[i].gaps, run->res[i].missed, "subscriber %u", i);
    }
    shmring_unlink(run->name);
    run_free(run);
}

/* ---- Lossless mode: back-pressure, claims, wake-ups ---------------------- */

Test(subscriber, slowest_subscriber_holds_the_producer)
{
    const char *name = test_name("hold");
    shmring_t *p = test_make(name, 8, SLOT_SIZE, SHMRING_PRODUCER);
    shmring_t *fast = test_open_as(name, SHMRING_SUBSCRIBER);
    shmring_t *slow = test_open_as(name, SHMRING_SUBSCRIBER);
    unsigned char buf[SLOT_SIZE];
    uint64_t id = 0;
    for (; id < 8; id++)
        test_push_id(p, id, 32);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN);
    for (int i = 0; i < 8; i++)
        test_expect_id(buf, shmring_pop(fast, buf, sizeof buf), (uint64_t)i);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN, "the slow one has passed nothing");
    test_expect_id(buf, shmring_pop(slow, buf, sizeof buf), 0);
    test_push_id(p, id++, 32);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN);
    cr_assert_eq(shmring_push_wait(p, "x", 1, 1000000), -ETIMEDOUT);
    /* Closing the slow one lets the producer go. */
    shmring_close(slow);
    test_push_id(p, id++, 32);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.subscribers, 1);
    cr_assert_eq(st.subscribers_dead, 0);
    cr_assert_geq(st.full_events, 4);
    cr_assert_eq(st.delivered, 9);
    /* No consumer attached: the consumers' side was passed over. */
    cr_assert_gt(st.skipped, 0);
    cr_assert_eq(st.pushed, st.popped + st.dropped + st.skipped + st.count);
    test_expect_id(buf, shmring_pop(fast, buf, sizeof buf), 8);
    test_expect_id(buf, shmring_pop(fast, buf, sizeof buf), 9);
    cr_assert_eq(shmring_pop(fast, buf, sizeof buf), -EAGAIN);
    shmring_close(fast);
    shmring_close(p);
    shmring_unlink(name);
}

Test(subscriber, a_consumer_still_holds_the_producer)
{
    const char *name = test_name("cons");
    shmring_t *p = test_make(name, 8, SLOT_SIZE, SHMRING_PRODUCER);
    shmring_t *s = test_open_as(name, SHMRING_SUBSCRIBER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[SLOT_SIZE];
    for (uint64_t id = 0; id < 8; id++)
        test_push_id(p, id, 32);
    for (int i = 0; i < 8; i++)
        test_expect_id(buf, shmring_pop(s, buf, sizeof buf), (uint64_t)i);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN, "the consumer took nothing yet");
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    test_push_id(p, 8, 32);
    test_expect_id(buf, shmring_pop(s, buf, sizeof buf), 8);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 1);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.skipped, 0);
    cr_assert_eq(st.popped, 2);
    cr_assert_eq(st.consumers, 1);
    cr_assert_eq(st.subscribers, 1);
    shmring_close(c);
    shmring_close(s);
    shmring_close(p);
    shmring_unlink(name);
}

Test(subscriber, claims_hold_slots_until_released_in_any_order)
{
    const char *name = test_name("claim");
    shmring_t *p = test_make(name, 4, SLOT_SIZE, SHMRING_PRODUCER);
    shmring_t *s = test_open_as(name, SHMRING_SUBSCRIBER);
    shmring_t *other = test_open_as(name, SHMRING_SUBSCRIBER);
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 32);
    unsigned char buf[SLOT_SIZE];
    for (int i = 0; i < 4; i++)
        test_expect_id(buf, shmring_pop(other, buf, sizeof buf), (uint64_t)i);
    shmring_msg_t m[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(shmring_claim(s, &m[i]), 0);
        uint64_t id;
        cr_assert(test_check(m[i].data, m[i].len, &id));
        cr_assert_eq(id, (uint64_t)i);
    }
    /* Releasing the second frees nothing: the first is still held. */
    cr_assert_eq(shmring_release(s, &m[1]), 0);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN);
    cr_assert_eq(shmring_release(s, &m[1]), -EINVAL, "released twice");
    cr_assert_eq(shmring_release(other, &m[0]), -EINVAL, "another handle's claim");
    /* Releasing the first frees two slots (positions 0 and 1). */
    cr_assert_eq(shmring_release(s, &m[0]), 0);
    test_push_id(p, 4, 32);
    test_push_id(p, 5, 32);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN, "position 2 is still claimed");
    cr_assert_eq(shmring_release(s, &m[2]), 0);
    test_expect_id(buf, shmring_pop(s, buf, sizeof buf), 3);
    test_push_id(p, 6, 32);
    test_push_id(p, 7, 32);
    shmring_close(s);
    shmring_close(other);
    shmring_close(p);
    shmring_unlink(name);
}

struct waker {
    shmring_t *h;
    int delay_us;
    int rc;
};

static void *pop_later(void *a)
{
    struct waker *w = a;
    h_sleep_us((unsigned)w->delay_us);
    unsigned char buf[SLOT_SIZE];
    w->rc = (int)shmring_pop(w->h, buf, sizeof buf);
    return NULL;
}

static void *push_later(void *a)
{
    struct waker *w = a;
    h_sleep_us((unsigned)w->delay_us);
    w->rc = shmring_push(w->h, "wake", 4);
    return NULL;
}

Test(subscriber, waits_are_woken_both_ways)
{
    h_arm_deadline(60);
    const char *name = test_name("wake");
    shmring_t *p = test_make(name, 2, SLOT_SIZE, SHMRING_PRODUCER);
    shmring_t *s = test_open_as(name, SHMRING_SUBSCRIBER);
    shmring_set_wait(p, SHMRING_WAIT_SLEEP, 0);
    shmring_set_wait(s, SHMRING_WAIT_SLEEP, 0);
    /* A producer held back by the subscriber is woken by its pop. */
    for (int round = 0; round < 20; round++) {
        cr_assert_eq(shmring_push(p, "a", 1), 0);
        cr_assert_eq(shmring_push(p, "b", 1), 0);
        struct waker w = {s, 2000 + round * 100, 0};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, pop_later, &w), 0);
        cr_assert_eq(shmring_push_wait(p, "c", 1, -1), 0);
        pthread_join(th, NULL);
        cr_assert_eq(w.rc, 1);
        unsigned char buf[8];
        cr_assert_eq(shmring_pop(s, buf, sizeof buf), 1);
        cr_assert_eq(shmring_pop(s, buf, sizeof buf), 1);
        cr_assert_eq(buf[0], 'c');
    }
    /* A subscriber waiting on an empty ring is woken by a push. */
    for (int round = 0; round < 20; round++) {
        struct waker w = {p, 2000 + round * 100, -1};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, push_later, &w), 0);
        unsigned char buf[8];
        cr_assert_eq(shmring_pop_wait(s, buf, sizeof buf, -1), 4);
        pthread_join(th, NULL);
        cr_assert_eq(w.rc, 0);
    }
    h_disarm_deadline();
    shmring_close(s);
    shmring_close(p);
    shmring_unlink(name);
}

Test(subscriber, sees_only_what_is_pushed_after_it_attached)
{
    const char *name = test_name("late");
    shmring_t *p = test_make(name, 16, SLOT_SIZE, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t id = 0; id < 5; id++)
        test_push_id(p, id, 32);
    shmring_t *s = test_open_as(name, SHMRING_SUBSCRIBER);
    unsigned char buf[SLOT_SIZE];
    cr_assert_eq(shmring_pop(s, buf, sizeof buf), -EAGAIN);
    test_push_id(p, 5, 40);
    test_expect_id(buf, shmring_pop(s, buf, sizeof buf), 5);
    /* The consumer still has all of its own. */
    for (uint64_t id = 0; id < 6; id++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
    /* End of stream: -EPIPE once drained. */
    test_push_id(p, 6, 40);
    shmring_close(p);
    test_expect_id(buf, shmring_pop_wait(s, buf, sizeof buf, -1), 6);
    cr_assert_eq(shmring_pop_wait(s, buf, sizeof buf, -1), -EPIPE);
    cr_assert_eq(shmring_pop(s, buf, sizeof buf), -EPIPE);
    shmring_close(c);
    shmring_close(s);
    shmring_unlink(name);
}

Test(subscriber, a_subscriber_attached_before_the_producer_sees_all)
{
    const char *name = test_name("first");
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = SLOT_SIZE, .flags = SHMRING_SUBSCRIBER);
    shmring_t *s = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &s), 0);
    shmring_t *p = test_open_as(name, SHMRING_PRODUCER);
    unsigned char buf[SLOT_SIZE];
    for (uint64_t id = 0; id < 40; id++) {
        test_push_id(p, id, len_of(id));
        test_expect_id(buf, shmring_pop(s, buf, sizeof buf), id);
    }
    struct iovec iov[4];
    unsigned char b[4][SLOT_SIZE];
    for (int i = 0; i < 4; i++)
        iov[i] = (struct iovec){b[i], sizeof b[i]};
    for (uint64_t id = 40; id < 43; id++)
        test_push_id(p, id, 20);
    cr_assert_eq(shmring_pop_batch(s, iov, 4), 3);
    for (int i = 0; i < 3; i++)
        test_expect_id(b[i], (ssize_t)iov[i].iov_len, 40 + (uint64_t)i);
    shmring_close(p);
    shmring_close(s);
    shmring_unlink(name);
}

/* ---- Bad input ------------------------------------------------------------ */

Test(subscriber, bad_input)
{
    const char *name = test_name("bad");
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    shmring_t *x = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_SUBSCRIBER | SHMRING_CONSUMER, &x), -EINVAL);
    cr_assert_eq(shmring_open(name, SHMRING_SUBSCRIBER | SHMRING_OBSERVER, &x), -EINVAL);
    cr_assert_eq(shmring_open_wait(name, SHMRING_SUBSCRIBER | SHMRING_CONSUMER, 0, &x), -EINVAL);
    cr_assert_eq(shmring_open_fd(0, SHMRING_SUBSCRIBER | SHMRING_OBSERVER, &x), -EINVAL);
    shmring_config_t bad =
        SHMRING_CONFIG_INIT(.slots = 8, .flags = SHMRING_SUBSCRIBER | SHMRING_CONSUMER);
    cr_assert_eq(shmring_create(NULL, &bad, &x), -EINVAL);
    cr_assert_null(x);
    shmring_t *s = NULL;
    cr_assert_eq(shmring_open_wait(name, SHMRING_SUBSCRIBER, 0, &s), 0);
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(s, NULL, 4), -EINVAL);
    cr_assert_eq(shmring_pop_batch(s, NULL, 1), -EINVAL);
    cr_assert_eq(shmring_claim(s, NULL), -EINVAL);
    cr_assert_eq(shmring_release(s, NULL), -EINVAL);
    cr_assert_eq(shmring_push(s, "x", 1), -EPERM);
    /* A message too big for the buffer stays. */
    test_push_id(p, 7, 40);
    cr_assert_eq(shmring_pop(s, buf, 20), -EMSGSIZE);
    struct iovec small = {buf, 20};
    cr_assert_eq(shmring_pop_batch(s, &small, 1), -EMSGSIZE);
    test_expect_id(buf, shmring_pop(s, buf, sizeof buf), 7);
    /* A forged or foreign message is refused. */
    test_push_id(p, 8, 40);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(s, &m), 0);
    /* Each private word altered: position, then slot and cookie. */
    for (unsigned w = 0; w < 2; w++) {
        shmring_msg_t forged = m;
        forged.opaque[w] ^= w == 0 ? 8 : (2ull << 32);
        cr_assert_eq(shmring_release(s, &forged), -EINVAL, "word %u", w);
    }
    cr_assert_eq(shmring_release(s, &m), 0);
    cr_assert_eq(shmring_release(s, &m), -EINVAL);
    cr_assert_eq(shmring_missed(s), 0);
    shmring_close(s);
    /* Handles of all kinds count against SHMRING_MAX_CONSUMERS. */
    shmring_t *h[SHMRING_MAX_CONSUMERS];
    for (int i = 0; i < SHMRING_MAX_CONSUMERS; i++)
        h[i] = test_open_as(name, i % 2 ? SHMRING_SUBSCRIBER : SHMRING_CONSUMER);
    cr_assert_eq(shmring_open(name, SHMRING_SUBSCRIBER, &x), -EUSERS);
    for (int i = 0; i < SHMRING_MAX_CONSUMERS; i++)
        shmring_close(h[i]);
    shmring_close(p);
    shmring_unlink(name);
}

Test(subscriber, single_consumer_ring_keeps_its_consumer_entry)
{
    const char *name = test_name("single");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER | SHMRING_SINGLE_CONSUMER);
    shmring_t *s = test_open_as(name, SHMRING_SUBSCRIBER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64];
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 20);
    for (uint64_t id = 0; id < 4; id++)
        test_expect_id(buf, shmring_pop(s, buf, sizeof buf), id);
    /* The read index of a single-consumer ring is never passed over. */
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN);
    shmring_close(c);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN);
    c = test_open_as(name, SHMRING_CONSUMER);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    cr_assert_eq(shmring_push(p, "x", 1), 0);
    shmring_close(c);
    shmring_close(s);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- A dead subscriber ---------------------------------------------------- */

Test(subscriber, a_dead_subscriber_is_detached_and_counted, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("kills a process");
    h_arm_deadline(60);
    const char *name = test_name("dead");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    int *ready = test_shared_alloc(sizeof *ready);
    *ready = 0;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *s = NULL;
        if (shmring_open(name, SHMRING_SUBSCRIBER, &s) != 0)
            _exit(1);
        __atomic_store_n(ready, 1, __ATOMIC_RELEASE);
        pause();
        _exit(0);
    }
    while (!__atomic_load_n(ready, __ATOMIC_ACQUIRE))
        h_sleep_us(1000);
    /* A live subscriber keeps up: only the child holds the producer back. */
    shmring_t *live = test_open_as(name, SHMRING_SUBSCRIBER);
    unsigned char buf[64];
    for (uint64_t id = 0; id < 4; id++) {
        test_push_id(p, id, 20);
        test_expect_id(buf, shmring_pop(live, buf, sizeof buf), id);
    }
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN, "held back by a live subscriber");
    kill(pid, SIGKILL);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    /* A waiting push gets past the dead subscriber (within the dead-peer bound). */
    cr_assert_eq(shmring_push_wait(p, "x", 1, -1), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.subscribers_dead, 1);
    cr_assert_eq(st.subscribers, 1);
    cr_assert_eq(shmring_pop(live, buf, sizeof buf), 1);
    h_disarm_deadline();
    shmring_close(live);
    test_shared_free(ready, sizeof *ready);
    shmring_close(p);
    shmring_unlink(name);
}
