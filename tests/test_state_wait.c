/* State tables: key versions and waiting for a key to change, between threads and processes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

static shmring_state_t *make(const char *name, uint32_t entries, uint32_t value_size)
{
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = value_size);
    shmring_state_t *s = NULL;
    int rc = shmring_state_create(name, &cfg, &s);
    cr_assert_eq(rc, 0, "create %s: %s", name, shmring_strerror(rc));
    return s;
}

static void write_u64(shmring_state_t *s, const char *key, uint64_t v)
{
    int rc = shmring_state_write(s, key, &v, sizeof v);
    cr_assert_eq(rc, 0, "write %s: %s", key, shmring_strerror(rc));
}

/* Read a u64 value and its version; asserts success. */
static uint64_t read_u64(shmring_state_t *s, const char *key, uint64_t *version)
{
    uint64_t v = 0;
    ssize_t n = shmring_state_read_version(s, key, &v, sizeof v, version);
    cr_assert_eq(n, (ssize_t)sizeof v, "read %s: %zd", key, n);
    return v;
}

/* ---- Versions ---------------------------------------------------------------------- */

Test(state_wait, versions_change_with_every_write_and_delete)
{
    const char *name = test_name("ver");
    shmring_state_t *s = make(name, 16, 32);
    char buf[32];
    uint64_t v = 12345;
    cr_assert_eq(shmring_state_read_version(s, "k", buf, sizeof buf, &v), -ENOENT);
    cr_assert_eq(v, 0, "a missing key has version 0");

    write_u64(s, "k", 1);
    uint64_t v1 = 0;
    cr_assert_eq(read_u64(s, "k", &v1), 1);
    cr_assert_neq(v1, 0);
    /* Reading again does not change it. */
    uint64_t again = 0;
    read_u64(s, "k", &again);
    cr_assert_eq(again, v1);

    uint64_t prev = v1;
    for (uint64_t i = 2; i < 50; i++) {
        write_u64(s, "k", i);
        uint64_t vi = 0;
        cr_assert_eq(read_u64(s, "k", &vi), i);
        cr_assert_gt(vi, prev, "version grows with each write (%llu after %llu)",
                     (unsigned long long)vi, (unsigned long long)prev);
        prev = vi;
    }

    /* Another key's writes leave this key's version alone. */
    write_u64(s, "other", 7);
    uint64_t same = 0;
    read_u64(s, "k", &same);
    cr_assert_eq(same, prev);

    /* A value that does not fit: -EMSGSIZE, with the version of that value. */
    uint64_t small_v = 0;
    cr_assert_eq(shmring_state_read_version(s, "k", buf, 4, &small_v), -EMSGSIZE);
    cr_assert_eq(small_v, prev);

    /* NULL version: a plain read. */
    uint64_t x = 0;
    cr_assert_eq(shmring_state_read_version(s, "k", &x, sizeof x, NULL), (ssize_t)sizeof x);
    cr_assert_eq(x, 49);

    cr_assert_eq(shmring_state_delete(s, "k"), 0);
    v = 99;
    cr_assert_eq(shmring_state_read_version(s, "k", buf, sizeof buf, &v), -ENOENT);
    cr_assert_eq(v, 0);
    write_u64(s, "k", 100);
    uint64_t back = 0;
    read_u64(s, "k", &back);
    cr_assert_neq(back, 0);
    cr_assert_neq(back, prev, "a key written again after a delete has a new version");

    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(state_wait, argument_errors)
{
    const char *name = test_name("args");
    shmring_state_t *s = make(name, 16, 32);
    char buf[32], longkey[SHMRING_STATE_KEY_MAX + 2];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    uint64_t v = 77;
    write_u64(s, "k", 1);

    cr_assert_eq(shmring_state_read_version(NULL, "k", buf, sizeof buf, &v), -EINVAL);
    cr_assert_eq(shmring_state_read_version(s, NULL, buf, sizeof buf, &v), -EINVAL);
    cr_assert_eq(shmring_state_read_version(s, "", buf, sizeof buf, &v), -EINVAL);
    cr_assert_eq(shmring_state_read_version(s, longkey, buf, sizeof buf, &v), -EINVAL);
    cr_assert_eq(shmring_state_read_version(s, "k", NULL, 8, &v), -EINVAL);
    cr_assert_eq(v, 77, "a rejected call leaves *version alone");

    cr_assert_eq(shmring_state_wait(NULL, "k", 0, 0), -EINVAL);
    cr_assert_eq(shmring_state_wait(s, NULL, 0, 0), -EINVAL);
    cr_assert_eq(shmring_state_wait(s, "", 0, 0), -EINVAL);
    cr_assert_eq(shmring_state_wait(s, longkey, 0, 0), -EINVAL);

    /* A key of exactly SHMRING_STATE_KEY_MAX bytes is fine. */
    longkey[SHMRING_STATE_KEY_MAX] = '\0';
    cr_assert_eq(shmring_state_wait(s, longkey, 0, 0), -ETIMEDOUT);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(state_wait, returns_at_once_or_times_out)
{
    const char *name = test_name("now");
    shmring_state_t *s = make(name, 16, 32);
    /* Missing key, version 0: no change to wait for. */
    cr_assert_eq(shmring_state_wait(s, "k", 0, 0), -ETIMEDOUT);
    cr_assert_eq(shmring_state_wait(s, "k", 0, 1000000), -ETIMEDOUT);
    /* Missing key, another version: it differs already. */
    cr_assert_eq(shmring_state_wait(s, "k", 42, -1), 0);

    write_u64(s, "k", 1);
    uint64_t v = 0;
    read_u64(s, "k", &v);
    cr_assert_eq(shmring_state_wait(s, "k", 0, -1), 0, "the key appeared");
    cr_assert_eq(shmring_state_wait(s, "k", v, 0), -ETIMEDOUT);
    cr_assert_eq(shmring_state_wait(s, "k", v, 2000000), -ETIMEDOUT);
    /* Writes of other keys do not end the wait. */
    write_u64(s, "k2", 1);
    cr_assert_eq(shmring_state_wait(s, "k", v, 1000000), -ETIMEDOUT);
    write_u64(s, "k", 2);
    cr_assert_eq(shmring_state_wait(s, "k", v, -1), 0);
    cr_assert_eq(shmring_state_wait(s, "k", v, 0), 0);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

/* ---- Waking ------------------------------------------------------------------------ */

struct waker {
    shmring_state_t *s;
    const char *key;
    int *started; /* set by the waiter just before it waits */
    int action;   /* 0: write, 1: delete */
};

static void *wake_later(void *arg)
{
    struct waker *w = arg;
    while (!__atomic_load_n(w->started, __ATOMIC_ACQUIRE))
        sched_yield();
    /* Give the waiter time to fall asleep; the test is right either way. */
    h_sleep_ns(20000000);
    if (w->action == 0)
        write_u64(w->s, w->key, 5);
    else
        cr_assert_eq(shmring_state_delete(w->s, w->key), 0);
    return NULL;
}

static void wake_case(int action, const char *key, int present)
{
    const char *name = test_name("wake");
    shmring_state_t *s = make(name, 16, 32);
    uint64_t v = 0;
    if (present) {
        write_u64(s, key, 1);
        read_u64(s, key, &v);
    }
    int started = 0;
    struct waker w = {s, key, &started, action};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, wake_later, &w), 0);
    h_arm_deadline(20);
    __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
    cr_assert_eq(shmring_state_wait(s, key, v, -1), 0);
    h_disarm_deadline();
    pthread_join(t, NULL);
    uint64_t now = 1;
    char buf[32];
    ssize_t n = shmring_state_read_version(s, key, buf, sizeof buf, &now);
    cr_assert_neq(now, v);
    cr_assert(action == 0 ? n == 8 : n == -ENOENT);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(state_wait, a_write_wakes_a_sleeping_waiter)
{
    wake_case(0, "k", 1);
}

Test(state_wait, a_new_key_wakes_a_sleeping_waiter)
{
    wake_case(0, "new", 0);
}

Test(state_wait, a_delete_wakes_a_sleeping_waiter)
{
    wake_case(1, "k", 1);
}

/* ---- Lost wake-up stress ----------------------------------------------------------- */

/*
 * One writer bumps key "k" from 1 to n; each waiter reads it, waits for a
 * change, and reads again: every wait must end with a newer value and a
 * different version, and the last write must wake everyone (a waiter that
 * slept through a change would hang until the whole-test deadline). A
 * second writer churns other keys meanwhile: their writes share wait words
 * with "k" and cause spurious wake-ups.
 */
struct stress {
    uint64_t n;
    int stop_noise;
    int waiters;         /* how many waiters run */
    uint32_t at_last[8]; /* waiter i has read n - 1: the writer withholds n until all have */
    uint64_t waits[8];   /* waits that ended with a change, per waiter */
    uint64_t errors[8];  /* wrong results, per waiter */
};

/* Every waiter reads n - 1 before the writer writes n, so that each of
 * them waits at least once, however the threads are scheduled. */
static void await_waiters_at_last(struct stress *st)
{
    for (int i = 0; i < st->waiters; i++)
        while (!__atomic_load_n(&st->at_last[i], __ATOMIC_ACQUIRE))
            sched_yield(); /* bounded by the test's deadline */
}

static void stress_writer(shmring_state_t *s, struct stress *st)
{
    uint64_t n = st->n;
    for (uint64_t i = 1; i <= n; i++) {
        int rc;
        if (i == n)
            await_waiters_at_last(st);
        while ((rc = shmring_state_write(s, "k", &i, sizeof i)) == -EAGAIN)
            ;
        if (rc != 0)
            abort();
        if ((i & 255) == 0)
            sched_yield(); /* let waiters fall asleep now and then */
    }
}

static void stress_noise(shmring_state_t *s, struct stress *st)
{
    char key[16];
    for (uint64_t i = 0; !__atomic_load_n(&st->stop_noise, __ATOMIC_ACQUIRE); i++) {
        snprintf(key, sizeof key, "n%llu", (unsigned long long)(i % 32));
        if (shmring_state_write(s, key, &i, sizeof i) != 0 && i > 1000000000ull)
            break;
        if ((i & 63) == 0)
            sched_yield();
    }
}

static void stress_waiter(shmring_state_t *s, struct stress *st, int id)
{
    uint64_t have = 0, version = 0;
    for (;;) {
        uint64_t v = 0, ver = 0;
        ssize_t n = shmring_state_read_version(s, "k", &v, sizeof v, &ver);
        if (n == -ENOENT) {
            v = 0;
        } else if (n != (ssize_t)sizeof v) {
            st->errors[id]++;
            return;
        }
        if (ver != 0 && (v < have || (v == have && ver != version && have != 0)))
            st->errors[id]++; /* went back, or changed version without a write */
        have = v;
        version = ver;
        if (have >= st->n)
            return;
        if (have == st->n - 1)
            __atomic_store_n(&st->at_last[id], 1, __ATOMIC_RELEASE);
        int rc = shmring_state_wait(s, "k", version, -1);
        if (rc != 0) {
            st->errors[id]++;
            return;
        }
        st->waits[id]++;
        /* The wait returned: the version must differ now. */
        uint64_t after = 0, after_ver = 0;
        n = shmring_state_read_version(s, "k", &after, sizeof after, &after_ver);
        if (n != (ssize_t)sizeof after || after_ver == version || after <= have)
            st->errors[id]++;
    }
}

static void stress_verdict(struct stress *st, int waiters)
{
    for (int i = 0; i < waiters; i++) {
        cr_assert_eq(st->errors[i], 0, "waiter %d: %llu wrong results", i,
                     (unsigned long long)st->errors[i]);
        cr_assert_gt(st->waits[i], 0, "waiter %d never waited", i);
    }
}

struct stress_thread {
    shmring_state_t *s;
    struct stress *st;
    int id;
};

static void *waiter_thread(void *arg)
{
    struct stress_thread *t = arg;
    stress_waiter(t->s, t->st, t->id);
    return NULL;
}

static void *noise_thread(void *arg)
{
    struct stress_thread *t = arg;
    stress_noise(t->s, t->st);
    return NULL;
}

Test(state_wait, no_lost_wake_ups_threads, .timeout = 120)
{
    enum { WAITERS = 3 };
    const char *name = test_name("sthr");
    shmring_state_t *s = make(name, 64, 16);
    struct stress st = {.n = h_count(20000), .waiters = WAITERS};
    h_arm_deadline(60);
    pthread_t w[WAITERS], noise;
    struct stress_thread args[WAITERS + 1];
    for (int i = 0; i < WAITERS; i++) {
        args[i] = (struct stress_thread){s, &st, i};
        cr_assert_eq(pthread_create(&w[i], NULL, waiter_thread, &args[i]), 0);
    }
    args[WAITERS] = (struct stress_thread){s, &st, 0};
    cr_assert_eq(pthread_create(&noise, NULL, noise_thread, &args[WAITERS]), 0);
    stress_writer(s, &st);
    for (int i = 0; i < WAITERS; i++)
        pthread_join(w[i], NULL);
    __atomic_store_n(&st.stop_noise, 1, __ATOMIC_RELEASE);
    pthread_join(noise, NULL);
    h_disarm_deadline();
    stress_verdict(&st, WAITERS);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

/* A child: open the table, run fn, exit 0 (or die of its own deadline). */
static pid_t spawn(const char *name, struct stress *st, int role, int id)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid != 0)
        return pid;
    alarm(h_sanitized() ? 360 : 60);
    shmring_state_t *s = NULL;
    if (shmring_state_open(name, 0, &s) != 0)
        _exit(2);
    if (role == 0)
        stress_writer(s, st);
    else if (role == 1)
        stress_waiter(s, st, id);
    else
        stress_noise(s, st);
    shmring_state_close(s);
    _exit(0);
}

Test(state_wait, no_lost_wake_ups_processes, .timeout = 240)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    enum { WAITERS = 3 };
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("sproc"));
    shmring_state_t *s = make(name, 64, 16);
    struct stress *st = test_shared_alloc(sizeof *st);
    st->n = h_count(20000);
    st->waiters = WAITERS;
    h_arm_deadline(90);
    pid_t waiters[WAITERS];
    for (int i = 0; i < WAITERS; i++)
        waiters[i] = spawn(name, st, 1, i);
    pid_t noise = spawn(name, st, 2, 0);
    pid_t writer = spawn(name, st, 0, 0);
    cr_assert_eq(test_wait_child(writer), 0, "writer");
    for (int i = 0; i < WAITERS; i++)
        cr_assert_eq(test_wait_child(waiters[i]), 0, "waiter %d", i);
    __atomic_store_n(&st->stop_noise, 1, __ATOMIC_RELEASE);
    cr_assert_eq(test_wait_child(noise), 0, "noise writer");
    h_disarm_deadline();
    stress_verdict(st, WAITERS);
    uint64_t ver = 0;
    cr_assert_eq(read_u64(s, "k", &ver), st->n);
    test_shared_free(st, sizeof *st);
    shmring_state_close(s);
    shmring_state_unlink(name);
}
