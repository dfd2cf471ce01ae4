/* Demo: one producer and several consumer processes move checksummed messages through a ring. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

#define MIN_PAYLOAD       16u                /* sequence number and checksum */
#define MAX_PAYLOAD       256u               /* longest message, if the slots are that large */
#define WAIT_NS           (5 * 1000000000LL) /* every push_wait / pop_wait */
#define ATTACH_NS         (5 * 1000000000LL) /* consumers attaching before the start */
#define REAP_NS           (2 * WAIT_NS)      /* consumers finishing after the end of stream */
#define DEFAULT_MESSAGES  1000000u
#define DEFAULT_CONSUMERS 3u

struct options {
    uint64_t messages;
    unsigned consumers;
    uint32_t slots;     /* 0: the library's default */
    uint32_t slot_size; /* 0: the library's default */
};

/* What one consumer saw. Written by that consumer only; the parent reads it
 * after the consumer has exited (waitpid) or ended (pthread_join). */
struct consumer_result {
    int32_t pid;
    int done;   /* reached the end of stream (-EPIPE) */
    int failed; /* stopped on an error, described in `error` */
    uint64_t messages;
    uint64_t bytes;
    uint64_t seq_sum;  /* sum of the sequence numbers received, mod 2^64 */
    uint64_t seq_hash; /* xor of seq_mix() of the sequence numbers received */
    uint64_t last_seq; /* the latest sequence number received */
    uint64_t first_ns; /* CLOCK_MONOTONIC of the first and last message */
    uint64_t last_ns;
    char error[200];
};

/* Shared by the parent and the consumers: a MAP_SHARED mapping across
 * fork(), plain memory between threads. */
struct shared {
    atomic_uint attached; /* consumers holding a consumer handle */
    atomic_uint failed;   /* consumers that stopped on an error */
    struct consumer_result result[];
};

struct consumer {
    pid_t pid;        /* process mode */
    pthread_t thread; /* thread mode */
    int started;
    int status; /* exit status, or 128 + signal; -1 if never reaped */
    struct run *run;
    unsigned index;
};

/* One run of the demo: its settings, the ring, and everything measured. */
struct run {
    struct options opt;
    char name[64];
    shmring_t *producer;
    int backend;
    int threads; /* consumers are threads (heap backend) */
    uint32_t slots, slot_size;
    uint32_t max_payload;
    struct shared *shared;
    size_t shared_size;
    struct consumer *consumers;
    uint64_t start_ns, end_ns;
    uint64_t pushed, bytes_pushed;
    int produce_error;     /* negative errno of the push that failed, or 0 */
    shmring_stats_t stats; /* the library's counters after the run */
    int stats_rc;
    int failures; /* checks that failed */
};

/* ---- Messages ----------------------------------------------------------- */

static uint64_t seq_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static size_t message_len(uint64_t seq, uint32_t max_payload)
{
    return MIN_PAYLOAD + (size_t)(seq_mix(seq ^ 0x5eed) % (max_payload - MIN_PAYLOAD + 1));
}

/* Checksum of the payload after the 16-byte header, bound to seq and len. */
static uint64_t body_checksum(const unsigned char *p, size_t len, uint64_t seq)
{
    uint64_t h = seq_mix(seq) ^ len;
    size_t i = MIN_PAYLOAD;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Layout: [0, 8) sequence number, [8, 16) checksum, then bytes derived from seq. */
static void message_fill(unsigned char *p, size_t len, uint64_t seq)
{
    uint64_t x = seq_mix(seq + 1);
    for (size_t i = MIN_PAYLOAD; i < len; i += 8) {
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(p + i, &x, n);
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    }
    uint64_t sum = body_checksum(p, len, seq);
    memcpy(p, &seq, 8);
    memcpy(p + 8, &sum, 8);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- Consumers ---------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int consumer_fail(struct consumer_result *res,
                                                               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
    res->failed = 1;
    return -1;
}

/* Check one message and account for it; -1 (with res->error set) if it is wrong. */
static int consumer_take(const struct run *run, struct consumer_result *res,
                         const unsigned char *buf, size_t len)
{
    uint64_t seq, sum;
    if (len < MIN_PAYLOAD || len > run->max_payload)
        return consumer_fail(res, "message of %zu bytes after %" PRIu64 " messages", len,
                             res->messages);
    memcpy(&seq, buf, 8);
    memcpy(&sum, buf + 8, 8);
    if (seq >= run->opt.messages)
        return consumer_fail(res, "sequence number %" PRIu64 " out of range", seq);
    if (len != message_len(seq, run->max_payload))
        return consumer_fail(res, "message %" PRIu64 ": %zu bytes, expected %zu", seq, len,
                             message_len(seq, run->max_payload));
    if (sum != body_checksum(buf, len, seq))
        return consumer_fail(res, "message %" PRIu64 ": bad checksum", seq);
    /* Consumers take positions in ring order, so each one's sequence numbers increase. */
    if (res->messages > 0 && seq <= res->last_seq)
        return consumer_fail(res, "message %" PRIu64 " after message %" PRIu64, seq, res->last_seq);
    uint64_t t = now_ns();
    if (res->messages == 0)
        res->first_ns = t;
    res->last_ns = t;
    res->last_seq = seq;
    res->messages++;
    res->bytes += len;
    res->seq_sum += seq;
    res->seq_hash ^= seq_mix(seq);
    return 0;
}

/* Pop until the end of stream (-EPIPE), checking every message. */
static int consumer_loop(const struct run *run, shmring_t *ring, struct consumer_result *res)
{
    unsigned char *buf = malloc(run->slot_size);
    if (buf == NULL)
        return consumer_fail(res, "out of memory");
    int rc = 0;
    for (;;) {
        ssize_t n = shmring_pop_wait(ring, buf, run->slot_size, WAIT_NS);
        if (n == -EPIPE) {
            res->done = 1;
            break;
        }
        if (n < 0) {
            rc = consumer_fail(res, "shmring_pop_wait after %" PRIu64 " messages: %s",
                               res->messages, shmring_strerror((int)n));
            break;
        }
        if (consumer_take(run, res, buf, (size_t)n) < 0) {
            rc = -1;
            break;
        }
    }
    free(buf);
    return rc;
}

/* One consumer, in its own process or thread: 0 on success. */
static int consume(struct run *run, unsigned index)
{
    struct consumer_result *res = &run->shared->result[index];
    res->pid = (int32_t)getpid();
    shmring_t *ring = NULL;
    int rc = shmring_open(run->name, SHMRING_CONSUMER, &ring);
    if (rc < 0) {
        consumer_fail(res, "shmring_open(%s): %s", run->name, shmring_strerror(rc));
        atomic_fetch_add(&run->shared->failed, 1);
        return 1;
    }
    atomic_fetch_add(&run->shared->attached, 1);
    rc = consumer_loop(run, ring, res);
    /* Closing releases the consumer entry and folds its counters into the ring's. */
    shmring_close(ring);
    if (rc < 0) {
        atomic_fetch_add(&run->shared->failed, 1);
        return 1;
    }
    return 0;
}

static void *consumer_thread(void *arg)
{
    struct consumer *c = arg;
    c->status = consume(c->run, c->index);
    return NULL;
}

/* Start consumer `i` as a process, or as a thread on the heap backend. */
static int consumer_start(struct run *run, unsigned i)
{
    struct consumer *c = &run->consumers[i];
    c->run = run;
    c->index = i;
    c->status = -1;
    if (run->threads) {
        int e = pthread_create(&c->thread, NULL, consumer_thread, c);
        if (e != 0) {
            fprintf(stderr, "demo: pthread_create: %s\n", strerror(e));
            return -1;
        }
    } else {
        fflush(NULL);
        c->pid = fork();
        if (c->pid < 0) {
            perror("demo: fork");
            return -1;
        }
        if (c->pid == 0)
            _exit(consume(run, i));
    }
    c->started = 1;
    return 0;
}

static int exit_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

/* Reap every consumer process; kill those still running after REAP_NS. */
static void reap_processes(struct run *run)
{
    uint64_t deadline = now_ns() + REAP_NS;
    unsigned left = 0;
    for (unsigned i = 0; i < run->opt.consumers; i++)
        left += run->consumers[i].started;
    while (left > 0) {
        int killed = now_ns() >= deadline;
        for (unsigned i = 0; i < run->opt.consumers; i++) {
            struct consumer *c = &run->consumers[i];
            if (!c->started || c->status >= 0)
                continue;
            if (killed)
                kill(c->pid, SIGKILL);
            int st;
            pid_t p = waitpid(c->pid, &st, killed ? 0 : WNOHANG);
            if (p == c->pid) {
                c->status = exit_status(st);
                left--;
            } else if (p < 0 && errno != EINTR) {
                c->status = 255;
                left--;
            }
        }
        if (left > 0 && !killed)
            sleep_ms(1);
    }
}

static void consumers_finish(struct run *run)
{
    if (!run->threads) {
        reap_processes(run);
        return;
    }
    /* Each thread ends within WAIT_NS of the producer's close (its pop timeout). */
    for (unsigned i = 0; i < run->opt.consumers; i++)
        if (run->consumers[i].started)
            pthread_join(run->consumers[i].thread, NULL);
}

/* Wait until every consumer has attached or given up; 0 if all attached. */
static int consumers_attach(struct run *run)
{
    uint64_t deadline = now_ns() + ATTACH_NS;
    unsigned n = run->opt.consumers;
    for (;;) {
        unsigned a = atomic_load(&run->shared->attached);
        unsigned f = atomic_load(&run->shared->failed);
        if (f > 0) {
            fprintf(stderr, "demo: %u consumer(s) failed to attach\n", f);
            return -1;
        }
        if (a == n)
            return 0;
        if (now_ns() >= deadline) {
            fprintf(stderr, "demo: only %u of %u consumers attached within %lld s\n", a, n,
                    ATTACH_NS / 1000000000LL);
            return -1;
        }
        sleep_ms(1);
    }
}

/* ---- Producer ----------------------------------------------------------- */

/* Push every message, then close the producer handle: the end of stream. */
static void produce(struct run *run)
{
    unsigned char *buf = malloc(run->max_payload);
    if (buf == NULL) {
        run->produce_error = -ENOMEM;
        fprintf(stderr, "demo: out of memory\n");
    }
    run->start_ns = now_ns();
    for (uint64_t seq = 0; buf != NULL && seq < run->opt.messages; seq++) {
        if ((seq & 4095) == 0 && atomic_load(&run->shared->failed) > 0) {
            fprintf(stderr, "demo: a consumer failed; the producer stops at message %" PRIu64 "\n",
                    seq);
            run->produce_error = -ECANCELED;
            break;
        }
        size_t len = message_len(seq, run->max_payload);
        message_fill(buf, len, seq);
        int rc = shmring_push_wait(run->producer, buf, len, WAIT_NS);
        if (rc < 0) {
            fprintf(stderr, "demo: shmring_push_wait, message %" PRIu64 ": %s\n", seq,
                    shmring_strerror(rc));
            run->produce_error = rc;
            break;
        }
        run->pushed++;
        run->bytes_pushed += len;
    }
    free(buf);
    shmring_close(run->producer);
    run->producer = NULL;
}

/* ---- Checks and reports ------------------------------------------------- */

static const char *backend_name(int backend)
{
    switch (backend) {
    case SHMRING_BACKEND_SHM:
        return "shm";
    case SHMRING_BACKEND_MEMFD:
        return "memfd";
    case SHMRING_BACKEND_HEAP:
        return "heap";
    default:
        return "unknown";
    }
}

__attribute__((format(printf, 2, 3))) static void check_fail(struct run *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "demo: check failed: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    run->failures++;
}

/* The library's own counters, read through an observer handle after the run. */
static void read_stats(struct run *run)
{
    shmring_t *obs = NULL;
    run->stats_rc = shmring_open(run->name, SHMRING_OBSERVER, &obs);
    if (run->stats_rc == 0) {
        run->stats_rc = shmring_stats(obs, &run->stats);
        shmring_close(obs);
    }
}

/* Every consumer ended cleanly, and together they got each message exactly once. */
static void check_run(struct run *run)
{
    uint64_t n = run->opt.messages;
    uint64_t count = 0, bytes = 0, sum = 0, hash = 0;
    for (unsigned i = 0; i < run->opt.consumers; i++) {
        const struct consumer *c = &run->consumers[i];
        const struct consumer_result *res = &run->shared->result[i];
        if (c->status != 0)
            check_fail(run, "consumer %u (pid %d) ended with status %d%s%s", i, (int)res->pid,
                       c->status, res->failed ? ": " : "", res->failed ? res->error : "");
        else if (!res->done)
            check_fail(run, "consumer %u did not reach the end of stream", i);
        count += res->messages;
        bytes += res->bytes;
        sum += res->seq_sum;
        hash ^= res->seq_hash;
    }
    if (run->produce_error != 0 || run->pushed != n)
        check_fail(run, "the producer pushed %" PRIu64 " of %" PRIu64 " messages", run->pushed, n);
    uint64_t want_sum = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
    uint64_t want_hash = 0, want_bytes = 0;
    for (uint64_t seq = 0; seq < n; seq++) {
        want_hash ^= seq_mix(seq);
        want_bytes += message_len(seq, run->max_payload);
    }
    if (count != n)
        check_fail(run, "consumers got %" PRIu64 " messages, %" PRIu64 " were sent", count, n);
    if (sum != want_sum || hash != want_hash)
        check_fail(run, "the sequence numbers received are not exactly 0..%" PRIu64, n - 1);
    if (bytes != want_bytes)
        check_fail(run, "consumers got %" PRIu64 " bytes, %" PRIu64 " were sent", bytes,
                   want_bytes);
    if (run->stats_rc < 0)
        check_fail(run, "shmring_stats: %s", shmring_strerror(run->stats_rc));
    else if (run->stats.pushed != run->pushed || run->stats.popped != count ||
             run->stats.bytes_pushed != run->bytes_pushed || run->stats.bytes_popped != bytes)
        check_fail(run,
                   "ring counters (pushed %" PRIu64 ", popped %" PRIu64 ", bytes %" PRIu64
                   "/%" PRIu64 ") disagree with the demo's",
                   run->stats.pushed, run->stats.popped, run->stats.bytes_pushed,
                   run->stats.bytes_popped);
}

static void report_setup(const struct run *run)
{
    const char *dir = getenv("SHMRING_SHM_DIR");
    printf("shmring %s demo: 1 producer, %u consumers, ring %s\n", shmring_version(),
           run->opt.consumers, run->name);
    switch (run->backend) {
    case SHMRING_BACKEND_SHM:
        printf("backend:   shm (named POSIX shared memory in %s)\n",
               dir != NULL && dir[0] != '\0' ? dir : "/dev/shm");
        break;
    case SHMRING_BACKEND_MEMFD:
        printf("backend:   memfd (anonymous shared memory: the consumers inherit it by fork)\n");
        break;
    default:
        printf("backend:   %s (process-private memory: the consumers run as threads of this "
               "process, not as processes)\n",
               backend_name(run->backend));
        break;
    }
    printf("ring:      %" PRIu32 " slots of %" PRIu32 " bytes; messages of %u..%" PRIu32 " bytes\n",
           run->slots, run->slot_size, MIN_PAYLOAD, run->max_payload);
    fflush(stdout);
}

static void report_totals(const struct run *run)
{
    uint64_t count = 0, bytes = 0;
    for (unsigned i = 0; i < run->opt.consumers; i++) {
        count += run->shared->result[i].messages;
        bytes += run->shared->result[i].bytes;
    }
    double secs = (double)(run->end_ns - run->start_ns) / 1e9;
    printf("moved:     %" PRIu64 " messages, %" PRIu64 " bytes\n", count, bytes);
    printf("elapsed:   %.3f s (first push to last message received)\n", secs);
    if (secs > 0)
        printf("rate:      %.0f messages/s, %.1f MB/s\n", (double)count / secs,
               (double)bytes / secs / 1e6);
    if (run->stats_rc == 0)
        printf("counters:  shmring_stats: %" PRIu64 " pushed, %" PRIu64 " popped, %" PRIu64
               " dropped, %" PRIu64 " abandoned\n",
               run->stats.pushed, run->stats.popped, run->stats.dropped, run->stats.abandoned);
}

static void report_consumers(const struct run *run)
{
    for (unsigned i = 0; i < run->opt.consumers; i++) {
        const struct consumer_result *res = &run->shared->result[i];
        double share =
            run->opt.messages ? 100.0 * (double)res->messages / (double)run->opt.messages : 0;
        printf("consumer %u: %s %d, %" PRIu64 " messages, %" PRIu64 " bytes, %.1f%%\n", i,
               run->threads ? "thread of pid" : "pid", (int)res->pid, res->messages, res->bytes,
               share);
    }
}

static void report_verdict(const struct run *run)
{
    if (run->failures == 0)
        printf("check:     OK: every message 0..%" PRIu64
               " arrived exactly once, intact, in order at each consumer\n",
               run->opt.messages - 1);
    else
        printf("check:     FAILED (%d problem%s, see above)\n", run->failures,
               run->failures == 1 ? "" : "s");
}

/* What shared memory buys over message passing: 1 MiB handed to another
 * process through a pipe and through rings (see docs/stats.md). */
static void report_transfer(void)
{
    shmring_transfer_report_t tr;
    int rc = shmring_measure_transfer(1u << 20, 50 /* timed hand-overs per path */, &tr);
    if (rc == -ENOTSUP) {
        printf("transfer:  not measured: no shared memory between processes here\n");
        return;
    }
    if (rc < 0) {
        printf("transfer:  not measured: %s\n", shmring_strerror(rc));
        return;
    }
    char table[1024];
    if (shmring_transfer_format(&tr, table, sizeof table) > 0)
        fputs(table, stdout);
}

/* ---- Setup -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: demo [--messages N] [--consumers N] [--slots N] [--slot-size N]\n"
            "\n"
            "One producer and N consumer processes exchange messages through a named\n"
            "shmring ring; every message is checked, and the run fails unless each one\n"
            "arrived exactly once.\n"
            "\n"
            "  --messages N    messages to send (default %u)\n"
            "  --consumers N   consumer processes, 1..%d (default %u)\n"
            "  --slots N       ring slots, a power of two (default: the library's, 1024)\n"
            "  --slot-size N   largest message in bytes, >= %u (default: the library's, 256)\n"
            "  --help          this text\n"
            "\n"
            "With SHMRING_FORCE_HEAP=1 the ring lives in heap memory and the consumers\n"
            "run as threads.\n",
            DEFAULT_MESSAGES, SHMRING_MAX_CONSUMERS, DEFAULT_CONSUMERS, MIN_PAYLOAD);
}

static int parse_number(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "demo: %s: expected a number in %" PRIu64 "..%" PRIu64 ", got \"%s\"\n",
                opt, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* 0: run; 1: exit successfully (--help); -1: bad usage. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"messages", required_argument, NULL, 'm'}, {"consumers", required_argument, NULL, 'c'},
        {"slots", required_argument, NULL, 's'},    {"slot-size", required_argument, NULL, 'z'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    *o = (struct options){.messages = DEFAULT_MESSAGES, .consumers = DEFAULT_CONSUMERS};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        uint64_t v;
        const char *arg = optarg;
        switch (ch) {
        case 'm':
            if (parse_number("--messages", arg, 1, UINT64_C(1) << 40, &v) < 0)
                return -1;
            o->messages = v;
            break;
        case 'c':
            if (parse_number("--consumers", arg, 1, SHMRING_MAX_CONSUMERS, &v) < 0)
                return -1;
            o->consumers = (unsigned)v;
            break;
        case 's':
            if (parse_number("--slots", arg, 2, SHMRING_MAX_SLOTS, &v) < 0)
                return -1;
            o->slots = (uint32_t)v;
            break;
        case 'z':
            if (parse_number("--slot-size", arg, MIN_PAYLOAD, SHMRING_MAX_SLOT_SIZE, &v) < 0)
                return -1;
            o->slot_size = (uint32_t)v;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "demo: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Memory for the consumers' results, visible to them as processes or threads. */
static int shared_alloc(struct run *run)
{
    run->shared_size = sizeof *run->shared + run->opt.consumers * sizeof run->shared->result[0];
    void *p;
    if (run->threads) {
        p = calloc(1, run->shared_size);
    } else {
        p = mmap(NULL, run->shared_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            p = NULL;
    }
    if (p == NULL) {
        perror("demo: results memory");
        return -1;
    }
    run->shared = p;
    atomic_init(&run->shared->attached, 0);
    atomic_init(&run->shared->failed, 0);
    run->consumers = calloc(run->opt.consumers, sizeof run->consumers[0]);
    if (run->consumers == NULL) {
        perror("demo: consumers");
        return -1;
    }
    return 0;
}

static void shared_free(struct run *run)
{
    if (run->shared != NULL) {
        if (run->threads)
            free(run->shared);
        else
            munmap(run->shared, run->shared_size);
    }
    free(run->consumers);
}

/* Create the ring under a name of our own; 0 or -1. */
static int ring_create(struct run *run)
{
    snprintf(run->name, sizeof run->name, "/shmring-demo-%d", (int)getpid());
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = run->opt.slots, .slot_size = run->opt.slot_size);
    int rc = shmring_create(run->name, &cfg, &run->producer);
    if (rc < 0) {
        fprintf(stderr, "demo: shmring_create(%s): %s\n", run->name, shmring_strerror(rc));
        return -1;
    }
    run->backend = shmring_backend(run->producer);
    run->threads = run->backend == SHMRING_BACKEND_HEAP;
    run->slots = shmring_slots(run->producer);
    run->slot_size = shmring_slot_size(run->producer);
    run->max_payload = run->slot_size < MAX_PAYLOAD ? run->slot_size : MAX_PAYLOAD;
    return 0;
}

/* Start the consumers, send every message, and collect the consumers' results. */
static void transfer(struct run *run)
{
    int ok = 1;
    for (unsigned i = 0; i < run->opt.consumers && ok; i++)
        ok = consumer_start(run, i) == 0;
    if (ok && consumers_attach(run) == 0) {
        produce(run);
    } else {
        run->produce_error = -ECANCELED;
        run->start_ns = now_ns();
        /* Closing the producer ends the stream: attached consumers stop. */
        shmring_close(run->producer);
        run->producer = NULL;
    }
    consumers_finish(run);
    run->end_ns = run->start_ns;
    for (unsigned i = 0; i < run->opt.consumers; i++)
        if (run->shared->result[i].last_ns > run->end_ns)
            run->end_ns = run->shared->result[i].last_ns;
    read_stats(run);
}

int main(int argc, char **argv)
{
    struct run run = {0};
    int rc = parse_options(argc, argv, &run.opt);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (ring_create(&run) < 0)
        return 1;
    if (shared_alloc(&run) < 0) {
        shmring_close(run.producer);
        shmring_unlink(run.name);
        shared_free(&run);
        return 1;
    }
    report_setup(&run);

    transfer(&run);
    /* The name goes now, whatever happened; handles still open keep working. */
    rc = shmring_unlink(run.name);
    if (rc < 0)
        check_fail(&run, "shmring_unlink(%s): %s", run.name, shmring_strerror(rc));
    check_run(&run);

    /* Reports on the finished run, in the order they are printed. */
    report_totals(&run);
    report_consumers(&run);
    report_verdict(&run);
    report_transfer();

    int failed = run.failures > 0;
    shared_free(&run);
    return failed ? 1 : 0;
}
