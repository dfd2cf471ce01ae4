/*
 * Config structs that can grow (docs/abi.md). Each public config struct
 * starts with `uint32_t size`, which the caller sets to the sizeof of the
 * struct it was compiled with (the SHMRING_*CONFIG_INIT macros do it). A
 * later release only appends fields, so:
 *  - a smaller size is a program built against an earlier release: the
 *    fields it has are read, the rest keep their default (0);
 *  - a larger size is a program built against a later release: it is
 *    accepted as long as the fields this release does not know are all
 *    zero (their default), and refused with -E2BIG otherwise, since the
 *    caller asked for something this library cannot do.
 * The structs have no implicit padding (asserted below), so that every
 * byte of a struct set with an initializer is defined.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#define FIELD_END(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

static_assert(offsetof(shmring_config_t, size) == 0, "size comes first");
static_assert(sizeof(shmring_config_t) == FIELD_END(shmring_config_t, max_message),
              "no tail padding");
static_assert(offsetof(shmring_state_config_t, size) == 0, "size comes first");
static_assert(sizeof(shmring_state_config_t) == FIELD_END(shmring_state_config_t, mode),
              "no tail padding");
static_assert(offsetof(shmring_pool_config_t, size) == 0, "size comes first");
static_assert(offsetof(shmring_pool_config_t, arena_size) ==
                  FIELD_END(shmring_pool_config_t, reserved),
              "no padding before arena_size");
static_assert(sizeof(shmring_pool_config_t) == FIELD_END(shmring_pool_config_t, arena_size),
              "no tail padding");

/* Where each field of a struct ends: the sizes an earlier release can have. */
static const size_t ring_ends[] = {
    FIELD_END(shmring_config_t, size),      FIELD_END(shmring_config_t, slots),
    FIELD_END(shmring_config_t, slot_size), FIELD_END(shmring_config_t, flags),
    FIELD_END(shmring_config_t, mode),      FIELD_END(shmring_config_t, max_message),
};
static const size_t state_ends[] = {
    FIELD_END(shmring_state_config_t, size),       FIELD_END(shmring_state_config_t, entries),
    FIELD_END(shmring_state_config_t, value_size), FIELD_END(shmring_state_config_t, flags),
    FIELD_END(shmring_state_config_t, mode),
};
static const size_t pool_ends[] = {
    FIELD_END(shmring_pool_config_t, size),       FIELD_END(shmring_pool_config_t, workers),
    FIELD_END(shmring_pool_config_t, flags),      FIELD_END(shmring_pool_config_t, reserved),
    FIELD_END(shmring_pool_config_t, arena_size),
};

static int config_copy(void *own, size_t own_size, const void *cfg, const size_t *ends,
                       size_t nends)
{
    memset(own, 0, own_size);
    if (cfg == NULL)
        return 0;
    uint32_t size;
    memcpy(&size, cfg, sizeof size);
    if (size > own_size) {
        if (size > SHMRING__CONFIG_SIZE_MAX)
            return -EINVAL;
        const unsigned char *tail = (const unsigned char *)cfg + own_size;
        for (size_t i = 0; i < size - own_size; i++)
            if (tail[i] != 0)
                return -E2BIG;
        memcpy(own, cfg, own_size);
        return 0;
    }
    for (size_t i = 0; i < nends; i++) {
        if (ends[i] == size) {
            memcpy(own, cfg, size);
            return 0;
        }
    }
    return -EINVAL; /* 0, or a size that ends inside a field */
}

int shmring__config_ring(const shmring_config_t *cfg, shmring_config_t *own)
{
    return config_copy(own, sizeof *own, cfg, ring_ends, sizeof ring_ends / sizeof ring_ends[0]);
}

int shmring__config_state(const shmring_state_config_t *cfg, shmring_state_config_t *own)
{
    return config_copy(own, sizeof *own, cfg, state_ends, sizeof state_ends / sizeof state_ends[0]);
}

int shmring__config_pool(const shmring_pool_config_t *cfg, shmring_pool_config_t *own)
{
    return config_copy(own, sizeof *own, cfg, pool_ends, sizeof pool_ends / sizeof pool_ends[0]);
}
