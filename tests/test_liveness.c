/* Dead-producer detection across processes: a consumer sees -EPIPE soon after the producer dies. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define MSG_LEN  100u
#define WAIT_NS  2000000000LL /* each pop_wait of the consumer */
#define LIMIT_NS 1000000000LL /* a dead producer must be noticed well within this */

/* What the consumer saw, in shared memory. */
struct report {
    int opened;     /* 1 once the consumer holds its handle, or a negative errno */
    int first_ok;   /* the producer's message arrived intact */
    int done;       /* the second pop_wait returned */
    int second;     /* its result */
    int64_t waited; /* how long it took, ns */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Limit of the waits for the other process's progress: generous, since they
 * end as soon as it comes (slow machines, valgrind). */
#define FLAG_WAIT_MS 30000

/* Wait for *flag != 0 for at most ms milliseconds; returns it. */
static int wait_flag(int *flag, long ms)
{
    for (long i = 0; i < ms && __atomic_load_n(flag, __ATOMIC_ACQUIRE) == 0; i++)
        sleep_ms(1);
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

/* Consumer: take the one message, then time the wait that should end with -EPIPE. */
static int consumer(const char *name, struct report *rep, int retry_open)
{
    shmring_t *c = NULL;
    int rc;
    int64_t give_up = now_ns() + WAIT_NS;
    while ((rc = shmring_open(name, SHMRING_CONSUMER, &c)) == -ENOENT && retry_open &&
           now_ns() < give_up)
        sleep_ms(1);
    __atomic_store_n(&rep->opened, rc == 0 ? 1 : rc, __ATOMIC_RELEASE);
    if (rc < 0)
        return 1;
    unsigned char buf[256];
    uint64_t id = 0;
    ssize_t n = shmring_pop_wait(c, buf, sizeof buf, WAIT_NS);
    rep->first_ok = n == MSG_LEN && test_check(buf, (size_t)n, &id) && id == 42;
    __atomic_store_n(&rep->first_ok, rep->first_ok, __ATOMIC_RELEASE);
    int64_t t0 = now_ns();
    n = shmring_pop_wait(c, buf, sizeof buf, WAIT_NS);
    rep->waited = now_ns() - t0;
    rep->second = (int)n;
    __atomic_store_n(&rep->done, 1, __ATOMIC_RELEASE);
    shmring_close(c);
    return 0;
}

/* Producer: push one message, wait until it was taken, then die without closing. */
static void producer_then_die(shmring_t *p, struct report *rep)
{
    unsigned char buf[MSG_LEN];
    test_fill(buf, sizeof buf, 42);
    if (shmring_push(p, buf, sizeof buf) != 0)
        _exit(3);
    wait_flag(&rep->first_ok, FLAG_WAIT_MS);
    raise(SIGKILL);
}

/* Reap every process of the test (grandchildren are reparented to us). */
static void reap_all(void)
{
    int64_t deadline = now_ns() + 5 * 1000000000LL;
    while (now_ns() < deadline) {
        pid_t p = waitpid(-1, NULL, WNOHANG);
        if (p < 0)
            return;
        if (p == 0)
            sleep_ms(1);
    }
}

static void check_report(const struct report *rep, const char *how)
{
    cr_assert_eq(rep->opened, 1, "%s: consumer open: %s", how, shmring_strerror(rep->opened));
    cr_assert(rep->first_ok, "%s: the producer's message did not arrive intact", how);
    cr_assert(rep->done, "%s: the consumer's wait did not end", how);
    cr_assert_eq(rep->second, -EPIPE,
                 "%s: after the producer died, pop_wait returned %s after %lld ms instead of "
                 "-EPIPE within SHMRING_DEAD_PEER_NS",
                 how, shmring_strerror(rep->second), (long long)(rep->waited / 1000000));
    cr_assert_lt(rep->waited, LIMIT_NS, "%s: -EPIPE came only after %lld ms", how,
                 (long long)(rep->waited / 1000000));
}

/* The consumer is an unrelated process: it opens the ring by name. */
Test(liveness, producer_death_seen_by_unrelated_consumer, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("live-a"));
    struct report *rep = test_shared_alloc(sizeof *rep);
    memset(rep, 0, sizeof *rep);
    pid_t c = fork();
    cr_assert_geq(c, 0);
    if (c == 0)
        _exit(consumer(name, rep, 1));
    pid_t p = fork();
    cr_assert_geq(p, 0);
    if (p == 0) {
        shmring_t *r = NULL;
        if (shmring_create(name, NULL, &r) != 0)
            _exit(2);
        if (wait_flag(&rep->opened, FLAG_WAIT_MS) != 1)
            _exit(4);
        producer_then_die(r, rep);
    }
    int pst = test_wait_child(p);
    wait_flag(&rep->done, FLAG_WAIT_MS);
    int cst = test_wait_child(c);
    shmring_unlink(name);
    cr_assert_eq(pst, 128 + SIGKILL, "producer ended with status %d", pst);
    cr_assert_eq(cst, 0, "consumer ended with status %d", cst);
    check_report(rep, "unrelated consumer");
    test_shared_free(rep, sizeof *rep);
}

/*
 * The producer creates the ring, then forks its consumer (the usual way to
 * start workers). The child inherits the producer's descriptors of the
 * segment, and with them the open file description that holds the
 * producer's liveness lock, unless the library gives the child its own.
 */
static void forked_after_create(uint32_t create_flags, const char *how)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("live-b"));
    struct report *rep = test_shared_alloc(sizeof *rep);
    memset(rep, 0, sizeof *rep);
    pid_t p = fork();
    cr_assert_geq(p, 0);
    if (p == 0) {
        shmring_config_t cfg = SHMRING_CONFIG_INIT(.flags = SHMRING_PRODUCER | create_flags);
        shmring_t *r = NULL;
        if (shmring_create(name, &cfg, &r) != 0)
            _exit(2);
        pid_t c = fork();
        if (c < 0)
            _exit(5);
        if (c == 0)
            _exit(consumer(name, rep, 0));
        if (wait_flag(&rep->opened, FLAG_WAIT_MS) != 1)
            _exit(4);
        producer_then_die(r, rep);
    }
    int pst = test_wait_child(p);
    wait_flag(&rep->done, FLAG_WAIT_MS);
    reap_all();
    shmring_unlink(name);
    cr_assert_eq(pst, 128 + SIGKILL, "producer ended with status %d", pst);
    check_report(rep, how);
    test_shared_free(rep, sizeof *rep);
}

Test(liveness, producer_death_seen_by_consumer_forked_after_create, .timeout = 120)
{
    forked_after_create(0, "consumer forked by the producer");
}

/* The same with a named ring on the memfd backend (as after a fallback from
 * shm): the child opens it by name through the process-local registry. */
Test(liveness, producer_death_seen_by_consumer_forked_after_create_memfd, .timeout = 30)
{
    forked_after_create(SHMRING_FORCE_MEMFD, "consumer forked by the producer, memfd");
}
