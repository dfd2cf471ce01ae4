/*
 * shmring transfer-speed measurement: how long handing `bytes` to another
 * process takes through a pipe, and through a shmring ring by copy and by
 * zero-copy.
 *
 * Included by <shmring.h>; do not include this file directly.
 *
 * Each of the three paths forks a receiver process that reads every byte
 * it is given, sums it (a 64-bit sum of 8-byte words) and sends the sum
 * back in a small acknowledgement; the sender checks the sum, so a path
 * that does not really move the data fails the measurement instead of
 * winning it. One iteration is timed (CLOCK_MONOTONIC) from the start of
 * the hand-over to the receipt of the acknowledgement:
 *
 *  - message passing: write() of the payload into a pipe (enlarged with
 *    F_SETPIPE_SZ as far as the system allows), read() of all of it by the
 *    receiver, acknowledgement through a second pipe;
 *  - shared copy: shmring_push of the payload into a ring of one message
 *    per slot, shmring_pop_wait into the receiver's buffer,
 *    acknowledgement through a second, small ring;
 *  - shared zero-copy: shmring_reserve, the payload written in place (the
 *    sender produces it there: this write is timed, unlike the preparation
 *    of the buffer the two other paths send), shmring_commit;
 *    shmring_claim_wait, the sum read in place, shmring_release,
 *    acknowledgement through a second, small ring.
 *
 * Both sides use the rings' default wait strategy (a short spin, then a
 * futex sleep), as the pipe path sleeps in read(). The sender runs on one
 * CPU and the receiver on another when the calling thread may use two or
 * more (the calling thread's affinity is restored afterwards). A few
 * warm-up iterations precede the timed ones. Rings are anonymous (memfd):
 * nothing is left in the shm directory.
 *
 * The figures are medians over the timed iterations. They are measured,
 * not promised: on a loaded machine any path can come out slower.
 */
#ifndef SHMRING_METRICS_H
#define SHMRING_METRICS_H

#ifndef SHMRING_H
#error "include <shmring.h>, not <shmring/metrics.h>"
#endif

#define SHMRING_TRANSFER_MAX_BYTES      (256u << 20) /* largest payload measured */
#define SHMRING_TRANSFER_MAX_ITERATIONS 1000000u     /* most timed iterations */
#define SHMRING_TRANSFER_WARMUP         3u           /* untimed iterations before them */

typedef struct shmring_transfer_report {
    size_t bytes;               /* payload handed over per iteration */
    unsigned iterations;        /* timed iterations of each path */
    double message_passing_ns;  /* median, through a pipe to another process */
    double shared_copy_ns;      /* median, push/pop through a ring */
    double shared_zero_copy_ns; /* median, reserve/commit + claim/release */
    double improvement;         /* message_passing_ns / best shared */
} shmring_transfer_report_t;

/*
 * Measure the hand-over of `bytes` bytes to another process on the three
 * paths above, `iterations` timed times each, and fill *out (left unchanged
 * on failure). `improvement` is message_passing_ns divided by the smaller
 * of shared_copy_ns and shared_zero_copy_ns. Takes about
 * 3 x (iterations + SHMRING_TRANSFER_WARMUP) hand-overs, plus filling and
 * summing the payload; the rings need twice `bytes` of shared memory.
 *
 * Blocks SIGPIPE in the calling thread while it runs (a pending SIGPIPE
 * caused by the measurement itself is discarded).
 *
 * Errors: -EINVAL (NULL out, bytes 0 or above SHMRING_TRANSFER_MAX_BYTES,
 * iterations 0 or above SHMRING_TRANSFER_MAX_ITERATIONS); -ENOMEM;
 * -ENOTSUP (no shared memory between processes: the heap backend is
 * forced, e.g. by $SHMRING_FORCE_HEAP, or memfd_create is unavailable);
 * -EIO (a receiver's sum differs from the sender's: the data did not
 * arrive intact); -EPIPE (a receiver process failed or died);
 * -ETIMEDOUT (a hand-over took more than a minute; the receiver is
 * killed); any error of pipe() (-EMFILE, -ENFILE), fork() (-EAGAIN,
 * -ENOMEM) or shmring_create (-ENOSPC, -EMFILE, ...).
 */
SHMRING_API int shmring_measure_transfer(size_t bytes, unsigned iterations,
                                         shmring_transfer_report_t *out);

/*
 * Write a report as a table of a few lines into buf (NUL-terminated,
 * truncated to cap bytes): size, iterations, each path's median in
 * microseconds and GB/s (10^9 bytes per second), and the improvement.
 * Returns the length of the whole table, which did not fit if >= cap (as
 * snprintf). Errors: -EINVAL (NULL r, or NULL buf with cap > 0).
 */
SHMRING_API int shmring_transfer_format(const shmring_transfer_report_t *r, char *buf, size_t cap);

#endif /* SHMRING_METRICS_H */
