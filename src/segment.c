/*
 * Segments: creation, validation, backends and fallback, the registry of
 * process-local named segments, and the party table (liveness of peers).
 */
#define _GNU_SOURCE
#include "segment.h"

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

/* ---- Clocks and processes ---------------------------------------------- */

uint64_t shmring__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t shmring__realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Read a process's state letter and start time (clock ticks since boot)
 * from /proc/PID/stat. Returns 0, or -1 if unknown.
 */
static int proc_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The command name may hold spaces and ')': fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0')
        return -1;
    *state = p[2];
    /* Field 3 (state) follows; starttime is field 22. */
    int field = 2;
    for (p++; *p != '\0' && field < 21; p++)
        if (*p == ' ')
            field++;
    *start = strtoull(p, NULL, 10);
    return 0;
}

uint64_t shmring__proc_start_time(pid_t pid)
{
    char state;
    uint64_t start;
    return proc_stat(pid, &state, &start) == 0 ? start : 0;
}

int shmring__pid_alive(pid_t pid, uint64_t start)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state;
    uint64_t now;
    /* Unknown (no /proc): trust the pid. */
    if (proc_stat(pid, &state, &now) != 0)
        return 1;
    /* A zombie is dead, even if its parent has not reaped it yet. */
    if (state == 'Z' || state == 'X')
        return 0;
    /* A different start time: the pid was reused. */
    return start == 0 || now == start;
}

/* Start time of this process, cached per pid (a fork gets its own). */
static uint64_t self_start_time(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static pid_t cached_pid;
    static uint64_t cached_start;
    pid_t me = getpid();
    pthread_mutex_lock(&lock);
    if (cached_pid != me) {
        cached_start = shmring__proc_start_time(me);
        cached_pid = me;
    }
    uint64_t s = cached_start;
    pthread_mutex_unlock(&lock);
    return s;
}

/* ---- Names and directories --------------------------------------------- */

int shmring__name_check(const char *name)
{
    if (name == NULL || name[0] != '/')
        return -EINVAL;
    size_t len = strnlen(name, SHMRING_NAME_MAX + 1);
    if (len < 2 || len > SHMRING_NAME_MAX)
        return -EINVAL;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c < 0x20 || c == 0x7f)
            return -EINVAL;
    }
    if (strcmp(name, "/.") == 0 || strcmp(name, "/..") == 0)
        return -EINVAL;
    return 0;
}

const char *shmring__shm_dir(void)
{
    /* secure_getenv: a setuid or setcap program does not take it from its caller. */
    const char *d = secure_getenv("SHMRING_SHM_DIR");
    return (d != NULL && d[0] != '\0') ? d : "/dev/shm";
}

static int force_heap_env(void)
{
    const char *v = secure_getenv("SHMRING_FORCE_HEAP");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

int shmring__dir_trusted(const struct stat *st)
{
    if (!S_ISDIR(st->st_mode))
        return -ENOTDIR;
    /* Someone else's directory: they could rename our segments into each other. */
    if (st->st_uid != geteuid() && st->st_uid != 0)
        return -EACCES;
    /* Writable by others: only the sticky bit keeps them from renaming our files. */
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
        return -EACCES;
    return 0;
}

int shmring__shm_dir_lookup(void)
{
    int dfd = shmring__shm_dir_open();
    return dfd == -ENOTDIR ? -ENOENT : dfd;
}

int shmring__shm_dir_open(void)
{
    const char *path = shmring__shm_dir();
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    struct stat st = {0};
    int rc = fstat(dfd, &st) == 0 ? shmring__dir_trusted(&st) : -errno;
    if (rc < 0) {
        shmring__log("%s: shm directory refused: owned by uid %u, mode %04o (must be owned by "
                     "this user or root, and not writable by others without the sticky bit)",
                     path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        close(dfd);
        return rc;
    }
    return dfd;
}

/* ---- Registry of process-local named segments (memfd and heap) --------- */

struct shmring__reg {
    struct shmring__reg *next;
    char name[SHMRING_NAME_MAX + 1];
    int backend;
    int fd;     /* memfd, or -1 */
    void *heap; /* heap memory, or NULL */
    size_t size;
    unsigned refs; /* open handles */
    int linked;    /* still reachable by name */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmring__reg *reg_head;

static struct shmring__reg *reg_find_locked(const char *name)
{
    for (struct shmring__reg *e = reg_head; e != NULL; e = e->next)
        if (e->linked && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void reg_unlink_locked(struct shmring__reg *e)
{
    struct shmring__reg **pp = &reg_head;
    while (*pp != NULL && *pp != e)
        pp = &(*pp)->next;
    if (*pp == e)
        *pp = e->next;
    e->linked = 0;
}

static void reg_put_locked(struct shmring__reg *e)
{
    if (--e->refs > 0 || e->linked)
        return;
    if (e->fd >= 0)
        close(e->fd);
    free(e->heap);
    free(e);
}

/* ---- Descriptors across fork() ----------------------------------------- */

/*
 * A child of fork() shares its parent's open file descriptions, and with
 * them the parent's OFD liveness locks: as long as the child keeps them, a
 * dead parent would look alive. So the child replaces the descriptor of every
 * open segment with a fresh open file description (no locks) under the same
 * number and maps it over the inherited mapping (which also references the
 * description); the inherited description then dies with the parent.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmring__seg *open_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static int reopen_fd(int fd);

static void atfork_prepare(void)
{
    pthread_mutex_lock(&open_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&open_lock);
}

static void atfork_child(void)
{
    for (struct shmring__seg *s = open_head; s != NULL; s = s->next_open) {
        int nfd = reopen_fd(s->fd);
        if (nfd < 0)
            continue;
        /* The mapping holds a reference to the description too: map the
         * fresh one over it (same pages, same address). */
        if (s->base != NULL && s->size > 0)
            mmap(s->base, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, nfd, 0);
        if (nfd != s->fd) {
            dup3(nfd, s->fd, O_CLOEXEC);
            close(nfd);
        }
    }
    pthread_mutex_unlock(&open_lock);
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void track_open(struct shmring__seg *s)
{
    if (s->fd < 0)
        return;
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&open_lock);
    s->next_open = open_head;
    open_head = s;
    pthread_mutex_unlock(&open_lock);
}

static void untrack_open(struct shmring__seg *s)
{
    if (s->fd < 0)
        return;
    pthread_mutex_lock(&open_lock);
    struct shmring__seg **pp = &open_head;
    while (*pp != NULL && *pp != s)
        pp = &(*pp)->next_open;
    if (*pp == s)
        *pp = s->next_open;
    pthread_mutex_unlock(&open_lock);
}

/* ---- Logging ------------------------------------------------------------ */

/* Defined in error.c. */
void shmring__log_line(const char *line);

void shmring__log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    shmring__log_line(line);
}

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

/*
 * A descriptor with its own open file description (own OFD locks), on the
 * same file as fd. The file type is checked before anything is opened (a
 * FIFO or a device could block or act on open), and the access mode is fd's
 * own: a read-only descriptor never becomes a writable one.
 */
static int reopen_fd(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EPROTO;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    int acc = (!(fl & O_PATH) && (fl & O_ACCMODE) == O_RDWR) ? O_RDWR : O_RDONLY;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int nfd = open(path, acc | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (nfd >= 0)
        return nfd;
    if (errno == EMFILE || errno == ENFILE)
        return -errno;
    if (errno == EWOULDBLOCK)
        return -EAGAIN;
    if (fl & O_PATH)
        return -EBADF;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return nfd >= 0 ? nfd : -errno;
}

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

/* 1: someone (other than this descriptor) holds the lock; 0: nobody; <0: error. */
static int ofd_held(int fd, unsigned index)
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
    h->creator_start = self_start_time();
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

/* Make a named memfd or heap segment reachable by name in this process. */
static int registry_add(const char *name, struct shmring__seg *s)
{
    struct shmring__reg *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    e->backend = s->backend;
    e->size = s->size;
    e->refs = 1;
    e->linked = name != NULL;
    e->fd = -1;
    if (s->backend == SHMRING_BACKEND_HEAP) {
        e->heap = s->base;
    } else if (name != NULL) {
        /* Its own open file description: a dup would share the creator's
         * liveness locks with every child that inherits the registry. */
        e->fd = reopen_fd(s->fd);
        if (e->fd < 0) {
            int err = e->fd;
            free(e);
            return err;
        }
    }
    if (name != NULL)
        snprintf(e->name, sizeof e->name, "%s", name);
    pthread_mutex_lock(&reg_lock);
    if (name != NULL && reg_find_locked(name) != NULL) {
        pthread_mutex_unlock(&reg_lock);
        if (e->fd >= 0)
            close(e->fd);
        free(e);
        return -EEXIST;
    }
    if (e->linked) {
        e->next = reg_head;
        reg_head = e;
    }
    pthread_mutex_unlock(&reg_lock);
    s->reg = e;
    return 0;
}

static int name_in_registry(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    int found = reg_find_locked(name) != NULL;
    pthread_mutex_unlock(&reg_lock);
    return found;
}

static int choose_first_backend(uint32_t flags)
{
    if ((flags & SHMRING_FORCE_HEAP) || force_heap_env())
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
    if (name != NULL && name_in_registry(name))
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
        rc = registry_add(name, s);
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
    track_open(s);
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

static int check_owner(const struct stat *st, uint32_t flags)
{
    if (flags & SHMRING_ALLOW_INSECURE)
        return 0;
    if (st->st_uid != geteuid())
        return -EACCES;
    /* Group and others alike, as at creation. */
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return -EACCES;
    return 0;
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
    int rc = check_owner(&st, flags);
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
        rc = check_owner(&st, flags);
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

static int open_registry(const char *name, uint32_t type, shmring__layout_fn layout,
                         struct shmring__seg *s)
{
    pthread_mutex_lock(&reg_lock);
    struct shmring__reg *e = reg_find_locked(name);
    if (e == NULL) {
        pthread_mutex_unlock(&reg_lock);
        return -ENOENT;
    }
    int rc = 0;
    if (e->backend == SHMRING_BACKEND_HEAP) {
        seg_set_view(s, e->heap, e->size);
        s->fd = -1;
        rc = shmring__hdr_check(s->hdr, type, s->size, layout);
        if (rc == 0)
            seg_copy_identity(s);
    } else {
        int fd = reopen_fd(e->fd);
        if (fd < 0) {
            rc = fd;
        } else {
            rc = open_mapped(fd, type, SHMRING_ALLOW_INSECURE, layout, s);
            if (rc < 0)
                close(fd);
        }
    }
    if (rc == 0) {
        e->refs++;
        s->reg = e;
        s->backend = e->backend;
        snprintf(s->name, sizeof s->name, "%s", name);
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
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
            track_open(s);
            *out = s;
        }
        return rc;
    }
    if ((flags & SHMRING_FORCE_HEAP) || force_heap_env()) {
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
    track_open(s);
    *out = s;
    return 0;
}

/* 1 if fd is a memfd (its /proc link reads "/memfd:..."), 0 if not, -1 if unknown. */
static int is_memfd(int fd)
{
    char path[64], target[16];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target);
    if (n < 0)
        return -1;
    return n >= 7 && memcmp(target, "/memfd:", 7) == 0;
}

/*
 * A memfd must be sealed against shrinking: its sender keeps a descriptor
 * and could cut pages from under our mapping (SIGBUS). A file of the shm
 * directory takes no seals (tmpfs reports F_SEAL_SEAL alone); its owner,
 * checked by open_mapped, is us. Without /proc, a file that still accepts
 * seals is taken for a memfd.
 */
static int check_seals(int fd, uint32_t flags)
{
    if (flags & SHMRING_ALLOW_INSECURE)
        return 0;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK))
        return 0;
    int memfd = is_memfd(fd);
    if (memfd == 0 || (memfd < 0 && (seals & F_SEAL_SEAL)))
        return 0;
    return -EACCES;
}

int shmring__seg_open_fd(int fd, uint32_t type, uint32_t flags, shmring__layout_fn layout,
                         struct shmring__seg **out)
{
    if (fd < 0)
        return -EBADF;
    if (fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    int rc = check_seals(fd, flags);
    if (rc < 0)
        return rc;
    int nfd = reopen_fd(fd);
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
    track_open(s);
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
    untrack_open(seg);
    if (seg->backend != SHMRING_BACKEND_HEAP)
        munmap(seg->base, seg->size);
    if (seg->fd >= 0)
        close(seg->fd);
    if (seg->reg != NULL) {
        pthread_mutex_lock(&reg_lock);
        reg_put_locked(seg->reg);
        pthread_mutex_unlock(&reg_lock);
    } else if (seg->backend == SHMRING_BACKEND_HEAP) {
        free(seg->base);
    }
    free(seg);
}

/* Remove the name from the registry; 1 if it was there. */
static int registry_unlink(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    struct shmring__reg *e = reg_find_locked(name);
    if (e != NULL) {
        reg_unlink_locked(e);
        e->refs++; /* reg_put_locked() frees once the last handle is gone */
        reg_put_locked(e);
    }
    pthread_mutex_unlock(&reg_lock);
    return e != NULL;
}

int shmring__seg_unlink(const char *name)
{
    if (shmring__name_check(name) < 0)
        return -EINVAL;
    if (registry_unlink(name))
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
    shmring__store_relaxed_64(&p->start_time, self_start_time());
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
        int held = ofd_held(seg->fd, index);
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
