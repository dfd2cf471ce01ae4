/*
 * Segments: creation with its backends and fallback, validation, opening,
 * closing and unlinking. The rest of what segment.h declares lives in
 * trust.c (what is accepted from the machine), registry.c (process-local
 * names), forkfix.c (descriptors across fork), party.c (the party table)
 * and proc.c (clocks, processes, logging).
 */
#define _GNU_SOURCE
#include "segment.h"
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "fault.h"

/* ---- Header validation -------------------------------------------------- */

int shmring__hdr_check(const struct shmring__hdr *h, uint32_t type, size_t size,
                       shmring__layout_fn layout)
{
    /* Peer-written: every field is checked before anything depends on it. */
    if (h->magic != SHMRING__MAGIC)
        return -EPROTO;
    if (h->layout != SHMRING__LAYOUT)
        return -EPROTONOSUPPORT;
    if (h->header_size != SHMRING__HEADER_SIZE)
        return -EPROTO;
    if (h->type != type)
        return (h->type == SHMRING__TYPE_RING || h->type == SHMRING__TYPE_STATE) ? -EPROTOTYPE
                                                                                 : -EPROTO;
    uint64_t total = 0;
    int rc = layout(h->param, h->flags, &total);
    if (rc < 0)
        return -EPROTO;
    if (h->total_size != total || total != size)
        return -EPROTO;
    return 0;
}

/* ---- Mapping helpers ---------------------------------------------------- */

static int map_fd(int fd, size_t size, unsigned char **out)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *out = p;
    return 0;
}

static struct shmring__seg *seg_new(void)
{
    struct shmring__seg *s = calloc(1, sizeof *s);
    if (s != NULL)
        s->fd = -1;
    return s;
}

static void seg_set_view(struct shmring__seg *s, unsigned char *base, size_t size)
{
    s->base = base;
    s->hdr = (struct shmring__hdr *)(void *)base;
    s->size = size;
}

static void seg_copy_identity(struct shmring__seg *s)
{
    s->type = s->hdr->type;
    s->flags = s->hdr->flags;
    memcpy(s->param, s->hdr->param, sizeof s->param);
}

static void hdr_fill(struct shmring__hdr *h, uint32_t type, uint32_t object_flags, uint64_t total,
                     const uint32_t param[4])
{
    h->magic = SHMRING__MAGIC;
    h->type = type;
    h->layout = SHMRING__LAYOUT;
    h->header_size = SHMRING__HEADER_SIZE;
    h->flags = object_flags;
    h->total_size = total;
    memcpy(h->param, param, sizeof h->param);
    h->creator_pid = (int32_t)getpid();
    h->creator_start = shmring__self_start_time();
    h->created_ns = shmring__realtime_ns();
}

void shmring__seg_publish(struct shmring__seg *seg)
{
    /* Release: publishes the header; openers read ready, then the header again,
     * with pread (read_ready_header()). */
    shmring__store_release_32(&seg->hdr->ready, SHMRING__READY);
}

/* ---- Creation ----------------------------------------------------------- */

static int is_unavailable(int err)
{
    switch (err) {
    case ENOENT:
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOTDIR:
    case ENOSYS:
    case EOPNOTSUPP:
    case ENODEV:
        return 1;
    default:
        return 0;
    }
}

static int create_shm(const char *name, uint32_t mode, size_t total, struct shmring__seg *s)
{
    int dfd = shmring__shm_dir_open();
    if (dfd < 0)
        return dfd;
    int fd = openat(dfd, name + 1, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int err = errno;
    if (fd < 0) {
        close(dfd);
        return -err;
    }
    int rc = 0;
    /* The exact mode asked for, whatever the umask. */
    if (fchmod(fd, mode) != 0)
        rc = -errno;
    /* Reserve every page now: a full tmpfs fails here, not with SIGBUS later. */
    if (rc == 0 && ftruncate(fd, (off_t)total) != 0)
        rc = -errno;
    if (rc == 0) {
        int e = posix_fallocate(fd, 0, (off_t)total);
        if (e != 0 && e != EOPNOTSUPP && e != EINVAL)
            rc = -e;
    }
    unsigned char *base = NULL;
    if (rc == 0)
        rc = map_fd(fd, total, &base);
    if (rc < 0) {
        unlinkat(dfd, name + 1, 0);
        close(dfd);
        close(fd);
        return rc;
    }
    close(dfd);
    s->fd = fd;
    s->backend = SHMRING_BACKEND_SHM;
    seg_set_view(s, base, total);
    return 0;
}

static int create_memfd(const char *name, uint32_t mode, size_t total, struct shmring__seg *s)
{
    char label[SHMRING_NAME_MAX + 16];
    snprintf(label, sizeof label, "shmring:%s", name != NULL ? name + 1 : "anon");
    int fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create(label, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    /* memfd_create makes the file 0777: give it the mode asked for, so that
     * shmring_open_fd() accepts it like a named segment. */
    if (fchmod(fd, mode) != 0)
        rc = -errno;
    if (rc == 0 && ftruncate(fd, (off_t)total) != 0)
        rc = -errno;
    if (rc == 0) {
        int e = posix_fallocate(fd, 0, (off_t)total);
        if (e != 0 && e != EOPNOTSUPP && e != EINVAL)
            rc = -e;
    }
    /* Sealed at its size: whoever gets the descriptor cannot shrink it
     * under the mappings of others (SIGBUS) nor grow it. */
    if (rc == 0)
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    unsigned char *base = NULL;
    if (rc == 0)
        rc = map_fd(fd, total, &base);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    s->fd = fd;
    s->backend = SHMRING_BACKEND_MEMFD;
    seg_set_view(s, base, total);
    return 0;
}

static int create_heap(size_t total, struct shmring__seg *s)
{
    void *p = NULL;
    if (posix_memalign(&p, SHMRING__HEADER_SIZE, total) != 0)
        return -ENOMEM;
    memset(p, 0, total);
    s->fd = -1;
    s->backend = SHMRING_BACKEND_HEAP;
    seg_set_view(s, p, total);
    return 0;
}

static int choose_first_backend(uint32_t flags)
{
    if ((flags & SHMRING_FORCE_HEAP) || shmring__force_heap_env())
        return SHMRING_BACKEND_HEAP;
    if (flags & SHMRING_FORCE_MEMFD)
        return SHMRING_BACKEND_MEMFD;
    return SHMRING_BACKEND_SHM;
}

static int create_backends(const char *name, uint32_t flags, uint32_t mode, size_t total,
                           struct shmring__seg *s)
{
    int backend = choose_first_backend(flags);
    int rc = -ENOSYS;
    if (backend == SHMRING_BACKEND_SHM && name == NULL)
        backend = SHMRING_BACKEND_MEMFD;
    if (backend == SHMRING_BACKEND_SHM) {
        rc = create_shm(name, mode, total, s);
        if (rc == 0 || !is_unavailable(-rc) || (flags & SHMRING_NO_FALLBACK))
            return rc;
        shmring__log("%s: %s not usable (%s): falling back to memfd, visible only in this "
                     "process and its children",
                     name, shmring__shm_dir(), strerror(-rc));
        backend = SHMRING_BACKEND_MEMFD;
    }
    if (backend == SHMRING_BACKEND_MEMFD) {
        rc = create_memfd(name, mode, total, s);
        if (rc == 0 || !is_unavailable(-rc) || (flags & SHMRING_NO_FALLBACK))
            return rc;
        shmring__log("%s: memfd_create failed (%s): falling back to heap memory, shared only "
                     "between threads of this process",
                     name != NULL ? name : "(anonymous)", strerror(-rc));
    }
    return create_heap(total, s);
}

int shmring__seg_create(const char *name, uint32_t type, uint32_t flags, uint32_t object_flags,
                        uint32_t mode, const uint32_t param[4], shmring__layout_fn layout,
                        struct shmring__seg **out)
{
    if (name != NULL && shmring__name_check(name) < 0)
        return -EINVAL;
    uint64_t total = 0;
    int rc = layout(param, object_flags, &total);
    if (rc < 0)
        return rc;
    if (name != NULL && shmring__reg_contains(name))
        return -EEXIST;
    /* Refused before any page is backed: an OOM kill is no error code. */
    rc = shmring__mem_check(total);
    if (rc < 0)
        return rc;
    struct shmring__seg *s = seg_new();
    if (s == NULL)
        return -ENOMEM;
    rc = create_backends(name, flags, mode, (size_t)total, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    hdr_fill(s->hdr, type, object_flags, total, param);
    seg_copy_identity(s);
    s->locks = s->fd >= 0;
    if (name != NULL)
        snprintf(s->name, sizeof s->name, "%s", name);
    if (s->backend != SHMRING_BACKEND_SHM) {
        rc = shmring__reg_add(name, s);
        if (rc < 0) {
            if (s->backend == SHMRING_BACKEND_HEAP)
                free(s->base);
            else
                munmap(s->base, s->size);
            if (s->fd >= 0)
                close(s->fd);
            free(s);
            return rc;
        }
    }
    shmring__seg_track(s);
    *out = s;
    return 0;
}

/* ---- Opening ------------------------------------------------------------ */

/*
 * Read the header into a private copy once its creator has finished it
 * (waiting at most about a second). pread, not a mapping: a hole reads as
 * zeros and a truncated file as a short read, so a hostile or sparse file
 * cannot fault us here.
 */
static int read_ready_header(int fd, struct shmring__hdr *copy)
{
    for (int i = 0; i < 1000; i++) {
        if (pread(fd, copy, sizeof *copy, 0) != (ssize_t)sizeof *copy)
            return -EPROTO;
        /* A creator writes the magic before it sets ready: anything else than 0
         * (not written yet) or the magic is not a segment, and fails at once. */
        if (copy->magic != 0 && copy->magic != SHMRING__MAGIC)
            return -EPROTO;
        if (copy->ready == SHMRING__READY) {
            /* ready is stored last (release in shmring__seg_publish()), but one
             * pread may have copied the identity line before it: read again. */
            return pread(fd, copy, sizeof *copy, 0) == (ssize_t)sizeof *copy ? 0 : -EPROTO;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return -EAGAIN;
}

/*
 * Give every page of a validated segment its memory now, so that no later
 * access meets a hole that a full file system cannot fill (SIGBUS). A fully
 * allocated file costs one fstat; otherwise -ENOMEM when the process could
 * not hold it (shmring__mem_check), -ENOSPC when the file system is full.
 */
static int back_fully(int fd, const struct stat *st)
{
    uint64_t allocated = (uint64_t)st->st_blocks * 512u;
    if (allocated >= (uint64_t)st->st_size)
        return 0;
    int rc = shmring__mem_check((uint64_t)st->st_size - allocated);
    if (rc < 0)
        return rc;
    int e = posix_fallocate(fd, 0, st->st_size);
    return e == 0 ? 0 : -e;
}

/*
 * A creator makes its named file (O_EXCL, size 0) before it sizes it: an
 * empty file found by name is a segment not initialised yet, waited for like
 * one whose header is not ready (at most about a second, then -EAGAIN). Any
 * other size is judged as it is.
 */
static int wait_sized(int fd)
{
    struct stat st;
    for (int i = 0;; i++) {
        if (fstat(fd, &st) != 0)
            return -errno;
        if (st.st_size != 0)
            return 0;
        if (i == 1000)
            return -EAGAIN;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Validate and map the segment behind fd (which the segment then owns). */
static int open_mapped(int fd, uint32_t type, uint32_t flags, shmring__layout_fn layout,
                       struct shmring__seg *s)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;
    int rc = shmring__check_owner(&st, flags);
    if (rc < 0)
        return rc;
    if (st.st_size < (off_t)SHMRING__HEADER_SIZE || (uint64_t)st.st_size > SHMRING__MAX_TOTAL)
        return -EPROTO;
    struct shmring__hdr copy;
    rc = read_ready_header(fd, &copy);
    if (rc == 0)
        rc = shmring__hdr_check(&copy, type, (size_t)st.st_size, layout);
    if (rc == 0)
        rc = back_fully(fd, &st);
    if (rc < 0)
        return rc;
    unsigned char *base = NULL;
    rc = map_fd(fd, (size_t)st.st_size, &base);
    if (rc < 0)
        return rc;
    seg_set_view(s, base, (size_t)st.st_size);
    /* Identity copied from the mapping must match what was validated. */
    memcpy(&copy, s->hdr, sizeof copy);
    rc = shmring__hdr_check(&copy, type, s->size, layout);
    if (rc < 0) {
        munmap(base, s->size);
        return rc;
    }
    s->type = copy.type;
    s->flags = copy.flags;
    memcpy(s->param, copy.param, sizeof s->param);
    s->fd = fd;
    s->locks = 1;
    return 0;
}

/*
 * Open segment `name` in the shm directory dfd for reading and writing.
 * Nothing that can block or act is opened before the file is known to be a
 * regular file of ours: first an O_PATH descriptor (no open of the file
 * itself: no lease break, no FIFO wait, no device open), its owner and mode
 * checked, then the same file reopened through it, non-blocking.
 */
static int open_named(int dfd, const char *name, uint32_t flags)
{
    int pfd = openat(dfd, name + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(pfd, &st) == 0 ? 0 : -errno;
    if (rc == 0 && S_ISLNK(st.st_mode))
        rc = -ELOOP;
    else if (rc == 0 && !S_ISREG(st.st_mode))
        rc = -EPROTO;
    if (rc == 0)
        rc = shmring__check_owner(&st, flags);
    int fd = -1;
    if (rc == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", pfd);
        fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) /* no /proc: by name, checked below */
            fd = openat(dfd, name + 1, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            rc = errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    close(pfd);
    struct stat now;
    if (rc == 0 && (fstat(fd, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino))
        rc = -EAGAIN; /* replaced between the two opens */
    if (rc < 0 && fd >= 0)
        close(fd);
    return rc < 0 ? rc : fd;
}

/* 0 once a heap segment's creator has published it (acquire: pairs with the
 * release in shmring__seg_publish), -EAGAIN after about a second. */
static int heap_ready(const struct shmring__hdr *h)
{
    for (int i = 0; i < 1000; i++) {
        /* Acquire: pairs with the release in shmring__seg_publish(). */
        if (shmring__load_acquire_32(&h->ready) == SHMRING__READY)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return -EAGAIN;
}

/* A name of the registry: its heap memory, or its memfd reopened. */
static int open_registry(const char *name, uint32_t type, shmring__layout_fn layout,
                         struct shmring__seg *s)
{
    struct shmring__reg *e = shmring__reg_get(name);
    if (e == NULL)
        return -ENOENT;
    int rc = 0;
    if (e->backend == SHMRING_BACKEND_HEAP) {
        seg_set_view(s, e->heap, e->size);
        s->fd = -1;
        /* Registered when created, before its creator initialised it: wait
         * for ready as an open by name does (at most about a second). */
        rc = heap_ready(s->hdr);
        if (rc == 0)
            rc = shmring__hdr_check(s->hdr, type, s->size, layout);
        if (rc == 0)
            seg_copy_identity(s);
    } else {
        int fd = shmring__reopen_fd(e->fd);
        if (fd < 0) {
            rc = fd;
        } else {
            rc = open_mapped(fd, type, SHMRING_ALLOW_INSECURE, layout, s);
            if (rc < 0)
                close(fd);
        }
    }
    if (rc < 0) {
        shmring__reg_put(e);
        return rc;
    }
    s->reg = e;
    s->backend = e->backend;
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

int shmring__seg_open(const char *name, uint32_t type, uint32_t flags, shmring__layout_fn layout,
                      struct shmring__seg **out)
{
    if (shmring__name_check(name) < 0)
        return -EINVAL;
    struct shmring__seg *s = seg_new();
    if (s == NULL)
        return -ENOMEM;
    int rc = open_registry(name, type, layout, s);
    if (rc != -ENOENT) {
        if (rc < 0) {
            free(s);
        } else {
            shmring__seg_track(s);
            *out = s;
        }
        return rc;
    }
    if ((flags & SHMRING__OPEN_LOCAL) || shmring__force_heap_env()) {
        free(s);
        return -ENOENT;
    }
    int dfd = shmring__shm_dir_lookup();
    if (dfd < 0) {
        free(s);
        return dfd;
    }
    int fd = open_named(dfd, name, flags);
    rc = fd < 0 ? fd : 0;
    close(dfd);
    if (rc == 0)
        rc = wait_sized(fd);
    if (rc == 0) {
        rc = open_mapped(fd, type, flags, layout, s);
        if (rc < 0)
            close(fd);
    }
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->backend = SHMRING_BACKEND_SHM;
    snprintf(s->name, sizeof s->name, "%s", name);
    shmring__seg_track(s);
    *out = s;
    return 0;
}

int shmring__seg_open_fd(int fd, uint32_t type, uint32_t flags, shmring__layout_fn layout,
                         struct shmring__seg **out)
{
    if (fd < 0)
        return -EBADF;
    if (fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    int rc = shmring__check_seals(fd, flags);
    if (rc < 0)
        return rc;
    int nfd = shmring__reopen_fd(fd);
    if (nfd < 0)
        return nfd;
    struct shmring__seg *s = seg_new();
    if (s == NULL) {
        close(nfd);
        return -ENOMEM;
    }
    rc = open_mapped(nfd, type, flags, layout, s);
    if (rc < 0) {
        close(nfd);
        free(s);
        return rc;
    }
    /* A memfd has no name in the shm directory; a shm file has. */
    char path[64], target[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", nfd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    s->backend = SHMRING_BACKEND_SHM;
    if (n > 0) {
        target[n] = '\0';
        if (strncmp(target, "/memfd:", 7) == 0)
            s->backend = SHMRING_BACKEND_MEMFD;
    }
    shmring__seg_track(s);
    *out = s;
    return 0;
}

int shmring__seg_attach_image(void *image, size_t size, uint32_t type, shmring__layout_fn layout,
                              struct shmring__seg **out)
{
    if (image == NULL || size < SHMRING__HEADER_SIZE)
        return -EPROTO;
    struct shmring__hdr copy;
    memcpy(&copy, image, sizeof copy);
    if (copy.ready != SHMRING__READY)
        return -EAGAIN;
    int rc = shmring__hdr_check(&copy, type, size, layout);
    if (rc < 0)
        return rc;
    struct shmring__seg *s = seg_new();
    if (s == NULL)
        return -ENOMEM;
    seg_set_view(s, image, size);
    s->type = copy.type;
    s->flags = copy.flags;
    memcpy(s->param, copy.param, sizeof s->param);
    s->backend = SHMRING_BACKEND_HEAP;
    s->fd = -1;
    s->reg = NULL;
    s->name[0] = '\0';
    /* Marks an image the caller owns: close must not free it. */
    s->locks = -1;
    *out = s;
    return 0;
}

void shmring__seg_close(struct shmring__seg *seg)
{
    if (seg == NULL)
        return;
    if (seg->locks == -1) {
        free(seg);
        return;
    }
    shmring__seg_untrack(seg);
    if (seg->backend != SHMRING_BACKEND_HEAP)
        munmap(seg->base, seg->size);
    if (seg->fd >= 0)
        close(seg->fd);
    if (seg->reg != NULL) {
        shmring__reg_put(seg->reg);
    } else if (seg->backend == SHMRING_BACKEND_HEAP) {
        free(seg->base);
    }
    free(seg);
}

int shmring__seg_unlink(const char *name)
{
    if (shmring__name_check(name) < 0)
        return -EINVAL;
    if (shmring__reg_unlink(name))
        return 0;
    int dfd = shmring__shm_dir_lookup();
    if (dfd < 0)
        return dfd;
    int rc = unlinkat(dfd, name + 1, 0) == 0 ? 0 : -errno;
    close(dfd);
    return rc;
}

int shmring__seg_unlink_same(const char *name, uint64_t dev, uint64_t ino)
{
    if (shmring__name_check(name) < 0)
        return -EINVAL;
    int dfd = shmring__shm_dir_lookup();
    if (dfd < 0)
        return dfd;
    /* The directory is ours or root's and sticky if others may write it:
     * only the file's owner can swap the name between this check and the
     * unlink, both relative to the one directory descriptor. */
    struct stat st;
    int rc = fstatat(dfd, name + 1, &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
    if (rc == 0 && ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino))
        rc = -ESTALE;
    if (rc == 0 && unlinkat(dfd, name + 1, 0) != 0)
        rc = -errno;
    close(dfd);
    return rc;
}
