/* Internal hooks of the transfer measurement (src/metrics.c), for tests. */
#ifndef SHMRING_METRICS_INTERNAL_H
#define SHMRING_METRICS_INTERNAL_H

/* The three paths of shmring_measure_transfer, as bits. */
#define SHMRING__TRANSFER_PIPE      1u /* message passing through a pipe */
#define SHMRING__TRANSFER_COPY      2u /* push / pop through a ring */
#define SHMRING__TRANSFER_ZERO_COPY 4u /* reserve/commit, claim/release */

/*
 * Test hook: for each path whose bit is set, receivers report the sum of
 * the payload as if one byte (the one at bytes / 2) had arrived with a bit
 * flipped, so the measurement must fail with -EIO. 0 in normal use. Read
 * by the receiver processes, which inherit it at fork: set it before the
 * measurement starts.
 */
extern unsigned shmring__transfer_corrupt;

#endif /* SHMRING_METRICS_INTERNAL_H */
