/*
 * At-least-once redelivery (SHMRING_REDELIVER): a claim that its consumer did
 * not release because it died (or closed) goes to another consumer, oldest
 * first, after the messages that were already newer; counted in
 * shmring_stats_t.redelivered, never in abandoned.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "atomic.h"
#include "common.h"
#include "harness.h"

#define SIZE 64u

static shmring_stats_t stats_of(shmring_t *h)
{
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(h, &st), 0);
    return st;
}

static void push_ids(shmring_t *p, uint64_t first, uint64_t last)
{
    for (uint64_t id = first; id < last; id++)
        test_push_id(p, id, test_len_of(id, SIZE));
}

/* Claim one message and check that it is id `want`; returns the claim. */
static shmring_msg_t claim_id(shmring_t *c, uint64_t want)
{
    shmring_msg_t m;
    int rc = shmring_claim(c, &m);
    cr_assert_eq(rc, 0, "claim of %llu: %d", (unsigned long long)want, rc);
    uint64_t id;
    cr_assert(test_check(m.data, m.len, &id), "torn message");
    cr_assert_eq(id, want, "claimed %llu, wanted %llu", (unsigned long long)id,
                 (unsigned long long)want);
    return m;
}

static void claim_release_id(shmring_t *c, uint64_t want)
{
    shmring_msg_t m = claim_id(c, want);
    cr_assert_eq(shmring_release(c, &m), 0);
}

/* ---- Bad input ----------------------------------------------------------- */

Test(redeliver, not_with_overwrite)
{
    const char *name = test_name("rdow");
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = SIZE,
                                               .flags = SHMRING_REDELIVER | SHMRING_OVERWRITE);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    cr_assert_null(r);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &r), -ENOENT);
    cfg.flags |= SHMRING_SINGLE_CONSUMER;
    cr_assert_eq(shmring_create(NULL, &cfg, &r), -EINVAL);
    /* Not an open flag: a policy is fixed at creation. */
    shmring_t *p = test_make(name, 8, SIZE, SHMRING_REDELIVER);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_REDELIVER, &r), -EINVAL);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, policy_is_stored_and_matched)
{
    const char *name = test_name("rdflag");
    shmring_t *p = test_make(name, 8, SIZE, SHMRING_REDELIVER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_stats_t st = stats_of(c);
    cr_assert_eq(st.flags & SHMRING_REDELIVER, SHMRING_REDELIVER);
    cr_assert_eq(st.redelivered, 0);
    /* Open-or-create wants the same policy. */
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = SIZE,
                                               .flags = SHMRING_CONSUMER | SHMRING_OPEN_EXISTING);
    shmring_t *o = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &o), -EEXIST);
    cfg.flags |= SHMRING_REDELIVER;
    cr_assert_eq(shmring_create(name, &cfg, &o), 0);
    shmring_close(o);
    /* A ring without it says so. */
    shmring_t *q = test_make(NULL, 8, SIZE, 0);
    cr_assert_eq(stats_of(q).flags & SHMRING_REDELIVER, 0);
    shmring_close(q);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, release_of_a_foreign_claim_is_refused)
{
    const char *name = test_name("rdforeign");
    shmring_t *p = test_make(name, 8, SIZE, SHMRING_REDELIVER);
    shmring_t *a = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *b = test_open_as(name, SHMRING_CONSUMER);
    push_ids(p, 0, 2);
    shmring_msg_t m = claim_id(a, 0);
    cr_assert_eq(shmring_release(b, &m), -EINVAL);
    cr_assert_eq(shmring_release(NULL, &m), -EINVAL);
    cr_assert_eq(shmring_release(a, NULL), -EINVAL);
    cr_assert_eq(shmring_release(a, &m), 0);
    cr_assert_eq(shmring_release(a, &m), -EINVAL); /* twice */
    claim_release_id(b, 1);
    cr_assert_eq(stats_of(p).redelivered, 0);
    shmring_close(b);
    shmring_close(a);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Close while holding claims (both backends) ------------------------- */

Test(redeliver, close_with_claims_redelivers_oldest_first)
{
    const char *name = test_name("rdclose");
    shmring_t *p = test_make(name, 8, SIZE, SHMRING_REDELIVER);
    shmring_t *a = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *b = test_open_as(name, SHMRING_CONSUMER);
    push_ids(p, 0, 5);
    (void)claim_id(a, 0);
    (void)claim_id(a, 1);
    claim_release_id(b, 2);
    shmring_close(a); /* holds 0 and 1 */
    shmring_stats_t st = stats_of(p);
    cr_assert_eq(st.redelivered, 2);
    cr_assert_eq(st.abandoned, 0);
    /* Oldest redelivery first, then the rest in order. */
    claim_release_id(b, 0);
    char buf[SIZE];
    test_expect_id(buf, shmring_pop(b, buf, sizeof buf), 1);
    claim_release_id(b, 3);
    test_expect_id(buf, shmring_pop(b, buf, sizeof buf), 4);
    cr_assert_eq(shmring_pop(b, buf, sizeof buf), -EAGAIN);
    st = stats_of(p);
    cr_assert_eq(st.pushed, 5);
    cr_assert_eq(st.popped, 5, "a redelivery is not a second take");
    cr_assert_eq(st.count, 0);
    shmring_close(b);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, the_redelivered_slot_holds_the_producer_back)
{
    const char *name = test_name("rdfull");
    shmring_t *p = test_make(name, 4, SIZE, SHMRING_REDELIVER);
    shmring_t *a = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *b = test_open_as(name, SHMRING_CONSUMER);
    push_ids(p, 0, 4);
    shmring_msg_t m = claim_id(a, 0);
    for (uint64_t id = 1; id < 4; id++)
        claim_release_id(b, id);
    shmring_close(a); /* holding 0 */
    char buf[SIZE];
    /* Position 4 goes to the slot of 0, which stays taken until 0 is
     * released. */
    cr_assert_eq(shmring_push(p, buf, 16), -EAGAIN);
    m = claim_id(b, 0);
    cr_assert_eq(shmring_push(p, buf, 16), -EAGAIN);
    cr_assert_eq(shmring_release(b, &m), 0);
    push_ids(p, 4, 8);
    for (uint64_t id = 4; id < 8; id++)
        test_expect_id(buf, shmring_pop(b, buf, sizeof buf), id);
    cr_assert_eq(shmring_push(p, buf, 16), 0);
    shmring_close(b);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, pop_too_small_keeps_the_message)
{
    const char *name = test_name("rdsmall");
    shmring_t *p = test_make(name, 8, SIZE, SHMRING_REDELIVER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    test_push_id(p, 7, 40);
    test_push_id(p, 8, 20);
    char buf[SIZE];
    cr_assert_eq(shmring_pop(c, buf, 30), -EMSGSIZE);
    cr_assert_eq(shmring_pop(c, buf, 30), -EMSGSIZE);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 7);
    test_expect_id(buf, shmring_pop(c, buf, 30), 8);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_stats_t st = stats_of(p);
    cr_assert_eq(st.popped, 2);
    cr_assert_eq(st.redelivered, 0);
    cr_assert_eq(st.count, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, pop_batch_takes_redeliveries_then_news)
{
    const char *name = test_name("rdbatch");
    shmring_t *p = test_make(name, 8, SIZE, SHMRING_REDELIVER);
    shmring_t *a = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *b = test_open_as(name, SHMRING_CONSUMER);
    push_ids(p, 0, 6);
    (void)claim_id(a, 0);
    (void)claim_id(a, 1);
    shmring_close(a);
    static char bufs[8][SIZE];
    struct iovec iov[8];
    for (int i = 0; i < 8; i++)
        iov[i] = (struct iovec){bufs[i], SIZE};
    cr_assert_eq(shmring_pop_batch(b, iov, 8), 6);
    const uint64_t want[6] = {0, 1, 2, 3, 4, 5};
    for (int i = 0; i < 6; i++)
        test_expect_id(bufs[i], (ssize_t)iov[i].iov_len, want[i]);
    iov[0].iov_len = SIZE;
    cr_assert_eq(shmring_pop_batch(b, iov, 1), -EAGAIN);
    cr_assert_eq(shmring_pop_batch(b, NULL, 1), -EINVAL);
    shmring_close(b);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- A consumer process killed holding claims ---------------------------- */

struct held_child {
    const char *name;
    int claims;      /* claims to take and hold */
    uint32_t *ready; /* shared: set once they are held */
};

static int hold_and_wait(void *arg)
{
    struct held_child *h = arg;
    shmring_t *c;
    if (shmring_open(h->name, SHMRING_CONSUMER, &c) < 0)
        return 2;
    for (int i = 0; i < h->claims; i++) {
        shmring_msg_t m;
        if (shmring_claim(c, &m) < 0)
            return 3;
    }
    __atomic_store_n(h->ready, 1, __ATOMIC_RELEASE);
    for (;;)
        pause();
}

static pid_t spawn(int (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(60);
        _exit(fn(arg));
    }
    return pid;
}

static void await_flag(uint32_t *flag)
{
    for (int i = 0; i < 20000 && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
        usleep(500);
    cr_assert(__atomic_load_n(flag, __ATOMIC_ACQUIRE), "child never got ready");
}

/* Kill a child that holds claims of ids 0 .. claims-1 of a ring of ids
 * 0 .. n-1; returns the ring's producer and a second consumer. */
static void killed_holding(const char *name, int claims, uint64_t n, shmring_t **p, shmring_t **c,
                           uint32_t flags)
{
    *p = test_make(name, 8, SIZE, SHMRING_REDELIVER | flags);
    *c = test_open_as(name, SHMRING_CONSUMER);
    push_ids(*p, 0, n);
    uint32_t *ready = test_shared_alloc(sizeof *ready);
    struct held_child h = {name, claims, ready};
    pid_t pid = spawn(hold_and_wait, &h);
    await_flag(ready);
    kill(pid, SIGKILL);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    test_shared_free(ready, sizeof *ready);
}

Test(redeliver, killed_claimer_found_by_stats)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("rdkill");
    shmring_t *p, *c;
    killed_holding(name, 2, 4, &p, &c, 0);
    shmring_stats_t st = stats_of(c); /* reclaims the dead consumer */
    cr_assert_eq(st.redelivered, 2);
    cr_assert_eq(st.abandoned, 0);
    claim_release_id(c, 0);
    claim_release_id(c, 1);
    claim_release_id(c, 2);
    claim_release_id(c, 3);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    st = stats_of(c);
    cr_assert_eq(st.popped, 4);
    cr_assert_eq(st.count, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, killed_claimer_arrives_after_newer_messages)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("rdorder");
    shmring_t *p, *c;
    killed_holding(name, 1, 3, &p, &c, 0);
    /* Nobody has looked at the dead consumer yet: the newer ones first. */
    claim_release_id(c, 1);
    claim_release_id(c, 2);
    /* Empty: the consumer reclaims dead peers and finds the redelivery. */
    claim_release_id(c, 0);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    cr_assert_eq(stats_of(c).redelivered, 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, end_of_stream_waits_for_the_redelivery)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("rdeos");
    shmring_t *p, *c;
    killed_holding(name, 1, 2, &p, &c, 0);
    shmring_close(p);
    claim_release_id(c, 1);
    claim_release_id(c, 0);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), -EPIPE);
    shmring_close(c);
    shmring_unlink(name);
}

Test(redeliver, sleeping_consumer_gets_the_redelivery)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("rdsleep");
    shmring_t *p, *c;
    killed_holding(name, 1, 1, &p, &c, 0);
    shmring_msg_t m;
    /* Empty but for the dead consumer's claim: the wait finds it. */
    cr_assert_eq(shmring_claim_wait(c, &m, 10 * 1000000000LL), 0);
    uint64_t id;
    cr_assert(test_check(m.data, m.len, &id));
    cr_assert_eq(id, 0);
    cr_assert_eq(shmring_release(c, &m), 0);
    char buf[SIZE];
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 20 * 1000000LL), -ETIMEDOUT);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, producer_blocked_by_a_dead_claim_goes_on)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("rdprod");
    shmring_t *p, *c;
    killed_holding(name, 1, 8, &p, &c, 0);
    char buf[SIZE];
    for (uint64_t id = 1; id < 8; id++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), id);
    /* The slot of 0 is the only one not free; the dead claim keeps it. */
    cr_assert_eq(shmring_push_wait(p, buf, 16, 50 * 1000000LL), -ETIMEDOUT);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    push_ids(p, 8, 9);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 8);
    cr_assert_eq(stats_of(p).redelivered, 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(redeliver, single_consumer_successor_gets_the_claims)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("rdsingle");
    shmring_t *p = test_make(name, 8, SIZE, SHMRING_REDELIVER | SHMRING_SINGLE_CONSUMER);
    push_ids(p, 0, 3);
    uint32_t *ready = test_shared_alloc(sizeof *ready);
    struct held_child h = {name, 2, ready};
    pid_t pid = spawn(hold_and_wait, &h);
    await_flag(ready);
    kill(pid, SIGKILL);
    test_wait_child(pid);
    test_shared_free(ready, sizeof *ready);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER); /* takes the dead one's entry */
    claim_release_id(c, 0);
    claim_release_id(c, 1);
    claim_release_id(c, 2);
    cr_assert_eq(stats_of(p).redelivered, 2);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Threads that close holding claims (both backends) ------------------ */

#define T_CONSUMERS 4
#define T_LOG       (1u << 18)

/* A consumer's log of deliveries: entries id << 2 | state, n of them. */
struct tlog {
    uint64_t n;
    uint64_t e[T_LOG];
};

enum { CLAIMED = 1, RELEASED = 2 };

struct tctx {
    const char *name;
    uint64_t total;
    struct tlog *log;
    uint64_t seed;
};

/* Claims, and now and then closes its handle holding one (a thread cannot
 * die alone: closing is the heap backend's nearest thing). */
static void *thread_consumer(void *arg)
{
    struct tctx *t = arg;
    shmring_t *c = test_open_as(t->name, SHMRING_CONSUMER);
    for (;;) {
        shmring_msg_t m;
        int rc = shmring_claim_wait(c, &m, 10 * 1000000000LL);
        if (rc == -EPIPE)
            break;
        if (rc != 0) {
            shmring_close(c);
            return (void *)(intptr_t)rc;
        }
        uint64_t id;
        if (!test_check(m.data, m.len, &id))
            return (void *)(intptr_t)-EBADMSG;
        uint64_t i = t->log->n++;
        if (i >= T_LOG)
            return (void *)(intptr_t)-ENOSPC;
        t->log->e[i] = id << 2 | CLAIMED;
        if (h_rand(&t->seed) % 97 == 0) {
            shmring_close(c); /* holding id */
            c = test_open_as(t->name, SHMRING_CONSUMER);
            continue;
        }
        cr_assert_eq(shmring_release(c, &m), 0);
        t->log->e[i] = id << 2 | RELEASED;
    }
    shmring_close(c);
    return NULL;
}

/* Every id released at least once; an id delivered twice exactly when a
 * log shows it claimed and not released. Returns the duplicates. */
static uint64_t check_logs(struct tlog **logs, unsigned nlogs, uint64_t total, int ambiguous_ok,
                           uint64_t *ambiguous)
{
    *ambiguous = 0;
    uint32_t *seen = calloc(total, sizeof *seen);
    uint32_t *held = calloc(total, sizeof *held);
    uint32_t *released = calloc(total, sizeof *released);
    cr_assert(seen && held && released);
    for (unsigned k = 0; k < nlogs; k++)
        for (uint64_t i = 0; i < logs[k]->n && i < T_LOG; i++) {
            uint64_t id = logs[k]->e[i] >> 2, st = logs[k]->e[i] & 3;
            cr_assert_lt(id, total);
            seen[id]++;
            if (st == CLAIMED)
                held[id]++;
            else if (st == RELEASED)
                released[id]++;
            else
                (*ambiguous)++;
        }
    uint64_t dups = 0;
    for (uint64_t id = 0; id < total; id++) {
        cr_assert_geq(seen[id], 1, "id %llu never delivered", (unsigned long long)id);
        if (released[id] + held[id] != seen[id]) {
            /* Killed between RELEASING and RELEASED: released or not, the
             * message came back exactly when it was not. */
            cr_assert(ambiguous_ok, "id %llu: a state that no kill explains",
                      (unsigned long long)id);
            cr_assert_leq(seen[id], held[id] + 2);
            cr_assert_geq(seen[id], held[id] + 1);
        } else {
            cr_assert_eq(released[id], 1, "id %llu released %u times", (unsigned long long)id,
                         released[id]);
            cr_assert_eq(seen[id], held[id] + 1, "id %llu: delivered %u times, held by %u dead",
                         (unsigned long long)id, seen[id], held[id]);
        }
        dups += seen[id] - 1;
    }
    free(seen);
    free(held);
    free(released);
    return dups;
}

Test(redeliver, threads_closing_with_claims)
{
    const char *name = test_name("rdthreads");
    uint64_t total = h_count(100000);
    shmring_t *p = test_make(name, 64, SIZE, SHMRING_REDELIVER);
    pthread_t th[T_CONSUMERS];
    struct tctx t[T_CONSUMERS];
    struct tlog *logs[T_CONSUMERS];
    for (unsigned i = 0; i < T_CONSUMERS; i++) {
        logs[i] = calloc(1, sizeof *logs[i]);
        t[i] = (struct tctx){name, total, logs[i], 0x9E3779B97F4A7C15ull * (i + 1)};
        cr_assert_eq(pthread_create(&th[i], NULL, thread_consumer, &t[i]), 0);
    }
    unsigned char buf[SIZE];
    for (uint64_t id = 0; id < total; id++) {
        size_t len = test_len_of(id, SIZE);
        test_fill(buf, len, id);
        cr_assert_eq(shmring_push_wait(p, buf, len, 10 * 1000000000LL), 0);
    }
    shmring_stats_t st = stats_of(p);
    shmring_close(p);
    for (unsigned i = 0; i < T_CONSUMERS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        cr_assert_null(rv, "consumer %u: %ld", i, (long)(intptr_t)rv);
    }
    uint64_t amb;
    uint64_t dups = check_logs(logs, T_CONSUMERS, total, 0, &amb);
    cr_assert_gt(dups, 0, "no handle ever closed holding a claim");
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    st = stats_of(o);
    cr_assert_eq(st.redelivered, dups);
    cr_assert_eq(st.abandoned, 0);
    cr_assert_eq(st.popped, total);
    shmring_close(o);
    for (unsigned i = 0; i < T_CONSUMERS; i++)
        free(logs[i]);
    shmring_unlink(name);
}

/* ---- Consumer processes killed at random --------------------------------- */

/*
 * Each consumer slot has a shared log that its successive processes append
 * to: an entry is written (CLAIMED), then the count raised; RELEASING just
 * before shmring_release, RELEASED after it. A process killed between the
 * last two leaves RELEASING: its message may or may not come again, and
 * either is right; every other entry says exactly whether it must.
 */
enum { RELEASING = 3 };

static int process_consumer(const char *name, struct tlog *log)
{
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull | 1;
    shmring_t *c;
    if (shmring_open(name, SHMRING_CONSUMER, &c) < 0)
        return 2;
    for (;;) {
        shmring_msg_t m;
        int rc = shmring_claim_wait(c, &m, 20 * 1000000000LL);
        if (rc == -EPIPE)
            break;
        if (rc != 0)
            return 3;
        uint64_t id;
        if (!test_check(m.data, m.len, &id))
            return 4;
        uint64_t i = __atomic_load_n(&log->n, __ATOMIC_RELAXED);
        if (i >= T_LOG)
            return 5;
        __atomic_store_n(&log->e[i], id << 2 | CLAIMED, __ATOMIC_RELAXED);
        __atomic_store_n(&log->n, i + 1, __ATOMIC_RELEASE);
        /* Use the message for a while (up to 20 us), so that kills find
         * consumers holding claims as well as waiting for them. */
        uint64_t until = h_now_ns() + h_rand(&seed) % 20000;
        while (h_now_ns() < until)
            shmring__cpu_relax();
        __atomic_store_n(&log->e[i], id << 2 | RELEASING, __ATOMIC_RELEASE);
        if (shmring_release(c, &m) != 0)
            return 6;
        __atomic_store_n(&log->e[i], id << 2 | RELEASED, __ATOMIC_RELEASE);
    }
    shmring_close(c);
    return 0;
}

static pid_t start_consumer(const char *name, struct tlog *log)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(h_sanitized() ? 1200 : 300);
        _exit(process_consumer(name, log));
    }
    return pid;
}

static int producer_process(const char *name, uint64_t total)
{
    shmring_t *p;
    if (shmring_open(name, SHMRING_PRODUCER, &p) < 0)
        return 2;
    unsigned char buf[SIZE];
    for (uint64_t id = 0; id < total; id++) {
        size_t len = test_len_of(id, SIZE);
        test_fill(buf, len, id);
        if (shmring_push_wait(p, buf, len, 30 * 1000000000LL) != 0)
            return 3;
    }
    shmring_close(p);
    return 0;
}

/* Supervisor: kill a random consumer every 0.2 to 5 ms until the producer
 * is done and every consumer has ended the stream; restart each one killed. */
static unsigned supervise(const char *name, pid_t producer, pid_t *cons, struct tlog **logs)
{
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull | 1;
    unsigned kills = 0;
    int producing = 1, running = T_CONSUMERS;
    while (producing || running > 0) {
        h_sleep_us(200 + (unsigned)(h_rand(&seed) % 4800));
        if (producing) {
            int st;
            pid_t w = waitpid(producer, &st, WNOHANG);
            if (w == producer) {
                cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer: status %d", st);
                producing = 0;
            }
            unsigned k = (unsigned)(h_rand(&seed) % T_CONSUMERS);
            if (cons[k] > 0 && kill(cons[k], SIGKILL) == 0) {
                int s = test_wait_child(cons[k]);
                if (s == 128 + SIGKILL)
                    kills++;
                else
                    cr_assert_eq(s, 0, "consumer %u: status %d", k, s);
                cons[k] = start_consumer(name, logs[k]);
            }
        }
        running = 0;
        for (unsigned k = 0; k < T_CONSUMERS; k++) {
            if (cons[k] <= 0)
                continue;
            int st;
            pid_t w = waitpid(cons[k], &st, WNOHANG);
            if (w == 0) {
                running++;
                continue;
            }
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "consumer %u: status %d", k, st);
            cons[k] = 0;
        }
    }
    return kills;
}

static void killed_at_random(uint32_t flags)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("rdrandom");
    uint64_t total = h_count(200000);
    shmring_t *obs = test_make(name, 64, SIZE, SHMRING_OBSERVER | SHMRING_REDELIVER | flags);
    struct tlog *logs[T_CONSUMERS];
    pid_t cons[T_CONSUMERS];
    for (unsigned k = 0; k < T_CONSUMERS; k++) {
        logs[k] = test_shared_alloc(sizeof *logs[k]);
        cons[k] = start_consumer(name, logs[k]);
    }
    pid_t producer = fork();
    cr_assert_geq(producer, 0);
    if (producer == 0) {
        alarm(h_sanitized() ? 1200 : 300);
        _exit(producer_process(name, total));
    }
    unsigned kills = supervise(name, producer, cons, logs);
    cr_assert_gt(kills, 0);
    uint64_t amb;
    uint64_t dups = check_logs(logs, T_CONSUMERS, total, 1, &amb);
    cr_assert_leq(amb, kills);
    shmring_stats_t st = stats_of(obs);
    cr_log_info("%llu messages, %u consumers killed, %llu delivered twice, %u redelivered",
                (unsigned long long)total, kills, (unsigned long long)dups, st.redelivered);
    cr_assert_eq(st.abandoned, 0);
    cr_assert_eq(st.pushed, total);
    cr_assert_eq(st.count, 0);
    cr_assert_leq(dups, st.redelivered, "a duplicate that was never redelivered");
    cr_assert_gt(dups, 0, "no consumer was killed holding a claim in %u kills", kills);
    for (unsigned k = 0; k < T_CONSUMERS; k++)
        test_shared_free(logs[k], sizeof *logs[k]);
    shmring_close(obs);
    shmring_unlink(name);
}

Test(redeliver, consumers_killed_at_random, .timeout = 600)
{
    killed_at_random(0);
}

/* ---- shmring create --redeliver ------------------------------------------ */

static int run_create(const char *name, const char *a1, const char *a2)
{
    const char *tool = test_tool();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) {
            dup2(nul, STDOUT_FILENO);
            dup2(nul, STDERR_FILENO);
        }
        execl(tool, tool, "create", name, a1, a2, (char *)NULL);
        _exit(127);
    }
    return test_wait_child(pid);
}

Test(redeliver, tool_creates_a_redelivering_ring)
{
    if (test_heap_forced())
        cr_skip_test("the tool's rings are shared memory");
    const char *name = test_name("rdtool");
    cr_assert_eq(run_create(name, "--redeliver", NULL), 0);
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    cr_assert_eq(stats_of(o).flags & SHMRING_REDELIVER, SHMRING_REDELIVER);
    shmring_close(o);
    shmring_unlink(name);
    cr_assert_neq(run_create(name, "--redeliver", "--overwrite"), 0);
    cr_assert_eq(shmring_open(name, SHMRING_OBSERVER, &o), -ENOENT);
    cr_assert_eq(run_create(name, "--table", "--redeliver"), 2);
}
