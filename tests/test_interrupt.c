/*
 * Ending waits: shmring_interrupt and shmring_state_interrupt, from a signal
 * handler, from another thread and before any wait, on every wait strategy,
 * on both sides of a ring and on state-table waits. Every test runs under a
 * whole-test deadline (a wait that is never ended fails it); none asserts a
 * duration.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

#define MS 1000000LL

enum op { OP_POP, OP_CLAIM, OP_PUSH, OP_RESERVE, OP_STATE };

static const int strategies[] = {SHMRING_WAIT_SPIN, SHMRING_WAIT_YIELD, SHMRING_WAIT_SLEEP};

struct waiter {
    shmring_t *r;
    shmring_state_t *s;
    enum op op;
    int64_t timeout;
    uint64_t version; /* OP_STATE: the version waited away from */
    pthread_t thread;
    int tid;     /* __atomic: the waiting thread, 0 until it runs */
    long rc;     /* read after pthread_join */
    uint64_t id; /* OP_POP / OP_CLAIM: id of the message taken */
};

static long run_op(struct waiter *w)
{
    unsigned char buf[64];
    switch (w->op) {
    case OP_POP: {
        ssize_t n = shmring_pop_wait(w->r, buf, sizeof buf, w->timeout);
        if (n >= 0 && !test_check(buf, (size_t)n, &w->id))
            return -EBADMSG;
        return n;
    }
    case OP_CLAIM: {
        shmring_msg_t m;
        int rc = shmring_claim_wait(w->r, &m, w->timeout);
        if (rc == 0) {
            if (!test_check(m.data, m.len, &w->id))
                rc = -EBADMSG;
            shmring_release(w->r, &m);
        }
        return rc;
    }
    case OP_PUSH:
        test_fill(buf, 32, 9);
        return shmring_push_wait(w->r, buf, 32, w->timeout);
    case OP_RESERVE: {
        void *payload;
        int rc = shmring_reserve_wait(w->r, 32, &payload, w->timeout);
        if (rc == 0) {
            test_fill(payload, 32, 9);
            rc = shmring_commit(w->r, 32);
        }
        return rc;
    }
    case OP_STATE:
        return shmring_state_wait(w->s, "k", w->version, w->timeout);
    }
    return -EINVAL;
}

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    __atomic_store_n(&w->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
    w->rc = run_op(w);
    return NULL;
}

static void waiter_start(struct waiter *w)
{
    cr_assert_eq(pthread_create(&w->thread, NULL, waiter_main, w), 0);
}

/* 1 if thread `tid` of process `pid` is blocked in futex() now. */
static int in_futex(int pid, int tid)
{
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", pid, tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = -1;
    if (fgets(line, sizeof line, f) != NULL)
        n = atoi(line);
    fclose(f);
    return n == SYS_futex;
}

/*
 * Give thread `tid` of `pid` the time to enter its wait: a sleeping waiter
 * until it is seen blocked in futex() (at most 5 s: the test's outcome does
 * not depend on it, only which path it takes), a polling one 20 ms.
 */
static void let_it_wait(int pid, int tid, int sleeping)
{
    if (!sleeping) {
        h_sleep_ns(20 * MS);
        return;
    }
    uint64_t until = h_now_ns() + 5000 * MS;
    while (!in_futex(pid, tid) && h_now_ns() < until)
        h_sleep_ns(1 * MS);
}

static int waiter_tid(struct waiter *w)
{
    int tid;
    while ((tid = __atomic_load_n(&w->tid, __ATOMIC_ACQUIRE)) == 0)
        h_sleep_ns(100000);
    return tid;
}

static void fill_ring(shmring_t *p)
{
    for (uint32_t i = 0; i < shmring_slots(p); i++)
        test_push_id(p, i, 32);
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN);
}

static const char *strategy_name(int s)
{
    return s == SHMRING_WAIT_SPIN ? "SPIN" : s == SHMRING_WAIT_YIELD ? "YIELD" : "SLEEP";
}

/* ---- Bad input ------------------------------------------------------------ */

Test(interrupt, null_handle)
{
    cr_assert_eq(shmring_interrupt(NULL), -EINVAL);
    cr_assert_eq(shmring_state_interrupt(NULL), -EINVAL);
    cr_assert_not_null(strstr(shmring_strerror(-ECANCELED), "interrupt"));
}

/* A signal handler calls it: errno must come back as it was. */
Test(interrupt, leaves_errno_alone)
{
    const char *name = test_name("ierr");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 4, .value_size = 16);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(NULL, &cfg, &s), 0);
    errno = EBADF;
    cr_assert_eq(shmring_interrupt(p), 0);
    cr_assert_eq(errno, EBADF);
    errno = ENOTTY;
    cr_assert_eq(shmring_state_interrupt(s), 0);
    cr_assert_eq(errno, ENOTTY);
    shmring_state_close(s);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Before any wait ------------------------------------------------------ */

/* The next wait returns -ECANCELED at once, and only that one; plain calls
 * and waits with timeout 0 neither see nor consume it. */
Test(interrupt, before_any_wait_the_next_wait_is_cancelled_once)
{
    h_arm_deadline(30);
    const char *name = test_name("ipre");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64];
    cr_assert_eq(shmring_interrupt(c), 0);
    cr_assert_eq(shmring_interrupt(c), 0); /* two before a wait count as one */
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 0), -EAGAIN);
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, -1), -ECANCELED);
    /* Consumed: the following wait waits (and times out) ... */
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, 20 * MS), -ETIMEDOUT);
    /* ... or is woken by a push as usual. */
    struct waiter w = {.r = c, .op = OP_POP, .timeout = -1};
    waiter_start(&w);
    let_it_wait(getpid(), waiter_tid(&w), 1);
    test_push_id(p, 5, 32);
    pthread_join(w.thread, NULL);
    cr_assert_eq(w.rc, 32, "rc %ld", w.rc);
    cr_assert_eq(w.id, 5);

    /* Pending with a message there: the wait still returns -ECANCELED and
     * takes nothing. */
    test_push_id(p, 6, 32);
    cr_assert_eq(shmring_interrupt(c), 0);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim_wait(c, &m, 1000 * MS), -ECANCELED);
    test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, -1), 6);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.popped, 2);

    /* Producer side: the same, and nothing is pushed or reserved. */
    cr_assert_eq(shmring_interrupt(p), 0);
    cr_assert_eq(shmring_push_wait(p, "abc", 3, -1), -ECANCELED);
    cr_assert_eq(shmring_interrupt(p), 0);
    void *payload = NULL;
    cr_assert_eq(shmring_reserve_wait(p, 8, &payload, -1), -ECANCELED);
    cr_assert_eq(shmring_commit(p, 0), -EINVAL, "no reservation may be open");
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "nothing was pushed");
    cr_assert_eq(shmring_push_wait(p, "abc", 3, -1), 0);
    h_disarm_deadline();
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- From another thread -------------------------------------------------- */

/* A wait that no message or room would ever end, interrupted from another
 * thread once it is under way; the handle works normally afterwards. */
static void thread_interrupts(enum op op, int strategy)
{
    const char *name = test_name("ithr");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int producer = op == OP_PUSH || op == OP_RESERVE;
    if (producer)
        fill_ring(p);
    shmring_t *r = producer ? p : c;
    cr_assert_eq(shmring_set_wait(r, strategy, 100), 0);
    struct waiter w = {.r = r, .op = op, .timeout = -1};
    waiter_start(&w);
    let_it_wait(getpid(), waiter_tid(&w), strategy == SHMRING_WAIT_SLEEP);
    cr_assert_eq(shmring_interrupt(r), 0);
    pthread_join(w.thread, NULL);
    cr_assert_eq(w.rc, -ECANCELED, "op %d %s: rc %ld", op, strategy_name(strategy), w.rc);
    /* Nothing moved; the next wait works. */
    unsigned char buf[64];
    if (producer) {
        cr_assert_eq(shmring_commit(p, 0), -EINVAL);
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 0);
        w = (struct waiter){.r = r, .op = op, .timeout = -1};
        cr_assert_eq(run_op(&w), 0);
    } else {
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
        test_push_id(p, 3, 32);
        w = (struct waiter){.r = r, .op = op, .timeout = -1};
        cr_assert_geq(run_op(&w), 0);
        cr_assert_eq(w.id, 3);
    }
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(interrupt, pop_wait_from_another_thread_every_strategy)
{
    h_arm_deadline(60);
    for (size_t i = 0; i < 3; i++)
        thread_interrupts(OP_POP, strategies[i]);
    h_disarm_deadline();
}

Test(interrupt, claim_wait_from_another_thread_every_strategy)
{
    h_arm_deadline(60);
    for (size_t i = 0; i < 3; i++)
        thread_interrupts(OP_CLAIM, strategies[i]);
    h_disarm_deadline();
}

Test(interrupt, push_wait_on_a_full_ring_every_strategy)
{
    h_arm_deadline(60);
    for (size_t i = 0; i < 3; i++)
        thread_interrupts(OP_PUSH, strategies[i]);
    h_disarm_deadline();
}

Test(interrupt, reserve_wait_on_a_full_ring_every_strategy)
{
    h_arm_deadline(60);
    for (size_t i = 0; i < 3; i++)
        thread_interrupts(OP_RESERVE, strategies[i]);
    h_disarm_deadline();
}

/* ---- From a signal handler ------------------------------------------------ */

static shmring_t *volatile sig_ring;
static shmring_state_t *volatile sig_state;
static volatile sig_atomic_t sig_rc = 1;

static void on_usr1(int sig)
{
    (void)sig;
    sig_rc = sig_ring != NULL ? shmring_interrupt(sig_ring) : shmring_state_interrupt(sig_state);
}

struct signaller {
    pthread_t target;
    int tid;
    int sleeping;
};

static void *signaller_main(void *arg)
{
    struct signaller *sg = arg;
    let_it_wait(getpid(), sg->tid, sg->sleeping);
    pthread_kill(sg->target, SIGUSR1);
    return NULL;
}

/* This thread waits with no timeout; SIGUSR1's handler ends the wait. */
static long wait_until_signalled(struct waiter *w, int sleeping)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    sig_rc = 1;
    struct signaller sg = {pthread_self(), (int)syscall(SYS_gettid), sleeping};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, signaller_main, &sg), 0);
    long rc = run_op(w);
    pthread_join(t, NULL);
    signal(SIGUSR1, SIG_DFL);
    cr_assert_eq(sig_rc, 0, "the handler's call returned %d", (int)sig_rc);
    return rc;
}

Test(interrupt, pop_wait_from_a_signal_handler_every_strategy)
{
    h_arm_deadline(60);
    for (size_t i = 0; i < 3; i++) {
        const char *name = test_name("isig");
        shmring_t *p = test_make(name, 4, 64, 0);
        shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
        cr_assert_eq(shmring_set_wait(c, strategies[i], 100), 0);
        sig_ring = c;
        struct waiter w = {.r = c, .op = OP_POP, .timeout = -1};
        long rc = wait_until_signalled(&w, strategies[i] == SHMRING_WAIT_SLEEP);
        sig_ring = NULL;
        cr_assert_eq(rc, -ECANCELED, "%s: rc %ld", strategy_name(strategies[i]), rc);
        /* The interrupt was consumed: a push ends the next wait. */
        test_push_id(p, 4, 32);
        unsigned char buf[64];
        test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, -1), 4);
        shmring_close(c);
        shmring_close(p);
        shmring_unlink(name);
    }
    h_disarm_deadline();
}

Test(interrupt, push_wait_from_a_signal_handler)
{
    h_arm_deadline(30);
    const char *name = test_name("isigp");
    shmring_t *p = test_make(name, 4, 64, 0);
    fill_ring(p);
    sig_ring = p;
    struct waiter w = {.r = p, .op = OP_PUSH, .timeout = -1};
    long rc = wait_until_signalled(&w, 1);
    sig_ring = NULL;
    cr_assert_eq(rc, -ECANCELED, "rc %ld", rc);
    h_disarm_deadline();
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- State-table waits ---------------------------------------------------- */

static shmring_state_t *make_table(const char *name)
{
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 8, .value_size = 16);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(name, &cfg, &s), 0);
    cr_assert_eq(shmring_state_write(s, "k", "v1", 2), 0);
    return s;
}

static uint64_t version_of(shmring_state_t *s)
{
    char buf[16];
    uint64_t v = 0;
    cr_assert_eq(shmring_state_read_version(s, "k", buf, sizeof buf, &v), 2);
    return v;
}

Test(interrupt, state_wait_before_from_thread_and_from_signal)
{
    h_arm_deadline(60);
    const char *name = test_name("ist");
    shmring_state_t *s = make_table(name);
    uint64_t v = version_of(s);

    /* Before any wait: the next one, once; timeout 0 does not consume it. */
    cr_assert_eq(shmring_state_interrupt(s), 0);
    cr_assert_eq(shmring_state_wait(s, "k", v, 0), -ETIMEDOUT);
    cr_assert_eq(shmring_state_wait(s, "k", v, -1), -ECANCELED);
    cr_assert_eq(shmring_state_wait(s, "k", v, 20 * MS), -ETIMEDOUT);

    /* From another thread, while it sleeps. */
    struct waiter w = {.s = s, .op = OP_STATE, .timeout = -1, .version = v};
    waiter_start(&w);
    let_it_wait(getpid(), waiter_tid(&w), 1);
    cr_assert_eq(shmring_state_interrupt(s), 0);
    pthread_join(w.thread, NULL);
    cr_assert_eq(w.rc, -ECANCELED, "rc %ld", w.rc);

    /* From a signal handler on the waiting thread. */
    sig_state = s;
    w = (struct waiter){.s = s, .op = OP_STATE, .timeout = -1, .version = v};
    long rc = wait_until_signalled(&w, 1);
    sig_state = NULL;
    cr_assert_eq(rc, -ECANCELED, "rc %ld", rc);

    /* Consumed: a write ends the next wait. */
    w = (struct waiter){.s = s, .op = OP_STATE, .timeout = -1, .version = v};
    waiter_start(&w);
    let_it_wait(getpid(), waiter_tid(&w), 1);
    cr_assert_eq(shmring_state_write(s, "k", "v2", 2), 0);
    pthread_join(w.thread, NULL);
    cr_assert_eq(w.rc, 0, "rc %ld", w.rc);
    h_disarm_deadline();
    shmring_state_close(s);
    shmring_state_unlink(name);
}

/* ---- Other sleepers of the word ------------------------------------------- */

/*
 * Another process's consumer sleeps on the same futex word: interrupting
 * this handle ends only this handle's wait; the other one sees a spurious
 * wake-up at most, keeps waiting and takes the next message.
 */
Test(interrupt, other_processes_keep_waiting)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    h_arm_deadline(60);
    const char *name = test_name("iother");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(h_sanitized() ? 300 : 60);
        shmring_t *cc;
        if (shmring_open(name, SHMRING_CONSUMER, &cc) != 0)
            _exit(3);
        unsigned char buf[64];
        ssize_t n = shmring_pop_wait(cc, buf, sizeof buf, -1);
        uint64_t id;
        _exit(n == 32 && test_check(buf, 32, &id) && id == 7 ? 0 : 4);
    }
    struct waiter w = {.r = c, .op = OP_POP, .timeout = -1};
    waiter_start(&w);
    let_it_wait(getpid(), waiter_tid(&w), 1);
    let_it_wait(pid, pid, 1);
    cr_assert_eq(shmring_interrupt(c), 0);
    pthread_join(w.thread, NULL);
    cr_assert_eq(w.rc, -ECANCELED, "rc %ld", w.rc);
    /* The child is still waiting (it exits only with a message). */
    cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the other process's wait ended");
    test_push_id(p, 7, 32);
    cr_assert_eq(test_wait_child(pid), 0);
    h_disarm_deadline();
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}
