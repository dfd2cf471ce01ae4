/* Crashes and endings: killed consumers, end of stream, a dead producer, and the stats that track
 * them. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

#define MS 1000000LL

/* ---- Consumers killed at random moments, holding claims ---------------- */

#define KILLS     40
#define LONG_CONS 2
#define MAX_HELD  2

struct crash_ctl {
    uint32_t kills;   /* consumers killed so far */
    uint32_t started; /* short-lived consumers attached so far */
    uint32_t bad;     /* corrupt messages, unexpected return values */
    int32_t producer_rc;
    int32_t consumer_rc;
    uint64_t produced;
    uint64_t t_start; /* CLOCK_MONOTONIC, shared by all processes */
};

/* The stream lasts about this long; the kills are spread over it. */
#define STREAM_NS (1500 * MS)

static void crash_release_all(shmring_t *c, shmring_msg_t *held, int *nheld, uint64_t *seed,
                              struct crash_ctl *ctl)
{
    while (*nheld > 0) {
        int i = (int)(h_rand(seed) % (uint64_t)*nheld);
        int rc = shmring_release(c, &held[i]);
        if (rc != 0) {
            __atomic_fetch_add(&ctl->bad, 1, __ATOMIC_RELAXED);
            __atomic_store_n(&ctl->consumer_rc, rc, __ATOMIC_RELAXED);
        }
        held[i] = held[--*nheld];
    }
}

/*
 * A consumer process: claims (holding up to MAX_HELD at once), marks each id
 * in the shared array, and only then releases. Short-lived ones dawdle while
 * holding claims, so that kills often land there.
 */
static void crash_consumer(const char *name, struct crash_ctl *ctl, uint32_t *seen, uint64_t n,
                           uint64_t seed, int short_lived)
{
    shmring_t *c = NULL;
    if (shmring_open(name, SHMRING_CONSUMER, &c) != 0)
        _exit(2);
    if (short_lived)
        __atomic_fetch_add(&ctl->started, 1, __ATOMIC_RELEASE);
    shmring_msg_t held[MAX_HELD];
    int nheld = 0;
    for (;;) {
        int rc = nheld == 0 ? shmring_claim_wait(c, &held[0], -1) : shmring_claim(c, &held[nheld]);
        if (rc == -EAGAIN && nheld > 0) {
            crash_release_all(c, held, &nheld, &seed, ctl);
            continue;
        }
        if (rc == -EPIPE)
            break;
        if (rc != 0) {
            __atomic_fetch_add(&ctl->bad, 1, __ATOMIC_RELAXED);
            __atomic_store_n(&ctl->consumer_rc, rc, __ATOMIC_RELAXED);
            break;
        }
        uint64_t id;
        uint64_t dummy = 0;
        if (!test_check(held[nheld].data, held[nheld].len, &id))
            __atomic_fetch_add(&ctl->bad, 1, __ATOMIC_RELAXED);
        else
            h_mark(seen, n, id, &dummy);
        if (dummy != 0)
            __atomic_fetch_add(&ctl->bad, 1, __ATOMIC_RELAXED);
        nheld++;
        if (short_lived) {
            uint64_t x = h_rand(&seed);
            if (x % 2 == 0)
                h_sleep_us((unsigned)(x >> 8) % 1000);
            else
                for (volatile uint64_t k = 0; k < (x >> 8) % 4000; k++)
                    ;
        }
        if (nheld == MAX_HELD || h_rand(&seed) % 2 == 0)
            crash_release_all(c, held, &nheld, &seed, ctl);
    }
    crash_release_all(c, held, &nheld, &seed, ctl);
    shmring_close(c);
    _exit(0);
}

/* The producer process: push_wait with a deadline (a wedged ring fails it),
 * paced to a steady rate so that the stream lasts about STREAM_NS. */
static void crash_producer(const char *name, struct crash_ctl *ctl, uint64_t n)
{
    shmring_t *p = NULL;
    int rc = shmring_open(name, SHMRING_PRODUCER, &p);
    if (rc != 0) {
        ctl->producer_rc = rc;
        _exit(2);
    }
    unsigned char buf[64];
    uint64_t seed = 0xdeadbeefull;
    for (uint64_t id = 0; id < n; id++) {
        if (id % 256 == 0) {
            uint64_t due = ctl->t_start + (uint64_t)((double)STREAM_NS * (double)id / (double)n);
            uint64_t now = h_now_ns();
            if (due > now)
                h_sleep_us((unsigned)((due - now) / 1000));
        }
        size_t len = 16 + h_rand(&seed) % 49;
        test_fill(buf, len, id);
        rc = shmring_push_wait(p, buf, len, 5000 * MS);
        if (rc != 0) {
            __atomic_store_n(&ctl->producer_rc, rc, __ATOMIC_RELAXED);
            _exit(3);
        }
        __atomic_store_n(&ctl->produced, id + 1, __ATOMIC_RELAXED);
    }
    shmring_close(p);
    _exit(0);
}

Test(crash, killed_consumers_never_wedge_the_ring, .timeout = 240)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("kill");
    shmring_t *obs = test_make(name, 64, 64, SHMRING_OBSERVER);
    uint64_t n = h_count(500000);
    size_t seen_size = n * sizeof(uint32_t);
    uint32_t *seen = test_shared_alloc(seen_size);
    struct crash_ctl *ctl = test_shared_alloc(sizeof *ctl);
    const unsigned deadline = 60;
    h_arm_deadline(deadline);
    unsigned child_alarm = h_sanitized() ? deadline * 6 : deadline;
    ctl->t_start = h_now_ns();

    pid_t prod = fork();
    cr_assert_geq(prod, 0);
    if (prod == 0) {
        alarm(child_alarm);
        crash_producer(name, ctl, n);
    }
    pid_t cons[LONG_CONS];
    for (int i = 0; i < LONG_CONS; i++) {
        cons[i] = fork();
        cr_assert_geq(cons[i], 0);
        if (cons[i] == 0) {
            alarm(child_alarm);
            crash_consumer(name, ctl, seen, n, 1000u + (uint64_t)i, 0);
        }
    }
    uint64_t seed = 0x600dull;
    int attached_kills = 0, kills_in_stream = 0;
    for (int k = 0; k < KILLS; k++) {
        uint32_t before = __atomic_load_n(&ctl->started, __ATOMIC_ACQUIRE);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            alarm(child_alarm);
            crash_consumer(name, ctl, seen, n, 5000u + (uint64_t)k, 1);
        }
        /* Mostly after the consumer attached, at its point in the stream;
         * sometimes while it attaches. */
        if (k % 8 != 7) {
            uint64_t t0 = h_now_ns();
            while (__atomic_load_n(&ctl->started, __ATOMIC_ACQUIRE) == before &&
                   h_now_ns() - t0 < 2000 * (uint64_t)MS)
                h_sleep_us(50);
            uint64_t due = ctl->t_start + STREAM_NS * (uint64_t)(k + 1) / (KILLS + 1);
            uint64_t now = h_now_ns();
            if (due > now)
                h_sleep_us((unsigned)((due - now) / 1000));
            h_sleep_us((unsigned)(h_rand(&seed) % 3000));
        } else {
            h_sleep_us((unsigned)(h_rand(&seed) % 300));
        }
        if (__atomic_load_n(&ctl->started, __ATOMIC_ACQUIRE) != before)
            attached_kills++;
        cr_assert_eq(kill(pid, SIGKILL), 0);
        int st = test_wait_child(pid);
        cr_assert(st == 128 + SIGKILL || st == 0, "short-lived consumer status %d", st);
        __atomic_fetch_add(&ctl->kills, 1, __ATOMIC_RELEASE);
        if (__atomic_load_n(&ctl->produced, __ATOMIC_RELAXED) < n)
            kills_in_stream++;
    }

    int pst = test_wait_child(prod);
    cr_assert_eq(pst, 0, "producer status %d (rc %d) after %llu of %llu messages: wedged", pst,
                 ctl->producer_rc, (unsigned long long)ctl->produced, (unsigned long long)n);
    for (int i = 0; i < LONG_CONS; i++) {
        int st = test_wait_child(cons[i]);
        cr_assert_eq(st, 0, "long-lived consumer %d status %d", i, st);
    }
    h_disarm_deadline();
    cr_assert_eq(ctl->bad, 0, "%u corrupt messages or bad return values (last %d)", ctl->bad,
                 ctl->consumer_rc);

    shmring_stats_t st;
    cr_assert_eq(shmring_stats(obs, &st), 0);
    uint64_t twice, never;
    h_tally(seen, n, &twice, &never);
    cr_log_info("kills %d (%d attached, %d during the stream), abandoned %llu, never seen %llu, "
                "popped %llu",
                KILLS, attached_kills, kills_in_stream, (unsigned long long)st.abandoned,
                (unsigned long long)never, (unsigned long long)st.popped);
    cr_assert_eq(st.pushed, n);
    cr_assert_eq(st.count, 0);
    cr_assert_eq(twice, 0, "%llu ids seen twice", (unsigned long long)twice);
    cr_assert_leq(never, st.abandoned, "%llu ids lost but only %llu abandoned",
                  (unsigned long long)never, (unsigned long long)st.abandoned);
    cr_assert_leq(st.abandoned, never + KILLS, "%llu abandoned, %llu never seen, %d kills",
                  (unsigned long long)st.abandoned, (unsigned long long)never, KILLS);
    cr_assert_eq(st.consumers, 0, "dead consumers still counted");
    cr_assert_eq(st.observers, 1);
    /* A consumer killed between taking a message and counting it leaves
     * popped one short: at most one per kill. */
    cr_assert_leq(st.popped, n);
    cr_assert_geq(st.popped + KILLS, n, "popped %llu of %llu", (unsigned long long)st.popped,
                  (unsigned long long)n);
    test_shared_free(seen, seen_size);
    test_shared_free(ctl, sizeof *ctl);
    shmring_close(obs);
    shmring_unlink(name);
}

/* ---- End of stream ------------------------------------------------------- */

struct eos_waiter {
    shmring_t *c;
    int claim;
    long rc;
    uint64_t elapsed;
};

static void *eos_wait(void *arg)
{
    struct eos_waiter *w = arg;
    unsigned char buf[64];
    shmring_msg_t m;
    uint64_t t0 = h_now_ns();
    w->rc = w->claim ? shmring_claim_wait(w->c, &m, -1)
                     : (long)shmring_pop_wait(w->c, buf, sizeof buf, -1);
    w->elapsed = h_now_ns() - t0;
    return NULL;
}

Test(crash, end_of_stream_after_close)
{
    const char *name = test_name("eos");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *c2 = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *c3 = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 3; i++)
        test_push_id(p, i, 32);
    h_arm_deadline(20);
    /* Consumers already asleep when the producer closes are woken at once. */
    struct eos_waiter w = {.c = c2, .claim = 0}, w3 = {.c = c3, .claim = 1};
    unsigned char buf[64];
    shmring_msg_t m;
    cr_assert_eq(shmring_pop(c2, buf, sizeof buf), 32);
    cr_assert_eq(shmring_claim(c3, &m), 0);
    cr_assert_eq(shmring_release(c3, &m), 0);
    pthread_t t, t3;
    cr_assert_eq(pthread_create(&t, NULL, eos_wait, &w), 0);
    /* c2 and c3 took ids 0 and 1; id 2 is left: wait until one waiter has it. */
    pthread_join(t, NULL);
    cr_assert_eq(w.rc, 32);
    cr_assert_eq(pthread_create(&t, NULL, eos_wait, &w), 0);
    cr_assert_eq(pthread_create(&t3, NULL, eos_wait, &w3), 0);
    h_sleep_us(100000);
    uint64_t t0 = h_now_ns();
    shmring_close(p);
    pthread_join(t, NULL);
    pthread_join(t3, NULL);
    uint64_t woke = h_now_ns() - t0;
    cr_assert_eq(w.rc, -EPIPE, "pop_wait: %ld", w.rc);
    cr_assert_eq(w3.rc, -EPIPE, "claim_wait: %ld", w3.rc);
    cr_assert_lt(woke, 50 * (uint64_t)MS, "waiters woke %llu ns after the close",
                 (unsigned long long)woke);
    /* Later calls: -EPIPE at once, whatever the timeout. */
    t0 = h_now_ns();
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EPIPE);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, -1), -EPIPE);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 5000 * MS), -EPIPE);
    cr_assert_eq(shmring_claim(c, &m), -EPIPE);
    cr_assert_eq(shmring_claim_wait(c, &m, -1), -EPIPE);
    cr_assert_lt(h_now_ns() - t0, 50 * (uint64_t)MS, "-EPIPE must not wait");
    h_disarm_deadline();
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.producer_closed, 1);
    cr_assert_eq(st.producer_alive, 0);
    shmring_close(c3);
    shmring_close(c2);
    shmring_close(c);
    shmring_unlink(name);
}

Test(crash, drain_before_end_of_stream)
{
    const char *name = test_name("drain");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 5; i++)
        test_push_id(p, i, 20 + i);
    shmring_close(p);
    unsigned char buf[64];
    shmring_msg_t m;
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, -1), 1);
    cr_assert_eq(shmring_claim_wait(c, &m, -1), 0);
    test_expect_id(m.data, (ssize_t)m.len, 2);
    cr_assert_eq(shmring_release(c, &m), 0);
    cr_assert_eq(shmring_claim(c, &m), 0);
    test_expect_id(m.data, (ssize_t)m.len, 3);
    cr_assert_eq(shmring_release(c, &m), 0);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, 1000 * MS), 4);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 1000 * MS), -EPIPE);
    /* A new producer reopens the stream. */
    shmring_t *p2 = test_open_as(name, SHMRING_PRODUCER);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "a producer is attached again");
    test_push_id(p2, 5, 30);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 5);
    shmring_close(p2);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EPIPE);
    shmring_close(c);
    shmring_unlink(name);
}

/* ---- A producer that dies without closing ------------------------------- */

Test(crash, dead_producer_ends_the_wait_then_a_new_one_takes_over)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("deadp");
    test_quiet_log();
    shmring_t *c = test_make(name, 8, 64, SHMRING_CONSUMER);
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    h_arm_deadline(30);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(h_sanitized() ? 180 : 30);
        shmring_t *p = NULL;
        if (shmring_open(name, SHMRING_PRODUCER, &p) != 0)
            _exit(2);
        unsigned char buf[64];
        for (uint64_t i = 0; i < 3; i++) {
            test_fill(buf, 40, i);
            if (shmring_push(p, buf, 40) != 0)
                _exit(3);
        }
        char x = 'r';
        if (write(ready[1], &x, 1) != 1)
            _exit(4);
        for (;;)
            pause(); /* killed here, holding the lease */
    }
    close(ready[1]);
    char x;
    cr_assert_eq(read(ready[0], &x, 1), 1);
    close(ready[0]);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.producer_pid, pid);
    cr_assert_eq(st.producer_alive, 1);
    cr_assert_eq(st.producer_closed, 0);
    uint64_t epoch = st.producer_epoch;
    shmring_t *p2 = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p2), -EBUSY, "the lease is held");

    unsigned char buf[64];
    for (uint64_t i = 0; i < 3; i++)
        test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, -1), i);
    /* Now asleep on an empty ring whose producer is alive; kill it. */
    struct eos_waiter w = {.c = c};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, eos_wait, &w), 0);
    h_sleep_us(50000);
    uint64_t t0 = h_now_ns();
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    pthread_join(t, NULL);
    uint64_t noticed = h_now_ns() - t0;
    cr_assert_eq(w.rc, -EPIPE, "pop_wait after the producer died: %ld", w.rc);
    cr_assert_lt(noticed, 2000 * (uint64_t)MS, "noticed after %llu ns",
                 (unsigned long long)noticed);
    cr_log_info("dead producer noticed after %.1f ms", noticed / 1e6);

    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.producer_alive, 0);
    cr_assert_eq(st.producer_closed, 0, "the producer died, it did not close");

    /* A new producer takes the lease over; the stream goes on. */
    shmring_t *p = test_open_as(name, SHMRING_PRODUCER);
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.producer_pid, getpid());
    cr_assert_eq(st.producer_alive, 1);
    cr_assert_gt(st.producer_epoch, epoch);
    test_push_id(p, 10, 40);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, 1000 * MS), 10);
    test_push_id(p, 11, 40);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, -1), 11);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 20 * MS), -ETIMEDOUT);
    h_disarm_deadline();
    shmring_close(p);
    shmring_close(c);
    shmring_unlink(name);
}

/* ---- Stats --------------------------------------------------------------- */

Test(crash, stats_after_a_scripted_sequence)
{
    const char *name = test_name("stats");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c1 = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *c2 = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.slots, 4);
    cr_assert_eq(st.slot_size, 64);
    cr_assert_eq(st.consumers, 2);
    cr_assert_eq(st.observers, 1);
    cr_assert_eq(st.producer_pid, getpid());
    cr_assert_eq(st.producer_alive, 1);
    cr_assert_eq(st.producer_closed, 0);
    cr_assert_eq(st.pushed + st.popped + st.bytes_pushed + st.bytes_popped, 0);
    cr_assert_eq(st.full_events + st.empty_events + st.dropped + st.abandoned, 0);
    cr_assert_eq(st.creator_pid, getpid());
    cr_assert_eq(st.backend, shmring_backend(p));

    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 16 + 10 * i); /* 16 + 26 + 36 + 46 = 124 bytes */
    unsigned char buf[64];
    test_fill(buf, 16, 9);
    cr_assert_eq(shmring_push(p, buf, 16), -EAGAIN);
    cr_assert_eq(shmring_push_wait(p, buf, 16, 5 * MS), -ETIMEDOUT);
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.pushed, 4);
    cr_assert_eq(st.bytes_pushed, 124);
    cr_assert_eq(st.count, 4);
    cr_assert_eq(st.full_events, 2);

    test_expect_id(buf, shmring_pop(c1, buf, sizeof buf), 0);
    test_expect_id(buf, shmring_pop(c1, buf, sizeof buf), 1);
    test_expect_id(buf, shmring_pop(c2, buf, sizeof buf), 2);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c2, &m), 0);
    cr_assert_eq(shmring_release(c2, &m), 0);
    cr_assert_eq(shmring_pop(c1, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(shmring_pop_wait(c2, buf, sizeof buf, 5 * MS), -ETIMEDOUT);
    cr_assert_eq(shmring_claim(c2, &m), -EAGAIN);
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.popped, 4);
    cr_assert_eq(st.bytes_popped, 124);
    cr_assert_eq(st.count, 0);
    cr_assert_eq(st.empty_events, 3);

    /* A consumer that leaves keeps its counters in the totals. */
    shmring_close(c1);
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.consumers, 1);
    cr_assert_eq(st.popped, 4);
    cr_assert_eq(st.bytes_popped, 124);
    cr_assert_eq(st.empty_events, 3);

    shmring_close(p);
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.producer_closed, 1);
    cr_assert_eq(st.producer_alive, 0);
    cr_assert_eq(st.pushed, 4);
    shmring_close(c2);
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.consumers, 0);
    cr_assert_eq(st.observers, 1);
    cr_assert_eq(st.popped, 4);
    shmring_close(o);
    shmring_unlink(name);
}

Test(crash, dead_consumer_entry_reclaimed_with_its_counters)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("deadc");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    for (uint64_t i = 0; i < 5; i++)
        test_push_id(p, i, 20); /* 100 bytes */
    h_arm_deadline(30);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(30);
        shmring_t *c = NULL;
        if (shmring_open(name, SHMRING_CONSUMER, &c) != 0)
            _exit(2);
        unsigned char buf[64];
        shmring_msg_t m;
        if (shmring_pop(c, buf, sizeof buf) != 20 || shmring_pop(c, buf, sizeof buf) != 20)
            _exit(3);
        if (shmring_claim(c, &m) != 0)
            _exit(4);
        raise(SIGKILL); /* dies holding a claim, without closing */
        _exit(5);
    }
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    h_disarm_deadline();
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.consumers, 0, "the dead consumer is still counted");
    cr_assert_eq(st.popped, 3, "the dead consumer's counters were lost");
    cr_assert_eq(st.bytes_popped, 60);
    cr_assert_eq(st.abandoned, 1);
    cr_assert_eq(st.count, 2);
    /* Its claimed slot is free again: the ring takes 6 more (8 in all). */
    for (uint64_t i = 5; i < 11; i++)
        test_push_id(p, i, 20);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64];
    for (uint64_t i = 3; i < 11; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.consumers, 1);
    cr_assert_eq(st.popped, 11);
    cr_assert_eq(st.abandoned, 1, "counted once");
    shmring_close(c);
    shmring_close(o);
    shmring_close(p);
    shmring_unlink(name);
}
