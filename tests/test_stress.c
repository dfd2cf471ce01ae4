/* Stress: 1 producer, N consumers (threads, processes), 1M messages each taken exactly once. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

#define SLOTS     1024u
#define SLOT_SIZE 192u
#define MESSAGES  1000000u

/* What one consumer saw. */
struct consumer_result {
    uint64_t received;
    uint64_t torn;     /* failed test_check or wrong length for its id */
    uint64_t disorder; /* an id not above the previous one this consumer took */
    uint64_t foreign;  /* an id outside [0, n) */
    int end;           /* how the stream ended: -EPIPE expected */
    int opened;        /* 1, or the negative errno of the open */
};

/* Payload lengths vary over 16..SLOT_SIZE. */
static size_t len_of(uint64_t id)
{
    return 16 + (size_t)((id * 7919u) % (SLOT_SIZE - 15));
}

/* Soft deadline of a whole run: loops give up and report instead of hanging. */
static uint64_t run_deadline(void)
{
    double s = 30.0 * test_scale() * (h_sanitized() ? 6.0 : 1.0);
    return h_now_ns() + (uint64_t)(s * 1e9);
}

/* Plain non-blocking pops until the end of the stream (-EPIPE). */
static void consume(shmring_t *c, uint32_t *seen, uint64_t n, uint64_t deadline,
                    struct consumer_result *res)
{
    unsigned char buf[SLOT_SIZE];
    uint64_t last = 0;
    int any = 0;
    unsigned fails = 0;
    for (;;) {
        ssize_t len = shmring_pop(c, buf, sizeof buf);
        if (len == -EAGAIN) {
            if (++fails % 8 == 0)
                sched_yield();
            if (fails % 1024 == 0 && h_now_ns() > deadline) {
                res->end = -ETIMEDOUT;
                return;
            }
            continue;
        }
        if (len < 0) {
            res->end = (int)len;
            return;
        }
        fails = 0;
        res->received++;
        uint64_t id;
        if (!test_check(buf, (size_t)len, &id)) {
            res->torn++;
            continue;
        }
        if ((size_t)len != len_of(id))
            res->torn++;
        if (any && id <= last)
            res->disorder++;
        last = id;
        any = 1;
        h_mark(seen, n, id, &res->foreign);
    }
}

/* Push ids 0..n-1 with plain non-blocking pushes; 0 or a negative errno. */
static int produce(shmring_t *p, uint64_t n, uint64_t deadline)
{
    unsigned char buf[SLOT_SIZE];
    for (uint64_t id = 0; id < n; id++) {
        size_t len = len_of(id);
        test_fill(buf, len, id);
        unsigned fails = 0;
        int rc;
        while ((rc = shmring_push(p, buf, len)) == -EAGAIN) {
            if (++fails % 8 == 0)
                sched_yield();
            if (fails % 1024 == 0 && h_now_ns() > deadline)
                return -ETIMEDOUT;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Every id exactly once, nothing torn, each consumer in increasing order. */
static void verify(const uint32_t *seen, uint64_t n, const struct consumer_result *res,
                   unsigned consumers, int produced)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < consumers; i++) {
        const struct consumer_result *r = &res[i];
        cr_log_info("consumer %u: %llu messages", i, (unsigned long long)r->received);
        cr_assert_eq(r->opened, 1, "consumer %u could not open: %s", i,
                     shmring_strerror(r->opened));
        cr_assert_eq(r->torn, 0, "consumer %u got %llu torn messages", i,
                     (unsigned long long)r->torn);
        cr_assert_eq(r->foreign, 0, "consumer %u got %llu ids never pushed", i,
                     (unsigned long long)r->foreign);
        cr_assert_eq(r->disorder, 0, "consumer %u got %llu ids out of order", i,
                     (unsigned long long)r->disorder);
        cr_assert_eq(r->end, -EPIPE, "consumer %u ended with %s", i, shmring_strerror(r->end));
        total += r->received;
    }
    cr_assert_eq(produced, 0, "producer: %s", shmring_strerror(produced));
    h_check_exactly_once(seen, n);
    cr_assert_eq(total, n, "%llu deliveries for %llu messages", (unsigned long long)total,
                 (unsigned long long)n);
}

/* ---- Threads ------------------------------------------------------------ */

struct thread_arg {
    char name[64];
    uint32_t *seen;
    uint64_t n;
    uint64_t deadline;
    struct consumer_result *res;
};

static void *consumer_thread(void *p)
{
    struct thread_arg *a = p;
    shmring_t *c = NULL;
    int rc = shmring_open(a->name, SHMRING_CONSUMER, &c);
    a->res->opened = rc == 0 ? 1 : rc;
    if (rc < 0)
        return NULL;
    consume(c, a->seen, a->n, a->deadline, a->res);
    shmring_close(c);
    return NULL;
}

#define THREAD_CONSUMERS 4

Test(stress, one_producer_four_consumer_threads, .timeout = 600)
{
    h_arm_deadline(90);
    const uint64_t n = h_count(MESSAGES);
    char name[64];
    snprintf(name, sizeof name, "%s", test_name("sthreads"));
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = SLOT_SIZE, .flags = SHMRING_PRODUCER);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &p), 0);
    cr_log_info("%llu messages, backend %d", (unsigned long long)n, shmring_backend(p));
    uint32_t *seen = calloc(n, sizeof *seen);
    cr_assert_not_null(seen);
    struct consumer_result res[THREAD_CONSUMERS];
    struct thread_arg args[THREAD_CONSUMERS];
    pthread_t th[THREAD_CONSUMERS];
    memset(res, 0, sizeof res);
    uint64_t deadline = run_deadline();
    for (unsigned i = 0; i < THREAD_CONSUMERS; i++) {
        snprintf(args[i].name, sizeof args[i].name, "%s", name);
        args[i].seen = seen;
        args[i].n = n;
        args[i].deadline = deadline;
        args[i].res = &res[i];
        cr_assert_eq(pthread_create(&th[i], NULL, consumer_thread, &args[i]), 0);
    }
    uint64_t t0 = h_now_ns();
    int produced = produce(p, n, deadline);
    shmring_close(p); /* end of stream */
    for (unsigned i = 0; i < THREAD_CONSUMERS; i++)
        pthread_join(th[i], NULL);
    cr_log_info("%.2f s", (double)(h_now_ns() - t0) / 1e9);
    h_disarm_deadline();
    shmring_unlink(name);
    verify(seen, n, res, THREAD_CONSUMERS, produced);
    free(seen);
}

/* ---- Processes ---------------------------------------------------------- */

#define PROCESS_CONSUMERS 3

struct process_shared {
    int ready; /* consumers attached */
    struct consumer_result res[PROCESS_CONSUMERS];
};

Test(stress, one_producer_three_consumer_processes, .timeout = 600)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    h_arm_deadline(90);
    const uint64_t n = h_count(MESSAGES);
    char name[64];
    snprintf(name, sizeof name, "%s", test_name("sprocs"));
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = SLOT_SIZE, .flags = SHMRING_PRODUCER);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &p), 0);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_SHM);
    uint32_t *seen = test_shared_alloc(n * sizeof *seen);
    struct process_shared *sh = test_shared_alloc(sizeof *sh);
    memset(sh, 0, sizeof *sh);
    uint64_t deadline = run_deadline();
    pid_t pids[PROCESS_CONSUMERS];
    for (unsigned i = 0; i < PROCESS_CONSUMERS; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            h_arm_deadline(90);
            struct consumer_result *r = &sh->res[i];
            shmring_t *c = NULL;
            int rc = shmring_open(name, SHMRING_CONSUMER, &c);
            r->opened = rc == 0 ? 1 : rc;
            __atomic_fetch_add(&sh->ready, 1, __ATOMIC_RELEASE);
            if (rc < 0)
                _exit(2);
            consume(c, seen, n, deadline, r);
            shmring_close(c);
            _exit(0);
        }
    }
    /* Start once every consumer is attached, so that all of them compete. */
    while (__atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) < PROCESS_CONSUMERS &&
           h_now_ns() < deadline)
        h_sleep_us(1000);
    uint64_t t0 = h_now_ns();
    int produced = produce(p, n, deadline);
    shmring_close(p); /* end of stream */
    int status[PROCESS_CONSUMERS];
    for (unsigned i = 0; i < PROCESS_CONSUMERS; i++)
        status[i] = test_wait_child(pids[i]);
    cr_log_info("%.2f s", (double)(h_now_ns() - t0) / 1e9);
    h_disarm_deadline();
    shmring_unlink(name);
    for (unsigned i = 0; i < PROCESS_CONSUMERS; i++)
        cr_assert_eq(status[i], 0, "consumer process %u: status %d", i, status[i]);
    verify(seen, n, sh->res, PROCESS_CONSUMERS, produced);
    test_shared_free(sh, sizeof *sh);
    test_shared_free(seen, n * sizeof *seen);
}
