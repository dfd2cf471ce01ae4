/* Crash scenarios for event descriptors (src/event.c): a consumer killed
 * while it arms its descriptor, a producer killed between clearing an armed
 * entry and sending its datagram (see fault_walk.h). */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

#if defined(SHMRING_FAULT_INJECTION)

#include <poll.h>

#include "event.h"
#include "kit.h"

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* The party entries whose descriptor is armed for data, as a bit set. */
static unsigned armed_entries(struct shmring__hdr *h)
{
    unsigned set = 0;
    for (unsigned i = 1; i < SHMRING__PARTIES; i++)
        if (__atomic_load_n(&h->party[i].counter[SHMRING__C_EVENT], __ATOMIC_ACQUIRE) &
            SHMRING__EVENT_ARM)
            set |= 1u << i;
    return set;
}

/* A consumer that makes a descriptor (which arms it). */
static int arming_consumer(void *arg)
{
    shmring_t *c;
    if (shmring_open(arg, SHMRING_CONSUMER, &c) != 0)
        return KIT_SETUP_FAILED;
    shmring_event_fd(c);
    return 0; /* not killed: the test fails on the status */
}

/* event.arm: the dead consumer's entry stays armed, with no SLEEPER flag:
 * no notifier looks until another party sleeps; then one datagram goes to
 * the dead socket, the ARM is cleared, and the producer pays nothing more
 * for it. A live descriptor keeps working throughout. */
static unsigned arm_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0; /* nothing shared with a child */
    char *name = kit_name("fev-arm");
    shmring_t *p = test_make(name, 8, 64, 0);
    kit_killed(arming_consumer, name, "event.arm:kill");
    struct shmring__hdr *h = kit_hdr(p);
    unsigned dead = armed_entries(h);
    cr_assert_neq(dead, 0, "the dead consumer's entry is armed");
    test_push_id(p, 0, 32); /* no sleeper yet: no notifier looks */
    cr_assert_eq(armed_entries(h), dead);

    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    cr_assert_geq(fd, 0);
    cr_assert(readable(fd, 0), "message 0 is there");
    kit_drain(c, 0, 1);
    test_push_id(p, 1, 32); /* the wake-up: both entries signalled */
    cr_assert(readable(fd, 0));
    cr_assert_eq(armed_entries(h) & dead, 0, "the dead entry was disarmed by the wake-up");
    kit_drain(c, 1, 2);
    for (uint64_t id = 2; id < 6; id++) {
        test_push_id(p, id, 32);
        cr_assert(readable(fd, 0));
        kit_drain(c, id, id + 1);
        cr_assert_eq(armed_entries(h) & dead, 0, "nobody re-arms a dead entry");
    }
    kit_unmap(h);
    kit_reconcile(c);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
    free(name);
    return 1;
}

/* A producer that pushes one message (its wake-up of the armed consumer). */
static int pushing_producer(void *arg)
{
    shmring_t *p;
    if (shmring_open(arg, SHMRING_PRODUCER, &p) != 0)
        return KIT_SETUP_FAILED;
    test_push_id(p, 0, 32);
    return 0;
}

/* event.send: the producer dies between taking the consumer's ARM and
 * sending: no datagram ever comes. The descriptor's periodic peer check
 * still makes it readable: the message published before the wake-up, then
 * the end of the stream (the producer is dead). */
static unsigned send_killed(const char *point)
{
    (void)point;
    if (test_heap_forced())
        return 0; /* nothing shared with a child */
    char *name = kit_name("fev-send");
    shmring_t *c = test_make(name, 8, 64, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    cr_assert_geq(fd, 0);
    cr_assert_not(readable(fd, 0));
    kit_killed(pushing_producer, name, "event.send:kill");
    char buf[64];
    int got = 0;
    ssize_t n = 0;
    for (int round = 0; round < 100 && n != -EPIPE; round++) {
        cr_assert(readable(fd, 30000), "never readable after the notifier died");
        while ((n = shmring_pop(c, buf, sizeof buf)) > 0) {
            test_expect_id(buf, n, 0);
            got++;
        }
        cr_assert(n == -EAGAIN || n == -EPIPE, "pop: %zd", n);
    }
    cr_assert_eq(got, 1, "the message published before the death");
    cr_assert_eq(n, -EPIPE, "the end of the stream");
    kit_reconcile(c);
    shmring_close(c);
    shmring_unlink(name);
    free(name);
    return 1;
}

const struct fault_scenario fault_event_scenarios[] = {
    {"event.arm", arm_killed},
    {"event.send", send_killed},
    {NULL, NULL},
};

#else

const struct fault_scenario fault_event_scenarios[] = {
    {NULL, NULL},
};

#endif
