/* shmring_open_wait and shmring_state_open_wait: waiting for a name to appear. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

Test(open_wait, existing_objects_open_at_once)
{
    char name[128], tname[128];
    snprintf(name, sizeof name, "%s", test_name("ow"));
    snprintf(tname, sizeof tname, "%s", test_name("owt"));
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER), *c = NULL;
    shmring_state_t *t = NULL, *t2 = NULL;
    cr_assert_eq(shmring_state_create(tname, NULL, &t), 0);
    h_arm_deadline(20);
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER, -1, &c), 0);
    cr_assert_eq(shmring_state_open_wait(tname, 0, -1, &t2), 0);
    h_disarm_deadline();
    cr_assert_eq(shmring_push(p, "x", 1), 0);
    char buf[8];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), 1);
    cr_assert_eq(shmring_state_write(t, "k", "v", 1), 0);
    cr_assert_eq(shmring_state_read(t2, "k", buf, sizeof buf), 1);
    /* The other kind of object: the open's error, at once. */
    shmring_t *x = NULL;
    shmring_state_t *y = NULL;
    cr_assert_eq(shmring_open_wait(tname, SHMRING_CONSUMER, -1, &x), -EPROTOTYPE);
    cr_assert_eq(shmring_state_open_wait(name, 0, -1, &y), -EPROTOTYPE);
    /* And the open's role errors. */
    cr_assert_eq(shmring_open_wait(name, SHMRING_PRODUCER, -1, &x), -EBUSY);
    cr_assert_null(x);
    cr_assert_null(y);
    shmring_close(c);
    shmring_close(p);
    shmring_state_close(t2);
    shmring_state_close(t);
    shmring_unlink(name);
    shmring_state_unlink(tname);
}

Test(open_wait, timeouts_and_bad_input)
{
    const char *name = test_name("owbad");
    shmring_t *r = NULL;
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER, 0, &r), -ETIMEDOUT);
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER, 2000000, &r), -ETIMEDOUT);
    cr_assert_eq(shmring_state_open_wait(name, 0, 0, &s), -ETIMEDOUT);
    cr_assert_eq(shmring_state_open_wait(name, 0, 2000000, &s), -ETIMEDOUT);
    cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER, -1, NULL), -EINVAL);
    cr_assert_eq(shmring_open_wait(name, 0, -1, &r), -EINVAL, "no role");
    cr_assert_eq(shmring_open_wait(name, 0x80000000u | SHMRING_CONSUMER, -1, &r), -EINVAL);
    cr_assert_eq(shmring_open_wait(NULL, SHMRING_CONSUMER, -1, &r), -EINVAL);
    cr_assert_eq(shmring_open_wait("noslash", SHMRING_CONSUMER, -1, &r), -EINVAL);
    cr_assert_eq(shmring_open_wait("/a/b", SHMRING_CONSUMER, -1, &r), -EINVAL);
    cr_assert_eq(shmring_state_open_wait(name, 0, -1, NULL), -EINVAL);
    cr_assert_eq(shmring_state_open_wait(name, 0x80000000u, -1, &s), -EINVAL);
    cr_assert_eq(shmring_state_open_wait(NULL, 0, -1, &s), -EINVAL);
    cr_assert_eq(shmring_state_open_wait("noslash", 0, -1, &s), -EINVAL);
    cr_assert_null(r);
    cr_assert_null(s);
}

/* ---- Created while someone waits ---------------------------------------- */

struct later {
    const char *name;
    int table;
    int *waiting;
    shmring_t *r;
    shmring_state_t *s;
};

static void *create_later(void *arg)
{
    struct later *l = arg;
    while (!__atomic_load_n(l->waiting, __ATOMIC_ACQUIRE))
        sched_yield();
    h_sleep_ns(20000000); /* let the waiter sleep; right either way */
    if (l->table)
        cr_assert_eq(shmring_state_create(l->name, NULL, &l->s), 0);
    else
        l->r = test_make(l->name, 8, 64, SHMRING_PRODUCER);
    return NULL;
}

static void wait_for_thread(int table)
{
    char name[128];
    snprintf(name, sizeof name, "%s", test_name(table ? "owtt" : "owtr"));
    int waiting = 0;
    struct later l = {name, table, &waiting, NULL, NULL};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, create_later, &l), 0);
    h_arm_deadline(20);
    __atomic_store_n(&waiting, 1, __ATOMIC_RELEASE);
    shmring_t *r = NULL;
    shmring_state_t *s = NULL;
    int rc = table ? shmring_state_open_wait(name, 0, -1, &s)
                   : shmring_open_wait(name, SHMRING_CONSUMER, -1, &r);
    cr_assert_eq(rc, 0, "%s", shmring_strerror(rc));
    h_disarm_deadline();
    pthread_join(t, NULL);
    if (table) {
        cr_assert_eq(shmring_state_write(l.s, "k", "v", 1), 0);
        char buf[4];
        cr_assert_eq(shmring_state_read(s, "k", buf, sizeof buf), 1, "the same table");
        shmring_state_close(s);
        shmring_state_close(l.s);
        shmring_state_unlink(name);
    } else {
        cr_assert_eq(shmring_push(l.r, "y", 1), 0);
        char buf[4];
        cr_assert_eq(shmring_pop(r, buf, sizeof buf), 1, "the same ring");
        shmring_close(r);
        shmring_close(l.r);
        shmring_unlink(name);
    }
}

Test(open_wait, ring_created_by_a_thread)
{
    wait_for_thread(0);
}

Test(open_wait, table_created_by_a_thread)
{
    wait_for_thread(1);
}

Test(open_wait, created_by_another_process, .timeout = 60)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    for (int table = 0; table < 2; table++) {
        char name[128];
        snprintf(name, sizeof name, "%s", test_name("owp"));
        int *go = test_shared_alloc(sizeof *go);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            alarm(h_sanitized() ? 120 : 20);
            while (!__atomic_load_n(go, __ATOMIC_ACQUIRE))
                sched_yield();
            h_sleep_ns(20000000);
            if (table) {
                shmring_state_t *s;
                if (shmring_state_create(name, NULL, &s) != 0 ||
                    shmring_state_write(s, "k", "v", 1) != 0)
                    _exit(1);
                shmring_state_close(s);
            } else {
                shmring_t *p;
                shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64);
                if (shmring_create(name, &cfg, &p) != 0 || shmring_push(p, "z", 1) != 0)
                    _exit(1);
                /* Stay until the waiter attached: a consumer that attaches
                 * after the producer closed sees the end of the stream. */
                while (__atomic_load_n(go, __ATOMIC_ACQUIRE) != 2)
                    sched_yield();
                shmring_close(p);
            }
            _exit(0);
        }
        h_arm_deadline(20);
        __atomic_store_n(go, 1, __ATOMIC_RELEASE);
        char buf[4];
        if (table) {
            shmring_state_t *s = NULL;
            cr_assert_eq(shmring_state_open_wait(name, 0, -1, &s), 0);
            cr_assert_eq(test_wait_child(pid), 0);
            cr_assert_eq(shmring_state_read(s, "k", buf, sizeof buf), 1);
            shmring_state_close(s);
            shmring_state_unlink(name);
        } else {
            shmring_t *c = NULL;
            cr_assert_eq(shmring_open_wait(name, SHMRING_CONSUMER, -1, &c), 0);
            __atomic_store_n(go, 2, __ATOMIC_RELEASE);
            cr_assert_eq(test_wait_child(pid), 0);
            cr_assert_eq(shmring_pop(c, buf, sizeof buf), 1);
            shmring_close(c);
            shmring_unlink(name);
        }
        h_disarm_deadline();
        test_shared_free(go, sizeof *go);
    }
}
