/* Ring basics: FIFO, empty/full, sizes, EMSGSIZE both ways, roles, lease, config, errors. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

#include "common.h"

Test(ring, fifo_single_handle_roles)
{
    const char *name = test_name("fifo");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(shmring_push(p, &i, sizeof i), 0);
    int x = 99;
    cr_assert_eq(shmring_push(p, &x, sizeof x), -EAGAIN);
    for (int i = 0; i < 8; i++) {
        int v = -1;
        cr_assert_eq(shmring_pop(c, &v, sizeof v), (ssize_t)sizeof v);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(shmring_pop(c, &x, sizeof x), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
}

Test(ring, every_size)
{
    const char *name = test_name("sizes");
    shmring_t *p = test_make(name, 4, 300, SHMRING_PRODUCER | SHMRING_CONSUMER);
    unsigned char in[300], out[300];
    for (size_t len = 0; len <= 300; len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char)(len * 7 + i);
        cr_assert_eq(shmring_push(p, in, len), 0);
        memset(out, 0xee, sizeof out);
        cr_assert_eq(shmring_pop(p, out, sizeof out), (ssize_t)len);
        cr_assert(memcmp(in, out, len) == 0);
    }
    cr_assert_eq(shmring_push(p, in, 301), -EMSGSIZE);
    cr_assert_eq(shmring_push(p, in, 10), 0);
    cr_assert_eq(shmring_pop(p, out, 9), -EMSGSIZE);
    cr_assert_eq(shmring_pop(p, out, 10), 10);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Helpers ------------------------------------------------------------ */

static void push_id(shmring_t *p, uint64_t id)
{
    unsigned char buf[512];
    size_t len = test_len_of(id, shmring_slot_size(p));
    cr_assert_leq(len, sizeof buf);
    test_fill(buf, len, id);
    int rc = shmring_push(p, buf, len);
    cr_assert_eq(rc, 0, "push %llu: %s", (unsigned long long)id, shmring_strerror(rc));
}

static void pop_id(shmring_t *c, uint64_t id)
{
    unsigned char buf[512];
    ssize_t n = shmring_pop(c, buf, sizeof buf);
    cr_assert_eq(n, (ssize_t)test_len_of(id, shmring_slot_size(c)), "pop %llu: %zd (%s)",
                 (unsigned long long)id, n, shmring_strerror((int)n));
    uint64_t got = UINT64_MAX;
    cr_assert(test_check(buf, (size_t)n, &got), "message %llu torn", (unsigned long long)id);
    cr_assert_eq(got, id, "expected id %llu, got %llu", (unsigned long long)id,
                 (unsigned long long)got);
}

/* A producer and a consumer handle on one fresh named ring. */
static void pair(const char *name, uint32_t slots, uint32_t slot_size, shmring_t **p, shmring_t **c)
{
    *p = test_make(name, slots, slot_size, SHMRING_PRODUCER);
    int rc = shmring_open(name, SHMRING_CONSUMER, c);
    cr_assert_eq(rc, 0, "open consumer: %s", shmring_strerror(rc));
}

static void unpair(const char *name, shmring_t *p, shmring_t *c)
{
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
}

/* ---- FIFO, empty, full ------------------------------------------------------ */

Test(ring, fifo_across_many_wraps)
{
    const char *name = test_name("wrap");
    shmring_t *p, *c;
    pair(name, 8, 64, &p, &c);
    uint64_t next_push = 0, next_pop = 0;
    /* Uneven bursts so that the ring fills and drains at every offset. */
    for (unsigned round = 0; round < 3000; round++) {
        unsigned in = 1 + round % 8, out = 1 + (round * 5) % 8;
        for (unsigned i = 0; i < in && next_push - next_pop < 8; i++)
            push_id(p, next_push++);
        for (unsigned i = 0; i < out && next_pop < next_push; i++)
            pop_id(c, next_pop++);
    }
    while (next_pop < next_push)
        pop_id(c, next_pop++);
    cr_assert_gt(next_push, 8 * 1000, "only %llu messages: too few wraps",
                 (unsigned long long)next_push);
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    unpair(name, p, c);
}

Test(ring, empty_and_full_exactly_at_slots)
{
    const uint32_t sizes[] = {2, 4, 16, 1024};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint32_t slots = sizes[k];
        const char *name = test_name("full");
        shmring_t *p, *c;
        pair(name, slots, 32, &p, &c);
        cr_assert_eq(shmring_slots(p), slots);
        unsigned char buf[64];
        test_fill(buf, 32, 7);
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "new ring not empty");
        for (uint32_t i = 0; i < slots; i++)
            push_id(p, i);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(shmring_push(p, buf, 20), -EAGAIN, "%u slots took %u messages", slots,
                         slots + 1);
        /* One out makes exactly one room. */
        pop_id(c, 0);
        push_id(p, slots);
        cr_assert_eq(shmring_push(p, buf, 20), -EAGAIN);
        for (uint32_t i = 1; i <= slots; i++)
            pop_id(c, i);
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
        /* And full again after a wrap. */
        for (uint32_t i = 0; i < slots; i++)
            push_id(p, 100 + i);
        cr_assert_eq(shmring_push(p, buf, 0), -EAGAIN);
        for (uint32_t i = 0; i < slots; i++)
            pop_id(c, 100 + i);
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
        unpair(name, p, c);
    }
}

/* ---- Sizes --------------------------------------------------------------------- */

Test(ring, every_size_with_contents_in_flight)
{
    const char *name = test_name("allsizes");
    const uint32_t ss = 200;
    shmring_t *p, *c;
    pair(name, 16, ss, &p, &c);
    unsigned char in[256], out[256], want[256];
    /* Up to 16 messages in flight, so that sizes of neighbours differ. */
    size_t next_push = 0, next_pop = 0;
    while (next_pop <= ss) {
        while (next_push <= ss && next_push - next_pop < 16) {
            test_fill(in, next_push, next_push);
            cr_assert_eq(shmring_push(p, in, next_push), 0, "push size %zu", next_push);
            next_push++;
        }
        memset(out, 0xa5, sizeof out);
        ssize_t n = shmring_pop(c, out, sizeof out);
        cr_assert_eq(n, (ssize_t)next_pop, "size %zu came out as %zd", next_pop, n);
        test_fill(want, next_pop, next_pop);
        cr_assert(memcmp(out, want, next_pop) == 0, "size %zu: contents differ", next_pop);
        for (size_t i = next_pop; i < sizeof out; i++)
            cr_assert_eq(out[i], 0xa5, "size %zu: wrote past the message at %zu", next_pop, i);
        next_pop++;
    }
    /* Exactly slot_size into a buffer of exactly slot_size. */
    test_fill(in, ss, 4242);
    cr_assert_eq(shmring_push(p, in, ss), 0);
    cr_assert_eq(shmring_pop(c, out, ss), (ssize_t)ss);
    uint64_t id;
    cr_assert(test_check(out, ss, &id) && id == 4242);
    unpair(name, p, c);
}

Test(ring, emsgsize_on_push)
{
    const char *name = test_name("bigpush");
    shmring_t *p, *c;
    pair(name, 4, 100, &p, &c);
    static unsigned char big[4096];
    cr_assert_eq(shmring_push(p, big, 101), -EMSGSIZE);
    cr_assert_eq(shmring_push(p, big, sizeof big), -EMSGSIZE);
    cr_assert_eq(shmring_push(p, big, SIZE_MAX), -EMSGSIZE);
    cr_assert_eq(shmring_push(p, big, (size_t)UINT32_MAX + 1), -EMSGSIZE);
    /* Nothing was pushed, no slot was used. */
    cr_assert_eq(shmring_pop(c, big, sizeof big), -EAGAIN);
    for (uint64_t i = 0; i < 4; i++)
        push_id(p, i);
    cr_assert_eq(shmring_push(p, big, 101), -EMSGSIZE, "full ring: length checked first");
    for (uint64_t i = 0; i < 4; i++)
        pop_id(c, i);
    cr_assert_eq(shmring_pop(c, big, sizeof big), -EAGAIN);
    unpair(name, p, c);
}

Test(ring, emsgsize_on_pop_keeps_the_message)
{
    const char *name = test_name("smallbuf");
    shmring_t *p, *c;
    pair(name, 8, 128, &p, &c);
    shmring_t *c2;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c2), 0);
    unsigned char in[128], out[128];
    test_fill(in, 100, 1);
    cr_assert_eq(shmring_push(p, in, 100), 0);
    push_id(p, 2);
    for (size_t cap = 0; cap < 100; cap += 33) {
        memset(out, 0x5a, sizeof out);
        cr_assert_eq(shmring_pop(c, out, cap), -EMSGSIZE, "cap %zu", cap);
        for (size_t i = 0; i < sizeof out; i++)
            cr_assert_eq(out[i], 0x5a, "a refused pop wrote into the buffer");
    }
    cr_assert_eq(shmring_pop(c, out, 99), -EMSGSIZE);
    cr_assert_eq(shmring_pop(c2, out, 99), -EMSGSIZE, "another consumer");
    cr_assert_eq(shmring_pop(c, NULL, 0), -EMSGSIZE);
    /* Still there, whole, for a big enough buffer, then the next in order. */
    cr_assert_eq(shmring_pop(c2, out, 100), 100);
    uint64_t id;
    cr_assert(test_check(out, 100, &id) && id == 1);
    pop_id(c, 2);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN);
    shmring_close(c2);
    unpair(name, p, c);
}

Test(ring, zero_length_messages)
{
    const char *name = test_name("zero");
    shmring_t *p, *c;
    pair(name, 8, 64, &p, &c);
    unsigned char buf[64];
    cr_assert_eq(shmring_push(p, NULL, 0), 0);
    push_id(p, 1);
    cr_assert_eq(shmring_push(p, buf, 0), 0);
    cr_assert_eq(shmring_push(p, NULL, 0), 0);
    push_id(p, 2);
    cr_assert_eq(shmring_pop(c, NULL, 0), 0, "zero-length message into NULL, cap 0");
    pop_id(c, 1);
    memset(buf, 0x77, sizeof buf);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), 0);
    cr_assert_eq(buf[0], 0x77, "a zero-length pop wrote into the buffer");
    cr_assert_eq(shmring_pop(c, buf, 0), 0);
    /* NULL with cap 0 refuses a non-empty message without taking it. */
    cr_assert_eq(shmring_pop(c, NULL, 0), -EMSGSIZE);
    pop_id(c, 2);
    cr_assert_eq(shmring_pop(c, NULL, 0), -EAGAIN);
    /* NULL with a length is a bad argument and changes nothing. */
    cr_assert_eq(shmring_push(p, NULL, 5), -EINVAL);
    cr_assert_eq(shmring_pop(c, NULL, 5), -EINVAL);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    /* A ring full of empty messages. */
    for (int i = 0; i < 8; i++)
        cr_assert_eq(shmring_push(p, NULL, 0), 0);
    cr_assert_eq(shmring_push(p, NULL, 0), -EAGAIN);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(shmring_pop(c, NULL, 0), 0);
    cr_assert_eq(shmring_pop(c, NULL, 0), -EAGAIN);
    unpair(name, p, c);
}

/* ---- Roles and flags -------------------------------------------------------------- */

Test(ring, roles)
{
    const char *name = test_name("roles");
    shmring_t *p, *c, *o;
    pair(name, 8, 64, &p, &c);
    cr_assert_eq(shmring_open(name, SHMRING_OBSERVER, &o), 0);
    unsigned char buf[64];
    push_id(p, 0);
    cr_assert_eq(shmring_push(c, buf, 16), -EPERM, "push on a consumer-only handle");
    cr_assert_eq(shmring_pop(p, buf, sizeof buf), -EPERM, "pop on a producer-only handle");
    cr_assert_eq(shmring_push(o, buf, 16), -EPERM, "push on an observer");
    cr_assert_eq(shmring_pop(o, buf, sizeof buf), -EPERM, "pop on an observer");
    cr_assert_eq(shmring_push(c, NULL, 0), -EPERM);
    cr_assert_eq(shmring_pop(p, NULL, 0), -EPERM);
    /* None of that changed the ring. */
    pop_id(c, 0);
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_t *x = (shmring_t *)(uintptr_t)0x1;
    cr_assert_eq(shmring_open(name, 0, &x), -EINVAL, "open with no role");
    cr_assert_eq(shmring_open(name, SHMRING_ALLOW_INSECURE, &x), -EINVAL, "no role");
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | 0x40000000u, &x), -EINVAL, "unknown flag");
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | 0x0008u, &x), -EINVAL, "unknown flag");
    cr_assert_eq(x, (shmring_t *)(uintptr_t)0x1, "a failed open wrote *out");
    shmring_close(o);
    unpair(name, p, c);
}

Test(ring, create_without_role_is_producer)
{
    char name[64], name2[64];
    snprintf(name, sizeof name, "%s", test_name("norole"));
    snprintf(name2, sizeof name2, "%s", test_name("norole"));
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &p), 0);
    push_id(p, 0);
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(p, buf, sizeof buf), -EPERM);
    shmring_t *q = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &q), -EBUSY, "creator holds the lease");
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    pop_id(c, 0);
    shmring_close(c);
    shmring_close(p);
    /* NULL config: producer too. */
    cr_assert_eq(shmring_create(name2, NULL, &p), 0);
    push_id(p, 0);
    cr_assert_eq(shmring_pop(p, buf, sizeof buf), -EPERM);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
    cr_assert_eq(shmring_unlink(name2), 0);
}

Test(ring, producer_and_consumer_in_one_handle)
{
    const char *name = test_name("both");
    shmring_t *r = test_make(name, 4, 64, SHMRING_PRODUCER | SHMRING_CONSUMER);
    for (uint64_t i = 0; i < 100; i++) {
        push_id(r, i);
        pop_id(r, i);
    }
    shmring_close(r);
    cr_assert_eq(shmring_unlink(name), 0);
}

/* ---- The producer lease --------------------------------------------------------- */

Test(ring, second_producer_busy_until_first_closes)
{
    const char *name = test_name("lease");
    shmring_t *p, *c;
    pair(name, 16, 64, &p, &c);
    push_id(p, 0);
    shmring_t *q = (shmring_t *)(uintptr_t)0x1;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &q), -EBUSY);
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER | SHMRING_CONSUMER, &q), -EBUSY);
    cr_assert_eq(q, (shmring_t *)(uintptr_t)0x1);
    /* The first producer is unaffected. */
    push_id(p, 1);
    shmring_close(p);
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &q), 0, "lease free after close");
    shmring_t *q2 = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &q2), -EBUSY);
    /* The stream continues where the first left it. */
    push_id(q, 2);
    pop_id(c, 0);
    pop_id(c, 1);
    pop_id(c, 2);
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_close(q);
    shmring_close(c);
    cr_assert_eq(shmring_unlink(name), 0);
}

struct lease_child {
    int state; /* 1: holds the lease and pushed; 2: told to die */
    int error;
};

Test(ring, killed_producer_lease_taken_over, .timeout = 60)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    const char *name = test_name("killed");
    const uint64_t first = 150, second = 150;
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 256, .slot_size = 64, .flags = SHMRING_CONSUMER);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &c), 0);
    struct lease_child *sh = test_shared_alloc(sizeof *sh);
    memset(sh, 0, sizeof *sh);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *p = NULL;
        int rc = shmring_open(name, SHMRING_PRODUCER, &p);
        unsigned char buf[64];
        for (uint64_t id = 0; rc == 0 && id < first; id++) {
            size_t len = test_len_of(id, 64);
            test_fill(buf, len, id);
            rc = shmring_push(p, buf, len);
        }
        if (rc < 0) {
            sh->error = rc;
            _exit(2);
        }
        __atomic_store_n(&sh->state, 1, __ATOMIC_RELEASE);
        /* Die holding the lease once told to (or after a deadline). */
        for (int i = 0; i < 10000 && __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != 2; i++)
            usleep(1000);
        raise(SIGKILL);
        _exit(3);
    }
    for (int i = 0; i < 10000 && __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) == 0; i++) {
        if (sh->error != 0)
            break;
        usleep(1000);
    }
    int state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
    shmring_t *q = NULL;
    int busy = state == 1 ? shmring_open(name, SHMRING_PRODUCER, &q) : 0;
    __atomic_store_n(&sh->state, 2, __ATOMIC_RELEASE);
    int st = test_wait_child(pid);
    cr_assert_eq(state, 1, "child producer failed: %s", shmring_strerror(sh->error));
    cr_assert_eq(busy, -EBUSY, "second producer while the first lives: %s", shmring_strerror(busy));
    cr_assert_eq(st, 128 + SIGKILL, "child status %d", st);
    /* Some of the dead producer's messages are taken before the takeover. */
    for (uint64_t id = 0; id < 50; id++)
        pop_id(c, id);
    int rc = shmring_open(name, SHMRING_PRODUCER, &q);
    cr_assert_eq(rc, 0, "lease of a killed producer: %s", shmring_strerror(rc));
    for (uint64_t id = first; id < first + second; id++)
        push_id(q, id);
    for (uint64_t id = 50; id < first + second; id++)
        pop_id(c, id);
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "a message was duplicated");
    shmring_close(q);
    shmring_close(c);
    cr_assert_eq(shmring_unlink(name), 0);
    test_shared_free(sh, sizeof *sh);
}

/* ---- Configuration ----------------------------------------------------------------- */

Test(ring, defaults)
{
    const char *name = test_name("defaults");
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create(name, NULL, &p), 0);
    cr_assert_eq(shmring_slots(p), 1024);
    cr_assert_eq(shmring_slot_size(p), 256);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    cr_assert_eq(shmring_slots(c), 1024);
    cr_assert_eq(shmring_slot_size(c), 256);
    /* 1024 messages of up to 256 bytes fit, not one more. */
    unsigned char buf[257];
    for (uint64_t id = 0; id < 1024; id++) {
        test_fill(buf, 256, id);
        cr_assert_eq(shmring_push(p, buf, 256), 0);
    }
    cr_assert_eq(shmring_push(p, buf, 16), -EAGAIN);
    cr_assert_eq(shmring_push(p, buf, 257), -EMSGSIZE);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);

    shmring_config_t zero = SHMRING_CONFIG_INIT();
    cr_assert_eq(shmring_create(name, &zero, &p), 0);
    cr_assert_eq(shmring_slots(p), 1024);
    cr_assert_eq(shmring_slot_size(p), 256);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);

    shmring_config_t some = SHMRING_CONFIG_INIT(.slots = 0, .slot_size = 40);
    cr_assert_eq(shmring_create(name, &some, &p), 0);
    cr_assert_eq(shmring_slots(p), 1024);
    cr_assert_eq(shmring_slot_size(p), 40);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
}

Test(ring, bad_configs)
{
    const shmring_config_t bad[] = {
        SHMRING_CONFIG_INIT(.slots = 1, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 3, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 6, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 1000, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 1u << 25, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = UINT32_MAX, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 1u << 31, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = SHMRING_MAX_SLOT_SIZE + 1),
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = UINT32_MAX),
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .flags = 0x80000000u),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *name = test_name("badcfg");
        shmring_t *r = (shmring_t *)(uintptr_t)0x1;
        int rc = shmring_create(name, &bad[i], &r);
        cr_assert_eq(rc, -EINVAL, "config #%zu (slots %u, slot_size %u): %s", i, bad[i].slots,
                     bad[i].slot_size, shmring_strerror(rc));
        cr_assert_eq(r, (shmring_t *)(uintptr_t)0x1);
        cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &r), -ENOENT,
                     "a refused config left a ring");
        cr_assert_eq(shmring_create(NULL, &bad[i], &r), -EINVAL, "anonymous, config #%zu", i);
    }
    /* The limits themselves are accepted. */
    shmring_config_t two = SHMRING_CONFIG_INIT(.slots = 2, .slot_size = 8);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(NULL, &two, &r), 0);
    cr_assert_eq(shmring_slots(r), 2);
    shmring_close(r);
}

/* ---- Errors and version --------------------------------------------------------------- */

Test(ring, strerror_covers_documented_errors)
{
    const int errs[] = {EINVAL,     EEXIST,     ENOSPC, ENOMEM,    EMFILE,  ENFILE,
                        ENOENT,     EACCES,     ELOOP,  EAGAIN,    EPROTO,  EPROTONOSUPPORT,
                        EPROTOTYPE, EBUSY,      EUSERS, EBADF,     ENOTSUP, EPERM,
                        EMSGSIZE,   EOWNERDEAD, EPIPE,  ETIMEDOUT, ESTALE};
    const size_t n = sizeof errs / sizeof errs[0];
    for (size_t i = 0; i < n; i++) {
        const char *a = shmring_strerror(-errs[i]);
        cr_assert_not_null(a, "errno %d", errs[i]);
        cr_assert_gt(strlen(a), 0, "errno %d", errs[i]);
        const char *b = shmring_strerror(errs[i]);
        cr_assert_not_null(b);
        cr_assert_str_eq(a, b, "negative and positive errno %d differ", errs[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(a, shmring_strerror(-errs[j]), "errno %d and %d share text", errs[i],
                              errs[j]);
    }
    const char *ok = shmring_strerror(0);
    cr_assert_not_null(ok);
    cr_assert_gt(strlen(ok), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_neq(ok, shmring_strerror(-errs[i]));
    /* Values nobody documents still get text. */
    cr_assert_not_null(shmring_strerror(-99999));
    cr_assert_not_null(shmring_strerror(99999));
}

Test(ring, version)
{
    const char *v = shmring_version();
    cr_assert_not_null(v);
    cr_assert_str_eq(v, SHMRING_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", SHMRING_VERSION_MAJOR, SHMRING_VERSION_MINOR,
             SHMRING_VERSION_PATCH);
    cr_assert_str_eq(v, want);
}
