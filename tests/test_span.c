/* Messages larger than a slot: a ring created with max_message above its slot size. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "ring.h"
#include "segment.h"

#define SLOTS     16u
#define SLOT_SIZE 64u
#define MAX_MSG   512u /* SLOTS * SLOT_SIZE / 2 */

static shmring_t *make_span(const char *name, uint32_t slots, uint32_t slot_size, uint32_t max,
                            uint32_t flags)
{
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = slots, .slot_size = slot_size,
                                               .flags = flags, .max_message = max);
    shmring_t *r = NULL;
    int rc = shmring_create(name, &cfg, &r);
    cr_assert_eq(rc, 0, "create: %s", shmring_strerror(rc));
    return r;
}

/* Message `id` of len bytes: checksummed (test_fill) from 16 bytes; below
 * that, bytes derived from the id, checked by comparing with a fresh fill. */
static void fill_msg(unsigned char *buf, size_t len, uint64_t id)
{
    test_fill(buf, len, id);
}

static void expect_msg(const unsigned char *buf, size_t len, uint64_t id, size_t want_len)
{
    cr_assert_eq(len, want_len, "id %llu: length %zu, expected %zu", (unsigned long long)id, len,
                 want_len);
    static unsigned char ref[1 << 16];
    cr_assert(len <= sizeof ref);
    fill_msg(ref, len, id);
    cr_assert(memcmp(buf, ref, len) == 0, "id %llu: torn or wrong bytes (len %zu)",
              (unsigned long long)id, len);
}

/* ---- Configuration ------------------------------------------------------ */

Test(span, config_limits)
{
    const char *name = test_name("cfg");
    shmring_t *r = NULL;
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64);
    /* Above half the ring's bytes. */
    cfg.max_message = 16 * 64 / 2 + 1;
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    /* Below the slot size (but not 0). */
    cfg.max_message = 63;
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    cfg.max_message = 1;
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    /* Redelivery hands out slots as they are: no spanning messages with it. */
    cfg.max_message = 128;
    cfg.flags = SHMRING_REDELIVER;
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    cfg.max_message = 64;
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    shmring_close(r);
    shmring_unlink(name);
    cfg.flags = 0;
    /* Subscribers read slot by slot: not on a ring whose messages span. */
    cfg.max_message = 128;
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    shmring_t *sub = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_SUBSCRIBER, &sub), -EINVAL);
    shmring_close(r);
    shmring_unlink(name);
    /* No slot bytes: only 0 (or 0 == slot_size). */
    cfg = (shmring_config_t)SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 0, .max_message = 16);
    cr_assert_eq(shmring_create(name, &cfg, &r), -EINVAL);
    cr_assert_eq(shmring_create(name, NULL, NULL), -EINVAL);
    /* 0 and slot_size: no spanning. */
    cfg = (shmring_config_t)SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64, .max_message = 0);
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    cr_assert_eq(shmring_max_message(r), 64);
    unsigned char buf[65] = {0};
    cr_assert_eq(shmring_push(r, buf, 65), -EMSGSIZE);
    shmring_close(r);
    shmring_unlink(name);
    cfg.max_message = 64;
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    cr_assert_eq(shmring_max_message(r), 64);
    shmring_close(r);
    shmring_unlink(name);
    /* Exactly half. */
    r = make_span(name, 16, 64, 512, 0);
    cr_assert_eq(shmring_max_message(r), 512);
    cr_assert_eq(shmring_slot_size(r), 64, "slot_size keeps its meaning");
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(r, &st), 0);
    cr_assert_eq(st.max_message, 512);
    cr_assert_eq(st.slot_size, 64);
    cr_assert_eq(shmring_max_message(NULL), 0);
    /* An opener sees it too. */
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    cr_assert_eq(shmring_max_message(c), 512);
    shmring_close(c);
    shmring_close(r);
    shmring_unlink(name);
}

Test(span, open_existing_compares_max_message)
{
    const char *name = test_name("oe");
    shmring_t *r = make_span(name, 16, 64, 256, SHMRING_CONSUMER);
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64, .max_message = 512,
                                               .flags = SHMRING_PRODUCER | SHMRING_OPEN_EXISTING);
    shmring_t *o = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &o), -EEXIST);
    cfg.max_message = 0;
    cr_assert_eq(shmring_create(name, &cfg, &o), -EEXIST);
    cfg.max_message = 256;
    cr_assert_eq(shmring_create(name, &cfg, &o), 0);
    cr_assert_eq(shmring_max_message(o), 256);
    shmring_close(o);
    shmring_close(r);
    shmring_unlink(name);
}

/* A corrupt max_message in a segment fails the open, never an access out of
 * the ring. */
Test(span, hostile_max_message_is_refused)
{
    if (test_heap_forced())
        cr_skip_test("needs a segment file to corrupt");
    const char *name = test_name("hostile");
    shmring_t *r = make_span(name, 16, 64, 512, 0);
    int fd = shmring_fd(r);
    cr_assert_geq(fd, 0);
    struct shmring__hdr *h =
        mmap(NULL, SHMRING__HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert(h != MAP_FAILED);
    struct shmring__ring_shared *sh = (struct shmring__ring_shared *)(void *)h->object;
    const uint32_t bad[] = {513, 1024, 63, 1, UINT32_MAX, 1u << 31};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        __atomic_store_n(&sh->max_message, bad[i], __ATOMIC_RELAXED);
        shmring_t *c = NULL;
        cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), -EPROTO, "max_message %u", bad[i]);
    }
    const uint32_t good[] = {0, 64, 65, 512};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        __atomic_store_n(&sh->max_message, good[i], __ATOMIC_RELAXED);
        shmring_t *c = NULL;
        cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0, "max_message %u", good[i]);
        cr_assert_eq(shmring_max_message(c), good[i] ? good[i] : 64);
        shmring_close(c);
    }
    munmap(h, SHMRING__HEADER_SIZE);
    shmring_close(r);
    shmring_unlink(name);
}

/* ---- One process -------------------------------------------------------- */

/* Every size from 0 to max_message, through push/pop and the waiting calls,
 * many times around the slot array (so messages wrap past its end). */
Test(span, every_size_round_trips)
{
    const char *name = test_name("sizes");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char in[MAX_MSG], out[MAX_MSG + 8];
    uint64_t id = 0;
    for (int round = 0; round < 2; round++) {
        for (size_t len = 0; len <= MAX_MSG; len++, id++) {
            fill_msg(in, len, id);
            if (round == 0) {
                cr_assert_eq(shmring_push(p, in, len), 0, "len %zu", len);
                ssize_t n = shmring_pop(c, out, sizeof out);
                cr_assert_geq(n, 0, "pop: %s", shmring_strerror((int)n));
                expect_msg(out, (size_t)n, id, len);
            } else {
                cr_assert_eq(shmring_push_wait(p, in, len, 1000000000), 0, "len %zu", len);
                ssize_t n = shmring_pop_wait(c, out, len, 1000000000);
                cr_assert_geq(n, 0, "pop_wait: %s", shmring_strerror((int)n));
                expect_msg(out, (size_t)n, id, len);
            }
        }
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, id, "one count per message, whatever its slots");
    cr_assert_eq(st.popped, id);
    cr_assert_eq(st.count, 0);
    cr_assert_eq(st.bytes_pushed, st.bytes_popped);
    cr_assert_eq(st.bytes_pushed, (uint64_t)(MAX_MSG + 1) * MAX_MSG);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(span, too_large_and_too_small)
{
    const char *name = test_name("size");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char in[MAX_MSG + 1], out[MAX_MSG];
    fill_msg(in, sizeof in, 1);
    cr_assert_eq(shmring_push(p, in, MAX_MSG + 1), -EMSGSIZE);
    cr_assert_eq(shmring_push_wait(p, in, MAX_MSG + 1, 0), -EMSGSIZE);
    cr_assert_eq(shmring_push_wait(p, in, MAX_MSG + 1, -1), -EMSGSIZE);
    struct iovec big[2] = {{in, 10}, {in, MAX_MSG + 1}};
    cr_assert_eq(shmring_push_batch(p, big, 2), -EMSGSIZE, "nothing pushed");
    void *pl = NULL;
    cr_assert_eq(shmring_reserve(p, MAX_MSG + 1, &pl), -EMSGSIZE);
    cr_assert_eq(shmring_reserve_wait(p, MAX_MSG + 1, &pl, 0), -EMSGSIZE);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN, "nothing was pushed");
    /* A spanning message stays for a buffer that fits. */
    fill_msg(in, 300, 7);
    cr_assert_eq(shmring_push(p, in, 300), 0);
    cr_assert_eq(shmring_pop(c, out, 299), -EMSGSIZE);
    cr_assert_eq(shmring_pop(c, out, SLOT_SIZE), -EMSGSIZE);
    cr_assert_eq(shmring_pop_wait(c, out, 10, 1000), -EMSGSIZE);
    struct iovec small = {out, 299};
    cr_assert_eq(shmring_pop_batch(c, &small, 1), -EMSGSIZE);
    ssize_t n = shmring_pop(c, out, 300);
    expect_msg(out, (size_t)n, 7, 300);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 1);
    cr_assert_eq(st.popped, 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* A full ring of spanning messages: -EAGAIN when the next one's slots are
 * not all free, and count reports messages, not slots. */
Test(span, full_ring_counts_messages)
{
    const char *name = test_name("full");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char in[MAX_MSG], out[MAX_MSG];
    /* 200 bytes: 4 slots each, 4 fit in 16 slots. */
    for (uint64_t id = 0; id < 4; id++) {
        fill_msg(in, 200, id);
        cr_assert_eq(shmring_push(p, in, 200), 0);
    }
    cr_assert_eq(shmring_push(p, in, 200), -EAGAIN);
    cr_assert_eq(shmring_push(p, in, 0), -EAGAIN);
    cr_assert_eq(shmring_push_wait(p, in, 200, 1000000), -ETIMEDOUT);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.count, 4);
    cr_assert_eq(st.full_events, 3);
    /* One pop frees 4 slots: room for one more 4-slot message, not 2. */
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 0, 200);
    fill_msg(in, 129, 4); /* 3 slots */
    cr_assert_eq(shmring_push(p, in, 129), 0);
    cr_assert_eq(shmring_push(p, in, 128), -EAGAIN, "one slot left, 2 needed");
    fill_msg(in, 64, 5);
    cr_assert_eq(shmring_push(p, in, 64), 0, "one slot left, 1 needed");
    for (uint64_t id = 1; id < 4; id++)
        expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), id, 200);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 4, 129);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 5, 64);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN);
    shmring_close(p);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EPIPE);
    shmring_close(c);
    shmring_unlink(name);
}

/* Claims: the private copy of a spanning message, released once; a held
 * claim pins the message's first slot like any claim. */
Test(span, claim_and_release)
{
    const char *name = test_name("claim");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char in[MAX_MSG], out[MAX_MSG];
    const size_t lens[] = {MAX_MSG, 10, 65, 0, 200}; /* 8 + 1 + 2 + 1 + 4 slots: full */
    for (uint64_t id = 0; id < 5; id++) {
        fill_msg(in, lens[id], id);
        cr_assert_eq(shmring_push(p, in, lens[id]), 0);
    }
    shmring_msg_t m[5];
    for (uint64_t id = 0; id < 5; id++) {
        int rc = id == 2 ? shmring_claim_wait(c, &m[id], 1000000000) : shmring_claim(c, &m[id]);
        cr_assert_eq(rc, 0, "claim %llu: %s", (unsigned long long)id, shmring_strerror(rc));
        cr_assert_eq(m[id].len, lens[id]);
        expect_msg(m[id].data, m[id].len, id, lens[id]);
        cr_assert_eq(shmring_msg_copy(&m[id], out, sizeof out), (ssize_t)lens[id]);
        expect_msg(out, lens[id], id, lens[id]);
    }
    /* Claimed messages are taken: nothing left, and the ring is full while
     * the first (head in slot 0) is held. */
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN);
    size_t pushed = 0;
    while (shmring_push(p, in, 0) == 0)
        pushed++;
    cr_assert_lt(pushed, SLOTS);
    shmring_msg_t copy = m[0];
    cr_assert_eq(shmring_release(c, &m[0]), 0);
    cr_assert_eq(shmring_release(c, &copy), -EINVAL, "released already");
    cr_assert_eq(shmring_push(p, in, 0), 0, "the first slot is free again");
    for (uint64_t id = 1; id < 5; id++)
        cr_assert_eq(shmring_release(c, &m[id]), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.abandoned, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* A handle closed with spanning claims held frees them (no leak under
 * ASan) and releases their slots. */
Test(span, close_with_claims_held)
{
    const char *name = test_name("claimclose");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, SHMRING_OVERWRITE);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char in[MAX_MSG];
    fill_msg(in, 400, 1);
    cr_assert_eq(shmring_push(p, in, 400), 0);
    cr_assert_eq(shmring_push(p, in, 400), 0);
    shmring_msg_t m1, m2;
    cr_assert_eq(shmring_claim(c, &m1), 0);
    cr_assert_eq(shmring_claim(c, &m2), 0);
    /* Overwrite mode: a copy is never torn, release says 0 even after the
     * producer lapped its slots; a second release of it is refused. */
    for (uint64_t id = 10; id < 30; id++)
        cr_assert_eq(shmring_push(p, in, 400), 0);
    shmring_msg_t again = m1;
    cr_assert_eq(shmring_release(c, &m1), 0);
    cr_assert_eq(shmring_release(c, &again), -EINVAL);
    shmring_close(c); /* m2 still held: freed here */
    shmring_close(p);
    shmring_unlink(name);
}

Test(span, reserve_commit_discard)
{
    const char *name = test_name("reserve");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char out[MAX_MSG];
    void *pl = NULL;
    /* Commit the whole reservation. */
    cr_assert_eq(shmring_reserve(p, MAX_MSG, &pl), 0);
    cr_assert_eq(shmring_reserve(p, 10, &pl), -EBUSY);
    cr_assert_eq(shmring_push(p, out, 10), -EBUSY);
    cr_assert_eq(shmring_push(p, out, 300), -EBUSY);
    fill_msg(pl, MAX_MSG, 1);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN, "not visible before commit");
    cr_assert_eq(shmring_commit(p, MAX_MSG + 1), -EINVAL);
    cr_assert_eq(shmring_commit(p, MAX_MSG), 0);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 1, MAX_MSG);
    /* Commit less than reserved: still spanning, and within one slot. */
    cr_assert_eq(shmring_reserve_wait(p, 400, &pl, 1000000000), 0);
    fill_msg(pl, 150, 2);
    cr_assert_eq(shmring_commit(p, 150), 0);
    cr_assert_eq(shmring_reserve(p, 400, &pl), 0);
    fill_msg(pl, 20, 3);
    cr_assert_eq(shmring_commit(p, 20), 0);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 2, 150);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 3, 20);
    /* Discard: nothing published, the next message takes the same place. */
    cr_assert_eq(shmring_reserve(p, 300, &pl), 0);
    memset(pl, 0xAB, 300);
    cr_assert_eq(shmring_discard(p), 0);
    cr_assert_eq(shmring_commit(p, 10), -EINVAL);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN);
    unsigned char in[MAX_MSG];
    fill_msg(in, 30, 4);
    cr_assert_eq(shmring_push(p, in, 30), 0);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 4, 30);
    /* A reservation too large for the free room. */
    for (uint64_t id = 5; id < 8; id++) {
        fill_msg(in, 200, id);
        cr_assert_eq(shmring_push(p, in, 200), 0);
    }
    cr_assert_eq(shmring_reserve(p, 260, &pl), -EAGAIN, "5 slots needed, 4 free");
    cr_assert_eq(shmring_reserve_wait(p, 260, &pl, 1000000), -ETIMEDOUT);
    cr_assert_eq(shmring_reserve(p, 256, &pl), 0);
    fill_msg(pl, 256, 8);
    cr_assert_eq(shmring_commit(p, 256), 0);
    for (uint64_t id = 5; id < 8; id++)
        expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), id, 200);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 8, 256);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 8);
    cr_assert_eq(st.popped, 8);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* Batches of mixed sizes, both ways; a buffer too small ends a batch. */
Test(span, batches_of_mixed_sizes)
{
    const char *name = test_name("batch");
    shmring_t *p = make_span(name, 64, SLOT_SIZE, 2048, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    static unsigned char in[8][2048], out[8][2048];
    const size_t lens[8] = {10, 2048, 64, 65, 0, 700, 1, 128};
    struct iovec iov[8];
    uint64_t base = 0;
    for (int round = 0; round < 20; round++, base += 8) {
        for (int i = 0; i < 8; i++) {
            fill_msg(in[i], lens[i], base + (uint64_t)i);
            iov[i] = (struct iovec){in[i], lens[i]};
        }
        /* 1 + 32 + 1 + 2 + 1 + 11 + 1 + 2 = 51 slots of 64. */
        cr_assert_eq(shmring_push_batch(p, iov, 8), 8);
        for (int i = 0; i < 8; i++)
            iov[i] = (struct iovec){out[i], sizeof out[i]};
        if (round % 2 == 1)
            iov[5].iov_len = 699; /* too small for the 700-byte message */
        ssize_t k = shmring_pop_batch(c, iov, 8);
        cr_assert_eq(k, round % 2 == 1 ? 5 : 8);
        for (ssize_t i = 0; i < k; i++)
            expect_msg(out[i], iov[i].iov_len, base + (uint64_t)i, lens[i]);
        for (ssize_t i = k; i < 8; i++) {
            ssize_t n = shmring_pop(c, out[i], sizeof out[i]);
            expect_msg(out[i], (size_t)n, base + (uint64_t)i, lens[i]);
        }
    }
    /* A batch that does not all fit: as many whole messages as fit. */
    for (int i = 0; i < 8; i++)
        iov[i] = (struct iovec){in[i], lens[i]};
    cr_assert_eq(shmring_push_batch(p, iov, 8), 8);
    cr_assert_eq(shmring_push_batch(p, iov, 8), 1, "13 slots free: only the first fits");
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.count, 9);
    cr_assert_eq(st.pushed, 169);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* Overwrite mode drops whole messages, counted once each. */
Test(span, overwrite_drops_whole_messages)
{
    const char *name = test_name("ow");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, SHMRING_OVERWRITE);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char in[MAX_MSG], out[MAX_MSG];
    uint64_t s = 12345;
    size_t lens[1000];
    for (uint64_t id = 0; id < 1000; id++) {
        lens[id] = (size_t)(h_rand(&s) % (MAX_MSG + 1));
        fill_msg(in, lens[id], id);
        cr_assert_eq(shmring_push(p, in, lens[id]), 0);
        if (id % 7 == 0) {
            /* Pop what is there now: the newest messages, whole, in order. */
            uint64_t last = 0;
            int first = 1;
            for (;;) {
                ssize_t n = shmring_pop(c, out, sizeof out);
                if (n == -EAGAIN)
                    break;
                cr_assert_geq(n, 0);
                uint64_t got = UINT64_MAX;
                for (uint64_t j = first ? 0 : last + 1; j <= id; j++) {
                    unsigned char ref[MAX_MSG];
                    fill_msg(ref, lens[j], j);
                    if ((size_t)n == lens[j] && memcmp(ref, out, (size_t)n) == 0) {
                        got = j;
                        break;
                    }
                }
                cr_assert_neq(got, UINT64_MAX, "a popped message is no pushed one");
                last = got;
                first = 0;
            }
        }
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 1000);
    cr_assert_gt(st.dropped, 0);
    cr_assert_eq(st.pushed, st.popped + st.dropped + st.count);
    cr_assert_eq(st.full_events, 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Several parties ---------------------------------------------------- */

/* Stress geometry: small slots, messages up to a quarter of the ring. */
#define S_SLOTS   64u
#define S_SLOT    128u
#define S_MAX     4096u
#define CONSUMERS 3

/* Length of message `id`: most fit a slot, some span several. */
static size_t stress_len(uint64_t id)
{
    uint64_t s = id * 0x9E3779B97F4A7C15ull + 1;
    uint64_t x = h_rand(&s);
    if (x % 2 == 0)
        return 16 + (size_t)(x >> 8) % (S_SLOT - 15);
    return 16 + (size_t)(x >> 8) % (S_MAX - 15);
}

struct shared {
    int ready;
    int overwrite;
    uint64_t n;
    uint64_t got[CONSUMERS];
    uint64_t bad[CONSUMERS];    /* torn, unknown or out-of-order messages */
    uint64_t errors[CONSUMERS]; /* unexpected return codes */
    uint32_t seen[];
};

/* Check one delivered message; ids a consumer gets must only increase. */
static void note(struct shared *sh, int who, const void *buf, size_t len, uint64_t *last)
{
    uint64_t id = 0;
    if (!test_check(buf, len, &id) || id >= sh->n || len != stress_len(id) ||
        (*last != UINT64_MAX && id <= *last)) {
        sh->bad[who]++;
        return;
    }
    *last = id;
    sh->got[who]++;
    __atomic_fetch_add(&sh->seen[id], 1, __ATOMIC_RELAXED);
}

/* Consumer `who`: 0 pops (waiting), 1 claims, 2 pops batches. Until the end
 * of the stream. */
static void consume(const char *name, struct shared *sh, int who)
{
    shmring_t *c = NULL;
    if (shmring_open(name, SHMRING_CONSUMER, &c) != 0) {
        sh->errors[who]++;
        __atomic_fetch_add(&sh->ready, 1, __ATOMIC_RELEASE);
        return;
    }
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_RELEASE);
    static __thread unsigned char bufs[4][S_MAX];
    uint64_t last = UINT64_MAX;
    for (;;) {
        ssize_t rc;
        if (who == 0) {
            rc = shmring_pop_wait(c, bufs[0], S_MAX, 1000000000);
            if (rc >= 0)
                note(sh, who, bufs[0], (size_t)rc, &last);
        } else if (who == 1) {
            shmring_msg_t m;
            rc = shmring_claim_wait(c, &m, 1000000000);
            if (rc == 0) {
                size_t len = m.len;
                shmring_msg_copy(&m, bufs[0], S_MAX);
                int rel = shmring_release(c, &m);
                if (rel == 0)
                    note(sh, who, bufs[0], len, &last);
                else if (rel != -ESTALE || !sh->overwrite)
                    sh->errors[who]++; /* -ESTALE: lapped, the copy is dropped */
            }
        } else {
            struct iovec iov[4];
            for (int i = 0; i < 4; i++)
                iov[i] = (struct iovec){bufs[i], S_MAX};
            rc = shmring_pop_batch(c, iov, 4);
            if (rc == -EAGAIN || rc == -EINPROGRESS) {
                sched_yield();
                continue;
            }
            for (ssize_t i = 0; i < rc; i++)
                note(sh, who, bufs[i], iov[i].iov_len, &last);
        }
        if (rc == -EPIPE)
            break;
        if (rc < 0 && rc != -ETIMEDOUT && rc != -EAGAIN && rc != -EINPROGRESS)
            sh->errors[who]++;
        if (rc < 0 && rc != -ETIMEDOUT && rc != -EAGAIN && rc != -EINPROGRESS)
            break;
    }
    shmring_close(c);
}

/* The producer: push_wait, push_batch and reserve/commit in turn. */
static void produce(shmring_t *p, uint64_t n)
{
    static unsigned char buf[4][S_MAX];
    uint64_t id = 0;
    while (id < n) {
        switch (id % 3) {
        case 0: {
            size_t len = stress_len(id);
            test_fill(buf[0], len, id);
            cr_assert_eq(shmring_push_wait(p, buf[0], len, -1), 0);
            id++;
            break;
        }
        case 1: {
            struct iovec iov[4];
            size_t k = 0;
            for (; k < 4 && id + k < n; k++) {
                iov[k].iov_len = stress_len(id + k);
                iov[k].iov_base = buf[k];
                test_fill(buf[k], iov[k].iov_len, id + k);
            }
            ssize_t done = shmring_push_batch(p, iov, k);
            if (done == -EAGAIN || done == -EINPROGRESS) {
                sched_yield();
                break;
            }
            cr_assert_gt(done, 0, "push_batch: %s", shmring_strerror((int)done));
            id += (uint64_t)done;
            break;
        }
        default: {
            size_t len = stress_len(id);
            void *pl = NULL;
            cr_assert_eq(shmring_reserve_wait(p, len, &pl, -1), 0);
            test_fill(pl, len, id);
            cr_assert_eq(shmring_commit(p, len), 0);
            id++;
        }
        }
    }
}

struct thread_arg {
    const char *name;
    struct shared *sh;
    int who;
};

static void *consumer_thread(void *arg)
{
    struct thread_arg *a = arg;
    consume(a->name, a->sh, a->who);
    return NULL;
}

/* One producer and three consumers (processes, or threads on the heap
 * backend), every message checksummed. */
static struct shared *run_stress(uint32_t flags, uint64_t n)
{
    char name[64];
    snprintf(name, sizeof name, "%s", test_name("stress"));
    shmring_t *p = make_span(name, S_SLOTS, S_SLOT, S_MAX, flags);
    size_t size = sizeof(struct shared) + n * sizeof(uint32_t);
    struct shared *sh = test_shared_alloc(size);
    memset(sh, 0, size);
    sh->n = n;
    sh->overwrite = (flags & SHMRING_OVERWRITE) != 0;
    int procs = !test_heap_forced();
    pid_t pids[CONSUMERS];
    pthread_t th[CONSUMERS];
    struct thread_arg args[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        args[i] = (struct thread_arg){name, sh, i};
        if (procs) {
            pids[i] = fork();
            cr_assert_geq(pids[i], 0);
            if (pids[i] == 0) {
                h_arm_deadline(120);
                consume(name, sh, i);
                _exit(0);
            }
        } else {
            cr_assert_eq(pthread_create(&th[i], NULL, consumer_thread, &args[i]), 0);
        }
    }
    while (__atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) < CONSUMERS)
        h_sleep_us(1000);
    produce(p, n);
    shmring_stats_t st;
    shmring_close(p); /* end of stream */
    for (int i = 0; i < CONSUMERS; i++) {
        if (procs)
            cr_assert_eq(test_wait_child(pids[i]), 0, "consumer %d", i);
        else
            pthread_join(th[i], NULL);
    }
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    cr_assert_eq(shmring_stats(o, &st), 0);
    shmring_close(o);
    shmring_unlink(name);
    cr_assert_eq(st.pushed, n);
    uint64_t got = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        cr_assert_eq(sh->bad[i], 0, "consumer %d: %llu torn, unknown or out-of-order messages", i,
                     (unsigned long long)sh->bad[i]);
        cr_assert_eq(sh->errors[i], 0, "consumer %d: unexpected errors", i);
        got += sh->got[i];
    }
    if (!sh->overwrite)
        cr_assert_eq(st.popped, n);
    else
        cr_assert_geq(st.popped, got);
    cr_log_info("%llu messages, %llu delivered (%llu, %llu, %llu), %llu dropped",
                (unsigned long long)n, (unsigned long long)got, (unsigned long long)sh->got[0],
                (unsigned long long)sh->got[1], (unsigned long long)sh->got[2],
                (unsigned long long)st.dropped);
    return sh;
}

Test(span, stress_exactly_once, .timeout = 600)
{
    h_arm_deadline(120);
    uint64_t n = h_count(20000);
    struct shared *sh = run_stress(0, n);
    for (uint64_t id = 0; id < n; id++)
        cr_assert_eq(sh->seen[id], 1, "message %llu delivered %u times", (unsigned long long)id,
                     sh->seen[id]);
    test_shared_free(sh, sizeof(struct shared) + n * sizeof(uint32_t));
    h_disarm_deadline();
}

Test(span, stress_overwrite_never_torn, .timeout = 600)
{
    h_arm_deadline(120);
    uint64_t n = h_count(20000);
    struct shared *sh = run_stress(SHMRING_OVERWRITE, n);
    for (uint64_t id = 0; id < n; id++)
        cr_assert_leq(sh->seen[id], 1, "message %llu delivered %u times", (unsigned long long)id,
                      sh->seen[id]);
    test_shared_free(sh, sizeof(struct shared) + n * sizeof(uint32_t));
    h_disarm_deadline();
}

/* ---- Crashes ------------------------------------------------------------ */

/* A consumer killed while it holds the claim of a spanning message: the
 * claim is counted abandoned, the producer gets its slots back, the other
 * consumer gets every other message whole. */
Test(span, consumer_killed_holding_a_spanning_claim)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("killclaim");
    shmring_t *p = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, 0);
    unsigned char in[MAX_MSG], out[MAX_MSG];
    fill_msg(in, 400, 0);
    cr_assert_eq(shmring_push(p, in, 400), 0);
    fill_msg(in, 300, 1);
    cr_assert_eq(shmring_push(p, in, 300), 0);
    int *flag = test_shared_alloc(sizeof *flag);
    *flag = 0;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *c = NULL;
        shmring_msg_t m;
        if (shmring_open(name, SHMRING_CONSUMER, &c) != 0 || shmring_claim(c, &m) != 0)
            _exit(2);
        __atomic_store_n(flag, m.len == 400 ? 1 : 2, __ATOMIC_RELEASE);
        pause();
        _exit(0);
    }
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == 0)
        h_sleep_us(1000);
    cr_assert_eq(*flag, 1);
    kill(pid, SIGKILL);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 1, 300);
    /* The dead claim pins slot 0 until a reclaim: push_wait reclaims it. */
    for (uint64_t id = 2; id < 40; id++) {
        fill_msg(in, 250, id);
        cr_assert_eq(shmring_push_wait(p, in, 250, -1), 0, "id %llu", (unsigned long long)id);
        expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), id, 250);
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.abandoned, 1);
    cr_assert_eq(st.pushed, st.popped);
    test_shared_free(flag, sizeof *flag);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/*
 * A producer that died part-way through a spanning message left its head
 * marked as being written and some continuations published (what span.tail
 * leaves; the fault suite kills a real one there). A new producer resumes
 * at the head; a consumer never takes a leftover continuation for a message.
 */
Test(span, producer_died_mid_message)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    const char *name = test_name("killprod");
    shmring_t *c = make_span(name, SLOTS, SLOT_SIZE, MAX_MSG, SHMRING_CONSUMER);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *p = NULL;
        if (shmring_open(name, SHMRING_PRODUCER, &p) != 0)
            _exit(2);
        unsigned char in[MAX_MSG];
        fill_msg(in, 100, 0);
        if (shmring_push(p, in, 100) != 0) /* positions 0, 1 */
            _exit(3);
        fill_msg(in, 500, 1);
        if (shmring_push(p, in, 500) != 0) /* positions 2 .. 9 */
            _exit(3);
        /* Undo the head of the second like a death after its continuations:
         * seq back to "being written". */
        int fd = shmring_fd(p);
        struct shmring__hdr *h =
            mmap(NULL, SHMRING__RING_DATA + SLOTS * 128, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (h == MAP_FAILED)
            _exit(4);
        struct shmring__ring_shared *sh = (struct shmring__ring_shared *)(void *)h->object;
        struct shmring__slot *head =
            (struct shmring__slot *)(void *)((unsigned char *)h + SHMRING__RING_DATA + 2 * 128);
        __atomic_store_n(&head->seq, 2 * 2 + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&sh->write_index, 2, __ATOMIC_RELEASE);
        __atomic_store_n(&sh->pushed, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&sh->span_extra, 1, __ATOMIC_RELAXED);
        raise(SIGKILL);
    }
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    unsigned char out[MAX_MSG];
    expect_msg(out, (size_t)shmring_pop(c, out, sizeof out), 0, 100);
    cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN, "the unfinished message is not one");
    shmring_t *p = test_open_as(name, SHMRING_PRODUCER); /* takes the dead lease over */
    unsigned char in[MAX_MSG];
    /* Small messages over the leftover continuations (positions 3 ..). */
    for (uint64_t id = 10; id < 40; id++) {
        size_t len = id % 3 == 0 ? 300 : 16 + id;
        fill_msg(in, len, id);
        cr_assert_eq(shmring_push(p, in, len), 0);
        ssize_t n = shmring_pop(c, out, sizeof out);
        cr_assert_geq(n, 0, "pop %llu: %s", (unsigned long long)id, shmring_strerror((int)n));
        expect_msg(out, (size_t)n, id, len);
        cr_assert_eq(shmring_pop(c, out, sizeof out), -EAGAIN, "after id %llu",
                     (unsigned long long)id);
    }
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 31);
    cr_assert_eq(st.popped, 31);
    shmring_close(p);
    shmring_close(c);
    shmring_unlink(name);
}

/* ---- The tool ----------------------------------------------------------- */

/* Run the shmring tool with args; its exit status. */
static int tool(const char *const *args)
{
    const char *path = test_tool();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char *argv[16];
        int n = 0;
        argv[n++] = (char *)"shmring";
        for (; args[n - 1] != NULL && n < 15; n++)
            argv[n] = (char *)args[n - 1];
        argv[n] = NULL;
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(path, argv);
        _exit(127);
    }
    return test_wait_child(pid);
}

Test(span, tool_create_max_message)
{
    if (test_heap_forced())
        cr_skip_test("the tool's rings live in the shm directory");
    const char *name = test_name("tool");
    const char *ok[] = {"create",        name,  "--slots", "16", "--slot-size", "64",
                        "--max-message", "512", NULL};
    cr_assert_eq(tool(ok), 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    cr_assert_eq(shmring_max_message(c), 512);
    cr_assert_eq(shmring_slot_size(c), 64);
    shmring_close(c);
    shmring_unlink(name);
    const char *too_big[] = {"create",        name,  "--slots", "16", "--slot-size", "64",
                             "--max-message", "513", NULL};
    cr_assert_eq(tool(too_big), 1, "above half the ring");
    const char *not_a_size[] = {"create", name, "--max-message", "lots", NULL};
    cr_assert_neq(tool(not_a_size), 0);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), -ENOENT, "nothing was created");
}
