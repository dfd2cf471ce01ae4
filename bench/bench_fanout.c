/*
 * Fan-out: one producer, every message to each of k readers (k = 1, 2, 3).
 *
 *   shm-subscribers  one ring, k SHMRING_SUBSCRIBER processes, one push per message
 *   shm-ring-each    k rings with one consumer process each, k pushes per message
 *
 * Reported: messages delivered per second in total (k x messages / time) and
 * per reader, the median of the repetitions, in one run on this machine. The
 * producer is pinned to CPU 0 and the readers to the last CPU, as in
 * bench_ipc. Readers and the producer poll, and yield after 64 empty (or
 * full) tries in a row.
 *
 * Usage: bench_fanout [--quick] [--csv FILE] [--only fanout] (other options are
 * those of the other benchmarks, ignored)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

#define MSG_LEN    64
#define SLOTS      1024u
#define MAX_READER 3

static uint64_t msgs = 2000000;
static unsigned reps = 5;
static FILE *csv;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, long rc)
{
    fprintf(stderr, "bench_fanout: %s: %s\n", what, shmring_strerror((int)rc));
    exit(1);
}

static void pin(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu < 0 ? (int)n - 1 : cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* Busy polling; the CPU is given up after 64 empty (or full) tries in a row,
 * so that readers sharing a CPU take turns. */
static void backoff(unsigned *fails)
{
    if (++*fails % 64 == 0)
        sched_yield();
    else
        __asm__ __volatile__("pause");
}

/* Shared with the readers: how many are attached, and a checksum each. */
struct board {
    int ready;
    uint64_t sum[MAX_READER];
};

static struct board *board;

static void reader(const char *name, uint32_t role, unsigned i)
{
    pin(-1);
    shmring_t *r;
    int rc = shmring_open(name, role, &r);
    if (rc < 0)
        die("open", rc);
    __atomic_fetch_add(&board->ready, 1, __ATOMIC_RELEASE);
    unsigned char buf[MSG_LEN];
    uint64_t sum = 0;
    unsigned fails = 0;
    for (uint64_t got = 0; got < msgs;) {
        ssize_t n = shmring_pop(r, buf, sizeof buf);
        if (n == -EAGAIN) {
            backoff(&fails);
            continue;
        }
        fails = 0;
        if (n != MSG_LEN)
            die("pop", n);
        uint64_t v;
        memcpy(&v, buf, sizeof v);
        sum += v;
        got++;
    }
    board->sum[i] = sum;
    shmring_close(r);
    _exit(0);
}

static void push_one(shmring_t *p, const unsigned char *buf)
{
    int rc;
    unsigned fails = 0;
    while ((rc = shmring_push(p, buf, MSG_LEN)) == -EAGAIN)
        backoff(&fails);
    if (rc < 0)
        die("push", rc);
}

/* One repetition; returns the seconds from the first push to the last pop. */
static double run(unsigned k, int subscribers)
{
    char names[MAX_READER][64];
    shmring_t *p[MAX_READER];
    unsigned rings = subscribers ? 1 : k;
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = MSG_LEN, .flags = SHMRING_PRODUCER);
    for (unsigned i = 0; i < rings; i++) {
        snprintf(names[i], sizeof names[i], "/bench-fanout-%d-%u", (int)getpid(), i);
        int rc = shmring_create(names[i], &cfg, &p[i]);
        if (rc < 0)
            die("create", rc);
    }
    memset(board, 0, sizeof *board);
    pid_t pid[MAX_READER];
    for (unsigned i = 0; i < k; i++) {
        pid[i] = fork();
        if (pid[i] < 0)
            die("fork", -errno);
        if (pid[i] == 0)
            reader(names[subscribers ? 0 : i], subscribers ? SHMRING_SUBSCRIBER : SHMRING_CONSUMER,
                   i);
    }
    while (__atomic_load_n(&board->ready, __ATOMIC_ACQUIRE) < (int)k)
        sched_yield();
    unsigned char buf[MSG_LEN];
    memset(buf, 0xa5, sizeof buf);
    uint64_t t0 = now_ns();
    for (uint64_t id = 0; id < msgs; id++) {
        memcpy(buf, &id, sizeof id);
        for (unsigned i = 0; i < rings; i++)
            push_one(p[i], buf);
    }
    for (unsigned i = 0; i < k; i++)
        waitpid(pid[i], NULL, 0);
    double s = (double)(now_ns() - t0) / 1e9;
    uint64_t want = msgs * (msgs - 1) / 2;
    for (unsigned i = 0; i < k; i++)
        if (board->sum[i] != want) {
            fprintf(stderr, "bench_fanout: reader %u: wrong checksum\n", i);
            exit(1);
        }
    for (unsigned i = 0; i < rings; i++) {
        shmring_close(p[i]);
        shmring_unlink(names[i]);
    }
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *csv_path = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            msgs = 500000;
            reps = 3;
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            csv_path = argv[++i];
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] == '-' && i + 1 < argc &&
                   argv[i + 1][0] != '-') {
            i++; /* an option of another benchmark, with its value */
        }
    }
    board = mmap(NULL, sizeof *board, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED)
        die("mmap", -errno);
    if (csv_path != NULL) {
        csv = fopen(csv_path, "w");
        if (csv == NULL) {
            perror(csv_path);
            return 1;
        }
        fprintf(csv, "figure,transport,metric,value,ratio\n");
    }
    if (only != NULL && strstr(only, "fanout") == NULL)
        return csv != NULL && fclose(csv) != 0; /* not selected: a header alone */
    pin(0);
    printf("\n== fanout: every message to each of k readers, %d-byte messages, %u slots, "
           "median of %u x %llu messages ==\n",
           MSG_LEN, SLOTS, reps, (unsigned long long)msgs);
    printf("%-3s %-16s %14s %14s %10s\n", "k", "transport", "delivered/s", "per reader/s",
           "vs ring-each");
    for (unsigned k = 1; k <= MAX_READER; k++) {
        double med[2];
        for (int sub = 1; sub >= 0; sub--) {
            double t[16];
            for (unsigned r = 0; r < reps; r++)
                t[r] = run(k, sub);
            qsort(t, reps, sizeof t[0], cmp_double);
            med[sub] = t[reps / 2];
        }
        for (int sub = 1; sub >= 0; sub--) {
            double per = (double)msgs / med[sub], total = per * k;
            double ratio = med[0] / med[sub];
            const char *tr = sub ? "shm-subscribers" : "shm-ring-each";
            printf("%-3u %-16s %14.0f %14.0f %9.2fx\n", k, tr, total, per, ratio);
            if (csv != NULL) {
                fprintf(csv, "fanout_%u,%s,delivered_per_s,%.6g,%.4g\n", k, tr, total, ratio);
                fprintf(csv, "fanout_%u,%s,per_reader_per_s,%.6g,%.4g\n", k, tr, per, ratio);
            }
        }
    }
    printf("  (shm-subscribers: one ring, one push per message; shm-ring-each: a ring per reader,\n"
           "   k pushes per message; readers share the last CPU, the producer has CPU 0)\n");
    if (csv != NULL && fclose(csv) != 0) {
        perror(csv_path);
        return 1;
    }
    return 0;
}
