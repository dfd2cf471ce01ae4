/*
 * A frozen copy of the config structs of shmring 1.0 (SONAME libshmring.so.1),
 * the first release whose config structs start with their size, and the
 * declarations of the functions that take them, written as a program built
 * against 1.0 saw them. Never edit this file: a later release that appends
 * fields to the structs must still run tests/abi/v1_program.c, which is built
 * against this copy and not against <shmring.h>.
 */
#ifndef SHMRING_TEST_V1_CONFIG_H
#define SHMRING_TEST_V1_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct v1_config {
    uint32_t size;
    uint32_t slots;
    uint32_t slot_size;
    uint32_t flags;
    uint32_t mode;
    uint32_t max_message;
};

struct v1_state_config {
    uint32_t size;
    uint32_t entries;
    uint32_t value_size;
    uint32_t flags;
    uint32_t mode;
};

struct v1_pool_config {
    uint32_t size;
    uint32_t workers;
    uint32_t flags;
    uint32_t reserved;
    size_t arena_size;
};

#define V1_PRODUCER          0x0001u
#define V1_CONSUMER          0x0002u
#define V1_FORCE_HEAP        0x0100u
#define V1_NO_FALLBACK       0x0400u
#define V1_POOL_THREADS      0x200000u
#define V1_BACKEND_HEAP      3
#define V1_POOL_MODE_THREADS 3

/* Opaque handles, as void. */
int shmring_create(const char *name, const struct v1_config *cfg, void **out);
void shmring_close(void *r);
int shmring_unlink(const char *name);
int shmring_push(void *r, const void *msg, size_t len);
ssize_t shmring_pop(void *r, void *buf, size_t cap);
uint32_t shmring_slots(const void *r);
uint32_t shmring_slot_size(const void *r);
int shmring_backend(const void *r);

int shmring_state_create(const char *name, const struct v1_state_config *cfg, void **out);
void shmring_state_close(void *s);
int shmring_state_unlink(const char *name);
int shmring_state_write(void *s, const char *key, const void *val, size_t len);
ssize_t shmring_state_read(void *s, const char *key, void *buf, size_t cap);
uint32_t shmring_state_entries(const void *s);
uint32_t shmring_state_value_size(const void *s);

typedef int (*v1_task_fn)(const void *item, size_t item_size, void *result, size_t result_size,
                          void *ctx);
int shmring_pool_create(const struct v1_pool_config *cfg, v1_task_fn fn, void *ctx, void **out);
int shmring_pool_map(void *p, const void *items, size_t n, size_t item_size, void *results,
                     size_t result_size);
int shmring_pool_workers(const void *p);
int shmring_pool_mode(const void *p);
void shmring_pool_destroy(void *p);

#endif
