/*
 * The sum of the square roots of 10 million doubles, on a worker pool.
 *
 * The data lives in the pool's shared arena (shmring_pool_alloc), so the
 * worker processes read it where it is: nothing is copied. The range form
 * (shmring_pool_map_range) calls the task once per block of indices; each
 * block stores its partial sum in its own slot of the arena, and the caller
 * adds the partials up. The result is checked against a plain loop.
 *
 * Usage: pool_sqrt_sum [COUNT]   (default 10000000)
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <shmring.h>

struct job {
    const double *x;                         /* in the arena */
    double partial[SHMRING_POOL_MAX_RANGES]; /* one per range */
};

/* Runs in a worker: indices [begin, end) are range number `range`. */
static int sum_sqrt(size_t begin, size_t end, size_t range, void *ctx)
{
    struct job *job = ctx;
    double s = 0;
    for (size_t i = begin; i < end; i++)
        s += sqrt(job->x[i]);
    job->partial[range] = s; /* stored, not added: a range may be run again */
    return 0;
}

/* Item tasks are not used here; a pool always has one. */
static int unused(const void *item, size_t item_size, void *result, size_t result_size, void *ctx)
{
    (void)item, (void)item_size, (void)result, (void)result_size, (void)ctx;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    shmring_pool_config_t cfg =
        SHMRING_POOL_CONFIG_INIT(.arena_size = n * sizeof(double) + sizeof(struct job) + 4096);
    shmring_pool_t *pool;
    int rc = shmring_pool_create(&cfg, unused, NULL, &pool);
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", shmring_strerror(rc));
        return 1;
    }
    double *x = shmring_pool_alloc(pool, n * sizeof *x);
    struct job *job = shmring_pool_alloc(pool, sizeof *job);
    if (x == NULL || job == NULL) {
        perror("shmring_pool_alloc");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(i % 10007) + 0.25;
    job->x = x;

    double t0 = now_ms();
    double plain = 0;
    for (size_t i = 0; i < n; i++)
        plain += sqrt(x[i]);
    double t1 = now_ms();
    for (size_t r = 0; r < SHMRING_POOL_MAX_RANGES; r++)
        job->partial[r] = 0;
    rc = shmring_pool_map_range(pool, n, sum_sqrt, job);
    double sum = 0;
    for (size_t r = 0; r < SHMRING_POOL_MAX_RANGES; r++)
        sum += job->partial[r];
    double t2 = now_ms();
    if (rc < 0) {
        fprintf(stderr, "map: %s\n", shmring_strerror(rc));
        return 1;
    }
    printf("sum of sqrt over %zu doubles: %.6f (plain loop %.6f)\n", n, sum, plain);
    printf("plain loop %.1f ms, %d workers over the arena %.1f ms\n", t1 - t0,
           shmring_pool_workers(pool), t2 - t1);
    /* Another order of additions: equal to about 1e-12 relative. */
    int ok = fabs(sum - plain) <= 1e-9 * fabs(plain);
    shmring_pool_free(pool, job);
    shmring_pool_free(pool, x);
    shmring_pool_destroy(pool);
    if (!ok) {
        fprintf(stderr, "the sums differ\n");
        return 1;
    }
    return 0;
}
