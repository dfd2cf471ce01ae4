/*
 * SHMRING_FOLLOW: a consumer that treats the end of a stream as a pause.
 * Producers come and go (close, or die by SIGKILL mid-stream); a follower
 * receives every published message of each, whole and in order, and keeps
 * waiting in between without burning a CPU. Without the flag, the end of a
 * stream stays -EPIPE. Producers are processes on the shared backends and
 * threads on the heap backend; every test has a whole-test deadline.
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

#define MS       1000000LL
#define SLOTS    16u
#define SLOT     64u
#define SECOND_0 1000000u /* first id of the second producer */

/* 1 if thread `tid` of this process is blocked in futex() now. */
static int in_futex(int tid)
{
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = -1;
    if (fgets(line, sizeof line, f) != NULL)
        n = atoi(line);
    fclose(f);
    return n == SYS_futex;
}

/* ---- Producers ------------------------------------------------------------ */

struct job {
    const char *name;
    uint64_t first, n; /* n == 0: push until killed */
    int rc;
    pthread_t thread;
    pid_t pid;
};

static int produce(struct job *j)
{
    shmring_t *p;
    int rc = shmring_open(j->name, SHMRING_PRODUCER, &p);
    if (rc < 0)
        return 3;
    unsigned char buf[SLOT];
    for (uint64_t i = 0; j->n == 0 || i < j->n; i++) {
        size_t len = test_len_of(j->first + i, SLOT);
        test_fill(buf, len, j->first + i);
        if (shmring_push_wait(p, buf, len, -1) != 0)
            return 4;
    }
    shmring_close(p);
    return 0;
}

static void *produce_thread(void *arg)
{
    struct job *j = arg;
    j->rc = produce(j);
    return NULL;
}

/* A producer process (a thread on the heap backend). */
static void job_start(struct job *j)
{
    if (test_heap_forced()) {
        cr_assert_eq(pthread_create(&j->thread, NULL, produce_thread, j), 0);
        return;
    }
    j->pid = fork();
    cr_assert_geq(j->pid, 0);
    if (j->pid == 0) {
        alarm(h_sanitized() ? 600 : 120);
        _exit(produce(j));
    }
}

static void job_end(struct job *j)
{
    if (test_heap_forced()) {
        pthread_join(j->thread, NULL);
        cr_assert_eq(j->rc, 0, "producer thread: %d", j->rc);
    } else {
        cr_assert_eq(test_wait_child(j->pid), 0);
    }
}

/* ---- The follower --------------------------------------------------------- */

struct follower {
    shmring_t *c;
    uint64_t want; /* messages to receive */
    uint64_t got;  /* __atomic: received so far */
    uint64_t bad;  /* torn, out of order, or an error */
    int tid;       /* __atomic */
    long last_rc;
    pthread_t thread;
};

/* The id that should come after `id` (the producers' ranges in turn). */
static void *follow_main(void *arg)
{
    struct follower *f = arg;
    __atomic_store_n(&f->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
    unsigned char buf[SLOT];
    uint64_t half = f->want / 2;
    for (uint64_t k = 0; k < f->want; k++) {
        ssize_t n = shmring_pop_wait(f->c, buf, sizeof buf, -1);
        uint64_t id;
        uint64_t expect = k < half ? k : SECOND_0 + (k - half);
        if (n < 0) {
            f->last_rc = n;
            f->bad++;
            break;
        }
        if (!test_check(buf, (size_t)n, &id) || id != expect || (size_t)n != test_len_of(id, SLOT))
            f->bad++;
        __atomic_store_n(&f->got, k + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void until_received(struct follower *f, uint64_t n)
{
    while (__atomic_load_n(&f->got, __ATOMIC_ACQUIRE) < n && f->bad == 0)
        h_sleep_ns(MS);
}

/* Until the follower's thread sleeps in futex() (the deadline fails a follower that never does). */
static void until_asleep(struct follower *f)
{
    int tid;
    while ((tid = __atomic_load_n(&f->tid, __ATOMIC_ACQUIRE)) == 0)
        h_sleep_ns(MS);
    while (!in_futex(tid))
        h_sleep_ns(MS);
}

/* ---- Flags ---------------------------------------------------------------- */

Test(follow, bad_flag_combinations)
{
    const char *name = test_name("fbad");
    shmring_t *p = test_make(name, SLOTS, SLOT, 0);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_FOLLOW, &r), -EINVAL);
    cr_assert_eq(shmring_open(name, SHMRING_FOLLOW | SHMRING_PRODUCER, &r), -EINVAL);
    cr_assert_eq(shmring_open(name, SHMRING_FOLLOW | SHMRING_OBSERVER, &r), -EINVAL);
    cr_assert_eq(shmring_open_wait(name, SHMRING_FOLLOW, 0, &r), -EINVAL);
    cr_assert_eq(shmring_open_wait(name, SHMRING_FOLLOW | SHMRING_OBSERVER, -1, &r), -EINVAL);
    cr_assert_eq(shmring_open_fd(shmring_fd(p), SHMRING_FOLLOW | SHMRING_PRODUCER, &r), -EINVAL);
    cr_assert_eq(shmring_open(name, SHMRING_FOLLOW | SHMRING_CONSUMER, NULL), -EINVAL);
    cr_assert_null(r);
    const char *other = test_name("fbad2");
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = SLOT, .flags = SHMRING_FOLLOW);
    cr_assert_eq(shmring_create(other, &cfg, &r), -EINVAL); /* default role: producer */
    cfg.flags = SHMRING_FOLLOW | SHMRING_PRODUCER;
    cr_assert_eq(shmring_create(other, &cfg, &r), -EINVAL);
    cfg.flags = SHMRING_FOLLOW | SHMRING_OBSERVER;
    cr_assert_eq(shmring_create(other, &cfg, &r), -EINVAL);
    cr_assert_null(r);
    /* Nothing was created by the refused calls. */
    cr_assert_eq(shmring_open(other, SHMRING_CONSUMER, &r), -ENOENT);
    /* With a consumer role (and a producer one besides) it is accepted. */
    cfg.flags = SHMRING_FOLLOW | SHMRING_CONSUMER | SHMRING_PRODUCER;
    cr_assert_eq(shmring_create(other, &cfg, &r), 0);
    shmring_close(r);
    shmring_unlink(other);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Plain calls, the reused ring ----------------------------------------- */

static void expect_empty(shmring_t *c, int want)
{
    unsigned char buf[SLOT];
    shmring_msg_t m;
    struct iovec iov = {buf, sizeof buf};
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), want);
    cr_assert_eq(shmring_claim(c, &m), want);
    cr_assert_eq(shmring_pop_batch(c, &iov, 1), want);
}

Test(follow, plain_calls_return_eagain_and_the_reused_ring)
{
    h_arm_deadline(30);
    const char *name = test_name("fplain");
    shmring_t *p = test_make(name, SLOTS, SLOT, 0);
    shmring_t *f = test_open_as(name, SHMRING_CONSUMER | SHMRING_FOLLOW);
    shmring_t *n = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[SLOT];
    test_push_id(p, 0, 32);
    test_push_id(p, 1, 32);
    shmring_close(p);
    /* Messages published before the close are taken first. */
    test_expect_id(buf, shmring_pop(f, buf, sizeof buf), 0);
    test_expect_id(buf, shmring_pop(n, buf, sizeof buf), 1);
    expect_empty(f, -EAGAIN);
    expect_empty(n, -EPIPE);
    shmring_msg_t m;
    cr_assert_eq(shmring_pop_wait(f, buf, sizeof buf, 20 * MS), -ETIMEDOUT);
    cr_assert_eq(shmring_claim_wait(f, &m, 20 * MS), -ETIMEDOUT);
    cr_assert_eq(shmring_pop_wait(n, buf, sizeof buf, -1), -EPIPE);
    cr_assert_eq(shmring_claim_wait(n, &m, -1), -EPIPE);

    /* The reused ring: consumers attaching now, after the last close. */
    shmring_t *late = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *late_f = test_open_as(name, SHMRING_CONSUMER | SHMRING_FOLLOW);
    expect_empty(late, -EPIPE);
    cr_assert_eq(shmring_pop_wait(late, buf, sizeof buf, -1), -EPIPE);
    expect_empty(late_f, -EAGAIN);
    cr_assert_eq(shmring_pop_wait(late_f, buf, sizeof buf, 20 * MS), -ETIMEDOUT);

    /* The next producer: followers take its messages. */
    shmring_t *p2 = test_open_as(name, SHMRING_PRODUCER);
    test_push_id(p2, 2, 32);
    test_push_id(p2, 3, 32);
    test_expect_id(buf, shmring_pop_wait(late_f, buf, sizeof buf, -1), 2);
    cr_assert_eq(shmring_claim_wait(f, &m, -1), 0);
    test_expect_id(m.data, (ssize_t)m.len, 3);
    cr_assert_eq(shmring_release(f, &m), 0);
    h_disarm_deadline();
    shmring_close(p2);
    shmring_close(late_f);
    shmring_close(late);
    shmring_close(n);
    shmring_close(f);
    shmring_unlink(name);
}

/* ---- Across producers ----------------------------------------------------- */

/*
 * The follower (created with SHMRING_CONSUMER | SHMRING_FOLLOW) waits with
 * no timeout through a first producer's close, then takes a second
 * producer's messages: all of both, whole and in order.
 */
Test(follow, producer_closes_and_the_next_one_is_followed, .timeout = 300)
{
    h_arm_deadline(120);
    const char *name = test_name("fnext");
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = SLOT,
                                               .flags = SHMRING_CONSUMER | SHMRING_FOLLOW);
    struct follower f = {.want = 2 * h_count(2000)};
    cr_assert_eq(shmring_create(name, &cfg, &f.c), 0);
    shmring_t *n = test_open_as(name, SHMRING_CONSUMER); /* no flag: sees the end */
    cr_assert_eq(pthread_create(&f.thread, NULL, follow_main, &f), 0);
    struct job a = {.name = name, .first = 0, .n = f.want / 2};
    job_start(&a);
    job_end(&a);
    until_received(&f, f.want / 2);
    /* Drained, no producer: the follower waits on, asleep. */
    until_asleep(&f);
    cr_assert_eq(__atomic_load_n(&f.got, __ATOMIC_ACQUIRE), f.want / 2);
    cr_assert_eq(f.bad, 0, "last rc %ld", f.last_rc);
    unsigned char buf[SLOT];
    cr_assert_eq(shmring_pop_wait(n, buf, sizeof buf, -1), -EPIPE);
    shmring_close(n);
    struct job b = {.name = name, .first = SECOND_0, .n = f.want / 2};
    job_start(&b);
    job_end(&b);
    pthread_join(f.thread, NULL);
    cr_assert_eq(f.bad, 0, "last rc %ld", f.last_rc);
    cr_assert_eq(f.got, f.want);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(f.c, &st), 0);
    cr_assert_eq(st.pushed, f.want);
    cr_assert_eq(st.popped, f.want);
    cr_assert_eq(shmring_pop(f.c, buf, sizeof buf), -EAGAIN);
    h_disarm_deadline();
    shmring_close(f.c);
    shmring_unlink(name);
}

/*
 * A producer killed with SIGKILL mid-stream, then replaced: the follower
 * receives every message the dead one published (nothing torn, none lost:
 * the counts reconcile), waits (no -EPIPE) while no producer lives, and
 * takes the successor's messages. A consumer without the flag gets -EPIPE.
 */
Test(follow, producer_killed_and_replaced, .timeout = 300)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    h_arm_deadline(120);
    const char *name = test_name("fkill");
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = SLOT,
                                               .flags = SHMRING_CONSUMER | SHMRING_FOLLOW);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &c), 0);
    shmring_t *n = test_open_as(name, SHMRING_CONSUMER);
    struct job a = {.name = name, .first = 0, .n = 0};
    job_start(&a);
    unsigned char buf[SLOT];
    uint64_t next = 0, id;
    for (; next < 500; next++) {
        ssize_t len = shmring_pop_wait(c, buf, sizeof buf, -1);
        cr_assert(len >= 0 && test_check(buf, (size_t)len, &id) && id == next,
                  "message %llu: rc %zd", (unsigned long long)next, len);
    }
    kill(a.pid, SIGKILL);
    cr_assert_eq(test_wait_child(a.pid), 128 + SIGKILL);
    /* Whatever the dead producer published, in order, then a pause. */
    ssize_t len;
    while ((len = shmring_pop_wait(c, buf, sizeof buf, 300 * MS)) >= 0) {
        cr_assert(test_check(buf, (size_t)len, &id) && id == next, "message %llu",
                  (unsigned long long)next);
        next++;
    }
    cr_assert_eq(len, -ETIMEDOUT, "a follower waits on a dead producer: %zd", len);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(shmring_pop_wait(n, buf, sizeof buf, -1), -EPIPE);
    uint64_t first = next;
    struct job b = {.name = name, .first = SECOND_0, .n = 300};
    job_start(&b);
    for (uint64_t k = 0; k < b.n; k++) {
        len = shmring_pop_wait(c, buf, sizeof buf, -1);
        cr_assert(len >= 0 && test_check(buf, (size_t)len, &id) && id == SECOND_0 + k,
                  "second producer's message %llu: rc %zd", (unsigned long long)k, len);
    }
    job_end(&b);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.pushed, first + b.n, "pushed %llu", (unsigned long long)st.pushed);
    cr_assert_eq(st.popped, first + b.n);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    h_disarm_deadline();
    shmring_close(n);
    shmring_close(c);
    shmring_unlink(name);
}

/* ---- No CPU while no producer ---------------------------------------------- */

/* A SPIN follower sleeps on the futex while the ring has no producer (closed,
 * or dead), and a new producer's push wakes it. */
static void spinner_sleeps(int kill_producer)
{
    h_arm_deadline(60);
    const char *name = test_name("fspin");
    shmring_t *p = NULL;
    struct job a = {.name = name, .first = 0, .n = 0};
    struct follower f = {.want = 2};
    if (kill_producer) {
        shmring_config_t cfg =
            SHMRING_CONFIG_INIT(.slots = 8, .slot_size = SLOT, .flags = SHMRING_OBSERVER);
        cr_assert_eq(shmring_create(name, &cfg, &p), 0);
        f.c = test_open_as(name, SHMRING_CONSUMER | SHMRING_FOLLOW);
        a.n = 1; /* one message, then a producer that sleeps until killed */
    } else {
        p = test_make(name, 8, SLOT, 0);
        f.c = test_open_as(name, SHMRING_CONSUMER | SHMRING_FOLLOW);
        test_push_id(p, 0, test_len_of(0, SLOT));
        shmring_close(p);
        p = NULL;
    }
    cr_assert_eq(shmring_set_wait(f.c, SHMRING_WAIT_SPIN, 0), 0);
    if (kill_producer) {
        a.pid = fork();
        cr_assert_geq(a.pid, 0);
        if (a.pid == 0) {
            shmring_t *q;
            if (shmring_open(name, SHMRING_PRODUCER, &q) != 0)
                _exit(3);
            unsigned char buf[SLOT];
            test_fill(buf, test_len_of(0, SLOT), 0);
            shmring_push(q, buf, test_len_of(0, SLOT));
            pause();
            _exit(4);
        }
    }
    cr_assert_eq(pthread_create(&f.thread, NULL, follow_main, &f), 0);
    until_received(&f, 1);
    if (kill_producer) {
        kill(a.pid, SIGKILL);
        cr_assert_eq(test_wait_child(a.pid), 128 + SIGKILL);
    }
    until_asleep(&f);
    /* Past a few peer checks: still waiting (a dead producer is no end). */
    h_sleep_ns(3 * SHMRING_DEAD_PEER_NS);
    cr_assert_eq(__atomic_load_n(&f.got, __ATOMIC_ACQUIRE), 1);
    cr_assert_eq(f.bad, 0, "last rc %ld", f.last_rc);
    struct job b = {.name = name, .first = SECOND_0, .n = 1};
    job_start(&b);
    job_end(&b);
    pthread_join(f.thread, NULL);
    cr_assert_eq(f.bad, 0, "last rc %ld", f.last_rc);
    cr_assert_eq(f.got, 2);
    h_disarm_deadline();
    shmring_close(f.c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(follow, spin_follower_sleeps_while_the_ring_is_closed)
{
    spinner_sleeps(0);
}

Test(follow, spin_follower_sleeps_while_the_producer_is_dead)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    spinner_sleeps(1);
}

/* ---- Other ways to open ---------------------------------------------------- */

Test(follow, open_wait_and_open_fd_take_the_flag)
{
    h_arm_deadline(30);
    const char *name = test_name("fopen");
    shmring_t *p = test_make(name, SLOTS, SLOT, 0);
    shmring_t *w = NULL, *d = NULL;
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER | SHMRING_FOLLOW, -1, &w), 0);
    int fd = shmring_fd(p);
    if (fd >= 0)
        cr_assert_eq(shmring_open_fd(fd, SHMRING_CONSUMER | SHMRING_FOLLOW, &d), 0);
    shmring_close(p);
    unsigned char buf[SLOT];
    cr_assert_eq(shmring_pop(w, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(shmring_pop_wait(w, buf, sizeof buf, 20 * MS), -ETIMEDOUT);
    if (d != NULL) {
        cr_assert_eq(shmring_pop(d, buf, sizeof buf), -EAGAIN);
        cr_assert_eq(shmring_pop_wait(d, buf, sizeof buf, 20 * MS), -ETIMEDOUT);
    }
    /* Without the flag, the same opens see the end of the stream. */
    shmring_t *w2 = NULL;
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER, -1, &w2), 0);
    cr_assert_eq(shmring_pop(w2, buf, sizeof buf), -EPIPE);
    h_disarm_deadline();
    shmring_close(w2);
    shmring_close(d);
    shmring_close(w);
    shmring_unlink(name);
}
