/*
 * ring_race_fuzzer: a hostile peer rewrites a ring segment while it is used.
 *
 * A valid heap ring image is built (geometry from the first input bytes) and
 * attached as a producer/consumer handle and a second consumer handle. A
 * corrupter thread then stores input-chosen values at input-chosen header
 * and slot offsets (indices, sequences, claims, lengths, party entries),
 * with relaxed atomic stores so that the race is defined behaviour, while
 * the main thread pushes, pops, claims, releases, reserves and commits.
 * Nothing may crash, read or write out of bounds, or loop: every loop here
 * is bounded and each input runs for a few milliseconds at most.
 *
 * Input: [slots][slot_size][flags][nrec] nrec * [off_hi][off_lo][kind][v]
 *        (flags: bit 0 SHMRING_OVERWRITE, else bit 1 SHMRING_REDELIVER)
 *        then one operation byte per step for the main thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "ring.h"
#include "segment.h"
#include "shmring.h"

#define MAX_RECORDS 64
#define MAX_STORES  4096 /* corrupter stores per input */
#define MAX_OPS     256  /* main-thread operations per input */
#define MAX_HELD    4

struct record {
    size_t off; /* 8-byte aligned offset into the image */
    uint8_t kind;
    uint8_t v;
};

struct corrupter {
    unsigned char *img;
    size_t total;
    struct record rec[MAX_RECORDS];
    size_t nrec;
    uint32_t done; /* set by the main thread when its operations are over */
};

static void quiet(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

/* Values a hostile peer would pick: small counts, sequence-like values,
 * huge values, all-ones, a pattern of v. */
static uint64_t value_of(uint8_t kind, uint8_t v, uint64_t round)
{
    switch ((kind >> 2) % 6) {
    case 0:
        return v;
    case 1:
        return 2 * ((uint64_t)v + round) + (kind & 1); /* a slot sequence */
    case 2:
        return (uint64_t)v << 56;
    case 3:
        return ~(uint64_t)0 - v;
    case 4:
        return 0x0101010101010101ull * v;
    default:
        return round * v;
    }
}

static void store(const struct corrupter *c, const struct record *r, uint64_t round)
{
    uint64_t val = value_of(r->kind, r->v, round);
    unsigned char *p = c->img + r->off;
    /* Relaxed atomic stores: the race with the ring is the point, and is
     * defined behaviour this way. */
    if (r->kind & 2)
        shmring__store_relaxed_32((uint32_t *)(void *)(p + 4 * (r->kind & 1)), (uint32_t)val);
    else
        shmring__store_relaxed_64((uint64_t *)(void *)p, val);
}

static void *corrupt(void *arg)
{
    struct corrupter *c = arg;
    if (c->nrec == 0)
        return NULL;
    for (uint64_t i = 0; i < MAX_STORES; i++) {
        /* Acquire: pairs with the release store of done in the main thread. */
        if (shmring__load_acquire_32(&c->done))
            break;
        store(c, &c->rec[i % c->nrec], i / c->nrec);
    }
    return NULL;
}

static size_t build_image(const uint8_t *in, unsigned char **out, uint32_t *stride)
{
    uint32_t slots = 2u << (in[0] % 4);         /* 2..16 */
    uint32_t slot_size = (uint32_t)in[1] % 200; /* 0..199 */
    uint32_t param[4] = {slots, slot_size, 0, 0};
    param[2] = (uint32_t)((SHMRING__SLOT_HEADER + slot_size + 63) & ~63u);
    /* Redelivery (bit 1) only on rings whose messages do not span (bit 3):
     * a creator refuses the two together. */
    uint32_t flags = (in[2] & 1)                     ? SHMRING_OVERWRITE
                     : ((in[2] & 2) && !(in[2] & 8)) ? SHMRING_REDELIVER
                                                     : 0;
    uint64_t total = 0;
    if (shmring__ring_layout(param, flags, &total) < 0)
        return 0;
    unsigned char *img = NULL;
    if (posix_memalign((void **)&img, 4096, (size_t)total) != 0)
        return 0;
    memset(img, 0, (size_t)total);
    struct shmring__hdr *h = (struct shmring__hdr *)(void *)img;
    h->magic = SHMRING__MAGIC;
    h->type = SHMRING__TYPE_RING;
    h->layout = SHMRING__LAYOUT;
    h->header_size = SHMRING__HEADER_SIZE;
    h->flags = flags;
    h->total_size = total;
    memcpy(h->param, param, sizeof param);
    /* Messages larger than a slot: half the ring (bit 3), or any value
     * (bit 2: the attach must refuse what no creator could store). */
    struct shmring__ring_shared *sh = (struct shmring__ring_shared *)(void *)h->object;
    if (in[2] & 8)
        sh->max_message = slots * slot_size / 2;
    if (in[2] & 4)
        sh->max_message = (uint32_t)in[3] * 37u;
    h->ready = SHMRING__READY;
    *stride = param[2];
    *out = img;
    return (size_t)total;
}

/* Record targets: a slot header field (kind bit 7), the ring's lines and
 * party table (bit 6), or anywhere in the image. */
static size_t target(const uint8_t *r, size_t total, uint32_t slots, uint32_t stride)
{
    size_t x = (size_t)r[0] << 8 | r[1];
    if (r[2] & 0x80)
        return SHMRING__RING_DATA + (x % slots) * stride + (r[1] % 4) * 8;
    if (r[2] & 0x40)
        return 128 + (x * 8) % (SHMRING__HEADER_SIZE - 128);
    return (x * 8) % total;
}

/* Touch every claimed byte: it must lie inside the image. */
static void touch(const shmring_msg_t *m)
{
    unsigned char buf[256];
    const unsigned char *d = m->data;
    for (size_t k = 0; k < m->len; k += sizeof buf) {
        size_t n = m->len - k < sizeof buf ? m->len - k : sizeof buf;
        shmring__copy_from_shared(buf, d + k, n);
    }
}

static void run_ops(shmring_t *pc, shmring_t *c2, const uint8_t *ops, size_t n)
{
    unsigned char buf[256];
    shmring_msg_t held[MAX_HELD];
    shmring_t *owner[MAX_HELD];
    int nheld = 0;
    for (size_t i = 0; i < n && i < MAX_OPS; i++) {
        uint8_t op = ops[i];
        shmring_t *c = (op & 0x80) ? c2 : pc;
        switch (op % 8) {
        case 0:
            (void)shmring_pop(c, buf, (op & 0x40) ? sizeof buf : op % 24);
            break;
        case 1:
            if (nheld < MAX_HELD && shmring_claim(c, &held[nheld]) == 0) {
                touch(&held[nheld]);
                owner[nheld++] = c;
            }
            break;
        case 2:
            if (nheld > 0) {
                nheld--;
                (void)shmring_release(owner[nheld], &held[nheld]);
            }
            break;
        case 3:
        case 4:
            memset(buf, op, 64);
            (void)shmring_push(pc, buf, op % 65);
            break;
        case 5: {
            struct iovec iov[3] = {{buf, 64}, {buf + 64, 64}, {buf + 128, 128}};
            if (op & 0x40)
                (void)shmring_pop_batch(c, iov, 3);
            else
                (void)shmring_push_batch(pc, iov, 1 + op % 3);
            break;
        }
        case 6: {
            void *p = NULL;
            if (shmring_reserve(pc, op % 33, &p) == 0) {
                memset(p, 0x5a, op % 33);
                (void)shmring_commit(pc, op % 29);
            }
            break;
        }
        case 7: {
            struct shmring_stats st;
            (void)shmring_stats(c, &st);
            (void)shmring_missed(c);
            break;
        }
        }
    }
    while (nheld > 0) {
        nheld--;
        (void)shmring_release(owner[nheld], &held[nheld]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        shmring_set_log(quiet, NULL);
        init = 1;
    }
    if (size < 4)
        return 0;
    static struct corrupter c;
    memset(&c, 0, sizeof c);
    uint32_t stride = 0;
    c.total = build_image(data, &c.img, &stride);
    if (c.total == 0)
        return 0;
    uint32_t slots = 2u << (data[0] % 4);
    size_t want = data[3] % (MAX_RECORDS + 1);
    size_t i = 4;
    for (; c.nrec < want && i + 4 <= size; i += 4) {
        c.rec[c.nrec].off = target(data + i, c.total, slots, stride);
        c.rec[c.nrec].kind = data[i + 2];
        c.rec[c.nrec].v = data[i + 3];
        c.nrec++;
    }
    struct shmring__seg *s1 = NULL, *s2 = NULL;
    shmring_t *pc = NULL, *c2 = NULL;
    if (shmring__seg_attach_image(c.img, c.total, SHMRING__TYPE_RING, shmring__ring_layout, &s1) ||
        shmring__seg_attach_image(c.img, c.total, SHMRING__TYPE_RING, shmring__ring_layout, &s2))
        abort(); /* a freshly built image is valid */
    int rc = shmring__ring_from_seg(s1, SHMRING_PRODUCER | SHMRING_CONSUMER, &pc);
    if (rc == -EPROTO && (data[2] & 4)) { /* a max_message no creator stores */
        shmring__seg_close(s1);
        shmring__seg_close(s2);
        free(c.img);
        return 0;
    }
    if (rc != 0 || shmring__ring_from_seg(s2, SHMRING_CONSUMER, &c2))
        abort();
    pthread_t t;
    if (pthread_create(&t, NULL, corrupt, &c) != 0)
        abort();
    run_ops(pc, c2, data + i, size - i);
    /* Release: pairs with the acquire in corrupt(). */
    shmring__store_release_32(&c.done, 1);
    pthread_join(t, NULL);
    shmring_close(c2);
    shmring_close(pc);
    free(c.img);
    return 0;
}
