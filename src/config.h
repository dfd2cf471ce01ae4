/* Reading the caller's sized config structs; private to src/. */
#ifndef SHMRING_CONFIG_H
#define SHMRING_CONFIG_H

#include "shmring.h"

/* Largest `size` of a config struct taken for one of a later release. */
#define SHMRING__CONFIG_SIZE_MAX 4096u

/*
 * Copy the caller's config (NULL: all defaults) into *own, this library's
 * struct, which the caller's size decides how much of to fill: fields past
 * the caller's size read as 0 (their default). A size larger than this
 * library's struct (a program built against a later release) is taken when
 * every byte past this library's struct is zero.
 * Returns 0; -EINVAL (size smaller than the size field, ending inside a
 * field, or above SHMRING__CONFIG_SIZE_MAX); -E2BIG (a byte past this
 * library's struct is not zero: a field this release does not know is set).
 */
int shmring__config_ring(const shmring_config_t *cfg, shmring_config_t *own);
int shmring__config_state(const shmring_state_config_t *cfg, shmring_state_config_t *own);
int shmring__config_pool(const shmring_pool_config_t *cfg, shmring_pool_config_t *own);

#endif /* SHMRING_CONFIG_H */
