/*
 * The worker pool: a task function mapped over an array of items by worker
 * processes (shared-memory arena or message passing) or threads.
 *
 * Shared-memory mode, memory-ordering edges (labels used below):
 *
 *   P1  parent: round parameters, arena items and QUEUED chunk states are
 *       stored, then the tokens are pushed (the ring publishes with a
 *       release store of write_index). Pairs with T1.
 *   T1  worker: shmring_pop_wait (acquire on the slot sequence), then the
 *       CAS QUEUED -> OWNED (seq_cst). After a successful CAS the round
 *       parameters and items of that generation are visible.
 *   T2  worker: results and the chunk error are stored, then the chunk
 *       state DONE / DONE_ERR / CANCELLED with release. Pairs with P2.
 *   P2  parent: chunk state load, acquire; the results of a DONE chunk are
 *       then visible.
 *   E1  worker: shmring__ec_notify(done_ec) after T2; parent: ec_prepare,
 *       scan, ec_sleep (wait.h: no lost wake-up). The parent also wakes
 *       every 10 ms to look for dead workers.
 *
 * Completion: one ring has one producer, so results do not come back
 * through a ring. Each worker marks its chunk done in the chunk table (one
 * word per chunk, which also says who owns a chunk, for recovery when its
 * owner dies) and bumps an eventcount that the parent sleeps on. That costs
 * a worker one release store and, only while the parent sleeps, one
 * FUTEX_WAKE per chunk; the parent scans at most POOL_MAX_CHUNKS words per
 * wake-up.
 *
 * Tokens may be duplicated (the parent re-pushes every chunk that is not
 * owned by a live worker when a worker dies, because a worker can die after
 * popping a token and before claiming its chunk) and may outlive their
 * round: the CAS on the chunk state with the token's generation lets
 * exactly one claim succeed, and none once the round has ended.
 *
 * Everything a worker reads from the shared control area is checked against
 * the sizes it knows from before the fork before it addresses the arena.
 *
 * The parent trusts nothing there either (a task may write over the whole
 * mapping): it decides with its private copy of the round (p->round), and
 * checks every chunk state, error and done count it reads back, and that
 * the round parameters are still its own. Anything else is -EPROTO: every
 * worker is killed and restarted, and the map fails.
 *
 * The arena is cut into blocks by a first-fit allocator whose bookkeeping
 * lives in the parent's private memory (p->blk): shmring_pool_alloc blocks,
 * and the staging block of a map that copies its items or results.
 */
#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "atomic.h"
#include "config.h"
#include "fault.h"
#include "wait.h"

#define RING_SLOTS     1024u
#define WATCH_NS       10000000ull  /* parent: look for dead workers this often */
#define WORKER_IDLE_NS 1000000000ll /* worker: check its parent this often */
#define STOP_GRACE_NS  100000000ull /* destroy: wait this long before SIGKILL */
#define KILL_TABLE     64u          /* items blamed for deaths, per map */
#define MP_MAGIC       0x4c4f4f50u  /* "POOL" */
#define MP_MAX_BYTES   (1ull << 40) /* largest chunk message accepted */
#define MAX_ARENA      (1ull << 40)
#define ARENA_ALIGN    64u
#define STALL_NS       100000000ull /* parent: re-push queued chunks after no progress */
#define POPULATE_MAX   (1ull << 30) /* arenas up to this are mapped in at creation */
#define POOL_FLAGS                                                                                 \
    (SHMRING_POOL_PROCESSES | SHMRING_POOL_THREADS | SHMRING_POOL_MESSAGE_PASSING |                \
     SHMRING_FORCE_HEAP)

struct kill_count {
    size_t item;
    unsigned kills;
};

/* Bookkeeping of one map call (process modes). */
struct map_run {
    size_t error_item; /* lowest failing item seen, or SIZE_MAX */
    int task_rc;       /* its error */
    int crash_rc;      /* -ECHILD / -EAGAIN / -EPROTO, or 0 */
    unsigned barren;   /* deaths since the last finished chunk */
    unsigned nkill;
    struct kill_count kill[KILL_TABLE];
};

struct mp_chunk {
    size_t start, count;
};

/* One round of a map, as the parent decides it (private; the shared
 * control page gets a copy for the workers). */
struct pool_round {
    uint32_t kind; /* POOL_KIND_ITEMS or POOL_KIND_RANGES */
    uint32_t nchunks;
    size_t n, item_size, result_size, chunk_items;
    size_t items_off, results_off; /* from the arena's start */
    shmring_range_fn range_fn;
    void *range_ctx;
};

/* A block of the arena (shared mode: off from the arena's start) or of the
 * heap (other modes: off is the address). */
struct pool_block {
    size_t off, len;
    int used;
};

struct thread_pool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_t tid[SHMRING_POOL_MAX_WORKERS];
    unsigned started;
    int stop;
    uint64_t job_gen;
    /* the job of job_gen: written under mu */
    const unsigned char *items;
    unsigned char *results;
    size_t n, item_size, result_size, chunk_items, nchunks;
    shmring_range_fn range_fn; /* non-NULL: a range job */
    void *range_ctx;
    unsigned finished;
    size_t err_item;
    int err_rc;
    /* atomics */
    uint64_t next_chunk;
    uint32_t abort;
};

struct shmring_pool {
    int mode;
    unsigned nworkers;
    shmring_task_fn fn;
    void *ctx;
    pid_t owner;
    size_t last_error_item;
    uint64_t restarts; /* atomic: read by shmring_pool_restarts from any thread */
    uint32_t pid[SHMRING_POOL_MAX_WORKERS]; /* atomic: read by shmring_pool_pids */
    int pidfd[SHMRING_POOL_MAX_WORKERS];    /* the worker process itself, or -1 */
    /* shared-memory mode */
    shmring_t *ring;
    struct shmring__pool_ctl *ctl;
    unsigned char *arena;
    size_t arena_size, map_len;
    uint32_t gen;
    struct pool_round round; /* the round running now: what the parent decides with */
    uint32_t pend[POOL_MAX_CHUNKS];
    unsigned char queued[POOL_MAX_CHUNKS];
    unsigned char final[POOL_MAX_CHUNKS]; /* chunk seen DONE/DONE_ERR/CANCELLED */
    unsigned npend;
    /* blocks of shmring_pool_alloc (and staging), sorted by off */
    struct pool_block *blk;
    size_t nblk, blkcap;
    int range_logged;
    /* message passing */
    int sock[SHMRING_POOL_MAX_WORKERS];
    struct mp_chunk busy[SHMRING_POOL_MAX_WORKERS];
    unsigned char has_busy[SHMRING_POOL_MAX_WORKERS];
    /* threads */
    struct thread_pool *tp;
};

/* ---- Small helpers ------------------------------------------------------ */

static int task_error(int rc)
{
    return (rc < 0 && rc >= -4095) ? rc : -EINVAL;
}

static pid_t worker_pid(const shmring_pool_t *p, unsigned w)
{
    /* Relaxed: only the pool's thread writes it; other threads want a recent value. */
    return (pid_t)shmring__load_relaxed_32((uint32_t *)&p->pid[w]);
}

/*
 * A pid names a process only until it is reaped; whoever reaps our worker
 * (an application calling waitpid(-1), a SIGCHLD set to SIG_IGN) frees the
 * pid for reuse. So each worker is also held by a pidfd, opened right after
 * fork() while the child cannot have been reaped: signals and waits go
 * through it and can never reach another process. Without pidfds (Linux
 * before 5.3), the pid with waitid(WNOWAIT) checks (kill_worker()).
 */
static void set_worker_pid(shmring_pool_t *p, unsigned w, pid_t pid)
{
    if (p->pidfd[w] >= 0)
        close(p->pidfd[w]);
    p->pidfd[w] = -1;
#ifdef SYS_pidfd_open
    if (pid > 0)
        p->pidfd[w] = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    /* Relaxed: see worker_pid(). */
    shmring__store_relaxed_32(&p->pid[w], (uint32_t)pid);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

/* Full read or write of a stream socket; 0, or -1 on EOF or error. */
static int read_full(int fd, void *buf, size_t len)
{
    unsigned char *b = buf;
    while (len > 0) {
        ssize_t r = recv(fd, b, len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        len -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const unsigned char *b = buf;
    while (len > 0) {
        /* MSG_NOSIGNAL: a dead peer gives EPIPE, not SIGPIPE. */
        ssize_t r = send(fd, b, len, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        len -= (size_t)r;
    }
    return 0;
}

/* 1 if worker w has ended (and is now reaped). A SIGCHLD set to SIG_IGN,
 * or an application reaping every child, reaps it first: ECHILD. */
static int reaped(shmring_pool_t *p, unsigned w)
{
    if (p->pidfd[w] >= 0) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int rc = waitid(P_PIDFD, (id_t)p->pidfd[w], &si, WEXITED | WNOHANG);
        return (rc == 0 && si.si_pid != 0) || (rc < 0 && errno == ECHILD);
    }
    pid_t pid = worker_pid(p, w);
    pid_t r = waitpid(pid, NULL, WNOHANG);
    return r == pid || (r < 0 && errno == ECHILD);
}

/* ---- Worker processes: shared-memory mode ------------------------------- */

/* Round parameters as a worker reads them, checked against the arena. */
struct round_view {
    uint32_t gen, kind, nchunks;
    size_t n, item_size, result_size, chunk_items, items_off, results_off;
    shmring_range_fn range_fn;
    void *range_ctx;
};

/* 1 if n elements of `size` bytes from `off` lie within a arena bytes. */
static int fits(size_t off, size_t n, size_t size, size_t a)
{
    return off <= a && (size == 0 || n <= (a - off) / size);
}

static int read_round(const shmring_pool_t *p, struct round_view *v)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    /* Relaxed: published by P1, acquired by T1 (the claim). Untrusted below. */
    v->gen = shmring__load_relaxed_32(&ctl->gen);
    v->kind = shmring__load_relaxed_32(&ctl->kind);
    v->nchunks = shmring__load_relaxed_32(&ctl->nchunks);
    v->n = shmring__load_relaxed_64(&ctl->n);
    v->item_size = shmring__load_relaxed_64(&ctl->item_size);
    v->result_size = shmring__load_relaxed_64(&ctl->result_size);
    v->chunk_items = shmring__load_relaxed_64(&ctl->chunk_items);
    v->items_off = shmring__load_relaxed_64(&ctl->items_off);
    v->results_off = shmring__load_relaxed_64(&ctl->results_off);
    v->range_fn = (shmring_range_fn)(uintptr_t)shmring__load_relaxed_64(&ctl->range_fn);
    v->range_ctx = (void *)(uintptr_t)shmring__load_relaxed_64(&ctl->range_ctx);
    if (v->nchunks == 0 || v->nchunks > POOL_MAX_CHUNKS || v->chunk_items == 0)
        return -EPROTO;
    if (v->kind == POOL_KIND_RANGES)
        return v->range_fn != NULL ? 0 : -EPROTO;
    size_t a = p->arena_size;
    if (v->kind != POOL_KIND_ITEMS || v->item_size == 0 ||
        !fits(v->items_off, v->n, v->item_size, a) ||
        !fits(v->results_off, v->n, v->result_size, a))
        return -EPROTO;
    return 0;
}

/* Indices [*start, *end) of chunk c, or -EPROTO if the round has no chunk c. */
static int chunk_bounds(size_t n, size_t chunk_items, uint32_t nchunks, uint32_t c, size_t *start,
                        size_t *end)
{
    if (c >= nchunks || chunk_items > n || c > (n - 1) / chunk_items)
        return -EPROTO;
    *start = (size_t)c * chunk_items;
    *end = n - *start < chunk_items ? n : *start + chunk_items;
    return 0;
}

/* The task over items [start, end) of the round: DONE, DONE_ERR or CANCELLED.
 * The loop is the per-item cost of a map: everything it needs is in locals
 * (the atomics below are compiler barriers), and the abort hint is looked
 * at every 16 items. */
static uint32_t run_items(shmring_pool_t *p, const struct round_view *v, size_t start, size_t end,
                          uint64_t *cur, uint64_t *err)
{
    uint32_t *abort_gen = &p->ctl->abort_gen, gen = v->gen;
    shmring_task_fn fn = p->fn;
    void *ctx = p->ctx;
    size_t isz = v->item_size, rsz = v->result_size;
    const unsigned char *item = p->arena + v->items_off + start * isz;
    unsigned char *res = rsz ? p->arena + v->results_off + start * rsz : NULL;
    for (size_t i = start; i < end; i++, item += isz) {
        /* Relaxed: a hint to stop early; the parent waits for our T2. */
        if ((i & 15) == 0 && shmring__load_relaxed_32(abort_gen) == gen)
            return POOL_CANCELLED;
        /* Relaxed: read by the parent only after this process died. */
        shmring__store_relaxed_64(cur, i);
        SHMRING_FAULT(POOL_ITEM);
        int rc = fn(item, isz, res, rsz, ctx);
        if (rc != 0) {
            *err = (uint64_t)i << 12 | (uint64_t)(-task_error(rc));
            /* Relaxed: see the load above. */
            shmring__store_relaxed_32(abort_gen, gen);
            return POOL_DONE_ERR;
        }
        if (res != NULL)
            res += rsz;
    }
    return POOL_DONE;
}

/* The range task over chunk c = [start, end): DONE, DONE_ERR or CANCELLED. */
static uint32_t run_range(shmring_pool_t *p, const struct round_view *v, uint32_t c, size_t start,
                          size_t end, uint64_t *cur, uint64_t *err)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    /* Relaxed: as in run_items(). */
    if (shmring__load_relaxed_32(&ctl->abort_gen) == v->gen)
        return POOL_CANCELLED;
    shmring__store_relaxed_64(cur, start);
    SHMRING_FAULT(POOL_ITEM);
    int rc = v->range_fn(start, end, c, v->range_ctx);
    if (rc != 0) {
        *err = (uint64_t)start << 12 | (uint64_t)(-task_error(rc));
        shmring__store_relaxed_32(&ctl->abort_gen, v->gen);
        return POOL_DONE_ERR;
    }
    return POOL_DONE;
}

/* Run chunk c of round gen if this worker wins its claim. */
static void run_chunk_shared(shmring_pool_t *p, unsigned w, uint32_t gen, uint32_t c)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    if (c >= POOL_MAX_CHUNKS)
        return;
    uint64_t *cur = &ctl->worker[w].cur_item;
    /* Relaxed: read by the parent only after this process died. */
    shmring__store_relaxed_64(cur, POOL_NO_ITEM);
    uint64_t expect = POOL_STATE(gen, POOL_QUEUED);
    /* T1: CAS, seq_cst; pairs with P1 (through the ring) and with the
     * parent's cancelling CAS. */
    if (!shmring__cas_64(&ctl->chunk_state[c], &expect, POOL_STATE(gen, POOL_OWNED(w))))
        return;
    SHMRING_FAULT(POOL_CLAIM);
    struct round_view v;
    size_t start = 0, end = 0;
    uint32_t st = POOL_BROKEN;
    uint64_t err = 0, done = 0;
    if (read_round(p, &v) == 0 && v.gen == gen &&
        chunk_bounds(v.n, v.chunk_items, v.nchunks, c, &start, &end) == 0) {
        if (v.kind == POOL_KIND_RANGES)
            st = run_range(p, &v, c, start, end, cur, &err);
        else
            st = run_items(p, &v, start, end, cur, &err);
        if (st == POOL_DONE)
            done = end - start;
    }
    /* Relaxed: as in run_items() (the item in progress, read after a death). */
    shmring__store_relaxed_64(cur, POOL_NO_ITEM);
    /* Relaxed: published by the release below. */
    shmring__store_relaxed_64(&ctl->chunk_err[c], err);
    shmring__store_relaxed_64(&ctl->chunk_done[c], done);
    SHMRING_FAULT(POOL_COMPLETE);
    /* T2: release, pairs with P2 in scan_round(). */
    shmring__store_release_64(&ctl->chunk_state[c], POOL_STATE(gen, st));
    SHMRING_FAULT(POOL_NOTIFY);
    /* E1: pairs with ec_prepare in round_shared(). */
    shmring__ec_notify(&ctl->done_ec);
}

static void worker_shared(shmring_pool_t *p, unsigned w) __attribute__((noreturn));
static void worker_shared(shmring_pool_t *p, unsigned w)
{
    /* A fork does not copy the page tables of a shared mapping: map the
     * whole arena now, in one call, rather than a page fault per page in
     * the middle of a map (several microseconds each in a virtual machine;
     * read faults of shared memory map 16 pages at a time, writably).
     * Best effort: kernels before 5.14 fault as they go. */
#ifdef MADV_POPULATE_READ
    if (p->map_len <= POPULATE_MAX)
        (void)madvise(p->ctl, p->map_len, MADV_POPULATE_READ);
#endif
    shmring_t *c = NULL;
    if (shmring_open_fd(shmring_fd(p->ring), SHMRING_CONSUMER, &c) < 0)
        _exit(3);
    for (;;) {
        struct shmring__pool_token t;
        ssize_t n = shmring_pop_wait(c, &t, sizeof t, WORKER_IDLE_NS);
        if (n == -ETIMEDOUT) {
            if (getppid() != p->owner)
                _exit(0);
            continue;
        }
        if (n < 0) /* -EPIPE: the pool was destroyed (or its owner died) */
            _exit(0);
        if (n == (ssize_t)sizeof t) {
            SHMRING_FAULT(POOL_TAKE);
            run_chunk_shared(p, w, t.gen, t.chunk);
        }
    }
}

/* ---- Worker processes: message passing ---------------------------------- */

struct mp_request {
    uint32_t magic;
    uint32_t reserved;
    uint64_t start, count, item_size, result_size;
};

struct mp_reply {
    uint32_t magic;
    int32_t rc;       /* 0 or the task's error */
    uint64_t err_off; /* offset in the chunk of the failing item */
    uint64_t start, count;
};

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    unsigned char *b = realloc(*buf, need);
    if (b == NULL)
        return -1;
    *buf = b;
    *cap = need;
    return 0;
}

static void worker_mp(shmring_pool_t *p, int fd) __attribute__((noreturn));
static void worker_mp(shmring_pool_t *p, int fd)
{
    unsigned char *items = NULL, *results = NULL;
    size_t icap = 0, rcap = 0;
    for (;;) {
        struct mp_request q;
        if (read_full(fd, &q, sizeof q) < 0)
            _exit(0); /* EOF: the pool was destroyed (or its owner died) */
        /* The request is checked before it sizes anything. */
        if (q.magic != MP_MAGIC || q.item_size == 0 || q.count > MP_MAX_BYTES / q.item_size ||
            (q.result_size != 0 && q.count > MP_MAX_BYTES / q.result_size))
            _exit(4);
        size_t ilen = (size_t)(q.count * q.item_size), rlen = (size_t)(q.count * q.result_size);
        if (grow(&items, &icap, ilen) < 0 || grow(&results, &rcap, rlen) < 0)
            _exit(5);
        if (read_full(fd, items, ilen) < 0)
            _exit(0);
        struct mp_reply r = {.magic = MP_MAGIC, .start = q.start, .count = q.count};
        for (size_t i = 0; i < q.count; i++) {
            void *res = q.result_size ? results + i * q.result_size : NULL;
            int rc = p->fn(items + i * q.item_size, q.item_size, res, q.result_size, p->ctx);
            if (rc != 0) {
                r.rc = task_error(rc);
                r.err_off = i;
                break;
            }
        }
        if (write_full(fd, &r, sizeof r) < 0 || write_full(fd, results, rlen) < 0)
            _exit(0);
    }
}

/* ---- Starting and stopping worker processes ----------------------------- */

static void worker_start(shmring_pool_t *p, unsigned w, pid_t parent, int fd)
    __attribute__((noreturn));
static void worker_start(shmring_pool_t *p, unsigned w, pid_t parent, int fd)
{
    /* Die with the parent; it may have died before the prctl took effect. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    for (unsigned j = 0; j < p->nworkers; j++)
        if (p->sock[j] >= 0)
            close(p->sock[j]); /* other workers must see EOF when the parent closes */
    if (p->mode == SHMRING_POOL_MODE_SHARED)
        worker_shared(p, w);
    worker_mp(p, fd);
}

static int spawn(shmring_pool_t *p, unsigned w)
{
    int sv[2] = {-1, -1};
    if (p->mode == SHMRING_POOL_MODE_MESSAGE_PASSING &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        if (sv[0] >= 0) {
            close(sv[0]);
            close(sv[1]);
        }
        return e == ENOMEM ? -ENOMEM : -EAGAIN;
    }
    if (pid == 0) {
        if (sv[0] >= 0)
            close(sv[0]);
        worker_start(p, w, parent, sv[1]);
    }
    if (sv[0] >= 0) {
        close(sv[1]);
        p->sock[w] = sv[0];
    }
    set_worker_pid(p, w, pid);
    return 0;
}

/* Forget worker w after it died (reaped by the caller) and start another. */
static int respawn(shmring_pool_t *p, unsigned w)
{
    if (p->sock[w] >= 0) {
        close(p->sock[w]);
        p->sock[w] = -1;
    }
    p->has_busy[w] = 0;
    set_worker_pid(p, w, 0);
    /* Relaxed: a statistic. */
    shmring__store_relaxed_64(&p->restarts, shmring__load_relaxed_64(&p->restarts) + 1);
    return spawn(p, w);
}

/*
 * SIGKILL worker w and reap it. Through its pidfd when there is one;
 * otherwise only while its pid is our child and not reaped yet:
 * waitid(WNOWAIT) tells without reaping. A pid already reaped (ECHILD) may
 * belong to another process by now and is left alone; an exited child is
 * only reaped.
 */
static void kill_worker(shmring_pool_t *p, unsigned w)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int rc;
    if (p->pidfd[w] >= 0) {
#ifdef SYS_pidfd_send_signal
        syscall(SYS_pidfd_send_signal, p->pidfd[w], SIGKILL, NULL, 0);
#endif
        while ((rc = waitid(P_PIDFD, (id_t)p->pidfd[w], &si, WEXITED)) < 0 && errno == EINTR)
            ;
        return;
    }
    pid_t pid = worker_pid(p, w);
    while ((rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT)) < 0 && errno == EINTR)
        ;
    if (rc < 0)
        return;
    if (si.si_pid == 0)
        kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Tell workers to exit (the caller closed their ring or sockets), then
 * SIGKILL stragglers, and reap them all. */
static void reap_all(shmring_pool_t *p)
{
    uint64_t deadline = shmring__now_ns() + STOP_GRACE_NS;
    unsigned left;
    do {
        left = 0;
        for (unsigned w = 0; w < p->nworkers; w++) {
            pid_t pid = worker_pid(p, w);
            if (pid <= 0)
                continue;
            if (reaped(p, w))
                set_worker_pid(p, w, 0);
            else
                left++;
        }
        if (left > 0)
            sleep_ns(1000000);
    } while (left > 0 && shmring__now_ns() < deadline);
    for (unsigned w = 0; w < p->nworkers; w++) {
        pid_t pid = worker_pid(p, w);
        if (pid <= 0)
            continue;
        kill_worker(p, w);
        set_worker_pid(p, w, 0);
    }
}

/* ---- Blame ---------------------------------------------------------------- */

/* Count a death on `item`; fail the map once an item reached the limit. */
static void blame(struct map_run *m, size_t item)
{
    struct kill_count *k = NULL;
    for (unsigned i = 0; i < m->nkill; i++)
        if (m->kill[i].item == item)
            k = &m->kill[i];
    if (k == NULL) {
        if (m->nkill == KILL_TABLE)
            return;
        k = &m->kill[m->nkill++];
        k->item = item;
        k->kills = 0;
    }
    if (++k->kills >= SHMRING_POOL_MAX_KILLS && m->crash_rc == 0) {
        m->crash_rc = -ECHILD;
        m->error_item = item;
    }
}

/* A death that finished nothing: fail when workers keep dying for nothing. */
static void barren_death(shmring_pool_t *p, struct map_run *m)
{
    if (++m->barren > 8 + 4 * p->nworkers && m->crash_rc == 0) {
        m->crash_rc = -ECHILD;
        m->error_item = SIZE_MAX;
    }
}

static int failed(const struct map_run *m)
{
    return m->crash_rc != 0 || m->task_rc != 0;
}

static void respawn_or_fail(shmring_pool_t *p, unsigned w, struct map_run *m)
{
    if (respawn(p, w) < 0) {
        for (unsigned j = 0; j < p->nworkers; j++)
            if (worker_pid(p, j) > 0)
                return; /* retried at the next death check */
        if (m->crash_rc == 0)
            m->crash_rc = -EAGAIN;
    }
}

/* ---- Parent: shared-memory rounds --------------------------------------- */

static void queue_chunk(shmring_pool_t *p, uint32_t c)
{
    if (p->queued[c])
        return;
    p->queued[c] = 1;
    p->pend[p->npend++] = c;
}

/* Push pending tokens until the ring is full. */
static void push_pending(shmring_pool_t *p)
{
    unsigned done = 0;
    while (done < p->npend) {
        struct shmring__pool_token t = {p->gen, p->pend[done]};
        SHMRING_FAULT(POOL_HANDOUT);
        /* P1: the push publishes what was stored before it (release). */
        if (shmring_push(p->ring, &t, sizeof t) < 0)
            break;
        p->queued[t.chunk] = 0;
        done++;
    }
    memmove(p->pend, p->pend + done, (p->npend - done) * sizeof p->pend[0]);
    p->npend -= done;
}

/* The workers wrote over the control page: fail the map. */
static void corrupt(struct map_run *m)
{
    if (m->crash_rc == 0)
        m->crash_rc = -EPROTO;
}

/* Items of chunk c of the private round. */
static size_t chunk_size(const struct pool_round *r, uint32_t c)
{
    size_t start = (size_t)c * r->chunk_items;
    return r->n - start < r->chunk_items ? r->n - start : r->chunk_items;
}

/* 1 if the round parameters on the control page are still the parent's. */
static int round_intact(const shmring_pool_t *p)
{
    const struct pool_round *r = &p->round;
    struct shmring__pool_ctl *ctl = p->ctl;
    /* Relaxed: written by this thread; a difference is a worker's write. */
    return shmring__load_relaxed_32(&ctl->gen) == p->gen &&
           shmring__load_relaxed_32(&ctl->kind) == r->kind &&
           shmring__load_relaxed_32(&ctl->nchunks) == r->nchunks &&
           shmring__load_relaxed_64(&ctl->n) == r->n &&
           shmring__load_relaxed_64(&ctl->item_size) == r->item_size &&
           shmring__load_relaxed_64(&ctl->result_size) == r->result_size &&
           shmring__load_relaxed_64(&ctl->chunk_items) == r->chunk_items &&
           shmring__load_relaxed_64(&ctl->items_off) == r->items_off &&
           shmring__load_relaxed_64(&ctl->results_off) == r->results_off &&
           shmring__load_relaxed_64(&ctl->range_fn) == (uint64_t)(uintptr_t)r->range_fn &&
           shmring__load_relaxed_64(&ctl->range_ctx) == (uint64_t)(uintptr_t)r->range_ctx;
}

struct scan {
    unsigned done, owned, cancelled;
};

/* A DONE_ERR chunk: its error, checked to name an item of the chunk. */
static void chunk_failed(shmring_pool_t *p, uint32_t c, size_t base, struct map_run *m)
{
    const struct pool_round *r = &p->round;
    /* Relaxed: published by T2 (acquired by P2). Untrusted: checked. */
    uint64_t e = shmring__load_relaxed_64(&p->ctl->chunk_err[c]);
    uint64_t item = e >> 12, start = (uint64_t)c * r->chunk_items;
    int rc = -(int)(e & 0xfff);
    if (rc == 0 || item < start || item - start >= chunk_size(r, c)) {
        corrupt(m);
        return;
    }
    if (m->task_rc == 0 || base + item < m->error_item) {
        m->task_rc = rc;
        m->error_item = base + (size_t)item;
    }
}

/* Read back every chunk state of the round; anything the round cannot
 * have produced is a corrupt control page. */
static struct scan scan_round(shmring_pool_t *p, size_t base, struct map_run *m)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    struct scan s = {0, 0, 0};
    for (uint32_t c = 0; c < p->round.nchunks; c++) {
        /* P2: acquire, pairs with T2 in run_chunk_shared(). Untrusted: checked. */
        uint64_t x = shmring__load_acquire_64(&ctl->chunk_state[c]);
        uint32_t st = POOL_STATE_ST(x);
        int final = st == POOL_DONE || st == POOL_DONE_ERR || st == POOL_CANCELLED;
        if (POOL_STATE_GEN(x) != p->gen || (p->final[c] && !final) || st == POOL_BROKEN) {
            corrupt(m);
        } else if (st == POOL_DONE) {
            /* Relaxed: published by T2. A done chunk ran all of its items. */
            if (shmring__load_relaxed_64(&ctl->chunk_done[c]) != chunk_size(&p->round, c))
                corrupt(m);
            s.done++;
        } else if (st == POOL_CANCELLED) {
            s.done++;
            s.cancelled++;
        } else if (st == POOL_DONE_ERR) {
            s.done++;
            if (!p->final[c])
                chunk_failed(p, c, base, m);
        } else if (st >= POOL_OWNED(0) && st <= POOL_OWNED(p->nworkers - 1)) {
            s.owned++;
        } else if (st != POOL_QUEUED) {
            corrupt(m);
        }
        p->final[c] = (unsigned char) final;
    }
    if (!round_intact(p))
        corrupt(m);
    return s;
}

/* A failed round hands out nothing more: queued chunks are cancelled. */
static void cancel_queued(shmring_pool_t *p)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    /* Relaxed: a hint for workers between items. */
    shmring__store_relaxed_32(&ctl->abort_gen, p->gen);
    for (uint32_t c = 0; c < p->round.nchunks; c++) {
        uint64_t q = POOL_STATE(p->gen, POOL_QUEUED);
        /* CAS, seq_cst: races with T1; exactly one wins. */
        shmring__cas_64(&ctl->chunk_state[c], &q, POOL_STATE(p->gen, POOL_CANCELLED));
    }
    p->npend = 0;
    memset(p->queued, 0, sizeof p->queued);
}

/* Worker w died: requeue (or cancel) what it owned, blame the item it ran,
 * requeue every chunk that is still queued (its token may have died with
 * the worker), start a replacement. */
static void worker_died_shared(shmring_pool_t *p, unsigned w, size_t base, struct map_run *m)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    const struct pool_round *r = &p->round;
    int held = 0;
    for (uint32_t c = 0; c < r->nchunks; c++) {
        /* Acquire: pairs with T2. Untrusted: only the exact words below act. */
        uint64_t x = shmring__load_acquire_64(&ctl->chunk_state[c]);
        if (POOL_STATE_GEN(x) != p->gen)
            continue;
        uint32_t st = POOL_STATE_ST(x);
        if (st == POOL_OWNED(w)) {
            held = 1;
            /* Relaxed: the worker is dead and reaped. Untrusted: checked. */
            uint64_t item = shmring__load_relaxed_64(&ctl->worker[w].cur_item);
            uint64_t start = (uint64_t)c * r->chunk_items;
            if (item != POOL_NO_ITEM && item >= start && item - start < chunk_size(r, c))
                blame(m, base + (size_t)item);
            uint32_t next = failed(m) ? POOL_CANCELLED : POOL_QUEUED;
            /* Release: the owner is gone; pairs with T1 of the next owner. */
            shmring__store_release_64(&ctl->chunk_state[c], POOL_STATE(p->gen, next));
            if (next == POOL_QUEUED)
                queue_chunk(p, c);
        } else if (st == POOL_QUEUED && !failed(m)) {
            queue_chunk(p, c);
        }
    }
    if (!held)
        barren_death(p, m);
    if (failed(m))
        cancel_queued(p);
    respawn_or_fail(p, w, m);
}

/* Reap dead workers; returns how many died. */
static unsigned check_deaths(shmring_pool_t *p, size_t base, struct map_run *m)
{
    unsigned deaths = 0;
    for (unsigned w = 0; w < p->nworkers; w++) {
        pid_t pid = worker_pid(p, w);
        if (pid <= 0) {
            respawn_or_fail(p, w, m);
            continue;
        }
        if (!reaped(p, w))
            continue;
        deaths++;
        if (p->mode == SHMRING_POOL_MODE_SHARED) {
            worker_died_shared(p, w, base, m);
        } else {
            barren_death(p, m);
            respawn_or_fail(p, w, m);
        }
    }
    return deaths;
}

/* After a corrupt control page: no worker's state can be trusted, and a
 * task may still run on garbage. Kill every worker and start afresh. */
static void restart_all(shmring_pool_t *p, struct map_run *m)
{
    for (unsigned w = 0; w < p->nworkers; w++) {
        pid_t pid = worker_pid(p, w);
        if (pid > 0)
            kill_worker(p, w);
        set_worker_pid(p, w, 0);
        respawn_or_fail(p, w, m);
    }
    p->npend = 0;
    memset(p->queued, 0, sizeof p->queued);
}

/* Cut the round into chunks, copy it to the control page, queue every chunk. */
static void start_round(shmring_pool_t *p, struct pool_round *r)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    if (++p->gen == 0)
        p->gen = 1;
    size_t per = p->nworkers * POOL_CHUNKS_PER_WORKER;
    r->chunk_items = (r->n + per - 1) / per;
    r->nchunks = (uint32_t)((r->n + r->chunk_items - 1) / r->chunk_items);
    p->round = *r;
    /* P1: relaxed; no worker reads them before claiming a chunk of this round. */
    shmring__store_relaxed_32(&ctl->gen, p->gen);
    shmring__store_relaxed_32(&ctl->kind, r->kind);
    shmring__store_relaxed_32(&ctl->nchunks, r->nchunks);
    shmring__store_relaxed_64(&ctl->n, r->n);
    shmring__store_relaxed_64(&ctl->item_size, r->item_size);
    shmring__store_relaxed_64(&ctl->result_size, r->result_size);
    shmring__store_relaxed_64(&ctl->chunk_items, r->chunk_items);
    shmring__store_relaxed_64(&ctl->items_off, r->items_off);
    shmring__store_relaxed_64(&ctl->results_off, r->results_off);
    shmring__store_relaxed_64(&ctl->range_fn, (uint64_t)(uintptr_t)r->range_fn);
    shmring__store_relaxed_64(&ctl->range_ctx, (uint64_t)(uintptr_t)r->range_ctx);
    p->npend = 0;
    memset(p->queued, 0, sizeof p->queued);
    memset(p->final, 0, sizeof p->final);
    for (uint32_t c = 0; c < r->nchunks; c++) {
        shmring__store_relaxed_64(&ctl->chunk_done[c], POOL_NO_ITEM);
        shmring__store_relaxed_64(&ctl->chunk_state[c], POOL_STATE(p->gen, POOL_QUEUED));
        queue_chunk(p, c);
    }
}

/* Every chunk that is still queued gets another token (a duplicate is
 * harmless: the claim CAS lets one through). Only when nothing moved for
 * STALL_NS with no chunk owned: a worker that wrote a finished chunk back
 * to queued would otherwise hold the map forever. */
static void requeue_queued(shmring_pool_t *p)
{
    for (uint32_t c = 0; c < p->round.nchunks; c++) {
        /* Relaxed: a hint; the claim CAS decides. */
        uint64_t x = shmring__load_relaxed_64(&p->ctl->chunk_state[c]);
        if (x == POOL_STATE(p->gen, POOL_QUEUED))
            queue_chunk(p, c);
    }
}

/* Run one round whose items and results are in the arena. */
static void round_shared(shmring_pool_t *p, size_t base, struct pool_round *r, struct map_run *run)
{
    struct shmring__pool_ctl *ctl = p->ctl;
    start_round(p, r);
    /* A worker that died after finishing its last chunk of an earlier map
     * (say, before its notify) is replaced now, before the round needs it. */
    check_deaths(p, base, run);
    unsigned last_done = 0;
    uint64_t progress_ns = shmring__now_ns();
    for (;;) {
        if (!failed(run))
            push_pending(p);
        /* E1: announce before scanning, so a notify after the scan wakes us. */
        uint32_t v = shmring__ec_prepare(&ctl->done_ec);
        struct scan s = scan_round(p, base, run);
        if (s.done > last_done) {
            last_done = s.done;
            run->barren = 0;
            progress_ns = shmring__now_ns();
        }
        if (run->crash_rc == -EPROTO) {
            restart_all(p, run);
            return;
        }
        if (failed(run)) {
            cancel_queued(p);
            s = scan_round(p, base, run);
            if (run->crash_rc == -EPROTO) {
                restart_all(p, run);
                return;
            }
            if (s.owned == 0)
                return;
        } else if (s.done == p->round.nchunks) {
            /* Workers cancel only after a task error, which fails the round. */
            if (s.cancelled > 0) {
                corrupt(run);
                restart_all(p, run);
            }
            return;
        }
        if (check_deaths(p, base, run) > 0)
            continue;
        /* Queued chunks and no owner for a while: a token may be missing. */
        if (!failed(run) && s.owned == 0 && shmring__now_ns() - progress_ns > STALL_NS) {
            requeue_queued(p);
            progress_ns = shmring__now_ns();
        }
        shmring__ec_sleep(&ctl->done_ec, v, p->npend > 0 ? WATCH_NS / 10 : WATCH_NS);
    }
}

/* ---- The arena ------------------------------------------------------------ */

static size_t align_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

/* Insert b before block i. */
static int blk_insert(shmring_pool_t *p, size_t i, struct pool_block b)
{
    if (p->nblk == p->blkcap) {
        size_t cap = p->blkcap * 2 + 16;
        struct pool_block *nb = realloc(p->blk, cap * sizeof *nb);
        if (nb == NULL)
            return -ENOMEM;
        p->blk = nb;
        p->blkcap = cap;
    }
    memmove(p->blk + i + 1, p->blk + i, (p->nblk - i) * sizeof *p->blk);
    p->blk[i] = b;
    p->nblk++;
    return 0;
}

static void blk_remove(shmring_pool_t *p, size_t i)
{
    memmove(p->blk + i, p->blk + i + 1, (p->nblk - i - 1) * sizeof *p->blk);
    p->nblk--;
}

/* First fit of len (a multiple of ARENA_ALIGN) bytes; NULL if none. */
static unsigned char *arena_take(shmring_pool_t *p, size_t len)
{
    for (size_t i = 0; i < p->nblk; i++) {
        struct pool_block *b = &p->blk[i];
        if (b->used || b->len < len)
            continue;
        if (b->len > len) {
            struct pool_block rest = {b->off + len, b->len - len, 0};
            if (blk_insert(p, i + 1, rest) < 0)
                return NULL;
            b = &p->blk[i];
            b->len = len;
        }
        b->used = 1;
        return p->arena + b->off;
    }
    return NULL;
}

/* Index of the live block that starts at ptr, or -1. */
static ssize_t blk_find(const shmring_pool_t *p, const void *ptr)
{
    uintptr_t a = (uintptr_t)ptr;
    for (size_t i = 0; i < p->nblk; i++) {
        uintptr_t start = p->arena ? (uintptr_t)(p->arena + p->blk[i].off) : p->blk[i].off;
        if (start == a && p->blk[i].used)
            return (ssize_t)i;
    }
    return -1;
}

/* Free arena block i and merge it with free neighbours. */
static void arena_give(shmring_pool_t *p, size_t i)
{
    p->blk[i].used = 0;
    if (i + 1 < p->nblk && !p->blk[i + 1].used) {
        p->blk[i].len += p->blk[i + 1].len;
        blk_remove(p, i + 1);
    }
    if (i > 0 && !p->blk[i - 1].used) {
        p->blk[i - 1].len += p->blk[i].len;
        blk_remove(p, i);
    }
}

static size_t arena_largest_free(const shmring_pool_t *p)
{
    size_t best = 0;
    for (size_t i = 0; i < p->nblk; i++)
        if (!p->blk[i].used && p->blk[i].len > best)
            best = p->blk[i].len;
    return best;
}

/* Where [ptr, ptr + len) is: 1 inside one live block of the arena, 0
 * outside the arena, -EINVAL across its edge or over free space. */
static int arena_holds(const shmring_pool_t *p, const void *ptr, size_t len)
{
    uintptr_t a = (uintptr_t)ptr, lo = (uintptr_t)p->arena, hi = lo + p->arena_size;
    if (a >= hi)
        return 0;
    if (a < lo)
        return len <= lo - a ? 0 : -EINVAL;
    if (len > hi - a)
        return -EINVAL;
    size_t off = a - lo;
    for (size_t i = 0; i < p->nblk; i++) {
        const struct pool_block *b = &p->blk[i];
        if (off >= b->off && off - b->off < b->len)
            return b->used && len <= b->len - (off - b->off) ? 1 : -EINVAL;
    }
    return -EINVAL;
}

static int arena_setup(shmring_pool_t *p)
{
    struct pool_block all = {0, p->arena_size, 0};
    return blk_insert(p, 0, all);
}

/* ---- Parent: shared-memory maps ------------------------------------------ */

static int map_shared(shmring_pool_t *p, const unsigned char *items, size_t n, size_t item_size,
                      unsigned char *results, size_t result_size, struct map_run *run)
{
    int ir = arena_holds(p, items, n * item_size);
    int rr = result_size ? arena_holds(p, results, n * result_size) : 1;
    if (ir < 0 || rr < 0)
        return -EINVAL;
    struct pool_round r = {
        .kind = POOL_KIND_ITEMS, .item_size = item_size, .result_size = result_size};
    size_t ci = ir ? 0 : item_size, cr = rr ? 0 : result_size;
    if (ci + cr == 0) {
        /* Zero copy: the workers read and write the caller's blocks. */
        r.n = n;
        r.items_off = (size_t)(items - p->arena);
        r.results_off = result_size ? (size_t)(results - p->arena) : 0;
        round_shared(p, 0, &r, run);
        return run->crash_rc ? run->crash_rc : run->task_rc;
    }
    if (p->arena_size < ARENA_ALIGN || item_size + result_size > p->arena_size - ARENA_ALIGN)
        return -EMSGSIZE;
    size_t room = arena_largest_free(p);
    if (room < ci + cr + 2 * ARENA_ALIGN)
        return -ENOMEM;
    size_t cap = (room - 2 * ARENA_ALIGN) / (ci + cr);
    if (cap > n)
        cap = n;
    size_t ilen = align_up(cap * ci);
    unsigned char *stage = arena_take(p, ilen + align_up(cap * cr));
    if (stage == NULL)
        return -ENOMEM;
    size_t stage_off = (size_t)(stage - p->arena);
    int rc = 0;
    for (size_t base = 0; base < n; base += cap) {
        r.n = n - base < cap ? n - base : cap;
        r.items_off = ir ? (size_t)(items + base * item_size - p->arena) : stage_off;
        r.results_off = !result_size ? 0
                        : rr         ? (size_t)(results + base * result_size - p->arena)
                                     : stage_off + ilen;
        if (!ir)
            memcpy(stage, items + base * item_size, r.n * item_size);
        round_shared(p, base, &r, run);
        if (failed(run)) {
            rc = run->crash_rc ? run->crash_rc : run->task_rc;
            break;
        }
        if (!rr)
            memcpy(results + base * result_size, stage + ilen, r.n * result_size);
    }
    arena_give(p, (size_t)blk_find(p, stage));
    return rc;
}

/* ---- Parent: message passing -------------------------------------------- */

struct mp_queue {
    struct mp_chunk *q;
    size_t head, tail, cap;
};

static int mp_push(struct mp_queue *q, size_t start, size_t count)
{
    if (q->tail == q->cap) {
        size_t live = q->tail - q->head;
        if (q->head > 0 && live < q->cap / 2) {
            memmove(q->q, q->q + q->head, live * sizeof *q->q);
        } else {
            struct mp_chunk *nq = realloc(q->q, (q->cap * 2 + 16) * sizeof *nq);
            if (nq == NULL)
                return -ENOMEM;
            q->q = nq;
            q->cap = q->cap * 2 + 16;
            memmove(q->q, q->q + q->head, live * sizeof *q->q);
        }
        q->head = 0;
        q->tail = live;
    }
    q->q[q->tail++] = (struct mp_chunk){start, count};
    return 0;
}

struct mp_job {
    const unsigned char *items;
    unsigned char *results;
    size_t item_size, result_size;
    struct mp_queue queue;
    unsigned busy;
};

/* Worker w died holding a chunk: split it to find the killer, or blame. */
static void mp_lost_chunk(shmring_pool_t *p, unsigned w, struct mp_job *j, struct map_run *m)
{
    struct mp_chunk c = p->busy[w];
    p->has_busy[w] = 0;
    j->busy--;
    if (failed(m))
        return;
    int rc = 0;
    if (c.count == 1) {
        blame(m, c.start);
        if (!failed(m))
            rc = mp_push(&j->queue, c.start, 1);
    } else {
        size_t half = c.count / 2;
        rc = mp_push(&j->queue, c.start, half);
        if (rc == 0)
            rc = mp_push(&j->queue, c.start + half, c.count - half);
    }
    if (rc < 0 && m->crash_rc == 0)
        m->crash_rc = rc;
}

static void mp_worker_died(shmring_pool_t *p, unsigned w, struct mp_job *j, struct map_run *m)
{
    pid_t pid = worker_pid(p, w);
    if (pid > 0) {
        kill_worker(p, w); /* a protocol error leaves it alive */
    }
    if (p->has_busy[w])
        mp_lost_chunk(p, w, j, m);
    else
        barren_death(p, m);
    respawn_or_fail(p, w, m);
}

static int mp_send(shmring_pool_t *p, unsigned w, struct mp_job *j)
{
    struct mp_chunk c = j->queue.q[j->queue.head++];
    struct mp_request q = {MP_MAGIC, 0, c.start, c.count, j->item_size, j->result_size};
    p->busy[w] = c;
    p->has_busy[w] = 1;
    j->busy++;
    if (write_full(p->sock[w], &q, sizeof q) < 0 ||
        write_full(p->sock[w], j->items + c.start * j->item_size, c.count * j->item_size) < 0)
        return -1;
    return 0;
}

/* Read worker w's reply; -1 when it died (or broke the protocol). */
static int mp_receive(shmring_pool_t *p, unsigned w, struct mp_job *j, struct map_run *m)
{
    struct mp_chunk c = p->busy[w];
    struct mp_reply r;
    if (read_full(p->sock[w], &r, sizeof r) < 0)
        return -1;
    if (r.magic != MP_MAGIC || r.start != c.start || r.count != c.count ||
        (r.rc != 0 && (r.rc < -4095 || r.rc > 0 || r.err_off >= c.count))) {
        if (m->crash_rc == 0)
            m->crash_rc = -EPROTO;
        return -1;
    }
    unsigned char *dst = j->results ? j->results + c.start * j->result_size : NULL;
    if (j->result_size && read_full(p->sock[w], dst, c.count * j->result_size) < 0)
        return -1;
    p->has_busy[w] = 0;
    j->busy--;
    m->barren = 0;
    if (r.rc != 0) {
        size_t item = c.start + (size_t)r.err_off;
        if (m->task_rc == 0 || item < m->error_item) {
            m->task_rc = r.rc;
            m->error_item = item;
        }
    }
    return 0;
}

static void mp_poll(shmring_pool_t *p, struct mp_job *j, struct map_run *m)
{
    struct pollfd fds[SHMRING_POOL_MAX_WORKERS];
    unsigned who[SHMRING_POOL_MAX_WORKERS], nfds = 0;
    for (unsigned w = 0; w < p->nworkers; w++) {
        if (!p->has_busy[w])
            continue;
        fds[nfds] = (struct pollfd){.fd = p->sock[w], .events = POLLIN};
        who[nfds++] = w;
    }
    int rc = poll(fds, nfds, (int)(WATCH_NS / 1000000));
    for (unsigned i = 0; rc > 0 && i < nfds; i++) {
        if (fds[i].revents == 0)
            continue;
        if (mp_receive(p, who[i], j, m) < 0)
            mp_worker_died(p, who[i], j, m);
    }
}

static int map_mp(shmring_pool_t *p, const unsigned char *items, size_t n, size_t item_size,
                  unsigned char *results, size_t result_size, struct map_run *run)
{
    struct mp_job j = {items, results, item_size, result_size, {NULL, 0, 0, 0}, 0};
    size_t per = p->nworkers * POOL_CHUNKS_PER_WORKER;
    size_t chunk = (n + per - 1) / per;
    for (size_t s = 0; s < n && run->crash_rc == 0; s += chunk)
        if (mp_push(&j.queue, s, n - s < chunk ? n - s : chunk) < 0)
            run->crash_rc = -ENOMEM;
    for (;;) {
        for (unsigned w = 0; w < p->nworkers && !failed(run); w++) {
            if (worker_pid(p, w) <= 0 || p->has_busy[w] || j.queue.head == j.queue.tail)
                continue;
            if (mp_send(p, w, &j) < 0)
                mp_worker_died(p, w, &j, run);
        }
        if (j.busy == 0 && (failed(run) || j.queue.head == j.queue.tail))
            break;
        mp_poll(p, &j, run);
        /* Idle workers that died (a busy one shows up as EOF in mp_poll). */
        for (unsigned w = 0; w < p->nworkers; w++) {
            pid_t pid = worker_pid(p, w);
            if (pid <= 0) {
                respawn_or_fail(p, w, run);
            } else if (!p->has_busy[w] && reaped(p, w)) {
                set_worker_pid(p, w, 0);
                barren_death(p, run);
                respawn_or_fail(p, w, run);
            }
        }
    }
    free(j.queue.q);
    return run->crash_rc ? run->crash_rc : run->task_rc;
}

/* ---- Threads ------------------------------------------------------------ */

static void thread_run_job(struct thread_pool *tp, shmring_pool_t *p)
{
    const unsigned char *items = tp->items;
    unsigned char *results = tp->results;
    size_t n = tp->n, isz = tp->item_size, rsz = tp->result_size, per = tp->chunk_items;
    size_t nchunks = tp->nchunks;
    shmring_range_fn range_fn = tp->range_fn;
    void *range_ctx = tp->range_ctx;
    pthread_mutex_unlock(&tp->mu);
    for (;;) {
        /* Claim: FAA, seq_cst; every chunk goes to one thread. */
        uint64_t c = shmring__faa_64(&tp->next_chunk, 1);
        if (c >= nchunks)
            break;
        size_t start = (size_t)c * per, end = n - start < per ? n : start + per;
        /* A range job: one call for the chunk, blamed on its first index. */
        size_t last = range_fn != NULL ? start + 1 : end;
        for (size_t i = start; i < last; i++) {
            /* Relaxed: a hint to stop early; the caller waits for `finished`. */
            if (shmring__load_relaxed_32(&tp->abort))
                break;
            int rc = range_fn != NULL
                         ? range_fn(start, end, (size_t)c, range_ctx)
                         : p->fn(items + i * isz, isz, rsz ? results + i * rsz : NULL, rsz, p->ctx);
            if (rc != 0) {
                pthread_mutex_lock(&tp->mu);
                if (tp->err_rc == 0 || i < tp->err_item) {
                    tp->err_rc = task_error(rc);
                    tp->err_item = i;
                }
                pthread_mutex_unlock(&tp->mu);
                shmring__store_relaxed_32(&tp->abort, 1);
                break;
            }
        }
    }
    pthread_mutex_lock(&tp->mu);
}

static void *thread_main(void *arg)
{
    shmring_pool_t *p = arg;
    struct thread_pool *tp = p->tp;
    uint64_t seen = 0;
    pthread_mutex_lock(&tp->mu);
    for (;;) {
        while (!tp->stop && tp->job_gen == seen)
            pthread_cond_wait(&tp->work_cv, &tp->mu);
        if (tp->stop)
            break;
        seen = tp->job_gen;
        thread_run_job(tp, p); /* unlocks while it runs */
        if (++tp->finished == tp->started)
            pthread_cond_signal(&tp->done_cv);
    }
    pthread_mutex_unlock(&tp->mu);
    return NULL;
}

static int map_threads(shmring_pool_t *p, const unsigned char *items, size_t n, size_t item_size,
                       unsigned char *results, size_t result_size, const struct pool_round *range,
                       struct map_run *run)
{
    struct thread_pool *tp = p->tp;
    size_t per = p->nworkers * POOL_CHUNKS_PER_WORKER;
    pthread_mutex_lock(&tp->mu);
    tp->range_fn = range ? range->range_fn : NULL;
    tp->range_ctx = range ? range->range_ctx : NULL;
    tp->items = items;
    tp->results = results;
    tp->n = n;
    tp->item_size = item_size;
    tp->result_size = result_size;
    tp->chunk_items = (n + per - 1) / per;
    tp->nchunks = (n + tp->chunk_items - 1) / tp->chunk_items;
    tp->finished = 0;
    tp->err_rc = 0;
    tp->err_item = SIZE_MAX;
    /* Relaxed: no thread touches them until it sees the new job_gen under mu. */
    shmring__store_relaxed_64(&tp->next_chunk, 0);
    shmring__store_relaxed_32(&tp->abort, 0);
    tp->job_gen++;
    pthread_cond_broadcast(&tp->work_cv);
    while (tp->finished < tp->started)
        pthread_cond_wait(&tp->done_cv, &tp->mu);
    run->task_rc = tp->err_rc;
    run->error_item = tp->err_item;
    pthread_mutex_unlock(&tp->mu);
    return run->task_rc;
}

static void threads_stop(shmring_pool_t *p)
{
    struct thread_pool *tp = p->tp;
    pthread_mutex_lock(&tp->mu);
    tp->stop = 1;
    pthread_cond_broadcast(&tp->work_cv);
    pthread_mutex_unlock(&tp->mu);
    for (unsigned i = 0; i < tp->started; i++)
        pthread_join(tp->tid[i], NULL);
    pthread_cond_destroy(&tp->work_cv);
    pthread_cond_destroy(&tp->done_cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp);
    p->tp = NULL;
}

static int threads_start(shmring_pool_t *p)
{
    struct thread_pool *tp = calloc(1, sizeof *tp);
    if (tp == NULL)
        return -ENOMEM;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->work_cv, NULL);
    pthread_cond_init(&tp->done_cv, NULL);
    p->tp = tp;
    for (unsigned i = 0; i < p->nworkers; i++) {
        int rc = pthread_create(&tp->tid[i], NULL, thread_main, p);
        if (rc != 0) {
            threads_stop(p);
            return rc == ENOMEM ? -ENOMEM : -EAGAIN;
        }
        pthread_mutex_lock(&tp->mu);
        tp->started++;
        pthread_mutex_unlock(&tp->mu);
    }
    return 0;
}

/* ---- Creation ----------------------------------------------------------- */

/* Arena and ring; -ENOTSUP when shared memory cannot be had here. */
static int shared_setup(shmring_pool_t *p, size_t arena_size)
{
    size_t ctl_size = (sizeof(struct shmring__pool_ctl) + 4095) & ~(size_t)4095;
    p->map_len = ctl_size + arena_size;
    /* Populated (up to POPULATE_MAX): the caller fills blocks without a page
     * fault per page, and the workers map the pages that exist. */
    int populate = p->map_len <= POPULATE_MAX ? MAP_POPULATE : 0;
    void *m = mmap(NULL, p->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | populate,
                   -1, 0);
    if (m == MAP_FAILED) {
        shmring__log("pool: no shared arena of %zu bytes (%s): message passing", arena_size,
                     shmring_strerror(-errno));
        return -ENOTSUP;
    }
    p->ctl = m;
    p->arena = (unsigned char *)m + ctl_size;
    p->arena_size = arena_size;
    if (arena_setup(p) < 0) {
        munmap(m, p->map_len);
        p->ctl = NULL;
        p->arena = NULL;
        return -ENOMEM;
    }
    shmring_config_t rc =
        SHMRING_CONFIG_INIT(.slots = RING_SLOTS, .slot_size = sizeof(struct shmring__pool_token),
                            .flags = SHMRING_PRODUCER | SHMRING_FORCE_MEMFD | SHMRING_NO_FALLBACK);
    int e = shmring_create(NULL, &rc, &p->ring);
    if (e < 0) {
        shmring__log("pool: no shared ring (%s): message passing", shmring_strerror(e));
        munmap(m, p->map_len);
        p->ctl = NULL;
        p->arena = NULL;
        p->ring = NULL;
        p->nblk = 0;
        return e == -ENOMEM ? e : -ENOTSUP;
    }
    return 0;
}

static int check_config(const shmring_pool_config_t *cfg)
{
    if (cfg == NULL)
        return 0;
    uint32_t f = cfg->flags;
    if ((f & ~POOL_FLAGS) != 0 || cfg->reserved != 0 || cfg->workers > SHMRING_POOL_MAX_WORKERS ||
        (uint64_t)cfg->arena_size > MAX_ARENA)
        return -EINVAL;
    if ((f & SHMRING_POOL_THREADS) &&
        (f & (SHMRING_POOL_PROCESSES | SHMRING_POOL_MESSAGE_PASSING | SHMRING_FORCE_HEAP)))
        return -EINVAL;
    return 0;
}

static unsigned default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > SHMRING_POOL_MAX_WORKERS ? SHMRING_POOL_MAX_WORKERS : (unsigned)n;
}

static int start_processes(shmring_pool_t *p, uint32_t flags, size_t arena_size)
{
    int mp =
        (flags & (SHMRING_POOL_MESSAGE_PASSING | SHMRING_FORCE_HEAP)) || shmring__force_heap_env();
    p->mode = SHMRING_POOL_MODE_SHARED;
    if (!mp) {
        int rc = shared_setup(p, arena_size);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0)
            p->mode = SHMRING_POOL_MODE_MESSAGE_PASSING;
    } else {
        p->mode = SHMRING_POOL_MODE_MESSAGE_PASSING;
    }
    for (unsigned w = 0; w < p->nworkers; w++) {
        int rc = spawn(p, w);
        if (rc < 0)
            return rc;
    }
    return 0;
}

SHMRING_API int shmring_pool_create(const shmring_pool_config_t *cfg, shmring_task_fn fn, void *ctx,
                                    shmring_pool_t **out)
{
    if (fn == NULL || out == NULL)
        return -EINVAL;
    shmring_pool_config_t own;
    int rc = shmring__config_pool(cfg, &own);
    if (rc < 0)
        return rc;
    cfg = cfg ? &own : NULL;
    rc = check_config(cfg);
    if (rc < 0)
        return rc;
    shmring_pool_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    uint32_t flags = cfg ? cfg->flags : 0;
    p->nworkers = (cfg && cfg->workers) ? cfg->workers : default_workers();
    p->fn = fn;
    p->ctx = ctx;
    p->owner = getpid();
    p->last_error_item = SIZE_MAX;
    for (unsigned w = 0; w < SHMRING_POOL_MAX_WORKERS; w++) {
        p->sock[w] = -1;
        p->pidfd[w] = -1;
    }
    if (flags & SHMRING_POOL_THREADS) {
        p->mode = SHMRING_POOL_MODE_THREADS;
        rc = threads_start(p);
    } else {
        size_t arena = (cfg && cfg->arena_size) ? cfg->arena_size : SHMRING_POOL_DEFAULT_ARENA;
        rc = start_processes(p, flags, arena);
    }
    if (rc < 0) {
        shmring_pool_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- Maps --------------------------------------------------------------- */

static int check_map(const shmring_pool_t *p, const void *items, size_t n, size_t item_size,
                     const void *results, size_t result_size)
{
    if (p == NULL || p->owner != getpid())
        return -EINVAL;
    if (n == 0)
        return 0;
    if (item_size == 0 || items == NULL || (results == NULL && result_size > 0))
        return -EINVAL;
    if (n > SIZE_MAX / item_size || (result_size > 0 && n > SIZE_MAX / result_size))
        return -EINVAL;
    return 0;
}

SHMRING_API int shmring_pool_map(shmring_pool_t *p, const void *items, size_t n, size_t item_size,
                                 void *results, size_t result_size)
{
    int rc = check_map(p, items, n, item_size, results, result_size);
    if (rc < 0 || n == 0) {
        if (rc == 0)
            p->last_error_item = SIZE_MAX;
        return rc;
    }
    struct map_run run;
    memset(&run, 0, sizeof run);
    run.error_item = SIZE_MAX;
    if (p->mode == SHMRING_POOL_MODE_THREADS)
        rc = map_threads(p, items, n, item_size, results, result_size, NULL, &run);
    else if (p->mode == SHMRING_POOL_MODE_SHARED)
        rc = map_shared(p, items, n, item_size, results, result_size, &run);
    else
        rc = map_mp(p, items, n, item_size, results, result_size, &run);
    p->last_error_item = rc < 0 ? run.error_item : SIZE_MAX;
    return rc;
}

/* ---- Range maps ---------------------------------------------------------- */

/* Message passing: a range task could return nothing from another process;
 * the calling thread runs the ranges, cut as the workers would. */
static int map_range_here(shmring_pool_t *p, const struct pool_round *r, struct map_run *run)
{
    if (!p->range_logged) {
        shmring__log("pool: message-passing mode: range maps run in the calling thread");
        p->range_logged = 1;
    }
    size_t per = p->nworkers * POOL_CHUNKS_PER_WORKER;
    size_t chunk = (r->n + per - 1) / per;
    for (size_t c = 0, start = 0; start < r->n; c++, start += chunk) {
        size_t end = r->n - start < chunk ? r->n : start + chunk;
        int rc = r->range_fn(start, end, c, r->range_ctx);
        if (rc != 0) {
            run->task_rc = task_error(rc);
            run->error_item = start;
            return run->task_rc;
        }
    }
    return 0;
}

SHMRING_API int shmring_pool_map_range(shmring_pool_t *p, size_t n, shmring_range_fn fn, void *ctx)
{
    if (p == NULL || fn == NULL || p->owner != getpid())
        return -EINVAL;
    p->last_error_item = SIZE_MAX;
    if (n == 0)
        return 0;
    struct map_run run;
    memset(&run, 0, sizeof run);
    run.error_item = SIZE_MAX;
    struct pool_round r = {.kind = POOL_KIND_RANGES, .n = n, .range_fn = fn, .range_ctx = ctx};
    int rc;
    if (p->mode == SHMRING_POOL_MODE_THREADS) {
        /* An item size of 1 over no items: the chunk loop only counts. */
        rc = map_threads(p, NULL, n, 1, NULL, 0, &r, &run);
    } else if (p->mode == SHMRING_POOL_MODE_SHARED) {
        round_shared(p, 0, &r, &run);
        rc = run.crash_rc ? run.crash_rc : run.task_rc;
    } else {
        rc = map_range_here(p, &r, &run);
    }
    p->last_error_item = rc < 0 ? run.error_item : SIZE_MAX;
    return rc;
}

/* ---- Arena blocks ---------------------------------------------------------- */

SHMRING_API void *shmring_pool_alloc(shmring_pool_t *p, size_t bytes)
{
    if (p == NULL || bytes == 0 || p->owner != getpid()) {
        errno = EINVAL;
        return NULL;
    }
    if (bytes > SIZE_MAX - ARENA_ALIGN) {
        errno = ENOMEM;
        return NULL;
    }
    size_t len = align_up(bytes);
    if (p->arena != NULL) {
        unsigned char *b = arena_take(p, len);
        if (b == NULL)
            errno = ENOMEM;
        return b;
    }
    /* No arena (threads, message passing): the heap, tracked the same way. */
    void *b = aligned_alloc(ARENA_ALIGN, len);
    if (b == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    struct pool_block blk = {(size_t)(uintptr_t)b, len, 1};
    if (blk_insert(p, p->nblk, blk) < 0) {
        free(b);
        errno = ENOMEM;
        return NULL;
    }
    return b;
}

SHMRING_API int shmring_pool_free(shmring_pool_t *p, void *ptr)
{
    if (p == NULL || ptr == NULL || p->owner != getpid())
        return -EINVAL;
    ssize_t i = blk_find(p, ptr);
    if (i < 0)
        return -EINVAL;
    if (p->arena != NULL) {
        arena_give(p, (size_t)i);
    } else {
        blk_remove(p, (size_t)i);
        free(ptr);
    }
    return 0;
}

struct shmring__pool_ctl *shmring__pool_control(const shmring_pool_t *p)
{
    return p == NULL ? NULL : p->ctl;
}

/* ---- Queries and destruction -------------------------------------------- */

SHMRING_API int shmring_pool_workers(const shmring_pool_t *p)
{
    return p == NULL ? -EINVAL : (int)p->nworkers;
}

SHMRING_API int shmring_pool_mode(const shmring_pool_t *p)
{
    return p == NULL ? -EINVAL : p->mode;
}

SHMRING_API size_t shmring_pool_last_error_item(const shmring_pool_t *p)
{
    return p == NULL ? SIZE_MAX : p->last_error_item;
}

SHMRING_API int shmring_pool_pids(const shmring_pool_t *p, pid_t *pids, size_t cap)
{
    if (p == NULL || (pids == NULL && cap > 0))
        return -EINVAL;
    if (p->mode == SHMRING_POOL_MODE_THREADS)
        return 0;
    for (unsigned w = 0; w < p->nworkers && w < cap; w++)
        pids[w] = worker_pid(p, w);
    return (int)p->nworkers;
}

SHMRING_API uint64_t shmring_pool_restarts(const shmring_pool_t *p)
{
    if (p == NULL)
        return 0;
    /* Relaxed: a statistic. */
    return shmring__load_relaxed_64((uint64_t *)&p->restarts);
}

SHMRING_API void shmring_pool_destroy(shmring_pool_t *p)
{
    if (p == NULL)
        return;
    if (p->owner != getpid()) {
        /* A forked copy: the workers (and threads) belong to the creator. */
        free(p->tp);
        free(p->blk);
        free(p);
        return;
    }
    if (p->tp != NULL)
        threads_stop(p);
    if (p->mode != SHMRING_POOL_MODE_THREADS) {
        /* Closing the producer ends the stream (-EPIPE in pop_wait); closing
         * the sockets gives EOF: either way the workers exit. */
        shmring_close(p->ring);
        for (unsigned w = 0; w < p->nworkers; w++)
            if (p->sock[w] >= 0)
                close(p->sock[w]);
        reap_all(p);
    }
    if (p->ctl != NULL)
        munmap(p->ctl, p->map_len);
    else
        for (size_t i = 0; i < p->nblk; i++)
            free((void *)(uintptr_t)p->blk[i].off);
    free(p->blk);
    free(p);
}
