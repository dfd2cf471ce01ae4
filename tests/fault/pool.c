/* Crash scenarios for the worker pool's chunk hand-out and completion (see fault_walk.h). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"
#include "fault_walk.h"
#include "harness.h"
#include "shmring.h"

#if defined(SHMRING_FAULT_INJECTION)

/* Shared with the workers (test_shared_alloc): how many of them may still
 * be killed at the armed point, and how many were. */
struct quota {
    uint32_t left;
    uint32_t killed;
    uint32_t calls; /* task calls, all workers */
};

/* The "hook" action: the first `left` workers to reach the point die there. */
static void kill_within_quota(int point, void *ctx)
{
    (void)point;
    struct quota *q = ctx;
    uint32_t left = __atomic_load_n(&q->left, __ATOMIC_RELAXED);
    while (left > 0)
        if (__atomic_compare_exchange_n(&q->left, &left, left - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED)) {
            __atomic_fetch_add(&q->killed, 1, __ATOMIC_SEQ_CST);
            raise(SIGKILL);
        }
}

static uint64_t result_of(uint64_t item)
{
    return item * 7 + 3;
}

static int task(const void *item, size_t item_size, void *result, size_t result_size, void *ctx)
{
    (void)item_size, (void)result_size;
    struct quota *q = ctx;
    __atomic_fetch_add(&q->calls, 1, __ATOMIC_RELAXED);
    uint64_t v;
    memcpy(&v, item, sizeof v);
    v = result_of(v);
    memcpy(result, &v, sizeof v);
    return 0;
}

/* A pool of 2 worker processes whose workers inherit the armed point. */
static shmring_pool_t *armed_pool(const char *point, struct quota *q, uint32_t kills)
{
    q->left = kills;
    q->killed = 0;
    q->calls = 0;
    char spec[64];
    snprintf(spec, sizeof spec, "%s:hook", point);
    shmring__fault_hook_set(kill_within_quota, q);
    cr_assert_eq(shmring__fault_set(spec), 0);
    shmring_pool_config_t cfg =
        SHMRING_POOL_CONFIG_INIT(.workers = 2, .flags = SHMRING_POOL_PROCESSES);
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&cfg, task, q, &p), 0);
    cr_assert_eq(shmring_pool_mode(p), SHMRING_POOL_MODE_SHARED);
    return p;
}

static void disarm(void)
{
    cr_assert_eq(shmring__fault_set(NULL), 0);
    shmring__fault_hook_set(NULL, NULL);
}

/* The map of n items: every result is its own item's. */
static int map_n(shmring_pool_t *p, size_t n, uint64_t *items, uint64_t *results)
{
    for (size_t i = 0; i < n; i++) {
        items[i] = i;
        results[i] = 0;
    }
    return shmring_pool_map(p, items, n, sizeof *items, results, sizeof *results);
}

/* 1 if process pid is gone (or a zombie nobody will run again). */
static int process_gone(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 1;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren != NULL && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

/*
 * One worker dies at the point during a map of 2,000 items: the map still
 * completes, every result is right (a chunk it owned is run again), one
 * replacement was started, and the pool maps again.
 */
static unsigned worker_killed_once(const char *point)
{
    if (test_heap_forced())
        return 0; /* message passing: the shared-memory steps are not run */
    struct quota *q = test_shared_alloc(sizeof *q);
    shmring_pool_t *p = armed_pool(point, q, 1);
    const size_t n = 2000;
    uint64_t *items = malloc(n * sizeof *items), *results = malloc(n * sizeof *results);
    int rc = map_n(p, n, items, results);
    cr_assert_eq(rc, 0, "%s: %s", point, shmring_strerror(rc));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(results[i], result_of(i), "%s: result %zu", point, i);
    unsigned kills = __atomic_load_n(&q->killed, __ATOMIC_SEQ_CST);
    cr_assert_eq(kills, 1, "%s: the point was reached and killed one worker", point);
    /* A worker killed after its last chunk was complete (pool.notify) may
     * be replaced only by the next map. */
    cr_assert_leq(shmring_pool_restarts(p), 1, "%s", point);
    cr_assert_geq(__atomic_load_n(&q->calls, __ATOMIC_RELAXED), n, "%s", point);
    /* Disarmed: the replacement works. A worker that died after its last
     * chunk is replaced by the next map once it is reapable. */
    disarm();
    if (shmring_pool_restarts(p) == 0) {
        pid_t pids[2] = {0, 0};
        cr_assert_eq(shmring_pool_pids(p, pids, 2), 2);
        uint64_t deadline = h_now_ns() + 5000000000ull;
        while (!process_gone(pids[0]) && !process_gone(pids[1]) && h_now_ns() < deadline)
            h_sleep_ns(1000000);
    }
    cr_assert_eq(map_n(p, n, items, results), 0, "%s: the next map", point);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(results[i], result_of(i), "%s: next map, result %zu", point, i);
    cr_assert_eq(shmring_pool_restarts(p), 1, "%s: one replacement", point);
    shmring_pool_destroy(p);
    free(items);
    free(results);
    test_shared_free(q, sizeof *q);
    return kills;
}

/*
 * Workers die at pool.item on the same item every time (a map of one
 * item): after SHMRING_POOL_MAX_KILLS deaths the map fails with -ECHILD and
 * names the item; then the pool maps again.
 */
static unsigned same_item_kills_three(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct quota *q = test_shared_alloc(sizeof *q);
    shmring_pool_t *p = armed_pool(point, q, 100);
    uint64_t item = 0, result = 0;
    int rc = map_n(p, 1, &item, &result);
    cr_assert_eq(rc, -ECHILD, "%s: %s", point, shmring_strerror(rc));
    cr_assert_eq(shmring_pool_last_error_item(p), 0);
    unsigned kills = __atomic_load_n(&q->killed, __ATOMIC_SEQ_CST);
    cr_assert_eq(kills, SHMRING_POOL_MAX_KILLS, "%s: %u deaths", point, kills);
    disarm();
    cr_assert_eq(map_n(p, 1, &item, &result), 0);
    cr_assert_eq(result, result_of(0));
    shmring_pool_destroy(p);
    test_shared_free(q, sizeof *q);
    return kills;
}

/*
 * The pool's parent dies while handing out chunks (pool.handout): its
 * workers do not outlive it (they die with it), and nothing else is left.
 */
static unsigned parent_killed_at_handout(const char *point)
{
    if (test_heap_forced())
        return 0;
    struct pids {
        pid_t pid[2];
        uint32_t ready;
    } *w = test_shared_alloc(sizeof *w);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        alarm(20);
        struct quota q = {0, 0, 0};
        shmring_pool_config_t cfg = SHMRING_POOL_CONFIG_INIT(.workers = 2);
        shmring_pool_t *p = NULL;
        if (shmring_pool_create(&cfg, task, &q, &p) != 0 ||
            shmring_pool_mode(p) != SHMRING_POOL_MODE_SHARED)
            _exit(3);
        shmring_pool_pids(p, w->pid, 2);
        __atomic_store_n(&w->ready, 1, __ATOMIC_SEQ_CST);
        char spec[64];
        snprintf(spec, sizeof spec, "%s:kill@3", point);
        if (shmring__fault_set(spec) != 0)
            _exit(4);
        uint64_t items[100], results[100];
        map_n(p, 100, items, results);
        _exit(5); /* not reached: the third hand-out kills */
    }
    int st = test_wait_child(child);
    cr_assert_eq(st, 128 + SIGKILL, "%s: the parent died at the point (status %d)", point, st);
    cr_assert_eq(__atomic_load_n(&w->ready, __ATOMIC_SEQ_CST), 1);
    for (int i = 0; i < 2; i++) {
        uint64_t deadline = h_now_ns() + 5000000000ull;
        while (!process_gone(w->pid[i]) && h_now_ns() < deadline)
            h_sleep_ns(1000000);
        cr_assert(process_gone(w->pid[i]), "%s: worker %d outlived its parent", point,
                  (int)w->pid[i]);
    }
    test_shared_free(w, sizeof *w);
    return 1;
}

const struct fault_scenario fault_pool_scenarios[] = {
    {"pool.handout", parent_killed_at_handout}, {"pool.take", worker_killed_once},
    {"pool.claim", worker_killed_once},         {"pool.item", worker_killed_once},
    {"pool.item", same_item_kills_three},       {"pool.complete", worker_killed_once},
    {"pool.notify", worker_killed_once},        {NULL, NULL},
};

#else

/* Without the points compiled in, test_fault skips the walk. */
const struct fault_scenario fault_pool_scenarios[] = {
    {NULL, NULL},
};

#endif
