/*
 * ring_ops_fuzzer: differential test of the ring against a reference queue.
 *
 * The input is a program of operations (push, pop, claim, release, batches,
 * reserve/commit) over one producer and three consumer handles of a heap
 * ring. A plain array-based model predicts every result; any difference in
 * return value, length or payload aborts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmring.h"

#define SLOTS     8u
#define SLOT_SIZE 48u
#define MAXPOS    4096u
#define CONSUMERS 3
#define MAXHELD   4

/* Reference model: positions [head, tail) are unconsumed; claimed[] marks
 * positions taken by a claim and not yet released. */
struct model {
    uint64_t head, tail;
    uint32_t len[MAXPOS];
    unsigned char data[MAXPOS][SLOT_SIZE];
    unsigned char claimed[MAXPOS];
    int reserved;
    size_t reserved_len;
};

struct held {
    shmring_msg_t m;
    uint64_t pos;
};

static struct model M;
static struct held H[CONSUMERS][MAXHELD];
static int nheld[CONSUMERS];

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "mismatch: %s (line %d)\n", #cond, __LINE__);                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int model_full(void)
{
    if (M.tail - M.head >= SLOTS)
        return 1;
    return M.tail >= SLOTS && M.claimed[M.tail - SLOTS];
}

static void model_push(const unsigned char *p, size_t len)
{
    M.len[M.tail] = (uint32_t)len;
    memcpy(M.data[M.tail], p, len);
    M.tail++;
}

static void fill(unsigned char *p, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(seed * 31 + i * 7);
}

static void op_push(shmring_t *prod, uint8_t a)
{
    unsigned char msg[SLOT_SIZE + 8];
    size_t len = a % (SLOT_SIZE + 4);
    fill(msg, len, M.tail);
    int rc = shmring_push(prod, msg, len);
    if (len > SLOT_SIZE)
        CHECK(rc == -EMSGSIZE);
    else if (M.reserved)
        CHECK(rc == -EBUSY);
    else if (model_full())
        CHECK(rc == -EAGAIN);
    else {
        CHECK(rc == 0);
        model_push(msg, len);
    }
}

static void expect_front(const unsigned char *buf, size_t len)
{
    CHECK(len == M.len[M.head]);
    CHECK(memcmp(buf, M.data[M.head], len) == 0);
}

static void op_pop(shmring_t *c, uint8_t a)
{
    unsigned char buf[SLOT_SIZE];
    size_t cap = (a & 1) ? SLOT_SIZE : a % SLOT_SIZE;
    ssize_t n = shmring_pop(c, buf, cap);
    if (M.head == M.tail) {
        CHECK(n == -EAGAIN);
    } else if (M.len[M.head] > cap) {
        CHECK(n == -EMSGSIZE);
    } else {
        CHECK(n >= 0);
        expect_front(buf, (size_t)n);
        M.head++;
    }
}

static void op_claim(shmring_t *c, int ci)
{
    if (nheld[ci] == MAXHELD)
        return;
    struct held *h = &H[ci][nheld[ci]];
    int rc = shmring_claim(c, &h->m);
    if (M.head == M.tail) {
        CHECK(rc == -EAGAIN);
        return;
    }
    CHECK(rc == 0);
    expect_front(h->m.data, h->m.len);
    h->pos = M.head;
    M.claimed[M.head] = 1;
    M.head++;
    nheld[ci]++;
}

static void op_release(shmring_t *c, int ci, uint8_t a)
{
    if (nheld[ci] == 0) {
        shmring_msg_t bogus = {0};
        CHECK(shmring_release(c, &bogus) == -EINVAL);
        return;
    }
    int k = a % nheld[ci];
    struct held h = H[ci][k];
    /* The claimed bytes are still intact until release. */
    CHECK(h.m.len == M.len[h.pos]);
    CHECK(memcmp(h.m.data, M.data[h.pos], h.m.len) == 0);
    CHECK(shmring_release(c, &H[ci][k].m) == 0);
    M.claimed[h.pos] = 0;
    H[ci][k] = H[ci][nheld[ci] - 1];
    nheld[ci]--;
    CHECK(shmring_release(c, &h.m) == -EINVAL); /* twice */
}

static void op_push_batch(shmring_t *prod, uint8_t a)
{
    unsigned char msgs[5][SLOT_SIZE];
    struct iovec iov[5];
    size_t n = a % 6;
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = msgs[i];
        iov[i].iov_len = (size_t)(a * (i + 3)) % (SLOT_SIZE + 1);
        fill(msgs[i], iov[i].iov_len, M.tail + i);
    }
    ssize_t rc = shmring_push_batch(prod, iov, n);
    if (n == 0) {
        CHECK(rc == 0 || (M.reserved && rc == -EBUSY));
        return;
    }
    if (M.reserved) {
        CHECK(rc == -EBUSY);
        return;
    }
    size_t done = 0;
    while (done < n && !model_full())
        model_push(msgs[done], iov[done].iov_len), done++;
    CHECK(done > 0 ? rc == (ssize_t)done : rc == -EAGAIN);
}

static void op_pop_batch(shmring_t *c, uint8_t a)
{
    unsigned char bufs[4][SLOT_SIZE];
    struct iovec iov[4];
    size_t n = 1 + a % 4;
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = (a & 0x80) ? SLOT_SIZE : (size_t)(a * (i + 1)) % SLOT_SIZE;
    }
    size_t caps[4];
    for (size_t i = 0; i < n; i++)
        caps[i] = iov[i].iov_len;
    ssize_t rc = shmring_pop_batch(c, iov, n);
    size_t k = 0;
    while (k < n && M.head + k < M.tail && M.len[M.head + k] <= caps[k])
        k++;
    if (M.head == M.tail) {
        CHECK(rc == -EAGAIN);
    } else if (k == 0) {
        CHECK(rc == -EMSGSIZE);
    } else {
        CHECK(rc == (ssize_t)k);
        for (size_t i = 0; i < k; i++) {
            expect_front(bufs[i], iov[i].iov_len);
            M.head++;
        }
    }
}

static void op_reserve_commit(shmring_t *prod, uint8_t a)
{
    if (!M.reserved) {
        void *p = NULL;
        size_t len = a % (SLOT_SIZE + 2);
        int rc = shmring_reserve(prod, len, &p);
        if (len > SLOT_SIZE)
            CHECK(rc == -EMSGSIZE);
        else if (model_full())
            CHECK(rc == -EAGAIN);
        else {
            CHECK(rc == 0);
            fill(p, len, M.tail);
            M.reserved = 1;
            M.reserved_len = len;
        }
        return;
    }
    size_t len = a % (M.reserved_len + 2);
    int rc = shmring_commit(prod, len);
    if (len > M.reserved_len) {
        CHECK(rc == -EINVAL);
        return;
    }
    CHECK(rc == 0);
    unsigned char msg[SLOT_SIZE];
    fill(msg, len, M.tail);
    model_push(msg, len);
    M.reserved = 0;
}

static void quiet(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shmring_set_log(quiet, NULL);
    memset(&M, 0, sizeof M);
    memset(nheld, 0, sizeof nheld);
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = SLOT_SIZE,
                                               .flags = SHMRING_FORCE_HEAP | SHMRING_PRODUCER);
    shmring_t *prod = NULL, *cons[CONSUMERS];
    if (shmring_create("/ring-ops-fuzz", &cfg, &prod) != 0)
        abort();
    for (int i = 0; i < CONSUMERS; i++)
        if (shmring_open("/ring-ops-fuzz", SHMRING_CONSUMER | SHMRING_FORCE_HEAP, &cons[i]) != 0)
            abort();
    shmring_unlink("/ring-ops-fuzz");
    for (size_t i = 0; i + 1 < size && M.tail < MAXPOS - 8; i += 2) {
        uint8_t op = data[i], a = data[i + 1];
        int ci = (op >> 4) % CONSUMERS;
        switch (op % 8) {
        case 0:
        case 1:
            op_push(prod, a);
            break;
        case 2:
            op_pop(cons[ci], a);
            break;
        case 3:
            op_claim(cons[ci], ci);
            break;
        case 4:
            op_release(cons[ci], ci, a);
            break;
        case 5:
            op_push_batch(prod, a);
            break;
        case 6:
            op_pop_batch(cons[ci], a);
            break;
        case 7:
            op_reserve_commit(prod, a);
            break;
        }
    }
    for (int i = 0; i < CONSUMERS; i++)
        shmring_close(cons[i]);
    shmring_close(prod);
    return 0;
}
