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
#include "pool.h"

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
    /* non-zero: the item (result) must lie in [lo, hi): read in place */
    uintptr_t in_lo, in_hi, out_lo, out_hi;
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
    uintptr_t in = (uintptr_t)item, out = (uintptr_t)result;
    if ((b->in_lo != 0 && (in < b->in_lo || in >= b->in_hi)) ||
        (b->out_lo != 0 && (out < b->out_lo || out >= b->out_hi)))
        return -EFAULT; /* a copy, where the data was to be read in place */
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
    shmring_pool_config_t cfg =
        SHMRING_POOL_CONFIG_INIT(.workers = workers, .flags = flags, .arena_size = arena);
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
    shmring_pool_config_t cfg = SHMRING_POOL_CONFIG_INIT(.workers = 2);
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
            shmring_pool_config_t cfg = SHMRING_POOL_CONFIG_INIT(.workers = 3, .flags = modes[m]);
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

/*
 * A process that is not the pool's unreaped child is never signalled. The
 * application reaps a dead worker itself (as a SIGCHLD handler calling
 * waitpid(-1) would), and its pid goes to an unrelated process (forced with
 * ns_last_pid, as root); that process must outlive a map round and the
 * pool's destroy. The bystander is a grandchild (not our child either).
 */
static pid_t bystander_with_pid(pid_t want)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t mid = fork();
        cr_assert_geq(mid, 0);
        if (mid == 0) {
            FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
            if (f != NULL) {
                fprintf(f, "%d", (int)want - 1);
                fclose(f);
            }
            pid_t g = fork();
            if (g == 0) {
                /* No descriptor of the test's: nothing waits on it. */
                for (int fd = 0; fd < 1024; fd++)
                    close(fd);
                for (;;)
                    pause();
            }
            ssize_t n = write(fds[1], &g, sizeof g);
            _exit(n == (ssize_t)sizeof g ? 0 : 1);
        }
        close(fds[1]);
        pid_t g = -1;
        ssize_t n = read(fds[0], &g, sizeof g);
        close(fds[0]);
        waitpid(mid, NULL, 0);
        if (n == (ssize_t)sizeof g && g == want)
            return g;
        if (n == (ssize_t)sizeof g && g > 0)
            kill(g, SIGKILL);
    }
    return -1;
}

/* Running (kill(pid, 0) also succeeds on a zombie nobody reaped yet). */
static int runs(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

Test(pool, a_reaped_worker_pid_given_to_another_process_is_never_killed, .timeout = 60)
{
    if (geteuid() != 0 || access("/proc/sys/kernel/ns_last_pid", W_OK) != 0) {
        fprintf(stderr, "SKIP pool::a_reaped_worker_pid...: needs root and a writable "
                        "/proc/sys/kernel/ns_last_pid to reuse a pid on purpose\n");
        cr_skip_test("needs root and a writable /proc/sys/kernel/ns_last_pid");
    }
    struct behaviour *b = new_behaviour();
    for (int m = 0; m < 2; m++) {
        for (int with_round = 0; with_round < 2; with_round++) {
            shmring_pool_t *p = make_pool(modes[m], 2, 0, b);
            pid_t pids[2];
            cr_assert_eq(shmring_pool_pids(p, pids, 2), 2);
            /* The application kills and reaps the worker behind the pool's back. */
            cr_assert_eq(kill(pids[0], SIGKILL), 0);
            cr_assert_eq(waitpid(pids[0], NULL, 0), pids[0]);
            pid_t g = bystander_with_pid(pids[0]);
            if (g < 0) {
                fprintf(stderr,
                        "NOTE pool: %s: pid %d could not be reused (busy machine): case not run\n",
                        mode_names[m], (int)pids[0]);
                shmring_pool_destroy(p);
                continue;
            }
            if (with_round) {
                /* The pool finds its worker gone and starts another one. */
                free(map_checked(p, 64, ITEM, RESULT, mode_names[m]));
            }
            shmring_pool_destroy(p);
            int alive = runs(g);
            kill(g, SIGKILL);
            cr_assert(alive, "%s (%s): pid %d, now an unrelated process, was killed", mode_names[m],
                      with_round ? "map, destroy" : "destroy", (int)g);
        }
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
        shmring_pool_config_t cfg = SHMRING_POOL_CONFIG_INIT(.flags = modes[m]);
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

/* ---- Arena blocks: shmring_pool_alloc / shmring_pool_free ----------------- */

/* Items and results in arena blocks are read and written where they are
 * (shared memory and threads: the task sees the block's own addresses);
 * every mode gives the same results, and mixed placements work too. */
Test(pool, maps_over_arena_blocks_copy_nothing)
{
    struct behaviour *b = new_behaviour();
    const size_t n = 3000;
    for (int m = 0; m < NMODES; m++) {
        const char *mn = mode_names[m];
        shmring_pool_t *p = make_pool(modes[m], 2, 1u << 20, b);
        int in_place = shmring_pool_mode(p) != SHMRING_POOL_MODE_MESSAGE_PASSING;
        unsigned char *items = shmring_pool_alloc(p, n * ITEM);
        unsigned char *results = shmring_pool_alloc(p, n * RESULT);
        cr_assert_not_null(items, "%s: %s", mn, strerror(errno));
        cr_assert_not_null(results, "%s: %s", mn, strerror(errno));
        cr_assert_eq((uintptr_t)items % 64, 0);
        cr_assert_eq((uintptr_t)results % 64, 0);
        cr_assert(results >= items + n * ITEM || items >= results + n * RESULT, "%s: overlap", mn);
        for (size_t i = 0; i < n; i++)
            test_fill(items + i * ITEM, ITEM, i);
        unsigned char *heap_items = make_items(n, ITEM), *heap_results = malloc(n * RESULT);
        struct {
            const unsigned char *in;
            unsigned char *out;
        } cases[] = {{items, results}, {items, heap_results}, {heap_items, results}};
        for (size_t k = 0; k < 3; k++) {
            memset(cases[k].out, 0xee, n * RESULT);
            if (in_place) {
                b->in_lo = cases[k].in == items ? (uintptr_t)items : 0;
                b->in_hi = (uintptr_t)(items + n * ITEM);
                b->out_lo = cases[k].out == results ? (uintptr_t)results : 0;
                b->out_hi = (uintptr_t)(results + n * RESULT);
            }
            int rc = shmring_pool_map(p, cases[k].in, n, ITEM, cases[k].out, RESULT);
            cr_assert_eq(rc, 0, "%s, case %zu: %s", mn, k, shmring_strerror(rc));
            check_results(cases[k].out, n, RESULT, mn);
        }
        b->in_lo = b->out_lo = 0;
        /* Items and results in one block (results after the items). */
        unsigned char *both = shmring_pool_alloc(p, n * (ITEM + RESULT));
        cr_assert_not_null(both);
        memcpy(both, items, n * ITEM);
        cr_assert_eq(shmring_pool_map(p, both, n, ITEM, both + n * ITEM, RESULT), 0, "%s", mn);
        check_results(both + n * ITEM, n, RESULT, mn);
        cr_assert_eq(shmring_pool_free(p, both), 0);
        cr_assert_eq(shmring_pool_free(p, items), 0);
        cr_assert_eq(shmring_pool_free(p, results), 0);
        cr_assert_eq(shmring_pool_restarts(p), 0, "%s", mn);
        free(heap_items);
        free(heap_results);
        shmring_pool_destroy(p);
        assert_no_children(mn);
    }
    test_shared_free(b, sizeof *b);
}

/* Every bad input of alloc and free is refused and changes nothing. */
Test(pool, alloc_and_free_errors)
{
    struct behaviour *b = new_behaviour();
    errno = 0;
    cr_assert_null(shmring_pool_alloc(NULL, 64));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(shmring_pool_free(NULL, &errno), -EINVAL);
    for (int m = 0; m < NMODES; m++) {
        const char *mn = mode_names[m];
        const size_t arena = 64 * 1024;
        shmring_pool_t *p = make_pool(modes[m], 2, arena, b), *q = make_pool(modes[m], 1, arena, b);
        int shared = shmring_pool_mode(p) == SHMRING_POOL_MODE_SHARED;
        errno = 0;
        cr_assert_null(shmring_pool_alloc(p, 0), "%s", mn);
        cr_assert_eq(errno, EINVAL, "%s", mn);
        errno = 0;
        cr_assert_null(shmring_pool_alloc(p, SIZE_MAX), "%s", mn);
        cr_assert_eq(errno, ENOMEM, "%s", mn);
        if (shared) {
            /* The arena is exhausted: a block larger than it, then after it is all taken. */
            errno = 0;
            cr_assert_null(shmring_pool_alloc(p, arena + 1), "%s", mn);
            cr_assert_eq(errno, ENOMEM);
            void *all = shmring_pool_alloc(p, arena);
            cr_assert_not_null(all, "%s: the whole arena", mn);
            errno = 0;
            cr_assert_null(shmring_pool_alloc(p, 1));
            cr_assert_eq(errno, ENOMEM);
            /* A map that must copy finds no room to stage its items. */
            unsigned char *items = make_items(4, ITEM), results[4 * RESULT];
            cr_assert_eq(shmring_pool_map(p, items, 4, ITEM, results, RESULT), -ENOMEM);
            cr_assert_eq(shmring_pool_free(p, all), 0);
            cr_assert_eq(shmring_pool_map(p, items, 4, ITEM, results, RESULT), 0);
            check_results(results, 4, RESULT, mn);
            free(items);
        }
        unsigned char *x = shmring_pool_alloc(p, 100), *y = shmring_pool_alloc(p, 64);
        cr_assert_not_null(x);
        cr_assert_not_null(y);
        int on_stack;
        cr_assert_eq(shmring_pool_free(p, NULL), -EINVAL, "%s", mn);
        cr_assert_eq(shmring_pool_free(p, &on_stack), -EINVAL, "%s: not from the pool", mn);
        cr_assert_eq(shmring_pool_free(p, x + 64), -EINVAL, "%s: inside a block", mn);
        cr_assert_eq(shmring_pool_free(q, x), -EINVAL, "%s: another pool's block", mn);
        cr_assert_eq(shmring_pool_free(p, x), 0, "%s", mn);
        cr_assert_eq(shmring_pool_free(p, x), -EINVAL, "%s: double free", mn);
        if (shared) {
            /* Items over freed arena space, or across a block's end, are refused. */
            unsigned char results[RESULT * 4];
            cr_assert_eq(shmring_pool_map(p, x, 1, ITEM, results, RESULT), -EINVAL, "%s", mn);
            cr_assert_eq(shmring_pool_map(p, y, 2, ITEM, results, RESULT), -EINVAL, "%s", mn);
        }
        /* y is intact and still freeable; x's space is reused. */
        unsigned char *z = shmring_pool_alloc(p, 64);
        cr_assert_not_null(z);
        cr_assert_eq(shmring_pool_free(p, y), 0);
        cr_assert_eq(shmring_pool_free(p, z), 0);
        /* Only the creating process may allocate or free. */
        unsigned char *w = shmring_pool_alloc(p, 64);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            errno = 0;
            int ok = shmring_pool_alloc(p, 64) == NULL && errno == EINVAL &&
                     shmring_pool_free(p, w) == -EINVAL;
            _exit(ok ? 0 : 1);
        }
        cr_assert_eq(test_wait_child(pid), 0, "%s: a forked child is refused", mn);
        cr_assert_eq(shmring_pool_free(p, w), 0);
        shmring_pool_destroy(q);
        shmring_pool_destroy(p);
        assert_no_children(mn);
    }
    test_shared_free(b, sizeof *b);
}

/* Blocks left allocated are freed with the pool (ASan and valgrind check it). */
Test(pool, destroy_frees_the_blocks)
{
    struct behaviour *b = new_behaviour();
    for (int m = 0; m < NMODES; m++) {
        shmring_pool_t *p = make_pool(modes[m], 1, 0, b);
        for (int i = 0; i < 10; i++)
            cr_assert_not_null(shmring_pool_alloc(p, 1000 + (size_t)i));
        shmring_pool_destroy(p);
    }
    test_shared_free(b, sizeof *b);
}

/* ---- Range maps ------------------------------------------------------------ */

/* In the arena (or, without one, the heap): visible to the range task. */
struct sum_job {
    double *x;
    size_t n;
    size_t fail_index; /* SIZE_MAX: none */
    size_t crash_index;
    uint32_t crash_mode; /* 0 none, 1 always, 2 once */
    uint32_t crashes;    /* fetch-add */
    uint64_t begin[SHMRING_POOL_MAX_RANGES];
    uint64_t end[SHMRING_POOL_MAX_RANGES];
    double partial[SHMRING_POOL_MAX_RANGES];
};

static int sum_range(size_t begin, size_t end, size_t range, void *ctx)
{
    struct sum_job *j = ctx;
    if (range >= SHMRING_POOL_MAX_RANGES || begin >= end || end > j->n)
        return -ERANGE;
    if (j->fail_index >= begin && j->fail_index < end)
        return -EDOM;
    uint32_t mode = __atomic_load_n(&j->crash_mode, __ATOMIC_RELAXED);
    if (mode != 0 && j->crash_index >= begin && j->crash_index < end) {
        if (mode == 1 || __atomic_fetch_add(&j->crashes, 1, __ATOMIC_RELAXED) == 0) {
            if (mode == 1)
                __atomic_fetch_add(&j->crashes, 1, __ATOMIC_RELAXED);
            raise(SIGSEGV);
        }
    }
    double s = 0;
    for (size_t i = begin; i < end; i++)
        s += j->x[i];
    j->partial[range] = s; /* stored, not added: a redone range is harmless */
    j->begin[range] = begin;
    j->end[range] = end;
    return 0;
}

static struct sum_job *new_sum_job(shmring_pool_t *p, size_t n)
{
    struct sum_job *j = shmring_pool_alloc(p, sizeof *j);
    cr_assert_not_null(j);
    memset(j, 0, sizeof *j);
    j->x = shmring_pool_alloc(p, n * sizeof *j->x);
    cr_assert_not_null(j->x);
    j->n = n;
    j->fail_index = SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        j->x[i] = (double)(i % 1000);
    return j;
}

/* The ranges tile [0, n) in order, and the partials add up. */
static void check_sum(const struct sum_job *j, const char *what)
{
    size_t next = 0;
    double total = 0, want = 0;
    for (size_t r = 0; r < SHMRING_POOL_MAX_RANGES && next < j->n; r++) {
        cr_assert_eq(j->begin[r], next, "%s: range %zu starts at %llu, not %zu", what, r,
                     (unsigned long long)j->begin[r], next);
        cr_assert_gt(j->end[r], j->begin[r], "%s: range %zu is empty", what, r);
        next = j->end[r];
        total += j->partial[r];
    }
    cr_assert_eq(next, j->n, "%s: the ranges cover %zu of %zu", what, next, j->n);
    for (size_t i = 0; i < j->n; i++)
        want += (double)(i % 1000);
    cr_assert_eq(total, want, "%s: sum %f, want %f", what, total, want);
}

Test(pool, map_range_every_mode)
{
    struct behaviour *b = new_behaviour();
    const size_t sizes[] = {1, 2, 7, 24, 25, 1000, 100003};
    for (int m = 0; m < NMODES; m++) {
        const char *mn = mode_names[m];
        shmring_pool_t *p = make_pool(modes[m], 3, 4u << 20, b);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            struct sum_job *j = new_sum_job(p, sizes[k]);
            int rc = shmring_pool_map_range(p, sizes[k], sum_range, j);
            cr_assert_eq(rc, 0, "%s, n %zu: %s", mn, sizes[k], shmring_strerror(rc));
            cr_assert_eq(shmring_pool_last_error_item(p), SIZE_MAX);
            check_sum(j, mn);
            /* Ranges: at most 8 per worker. */
            size_t used = 0;
            while (used < SHMRING_POOL_MAX_RANGES && j->end[used] != 0)
                used++;
            cr_assert_leq(used, 3 * 8, "%s: %zu ranges", mn, used);
            cr_assert_eq(shmring_pool_free(p, j->x), 0);
            cr_assert_eq(shmring_pool_free(p, j), 0);
        }
        /* n = 0 calls nothing; bad arguments are refused. */
        cr_assert_eq(shmring_pool_map_range(p, 0, sum_range, NULL), 0, "%s", mn);
        cr_assert_eq(shmring_pool_map_range(NULL, 10, sum_range, NULL), -EINVAL, "%s", mn);
        cr_assert_eq(shmring_pool_map_range(p, 10, NULL, NULL), -EINVAL, "%s", mn);
        /* A failing range fails the map and names its first index; the pool goes on. */
        struct sum_job *j = new_sum_job(p, 5000);
        j->fail_index = 3210;
        cr_assert_eq(shmring_pool_map_range(p, 5000, sum_range, j), -EDOM, "%s", mn);
        size_t at = shmring_pool_last_error_item(p);
        cr_assert(at <= 3210 && 3210 - at < 5000 / 24 + 1, "%s: error item %zu", mn, at);
        j->fail_index = SIZE_MAX;
        cr_assert_eq(shmring_pool_map_range(p, 5000, sum_range, j), 0, "%s", mn);
        check_sum(j, mn);
        shmring_pool_destroy(p);
        assert_no_children(mn);
    }
    test_shared_free(b, sizeof *b);
}

/* Worker processes dying in a range: once, the range is redone; always,
 * the map fails with -ECHILD naming the range's first index. */
Test(pool, map_range_survives_a_crash_and_blames_a_killer, .timeout = 30)
{
    if (test_heap_forced())
        cr_skip_test("message passing runs ranges in the caller");
    struct behaviour *b = new_behaviour();
    shmring_pool_t *p = make_pool(SHMRING_POOL_PROCESSES, 2, 4u << 20, b);
    struct sum_job *j = new_sum_job(p, 20000);
    j->crash_index = 12345;
    j->crash_mode = 2;
    cr_assert_eq(shmring_pool_map_range(p, 20000, sum_range, j), 0);
    check_sum(j, "a crash once");
    cr_assert_eq(__atomic_load_n(&j->crashes, __ATOMIC_RELAXED), 2, "crashed once, then ran");
    cr_assert_eq(shmring_pool_restarts(p), 1);
    j->crashes = 0;
    j->crash_mode = 1;
    cr_assert_eq(shmring_pool_map_range(p, 20000, sum_range, j), -ECHILD);
    size_t at = shmring_pool_last_error_item(p);
    cr_assert(at <= 12345 && 12345 - at < 20000 / 16 + 1, "error item %zu", at);
    cr_assert_eq(__atomic_load_n(&j->crashes, __ATOMIC_RELAXED), SHMRING_POOL_MAX_KILLS);
    j->crash_mode = 0;
    cr_assert_eq(shmring_pool_map_range(p, 20000, sum_range, j), 0);
    check_sum(j, "after the killer");
    shmring_pool_destroy(p);
    assert_no_children("ranges");
    test_shared_free(b, sizeof *b);
}

/* ---- A task that writes over the control page ------------------------------ */

enum scribble {
    SCRIBBLE_NONE,
    SCRIBBLE_NCHUNKS_HUGE,
    SCRIBBLE_NCHUNKS_ONE,
    SCRIBBLE_CHUNK_ITEMS,
    SCRIBBLE_N,
    SCRIBBLE_ITEM_SIZE,
    SCRIBBLE_RESULTS_OFF,
    SCRIBBLE_GEN,
    SCRIBBLE_ABORT,
    SCRIBBLE_COUNT
};

struct scribble_item {
    uint64_t id;
    uint64_t what; /* enum scribble, acted on by item 0 */
    struct shmring__pool_ctl *ctl;
};

static int scribbler(const void *item, size_t item_size, void *result, size_t result_size,
                     void *ctx)
{
    (void)ctx;
    (void)item_size;
    const struct scribble_item *it = item;
    struct shmring__pool_ctl *ctl = it->ctl;
    if (it->id == 0) {
        switch (it->what) {
        case SCRIBBLE_NCHUNKS_HUGE:
            ctl->nchunks = UINT32_MAX;
            break;
        case SCRIBBLE_NCHUNKS_ONE:
            ctl->nchunks = 1;
            break;
        case SCRIBBLE_CHUNK_ITEMS:
            ctl->chunk_items = 1;
            break;
        case SCRIBBLE_N:
            ctl->n = 0;
            break;
        case SCRIBBLE_ITEM_SIZE:
            ctl->item_size = 1;
            break;
        case SCRIBBLE_RESULTS_OFF:
            ctl->results_off += 64;
            break;
        case SCRIBBLE_GEN:
            ctl->gen += 7;
            break;
        case SCRIBBLE_ABORT:
            ctl->abort_gen = ctl->gen;
            break;
        }
    }
    uint64_t r = result_id(it->id);
    memcpy(result, &r, result_size < 8 ? result_size : 8);
    return 0;
}

/* Every field the workers can write is one the parent does not decide
 * with: the map fails with -EPROTO, never with a crash of the parent or a
 * success with results missing, and the next map is whole again. */
Test(pool, a_task_that_corrupts_the_control_page_fails_the_map, .timeout = 60)
{
    if (test_heap_forced())
        cr_skip_test("no control page in message-passing mode");
    test_quiet_log();
    shmring_pool_config_t cfg = SHMRING_POOL_CONFIG_INIT(.workers = 2);
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&cfg, scribbler, NULL, &p), 0);
    struct shmring__pool_ctl *ctl = shmring__pool_control(p);
    cr_assert_not_null(ctl);
    const size_t n = 4000;
    struct scribble_item *items = malloc(n * sizeof *items);
    uint64_t *results = malloc(n * sizeof *results);
    for (uint64_t what = SCRIBBLE_NCHUNKS_HUGE; what < SCRIBBLE_COUNT; what++) {
        for (size_t i = 0; i < n; i++)
            items[i] = (struct scribble_item){i, what, ctl};
        memset(results, 0, n * sizeof *results);
        int rc = shmring_pool_map(p, items, n, sizeof *items, results, sizeof *results);
        cr_assert_eq(rc, -EPROTO, "scribble %llu: %s", (unsigned long long)what,
                     shmring_strerror(rc));
        for (size_t i = 0; i < n; i++)
            items[i].what = SCRIBBLE_NONE;
        rc = shmring_pool_map(p, items, n, sizeof *items, results, sizeof *results);
        cr_assert_eq(rc, 0, "after scribble %llu: %s", (unsigned long long)what,
                     shmring_strerror(rc));
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(results[i], result_id(i), "after scribble %llu: result %zu",
                         (unsigned long long)what, i);
    }
    free(items);
    free(results);
    shmring_pool_destroy(p);
    assert_no_children("scribblers");
}
