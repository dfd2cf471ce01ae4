/*
 * Crash scenarios for state-table write steps, insertion, deletion and
 * recovery (see fault_walk.h), and the liveness cases that only a stalled
 * writer can show: a writer held at a point is never recovered, also when
 * its main thread has exited, and a child of fork() writing through its
 * parent's handle is judged on itself.
 *
 * Every scenario runs on a small named table holding "k" (a well-formed
 * value, id OLD_ID) and kills a writer process at its point, twice: once the
 * next writer must recover what it left, once shmring_state_repair. Readers
 * must read a whole value (the previous one, or the new one once published)
 * throughout, and a writer held at the same point (by a hook that sleeps)
 * must not be recovered by anyone while it lives.
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

#if !defined(SHMRING_FAULT_INJECTION)

const struct fault_scenario fault_state_scenarios[] = {
    {NULL, NULL},
};

#else

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"
#include "harness.h"
#include "shmring.h"

#define VSIZE  64
#define OLD_ID 100
#define NEW_ID 200

/* What the killed process was doing. */
enum op { OP_UPDATE, OP_INSERT, OP_DELETE };

static shmring_state_t *fs_make(char *name, size_t cap)
{
    snprintf(name, cap, "%s", test_name("fstate"));
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 8, .value_size = VSIZE);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(name, &cfg, &s), 0);
    unsigned char v[VSIZE];
    test_fill(v, 40, OLD_ID);
    cr_assert_eq(shmring_state_write(s, "k", v, 40), 0);
    return s;
}

/* ---- Processes stalled at a point ---------------------------------------------------- */

/* Shared with the children: a hook holds a process at its point until released. */
struct stall {
    int at_point; /* __atomic: set by the held process */
    int release;  /* __atomic: set by the test */
    pid_t writer; /* written by the writer's parent, read once that parent has exited */
};

static void stall_hook(int point, void *ctx)
{
    (void)point;
    struct stall *st = ctx;
    __atomic_store_n(&st->at_point, 1, __ATOMIC_RELEASE);
    uint64_t deadline = h_now_ns() + 20000000000ull;
    while (!__atomic_load_n(&st->release, __ATOMIC_ACQUIRE) && h_now_ns() < deadline)
        h_sleep_ns(1000000);
}

/* The state letter of a process (field 3 of /proc/<pid>/stat), or '?'. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/* Wait until a writer is held at its point (and, with want_z, its process shows Z). */
static void wait_stalled(struct stall *st, pid_t pid, int want_z)
{
    uint64_t deadline = h_now_ns() + 10000000000ull;
    while (!__atomic_load_n(&st->at_point, __ATOMIC_ACQUIRE) ||
           (want_z && proc_state(pid) != 'Z')) {
        cr_assert_lt(h_now_ns(), deadline, "the writer never stalled (state %c)", proc_state(pid));
        h_sleep_ns(1000000);
    }
}

/* Where fs_child's processes stall for a "POINT:hook" rule (shared memory). */
static struct stall *fs_stall;

/* Set up fs_stall for one stalled process. */
static struct stall *stall_new(void)
{
    if (fs_stall == NULL)
        fs_stall = test_shared_alloc(sizeof *fs_stall);
    memset((void *)fs_stall, 0, sizeof *fs_stall);
    return fs_stall;
}

/* The body of a writer child: one operation on its own handle. */
static int fs_do(shmring_state_t *s, enum op op)
{
    unsigned char v[VSIZE];
    test_fill(v, 48, NEW_ID);
    switch (op) {
    case OP_UPDATE:
        return shmring_state_write(s, "k", v, 48);
    case OP_INSERT:
        return shmring_state_write(s, "n", v, 48);
    default:
        return shmring_state_delete(s, "k");
    }
}

/*
 * Fork a process that opens table `name`, arms `rule` and runs op (or, for
 * op < 0, shmring_state_repair). Returns its pid.
 */
static pid_t fs_child(const char *name, const char *rule, int op)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid != 0)
        return pid;
    alarm(20);
    shmring_state_t *s = NULL;
    if (shmring_state_open(name, 0, &s) != 0)
        _exit(3);
    if (fs_stall != NULL)
        shmring__fault_hook_set(stall_hook, fs_stall);
    if (shmring__fault_set(rule) != 0)
        _exit(4);
    int rc = op < 0 ? shmring_state_repair(s) : fs_do(s, (enum op)op);
    _exit(rc < 0 ? 5 : 0);
}

/* The id of the whole value of key (-ENOENT and friends as negative). */
static int64_t fs_read(shmring_state_t *s, const char *key)
{
    unsigned char v[VSIZE];
    ssize_t n;
    uint64_t deadline = h_now_ns() + 1000000000ull;
    while ((n = shmring_state_read(s, key, v, sizeof v)) == -EAGAIN && h_now_ns() < deadline)
        ;
    if (n < 0)
        return n;
    uint64_t id = 0;
    cr_assert(test_check(v, (size_t)n, &id), "%s: a torn value was accepted", key);
    return (int64_t)id;
}

static shmring_state_stats_t fs_stats(shmring_state_t *s)
{
    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    return st;
}

/* What readers may see of "k" and "n" while the dead writer's entry is held. */
static void fs_check_reads(shmring_state_t *s, const char *point, enum op op)
{
    int published = strcmp(point, "state.W3") == 0 || strcmp(point, "state.L3") == 0;
    int64_t k = fs_read(s, "k");
    int64_t n = fs_read(s, "n");
    if (op == OP_UPDATE)
        cr_assert_eq(k, published ? NEW_ID : OLD_ID, "%s: k reads %lld", point, (long long)k);
    else
        cr_assert_eq(k, OLD_ID, "%s: the previous value of k is gone (%lld)", point, (long long)k);
    if (op == OP_INSERT)
        cr_assert_eq(n, published ? NEW_ID : -ENOENT, "%s: n reads %lld", point, (long long)n);
}

/* A write of key by the parent, retried while it gives -EAGAIN, for at most 2 s. */
static int fs_write_within(shmring_state_t *s, const char *key, uint64_t id)
{
    unsigned char v[VSIZE];
    test_fill(v, 32, id);
    uint64_t deadline = h_now_ns() + 2000000000ull;
    int rc;
    while ((rc = shmring_state_write(s, key, v, 32)) == -EAGAIN && h_now_ns() < deadline)
        ;
    return rc;
}

/* How many words a writer killed at point leaves held. */
static unsigned fs_held_words(const char *point)
{
    if (strcmp(point, "state.I1") == 0 || strcmp(point, "state.T1") == 0)
        return 2; /* the key's entry and the insert lock (deletes take it too) */
    if (strcmp(point, "state.W3") == 0)
        return 0;
    return 1;
}

/* The entry and lock words other than the insert lock that a kill at point leaves held. */
static unsigned fs_held_entries(const char *point)
{
    if (strcmp(point, "state.L1") == 0 || strcmp(point, "state.L3") == 0 ||
        strcmp(point, "state.W3") == 0)
        return 0;
    return 1;
}

/* The operation that reaches a writer point. */
static enum op fs_op_of(const char *point)
{
    if (strcmp(point, "state.L1") == 0 || strcmp(point, "state.I1") == 0 ||
        strcmp(point, "state.L3") == 0)
        return OP_INSERT;
    if (strcmp(point, "state.T1") == 0)
        return OP_DELETE;
    return OP_UPDATE;
}

/* Put the table back to "k" = OLD_ID alone, nothing held. */
static void fs_reset(shmring_state_t *s)
{
    cr_assert_eq(fs_stats(s).writing, 0);
    int rc = shmring_state_delete(s, "n");
    cr_assert(rc == 0 || rc == -ENOENT, "delete n: %s", shmring_strerror(rc));
    cr_assert_eq(fs_write_within(s, "k", OLD_ID), 0);
    cr_assert_eq(fs_stats(s).used, 1);
}

/*
 * A writer held at point (by a hook that sleeps until released: alive, and
 * gone by itself after 20 s should this test fail) is never recovered:
 * writers of its entry give up with -EAGAIN, readers read on; released, it
 * completes.
 */
static void fs_stalled_writer_is_not_recovered(shmring_state_t *s, const char *name,
                                               const char *point, enum op op)
{
    char rule[64];
    snprintf(rule, sizeof rule, "%s:hook", point);
    struct stall *stall = stall_new();
    pid_t pid = fs_child(name, rule, op);
    wait_stalled(stall, pid, 0);
    uint64_t before = fs_stats(s).recovered;
    fs_check_reads(s, point, op);
    cr_assert_eq(shmring_state_repair(s), 0, "%s: a repair recovered a live writer", point);
    /* A writer of the held entry (or a new key, for the insert lock) gives up. */
    unsigned char v[VSIZE];
    test_fill(v, 32, 7);
    const char *key = op == OP_UPDATE || op == OP_DELETE ? "k" : "m";
    cr_assert_eq(shmring_state_write(s, key, v, 32), -EAGAIN, "%s: a write went past a live writer",
                 point);
    cr_assert_eq(fs_stats(s).recovered, before, "%s: a live writer was recovered", point);
    __atomic_store_n(&stall->release, 1, __ATOMIC_RELEASE);
    cr_assert_eq(test_wait_child(pid), 0, "%s: the released writer failed", point);
    cr_assert_eq(fs_stats(s).writing, 0);
    if (op == OP_UPDATE)
        cr_assert_eq(fs_read(s, "k"), NEW_ID);
    if (op == OP_INSERT)
        cr_assert_eq(fs_read(s, "n"), NEW_ID);
    if (op == OP_DELETE)
        cr_assert_eq(fs_read(s, "k"), -ENOENT);
}

/* Kill a writer at point; then check reads, and recover by writing or by repair. */
static void fs_killed_writer(shmring_state_t *s, const char *name, const char *point, enum op op,
                             int by_repair)
{
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill", point);
    pid_t pid = fs_child(name, rule, op);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL, "%s: the writer did not die there", point);
    shmring_state_stats_t st = fs_stats(s);
    cr_assert_eq(st.writing, fs_held_entries(point), "%s: %u entries held", point, st.writing);
    fs_check_reads(s, point, op);
    uint64_t before = st.recovered;
    if (by_repair) {
        cr_assert_eq(shmring_state_repair(s), (int)fs_held_words(point), "%s: repair", point);
    } else {
        /* The next writer of what it held recovers it: k, or a new key for the insert lock. */
        const char *key = op == OP_INSERT ? "m" : "k";
        cr_assert_eq(fs_write_within(s, key, NEW_ID + 1), 0, "%s: the next writer is stuck", point);
        cr_assert_eq(fs_read(s, key), NEW_ID + 1);
        if (op == OP_DELETE) {
            /* A delete holds the insert lock too: the next new key recovers it. */
            cr_assert_eq(fs_write_within(s, "m", NEW_ID + 2), 0, "%s: inserts are stuck", point);
            cr_assert_eq(shmring_state_delete(s, "m"), 0);
        }
        if (op == OP_INSERT) {
            cr_assert_eq(shmring_state_delete(s, "m"), 0);
            /* A new key's entry left held (I1) is met by the next insert
             * only when it probes that entry: repair the rest. */
            shmring_state_repair(s);
        }
    }
    st = fs_stats(s);
    cr_assert_eq(st.writing, 0, "%s: still held after recovery", point);
    cr_assert_eq(st.recovered, before + fs_held_words(point), "%s: recovered %llu, expected %u",
                 point, (unsigned long long)(st.recovered - before), fs_held_words(point));
    cr_assert_eq(shmring_state_repair(s), 0);
}

/* Writer points: W1, W2, W3, L1, I1, L3, T1. */
static unsigned fs_writer_point(const char *point)
{
    if (test_heap_forced())
        return 0; /* a heap table is not shared with the processes that die */
    test_quiet_log();
    char name[128];
    shmring_state_t *s = fs_make(name, sizeof name);
    enum op op = fs_op_of(point);
    fs_killed_writer(s, name, point, op, 0);
    fs_reset(s);
    fs_killed_writer(s, name, point, op, 1);
    fs_reset(s);
    if (strcmp(point, "state.W3") != 0)
        fs_stalled_writer_is_not_recovered(s, name, point, op);
    shmring_state_close(s);
    shmring_state_unlink(name);
    return 2;
}

/*
 * Recoverer points: a writer dies at state.W1 holding k; a recoverer
 * (shmring_state_repair) dies at X0 (nothing done: the next writer
 * recovers k) or X1 (k recovered but not counted).
 */
static unsigned fs_recoverer_point(const char *point)
{
    if (test_heap_forced())
        return 0; /* a heap table is not shared with the processes that die */
    test_quiet_log();
    char name[128];
    shmring_state_t *s = fs_make(name, sizeof name);
    pid_t w = fs_child(name, "state.W1:kill", OP_UPDATE);
    cr_assert_eq(test_wait_child(w), 128 + SIGKILL);
    cr_assert_eq(fs_stats(s).writing, 1);
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill", point);
    pid_t r = fs_child(name, rule, -1);
    cr_assert_eq(test_wait_child(r), 128 + SIGKILL, "%s: the recoverer did not die there", point);
    int at_x1 = strcmp(point, "state.X1") == 0;
    shmring_state_stats_t st = fs_stats(s);
    cr_assert_eq(st.writing, at_x1 ? 0u : 1u, "%s: writing %u", point, st.writing);
    cr_assert_eq(st.recovered, 0, "%s: counted before the recovery was done", point);
    cr_assert_eq(fs_read(s, "k"), OLD_ID, "%s: the previous value is gone", point);
    cr_assert_eq(fs_write_within(s, "k", NEW_ID), 0, "%s: the next writer is stuck", point);
    cr_assert_eq(fs_read(s, "k"), NEW_ID);
    st = fs_stats(s);
    cr_assert_eq(st.writing, 0);
    cr_assert_eq(st.recovered, at_x1 ? 0u : 1u, "%s: recovered %llu", point,
                 (unsigned long long)st.recovered);
    /* A recoverer held at the point holds nothing a writer waits for. */
    w = fs_child(name, "state.W1:kill", OP_UPDATE);
    cr_assert_eq(test_wait_child(w), 128 + SIGKILL);
    snprintf(rule, sizeof rule, "%s:hook", point);
    struct stall *stall = stall_new();
    r = fs_child(name, rule, -1);
    wait_stalled(stall, r, 0);
    cr_assert_eq(fs_write_within(s, "k", NEW_ID + 1), 0, "%s: a held recoverer holds k", point);
    cr_assert_eq(fs_read(s, "k"), NEW_ID + 1);
    __atomic_store_n(&stall->release, 1, __ATOMIC_RELEASE);
    cr_assert_eq(test_wait_child(r), 0);
    cr_assert_eq(fs_read(s, "k"), NEW_ID + 1, "%s: a late recoverer undid a write", point);
    cr_assert_eq(fs_stats(s).writing, 0);
    shmring_state_close(s);
    shmring_state_unlink(name);
    return 4;
}

/* A stalled live writer of k: nobody recovers it. */
static void check_not_recovered(shmring_state_t *s)
{
    cr_assert_eq(shmring_state_repair(s), 0, "a repair recovered a live writer");
    unsigned char v[VSIZE];
    test_fill(v, 32, 7);
    cr_assert_eq(shmring_state_write(s, "k", v, 32), -EAGAIN, "a write went past a live writer");
    cr_assert_eq(fs_stats(s).recovered, 0, "a live writer was recovered");
    cr_assert_eq(fs_read(s, "k"), OLD_ID);
}

static void *zombie_thread_write(void *arg)
{
    shmring_state_t *h = arg;
    _exit(fs_do(h, OP_UPDATE) == 0 ? 0 : 5);
}

/*
 * A writer process whose main thread called pthread_exit() shows Z; its
 * other thread, held inside a write at state.W1, is alive and must not be
 * recovered (the state letter decided it before).
 */
Test(fault_state, writer_whose_main_thread_exited_is_not_recovered, .timeout = 60)
{
    cr_assert_eq(shmring__fault_compiled(), 1);
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    char name[128];
    shmring_state_t *s = fs_make(name, sizeof name);
    struct stall *st = stall_new();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(30);
        shmring_state_t *h = NULL;
        if (shmring_state_open(name, 0, &h) != 0)
            _exit(3);
        shmring__fault_hook_set(stall_hook, st);
        if (shmring__fault_set("state.W1:hook") != 0)
            _exit(4);
        pthread_t th;
        if (pthread_create(&th, NULL, zombie_thread_write, h) != 0)
            _exit(6);
        pthread_exit(NULL);
    }
    wait_stalled(st, pid, 1);
    check_not_recovered(s);
    cr_assert_eq(proc_state(pid), 'Z', "the writer's main thread came back?");
    __atomic_store_n(&st->release, 1, __ATOMIC_RELEASE);
    cr_assert_eq(test_wait_child(pid), 0, "the released writer failed");
    cr_assert_eq(fs_read(s, "k"), NEW_ID);
    cr_assert_eq(fs_stats(s).recovered, 0);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

/*
 * A child of fork() writing through its parent's handle is judged on itself:
 * held at state.W1 it stays alive when the parent dies, and is recovered
 * once it dies itself.
 */
Test(fault_state, forked_child_on_parents_handle_is_judged_on_itself, .timeout = 60)
{
    cr_assert_eq(shmring__fault_compiled(), 1);
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    char name[128];
    shmring_state_t *s = fs_make(name, sizeof name);
    struct stall *st = stall_new();
    pid_t parent = fork();
    cr_assert_geq(parent, 0);
    if (parent == 0) {
        alarm(30);
        shmring_state_t *h = NULL;
        if (shmring_state_open(name, 0, &h) != 0)
            _exit(3);
        pid_t child = fork();
        if (child < 0)
            _exit(4);
        if (child == 0) {
            alarm(30);
            shmring__fault_hook_set(stall_hook, st);
            if (shmring__fault_set("state.W1:hook") != 0)
                _exit(4);
            _exit(fs_do(h, OP_UPDATE) == 0 ? 0 : 5);
        }
        st->writer = child;
        /* The parent dies with its handle open, while its child writes. */
        uint64_t deadline = h_now_ns() + 10000000000ull;
        while (!__atomic_load_n(&st->at_point, __ATOMIC_ACQUIRE) && h_now_ns() < deadline)
            h_sleep_ns(1000000);
        _exit(__atomic_load_n(&st->at_point, __ATOMIC_ACQUIRE) ? 0 : 7);
    }
    cr_assert_eq(test_wait_child(parent), 0);
    wait_stalled(st, st->writer, 0);
    check_not_recovered(s);
    /* Now the writer itself dies (not our child: init reaps it; its lock goes at exit). */
    cr_assert_eq(kill(st->writer, SIGKILL), 0);
    cr_assert_eq(fs_write_within(s, "k", NEW_ID + 1), 0, "the dead child's entry is stuck");
    cr_assert_eq(fs_read(s, "k"), NEW_ID + 1);
    cr_assert_eq(fs_stats(s).recovered, 1);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

const struct fault_scenario fault_state_scenarios[] = {
    {"state.W1", fs_writer_point},    {"state.W2", fs_writer_point},
    {"state.W3", fs_writer_point},    {"state.L1", fs_writer_point},
    {"state.I1", fs_writer_point},    {"state.L3", fs_writer_point},
    {"state.T1", fs_writer_point},    {"state.X0", fs_recoverer_point},
    {"state.X1", fs_recoverer_point}, {NULL, NULL},
};

#endif
