/*
 * The ABI that can grow: sized config structs, the opaque part of
 * shmring_msg_t, one name per meaning of SHMRING_FORCE_HEAP, the getters'
 * NULL rule and the ordering contract of <shmring.h>'s conventions.
 * (tests/abi/v1_program.c checks the config structs from a program that does
 * not include <shmring.h>.)
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "msg.h"

/* ---- Config structs -------------------------------------------------------- */

Test(abi, init_macros_set_the_size_and_zero_the_rest)
{
    shmring_config_t r = SHMRING_CONFIG_INIT(.slots = 8);
    cr_assert_eq(r.size, sizeof(shmring_config_t));
    cr_assert_eq(r.slots, 8);
    cr_assert(r.slot_size == 0 && r.flags == 0 && r.mode == 0);
    shmring_state_config_t s = SHMRING_STATE_CONFIG_INIT();
    cr_assert_eq(s.size, sizeof(shmring_state_config_t));
    cr_assert(s.entries == 0 && s.value_size == 0 && s.flags == 0 && s.mode == 0);
    shmring_pool_config_t p = SHMRING_POOL_CONFIG_INIT(.workers = 3);
    cr_assert_eq(p.size, sizeof(shmring_pool_config_t));
    cr_assert(p.workers == 3 && p.flags == 0 && p.reserved == 0 && p.arena_size == 0);
    /* No implicit padding: every byte of an initialised struct is a field. */
    cr_assert_eq(sizeof(shmring_config_t),
                 offsetof(shmring_config_t, max_message) + sizeof(uint32_t));
    cr_assert_eq(sizeof(shmring_state_config_t), 5 * sizeof(uint32_t));
    cr_assert_eq(sizeof(shmring_pool_config_t), 4 * sizeof(uint32_t) + sizeof(size_t));
}

Test(abi, null_config_means_defaults)
{
    test_quiet_log();
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(NULL, NULL, &r), 0);
    cr_assert_eq(shmring_slots(r), 1024);
    cr_assert_eq(shmring_slot_size(r), 256);
    shmring_close(r);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(NULL, NULL, &s), 0);
    cr_assert_eq(shmring_state_entries(s), 1024);
    cr_assert_eq(shmring_state_value_size(s), 256);
    shmring_state_close(s);
}

static int square(const void *item, size_t item_size, void *result, size_t result_size, void *ctx)
{
    int v;
    memcpy(&v, item, sizeof v);
    v *= v;
    memcpy(result, &v, sizeof v);
    return 0;
}

/* Create with a config of `size` whose bytes past it hold 0xff; the first
 * fields ask for 8 slots of 64 bytes. */
static int create_sized(const char *name, uint32_t size, shmring_t **out)
{
    static unsigned char mem[4200];
    memset(mem, 0xff, sizeof mem);
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64);
    cfg.size = size;
    memcpy(mem, &cfg, size < sizeof cfg ? size : sizeof cfg);
    if (size > sizeof cfg && size <= sizeof mem)
        memset(mem + sizeof cfg, 0, size - sizeof cfg);
    return shmring_create(name, (const shmring_config_t *)(void *)mem, out);
}

Test(abi, ring_config_sizes)
{
    test_quiet_log();
    for (uint32_t size = 0; size <= sizeof(shmring_config_t) + 8; size++) {
        shmring_t *r = (shmring_t *)(uintptr_t)1;
        int rc = create_sized(NULL, size, &r);
        /* Up to this release's size, a size must end a field; past it, any
         * size of a later release is taken (its unknown bytes are zero). */
        int taken = size > sizeof(shmring_config_t) || (size >= 4 && size % 4 == 0);
        if (!taken) {
            cr_assert_eq(rc, -EINVAL, "size %u: %d", size, rc);
            cr_assert_eq(r, (shmring_t *)(uintptr_t)1, "*out written on error");
            continue;
        }
        cr_assert_eq(rc, 0, "size %u: %s", size, shmring_strerror(rc));
        /* Fields past the size are their defaults, whatever follows. */
        cr_assert_eq(shmring_slots(r), size >= 8 ? 8u : 1024u, "size %u", size);
        cr_assert_eq(shmring_slot_size(r), size >= 12 ? 64u : 256u, "size %u", size);
        shmring_close(r);
    }
    shmring_t *r = NULL;
    cr_assert_eq(create_sized(NULL, SHMRING__CONFIG_SIZE_MAX, &r), 0, "the largest size");
    shmring_close(r);
    cr_assert_eq(create_sized(NULL, SHMRING__CONFIG_SIZE_MAX + 1, &r), -EINVAL);
    cr_assert_eq(create_sized(NULL, UINT32_MAX, &r), -EINVAL);
}

Test(abi, unknown_fields_set_are_e2big_and_change_nothing)
{
    test_quiet_log();
    const char *name = test_name("e2big");
    struct {
        shmring_config_t cfg;
        uint32_t later[3];
    } big;
    for (int i = 0; i < 3; i++) {
        memset(&big, 0, sizeof big);
        big.cfg = (shmring_config_t)SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64);
        big.cfg.size = sizeof big;
        big.later[i] = 0x100u;
        shmring_t *r = (shmring_t *)(uintptr_t)1;
        cr_assert_eq(shmring_create(name, &big.cfg, &r), -E2BIG);
        cr_assert_eq(r, (shmring_t *)(uintptr_t)1);
        cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &r), -ENOENT, "a ring was left");
    }
    big.later[2] = 0;
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(name, &big.cfg, &r), 0, "zero unknown fields are taken");
    cr_assert_eq(shmring_slots(r), 8);
    shmring_close(r);
    shmring_unlink(name);

    struct {
        shmring_state_config_t cfg;
        uint64_t later;
    } sbig = {.cfg = SHMRING_STATE_CONFIG_INIT(.entries = 4), .later = 1};
    sbig.cfg.size = sizeof sbig;
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(name, &sbig.cfg, &s), -E2BIG);
    cr_assert_eq(shmring_state_open(name, 0, &s), -ENOENT);
    sbig.later = 0;
    cr_assert_eq(shmring_state_create(name, &sbig.cfg, &s), 0);
    cr_assert_eq(shmring_state_entries(s), 4);
    shmring_state_close(s);
    shmring_state_unlink(name);

    struct {
        shmring_pool_config_t cfg;
        uint32_t later[2];
    } pbig = {.cfg = SHMRING_POOL_CONFIG_INIT(.workers = 1, .flags = SHMRING_POOL_THREADS),
              .later = {0, 7}};
    pbig.cfg.size = sizeof pbig;
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&pbig.cfg, square, NULL, &p), -E2BIG);
    cr_assert_null(p);
    pbig.later[1] = 0;
    cr_assert_eq(shmring_pool_create(&pbig.cfg, square, NULL, &p), 0);
    shmring_pool_destroy(p);

    cr_assert_not_null(strstr(shmring_strerror(-E2BIG), "config"));
}

Test(abi, size_zero_or_inside_a_field_is_einval)
{
    test_quiet_log();
    const char *name = test_name("size0");
    shmring_config_t cfg = {.slots = 8, .slot_size = 64}; /* no SHMRING_CONFIG_INIT */
    shmring_t *r = (shmring_t *)(uintptr_t)1;
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    cr_assert_eq(shmring_create(NULL, &cfg, &r), -EINVAL);
    cr_assert_eq(r, (shmring_t *)(uintptr_t)1);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &r), -ENOENT);

    shmring_state_config_t scfg = {.entries = 4};
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(name, &scfg, &s), -EINVAL);
    scfg.size = 7;
    cr_assert_eq(shmring_state_create(name, &scfg, &s), -EINVAL);
    scfg.size = 8;
    cr_assert_eq(shmring_state_create(name, &scfg, &s), 0);
    cr_assert_eq(shmring_state_entries(s), 4);
    shmring_state_close(s);
    shmring_state_unlink(name);

    shmring_pool_config_t pcfg = {.workers = 1, .flags = SHMRING_POOL_THREADS};
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&pcfg, square, NULL, &p), -EINVAL);
    pcfg.size = (uint32_t)offsetof(shmring_pool_config_t, arena_size) + 1;
    cr_assert_eq(shmring_pool_create(&pcfg, square, NULL, &p), -EINVAL);
    pcfg.size = sizeof pcfg;
    pcfg.reserved = 1;
    cr_assert_eq(shmring_pool_create(&pcfg, square, NULL, &p), -EINVAL, "reserved must be 0");
    cr_assert_null(p);
    pcfg.reserved = 0;
    cr_assert_eq(shmring_pool_create(&pcfg, square, NULL, &p), 0);
    int items[4] = {1, 2, 3, 4}, results[4];
    cr_assert_eq(shmring_pool_map(p, items, 4, sizeof(int), results, sizeof(int)), 0);
    cr_assert_eq(results[3], 16);
    shmring_pool_destroy(p);
}

/* ---- shmring_msg_t ----------------------------------------------------------- */

Test(abi, msg_layout)
{
    cr_assert_eq(offsetof(shmring_msg_t, data), 0);
    cr_assert_eq(offsetof(shmring_msg_t, len), sizeof(void *));
    cr_assert_eq(offsetof(shmring_msg_t, opaque), sizeof(void *) + sizeof(size_t));
    cr_assert_eq(sizeof(shmring_msg_t), sizeof(void *) + sizeof(size_t) + 3 * sizeof(uint64_t));
    shmring_msg_t m;
    memset(&m, 0xee, sizeof m);
    shmring__msg_set(&m, 0x123456789abcull, 0x9abc, 77);
    struct shmring__msg_private v = shmring__msg_get(&m);
    cr_assert(v.pos == 0x123456789abcull && v.slot == 0x9abc && v.cookie == 77 && v.spare == 0);
}

Test(abi, claim_is_checked_through_its_opaque_words)
{
    const char *name = test_name("opaque");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *other = test_open_as(name, SHMRING_CONSUMER);
    test_push_id(p, 1, 32);
    test_push_id(p, 2, 32);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), 0);
    test_expect_id(m.data, (ssize_t)m.len, 1);
    cr_assert_eq(shmring_msg_pos(&m), 0, "the first message pushed");
    /* Each opaque word altered: not this handle's claim. */
    for (int w = 0; w < 2; w++) {
        shmring_msg_t bad = m;
        bad.opaque[w] ^= 1;
        cr_assert_eq(shmring_release(c, &bad), -EINVAL, "word %d altered", w);
    }
    shmring_msg_t zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(shmring_release(c, &zero), -EINVAL);
    cr_assert_eq(shmring_release(other, &m), -EINVAL, "another handle's claim");
    /* A copy is the same claim; once released, no copy releases again. */
    shmring_msg_t copy = m;
    cr_assert_eq(shmring_release(c, &copy), 0);
    cr_assert_eq(shmring_release(c, &m), -EINVAL);
    cr_assert_eq(shmring_release(c, &copy), -EINVAL);
    cr_assert_eq(shmring_msg_pos(&copy), 0, "still readable after the release");
    cr_assert_eq(shmring_claim(c, &m), 0);
    test_expect_id(m.data, (ssize_t)m.len, 2);
    cr_assert_eq(shmring_msg_pos(&m), 1);
    cr_assert_eq(shmring_release(c, &m), 0);
    shmring_close(other);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- SHMRING_FORCE_HEAP, SHMRING_LOCAL_ONLY, SHMRING_POOL_MESSAGE_PASSING -------- */

Test(abi, local_only_value_is_unique)
{
    const uint32_t others[] = {SHMRING_PRODUCER,        SHMRING_CONSUMER,
                               SHMRING_OBSERVER,        SHMRING_FORCE_HEAP,
                               SHMRING_FORCE_MEMFD,     SHMRING_NO_FALLBACK,
                               SHMRING_OVERWRITE,       SHMRING_NO_MEMBARRIER,
                               SHMRING_SINGLE_CONSUMER, SHMRING_ALLOW_INSECURE,
                               SHMRING_OPEN_EXISTING,   SHMRING_POOL_PROCESSES,
                               SHMRING_POOL_THREADS,    SHMRING_POOL_MESSAGE_PASSING,
                               SHMRING_FOLLOW};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        cr_assert_eq(SHMRING_LOCAL_ONLY & others[i], 0, "flag #%zu", i);
}

Test(abi, local_only_skips_the_shm_directory)
{
    test_quiet_log();
    if (test_heap_forced())
        cr_skip_test("needs named shared memory");
    const char *name = test_name("local");
    shmring_t *p = test_make(name, 4, 64, 0);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_SHM);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_LOCAL_ONLY, &c), -ENOENT);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_FORCE_HEAP, &c), -ENOENT,
                 "the old spelling");
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER | SHMRING_LOCAL_ONLY, 0, &c), -ETIMEDOUT);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    shmring_close(c);
    /* *_open_fd takes the flag and ignores it. */
    cr_assert_eq(shmring_open_fd(shmring_fd(p), SHMRING_CONSUMER | SHMRING_LOCAL_ONLY, &c), 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);

    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 4);
    shmring_state_t *s = NULL, *o = NULL;
    cr_assert_eq(shmring_state_create(name, &cfg, &s), 0);
    cr_assert_eq(shmring_state_open(name, SHMRING_LOCAL_ONLY, &o), -ENOENT);
    cr_assert_eq(shmring_state_open(name, SHMRING_FORCE_HEAP, &o), -ENOENT);
    cr_assert_eq(shmring_state_open_wait(name, SHMRING_LOCAL_ONLY, 0, &o), -ETIMEDOUT);
    cr_assert_eq(shmring_state_open_fd(shmring_state_fd(s), SHMRING_LOCAL_ONLY, &o), 0);
    shmring_state_close(o);
    cr_assert_eq(shmring_state_open(name, 0, &o), 0);
    shmring_state_close(o);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(abi, local_only_finds_this_process_objects)
{
    test_quiet_log();
    const char *name = test_name("localheap");
    shmring_t *p = test_make(name, 4, 64, SHMRING_FORCE_HEAP);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_HEAP);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_LOCAL_ONLY, &c), 0);
    shmring_close(c);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | SHMRING_FORCE_HEAP, &c), 0);
    shmring_close(c);
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER | SHMRING_LOCAL_ONLY, 0, &c), 0);
    test_push_id(p, 5, 20);
    char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 5);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);

    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = 4, .flags = SHMRING_FORCE_HEAP);
    shmring_state_t *s = NULL, *o = NULL;
    cr_assert_eq(shmring_state_create(name, &cfg, &s), 0);
    cr_assert_eq(shmring_state_backend(s), SHMRING_BACKEND_HEAP);
    cr_assert_eq(shmring_state_open(name, SHMRING_LOCAL_ONLY, &o), 0);
    shmring_state_close(o);
    cr_assert_eq(shmring_state_open_wait(name, SHMRING_LOCAL_ONLY, 0, &o), 0);
    shmring_state_close(o);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(abi, local_only_is_not_a_create_flag)
{
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.flags = SHMRING_LOCAL_ONLY);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(NULL, &cfg, &r), -EINVAL);
    shmring_state_config_t scfg = SHMRING_STATE_CONFIG_INIT(.flags = SHMRING_LOCAL_ONLY);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(NULL, &scfg, &s), -EINVAL);
    shmring_pool_config_t pcfg = SHMRING_POOL_CONFIG_INIT(.flags = SHMRING_LOCAL_ONLY);
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&pcfg, square, NULL, &p), -EINVAL);
}

static void expect_pool_mode(uint32_t flags, int want)
{
    shmring_pool_config_t cfg = SHMRING_POOL_CONFIG_INIT(.workers = 1, .flags = flags);
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&cfg, square, NULL, &p), 0, "flags %#x", flags);
    cr_assert_eq(shmring_pool_mode(p), want, "flags %#x", flags);
    int items[3] = {2, 3, 4}, results[3] = {0};
    cr_assert_eq(shmring_pool_map(p, items, 3, sizeof(int), results, sizeof(int)), 0);
    cr_assert(results[0] == 4 && results[1] == 9 && results[2] == 16);
    shmring_pool_destroy(p);
}

Test(abi, pool_force_heap_is_message_passing)
{
    test_quiet_log();
    expect_pool_mode(SHMRING_POOL_MESSAGE_PASSING, SHMRING_POOL_MODE_MESSAGE_PASSING);
    expect_pool_mode(SHMRING_FORCE_HEAP, SHMRING_POOL_MODE_MESSAGE_PASSING);
    expect_pool_mode(SHMRING_FORCE_HEAP | SHMRING_POOL_PROCESSES,
                     SHMRING_POOL_MODE_MESSAGE_PASSING);
    shmring_pool_config_t cfg =
        SHMRING_POOL_CONFIG_INIT(.flags = SHMRING_POOL_THREADS | SHMRING_FORCE_HEAP);
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&cfg, square, NULL, &p), -EINVAL);
    cfg.flags = SHMRING_POOL_THREADS | SHMRING_POOL_MESSAGE_PASSING;
    cr_assert_eq(shmring_pool_create(&cfg, square, NULL, &p), -EINVAL);
}

Test(abi, environment_means_no_shared_memory)
{
    test_quiet_log();
    if (test_heap_forced())
        cr_skip_test("needs named shared memory first");
    const char *name = test_name("env");
    shmring_t *shm = test_make(name, 4, 64, 0);
    cr_assert_eq(setenv("SHMRING_FORCE_HEAP", "1", 1), 0);
    /* create: the heap backend */
    shmring_t *r = test_make(NULL, 4, 64, 0);
    cr_assert_eq(shmring_backend(r), SHMRING_BACKEND_HEAP);
    shmring_close(r);
    /* open by name: only this process's objects */
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), -ENOENT);
    /* pools of processes: message passing */
    expect_pool_mode(0, SHMRING_POOL_MODE_MESSAGE_PASSING);
    expect_pool_mode(SHMRING_POOL_THREADS, SHMRING_POOL_MODE_THREADS);
    cr_assert_eq(setenv("SHMRING_FORCE_HEAP", "0", 1), 0);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0, "\"0\" means unset");
    shmring_close(c);
    cr_assert_eq(unsetenv("SHMRING_FORCE_HEAP"), 0);
    shmring_close(shm);
    shmring_unlink(name);
}

/* ---- Getters and NULL -------------------------------------------------------- */

Test(abi, getters_take_null)
{
    cr_assert_eq(shmring_backend(NULL), -EINVAL);
    cr_assert_eq(shmring_fd(NULL), -EINVAL);
    cr_assert_eq(shmring_slots(NULL), 0);
    cr_assert_eq(shmring_slot_size(NULL), 0);
    cr_assert_eq(shmring_missed(NULL), 0);
    cr_assert_eq(shmring_max_message(NULL), 0);
    cr_assert_eq(shmring_msg_pos(NULL), UINT64_MAX);
    cr_assert_eq(shmring_state_backend(NULL), -EINVAL);
    cr_assert_eq(shmring_state_fd(NULL), -EINVAL);
    cr_assert_eq(shmring_state_entries(NULL), 0);
    cr_assert_eq(shmring_state_value_size(NULL), 0);
    cr_assert_eq(shmring_pool_workers(NULL), -EINVAL);
    cr_assert_eq(shmring_pool_mode(NULL), -EINVAL);
    cr_assert_eq(shmring_pool_last_error_item(NULL), SIZE_MAX);
    cr_assert_eq(shmring_pool_restarts(NULL), 0);
    pid_t pids[2];
    cr_assert_eq(shmring_pool_pids(NULL, pids, 2), -EINVAL);
    cr_assert_eq(shmring_stats(NULL, &(shmring_stats_t){0}), -EINVAL);
    cr_assert_eq(shmring_state_stats(NULL, &(shmring_state_stats_t){0}), -EINVAL);
}

Test(abi, getters_none_values_are_never_those_of_a_handle)
{
    test_quiet_log();
    /* The smallest ring and table still answer non-zero. */
    shmring_t *r = test_make(NULL, 2, 1, 0);
    cr_assert_eq(shmring_slots(r), 2);
    cr_assert_eq(shmring_slot_size(r), 1);
    cr_assert_geq(shmring_backend(r), SHMRING_BACKEND_SHM);
    shmring_close(r);
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 1, .value_size = 1);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(NULL, &cfg, &s), 0);
    cr_assert_eq(shmring_state_entries(s), 1);
    cr_assert_eq(shmring_state_value_size(s), 1);
    shmring_state_close(s);
    shmring_pool_config_t pcfg =
        SHMRING_POOL_CONFIG_INIT(.workers = 1, .flags = SHMRING_POOL_THREADS);
    shmring_pool_t *p = NULL;
    cr_assert_eq(shmring_pool_create(&pcfg, square, NULL, &p), 0);
    cr_assert_eq(shmring_pool_workers(p), 1);
    cr_assert_eq(shmring_pool_last_error_item(p), SIZE_MAX, "no map failed");
    shmring_pool_destroy(p);
}

/* ---- Ordering contract ------------------------------------------------------- */

#define ORDER_N 20000u

/* Written by the producer with plain stores before each push. */
static uint64_t side[ORDER_N];

/*
 * ThreadSanitizer sees a happens-before edge only between accesses to one
 * address. Handles of a shared-memory ring or table opened in one process
 * map its segment at different addresses, so TSan cannot tell that the
 * producer's release store and a consumer's acquire load are the same word,
 * and would report the plain `side` accesses as a race. The side checks
 * therefore run on the heap backend (one mapping) in TSan builds, where TSan
 * verifies the edge itself, and on every backend in the other builds.
 */
#if defined(__SANITIZE_THREAD__)
#define TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_BUILD 1
#endif
#endif
#ifndef TSAN_BUILD
#define TSAN_BUILD 0
#endif

static int side_checked(int backend)
{
    return !TSAN_BUILD || backend == SHMRING_BACKEND_HEAP;
}

/* A consumer thread's findings (threads record, the test thread asserts). */
struct order_run {
    const char *name;
    int zero_copy;
    int check_side;
    uint64_t got;
    int errors;
    char what[160];
};

static void order_fail(struct order_run *o, const char *what, uint64_t a, uint64_t b)
{
    if (o->errors++ == 0)
        snprintf(o->what, sizeof o->what, "%s (%lu, %lu)", what, (unsigned long)a,
                 (unsigned long)b);
}

static void *order_consumer(void *arg)
{
    struct order_run *o = arg;
    shmring_t *c = NULL;
    int rc = shmring_open(o->name, SHMRING_CONSUMER, &c);
    if (rc < 0) {
        order_fail(o, "open", (uint64_t)-rc, 0);
        return NULL;
    }
    uint64_t last = 0, got = 0;
    for (;;) {
        uint64_t id = 0;
        if (o->zero_copy) {
            shmring_msg_t m;
            rc = shmring_claim_wait(c, &m, -1);
            if (rc == -EPIPE)
                break;
            if (rc != 0 || m.len != sizeof id) {
                order_fail(o, "claim", (uint64_t)-rc, m.len);
                break;
            }
            memcpy(&id, m.data, sizeof id);
            if (shmring_release(c, &m) != 0)
                order_fail(o, "release", id, 0);
        } else {
            ssize_t n = shmring_pop_wait(c, &id, sizeof id, -1);
            if (n == -EPIPE)
                break;
            if (n != (ssize_t)sizeof id) {
                order_fail(o, "pop", (uint64_t)-n, 0);
                break;
            }
        }
        if (id < 1 || id > ORDER_N) {
            order_fail(o, "id out of range", id, 0);
            break;
        }
        /* Push order, and what the producer wrote before the push is seen. */
        if (id <= last)
            order_fail(o, "not in push order: id after last", id, last);
        if (o->check_side && side[id - 1] != id * 7)
            order_fail(o, "the producer's write before the push not seen", id, side[id - 1]);
        last = id;
        got++;
    }
    o->got = got;
    shmring_close(c);
    return NULL;
}

static void order_test(int consumers, int zero_copy, uint32_t backend_flag)
{
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("order"));
    shmring_t *p = test_make(name, 16, 8, backend_flag);
    int check_side = side_checked(shmring_backend(p));
    memset(side, 0, sizeof side);
    struct order_run runs[4];
    pthread_t t[4];
    for (int i = 0; i < consumers; i++) {
        runs[i] =
            (struct order_run){.name = name, .zero_copy = zero_copy, .check_side = check_side};
        cr_assert_eq(pthread_create(&t[i], NULL, order_consumer, &runs[i]), 0);
    }
    for (uint64_t id = 1; id <= ORDER_N; id++) {
        side[id - 1] = id * 7;
        if (zero_copy) {
            void *payload;
            cr_assert_eq(shmring_reserve_wait(p, sizeof id, &payload, -1), 0);
            memcpy(payload, &id, sizeof id);
            cr_assert_eq(shmring_commit(p, sizeof id), 0);
        } else {
            cr_assert_eq(shmring_push_wait(p, &id, sizeof id, -1), 0);
        }
    }
    shmring_close(p); /* end of stream */
    uint64_t total = 0;
    for (int i = 0; i < consumers; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(runs[i].errors, 0, "consumer %d: %d errors, first: %s", i, runs[i].errors,
                     runs[i].what);
        total += runs[i].got;
    }
    cr_assert_eq(total, ORDER_N, "each message to exactly one consumer");
    shmring_unlink(name);
}

Test(abi, order_one_consumer)
{
    order_test(1, 0, 0);
    order_test(1, 0, SHMRING_FORCE_HEAP);
}

Test(abi, order_competing_consumers)
{
    order_test(3, 0, 0);
    order_test(3, 0, SHMRING_FORCE_HEAP);
}

Test(abi, order_zero_copy_competing_consumers)
{
    order_test(3, 1, 0);
    order_test(3, 1, SHMRING_FORCE_HEAP);
}

Test(abi, batch_pop_takes_consecutive_messages)
{
    const char *name = test_name("batch");
    shmring_t *p = test_make(name, 64, 8, 0);
    shmring_t *c1 = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *c2 = test_open_as(name, SHMRING_CONSUMER);
    uint64_t next = 1;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 40; i++, next++)
            cr_assert_eq(shmring_push(p, &next, sizeof next), 0);
        for (;;) {
            uint64_t ids[5];
            struct iovec iov[5];
            for (int i = 0; i < 5; i++)
                iov[i] = (struct iovec){&ids[i], sizeof ids[i]};
            ssize_t n = shmring_pop_batch(round % 2 ? c1 : c2, iov, 5);
            if (n == -EAGAIN)
                break;
            cr_assert_gt(n, 0);
            for (ssize_t i = 1; i < n; i++)
                cr_assert_eq(ids[i], ids[i - 1] + 1, "a batch is consecutive");
        }
    }
    shmring_close(c2);
    shmring_close(c1);
    shmring_close(p);
    shmring_unlink(name);
}

Test(abi, claims_released_out_of_order)
{
    const char *name = test_name("outoforder");
    shmring_t *p = test_make(name, 4, 32, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_msg_t m[4];
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 32);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(shmring_claim(c, &m[i]), 0);
    /* Releasing later claims first frees their slots only: the producer's
     * next slot is the oldest claim's, which it does not reuse. */
    cr_assert_eq(shmring_release(c, &m[3]), 0);
    cr_assert_eq(shmring_release(c, &m[2]), 0);
    unsigned char buf[32];
    test_fill(buf, 32, 9);
    cr_assert_eq(shmring_push(p, buf, 32), -EAGAIN);
    cr_assert_eq(shmring_release(c, &m[0]), 0);
    test_push_id(p, 4, 32);
    cr_assert_eq(shmring_push(p, buf, 32), -EAGAIN, "slot of claim 1 still held");
    test_expect_id(m[1].data, (ssize_t)m[1].len, 1);
    cr_assert_eq(shmring_release(c, &m[1]), 0);
    test_push_id(p, 5, 32);
    shmring_msg_t n;
    cr_assert_eq(shmring_claim(c, &n), 0);
    test_expect_id(n.data, (ssize_t)n.len, 4);
    cr_assert_eq(shmring_release(c, &n), 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

static void *overwrite_consumer(void *arg)
{
    struct order_run *o = arg;
    shmring_t *c = NULL;
    int rc = shmring_open(o->name, SHMRING_CONSUMER, &c);
    if (rc < 0) {
        order_fail(o, "open", (uint64_t)-rc, 0);
        return NULL;
    }
    uint64_t last = 0, got = 0, id;
    for (;;) {
        ssize_t n = shmring_pop_wait(c, &id, sizeof id, -1);
        if (n == -EPIPE)
            break;
        if (n != (ssize_t)sizeof id) {
            order_fail(o, "pop", (uint64_t)-n, 0);
            break;
        }
        if (id <= last)
            order_fail(o, "overwrite: not in push order", id, last);
        last = id;
        got++;
    }
    o->got = got;
    shmring_close(c);
    return NULL;
}

Test(abi, overwrite_keeps_push_order_with_gaps)
{
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("owr"));
    shmring_t *p = test_make(name, 8, 8, SHMRING_OVERWRITE);
    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    struct order_run run = {.name = name};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, overwrite_consumer, &run), 0);
    /* Wait for the consumer to attach, so that nothing is missed before it. */
    shmring_stats_t st;
    do {
        cr_assert_eq(shmring_stats(obs, &st), 0);
    } while (st.consumers == 0);
    for (uint64_t id = 1; id <= ORDER_N; id++)
        cr_assert_eq(shmring_push(p, &id, sizeof id), 0);
    shmring_close(p);
    pthread_join(t, NULL);
    cr_assert_eq(run.errors, 0, "%d errors, first: %s", run.errors, run.what);
    cr_assert_eq(shmring_stats(obs, &st), 0);
    cr_assert_eq(run.got + st.dropped, ORDER_N, "got %lu, dropped %lu", (unsigned long)run.got,
                 (unsigned long)st.dropped);
    shmring_close(obs);
    shmring_unlink(name);
}

struct state_run {
    const char *name;
    int stop;
    struct order_run r;
};

static void *state_reader(void *arg)
{
    struct state_run *o = arg;
    shmring_state_t *s = NULL;
    int rc = shmring_state_open(o->name, 0, &s);
    if (rc < 0) {
        order_fail(&o->r, "open", (uint64_t)-rc, 0);
        return NULL;
    }
    uint64_t reads = 0;
    /* Acquire: pairs with the release store of stop in the test thread. */
    while (!__atomic_load_n(&o->stop, __ATOMIC_ACQUIRE) || reads < 1000) {
        uint64_t a = 0, b = 0;
        ssize_t nb = shmring_state_read(s, "b", &b, sizeof b);
        if (nb == -ENOENT || nb == -EAGAIN)
            continue;
        if (nb != (ssize_t)sizeof b) {
            order_fail(&o->r, "read b", (uint64_t)-nb, 0);
            break;
        }
        ssize_t na = shmring_state_read(s, "a", &a, sizeof a);
        if (na == -EAGAIN)
            continue;
        if (na != (ssize_t)sizeof a)
            order_fail(&o->r, "a, written before b, not found", (uint64_t)-na, b);
        else if (a < b)
            order_fail(&o->r, "a read after b is older than b", a, b);
        if (o->r.check_side && side[b % ORDER_N] != b)
            order_fail(&o->r, "the writer's store before the write not seen", b, side[b % ORDER_N]);
        reads++;
    }
    shmring_state_close(s);
    return NULL;
}

static void state_order_test(uint32_t backend_flag)
{
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("sorder"));
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = 4, .value_size = 8, .flags = backend_flag);
    shmring_state_t *w = NULL;
    cr_assert_eq(shmring_state_create(name, &cfg, &w), 0);
    int check_side = side_checked(shmring_state_backend(w));
    memset(side, 0, sizeof side);
    struct state_run run[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        run[i] = (struct state_run){.name = name, .r.check_side = check_side};
        cr_assert_eq(pthread_create(&t[i], NULL, state_reader, &run[i]), 0);
    }
    for (uint64_t v = 1; v <= ORDER_N; v++) {
        cr_assert_eq(shmring_state_write(w, "a", &v, sizeof v), 0);
        side[v % ORDER_N] = v;
        cr_assert_eq(shmring_state_write(w, "b", &v, sizeof v), 0);
    }
    for (int i = 0; i < 2; i++)
        __atomic_store_n(&run[i].stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(run[i].r.errors, 0, "reader %d: %d errors, first: %s", i, run[i].r.errors,
                     run[i].r.what);
    }
    shmring_state_close(w);
    shmring_state_unlink(name);
}

Test(abi, state_write_happens_before_read)
{
    state_order_test(0);
    state_order_test(SHMRING_FORCE_HEAP);
}
