/* SHMRING_OPEN_EXISTING: open-or-create of rings and state tables, and its races. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

static int ring_or(const char *name, uint32_t slots, uint32_t slot_size, uint32_t flags,
                   shmring_t **out)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = slots, .slot_size = slot_size, .flags = flags);
    *out = NULL;
    return shmring_create(name, &cfg, out);
}

static int table_or(const char *name, uint32_t entries, uint32_t value_size, uint32_t flags,
                    shmring_state_t **out)
{
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = value_size, .flags = flags);
    *out = NULL;
    return shmring_state_create(name, &cfg, out);
}

#define OE SHMRING_OPEN_EXISTING

Test(open_existing, ring_created_then_opened)
{
    const char *name = test_name("ring");
    shmring_t *p, *c, *c2;
    cr_assert_eq(ring_or(name, 8, 64, OE | SHMRING_PRODUCER, &p), 0, "creates when absent");
    cr_assert_eq(ring_or(name, 8, 64, OE | SHMRING_CONSUMER, &c), 0, "opens when present");
    cr_assert_eq(shmring_slots(c), 8);
    cr_assert_eq(shmring_slot_size(c), 64);
    /* One ring: what the first handle pushes, the second pops. */
    cr_assert_eq(shmring_push(p, "hello", 5), 0);
    char buf[64];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), 5);
    cr_assert(memcmp(buf, "hello", 5) == 0);
    /* Roles are those requested: a second producer is refused as by shmring_open. */
    shmring_t *p2 = NULL;
    cr_assert_eq(ring_or(name, 8, 64, OE | SHMRING_PRODUCER, &p2), -EBUSY);
    cr_assert_null(p2);
    /* Without a role flag the default is the producer role, here taken. */
    cr_assert_eq(ring_or(name, 8, 64, OE, &p2), -EBUSY);
    /* Backend flags and mode play no part in opening. */
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64,
                            .flags = OE | SHMRING_CONSUMER | SHMRING_NO_FALLBACK, .mode = 0640);
    cr_assert_eq(shmring_create(name, &cfg, &c2), 0);
    shmring_close(c2);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(open_existing, ring_defaults_match_explicit_values)
{
    const char *name = test_name("rdef");
    shmring_t *p, *c;
    cr_assert_eq(shmring_create(name, NULL, &p), 0);
    cr_assert_eq(ring_or(name, 1024, 256, OE | SHMRING_CONSUMER, &c), 0);
    shmring_close(c);
    cr_assert_eq(ring_or(name, 0, 0, OE | SHMRING_OBSERVER, &c), 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(open_existing, ring_mismatch_and_bad_input)
{
    const char *name = test_name("rbad");
    shmring_t *p, *x = NULL;
    cr_assert_eq(ring_or(name, 8, 64, SHMRING_PRODUCER, &p), 0);
    /* Without the flag: -EEXIST as before. */
    cr_assert_eq(ring_or(name, 8, 64, SHMRING_CONSUMER, &x), -EEXIST);
    cr_assert_eq(ring_or(name, 16, 64, OE | SHMRING_CONSUMER, &x), -EEXIST, "other slots");
    cr_assert_eq(ring_or(name, 8, 128, OE | SHMRING_CONSUMER, &x), -EEXIST, "other slot size");
    cr_assert_eq(ring_or(name, 8, 64, OE | SHMRING_CONSUMER | SHMRING_OVERWRITE, &x), -EEXIST,
                 "other policy");
    cr_assert_null(x);
    /* A state table of that name is not a ring. */
    shmring_state_t *t = NULL;
    cr_assert_eq(table_or(name, 16, 16, OE, &t), -EEXIST);
    cr_assert_null(t);
    /* Nothing to open for an anonymous ring; bad names and NULL out as without the flag. */
    cr_assert_eq(ring_or(NULL, 8, 64, OE, &x), -EINVAL);
    cr_assert_eq(ring_or("no-slash", 8, 64, OE, &x), -EINVAL);
    cr_assert_eq(ring_or(name, 7, 64, OE, &x), -EINVAL);
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .flags = OE);
    cr_assert_eq(shmring_create(name, &cfg, NULL), -EINVAL);
    cr_assert_null(x);
    shmring_close(p);
    shmring_unlink(name);

    /* An overwrite ring is opened by an overwrite request. */
    cr_assert_eq(ring_or(name, 8, 64, SHMRING_PRODUCER | SHMRING_OVERWRITE, &p), 0);
    cr_assert_eq(ring_or(name, 8, 64, OE | SHMRING_CONSUMER | SHMRING_OVERWRITE, &x), 0);
    shmring_t *y = NULL;
    cr_assert_eq(ring_or(name, 8, 64, OE | SHMRING_CONSUMER, &y), -EEXIST, "other policy");
    cr_assert_null(y);
    shmring_close(x);
    shmring_close(p);
    shmring_unlink(name);
}

Test(open_existing, table_created_then_opened_and_mismatches)
{
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("tab"));
    shmring_state_t *a, *b, *x = NULL;
    cr_assert_eq(table_or(name, 16, 32, OE, &a), 0, "creates when absent");
    cr_assert_eq(table_or(name, 16, 32, OE, &b), 0, "opens when present");
    cr_assert_eq(shmring_state_write(a, "k", "v", 1), 0);
    char buf[32];
    cr_assert_eq(shmring_state_read(b, "k", buf, sizeof buf), 1, "one table");
    cr_assert_eq(table_or(name, 16, 32, 0, &x), -EEXIST, "without the flag");
    cr_assert_eq(table_or(name, 32, 32, OE, &x), -EEXIST, "other entries");
    cr_assert_eq(table_or(name, 16, 64, OE, &x), -EEXIST, "other value size");
    cr_assert_eq(table_or(NULL, 16, 32, OE, &x), -EINVAL, "anonymous");
    cr_assert_eq(table_or("bad/name", 16, 32, OE, &x), -EINVAL);
    cr_assert_eq(table_or(name, 15, 32, OE, &x), -EINVAL);
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = 16, .value_size = 32, .flags = OE);
    cr_assert_eq(shmring_state_create(name, &cfg, NULL), -EINVAL);
    cr_assert_null(x);
    /* A ring of that name is not a table. */
    const char *rname = test_name("tabring");
    shmring_t *r, *r2 = NULL;
    cr_assert_eq(ring_or(rname, 8, 64, SHMRING_PRODUCER, &r), 0);
    cr_assert_eq(table_or(rname, 16, 32, OE, &x), -EEXIST);
    cr_assert_eq(ring_or(name, 8, 64, OE | SHMRING_CONSUMER, &r2), -EEXIST);
    cr_assert_null(x);
    cr_assert_null(r2);
    shmring_close(r);
    shmring_unlink(rname);
    shmring_state_close(b);
    shmring_state_close(a);
    shmring_state_unlink(name);

    /* Defaults match explicit values. */
    cr_assert_eq(shmring_state_create(name, NULL, &a), 0);
    cr_assert_eq(table_or(name, 1024, 256, OE, &b), 0);
    shmring_state_close(b);
    shmring_state_close(a);
    shmring_state_unlink(name);
}

/* ---- Races: everyone creates-or-opens at once, all succeed, one object ------------- */

enum { RACERS = 4, ROUNDS = 20 };

struct race {
    const char *name;
    int *gate;
    int id;
    int rc;
};

static void gate_wait(int *gate, int n)
{
    __atomic_fetch_add(gate, 1, __ATOMIC_ACQ_REL);
    uint64_t deadline = h_now_ns() + 10000000000ull;
    while (__atomic_load_n(gate, __ATOMIC_ACQUIRE) < n && h_now_ns() < deadline)
        ;
}

/* Create-or-open the table, write key "r<id>", close. */
static int race_table(const char *name, int *gate, int id)
{
    gate_wait(gate, RACERS);
    shmring_state_t *s;
    int rc = table_or(name, 16, 16, OE, &s);
    if (rc < 0)
        return rc;
    char key[16];
    snprintf(key, sizeof key, "r%d", id);
    rc = shmring_state_write(s, key, &id, sizeof id);
    shmring_state_close(s);
    return rc;
}

/* Create-or-open the ring as a consumer, keep it open until all did, close. */
static int race_ring(const char *name, int *gate, int id)
{
    (void)id;
    gate_wait(gate, RACERS);
    shmring_t *r;
    int rc = ring_or(name, 8, 64, OE | SHMRING_CONSUMER, &r);
    if (rc < 0)
        return rc;
    /* Hold it while the others open: each must find the same ring. */
    gate_wait(gate, 2 * RACERS);
    shmring_close(r);
    return 0;
}

static void *table_thread(void *arg)
{
    struct race *r = arg;
    r->rc = race_table(r->name, r->gate, r->id);
    return NULL;
}

static void *ring_thread(void *arg)
{
    struct race *r = arg;
    r->rc = race_ring(r->name, r->gate, r->id);
    return NULL;
}

static void check_table(const char *name)
{
    shmring_state_t *s;
    cr_assert_eq(shmring_state_open(name, 0, &s), 0);
    for (int i = 0; i < RACERS; i++) {
        char key[16];
        int v = -1;
        snprintf(key, sizeof key, "r%d", i);
        cr_assert_eq(shmring_state_read(s, key, &v, sizeof v), (ssize_t)sizeof v,
                     "key %s missing: two tables were made", key);
        cr_assert_eq(v, i);
    }
    shmring_state_close(s);
}

static void check_ring(const char *name)
{
    /* Every racer attached to this ring as a consumer at the same time. */
    shmring_t *o;
    cr_assert_eq(shmring_open(name, SHMRING_OBSERVER, &o), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(o, &st), 0);
    shmring_close(o);
}

Test(open_existing, racing_threads_share_one_object, .timeout = 120)
{
    h_arm_deadline(60);
    for (int round = 0; round < ROUNDS; round++) {
        char tname[128], rname[128];
        snprintf(tname, sizeof tname, "%s", test_name("trace"));
        snprintf(rname, sizeof rname, "%s", test_name("rrace"));
        int gate = 0, rgate = 0;
        pthread_t t[2 * RACERS];
        struct race args[2 * RACERS];
        for (int i = 0; i < RACERS; i++) {
            args[i] = (struct race){tname, &gate, i, -1};
            args[RACERS + i] = (struct race){rname, &rgate, i, -1};
            cr_assert_eq(pthread_create(&t[i], NULL, table_thread, &args[i]), 0);
            cr_assert_eq(pthread_create(&t[RACERS + i], NULL, ring_thread, &args[RACERS + i]), 0);
        }
        for (int i = 0; i < 2 * RACERS; i++) {
            pthread_join(t[i], NULL);
            cr_assert_eq(args[i].rc, 0, "racer %d: %s", i, shmring_strerror(args[i].rc));
        }
        check_table(tname);
        cr_assert_eq(shmring_state_unlink(tname), 0);
        /* Heap objects of this process vanish with their last handle. */
        if (!test_heap_forced()) {
            check_ring(rname);
            cr_assert_eq(shmring_unlink(rname), 0);
        }
    }
    h_disarm_deadline();
}

Test(open_existing, racing_processes_share_one_object, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    h_arm_deadline(60);
    for (int round = 0; round < ROUNDS; round++) {
        char tname[128], rname[128];
        snprintf(tname, sizeof tname, "%s", test_name("tprace"));
        snprintf(rname, sizeof rname, "%s", test_name("rprace"));
        int *gates = test_shared_alloc(2 * sizeof *gates);
        pid_t pids[2 * RACERS];
        for (int i = 0; i < 2 * RACERS; i++) {
            pids[i] = fork();
            cr_assert_geq(pids[i], 0);
            if (pids[i] == 0) {
                alarm(h_sanitized() ? 360 : 60);
                int rc = i < RACERS ? race_table(tname, &gates[0], i)
                                    : race_ring(rname, &gates[1], i - RACERS);
                _exit(rc == 0 ? 0 : rc < 0 && rc > -100 ? -rc : 100);
            }
        }
        for (int i = 0; i < 2 * RACERS; i++) {
            int st = test_wait_child(pids[i]);
            cr_assert_eq(st, 0, "racer %d: exit %d (%s)", i, st, strerror(st));
        }
        test_shared_free(gates, 2 * sizeof *gates);
        check_table(tname);
        check_ring(rname);
        cr_assert_eq(shmring_state_unlink(tname), 0);
        cr_assert_eq(shmring_unlink(rname), 0);
    }
    h_disarm_deadline();
}
