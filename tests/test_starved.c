/*
 * Waits keep their bounds on a CPU they do not have to themselves: a waiter
 * pinned, at the lowest priority (nice 19), to the same CPU as busy-looping
 * processes still returns -ETIMEDOUT close to its timeout and -EPIPE close
 * to SHMRING_DEAD_PEER_NS after the producer's death, whatever its wait
 * strategy. The bounds checked are ten to forty times the promised ones:
 * a check of the header's promise on a loaded machine, not a measure of
 * speed (a yielding waiter used to take seconds here).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

#define MS            1000000ull
#define TIMEOUT_NS    (50 * MS)
#define TIMEOUT_BOUND (2000 * MS) /* 40x the timeout */
#define EPIPE_BOUND   (1000 * MS) /* 10x SHMRING_DEAD_PEER_NS */
#define HOGS          2

/* What the waiter child reports. */
struct report {
    int rc;
    uint64_t returned_ns;
    uint64_t started_ns;
    int waiting;
};

static int pick_cpu(void)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            return i;
    return 0;
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

static pid_t hog(int cpu)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(60);
        if (pin(cpu) != 0)
            _exit(2);
        for (volatile uint64_t i = 0;; i++)
            ;
    }
    return pid;
}

/* A consumer pinned to cpu at nice 19, waiting with `strategy` for
 * timeout_ns; reports what it got and when. */
static pid_t waiter(const char *name, int cpu, int strategy, int64_t timeout_ns, struct report *r)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(60);
        shmring_t *c;
        if (shmring_open(name, SHMRING_CONSUMER, &c) != 0)
            _exit(2);
        if (pin(cpu) != 0 || setpriority(PRIO_PROCESS, 0, 19) != 0)
            _exit(3);
        shmring_set_wait(c, strategy, 100);
        char buf[64];
        r->started_ns = h_now_ns();
        __atomic_store_n(&r->waiting, 1, __ATOMIC_RELEASE);
        r->rc = (int)shmring_pop_wait(c, buf, sizeof buf, timeout_ns);
        r->returned_ns = h_now_ns();
        shmring_close(c);
        _exit(0);
    }
    return pid;
}

static void stop_hogs(pid_t *h)
{
    for (int i = 0; i < HOGS; i++) {
        kill(h[i], SIGKILL);
        test_wait_child(h[i]);
    }
}

static void timeout_kept(int strategy)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("starve");
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    struct report *r = test_shared_alloc(sizeof *r);
    int cpu = pick_cpu();
    pid_t h[HOGS];
    for (int i = 0; i < HOGS; i++)
        h[i] = hog(cpu);
    pid_t w = waiter(name, cpu, strategy, (int64_t)TIMEOUT_NS, r);
    cr_assert_eq(test_wait_child(w), 0);
    stop_hogs(h);
    uint64_t took = r->returned_ns - r->started_ns;
    cr_log_info("strategy %d: a %llu ms timeout returned after %.1f ms", strategy,
                (unsigned long long)(TIMEOUT_NS / MS), (double)took / 1e6);
    cr_assert_eq(r->rc, -ETIMEDOUT);
    cr_assert_geq(took, TIMEOUT_NS);
    cr_assert_lt(took, TIMEOUT_BOUND, "a %llu ms timeout took %llu ms",
                 (unsigned long long)(TIMEOUT_NS / MS), (unsigned long long)(took / MS));
    test_shared_free(r, sizeof *r);
    shmring_close(p);
    shmring_unlink(name);
}

Test(starved, yield_wait_keeps_its_timeout, .timeout = 120)
{
    timeout_kept(SHMRING_WAIT_YIELD);
}

Test(starved, spin_wait_keeps_its_timeout, .timeout = 120)
{
    timeout_kept(SHMRING_WAIT_SPIN);
}

Test(starved, sleep_wait_keeps_its_timeout, .timeout = 120)
{
    timeout_kept(SHMRING_WAIT_SLEEP);
}

static void dead_peer_seen(int strategy)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("starvepipe");
    shmring_t *obs = test_make(name, 8, 64, SHMRING_OBSERVER);
    struct report *r = test_shared_alloc(sizeof *r);
    pid_t prod = fork();
    cr_assert_geq(prod, 0);
    if (prod == 0) {
        alarm(60);
        shmring_t *p;
        if (shmring_open(name, SHMRING_PRODUCER, &p) != 0)
            _exit(2);
        pause();
        _exit(0);
    }
    shmring_stats_t st;
    do {
        h_sleep_us(1000);
        cr_assert_eq(shmring_stats(obs, &st), 0);
    } while (!st.producer_alive);
    int cpu = pick_cpu();
    pid_t h[HOGS];
    for (int i = 0; i < HOGS; i++)
        h[i] = hog(cpu);
    pid_t w = waiter(name, cpu, strategy, -1, r);
    while (!__atomic_load_n(&r->waiting, __ATOMIC_ACQUIRE))
        h_sleep_us(1000);
    h_sleep_us(300 * 1000); /* well into the wait */
    kill(prod, SIGKILL);
    uint64_t died = h_now_ns();
    cr_assert_eq(test_wait_child(prod), 128 + SIGKILL);
    cr_assert_eq(test_wait_child(w), 0);
    stop_hogs(h);
    uint64_t after = r->returned_ns > died ? r->returned_ns - died : 0;
    cr_log_info("strategy %d: -EPIPE %.1f ms after the producer's death", strategy,
                (double)after / 1e6);
    cr_assert_eq(r->rc, -EPIPE);
    cr_assert_gt(r->returned_ns, died, "returned before the death");
    cr_assert_lt(after, EPIPE_BOUND, "-EPIPE came %llu ms after the death",
                 (unsigned long long)(after / MS));
    test_shared_free(r, sizeof *r);
    shmring_close(obs);
    shmring_unlink(name);
}

Test(starved, yield_wait_sees_a_dead_producer, .timeout = 120)
{
    dead_peer_seen(SHMRING_WAIT_YIELD);
}

Test(starved, spin_wait_sees_a_dead_producer, .timeout = 120)
{
    dead_peer_seen(SHMRING_WAIT_SPIN);
}

Test(starved, sleep_wait_sees_a_dead_producer, .timeout = 120)
{
    dead_peer_seen(SHMRING_WAIT_SLEEP);
}
