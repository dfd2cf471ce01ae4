/* Blocking waits: timeouts, wake-ups, signals, strategies, no lost wake-up. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "ring.h"
#include "wait.h"

#define MS 1000000LL

static void fill_ring(shmring_t *p, uint64_t first)
{
    for (uint32_t i = 0; i < shmring_slots(p); i++)
        test_push_id(p, first + i, 32);
    unsigned char buf[32];
    test_fill(buf, sizeof buf, 999);
    cr_assert_eq(shmring_push(p, buf, sizeof buf), -EAGAIN);
}

/* A timeout of 0 taken for "forever" would hang: the whole-test deadline catches it. */
Test(wait, timeout_zero_is_the_plain_call, .timeout = 20)
{
    const char *name = test_name("w0");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64];
    shmring_msg_t m;
    void *payload = NULL;

    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 0), -EAGAIN);
    cr_assert_eq(shmring_claim_wait(c, &m, 0), -EAGAIN);
    fill_ring(p, 0);
    unsigned char msg[32];
    test_fill(msg, sizeof msg, 7);
    cr_assert_eq(shmring_push_wait(p, msg, sizeof msg, 0), -EAGAIN);
    cr_assert_eq(shmring_reserve_wait(p, 16, &payload, 0), -EAGAIN);

    ssize_t n = shmring_pop_wait(c, buf, sizeof buf, 0);
    test_expect_id(buf, n, 0);
    cr_assert_eq(shmring_claim_wait(c, &m, 0), 0);
    test_expect_id(m.data, (ssize_t)m.len, 1);
    cr_assert_eq(shmring_release(c, &m), 0);

    cr_assert_eq(shmring_push_wait(p, msg, sizeof msg, 0), 0);
    cr_assert_eq(shmring_reserve_wait(p, 32, &payload, 0), 0);
    test_fill(payload, 32, 8);
    cr_assert_eq(shmring_commit(p, 32), 0);
    for (uint64_t want = 2; want < 4; want++)
        test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, 0), want);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, 0), 7);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, 0), 8);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 0), -EAGAIN);

    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, errors_of_the_plain_calls)
{
    const char *name = test_name("werr");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[128] = {0};
    shmring_msg_t m;
    void *payload;
    cr_assert_eq(shmring_push_wait(c, buf, 8, 10 * MS), -EPERM);
    cr_assert_eq(shmring_reserve_wait(c, 8, &payload, 10 * MS), -EPERM);
    cr_assert_eq(shmring_pop_wait(p, buf, sizeof buf, 10 * MS), -EPERM);
    cr_assert_eq(shmring_claim_wait(p, &m, 10 * MS), -EPERM);
    cr_assert_eq(shmring_push_wait(p, buf, 65, 10 * MS), -EMSGSIZE);
    cr_assert_eq(shmring_reserve_wait(p, 65, &payload, 10 * MS), -EMSGSIZE);
    cr_assert_eq(shmring_reserve_wait(p, 8, NULL, 10 * MS), -EINVAL);
    cr_assert_eq(shmring_push_wait(p, NULL, 8, 10 * MS), -EINVAL);
    cr_assert_eq(shmring_pop_wait(c, NULL, 8, 10 * MS), -EINVAL);
    cr_assert_eq(shmring_claim_wait(c, NULL, 10 * MS), -EINVAL);
    cr_assert_eq(shmring_push_wait(NULL, buf, 8, 10 * MS), -EINVAL);
    cr_assert_eq(shmring_pop_wait(NULL, buf, 8, 10 * MS), -EINVAL);
    /* A message too big for the buffer stays, even when waiting. */
    test_push_id(p, 1, 40);
    cr_assert_eq(shmring_pop_wait(c, buf, 39, 10 * MS), -EMSGSIZE);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, 10 * MS), 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* Runs one waiting call with `timeout_ns` on an empty (full) ring and checks
 * -ETIMEDOUT after at least that long and well under a second more. */
static void expect_timeout(const char *what, shmring_t *p, shmring_t *c, int op, int64_t timeout)
{
    unsigned char buf[64];
    shmring_msg_t m;
    void *payload;
    long rc = 0;
    uint64_t t0 = h_now_ns();
    switch (op) {
    case 0:
        rc = (long)shmring_pop_wait(c, buf, sizeof buf, timeout);
        break;
    case 1:
        rc = shmring_claim_wait(c, &m, timeout);
        break;
    case 2:
        test_fill(buf, 32, 1);
        rc = shmring_push_wait(p, buf, 32, timeout);
        break;
    default:
        rc = shmring_reserve_wait(p, 32, &payload, timeout);
        break;
    }
    uint64_t el = h_now_ns() - t0;
    cr_assert_eq(rc, -ETIMEDOUT, "%s: rc %ld", what, rc);
    cr_assert_geq(el, (uint64_t)timeout, "%s returned after %llu ns, timeout %lld ns", what,
                  (unsigned long long)el, (long long)timeout);
    /* A bound on the promise (the call ends), generous for sanitizer builds. */
    uint64_t slack = (h_sanitized() ? 5000 : 1000) * (uint64_t)MS;
    cr_assert_lt(el, (uint64_t)timeout + slack, "%s took %llu ns", what, (unsigned long long)el);
}

Test(wait, positive_timeout_expires)
{
    const char *name = test_name("wto");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    expect_timeout("pop_wait", p, c, 0, 100 * MS);
    expect_timeout("claim_wait", p, c, 1, 100 * MS);
    expect_timeout("pop_wait 1 ns", p, c, 0, 1);
    fill_ring(p, 0);
    expect_timeout("push_wait", p, c, 2, 100 * MS);
    expect_timeout("reserve_wait", p, c, 3, 100 * MS);
    expect_timeout("push_wait 1 ns", p, c, 2, 1);
    /* The failed waits changed nothing: the four messages are intact. */
    unsigned char buf[64];
    for (uint64_t i = 0; i < 4; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- A waiter thread ---------------------------------------------------- */

enum op { OP_POP, OP_CLAIM, OP_PUSH, OP_RESERVE };

struct waiter {
    shmring_t *r;
    enum op op;
    int64_t timeout;
    uint64_t id; /* pushed or reserved id */
    pthread_t thread;
    int started;
    int done;
    long rc;
    uint64_t got; /* popped or claimed id */
    int intact;
    uint64_t elapsed;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    unsigned char buf[64];
    shmring_msg_t m;
    void *payload;
    __atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
    uint64_t t0 = h_now_ns();
    switch (w->op) {
    case OP_POP:
        w->rc = (long)shmring_pop_wait(w->r, buf, sizeof buf, w->timeout);
        if (w->rc >= 0)
            w->intact = test_check(buf, (size_t)w->rc, &w->got);
        break;
    case OP_CLAIM:
        w->rc = shmring_claim_wait(w->r, &m, w->timeout);
        if (w->rc == 0) {
            w->intact = test_check(m.data, m.len, &w->got);
            w->rc = shmring_release(w->r, &m) == 0 ? (long)m.len : -1000;
        }
        break;
    case OP_PUSH:
        test_fill(buf, 32, w->id);
        w->rc = shmring_push_wait(w->r, buf, 32, w->timeout);
        break;
    case OP_RESERVE:
        w->rc = shmring_reserve_wait(w->r, 32, &payload, w->timeout);
        if (w->rc == 0) {
            test_fill(payload, 32, w->id);
            w->rc = shmring_commit(w->r, 32);
        }
        break;
    }
    w->elapsed = h_now_ns() - t0;
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void waiter_start(struct waiter *w)
{
    cr_assert_eq(pthread_create(&w->thread, NULL, waiter_main, w), 0);
    while (!__atomic_load_n(&w->started, __ATOMIC_ACQUIRE))
        h_sleep_us(100);
}

static int waiter_done(struct waiter *w)
{
    return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
}

/* A consumer waiting forever gets the message another thread pushes later. */
static void wait_forever_for_push(enum op op)
{
    const char *name = test_name("wfp");
    shmring_t *p = test_make(name, 4, 64, 0);
    struct waiter w = {.r = test_open_as(name, SHMRING_CONSUMER), .op = op, .timeout = -1};
    h_arm_deadline(20);
    waiter_start(&w);
    h_sleep_us(100000);
    cr_assert_not(waiter_done(&w), "the waiter returned %ld from an empty ring", w.rc);
    test_push_id(p, 42, 40);
    pthread_join(w.thread, NULL);
    h_disarm_deadline();
    cr_assert_eq(w.rc, 40, "rc %ld", w.rc);
    cr_assert(w.intact);
    cr_assert_eq(w.got, 42);
    cr_assert_geq(w.elapsed, 90 * (uint64_t)MS);
    shmring_close(w.r);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, pop_wait_forever_woken_by_push)
{
    wait_forever_for_push(OP_POP);
}

Test(wait, claim_wait_forever_woken_by_push)
{
    wait_forever_for_push(OP_CLAIM);
}

/* A producer waiting forever on a full ring is woken by a consumer popping. */
static void wait_forever_for_pop(enum op op, int claim)
{
    const char *name = test_name("wfs");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    fill_ring(p, 0);
    struct waiter w = {.r = p, .op = op, .timeout = -1, .id = 100};
    h_arm_deadline(20);
    waiter_start(&w);
    h_sleep_us(100000);
    cr_assert_not(waiter_done(&w), "the producer returned %ld from a full ring", w.rc);
    unsigned char buf[64];
    if (claim) {
        shmring_msg_t m;
        cr_assert_eq(shmring_claim(c, &m), 0);
        test_expect_id(m.data, (ssize_t)m.len, 0);
        h_sleep_us(50000);
        /* The claimed slot is still held: the producer keeps waiting. */
        cr_assert_not(waiter_done(&w), "the producer overwrote a claimed slot (rc %ld)", w.rc);
        cr_assert_eq(shmring_release(c, &m), 0);
    } else {
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    }
    pthread_join(w.thread, NULL);
    h_disarm_deadline();
    cr_assert_eq(w.rc, 0, "rc %ld", w.rc);
    cr_assert_geq(w.elapsed, 90 * (uint64_t)MS);
    for (uint64_t i = 1; i < 4; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 100);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, push_wait_forever_woken_by_pop)
{
    wait_forever_for_pop(OP_PUSH, 0);
}

Test(wait, reserve_wait_forever_woken_by_pop)
{
    wait_forever_for_pop(OP_RESERVE, 0);
}

Test(wait, push_wait_forever_woken_by_release)
{
    wait_forever_for_pop(OP_PUSH, 1);
}

/* ---- Signals ------------------------------------------------------------ */

static int usr1_count;

static void on_usr1(int sig)
{
    (void)sig;
    __atomic_fetch_add(&usr1_count, 1, __ATOMIC_RELAXED);
}

static void install_usr1(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: an interrupted futex wait returns EINTR */
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    __atomic_store_n(&usr1_count, 0, __ATOMIC_RELAXED);
}

static void pester(struct waiter *w, int times)
{
    int before = __atomic_load_n(&usr1_count, __ATOMIC_RELAXED);
    for (int i = 0; i < times; i++) {
        h_sleep_us(10000);
        cr_assert_not(waiter_done(w), "a signal ended the wait: rc %ld", w->rc);
        cr_assert_eq(pthread_kill(w->thread, SIGUSR1), 0);
    }
    h_sleep_us(20000);
    cr_assert_geq(__atomic_load_n(&usr1_count, __ATOMIC_RELAXED), before + 1,
                  "no signal reached the waiter");
    cr_assert_not(waiter_done(w), "a signal ended the wait: rc %ld", w->rc);
}

static void signals_on_consumer(enum op op, uint32_t strategy, uint32_t spins)
{
    install_usr1();
    const char *name = test_name("wsig");
    shmring_t *p = test_make(name, 4, 64, 0);
    struct waiter w = {.r = test_open_as(name, SHMRING_CONSUMER), .op = op, .timeout = -1};
    cr_assert_eq(shmring_set_wait(w.r, (int)strategy, spins), 0);
    h_arm_deadline(20);
    waiter_start(&w);
    pester(&w, 10);
    test_push_id(p, 5, 24);
    pthread_join(w.thread, NULL);
    h_disarm_deadline();
    cr_assert_eq(w.rc, 24, "rc %ld (-EINTR is %d)", w.rc, -EINTR);
    cr_assert(w.intact);
    cr_assert_eq(w.got, 5);
    shmring_close(w.r);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, signal_does_not_interrupt_pop_wait)
{
    signals_on_consumer(OP_POP, SHMRING_WAIT_SLEEP, 0);
}

Test(wait, signal_does_not_interrupt_claim_wait)
{
    signals_on_consumer(OP_CLAIM, SHMRING_WAIT_SLEEP, 0);
}

Test(wait, signal_does_not_interrupt_yield_wait)
{
    signals_on_consumer(OP_POP, SHMRING_WAIT_YIELD, 0);
}

Test(wait, signal_does_not_interrupt_push_wait)
{
    install_usr1();
    const char *name = test_name("wsigp");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    fill_ring(p, 0);
    cr_assert_eq(shmring_set_wait(p, SHMRING_WAIT_SLEEP, 0), 0);
    struct waiter w = {.r = p, .op = OP_PUSH, .timeout = -1, .id = 9};
    h_arm_deadline(20);
    waiter_start(&w);
    pester(&w, 10);
    unsigned char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
    pthread_join(w.thread, NULL);
    h_disarm_deadline();
    cr_assert_eq(w.rc, 0, "rc %ld (-EINTR is %d)", w.rc, -EINTR);
    for (uint64_t i = 1; i < 4; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 9);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* A timed wait pestered by signals still runs to its full timeout. */
Test(wait, signal_does_not_shorten_timed_wait)
{
    install_usr1();
    const char *name = test_name("wsigt");
    shmring_t *p = test_make(name, 4, 64, 0);
    struct waiter w = {
        .r = test_open_as(name, SHMRING_CONSUMER), .op = OP_POP, .timeout = 400 * MS};
    h_arm_deadline(20);
    waiter_start(&w);
    pester(&w, 10);
    pthread_join(w.thread, NULL);
    h_disarm_deadline();
    cr_assert_eq(w.rc, -ETIMEDOUT, "rc %ld", w.rc);
    cr_assert_geq(w.elapsed, 400 * (uint64_t)MS);
    cr_assert_lt(w.elapsed, 1400 * (uint64_t)MS);
    shmring_close(w.r);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Strategies --------------------------------------------------------- */

Test(wait, set_wait_rejects_bad_arguments)
{
    const char *name = test_name("wset");
    shmring_t *p = test_make(name, 4, 64, 0);
    cr_assert_eq(shmring_set_wait(NULL, SHMRING_WAIT_SLEEP, 10), -EINVAL);
    cr_assert_eq(shmring_set_wait(p, 0, 10), -EINVAL);
    cr_assert_eq(shmring_set_wait(p, 4, 10), -EINVAL);
    cr_assert_eq(shmring_set_wait(p, -1, 10), -EINVAL);
    cr_assert_eq(shmring_set_wait(p, SHMRING_WAIT_SPIN, 0), 0);
    cr_assert_eq(shmring_set_wait(p, SHMRING_WAIT_YIELD, 100), 0);
    cr_assert_eq(shmring_set_wait(p, SHMRING_WAIT_SLEEP, SHMRING_DEFAULT_SPINS), 0);
    shmring_close(p);
    shmring_unlink(name);
}

struct strat_consumer {
    shmring_t *r;
    uint64_t n;
    uint64_t next; /* next id expected (one consumer: strict order) */
    uint64_t bad;
    long last_rc;
};

static void *strat_consume(void *arg)
{
    struct strat_consumer *sc = arg;
    unsigned char buf[64];
    while (sc->next < sc->n) {
        ssize_t len = shmring_pop_wait(sc->r, buf, sizeof buf, -1);
        uint64_t id;
        if (len < 0) {
            sc->last_rc = (long)len;
            sc->bad++;
            return NULL;
        }
        if (!test_check(buf, (size_t)len, &id) || id != sc->next)
            sc->bad++;
        sc->next++;
    }
    return NULL;
}

/* One strategy end to end: timeouts both ways, then a stream in which both
 * sides wait (tiny ring, pauses on each side). */
static void strategy_run(int strategy, uint32_t spins)
{
    const char *name = test_name("wstr");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    cr_assert_eq(shmring_set_wait(p, strategy, spins), 0);
    cr_assert_eq(shmring_set_wait(c, strategy, spins), 0);
    h_arm_deadline(30);
    expect_timeout("pop_wait", p, c, 0, 20 * MS);
    expect_timeout("claim_wait", p, c, 1, 20 * MS);

    struct strat_consumer sc = {.r = c, .n = h_count(4000)};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, strat_consume, &sc), 0);
    unsigned char buf[64];
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)strategy ^ spins;
    for (uint64_t id = 0; id < sc.n; id++) {
        size_t len = 16 + h_rand(&seed) % 48;
        test_fill(buf, len, id);
        int rc = shmring_push_wait(p, buf, len, -1);
        cr_assert_eq(rc, 0, "push_wait: %d", rc);
        if (h_rand(&seed) % 64 == 0)
            h_sleep_us((unsigned)(h_rand(&seed) % 300));
    }
    pthread_join(t, NULL);
    cr_assert_eq(sc.bad, 0, "%llu bad messages, last rc %ld", (unsigned long long)sc.bad,
                 sc.last_rc);
    cr_assert_eq(sc.next, sc.n);

    fill_ring(p, 0);
    expect_timeout("push_wait", p, c, 2, 20 * MS);
    expect_timeout("reserve_wait", p, c, 3, 20 * MS);
    h_disarm_deadline();
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, strategy_spin_0)
{
    strategy_run(SHMRING_WAIT_SPIN, 0);
}

Test(wait, strategy_spin_100)
{
    strategy_run(SHMRING_WAIT_SPIN, 100);
}

Test(wait, strategy_yield_0)
{
    strategy_run(SHMRING_WAIT_YIELD, 0);
}

Test(wait, strategy_yield_100)
{
    strategy_run(SHMRING_WAIT_YIELD, 100);
}

Test(wait, strategy_sleep_0)
{
    strategy_run(SHMRING_WAIT_SLEEP, 0);
}

Test(wait, strategy_sleep_100)
{
    strategy_run(SHMRING_WAIT_SLEEP, 100);
}

/* ---- No lost wake-up ---------------------------------------------------- */

#define STOP_ID UINT64_MAX
#define NCONS   3

struct sleeper {
    const char *name; /* opened by the consumer itself */
    int fenced;       /* open with SHMRING_NO_MEMBARRIER set (processes only) */
    uint32_t *seen;
    uint64_t n;
    uint64_t got, bad;
    long last_rc;
};

/* Consumer loop shared by the thread and the process variants: sleeps as
 * soon as the ring is empty (SLEEP, no spinning), stops at a stop message. */
static void sleeper_run(struct sleeper *s)
{
    shmring_t *c = NULL;
    if (s->fenced) {
        test_quiet_log();
        setenv("SHMRING_NO_MEMBARRIER", "1", 1);
    }
    int rc = shmring_open(s->name, SHMRING_CONSUMER, &c);
    if (rc < 0) {
        s->last_rc = rc;
        s->bad++;
        return;
    }
    shmring_set_wait(c, SHMRING_WAIT_SLEEP, 0);
    unsigned char buf[64];
    for (;;) {
        ssize_t len = shmring_pop_wait(c, buf, sizeof buf, -1);
        if (len < 0) {
            s->last_rc = (long)len;
            s->bad++;
            break;
        }
        uint64_t id;
        if (len == 8) {
            memcpy(&id, buf, 8);
            if (id == STOP_ID)
                break;
        }
        if (!test_check(buf, (size_t)len, &id)) {
            s->bad++;
            continue;
        }
        h_mark(s->seen, s->n, id, &s->bad);
        s->got++;
    }
    shmring_close(c);
}

static void *sleeper_thread(void *arg)
{
    sleeper_run(arg);
    return NULL;
}

/* Bursts with random pauses, so that consumers keep falling asleep. */
static void bursty_produce(shmring_t *p, uint64_t n, uint64_t seed)
{
    cr_assert_eq(shmring_set_wait(p, SHMRING_WAIT_SLEEP, 0), 0);
    unsigned char buf[64];
    uint64_t id = 0;
    while (id < n) {
        uint64_t burst = 1 + h_rand(&seed) % 32;
        for (uint64_t k = 0; k < burst && id < n; k++, id++) {
            size_t len = 16 + h_rand(&seed) % 48;
            test_fill(buf, len, id);
            int rc = shmring_push_wait(p, buf, len, -1);
            cr_assert_eq(rc, 0, "push_wait: %d", rc);
        }
        uint64_t x = h_rand(&seed) % 8;
        if (x < 3)
            h_sleep_us((unsigned)(h_rand(&seed) % 100));
        else if (x < 5)
            sched_yield();
    }
    uint64_t stop = STOP_ID;
    for (int i = 0; i < NCONS; i++)
        cr_assert_eq(shmring_push_wait(p, &stop, sizeof stop, -1), 0);
}

Test(wait, no_lost_wakeup_threads)
{
    const char *name = test_name("wlost");
    shmring_t *p = test_make(name, 64, 64, 0);
    uint64_t n = h_count(200000);
    uint32_t *seen = calloc(n, sizeof *seen);
    cr_assert_not_null(seen);
    struct sleeper s[NCONS];
    pthread_t t[NCONS];
    h_arm_deadline(60);
    for (int i = 0; i < NCONS; i++) {
        s[i] = (struct sleeper){.name = name, .seen = seen, .n = n};
        cr_assert_eq(pthread_create(&t[i], NULL, sleeper_thread, &s[i]), 0);
    }
    bursty_produce(p, n, 0x1234567ull);
    uint64_t total = 0;
    for (int i = 0; i < NCONS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(s[i].bad, 0, "consumer %d: %llu bad, last rc %ld", i,
                     (unsigned long long)s[i].bad, s[i].last_rc);
        total += s[i].got;
    }
    h_disarm_deadline();
    cr_assert_eq(total, n);
    h_check_exactly_once(seen, n);
    free(seen);
    shmring_close(p);
    shmring_unlink(name);
}

/* Consumers in processes; the first `fenced` of them cannot use membarrier. */
static void lost_wakeup_processes(int fenced)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("wlostp");
    shmring_t *p = test_make(name, 64, 64, 0);
    uint64_t n = h_count(200000);
    size_t seen_size = n * sizeof(uint32_t);
    uint32_t *seen = test_shared_alloc(seen_size);
    struct sleeper *s = test_shared_alloc(NCONS * sizeof *s);
    pid_t pid[NCONS];
    h_arm_deadline(60);
    for (int i = 0; i < NCONS; i++) {
        s[i] = (struct sleeper){.name = name, .fenced = i < fenced, .seen = seen, .n = n};
        pid[i] = fork();
        cr_assert_geq(pid[i], 0);
        if (pid[i] == 0) {
            alarm(h_sanitized() ? 360 : 60);
            sleeper_run(&s[i]);
            _exit(0);
        }
    }
    bursty_produce(p, n, 0x7654321ull);
    uint64_t total = 0;
    for (int i = 0; i < NCONS; i++) {
        cr_assert_eq(test_wait_child(pid[i]), 0);
        cr_assert_eq(s[i].bad, 0, "consumer %d: %llu bad, last rc %ld", i,
                     (unsigned long long)s[i].bad, s[i].last_rc);
        total += s[i].got;
    }
    h_disarm_deadline();
    cr_assert_eq(total, n);
    h_check_exactly_once(seen, n);
    test_shared_free(seen, seen_size);
    test_shared_free(s, NCONS * sizeof *s);
    if (fenced > 0) {
        shmring_stats_t st;
        cr_assert_eq(shmring_stats(p, &st), 0);
        cr_assert_eq(st.wake, SHMRING_WAKE_EXCHANGE);
    }
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, no_lost_wakeup_processes)
{
    lost_wakeup_processes(0);
}

/* One consumer cannot use membarrier (it opens with SHMRING_NO_MEMBARRIER):
 * the ring turns to the exchange path while the producer pushes. */
Test(wait, no_lost_wakeup_processes_one_fenced)
{
    lost_wakeup_processes(1);
}

/* Producer side: a slow, bursty consumer keeps the producer asleep on a
 * full ring; every wake-up must arrive. */
struct slow_consumer {
    shmring_t *r;
    int zerocopy; /* claim_wait + release instead of pop_wait */
    uint64_t n, next, bad;
    long last_rc;
};

static ssize_t slow_take(struct slow_consumer *sc, unsigned char *buf, size_t cap)
{
    if (!sc->zerocopy)
        return shmring_pop_wait(sc->r, buf, cap, -1);
    shmring_msg_t m;
    int rc = shmring_claim_wait(sc->r, &m, -1);
    if (rc < 0)
        return rc;
    ssize_t len = shmring_msg_copy(&m, buf, cap);
    rc = shmring_release(sc->r, &m);
    return rc < 0 ? rc : len;
}

static void *slow_consume(void *arg)
{
    struct slow_consumer *sc = arg;
    uint64_t seed = 0xabcdefull;
    unsigned char buf[64];
    while (sc->next < sc->n) {
        uint64_t burst = 1 + h_rand(&seed) % 16;
        for (uint64_t k = 0; k < burst && sc->next < sc->n; k++) {
            ssize_t len = slow_take(sc, buf, sizeof buf);
            uint64_t id;
            if (len < 0) {
                sc->last_rc = (long)len;
                sc->bad++;
                return NULL;
            }
            if (!test_check(buf, (size_t)len, &id) || id != sc->next)
                sc->bad++;
            sc->next++;
        }
        if (h_rand(&seed) % 4 == 0)
            h_sleep_us((unsigned)(h_rand(&seed) % 100));
    }
    return NULL;
}

/*
 * fenced_producer: the ring is created by its consumer and the producer
 * opens it with SHMRING_NO_MEMBARRIER set, so the producer cannot use
 * membarrier while the consumer's releases start on the asymmetric path.
 */
static void lost_wakeup_producer_side(int zerocopy, int fenced_producer)
{
    const char *name = test_name("wlostw");
    shmring_t *p, *c;
    if (fenced_producer) {
        c = test_make(name, 8, 64, SHMRING_CONSUMER);
        test_quiet_log();
        setenv("SHMRING_NO_MEMBARRIER", "1", 1);
        p = test_open_as(name, SHMRING_PRODUCER);
        unsetenv("SHMRING_NO_MEMBARRIER");
    } else {
        p = test_make(name, 8, 64, 0);
        c = test_open_as(name, SHMRING_CONSUMER);
    }
    cr_assert_eq(shmring_set_wait(p, SHMRING_WAIT_SLEEP, 0), 0);
    struct slow_consumer sc = {.r = c, .zerocopy = zerocopy, .n = h_count(50000)};
    cr_assert_eq(shmring_set_wait(sc.r, SHMRING_WAIT_SLEEP, 0), 0);
    h_arm_deadline(60);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, slow_consume, &sc), 0);
    unsigned char buf[64];
    uint64_t seed = 0x5555ull;
    for (uint64_t id = 0; id < sc.n; id++) {
        size_t len = 16 + h_rand(&seed) % 48;
        test_fill(buf, len, id);
        int rc = shmring_push_wait(p, buf, len, -1);
        cr_assert_eq(rc, 0, "push_wait: %d", rc);
    }
    pthread_join(t, NULL);
    h_disarm_deadline();
    cr_assert_eq(sc.bad, 0, "%llu bad, last rc %ld", (unsigned long long)sc.bad, sc.last_rc);
    cr_assert_eq(sc.next, sc.n);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, sc.n);
    cr_assert_eq(st.popped, sc.n);
    if (fenced_producer)
        cr_assert_eq(st.wake, SHMRING_WAKE_EXCHANGE);
    shmring_close(sc.r);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, no_lost_wakeup_producer_side)
{
    lost_wakeup_producer_side(0, 0);
}

/* Woken by release (Z3) instead of pop (C3). */
Test(wait, no_lost_wakeup_producer_side_release)
{
    lost_wakeup_producer_side(1, 0);
}

Test(wait, no_lost_wakeup_producer_side_fenced_producer)
{
    lost_wakeup_producer_side(1, 1);
}

/* ---- Which wake-up path a ring uses -------------------------------------- */

static int env_forces_exchange(void)
{
    const char *v = getenv("SHMRING_NO_MEMBARRIER");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static uint32_t wake_of(shmring_t *r)
{
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(r, &st), 0);
    return st.wake;
}

Test(wait, wake_path_of_a_new_ring)
{
    const char *name = test_name("wpath");
    shmring_t *p = test_make(name, 8, 64, 0);
    uint32_t want = SHMRING_WAKE_MEMBARRIER;
    if (env_forces_exchange() ||
        shmring__membarrier_register(test_heap_forced() ? SHMRING__BARRIER_PRIVATE
                                                        : SHMRING__BARRIER_GLOBAL) < 0)
        want = SHMRING_WAKE_EXCHANGE;
    cr_assert_eq(wake_of(p), want);
    /* An observer never changes it, even one that could not use membarrier. */
    setenv("SHMRING_NO_MEMBARRIER", "1", 1);
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    unsetenv("SHMRING_NO_MEMBARRIER");
    cr_assert_eq(wake_of(o), want);
    shmring_close(o);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, create_flag_forces_the_exchange_path)
{
    const char *name = test_name("wflag");
    shmring_t *p = test_make(name, 8, 64, SHMRING_NO_MEMBARRIER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    cr_assert_eq(wake_of(p), SHMRING_WAKE_EXCHANGE);
    cr_assert_eq(wake_of(c), SHMRING_WAKE_EXCHANGE);
    /* The flag is not one of the ring's stored flags. */
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.flags & SHMRING_NO_MEMBARRIER, 0);
    /* It is a create flag only. */
    shmring_t *x = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_NO_MEMBARRIER, &x), -EINVAL);
    cr_assert_null(x);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(wait, env_forces_the_exchange_path_at_create)
{
    const char *name = test_name("wenv");
    setenv("SHMRING_NO_MEMBARRIER", "1", 1);
    shmring_t *p = test_make(name, 8, 64, 0);
    unsetenv("SHMRING_NO_MEMBARRIER");
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    cr_assert_eq(wake_of(c), SHMRING_WAKE_EXCHANGE);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    /* "0" and "" do not force it. */
    const char *vals[] = {"0", ""};
    for (int i = 0; i < 2; i++) {
        if (env_forces_exchange() || shmring__membarrier_register(SHMRING__BARRIER_GLOBAL) < 0)
            break;
        name = test_name("wenv0");
        setenv("SHMRING_NO_MEMBARRIER", vals[i], 1);
        p = test_make(name, 8, 64, SHMRING_FORCE_MEMFD);
        unsetenv("SHMRING_NO_MEMBARRIER");
        cr_assert_eq(wake_of(p), SHMRING_WAKE_MEMBARRIER, "value \"%s\"", vals[i]);
        shmring_close(p);
        shmring_unlink(name);
    }
}

/* A consumer that cannot use membarrier turns the ring to the exchange path
 * for good; messages keep flowing both ways across the switch. */
Test(wait, fenced_opener_turns_the_ring)
{
    const char *name = test_name("wturn");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c1 = test_open_as(name, SHMRING_CONSUMER);
    uint32_t before = wake_of(p);
    test_push_id(p, 1, 32);
    test_quiet_log();
    setenv("SHMRING_NO_MEMBARRIER", "1", 1);
    shmring_t *c2 = test_open_as(name, SHMRING_CONSUMER);
    unsetenv("SHMRING_NO_MEMBARRIER");
    cr_assert(before == SHMRING_WAKE_MEMBARRIER || before == SHMRING_WAKE_EXCHANGE);
    cr_assert_eq(wake_of(p), SHMRING_WAKE_EXCHANGE);
    cr_assert_eq(wake_of(c1), SHMRING_WAKE_EXCHANGE);
    test_push_id(p, 2, 32);
    unsigned char buf[64];
    test_expect_id(buf, shmring_pop_wait(c2, buf, sizeof buf, 100 * MS), 1);
    test_expect_id(buf, shmring_pop_wait(c1, buf, sizeof buf, 100 * MS), 2);
    shmring_close(c2);
    /* Still the exchange path after the fenced consumer left. */
    cr_assert_eq(wake_of(p), SHMRING_WAKE_EXCHANGE);
    shmring_close(c1);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- The switch to the exchange path, seen in the segment ---------------- */

/* A read-only view of a named ring's shared lines. */
static const struct shmring__ring_shared *map_ring(const char *name, void **map)
{
    const char *dir = getenv("SHMRING_SHM_DIR");
    int fd = open(test_seg_path(dir != NULL && dir[0] ? dir : "/dev/shm", name), O_RDONLY);
    cr_assert_geq(fd, 0);
    *map = mmap(NULL, SHMRING__HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    cr_assert_neq(*map, MAP_FAILED);
    return (const struct shmring__ring_shared *)(const void *)((const struct shmring__hdr *)*map)
        ->object;
}

static uint32_t word_of(const uint32_t *w)
{
    return __atomic_load_n(w, __ATOMIC_ACQUIRE);
}

/* D1, F1, F2: a fenced opener sets FENCED in both words; the producer's next
 * push fences and sets ACK; a later producer finds FENCED at once. */
Test(wait, fenced_opener_flags_and_producer_ack)
{
    if (test_heap_forced() || env_forces_exchange() ||
        shmring__membarrier_register(SHMRING__BARRIER_GLOBAL) < 0)
        cr_skip_test("needs named shm and membarrier");
    const char *name = test_name("wack");
    shmring_t *p = test_make(name, 8, 64, 0);
    void *map;
    const struct shmring__ring_shared *sh = map_ring(name, &map);
    const uint32_t flags = SHMRING__EC_FENCED | SHMRING__EC_ACK;
    cr_assert_eq(word_of(&sh->wake_created), SHMRING__WAKE_CREATED_MEMBARRIER);
    cr_assert_eq(word_of(&sh->data_ec) & flags, 0);
    cr_assert_eq(word_of(&sh->space_ec) & flags, 0);
    test_push_id(p, 1, 32);
    cr_assert_eq(word_of(&sh->data_ec) & flags, 0, "a push on the membarrier path sets nothing");

    test_quiet_log();
    setenv("SHMRING_NO_MEMBARRIER", "1", 1);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsetenv("SHMRING_NO_MEMBARRIER");
    cr_assert_eq(word_of(&sh->data_ec) & flags, SHMRING__EC_FENCED);
    cr_assert_eq(word_of(&sh->space_ec) & flags, SHMRING__EC_FENCED);
    test_push_id(p, 2, 32);
    cr_assert_eq(word_of(&sh->data_ec) & flags, flags, "the producer acknowledges at its push");
    cr_assert_eq(word_of(&sh->space_ec) & SHMRING__EC_ACK, 0, "no ACK on the space word");

    /* A new producer: FENCED at attach, so ACK stays and it fences. */
    shmring_close(p);
    p = test_open_as(name, SHMRING_PRODUCER);
    cr_assert_eq(word_of(&sh->data_ec) & flags, flags);
    test_push_id(p, 3, 32);
    unsigned char buf[64];
    for (uint64_t id = 1; id <= 3; id++)
        test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, 100 * MS), id);
    cr_assert_eq(word_of(&sh->wake_created), SHMRING__WAKE_CREATED_MEMBARRIER,
                 "the creation record never changes");
    munmap(map, SHMRING__HEADER_SIZE);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);

    /* A ring created for the exchange path says so in its header. */
    name = test_name("wack2");
    p = test_make(name, 8, 64, SHMRING_NO_MEMBARRIER);
    sh = map_ring(name, &map);
    cr_assert_eq(word_of(&sh->wake_created), SHMRING__WAKE_CREATED_FENCED);
    munmap(map, SHMRING__HEADER_SIZE);
    shmring_close(p);
    shmring_unlink(name);
}
