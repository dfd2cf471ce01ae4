/* Reading segment headers in the shm directory without attaching, for ls, gc and rm. */
#define _GNU_SOURCE
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "ring.h"
#include "state.h"

const char *cli_seg_type_name(enum cli_seg_type type)
{
    switch (type) {
    case CLI_SEG_RING:
        return "ring";
    case CLI_SEG_STATE:
        return "state";
    default:
        return "unknown-version";
    }
}

/* 1: another open file description holds the byte's lock; 0: none; <0: error. */
static int ofd_lock_held(int fd, unsigned index)
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

/* Liveness of an ACTIVE or TAKING party: its OFD lock if it holds one, else its pid. */
static int party_alive(int fd, const struct shmring__party *p, unsigned index)
{
    uint32_t state = SHMRING__OWNER_STATE(p->owner);
    if (state == SHMRING__PARTY_ACTIVE && (p->role & SHMRING__ROLE_LOCKED)) {
        int held = ofd_lock_held(fd, index);
        if (held >= 0)
            return held;
    }
    return shmring__pid_alive(SHMRING__OWNER_PID(p->owner), p->start_time);
}

static void count_party(struct cli_seg *s, const struct shmring__party *p, int alive)
{
    if (!alive)
        return;
    s->any_alive = 1;
    uint32_t role = p->role & ~SHMRING__ROLE_LOCKED;
    if (role & SHMRING__ROLE_CONSUMER)
        s->consumers++;
    else if (role & SHMRING__ROLE_OBSERVER)
        s->observers++;
    else if (role & SHMRING__ROLE_USER)
        s->users++;
}

/* The party table of a validated header (a private copy: peers cannot change it). */
static void read_parties(int fd, const struct shmring__hdr *h, struct cli_seg *s)
{
    for (unsigned i = 0; i < SHMRING__PARTIES; i++) {
        const struct shmring__party *p = &h->party[i];
        uint32_t state = SHMRING__OWNER_STATE(p->owner);
        if (i == 0 && state == SHMRING__PARTY_CLOSED)
            s->producer_closed = 1;
        if (state != SHMRING__PARTY_ACTIVE && state != SHMRING__PARTY_TAKING)
            continue;
        s->parties++;
        int alive = party_alive(fd, p, i);
        if (i == 0 && (p->role & SHMRING__ROLE_PRODUCER)) {
            s->producer_pid = SHMRING__OWNER_PID(p->owner);
            s->producer_alive = alive;
            s->any_alive |= alive;
        } else {
            count_party(s, p, alive);
        }
    }
}

static void read_ring(const struct shmring__hdr *h, struct cli_seg *s)
{
    struct shmring__ring_shared sh;
    memcpy(&sh, h->object, sizeof sh);
    /* Peer-written indices: clamp the difference to [0, slots]. */
    uint64_t n = sh.write_index > sh.read_index ? sh.write_index - sh.read_index : 0;
    s->capacity = h->param[0];
    s->item_size = h->param[1];
    s->fill = n < s->capacity ? n : s->capacity;
}

/* Used entries of a state table whose header passed shmring__hdr_check. */
static void read_state_entries(int fd, const struct shmring__hdr *h, struct cli_seg *s)
{
    s->capacity = h->param[0];
    s->item_size = h->param[1];
    /* The validated size covers every entry: HEADER_SIZE + index slots * stride. */
    unsigned char *base = mmap(NULL, (size_t)s->size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return;
    const unsigned char *data = base + SHMRING__HEADER_SIZE;
    for (uint64_t i = 0; i < h->param[3]; i++) {
        const struct shmring__state_entry *e = (const void *)(data + (size_t)i * h->param[2]);
        /* Relaxed: a statistic, read without attaching. */
        uint64_t w = shmring__load_relaxed_64(&e->lock.seq);
        s->fill += SHMRING__SEQ_STATE(w) == SHMRING__STATE_LIVE;
    }
    munmap(base, (size_t)s->size);
}

/* Classify a header; 0 if it is not a shmring segment. */
static int classify(const struct shmring__hdr *h, uint64_t size, struct cli_seg *s)
{
    if (h->magic != SHMRING__MAGIC)
        return 0;
    int rc = shmring__hdr_check(h, SHMRING__TYPE_RING, size, shmring__ring_layout);
    if (rc == 0) {
        s->type = CLI_SEG_RING;
        read_ring(h, s);
        return 1;
    }
    if (shmring__hdr_check(h, SHMRING__TYPE_STATE, size, shmring__state_layout) == 0) {
        s->type = CLI_SEG_STATE;
        return 1;
    }
    if (rc == -EPROTONOSUPPORT) {
        s->type = CLI_SEG_UNKNOWN_VERSION;
        return 1;
    }
    return 0;
}

static int read_fd(int fd, const char *name, struct cli_seg *s)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    if (st.st_size < (off_t)SHMRING__HEADER_SIZE || (uint64_t)st.st_size > SHMRING__MAX_TOTAL)
        return 0;
    struct shmring__hdr h;
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        return 0;
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->size = (uint64_t)st.st_size;
    s->uid = st.st_uid;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    if (!classify(&h, s->size, s))
        return 0;
    if (s->type == CLI_SEG_UNKNOWN_VERSION)
        return 1; /* the rest of its header may be laid out differently */
    s->creator_pid = h.creator_pid;
    s->creator_alive = shmring__pid_alive(h.creator_pid, h.creator_start);
    s->any_alive = s->creator_alive;
    read_parties(fd, &h, s);
    if (s->type == CLI_SEG_STATE)
        read_state_entries(fd, &h, s);
    return 1;
}

static int read_at(int dfd, const char *name, struct cli_seg *s)
{
    int fd = openat(dfd, name + 1, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : 0;
    int rc = read_fd(fd, name, s);
    close(fd);
    return rc;
}

static int open_dir(void)
{
    int dfd = open(shmring__shm_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return dfd >= 0 ? dfd : -errno;
}

int cli_seg_read(const char *name, struct cli_seg *out)
{
    int dfd = open_dir();
    if (dfd < 0)
        return dfd;
    int rc = read_at(dfd, name, out);
    close(dfd);
    return rc;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int scan_entry(int dfd, const char *file, cli_seg_fn fn, void *ctx)
{
    char name[SHMRING_NAME_MAX + 1];
    int n = snprintf(name, sizeof name, "/%s", file);
    if (n < 0 || n > SHMRING_NAME_MAX || shmring__name_check(name) < 0)
        return 0;
    struct cli_seg s;
    if (read_at(dfd, name, &s) <= 0)
        return 0;
    return fn(&s, ctx);
}

int cli_scan(cli_seg_fn fn, void *ctx)
{
    int dfd = open_dir();
    if (dfd < 0)
        return dfd;
    struct dirent **list = NULL;
    int n = scandirat(dfd, ".", &list, NULL, by_name);
    if (n < 0) {
        int err = -errno;
        close(dfd);
        return err;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0)
            rc = scan_entry(dfd, list[i]->d_name, fn, ctx);
        free(list[i]);
    }
    free(list);
    close(dfd);
    return rc;
}
