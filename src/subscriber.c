/*
 * Broadcast subscribers (SHMRING_SUBSCRIBER): a cursor per subscriber.
 *
 * Memory-ordering edges (labels used below; P1, P2, C1, C2 are ring.c's):
 *
 *   B1  attach: cursor := write_index (a conservative start), state := our
 *       word (release), then sub_count += 1 (fetch-add, seq_cst: a full
 *       barrier).
 *   B2  attach: after B1, load sub_announce and write_index (acquire); the
 *       start is the larger. Dekker with G1/G2: either the producer's look
 *       sees the registration, or B2 sees the position of that look.
 *   B3  attach: cursor := start (release). Never below B1's value.
 *   B4  delivery: cursor := next position not passed (release; an exchange
 *       when notifies are symmetric). Pairs with G3: the subscriber's reads
 *       of the slots below it happen before the producer rewrites them.
 *       Then the wake-up of a producer waiting for room (M1 / W, ring.c).
 *   B5  close or reclaim: state := 0 (CAS), then sub_count -= 1.
 *   G1  producer, at each look (it reached its cached floor): sub_announce
 *       := w, the position it wants room for.
 *   G2  a full fence, then sub_count (acquire, pairs with B1's fetch-add):
 *       0 means no registration to look at.
 *   G3  for each registered line: state (acquire, pairs with B1's release),
 *       then cursor (acquire, pairs with B3 and B4).
 *   K1  no consumer attached (lossless, not single-consumer): CAS read_index
 *       forward to the slowest subscriber (seq_cst; pairs with C3 of a
 *       consumer attaching meanwhile, whose CAS then fails, and whose copy
 *       fails C2 if the slot is rewritten under it).
 *
 * Why the start of B2 is safe: a look that did not see our registration
 * announced a position a <= the value B2 read, and let the producer write
 * only positions below floor + nslots <= a + nslots: none of them overwrites
 * the start or anything after it. A look that saw it read a cursor at least
 * B1's value and at most our next position.
 *
 * Readers (C1, C2) are exactly those of ring.c, per subscriber: a slot is
 * accepted only if its sequence says "published for this position" before
 * and after the copy. A later position in the slot means the producer lapped
 * us (overwrite mode): we jump to the oldest position that can still be
 * intact and count what we skipped as missed.
 *
 * Everything read from shared memory is untrusted: cursors are clamped to
 * the producer's position, lengths checked, jumps bounded.
 */
#define _GNU_SOURCE
#include "subscriber.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "fault.h"
#include "msg.h"
#include "wait.h"

#define SUB_RETRIES (1u << 20) /* bound on retries against peer-written state */

void shmring__subs_init(struct shmring__subs *s, struct shmring__seg *seg,
                        struct shmring__ring_shared *sh, unsigned char *data, uint32_t nslots,
                        uint32_t slot_size, size_t stride, int overwrite, int single,
                        uint32_t cookie)
{
    memset(s, 0, sizeof *s);
    s->seg = seg;
    s->sh = sh;
    s->lines = (struct shmring__sub_line *)(void *)(seg->base + SHMRING__HEADER_SIZE);
    s->data = data;
    s->nslots = nslots;
    s->slot_size = slot_size;
    s->stride = stride;
    s->mask = (uint64_t)nslots - 1;
    s->overwrite = overwrite;
    s->single = single;
    s->cookie = cookie;
    s->index = -1;
}

static inline struct shmring__slot *slot_at(const struct shmring__subs *s, uint64_t pos)
{
    return (struct shmring__slot *)(void *)(s->data + (size_t)(pos & s->mask) * s->stride);
}

static inline struct shmring__sub_line *my_line(const struct shmring__subs *s)
{
    return &s->lines[s->index];
}

/* Owner-only counter: a plain increment published with a relaxed store. */
static inline void count(uint64_t *c, uint64_t n)
{
    /* Relaxed: one writer; readers (stats) want a recent value, not ordering. */
    shmring__store_relaxed_64(c, shmring__load_relaxed_64(c) + n);
}

/* ---- Attach and detach ------------------------------------------------- */

int shmring__sub_attach(struct shmring__subs *s, unsigned index)
{
    struct shmring__sub_line *l = &s->lines[index];
    s->index = (int)index;
    /* Relaxed: our own entry's owner word, stored by the take. Nonzero. */
    s->word = shmring__load_relaxed_64(&s->seg->hdr->party[index].owner);
    /* Acquire: pairs with the producer's write_index store (P2 order). */
    uint64_t start = shmring__load_acquire_64(&s->sh->write_index);
    /* B1: a conservative cursor first; relaxed, published by the release
     * store of state just after. */
    shmring__store_relaxed_64(&l->cursor, start);
    /* B1: release, pairs with G3's acquire of state. */
    shmring__store_release_64(&l->state, s->word);
    /* B1: fetch-add, a full barrier before B2 (Dekker with G1/G2). */
    shmring__faa_64(&s->sh->sub_count, 1);
    SHMRING_FAULT(SUB_ATTACH);
    /* B2: acquire loads, after B1. */
    uint64_t announced = shmring__load_acquire_64(&s->sh->sub_announce);
    uint64_t wi = shmring__load_acquire_64(&s->sh->write_index);
    if (wi < start)
        return -EPROTO; /* write_index went back: corrupt */
    /* Peer-written: the producer announces a position at most a ring ahead
     * of write_index (a batch); anything further is garbage. */
    if (announced > wi + s->nslots)
        return -EPROTO;
    if (announced > wi)
        wi = announced;
    s->next = wi;
    s->base = wi;
    /* B3: release, pairs with G3. */
    shmring__store_release_64(&l->cursor, wi);
    return 0;
}

/* B5: drop the subscription of line `index` whose state is `word`. */
static int unregister(struct shmring__subs *s, unsigned index, uint64_t word)
{
    struct shmring__sub_line *l = &s->lines[index];
    /* B5: CAS (seq_cst), pairs with G3: a look after it skips the line. */
    if (word == 0 || !shmring__cas_64(&l->state, &word, 0))
        return 0;
    /* Fetch-add: B1's counterpart. */
    shmring__faa_64(&s->sh->sub_count, (uint64_t)-1);
    /* The producer may have waited for this subscriber (W, after an RMW). */
    shmring__ec_notify_after_atomic(&s->sh->space_ec);
    return 1;
}

void shmring__sub_detach(struct shmring__subs *s)
{
    if (s->index < 1)
        return;
    unregister(s, (unsigned)s->index, s->word);
    free(s->held);
    s->held = NULL;
    s->index = -1;
}

void shmring__sub_reclaim(struct shmring__subs *s, unsigned index)
{
    if (index < 1 || index >= SHMRING__PARTIES)
        return;
    /* Acquire: pairs with B1. The caller holds the dead entry, so nobody
     * registers on this line meanwhile; the CAS decides against a racing
     * reclaimer. */
    uint64_t word = shmring__load_acquire_64(&s->lines[index].state);
    if (unregister(s, index, word)) {
        SHMRING_FAULT(SUB_RECLAIM);
        /* Fetch-add: any reclaimer may count. */
        shmring__faa_64(&s->sh->sub_dead, 1);
    }
}

/* ---- Reading ----------------------------------------------------------- */

/* B4: publish how far this subscriber has passed, and wake the producer. */
static void cursor_store(struct shmring__subs *s, int *fenced)
{
    uint64_t c = s->nheld > 0 ? s->base : s->next;
    uint64_t *cursor = &my_line(s)->cursor;
    if (s->overwrite) {
        /* Release: only a report in overwrite mode (the producer never
         * waits for subscribers); the same ordering as B4 all the same. */
        shmring__store_release_64(cursor, c);
        return;
    }
    if (*fenced) {
        /* B4: exchange, at least release (pairs with G3) and a full barrier
         * before the load of the sleep flag (W, symmetric). */
        shmring__xchg_64(cursor, c);
        shmring__ec_notify_after_atomic(&s->sh->space_ec);
        return;
    }
    /* B4: release, pairs with G3. */
    shmring__store_release_64(cursor, c);
    /* M1: no barrier; pairs with M2 of a producer waiting for room. */
    shmring__ec_notify_asym(&s->sh->space_ec, fenced, 0);
}

static inline uint64_t published(uint64_t pos)
{
    return 2 * pos + 2;
}

/* C2: did the slot keep its sequence while we read it? */
static inline int seq_unchanged(struct shmring__slot *sl, uint64_t seq)
{
    /* C2: acquire fence, pairs with the release fence of P1. */
    shmring__fence_acquire();
    return shmring__load_relaxed_64(&sl->seq) == seq;
}

/* The producer lapped position `pos` (the slot holds position q > pos):
 * jump to the oldest position that can still be intact. -ESTALE to look
 * again, -EPROTO if q is beyond anything the producer can have written. */
static int lapped(struct shmring__subs *s, uint64_t pos, uint64_t q)
{
    /* Acquire: pairs with the producer's write_index store. */
    uint64_t wi = shmring__load_acquire_64(&s->sh->write_index);
    uint64_t target = q + 1 > s->nslots ? q + 1 - s->nslots : 0;
    if (wi + 1 > s->nslots && wi + 1 - s->nslots > target)
        target = wi + 1 - s->nslots;
    if (target <= pos)
        target = pos + 1;
    /* Peer-written q: a producer is at most a ring ahead of write_index. */
    if (target > wi + s->nslots)
        return -EPROTO;
    s->missed += target - pos;
    count(&my_line(s)->missed, target - pos);
    s->next = target;
    if (s->nheld == 0)
        s->base = target;
    return -ESTALE;
}

/* -EAGAIN, or -EPIPE if the producer closed and `pos` is still empty. */
static int empty_result(const struct shmring__subs *s, uint64_t pos)
{
    /* Acquire: pairs with the release in shmring__party_release() (CLOSED). */
    uint64_t o = shmring__load_acquire_64(&s->seg->hdr->party[0].owner);
    if (SHMRING__OWNER_STATE(o) != SHMRING__PARTY_CLOSED)
        return -EAGAIN;
    /* Acquire: as C1; messages published before the close. */
    uint64_t q = shmring__load_acquire_64(&slot_at(s, pos)->seq);
    return q < published(pos) ? -EPIPE : -EAGAIN;
}

/*
 * C1 for our next position: 0 and its sequence and length when published,
 * -EAGAIN / -EPIPE (nothing new), -ESTALE (lapped: jumped, look again),
 * -EPROTO.
 */
static int peek(struct shmring__subs *s, uint64_t pos, uint64_t *seq, uint32_t *len)
{
    struct shmring__slot *sl = slot_at(s, pos);
    /* C1: acquire, pairs with P2. */
    uint64_t q = shmring__load_acquire_64(&sl->seq);
    *seq = q;
    if (q == published(pos)) {
        /* Relaxed: ordered by C1 before and C2 after. Peer-written: checked. */
        uint32_t l = shmring__load_relaxed_32(&sl->len);
        if (l > s->slot_size)
            return seq_unchanged(sl, q) ? -EPROTO : -ESTALE;
        *len = l;
        return 0;
    }
    if (q <= 2 * pos + 1)
        return empty_result(s, pos); /* not written yet, or being written */
    /* The slot holds a later position: 2q'+1 (being written) or 2q'+2. */
    return lapped(s, pos, (q - 1) / 2);
}

ssize_t shmring__sub_pop(struct shmring__subs *s, void *buf, size_t cap, int *fenced)
{
    for (unsigned tries = 0; tries < SUB_RETRIES; tries++) {
        uint64_t pos = s->next, seq;
        uint32_t len;
        int rc = peek(s, pos, &seq, &len);
        if (rc == -ESTALE)
            continue;
        if (rc < 0)
            return rc;
        struct shmring__slot *sl = slot_at(s, pos);
        if (len > cap) {
            if (!seq_unchanged(sl, seq))
                continue;
            return -EMSGSIZE;
        }
        shmring__copy_from_shared(buf, (unsigned char *)sl + SHMRING__SLOT_HEADER, len);
        if (!seq_unchanged(sl, seq))
            continue; /* C2 failed: lapped while copying; peek sees it */
        SHMRING_FAULT(SUB_ADVANCE);
        s->next = pos + 1;
        struct shmring__sub_line *l = my_line(s);
        count(&l->delivered, 1);
        count(&l->bytes, len);
        cursor_store(s, fenced);
        return (ssize_t)len;
    }
    return -EPROTO; /* lapped a million times in a row: not a producer we know */
}

ssize_t shmring__sub_pop_batch(struct shmring__subs *s, struct iovec *iov, size_t n, int *fenced)
{
    size_t k = 0;
    uint64_t bytes = 0;
    for (unsigned tries = 0; k < n && tries < SUB_RETRIES; tries++) {
        uint64_t pos = s->next, seq;
        uint32_t len;
        int rc = peek(s, pos, &seq, &len);
        if (rc == -ESTALE && k == 0)
            continue;
        if (rc < 0 || len > iov[k].iov_len) {
            if (k > 0)
                break;
            if (rc < 0)
                return rc;
            if (!seq_unchanged(slot_at(s, pos), seq))
                continue;
            return -EMSGSIZE;
        }
        struct shmring__slot *sl = slot_at(s, pos);
        shmring__copy_from_shared(iov[k].iov_base, (unsigned char *)sl + SHMRING__SLOT_HEADER, len);
        if (!seq_unchanged(sl, seq)) {
            if (k > 0)
                break;
            continue;
        }
        iov[k].iov_len = len;
        bytes += len;
        s->next = pos + 1;
        k++;
    }
    if (k == 0)
        return -EPROTO;
    SHMRING_FAULT(SUB_ADVANCE);
    struct shmring__sub_line *l = my_line(s);
    count(&l->delivered, k);
    count(&l->bytes, bytes);
    cursor_store(s, fenced);
    return (ssize_t)k;
}

/* ---- Zero-copy --------------------------------------------------------- */

static inline int held_bit(const struct shmring__subs *s, uint64_t pos)
{
    uint64_t i = pos & s->mask;
    return (int)((s->held[i / 64] >> (i % 64)) & 1u);
}

static inline void held_set(struct shmring__subs *s, uint64_t pos, int on)
{
    uint64_t i = pos & s->mask, bit = (uint64_t)1 << (i % 64);
    s->held[i / 64] = on ? s->held[i / 64] | bit : s->held[i / 64] & ~bit;
}

int shmring__sub_claim(struct shmring__subs *s, shmring_msg_t *m)
{
    if (!s->overwrite && s->held == NULL) {
        s->held = calloc(((size_t)s->nslots + 63) / 64, sizeof(uint64_t));
        if (s->held == NULL)
            return -ENOMEM;
    }
    for (unsigned tries = 0; tries < SUB_RETRIES; tries++) {
        uint64_t pos = s->next, seq;
        uint32_t len;
        int rc = peek(s, pos, &seq, &len);
        if (rc == -ESTALE)
            continue;
        if (rc < 0)
            return rc;
        m->data = (unsigned char *)slot_at(s, pos) + SHMRING__SLOT_HEADER;
        m->len = len;
        shmring__msg_set(m, pos, (uint32_t)(pos & s->mask), s->cookie);
        /* Lossless: the cursor stays at the oldest claim held (B4 at its
         * release): the producer never rewrites a held slot. */
        if (!s->overwrite) {
            if (s->nheld == 0)
                s->base = pos;
            held_set(s, pos, 1);
            s->nheld++;
        }
        s->next = pos + 1;
        struct shmring__sub_line *l = my_line(s);
        count(&l->delivered, 1);
        count(&l->bytes, len);
        /* Overwrite mode: the cursor is a report; lossless: unchanged while
         * a claim is held (it is the oldest), so no store is needed. */
        if (s->overwrite)
            /* B4 (a report): release. */
            shmring__store_release_64(&l->cursor, s->next);
        return 0;
    }
    return -EPROTO;
}

int shmring__sub_release(struct shmring__subs *s, shmring_msg_t *m, int *fenced)
{
    struct shmring__msg_private c = shmring__msg_get(m);
    if (c.cookie != s->cookie || c.slot >= s->nslots || (c.pos & s->mask) != c.slot ||
        m->data == NULL || c.pos >= s->next)
        return -EINVAL;
    struct shmring__slot *sl = slot_at(s, c.pos);
    int rc = 0;
    if (s->overwrite) {
        if (!seq_unchanged(sl, published(c.pos)))
            rc = -ESTALE;
    } else {
        if (s->held == NULL || s->nheld == 0 || c.pos < s->base || !held_bit(s, c.pos))
            return -EINVAL;
        held_set(s, c.pos, 0);
        s->nheld--;
        /* The oldest claim went: the cursor moves up to the next one held. */
        if (c.pos == s->base) {
            while (s->base < s->next && (s->nheld == 0 || !held_bit(s, s->base)))
                s->base++;
            SHMRING_FAULT(SUB_ADVANCE);
            cursor_store(s, fenced);
        }
    }
    m->data = NULL;
    shmring__msg_set(m, c.pos, c.slot, 0);
    return rc;
}

uint64_t shmring__sub_missed(struct shmring__subs *s)
{
    uint64_t n = s->missed;
    s->missed = 0;
    return n;
}

int shmring__sub_ready(const struct shmring__subs *s)
{
    /* Acquire: pairs with the producer's write_index store. */
    return s->next < shmring__load_acquire_64(&s->sh->write_index);
}

/* ---- Producer ---------------------------------------------------------- */

/* 1 if a consumer may be attached: an ACTIVE consumer entry, or any entry
 * being set up (its role is not known yet). */
static int consumer_attached(const struct shmring__subs *s)
{
    for (unsigned i = 1; i < SHMRING__PARTIES; i++) {
        const struct shmring__party *p = &s->seg->hdr->party[i];
        /* Acquire: pairs with the release in party_setup(): role is set. */
        uint64_t o = shmring__load_acquire_64(&p->owner);
        uint32_t st = SHMRING__OWNER_STATE(o);
        if (st == SHMRING__PARTY_TAKING)
            return 1;
        /* Relaxed: ordered by the acquire of owner above. */
        if (st == SHMRING__PARTY_ACTIVE &&
            (shmring__load_relaxed_32(&p->role) & SHMRING__ROLE_CONSUMER))
            return 1;
    }
    return 0;
}

/* K1: nobody competes for the messages below the subscribers: pass them. */
static void skip_unconsumed(struct shmring__subs *s, uint64_t w, uint64_t lowest,
                            uint64_t *cached_read)
{
    uint64_t ri = *cached_read;
    if (s->single || lowest <= ri || w - ri < s->nslots || consumer_attached(s))
        return;
    /* K1: CAS, pairs with C3 of consumers (one may be attaching). */
    if (shmring__cas_64(&s->sh->read_index, &ri, lowest)) {
        count(&s->sh->sub_skipped, lowest - ri);
        *cached_read = lowest;
    } else if (ri <= w) {
        *cached_read = ri; /* a consumer moved it: use what it says */
    }
}

int shmring__sub_floor(struct shmring__subs *s, uint64_t w, uint64_t *cached_read, uint64_t *floor,
                       unsigned *blocker)
{
    *blocker = 0;
    /* G1: relaxed store, ordered before G2's load by the fence. */
    shmring__store_relaxed_64(&s->sh->sub_announce, w);
    /* G2: full fence, Dekker with B1 (see the legend). */
    shmring__fence_seq_cst();
    /* G2: acquire, pairs with B1's fetch-add. */
    if (shmring__load_acquire_64(&s->sh->sub_count) == 0)
        return 0;
    uint64_t lowest = UINT64_MAX;
    for (unsigned i = 1; i < SHMRING__PARTIES; i++) {
        struct shmring__sub_line *l = &s->lines[i];
        /* G3: acquire, pairs with B1's release of state. */
        if (shmring__load_acquire_64(&l->state) == 0)
            continue;
        /* Acquire: pairs with the release in party_setup(). A registration
         * lives only while its entry is held (B5 runs before the entry is
         * freed): one on a free entry is garbage, and holds nothing. */
        uint64_t o = shmring__load_acquire_64(&s->seg->hdr->party[i].owner);
        if (SHMRING__OWNER_STATE(o) == SHMRING__PARTY_FREE)
            continue;
        /* G3: acquire, pairs with B3 and B4. Peer-written: a subscriber
         * cannot have passed what is not written; clamp. */
        uint64_t c = shmring__load_acquire_64(&l->cursor);
        if (c > w)
            c = w;
        if (c < lowest) {
            lowest = c;
            *blocker = i;
        }
    }
    SHMRING_FAULT(SUB_RESCAN);
    if (*blocker == 0)
        return 0;
    skip_unconsumed(s, w, lowest, cached_read);
    *floor = lowest < *cached_read ? lowest : *cached_read;
    return 0;
}

/* ---- Stats ------------------------------------------------------------- */

void shmring__sub_stats(const struct shmring__subs *s, shmring_stats_t *st)
{
    /* Relaxed loads throughout: statistics, not synchronisation. */
    for (unsigned i = 1; i < SHMRING__PARTIES; i++) {
        st->delivered += shmring__load_relaxed_64(&s->lines[i].delivered);
        st->sub_missed += shmring__load_relaxed_64(&s->lines[i].missed);
    }
    st->subscribers_dead = shmring__load_relaxed_64(&s->sh->sub_dead);
    st->skipped = shmring__load_relaxed_64(&s->sh->sub_skipped);
}
