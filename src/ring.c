/*
 * The single-producer / multi-consumer ring.
 *
 * Memory-ordering edges (labels used in the comments below):
 *
 *   P1  producer: seq := 2p+1 (release), release fence, payload and len.
 *   P2  producer: seq := 2p+2, release. Publishes payload and len.
 *   C1  consumer: seq load, acquire. Pairs with P2: sees payload and len.
 *   C2  consumer: after copying, acquire fence, seq re-load. Pairs with P1:
 *       a copy that saw any byte of a newer write sees seq changed.
 *   C3  consumer: CAS read_index r -> r+1 (seq_cst). The only step that
 *       delivers a message; a consumer that dies before it holds nothing.
 *   P3  producer: read_index load, acquire. Pairs with C3: every slot below
 *       read_index has been copied out (or is claimed, see Z1).
 *   Z1  claimer: claim := pending (r, me) (CAS, seq_cst) before C3. The
 *       producer's P3 then Z2 loads see the claim of any position below
 *       read_index.
 *   Z2  producer: claim load, acquire. Pairs with Z3 (and Z4).
 *   Z3  release: claim := 0 (exchange, at least release): the consumer's reads of the payload
 *       happen before the producer rewrites the slot. A claimer whose C3
 *       failed gives its pending claim back with a CAS (never a blind store:
 *       the word may have been cleared as stale and taken by another).
 *   Z4  claimer, after a successful C3: claim := held (r, me) (release
 *       store). A pending claim below read_index is either held in the
 *       instant before Z4 or stale (its C3 failed or will fail): the producer
 *       waits for its owner; a held one means the slot is occupied (full).
 *   Z5  anyone: a claim that cannot be held (a claimer finds it on a slot
 *       that holds a later position; the producer finds it older than the
 *       slot's last position) is stale; it is cleared with a CAS.
 *   O1  overwrite producer: CAS read_index forward past the oldest messages
 *       (counted as dropped) before P1; a consumer racing with it fails C2
 *       or C3 and retries, so it never returns a torn message.
 *   W*  wake-ups: see wait.h (Dekker between publishing and the sleep flag).
 *       Symmetric on rings that cannot use membarrier (an exchange or CAS
 *       before the notifier's load of the flag, a fence after the waiter's
 *       CAS); asymmetric otherwise:
 *   M1  notifier: P2 / Z3 as plain release stores, a compiler barrier, then a
 *       relaxed load of the flag. No locked instruction on the fast path.
 *   M2  waiter: set the flag (CAS), membarrier(), re-check, sleep. Pairs with
 *       M1: the barrier it forces on the notifier's CPU falls either after
 *       the notifier's store (the re-check sees it) or before its load of the
 *       flag (the notifier sees the flag and wakes).
 *   D1  a party that cannot use membarrier() sets FENCED in both eventcounts
 *       at attach; F1: a notifier that sees FENCED fences from then on;
 *       F2: the producer then sets ACK, after which a fenced waiter may rely
 *       on it (docs/design.md, "Wake-ups", proves each case).
 *   I*  shmring_interrupt: see cancel.h (a waiting call arms the eventcount
 *       it sleeps on; its interrupt flag is loaded after W / M2).
 *   G1..G3, B1..B5, K1  broadcast subscribers: the producer's look at their
 *       cursors in room_slow(), and their own edges; see subscriber.c.
 *
 * Everything read from the shared segment is treated as untrusted: slot
 * indices are masked, lengths checked against the validated slot size,
 * claim owners checked against the party table size, and every retry loop
 * that depends on peer-written values is bounded.
 */
#define _GNU_SOURCE
#include "ring.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appear.h"
#include "atomic.h"
#include "cancel.h"
#include "config.h"
#include "event.h"
#include "fault.h"
#include "msg.h"
#include "redeliver.h"
#include "span.h"
#include "subscriber.h"
#include "wait.h"

#define DEFAULT_SLOTS     1024u
#define DEFAULT_SLOT_SIZE 256u
#define MAX_RETRIES       (1u << 20) /* bound on retries against peer-written state */
#define CLAIM_PATIENCE    64u        /* spins on a pending claim before any syscall */
#define CONTENDED_NS      1000000u   /* then yields on it this long before giving up */
#define CONTENDED_NAP_NS  1000000u   /* a waiting call's sleep on a pending claim, at most */
#define STARVED_NS        200000u    /* a gap this long between two tries: CPU taken */
#define PEER_CHECK_NS     (SHMRING_DEAD_PEER_NS / 2) /* waits look at their peers this often */
/* Result: another party is part-way through a claim on the slot this call
 * needs (between Z1 and Z4 or its give-back); the ring is neither empty nor
 * (as far as that slot tells) full. Public as -EINPROGRESS. */
#define CONTENDED (-EINPROGRESS)
/* Internal result: a waiting call timed out on CONTENDED (-ETIMEDOUT for the
 * caller, but not an empty or full event). */
#define TIMEDOUT_CONTENDED (-ETIME)
#define CLAIM_OWNER_BITS   8u
#define CLAIM_OWNER_MASK   ((1u << CLAIM_OWNER_BITS) - 1u)
#define CLAIM_HELD         ((uint64_t)1 << CLAIM_OWNER_BITS)
#define CLAIM_POS_SHIFT    (CLAIM_OWNER_BITS + 1u)
_Static_assert(CLAIM_OWNER_BITS == SHMRING__CLAIM_OWNER_BITS && CLAIM_HELD == SHMRING__CLAIM_HELD &&
                   CLAIM_POS_SHIFT == SHMRING__CLAIM_POS_SHIFT,
               "redeliver.h reads claim words as ring.c writes them");

#define ROLE_FLAGS    (SHMRING_PRODUCER | SHMRING_CONSUMER | SHMRING_OBSERVER | SHMRING_SUBSCRIBER)
#define BACKEND_FLAGS (SHMRING_FORCE_HEAP | SHMRING_FORCE_MEMFD | SHMRING_NO_FALLBACK)
#define RING_FLAGS                                                                                 \
    (SHMRING_OVERWRITE | SHMRING_SINGLE_CONSUMER | SHMRING_REDELIVER) /* stored with the ring */
/* Policies that exclude each other. */
#define RING_FLAGS_BAD(f)                                                                          \
    (((f) & (SHMRING_OVERWRITE | SHMRING_SINGLE_CONSUMER)) ==                                      \
         (SHMRING_OVERWRITE | SHMRING_SINGLE_CONSUMER) ||                                          \
     ((f) & (SHMRING_OVERWRITE | SHMRING_REDELIVER)) == (SHMRING_OVERWRITE | SHMRING_REDELIVER))
#define CREATE_FLAGS                                                                               \
    (ROLE_FLAGS | BACKEND_FLAGS | RING_FLAGS | SHMRING_ALLOW_INSECURE | SHMRING_NO_MEMBARRIER |    \
     SHMRING_OPEN_EXISTING | SHMRING_FOLLOW)
#define OPEN_FLAGS                                                                                 \
    (ROLE_FLAGS | SHMRING_LOCAL_ONLY | SHMRING_FORCE_HEAP | SHMRING_ALLOW_INSECURE | SHMRING_FOLLOW)

struct shmring {
    struct shmring__seg *seg;
    struct shmring__ring_shared *sh;
    unsigned char *data;
    uint64_t mask;
    size_t stride;
    uint32_t nslots;
    uint32_t slot_size;
    uint32_t roles;
    int overwrite;
    int single; /* SHMRING_SINGLE_CONSUMER: C3 is a store */
    int party;  /* consumer/observer entry, or -1 */
    int producer;
    int lease_gone;      /* this handle learned that it lost the lease: it never writes again */
    uint64_t lease_word; /* the lease's owner word while this handle holds it */
    uint32_t lease_generation;
    uint32_t cookie;
    /* producer-local */
    uint64_t w;           /* next position to write */
    uint64_t cached_read; /* last read_index seen (P3) */
    uint64_t floor;       /* lowest of cached_read and the subscribers seen (G3) */
    int reserved;
    size_t reserved_len;
    struct shmring__slot *reserved_slot;
    unsigned char *bounce; /* TSan builds: reservations are written here */
    /* consumer-local */
    uint64_t seen_dropped;
    int follow; /* SHMRING_FOLLOW: the end of the stream is a pause */
    /* waiting */
    int wait_strategy;
    uint32_t spins;
    /* wake-ups (W, M1, M2, D1, F1, F2) */
    int fenced_notify;   /* notifies are symmetric (exchange or fence) */
    int membarrier_wait; /* sleeps are announced with membarrier() (M2) */
    int ring_fenced;     /* created without membarrier: every party is symmetric */
    enum shmring__barrier barrier;
    struct shmring__cancel cancel; /* shmring_interrupt (cancel.h) */
    /* messages larger than a slot (span.h) */
    struct shmring__span span;
    int span_reserved; /* the open reservation spans slots */
    /* SHMRING_REDELIVER (redeliver.h) */
    int redeliver;
    uint64_t rd_next_idle;        /* next idle look for dead consumers' claims */
    struct shmring__event *event; /* shmring_event_fd(), or NULL */
    struct shmring__subs subs;    /* broadcast subscribers (subscriber.c) */
};

/* Longest sleep of a waiter that cannot rely on being woken (D1). */
#define SLICE_NS 1000000ull

/* ---- Layout ------------------------------------------------------------- */

static uint64_t stride_of(uint32_t slot_size)
{
    return ((uint64_t)SHMRING__SLOT_HEADER + slot_size + SHMRING__LINE - 1) &
           ~(uint64_t)(SHMRING__LINE - 1);
}

int shmring__ring_layout(const uint32_t param[4], uint32_t flags, uint64_t *total)
{
    uint32_t slots = param[0], slot_size = param[1];
    if (slots < 2 || slots > SHMRING_MAX_SLOTS || (slots & (slots - 1)) != 0)
        return -EINVAL;
    if (slot_size > SHMRING_MAX_SLOT_SIZE)
        return -EINVAL;
    if (param[2] != stride_of(slot_size) || param[3] != 0)
        return -EINVAL;
    if ((flags & ~RING_FLAGS) || RING_FLAGS_BAD(flags))
        return -EINVAL;
    uint64_t t = SHMRING__RING_DATA + (uint64_t)slots * param[2];
    if (t > SHMRING__MAX_TOTAL)
        return -EINVAL;
    *total = t;
    return 0;
}

static inline struct shmring__slot *slot_at(const shmring_t *r, uint64_t pos)
{
    return (struct shmring__slot *)(void *)(r->data + (size_t)(pos & r->mask) * r->stride);
}

static inline unsigned char *payload_of(struct shmring__slot *s)
{
    return (unsigned char *)s + SHMRING__SLOT_HEADER;
}

static inline uint64_t published(uint64_t pos)
{
    return 2 * pos + 2;
}

/* A pending claim (Z1); CLAIM_HELD is added once its C3 succeeded (Z4). */
static inline uint64_t claim_word(uint64_t pos, unsigned owner)
{
    return ((pos + 1) << CLAIM_POS_SHIFT) | owner;
}

static inline uint64_t claim_pos(uint64_t c)
{
    return (c >> CLAIM_POS_SHIFT) - 1;
}

static inline unsigned claim_owner(uint64_t c)
{
    return (unsigned)(c & CLAIM_OWNER_MASK);
}

static inline int claim_held(uint64_t c)
{
    return (c & CLAIM_HELD) != 0;
}

static inline struct shmring__party *my_party(const shmring_t *r)
{
    return &r->seg->hdr->party[r->party];
}

/* Owner-only counter: a plain increment published with a relaxed store. */
static inline void count(uint64_t *c, uint64_t n)
{
    /* Relaxed: one writer; readers (stats) want a recent value, not ordering. */
    shmring__store_relaxed_64(c, shmring__load_relaxed_64(c) + n);
}

static inline uint32_t lease_state(const shmring_t *r)
{
    /* Acquire: pairs with the release in shmring__party_release() (CLOSED). */
    return SHMRING__OWNER_STATE(shmring__load_acquire_64(&r->seg->hdr->party[0].owner));
}

/* ---- Reclaiming dead consumers ----------------------------------------- */

/*
 * Counters of consumers: each entry's counters belong to the entry, not to
 * one owner. A new owner carries on counting where the last one stopped
 * (SHMRING__ROLE_KEEP_COUNTERS) and the stats sum every entry, so that no
 * reclaimer ever moves counts: nothing can be folded twice, whoever dies
 * wherever.
 */

/*
 * Clear every claim of entry `owner`. Held claims (Z4 done) are counted as
 * abandoned when `abandon` is set; a pending claim (its CAS on read_index not
 * done or lost) held nothing.
 */
static int redeliver_sweep(shmring_t *r, uint64_t index, uint64_t c);

static void sweep_claims(shmring_t *r, unsigned owner, int abandon)
{
    if (r->overwrite)
        return;
    int cleared = 0;
    for (uint64_t i = 0; i < r->nslots; i++) {
        struct shmring__slot *s = slot_at(r, i);
        /* Relaxed: only a hint; the CAS below decides. */
        uint64_t c = shmring__load_relaxed_64(&s->claim);
        if (c == 0 || claim_owner(c) != owner)
            continue;
        if (r->redeliver) {
            cleared |= redeliver_sweep(r, i, c);
            continue;
        }
        /* Z3: release (by CAS), pairs with Z2 in room_for(). */
        if (!shmring__cas_64(&s->claim, &c, 0))
            continue;
        cleared = 1;
        SHMRING_FAULT(RING_SWEEP);
        /* Fetch-add: any reclaimer may count; one claim at a time, so that a
         * reclaimer that dies here leaves at most this one uncounted. Only a
         * held claim (Z4 done) held a message. */
        if (abandon && claim_held(c))
            shmring__faa_64(&r->sh->abandoned, 1);
    }
    if (cleared)
        shmring__ec_notify(&r->sh->space_ec);
}

static void reclaim_entry(struct shmring__seg *seg, unsigned index, void *ctx)
{
    shmring_t *r = ctx;
    (void)seg;
    sweep_claims(r, index, 1);
    shmring__sub_reclaim(&r->subs, index);
}

/* If consumer entry `owner` is dead, reclaim it. Returns 1 if it did. */
static int reclaim_if_dead(shmring_t *r, unsigned owner)
{
    if (owner < 1 || owner >= SHMRING__PARTIES || (int)owner == r->party)
        return 0;
    if (!shmring__party_seize_dead(r->seg, owner))
        return 0;
    reclaim_entry(r->seg, owner, r);
    shmring__party_release(r->seg, owner, SHMRING__PARTY_FREE);
    return 1;
}

/* Reclaim every dead consumer entry (slow paths only: makes syscalls). */
static void reclaim_dead(shmring_t *r)
{
    for (unsigned i = 1; i < SHMRING__PARTIES; i++)
        reclaim_if_dead(r, i);
}

/* ---- Contention on a claim part-way through ----------------------------- */

/* How hard a try may work (the `slow` argument of room_for and op_try). */
#define SLOW_NONE  0 /* no syscall */
#define SLOW_CHECK 1 /* may check peers' liveness (a waiting call's slow try) */
#define SLOW_YIELD 2 /* may also yield to a claimer part-way through (a plain call) */

/* How long one call has waited on pending claims. */
struct contention {
    unsigned spins;
    uint64_t since_ns;
};

/*
 * The slot a call needs carries the pending claim of entry `owner`: between
 * its Z1 and its Z4 or give-back, a few instructions unless it was
 * descheduled, stopped or killed there. Spin a little; then, where the call
 * may make syscalls, reclaim the owner if it died, and (SLOW_YIELD) yield to
 * it for up to CONTENDED_NS. Returns 0 to look again, CONTENDED to give up.
 */
static int contention_wait(shmring_t *r, struct contention *k, unsigned owner, int slow)
{
    if (k->spins < CLAIM_PATIENCE) {
        k->spins++;
        shmring__cpu_relax();
        return 0;
    }
    if (slow == SLOW_NONE)
        return CONTENDED;
    if (reclaim_if_dead(r, owner))
        return 0;
    uint64_t now = shmring__now_ns();
    if (k->since_ns == 0)
        k->since_ns = now;
    if (slow == SLOW_CHECK || now - k->since_ns >= CONTENDED_NS)
        return CONTENDED;
    sched_yield();
    return 0;
}

/* Z5: clear a claim that cannot be held (see the legend at the top). */
static void clear_stale(shmring_t *r, struct shmring__slot *s, uint64_t c)
{
    SHMRING_FAULT(CLAIM_STALE);
    /* Z5: CAS (seq_cst) of that exact word, pairs with Z2 (acquire) of the
     * producer; the owner's give-back CAS (Z3) then fails harmlessly. */
    if (shmring__cas_64(&s->claim, &c, 0))
        shmring__ec_notify_after_atomic(&r->sh->space_ec);
}

/* ---- Producer ----------------------------------------------------------- */

/*
 * pushed equals write_index except between a producer's count and its
 * write_index store: a predecessor that died after publishing (P2) but before
 * committing left messages that consumers may take but pushed does not
 * count. The successor counts them (and their bytes, still in their slots:
 * nothing rewrote them), once: its own pushed then reaches w.
 */
static void count_uncommitted_span(shmring_t *r, uint64_t w);

static void count_uncommitted(shmring_t *r, uint64_t w)
{
    if (shmring__span_on(&r->span)) {
        count_uncommitted_span(r, w);
        return;
    }
    /* Relaxed: the predecessor is dead; we are the only writer of line 0. */
    uint64_t pushed = shmring__load_relaxed_64(&r->sh->pushed);
    if (pushed >= w || w - pushed > r->nslots)
        return; /* counted already (or not a count we can trust) */
    uint64_t bytes = 0;
    for (uint64_t p = pushed; p < w; p++) {
        uint32_t len = shmring__load_relaxed_32(&slot_at(r, p)->len);
        bytes += len <= r->slot_size ? len : 0; /* peer-written: checked */
    }
    count(&r->sh->pushed, w - pushed);
    count(&r->sh->bytes_pushed, bytes);
}

/* Position the producer resumes at after taking the lease. */
static uint64_t resume_position(shmring_t *r)
{
    /* Acquire: the previous producer's last write_index store (P2 order). */
    uint64_t w = shmring__load_acquire_64(&r->sh->write_index);
    /* Acquire: pairs with C3. */
    uint64_t ri = shmring__load_acquire_64(&r->sh->read_index);
    /* A producer that died between P2 and its write_index store (in a batch,
     * up to a ring's worth of slots) published more than write_index says,
     * and consumers may have taken some already. */
    if (ri > w)
        w = ri;
    /* Acquire: pairs with P2 of the previous producer. */
    for (uint32_t i = 0; i < r->nslots; i++, w++)
        if (shmring__load_acquire_64(&slot_at(r, w)->seq) != published(w))
            break;
    count_uncommitted(r, w);
    if (shmring__span_on(&r->span))
        shmring__span_resume(&r->span, w); /* S5 */
    return w;
}

/* Make room for position w in overwrite mode (O1). */
static int overwrite_room(shmring_t *r, uint64_t w)
{
    uint64_t ri = r->cached_read;
    for (unsigned i = 0; i < MAX_RETRIES; i++) {
        if (ri > w)
            return -EPROTO; /* consumers past the producer: corrupt segment */
        if (w - ri < r->nslots) {
            r->cached_read = ri;
            return 0;
        }
        uint64_t target = w - r->nslots + 1, lost = target - ri;
        if (shmring__span_on(&r->span)) /* the first whole message from there */
            target = shmring__span_skip(&r->span, ri, target, w, &lost);
        /* O1: CAS, pairs with C3; moves the oldest messages out of reach. */
        if (shmring__cas_64(&r->sh->read_index, &ri, target)) {
            SHMRING_FAULT(RING_O1);
            count(&r->sh->dropped, lost);
            r->cached_read = target;
            return 0;
        }
    }
    return CONTENDED; /* consumers kept moving read_index: not full */
}

/*
 * Z2: may the producer write the slot of w, as far as claims go? 0 (free),
 * -EAGAIN (held: the slot's last message is still claimed, the ring is
 * full), CONTENDED (a pending claim of entry *owner), -ESTALE (a stale claim
 * was cleared: look again).
 */
static int slot_claim(shmring_t *r, struct shmring__slot *s, uint64_t w, unsigned *owner)
{
    /* Z2: acquire, pairs with Z3 (release), Z4 and Z1. */
    uint64_t c = shmring__load_acquire_64(&s->claim);
    SHMRING_FAULT(CLAIM_Z2);
    if (c == 0)
        return 0;
    *owner = claim_owner(c);
    /* Peer-written: only a claim of the slot's last position w - nslots can
     * be held (we wrote w - nslots after its predecessor's claim was gone). */
    if (claim_pos(c) + r->nslots != w) {
        clear_stale(r, s, c);
        return -ESTALE;
    }
    return claim_held(c) ? -EAGAIN : CONTENDED;
}

/* The claim side of room_for(): wait out pending claims, reclaim dead ones. */
static int room_from_claims(shmring_t *r, uint64_t w, int slow)
{
    struct shmring__slot *s = slot_at(r, w);
    struct contention k = {0, 0};
    for (unsigned i = 0; i < MAX_RETRIES; i++) {
        unsigned owner = 0;
        int rc = slot_claim(r, s, w, &owner);
        if (rc == -ESTALE)
            continue;
        if (rc == -EAGAIN && slow != SLOW_NONE && reclaim_if_dead(r, owner))
            continue; /* Z2 again: the reclaim's CAS released the slot */
        if (rc != CONTENDED)
            return rc;
        if (contention_wait(r, &k, owner, slow) < 0)
            return CONTENDED;
    }
    return CONTENDED;
}

/*
 * Lossless mode: lower r->floor to the slowest live subscriber (G1..G3 in
 * subscriber.c). Where the call may make syscalls and a subscriber holds the
 * producer back, reclaim it if it died, and look again.
 */
static void subscribers_room(shmring_t *r, uint64_t w, int slow)
{
    for (unsigned i = 0; i < SHMRING__PARTIES; i++) {
        unsigned blocker = 0;
        shmring__sub_floor(&r->subs, w, &r->cached_read, &r->floor, &blocker);
        if (w - r->floor < r->nslots || blocker == 0 || slow == SLOW_NONE ||
            !reclaim_if_dead(r, blocker))
            return;
        r->floor = r->cached_read;
    }
}

/*
 * Find room for the slot of position w: -EAGAIN if full (never in overwrite
 * mode), CONTENDED if a claim part-way through pins the slot. No syscall
 * unless the slot is claimed and slow allows it.
 */
static __attribute__((noinline)) int room_slow(shmring_t *r, uint64_t w, int slow)
{
    if (w - r->floor >= r->nslots) {
        /* P3: acquire, pairs with C3 (and Z1 through it). */
        r->cached_read = shmring__load_acquire_64(&r->sh->read_index);
        if (r->cached_read > w)
            return -EPROTO;
        r->floor = r->cached_read;
        if (!r->overwrite)
            subscribers_room(r, w, slow);
        if (w - r->floor >= r->nslots) {
            if (!r->overwrite)
                return -EAGAIN;
            int rc = overwrite_room(r, w);
            if (rc < 0)
                return rc;
            r->floor = r->cached_read;
        }
        SHMRING_FAULT(RING_P3);
    }
    if (r->overwrite)
        return 0;
    return room_from_claims(r, w, slow);
}

/* The common case of room_slow(), inlined: the cached read_index says there
 * is room, and the slot is not claimed. */
static inline __attribute__((always_inline)) int room_for(shmring_t *r, uint64_t w, int slow)
{
    if (w - r->floor < r->nslots) {
        if (r->overwrite)
            return 0;
        /* Z2: acquire, pairs with Z3 (release) and Z1. */
        uint64_t c = shmring__load_acquire_64(&slot_at(r, w)->claim);
        SHMRING_FAULT(CLAIM_Z2);
        if (c == 0)
            return 0;
    }
    return room_slow(r, w, slow);
}

/* P1: mark the slot of w as being written. */
static inline struct shmring__slot *write_begin(shmring_t *r, uint64_t w)
{
    struct shmring__slot *s = slot_at(r, w);
    /* P1: release (free on x86-64): a reader that sees the odd value also
     * sees the O1 move of read_index, so it retries instead of taking the
     * slot for corrupt; then a release fence orders it before the payload. */
    shmring__store_release_64(&s->seq, 2 * w + 1);
    shmring__fence_release();
    SHMRING_FAULT(RING_P1);
    return s;
}

/* P2: publish the slot of w. */
static inline void write_end(struct shmring__slot *s, uint64_t w, uint32_t len)
{
    /* Relaxed: published by the release store of seq just after. */
    shmring__store_relaxed_32(&s->len, len);
    /* P2: release, pairs with C1 in read_slot(). */
    shmring__store_release_64(&s->seq, published(w));
    SHMRING_FAULT(RING_P2);
}

/* After one or more write_end: advance write_index past `slots` positions
 * holding n messages, and wake sleepers. */
static inline void write_commit_slots(shmring_t *r, uint64_t slots, uint64_t n, uint64_t bytes)
{
    /* Locals: the counters' stores could alias the handle for the compiler. */
    struct shmring__ring_shared *sh = r->sh;
    uint64_t w = r->w + slots;
    r->w = w;
    count(&sh->pushed, n);
    count(&sh->bytes_pushed, bytes);
    if (slots != n) /* after pushed: see count_uncommitted_span() */
        count(&sh->span_extra, slots - n);
    if (r->fenced_notify) {
        /* Exchange: write_index is for stats and for a successor producer
         * (the consumers poll slots, not this line); as a full barrier it
         * also orders P2 before the load of the sleep flag (W: pairs with
         * ec_prepare). */
        shmring__xchg_64(&sh->write_index, w);
        SHMRING_FAULT(RING_W);
        shmring__ec_notify_after_atomic(&sh->data_ec);
        return;
    }
    /* Release: for stats and a successor producer (resume_position). */
    shmring__store_release_64(&sh->write_index, w);
    SHMRING_FAULT(RING_W);
    /* M1: no barrier; pairs with M2 of a waiting consumer. With ACK (F2). */
    shmring__ec_notify_asym(&sh->data_ec, &r->fenced_notify, 1);
}

static inline void write_commit(shmring_t *r, uint64_t n, uint64_t bytes)
{
    write_commit_slots(r, n, n, bytes);
}

static int producer_check(const shmring_t *r)
{
    if (r == NULL)
        return -EINVAL;
    if (!r->producer)
        return -EPERM;
    if (r->lease_gone)
        return -EOWNERDEAD;
    return 0;
}

/*
 * On the slow path only: did another handle take our lease? Once a call has
 * learned it, the handle never writes a slot again (producer_check).
 */
static int lease_lost(shmring_t *r)
{
    if (r->lease_gone)
        return 1;
    /* Acquire: pairs with the release in party_setup() of a new holder. Our
     * word carries its generation: any hand-over since changes it. */
    uint64_t o = shmring__load_acquire_64(&r->seg->hdr->party[0].owner);
    if (o == r->lease_word && SHMRING__OWNER_PID(o) == getpid())
        return 0;
    r->lease_gone = 1;
    return 1;
}

static inline __attribute__((always_inline)) int push_try(shmring_t *r, const void *msg, size_t len,
                                                          int slow)
{
    int rc = room_for(r, r->w, slow);
    if (rc < 0)
        return rc;
    struct shmring__slot *s = write_begin(r, r->w);
    shmring__copy_to_shared(payload_of(s), msg, len);
    write_end(s, r->w, (uint32_t)len);
    write_commit(r, 1, len);
    return 0;
}

static int push_full(shmring_t *r, int rc)
{
    if (rc == -EAGAIN) {
        count(&r->sh->full_events, 1);
        if (lease_lost(r))
            return -EOWNERDEAD;
    }
    if ((rc == -EAGAIN || rc == CONTENDED) && r->event != NULL) {
        int erc = shmring__event_idle(r, r->event, SHMRING__EV_ROOM);
        return erc < 0 ? erc : rc;
    }
    return rc;
}

/* ---- Messages larger than a slot (span.h): producer ---------------------- */

/* Room for the k positions from w: each one free (of unread messages and
 * of claims), as room_for() checks one. */
static int room_for_span(shmring_t *r, uint64_t w, uint64_t k, int slow)
{
    for (uint64_t i = 0; i < k; i++) {
        int rc = room_for(r, w + i, slow);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Write a message of more than slot_size bytes at w: P1 on its head, the
 * continuations (S1, S2), then the head's payload and P2. */
static void write_span(shmring_t *r, uint64_t w, const void *msg, size_t len)
{
    struct shmring__slot *s = write_begin(r, w);
    shmring__span_write_tail(&r->span, w, msg, len);
    shmring__copy_to_shared(payload_of(s), msg, r->slot_size);
    write_end(s, w, (uint32_t)len);
}

static int push_span_try(shmring_t *r, const void *msg, size_t len, int slow)
{
    uint64_t k = shmring__span_slots(&r->span, len);
    int rc = room_for_span(r, r->w, k, slow);
    if (rc < 0)
        return rc;
    write_span(r, r->w, msg, len);
    write_commit_slots(r, k, 1, len);
    return 0;
}

/* shmring_push of a message longer than a slot. */
static __attribute__((noinline)) int push_span(shmring_t *r, const void *msg, size_t len)
{
    if (len > r->span.max_message)
        return -EMSGSIZE;
    if (r->reserved)
        return -EBUSY;
    int rc = push_span_try(r, msg, len, SLOW_NONE);
    if (rc == -EAGAIN || rc == CONTENDED)
        rc = push_span_try(r, msg, len, SLOW_YIELD);
    return rc < 0 ? push_full(r, rc) : 0;
}

/* shmring_push_batch on a ring whose messages may span slots. */
static ssize_t push_batch_span(shmring_t *r, const struct iovec *iov, size_t n)
{
    size_t done = 0;
    uint64_t slots = 0, bytes = 0;
    int rc = 0;
    while (done < n) {
        size_t len = iov[done].iov_len;
        uint64_t w = r->w + slots, k = shmring__span_slots(&r->span, len);
        rc = room_for_span(r, w, k, done == 0 ? SLOW_YIELD : SLOW_NONE);
        if (rc < 0)
            break;
        if (k > 1) {
            write_span(r, w, iov[done].iov_base, len);
        } else {
            struct shmring__slot *s = write_begin(r, w);
            shmring__copy_to_shared(payload_of(s), iov[done].iov_base, len);
            write_end(s, w, (uint32_t)len);
        }
        slots += k;
        bytes += len;
        done++;
    }
    if (done > 0) {
        SHMRING_FAULT(RING_PUSH_BATCH);
        write_commit_slots(r, slots, done, bytes);
        return (ssize_t)done;
    }
    return n == 0 ? 0 : push_full(r, rc);
}

/* A reservation of more than slot_size bytes: room for all its positions
 * now (so that the commit cannot fail), P1 on its head; the caller writes
 * into a private buffer that shmring_commit copies into the slots. */
static int reserve_span(shmring_t *r, size_t len, void **payload, int slow)
{
    void *buf = shmring__span_reserve_buf(&r->span);
    if (buf == NULL)
        return -ENOMEM;
    int rc = room_for_span(r, r->w, shmring__span_slots(&r->span, len), slow);
    if (rc < 0)
        return rc;
    r->reserved_slot = write_begin(r, r->w);
    r->reserved = 1;
    r->reserved_len = len;
    r->span_reserved = 1;
    *payload = buf;
    return 0;
}

static int commit_span(shmring_t *r, size_t len)
{
    const unsigned char *buf = r->span.reserve_buf;
    uint64_t k = shmring__span_slots(&r->span, len);
    shmring__span_write_tail(&r->span, r->w, buf, len);
    shmring__copy_to_shared(payload_of(r->reserved_slot), buf,
                            len < r->slot_size ? len : r->slot_size);
    write_end(r->reserved_slot, r->w, (uint32_t)len);
    r->reserved = 0;
    r->span_reserved = 0;
    r->reserved_slot = NULL;
    write_commit_slots(r, k, 1, len);
    return 0;
}

/*
 * count_uncommitted() of a ring whose messages may span slots: write_index
 * counts positions, pushed messages; each commit counts pushed, bytes, then
 * span_extra (its continuation slots) before it moves write_index.
 */
static void count_uncommitted_span(shmring_t *r, uint64_t w)
{
    /* Relaxed: the predecessor is dead; we are the only writer of these. */
    uint64_t wi = shmring__load_relaxed_64(&r->sh->write_index);
    uint64_t pushed = shmring__load_relaxed_64(&r->sh->pushed);
    uint64_t extra = shmring__load_relaxed_64(&r->sh->span_extra);
    if (w <= wi || w - wi > r->nslots)
        return; /* nothing uncommitted (or not a count we can trust) */
    uint64_t msgs, bytes, slots_extra;
    shmring__span_uncommitted(&r->span, wi, w, &msgs, &bytes, &slots_extra);
    if (pushed + extra == wi) {
        count(&r->sh->pushed, msgs);
        count(&r->sh->bytes_pushed, bytes);
        count(&r->sh->span_extra, slots_extra);
    } else if (pushed + extra == wi + msgs) {
        count(&r->sh->span_extra, slots_extra); /* it died before counting them */
    }
}

SHMRING_API int shmring_push(shmring_t *r, const void *msg, size_t len)
{
    int rc = producer_check(r);
    if (rc < 0)
        return rc;
    if (msg == NULL && len > 0)
        return -EINVAL;
    if (len > r->slot_size)
        return push_span(r, msg, len);
    if (r->reserved)
        return -EBUSY;
    rc = push_try(r, msg, len, SLOW_NONE);
    if (rc == -EAGAIN || rc == CONTENDED)
        rc = push_try(r, msg, len, SLOW_YIELD);
    return rc < 0 ? push_full(r, rc) : 0;
}

SHMRING_API ssize_t shmring_push_batch(shmring_t *r, const struct iovec *iov, size_t n)
{
    int rc = producer_check(r);
    if (rc < 0)
        return rc;
    if (iov == NULL && n > 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
            return -EINVAL;
        if (iov[i].iov_len > r->span.max_message)
            return -EMSGSIZE;
    }
    if (r->reserved)
        return -EBUSY;
    if (shmring__span_on(&r->span))
        return push_batch_span(r, iov, n);
    size_t done = 0;
    uint64_t bytes = 0;
    while (done < n) {
        uint64_t w = r->w + done;
        rc = room_for(r, w, done == 0 ? SLOW_YIELD : SLOW_NONE);
        if (rc < 0)
            break;
        struct shmring__slot *s = write_begin(r, w);
        shmring__copy_to_shared(payload_of(s), iov[done].iov_base, iov[done].iov_len);
        write_end(s, w, (uint32_t)iov[done].iov_len);
        bytes += iov[done].iov_len;
        done++;
    }
    if (done > 0) {
        SHMRING_FAULT(RING_PUSH_BATCH);
        write_commit(r, done, bytes);
        return (ssize_t)done;
    }
    return n == 0 ? 0 : push_full(r, rc);
}

/* P1 for a reservation; the payload pointer handed to the caller. */
static int reserve_slot(shmring_t *r, size_t len, void **payload)
{
#if defined(SHMRING__TSAN)
    if (r->bounce == NULL && (r->bounce = malloc(r->slot_size ? r->slot_size : 1)) == NULL)
        return -ENOMEM;
#endif
    r->reserved_slot = write_begin(r, r->w);
    r->reserved = 1;
    r->reserved_len = len;
    *payload = r->bounce != NULL ? r->bounce : payload_of(r->reserved_slot);
    return 0;
}

SHMRING_API int shmring_reserve(shmring_t *r, size_t len, void **payload)
{
    int rc = producer_check(r);
    if (rc < 0)
        return rc;
    if (payload == NULL)
        return -EINVAL;
    if (len > r->span.max_message)
        return -EMSGSIZE;
    if (r->reserved)
        return -EBUSY;
    if (len > r->slot_size) {
        rc = reserve_span(r, len, payload, SLOW_NONE);
        if (rc == -EAGAIN || rc == CONTENDED)
            rc = reserve_span(r, len, payload, SLOW_YIELD);
        return rc < 0 ? push_full(r, rc) : 0;
    }
    rc = room_for(r, r->w, SLOW_NONE);
    if (rc == -EAGAIN || rc == CONTENDED)
        rc = room_for(r, r->w, SLOW_YIELD);
    if (rc < 0)
        return push_full(r, rc);
    return reserve_slot(r, len, payload);
}

SHMRING_API int shmring_commit(shmring_t *r, size_t len)
{
    if (r == NULL || !r->producer || !r->reserved || len > r->reserved_len)
        return -EINVAL;
    if (r->span_reserved)
        return commit_span(r, len);
    if (r->bounce != NULL)
        shmring__copy_to_shared(payload_of(r->reserved_slot), r->bounce, len);
    write_end(r->reserved_slot, r->w, (uint32_t)len);
    r->reserved = 0;
    r->reserved_slot = NULL;
    write_commit(r, 1, len);
    return 0;
}

/*
 * Drop the open reservation. Writes nothing shared: the slot stays marked
 * as being written for position w (P1), which consumers read as "not
 * published yet", exactly as after a producer that closed mid-reservation;
 * the next push or reserve writes position w into it again.
 */
SHMRING_API int shmring_discard(shmring_t *r)
{
    if (r == NULL)
        return -EINVAL;
    if (!r->producer)
        return -EPERM;
    if (!r->reserved)
        return -EINVAL;
    r->reserved = 0;
    r->span_reserved = 0;
    r->reserved_slot = NULL;
    r->reserved_len = 0;
    return 0;
}

/* ---- Consumer ----------------------------------------------------------- */

enum slot_state { SLOT_READY, SLOT_EMPTY, SLOT_STALE, SLOT_CORRUPT };

/*
 * C1: is position r published in its slot? STALE: read_index moved (retry);
 * CORRUPT: the slot claims a later position while read_index has not moved.
 */
static inline enum slot_state read_slot(const shmring_t *r, uint64_t pos, uint64_t *seq)
{
    struct shmring__slot *s = slot_at(r, pos);
    /* C1: acquire, pairs with P2. */
    uint64_t q = shmring__load_acquire_64(&s->seq);
    *seq = q;
    if (q == published(pos))
        return SLOT_READY;
    /* Relaxed: only compared with the value loaded before. */
    if (shmring__load_relaxed_64(&r->sh->read_index) != pos)
        return SLOT_STALE;
    return q > published(pos) ? SLOT_CORRUPT : SLOT_EMPTY;
}

/* Length of a published slot, checked against the validated max_message
 * (the slot size unless messages span slots). */
static inline int slot_len(const shmring_t *r, struct shmring__slot *s, uint32_t *len)
{
    /* Relaxed: ordered by C1 before and C2 after. Peer-written: checked. */
    uint32_t l = shmring__load_relaxed_32(&s->len);
    if (l > r->span.max_message)
        return -EPROTO;
    *len = l;
    return 0;
}

/* C2: did the slot keep its sequence while we read it? */
static inline int seq_unchanged(struct shmring__slot *s, uint64_t seq)
{
    /* C2: acquire fence, pairs with the release fence of P1. */
    shmring__fence_acquire();
    return shmring__load_relaxed_64(&s->seq) == seq;
}

/* Empty ring: -EPIPE if the producer closed (and the ring is still empty),
 * unless this handle follows the ring across producers. */
static int empty_result(const shmring_t *r, uint64_t pos)
{
    if (r->follow || lease_state(r) != SHMRING__PARTY_CLOSED)
        return -EAGAIN;
    uint64_t q;
    /* Re-check after seeing CLOSED: messages published before the close. */
    return read_slot(r, pos, &q) == SLOT_EMPTY ? -EPIPE : -EAGAIN;
}

static int consumer_check(const shmring_t *r)
{
    if (r == NULL)
        return -EINVAL;
    if (!(r->roles & (SHMRING_CONSUMER | SHMRING_SUBSCRIBER)))
        return -EPERM;
    return 0;
}

/* A subscriber handle: its reads go to subscriber.c. */
static inline int is_sub(const shmring_t *r)
{
    return r->subs.index >= 0;
}

/*
 * C3: take positions [*pos, *pos + n), the step that delivers them.
 * Competing consumers CAS read_index (0 if another consumer moved it). The
 * consumer of a SHMRING_SINGLE_CONSUMER ring is the only writer of
 * read_index (no overwrite, so no O1; one consumer entry, so no other
 * consumer): a store.
 */
static inline int take(shmring_t *r, uint64_t *pos, uint64_t n)
{
    if (!r->single)
        /* C3: CAS, seq_cst; pairs with P3 and with other consumers' C3. */
        return shmring__cas_64(&r->sh->read_index, pos, *pos + n);
    if (r->fenced_notify)
        /* C3: exchange (at least release, pairs with P3); a full barrier
         * before consumed()'s load of the sleep flag (W, symmetric). */
        shmring__xchg_64(&r->sh->read_index, *pos + n);
    else
        /* C3: release, pairs with P3: our reads of the slots happen before
         * the producer rewrites them. M1 in consumed(). */
        shmring__store_release_64(&r->sh->read_index, *pos + n);
    return 1;
}

static inline void consumed(shmring_t *r, uint64_t n, uint64_t bytes)
{
    struct shmring__party *p = my_party(r);
    count(&p->counter[SHMRING__C_POPPED], n);
    count(&p->counter[SHMRING__C_BYTES], bytes);
    if (r->single && !r->fenced_notify) {
        /* M1: C3 was a plain store; pairs with M2 of a waiting producer. */
        shmring__ec_notify_asym(&r->sh->space_ec, &r->fenced_notify, 0);
        return;
    }
    /* C3 was an atomic RMW: wake a producer waiting for space (W). */
    shmring__ec_notify_after_atomic(&r->sh->space_ec);
}

/*
 * The oldest message: its position and sequence, or -ESTALE (read_index
 * moved: retry), -EAGAIN / -EPIPE (empty), -EPROTO (corrupt).
 */
static int oldest(const shmring_t *r, uint64_t *pos, uint64_t *seq)
{
    *pos = shmring__load_acquire_64(&r->sh->read_index);
    switch (read_slot(r, *pos, seq)) {
    case SLOT_READY:
        return 0;
    case SLOT_STALE:
        return -ESTALE;
    case SLOT_EMPTY:
        return empty_result(r, *pos);
    case SLOT_CORRUPT:
        break;
    }
    return -EPROTO;
}

/* ---- Messages larger than a slot (span.h): consumer ---------------------- */

#define BATCH_MAX      64
#define BATCH_SPAN_MAX BATCH_MAX

static ssize_t pop_result(shmring_t *r, ssize_t rc);

/*
 * Copy the spanning message whose head (seq, C1 done) is at pos into buf,
 * then check that no slot of it changed meanwhile (S4, C2): 0, -ESTALE
 * (lapped or taken: retry) or -EPROTO (a continuation that cannot be one
 * while the head and read_index stay put: corrupt).
 */
static int span_read(shmring_t *r, uint64_t pos, uint64_t seq, uint32_t len, void *buf)
{
    struct shmring__slot *s = slot_at(r, pos);
    int rc = shmring__span_copy(&r->span, pos, len, buf);
    if (rc == 0 && shmring__span_unchanged(&r->span, pos, len) && seq_unchanged(s, seq))
        return 0;
    /* Relaxed: only compared with the position loaded before. */
    if (!seq_unchanged(s, seq) || shmring__load_relaxed_64(&r->sh->read_index) != pos)
        return -ESTALE;
    return rc == SHMRING__SPAN_MISMATCH ? -EPROTO : -ESTALE;
}

/* The copy pop of a spanning message: length, -ESTALE (retry) or -EPROTO. */
static __attribute__((noinline)) ssize_t pop_span(shmring_t *r, void *buf, uint64_t pos,
                                                  uint64_t seq, uint32_t len)
{
    int rc = span_read(r, pos, seq, len, buf);
    if (rc < 0)
        return rc;
    /* C3 over all its positions: the delivering step. */
    if (!take(r, &pos, shmring__span_slots(&r->span, len)))
        return -ESTALE;
    consumed(r, 1, len);
    return (ssize_t)len;
}

/* A claim's private copy of a spanning message (the claimer holds its
 * pending claim, or overwrite mode): 0, -ENOMEM, -ESTALE or -EPROTO. */
static int claim_span_copy(shmring_t *r, uint64_t pos, uint64_t seq, uint32_t len, void **copy)
{
    void *buf = shmring__span_buf_new(&r->span, len);
    if (buf == NULL)
        return -ENOMEM;
    int rc = span_read(r, pos, seq, len, buf);
    SHMRING_FAULT(SPAN_CLAIM);
    if (rc < 0) {
        shmring__span_buf_free(&r->span, buf);
        return rc;
    }
    *copy = buf;
    return 0;
}

/* shmring_pop_batch on a ring whose messages may span slots: as batch_copy
 * and its caller, message by message. */
static ssize_t pop_batch_span(shmring_t *r, struct iovec *iov, size_t n)
{
    uint64_t seqs[BATCH_SPAN_MAX], at[BATCH_SPAN_MAX];
    uint32_t lens[BATCH_SPAN_MAX];
    for (unsigned tries = 0; tries < MAX_RETRIES; tries++) {
        /* Acquire: pairs with C3 of other consumers. */
        uint64_t pos = shmring__load_acquire_64(&r->sh->read_index), q = pos;
        size_t k = 0;
        int err = 0;
        for (; k < n; k++) {
            uint64_t seq;
            enum slot_state st = read_slot(r, q, &seq);
            if (st != SLOT_READY) {
                if (k == 0)
                    err = st == SLOT_EMPTY ? -EAGAIN : st == SLOT_STALE ? -ESTALE : -EPROTO;
                break;
            }
            struct shmring__slot *s = slot_at(r, q);
            uint32_t len;
            int bad = slot_len(r, s, &len);
            if (bad < 0 || len > iov[k].iov_len) {
                if (k == 0)
                    err = !seq_unchanged(s, seq) ? -ESTALE : bad < 0 ? bad : -EMSGSIZE;
                break;
            }
            if (len > r->slot_size) {
                int rc = span_read(r, q, seq, len, iov[k].iov_base);
                if (rc < 0) {
                    if (k == 0)
                        err = rc;
                    break;
                }
            } else {
                shmring__copy_from_shared(iov[k].iov_base, payload_of(s), len);
            }
            seqs[k] = seq;
            at[k] = q;
            lens[k] = len;
            q += shmring__span_slots(&r->span, len);
        }
        /* C2 (and S4) for every copied message. */
        for (size_t i = 0; i < k; i++) {
            if (!seq_unchanged(slot_at(r, at[i]), seqs[i]) ||
                !shmring__span_unchanged(&r->span, at[i], lens[i])) {
                k = i;
                q = at[i];
                break;
            }
        }
        if (k == 0) {
            if (err == -ESTALE || err == 0)
                continue;
            if (err == -EAGAIN)
                return pop_result(r, empty_result(r, pos));
            return err;
        }
        SHMRING_FAULT(RING_POP_BATCH);
        /* C3 for the whole batch: one index update. */
        if (take(r, &pos, q - pos)) {
            uint64_t bytes = 0;
            for (size_t i = 0; i < k; i++) {
                iov[i].iov_len = lens[i];
                bytes += lens[i];
            }
            consumed(r, k, bytes);
            return (ssize_t)k;
        }
    }
    return CONTENDED; /* other consumers kept taking the oldest: not empty */
}
static ssize_t pop_claimed(shmring_t *r, void *buf, size_t cap, int slow);

/* One try of a copy pop: length, -EAGAIN, -EPIPE, -EMSGSIZE or -EPROTO. */
static ssize_t pop_try(shmring_t *r, void *buf, size_t cap, int slow)
{
    if (r->redeliver)
        return pop_claimed(r, buf, cap, slow);
    for (unsigned tries = 0; tries < MAX_RETRIES; tries++) {
        uint64_t pos, seq;
        int rc = oldest(r, &pos, &seq);
        if (rc == -ESTALE)
            continue;
        if (rc < 0)
            return rc;
        struct shmring__slot *s = slot_at(r, pos);
        uint32_t len;
        int bad = slot_len(r, s, &len);
        if (bad < 0 || len > cap) {
            if (!seq_unchanged(s, seq))
                continue;
            return bad < 0 ? bad : -EMSGSIZE;
        }
        if (len > r->slot_size) {
            ssize_t n = pop_span(r, buf, pos, seq, len);
            if (n == -ESTALE)
                continue;
            return n;
        }
        SHMRING_FAULT(RING_C1);
        shmring__copy_from_shared(buf, payload_of(s), len);
        SHMRING_FAULT(RING_C2);
        if (!seq_unchanged(s, seq))
            continue;
        SHMRING_FAULT(RING_C3);
        /* C3: the delivering step. */
        if (take(r, &pos, 1)) {
            consumed(r, 1, len);
            return (ssize_t)len;
        }
    }
    return CONTENDED; /* other consumers kept taking the oldest: not empty */
}

static ssize_t pop_result(shmring_t *r, ssize_t rc)
{
    if (rc == TIMEDOUT_CONTENDED)
        return -ETIMEDOUT; /* a claim part-way through to the end: not empty */
    if (rc == -EAGAIN || rc == -EPIPE || rc == -ETIMEDOUT)
        count(&my_party(r)->counter[SHMRING__C_EMPTY], 1);
    if ((rc == -EAGAIN || rc == CONTENDED) && r->event != NULL) {
        int erc = shmring__event_idle(r, r->event, SHMRING__EV_DATA);
        return erc < 0 ? erc : rc;
    }
    return rc;
}

SHMRING_API ssize_t shmring_pop(shmring_t *r, void *buf, size_t cap)
{
    int rc = consumer_check(r);
    if (rc < 0)
        return rc;
    if (buf == NULL && cap > 0)
        return -EINVAL;
    if (is_sub(r))
        return pop_result(r, shmring__sub_pop(&r->subs, buf, cap, &r->fenced_notify));
    return pop_result(r, pop_try(r, buf, cap, SLOW_YIELD));
}

/* Collect up to n published, fitting messages from pos; returns how many. */
static size_t batch_copy(shmring_t *r, uint64_t pos, struct iovec *iov, size_t n, uint64_t *seqs,
                         size_t *lens, int *first_error)
{
    size_t k = 0;
    *first_error = 0;
    for (; k < n; k++) {
        uint64_t seq;
        enum slot_state st = read_slot(r, pos + k, &seq);
        if (st != SLOT_READY) {
            if (k == 0)
                *first_error = st == SLOT_EMPTY ? -EAGAIN : st == SLOT_STALE ? -ESTALE : -EPROTO;
            break;
        }
        struct shmring__slot *s = slot_at(r, pos + k);
        uint32_t len;
        int bad = slot_len(r, s, &len);
        if (bad < 0 || len > iov[k].iov_len) {
            if (k == 0)
                *first_error = !seq_unchanged(s, seq) ? -ESTALE : bad < 0 ? bad : -EMSGSIZE;
            break;
        }
        shmring__copy_from_shared(iov[k].iov_base, payload_of(s), len);
        seqs[k] = seq;
        lens[k] = len;
    }
    /* C2 for every copied slot. */
    for (size_t i = 0; i < k; i++)
        if (!seq_unchanged(slot_at(r, pos + i), seqs[i]))
            return i;
    return k;
}

static ssize_t pop_batch_claimed(shmring_t *r, struct iovec *iov, size_t n);

SHMRING_API ssize_t shmring_pop_batch(shmring_t *r, struct iovec *iov, size_t n)
{
    int rc = consumer_check(r);
    if (rc < 0)
        return rc;
    if (iov == NULL && n > 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
            return -EINVAL;
    if (n == 0)
        return 0;
    if (n > BATCH_MAX)
        n = BATCH_MAX;
    if (is_sub(r))
        return pop_result(r, shmring__sub_pop_batch(&r->subs, iov, n, &r->fenced_notify));
    if (r->redeliver)
        return pop_batch_claimed(r, iov, n);
    if (shmring__span_on(&r->span))
        return pop_batch_span(r, iov, n);
    uint64_t seqs[BATCH_MAX];
    size_t lens[BATCH_MAX];
    for (unsigned tries = 0; tries < MAX_RETRIES; tries++) {
        /* Acquire: pairs with C3 of other consumers. */
        uint64_t pos = shmring__load_acquire_64(&r->sh->read_index);
        int err;
        size_t k = batch_copy(r, pos, iov, n, seqs, lens, &err);
        if (k == 0) {
            if (err == -ESTALE || err == 0)
                continue;
            if (err == -EAGAIN)
                return pop_result(r, empty_result(r, pos));
            return err;
        }
        SHMRING_FAULT(RING_POP_BATCH);
        /* C3 for the whole batch: one index update. */
        if (take(r, &pos, k)) {
            uint64_t bytes = 0;
            for (size_t i = 0; i < k; i++) {
                iov[i].iov_len = lens[i];
                bytes += lens[i];
            }
            consumed(r, k, bytes);
            return (ssize_t)k;
        }
    }
    return pop_result(r, CONTENDED); /* others kept taking the oldest: not empty */
}

/* ---- Zero-copy consumer ------------------------------------------------- */

static void fill_msg(shmring_t *r, shmring_msg_t *m, uint64_t pos, uint32_t len)
{
    m->data = payload_of(slot_at(r, pos));
    m->len = len;
    shmring__msg_set(m, pos, (uint32_t)(pos & r->mask), r->cookie);
}

/* Overwrite mode: claims do not hold the producer back (checked at release). */
static int claim_overwrite(shmring_t *r, shmring_msg_t *m, uint64_t pos, uint64_t seq)
{
    struct shmring__slot *s = slot_at(r, pos);
    uint32_t len;
    int bad = slot_len(r, s, &len);
    if (bad < 0)
        return seq_unchanged(s, seq) ? bad : -ESTALE;
    void *copy = NULL;
    if (len > r->slot_size && (bad = claim_span_copy(r, pos, seq, len, &copy)) < 0)
        return bad;
    /* C3. */
    if (!take(r, &pos, shmring__span_slots(&r->span, len))) {
        shmring__span_buf_free(&r->span, copy);
        return -ESTALE;
    }
    fill_msg(r, m, pos, len);
    if (copy != NULL)
        m->data = copy;
    count(&my_party(r)->counter[SHMRING__C_CLAIMS], 1);
    consumed(r, 1, len);
    return 0;
}

/*
 * What a claimer of pos makes of the claim word c on the slot that C1 showed
 * holding pos: CONTENDED (a pending claim of pos by *owner) or -ESTALE (look
 * again: read_index moved, or a stale claim was cleared).
 */
static int claim_met(shmring_t *r, struct shmring__slot *s, uint64_t pos, uint64_t c,
                     unsigned *owner)
{
    /* Peer-written; c >> CLAIM_POS_SHIFT is the claimed position + 1. */
    uint64_t q1 = c >> CLAIM_POS_SHIFT;
    if (q1 <= pos) {
        /* Z5: the slot was rewritten after q1 - 1, so that claim's C3 failed
         * (a held claim keeps the producer out of its slot). */
        clear_stale(r, s, c);
        return -ESTALE;
    }
    if (q1 == pos + 1 && !claim_held(c)) {
        *owner = claim_owner(c);
        return CONTENDED;
    }
    /* Held at pos (read_index moved), or later than pos: the slot moved on
     * since C1, unless read_index is still pos, which makes it garbage
     * (nothing later than pos can have been written or claimed). */
    /* Relaxed: only compared with the position loaded before. */
    if (q1 > pos + 1 && shmring__load_relaxed_64(&r->sh->read_index) == pos)
        clear_stale(r, s, c);
    return -ESTALE;
}

/* Z1, C3 then Z4; -ESTALE means "retry", CONTENDED "pos is being claimed". */
static int claim_pinned(shmring_t *r, shmring_msg_t *m, uint64_t pos, uint64_t seq, unsigned *owner)
{
    struct shmring__slot *s = slot_at(r, pos);
    /* Acquire, pairs with Z1 and Z4 of the claim's owner: claim_met() then
     * sees read_index at least where that owner saw it. Z1's CAS decides. */
    uint64_t c = shmring__load_acquire_64(&s->claim);
    if (c != 0)
        return claim_met(r, s, pos, c, owner);
    SHMRING_FAULT(CLAIM_READ);
    uint64_t mine = claim_word(pos, (unsigned)r->party);
    /* Z1: CAS, seq_cst; ordered before C3 below. */
    if (!shmring__cas_64(&s->claim, &c, mine))
        return -ESTALE;
    SHMRING_FAULT(CLAIM_Z1);
    uint32_t len;
    int bad = slot_len(r, s, &len);
    if (bad == 0 && !seq_unchanged(s, seq))
        bad = -ESTALE;
    void *copy = NULL;
    if (bad == 0 && len > r->slot_size)
        bad = claim_span_copy(r, pos, seq, len, &copy);
    SHMRING_FAULT(CLAIM_C3);
    /* C3, after Z1: the producer's P3 then Z2 see the claim. */
    if (bad == 0 && take(r, &pos, shmring__span_slots(&r->span, len))) {
        SHMRING_FAULT(REDELIVER_Z4);
        /* Z4: release, pairs with Z2: the claim is held. A plain store: no
         * one else writes a pending claim of a live owner at its position. */
        shmring__store_release_64(&s->claim, mine | CLAIM_HELD);
        fill_msg(r, m, pos, len);
        if (copy != NULL)
            m->data = copy;
        count(&my_party(r)->counter[SHMRING__C_CLAIMS], 1);
        consumed(r, 1, len);
        return 0;
    }
    shmring__span_buf_free(&r->span, copy);
    /* Z3: CAS, lost the race: give the slot back unless Z5 cleared it
     * already, and wake a producer that may have found it pinned. */
    SHMRING_FAULT(REDELIVER_GIVEBACK);
    shmring__cas_64(&s->claim, &mine, 0);
    shmring__ec_notify_after_atomic(&r->sh->space_ec);
    return bad == -EPROTO || bad == -ENOMEM ? bad : -ESTALE;
}

/* One try of a claim: 0, -EAGAIN / -EPIPE (empty), -EPROTO, or CONTENDED. */
static int claim_try(shmring_t *r, shmring_msg_t *m, int slow)
{
    struct contention k = {0, 0};
    uint64_t contended_pos = UINT64_MAX;
    for (unsigned tries = 0; tries < MAX_RETRIES; tries++) {
        uint64_t pos, seq;
        int rc = oldest(r, &pos, &seq);
        if (rc == -ESTALE)
            continue;
        if (rc < 0)
            return rc;
        unsigned owner = 0;
        rc = r->overwrite ? claim_overwrite(r, m, pos, seq) : claim_pinned(r, m, pos, seq, &owner);
        if (rc == CONTENDED) {
            /* Patience per position: the ring moving on is progress. */
            if (pos != contended_pos)
                k = (struct contention){0, 0};
            contended_pos = pos;
            if (contention_wait(r, &k, owner, slow) < 0)
                return CONTENDED;
            continue;
        }
        if (rc != -ESTALE)
            return rc;
    }
    return CONTENDED; /* other consumers kept taking the oldest: not empty */
}

static int claim_try_redeliver(shmring_t *r, shmring_msg_t *m, int slow);

/* claim_try, after any redelivery on a SHMRING_REDELIVER ring. */
static inline int claim_next(shmring_t *r, shmring_msg_t *m, int slow)
{
    if (r->redeliver)
        return claim_try_redeliver(r, m, slow);
    return claim_try(r, m, slow);
}

SHMRING_API int shmring_claim(shmring_t *r, shmring_msg_t *m)
{
    int rc = consumer_check(r);
    if (rc < 0)
        return rc;
    if (m == NULL)
        return -EINVAL;
    if (is_sub(r))
        return (int)pop_result(r, shmring__sub_claim(&r->subs, m));
    return (int)pop_result(r, claim_next(r, m, SLOW_YIELD));
}

/* Z3 and the wake-up of a producer waiting for room. */
static void release_claim(shmring_t *r, struct shmring__slot *s)
{
    if (r->fenced_notify) {
        /* Z3: exchange (a full barrier, so at least release), pairs with Z2
         * in room_for(): our reads of the payload happen before the
         * producer rewrites the slot; and it orders the release before the
         * load of the sleep flag (W, symmetric). */
        shmring__xchg_64(&s->claim, 0);
        shmring__ec_notify_after_atomic(&r->sh->space_ec);
        return;
    }
    /* Z3: release, pairs with Z2 in room_for(). */
    shmring__store_release_64(&s->claim, 0);
    /* M1: no barrier; pairs with M2 of a producer waiting for room. */
    shmring__ec_notify_asym(&r->sh->space_ec, &r->fenced_notify, 0);
}

SHMRING_API int shmring_release(shmring_t *r, shmring_msg_t *m)
{
    if (r != NULL && m != NULL && is_sub(r))
        return shmring__sub_release(&r->subs, m, &r->fenced_notify);
    if (r == NULL || m == NULL || r->party < 0 || !(r->roles & SHMRING_CONSUMER))
        return -EINVAL;
    struct shmring__msg_private mp = shmring__msg_get(m);
    if (mp.cookie != r->cookie || mp.slot >= r->nslots || (mp.pos & r->mask) != mp.slot ||
        m->data == NULL)
        return -EINVAL;
    struct shmring__slot *s = slot_at(r, mp.pos);
    uint64_t *held = &my_party(r)->counter[SHMRING__C_CLAIMS];
    int rc = 0;
    /* A spanning message was claimed as a private copy (never torn). */
    int copied = shmring__span_on(&r->span) && m->len > r->slot_size;
    if (r->overwrite) {
        if (copied && !shmring__span_buf_free(&r->span, m->data))
            return -EINVAL; /* not a copy this handle still holds */
        if (!copied && !seq_unchanged(s, published(mp.pos)))
            rc = -ESTALE;
    } else {
        uint64_t c = claim_word(mp.pos, (unsigned)r->party) | CLAIM_HELD;
        /* Relaxed: our own claim word; only we (or a reclaimer) change it. */
        if (shmring__load_relaxed_64(&s->claim) != c)
            return -EINVAL;
        SHMRING_FAULT(CLAIM_Z3);
        if (r->redeliver)
            shmring__rd_released(s, mp.pos); /* R6 (redeliver.c) */
        release_claim(r, s);
        if (copied)
            shmring__span_buf_free(&r->span, m->data);
    }
    /* Relaxed: our own counter line. */
    if (shmring__load_relaxed_64(held) > 0)
        count(held, (uint64_t)-1);
    m->data = NULL;
    shmring__msg_set(m, mp.pos, mp.slot, 0);
    return rc;
}

SHMRING_API uint64_t shmring_msg_pos(const shmring_msg_t *m)
{
    return m == NULL ? UINT64_MAX : shmring__msg_get(m).pos;
}

SHMRING_API ssize_t shmring_msg_copy(const shmring_msg_t *m, void *buf, size_t cap)
{
    if (m == NULL || (buf == NULL && cap > 0) || (m->data == NULL && m->len > 0))
        return -EINVAL;
    size_t n = m->len < cap ? m->len : cap;
    shmring__copy_from_shared(buf, m->data, n);
    return (ssize_t)n;
}

SHMRING_API uint64_t shmring_missed(shmring_t *r)
{
    if (r == NULL)
        return 0;
    if (is_sub(r))
        return shmring__sub_missed(&r->subs);
    /* Relaxed: a statistic. */
    uint64_t d = shmring__load_relaxed_64(&r->sh->dropped);
    uint64_t n = d - r->seen_dropped;
    r->seen_dropped = d;
    return n;
}

/* ---- Redelivery (SHMRING_REDELIVER, redeliver.h) ------------------------ */

static struct shmring__rd_view rd_view(const shmring_t *r)
{
    return (struct shmring__rd_view){r->sh, r->data, r->stride, r->mask, r->nslots};
}

/* sweep_claims() on a SHMRING_REDELIVER ring: 1 if the slot was freed. */
static int redeliver_sweep(shmring_t *r, uint64_t index, uint64_t c)
{
    struct shmring__rd_view v = rd_view(r);
    return shmring__rd_sweep(&v, index, c) == SHMRING__RD_CLEARED;
}

/* The oldest redeliverable message as this handle's claim, or -EAGAIN. */
static int claim_redelivered(shmring_t *r, shmring_msg_t *m, int force)
{
    struct shmring__rd_view v = rd_view(r);
    uint64_t pos;
    int counted;
    int rc = shmring__rd_take(&v, (unsigned)r->party, force, &pos, &counted);
    if (rc < 0)
        return rc;
    struct shmring__slot *s = slot_at(r, pos);
    uint32_t len;
    if (slot_len(r, s, &len) < 0) {
        release_claim(r, s);
        return -EPROTO;
    }
    fill_msg(r, m, pos, len);
    count(&my_party(r)->counter[SHMRING__C_CLAIMS], 1);
    if (!counted)
        consumed(r, 1, len); /* its first taker died before counting it */
    return 0;
}

/*
 * A claim found the ring empty (-EAGAIN) or at its end (-EPIPE): on a slow
 * try, reclaim dead consumers and look for redeliverable claims whatever the
 * hint says, at most every PEER_CHECK_NS while empty; and on every try at
 * the end of the stream, so that -EPIPE never hides a redelivery of a
 * consumer that died before it. Returns 0 (m filled) or rc.
 */
static int redeliver_idle(shmring_t *r, shmring_msg_t *m, int rc, int slow)
{
    if (rc != -EAGAIN && rc != -EPIPE)
        return rc;
    uint64_t now = shmring__now_ns();
    if (rc == -EAGAIN && (slow == SLOW_NONE || now < r->rd_next_idle))
        return rc;
    r->rd_next_idle = now + PEER_CHECK_NS;
    reclaim_dead(r);
    int got = claim_redelivered(r, m, 1);
    return got == -EAGAIN ? rc : got;
}

/* A claim on a SHMRING_REDELIVER ring: the oldest redelivery first (one load
 * of line 6 when none waits), then claim_try; when that finds the ring
 * empty, the idle look above. */
static __attribute__((noinline)) int claim_try_redeliver(shmring_t *r, shmring_msg_t *m, int slow)
{
    if (shmring__rd_waiting(r->sh)) {
        int rc = claim_redelivered(r, m, 0);
        if (rc != -EAGAIN)
            return rc;
    }
    return redeliver_idle(r, m, claim_try(r, m, slow), slow);
}

/*
 * Copy pop on a SHMRING_REDELIVER ring: claim, copy, release, so that a
 * consumer that dies anywhere before the release leaves a claim to redeliver
 * (it never returned the message: no duplicate). A message larger than cap
 * is given back as the oldest redeliverable one (-EMSGSIZE).
 */
static ssize_t pop_claimed(shmring_t *r, void *buf, size_t cap, int slow)
{
    shmring_msg_t m;
    int rc = claim_try_redeliver(r, &m, slow);
    if (rc < 0)
        return rc;
    if (m.len > cap) {
        struct shmring__rd_view v = rd_view(r);
        shmring__rd_give_back(&v, shmring__msg_get(&m).pos, (unsigned)r->party);
        uint64_t *held = &my_party(r)->counter[SHMRING__C_CLAIMS];
        /* Relaxed: our own counter line. */
        if (shmring__load_relaxed_64(held) > 0)
            count(held, (uint64_t)-1);
        return -EMSGSIZE;
    }
    shmring__copy_from_shared(buf, m.data, m.len);
    SHMRING_FAULT(REDELIVER_POP);
    shmring_release(r, &m);
    return (ssize_t)m.len;
}

/* pop_batch on a SHMRING_REDELIVER ring: one claimed pop per message. */
static ssize_t pop_batch_claimed(shmring_t *r, struct iovec *iov, size_t n)
{
    size_t k = 0;
    for (; k < n; k++) {
        ssize_t rc =
            pop_claimed(r, iov[k].iov_base, iov[k].iov_len, k == 0 ? SLOW_YIELD : SLOW_NONE);
        if (rc < 0) {
            if (k == 0)
                return pop_result(r, rc);
            break;
        }
        iov[k].iov_len = (size_t)rc;
    }
    return (ssize_t)k;
}

/* ---- Waiting ------------------------------------------------------------ */

SHMRING_API int shmring_set_wait(shmring_t *r, int strategy, uint32_t spins)
{
    if (r == NULL)
        return -EINVAL;
    if (strategy != SHMRING_WAIT_SPIN && strategy != SHMRING_WAIT_YIELD &&
        strategy != SHMRING_WAIT_SLEEP)
        return -EINVAL;
    r->wait_strategy = strategy;
    r->spins = spins;
    return 0;
}

enum wait_op { OP_PUSH, OP_POP, OP_CLAIM, OP_RESERVE };

struct wait_args {
    const void *msg;
    void *buf;
    size_t len;
    shmring_msg_t *m;
    void **payload;
};

static ssize_t op_try(shmring_t *r, enum wait_op op, struct wait_args *a, int slow)
{
    switch (op) {
    case OP_PUSH:
        if (a->len > r->slot_size)
            return push_span_try(r, a->msg, a->len, slow);
        return push_try(r, a->msg, a->len, slow);
    case OP_RESERVE: {
        if (a->len > r->slot_size)
            return reserve_span(r, a->len, a->payload, slow);
        int rc = room_for(r, r->w, slow);
        if (rc < 0)
            return rc;
        return reserve_slot(r, a->len, a->payload);
    }
    case OP_POP:
        if (is_sub(r))
            return shmring__sub_pop(&r->subs, a->buf, a->len, &r->fenced_notify);
        return pop_try(r, a->buf, a->len, slow);
    case OP_CLAIM:
        if (is_sub(r))
            return shmring__sub_claim(&r->subs, a->m);
        return claim_next(r, a->m, slow);
    }
    return -EINVAL;
}

/* Slow-path checks while waiting: a dead producer ends the stream for
 * consumers; dead consumers' claims are reclaimed for the producer. */
static int peer_check(shmring_t *r, enum wait_op op)
{
    if (op == OP_PUSH || op == OP_RESERVE) {
        reclaim_dead(r);
        return lease_lost(r) ? -EOWNERDEAD : 0;
    }
    uint64_t o = shmring__load_acquire_64(&r->seg->hdr->party[0].owner);
    uint32_t st = SHMRING__OWNER_STATE(o);
    if ((st == SHMRING__PARTY_ACTIVE || st == SHMRING__PARTY_TAKING) &&
        !shmring__party_alive(r->seg, 0))
        return -EPIPE;
    return 0;
}

/*
 * SHMRING_FOLLOW: a consumer that follows the ring across producers finds
 * none now (closed, or never one): it sleeps until a push wakes it. A dead
 * holder is found by peer_check. One load of a line written only when the
 * lease changes hands.
 */
static int follow_paused(const shmring_t *r)
{
    if (!r->follow)
        return 0;
    uint32_t st = lease_state(r);
    return st == SHMRING__PARTY_CLOSED || st == SHMRING__PARTY_FREE;
}

/* How long a waiting call sleeps before its next try, at most. */
static uint64_t nap_of(uint64_t now, uint64_t deadline, uint64_t next_check, ssize_t rc,
                       uint64_t *contended_nap)
{
    uint64_t nap = deadline - now;
    uint64_t until_check = next_check > now ? next_check - now : 1;
    if (until_check < nap)
        nap = until_check;
    /* A claim part-way through: nobody wakes us when it ends, so look again
     * soon (50 us, doubling up to CONTENDED_NAP_NS). */
    if (rc == CONTENDED) {
        if (nap > *contended_nap)
            nap = *contended_nap;
        *contended_nap *= 2;
        if (*contended_nap > CONTENDED_NAP_NS)
            *contended_nap = CONTENDED_NAP_NS;
    }
    return nap;
}

/*
 * Announce a waiter on ec (W). *cap: how long it may sleep before it
 * re-checks by itself, if a notifier might not see it (D1).
 */
static uint32_t wait_prepare(shmring_t *r, uint32_t *ec, uint64_t *cap)
{
    if (r->membarrier_wait) {
        int covered;
        /* M2: pairs with M1 (and with the symmetric notifiers' barriers). */
        uint32_t v = shmring__ec_prepare_mb(ec, r->barrier, &covered);
        if (!covered)
            *cap = SLICE_NS;
        return v;
    }
    /* W: symmetric; pairs with the notifiers' exchange, CAS or fence. */
    uint32_t v = shmring__ec_prepare(ec);
    /* On a ring created for membarrier a notifier may be asymmetric, unless
     * it is the producer and has acknowledged FENCED (F2). */
    if (!r->ring_fenced && !(ec == &r->sh->data_ec && (v & SHMRING__EC_ACK)))
        *cap = SLICE_NS;
    return v;
}

/*
 * The waiting calls. Every pass that looks at the clock checks the deadline,
 * and every PEER_CHECK_NS the peers. A pass that comes more than STARVED_NS
 * after the previous one means the CPU went elsewhere (a busy process on
 * this CPU outlasts a yield or a spin): from then on the call sleeps on its
 * eventcount with a timer, which the scheduler honours, so that it keeps its
 * deadline and the dead-peer bound whatever else runs.
 */
static ssize_t wait_passes(shmring_t *r, enum wait_op op, struct wait_args *a, int64_t timeout_ns)
{
    int producer = op == OP_PUSH || op == OP_RESERVE;
    ssize_t rc = op_try(r, op, a, SLOW_NONE);
    if ((rc == -EAGAIN || rc == CONTENDED) && timeout_ns == 0)
        rc = op_try(r, op, a, SLOW_YIELD); /* the plain call's second try */
    if ((rc != -EAGAIN && rc != CONTENDED) || timeout_ns == 0)
        return rc;
    uint32_t *ec = producer ? &r->sh->space_ec : &r->sh->data_ec;
    uint64_t now = shmring__now_ns();
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : now + (uint64_t)timeout_ns;
    uint64_t next_check = now + PEER_CHECK_NS;
    uint64_t contended_nap = 50000;
    int starved = 0;
    for (uint64_t spin = 0;; spin++) {
        int may_sleep = starved || (r->wait_strategy == SHMRING_WAIT_SLEEP && spin >= r->spins);
        uint64_t cap = UINT64_MAX;
        uint32_t v = may_sleep ? wait_prepare(r, ec, &cap) : 0;
        rc = op_try(r, op, a, may_sleep ? SLOW_CHECK : SLOW_NONE);
        if (rc != -EAGAIN && rc != CONTENDED)
            return rc;
        if (shmring__cancel_check(&r->cancel, may_sleep))
            return -ECANCELED;
        /* Cheap polls between two looks at the clock (a YIELD pass makes a
         * syscall anyway: it looks every time). */
        if (!may_sleep && r->wait_strategy != SHMRING_WAIT_YIELD && (spin & 255) != 0) {
            shmring__cpu_relax();
            continue;
        }
        uint64_t prev = now;
        now = shmring__now_ns();
        if (now - prev >= STARVED_NS)
            starved = 1;
        if (now >= deadline)
            return rc == CONTENDED ? TIMEDOUT_CONTENDED : -ETIMEDOUT;
        if (!starved && !producer && follow_paused(r))
            starved = 1; /* no producer to wait for: sleep, whatever the strategy */
        if (now >= next_check) {
            int prc = peer_check(r, op);
            if (prc == -EPIPE && r->follow) {
                prc = 0; /* SHMRING_FOLLOW: a dead producer is a pause too */
                starved = 1;
            }
            if (prc == -EOWNERDEAD)
                return prc; /* the lease is gone: not one more slot */
            if (prc < 0) {
                rc = op_try(r, op, a, SLOW_CHECK);
                /* A claim part-way through: not empty, so not the end yet. */
                if (rc != CONTENDED || prc != -EPIPE)
                    return rc != -EAGAIN && rc != CONTENDED ? rc : prc;
            }
            next_check = now + PEER_CHECK_NS;
        }
        if (may_sleep) {
            uint64_t ns = nap_of(now, deadline, next_check, rc, &contended_nap);
            shmring__ec_sleep(ec, v, ns < cap ? ns : cap);
        } else if (r->wait_strategy == SHMRING_WAIT_YIELD) {
            sched_yield();
        } else {
            shmring__cpu_relax();
        }
    }
}

/*
 * A waiting call: -ECANCELED at once for an interrupt that no wait has
 * consumed yet (not with timeout_ns == 0, which does not wait); otherwise
 * the passes, armed so that shmring_interrupt can wake them (cancel.h).
 */
static ssize_t wait_loop(shmring_t *r, enum wait_op op, struct wait_args *a, int64_t timeout_ns)
{
    if (timeout_ns != 0 && shmring__cancel_check(&r->cancel, 0))
        return -ECANCELED;
    int producer = op == OP_PUSH || op == OP_RESERVE;
    shmring__cancel_arm(&r->cancel, producer ? &r->sh->space_ec : &r->sh->data_ec);
    ssize_t rc = wait_passes(r, op, a, timeout_ns);
    shmring__cancel_arm(&r->cancel, NULL);
    return rc;
}

SHMRING_API int shmring_interrupt(shmring_t *r)
{
    if (r == NULL)
        return -EINVAL;
    shmring__cancel_raise(&r->cancel);
    return 0;
}

/* Producer-side result of a wait: counts a full ring, notices a lost lease. */
static int wait_result(shmring_t *r, int rc)
{
    if (rc == TIMEDOUT_CONTENDED)
        rc = -ETIMEDOUT; /* a claim part-way through to the end: not full */
    else if (rc == -EAGAIN || rc == -ETIMEDOUT)
        count(&r->sh->full_events, 1);
    if ((rc == -EAGAIN || rc == -ETIMEDOUT) && lease_lost(r))
        return -EOWNERDEAD;
    return rc;
}

SHMRING_API int shmring_push_wait(shmring_t *r, const void *msg, size_t len, int64_t timeout_ns)
{
    int rc = producer_check(r);
    if (rc < 0)
        return rc;
    if (msg == NULL && len > 0)
        return -EINVAL;
    if (len > r->span.max_message)
        return -EMSGSIZE;
    if (r->reserved)
        return -EBUSY;
    struct wait_args a = {.msg = msg, .len = len};
    return wait_result(r, (int)wait_loop(r, OP_PUSH, &a, timeout_ns));
}

SHMRING_API ssize_t shmring_pop_wait(shmring_t *r, void *buf, size_t cap, int64_t timeout_ns)
{
    int rc = consumer_check(r);
    if (rc < 0)
        return rc;
    if (buf == NULL && cap > 0)
        return -EINVAL;
    struct wait_args a = {.buf = buf, .len = cap};
    return pop_result(r, wait_loop(r, OP_POP, &a, timeout_ns));
}

SHMRING_API int shmring_claim_wait(shmring_t *r, shmring_msg_t *m, int64_t timeout_ns)
{
    int rc = consumer_check(r);
    if (rc < 0)
        return rc;
    if (m == NULL)
        return -EINVAL;
    struct wait_args a = {.m = m};
    return (int)pop_result(r, wait_loop(r, OP_CLAIM, &a, timeout_ns));
}

SHMRING_API int shmring_reserve_wait(shmring_t *r, size_t len, void **payload, int64_t timeout_ns)
{
    int rc = producer_check(r);
    if (rc < 0)
        return rc;
    if (payload == NULL)
        return -EINVAL;
    if (len > r->span.max_message)
        return -EMSGSIZE;
    if (r->reserved)
        return -EBUSY;
    struct wait_args a = {.len = len, .payload = payload};
    return wait_result(r, (int)wait_loop(r, OP_RESERVE, &a, timeout_ns));
}

/* ---- Handles ------------------------------------------------------------ */

static int attach_roles(shmring_t *r, uint32_t roles)
{
    r->party = -1;
    if (roles & (SHMRING_CONSUMER | SHMRING_OBSERVER | SHMRING_SUBSCRIBER)) {
        uint32_t role = (roles & SHMRING_CONSUMER)     ? SHMRING__ROLE_CONSUMER
                        : (roles & SHMRING_SUBSCRIBER) ? SHMRING__ROLE_SUBSCRIBER
                                                       : SHMRING__ROLE_OBSERVER;
        /* A single-consumer ring keeps entry 1 for its consumer. */
        unsigned first = r->single && role != SHMRING__ROLE_CONSUMER ? 2 : 1;
        unsigned last = r->single && role == SHMRING__ROLE_CONSUMER ? 1 : SHMRING__PARTIES - 1;
        int idx = shmring__party_take(r->seg, first, last, role | SHMRING__ROLE_KEEP_COUNTERS,
                                      reclaim_entry, r);
        if (idx == -EUSERS && r->single && role == SHMRING__ROLE_CONSUMER)
            return -EBUSY; /* the one consumer lives */
        if (idx < 0)
            return idx;
        r->party = idx;
        /* Relaxed: our own counter line. Claims held is a gauge, not a count
         * carried over: a dead predecessor's claims were swept. */
        shmring__store_relaxed_64(&my_party(r)->counter[SHMRING__C_CLAIMS], 0);
        /* Relaxed: a statistic. */
        r->seen_dropped = shmring__load_relaxed_64(&r->sh->dropped);
        if (role == SHMRING__ROLE_SUBSCRIBER) {
            int rc = shmring__sub_attach(&r->subs, (unsigned)idx);
            if (rc < 0) {
                shmring__sub_detach(&r->subs);
                shmring__party_release(r->seg, (unsigned)idx, SHMRING__PARTY_FREE);
                r->party = -1;
                return rc;
            }
        }
    }
    if (roles & SHMRING_PRODUCER) {
        int took_over = 0;
        int rc = shmring__lease_take(r->seg, &took_over);
        if (rc < 0) {
            if (r->party >= 0)
                shmring__party_release(r->seg, (unsigned)r->party, SHMRING__PARTY_FREE);
            r->party = -1;
            return rc;
        }
        r->producer = 1;
        /* Relaxed: we wrote it ourselves in shmring__lease_take(). */
        r->lease_word = shmring__load_relaxed_64(&r->seg->hdr->party[0].owner);
        r->lease_generation = SHMRING__OWNER_GEN(r->lease_word);
        r->w = resume_position(r);
        /* P3: acquire, pairs with C3. */
        r->cached_read = shmring__load_acquire_64(&r->sh->read_index);
        /* A first look at subscribers (G1..G3), as room_slow() makes. */
        r->floor = r->cached_read;
        if (!r->overwrite)
            subscribers_room(r, r->w, SLOW_NONE);
        if (took_over)
            shmring__log("%s: producer lease taken over from a dead holder (epoch %u)",
                         r->seg->name[0] ? r->seg->name : "(anonymous)", r->lease_generation);
    }
    return 0;
}

/* ---- Wake-ups ----------------------------------------------------------- */

static int no_membarrier_env(void)
{
    const char *v = secure_getenv("SHMRING_NO_MEMBARRIER");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static enum shmring__barrier barrier_of(const struct shmring__seg *seg)
{
    return seg->backend == SHMRING_BACKEND_HEAP ? SHMRING__BARRIER_PRIVATE
                                                : SHMRING__BARRIER_GLOBAL;
}

static const char *seg_label(const struct shmring__seg *seg)
{
    return seg->name[0] ? seg->name : "(anonymous)";
}

/* At creation, before the segment is ready: the ring's wake-up path. */
static void wake_init(struct shmring__seg *seg, uint32_t flags)
{
    struct shmring__ring_shared *sh = (struct shmring__ring_shared *)(void *)seg->hdr->object;
    int rc = 0;
    if (!(flags & SHMRING_NO_MEMBARRIER) && !no_membarrier_env()) {
        rc = shmring__membarrier_register(barrier_of(seg));
        if (rc < 0)
            shmring__log("%s: membarrier() not available (%s): pushes wake with an exchange",
                         seg_label(seg), shmring_strerror(rc));
    }
    int fenced = (flags & SHMRING_NO_MEMBARRIER) || no_membarrier_env() || rc < 0;
    /* Relaxed: published by the release store of `ready`. */
    shmring__store_relaxed_32(&sh->wake_created, fenced ? SHMRING__WAKE_CREATED_FENCED
                                                        : SHMRING__WAKE_CREATED_MEMBARRIER);
}

/* At attach: how this handle notifies and waits (M1, M2, D1, F2). */
static void wake_attach(shmring_t *r)
{
    r->fenced_notify = 1;
    r->ring_fenced = 1;
    if (!(r->roles & (SHMRING_PRODUCER | SHMRING_CONSUMER | SHMRING_SUBSCRIBER)))
        return; /* observers never notify nor wait */
    /* Relaxed: immutable since the segment became ready (acquire at open).
     * Peer-written: any value but MEMBARRIER means fenced. */
    if (shmring__load_relaxed_32(&r->sh->wake_created) != SHMRING__WAKE_CREATED_MEMBARRIER)
        return;
    r->ring_fenced = 0;
    r->barrier = barrier_of(r->seg);
    int rc = no_membarrier_env() ? -ECANCELED : shmring__membarrier_register(r->barrier);
    if (rc < 0) {
        /* D1: CAS, before this handle notifies or waits: every notifier's
         * next load of a word sees FENCED (F1). */
        shmring__ec_set_flags(&r->sh->data_ec, SHMRING__EC_FENCED);
        shmring__ec_set_flags(&r->sh->space_ec, SHMRING__EC_FENCED);
        shmring__log("%s: %s: this ring's pushes wake with an exchange from now on",
                     seg_label(r->seg),
                     rc == -ECANCELED ? "SHMRING_NO_MEMBARRIER is set"
                                      : "membarrier() not available in this process");
    } else {
        r->membarrier_wait = 1;
    }
    if (r->producer) {
        /* F2: a CAS reads the latest value of the word: if FENCED is set,
         * this producer is symmetric from its first push and says so. */
        uint32_t v = shmring__ec_set_flags(&r->sh->data_ec, 0);
        if (v & SHMRING__EC_FENCED) {
            shmring__ec_set_flags(&r->sh->data_ec, SHMRING__EC_ACK);
            return;
        }
    }
    r->fenced_notify = rc < 0;
}

int shmring__ring_from_seg(struct shmring__seg *seg, uint32_t roles, shmring_t **out)
{
    shmring_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    static uint32_t cookies;
    r->seg = seg;
    r->sh = (struct shmring__ring_shared *)(void *)seg->hdr->object;
    r->data = seg->base + SHMRING__RING_DATA;
    /* Validated copies: never re-read from the segment. */
    r->nslots = seg->param[0];
    r->slot_size = seg->param[1];
    r->stride = seg->param[2];
    r->mask = (uint64_t)r->nslots - 1;
    r->overwrite = (seg->flags & SHMRING_OVERWRITE) != 0;
    r->single = (seg->flags & SHMRING_SINGLE_CONSUMER) != 0;
    r->redeliver = (seg->flags & SHMRING_REDELIVER) != 0;
    r->roles = roles & ROLE_FLAGS;
    r->follow = (roles & SHMRING_FOLLOW) != 0;
    r->wait_strategy = SHMRING_WAIT_SLEEP;
    r->spins = SHMRING_DEFAULT_SPINS;
    /* Fetch-add: handles of one process created by several threads. */
    r->cookie = (shmring__faa_32(&cookies, 1) * 2654435761u) | 1u;
    shmring__subs_init(&r->subs, seg, r->sh, r->data, r->nslots, r->slot_size, r->stride,
                       r->overwrite, r->single, r->cookie);
    int rc = shmring__span_attach(&r->span, r->sh, r->data, r->nslots, r->slot_size, r->stride);
    /* Redelivery hands out a dead claimer's slot as it is: not for messages
     * that span slots (refused at creation; a segment that says so is corrupt). */
    if (rc == 0 && r->redeliver && shmring__span_on(&r->span))
        rc = -EPROTO;
    /* Subscribers read slot by slot: not on a ring whose messages span slots. */
    if (rc == 0 && (r->roles & SHMRING_SUBSCRIBER) && shmring__span_on(&r->span))
        rc = -EINVAL;
    if (rc == 0)
        rc = shmring__event_register(seg);
    if (rc == 0 && (rc = attach_roles(r, r->roles)) < 0)
        shmring__event_unregister(seg);
    if (rc < 0) {
        free(r);
        return rc;
    }
    if (r->party >= 0)
        shmring__event_reset(seg, (unsigned)r->party);
    wake_attach(r);
    *out = r;
    return 0;
}

static int check_create_config(const shmring_config_t *cfg, uint32_t *slots, uint32_t *slot_size,
                               uint32_t *flags, uint32_t *mode)
{
    shmring_config_t def = {0};
    if (cfg == NULL)
        cfg = &def;
    *slots = cfg->slots ? cfg->slots : DEFAULT_SLOTS;
    *slot_size = cfg->slot_size ? cfg->slot_size : DEFAULT_SLOT_SIZE;
    *flags = cfg->flags;
    *mode = cfg->mode ? cfg->mode : 0600;
    if (*flags & ~CREATE_FLAGS)
        return -EINVAL;
    if (*mode & ~0777u)
        return -EINVAL;
    if ((*mode & 0022u) && !(*flags & SHMRING_ALLOW_INSECURE))
        return -EINVAL;
    if (!(*flags & ROLE_FLAGS))
        *flags |= SHMRING_PRODUCER;
    if ((*flags & SHMRING_FOLLOW) && !(*flags & SHMRING_CONSUMER))
        return -EINVAL; /* following is for consumers */
    if ((*flags & SHMRING_SUBSCRIBER) && (*flags & (SHMRING_CONSUMER | SHMRING_OBSERVER)))
        return -EINVAL;
    return 0;
}

static int attach_opened(int rc, struct shmring__seg *seg, uint32_t flags, shmring_t **out);

/*
 * How long a create-or-open retries while the existing object is in the
 * middle of its creation (its file may still be short: -EPROTO) or vanishes
 * between the create and the open (-ENOENT). Then the error stands.
 */
#define OPEN_EXISTING_NS 1000000000ull

/* 1 if open-or-create should try again after rc, at time `start`. */
static int open_existing_retry(int rc, uint64_t start)
{
    if (rc != -EPROTO && rc != -ENOENT)
        return 0;
    if (shmring__now_ns() - start >= OPEN_EXISTING_NS)
        return 0;
    if (rc == -EPROTO) {
        struct timespec ts = {0, 1000000}; /* its creator is sizing it */
        nanosleep(&ts, NULL);
    }
    return 1;
}

/*
 * SHMRING_OPEN_EXISTING: open ring `name`, which a create found existing, if
 * its geometry (param) and policy match. -EEXIST if they do not (or it is
 * not a ring); -ENOENT if it vanished meanwhile (the caller creates again).
 */
static int open_existing(const char *name, const uint32_t param[4], uint32_t flags,
                         uint32_t max_message, shmring_t **out)
{
    struct shmring__seg *seg = NULL;
    int rc = shmring__seg_open(name, SHMRING__TYPE_RING,
                               (flags & SHMRING_FORCE_HEAP ? SHMRING_LOCAL_ONLY : 0) |
                                   (flags & SHMRING_ALLOW_INSECURE),
                               shmring__ring_layout, &seg);
    if (rc == -EPROTOTYPE)
        return -EEXIST;
    if (rc < 0)
        return rc;
    /* Validated copies (shmring__seg_open checked them). */
    const struct shmring__ring_shared *sh = (const void *)seg->hdr->object;
    /* Relaxed: immutable once ready; peer-written, only compared. */
    uint32_t max = shmring__load_relaxed_32(&sh->max_message);
    if (seg->param[0] != param[0] || seg->param[1] != param[1] ||
        seg->flags != (flags & RING_FLAGS) || max != max_message) {
        shmring__seg_close(seg);
        return -EEXIST;
    }
    return attach_opened(0, seg, flags, out);
}

SHMRING_API int shmring_create(const char *name, const shmring_config_t *cfg, shmring_t **out)
{
    if (out == NULL)
        return -EINVAL;
    shmring_config_t own; /* the caller's fields, as far as its size goes */
    int rc = shmring__config_ring(cfg, &own);
    if (rc < 0)
        return rc;
    cfg = &own;
    uint32_t slots, slot_size, flags, mode;
    rc = check_create_config(cfg, &slots, &slot_size, &flags, &mode);
    if (rc < 0)
        return rc;
    uint32_t param[4] = {slots, slot_size, 0, 0};
    if (slots < 2 || slots > SHMRING_MAX_SLOTS || (slots & (slots - 1)) != 0 ||
        slot_size > SHMRING_MAX_SLOT_SIZE)
        return -EINVAL;
    if (name == NULL && (flags & SHMRING_OPEN_EXISTING))
        return -EINVAL;
    param[2] = (uint32_t)stride_of(slot_size);
    int64_t max_message = shmring__span_config(slots, slot_size, cfg->max_message);
    if (max_message < 0 || ((flags & SHMRING_REDELIVER) && max_message > slot_size))
        return -EINVAL;
    struct shmring__seg *seg;
    if (RING_FLAGS_BAD(flags))
        return -EINVAL;
    uint64_t start = shmring__now_ns();
    for (;;) {
        rc = shmring__seg_create(name, SHMRING__TYPE_RING, flags & ~SHMRING_OPEN_EXISTING,
                                 flags & RING_FLAGS, mode, param, shmring__ring_layout, &seg);
        if (rc != -EEXIST || !(flags & SHMRING_OPEN_EXISTING))
            break;
        rc = open_existing(name, param, flags, (uint32_t)max_message, out);
        if (!open_existing_retry(rc, start))
            return rc;
    }
    if (rc < 0)
        return rc;
    wake_init(seg, flags);
    shmring__span_init((struct shmring__ring_shared *)(void *)seg->hdr->object,
                       (uint32_t)max_message);
    shmring__seg_publish(seg);
    rc = shmring__ring_from_seg(seg, flags & (ROLE_FLAGS | SHMRING_FOLLOW), out);
    if (rc < 0) {
        shmring__seg_close(seg);
        if (name != NULL)
            shmring__seg_unlink(name);
    } else if (name != NULL) {
        shmring__appear_notify(); /* waiters in shmring_open_wait */
    }
    return rc;
}

static int check_open_flags(uint32_t flags)
{
    if (flags & ~OPEN_FLAGS)
        return -EINVAL;
    if (!(flags & ROLE_FLAGS))
        return -EINVAL;
    if ((flags & SHMRING_FOLLOW) && !(flags & SHMRING_CONSUMER))
        return -EINVAL;
    if ((flags & SHMRING_SUBSCRIBER) && (flags & (SHMRING_CONSUMER | SHMRING_OBSERVER)))
        return -EINVAL;
    return 0;
}

/* Wrap a freshly opened segment (rc from the opener) as a handle. */
static int attach_opened(int rc, struct shmring__seg *seg, uint32_t flags, shmring_t **out)
{
    if (rc < 0)
        return rc;
    rc = shmring__ring_from_seg(seg, flags & (ROLE_FLAGS | SHMRING_FOLLOW), out);
    if (rc < 0)
        shmring__seg_close(seg);
    return rc;
}

SHMRING_API int shmring_open(const char *name, uint32_t flags, shmring_t **out)
{
    if (out == NULL || check_open_flags(flags) < 0)
        return -EINVAL;
    struct shmring__seg *seg = NULL;
    int rc = shmring__seg_open(name, SHMRING__TYPE_RING, flags, shmring__ring_layout, &seg);
    return attach_opened(rc, seg, flags, out);
}

static int try_open_ring(const char *name, uint32_t flags, void *out)
{
    return shmring_open(name, flags, out);
}

SHMRING_API int shmring_open_wait(const char *name, uint32_t flags, int64_t timeout_ns,
                                  shmring_t **out)
{
    if (out == NULL || check_open_flags(flags) < 0)
        return -EINVAL;
    return shmring__appear_wait(name, flags, timeout_ns, try_open_ring, out);
}

SHMRING_API int shmring_open_fd(int fd, uint32_t flags, shmring_t **out)
{
    if (out == NULL || check_open_flags(flags) < 0)
        return -EINVAL;
    struct shmring__seg *seg = NULL;
    int rc = shmring__seg_open_fd(fd, SHMRING__TYPE_RING, flags, shmring__ring_layout, &seg);
    return attach_opened(rc, seg, flags, out);
}

SHMRING_API void shmring_close(shmring_t *r)
{
    if (r == NULL)
        return;
    shmring__event_close(r->event);
    if (r->party >= 0) {
        shmring__sub_detach(&r->subs);
        /* Only a handle that still holds claims walks the slots for them:
         * closing is O(1) otherwise. Relaxed: our own counter line. */
        if (shmring__load_relaxed_64(&my_party(r)->counter[SHMRING__C_CLAIMS]) > 0)
            sweep_claims(r, (unsigned)r->party, 0);
        shmring__party_release(r->seg, (unsigned)r->party, SHMRING__PARTY_FREE);
    }
    if (r->producer && !lease_lost(r)) {
        /* An open reservation is dropped: its slot stays odd, unpublished. */
        shmring__party_release(r->seg, 0, SHMRING__PARTY_CLOSED);
        /* Wake consumers so that they see the end of the stream. */
        shmring__ec_notify(&r->sh->data_ec);
    }
    shmring__event_unregister(r->seg);
    shmring__seg_close(r->seg);
    shmring__span_detach(&r->span);
    free(r->bounce);
    free(r);
}

SHMRING_API int shmring_unlink(const char *name)
{
    return shmring__seg_unlink(name);
}

SHMRING_API int shmring_backend(const shmring_t *r)
{
    return r == NULL ? -EINVAL : r->seg->backend;
}

SHMRING_API int shmring_fd(const shmring_t *r)
{
    if (r == NULL)
        return -EINVAL;
    return r->seg->fd >= 0 ? r->seg->fd : -ENOTSUP;
}

SHMRING_API uint32_t shmring_slots(const shmring_t *r)
{
    return r == NULL ? 0 : r->nslots;
}

SHMRING_API uint32_t shmring_slot_size(const shmring_t *r)
{
    return r == NULL ? 0 : r->slot_size;
}

SHMRING_API uint32_t shmring_max_message(const shmring_t *r)
{
    return r == NULL ? 0 : r->span.max_message;
}

/* ---- Event descriptors (src/event.c) ------------------------------------ */

SHMRING_API int shmring_event_fd(shmring_t *r)
{
    if (r == NULL)
        return -EINVAL;
    int consumer = (r->roles & (SHMRING_CONSUMER | SHMRING_SUBSCRIBER)) != 0;
    if (!consumer && !r->producer)
        return -EPERM; /* an observer: nothing to wait for */
    if (!consumer && lease_lost(r))
        return -EOWNERDEAD;
    if (r->event == NULL) {
        int rc = shmring__event_create(r->seg, consumer ? r->party : -1,
                                       r->producer && !r->lease_gone, &r->event);
        if (rc < 0)
            return rc;
        shmring__event_start(r, r->event);
    }
    return shmring__event_fd_of(r->event);
}

int shmring__ring_event_announce(shmring_t *r, enum shmring__event_side side)
{
    uint32_t *ec = side == SHMRING__EV_ROOM ? &r->sh->space_ec : &r->sh->data_ec;
    int covered;
    /* V1 (M2 with membarrier, else W): pairs with M1 and the symmetric
     * notifiers' barriers, then with V2. */
    uint32_t v = shmring__ec_announce(ec, r->membarrier_wait, r->barrier, &covered);
    if (covered)
        return 1;
    /* As wait_prepare(): without membarrier only symmetric notifiers see us
     * for sure: all of a fenced ring, or a producer that said ACK (F2). */
    return r->ring_fenced || (ec == &r->sh->data_ec && (v & SHMRING__EC_ACK));
}

int shmring__ring_event_ready(shmring_t *r, enum shmring__event_side side)
{
    if (side == SHMRING__EV_ROOM)
        return r->lease_gone || r->reserved || room_for(r, r->w, SLOW_NONE) != -EAGAIN;
    if (is_sub(r)) /* a hint too: its own cursor below write_index, or the end */
        return shmring__sub_ready(&r->subs) ||
               empty_result(r, shmring__load_acquire_64(&r->sh->write_index)) == -EPIPE;
    /* Acquire: pairs with C3 of other consumers; a hint (the pop decides). */
    uint64_t pos = shmring__load_acquire_64(&r->sh->read_index);
    uint64_t seq;
    return read_slot(r, pos, &seq) != SLOT_EMPTY || (r->redeliver && shmring__rd_waiting(r->sh)) ||
           empty_result(r, pos) == -EPIPE;
}

int shmring__ring_event_peers(shmring_t *r, enum shmring__event_side side)
{
    if (side == SHMRING__EV_ROOM)
        return peer_check(r, OP_PUSH);
    int rc = peer_check(r, OP_POP);
    if (rc == -EPIPE) {
        /* The producer died: the end only once its messages are taken. */
        uint64_t pos = shmring__load_acquire_64(&r->sh->read_index);
        uint64_t seq;
        if (read_slot(r, pos, &seq) != SLOT_EMPTY)
            return 0;
    }
    return rc;
}

/* ---- Stats -------------------------------------------------------------- */

static void stats_parties(shmring_t *r, shmring_stats_t *st)
{
    for (unsigned i = 1; i < SHMRING__PARTIES; i++) {
        struct shmring__party *p = &r->seg->hdr->party[i];
        /* Every entry, whatever its state: its counters outlive its owners. */
        st->popped += shmring__load_relaxed_64(&p->counter[SHMRING__C_POPPED]);
        st->bytes_popped += shmring__load_relaxed_64(&p->counter[SHMRING__C_BYTES]);
        st->empty_events += shmring__load_relaxed_64(&p->counter[SHMRING__C_EMPTY]);
        /* Acquire: pairs with the release in party_setup(). */
        uint64_t o = shmring__load_acquire_64(&p->owner);
        if (SHMRING__OWNER_STATE(o) != SHMRING__PARTY_ACTIVE || !shmring__party_alive(r->seg, i))
            continue;
        uint32_t role = shmring__load_relaxed_32(&p->role);
        if (role & SHMRING__ROLE_CONSUMER)
            st->consumers++;
        else if (role & SHMRING__ROLE_OBSERVER)
            st->observers++;
        else if (role & SHMRING__ROLE_SUBSCRIBER)
            st->subscribers++;
    }
}

/* The ring's wake-up path: exchange if created so or downgraded (D1). */
static uint32_t wake_of(const shmring_t *r)
{
    /* Relaxed: a report, not synchronisation. */
    uint32_t f =
        shmring__load_relaxed_32(&r->sh->data_ec) | shmring__load_relaxed_32(&r->sh->space_ec);
    if (shmring__load_relaxed_32(&r->sh->wake_created) != SHMRING__WAKE_CREATED_MEMBARRIER ||
        (f & SHMRING__EC_FENCED))
        return SHMRING_WAKE_EXCHANGE;
    return SHMRING_WAKE_MEMBARRIER;
}

SHMRING_API int shmring_stats(shmring_t *r, shmring_stats_t *st)
{
    if (r == NULL || st == NULL)
        return -EINVAL;
    reclaim_dead(r);
    memset(st, 0, sizeof *st);
    const struct shmring__hdr *h = r->seg->hdr;
    st->slots = r->nslots;
    st->slot_size = r->slot_size;
    st->flags = r->seg->flags;
    st->backend = r->seg->backend;
    /* Relaxed loads throughout: statistics, not synchronisation. */
    uint64_t wi = shmring__load_relaxed_64(&r->sh->write_index);
    uint64_t ri = shmring__load_relaxed_64(&r->sh->read_index);
    st->count = wi > ri ? wi - ri : 0;
    if (st->count > r->nslots)
        st->count = r->nslots;
    if (shmring__span_on(&r->span)) /* positions to messages */
        st->count = shmring__span_count(&r->span, ri, ri + st->count);
    st->max_message = r->span.max_message;
    st->pushed = shmring__load_relaxed_64(&r->sh->pushed);
    st->bytes_pushed = shmring__load_relaxed_64(&r->sh->bytes_pushed);
    st->dropped = shmring__load_relaxed_64(&r->sh->dropped);
    st->abandoned = shmring__load_relaxed_64(&r->sh->abandoned);
    st->full_events = shmring__load_relaxed_64(&r->sh->full_events);
    st->redelivered = (uint32_t)shmring__load_relaxed_64(&r->sh->redelivered);
    stats_parties(r, st);
    shmring__sub_stats(&r->subs, st);
    uint64_t o = shmring__load_acquire_64(&h->party[0].owner);
    uint32_t ls = SHMRING__OWNER_STATE(o);
    st->producer_pid = ls == SHMRING__PARTY_FREE ? 0 : SHMRING__OWNER_PID(o);
    st->producer_alive = (ls == SHMRING__PARTY_ACTIVE) && shmring__party_alive(r->seg, 0);
    st->producer_closed = ls == SHMRING__PARTY_CLOSED;
    st->producer_epoch = shmring__load_relaxed_32(&h->party[0].generation);
    st->creator_pid = h->creator_pid;
    st->created_ns = h->created_ns;
    st->wake = wake_of(r);
    return 0;
}
