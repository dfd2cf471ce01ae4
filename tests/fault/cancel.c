/*
 * Crash scenarios for ending waits (src/cancel.c; see fault_walk.h).
 *
 * cancel.wake: an interrupter bumped the counter of the word its handle's
 * wait sleeps on and died before FUTEX_WAKE. Other processes sleep on the
 * same word; the interrupt must not have taken their sleep flag away, so
 * the next notifier still wakes them. The state-table scenario shows it
 * sharply: a state wait with no timeout has no periodic re-check, so a lost
 * flag would leave it asleep for good (the scenario's deadline fails it).
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

#if !defined(SHMRING_FAULT_INJECTION)

const struct fault_scenario fault_cancel_scenarios[] = {
    {NULL, NULL},
};

#else

#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>

#include "harness.h"
#include "kit.h"

#define MS 1000000ull

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

/* Until thread tid of pid sleeps in futex() (at most 5 s; best effort). */
static void until_asleep(int pid, int tid)
{
    uint64_t until = h_now_ns() + 5000 * MS;
    while (!in_futex(pid, tid) && h_now_ns() < until)
        h_sleep_ns(MS);
}

struct sleeper {
    shmring_state_t *s;
    shmring_t *r;
    uint64_t version;
    int tid; /* __atomic */
    long rc;
    pthread_t thread;
};

static void *sleeper_main(void *arg)
{
    struct sleeper *sl = arg;
    __atomic_store_n(&sl->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
    if (sl->s != NULL) {
        sl->rc = shmring_state_wait(sl->s, "k", sl->version, -1);
    } else {
        unsigned char buf[64];
        uint64_t id = 0;
        ssize_t n = shmring_pop_wait(sl->r, buf, sizeof buf, -1);
        sl->rc = n == 32 && test_check(buf, 32, &id) ? (long)id : (n < 0 ? n : -EBADMSG);
    }
    return NULL;
}

static int sleeper_start(struct sleeper *sl)
{
    if (pthread_create(&sl->thread, NULL, sleeper_main, sl) != 0)
        return -1;
    int tid;
    while ((tid = __atomic_load_n(&sl->tid, __ATOMIC_ACQUIRE)) == 0)
        h_sleep_ns(100000);
    until_asleep(getpid(), tid);
    return tid;
}

struct target {
    const char *name;
    uint64_t version;
    int ring; /* 1: a ring consumer, 0: a state table */
};

/* Child: a waiter of its own sleeps on the word; interrupt it (killed at
 * cancel.wake, between the counter bump and FUTEX_WAKE). */
static int interrupter(void *arg)
{
    struct target *t = arg;
    struct sleeper sl = {.version = t->version};
    if (t->ring ? shmring_open(t->name, SHMRING_CONSUMER, &sl.r) != 0
                : shmring_state_open(t->name, 0, &sl.s) != 0)
        return KIT_SETUP_FAILED;
    if (sleeper_start(&sl) < 0)
        return KIT_SETUP_FAILED;
    if (t->ring)
        shmring_interrupt(sl.r);
    else
        shmring_state_interrupt(sl.s);
    return 5; /* not killed: the point was not reached */
}

static unsigned state_sleeper_survives(const char *point)
{
    if (test_heap_forced())
        return 0; /* needs processes */
    h_arm_deadline(60);
    char *name = kit_name("fcw");
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 8, .value_size = 16);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(name, &cfg, &s), 0);
    cr_assert_eq(shmring_state_write(s, "k", "v1", 2), 0);
    char buf[16];
    uint64_t v = 0;
    cr_assert_eq(shmring_state_read_version(s, "k", buf, sizeof buf, &v), 2);
    struct sleeper sl = {.s = s, .version = v};
    cr_assert_geq(sleeper_start(&sl), 0);
    struct target t = {name, v, 0};
    char spec[64];
    snprintf(spec, sizeof spec, "%s:kill", point);
    kit_killed(interrupter, &t, spec);
    /* Our sleeper was not the target: still asleep, woken by the write. */
    cr_assert_eq(shmring_state_write(s, "k", "v2", 2), 0);
    pthread_join(sl.thread, NULL);
    cr_assert_eq(sl.rc, 0, "state wait: %ld", sl.rc);
    h_disarm_deadline();
    shmring_state_close(s);
    shmring_state_unlink(name);
    free(name);
    return 1;
}

static unsigned ring_consumer_survives(const char *point)
{
    if (test_heap_forced())
        return 0; /* needs processes */
    h_arm_deadline(60);
    char *name = kit_name("fcr");
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    struct sleeper sl = {.r = c};
    cr_assert_geq(sleeper_start(&sl), 0);
    struct target t = {name, 0, 1};
    char spec[64];
    snprintf(spec, sizeof spec, "%s:kill", point);
    kit_killed(interrupter, &t, spec);
    test_push_id(p, 11, 32);
    pthread_join(sl.thread, NULL);
    cr_assert_eq(sl.rc, 11, "pop wait: %ld", sl.rc);
    /* The dead interrupter's consumer entry held nothing. */
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 1);
    cr_assert_eq(st.popped, 1);
    cr_assert_eq(st.abandoned, 0);
    h_disarm_deadline();
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

const struct fault_scenario fault_cancel_scenarios[] = {
    {"cancel.wake", state_sleeper_survives},
    {"cancel.wake", ring_consumer_survives},
    {NULL, NULL},
};

#endif
