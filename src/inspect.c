/*
 * Inspection of a segment without attaching: pread into a private copy,
 * validate, never map (see include/shmring/inspect.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ring.h"
#include "segment.h"
#include "state.h"

SHMRING_API const char *shmring_shm_dir(void)
{
    return shmring__shm_dir();
}

SHMRING_API int shmring_name_check(const char *name)
{
    return shmring__name_check(name);
}

/*
 * Liveness of an ACTIVE or TAKING party from a copy of its entry: its OFD
 * lock when it holds one (our read-only descriptor holds none, so any lock
 * is another's), else its pid and start time.
 */
static int party_alive(int fd, const struct shmring__party *p, unsigned index)
{
    if (SHMRING__OWNER_STATE(p->owner) == SHMRING__PARTY_ACTIVE &&
        (p->role & SHMRING__ROLE_LOCKED)) {
        int held = shmring__ofd_held(fd, index);
        if (held >= 0)
            return held;
    }
    return shmring__pid_alive(SHMRING__OWNER_PID(p->owner), p->start_time);
}

static void count_party(shmring_info_t *info, uint32_t role, int alive)
{
    if (!alive)
        return;
    info->any_alive = 1;
    if (role & SHMRING__ROLE_CONSUMER)
        info->consumers++;
    else if (role & SHMRING__ROLE_OBSERVER)
        info->observers++;
    else if (role & SHMRING__ROLE_USER)
        info->users++;
}

/* The party table of a private header copy (peer-written: every field only displayed). */
static void read_parties(int fd, const struct shmring__hdr *h, shmring_info_t *info)
{
    for (unsigned i = 0; i < SHMRING__PARTIES; i++) {
        const struct shmring__party *p = &h->party[i];
        uint32_t state = SHMRING__OWNER_STATE(p->owner);
        if (i == 0 && state == SHMRING__PARTY_CLOSED)
            info->producer_closed = 1;
        if (state != SHMRING__PARTY_ACTIVE && state != SHMRING__PARTY_TAKING)
            continue;
        uint32_t role = p->role & (SHMRING__ROLE_PRODUCER | SHMRING__ROLE_CONSUMER |
                                   SHMRING__ROLE_OBSERVER | SHMRING__ROLE_USER);
        int alive = party_alive(fd, p, i);
        shmring_party_info_t *out = &info->party[info->nparties++];
        out->index = i;
        out->role = role;
        out->pid = SHMRING__OWNER_PID(p->owner);
        out->alive = alive;
        if (i == 0 && (role & SHMRING__ROLE_PRODUCER)) {
            info->producer_pid = out->pid;
            info->producer_alive = alive;
            info->any_alive |= alive;
        } else {
            count_party(info, role, alive);
        }
    }
}

static void read_ring(const struct shmring__hdr *h, shmring_info_t *info)
{
    struct shmring__ring_shared sh;
    memcpy(&sh, h->object, sizeof sh);
    /* Peer-written indices: clamp the difference to [0, slots]. */
    uint64_t w = sh.write_index, r = sh.read_index;
    uint64_t n = w > r ? w - r : 0;
    if (w < r || n > info->capacity)
        info->health |= SHMRING_HEALTH_INDICES;
    info->fill = n < info->capacity ? n : info->capacity;
}

/* 1 if the entry (a private copy, its seq word first) is LIVE. */
static int entry_live(const unsigned char *entry)
{
    struct shmring__state_entry e;
    memcpy(&e.lock.seq, entry + offsetof(struct shmring__state_entry, lock.seq), sizeof e.lock.seq);
    return SHMRING__SEQ_STATE(e.lock.seq) == SHMRING__STATE_LIVE;
}

/*
 * Count the LIVE entries of a validated state table with pread: holes are
 * skipped with SEEK_DATA (a hole holds no live entry), so a sparse table of
 * any size costs a few system calls. Entries are read in batches of up to
 * 64 KiB, or their seq word alone when one entry is larger than a page.
 */
static void read_state_entries(int fd, const struct shmring__hdr *h, shmring_info_t *info)
{
    /* Every index slot (param[3], validated as 2 * entries) may hold a key. */
    uint64_t stride = h->param[2], entries = h->param[3];
    size_t batch = stride >= 4096 ? 1 : (size_t)(65536 / stride);
    size_t want = stride >= 4096 ? sizeof(uint64_t) : batch * (size_t)stride;
    unsigned char *buf = malloc(want);
    if (buf == NULL)
        return;
    uint64_t i = 0;
    while (i < entries) {
        off_t at = (off_t)(SHMRING__HEADER_SIZE + i * stride);
        off_t data = lseek(fd, at, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* only holes from here on */
        if (data > at) {
            /* First entry that may hold data: the one containing `data`. */
            i = ((uint64_t)data - SHMRING__HEADER_SIZE) / stride;
            if (i >= entries)
                break; /* data past the validated size: the file grew since */
            at = (off_t)(SHMRING__HEADER_SIZE + i * stride);
        }
        size_t n = (size_t)(entries - i < batch ? entries - i : batch);
        ssize_t got = pread(fd, buf, want < n * (size_t)stride ? want : n * (size_t)stride, at);
        if (got < (ssize_t)sizeof(uint64_t))
            break; /* truncated since it was validated */
        size_t whole = stride >= 4096 ? 1 : (size_t)got / (size_t)stride;
        for (size_t k = 0; k < whole; k++)
            info->fill += entry_live(buf + k * (size_t)stride);
        if (whole < n)
            break;
        i += n;
    }
    free(buf);
}

/* Classify a private header copy; 0, or -EPROTO if it is not a shmring segment. */
static int classify(int fd, const struct shmring__hdr *h, shmring_info_t *info)
{
    if (h->magic != SHMRING__MAGIC)
        return -EPROTO;
    if (h->ready != SHMRING__READY)
        info->health |= SHMRING_HEALTH_NOT_READY;
    int rc = shmring__hdr_check(h, SHMRING__TYPE_RING, info->size, shmring__ring_layout);
    if (rc == -EPROTONOSUPPORT) {
        info->kind = SHMRING_KIND_OTHER_VERSION;
        return 0; /* the rest of its header may be laid out differently */
    }
    if (rc == 0) {
        info->kind = SHMRING_KIND_RING;
    } else if (shmring__hdr_check(h, SHMRING__TYPE_STATE, info->size, shmring__state_layout) == 0) {
        info->kind = SHMRING_KIND_STATE;
    } else {
        return -EPROTO;
    }
    info->flags = h->flags;
    info->capacity = h->param[0];
    info->item_size = h->param[1];
    info->creator_pid = h->creator_pid;
    info->creator_alive = shmring__pid_alive(h->creator_pid, h->creator_start);
    info->any_alive = info->creator_alive;
    info->created_ns = h->created_ns;
    read_parties(fd, h, info);
    if (info->kind == SHMRING_KIND_RING)
        read_ring(h, info);
    else
        read_state_entries(fd, h, info);
    return 0;
}

/* Inspect the regular file behind fd (read-only), described by st. */
static int inspect_fd(int fd, const struct stat *st, shmring_info_t *info)
{
    info->size = (uint64_t)st->st_size;
    info->uid = (uint32_t)st->st_uid;
    info->mode = (uint32_t)(st->st_mode & 07777);
    info->dev = (uint64_t)st->st_dev;
    info->ino = (uint64_t)st->st_ino;
    if (st->st_uid != geteuid())
        info->health |= SHMRING_HEALTH_FOREIGN;
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        info->health |= SHMRING_HEALTH_WRITABLE;
    if ((uint64_t)st->st_blocks * 512u < (uint64_t)st->st_size)
        info->health |= SHMRING_HEALTH_SPARSE;
    if (st->st_size < (off_t)SHMRING__HEADER_SIZE || (uint64_t)st->st_size > SHMRING__MAX_TOTAL)
        return -EPROTO;
    struct shmring__hdr *h = malloc(sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    int rc = pread(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h ? classify(fd, h, info) : -EPROTO;
    free(h);
    return rc;
}

/*
 * Open name in dfd read-only without blocking or acting: an O_PATH
 * descriptor first, then the file reopened through it only once it is known
 * to be a regular file.
 */
static int open_regular(int dfd, const char *name, struct stat *st)
{
    int pfd = openat(dfd, name + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0)
        return -errno;
    int rc = fstat(pfd, st) == 0 ? 0 : -errno;
    if (rc == 0 && S_ISLNK(st->st_mode))
        rc = -ELOOP;
    else if (rc == 0 && !S_ISREG(st->st_mode))
        rc = -EPROTO;
    int fd = -1;
    if (rc == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", pfd);
        fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) /* no /proc: by name, checked below */
            fd = openat(dfd, name + 1, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            rc = errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    close(pfd);
    struct stat now;
    if (rc == 0 && (fstat(fd, &now) != 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino ||
                    !S_ISREG(now.st_mode)))
        rc = -EAGAIN; /* replaced between the two opens */
    if (rc < 0 && fd >= 0)
        close(fd);
    return rc < 0 ? rc : fd;
}

SHMRING_API int shmring_inspect(const char *name, shmring_info_t *info)
{
    if (info == NULL || shmring__name_check(name) < 0)
        return -EINVAL;
    memset(info, 0, sizeof *info);
    int dfd = shmring__shm_dir_lookup();
    if (dfd < 0)
        return dfd;
    struct stat st;
    int fd = open_regular(dfd, name, &st);
    close(dfd);
    if (fd < 0)
        return fd;
    int rc = inspect_fd(fd, &st, info);
    close(fd);
    return rc;
}

SHMRING_API int shmring_unlink_inspected(const char *name, const shmring_info_t *info)
{
    if (info == NULL || shmring__name_check(name) < 0)
        return -EINVAL;
    return shmring__seg_unlink_same(name, info->dev, info->ino);
}

/* For the fuzzer: inspect an already open regular file. */
int shmring__inspect_fd(int fd, shmring_info_t *info)
{
    if (info == NULL)
        return -EINVAL;
    memset(info, 0, sizeof *info);
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;
    return inspect_fd(fd, &st, info);
}
