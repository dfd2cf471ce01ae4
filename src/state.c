/*
 * The seqlock keyed table ("latest value of key K").
 *
 * Memory-ordering edges (labels used in the comments below; lock words are
 * described in state.h):
 *
 *   W1  writer: CAS seq from an even word to its odd successor naming the
 *       writer's party entry and handle generation (seq_cst), then a
 *       release fence, then the stores of the non-current value copy, its
 *       len and (new keys only) the key. Pairs with R2.
 *   W2  writer: writer_pid, then writer_seq := the odd word, release: who
 *       to name in the log. Pairs with D1. Liveness never reads them.
 *   W3  writer: seq := the next even word naming the new committed state
 *       and copy, release. Pairs with R1: publishes copy, len and key.
 *   R1  reader: seq load, acquire. Pairs with W3 (and with X1, through the
 *       release sequence of the W3 before it).
 *   R2  reader: after copying key, len and value, acquire fence, then a
 *       relaxed seq re-load. Pairs with W1: a copy that saw any byte of a
 *       writer that rewrote the copy being read sees that writer's version,
 *       at least 3 past the even version the copy was committed at, and is
 *       discarded. Versions 1 and 2 past it only wrote the other copy.
 *   D1  recoverer: writer_seq load, acquire. Pairs with W2: writer_pid
 *       then belongs to the holder of the odd word.
 *   G1  a handle's generation: handle_gen[index] := previous + 1 once it
 *       holds party entry `index`, before any W1 naming it (release; W1, a
 *       seq_cst CAS, publishes it too). Pairs with G2.
 *   G2  recoverer: handle_gen[index] load, acquire, after its acquire load
 *       of the held word: it sees the G1 of the word's writer, or a later
 *       one (the entry taken again: that writer's handle is gone).
 *   X1  recoverer: CAS the odd word of a dead writer to the next even word
 *       with the committed fields unchanged (seq_cst). Only one recoverer
 *       wins, and only while the word is still that writer's.
 *   L*  the insert lock is a lock word too: taken with W1, released with
 *       W3, recovered with D1 and X1.
 *   K1  writer: after W3 (or X1), shmring__ec_notify on the key's wake
 *       word: a full fence, then a load of its sleeper flag. Pairs with K2
 *       (Dekker): either the writer sees the flag and wakes, or the waiter's
 *       re-check sees the new word.
 *   K2  waiter (shmring_state_wait): shmring__ec_prepare on the key's wake
 *       word (flag set, full fence), then R1 again before it sleeps.
 *   I*  shmring_state_interrupt: see cancel.h (the waiter arms the key's
 *       word before K2, and loads its interrupt flag after K2's fence).
 *
 * Fault-injection points (src/fault_points.h, docs/hardening.md) sit right
 * after the step they name: state.W1 (entry taken for an update), state.W2
 * (spare copy written), state.W3 (published), state.L1 (insert lock taken),
 * state.I1 (free entry taken for a new key), state.L3 (new key published,
 * insert lock held), state.T1 (entry taken for a delete), state.X0 (holder
 * found dead, not yet recovered), state.X1 (recovered, not yet counted).
 *
 * Everything read from the shared segment is untrusted: indices are masked,
 * the committed copy is one bit, lengths are checked against the validated
 * value_size, keys are compared within their 64-byte field, and every loop
 * that depends on peer-written values is bounded by a count or a deadline.
 */
#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appear.h"
#include "atomic.h"
#include "cancel.h"
#include "config.h"
#include "fault.h"
#include "wait.h"

#define DEFAULT_ENTRIES    1024u
#define DEFAULT_VALUE_SIZE 256u
#define READ_TRIES         1000u         /* copies of one entry before -EAGAIN */
#define WRITE_TRIES        100000u       /* bound on CAS races lost in one write */
#define WAIT_SPINS         1000u         /* polls of a held word before yielding */
#define DEAD_CHECK_NS      1000000ull    /* a word held this long: check its holder */
#define WRITE_WAIT_NS      50000000ull   /* give up waiting for a live writer */
#define LOG_INTERVAL_NS    1000000000ull /* one recovery line per entry per second */
#define LOG_SLOTS          64u           /* entries whose recovery lines are being held back */

#define CREATE_FLAGS                                                                               \
    (SHMRING_FORCE_HEAP | SHMRING_FORCE_MEMFD | SHMRING_NO_FALLBACK | SHMRING_ALLOW_INSECURE |     \
     SHMRING_OPEN_EXISTING)
#define OPEN_FLAGS (SHMRING_LOCAL_ONLY | SHMRING_FORCE_HEAP | SHMRING_ALLOW_INSECURE)

#define SEQ_VERSION SHMRING__SEQ_VERSION
#define SEQ_STATE   SHMRING__SEQ_STATE
#define SEQ_COPY    SHMRING__SEQ_COPY
#define SEQ_ODD     SHMRING__SEQ_ODD
#define SEQ_MAKE    SHMRING__SEQ_MAKE

struct shmring_state {
    struct shmring__seg *seg;
    struct shmring__state_shared *sh;
    unsigned char *data;
    size_t stride;     /* bytes per entry, multiple of 64 */
    size_t vstride;    /* bytes per value copy, multiple of 8 */
    uint32_t nentries; /* capacity in keys */
    uint32_t nslots;   /* entries of the index: SHMRING__STATE_SLOTS(nentries) */
    uint32_t mask;     /* nslots - 1 */
    uint32_t value_size;
    unsigned party;
    uint32_t owner;                /* owner field of the words this handle takes */
    uint32_t pid;                  /* process that took the party entry */
    struct shmring__cancel cancel; /* shmring_state_interrupt (cancel.h) */
};

/* ---- This process ------------------------------------------------------- */

/* pid of this process; 0 until known (reset by fork). */
static uint32_t self_pid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Recovery lines held back, per entry (process-local; see log_recovery()). */
struct log_slot {
    uint64_t table;   /* creation time of the table */
    uint64_t entry;   /* entry index + 1, or 0 for the insert lock */
    uint64_t last_ns; /* when its last line went out */
    uint64_t held;    /* lines held back since */
};
static struct log_slot log_slots[LOG_SLOTS];
static pthread_mutex_t log_slots_lock = PTHREAD_MUTEX_INITIALIZER;

static void before_fork(void)
{
    pthread_mutex_lock(&log_slots_lock);
}

static void after_fork_parent(void)
{
    pthread_mutex_unlock(&log_slots_lock);
}

static void after_fork_child(void)
{
    pthread_mutex_unlock(&log_slots_lock);
    /* Relaxed: the child of fork() runs one thread here. */
    shmring__store_relaxed_32(&self_pid, 0);
}

static void register_atfork(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* This process's pid, cached: no syscall on the write path. */
static inline uint32_t me(void)
{
    /* Relaxed: threads racing here store the same value. */
    uint32_t pid = shmring__load_relaxed_32(&self_pid);
    if (pid != 0)
        return pid;
    pid = (uint32_t)getpid();
    shmring__store_relaxed_32(&self_pid, pid);
    return pid;
}

/* ---- Layout ------------------------------------------------------------- */

static uint64_t vstride_of(uint32_t value_size)
{
    return ((uint64_t)value_size + 7) & ~(uint64_t)7;
}

static uint64_t stride_of(uint32_t value_size)
{
    return ((uint64_t)SHMRING__STATE_ENTRY_HEADER + 2 * vstride_of(value_size) + SHMRING__LINE -
            1) &
           ~(uint64_t)(SHMRING__LINE - 1);
}

int shmring__state_layout(const uint32_t param[4], uint32_t flags, uint64_t *total)
{
    uint32_t entries = param[0], value_size = param[1];
    if (entries < 1 || entries > SHMRING_STATE_MAX_ENTRIES || (entries & (entries - 1)) != 0)
        return -EINVAL;
    if (value_size < 1 || value_size > SHMRING_STATE_MAX_VALUE)
        return -EINVAL;
    /* The index size is derived, never chosen: exactly twice the capacity. */
    if (param[2] != stride_of(value_size) || param[3] != SHMRING__STATE_SLOTS(entries))
        return -EINVAL;
    if (flags != 0)
        return -EINVAL;
    uint64_t t = SHMRING__HEADER_SIZE + (uint64_t)param[3] * param[2];
    if (t > SHMRING__MAX_TOTAL)
        return -EINVAL;
    *total = t;
    return 0;
}

static inline struct shmring__state_entry *entry_at(const shmring_state_t *s, uint64_t index)
{
    return (struct shmring__state_entry *)(void *)(s->data + (size_t)(index & s->mask) * s->stride);
}

static inline unsigned char *value_of(const shmring_state_t *s, struct shmring__state_entry *e,
                                      uint32_t copy)
{
    return (unsigned char *)e + SHMRING__STATE_ENTRY_HEADER + (copy & 1u) * s->vstride;
}

static uint64_t hash_key(const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < klen; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* Length of a valid key (1..SHMRING_STATE_KEY_MAX), or -EINVAL. */
static int key_check(const char *key, size_t *klen)
{
    if (key == NULL)
        return -EINVAL;
    size_t n = strnlen(key, SHMRING_STATE_KEY_MAX + 1);
    if (n == 0 || n > SHMRING_STATE_KEY_MAX)
        return -EINVAL;
    *klen = n;
    return 0;
}

/* Owner-only counter of this handle's party entry. */
static inline void count(shmring_state_t *s, unsigned which, uint64_t n)
{
    uint64_t *c = &s->seg->hdr->party[s->party].counter[which];
    /* Relaxed: one writer; readers (stats) want a recent value, not ordering. */
    shmring__store_relaxed_64(c, shmring__load_relaxed_64(c) + n);
}

/* ---- Lock words --------------------------------------------------------- */

/* W1, W2: take the even word `even` for handle s; on success *held is the odd word. */
static int lock_take(const shmring_state_t *s, struct shmring__state_lock *l, uint64_t even,
                     uint64_t *held)
{
    uint64_t w = SEQ_MAKE(SEQ_VERSION(even) + 1, SEQ_STATE(even), SEQ_COPY(even), s->owner);
    /* W1: CAS, seq_cst; pairs with other writers' W1 and with X1. */
    if (!shmring__cas_64(&l->seq, &even, w))
        return 0;
    /* W2: relaxed, published by the release store of writer_seq. */
    shmring__store_relaxed_64(&l->writer_pid, s->pid);
    /* W2: release, pairs with D1 in log_recovery(). */
    shmring__store_release_64(&l->writer_seq, w);
    /* W1: release fence: the odd word is ordered before the data stores (pairs with R2). */
    shmring__fence_release();
    *held = w;
    return 1;
}

/* W3: publish the held word with its new committed state and copy. */
static inline void lock_publish(struct shmring__state_lock *l, uint64_t held, uint32_t state,
                                uint32_t copy)
{
    /* W3: release, pairs with R1: the copy, len and key stores happen before. */
    shmring__store_release_64(&l->seq, SEQ_MAKE(SEQ_VERSION(held) + 1, state, copy, 0));
}

/*
 * 1 if the writer holding odd word w is dead: its handle is gone (the party
 * entry it names is out of range, or was taken again since) or the party's
 * process is (its OFD lock is dropped). Never from the process state letter
 * or the pid: a live writer's party holds its lock while any of its threads
 * runs. Makes a syscall.
 */
static int holder_dead(const shmring_state_t *s, uint64_t w)
{
    /* Heap backend: every writer is a thread of this process. */
    if (s->seg->backend == SHMRING_BACKEND_HEAP)
        return 0;
    /* Peer-written owner: the index is checked before it indexes anything. */
    uint32_t owner = SHMRING__SEQ_OWNER(w);
    uint32_t index = SHMRING__STATE_OWNER_INDEX(owner);
    if (index == 0 || index >= SHMRING__PARTIES)
        return 1; /* no handle of a state table has that entry */
    /* G2: acquire, pairs with G1: the caller loaded w (after G1) before this. */
    uint32_t gen = shmring__load_acquire_32(&s->sh->handle_gen[index]);
    if ((gen & SHMRING__OWNER_GEN_MASK) != SHMRING__STATE_OWNER_GEN(owner))
        return 1;
    return !shmring__party_alive(s->seg, index);
}

/* Key of lock word l for the log's rate limit: entry index + 1, 0 for the insert lock. */
static uint64_t log_key(const shmring_state_t *s, const struct shmring__state_lock *l)
{
    if (l == &s->sh->insert)
        return 0;
    return (uint64_t)(((const unsigned char *)l - s->data) / s->stride) + 1;
}

/*
 * Whether a recovery of l may be logged now: at most one line per entry per
 * second in this process; *held gets the lines held back since the last.
 */
static int log_allowed(const shmring_state_t *s, const struct shmring__state_lock *l,
                       uint64_t *held)
{
    /* Peer-written, immutable once ready: only picks a slot of this table. */
    uint64_t table = shmring__load_relaxed_64(&s->seg->hdr->created_ns);
    uint64_t entry = log_key(s, l), now = shmring__now_ns();
    struct log_slot *slot = &log_slots[(table ^ entry * 0x9e3779b97f4a7c15ull) % LOG_SLOTS];
    int allowed = 1;
    pthread_mutex_lock(&log_slots_lock);
    if (slot->table == table && slot->entry == entry && slot->last_ns != 0 &&
        now - slot->last_ns < LOG_INTERVAL_NS) {
        slot->held++;
        allowed = 0;
    } else {
        *held = slot->table == table && slot->entry == entry ? slot->held : 0;
        *slot = (struct log_slot){table, entry, now, 0};
    }
    pthread_mutex_unlock(&log_slots_lock);
    return allowed;
}

/* Log the recovery of l from the dead writer of w, rate-limited. */
static void log_recovery(const shmring_state_t *s, struct shmring__state_lock *l, uint64_t w)
{
    uint64_t held = 0;
    if (!log_allowed(s, l, &held))
        return;
    int pid = -1;
    /* D1: acquire, pairs with W2. Another word's writer: pid unknown. */
    if (shmring__load_acquire_64(&l->writer_seq) == w)
        pid = (int)shmring__load_relaxed_64(&l->writer_pid);
    char more[64] = "";
    if (held > 0)
        snprintf(more, sizeof more, " (%llu more in the last second not logged)",
                 (unsigned long long)held);
    shmring__log("%s: recovered %s left mid-write by dead process %d (handle %u)%s",
                 s->seg->name[0] ? s->seg->name : "(anonymous state table)",
                 l == &s->sh->insert ? "the insert lock" : "an entry", pid,
                 SHMRING__STATE_OWNER_INDEX(SHMRING__SEQ_OWNER(w)), more);
}

/* X1: hand the committed fields of a dead writer's word back. 1 if done. */
static int recover(shmring_state_t *s, struct shmring__state_lock *l, uint64_t w)
{
    uint64_t even = SEQ_MAKE(SEQ_VERSION(w) + 1, SEQ_STATE(w), SEQ_COPY(w), 0);
    SHMRING_FAULT(STATE_X0);
    /* X1: CAS, seq_cst: one recoverer wins, and only while w is still held. */
    if (!shmring__cas_64(&l->seq, &w, even))
        return 0;
    SHMRING_FAULT(STATE_X1);
    /* K1 after X1 (seq_cst CAS): the entry's version changed; which key's
     * word is not known here, and recoveries are rare: wake them all. */
    for (unsigned i = 0; i < SHMRING__STATE_WAKE_WORDS; i++)
        shmring__ec_notify_after_atomic(&s->sh->wake[i]);
    shmring__faa_64(&s->sh->recovered, 1);
    log_recovery(s, l, w);
    return 1;
}

/* Progress of one write: a shared deadline for all its waits. */
struct op {
    uint64_t deadline;
    int waited;
};

/* 1 once the write's deadline has passed at time now; starts it at the first call. */
static int op_expired(struct op *op, uint64_t now)
{
    if (op->deadline == 0)
        op->deadline = now + WRITE_WAIT_NS;
    return now >= op->deadline;
}

/*
 * Wait until lock word l is even and return it in *w. Spins, then yields;
 * a word held by the same writer for DEAD_CHECK_NS has its holder checked
 * and is recovered if the holder died. -EAGAIN once the write's deadline
 * passes, checked on every pass after the spins, recoveries included: a
 * peer that keeps putting back a dead writer's word cannot hold a writer.
 */
static int wait_even(shmring_state_t *s, struct shmring__state_lock *l, uint64_t *w, struct op *op)
{
    uint64_t seen = 0, since = 0;
    op->waited = 1;
    for (uint64_t i = 0;; i++) {
        /* Acquire: pairs with W3 or X1 of the holder. */
        uint64_t v = shmring__load_acquire_64(&l->seq);
        if (!SEQ_ODD(v)) {
            *w = v;
            return 0;
        }
        if (i < WAIT_SPINS) {
            shmring__cpu_relax();
            continue;
        }
        uint64_t now = shmring__now_ns();
        if (op_expired(op, now))
            return -EAGAIN;
        if (v != seen) {
            seen = v;
            since = now;
        } else if (now - since >= DEAD_CHECK_NS) {
            /* A word put back after a recovery waits its DEAD_CHECK_NS again. */
            if (holder_dead(s, v) && recover(s, l, v))
                seen = 0;
            since = now;
        }
        sched_yield();
    }
}

/* ---- Looking up --------------------------------------------------------- */

/* R2: is what was read under word w (committed copy and key) intact? */
static inline int still_valid(const struct shmring__state_lock *l, uint64_t w)
{
    /* R2: acquire fence, pairs with the release fence of W1. */
    shmring__fence_acquire();
    /* Relaxed: ordered by the fence above. */
    uint64_t now = shmring__load_relaxed_64(&l->seq);
    return (uint32_t)(SEQ_VERSION(now) - (SEQ_VERSION(w) & ~1u)) <= 2u;
}

enum look { LOOK_EMPTY, LOOK_TOMB, LOOK_OTHER, LOOK_MATCH };

/* What the caller wants from a matching entry. */
struct want {
    void *buf; /* copy the value here (NULL: key only) */
    size_t cap;
    size_t len; /* out: value length */
};

/* One validated look at LIVE entry e under word w: enum look, -EMSGSIZE,
 * -EPROTO, or 1 for "changed meanwhile, look again". */
static int look_once(shmring_state_t *s, struct shmring__state_entry *e, uint64_t w,
                     const char *key, size_t klen, struct want *want)
{
    char k[SHMRING__STATE_KEY_FIELD];
    /* The first word tells most other keys apart (the field is NUL-padded),
     * so a probe past another key copies 8 bytes, not 64. */
    char head[8] = {0};
    memcpy(head, key, klen < sizeof head ? klen : sizeof head);
    shmring__copy_from_shared(k, e->key, sizeof head);
    int match = memcmp(k, head, sizeof head) == 0;
    if (match && klen >= sizeof head)
        shmring__copy_from_shared(k + sizeof head, e->key + sizeof head, sizeof k - sizeof head);
    /* Peer-written key: compared within its field, klen <= 63. */
    match = match && memcmp(k, key, klen) == 0 && k[klen] == '\0';
    if (!match || want == NULL)
        return still_valid(&e->lock, w) ? (match ? LOOK_MATCH : LOOK_OTHER) : 1;
    uint32_t copy = SEQ_COPY(w);
    /* Relaxed: ordered by R1 before and R2 after. Peer-written: checked. */
    uint32_t len = shmring__load_relaxed_32(&e->len[copy]);
    if (len > s->value_size || len > want->cap) {
        if (!still_valid(&e->lock, w))
            return 1;
        return len > s->value_size ? -EPROTO : -EMSGSIZE;
    }
    if (len > 0)
        shmring__copy_from_shared(want->buf, value_of(s, e, copy), len);
    if (!still_valid(&e->lock, w))
        return 1;
    want->len = len;
    return LOOK_MATCH;
}

/*
 * Look at entry e for key: enum look (with the word seen in *word), or
 * -EAGAIN after READ_TRIES copies spoilt by writers, -EMSGSIZE, -EPROTO.
 */
static int look(shmring_state_t *s, struct shmring__state_entry *e, const char *key, size_t klen,
                struct want *want, uint64_t *word)
{
    for (uint32_t tries = 0; tries < READ_TRIES; tries++) {
        /* R1: acquire, pairs with W3. */
        uint64_t w = shmring__load_acquire_64(&e->lock.seq);
        *word = w;
        uint32_t st = SEQ_STATE(w);
        if (st == SHMRING__STATE_EMPTY)
            return LOOK_EMPTY;
        if (st == SHMRING__STATE_TOMB)
            return LOOK_TOMB;
        if (st != SHMRING__STATE_LIVE)
            return -EPROTO;
        int rc = look_once(s, e, w, key, klen, want);
        if (rc != 1)
            return rc;
        count(s, SHMRING__S_RETRIES, 1);
    }
    return -EAGAIN;
}

/* Where a key is, or where it could go. */
struct probe {
    int found;
    uint32_t index; /* of the key, when found */
    uint64_t word;
    int has_free;
    uint32_t free_index; /* first EMPTY or TOMB entry of the probe sequence */
    uint64_t free_word;
};

/* Walk the probe sequence of key: 0 (see p), or -EAGAIN / -EPROTO. */
static int probe(shmring_state_t *s, const char *key, size_t klen, uint64_t h, struct probe *p)
{
    memset(p, 0, sizeof *p);
    for (uint32_t i = 0; i < s->nslots; i++) {
        uint32_t index = (uint32_t)((h + i) & s->mask);
        uint64_t w;
        int rc = look(s, entry_at(s, index), key, klen, NULL, &w);
        if (rc < 0)
            return rc;
        if (rc == LOOK_MATCH) {
            p->found = 1;
            p->index = index;
            p->word = w;
            return 0;
        }
        if (rc == LOOK_OTHER)
            continue;
        if (!p->has_free) {
            p->has_free = 1;
            p->free_index = index;
            p->free_word = w;
        }
        if (rc == LOOK_EMPTY)
            return 0;
    }
    return 0;
}

/* ---- Writing ------------------------------------------------------------ */

/* Fill the non-current copy of the held entry e (and its key), publish it. */
static void fill_and_publish(shmring_state_t *s, struct shmring__state_entry *e, uint64_t held,
                             const char *key, size_t klen, const void *val, size_t len)
{
    uint32_t copy = SEQ_COPY(held) ^ 1u;
    if (key != NULL) {
        char k[SHMRING__STATE_KEY_FIELD] = {0};
        memcpy(k, key, klen);
        shmring__copy_to_shared(e->key, k, sizeof k);
    }
    if (len > 0)
        shmring__copy_to_shared(value_of(s, e, copy), val, len);
    /* Relaxed: published by W3. */
    shmring__store_relaxed_32(&e->len[copy], (uint32_t)len);
    SHMRING_FAULT(STATE_W2);
    lock_publish(&e->lock, held, SHMRING__STATE_LIVE, copy);
    SHMRING_FAULT(STATE_W3);
}

/* ---- The key count (under the insert lock) ------------------------------ */

/* LIVE entries, by a walk over the index. Exact under the insert lock: the
 * committed state of an entry changes only under it (a recovered entry
 * keeps its committed state). */
static uint64_t count_keys(const shmring_state_t *s)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < s->nslots; i++) {
        /* Acquire: pairs with W3 and X1 of the entry. */
        uint64_t w = shmring__load_acquire_64(&entry_at(s, i)->lock.seq);
        n += SEQ_STATE(w) == SHMRING__STATE_LIVE;
    }
    return n;
}

/*
 * Keys in the table, for the holder of the insert lock (held: its odd
 * word). `keys` is right only if the last holder stored it before it
 * published the lock, i.e. keys_version names the even word this holder
 * took; a holder that died after changing the table and before storing the
 * count leaves an older version, and the keys are counted again.
 */
static uint64_t keys_get(const shmring_state_t *s, uint64_t held)
{
    /* Relaxed: stored before the previous holder's W3 (or recovered by X1),
     * which this holder's W1 CAS read. Peer-written: bounded below. */
    uint64_t v = shmring__load_relaxed_64(&s->sh->keys_version);
    uint64_t n = shmring__load_relaxed_64(&s->sh->keys);
    if (v != (uint32_t)(SEQ_VERSION(held) - 1u) || n > s->nentries)
        n = count_keys(s);
    return n;
}

/* Store the count as right at the even word that lock_publish will make. */
static void keys_set(shmring_state_t *s, uint64_t held, uint64_t n)
{
    /* Relaxed: published by W3 of the insert lock. */
    shmring__store_relaxed_64(&s->sh->keys, n);
    shmring__store_relaxed_64(&s->sh->keys_version, (uint32_t)(SEQ_VERSION(held) + 1u));
}

/* Under the insert lock: 0 (inserted), -ENOSPC, <0, or 1 for "start over". */
static int insert_locked(shmring_state_t *s, const char *key, size_t klen, uint64_t h,
                         const void *val, size_t len, struct op *op, uint64_t *keys)
{
    struct probe p;
    int rc = probe(s, key, klen, h, &p);
    if (rc < 0)
        return rc;
    if (p.found)
        return 1; /* inserted meanwhile: update it */
    /* `entries` keys at most: the index keeps at least half of it free. */
    if (*keys >= s->nentries || !p.has_free)
        return -ENOSPC;
    struct shmring__state_entry *e = entry_at(s, p.free_index);
    if (SEQ_ODD(p.free_word)) {
        /* Only a dead holder of the insert lock leaves a free entry odd. */
        uint64_t w;
        rc = wait_even(s, &e->lock, &w, op);
        return rc < 0 ? rc : 1;
    }
    uint64_t held;
    if (!lock_take(s, &e->lock, p.free_word, &held))
        return 1;
    SHMRING_FAULT(STATE_I1);
    fill_and_publish(s, e, held, key, klen, val, len);
    (*keys)++;
    return 0;
}

static int insert(shmring_state_t *s, const char *key, size_t klen, uint64_t h, const void *val,
                  size_t len, struct op *op)
{
    struct shmring__state_lock *l = &s->sh->insert;
    uint64_t w, held;
    /* L: the insert lock is taken like an entry (W1) and released with W3. */
    int waited = op->waited;
    int rc = wait_even(s, l, &w, op);
    op->waited = waited; /* waiting for the insert lock is not an entry wait */
    if (rc < 0)
        return rc;
    if (!lock_take(s, l, w, &held))
        return 1;
    SHMRING_FAULT(STATE_L1);
    uint64_t keys = keys_get(s, held);
    rc = insert_locked(s, key, klen, h, val, len, op, &keys);
    keys_set(s, held, keys);
    if (rc == 0)
        SHMRING_FAULT(STATE_L3);
    lock_publish(l, held, 0, 0);
    return rc;
}

static void reclaim_user(struct shmring__seg *seg, unsigned index, void *ctx);

/*
 * G1: take the party entry of handle s for this process, and a generation
 * for it that the owner field of every word it takes will name.
 */
static int take_identity(shmring_state_t *s)
{
    int idx =
        shmring__party_take(s->seg, 1, SHMRING__PARTIES - 1, SHMRING__ROLE_USER, reclaim_user, s);
    if (idx < 0)
        return idx;
    uint32_t *gen = &s->sh->handle_gen[idx];
    /* Relaxed load: only the holder of party entry idx writes it. */
    uint32_t g = (shmring__load_relaxed_32(gen) + 1) & SHMRING__OWNER_GEN_MASK;
    /* G1: release, pairs with G2 in holder_dead() (W1 publishes it as well). */
    shmring__store_release_32(gen, g);
    s->party = (unsigned)idx;
    s->owner = SHMRING__STATE_OWNER(idx, g);
    s->pid = me();
    return 0;
}

/*
 * A child of fork() that writes through its parent's handle writes as
 * itself: it takes a party entry of its own first, so that its death (or its
 * parent's) is judged on the right process. 0, or -EUSERS.
 */
static int writer_ready(shmring_state_t *s)
{
    if (s->pid == me() || s->seg->backend == SHMRING_BACKEND_HEAP)
        return 0;
    return take_identity(s);
}

/* The eventcount that waiters of a key with hash h sleep on. */
static inline uint32_t *wake_word(const shmring_state_t *s, uint64_t h)
{
    return &s->sh->wake[h & (SHMRING__STATE_WAKE_WORDS - 1)];
}

/* Count the outcome of a write or delete; K1: wake the key's waiters. */
static int write_result(shmring_state_t *s, int rc, const struct op *op, uint64_t h)
{
    if (rc == 0) {
        /* K1: fence, then the flag; pairs with K2 in shmring_state_wait(). */
        shmring__ec_notify(wake_word(s, h));
        count(s, SHMRING__S_WRITES, 1);
    } else if (rc == -EAGAIN)
        count(s, SHMRING__S_EAGAIN, 1);
    if (op->waited)
        count(s, SHMRING__S_WRITE_WAITS, 1);
    return rc;
}

SHMRING_API int shmring_state_write(shmring_state_t *s, const char *key, const void *val,
                                    size_t len)
{
    size_t klen;
    if (s == NULL || key_check(key, &klen) < 0 || (val == NULL && len > 0))
        return -EINVAL;
    if (len > s->value_size)
        return -EMSGSIZE;
    uint64_t h = hash_key(key, klen);
    struct op op = {0, 0};
    int rc = writer_ready(s);
    if (rc < 0)
        return rc;
    rc = -EAGAIN;
    for (uint32_t tries = 0; tries < WRITE_TRIES; tries++) {
        /* Every pass after the first is a retry: bounded by the deadline. */
        if (tries > 0 && op_expired(&op, shmring__now_ns())) {
            rc = -EAGAIN;
            break;
        }
        struct probe p;
        rc = probe(s, key, klen, h, &p);
        if (rc < 0)
            break;
        if (!p.found) {
            rc = insert(s, key, klen, h, val, len, &op);
            if (rc <= 0)
                break;
            continue;
        }
        struct shmring__state_entry *e = entry_at(s, p.index);
        uint64_t held;
        if (SEQ_ODD(p.word)) {
            rc = wait_even(s, &e->lock, &held, &op);
            if (rc < 0)
                break;
            continue; /* the holder may have deleted it: look again */
        }
        if (lock_take(s, &e->lock, p.word, &held)) {
            SHMRING_FAULT(STATE_W1);
            fill_and_publish(s, e, held, NULL, 0, val, len);
            rc = 0;
            break;
        }
        rc = -EAGAIN;
    }
    if (rc > 0)
        rc = -EAGAIN; /* WRITE_TRIES passes, each told to start over */
    return write_result(s, rc, &op, h);
}

/*
 * Entry `index` has just become a tombstone. A key's probe sequence never
 * crosses an empty entry, so a tombstone followed by an empty entry ends
 * no sequence that finds a key: it becomes empty again, and so do the
 * tombstones before it. The index then keeps no tombstone that would only
 * lengthen the probes of absent keys. Under the insert lock: no key is
 * inserted meanwhile.
 */
static void clear_tombs(shmring_state_t *s, uint32_t index)
{
    /* Acquire: pairs with W3 of that entry. */
    uint64_t next = shmring__load_acquire_64(&entry_at(s, (uint64_t)index + 1)->lock.seq);
    if (SEQ_STATE(next) != SHMRING__STATE_EMPTY)
        return;
    for (uint32_t i = 0; i < s->nslots; i++) {
        struct shmring__state_entry *e = entry_at(s, (uint64_t)index + s->nslots - i);
        /* Acquire: pairs with W3 of that entry. */
        uint64_t w = shmring__load_acquire_64(&e->lock.seq);
        uint64_t held;
        if (SEQ_STATE(w) != SHMRING__STATE_TOMB || SEQ_ODD(w) || !lock_take(s, &e->lock, w, &held))
            return;
        lock_publish(&e->lock, held, SHMRING__STATE_EMPTY, SEQ_COPY(held));
    }
}

/* Under the insert lock: 0 (deleted), -ENOENT, or <0. */
static int delete_locked(shmring_state_t *s, const char *key, size_t klen, uint64_t h,
                         struct op *op, uint64_t *keys)
{
    int rc = -EAGAIN;
    for (uint32_t tries = 0; tries < WRITE_TRIES; tries++) {
        /* Every pass after the first is a retry: bounded by the deadline. */
        if (tries > 0 && op_expired(op, shmring__now_ns())) {
            rc = -EAGAIN;
            break;
        }
        struct probe p;
        rc = probe(s, key, klen, h, &p);
        if (rc < 0)
            break;
        if (!p.found) {
            rc = -ENOENT;
            break;
        }
        struct shmring__state_entry *e = entry_at(s, p.index);
        uint64_t held;
        if (SEQ_ODD(p.word)) {
            rc = wait_even(s, &e->lock, &held, op);
            if (rc < 0)
                break;
            continue;
        }
        if (lock_take(s, &e->lock, p.word, &held)) {
            SHMRING_FAULT(STATE_T1);
            /* The committed copy stays: only the state changes. */
            lock_publish(&e->lock, held, SHMRING__STATE_TOMB, SEQ_COPY(held));
            if (*keys > 0)
                (*keys)--;
            clear_tombs(s, p.index);
            rc = 0;
            break;
        }
        rc = -EAGAIN;
    }
    if (rc > 0)
        rc = -EAGAIN; /* WRITE_TRIES passes, each told to start over */
    return rc;
}

SHMRING_API int shmring_state_delete(shmring_state_t *s, const char *key)
{
    size_t klen;
    if (s == NULL || key_check(key, &klen) < 0)
        return -EINVAL;
    uint64_t h = hash_key(key, klen);
    struct shmring__state_lock *l = &s->sh->insert;
    struct op op = {0, 0};
    int rc = writer_ready(s);
    if (rc < 0)
        return rc;
    rc = -EAGAIN;
    /* Deleting changes the key count: under the insert lock, like inserting. */
    for (uint32_t tries = 0; tries < WRITE_TRIES; tries++) {
        /* Every pass after the first is a retry: bounded by the deadline. */
        if (tries > 0 && op_expired(&op, shmring__now_ns())) {
            rc = -EAGAIN;
            break;
        }
        uint64_t w, held;
        int waited = op.waited;
        rc = wait_even(s, l, &w, &op);
        op.waited = waited; /* waiting for the insert lock is not an entry wait */
        if (rc < 0)
            break;
        if (!lock_take(s, l, w, &held)) {
            rc = -EAGAIN;
            continue;
        }
        uint64_t keys = keys_get(s, held);
        rc = delete_locked(s, key, klen, h, &op, &keys);
        keys_set(s, held, keys);
        lock_publish(l, held, 0, 0);
        break;
    }
    return write_result(s, rc, &op, h);
}

/* ---- Reading ------------------------------------------------------------ */

/*
 * The version of a key seen under word w of entry `index`: the committed
 * (even) part of the entry's version, with the index + 1 above it so that a
 * key that moved to another entry never shows an old number. Never 0.
 */
static inline uint64_t key_version(uint32_t index, uint64_t w)
{
    return (uint64_t)(index + 1u) << 32 | (SEQ_VERSION(w) & ~1u);
}

/* Look key up (copying its value into want, if not NULL): enum look, <0. */
static int find(shmring_state_t *s, const char *key, size_t klen, uint64_t h, struct want *want,
                uint64_t *version)
{
    int rc = LOOK_EMPTY;
    for (uint32_t i = 0; i < s->nslots; i++) {
        uint64_t w;
        uint32_t index = (uint32_t)((h + i) & s->mask);
        rc = look(s, entry_at(s, index), key, klen, want, &w);
        if (rc == LOOK_MATCH || (rc == -EMSGSIZE && want != NULL)) {
            *version = key_version(index, w);
            break;
        }
        if (rc != LOOK_TOMB && rc != LOOK_OTHER)
            break;
    }
    if (rc == LOOK_EMPTY || rc == LOOK_TOMB || rc == LOOK_OTHER) {
        *version = 0;
        rc = -ENOENT;
    }
    return rc;
}

SHMRING_API ssize_t shmring_state_read_version(shmring_state_t *s, const char *key, void *buf,
                                               size_t cap, uint64_t *version)
{
    size_t klen;
    if (s == NULL || key_check(key, &klen) < 0 || (buf == NULL && cap > 0))
        return -EINVAL;
    uint64_t h = hash_key(key, klen);
    struct want want = {buf, cap, 0};
    uint64_t v = 0;
    int rc = find(s, key, klen, h, &want, &v);
    if (version != NULL && (rc == LOOK_MATCH || rc == -EMSGSIZE || rc == -ENOENT))
        *version = v;
    if (rc == LOOK_MATCH) {
        count(s, SHMRING__S_READS, 1);
        return (ssize_t)want.len;
    }
    if (rc == -EAGAIN)
        count(s, SHMRING__S_EAGAIN, 1);
    return rc < 0 ? rc : -ENOENT;
}

SHMRING_API ssize_t shmring_state_read(shmring_state_t *s, const char *key, void *buf, size_t cap)
{
    return shmring_state_read_version(s, key, buf, cap, NULL);
}

static int state_wait_passes(shmring_state_t *s, const char *key, size_t klen, uint64_t h,
                             uint32_t *word, uint64_t version, int64_t timeout_ns)
{
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : shmring__now_ns() + (uint64_t)timeout_ns;
    for (;;) {
        uint64_t v;
        int rc = find(s, key, klen, h, NULL, &v);
        if (rc < 0 && rc != -ENOENT)
            return rc;
        if (v != version)
            return 0;
        uint64_t now = shmring__now_ns();
        if (timeout_ns == 0 || now >= deadline)
            return -ETIMEDOUT;
        /* K2: announce the sleeper (flag + full fence), then check again:
         * a writer that published before this sees the flag and wakes. */
        uint32_t seen = shmring__ec_prepare(word);
        rc = find(s, key, klen, h, NULL, &v);
        if (rc < 0 && rc != -ENOENT)
            return rc;
        if (v != version)
            return 0;
        if (shmring__cancel_check(&s->cancel, 1))
            return -ECANCELED;
        /* Woken by K1 of any key of this word, an interrupt, a signal or the
         * time: the loop checks again in every case. Never longer than the
         * dead-peer bound: a writer that died between clearing the sleeper
         * flag and its futex wake leaves no wake-up to come, and the version
         * it published is seen at the next look. */
        uint64_t nap = deadline - now;
        if (nap > (uint64_t)SHMRING_DEAD_PEER_NS)
            nap = (uint64_t)SHMRING_DEAD_PEER_NS;
        shmring__ec_sleep(word, seen, nap);
    }
}

SHMRING_API int shmring_state_wait(shmring_state_t *s, const char *key, uint64_t version,
                                   int64_t timeout_ns)
{
    size_t klen;
    if (s == NULL || key_check(key, &klen) < 0)
        return -EINVAL;
    /* An interrupt no wait has consumed yet ends this one at once (not
     * with timeout_ns == 0, which does not wait). */
    if (timeout_ns != 0 && shmring__cancel_check(&s->cancel, 0))
        return -ECANCELED;
    uint64_t h = hash_key(key, klen);
    uint32_t *word = wake_word(s, h);
    shmring__cancel_arm(&s->cancel, word);
    int rc = state_wait_passes(s, key, klen, h, word, version, timeout_ns);
    shmring__cancel_arm(&s->cancel, NULL);
    return rc;
}

SHMRING_API int shmring_state_interrupt(shmring_state_t *s)
{
    if (s == NULL)
        return -EINVAL;
    shmring__cancel_raise(&s->cancel);
    return 0;
}

/* Validated key and value length of entry e: 1 if LIVE, 0 if not, <0. */
static int entry_key(shmring_state_t *s, struct shmring__state_entry *e, char *k, size_t *len)
{
    for (uint32_t tries = 0; tries < READ_TRIES; tries++) {
        /* R1: acquire, pairs with W3. */
        uint64_t w = shmring__load_acquire_64(&e->lock.seq);
        if (SEQ_STATE(w) != SHMRING__STATE_LIVE)
            return 0;
        shmring__copy_from_shared(k, e->key, SHMRING__STATE_KEY_FIELD);
        /* Relaxed: ordered by R1 and R2. Peer-written: checked below. */
        uint32_t l = shmring__load_relaxed_32(&e->len[SEQ_COPY(w)]);
        if (!still_valid(&e->lock, w)) {
            count(s, SHMRING__S_RETRIES, 1);
            continue;
        }
        if (l > s->value_size)
            return -EPROTO;
        /* Peer-written: terminate within the field. */
        k[SHMRING__STATE_KEY_FIELD - 1] = '\0';
        *len = l;
        return 1;
    }
    return -EAGAIN;
}

SHMRING_API int shmring_state_foreach(shmring_state_t *s, shmring_state_fn fn, void *ctx)
{
    if (s == NULL || fn == NULL)
        return -EINVAL;
    int visited = 0;
    for (uint32_t i = 0; i < s->nslots; i++) {
        char k[SHMRING__STATE_KEY_FIELD];
        size_t len;
        int rc = entry_key(s, entry_at(s, i), k, &len);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        rc = fn(k, len, ctx);
        if (rc != 0)
            return rc;
        visited++;
    }
    return visited;
}

/* Recover lock word l if a dead writer holds it: 1 if recovered. */
static int repair_word(shmring_state_t *s, struct shmring__state_lock *l)
{
    /* Acquire: pairs with W3 / W1 of the holder. */
    uint64_t w = shmring__load_acquire_64(&l->seq);
    return SEQ_ODD(w) && holder_dead(s, w) && recover(s, l, w);
}

SHMRING_API int shmring_state_repair(shmring_state_t *s)
{
    if (s == NULL)
        return -EINVAL;
    int n = repair_word(s, &s->sh->insert);
    for (uint32_t i = 0; i < s->nslots; i++)
        n += repair_word(s, &entry_at(s, i)->lock);
    return n;
}

/* ---- Handles ------------------------------------------------------------ */

/* Fold the counters of a departing user into the retired ones. */
static void fold_counters(struct shmring__state_shared *sh, struct shmring__party *p)
{
    for (unsigned i = 0; i < 5; i++)
        shmring__faa_64(&sh->retired[i], shmring__load_relaxed_64(&p->counter[i]));
}

static void reclaim_user(struct shmring__seg *seg, unsigned index, void *ctx)
{
    shmring_state_t *s = ctx;
    fold_counters(s->sh, &seg->hdr->party[index]);
}

int shmring__state_from_seg(struct shmring__seg *seg, shmring_state_t **out)
{
    pthread_once(&atfork_once, register_atfork);
    me();
    shmring_state_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->seg = seg;
    s->sh = (struct shmring__state_shared *)(void *)seg->hdr->object;
    s->data = seg->base + SHMRING__HEADER_SIZE;
    /* Validated copies: never re-read from the segment. */
    s->nentries = seg->param[0];
    s->value_size = seg->param[1];
    s->stride = seg->param[2];
    s->nslots = seg->param[3];
    s->vstride = (size_t)vstride_of(s->value_size);
    s->mask = s->nslots - 1;
    /* Peer-written, read once: a table of another state layout is refused. */
    if (shmring__load_relaxed_32(&s->sh->layout) != SHMRING__STATE_LAYOUT) {
        free(s);
        return -EPROTONOSUPPORT;
    }
    int rc = take_identity(s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int check_create_config(const shmring_state_config_t *cfg, uint32_t param[4],
                               uint32_t *flags, uint32_t *mode)
{
    shmring_state_config_t def;
    int rc = shmring__config_state(cfg, &def);
    if (rc < 0)
        return rc;
    cfg = &def;
    uint32_t entries = cfg->entries ? cfg->entries : DEFAULT_ENTRIES;
    uint32_t value_size = cfg->value_size ? cfg->value_size : DEFAULT_VALUE_SIZE;
    *flags = cfg->flags;
    *mode = cfg->mode ? cfg->mode : 0600;
    if (*flags & ~CREATE_FLAGS)
        return -EINVAL;
    if (*mode & ~0777u)
        return -EINVAL;
    if ((*mode & 0022u) && !(*flags & SHMRING_ALLOW_INSECURE))
        return -EINVAL;
    if (value_size > SHMRING_STATE_MAX_VALUE)
        return -EINVAL;
    param[0] = entries;
    param[1] = value_size;
    param[2] = (uint32_t)stride_of(value_size);
    param[3] = SHMRING__STATE_SLOTS(entries);
    uint64_t total;
    return shmring__state_layout(param, 0, &total);
}

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
 * SHMRING_OPEN_EXISTING: open table `name`, which a create found existing,
 * if its geometry (param) matches. -EEXIST if it does not (or it is not a
 * state table); -ENOENT if it vanished meanwhile (the caller creates again).
 */
static int open_existing(const char *name, const uint32_t param[4], uint32_t flags,
                         shmring_state_t **out)
{
    struct shmring__seg *seg = NULL;
    int rc = shmring__seg_open(name, SHMRING__TYPE_STATE,
                               (flags & SHMRING_FORCE_HEAP ? SHMRING_LOCAL_ONLY : 0) |
                                   (flags & SHMRING_ALLOW_INSECURE),
                               shmring__state_layout, &seg);
    if (rc == -EPROTOTYPE)
        return -EEXIST;
    if (rc < 0)
        return rc;
    /* Validated copies (shmring__seg_open checked them). */
    if (seg->param[0] != param[0] || seg->param[1] != param[1]) {
        shmring__seg_close(seg);
        return -EEXIST;
    }
    rc = shmring__state_from_seg(seg, out);
    if (rc < 0)
        shmring__seg_close(seg);
    return rc;
}

SHMRING_API int shmring_state_create(const char *name, const shmring_state_config_t *cfg,
                                     shmring_state_t **out)
{
    if (out == NULL)
        return -EINVAL;
    uint32_t param[4], flags, mode;
    int rc = check_create_config(cfg, param, &flags, &mode);
    if (rc < 0)
        return rc;
    if (name == NULL && (flags & SHMRING_OPEN_EXISTING))
        return -EINVAL;
    struct shmring__seg *seg;
    uint64_t start = shmring__now_ns();
    for (;;) {
        rc = shmring__seg_create(name, SHMRING__TYPE_STATE, flags & ~SHMRING_OPEN_EXISTING, 0, mode,
                                 param, shmring__state_layout, &seg);
        if (rc != -EEXIST || !(flags & SHMRING_OPEN_EXISTING))
            break;
        rc = open_existing(name, param, flags, out);
        if (!open_existing_retry(rc, start))
            return rc;
    }
    if (rc < 0)
        return rc;
    /* Zero-filled pages: every entry EMPTY at version 0, the insert lock free,
     * no keys. Relaxed: published by the ready flag (seg_publish). */
    shmring__store_relaxed_32(&((struct shmring__state_shared *)(void *)seg->hdr->object)->layout,
                              SHMRING__STATE_LAYOUT);
    shmring__seg_publish(seg);
    rc = shmring__state_from_seg(seg, out);
    if (rc < 0) {
        shmring__seg_close(seg);
        if (name != NULL)
            shmring__seg_unlink(name);
    } else if (name != NULL) {
        shmring__appear_notify(); /* waiters in shmring_state_open_wait */
    }
    return rc;
}

SHMRING_API int shmring_state_open(const char *name, uint32_t flags, shmring_state_t **out)
{
    if (out == NULL || (flags & ~OPEN_FLAGS))
        return -EINVAL;
    struct shmring__seg *seg;
    int rc = shmring__seg_open(name, SHMRING__TYPE_STATE, flags, shmring__state_layout, &seg);
    if (rc < 0)
        return rc;
    rc = shmring__state_from_seg(seg, out);
    if (rc < 0)
        shmring__seg_close(seg);
    return rc;
}

static int try_open_state(const char *name, uint32_t flags, void *out)
{
    return shmring_state_open(name, flags, out);
}

SHMRING_API int shmring_state_open_wait(const char *name, uint32_t flags, int64_t timeout_ns,
                                        shmring_state_t **out)
{
    if (out == NULL || (flags & ~OPEN_FLAGS))
        return -EINVAL;
    return shmring__appear_wait(name, flags, timeout_ns, try_open_state, out);
}

SHMRING_API int shmring_state_open_fd(int fd, uint32_t flags, shmring_state_t **out)
{
    if (out == NULL || (flags & ~OPEN_FLAGS))
        return -EINVAL;
    struct shmring__seg *seg;
    int rc = shmring__seg_open_fd(fd, SHMRING__TYPE_STATE, flags, shmring__state_layout, &seg);
    if (rc < 0)
        return rc;
    rc = shmring__state_from_seg(seg, out);
    if (rc < 0)
        shmring__seg_close(seg);
    return rc;
}

SHMRING_API void shmring_state_close(shmring_state_t *s)
{
    if (s == NULL)
        return;
    /* In a child of fork() that never wrote, the party entry is the parent's. */
    if (s->pid == me()) {
        fold_counters(s->sh, &s->seg->hdr->party[s->party]);
        shmring__party_release(s->seg, s->party, SHMRING__PARTY_FREE);
    }
    shmring__seg_close(s->seg);
    free(s);
}

SHMRING_API int shmring_state_unlink(const char *name)
{
    return shmring__seg_unlink(name);
}

SHMRING_API int shmring_state_backend(const shmring_state_t *s)
{
    return s == NULL ? -EINVAL : s->seg->backend;
}

SHMRING_API int shmring_state_fd(const shmring_state_t *s)
{
    if (s == NULL)
        return -EINVAL;
    return s->seg->fd >= 0 ? s->seg->fd : -ENOTSUP;
}

SHMRING_API uint32_t shmring_state_entries(const shmring_state_t *s)
{
    return s == NULL ? 0 : s->nentries;
}

SHMRING_API uint32_t shmring_state_value_size(const shmring_state_t *s)
{
    return s == NULL ? 0 : s->value_size;
}

/* ---- Stats -------------------------------------------------------------- */

static void stats_entries(const shmring_state_t *s, shmring_state_stats_t *st)
{
    for (uint32_t i = 0; i < s->nslots; i++) {
        /* Relaxed: a statistic. */
        uint64_t w = shmring__load_relaxed_64(&entry_at(s, i)->lock.seq);
        uint32_t state = SEQ_STATE(w);
        st->used += state == SHMRING__STATE_LIVE;
        st->tombstones += state == SHMRING__STATE_TOMB;
        st->writing += SEQ_ODD(w);
    }
}

static void stats_users(const shmring_state_t *s, shmring_state_stats_t *st)
{
    uint64_t c[5];
    for (unsigned k = 0; k < 5; k++)
        c[k] = shmring__load_relaxed_64(&s->sh->retired[k]);
    for (unsigned i = 1; i < SHMRING__PARTIES; i++) {
        struct shmring__party *p = &s->seg->hdr->party[i];
        /* Acquire: pairs with the release in party_setup(). */
        uint64_t o = shmring__load_acquire_64(&p->owner);
        if (SHMRING__OWNER_STATE(o) != SHMRING__PARTY_ACTIVE)
            continue;
        for (unsigned k = 0; k < 5; k++)
            c[k] += shmring__load_relaxed_64(&p->counter[k]);
        if (shmring__party_alive(s->seg, i))
            st->users++;
    }
    st->writes = c[SHMRING__S_WRITES];
    st->reads = c[SHMRING__S_READS];
    st->read_retries = c[SHMRING__S_RETRIES];
    st->eagain = c[SHMRING__S_EAGAIN];
    st->write_waits = c[SHMRING__S_WRITE_WAITS];
}

SHMRING_API int shmring_state_stats(shmring_state_t *s, shmring_state_stats_t *st)
{
    if (s == NULL || st == NULL)
        return -EINVAL;
    memset(st, 0, sizeof *st);
    st->entries = s->nentries;
    st->value_size = s->value_size;
    st->backend = s->seg->backend;
    stats_entries(s, st);
    stats_users(s, st);
    /* Relaxed: a statistic. */
    st->recovered = shmring__load_relaxed_64(&s->sh->recovered);
    st->creator_pid = s->seg->hdr->creator_pid;
    st->created_ns = s->seg->hdr->created_ns;
    return 0;
}
