/* Worker pools: maps in every mode, rounds, dynamic balance, task errors, bad arguments, dead
 * and crashing workers, reaping, workers outliving their owner. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

#define ITEM   64
#define RESULT 32

static const uint32_t modes[] = {SHMRING_POOL_PROCESSES, SHMRING_POOL_MESSAGE_PASSING,
                                 SHMRING_POOL_THREADS};
static const char *const mode_names[] = {"processes", "message passing", "threads"};
#define NMODES 3

static void spin_ns(uint64_t ns)
{
    uint64_t end = h_now_ns() + ns;
    while (h_now_ns() < end)
        ;
}

/*
 * What the tasks do. Lives in shared memory (test_shared_alloc) so that
 * worker processes and the test see the same counters.
 */
struct behaviour {
    uint64_t fail_item[2]; /* item ids that fail ... */
    int fail_rc[2];        /* ... with these values (0: none) */
    uint64_t crash_item;   /* id that raises SIGSEGV while crash_armed */
    uint32_t crash_armed;  /* 1: every time; 2: the first time only */
    uint32_t crashes;      /* how many times a task crashed (fetch-add) */
    uint64_t slow_item;    /* id that sleeps slow_ns */
    uint64_t slow_ns;
    uint64_t item_ns; /* every other item sleeps (or spins) this long */
    uint32_t spin;    /* 1: spin instead of sleeping */
    uint32_t calls;   /* tasks run (fetch-add; only when count_calls) */
    uint32_t count_calls;
};

static struct behaviour *new_behaviour(void)
{
    struct behaviour *b = test_shared_alloc(sizeof *b);
    memset(b, 0, sizeof *b);
    b->crash_item = UINT64_MAX;
    b->slow_item = UINT64_MAX;
    return b;
}

static uint64_t result_id(uint64_t id)
{
    return id * 3 + 1;
}

/*
 * The task: checks the item (a test_fill payload), then fills the result
 * with the test_fill payload of result_id(id), so that a result proves
 * which item it was computed from and that it was not torn.
 */
static int task(const void *item, size_t item_size, void *result, size_t result_size, void *ctx)
{
    struct behaviour *b = ctx;
    uint64_t id;
    if (!test_check(item, item_size, &id))
        return -EBADMSG;
    if (__atomic_load_n(&b->count_calls, __ATOMIC_RELAXED))
        __atomic_fetch_add(&b->calls, 1, __ATOMIC_RELAXED);
    uint32_t armed = __atomic_load_n(&b->crash_armed, __ATOMIC_RELAXED);
    if (armed && id == b->crash_item) {
        uint32_t n = __atomic_fetch_add(&b->crashes, 1, __ATOMIC_SEQ_CST);
        if (armed == 1 || n == 0)
            raise(SIGSEGV);
    }
    for (int i = 0; i < 2; i++)
        if (b->fail_rc[i] != 0 && id == b->fail_item[i])
            return b->fail_rc[i];
    if (id == b->slow_item)
        h_sleep_ns(b->slow_ns);
    else if (b->item_ns && b->spin)
        spin_ns(b->item_ns);
    else if (b->item_ns)
        h_sleep_ns(b->item_ns);
    if (result_size > 0)
        test_fill(result, result_size, result_id(id));
    return 0;
}

static unsigned char *make_items(size_t n, size_t item_size)
{
    unsigned char *items = malloc(n * item_size + 1);
    cr_assert_not_null(items);
    for (size_t i = 0; i < n; i++)
        test_fill(items + i * item_size, item_size, i);
    return items;
}

/* Every result is the one of its own item, whole. */
static void check_results(const unsigned char *results, size_t n, size_t result_size,
                          const char *what)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t id = UINT64_MAX;
        cr_assert(test_check(results + i * result_size, result_size, &id),
                  "%s: result %zu is torn or missing", what, i);
        cr_assert_eq(id, result_id(i), "%s: result %zu belongs to item id %llu", what, i,
                     (unsigned long long)id);
    }
}

static shmring_pool_t *make_pool(uint32_t flags, uint32_t workers, size_t arena,
                                 struct behaviour *b)
{
    shmring_pool_config_t cfg = {.workers = workers, .flags = flags, .arena_size = arena};
    shmring_pool_t *p = NULL;
    int rc = shmring_pool_create(&cfg, task, b, &p);
    cr_assert_eq(rc, 0, "pool create (flags %#x): %s", flags, shmring_strerror(rc));
    return p;
}

static int expected_mode(uint32_t flags)
{
    if (flags & SHMRING_POOL_THREADS)
        return SHMRING_POOL_MODE_THREADS;
    if ((flags & SHMRING_POOL_MESSAGE_PASSING) || test_heap_forced())
        return SHMRING_POOL_MODE_MESSAGE_PASSING;
    return SHMRING_POOL_MODE_SHARED;
}

/* After destroy, no child of this process is left, not even a zombie. */
static void assert_no_children(const char *what)
{
    errno = 0;
    pid_t r = waitpid(-1, NULL, WNOHANG);
    cr_assert(r < 0 && errno == ECHILD, "%s: a child is left behind (waitpid gave %d)", what,
              (int)r);
}

/* One map of n items, checked; returns the results (caller frees). */
static unsigned char *map_checked(shmring_pool_t *p, size_t n, size_t item_size, size_t result_size,
                                  const char *what)
{
    unsigned char *items = make_items(n, item_size);
    unsigned char *results = malloc(n * result_size + 1);
    cr_assert_not_null(results);
    memset(results, 0xee, n * result_size);
    int rc = shmring_pool_map(p, items, n, item_size, results, result_size);
    cr_assert_eq(rc, 0, "%s: map of %zu items: %s", what, n, shmring_strerror(rc));
    cr_assert_eq(shmring_pool_last_error_item(p), SIZE_MAX, "%s", what);
    check_results(results, n, result_size, what);
    free(items);
    return results;
}

Test(pool, map_every_mode_same_results)
{
    struct behaviour *b = new_behaviour();
    const size_t n = 5000;
    unsigned char *first = NULL;
    for (int m = 0; m < NMODES; m++) {
        shmring_pool_t *p = make_pool(modes[m], 3, 0, b);
        cr_assert_eq(shmring_pool_workers(p), 3);
        cr_assert_eq(shmring_pool_mode(p), expected_mode(modes[m]), "%s", mode_names[m]);
        unsigned char *res = map_checked(p, n, ITEM, RESULT, mode_names[m]);
        if (first == NULL)
            first = res;
        else {
            cr_assert(memcmp(first, res, n * RESULT) == 0, "%s: results differ", mode_names[m]);
            free(res);
        }
        /* The same workers, again, with other sizes and counts. */
        size_t counts[] = {1, 2, 7, 3 * 8, 3 * 8 + 1, 999};
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
            free(map_checked(p, counts[k], 24 + 8 * k, 16 + 24 * k, mode_names[m]));
        cr_assert_eq(shmring_pool_map(p, NULL, 0, 0, NULL, 0), 0, "n = 0 does nothing");
        cr_assert_eq(shmring_pool_restarts(p), 0, "%s: no worker died", mode_names[m]);
        shmring_pool_destroy(p);
        assert_no_children(mode_names[m]);
    }
    free(first);
    test_shared_free(b, sizeof *b);
}

Test(pool, rounds_through_a_small_arena)
{
    struct behaviour *b = new_behaviour();
    for (int m = 0; m < NMODES; m++) {
        /* 96 bytes an item: about 40 items a round, 75 rounds. */
        shmring_pool_t *p = make_pool(modes[m], 2, 4096, b);
        free(map_checked(p, 3000, ITEM, RESULT, mode_names[m]));
        /* An item with its result larger than the arena. */
        unsigned char *items = make_items(4, 3000), *results = malloc(4 * 2000);
        int rc = shmring_pool_map(p, items, 4, 3000, results, 2000);
        if (shmring_pool_mode(p) == SHMRING_POOL_MODE_SHARED) {
            cr_assert_eq(rc, -EMSGSIZE, "%s: %s", mode_names[m], shmring_strerror(rc));
        } else {
            cr_assert_eq(rc, 0, "%s: %s", mode_names[m], shmring_strerror(rc));
            check_results(results, 4, 2000, mode_names[m]);
        }
        free(items);
        free(results);
        /* Still usable. */
        free(map_checked(p, 100, ITEM, RESULT, mode_names[m]));
        shmring_pool_destroy(p);
    }
    assert_no_children("rounds");
    test_shared_free(b, sizeof *b);
}

Test(pool, a_slow_item_holds_up_only_its_chunk, .timeout = 30)
{
    struct behaviour *b = new_behaviour();
    b->slow_item = 0;
    b->slow_ns = 300000000;
    b->item_ns = 3000000;
    /* 159 fast items of 3 ms over 4 workers: 120 ms each when balanced,
     * but a static share of 40 items would add 117 ms to the slow one. */
    const size_t n = 160;
    for (int m = 0; m < NMODES; m++) {
        shmring_pool_t *p = make_pool(modes[m], 4, 0, b);
        unsigned char *items = make_items(n, ITEM), *results = malloc(n * RESULT);
        uint64_t t0 = h_now_ns();
        int rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
        double ms = (double)(h_now_ns() - t0) / 1e6;
        cr_assert_eq(rc, 0, "%s: %s", mode_names[m], shmring_strerror(rc));
        check_results(results, n, RESULT, mode_names[m]);
        cr_log_info("%s: map with one 300 ms item took %.0f ms", mode_names[m], ms);
        cr_assert_geq(ms, 299.0, "%s", mode_names[m]);
        cr_assert_lt(ms, 380.0, "%s: %.0f ms: the slow item held up more than its chunk",
                     mode_names[m], ms);
        free(items);
        free(results);
        shmring_pool_destroy(p);
    }
    test_shared_free(b, sizeof *b);
}

Test(pool, task_errors_fail_the_map_and_the_pool_goes_on)
{
    struct behaviour *b = new_behaviour();
    const size_t n = 5000;
    unsigned char *items = make_items(n, ITEM), *results = malloc(n * RESULT);
    for (int m = 0; m < NMODES; m++) {
        const char *mn = mode_names[m];
        shmring_pool_t *p = make_pool(modes[m], 3, 0, b);
        b->fail_item[0] = 500;
        b->fail_rc[0] = -EIO;
        int rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
        cr_assert_eq(rc, -EIO, "%s: %s", mn, shmring_strerror(rc));
        cr_assert_eq(shmring_pool_last_error_item(p), 500, "%s", mn);

        /* Two failures: the one reported is the lowest index seen. */
        b->fail_item[0] = 4000;
        b->fail_item[1] = 100;
        b->fail_rc[1] = -ENOTSUP;
        rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
        size_t at = shmring_pool_last_error_item(p);
        cr_assert((rc == -ENOTSUP && at == 100) || (rc == -EIO && at == 4000), "%s: %s at %zu", mn,
                  shmring_strerror(rc), at);

        /* No results: the task still runs, and its errors still count. */
        b->fail_rc[1] = 0;
        b->fail_item[0] = 7;
        rc = shmring_pool_map(p, items, n, ITEM, NULL, 0);
        cr_assert_eq(rc, -EIO, "%s, no results: %s", mn, shmring_strerror(rc));
        cr_assert_eq(shmring_pool_last_error_item(p), 7, "%s", mn);

        /* A positive return value is an error too. */
        b->fail_rc[0] = 5;
        rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
        cr_assert_eq(rc, -EINVAL, "%s, positive: %s", mn, shmring_strerror(rc));

        /* The next map works. */
        b->fail_rc[0] = 0;
        b->count_calls = 1;
        __atomic_store_n(&b->calls, 0, __ATOMIC_RELAXED);
        rc = shmring_pool_map(p, items, n, ITEM, NULL, 0);
        cr_assert_eq(rc, 0, "%s: %s", mn, shmring_strerror(rc));
        cr_assert_eq(__atomic_load_n(&b->calls, __ATOMIC_RELAXED), n, "%s: every item once", mn);
        b->count_calls = 0;
        memset(results, 0, n * RESULT);
        rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
        cr_assert_eq(rc, 0, "%s: %s", mn, shmring_strerror(rc));
        cr_assert_eq(shmring_pool_last_error_item(p), SIZE_MAX, "%s", mn);
        check_results(results, n, RESULT, mn);
        shmring_pool_destroy(p);
    }
    free(items);
    free(results);
    test_shared_free(b, sizeof *b);
}

Test(pool, bad_arguments)
{
    struct behaviour *b = new_behaviour();
    shmring_pool_t *p = NULL;
    shmring_pool_config_t cfg = {.workers = 2};
    cr_assert_eq(shmring_pool_create(&cfg, NULL, b, &p), -EINVAL);
    cr_assert_eq(shmring_pool_create(&cfg, task, b, NULL), -EINVAL);
    cfg.workers = SHMRING_POOL_MAX_WORKERS + 1;
    cr_assert_eq(shmring_pool_create(&cfg, task, b, &p), -EINVAL);
    cfg.workers = 2;
    uint32_t bad_flags[] = {0x1, SHMRING_OVERWRITE, SHMRING_POOL_THREADS | SHMRING_POOL_PROCESSES,
                            SHMRING_POOL_THREADS | SHMRING_POOL_MESSAGE_PASSING,
                            SHMRING_POOL_THREADS | SHMRING_FORCE_HEAP};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        cfg.flags = bad_flags[i];
        cr_assert_eq(shmring_pool_create(&cfg, task, b, &p), -EINVAL, "flags %#x", bad_flags[i]);
    }
    cr_assert_null(p, "a failed create leaves *out alone");
    assert_no_children("failed creates");

    unsigned char *items = make_items(10, ITEM), *results = malloc(10 * RESULT);
    cr_assert_eq(shmring_pool_map(NULL, items, 10, ITEM, results, RESULT), -EINVAL);
    cr_assert_eq(shmring_pool_workers(NULL), -EINVAL);
    cr_assert_eq(shmring_pool_mode(NULL), -EINVAL);
    cr_assert_eq(shmring_pool_last_error_item(NULL), SIZE_MAX);
    cr_assert_eq(shmring_pool_pids(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(shmring_pool_restarts(NULL), 0);
    shmring_pool_destroy(NULL);
    for (int m = 0; m < NMODES; m++) {
        const char *mn = mode_names[m];
        p = make_pool(modes[m], 2, 0, b);
        cr_assert_eq(shmring_pool_map(p, items, 10, 0, results, RESULT), -EINVAL, "%s", mn);
        cr_assert_eq(shmring_pool_map(p, NULL, 10, ITEM, results, RESULT), -EINVAL, "%s", mn);
        cr_assert_eq(shmring_pool_map(p, items, 10, ITEM, NULL, RESULT), -EINVAL, "%s", mn);
        cr_assert_eq(shmring_pool_map(p, items, SIZE_MAX / 8, 16, results, RESULT), -EINVAL,
                     "%s: n * item_size overflows", mn);
        cr_assert_eq(shmring_pool_map(p, items, SIZE_MAX / 64, 1, results, 128), -EINVAL,
                     "%s: n * result_size overflows", mn);
        cr_assert_eq(shmring_pool_pids(p, NULL, 1), -EINVAL, "%s", mn);
        /* result_size 0 with NULL results, and n = 0 with NULL arrays, are fine. */
        cr_assert_eq(shmring_pool_map(p, items, 10, ITEM, NULL, 0), 0, "%s", mn);
        cr_assert_eq(shmring_pool_map(p, NULL, 0, 0, NULL, 0), 0, "%s", mn);
        /* Nothing ran for the refused calls: the pool works. */
        cr_assert_eq(shmring_pool_map(p, items, 10, ITEM, results, RESULT), 0, "%s", mn);
        check_results(results, 10, RESULT, mn);
        shmring_pool_destroy(p);
    }
    free(items);
    free(results);
    test_shared_free(b, sizeof *b);
}

Test(pool, defaults_and_modes)
{
    struct behaviour *b = new_behaviour();
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(NULL, task, b, &p), 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long want = cpus > SHMRING_POOL_MAX_WORKERS ? SHMRING_POOL_MAX_WORKERS : cpus;
    cr_assert_eq(shmring_pool_workers(p), want);
    cr_assert_eq(shmring_pool_mode(p), expected_mode(0));
    pid_t pids[SHMRING_POOL_MAX_WORKERS];
    cr_assert_eq(shmring_pool_pids(p, pids, SHMRING_POOL_MAX_WORKERS), want);
    for (long i = 0; i < want; i++) {
        cr_assert_gt(pids[i], 0);
        cr_assert_eq(kill(pids[i], 0), 0, "worker %d runs", (int)pids[i]);
    }
    free(map_checked(p, 1000, ITEM, RESULT, "defaults"));
    shmring_pool_destroy(p);
    /* SHMRING_FORCE_HEAP: message passing between processes. */
    p = make_pool(SHMRING_FORCE_HEAP, 2, 0, b);
    cr_assert_eq(shmring_pool_mode(p), SHMRING_POOL_MODE_MESSAGE_PASSING);
    free(map_checked(p, 1000, ITEM, RESULT, "force heap"));
    shmring_pool_destroy(p);
    p = make_pool(SHMRING_POOL_THREADS, 2, 0, b);
    cr_assert_eq(shmring_pool_pids(p, pids, 2), 0, "threads have no pids");
    shmring_pool_destroy(p);
    assert_no_children("defaults");
    test_shared_free(b, sizeof *b);
}

/* ---- Dying workers ------------------------------------------------------ */

Test(pool, a_worker_crashing_once_loses_nothing, .timeout = 30)
{
    struct behaviour *b = new_behaviour();
    const size_t n = 4000;
    for (int m = 0; m < 2; m++) { /* a crash in a thread ends the process */
        const char *mn = mode_names[m];
        shmring_pool_t *p = make_pool(modes[m], 3, 0, b);
        b->crash_item = 1234;
        __atomic_store_n(&b->crashes, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->crash_armed, 2, __ATOMIC_SEQ_CST);
        free(map_checked(p, n, ITEM, RESULT, mn));
        cr_assert_geq(__atomic_load_n(&b->crashes, __ATOMIC_RELAXED), 1, "%s", mn);
        cr_assert_eq(shmring_pool_restarts(p), 1, "%s: one replacement", mn);
        free(map_checked(p, n, ITEM, RESULT, mn));
        shmring_pool_destroy(p);
        assert_no_children(mn);
    }
    test_shared_free(b, sizeof *b);
}

Test(pool, an_item_that_always_crashes_fails_the_map, .timeout = 30)
{
    struct behaviour *b = new_behaviour();
    const size_t n = 4000;
    unsigned char *items = make_items(n, ITEM), *results = malloc(n * RESULT);
    for (int m = 0; m < 2; m++) {
        const char *mn = mode_names[m];
        shmring_pool_t *p = make_pool(modes[m], 3, 0, b);
        b->crash_item = 777;
        __atomic_store_n(&b->crashes, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->crash_armed, 1, __ATOMIC_SEQ_CST);
        int rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
        cr_assert_eq(rc, -ECHILD, "%s: %s", mn, shmring_strerror(rc));
        cr_assert_eq(shmring_pool_last_error_item(p), 777, "%s", mn);
        uint32_t crashes = __atomic_load_n(&b->crashes, __ATOMIC_RELAXED);
        /* Shared memory names the item at once; message passing halves the
         * chunk at each death until it holds the item alone. */
        if (shmring_pool_mode(p) == SHMRING_POOL_MODE_SHARED)
            cr_assert_eq(crashes, SHMRING_POOL_MAX_KILLS, "%s: %u crashes", mn, crashes);
        else
            cr_assert_geq(crashes, SHMRING_POOL_MAX_KILLS, "%s: %u crashes", mn, crashes);
        cr_log_info("%s: item 777 crashed %u workers; %llu restarts", mn, crashes,
                    (unsigned long long)shmring_pool_restarts(p));
        /* Disarmed, the same pool maps everything. */
        __atomic_store_n(&b->crash_armed, 0, __ATOMIC_SEQ_CST);
        memset(results, 0, n * RESULT);
        rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
        cr_assert_eq(rc, 0, "%s: %s", mn, shmring_strerror(rc));
        check_results(results, n, RESULT, mn);
        shmring_pool_destroy(p);
        assert_no_children(mn);
    }
    free(items);
    free(results);
    test_shared_free(b, sizeof *b);
}

struct killer {
    shmring_pool_t *pool;
    unsigned kills_wanted;
    unsigned kills; /* atomic: kills that hit a live worker */
    uint32_t done;  /* atomic */
    unsigned seed;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    pid_t killed[16];
    unsigned nkilled = 0;
    for (unsigned i = 0, tries = 0; i < k->kills_wanted && nkilled < 16 && tries < 1000;
         i++, tries++) {
        h_sleep_ns(10000000 + (uint64_t)(rand_r(&k->seed) % 30) * 1000000);
        pid_t pids[SHMRING_POOL_MAX_WORKERS];
        int n = shmring_pool_pids(k->pool, pids, SHMRING_POOL_MAX_WORKERS);
        if (n <= 0)
            continue;
        pid_t victim = pids[rand_r(&k->seed) % (unsigned)n];
        /* Never the same worker twice: a dead, unreaped one still takes signals. */
        int again = 0;
        for (unsigned j = 0; j < nkilled; j++)
            again |= killed[j] == victim;
        if (victim <= 0 || again) {
            i--;
            continue;
        }
        if (kill(victim, SIGKILL) == 0) {
            killed[nkilled++] = victim;
            __atomic_fetch_add(&k->kills, 1, __ATOMIC_RELAXED);
        }
    }
    __atomic_store_n(&k->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(pool, workers_killed_at_random_lose_nothing, .timeout = 60)
{
    struct behaviour *b = new_behaviour();
    b->item_ns = 20000;
    b->spin = 1;
    const size_t n = 3000;
    unsigned char *items = make_items(n, ITEM), *results = malloc(n * RESULT);
    for (int m = 0; m < 2; m++) {
        const char *mn = mode_names[m];
        shmring_pool_t *p = make_pool(modes[m], 3, 0, b);
        struct killer k = {.pool = p, .kills_wanted = 10, .seed = (unsigned)getpid() + m};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, killer_main, &k), 0);
        unsigned maps = 0;
        uint64_t deadline = h_now_ns() + 20000000000ull;
        while (!__atomic_load_n(&k.done, __ATOMIC_ACQUIRE) && h_now_ns() < deadline) {
            memset(results, 0, n * RESULT);
            int rc = shmring_pool_map(p, items, n, ITEM, results, RESULT);
            cr_assert_eq(rc, 0, "%s, map %u: %s", mn, maps, shmring_strerror(rc));
            check_results(results, n, RESULT, mn);
            maps++;
        }
        pthread_join(t, NULL);
        unsigned kills = __atomic_load_n(&k.kills, __ATOMIC_RELAXED);
        uint64_t restarts = shmring_pool_restarts(p);
        cr_log_info("%s: %u maps, %u kills, %llu restarts", mn, maps, kills,
                    (unsigned long long)restarts);
        cr_assert_geq(kills, 8, "%s: the killer hit workers", mn);
        /* One more map replaces any worker killed after the last map. */
        free(map_checked(p, n, ITEM, RESULT, mn));
        cr_assert_eq(shmring_pool_restarts(p), kills, "%s: every killed worker was replaced", mn);
        shmring_pool_destroy(p);
        assert_no_children(mn);
    }
    free(items);
    free(results);
    test_shared_free(b, sizeof *b);
}

/* ---- Reaping and orphans ------------------------------------------------ */

struct orphan_report {
    uint32_t ready;
    int32_t count;
    pid_t pids[SHMRING_POOL_MAX_WORKERS];
};

Test(pool, workers_die_with_their_owner, .timeout = 30)
{
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct behaviour *b = new_behaviour();
    for (int m = 0; m < 2; m++) {
        const char *mn = mode_names[m];
        struct orphan_report *rep = test_shared_alloc(sizeof *rep);
        memset(rep, 0, sizeof *rep);
        pid_t owner = fork();
        cr_assert_geq(owner, 0);
        if (owner == 0) {
            shmring_pool_config_t cfg = {.workers = 3, .flags = modes[m]};
            shmring_pool_t *p = NULL;
            if (shmring_pool_create(&cfg, task, b, &p) != 0)
                _exit(1);
            unsigned char *items = make_items(100, ITEM), *results = malloc(100 * RESULT);
            if (shmring_pool_map(p, items, 100, ITEM, results, RESULT) != 0)
                _exit(2);
            rep->count = shmring_pool_pids(p, rep->pids, SHMRING_POOL_MAX_WORKERS);
            __atomic_store_n(&rep->ready, 1, __ATOMIC_RELEASE);
            for (;;)
                pause();
        }
        uint64_t deadline = h_now_ns() + 5000000000ull;
        while (!__atomic_load_n(&rep->ready, __ATOMIC_ACQUIRE) && h_now_ns() < deadline)
            h_sleep_ns(1000000);
        int ready = __atomic_load_n(&rep->ready, __ATOMIC_ACQUIRE);
        kill(owner, SIGKILL);
        cr_assert_eq(test_wait_child(owner), 128 + SIGKILL, "%s", mn);
        cr_assert(ready, "%s: the pool's owner did not start", mn);
        cr_assert_eq(rep->count, 3, "%s", mn);
        /* The workers are now orphans, reparented to this process. */
        uint64_t t0 = h_now_ns();
        int alive;
        do {
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
            alive = 0;
            for (int i = 0; i < rep->count; i++)
                if (kill(rep->pids[i], 0) == 0)
                    alive++;
            if (alive)
                h_sleep_ns(2000000);
        } while (alive && h_now_ns() - t0 < 1000000000ull);
        cr_assert_eq(alive, 0, "%s: %d workers outlived their owner by a second", mn, alive);
        cr_log_info("%s: workers gone %.1f ms after their owner", mn,
                    (double)(h_now_ns() - t0) / 1e6);
        assert_no_children(mn);
        test_shared_free(rep, sizeof *rep);
    }
    test_shared_free(b, sizeof *b);
}

Test(pool, destroy_reaps_every_worker)
{
    struct behaviour *b = new_behaviour();
    for (int m = 0; m < 2; m++) {
        shmring_pool_t *p = make_pool(modes[m], 4, 0, b);
        pid_t pids[4];
        cr_assert_eq(shmring_pool_pids(p, pids, 4), 4);
        /* One worker already dead and unreaped when destroy runs. */
        kill(pids[1], SIGKILL);
        h_sleep_ns(20000000);
        shmring_pool_destroy(p);
        assert_no_children(mode_names[m]);
        for (int i = 0; i < 4; i++)
            cr_assert_neq(kill(pids[i], 0), 0, "%s: worker %d survived", mode_names[m],
                          (int)pids[i]);
    }
    test_shared_free(b, sizeof *b);
}

/* ---- Timing ------------------------------------------------------------- */

static int trivial(const void *item, size_t item_size, void *result, size_t result_size, void *ctx)
{
    (void)ctx;
    (void)item_size;
    (void)result_size;
    uint64_t id;
    memcpy(&id, item, 8);
    id = result_id(id);
    memcpy(result, &id, 8);
    return 0;
}

Test(pool, timing_of_100k_items, .timeout = 60)
{
    const size_t n = 100000;
    unsigned char *items = make_items(n, ITEM);
    uint64_t *results = malloc(n * sizeof *results);
    for (int m = 0; m < NMODES; m++) {
        shmring_pool_config_t cfg = {.flags = modes[m]};
        shmring_pool_t *p = NULL;
        cr_assert_eq(shmring_pool_create(&cfg, trivial, NULL, &p), 0);
        double ms[5];
        for (int rep = 0; rep < 5; rep++) {
            memset(results, 0, n * sizeof *results);
            uint64_t t0 = h_now_ns();
            int rc = shmring_pool_map(p, items, n, ITEM, results, sizeof *results);
            ms[rep] = (double)(h_now_ns() - t0) / 1e6;
            cr_assert_eq(rc, 0, "%s: %s", mode_names[m], shmring_strerror(rc));
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(results[i], result_id(i), "%s: result %zu", mode_names[m], i);
        }
        /* Sort: the first map also pays the arena's page faults. */
        for (int i = 1; i < 5; i++)
            for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
                double t = ms[j];
                ms[j] = ms[j - 1];
                ms[j - 1] = t;
            }
        cr_log_info("100,000 items of 64 B, %d workers, %s: best %.2f ms, median %.2f ms",
                    shmring_pool_workers(p), mode_names[m], ms[0], ms[2]);
        shmring_pool_destroy(p);
    }
    free(items);
    free(results);
}
