/* Transfer-speed measurement: one payload handed to another process through a pipe and through
 * rings. */
#define _GNU_SOURCE
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

#define WAIT_NS      (60 * 1000000000LL) /* longest hand-over, and longest receiver wait */
#define SLICE_NS     (100 * 1000000LL)   /* the sender checks on its receiver this often */
#define REAP_NS      (10 * 1000000000LL) /* a receiver exiting after its last acknowledgement */
#define PATTERN_STEP 0x9e3779b97f4a7c15ull

unsigned shmring__transfer_corrupt;

/* The acknowledgement of one hand-over: which one, and the receiver's sum. */
struct ack {
    uint64_t iteration;
    uint64_t sum;
};

/* One measurement: its sizes, the sender's payload, the timed iterations. */
struct measure {
    size_t bytes;
    unsigned iterations; /* timed */
    unsigned total;      /* warm-up + timed */
    unsigned char *src;  /* what the pipe and copy paths send */
    uint64_t *times;     /* ns of each timed iteration */
    int cpu[2];          /* sender, receiver; -1: not pinned */
};

/*
 * What connects the sender to one receiver. Pipe path: data and ack pipes.
 * Shared paths: the data ring (the sender produces) and the ack ring (the
 * receiver produces); rx_* are the receiver's own handles.
 */
struct link {
    int data[2], ack[2];
    shmring_t *data_ring, *ack_ring;
    shmring_t *rx_data, *rx_ack;
    unsigned char *rbuf; /* the receiver's buffer (pipe and copy paths) */
    pid_t receiver;
};

/* One path: the receiver's loop (in the child) and one hand-over (in the sender). */
struct path {
    unsigned id; /* SHMRING__TRANSFER_* */
    int (*receive)(struct link *l, const struct measure *m);
    int (*send)(struct link *l, const struct measure *m, unsigned k, struct ack *ack);
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- Payload ------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Each iteration sends different bytes, so a stale payload cannot pass. */
static uint64_t seed_of(unsigned iteration)
{
    return mix(iteration + 0x7472616e73666572ull);
}

/* Word i is seed + i * PATTERN_STEP; a tail shorter than a word holds the
 * first bytes of the next word. Cheap to write, as a producer's data would be. */
static void payload_fill(unsigned char *p, size_t len, uint64_t seed)
{
    size_t words = len / 8;
    uint64_t w = seed;
    for (size_t i = 0; i < words; i++, w += PATTERN_STEP)
        memcpy(p + 8 * i, &w, 8);
    memcpy(p + 8 * words, &w, len % 8);
}

/* The checksum: 64-bit sum of the 8-byte words, the tail zero-padded. */
static uint64_t payload_sum(const unsigned char *p, size_t len)
{
    size_t words = len / 8;
    uint64_t sum = 0, tail = 0;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        sum += w;
    }
    memcpy(&tail, p + 8 * words, len % 8);
    return sum + tail;
}

/* payload_sum of what payload_fill writes, computed without the bytes. */
static uint64_t expected_sum(size_t len, uint64_t seed)
{
    uint64_t words = len / 8;
    /* words * (words - 1) / 2 without overflow: halve the even factor. */
    uint64_t pairs = words % 2 == 0 ? (words / 2) * (words - 1) : words * ((words - 1) / 2);
    uint64_t tail_word = seed + words * PATTERN_STEP, tail = 0;
    memcpy(&tail, &tail_word, len % 8);
    return words * seed + pairs * PATTERN_STEP + tail;
}

/* The sum a receiver reports; with the test hook set for its path, as if
 * the byte at len / 2 had arrived with its lowest bit flipped. */
static uint64_t received_sum(const unsigned char *p, size_t len, unsigned path)
{
    uint64_t sum = payload_sum(p, len);
    if (!(shmring__transfer_corrupt & path))
        return sum;
    size_t at = len / 2, word = at - at % 8;
    size_t n = len - word < 8 ? len - word : 8;
    unsigned char b[8] = {0};
    uint64_t before, after;
    memcpy(b, p + word, n);
    memcpy(&before, b, 8);
    b[at - word] ^= 1;
    memcpy(&after, b, 8);
    return sum - before + after;
}

/* ---- Processes and CPUs ------------------------------------------------- */

/* The first two CPUs the calling thread may run on, if there are two. */
static void choose_cpus(int cpu[2], const cpu_set_t *allowed)
{
    int n = 0;
    cpu[0] = cpu[1] = -1;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, allowed))
            cpu[n++] = c;
    if (n < 2)
        cpu[0] = cpu[1] = -1;
}

/* Run the calling thread on one CPU; a failure only leaves it unpinned. */
static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

/* 1 while the receiver has not exited (it is not reaped here). */
static int receiver_running(pid_t pid)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD ? kill(pid, 0) == 0
                               : 1; /* ECHILD: reaped for us (SIGCHLD ignored) */
    return info.si_pid == 0;
}

/* Reap the receiver, killing it first if rc < 0 or it outlives REAP_NS.
 * Returns rc, or -EPIPE if the receiver did not end with status 0. */
static int reap(pid_t pid, int rc)
{
    if (rc < 0)
        kill(pid, SIGKILL);
    uint64_t deadline = now_ns() + REAP_NS;
    int status = 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR))
            break;
        if (got == 0 && now_ns() > deadline) {
            kill(pid, SIGKILL);
            deadline = UINT64_MAX;
            rc = rc < 0 ? rc : -ETIMEDOUT;
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rc = -EPIPE;
    return rc;
}

/* ---- Message passing: pipes --------------------------------------------- */

/* Make the pipe hold `want` bytes, or as much as this process may have. */
static void pipe_enlarge(int fd, size_t want)
{
    size_t size = 1u << 30;
    FILE *f = fopen("/proc/sys/fs/pipe-max-size", "re");
    if (f != NULL) {
        unsigned long max;
        if (fscanf(f, "%lu", &max) == 1 && max > 0)
            size = max;
        fclose(f);
    }
    while (size / 2 >= want && size > 65536)
        size /= 2;
    for (; size > 65536; size /= 2)
        if (fcntl(fd, F_SETPIPE_SZ, (int)size) >= 0)
            return;
}

/* Wait until fd is ready for `events`, or the deadline passes. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        uint64_t ms = (deadline - now) / 1000000 + 1;
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, ms > 1000 ? 1000 : (int)ms);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* The sender's write of a whole payload into its non-blocking pipe end. */
static int write_all(int fd, const unsigned char *p, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EPIPE)
            return -EPIPE;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = wait_fd(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A blocking read of exactly len bytes; -EPIPE at end of file. */
static int read_all(int fd, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n == 0)
            return -EPIPE;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pipe_receive(struct link *l, const struct measure *m)
{
    close(l->data[1]);
    close(l->ack[0]);
    l->rbuf = malloc(m->bytes);
    if (l->rbuf == NULL)
        return -ENOMEM;
    for (unsigned k = 0; k < m->total; k++) {
        int rc = read_all(l->data[0], l->rbuf, m->bytes);
        if (rc < 0)
            return rc;
        struct ack a = {k, received_sum(l->rbuf, m->bytes, SHMRING__TRANSFER_PIPE)};
        if (write(l->ack[1], &a, sizeof a) != (ssize_t)sizeof a)
            return -EPIPE;
    }
    return 0;
}

static int pipe_send(struct link *l, const struct measure *m, unsigned k, struct ack *ack)
{
    uint64_t deadline = now_ns() + WAIT_NS;
    int rc = write_all(l->data[1], m->src, m->bytes, deadline);
    if (rc == 0)
        rc = wait_fd(l->ack[0], POLLIN, deadline);
    if (rc == 0)
        rc = read_all(l->ack[0], ack, sizeof *ack);
    return rc;
}

static void pipes_close(struct link *l)
{
    for (int i = 0; i < 2; i++) {
        if (l->data[i] >= 0)
            close(l->data[i]);
        if (l->ack[i] >= 0)
            close(l->ack[i]);
        l->data[i] = l->ack[i] = -1;
    }
}

static int pipes_open(struct link *l, size_t bytes)
{
    if (pipe2(l->data, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(l->ack, O_CLOEXEC) != 0) {
        int rc = -errno;
        pipes_close(l);
        return rc;
    }
    pipe_enlarge(l->data[1], bytes);
    /* Only the sender's end: the receiver blocks in read(), as usual. */
    if (fcntl(l->data[1], F_SETFL, O_NONBLOCK) != 0) {
        int rc = -errno;
        pipes_close(l);
        return rc;
    }
    return 0;
}

/* ---- Shared memory: rings ----------------------------------------------- */

/*
 * An anonymous ring on the memfd backend, with `flags` roles. -ENOTSUP
 * when processes cannot share it: memfd unavailable, or the heap backend
 * forced (which wins over SHMRING_FORCE_MEMFD).
 */
static int ring_create(uint32_t slot_size, uint32_t flags, shmring_t **out)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 2, .slot_size = slot_size,
                            .flags = flags | SHMRING_FORCE_MEMFD | SHMRING_NO_FALLBACK, );
    int rc = shmring_create(NULL, &cfg, out);
    if (rc == -ENOSYS || rc == -EPERM || rc == -EOPNOTSUPP || rc == -EACCES)
        return -ENOTSUP;
    if (rc == 0 && shmring_backend(*out) != SHMRING_BACKEND_MEMFD) {
        shmring_close(*out);
        *out = NULL;
        return -ENOTSUP;
    }
    return rc;
}

/* In the receiver: its own consumer handle of the data ring and producer
 * handle of the ack ring. */
static int rings_attach(struct link *l)
{
    int rc = shmring_open_fd(shmring_fd(l->data_ring), SHMRING_CONSUMER, &l->rx_data);
    if (rc == 0)
        rc = shmring_open_fd(shmring_fd(l->ack_ring), SHMRING_PRODUCER, &l->rx_ack);
    return rc;
}

static int ack_send(struct link *l, unsigned k, uint64_t sum)
{
    struct ack a = {k, sum};
    return shmring_push_wait(l->rx_ack, &a, sizeof a, WAIT_NS);
}

/*
 * The sender's wait for an acknowledgement, in slices so that a receiver
 * that died before taking the ack ring's producer role is noticed.
 */
static int ack_wait(struct link *l, struct ack *ack, uint64_t deadline)
{
    for (;;) {
        ssize_t n = shmring_pop_wait(l->ack_ring, ack, sizeof *ack, SLICE_NS);
        if (n == (ssize_t)sizeof *ack)
            return 0;
        if (n >= 0)
            return -EPROTO;
        if (n != -ETIMEDOUT)
            return (int)n;
        if (!receiver_running(l->receiver))
            return -EPIPE;
        if (now_ns() >= deadline)
            return -ETIMEDOUT;
    }
}

static int copy_receive(struct link *l, const struct measure *m)
{
    int rc = rings_attach(l);
    l->rbuf = malloc(m->bytes);
    if (rc == 0 && l->rbuf == NULL)
        rc = -ENOMEM;
    for (unsigned k = 0; rc == 0 && k < m->total; k++) {
        ssize_t n = shmring_pop_wait(l->rx_data, l->rbuf, m->bytes, WAIT_NS);
        if (n != (ssize_t)m->bytes) {
            rc = n < 0 ? (int)n : -EPROTO;
            break;
        }
        rc = ack_send(l, k, received_sum(l->rbuf, m->bytes, SHMRING__TRANSFER_COPY));
    }
    shmring_close(l->rx_ack);
    shmring_close(l->rx_data);
    return rc;
}

static int copy_send(struct link *l, const struct measure *m, unsigned k, struct ack *ack)
{
    uint64_t deadline = now_ns() + WAIT_NS;
    int rc = shmring_push_wait(l->data_ring, m->src, m->bytes, WAIT_NS);
    if (rc == 0)
        rc = ack_wait(l, ack, deadline);
    return rc;
}

static int zero_copy_receive(struct link *l, const struct measure *m)
{
    int rc = rings_attach(l);
    for (unsigned k = 0; rc == 0 && k < m->total; k++) {
        shmring_msg_t msg;
        rc = shmring_claim_wait(l->rx_data, &msg, WAIT_NS);
        if (rc < 0)
            break;
        uint64_t sum =
            msg.len == m->bytes ? received_sum(msg.data, msg.len, SHMRING__TRANSFER_ZERO_COPY) : 0;
        int released = shmring_release(l->rx_data, &msg);
        rc = msg.len != m->bytes || released < 0 ? -EPROTO : ack_send(l, k, sum);
    }
    shmring_close(l->rx_ack);
    shmring_close(l->rx_data);
    return rc;
}

/* The producer writes the payload in place: the write the copy replaces. */
static int zero_copy_send(struct link *l, const struct measure *m, unsigned k, struct ack *ack)
{
    uint64_t deadline = now_ns() + WAIT_NS;
    void *slot;
    int rc = shmring_reserve_wait(l->data_ring, m->bytes, &slot, WAIT_NS);
    if (rc < 0)
        return rc;
    payload_fill(slot, m->bytes, seed_of(k));
    rc = shmring_commit(l->data_ring, m->bytes);
    if (rc == 0)
        rc = ack_wait(l, ack, deadline);
    return rc;
}

/* ---- One path ----------------------------------------------------------- */

static const struct path pipe_path = {SHMRING__TRANSFER_PIPE, pipe_receive, pipe_send};
static const struct path copy_path = {SHMRING__TRANSFER_COPY, copy_receive, copy_send};
static const struct path zero_copy_path = {SHMRING__TRANSFER_ZERO_COPY, zero_copy_receive,
                                           zero_copy_send};

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double median(uint64_t *t, unsigned n)
{
    qsort(t, n, sizeof t[0], compare_u64);
    if (n % 2 == 1)
        return (double)t[n / 2];
    return ((double)t[n / 2 - 1] + (double)t[n / 2]) / 2;
}

/* One hand-over, timed from its start to the receipt of its acknowledgement. */
static int hand_over(struct measure *m, const struct path *p, struct link *l, unsigned k)
{
    uint64_t seed = seed_of(k);
    if (p->id != SHMRING__TRANSFER_ZERO_COPY)
        payload_fill(m->src, m->bytes, seed);
    struct ack ack;
    uint64_t start = now_ns();
    int rc = p->send(l, m, k, &ack);
    uint64_t end = now_ns();
    if (rc < 0)
        return rc;
    if (ack.iteration != k || ack.sum != expected_sum(m->bytes, seed))
        return -EIO;
    if (k >= m->total - m->iterations)
        m->times[k - (m->total - m->iterations)] = end - start;
    return 0;
}

/* Fork a receiver for path p, hand the payload over m->total times, and
 * store the median of the timed hand-overs in *result. */
static int run_path(struct measure *m, const struct path *p, struct link *l, double *result)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        pin(m->cpu[1]);
        _exit(p->receive(l, m) == 0 ? 0 : 1);
    }
    l->receiver = pid;
    if (p->id == SHMRING__TRANSFER_PIPE) {
        close(l->data[0]);
        close(l->ack[1]);
        l->data[0] = l->ack[1] = -1;
    }
    int rc = 0;
    for (unsigned k = 0; rc == 0 && k < m->total; k++)
        rc = hand_over(m, p, l, k);
    rc = reap(pid, rc);
    if (rc == 0)
        *result = median(m->times, m->iterations);
    return rc;
}

static int measure_pipe(struct measure *m, double *result)
{
    struct link l = {.data = {-1, -1}, .ack = {-1, -1}};
    int rc = pipes_open(&l, m->bytes);
    if (rc == 0)
        rc = run_path(m, &pipe_path, &l, result);
    pipes_close(&l);
    return rc;
}

/* A shared path over the data ring, with a fresh ack ring of its own. */
static int measure_shared(struct measure *m, const struct path *p, shmring_t *data, double *result)
{
    struct link l = {.data = {-1, -1}, .ack = {-1, -1}, .data_ring = data};
    int rc = ring_create(sizeof(struct ack), SHMRING_CONSUMER, &l.ack_ring);
    if (rc == 0)
        rc = run_path(m, p, &l, result);
    shmring_close(l.ack_ring);
    return rc;
}

/* ---- The measurement ---------------------------------------------------- */

static int measure_all(struct measure *m, shmring_transfer_report_t *r)
{
    shmring_t *data = NULL;
    /* The ring first: without shared memory nothing is measured. */
    int rc = ring_create((uint32_t)m->bytes, SHMRING_PRODUCER, &data);
    if (rc == 0)
        rc = measure_pipe(m, &r->message_passing_ns);
    if (rc == 0)
        rc = measure_shared(m, &copy_path, data, &r->shared_copy_ns);
    if (rc == 0)
        rc = measure_shared(m, &zero_copy_path, data, &r->shared_zero_copy_ns);
    shmring_close(data);
    return rc;
}

/*
 * Pin the sender, block SIGPIPE (a receiver that dies makes the sender's
 * write fail with EPIPE instead), measure, and put the thread back as it
 * was, discarding a SIGPIPE the measurement raised.
 */
static int measure_pinned(struct measure *m, shmring_transfer_report_t *r)
{
    cpu_set_t saved;
    int have_saved = sched_getaffinity(0, sizeof saved, &saved) == 0;
    if (have_saved)
        choose_cpus(m->cpu, &saved);
    sigset_t pipe_set, old_mask, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);

    pin(m->cpu[0]);
    int rc = measure_all(m, r);
    if (have_saved)
        (void)sched_setaffinity(0, sizeof saved, &saved);

    sigemptyset(&pending);
    if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return rc;
}

SHMRING_API int shmring_measure_transfer(size_t bytes, unsigned iterations,
                                         shmring_transfer_report_t *out)
{
    if (out == NULL || bytes == 0 || bytes > SHMRING_TRANSFER_MAX_BYTES || iterations == 0 ||
        iterations > SHMRING_TRANSFER_MAX_ITERATIONS)
        return -EINVAL;
    struct measure m = {
        .bytes = bytes,
        .iterations = iterations,
        .total = iterations + SHMRING_TRANSFER_WARMUP,
        .cpu = {-1, -1},
    };
    m.src = malloc(bytes);
    m.times = malloc(iterations * sizeof m.times[0]);
    shmring_transfer_report_t r = {.bytes = bytes, .iterations = iterations};
    int rc = m.src != NULL && m.times != NULL ? measure_pinned(&m, &r) : -ENOMEM;
    free(m.src);
    free(m.times);
    if (rc < 0)
        return rc;
    double best =
        r.shared_copy_ns < r.shared_zero_copy_ns ? r.shared_copy_ns : r.shared_zero_copy_ns;
    r.improvement = r.message_passing_ns / best;
    *out = r;
    return 0;
}

/* ---- The table ---------------------------------------------------------- */

struct text {
    char *buf;
    size_t cap, len;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->len < t->cap ? t->cap - t->len : 0;
    int n = vsnprintf(room > 0 ? t->buf + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}

static void size_text(size_t bytes, char *buf, size_t cap)
{
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
        snprintf(buf, cap, "%zu MiB", bytes >> 20);
    else if (bytes >= 1024 && bytes % 1024 == 0)
        snprintf(buf, cap, "%zu KiB", bytes >> 10);
    else
        snprintf(buf, cap, "%zu bytes", bytes);
}

static void row_add(struct text *t, const char *name, double ns, size_t bytes)
{
    /* bytes per nanosecond are GB/s (10^9 bytes per second) */
    text_add(t, "  %-26s %12.2f %10.2f\n", name, ns / 1000, ns > 0 ? (double)bytes / ns : 0.0);
}

SHMRING_API int shmring_transfer_format(const shmring_transfer_report_t *r, char *buf, size_t cap)
{
    if (r == NULL || (buf == NULL && cap > 0))
        return -EINVAL;
    struct text t = {buf, cap, 0};
    char size[64];
    size_text(r->bytes, size, sizeof size);
    if (cap > 0)
        buf[0] = '\0';
    text_add(&t, "transfer of %s (%zu bytes) to another process, median of %u\n", size, r->bytes,
             r->iterations);
    /* "µs" is two bytes in UTF-8 and one column wide */
    text_add(&t, "  %-26s %13s %10s\n", "path", "median µs", "GB/s");
    row_add(&t, "message passing (pipe)", r->message_passing_ns, r->bytes);
    row_add(&t, "shared memory, copy", r->shared_copy_ns, r->bytes);
    row_add(&t, "shared memory, zero-copy", r->shared_zero_copy_ns, r->bytes);
    text_add(&t, "  improvement: %.2fx (message passing / fastest shared path)\n", r->improvement);
    return t.len > INT32_MAX ? INT32_MAX : (int)t.len;
}
