/*
 * segment_fuzzer: the input is a ring segment image from a hostile peer.
 *
 * The first bytes choose a plausible geometry, from which a valid header is
 * built; the rest of the input is XORed over the header page and the slots,
 * so the fuzzer explores both garbage headers and valid headers with garbage
 * indices, sequences, claims, lengths and party entries. The image is then
 * attached as a consumer and as a producer, and popped, claimed, released,
 * pushed and inspected until done. Must not crash, leak, read out of bounds
 * or loop forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"
#include "segment.h"
#include "shmring.h"

static void quiet(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

static size_t build_image(const uint8_t *in, size_t n, unsigned char **out)
{
    uint32_t slots = 2u << (in[0] % 5);       /* 2..32 */
    uint32_t slot_size = (uint32_t)in[1] * 2; /* 0..510 */
    uint32_t param[4] = {slots, slot_size, 0, 0};
    param[2] = (uint32_t)((SHMRING__SLOT_HEADER + slot_size + 63) & ~63u);
    uint64_t total = 0;
    if (shmring__ring_layout(param, 0, &total) < 0)
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
    h->flags = (in[2] & 1) ? SHMRING_OVERWRITE : 0;
    h->total_size = total;
    memcpy(h->param, param, sizeof param);
    h->ready = SHMRING__READY;
    /* Overlay the rest: sparse positions (offset, byte) pairs keep images
     * mostly valid; a long tail is XORed from the start of the header. */
    size_t i = 3;
    for (; i + 3 <= n && i < 3 + 3 * 64; i += 3) {
        size_t off = ((size_t)in[i] << 8 | in[i + 1]) * 8 % (size_t)total;
        img[off] ^= in[i + 2];
    }
    for (size_t j = 0; i < n && j < (size_t)total; i++, j++)
        img[(j * 61) % (size_t)total] ^= in[i];
    *out = img;
    return (size_t)total;
}

static void exercise(shmring_t *r, const uint8_t *in, size_t n)
{
    unsigned char buf[600];
    shmring_msg_t held[4];
    int nheld = 0;
    for (size_t i = 0; i < 64; i++) {
        uint8_t op = i < n ? in[i] : (uint8_t)i;
        switch (op % 7) {
        case 0:
            (void)shmring_pop(r, buf, op % 2 ? sizeof buf : 8);
            break;
        case 1:
            if (nheld < 4 && shmring_claim(r, &held[nheld]) == 0) {
                /* Touch every claimed byte: must be inside the mapping. */
                volatile unsigned char sink = 0;
                const unsigned char *d = held[nheld].data;
                for (size_t k = 0; k < held[nheld].len; k++)
                    sink ^= d[k];
                (void)sink;
                nheld++;
            }
            break;
        case 2:
            if (nheld > 0)
                (void)shmring_release(r, &held[--nheld]);
            break;
        case 3:
            memset(buf, op, 40);
            (void)shmring_push(r, buf, op % 41);
            break;
        case 4: {
            struct shmring_stats st;
            (void)shmring_stats(r, &st);
            break;
        }
        case 5: {
            struct iovec iov[3] = {{buf, 100}, {buf + 100, 100}, {buf + 200, 300}};
            (void)shmring_pop_batch(r, iov, 3);
            break;
        }
        case 6: {
            void *p = NULL;
            if (shmring_reserve(r, op % 17, &p) == 0) {
                memset(p, 0x5a, op % 17);
                (void)shmring_commit(r, op % 13);
            }
            break;
        }
        }
    }
    while (nheld > 0)
        (void)shmring_release(r, &held[--nheld]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        shmring_set_log(quiet, NULL);
        init = 1;
    }
    if (size < 3)
        return 0;
    unsigned char *img = NULL;
    size_t total = build_image(data, size, &img);
    if (total == 0)
        return 0;
    static const uint32_t roles[] = {SHMRING_CONSUMER, SHMRING_PRODUCER,
                                     SHMRING_PRODUCER | SHMRING_CONSUMER, SHMRING_OBSERVER};
    for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++) {
        struct shmring__seg *seg = NULL;
        if (shmring__seg_attach_image(img, total, SHMRING__TYPE_RING, shmring__ring_layout, &seg) <
            0)
            break;
        shmring_t *r = NULL;
        if (shmring__ring_from_seg(seg, roles[k], &r) < 0) {
            shmring__seg_close(seg);
            continue;
        }
        exercise(r, data + 3, size - 3);
        shmring_close(r);
    }
    free(img);
    return 0;
}
