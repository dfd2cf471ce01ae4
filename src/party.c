/*
 * The party table: taking, releasing and seizing entries, and the liveness
 * of the processes that hold them (open-file-description locks, or pid and
 * start time where locks are not available). Protocol below.
 */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "fault.h"

/* ---- Open-file-description locks --------------------------------------- */

static int ofd_lock(int fd, unsigned index, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)index;
    fl.l_len = 1;
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

int shmring__ofd_held(int fd, unsigned index)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)index;
    fl.l_len = 1;
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

/* ---- Parties ------------------------------------------------------------ */

/*
 * Protocol of an entry (see segment.h for the owner word):
 *
 *   take     lock byte `index` (F_OFD_SETLK), then CAS FREE (or CLOSED, the
 *            lease) -> TAKING|LOCKED, generation + 1; set up; ACTIVE (release).
 *   release  CAS our own word -> FREE (or CLOSED), then unlock.
 *   seize    load the word, judge its holder dead (its lock is free, or
 *            without locks its pid and start time are gone), lock the byte,
 *            then CAS exactly the word judged -> TAKING by us.
 *
 * The lock is taken before the word changes and dropped after it changed
 * back, so that while a word says TAKING|LOCKED or ACTIVE|LOCKED someone
 * alive holds the lock, or the holder is dead: a dead taker or reclaimer is
 * recognised like a dead owner, whatever happened to its pid. The generation
 * makes a CAS on a word loaded before a hand-over fail (no ABA), also where
 * locks are not available.
 */

/* OFD locks usable on this view (a descriptor of its own, not an image). */
static int locks_usable(const struct shmring__seg *seg)
{
    return seg->locks == 1 && seg->fd >= 0;
}

/* Lock byte index before taking its entry: 1 locked, 0 someone alive holds
 * it, -1 no locks here (pid and start time stand in for them). */
static int entry_lock(struct shmring__seg *seg, unsigned index)
{
    if (!locks_usable(seg))
        return -1;
    int rc = ofd_lock(seg->fd, index, F_WRLCK);
    if (rc == 0)
        return 1;
    return rc == -EAGAIN || rc == -EACCES ? 0 : -1;
}

static void entry_unlock(struct shmring__seg *seg, unsigned index, int locked)
{
    if (locked == 1)
        ofd_lock(seg->fd, index, F_UNLCK);
}

/* The word a taker CASes in: TAKING by this process, the next generation. */
static uint64_t taking_word(uint64_t old, int locked)
{
    uint32_t st = SHMRING__PARTY_TAKING | (locked == 1 ? SHMRING__OWNER_LOCKED : 0u);
    return SHMRING__OWNER_WORD(st, SHMRING__OWNER_GEN(old) + 1, getpid());
}

/* TAKING (ours) -> ACTIVE. */
static void party_setup(struct shmring__seg *seg, unsigned index, uint32_t role)
{
    struct shmring__party *p = &seg->hdr->party[index];
    /* Relaxed: our own word (TAKING by our CAS). */
    uint64_t o = shmring__load_relaxed_64(&p->owner);
    uint32_t lockbit = (uint32_t)o & SHMRING__OWNER_LOCKED;
    /* Relaxed: published by the release store of generation just after. */
    shmring__store_relaxed_64(&p->start_time, shmring__self_start_time());
    /* Release: pairs with the acquire in owner_alive(): who sees this
     * generation sees the start time of the process that holds it. */
    shmring__store_release_32(&p->generation, SHMRING__OWNER_GEN(o));
    /* Relaxed: published by the release store of owner below. */
    shmring__store_relaxed_32(&p->role, (role & ~SHMRING__ROLE_KEEP_COUNTERS) |
                                            (lockbit ? SHMRING__ROLE_LOCKED : 0u));
    if (!(role & SHMRING__ROLE_KEEP_COUNTERS))
        for (unsigned i = 0; i < 5; i++)
            shmring__store_relaxed_64(&p->counter[i], 0);
    /* Release: pairs with the acquire in shmring__party_alive() and the readers of counters. */
    shmring__store_release_64(&p->owner, SHMRING__OWNER_WORD(SHMRING__PARTY_ACTIVE | lockbit,
                                                             SHMRING__OWNER_GEN(o), getpid()));
}

/* Does the holder of owner word o (ACTIVE or TAKING) of entry index live? */
static int owner_alive(const struct shmring__seg *seg, unsigned index, uint64_t o)
{
    const struct shmring__party *p = &seg->hdr->party[index];
    pid_t pid = SHMRING__OWNER_PID(o);
    /* This process: alive, whatever its own descriptor's lock shows. */
    if (pid == getpid())
        return 1;
    if (((uint32_t)o & SHMRING__OWNER_LOCKED) && locks_usable(seg)) {
        int held = shmring__ofd_held(seg->fd, index);
        if (held >= 0)
            return held;
    }
    /* No lock to go by: the pid, and its start time once the holder has
     * recorded it for this generation (before that, the pid alone). */
    uint64_t start = 0;
    /* Acquire: pairs with the release of generation in party_setup(). */
    if (shmring__load_acquire_32(&p->generation) == SHMRING__OWNER_GEN(o))
        start = shmring__load_relaxed_64(&p->start_time);
    return shmring__pid_alive(pid, start);
}

int shmring__party_alive(const struct shmring__seg *seg, unsigned index)
{
    if (index >= SHMRING__PARTIES)
        return 0;
    /* Acquire: pairs with the release in party_setup(). */
    uint64_t o = shmring__load_acquire_64(&seg->hdr->party[index].owner);
    uint32_t st = SHMRING__OWNER_STATE(o);
    if (st != SHMRING__PARTY_ACTIVE && st != SHMRING__PARTY_TAKING)
        return 0;
    if (seg->backend == SHMRING_BACKEND_HEAP)
        return 1;
    return owner_alive(seg, index, o);
}

int shmring__party_seize_dead(struct shmring__seg *seg, unsigned index)
{
    if (index >= SHMRING__PARTIES || seg->backend == SHMRING_BACKEND_HEAP)
        return 0;
    struct shmring__party *p = &seg->hdr->party[index];
    /* Acquire: pairs with the release in party_setup() / party_release(). */
    uint64_t o = shmring__load_acquire_64(&p->owner);
    uint32_t st = SHMRING__OWNER_STATE(o);
    if (st != SHMRING__PARTY_ACTIVE && st != SHMRING__PARTY_TAKING)
        return 0;
    SHMRING_FAULT(PARTY_JUDGE);
    if (owner_alive(seg, index, o))
        return 0;
    /* The lock before the word: nobody else takes or seizes the entry while
     * we hold it, and it is free only if no live process holds the entry. */
    int locked = entry_lock(seg, index);
    if (locked == 0)
        return 0;
    SHMRING_FAULT(PARTY_SEIZE);
    /* CAS on the very word judged dead: fails if the entry changed hands
     * since, even to the same pid (the generation moved on). */
    if (!shmring__cas_64(&p->owner, &o, taking_word(o, locked))) {
        entry_unlock(seg, index, locked);
        return 0;
    }
    SHMRING_FAULT(PARTY_RECLAIM);
    return 1;
}

int shmring__party_take(struct shmring__seg *seg, unsigned first, unsigned last, uint32_t role,
                        shmring__reclaim_fn reclaim, void *ctx)
{
    for (unsigned i = first; i <= last && i < SHMRING__PARTIES; i++) {
        struct shmring__party *p = &seg->hdr->party[i];
        /* Acquire: pairs with the release in party_release(); the CAS decides. */
        uint64_t o = shmring__load_acquire_64(&p->owner);
        if (SHMRING__OWNER_STATE(o) != SHMRING__PARTY_FREE)
            continue;
        int locked = entry_lock(seg, i);
        if (locked == 0)
            continue; /* its last holder is still leaving, or a rival is taking it */
        if (!shmring__cas_64(&p->owner, &o, taking_word(o, locked))) {
            entry_unlock(seg, i, locked);
            continue;
        }
        SHMRING_FAULT(PARTY_TAKE);
        party_setup(seg, i, role);
        return (int)i;
    }
    for (unsigned i = first; i <= last && i < SHMRING__PARTIES; i++) {
        if (!shmring__party_seize_dead(seg, i))
            continue;
        if (reclaim != NULL)
            reclaim(seg, i, ctx);
        party_setup(seg, i, role);
        return (int)i;
    }
    return -EUSERS;
}

int shmring__lease_take(struct shmring__seg *seg, int *took_over)
{
    struct shmring__party *p = &seg->hdr->party[0];
    *took_over = 0;
    for (int tries = 0; tries < 100; tries++) {
        /* Acquire: pairs with the release of the previous holder's close;
         * the CAS then decides between competing producers. */
        uint64_t o = shmring__load_acquire_64(&p->owner);
        uint32_t st = SHMRING__OWNER_STATE(o);
        if (st == SHMRING__PARTY_FREE || st == SHMRING__PARTY_CLOSED) {
            int locked = entry_lock(seg, 0);
            if (locked == 0) {
                /* The last holder is unlocking, or a rival is taking it. */
                sched_yield();
                continue;
            }
            if (!shmring__cas_64(&p->owner, &o, taking_word(o, locked))) {
                entry_unlock(seg, 0, locked);
                continue;
            }
            SHMRING_FAULT(PARTY_LEASE_TAKE);
        } else if (shmring__party_seize_dead(seg, 0)) {
            *took_over = 1;
            SHMRING_FAULT(PARTY_LEASE_TAKEOVER);
        } else {
            return -EBUSY;
        }
        party_setup(seg, 0, SHMRING__ROLE_PRODUCER);
        return 0;
    }
    return -EBUSY;
}

void shmring__party_release(struct shmring__seg *seg, unsigned index, uint32_t final_state)
{
    if (index >= SHMRING__PARTIES)
        return;
    struct shmring__party *p = &seg->hdr->party[index];
    /* Relaxed: only a word this process wrote is released; the CAS decides. */
    uint64_t o = shmring__load_relaxed_64(&p->owner);
    uint32_t st = SHMRING__OWNER_STATE(o);
    if (SHMRING__OWNER_PID(o) != getpid() ||
        (st != SHMRING__PARTY_ACTIVE && st != SHMRING__PARTY_TAKING))
        return;
    SHMRING_FAULT(PARTY_RELEASE);
    pid_t pid = final_state == SHMRING__PARTY_FREE ? 0 : getpid();
    uint64_t v = SHMRING__OWNER_WORD(final_state, SHMRING__OWNER_GEN(o), pid);
    /* CAS, release: pairs with the acquire of takers and of readers of the
     * entry's counters. The word first, then the lock: the entry never shows
     * ACTIVE with its lock gone while its holder lives. */
    if (shmring__cas_64(&p->owner, &o, v))
        entry_unlock(seg, index, (o & SHMRING__OWNER_LOCKED) ? 1 : 0);
}
