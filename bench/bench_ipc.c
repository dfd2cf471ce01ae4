/* Benchmark: shmring against pipes, Unix sockets, POSIX mqueues, ck_ring, DPDK's rte_ring,
 * iceoryx and a raw cache line. */
/*
 * Two or more processes, pinned to two cores; every transport in the same run.
 * Figures:
 *   rtt_8, rtt_1024   round-trip latency (p50/p99/p99.9) of a ping-pong over
 *                     two channels, one per direction;
 *   tput_<size>_<n>c  one-way throughput, 1 producer and n consumer processes;
 *   handover_1m       hand-over of a 1 MiB message: the writer fills it, the
 *                     reader checks every byte, both inside the timing;
 *   handover_1m_transport  the same hand-over timed for the transport alone:
 *                     the writer has made the message (in place for
 *                     zero-copy) before the clock starts, and the reader
 *                     acknowledges as soon as it has it, then checks every
 *                     byte outside the timing.
 * Every received message is checked (sequence number and every 8-byte word of
 * the payload); any mismatch aborts the run. Tables go to stdout, rows
 * (figure,transport,metric,value,ratio) to --csv FILE.
 */
#define _GNU_SOURCE
#include <ck_ring.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "shmring.h"

/* Optional peers: built when found (bench/CMakeLists.txt), else skipped. */
#if defined(BENCH_HAVE_DPDK)
#include <rte_ring.h>
#include <rte_ring_elem.h>
#endif
#if defined(BENCH_HAVE_IOX)
#include "iceoryx_binding_c/log.h"
#include "iceoryx_binding_c/publisher.h"
#include "iceoryx_binding_c/runtime.h"
#include "iceoryx_binding_c/subscriber.h"
#endif

#define NSEC           1000000000ull
#define OP_TIMEOUT_NS  (10ull * NSEC)  /* one wait that makes no progress */
#define RUN_TIMEOUT_NS (120ull * NSEC) /* one measurement, all children */
#define BATCH          32
#define MAX_CONSUMERS  3
#define MAX_CHILDREN   (1 + MAX_CONSUMERS)
#define DIST_POINTS    81 /* quantiles 1 - 10^(-k/20), k = 0..80 */
#define END_SEQ        UINT64_MAX
#define GOLDEN         0x9E3779B97F4A7C15ull
#define HANDOVER_WARM  10u
#define MAX_REPS       9
#define RTT_CAP_NS     (5ull * NSEC) /* per repetition of one round-trip run */
#define PROBE_TRIPS    2000

typedef uint64_t __attribute__((may_alias)) word_t;

/* ---- Transports and figures --------------------------------------------- */

enum kind {
    K_SHM_COPY,
    K_SHM_SLEEP,
    K_SHM_SPIN,
    K_SHM_ZC,
    K_SHM_BATCH,
    K_SHM_SINGLE,
    K_CKRING,
    K_DPDK,
    K_IOX,
    K_PIPE,
    K_UNIX,
    K_MQ,
    K_FLOOR,
    K_COUNT
};

struct transport {
    enum kind kind;
    const char *name;
    const char *what;
};

static const struct transport transports[K_COUNT] = {
    {K_SHM_COPY, "shm-copy", "shmring push/pop, busy polling"},
    {K_SHM_SLEEP, "shm-wait-sleep", "shmring push_wait/pop_wait, SHMRING_WAIT_SLEEP, spins 0"},
    {K_SHM_SPIN, "shm-wait-spin", "shmring push_wait/pop_wait, SHMRING_WAIT_SPIN"},
    {K_SHM_ZC, "shm-zerocopy", "shmring reserve/commit + claim/release, busy polling"},
    {K_SHM_BATCH, "shm-batch32", "shmring push_batch/pop_batch of 32, busy polling"},
    {K_SHM_SINGLE, "shm-single",
     "shmring push/pop on a SHMRING_SINGLE_CONSUMER ring (no CAS on pop), busy polling"},
    {K_CKRING, "ck_ring", "ck_ring SPSC of indices into a shared payload array, busy polling"},
    {K_DPDK, "dpdk-ring",
     "DPDK rte_ring (elements of the message size, SP enqueue, SC/MC dequeue), busy polling"},
    {K_IOX, "iceoryx",
     "iceoryx 2 C binding: loan/publish, take/release, blocking producer, busy polling"},
    {K_PIPE, "pipe", "pipe(2), one message per write/read"},
    {K_UNIX, "unix-seqpacket", "socketpair(AF_UNIX, SOCK_SEQPACKET)"},
    {K_MQ, "mq", "POSIX message queue (mq_send/mq_receive)"},
    {K_FLOOR, "raw-floor", "one 64-byte-aligned counter per side, spinning"},
};

enum fig_kind { FIG_RTT, FIG_TPUT, FIG_HANDOVER };

struct figure {
    const char *name;
    enum fig_kind kind;
    size_t len;
    int nconsumers;
    unsigned slots;     /* ring slots (shmring, ck_ring); pipe bytes follow */
    int transport_only; /* hand-over: time the transport only (data made before, checked after) */
};

static const struct figure figures[] = {
    {"rtt_8", FIG_RTT, 8, 1, 64, 0},
    {"rtt_1024", FIG_RTT, 1024, 1, 64, 0},
    {"tput_64_1c", FIG_TPUT, 64, 1, 1024, 0},
    {"tput_64_3c", FIG_TPUT, 64, 3, 1024, 0},
    {"tput_4096_1c", FIG_TPUT, 4096, 1, 256, 0},
    {"tput_4096_3c", FIG_TPUT, 4096, 3, 256, 0},
    {"handover_1m", FIG_HANDOVER, 1u << 20, 1, 4, 0},
    {"handover_1m_transport", FIG_HANDOVER, 1u << 20, 1, 4, 1},
};
#define NFIG (sizeof figures / sizeof figures[0])

struct result {
    int done;
    int skipped;
    char note[160];
    double v[3]; /* rtt: p50 p99 p99.9; tput: msg/s MB/s spread; handover: median p99 MB/s */
    uint64_t n;  /* samples (rtt, handover) or repetitions (tput) */
    double probe_lo, probe_hi; /* cache-line round trip between the CPUs, ns */
};

/* What the repetitions of one figure collected, per transport. */
struct accum {
    uint64_t *s;
    size_t n, cap;
    double tput[MAX_REPS];
    int ntput;
    double probe[MAX_REPS];
    int nprobe;
    int runs;
};

struct rss_record {
    int have;
    uint64_t segment_kib;
    uint64_t base[2], at10[2], at100[2], peak[2];
};

static struct result results[NFIG][K_COUNT];
static struct rss_record rss_records[NFIG];
static struct accum acc[K_COUNT];

/* ---- Options and process-wide state ------------------------------------ */

static struct {
    int quick;
    const char *only;
    const char *csv_path;
    const char *dist_dir;
    uint64_t rtt_iters;
    uint64_t tput_ns;
    unsigned handovers;
    unsigned reps;
} opt;

static int cpu_a, cpu_b;
static char ctx[96];
static int in_child;
static int in_child_index = -1;
static FILE *csv;
static char mq_unusable[160];
static char dpdk_unusable[160];
static char iox_unusable[160];
static long pipe_max_size = 1 << 20;

/* Shared between the parent and the children of one measurement. */
struct child_out {
    uint64_t count, sum, sumsq, end_ns;
    uint64_t rss_base, rss_10, rss_end;
    uint64_t pad[1];
};

struct shared {
    _Alignas(64) uint64_t ready;
    _Alignas(64) uint64_t acked;
    _Alignas(64) uint64_t floor_a; /* raw floor: written by the pinger only */
    _Alignas(64) uint64_t floor_b; /* raw floor: written by the ponger only */
    _Alignas(64) uint64_t probe_a;
    _Alignas(64) uint64_t probe_b;
    _Alignas(64) uint64_t start_ns;
    uint64_t sent;
    uint64_t nsamples;
    uint64_t probe_ns;
    struct child_out out[MAX_CHILDREN];
};

static struct shared *sh;
static uint64_t *samples; /* shared too: latencies of the last run */
static size_t samples_cap;

static pid_t kids[MAX_CHILDREN];
static char live_names[4][64];

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static void name_add(const char *n)
{
    for (size_t i = 0; i < sizeof live_names / sizeof live_names[0]; i++)
        if (live_names[i][0] == '\0') {
            snprintf(live_names[i], sizeof live_names[i], "%s", n);
            return;
        }
}

static void name_del(const char *n)
{
    for (size_t i = 0; i < sizeof live_names / sizeof live_names[0]; i++)
        if (strcmp(live_names[i], n) == 0)
            live_names[i][0] = '\0';
}

static void unlink_all(void)
{
    for (size_t i = 0; i < sizeof live_names / sizeof live_names[0]; i++)
        if (live_names[i][0] != '\0') {
            shmring_unlink(live_names[i]);
            live_names[i][0] = '\0';
        }
}

static void kill_kids(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (kids[i] > 0)
            kill(kids[i], SIGKILL);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (kids[i] > 0) {
            waitpid(kids[i], NULL, 0);
            kids[i] = 0;
        }
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_ipc: %s%s", ctx, ctx[0] ? ": " : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (in_child)
        _exit(2);
    kill_kids();
    unlink_all();
    exit(1);
}

static void on_signal(int sig)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (kids[i] > 0)
            kill(kids[i], SIGKILL);
    unlink_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- Payload: every 8-byte word derived from the sequence number -------- */

/* Word i of message seq is seq ^ (i * GOLDEN): word 0 is seq itself, and a
 * message torn between two writes fails the check. */
static void fill(void *p, size_t len, uint64_t seq)
{
    word_t *w = p;
    uint64_t k = 0;
    for (size_t i = 0; i < len / 8; i++, k += GOLDEN)
        w[i] = seq ^ k;
}

static int intact(const void *p, size_t len, uint64_t seq)
{
    const word_t *w = p;
    uint64_t k = 0, bad = 0;
    for (size_t i = 0; i < len / 8; i++, k += GOLDEN)
        bad |= w[i] ^ seq ^ k;
    return bad == 0;
}

static inline uint64_t seq_of(const void *p)
{
    return *(const word_t *)p;
}

/* ---- Small helpers ------------------------------------------------------ */

struct spin {
    uint64_t n, deadline;
};

/* One busy-poll step; aborts when nothing moved for OP_TIMEOUT_NS. */
static inline void spin_pause(struct spin *s, const char *what)
{
    shmring__cpu_relax();
    if ((++s->n & 0xffff) == 0) {
        uint64_t t = now_ns();
        if (s->deadline == 0)
            s->deadline = t + OP_TIMEOUT_NS;
        else if (t > s->deadline)
            die("%s: no progress for %llu s", what, OP_TIMEOUT_NS / NSEC);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t pct(const uint64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)ceil(p * (double)n);
    if (i > 0)
        i--;
    if (i >= n)
        i = n - 1;
    return sorted[i];
}

static double quantile_of(int k)
{
    return 1.0 - pow(10.0, -(double)k / 20.0);
}

static uint64_t rss_now_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

static long read_long(const char *path, long dflt)
{
    FILE *f = fopen(path, "r");
    long v = dflt;
    if (f == NULL)
        return dflt;
    if (fscanf(f, "%ld", &v) != 1)
        v = dflt;
    fclose(f);
    return v;
}

static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (sched_setaffinity(0, sizeof s, &s) != 0)
        die("sched_setaffinity(cpu %d): %s", cpu, strerror(errno));
}

/* All n children meet here; `round` counts the meetings of one run. */
static void meet(uint64_t n, uint64_t round)
{
    shmring__faa_64(&sh->ready, 1);
    uint64_t deadline = now_ns() + OP_TIMEOUT_NS;
    while (shmring__load_acquire_64(&sh->ready) < n * round) {
        sched_yield();
        if (now_ns() > deadline)
            die("start barrier: a peer never arrived");
    }
}

/*
 * The cache-line round trip between the two pinned CPUs right now: the host
 * may place the two virtual CPUs near or far from each other, and this
 * changes every figure. Children 0 and 1 ping-pong a line PROBE_TRIPS times.
 */
static void probe_floor(int idx)
{
    uint64_t d[PROBE_TRIPS];
    for (uint64_t i = 1; i <= PROBE_TRIPS; i++) {
        struct spin s = {0, 0};
        if (idx == 0) {
            uint64_t t0 = now_ns();
            /* Release/acquire pairs with the other side's; only values matter. */
            shmring__store_release_64(&sh->probe_a, i);
            while (shmring__load_acquire_64(&sh->probe_b) != i)
                spin_pause(&s, "floor probe");
            d[i - 1] = now_ns() - t0;
        } else {
            while (shmring__load_acquire_64(&sh->probe_a) != i)
                spin_pause(&s, "floor probe");
            shmring__store_release_64(&sh->probe_b, i);
        }
    }
    if (idx == 0) {
        qsort(d, PROBE_TRIPS, sizeof d[0], cmp_u64);
        sh->probe_ns = d[PROBE_TRIPS / 2];
    }
}

/* Setup done (not timed): probe the floor, then measure from here. */
static void barrier(uint64_t n)
{
    meet(n, 1);
    if (in_child_index < 2)
        probe_floor(in_child_index);
    meet(n, 2);
}

/* ---- Channels: one direction of one transport ---------------------------- */

enum role { TX, RX };

struct ck_area {
    struct ck_ring ring; /* padded by ck: consumer and producer lines apart */
};

struct chan {
    const struct transport *t;
    size_t len; /* every message of a run has this length */
    unsigned slots;
    int nconsumers;
    /* set up by the parent */
    char name[64];
    shmring_t *keeper; /* observer handle: keeps the segment for the run */
    uint64_t segment_bytes;
    int fd[2];
    mqd_t mq;
    long mq_maxmsg;
    long pipe_bytes;
    struct ck_area *ck;
    ck_ring_buffer_t *ck_buf;
    unsigned char *ck_payload;
    size_t ck_stride, ck_bytes;
#if defined(BENCH_HAVE_DPDK)
    struct rte_ring *dr;
    size_t dr_bytes;
    unsigned dr_esize;
#endif
    /* per process */
    shmring_t *h;
    shmring_msg_t msg;
    unsigned char *buf;
    size_t bufsz;
    struct iovec iov[BATCH];
    size_t nb, have, next;
    uint64_t ck_pos;
#if defined(BENCH_HAVE_IOX)
    iox_pub_storage_t pub_storage;
    iox_sub_storage_t sub_storage;
    iox_pub_t pub;
    iox_sub_t sub;
    void *chunk;
    const void *rx_chunk;
#endif
};

static int is_shm(enum kind k)
{
    return k <= K_SHM_SINGLE;
}

static void chan_setup(struct chan *c, const struct transport *t, size_t len, unsigned slots,
                       int nconsumers)
{
    static unsigned counter;
    memset(c, 0, sizeof *c);
    c->t = t;
    c->len = len;
    c->slots = slots;
    c->nconsumers = nconsumers;
    c->fd[0] = c->fd[1] = -1;
    c->mq = (mqd_t)-1;
    if (is_shm(t->kind)) {
        snprintf(c->name, sizeof c->name, "/bench-ipc-%d-%u", (int)getpid(), counter++);
        shmring_config_t cfg =
            SHMRING_CONFIG_INIT(.slots = slots, .slot_size = (uint32_t)len,
                                .flags = SHMRING_OBSERVER | SHMRING_NO_FALLBACK |
                                         (t->kind == K_SHM_SINGLE ? SHMRING_SINGLE_CONSUMER : 0));
        int rc = shmring_create(c->name, &cfg, &c->keeper);
        if (rc < 0)
            die("shmring_create(%s): %s", c->name, shmring_strerror(rc));
        name_add(c->name);
        if (shmring_backend(c->keeper) != SHMRING_BACKEND_SHM)
            die("%s is not in named shared memory: processes cannot share it", c->name);
        struct stat st;
        if (fstat(shmring_fd(c->keeper), &st) == 0)
            c->segment_bytes = (uint64_t)st.st_size;
        return;
    }
    switch (t->kind) {
    case K_PIPE: {
        if (pipe(c->fd) != 0)
            die("pipe: %s", strerror(errno));
        /* Same bytes in flight as the rings (never below the default). */
        long want = (long)(len * slots);
        if (want > pipe_max_size)
            want = pipe_max_size;
        if (want > 65536)
            fcntl(c->fd[1], F_SETPIPE_SZ, (int)want);
        c->pipe_bytes = fcntl(c->fd[1], F_GETPIPE_SZ);
        break;
    }
    case K_UNIX:
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, c->fd) != 0)
            die("socketpair: %s", strerror(errno));
        break;
    case K_MQ: {
        char name[64];
        snprintf(name, sizeof name, "/bench-ipc-%d-mq%u", (int)getpid(), counter++);
        struct mq_attr a;
        memset(&a, 0, sizeof a);
        long max = read_long("/proc/sys/fs/mqueue/msg_max", 10);
        a.mq_maxmsg = (long)slots < max ? (long)slots : max;
        a.mq_msgsize = (long)len;
        c->mq = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
        if (c->mq == (mqd_t)-1)
            die("mq_open(%s, maxmsg %ld, msgsize %zu): %s", name, a.mq_maxmsg, len,
                strerror(errno));
        mq_unlink(name); /* the descriptor, inherited by fork, is enough */
        c->mq_maxmsg = a.mq_maxmsg;
        break;
    }
    case K_CKRING: {
        c->ck_stride = round_up(len, 64);
        size_t off_buf = round_up(sizeof(struct ck_area), 64);
        size_t off_pay = round_up(off_buf + slots * sizeof(ck_ring_buffer_t), 64);
        /* Twice the ring's entries: a slot is rewritten only after the
         * consumer has dequeued the entry that follows it. */
        c->ck_bytes = off_pay + 2 * (size_t)slots * c->ck_stride;
        void *m =
            mmap(NULL, c->ck_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            die("mmap: %s", strerror(errno));
        c->ck = m;
        c->ck_buf = (ck_ring_buffer_t *)(void *)((unsigned char *)m + off_buf);
        c->ck_payload = (unsigned char *)m + off_pay;
        ck_ring_init(&c->ck->ring, slots);
        break;
    }
#if defined(BENCH_HAVE_DPDK)
    case K_DPDK: {
        /* The message itself is the ring's element (a multiple of 4 bytes),
         * so several consumers can dequeue safely; capacity slots - 1. */
        c->dr_esize = (unsigned)round_up(len ? len : 8, 8);
        ssize_t sz = rte_ring_get_memsize_elem(c->dr_esize, slots);
        if (sz < 0)
            die("rte_ring_get_memsize_elem(%u, %u): %s", c->dr_esize, slots, strerror((int)-sz));
        c->dr_bytes = (size_t)sz;
        void *m =
            mmap(NULL, c->dr_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            die("mmap: %s", strerror(errno));
        c->dr = m;
        unsigned flags = RING_F_SP_ENQ | (nconsumers == 1 ? RING_F_SC_DEQ : 0);
        int rc = rte_ring_init(c->dr, "bench-ipc", slots, flags);
        if (rc != 0)
            die("rte_ring_init: %s", strerror(-rc));
        break;
    }
#endif
#if defined(BENCH_HAVE_IOX)
    case K_IOX:
        /* The service name; publisher and subscriber are made in the children. */
        snprintf(c->name, sizeof c->name, "ipc%d-%u", (int)getpid(), counter++);
        break;
#endif
    default:
        break;
    }
}

/* Parent, after forking: drop the descriptors the children now own. */
static void chan_parent_drop(struct chan *c)
{
    for (int i = 0; i < 2; i++)
        if (c->fd[i] >= 0) {
            close(c->fd[i]);
            c->fd[i] = -1;
        }
    if (c->mq != (mqd_t)-1) {
        mq_close(c->mq);
        c->mq = (mqd_t)-1;
    }
}

/* Parent, after the run. */
static void chan_teardown(struct chan *c)
{
    chan_parent_drop(c);
    if (c->keeper != NULL) {
        shmring_close(c->keeper);
        c->keeper = NULL;
        shmring_unlink(c->name);
        name_del(c->name);
    }
    if (c->ck != NULL) {
        munmap(c->ck, c->ck_bytes);
        c->ck = NULL;
    }
#if defined(BENCH_HAVE_DPDK)
    if (c->dr != NULL) {
        munmap(c->dr, c->dr_bytes);
        c->dr = NULL;
    }
#endif
}

#if defined(BENCH_HAVE_IOX)
/* ---- iceoryx: one runtime per process, made on first use ----------------- */

static int iox_endpoints;

static void iox_need_runtime(void)
{
    if (iox_endpoints++ > 0)
        return;
    char name[64];
    snprintf(name, sizeof name, "bench-ipc-%d", (int)getpid());
    iox_set_loglevel(Iceoryx_LogLevel_Warn); /* no debug lines in the tables */
    iox_runtime_init(name);
}

static void iox_drop_runtime(void)
{
    if (--iox_endpoints == 0)
        iox_runtime_shutdown();
}

/* Wait (at most OP_TIMEOUT_NS) until a publisher sees its subscribers, or a
 * subscriber is subscribed: messages sent before that are not delivered. */
static void iox_connect(struct chan *c, enum role role)
{
    uint64_t deadline = now_ns() + OP_TIMEOUT_NS;
    iox_need_runtime();
    if (role == TX) {
        iox_pub_options_t o;
        iox_pub_options_init(&o);
        o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
        c->pub = iox_pub_init(&c->pub_storage, "shmring-bench", c->name, "data", &o);
        while (!iox_pub_has_subscribers(c->pub))
            if (now_ns() > deadline)
                die("iceoryx: no subscriber for %s", c->name);
            else
                usleep(200);
        return;
    }
    iox_sub_options_t o;
    iox_sub_options_init(&o);
    o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
    c->sub = iox_sub_init(&c->sub_storage, "shmring-bench", c->name, "data", &o);
    while (iox_sub_get_subscription_state(c->sub) != SubscribeState_SUBSCRIBED)
        if (now_ns() > deadline)
            die("iceoryx: not subscribed to %s", c->name);
        else
            usleep(200);
}

/* A publisher leaves only after its subscribers did, so that the queued
 * messages (and the end marker) reach them. */
static void iox_disconnect(struct chan *c)
{
    if (c->pub != NULL) {
        uint64_t deadline = now_ns() + OP_TIMEOUT_NS;
        while (iox_pub_has_subscribers(c->pub) && now_ns() < deadline)
            usleep(200);
        iox_pub_deinit(c->pub);
        c->pub = NULL;
        iox_drop_runtime();
    }
    if (c->sub != NULL) {
        iox_sub_deinit(c->sub);
        c->sub = NULL;
        iox_drop_runtime();
    }
}
#endif

static void chan_open(struct chan *c, enum role role)
{
    size_t n = c->t->kind == K_SHM_BATCH ? BATCH : 1;
    c->bufsz = round_up(c->len ? c->len : 8, 64);
    c->buf = aligned_alloc(64, c->bufsz * n);
    if (c->buf == NULL)
        die("out of memory");
    memset(c->buf, 0, c->bufsz * n);
    if (is_shm(c->t->kind)) {
        int rc = shmring_open(c->name, role == TX ? SHMRING_PRODUCER : SHMRING_CONSUMER, &c->h);
        if (rc < 0)
            die("shmring_open(%s): %s", c->name, shmring_strerror(rc));
        if (c->t->kind == K_SHM_SLEEP)
            rc = shmring_set_wait(c->h, SHMRING_WAIT_SLEEP, 0);
        else if (c->t->kind == K_SHM_SPIN)
            rc = shmring_set_wait(c->h, SHMRING_WAIT_SPIN, 0);
        if (rc < 0)
            die("shmring_set_wait: %s", shmring_strerror(rc));
        return;
    }
#if defined(BENCH_HAVE_IOX)
    if (c->t->kind == K_IOX) {
        iox_connect(c, role);
        return;
    }
#endif
    if (c->t->kind == K_PIPE || c->t->kind == K_UNIX) {
        /* pipe: fd[1] writes, fd[0] reads; socket pair: fd[0] sends. */
        int keep = (c->t->kind == K_PIPE) == (role == TX) ? 1 : 0;
        close(c->fd[1 - keep]);
        c->fd[1 - keep] = -1;
    }
}

static void chan_close(struct chan *c)
{
#if defined(BENCH_HAVE_IOX)
    iox_disconnect(c);
#endif
    if (c->h != NULL) {
        shmring_close(c->h); /* a producer's close ends the stream */
        c->h = NULL;
    }
    for (int i = 0; i < 2; i++)
        if (c->fd[i] >= 0) {
            close(c->fd[i]);
            c->fd[i] = -1;
        }
    if (c->mq != (mqd_t)-1) {
        mq_close(c->mq);
        c->mq = (mqd_t)-1;
    }
    free(c->buf);
    c->buf = NULL;
}

static void write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("write: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

/* 1: a whole message; 0: end of stream at a message boundary. */
static int pipe_read(struct chan *c)
{
    size_t got = 0;
    while (got < c->len) {
        ssize_t n = read(c->fd[0], c->buf + got, c->len - got);
        if (n == 0) {
            if (got == 0)
                return 0;
            die("pipe: end of stream inside a message");
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("read: %s", strerror(errno));
        }
        if (c->nconsumers > 1 && (size_t)n != c->len)
            die("pipe: read %zd of %zu bytes with several readers", n, c->len);
        got += (size_t)n;
    }
    return 1;
}

static void batch_flush(struct chan *c)
{
    size_t off = 0;
    struct spin s = {0, 0};
    while (off < c->nb) {
        ssize_t n = shmring_push_batch(c->h, c->iov + off, c->nb - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n != -EAGAIN)
            die("shmring_push_batch: %s", shmring_strerror((int)n));
        spin_pause(&s, "shmring_push_batch");
    }
    c->nb = 0;
}

/* Where to write the next message (in place for zero-copy). */
static unsigned char *tx_begin(struct chan *c)
{
    if (c->t->kind == K_SHM_ZC) {
        void *p;
        struct spin s = {0, 0};
        for (;;) {
            int rc = shmring_reserve(c->h, c->len, &p);
            if (rc == 0)
                return p;
            if (rc != -EAGAIN)
                die("shmring_reserve: %s", shmring_strerror(rc));
            spin_pause(&s, "shmring_reserve");
        }
    }
    if (c->t->kind == K_SHM_BATCH)
        return c->buf + c->nb * c->bufsz;
#if defined(BENCH_HAVE_IOX)
    if (c->t->kind == K_IOX) {
        /* Loaned in place, like shm-zerocopy; RUNNING_OUT_OF_CHUNKS while
         * the subscriber holds them all. */
        struct spin s = {0, 0};
        for (;;) {
            int rc = iox_pub_loan_chunk(c->pub, &c->chunk, (uint32_t)c->len);
            if (rc == AllocationResult_SUCCESS)
                return c->chunk;
            if (rc != AllocationResult_RUNNING_OUT_OF_CHUNKS)
                die("iox_pub_loan_chunk(%zu bytes): result %d", c->len, rc);
            spin_pause(&s, "iox_pub_loan_chunk");
        }
    }
#endif
    return c->buf;
}

static void ck_send(struct chan *c, size_t len)
{
    unsigned idx = (unsigned)(c->ck_pos & (2 * (uint64_t)c->slots - 1));
    memcpy(c->ck_payload + idx * c->ck_stride, c->buf, len);
    struct spin s = {0, 0};
    while (!ck_ring_enqueue_spsc(&c->ck->ring, c->ck_buf, (void *)(uintptr_t)idx))
        spin_pause(&s, "ck_ring_enqueue_spsc");
    c->ck_pos++;
}

/* Send the message written since tx_begin. */
static void tx_end(struct chan *c, size_t len)
{
    int rc = 0;
    struct spin s = {0, 0};
    switch (c->t->kind) {
    case K_SHM_COPY:
    case K_SHM_SINGLE:
        while ((rc = shmring_push(c->h, c->buf, len)) == -EAGAIN)
            spin_pause(&s, "shmring_push");
        break;
    case K_SHM_SLEEP:
    case K_SHM_SPIN:
        rc = shmring_push_wait(c->h, c->buf, len, (int64_t)OP_TIMEOUT_NS);
        break;
    case K_SHM_ZC:
        rc = shmring_commit(c->h, len);
        break;
    case K_SHM_BATCH:
        c->iov[c->nb].iov_base = c->buf + c->nb * c->bufsz;
        c->iov[c->nb].iov_len = len;
        if (++c->nb == BATCH)
            batch_flush(c);
        break;
    case K_PIPE:
        write_all(c->fd[1], c->buf, len);
        break;
    case K_UNIX:
        if (send(c->fd[0], c->buf, len, 0) != (ssize_t)len)
            die("send: %s", strerror(errno));
        break;
    case K_MQ:
        if (mq_send(c->mq, (const char *)c->buf, len, 0) != 0)
            die("mq_send: %s", strerror(errno));
        break;
    case K_CKRING:
        ck_send(c, len);
        break;
#if defined(BENCH_HAVE_DPDK)
    case K_DPDK:
        while (rte_ring_sp_enqueue_elem(c->dr, c->buf, c->dr_esize) != 0)
            spin_pause(&s, "rte_ring_sp_enqueue_elem");
        break;
#endif
#if defined(BENCH_HAVE_IOX)
    case K_IOX:
        /* Blocks (yielding) while the subscriber's queue is full. */
        iox_pub_publish_chunk(c->pub, c->chunk);
        c->chunk = NULL;
        break;
#endif
    default:
        die("no such channel");
    }
    if (rc < 0)
        die("%s: send: %s", c->t->name, shmring_strerror(rc));
}

static void tx_flush(struct chan *c)
{
    if (c->t->kind == K_SHM_BATCH && c->nb > 0)
        batch_flush(c);
}

/* Producer: flush, end the stream for every consumer, close. */
static void tx_finish(struct chan *c)
{
    tx_flush(c);
    if (c->t->kind == K_MQ || c->t->kind == K_CKRING || c->t->kind == K_DPDK ||
        c->t->kind == K_IOX) {
        /* No end-of-stream of their own: one marker per consumer. */
        for (int i = 0; i < c->nconsumers; i++) {
            fill(tx_begin(c), c->len, END_SEQ);
            tx_end(c, c->len);
        }
    }
    chan_close(c);
}

static const unsigned char *end_marker(struct chan *c)
{
    if (seq_of(c->buf) != END_SEQ)
        return c->buf;
    if (!intact(c->buf, c->len, END_SEQ))
        die("corrupt end-of-stream marker");
    return NULL;
}

/* Next message (NULL at end of stream); valid until rx_end. */
static const unsigned char *rx_begin(struct chan *c, size_t *len)
{
    struct spin s = {0, 0};
    ssize_t n;
    *len = c->len;
    switch (c->t->kind) {
    case K_SHM_COPY:
    case K_SHM_SINGLE:
        while ((n = shmring_pop(c->h, c->buf, c->bufsz)) == -EAGAIN)
            spin_pause(&s, "shmring_pop");
        break;
    case K_SHM_SLEEP:
    case K_SHM_SPIN:
        n = shmring_pop_wait(c->h, c->buf, c->bufsz, (int64_t)OP_TIMEOUT_NS);
        break;
    case K_SHM_ZC: {
        int rc;
        while ((rc = shmring_claim(c->h, &c->msg)) == -EAGAIN)
            spin_pause(&s, "shmring_claim");
        if (rc == -EPIPE)
            return NULL;
        if (rc < 0)
            die("shmring_claim: %s", shmring_strerror(rc));
        *len = c->msg.len;
        return c->msg.data;
    }
    case K_SHM_BATCH:
        if (c->next == c->have) {
            for (size_t i = 0; i < BATCH; i++) {
                c->iov[i].iov_base = c->buf + i * c->bufsz;
                c->iov[i].iov_len = c->bufsz;
            }
            while ((n = shmring_pop_batch(c->h, c->iov, BATCH)) == -EAGAIN)
                spin_pause(&s, "shmring_pop_batch");
            if (n == -EPIPE)
                return NULL;
            if (n <= 0)
                die("shmring_pop_batch: %s", shmring_strerror((int)n));
            c->have = (size_t)n;
            c->next = 0;
        }
        *len = c->iov[c->next].iov_len;
        return c->buf + c->bufsz * c->next++;
    case K_PIPE:
        return pipe_read(c) ? c->buf : NULL;
    case K_UNIX:
        n = recv(c->fd[1], c->buf, c->bufsz, 0);
        if (n == 0)
            return NULL;
        if (n < 0)
            die("recv: %s", strerror(errno));
        *len = (size_t)n;
        return c->buf;
    case K_MQ:
        n = mq_receive(c->mq, (char *)c->buf, c->bufsz, NULL);
        if (n < 0)
            die("mq_receive: %s", strerror(errno));
        *len = (size_t)n;
        return end_marker(c);
    case K_CKRING: {
        void *v;
        while (!ck_ring_dequeue_spsc(&c->ck->ring, c->ck_buf, &v))
            spin_pause(&s, "ck_ring_dequeue_spsc");
        uintptr_t idx = (uintptr_t)v;
        if (idx >= 2 * (uintptr_t)c->slots)
            die("ck_ring: index %zu out of range", (size_t)idx);
        memcpy(c->buf, c->ck_payload + idx * c->ck_stride, c->len);
        return end_marker(c);
    }
#if defined(BENCH_HAVE_DPDK)
    case K_DPDK:
        if (c->nconsumers == 1)
            while (rte_ring_sc_dequeue_elem(c->dr, c->buf, c->dr_esize) != 0)
                spin_pause(&s, "rte_ring_sc_dequeue_elem");
        else
            while (rte_ring_mc_dequeue_elem(c->dr, c->buf, c->dr_esize) != 0)
                spin_pause(&s, "rte_ring_mc_dequeue_elem");
        return end_marker(c);
#endif
#if defined(BENCH_HAVE_IOX)
    case K_IOX: {
        int rc;
        while ((rc = iox_sub_take_chunk(c->sub, &c->rx_chunk)) ==
               ChunkReceiveResult_NO_CHUNK_AVAILABLE)
            spin_pause(&s, "iox_sub_take_chunk");
        if (rc != ChunkReceiveResult_SUCCESS)
            die("iox_sub_take_chunk: result %d", rc);
        const unsigned char *q = c->rx_chunk;
        if (seq_of(q) == END_SEQ) {
            if (!intact(q, c->len, END_SEQ))
                die("corrupt end-of-stream marker");
            iox_sub_release_chunk(c->sub, c->rx_chunk);
            c->rx_chunk = NULL;
            return NULL;
        }
        return q;
    }
#endif
    default:
        die("no such channel");
    }
    /* shmring copy paths */
    if (n == -EPIPE)
        return NULL;
    if (n < 0)
        die("%s: receive: %s", c->t->name, shmring_strerror((int)n));
    *len = (size_t)n;
    return c->buf;
}

static void rx_end(struct chan *c)
{
    if (c->t->kind == K_SHM_ZC) {
        int rc = shmring_release(c->h, &c->msg);
        if (rc < 0)
            die("shmring_release: %s", shmring_strerror(rc));
    }
#if defined(BENCH_HAVE_IOX)
    if (c->t->kind == K_IOX && c->rx_chunk != NULL) {
        iox_sub_release_chunk(c->sub, c->rx_chunk);
        c->rx_chunk = NULL;
    }
#endif
}

/* ---- Running children ---------------------------------------------------- */

struct run {
    const struct figure *fig;
    const struct transport *t;
    struct chan ab; /* A -> B (producer -> consumers) */
    struct chan ba; /* B -> A (round-trip replies) */
    int two_way;
    int nchildren;
    struct rusage ru[MAX_CHILDREN];
};

typedef void (*role_fn)(int idx, struct run *r);

static void child_start(int idx)
{
    in_child = 1;
    in_child_index = idx;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    pin(idx == 0 ? cpu_a : cpu_b);
}

static void wait_children(struct run *r)
{
    uint64_t deadline = now_ns() + RUN_TIMEOUT_NS;
    int left = r->nchildren;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    while (left > 0) {
        int st;
        struct rusage ru;
        pid_t pid = wait4(-1, &st, WNOHANG, &ru);
        if (pid < 0)
            die("wait4: %s", strerror(errno));
        if (pid > 0) {
            int i = 0;
            while (i < MAX_CHILDREN && kids[i] != pid)
                i++;
            if (i == MAX_CHILDREN)
                continue;
            kids[i] = 0;
            left--;
            r->ru[i] = ru;
            if (WIFSIGNALED(st))
                die("child %d killed by signal %d (%s)", i, WTERMSIG(st), strsignal(WTERMSIG(st)));
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                die("child %d failed", i);
            continue;
        }
        uint64_t t = now_ns();
        if (t >= deadline)
            die("no result after %llu s", RUN_TIMEOUT_NS / NSEC);
        struct timespec ts = {(time_t)((deadline - t) / NSEC), (long)((deadline - t) % NSEC)};
        sigtimedwait(&set, NULL, &ts);
    }
}

static void run_children(struct run *r, int n, role_fn fn)
{
    memset(sh, 0, sizeof *sh);
    r->nchildren = n;
    fflush(stdout);
    fflush(stderr);
    if (csv != NULL)
        fflush(csv);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            child_start(i);
            fn(i, r);
            _exit(0);
        }
        kids[i] = pid;
    }
    chan_parent_drop(&r->ab);
    if (r->two_way)
        chan_parent_drop(&r->ba);
    wait_children(r);
}

/* ---- Round trip ---------------------------------------------------------- */

static uint64_t rtt_per_rep(void)
{
    return opt.rtt_iters / opt.reps;
}

static uint64_t rtt_warmup(void)
{
    return rtt_per_rep() / 20 + 100;
}

/* Touch the shared sample array now, so that no page fault lands in a
 * measured round trip. */
static void samples_prepare(uint64_t n)
{
    memset(samples, 0, n * sizeof *samples);
}

static void rtt_ping(struct run *r)
{
    size_t len = r->fig->len;
    uint64_t warm = rtt_warmup(), total = warm + rtt_per_rep(), measured = 0;
    samples_prepare(rtt_per_rep());
    chan_open(&r->ab, TX);
    chan_open(&r->ba, RX);
    barrier(2);
    uint64_t start = now_ns();
    for (uint64_t i = 0; i < total; i++) {
        if ((i & 1023) == 1023 && i > warm && now_ns() - start > RTT_CAP_NS)
            break; /* a slow transport on a busy machine: keep the run short */
        uint64_t t0 = now_ns();
        fill(tx_begin(&r->ab), len, i);
        tx_end(&r->ab, len);
        size_t n;
        const unsigned char *q = rx_begin(&r->ba, &n);
        if (q == NULL)
            die("reply stream ended early");
        if (n != len || !intact(q, n, i))
            die("round trip %llu: reply of %zu bytes is not message %llu", (unsigned long long)i, n,
                (unsigned long long)i);
        rx_end(&r->ba);
        uint64_t t1 = now_ns();
        if (i >= warm)
            samples[measured++] = t1 - t0;
    }
    sh->nsamples = measured;
    tx_finish(&r->ab); /* end of stream: the ponger stops */
    chan_close(&r->ba);
}

static void rtt_pong(struct run *r)
{
    size_t len = r->fig->len;
    chan_open(&r->ab, RX);
    chan_open(&r->ba, TX);
    barrier(2);
    for (uint64_t i = 0;; i++) {
        size_t n;
        const unsigned char *q = rx_begin(&r->ab, &n);
        if (q == NULL)
            break;
        if (n != len || !intact(q, n, i))
            die("round trip %llu: ping of %zu bytes is not message %llu", (unsigned long long)i, n,
                (unsigned long long)i);
        memcpy(tx_begin(&r->ba), q, n);
        tx_end(&r->ba, n);
        rx_end(&r->ab);
    }
    chan_close(&r->ab);
    chan_close(&r->ba);
}

static void rtt_role(int idx, struct run *r)
{
    if (idx == 0)
        rtt_ping(r);
    else
        rtt_pong(r);
}

/* The floor: each side spins on the other's cache line. */
static void floor_role(int idx, struct run *r)
{
    (void)r;
    uint64_t warm = rtt_warmup(), total = warm + rtt_per_rep(), measured = 0;
    if (idx == 0)
        samples_prepare(rtt_per_rep());
    barrier(2);
    uint64_t start = now_ns();
    for (uint64_t i = 1; i <= total; i++) {
        struct spin s = {0, 0};
        if (idx == 0) {
            if ((i & 1023) == 0 && i > warm && now_ns() - start > RTT_CAP_NS)
                break;
            uint64_t t0 = now_ns();
            /* Release: pairs with the acquire below, in the ponger. */
            shmring__store_release_64(&sh->floor_a, i);
            /* Acquire: pairs with the ponger's release. */
            while (shmring__load_acquire_64(&sh->floor_b) != i)
                spin_pause(&s, "raw floor");
            uint64_t t1 = now_ns();
            if (i > warm)
                samples[measured++] = t1 - t0;
        } else {
            uint64_t a;
            while ((a = shmring__load_acquire_64(&sh->floor_a)) != i) {
                if (a == END_SEQ)
                    return;
                spin_pause(&s, "raw floor");
            }
            shmring__store_release_64(&sh->floor_b, i);
        }
    }
    if (idx == 0) {
        sh->nsamples = measured;
        shmring__store_release_64(&sh->floor_a, END_SEQ);
    }
}

/* ---- Throughput ---------------------------------------------------------- */

static void tput_producer(struct run *r)
{
    size_t len = r->fig->len;
    struct child_out *o = &sh->out[0];
    o->rss_base = rss_now_kib();
    chan_open(&r->ab, TX);
    barrier((uint64_t)r->nchildren);
    uint64_t start = now_ns(), t10 = start + opt.tput_ns / 10, end = start + opt.tput_ns;
    sh->start_ns = start;
    uint64_t seq = 0;
    for (;; seq++) {
        if ((seq & 127) == 0) {
            uint64_t t = now_ns();
            if (t >= end)
                break;
            if (o->rss_10 == 0 && t >= t10)
                o->rss_10 = rss_now_kib();
        }
        fill(tx_begin(&r->ab), len, seq);
        tx_end(&r->ab, len);
    }
    tx_flush(&r->ab);
    o->rss_end = rss_now_kib();
    sh->sent = seq;
    tx_finish(&r->ab);
}

static void tput_consumer(int idx, struct run *r)
{
    size_t len = r->fig->len;
    int several = r->fig->nconsumers > 1;
    struct child_out *o = &sh->out[idx];
    o->rss_base = rss_now_kib();
    chan_open(&r->ab, RX);
    barrier((uint64_t)r->nchildren);
    uint64_t count = 0, sum = 0, sumsq = 0, last = 0, t10 = 0;
    for (;;) {
        size_t n;
        const unsigned char *q = rx_begin(&r->ab, &n);
        if (q == NULL)
            break;
        uint64_t s = seq_of(q);
        if (n != len || !intact(q, n, s))
            die("consumer %d: message %llu (%zu bytes) is corrupt", idx, (unsigned long long)s, n);
        /* One consumer sees 0, 1, 2, ...; each of several sees an increasing
         * subsequence (the totals are checked by the parent). */
        if (several ? (count > 0 && s <= last) : s != count)
            die("consumer %d: message %llu after %llu (%llu received)", idx, (unsigned long long)s,
                (unsigned long long)last, (unsigned long long)count);
        last = s;
        count++;
        sum += s;
        sumsq += s * s;
        rx_end(&r->ab);
        if ((count & 127) == 1 && o->rss_10 == 0) {
            uint64_t t = now_ns();
            if (t10 == 0)
                t10 = t + opt.tput_ns / 10;
            else if (t >= t10)
                o->rss_10 = rss_now_kib();
        }
    }
    o->end_ns = now_ns();
    o->rss_end = rss_now_kib();
    o->count = count;
    o->sum = sum;
    o->sumsq = sumsq;
    chan_close(&r->ab);
}

static void tput_role(int idx, struct run *r)
{
    if (idx == 0)
        tput_producer(r);
    else
        tput_consumer(idx, r);
}

/* Every message 0..sent-1 received exactly once, across all consumers. */
static void check_totals(const struct run *r)
{
    uint64_t n = sh->sent, count = 0, sum = 0, sumsq = 0;
    for (int i = 1; i < r->nchildren; i++) {
        count += sh->out[i].count;
        sum += sh->out[i].sum;
        sumsq += sh->out[i].sumsq;
    }
    unsigned __int128 m = n;
    uint64_t want_sum = (uint64_t)(n == 0 ? 0 : m * (m - 1) / 2);
    uint64_t want_sq = (uint64_t)(n == 0 ? 0 : (m - 1) * m * (2 * m - 1) / 6);
    if (count != n || sum != want_sum || sumsq != want_sq)
        die("sent %llu messages, consumers received %llu (sum %s, sum of squares %s)",
            (unsigned long long)n, (unsigned long long)count, sum == want_sum ? "ok" : "WRONG",
            sumsq == want_sq ? "ok" : "WRONG");
    if (n == 0)
        die("no message sent");
}

/* ---- Hand-over of one large message --------------------------------------- */

static void handover_role(int idx, struct run *r)
{
    size_t len = r->fig->len;
    unsigned per = opt.handovers / opt.reps, total = HANDOVER_WARM + per;
    if (idx == 0) {
        samples_prepare(per);
        chan_open(&r->ab, TX);
        barrier(2);
        for (unsigned i = 0; i < total; i++) {
            unsigned char *p = tx_begin(&r->ab);
            if (r->fig->transport_only)
                fill(p, len, i);
            uint64_t t0 = now_ns();
            if (!r->fig->transport_only)
                fill(p, len, i);
            tx_end(&r->ab, len);
            tx_flush(&r->ab);
            struct spin s = {0, 0};
            /* Acquire: pairs with the reader's release after its check. */
            while (shmring__load_acquire_64(&sh->acked) != i + 1)
                spin_pause(&s, "hand-over acknowledgement");
            uint64_t t1 = now_ns();
            if (i >= HANDOVER_WARM)
                samples[i - HANDOVER_WARM] = t1 - t0;
        }
        sh->nsamples = per;
        chan_close(&r->ab);
        return;
    }
    chan_open(&r->ab, RX);
    barrier(2);
    for (unsigned i = 0; i < total; i++) {
        size_t n;
        const unsigned char *q = rx_begin(&r->ab, &n);
        if (q == NULL)
            die("stream ended early");
        /* Release: pairs with the writer's acquire. */
        if (r->fig->transport_only)
            shmring__store_release_64(&sh->acked, i + 1);
        if (n != len || !intact(q, n, i))
            die("hand-over %u: %zu bytes received, not message %u", i, n, i);
        rx_end(&r->ab);
        if (!r->fig->transport_only)
            shmring__store_release_64(&sh->acked, i + 1);
    }
    chan_close(&r->ab);
}

/* ---- One measurement ------------------------------------------------------ */

static int applies(const struct figure *f, const struct transport *t, const char **why)
{
    *why = NULL;
    switch (f->kind) {
    case FIG_RTT:
        return t->kind != K_SHM_BATCH;
    case FIG_TPUT:
        if (t->kind == K_FLOOR)
            return 0;
        if (f->nconsumers > 1 && t->kind == K_SHM_SINGLE) {
            *why = "a SHMRING_SINGLE_CONSUMER ring has one consumer by construction";
            return -1;
        }
        if (f->nconsumers > 1 && t->kind == K_CKRING) {
            *why = "ck_ring SPSC has one consumer by construction";
            return -1;
        }
        if (f->nconsumers > 1 && t->kind == K_IOX) {
            *why = "iceoryx is publish/subscribe: every subscriber gets every message";
            return -1;
        }
        return 1;
    case FIG_HANDOVER:
        return t->kind == K_SHM_ZC || t->kind == K_SHM_COPY || t->kind == K_PIPE ||
               t->kind == K_CKRING || t->kind == K_DPDK || t->kind == K_IOX;
    }
    return 0;
}

static int listed(const char *name)
{
    const char *p = opt.only;
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

/* --only: the figures listed (all if none is) times the transports listed
 * (all if none is). */
static int selected(const struct figure *f, const struct transport *t)
{
    if (opt.only == NULL)
        return 1;
    int any_fig = 0, any_tr = 0;
    for (size_t i = 0; i < NFIG; i++)
        any_fig |= listed(figures[i].name);
    for (int k = 0; k < K_COUNT; k++)
        any_tr |= listed(transports[k].name);
    return (!any_fig || listed(f->name)) && (!any_tr || listed(t->name));
}

static void record_rss(size_t fi, const struct run *r, const struct chan *c)
{
    struct rss_record *x = &rss_records[fi];
    x->have = 1;
    x->segment_kib = c->segment_bytes / 1024;
    for (int i = 0; i < 2; i++) {
        x->base[i] = sh->out[i].rss_base;
        x->at10[i] = sh->out[i].rss_10;
        x->at100[i] = sh->out[i].rss_end;
        x->peak[i] = (uint64_t)r->ru[i].ru_maxrss;
    }
}

static void keep_samples(struct accum *a)
{
    size_t n = sh->nsamples;
    if (a->n + n > a->cap) {
        a->cap = (a->n + n) * 2;
        a->s = realloc(a->s, a->cap * sizeof *a->s);
        if (a->s == NULL)
            die("out of memory");
    }
    memcpy(a->s + a->n, samples, n * sizeof *samples);
    a->n += n;
}

static void run_one(size_t fi, const struct transport *t)
{
    const struct figure *f = &figures[fi];
    struct result *res = &results[fi][t->kind];
    struct accum *a = &acc[t->kind];
    snprintf(ctx, sizeof ctx, "%s/%s", f->name, t->name);
    struct run r;
    memset(&r, 0, sizeof r);
    r.fig = f;
    r.t = t;
    chan_setup(&r.ab, t, f->len, f->slots, f->nconsumers);
    if (f->kind == FIG_RTT) {
        r.two_way = 1;
        chan_setup(&r.ba, t, f->len, f->slots, 1);
        run_children(&r, 2, t->kind == K_FLOOR ? floor_role : rtt_role);
        keep_samples(a);
    } else if (f->kind == FIG_TPUT) {
        run_children(&r, 1 + f->nconsumers, tput_role);
        check_totals(&r);
        uint64_t end = 0;
        for (int i = 1; i < r.nchildren; i++)
            if (sh->out[i].end_ns > end)
                end = sh->out[i].end_ns;
        if (a->ntput < MAX_REPS)
            a->tput[a->ntput++] = (double)sh->sent / ((double)(end - sh->start_ns) / 1e9);
        if (t->kind == K_SHM_COPY && f->nconsumers == 1)
            record_rss(fi, &r, &r.ab);
    } else {
        run_children(&r, 2, handover_role);
        keep_samples(a);
    }
    if (t->kind == K_PIPE)
        snprintf(res->note, sizeof res->note, "pipe buffer %ld bytes", r.ab.pipe_bytes);
    if (t->kind == K_MQ)
        snprintf(res->note, sizeof res->note, "mq_maxmsg %ld (fs.mqueue.msg_max)", r.ab.mq_maxmsg);
    if (a->nprobe < MAX_REPS)
        a->probe[a->nprobe++] = (double)sh->probe_ns;
    a->runs++;
    chan_teardown(&r.ab);
    if (r.two_way)
        chan_teardown(&r.ba);
    ctx[0] = '\0';
}

static void write_dist(const struct figure *f, const struct transport *t, const uint64_t *s,
                       size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rtt_%zu_%s.dat", opt.dist_dir, f->len, t->name);
    FILE *d = fopen(path, "w");
    if (d == NULL)
        die("%s: %s", path, strerror(errno));
    fprintf(d, "# %s, %zu-byte round trips (%zu): percentile 1/(1-p) ns\n", t->name, f->len, n);
    for (int k = 0; k < DIST_POINTS; k++) {
        double q = quantile_of(k);
        fprintf(d, "%.4f %.6g %llu\n", 100.0 * q, 1.0 / (1.0 - q),
                (unsigned long long)pct(s, n, q));
    }
    if (fclose(d) != 0)
        die("%s: %s", path, strerror(errno));
}

/* Turn the repetitions of one figure into its results. */
static void finish_figure(size_t fi)
{
    const struct figure *f = &figures[fi];
    for (int k = 0; k < K_COUNT; k++) {
        struct accum *a = &acc[k];
        struct result *res = &results[fi][k];
        if (a->runs == 0)
            continue;
        res->done = 1;
        qsort(a->probe, (size_t)a->nprobe, sizeof a->probe[0], cmp_double);
        res->probe_lo = a->probe[0];
        res->probe_hi = a->probe[a->nprobe - 1];
        if (f->kind == FIG_TPUT) {
            qsort(a->tput, (size_t)a->ntput, sizeof a->tput[0], cmp_double);
            double med = a->tput[a->ntput / 2];
            res->v[0] = med;
            res->v[1] = med * (double)f->len / 1e6;
            res->v[2] = (a->tput[a->ntput - 1] - a->tput[0]) / med;
            res->n = (uint64_t)a->ntput;
        } else {
            if (a->n == 0)
                die("%s/%s: no sample", f->name, transports[k].name);
            qsort(a->s, a->n, sizeof *a->s, cmp_u64);
            res->n = a->n;
            if (f->kind == FIG_RTT) {
                res->v[0] = (double)pct(a->s, a->n, 0.5);
                res->v[1] = (double)pct(a->s, a->n, 0.99);
                res->v[2] = (double)pct(a->s, a->n, 0.999);
                if (opt.dist_dir != NULL)
                    write_dist(f, &transports[k], a->s, a->n);
            } else {
                res->v[0] = (double)pct(a->s, a->n, 0.5);
                res->v[1] = (double)pct(a->s, a->n, 0.99);
                res->v[2] = (double)f->len / res->v[0] * 1e3; /* MB/s */
            }
        }
        free(a->s);
        memset(a, 0, sizeof *a);
    }
}

/* ---- Output ----------------------------------------------------------------- */

static void csv_row(const char *fig, const char *tr, const char *metric, double value, double ratio)
{
    if (csv == NULL)
        return;
    fprintf(csv, "%s,%s,%s,", fig, tr, metric);
    if (!isnan(value))
        fprintf(csv, "%.6g", value);
    fputc(',', csv);
    if (!isnan(ratio))
        fprintf(csv, "%.4g", ratio);
    fputc('\n', csv);
}

static double ratio_of(double v, const struct result *base, int i)
{
    return base->done && base->v[i] > 0 && v > 0 ? v / base->v[i] : NAN;
}

static void print_ratio(double x)
{
    if (isnan(x))
        printf(" %12s", "-");
    else
        printf(" %11.2fx", x);
}

/* The probe column: one value, or low/high when the placement changed. */
static void print_probe(const struct result *res)
{
    char b[32];
    if (res->probe_hi > 1.5 * res->probe_lo)
        snprintf(b, sizeof b, "%.0f/%.0f", res->probe_lo, res->probe_hi);
    else
        snprintf(b, sizeof b, "%.0f", res->probe_hi);
    printf(" %9s", b);
}

static void csv_probe(const char *fig, const char *tn, const struct result *res)
{
    csv_row(fig, tn, "line_rtt_min_ns", res->probe_lo, NAN);
    csv_row(fig, tn, "line_rtt_max_ns", res->probe_hi, NAN);
}

static void print_legend(void)
{
    printf("  (line rtt: cache-line round trip between the two CPUs measured just before each "
           "repetition, ns;\n"
           "   two values: min/max, the host moved the CPUs in between)\n");
}

static void print_notes(size_t fi)
{
    for (int k = 0; k < K_COUNT; k++) {
        const struct result *res = &results[fi][k];
        if (res->skipped) {
            printf("  %-15s skipped: %s\n", transports[k].name, res->note);
            csv_row(figures[fi].name, transports[k].name, "skipped", NAN, NAN);
        } else if (res->done && res->note[0] != '\0') {
            printf("  %-15s %s\n", transports[k].name, res->note);
        }
    }
}

static void print_rtt(size_t fi)
{
    const struct figure *f = &figures[fi];
    const struct result *base = &results[fi][K_SHM_COPY], *fl = &results[fi][K_FLOOR];
    printf("\n== %s: round trip of %zu-byte messages, ns (%u interleaved repetitions) ==\n",
           f->name, f->len, opt.reps);
    printf("%-16s %8s %9s %9s %9s %12s %12s %9s\n", "transport", "trips", "p50", "p99", "p99.9",
           "p50/shm-copy", "p50/floor", "line rtt");
    for (int k = 0; k < K_COUNT; k++) {
        const struct result *res = &results[fi][k];
        if (!res->done)
            continue;
        const char *tn = transports[k].name;
        double rf = ratio_of(res->v[0], fl, 0);
        printf("%-16s %8llu %9.0f %9.0f %9.0f", tn, (unsigned long long)res->n, res->v[0],
               res->v[1], res->v[2]);
        print_ratio(ratio_of(res->v[0], base, 0));
        print_ratio(rf);
        print_probe(res);
        printf("\n");
        static const char *const m[3] = {"p50_ns", "p99_ns", "p999_ns"};
        for (int i = 0; i < 3; i++)
            csv_row(f->name, tn, m[i], res->v[i], ratio_of(res->v[i], base, i));
        csv_row(f->name, tn, "p50_over_floor", rf, NAN);
        csv_row(f->name, tn, "round_trips", (double)res->n, NAN);
        csv_probe(f->name, tn, res);
    }
    print_legend();
    print_notes(fi);
}

static void print_rss(size_t fi)
{
    const struct rss_record *x = &rss_records[fi];
    if (!x->have)
        return;
    char fig[48];
    snprintf(fig, sizeof fig, "rss_%s", figures[fi].name);
    printf("RSS of the shm-copy processes (last repetition), KiB; segment %llu KiB:\n",
           (unsigned long long)x->segment_kib);
    printf("  %-9s %13s %9s %9s %9s %14s %14s\n", "role", "before attach", "at 10%", "at 100%",
           "peak", "100% - before", "100% - 10%");
    static const char *const who[2] = {"producer", "consumer"};
    for (int i = 0; i < 2; i++) {
        long long delta = (long long)x->at100[i] - (long long)x->base[i];
        long long growth = (long long)x->at100[i] - (long long)x->at10[i];
        printf("  %-9s %13llu %9llu %9llu %9llu %14lld %14lld\n", who[i],
               (unsigned long long)x->base[i], (unsigned long long)x->at10[i],
               (unsigned long long)x->at100[i], (unsigned long long)x->peak[i], delta, growth);
        char tn[32];
        snprintf(tn, sizeof tn, "shm-copy-%s", who[i]);
        csv_row(fig, tn, "segment_kib", (double)x->segment_kib, NAN);
        csv_row(fig, tn, "rss_before_attach_kib", (double)x->base[i], NAN);
        csv_row(fig, tn, "rss_at_10pct_kib", (double)x->at10[i], NAN);
        csv_row(fig, tn, "rss_at_100pct_kib", (double)x->at100[i], NAN);
        csv_row(fig, tn, "peak_rss_kib", (double)x->peak[i], NAN);
        csv_row(fig, tn, "rss_growth_10_to_100_kib", (double)growth, NAN);
    }
}

static void print_tput(size_t fi)
{
    const struct figure *f = &figures[fi];
    const struct result *base = &results[fi][K_SHM_COPY];
    printf("\n== %s: one-way throughput, %zu-byte messages, 1 producer -> %d consumer%s, median "
           "of %u x %.2f s ==\n",
           f->name, f->len, f->nconsumers, f->nconsumers > 1 ? "s" : "", opt.reps,
           (double)opt.tput_ns / 1e9);
    printf("%-16s %14s %11s %8s %12s %9s\n", "transport", "msg/s", "MB/s", "spread", "vs shm-copy",
           "line rtt");
    for (int k = 0; k < K_COUNT; k++) {
        const struct result *res = &results[fi][k];
        if (!res->done)
            continue;
        const char *tn = transports[k].name;
        double rb = ratio_of(res->v[0], base, 0);
        printf("%-16s %14.0f %11.1f %7.0f%%", tn, res->v[0], res->v[1], 100.0 * res->v[2]);
        print_ratio(rb);
        print_probe(res);
        printf("\n");
        csv_row(f->name, tn, "msgs_per_s", res->v[0], rb);
        csv_row(f->name, tn, "mb_per_s", res->v[1], rb);
        csv_row(f->name, tn, "spread", res->v[2], NAN);
        csv_probe(f->name, tn, res);
    }
    printf("  (spread: (max - min) / median of the repetitions)\n");
    print_legend();
    print_notes(fi);
    print_rss(fi);
}

static void print_handover(size_t fi)
{
    const struct figure *f = &figures[fi];
    const struct result *base = &results[fi][K_SHM_COPY], *zc = &results[fi][K_SHM_ZC],
                        *pp = &results[fi][K_PIPE];
    if (f->transport_only)
        printf("\n== %s: hand-over of a %zu KiB message, transport only (made before the clock, "
               "acked on receipt, every byte checked after) ==\n",
               f->name, f->len / 1024);
    else
        printf("\n== %s: hand-over of a %zu KiB message (writer fills it, reader checks every "
               "byte and acks) ==\n",
               f->name, f->len / 1024);
    printf("%-16s %8s %12s %12s %11s %12s %9s\n", "transport", "count", "median ns", "p99 ns",
           "MB/s", "vs shm-copy", "line rtt");
    for (int k = 0; k < K_COUNT; k++) {
        const struct result *res = &results[fi][k];
        if (!res->done)
            continue;
        const char *tn = transports[k].name;
        double rb = ratio_of(res->v[0], base, 0);
        printf("%-16s %8llu %12.0f %12.0f %11.1f", tn, (unsigned long long)res->n, res->v[0],
               res->v[1], res->v[2]);
        print_ratio(rb);
        print_probe(res);
        printf("\n");
        csv_row(f->name, tn, "median_ns", res->v[0], rb);
        csv_row(f->name, tn, "p99_ns", res->v[1], ratio_of(res->v[1], base, 1));
        csv_row(f->name, tn, "mb_per_s", res->v[2], ratio_of(res->v[2], base, 2));
        csv_probe(f->name, tn, res);
    }
    if (zc->done && pp->done) {
        double x = pp->v[0] / zc->v[0];
        printf("pipe / shm-zerocopy (median): %.2fx\n", x);
        csv_row(f->name, "pipe", "median_over_zerocopy", x, NAN);
    }
    print_legend();
    print_notes(fi);
}

/* ---- Setup ---------------------------------------------------------------- */

static void probe_mq(void)
{
    char name[64];
    snprintf(name, sizeof name, "/bench-ipc-%d-probe", (int)getpid());
    struct mq_attr a;
    memset(&a, 0, sizeof a);
    a.mq_maxmsg = 1;
    a.mq_msgsize = 8;
    mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
    if (q == (mqd_t)-1) {
        snprintf(mq_unusable, sizeof mq_unusable, "mq_open: %s%s", strerror(errno),
                 access("/dev/mqueue", F_OK) == 0 ? "" : " (/dev/mqueue not mounted)");
        return;
    }
    mq_close(q);
    mq_unlink(name);
}

/* Why the optional peers are skipped, if they are. */
static void probe_peers(void)
{
#if !defined(BENCH_HAVE_DPDK)
    snprintf(dpdk_unusable, sizeof dpdk_unusable,
             "built without DPDK (pkg-config libdpdk not found; make bench installs libdpdk-dev)");
#endif
#if defined(BENCH_HAVE_IOX)
    const char *v = getenv("BENCH_IOX_ROUDI");
    if (v == NULL || strcmp(v, "1") != 0)
        snprintf(iox_unusable, sizeof iox_unusable,
                 "iox-roudi not running (bench/run.sh starts it and sets BENCH_IOX_ROUDI=1)");
#else
    snprintf(iox_unusable, sizeof iox_unusable,
             "built without iceoryx (no iceoryx_binding_c; make bench installs "
             "libiceoryx-binding-c-dev)");
#endif
}

static void choose_cpus(void)
{
    cpu_set_t s;
    if (sched_getaffinity(0, sizeof s, &s) != 0)
        die("sched_getaffinity: %s", strerror(errno));
    int found = 0;
    for (int i = 0; i < CPU_SETSIZE && found < 2; i++)
        if (CPU_ISSET(i, &s)) {
            if (found == 0)
                cpu_a = i;
            else
                cpu_b = i;
            found++;
        }
    if (found < 2) {
        cpu_b = cpu_a;
        fprintf(stderr,
                "bench_ipc: only one CPU available: both sides share CPU %d, busy-polling "
                "figures are meaningless\n",
                cpu_a);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_ipc [--quick] [--only NAME[,NAME...]] [--csv FILE] [--dist-dir DIR]\n"
            "                 [--reps N] [--rtt-iters N] [--seconds S] [--handovers N]\n"
            "  --quick       short run (under 30 s)\n"
            "  --only        run only these figures or transports:\n"
            "                figures:");
    for (size_t i = 0; i < NFIG; i++)
        fprintf(out, " %s", figures[i].name);
    fprintf(out, "\n                transports:");
    for (int k = 0; k < K_COUNT; k++)
        fprintf(out, " %s", transports[k].name);
    fprintf(out, "\n  --csv         write rows figure,transport,metric,value,ratio (ratio: to "
                 "shm-copy)\n"
                 "  --dist-dir    write round-trip latency quantiles, rtt_<size>_<transport>.dat\n"
                 "  --reps        interleaved repetitions of each figure (default 3)\n"
                 "  --rtt-iters   round trips per transport, all repetitions (default 200000)\n"
                 "  --seconds     throughput run per repetition (default 0.4)\n"
                 "  --handovers   1 MiB hand-overs per transport, all repetitions (default 300)\n");
}

static void parse_options(int argc, char **argv)
{
    long long iters = -1, handovers = -1, reps = -1;
    double secs = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (v == NULL) {
            usage(stderr);
            exit(2);
        }
        i++;
        if (strcmp(a, "--only") == 0)
            opt.only = v;
        else if (strcmp(a, "--csv") == 0)
            opt.csv_path = v;
        else if (strcmp(a, "--dist-dir") == 0)
            opt.dist_dir = v;
        else if (strcmp(a, "--reps") == 0)
            reps = atoll(v);
        else if (strcmp(a, "--rtt-iters") == 0)
            iters = atoll(v);
        else if (strcmp(a, "--seconds") == 0)
            secs = atof(v);
        else if (strcmp(a, "--handovers") == 0)
            handovers = atoll(v);
        else {
            usage(stderr);
            exit(2);
        }
    }
    opt.reps = 3;
    opt.rtt_iters = opt.quick ? 15000 : 200000;
    opt.tput_ns = opt.quick ? NSEC / 12 : 2 * NSEC / 5;
    opt.handovers = opt.quick ? 45 : 300;
    if (reps > 0)
        opt.reps = reps > MAX_REPS ? MAX_REPS : (unsigned)reps;
    if (iters > 0)
        opt.rtt_iters = (uint64_t)iters;
    if (secs > 0)
        opt.tput_ns = (uint64_t)(secs * 1e9);
    if (handovers > 0)
        opt.handovers = (unsigned)handovers;
    if (opt.rtt_iters < opt.reps)
        opt.rtt_iters = opt.reps;
    if (opt.handovers < opt.reps)
        opt.handovers = opt.reps;
}

static void *shared_map(size_t bytes)
{
    void *p = mmap(NULL, round_up(bytes, 4096), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    return p;
}

static void print_load(const char *when)
{
    double l[3];
    if (getloadavg(l, 3) == 3)
        printf("load average %s: %.2f %.2f %.2f (other work on these CPUs shows as noise)\n", when,
               l[0], l[1], l[2]);
}

static void run_figure(size_t fi)
{
    const struct figure *f = &figures[fi];
    int any = 0;
    for (unsigned rep = 0; rep < opt.reps; rep++)
        for (int k = 0; k < K_COUNT; k++) {
            const struct transport *t = &transports[k];
            const char *why;
            int a = applies(f, t, &why);
            if (a == 0 || !selected(f, t))
                continue;
            struct result *res = &results[fi][k];
            if (a > 0 && t->kind == K_MQ && mq_unusable[0] != '\0') {
                a = -1;
                why = mq_unusable;
            }
            if (a > 0 && t->kind == K_DPDK && dpdk_unusable[0] != '\0') {
                a = -1;
                why = dpdk_unusable;
            }
            if (a > 0 && t->kind == K_IOX && iox_unusable[0] != '\0') {
                a = -1;
                why = iox_unusable;
            }
            if (a < 0) {
                res->skipped = 1;
                snprintf(res->note, sizeof res->note, "%s", why);
                continue;
            }
            run_one(fi, t);
            any = 1;
        }
    if (!any)
        return;
    finish_figure(fi);
    if (f->kind == FIG_RTT)
        print_rtt(fi);
    else if (f->kind == FIG_TPUT)
        print_tput(fi);
    else
        print_handover(fi);
    fflush(stdout);
    if (csv != NULL)
        fflush(csv);
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    sh = shared_map(sizeof *sh);
    uint64_t per_rtt = opt.rtt_iters / opt.reps, per_ho = opt.handovers / opt.reps;
    samples_cap = per_rtt > per_ho ? per_rtt : per_ho;
    samples = shared_map(samples_cap * sizeof *samples);
    choose_cpus();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, SIG_IGN);
    pipe_max_size = read_long("/proc/sys/fs/pipe-max-size", 1 << 20);
    probe_mq();
    probe_peers();
    if (opt.csv_path != NULL) {
        csv = fopen(opt.csv_path, "w");
        if (csv == NULL)
            die("%s: %s", opt.csv_path, strerror(errno));
        fprintf(csv, "figure,transport,metric,value,ratio\n");
    }

    printf("bench_ipc: shmring %s, %ld CPUs online, the two sides pinned to CPU %d and CPU %d%s\n",
           shmring_version(), sysconf(_SC_NPROCESSORS_ONLN), cpu_a, cpu_b,
           opt.quick ? ", quick run" : "");
    print_load("at start");
    printf("ratios: value / shm-copy's value in the same figure (latency: lower is better; "
           "throughput: higher is better)\n");
    printf("each figure runs its transports in turn, %u times over (interleaved repetitions)\n",
           opt.reps);
    printf("transports:\n");
    for (int k = 0; k < K_COUNT; k++)
        printf("  %-15s %s\n", transports[k].name, transports[k].what);
    printf("throughput: the producer on CPU %d, every consumer on CPU %d\n", cpu_a, cpu_b);

    uint64_t t0 = now_ns();
    for (size_t fi = 0; fi < NFIG; fi++)
        run_figure(fi);
    printf("\n");
    print_load("at end");
    printf("bench_ipc: done in %.1f s\n", (double)(now_ns() - t0) / 1e9);
    if (csv != NULL && fclose(csv) != 0)
        die("%s: %s", opt.csv_path, strerror(errno));
    return 0;
}
