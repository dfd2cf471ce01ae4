/* Crash scenarios for messages larger than a slot: span.tail, span.copy, span.claim and
 * span.resume (see fault_walk.h and src/span.h). */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

#if defined(SHMRING_FAULT_INJECTION)

#include "kit.h"

#define SLOTS 16u
#define SLOT  64u
#define MAXM  512u

/* Length of message `id`: odd ids span slots (5 of them), even ones fit. */
static size_t len_of(uint64_t id)
{
    return id % 2 ? 300 : 32;
}

static shmring_t *make(const char *name, uint32_t flags)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = SLOT, .max_message = MAXM, .flags = flags);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    return r;
}

static void push_id(shmring_t *p, uint64_t id)
{
    unsigned char buf[MAXM];
    test_fill(buf, len_of(id), id);
    cr_assert_eq(shmring_push(p, buf, len_of(id)), 0, "push %llu", (unsigned long long)id);
}

/* Pop ids first..last-1 whole and in order. */
static void pop_ids(shmring_t *c, uint64_t first, uint64_t last)
{
    unsigned char buf[MAXM];
    for (uint64_t id = first; id < last; id++) {
        ssize_t n = shmring_pop(c, buf, sizeof buf);
        cr_assert_eq(n, (ssize_t)len_of(id), "id %llu: pop %zd", (unsigned long long)id, n);
        test_expect_id(buf, n, id);
    }
}

/* Pop ids first..last-1 whole and in order, then find the ring empty. */
static void drain(shmring_t *c, uint64_t first, uint64_t last)
{
    unsigned char buf[MAXM];
    pop_ids(c, first, last);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "a message after id %llu",
                 (unsigned long long)last);
}

struct job {
    const char *name;
    uint64_t first, n; /* producer: ids to push */
};

static int producer_run(void *arg)
{
    struct job *j = arg;
    shmring_t *p;
    if (shmring_open(j->name, SHMRING_PRODUCER, &p) != 0)
        return 2;
    unsigned char buf[MAXM];
    for (uint64_t id = j->first; id < j->first + j->n; id++) {
        test_fill(buf, len_of(id), id);
        if (shmring_push(p, buf, len_of(id)) != 0)
            return 3;
    }
    shmring_close(p);
    return 0;
}

static int pop_run(void *arg)
{
    struct job *j = arg;
    shmring_t *c;
    if (shmring_open(j->name, SHMRING_CONSUMER, &c) != 0)
        return 2;
    unsigned char buf[MAXM];
    return shmring_pop(c, buf, sizeof buf) >= 0 ? 0 : 3;
}

static int claim_run(void *arg)
{
    struct job *j = arg;
    shmring_t *c;
    if (shmring_open(j->name, SHMRING_CONSUMER, &c) != 0)
        return 2;
    shmring_msg_t m;
    return shmring_claim(c, &m) == 0 ? 0 : 3;
}

/*
 * The producer dies at `spec` while pushing ids 0..2 (id 1 spans 5 slots);
 * `before` producers more die at span.resume@1 while taking over. The
 * consumer gets id 0, never part of id 1; the producer that finally takes
 * over pushes ids 1.. again over the leftover slots, and they arrive whole,
 * in order, with nothing in between; counters reconcile.
 */
static void producer_killed(const char *spec, unsigned resumers)
{
    char *name = kit_name("sprod");
    shmring_t *c = make(name, SHMRING_CONSUMER);
    struct job j = {.name = name, .first = 0, .n = 3};
    kit_killed(producer_run, &j, spec);
    drain(c, 0, 1);
    struct job none = {.name = name, .first = 1, .n = 0};
    for (unsigned i = 0; i < resumers; i++)
        kit_killed(producer_run, &none, "span.resume:kill@1");
    drain(c, 1, 1);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p), 0, "lease taken over");
    /* Small ones first: each position of the leftover is read as a head. */
    for (uint64_t id = 2; id < 12; id += 2) {
        push_id(p, id);
        drain(c, id, id + 1);
    }
    for (uint64_t id = 1; id < 12; id++) {
        push_id(p, id);
        drain(c, id, id + 1);
    }
    shmring_stats_t st = kit_stats(c);
    cr_assert_eq(st.pushed, 1 + 5 + 11, "pushed %llu", (unsigned long long)st.pushed);
    kit_reconcile(c);
    shmring_close(p);
    shmring_close(c);
    shmring_unlink(name);
    free(name);
}

static unsigned tail_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    producer_killed("span.tail:kill@1", 0); /* one continuation of id 1 published */
    producer_killed("span.tail:kill@4", 0); /* all four: only the head missing */
    return 2;
}

static unsigned resume_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    producer_killed("span.tail:kill@3", 1); /* a successor dies unmarking the leftovers */
    producer_killed("span.tail:kill@4", 2);
    return 1 + 1 + 1 + 2;
}

/* A consumer dies part-way through copying a spanning message (copy pop):
 * it held nothing; the message stays whole for the next consumer. */
static unsigned copy_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("scopy");
    shmring_t *p = make(name, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    for (uint64_t id = 0; id < 4; id++)
        push_id(p, id);
    pop_ids(c, 0, 1);
    struct job j = {.name = name};
    kit_killed(pop_run, &j, "span.copy:kill@2");
    drain(c, 1, 4);
    kit_reconcile(c);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* A claimer dies with its pending claim on a spanning message's first slot,
 * the copy made, read_index not moved: the next claimer reclaims the dead
 * claim and gets the message whole; nothing is counted abandoned (the
 * claim was never held); the producer gets every slot back. */
static unsigned claim_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0;
    char *name = kit_name("sclaim");
    shmring_t *p = make(name, SHMRING_PRODUCER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    push_id(p, 1);
    push_id(p, 3);
    struct job j = {.name = name};
    kit_killed(claim_run, &j, "span.claim:kill");
    for (uint64_t id = 1; id < 5; id += 2) {
        shmring_msg_t m;
        int rc = shmring_claim_wait(c, &m, -1);
        cr_assert_eq(rc, 0, "claim: %s", shmring_strerror(rc));
        cr_assert_eq(m.len, len_of(id));
        test_expect_id(m.data, (ssize_t)m.len, id);
        cr_assert_eq(shmring_release(c, &m), 0);
    }
    for (uint64_t id = 5; id < 20; id += 2) {
        push_id(p, id);
        drain(c, id, id + 1);
    }
    shmring_stats_t st = kit_stats(c);
    cr_assert_eq(st.abandoned, 0);
    kit_reconcile(c);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

const struct fault_scenario fault_span_scenarios[] = {
    {"span.tail", tail_killed},
    {"span.resume", resume_killed},
    {"span.copy", copy_killed},
    {"span.claim", claim_killed},
    {NULL, NULL},
};

#else

const struct fault_scenario fault_span_scenarios[] = {{NULL, NULL}};

#endif
