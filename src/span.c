/*
 * Messages larger than a slot: continuation slots, claims' private copies,
 * and the walks over messages (see span.h for the layout and the edges
 * S1..S5).
 *
 * Everything read from the shared segment is untrusted: positions are
 * masked, lengths clamped to the validated max_message, and every walk is
 * bounded by the distance it covers (each step moves at least one position).
 */
#define _GNU_SOURCE
#include "span.h"

#include <errno.h>
#include <stdlib.h>

#include "atomic.h"
#include "fault.h"

struct shmring__span_buf {
    struct shmring__span_buf *next;
    _Alignas(16) unsigned char data[];
};

static inline struct shmring__slot *slot_of(const struct shmring__span *sp, uint64_t pos)
{
    return (struct shmring__slot *)(void *)(sp->data + (size_t)(pos & sp->mask) * sp->stride);
}

static inline unsigned char *payload_of(struct shmring__slot *s)
{
    return (unsigned char *)s + SHMRING__SLOT_HEADER;
}

/* ---- Configuration ------------------------------------------------------ */

int64_t shmring__span_config(uint32_t slots, uint32_t slot_size, uint64_t max)
{
    if (max == 0 || max == slot_size)
        return slot_size;
    if (max < slot_size || max > UINT32_MAX)
        return -EINVAL;
    if (max > (uint64_t)slots * slot_size / 2)
        return -EINVAL;
    return (int64_t)max;
}

void shmring__span_init(struct shmring__ring_shared *sh, uint32_t max_message)
{
    /* Relaxed: published by the release store of `ready`. */
    shmring__store_relaxed_32(&sh->max_message, max_message);
}

int shmring__span_attach(struct shmring__span *sp, const struct shmring__ring_shared *sh,
                         unsigned char *data, uint32_t slots, uint32_t slot_size, size_t stride)
{
    /* Relaxed: immutable since the segment became ready (acquire at open).
     * Peer-written: checked against the validated geometry before use. */
    uint32_t max = shmring__load_relaxed_32(&sh->max_message);
    int64_t v = shmring__span_config(slots, slot_size, max);
    if (v < 0)
        return -EPROTO;
    sp->data = data;
    sp->mask = (uint64_t)slots - 1;
    sp->stride = stride;
    sp->slot_size = slot_size;
    sp->max_message = (uint32_t)v;
    sp->bufs = NULL;
    sp->reserve_buf = NULL;
    return 0;
}

void shmring__span_detach(struct shmring__span *sp)
{
    while (sp->bufs != NULL) {
        struct shmring__span_buf *b = sp->bufs;
        sp->bufs = b->next;
        free(b);
    }
    free(sp->reserve_buf);
    sp->reserve_buf = NULL;
}

/* ---- Producer ----------------------------------------------------------- */

void shmring__span_write_tail(const struct shmring__span *sp, uint64_t w, const void *msg,
                              size_t len)
{
    const unsigned char *src = msg;
    uint64_t k = shmring__span_slots(sp, len);
    for (uint64_t i = 1; i < k; i++) {
        uint64_t q = w + i;
        struct shmring__slot *s = slot_of(sp, q);
        size_t off = (size_t)i * sp->slot_size;
        size_t n = len - off < sp->slot_size ? len - off : sp->slot_size;
        /* S1: release, then a release fence before the payload (as P1): a
         * consumer still reading the slot's previous message sees it change
         * (S4 or C2). */
        shmring__store_release_64(&s->seq, 2 * q + 1);
        shmring__fence_release();
        shmring__copy_to_shared(payload_of(s), src + off, n);
        /* Relaxed: published by S2 just after. */
        shmring__store_relaxed_32(&s->len, (uint32_t)n);
        shmring__store_relaxed_32(&s->reserved0, (uint32_t)i);
        /* S2: release, pairs with S3 (and with C1 through the head's P2,
         * which comes after it). */
        shmring__store_release_64(&s->seq, 2 * q + 2);
        SHMRING_FAULT(SPAN_TAIL);
    }
}

void shmring__span_resume(const struct shmring__span *sp, uint64_t w)
{
    uint64_t k = shmring__span_slots(sp, sp->max_message);
    for (uint64_t i = 1; i < k; i++) {
        struct shmring__slot *s = slot_of(sp, w + i);
        /* Acquire: pairs with S2 of the dead producer. Every position: a
         * predecessor that died in here may have unmarked some already. */
        if (shmring__load_acquire_64(&s->seq) != 2 * (w + i) + 2)
            continue;
        /* S5: release; no consumer reaches w + i before we publish w. */
        shmring__store_release_64(&s->seq, 2 * (w + i) + 1);
        SHMRING_FAULT(SPAN_RESUME);
    }
}

/* Length of the head at pos, clamped (peer-written). */
static uint64_t head_len(const struct shmring__span *sp, uint64_t pos)
{
    /* Relaxed: a walk over positions this producer (or a predecessor)
     * wrote, or a statistic; every value is clamped before use. */
    uint32_t l = shmring__load_relaxed_32(&slot_of(sp, pos)->len);
    return l <= sp->max_message ? l : 0;
}

uint64_t shmring__span_skip(const struct shmring__span *sp, uint64_t ri, uint64_t target,
                            uint64_t w, uint64_t *lost)
{
    uint64_t q = ri, n = 0;
    while (q < target && q < w) {
        q += shmring__span_slots(sp, head_len(sp, q));
        n++;
    }
    *lost = n;
    return q < w ? q : w;
}

uint64_t shmring__span_count(const struct shmring__span *sp, uint64_t ri, uint64_t wi)
{
    uint64_t n = 0;
    for (uint64_t q = ri; q < wi; n++)
        q += shmring__span_slots(sp, head_len(sp, q));
    return n;
}

void shmring__span_uncommitted(const struct shmring__span *sp, uint64_t wi, uint64_t w,
                               uint64_t *msgs, uint64_t *bytes, uint64_t *extra)
{
    uint64_t n = 0, b = 0, x = 0;
    for (uint64_t q = wi; q < w;) {
        uint64_t len = head_len(sp, q), k = shmring__span_slots(sp, len);
        n++;
        b += len;
        x += k - 1;
        q += k;
    }
    *msgs = n;
    *bytes = b;
    *extra = x;
}

/* ---- Consumer ----------------------------------------------------------- */

int shmring__span_copy(const struct shmring__span *sp, uint64_t pos, size_t len, void *buf)
{
    unsigned char *dst = buf;
    uint64_t k = shmring__span_slots(sp, len);
    shmring__copy_from_shared(dst, payload_of(slot_of(sp, pos)), sp->slot_size);
    for (uint64_t i = 1; i < k; i++) {
        uint64_t q = pos + i;
        struct shmring__slot *s = slot_of(sp, q);
        /* S3: acquire, pairs with S2. */
        if (shmring__load_acquire_64(&s->seq) != 2 * q + 2)
            return SHMRING__SPAN_MISMATCH;
        /* Relaxed: ordered by S3 before and S4 after; only compared. */
        if (shmring__load_relaxed_32(&s->reserved0) != i)
            return SHMRING__SPAN_MISMATCH;
        size_t off = (size_t)i * sp->slot_size;
        size_t n = len - off < sp->slot_size ? len - off : sp->slot_size;
        shmring__copy_from_shared(dst + off, payload_of(s), n);
        SHMRING_FAULT(SPAN_COPY);
    }
    return 0;
}

int shmring__span_unchanged(const struct shmring__span *sp, uint64_t pos, size_t len)
{
    uint64_t k = shmring__span_slots(sp, len);
    /* S4: acquire fence, pairs with the release fence of S1. */
    shmring__fence_acquire();
    for (uint64_t i = 1; i < k; i++)
        if (shmring__load_relaxed_64(&slot_of(sp, pos + i)->seq) != 2 * (pos + i) + 2)
            return 0;
    return 1;
}

/* ---- Private copies ----------------------------------------------------- */

void *shmring__span_buf_new(struct shmring__span *sp, size_t len)
{
    struct shmring__span_buf *b = malloc(sizeof *b + (len ? len : 1));
    if (b == NULL)
        return NULL;
    b->next = sp->bufs;
    sp->bufs = b;
    return b->data;
}

int shmring__span_buf_free(struct shmring__span *sp, const void *p)
{
    for (struct shmring__span_buf **at = &sp->bufs; *at != NULL; at = &(*at)->next) {
        if ((*at)->data == p) {
            struct shmring__span_buf *b = *at;
            *at = b->next;
            free(b);
            return 1;
        }
    }
    return 0;
}

void *shmring__span_reserve_buf(struct shmring__span *sp)
{
    if (sp->reserve_buf == NULL)
        sp->reserve_buf = malloc(sp->max_message);
    return sp->reserve_buf;
}
