/*
 * A program built against shmring 1.0's config structs (tests/abi/v1_config.h,
 * a frozen copy; it does not include <shmring.h>), run against the library
 * of this tree. It must keep working as the structs grow:
 *  - structs of exactly the 1.0 size create rings, state tables and pools;
 *  - a smaller size (a struct of an imagined older release) is read only as
 *    far as it goes: the bytes after it are garbage here, and must not count;
 *  - a larger size (a program of a later release) works when the unknown
 *    fields are zero and gets -E2BIG when one is set, creating nothing;
 *  - a size of 0, one that ends inside a field, or an absurd one: -EINVAL.
 * Prints each failed check and exits 1; exits 0 when all hold.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "v1_config.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/*
 * A much later release's struct: 1.0's fields, then fields left at their
 * default (0), then, far beyond anything the library knows today, fields
 * that no release of the library under test knows. (The library may know
 * some of the middle ones: it grows too, and their 0 is their default.)
 */
#define LATER_GAP 96
struct later_config {
    struct v1_config v1;
    uint32_t middle[LATER_GAP];
    uint32_t future[3];
};
struct later_state_config {
    struct v1_state_config v1;
    uint32_t middle[LATER_GAP];
    uint32_t future[3];
};
struct later_pool_config {
    struct v1_pool_config v1;
    uint64_t middle[LATER_GAP / 2];
    uint64_t future[2];
};

static char ring_name[64], state_name[64];

static void ring_exact(void)
{
    struct v1_config cfg = {.size = sizeof cfg,
                            .slots = 8,
                            .slot_size = 64,
                            .flags = V1_PRODUCER | V1_CONSUMER,
                            .max_message = 128};
    void *r = NULL;
    int rc = shmring_create(ring_name, &cfg, &r);
    CHECK(rc == 0, "create with the 1.0 struct: %d", rc);
    if (rc != 0)
        return;
    CHECK(shmring_slots(r) == 8 && shmring_slot_size(r) == 64, "slots %u, slot size %u",
          shmring_slots(r), shmring_slot_size(r));
    CHECK(shmring_push(r, "v1", 2) == 0, "push");
    char buf[128];
    CHECK(shmring_pop(r, buf, sizeof buf) == 2 && memcmp(buf, "v1", 2) == 0, "pop");
    /* max_message, the last 1.0 field, was read: a 100-byte message spans slots. */
    memset(buf, 'm', 100);
    CHECK(shmring_push(r, buf, 100) == 0, "push of a message above slot_size");
    CHECK(shmring_pop(r, buf, sizeof buf) == 100, "pop of a message above slot_size");
    shmring_close(r);
    CHECK(shmring_unlink(ring_name) == 0, "unlink");
}

static void ring_older(void)
{
    /* An older struct that ends after slot_size; whatever follows it in
     * memory is not the caller's and must not be read as flags or mode. */
    unsigned char mem[sizeof(struct v1_config)];
    memset(mem, 0xff, sizeof mem);
    struct v1_config head = {.size = 12, .slots = 16, .slot_size = 32};
    memcpy(mem, &head, 12);
    void *r = NULL;
    int rc = shmring_create(NULL, (const struct v1_config *)(void *)mem, &r);
    CHECK(rc == 0, "create with a 12-byte struct: %d", rc);
    if (rc == 0) {
        CHECK(shmring_slots(r) == 16 && shmring_slot_size(r) == 32, "slots %u, slot size %u",
              shmring_slots(r), shmring_slot_size(r));
        CHECK(shmring_push(r, "x", 1) == 0, "the default role is the producer's");
        shmring_close(r);
    }
}

static void ring_later(void)
{
    struct later_config cfg = {.v1 = {.size = sizeof cfg, .slots = 4, .slot_size = 16}};
    void *r = NULL;
    int rc = shmring_create(ring_name, &cfg.v1, &r);
    CHECK(rc == 0, "a later struct with its new fields zero: %d", rc);
    if (rc == 0) {
        CHECK(shmring_slots(r) == 4, "slots %u", shmring_slots(r));
        shmring_close(r);
        shmring_unlink(ring_name);
    }
    for (int i = 0; i < 3; i++) {
        memset(cfg.future, 0, sizeof cfg.future);
        cfg.future[i] = 1u << (i * 8);
        r = NULL;
        rc = shmring_create(ring_name, &cfg.v1, &r);
        CHECK(rc == -E2BIG, "a later struct with future[%d] set: %d", i, rc);
        CHECK(r == NULL, "*out written on -E2BIG");
    }
    /* Nothing was created: the name is free. */
    struct v1_config ok = {.size = sizeof ok};
    rc = shmring_create(ring_name, &ok, &r);
    CHECK(rc == 0, "create after the refusals: %d", rc);
    if (rc == 0) {
        shmring_close(r);
        shmring_unlink(ring_name);
    }
}

static void ring_bad_sizes(void)
{
    const uint32_t bad[] = {0, 1, 2, 3, 6, 10, 17, 19, 4097, 1u << 20, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* Room for the largest size that is read (up to 4096 bytes). */
        static unsigned char mem[8192];
        struct v1_config cfg = {.size = bad[i], .slots = 8, .slot_size = 64};
        memcpy(mem, &cfg, sizeof cfg);
        void *r = NULL;
        int rc = shmring_create(NULL, (const struct v1_config *)(void *)mem, &r);
        CHECK(rc == -EINVAL, "size %u: %d", bad[i], rc);
    }
}

static void state_tests(void)
{
    struct v1_state_config cfg = {.size = sizeof cfg, .entries = 8, .value_size = 16};
    void *s = NULL;
    int rc = shmring_state_create(state_name, &cfg, &s);
    CHECK(rc == 0, "state create with the 1.0 struct: %d", rc);
    if (rc == 0) {
        CHECK(shmring_state_entries(s) == 8 && shmring_state_value_size(s) == 16,
              "entries %u, value size %u", shmring_state_entries(s), shmring_state_value_size(s));
        CHECK(shmring_state_write(s, "k", "v1", 2) == 0, "write");
        char buf[16];
        CHECK(shmring_state_read(s, "k", buf, sizeof buf) == 2 && memcmp(buf, "v1", 2) == 0,
              "read");
        shmring_state_close(s);
        CHECK(shmring_state_unlink(state_name) == 0, "unlink");
    }

    unsigned char mem[sizeof(struct v1_state_config)];
    memset(mem, 0xff, sizeof mem);
    struct v1_state_config head = {.size = 8, .entries = 4};
    memcpy(mem, &head, 8);
    rc = shmring_state_create(NULL, (const struct v1_state_config *)(void *)mem, &s);
    CHECK(rc == 0, "state create with an 8-byte struct: %d", rc);
    if (rc == 0) {
        CHECK(shmring_state_entries(s) == 4 && shmring_state_value_size(s) == 256,
              "entries %u, value size %u (the default)", shmring_state_entries(s),
              shmring_state_value_size(s));
        shmring_state_close(s);
    }

    struct later_state_config later = {.v1 = {.size = sizeof later, .entries = 2}};
    rc = shmring_state_create(NULL, &later.v1, &s);
    CHECK(rc == 0, "a later state struct with its new fields zero: %d", rc);
    if (rc == 0)
        shmring_state_close(s);
    later.future[2] = 0x80000000u;
    s = NULL;
    rc = shmring_state_create(state_name, &later.v1, &s);
    CHECK(rc == -E2BIG && s == NULL, "a later state struct with a new field set: %d", rc);
    later.future[2] = 0;
    later.v1.size = 0;
    CHECK(shmring_state_create(NULL, &later.v1, &s) == -EINVAL, "state size 0");
    later.v1.size = 5;
    CHECK(shmring_state_create(NULL, &later.v1, &s) == -EINVAL, "state size 5");
}

static int square(const void *item, size_t item_size, void *result, size_t result_size, void *ctx)
{
    int v;
    memcpy(&v, item, sizeof v);
    v *= v;
    memcpy(result, &v, sizeof v);
    return 0;
}

static void pool_tests(void)
{
    struct v1_pool_config cfg = {.size = sizeof cfg, .workers = 2, .flags = V1_POOL_THREADS};
    void *p = NULL;
    int rc = shmring_pool_create(&cfg, square, NULL, &p);
    CHECK(rc == 0, "pool create with the 1.0 struct: %d", rc);
    if (rc == 0) {
        int items[16], results[16];
        for (int i = 0; i < 16; i++)
            items[i] = i;
        CHECK(shmring_pool_map(p, items, 16, sizeof(int), results, sizeof(int)) == 0, "map");
        for (int i = 0; i < 16; i++)
            CHECK(results[i] == i * i, "result %d: %d", i, results[i]);
        CHECK(shmring_pool_workers(p) == 2, "workers %d", shmring_pool_workers(p));
        CHECK(shmring_pool_mode(p) == V1_POOL_MODE_THREADS, "mode %d", shmring_pool_mode(p));
        shmring_pool_destroy(p);
    }

    /* Older: workers and flags only; reserved and arena_size are garbage. */
    unsigned char mem[sizeof(struct v1_pool_config)];
    memset(mem, 0xff, sizeof mem);
    struct v1_pool_config head = {.size = 12, .workers = 1, .flags = V1_POOL_THREADS};
    memcpy(mem, &head, 12);
    p = NULL;
    rc = shmring_pool_create((const struct v1_pool_config *)(void *)mem, square, NULL, &p);
    CHECK(rc == 0, "pool create with a 12-byte struct: %d", rc);
    if (rc == 0) {
        CHECK(shmring_pool_workers(p) == 1, "workers %d", shmring_pool_workers(p));
        shmring_pool_destroy(p);
    }

    struct later_pool_config later = {
        .v1 = {.size = sizeof later, .workers = 1, .flags = V1_POOL_THREADS}};
    p = NULL;
    rc = shmring_pool_create(&later.v1, square, NULL, &p);
    CHECK(rc == 0, "a later pool struct with its new fields zero: %d", rc);
    if (rc == 0)
        shmring_pool_destroy(p);
    later.future[1] = 1;
    p = NULL;
    rc = shmring_pool_create(&later.v1, square, NULL, &p);
    CHECK(rc == -E2BIG && p == NULL, "a later pool struct with a new field set: %d", rc);
    later.future[1] = 0;
    later.v1.size = 20; /* inside arena_size on LP64 */
    if (sizeof(size_t) == 8)
        CHECK(shmring_pool_create(&later.v1, square, NULL, &p) == -EINVAL, "pool size 20");
    later.v1.size = 0;
    CHECK(shmring_pool_create(&later.v1, square, NULL, &p) == -EINVAL, "pool size 0");
}

int main(void)
{
    snprintf(ring_name, sizeof ring_name, "/abi-v1-%d-ring", (int)getpid());
    snprintf(state_name, sizeof state_name, "/abi-v1-%d-state", (int)getpid());
    ring_exact();
    ring_older();
    ring_later();
    ring_bad_sizes();
    state_tests();
    pool_tests();
    if (failures != 0) {
        fprintf(stderr, "v1_program: %d check(s) failed\n", failures);
        return 1;
    }
    printf("v1_program: a program built against the 1.0 config structs works\n");
    return 0;
}
