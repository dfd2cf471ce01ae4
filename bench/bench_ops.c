/* Benchmark: single-process cost per message of shmring's operations and of ck_ring, in ns. */
/*
 * One process does both sides on one core, so no cache line moves between
 * cores: what is left is the instructions and barriers of each operation,
 * which the host's placement of the CPUs and other load hardly change
 * (bench_ipc measures the cross-core figures). Each figure is the best of
 * several trials. Every popped message is checked word by word.
 * Options: --quick, --only NAME[,NAME...], --csv FILE (rows
 * figure,transport,metric,value,ratio; ratio to shm-copy); others ignored.
 */
#define _GNU_SOURCE
#include <ck_ring.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "shmring.h"

#define SLOTS  256u
#define LEN    64u
#define BATCH  32u
#define GOLDEN 0x9E3779B97F4A7C15ull

typedef uint64_t __attribute__((may_alias)) word_t;

static const char *only;
static FILE *csv;
static unsigned trials = 7;
static uint64_t msgs = 2000000;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, long rc)
{
    fprintf(stderr, "bench_ops: %s: %s\n", what, shmring_strerror((int)rc));
    exit(1);
}

static void fill(void *p, size_t len, uint64_t seq)
{
    word_t *w = p;
    uint64_t k = 0;
    for (size_t i = 0; i < len / 8; i++, k += GOLDEN)
        w[i] = seq ^ k;
}

static void check(const void *p, size_t len, uint64_t seq)
{
    const word_t *w = p;
    uint64_t k = 0, bad = 0;
    for (size_t i = 0; i < len / 8; i++, k += GOLDEN)
        bad |= w[i] ^ seq ^ k;
    if (bad != 0 || len != LEN) {
        fprintf(stderr, "bench_ops: message %llu is corrupt\n", (unsigned long long)seq);
        exit(1);
    }
}

/* A ring in named shared memory with a producer and a consumer handle. */
struct pair {
    char name[64];
    shmring_t *p, *c;
};

static void pair_open(struct pair *x, uint32_t flags)
{
    static unsigned n;
    snprintf(x->name, sizeof x->name, "/bench-ops-%d-%u", (int)getpid(), n++);
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = LEN, .flags = SHMRING_NO_FALLBACK | flags);
    int rc = shmring_create(x->name, &cfg, &x->p);
    if (rc < 0)
        die("shmring_create", rc);
    rc = shmring_open(x->name, SHMRING_CONSUMER, &x->c);
    if (rc < 0) {
        shmring_close(x->p);
        shmring_unlink(x->name);
        die("shmring_open", rc);
    }
}

static void pair_close(struct pair *x)
{
    shmring_close(x->c);
    shmring_close(x->p);
    shmring_unlink(x->name);
}

/* Each run moves `msgs` messages in rounds of BATCH (the ring never fills). */
static void run_copy(struct pair *x)
{
    unsigned char in[LEN], out[LEN];
    for (uint64_t s = 0; s < msgs; s += BATCH) {
        for (uint64_t i = s; i < s + BATCH; i++) {
            fill(in, LEN, i);
            int rc = shmring_push(x->p, in, LEN);
            if (rc < 0)
                die("shmring_push", rc);
        }
        for (uint64_t i = s; i < s + BATCH; i++) {
            ssize_t n = shmring_pop(x->c, out, sizeof out);
            if (n < 0)
                die("shmring_pop", (long)n);
            check(out, (size_t)n, i);
        }
    }
}

static void run_zerocopy(struct pair *x)
{
    for (uint64_t s = 0; s < msgs; s += BATCH) {
        for (uint64_t i = s; i < s + BATCH; i++) {
            void *p;
            int rc = shmring_reserve(x->p, LEN, &p);
            if (rc < 0)
                die("shmring_reserve", rc);
            fill(p, LEN, i);
            rc = shmring_commit(x->p, LEN);
            if (rc < 0)
                die("shmring_commit", rc);
        }
        for (uint64_t i = s; i < s + BATCH; i++) {
            shmring_msg_t m;
            int rc = shmring_claim(x->c, &m);
            if (rc < 0)
                die("shmring_claim", rc);
            check(m.data, m.len, i);
            rc = shmring_release(x->c, &m);
            if (rc < 0)
                die("shmring_release", rc);
        }
    }
}

static void run_batch(struct pair *x)
{
    static unsigned char in[BATCH][LEN], out[BATCH][LEN];
    struct iovec iv[BATCH], ov[BATCH];
    for (uint64_t s = 0; s < msgs; s += BATCH) {
        for (unsigned i = 0; i < BATCH; i++) {
            fill(in[i], LEN, s + i);
            iv[i].iov_base = in[i];
            iv[i].iov_len = LEN;
            ov[i].iov_base = out[i];
            ov[i].iov_len = LEN;
        }
        ssize_t n = shmring_push_batch(x->p, iv, BATCH);
        if (n != BATCH)
            die("shmring_push_batch", n < 0 ? (long)n : -EAGAIN);
        n = shmring_pop_batch(x->c, ov, BATCH);
        if (n != BATCH)
            die("shmring_pop_batch", n < 0 ? (long)n : -EAGAIN);
        for (unsigned i = 0; i < BATCH; i++)
            check(out[i], ov[i].iov_len, s + i);
    }
}

/* ck_ring SPSC of indices into a payload array, as bench_ipc uses it. */
struct ck {
    struct ck_ring ring;
    ck_ring_buffer_t buf[SLOTS];
    unsigned char payload[2 * SLOTS][LEN];
};

static struct ck *ckr;

static void run_ck(struct pair *x)
{
    (void)x;
    unsigned char in[LEN], out[LEN];
    ck_ring_init(&ckr->ring, SLOTS);
    for (uint64_t s = 0; s < msgs; s += BATCH) {
        for (uint64_t i = s; i < s + BATCH; i++) {
            fill(in, LEN, i);
            unsigned idx = (unsigned)(i & (2 * SLOTS - 1));
            memcpy(ckr->payload[idx], in, LEN);
            if (!ck_ring_enqueue_spsc(&ckr->ring, ckr->buf, (void *)(uintptr_t)idx))
                die("ck_ring_enqueue_spsc", -EAGAIN);
        }
        for (uint64_t i = s; i < s + BATCH; i++) {
            void *v;
            if (!ck_ring_dequeue_spsc(&ckr->ring, ckr->buf, &v))
                die("ck_ring_dequeue_spsc", -EAGAIN);
            uintptr_t idx = (uintptr_t)v;
            if (idx >= 2 * SLOTS)
                die("ck_ring index", -EPROTO);
            memcpy(out, ckr->payload[idx], LEN);
            check(out, LEN, i);
        }
    }
}

/* Reference costs of the barriers themselves, per operation. */
static uint64_t scratch[8];

static void run_mfence(struct pair *x)
{
    (void)x;
    for (uint64_t i = 0; i < msgs; i++) {
        shmring__store_relaxed_64(&scratch[0], i);
        shmring__fence_seq_cst();
    }
}

static void run_xchg(struct pair *x)
{
    (void)x;
    for (uint64_t i = 0; i < msgs; i++) {
        shmring__store_relaxed_64(&scratch[1], i);
        shmring__xchg_64(&scratch[0], i);
    }
}

static void run_cas(struct pair *x)
{
    (void)x;
    for (uint64_t i = 0; i < msgs; i++) {
        uint64_t e = i;
        shmring__store_relaxed_64(&scratch[1], i);
        shmring__cas_64(&scratch[0], &e, i + 1);
    }
}

struct op {
    const char *name;
    const char *what;
    void (*run)(struct pair *);
};

static const struct op ops[] = {
    {"shm-copy", "push + pop of 64 bytes", run_copy},
    {"shm-zerocopy", "reserve/commit + claim/release of 64 bytes", run_zerocopy},
    {"shm-batch32", "push_batch + pop_batch of 32 x 64 bytes (per message)", run_batch},
    {"shm-single", "push + pop of 64 bytes, SHMRING_SINGLE_CONSUMER ring", run_copy},
    {"ck_ring", "enqueue + dequeue of an index, 64-byte payload copied in and out", run_ck},
    {"mfence", "a store then shmring__fence_seq_cst", run_mfence},
    {"xchg", "a store then shmring__xchg_64", run_xchg},
    {"lock-cmpxchg", "a store then a successful shmring__cas_64", run_cas},
    {"shm-redeliver", "push + pop of 64 bytes, SHMRING_REDELIVER ring", run_copy},
    {"shm-redeliver-zc", "reserve/commit + claim/release, SHMRING_REDELIVER ring", run_zerocopy},
};
#define NOPS (sizeof ops / sizeof ops[0])

static int listed(const char *name)
{
    const char *p = only;
    size_t n = strlen(name);
    while (p != NULL && *p != '\0') {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static int selected(const char *name)
{
    if (only == NULL || listed("ops"))
        return 1;
    return listed(name);
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
        msgs = 400000;
        trials = 5;
    }
    ckr = mmap(NULL, sizeof *ckr, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ckr == MAP_FAILED) {
        perror("bench_ops: mmap");
        return 1;
    }
    if (csv_path != NULL) {
        csv = fopen(csv_path, "w");
        if (csv == NULL) {
            perror(csv_path);
            return 1;
        }
        fprintf(csv, "figure,transport,metric,value,ratio\n");
    }
    printf("\n== ops: cost per message in one process on one core, ns (best of %u x %llu "
           "messages) ==\n",
           trials, (unsigned long long)msgs);
    printf("%-14s %9s %12s  %s\n", "operation", "ns/msg", "vs shm-copy", "what");
    double base = 0;
    for (size_t k = 0; k < NOPS; k++) {
        if (!selected(ops[k].name))
            continue;
        struct pair x;
        int ring = strncmp(ops[k].name, "shm-", 4) == 0;
        uint32_t flags = strcmp(ops[k].name, "shm-single") == 0 ? SHMRING_SINGLE_CONSUMER : 0;
        if (strncmp(ops[k].name, "shm-redeliver", 13) == 0)
            flags = SHMRING_REDELIVER;
        if (ring)
            pair_open(&x, flags);
        double best = 1e30;
        for (unsigned t = 0; t < trials; t++) {
            uint64_t t0 = now_ns();
            ops[k].run(&x);
            double ns = (double)(now_ns() - t0) / (double)msgs;
            if (ns < best)
                best = ns;
        }
        if (ring)
            pair_close(&x);
        if (k == 0)
            base = best;
        printf("%-14s %9.2f", ops[k].name, best);
        if (base > 0)
            printf(" %11.2fx", best / base);
        else
            printf(" %12s", "-");
        printf("  %s\n", ops[k].what);
        if (csv != NULL) {
            fprintf(csv, "ops,%s,ns_per_msg,%.4g,", ops[k].name, best);
            if (base > 0)
                fprintf(csv, "%.4g", best / base);
            fputc('\n', csv);
        }
    }
    printf("  (no cache line crosses cores here: this is the floor of each operation's own "
           "cost)\n");
    if (csv != NULL && fclose(csv) != 0) {
        perror(csv_path);
        return 1;
    }
    return 0;
}
