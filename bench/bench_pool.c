/* Benchmark: the worker pool over data in its arena, against a plain loop: the sum of square
 * roots of 10 M doubles. */
/*
 * One pool of worker processes (2 by default: --workers N), its arena
 * holding x[] (10 M doubles) and r[] (10 M results), filled before the
 * timing. Each figure is the best of several trials, in ms:
 *
 *   plain sum     one thread: s += sqrt(x[i])
 *   plain store   one thread: r[i] = sqrt(x[i]) (the per-item job)
 *   range         shmring_pool_map_range: each range stores its partial sum
 *                 (the caller adds the partials)
 *   per-item      shmring_pool_map over x and r in the arena: r[i] =
 *                 sqrt(x[i]), no copy
 *   per-item+sum  the same, then the caller adds r[] up (the whole sum job)
 *   copied        shmring_pool_map of heap arrays: items copied into the
 *                 arena and results out again
 *
 * Beside each best time: the CPU time of the caller and the workers per run
 * (mean, from /proc/PID/schedstat), which tells a slow pool from workers
 * that waited for a CPU on a busy machine.
 *
 * Targets: range at least 1.6x faster than the plain sum on 2
 * workers; per-item over the arena not slower than the plain loop. Every
 * result is checked.
 * Options: --quick, --workers N, --only NAME[,NAME...] (this one is "pool"),
 * --csv FILE (rows figure,transport,metric,value,ratio); others ignored.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

static FILE *csv;
static unsigned trials = 15;
static size_t n = 10000000;

struct job {
    const double *x;
    double partial[SHMRING_POOL_MAX_RANGES];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, long rc)
{
    fprintf(stderr, "bench_pool: %s: %s\n", what, shmring_strerror((int)rc));
    exit(1);
}

static int item_sqrt(const void *item, size_t item_size, void *result, size_t result_size,
                     void *ctx)
{
    (void)item_size, (void)result_size, (void)ctx;
    *(double *)result = sqrt(*(const double *)item);
    return 0;
}

static int range_sum(size_t begin, size_t end, size_t range, void *ctx)
{
    struct job *j = ctx;
    double s = 0;
    for (size_t i = begin; i < end; i++)
        s += sqrt(j->x[i]);
    j->partial[range] = s;
    return 0;
}

struct bench {
    shmring_pool_t *pool;
    double *x, *r;   /* in the arena */
    double *hx, *hr; /* on the heap */
    struct job *job; /* in the arena */
};

static double add_up(const double *r)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += r[i];
    return s;
}

/* Each figure: returns the ns it took; the sum it computed (or, where the
 * job stores per item, the sum of what it stored, added untimed) in *sum. */
static uint64_t plain_sum(struct bench *b, double *sum)
{
    uint64_t t0 = now_ns();
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += sqrt(b->x[i]);
    *sum = s;
    return now_ns() - t0;
}

static uint64_t plain_store(struct bench *b, double *sum)
{
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        b->r[i] = sqrt(b->x[i]);
    uint64_t t = now_ns() - t0;
    *sum = add_up(b->r);
    return t;
}

static uint64_t range(struct bench *b, double *sum)
{
    uint64_t t0 = now_ns();
    int rc = shmring_pool_map_range(b->pool, n, range_sum, b->job);
    double s = 0;
    for (size_t k = 0; k < SHMRING_POOL_MAX_RANGES; k++)
        s += b->job->partial[k];
    uint64_t t = now_ns() - t0;
    if (rc < 0)
        die("shmring_pool_map_range", rc);
    *sum = s;
    return t;
}

static uint64_t per_item(struct bench *b, double *sum)
{
    uint64_t t0 = now_ns();
    int rc = shmring_pool_map(b->pool, b->x, n, sizeof(double), b->r, sizeof(double));
    uint64_t t = now_ns() - t0;
    if (rc < 0)
        die("shmring_pool_map", rc);
    *sum = add_up(b->r);
    return t;
}

static uint64_t per_item_sum(struct bench *b, double *sum)
{
    uint64_t t0 = now_ns();
    int rc = shmring_pool_map(b->pool, b->x, n, sizeof(double), b->r, sizeof(double));
    *sum = add_up(b->r);
    uint64_t t = now_ns() - t0;
    if (rc < 0)
        die("shmring_pool_map", rc);
    return t;
}

static uint64_t copied(struct bench *b, double *sum)
{
    uint64_t t0 = now_ns();
    int rc = shmring_pool_map(b->pool, b->hx, n, sizeof(double), b->hr, sizeof(double));
    uint64_t t = now_ns() - t0;
    if (rc < 0)
        die("shmring_pool_map (copied)", rc);
    *sum = add_up(b->hr);
    return t;
}

struct figure {
    const char *name;
    uint64_t (*run)(struct bench *, double *);
    const char *what;
};

static const struct figure figures[] = {
    {"plain-sum", plain_sum, "one thread, s += sqrt(x[i])"},
    {"plain-store", plain_store, "one thread, r[i] = sqrt(x[i])"},
    {"range", range, "map_range over x in the arena, partial sums"},
    {"per-item", per_item, "map over x and r in the arena, r[i] = sqrt(x[i])"},
    {"per-item+sum", per_item_sum, "the same, then the caller adds r[] up"},
    {"copied", copied, "map of heap arrays (copied in and out)"},
};
#define NFIG (sizeof figures / sizeof figures[0])

/* CPU time, ms, used so far by this process and by the pool's workers
 * (/proc/PID/schedstat: nanoseconds on a CPU). */
static double cpu_ms(struct bench *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    double ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    pid_t pids[SHMRING_POOL_MAX_WORKERS];
    int nw = shmring_pool_pids(b->pool, pids, SHMRING_POOL_MAX_WORKERS);
    for (int w = 0; w < nw && w < (int)SHMRING_POOL_MAX_WORKERS; w++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pids[w]);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1)
            ms += (double)ns / 1e6;
        fclose(f);
    }
    return ms;
}

/* Best time in ms of every figure, the figures taking turns within each
 * trial, so that a burst of load elsewhere on the machine hits them alike;
 * cpu[f]: CPU ms per run, averaged over the trials (caller and workers).
 * Every sum is checked against the plain loop's. */
static int best_ms(struct bench *b, double ms[NFIG], double cpu[NFIG])
{
    double want = 0;
    for (size_t f = 0; f < NFIG; f++) {
        ms[f] = 1e30;
        cpu[f] = 0;
    }
    for (unsigned t = 0; t < trials; t++) {
        for (size_t f = 0; f < NFIG; f++) {
            double sum = 0;
            double c0 = cpu_ms(b);
            double m = (double)figures[f].run(b, &sum) / 1e6;
            cpu[f] += (cpu_ms(b) - c0) / trials;
            if (f == 0)
                want = sum;
            if (fabs(sum - want) > 1e-9 * fabs(want)) {
                fprintf(stderr, "bench_pool: %s: sum %.6f, want %.6f\n", figures[f].name, sum,
                        want);
                return -1;
            }
            if (m < ms[f])
                ms[f] = m;
        }
    }
    return 0;
}

static int selected(const char *only)
{
    if (only == NULL)
        return 1;
    for (const char *p = only; p != NULL; p = strchr(p, ',')) {
        if (*p == ',')
            p++;
        if (strncmp(p, "pool", 4) == 0 && (p[4] == ',' || p[4] == '\0'))
            return 1;
    }
    return 0;
}

static void setup(struct bench *b, unsigned workers)
{
    shmring_pool_config_t cfg =
        SHMRING_POOL_CONFIG_INIT(.workers = workers,
                                 .arena_size = 2 * n * sizeof(double) + (4u << 20));
    int rc = shmring_pool_create(&cfg, item_sqrt, NULL, &b->pool);
    if (rc < 0)
        die("shmring_pool_create", rc);
    if (shmring_pool_mode(b->pool) != SHMRING_POOL_MODE_SHARED) {
        fprintf(stderr, "bench_pool: no shared-memory pool here: nothing to measure\n");
        exit(0);
    }
    b->x = shmring_pool_alloc(b->pool, n * sizeof(double));
    b->r = shmring_pool_alloc(b->pool, n * sizeof(double));
    b->job = shmring_pool_alloc(b->pool, sizeof *b->job);
    b->hx = malloc(n * sizeof(double));
    b->hr = malloc(n * sizeof(double));
    if (b->x == NULL || b->r == NULL || b->job == NULL || b->hx == NULL || b->hr == NULL)
        die("allocation", -ENOMEM);
    for (size_t i = 0; i < n; i++)
        b->hx[i] = b->x[i] = (double)(i % 10007) + 0.25;
    memset(b->r, 0, n * sizeof(double));
    memset(b->job, 0, sizeof *b->job);
    b->job->x = b->x;
}

int main(int argc, char **argv)
{
    unsigned workers = 2;
    const char *csv_path = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            trials = 5;
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv_path = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-' && i + 1 < argc && argv[i + 1][0] != '-')
            i++; /* an option of another benchmark, with its value */
    }
    if (csv_path != NULL) {
        csv = fopen(csv_path, "w");
        if (csv == NULL) {
            perror(csv_path);
            return 1;
        }
        fprintf(csv, "figure,transport,metric,value,ratio\n");
    }
    if (!selected(only))
        goto out;
    struct bench b;
    setup(&b, workers);
    printf("\n== pool: sum of sqrt over %zu doubles in the arena, %d worker processes, ms (best "
           "of %u) ==\n",
           n, shmring_pool_workers(b.pool), trials);
    printf("%-13s %9s %14s %8s  %s\n", "figure", "ms", "plain-sum/this", "cpu ms", "what");
    double ms[NFIG], cpu[NFIG];
    if (best_ms(&b, ms, cpu) < 0)
        return 1;
    for (size_t f = 0; f < NFIG; f++) {
        printf("%-13s %9.2f %13.2fx %8.1f  %s\n", figures[f].name, ms[f], ms[0] / ms[f], cpu[f],
               figures[f].what);
        if (csv != NULL) {
            fprintf(csv, "pool_sqrt_10m,%s,ms,%.4g,%.4g\n", figures[f].name, ms[f], ms[0] / ms[f]);
            fprintf(csv, "pool_sqrt_10m,%s,cpu_ms,%.4g,\n", figures[f].name, cpu[f]);
        }
    }
    printf("  (cpu ms: caller and workers per run, mean; more wall time than cpu time / workers\n"
           "   means the workers waited for a CPU)\n");
    printf("  range vs plain sum: %.2fx faster (target: at least 1.6x)\n", ms[0] / ms[2]);
    printf("  per-item vs plain store: %.2fx the time (target: at most 1.0x); per-item+sum vs "
           "plain sum: %.2fx\n",
           ms[3] / ms[1], ms[4] / ms[0]);
    shmring_pool_destroy(b.pool);
    free(b.hx);
    free(b.hr);
out:
    if (csv != NULL && fclose(csv) != 0) {
        perror(csv_path);
        return 1;
    }
    return 0;
}
