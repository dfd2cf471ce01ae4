/* State tables: who counts as a live writer, and how long a writer can be held by a dead one. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "segment.h"
#include "state.h"

static shmring_state_t *make(const char *name, uint32_t entries, uint32_t value_size)
{
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = value_size);
    shmring_state_t *s = NULL;
    int rc = shmring_state_create(name, &cfg, &s);
    cr_assert_eq(rc, 0, "create %s: %s", name, shmring_strerror(rc));
    return s;
}

/* Wait for a child at most `seconds`; kill it and fail when it overstays. */
static int wait_child_within(pid_t pid, double seconds)
{
    uint64_t deadline = h_now_ns() + (uint64_t)(seconds * 1e9);
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (h_now_ns() >= deadline) {
            kill(pid, SIGKILL);
            test_wait_child(pid);
            cr_assert_fail("child %d still running after %.1f s", (int)pid, seconds);
        }
        h_sleep_ns(1000000);
    }
}

/* The state letter of a process (field 3 of /proc/<pid>/stat), or '?'. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/* ---- A writer whose main thread exited is alive ------------------------------------ */

/*
 * Values large enough that one copy takes a millisecond or more, so that a
 * second writer finds the entry held by the same write long enough to check
 * its holder. Every 8-byte word of a value is its id: a value mixed from two
 * writes is seen at once.
 */
#define ZVALUE zvalue()

/* Sanitizer builds copy word by word, many times slower: 2 MiB does it there. */
static size_t zvalue(void)
{
    return h_sanitized() ? 2u << 20 : 16u << 20;
}

struct zrun {
    char name[128];
    volatile int stop;
    volatile uint64_t child_writes;
    volatile uint64_t child_failures;
};

static void fill_id(uint64_t *v, size_t words, uint64_t id)
{
    for (size_t i = 0; i < words; i++)
        v[i] = id;
}

/* 0 if the n bytes read are one whole value of a known writer. */
static int check_id(const uint64_t *v, ssize_t n)
{
    if (n != (ssize_t)ZVALUE)
        return -1;
    uint64_t id = v[0];
    if ((id >> 56) != 1 && (id >> 56) != 2)
        return -1;
    for (size_t i = 1; i < ZVALUE / 8; i++)
        if (v[i] != id)
            return -1;
    return 0;
}

static void *zombie_writer(void *arg)
{
    struct zrun *z = arg;
    shmring_state_t *s = NULL;
    if (shmring_state_open(z->name, 0, &s) != 0)
        _exit(3);
    uint64_t *v = malloc(ZVALUE);
    if (v == NULL)
        _exit(4);
    for (uint64_t seq = 1; !__atomic_load_n(&z->stop, __ATOMIC_ACQUIRE); seq++) {
        fill_id(v, ZVALUE / 8, 1ull << 56 | seq);
        int rc = shmring_state_write(s, "z", v, ZVALUE);
        if (rc == 0)
            z->child_writes++;
        else if (rc != -EAGAIN)
            z->child_failures++;
    }
    /* The process ends here: its main thread is long gone. */
    _exit(0);
}

struct zreader {
    struct zrun *z;
    uint64_t reads, torn, errors;
};

static void *zombie_reader(void *arg)
{
    struct zreader *r = arg;
    shmring_state_t *s = NULL;
    if (shmring_state_open(r->z->name, 0, &s) != 0) {
        r->errors++;
        return NULL;
    }
    uint64_t *v = malloc(ZVALUE);
    while (v != NULL && !__atomic_load_n(&r->z->stop, __ATOMIC_ACQUIRE)) {
        ssize_t n = shmring_state_read(s, "z", v, ZVALUE);
        if (n == -EAGAIN)
            continue;
        if (check_id(v, n) == 0)
            r->reads++;
        else
            r->torn++;
    }
    free(v);
    shmring_state_close(s);
    return NULL;
}

/*
 * A process whose main thread called pthread_exit() shows state Z while its
 * other threads run. Its writes must never be "recovered" by another writer:
 * that writer would fill the same spare copy at the same time and readers
 * would accept a mix of two values.
 */
Test(state_recovery, writer_whose_main_thread_exited_is_never_recovered, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    if (test_under_valgrind())
        cr_skip_test("races need real parallelism");
    test_quiet_log();
    struct zrun *z = test_shared_alloc(sizeof *z);
    memset((void *)z, 0, sizeof *z);
    snprintf(z->name, sizeof z->name, "%s", test_name("zmain"));
    shmring_state_t *s = make(z->name, 1, (uint32_t)ZVALUE);
    uint64_t *v = malloc(ZVALUE);
    cr_assert_not_null(v);
    fill_id(v, ZVALUE / 8, 2ull << 56);
    cr_assert_eq(shmring_state_write(s, "z", v, ZVALUE), 0);

    /* Fork first: the child starts its writer thread, then its main thread exits. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(60);
        pthread_t th;
        if (pthread_create(&th, NULL, zombie_writer, z) != 0)
            _exit(5);
        pthread_exit(NULL);
    }
    uint64_t deadline = h_now_ns() + 10000000000ull;
    while ((proc_state(pid) != 'Z' || z->child_writes < 2) && h_now_ns() < deadline)
        h_sleep_ns(1000000);
    cr_assert_eq(proc_state(pid), 'Z', "the child's main thread did not exit");
    cr_assert_geq(z->child_writes, 2, "the child's writer thread does not write");

    struct zreader rd = {z, 0, 0, 0};
    pthread_t reader;
    cr_assert_eq(pthread_create(&reader, NULL, zombie_reader, &rd), 0);
    uint64_t writes = 0, eagain = 0, errors = 0, repaired = 0, attempts = 0;
    uint64_t duration = (uint64_t)(1e9 * test_scale());
    uint64_t t0 = h_now_ns(), end = t0 + duration, cap = t0 + 20000000000ull;
    for (uint64_t seq = 1; (attempts < 40 || h_now_ns() < end) && h_now_ns() < cap; seq++) {
        fill_id(v, ZVALUE / 8, 2ull << 56 | seq);
        int rc = shmring_state_write(s, "z", v, ZVALUE);
        attempts++;
        writes += rc == 0;
        eagain += rc == -EAGAIN;
        errors += rc != 0 && rc != -EAGAIN;
        /* Half of the time the child holds the entry: a repair checks it at once. */
        int n = shmring_state_repair(s);
        repaired += n > 0 ? (uint64_t)n : 0;
        /* The child still shows Z, and still runs. */
        cr_assert_eq(proc_state(pid), 'Z');
    }
    __atomic_store_n(&z->stop, 1, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    cr_assert_eq(wait_child_within(pid, 30), 0);

    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_log_info("zombie main thread: child %llu writes, parent %llu of %llu writes (%llu "
                "-EAGAIN), %llu reads, %llu recovered (%llu by repair)",
                (unsigned long long)z->child_writes, (unsigned long long)writes,
                (unsigned long long)attempts, (unsigned long long)eagain,
                (unsigned long long)rd.reads, (unsigned long long)st.recovered,
                (unsigned long long)repaired);
    cr_assert_eq(repaired, 0, "a repair recovered a live writer's entry");
    cr_assert_eq(st.recovered, 0, "a live writer was recovered %llu times",
                 (unsigned long long)st.recovered);
    cr_assert_eq(rd.torn, 0, "readers accepted %llu torn values", (unsigned long long)rd.torn);
    cr_assert_eq(rd.errors, 0);
    cr_assert_eq(errors, 0);
    cr_assert_eq(z->child_failures, 0);
    cr_assert_gt(rd.reads, 0);
    cr_assert_gt(writes, 0);
    ssize_t n = shmring_state_read(s, "z", v, ZVALUE);
    cr_assert_eq(check_id(v, n), 0, "the last value is torn");
    free(v);
    shmring_state_close(s);
    shmring_state_unlink(z->name);
    test_shared_free(z, sizeof *z);
}

/* ---- A peer that keeps re-arming an entry with a dead owner ------------------------ */

/* The segment of a table, mapped a second time: a hostile peer's view. */
struct raw {
    unsigned char *base;
    size_t size;
};

static struct raw raw_map(shmring_state_t *s)
{
    int fd = shmring_state_fd(s);
    cr_assert_geq(fd, 0);
    struct stat sb;
    cr_assert_eq(fstat(fd, &sb), 0);
    struct raw r = {NULL, (size_t)sb.st_size};
    void *p = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    r.base = p;
    return r;
}

/* The lock word of the entry holding key (as the library lays entries out). */
static uint64_t *raw_entry_word(const struct raw *r, const char *key)
{
    const struct shmring__hdr *h = (const void *)r->base;
    uint32_t slots = h->param[3], stride = h->param[2]; /* index slots: 2 * entries */
    for (uint32_t i = 0; i < slots; i++) {
        struct shmring__state_entry *e =
            (void *)(r->base + SHMRING__HEADER_SIZE + (size_t)i * stride);
        if (strncmp(e->key, key, SHMRING__STATE_KEY_FIELD) == 0)
            return &e->lock.seq;
    }
    cr_assert_fail("key %s not in the table", key);
    return NULL;
}

struct hostile {
    uint64_t *word;
    volatile int stop;
    uint64_t rearmed;
    uint64_t end; /* the peer gives up then */
};

/* Put the odd word back if the entry is even: 1 if done. */
static int rearm(struct hostile *h, uint64_t odd)
{
    uint64_t w = __atomic_load_n(h->word, __ATOMIC_ACQUIRE);
    if (SHMRING__SEQ_ODD(w))
        return 0;
    if (!__atomic_compare_exchange_n(h->word, &w, odd, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        return 0;
    __atomic_fetch_add(&h->rearmed, 1, __ATOMIC_RELAXED);
    return 1;
}

static uint64_t hostile_odd;

/*
 * Whenever the word is even, put back the same odd word: held, as far as
 * anyone can tell, by a writer with owner field 0, which no live writer
 * ever has.
 */
static void *hostile_peer(void *arg)
{
    struct hostile *h = arg;
    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE) && h_now_ns() < h->end)
        rearm(h, hostile_odd);
    return NULL;
}

static unsigned log_lines;
static char last_line[512];

/* Counts the lines; and since a recovery logs right after it, the peer
 * re-arms the entry from here too, before the writer looks again. */
static void count_lines(const char *line, void *ctx)
{
    struct hostile *h = ctx;
    __atomic_fetch_add(&log_lines, 1, __ATOMIC_RELAXED);
    snprintf(last_line, sizeof last_line, "%s", line);
    if (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE) && h_now_ns() < h->end)
        rearm(h, hostile_odd);
}

/*
 * A write (or delete) held by an entry that a peer keeps re-arming with a
 * dead owner returns -EAGAIN within its bound (about 50 ms; 1 s here, a
 * correctness bound, not a speed test), however often it recovers the
 * entry meanwhile, and logs at most one line per entry per second.
 */
Test(state_recovery, rearmed_dead_owner_cannot_hold_a_writer, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs a shared segment to map");
    const char *name = test_name("rearm");
    char kept[128];
    snprintf(kept, sizeof kept, "%s", name);
    shmring_state_t *s = make(kept, 4, 16);
    cr_assert_eq(shmring_state_write(s, "k", "before", 6), 0);
    struct raw r = raw_map(s);
    /* The hostile peer stops by itself after 3 s, so a writer held beyond
     * that is seen to be, instead of hanging the suite. */
    uint64_t hostile_end = h_now_ns() + 3000000000ull;
    struct hostile h = {raw_entry_word(&r, "k"), 0, 0, hostile_end};
    uint64_t first = __atomic_load_n(h.word, __ATOMIC_ACQUIRE);
    hostile_odd = SHMRING__SEQ_MAKE(SHMRING__SEQ_VERSION(first) | 1u, SHMRING__SEQ_STATE(first),
                                    SHMRING__SEQ_COPY(first), 0);
    log_lines = 0;
    shmring_set_log(count_lines, &h);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, hostile_peer, &h), 0);
    while (__atomic_load_n(&h.rearmed, __ATOMIC_RELAXED) == 0 && h_now_ns() < hostile_end)
        ;
    cr_assert_gt(__atomic_load_n(&h.rearmed, __ATOMIC_RELAXED), 0);
    uint64_t worst = 0;
    int calls = 0;
    for (; calls < 6 && h_now_ns() < hostile_end; calls++) {
        uint64_t t0 = h_now_ns();
        int rc =
            calls % 3 == 2 ? shmring_state_delete(s, "k") : shmring_state_write(s, "k", "after", 5);
        uint64_t took = h_now_ns() - t0;
        worst = took > worst ? took : worst;
        /* The peer may lose a race now and then: a write that got in is fine too. */
        cr_assert(rc == -EAGAIN || rc == 0 || rc == -ENOENT, "call %d: %s", calls,
                  shmring_strerror(rc));
    }
    __atomic_store_n(&h.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    shmring_set_log(NULL, NULL);
    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_log_info("re-armed %llu times, %llu recoveries, %u log lines, slowest call %.1f ms",
                (unsigned long long)h.rearmed, (unsigned long long)st.recovered, log_lines,
                (double)worst / 1e6);
    cr_assert_geq(calls, 6, "a writer was held for seconds by a re-armed entry");
    cr_assert_lt(worst, 1000000000ull, "a call took %.0f ms against its bound of about 50 ms",
                 (double)worst / 1e6);
    cr_assert_gt(st.recovered, 0, "the re-armed entry was never recovered");
    /* One line per entry per second: the calls took well under 3 s. */
    cr_assert_leq(log_lines, 4, "%u log lines for %llu recoveries (last: %s)", log_lines,
                  (unsigned long long)st.recovered, last_line);
    /* With the peer gone, the entry is recovered and usable again. */
    cr_assert_geq(shmring_state_repair(s), 0);
    cr_assert_eq(shmring_state_write(s, "k", "end", 3), 0);
    char buf[16];
    cr_assert_eq(shmring_state_read(s, "k", buf, sizeof buf), 3);
    cr_assert(memcmp(buf, "end", 3) == 0);
    munmap(r.base, r.size);
    shmring_state_close(s);
    shmring_state_unlink(kept);
}

/* ---- A child of fork() writing through its parent's handle ------------------------- */

/*
 * The child writes as itself: it takes a party entry of its own (one more
 * user while it lives), and gets -EUSERS when none is left. Closing the
 * inherited handle in a child that never wrote leaves the parent's entry
 * alone.
 */
Test(state_recovery, forked_child_writes_through_parents_handle)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("fork");
    char kept[128];
    snprintf(kept, sizeof kept, "%s", name);
    shmring_state_t *s = make(kept, 8, 16);
    cr_assert_eq(shmring_state_write(s, "k", "parent", 6), 0);

    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_state_stats_t st;
        if (shmring_state_stats(s, &st) != 0 || st.users != 1)
            _exit(3);
        if (shmring_state_write(s, "k", "child", 5) != 0)
            _exit(4);
        if (shmring_state_delete(s, "gone") != -ENOENT)
            _exit(5);
        if (shmring_state_stats(s, &st) != 0 || st.users != 2)
            _exit(6);
        shmring_state_close(s);
        _exit(0);
    }
    cr_assert_eq(wait_child_within(pid, 30), 0);
    char buf[16];
    cr_assert_eq(shmring_state_read(s, "k", buf, sizeof buf), 5);
    cr_assert(memcmp(buf, "child", 5) == 0);
    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_assert_eq(st.users, 1, "the child's entry outlived its close");

    /* A child that only reads and closes leaves the parent attached. */
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char b[16];
        shmring_state_read(s, "k", b, sizeof b);
        shmring_state_close(s);
        _exit(0);
    }
    cr_assert_eq(wait_child_within(pid, 30), 0);
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_assert_eq(st.users, 1, "a child's close detached its parent");

    /* Every party entry taken (the parent holds them all): -EUSERS, nothing written. */
    shmring_state_t *more[SHMRING__PARTIES];
    unsigned n = 0;
    while (n < SHMRING__PARTIES && shmring_state_open(kept, 0, &more[n]) == 0)
        n++;
    cr_assert_eq(shmring_state_open(kept, 0, &(shmring_state_t *){NULL}), -EUSERS);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (shmring_state_write(s, "k", "lost", 4) != -EUSERS)
            _exit(3);
        if (shmring_state_delete(s, "k") != -EUSERS)
            _exit(4);
        _exit(0);
    }
    cr_assert_eq(wait_child_within(pid, 30), 0);
    cr_assert_eq(shmring_state_read(s, "k", buf, sizeof buf), 5);
    cr_assert(memcmp(buf, "child", 5) == 0);
    for (unsigned i = 0; i < n; i++)
        shmring_state_close(more[i]);
    shmring_state_close(s);
    shmring_state_unlink(kept);
}
