/* Crash scenarios for broadcast subscribers: attach (B1..B3), the cursor's advance (B4), the
 * producer's look at the cursors (G1..G3), and the reclaim of a dead subscriber (B5); see
 * fault_walk.h and src/subscriber.c. */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

#if defined(SHMRING_FAULT_INJECTION)

#include "kit.h"

#define SLOTS 8

struct sub_job {
    const char *name;
    int pops;       /* messages to pop before pausing (the point may kill first) */
    uint32_t *sync; /* [0]: done; [1]: attached */
};

/* A subscriber: attaches, pops `pops` messages, says so, then waits to be killed. */
static int subscriber_run(void *arg)
{
    struct sub_job *j = arg;
    shmring_t *s;
    if (shmring_open(j->name, SHMRING_SUBSCRIBER, &s) != 0)
        return 2;
    kit_set(&j->sync[1], 1);
    char buf[64];
    for (int i = 0; i < j->pops; i++)
        if (shmring_pop_wait(s, buf, sizeof buf, 5000000000LL) < 0)
            return 3;
    kit_set(&j->sync[0], 1);
    for (;;)
        pause();
}

/* A producer: pushes ids 0..n-1 with plain pushes, then waits to be killed. */
static int producer_run(void *arg)
{
    struct sub_job *j = arg;
    shmring_t *p;
    if (shmring_open(j->name, SHMRING_PRODUCER, &p) != 0)
        return 2;
    char buf[64];
    for (int i = 0; i < j->pops; i++) {
        test_fill(buf, 32, (uint64_t)i);
        if (shmring_push(p, buf, 32) != 0)
            return 3;
    }
    kit_set(&j->sync[0], 1);
    for (;;)
        pause();
}

/* A reclaimer: shmring_stats through an observer handle reclaims dead entries. */
static int stats_run(void *arg)
{
    struct sub_job *j = arg;
    shmring_t *o;
    if (shmring_open(j->name, SHMRING_OBSERVER, &o) != 0)
        return 2;
    shmring_stats_t st;
    shmring_stats(o, &st);
    shmring_close(o);
    return 0;
}

/*
 * The producer keeps going past a dead subscriber: a live one, kept up to
 * date, sees ids [first, last) in order; the waiting pushes never stay blocked.
 */
static void push_past_the_dead(shmring_t *p, shmring_t *live, uint64_t first, uint64_t last)
{
    char buf[64];
    for (uint64_t id = first; id < last; id++) {
        test_fill(buf, 32, id);
        cr_assert_eq(shmring_push_wait(p, buf, 32, 10000000000LL), 0, "push of id %llu",
                     (unsigned long long)id);
        test_expect_id(buf, shmring_pop(live, buf, sizeof buf), id);
    }
}

/* sub.attach / sub.advance: a subscriber dies registered; the producer goes on. */
static unsigned subscriber_killed(const char *point, int pops, const char *spec)
{
    if (test_heap_forced())
        return 0; /* processes share nothing on the heap backend */
    char *name = kit_name("fsub");
    shmring_t *p = test_make(name, SLOTS, 64, SHMRING_PRODUCER);
    shmring_t *live = test_open_as(name, SHMRING_SUBSCRIBER);
    uint32_t *sync = test_shared_alloc(2 * sizeof *sync);
    sync[0] = sync[1] = 0;
    struct sub_job j = {name, pops, sync};
    pid_t pid = kit_child(subscriber_run, &j, spec);
    if (pops == 0) {
        cr_assert_eq(test_wait_child(pid), 128 + SIGKILL, "%s: not killed", point);
    } else {
        /* Give it messages to pop; it dies at the advance of the last one. */
        cr_assert(kit_await(&sync[1], 1), "subscriber attached");
        push_past_the_dead(p, live, 0, (uint64_t)pops);
        cr_assert_eq(test_wait_child(pid), 128 + SIGKILL, "%s: not killed", point);
    }
    push_past_the_dead(p, live, (uint64_t)pops, (uint64_t)pops + 4 * SLOTS);
    shmring_stats_t st = kit_stats(p);
    cr_assert_eq(st.subscribers_dead, 1, "%s: dead subscribers counted", point);
    cr_assert_eq(st.subscribers, 1);
    test_shared_free(sync, 2 * sizeof *sync);
    shmring_close(live);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

static unsigned attach_killed(const char *point)
{
    return subscriber_killed(point, 0, "sub.attach:kill");
}

static unsigned advance_killed(const char *point)
{
    return subscriber_killed(point, 3, "sub.advance:kill@3");
}

/* sub.rescan: the producer dies at its second look; a successor takes over
 * and the subscriber sees every message once, in order. */
static unsigned rescan_killed(const char *point)
{
    if (test_heap_forced())
        return 0; /* processes share nothing on the heap backend */
    char *name = kit_name("fresc");
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = 64, .flags = SHMRING_SUBSCRIBER);
    shmring_t *s = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &s), 0);
    uint32_t *sync = test_shared_alloc(2 * sizeof *sync);
    sync[0] = sync[1] = 0;
    /* The producer looks at attach (@1), then at its ninth push (@2): killed
     * there, with 8 pushed. */
    struct sub_job j = {name, 2 * SLOTS, sync};
    cr_assert_eq(test_wait_child(kit_child(producer_run, &j, "sub.rescan:kill@2")), 128 + SIGKILL,
                 "%s: not killed", point);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p), 0, "lease taken over");
    char buf[64];
    cr_assert_eq(shmring_push(p, "x", 1), -EAGAIN, "the subscriber still holds the ring");
    for (uint64_t id = 0; id < SLOTS; id++)
        test_expect_id(buf, shmring_pop(s, buf, sizeof buf), id);
    push_past_the_dead(p, s, SLOTS, 4 * SLOTS);
    cr_assert_eq(shmring_pop(s, buf, sizeof buf), -EAGAIN);
    test_shared_free(sync, 2 * sizeof *sync);
    shmring_close(p);
    shmring_close(s);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* sub.reclaim: a reclaimer dies after clearing a dead subscriber's
 * registration: the producer is free of it; its death may go uncounted. */
static unsigned reclaim_killed(const char *point)
{
    if (test_heap_forced())
        return 0; /* processes share nothing on the heap backend */
    char *name = kit_name("frecl");
    shmring_t *p = test_make(name, SLOTS, 64, SHMRING_PRODUCER);
    shmring_t *live = test_open_as(name, SHMRING_SUBSCRIBER);
    uint32_t *sync = test_shared_alloc(2 * sizeof *sync);
    sync[0] = sync[1] = 0;
    struct sub_job j = {name, 0, sync};
    pid_t victim = kit_child(subscriber_run, &j, NULL);
    cr_assert(kit_await(sync, 1), "subscriber attached");
    kit_reap(victim);
    kit_killed(stats_run, &j, "sub.reclaim:kill");
    push_past_the_dead(p, live, 0, 4 * SLOTS);
    shmring_stats_t st = kit_stats(p);
    cr_assert_leq(st.subscribers_dead, 1, "%s", point);
    cr_assert_eq(st.subscribers, 1);
    test_shared_free(sync, 2 * sizeof *sync);
    shmring_close(live);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1; /* the victim was reaped, not killed at a point */
}

const struct fault_scenario fault_subscriber_scenarios[] = {
    {"sub.attach", attach_killed},
    {"sub.advance", advance_killed},
    {"sub.rescan", rescan_killed},
    {"sub.reclaim", reclaim_killed},
    {NULL, NULL},
};

#else

const struct fault_scenario fault_subscriber_scenarios[] = {
    {NULL, NULL},
};

#endif
