/*
 * Fault injection (src/fault.h): the table of points, the rule syntax, and a
 * process killed at a point of the ring. The crash walk over every point
 * lives here too. Runs only in a SHMRING_FAULT_INJECTION build (make
 * test-fault); elsewhere each test skips itself.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"
#include "fault/fault_walk.h"
#include "shmring.h"

Test(fault, table_names_are_unique_and_described)
{
    int n = shmring__fault_count();
    cr_assert_gt(n, 0);
    for (int i = 0; i < n; i++) {
        const char *name = shmring__fault_name(i);
        cr_assert_not_null(name);
        cr_assert_not_null(strchr(name, '.'), "%s: module.label", name);
        cr_assert_gt(strlen(shmring__fault_describe(i)), 0);
        cr_assert_eq(shmring__fault_lookup(name), i, "%s found again", name);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(name, shmring__fault_name(j));
    }
    cr_assert_null(shmring__fault_name(n));
    cr_assert_null(shmring__fault_name(-1));
    cr_assert_eq(shmring__fault_lookup("ring.nowhere"), -ENOENT);
    cr_assert_eq(shmring__fault_lookup(NULL), -ENOENT);
}

#if !defined(SHMRING_FAULT_INJECTION)

Test(fault, points_compiled_in)
{
    cr_assert_eq(shmring__fault_compiled(), 0);
    cr_skip_test("built without SHMRING_FAULT_INJECTION: make test-fault runs this suite");
}

#else

static void need_fault_build(void)
{
    cr_assert_eq(shmring__fault_compiled(), 1);
}

static int hook_calls;
static uint64_t hook_hits_seen;

static void count_hook(int point, void *ctx)
{
    (void)ctx;
    hook_calls++;
    hook_hits_seen = shmring__fault_hits(point);
}

Test(fault, bad_specs_are_refused_and_change_nothing)
{
    need_fault_build();
    cr_assert_eq(shmring__fault_set("ring.P1:hook@2"), 0);
    static const char *bad[] = {
        "ring.P1",           /* no action */
        "ring.P1:",          /* empty action */
        "nowhere.X:kill",    /* unknown point */
        ":kill",             /* no point */
        "ring.P1:explode",   /* unknown action */
        "ring.P1:delay",     /* delay needs microseconds */
        "ring.P1:kill=3",    /* kill takes none */
        "ring.P1:delay=x",   /* not a number */
        "ring.P1:kill@0",    /* hits count from 1 */
        "ring.P1:kill@",     /* no count */
        "ring.P1:yield,bad", /* one bad rule spoils the spec */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(shmring__fault_set(bad[i]), -EINVAL, "%s", bad[i]);

    /* The rule armed first is still the one in force. */
    hook_calls = 0;
    shmring__fault_hook_set(count_hook, NULL);
    shmring__fault_reset_hits();
    const char *name = test_name("fspec");
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 16);
    cr_assert_eq(hook_calls, 1, "hook ran only at the second hit");
    cr_assert_eq(hook_hits_seen, 2);
    cr_assert_eq(shmring__fault_hits(SHMRING__FP_RING_P1), 4);
    cr_assert_eq(shmring__fault_hits(SHMRING__FP_RING_P2), 4);
    cr_assert_eq(shmring__fault_set(NULL), 0);
    cr_assert_eq(shmring__fault_set(""), 0);
    shmring_close(p);
    shmring_unlink(name);
}

Test(fault, every_hit_is_counted_and_rules_apply_per_hit)
{
    need_fault_build();
    cr_assert_eq(shmring__fault_set("ring.C3:hook"), 0);
    shmring__fault_hook_set(count_hook, NULL);
    shmring__fault_reset_hits();
    hook_calls = 0;
    const char *name = test_name("fhits");
    shmring_t *p = test_make(name, 16, 64, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 5; i++)
        test_push_id(p, i, 24);
    char buf[64];
    for (uint64_t i = 0; i < 5; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(shmring__fault_hits(SHMRING__FP_RING_C3), 5);
    cr_assert_eq(hook_calls, 5);
    cr_assert_eq(shmring__fault_set("ring.C3:delay=1000@3,ring.P1:yield"), 0);
    cr_assert_eq(shmring__fault_set(NULL), 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* A consumer killed between copying a message and delivering it (ring.C3)
 * holds nothing: the message goes to the next consumer, once. */
Test(fault, consumer_killed_before_delivery_holds_nothing)
{
    need_fault_build();
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("fc3");
    shmring_t *p = test_make(name, 16, 64, SHMRING_PRODUCER);
    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    for (uint64_t i = 0; i < 4; i++)
        test_push_id(p, i, 32);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20);
        shmring_t *c;
        if (shmring_open(name, SHMRING_CONSUMER, &c) != 0)
            _exit(3);
        if (shmring__fault_set("ring.C3:kill@2") != 0)
            _exit(4);
        char buf[64];
        for (;;)
            if (shmring_pop(c, buf, sizeof buf) < 0)
                _exit(5);
    }
    int st = test_wait_child(pid);
    cr_assert_eq(st, 128 + SIGKILL, "child died at the point (status %d)", st);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    char buf[64];
    for (uint64_t i = 1; i < 4; i++)
        test_expect_id(buf, shmring_pop(c, buf, sizeof buf), i);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_stats_t s;
    cr_assert_eq(shmring_stats(obs, &s), 0);
    cr_assert_eq(s.pushed, 4);
    cr_assert_eq(s.popped, 4);
    cr_assert_eq(s.abandoned, 0);
    shmring_close(c);
    shmring_close(obs);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- The crash walk: every point, a party killed there ------------------ */

static const struct fault_scenario *const tables[] = {
    // clang-format off
    fault_ring_scenarios,
    fault_claim_scenarios,
    fault_party_scenarios,
    fault_state_scenarios,
    fault_pool_scenarios,
    fault_cancel_scenarios,
    fault_span_scenarios,
    fault_redeliver_scenarios,
    fault_event_scenarios,
    fault_subscriber_scenarios,
    // clang-format on
};

static unsigned scenarios_for(const char *point)
{
    unsigned n = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const struct fault_scenario *sc = tables[t]; sc->point != NULL; sc++)
            n += strcmp(sc->point, point) == 0;
    return n;
}

Test(fault, every_point_has_a_crash_test, .timeout = 900)
{
    need_fault_build();
    char missing[4096] = "";
    for (int i = 0; i < shmring__fault_count(); i++) {
        const char *name = shmring__fault_name(i);
        if (scenarios_for(name) == 0 && strlen(missing) + strlen(name) + 2 < sizeof missing) {
            strcat(missing, " ");
            strcat(missing, name);
        }
    }
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const struct fault_scenario *sc = tables[t]; sc->point != NULL; sc++)
            cr_assert_geq(shmring__fault_lookup(sc->point), 0, "scenario for unknown point %s",
                          sc->point);
    cr_assert_eq(missing[0], '\0', "points without a crash scenario:%s", missing);

    unsigned kills = 0, runs = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const struct fault_scenario *sc = tables[t]; sc->point != NULL; sc++) {
            unsigned k = sc->run(sc->point);
            cr_log_info("%s: %u kills", sc->point, k);
            kills += k;
            runs++;
        }
    cr_log_info("crash walk: %d points, %u scenarios, %u injected kills", shmring__fault_count(),
                runs, kills);
    /* With SHMRING_FORCE_HEAP nothing is shared across processes: the
     * scenarios that kill one skip themselves. */
    if (!test_heap_forced())
        cr_assert_gt(kills, 0);
}

#endif
