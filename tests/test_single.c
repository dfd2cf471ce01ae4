/* SHMRING_SINGLE_CONSUMER: one consumer handle at a time, which takes messages with a store. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

#define MS 1000000LL

Test(single, one_consumer_at_a_time)
{
    const char *name = test_name("s1");
    shmring_t *p = test_make(name, 8, 64, SHMRING_SINGLE_CONSUMER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *x = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &x), -EBUSY);
    cr_assert_null(x);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_OBSERVER, &x), -EBUSY);
    /* Observers are not limited by it. */
    shmring_t *o1 = test_open_as(name, SHMRING_OBSERVER);
    shmring_t *o2 = test_open_as(name, SHMRING_OBSERVER);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(o1, &st), 0);
    cr_assert_eq(st.flags & SHMRING_SINGLE_CONSUMER, SHMRING_SINGLE_CONSUMER);
    cr_assert_eq(st.consumers, 1);
    cr_assert_eq(st.observers, 2);
    /* After a close, the next consumer may attach, and goes on from there. */
    test_push_id(p, 1, 32);
    test_push_id(p, 2, 32);
    unsigned char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 1);
    shmring_close(c);
    c = test_open_as(name, SHMRING_CONSUMER);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 2);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_close(o2);
    shmring_close(o1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(single, creator_as_the_consumer)
{
    const char *name = test_name("s2");
    shmring_t *c = test_make(name, 8, 64, SHMRING_SINGLE_CONSUMER | SHMRING_CONSUMER);
    shmring_t *x = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &x), -EBUSY);
    shmring_t *p = test_open_as(name, SHMRING_PRODUCER);
    test_push_id(p, 5, 40);
    unsigned char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 5);
    shmring_close(p);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EPIPE);
    shmring_close(c);
    shmring_unlink(name);
}

Test(single, not_with_overwrite)
{
    const char *name = test_name("s3");
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64,
                            .flags = SHMRING_SINGLE_CONSUMER | SHMRING_OVERWRITE);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    cr_assert_null(r);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &r), -ENOENT);
    /* It is a create flag: opening with it is an unknown flag. */
    cfg.flags = SHMRING_SINGLE_CONSUMER;
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    shmring_t *x = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_SINGLE_CONSUMER, &x), -EINVAL);
    shmring_close(r);
    shmring_unlink(name);
}

/* Every way of taking a message, in order, across a full ring. */
Test(single, pop_batch_and_claim)
{
    const char *name = test_name("s4");
    shmring_t *p = test_make(name, 4, 64, SHMRING_SINGLE_CONSUMER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64], b[4][64];
    uint64_t next = 0, id = 0;
    for (int round = 0; round < 50; round++) {
        for (; next < id + 4; next++)
            test_push_id(p, next, 16 + next % 48);
        unsigned char full[64];
        test_fill(full, 32, 999);
        cr_assert_eq(shmring_push(p, full, 32), -EAGAIN);
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id++);
        shmring_msg_t m;
        cr_assert_eq(shmring_claim(c, &m), 0);
        test_expect_id(m.data, (ssize_t)m.len, id++);
        /* A claimed slot holds the producer back. */
        test_push_id(p, next++, 20);
        cr_assert_eq(shmring_push(p, full, 32), -EAGAIN);
        cr_assert_eq(shmring_release(c, &m), 0);
        struct iovec iov[4];
        for (int i = 0; i < 4; i++)
            iov[i] = (struct iovec){b[i], sizeof b[i]};
        ssize_t n = shmring_pop_batch(c, iov, 4);
        cr_assert_eq(n, 3);
        for (int i = 0; i < 3; i++)
            test_expect_id(b[i], (ssize_t)iov[i].iov_len, id++);
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, id);
    cr_assert_eq(st.popped, id);
    cr_assert_eq(st.count, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* A consumer that died is replaced by the next one, which gets the rest. */
Test(single, dead_consumer_is_replaced)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("s5");
    shmring_t *p = test_make(name, 16, 64, SHMRING_SINGLE_CONSUMER);
    for (uint64_t i = 0; i < 10; i++)
        test_push_id(p, i, 24);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *c = NULL;
        if (shmring_open(name, SHMRING_CONSUMER, &c) < 0)
            _exit(1);
        unsigned char buf[64];
        for (int i = 0; i < 4; i++)
            if (shmring_pop(c, buf, sizeof buf) < 0)
                _exit(2);
        shmring_msg_t m;
        if (shmring_claim(c, &m) < 0) /* held when it dies */
            _exit(3);
        raise(SIGKILL);
    }
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64];
    for (uint64_t i = 5; i < 10; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.abandoned, 1);
    cr_assert_eq(st.consumers, 1);
    /* The dead consumer's claim no longer holds its slot. */
    for (uint64_t i = 10; i < 26; i++)
        test_push_id(p, i, 24);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Stress: one producer, one consumer that sleeps, in order ----------- */

struct sink {
    const char *name;
    uint64_t n, next, bad;
    long last_rc;
};

/* Takes messages 0..n-1 in order, by pop_wait, claim_wait + release and
 * batches, sleeping whenever the ring is empty. */
static void sink_run(struct sink *k)
{
    shmring_t *c = NULL;
    int rc = shmring_open(k->name, SHMRING_CONSUMER, &c);
    if (rc < 0) {
        k->last_rc = rc;
        k->bad++;
        return;
    }
    shmring_set_wait(c, SHMRING_WAIT_SLEEP, 0);
    uint64_t seed = 0x1234ull;
    unsigned char buf[4][64];
    while (k->next < k->n) {
        uint64_t way = h_rand(&seed) % 4, id;
        if (way == 0) {
            shmring_msg_t m;
            rc = shmring_claim_wait(c, &m, -1);
            if (rc == 0) {
                if (!test_check(m.data, m.len, &id) || id != k->next)
                    k->bad++;
                k->next++;
                rc = shmring_release(c, &m);
            }
        } else if (way == 1) {
            struct iovec iov[4];
            for (int i = 0; i < 4; i++)
                iov[i] = (struct iovec){buf[i], sizeof buf[i]};
            ssize_t n = shmring_pop_batch(c, iov, 4);
            rc = n == -EAGAIN ? 0 : (int)(n < 0 ? n : 0);
            for (ssize_t i = 0; i < n; i++, k->next++)
                if (!test_check(buf[i], iov[i].iov_len, &id) || id != k->next)
                    k->bad++;
        } else {
            ssize_t len = shmring_pop_wait(c, buf[0], sizeof buf[0], -1);
            rc = len < 0 ? (int)len : 0;
            if (len >= 0) {
                if (!test_check(buf[0], (size_t)len, &id) || id != k->next)
                    k->bad++;
                k->next++;
            }
        }
        if (rc < 0) {
            k->last_rc = rc;
            k->bad++;
            break;
        }
        if (h_rand(&seed) % 64 == 0)
            h_sleep_us((unsigned)(h_rand(&seed) % 200));
    }
    shmring_close(c);
}

static void *sink_thread(void *arg)
{
    sink_run(arg);
    return NULL;
}

/* Bursts and pauses, so that both sides keep falling asleep. */
static void source_run(shmring_t *p, uint64_t n)
{
    cr_assert_eq(shmring_set_wait(p, SHMRING_WAIT_SLEEP, 0), 0);
    uint64_t seed = 0x9876ull;
    unsigned char buf[64];
    for (uint64_t id = 0; id < n;) {
        uint64_t burst = 1 + h_rand(&seed) % 24;
        for (uint64_t k = 0; k < burst && id < n; k++, id++) {
            size_t len = 16 + h_rand(&seed) % 48;
            test_fill(buf, len, id);
            int rc = shmring_push_wait(p, buf, len, -1);
            cr_assert_eq(rc, 0, "push_wait: %d", rc);
        }
        if (h_rand(&seed) % 4 == 0)
            h_sleep_us((unsigned)(h_rand(&seed) % 100));
    }
}

Test(single, in_order_with_sleeps_threads)
{
    const char *name = test_name("s6");
    shmring_t *p = test_make(name, 8, 64, SHMRING_SINGLE_CONSUMER);
    struct sink k = {.name = name, .n = h_count(100000)};
    h_arm_deadline(60);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, sink_thread, &k), 0);
    source_run(p, k.n);
    pthread_join(t, NULL);
    h_disarm_deadline();
    cr_assert_eq(k.bad, 0, "%llu bad, last rc %ld", (unsigned long long)k.bad, k.last_rc);
    cr_assert_eq(k.next, k.n);
    shmring_close(p);
    shmring_unlink(name);
}

Test(single, in_order_with_sleeps_processes)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("s7");
    shmring_t *p = test_make(name, 8, 64, SHMRING_SINGLE_CONSUMER);
    struct sink *k = test_shared_alloc(sizeof *k);
    *k = (struct sink){.name = name, .n = h_count(100000)};
    h_arm_deadline(60);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(h_sanitized() ? 360 : 60);
        sink_run(k);
        _exit(0);
    }
    source_run(p, k->n);
    cr_assert_eq(test_wait_child(pid), 0);
    h_disarm_deadline();
    cr_assert_eq(k->bad, 0, "%llu bad, last rc %ld", (unsigned long long)k->bad, k->last_rc);
    cr_assert_eq(k->next, k->n);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.popped, k->n);
    test_shared_free(k, sizeof *k);
    shmring_close(p);
    shmring_unlink(name);
}
