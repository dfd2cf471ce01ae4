/* Benchmark: a log-like mix of message sizes through a ring of small slots whose messages span
 * slots, against rings whose slots are sized for the largest message. */
/*
 * One producer process pushes, one consumer process pops (push_wait and
 * pop_wait, the default sleep strategy), `msgs` messages whose sizes follow
 * a fixed pseudo-random sequence: 90% 64 B, 9% 1 KiB, 1% 32 KiB (a log
 * stream: mostly short lines, some records, a rare dump). Every popped
 * message is checked (its id and length). Rings compared:
 *   span-256     1024 slots of 256 B, max_message 32 KiB (messages span)
 *   big-8        8 slots of 32 KiB: about the same memory
 *   big-1024     1024 slots of 32 KiB: the same slot count, 128x the memory
 * Each figure is the best of several trials, in messages per second.
 * Options: --quick, --only NAME[,NAME...], --csv FILE (rows
 * figure,transport,metric,value,ratio; ratio to big-1024); others ignored.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

#define BIG (32u * 1024u)

static const char *only;
static FILE *csv;
static unsigned trials = 5;
static uint64_t msgs = 300000;

struct ring_kind {
    const char *name;
    uint32_t slots, slot_size, max_message;
    const char *what;
};

static const struct ring_kind kinds[] = {
    {"big-1024", 1024, BIG, 0, "1024 slots of 32 KiB"},
    {"big-8", 8, BIG, 0, "8 slots of 32 KiB (about span-256's memory)"},
    {"span-256", 1024, 256, BIG, "1024 slots of 256 B, max_message 32 KiB"},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, long rc)
{
    fprintf(stderr, "bench_span: %s: %s\n", what, shmring_strerror((int)rc));
    exit(1);
}

/* Size of message i: 90% 64 B, 9% 1 KiB, 1% 32 KiB. */
static size_t size_of(uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    unsigned r = (unsigned)(x % 100);
    return r < 90 ? 64 : r < 99 ? 1024 : BIG;
}

static int consume(const char *name)
{
    shmring_t *c = NULL;
    int rc = shmring_open(name, SHMRING_CONSUMER, &c);
    if (rc < 0)
        die("shmring_open", rc);
    static unsigned char buf[BIG];
    for (uint64_t i = 0; i < msgs; i++) {
        ssize_t n = shmring_pop_wait(c, buf, sizeof buf, -1);
        if (n < 0)
            die("shmring_pop_wait", n);
        uint64_t id;
        memcpy(&id, buf, sizeof id);
        if (id != i || (size_t)n != size_of(i)) {
            fprintf(stderr, "bench_span: message %llu is wrong\n", (unsigned long long)i);
            return 1;
        }
    }
    shmring_close(c);
    return 0;
}

/* One trial: seconds to move every message from push to pop. */
static double trial(const struct ring_kind *k, uint64_t *bytes)
{
    static unsigned n;
    char name[64];
    snprintf(name, sizeof name, "/bench-span-%d-%u", (int)getpid(), n++);
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = k->slots, .slot_size = k->slot_size,
                            .max_message = k->max_message, .flags = SHMRING_NO_FALLBACK);
    shmring_t *p = NULL;
    int rc = shmring_create(name, &cfg, &p);
    if (rc < 0)
        die("shmring_create", rc);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", -errno);
    if (pid == 0)
        _exit(consume(name));
    static unsigned char buf[BIG];
    memset(buf, 0x5a, sizeof buf);
    uint64_t total = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < msgs; i++) {
        size_t len = size_of(i);
        memcpy(buf, &i, sizeof i);
        rc = shmring_push_wait(p, buf, len, -1);
        if (rc < 0)
            die("shmring_push_wait", rc);
        total += len;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        ;
    double s = (double)(now_ns() - t0) / 1e9;
    shmring_close(p);
    shmring_unlink(name);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_span: the consumer failed\n");
        exit(1);
    }
    *bytes = total;
    return s;
}

static int selected(const char *name)
{
    if (only == NULL)
        return 1;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    int quick = 0;
    const char *csv_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv_path = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-' && i + 1 < argc && argv[i + 1][0] != '-')
            i++; /* an option of another benchmark, with its value */
    }
    if (quick) {
        msgs = 60000;
        trials = 3;
    }
    if (csv_path != NULL) {
        csv = fopen(csv_path, "w");
        if (csv == NULL) {
            perror(csv_path);
            return 1;
        }
        fprintf(csv, "figure,transport,metric,value,ratio\n");
    }
    printf("\n== span-mix: %llu messages, 90%% 64 B / 9%% 1 KiB / 1%% 32 KiB, producer and "
           "consumer processes (best of %u) ==\n",
           (unsigned long long)msgs, trials);
    printf("%-10s %12s %9s %10s %11s  %s\n", "ring", "msgs/s", "MB/s", "ring KiB", "vs big-1024",
           "what");
    double base = 0;
    for (size_t k = 0; k < NKINDS; k++) {
        if (!selected(kinds[k].name))
            continue;
        double best = 1e30;
        uint64_t bytes = 0;
        for (unsigned t = 0; t < trials; t++) {
            double s = trial(&kinds[k], &bytes);
            if (s < best)
                best = s;
        }
        double rate = (double)msgs / best;
        uint64_t stride = (32u + kinds[k].slot_size + 63u) & ~63u;
        double kib = (double)kinds[k].slots * (double)stride / 1024.0;
        if (k == 0)
            base = rate;
        printf("%-10s %12.0f %9.1f %10.0f", kinds[k].name, rate, (double)bytes / best / 1e6, kib);
        if (base > 0)
            printf(" %10.2fx", rate / base);
        else
            printf(" %11s", "-");
        printf("  %s\n", kinds[k].what);
        if (csv != NULL) {
            fprintf(csv, "span-mix,%s,msgs_per_s,%.4g,", kinds[k].name, rate);
            if (base > 0)
                fprintf(csv, "%.4g", rate / base);
            fputc('\n', csv);
        }
    }
    printf("  (ratio > 1: more messages per second than the ring sized for the largest)\n");
    if (csv != NULL && fclose(csv) != 0) {
        perror(csv_path);
        return 1;
    }
    return 0;
}
