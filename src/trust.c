/*
 * What shmring accepts from the machine, in one place: segment names, the
 * shm directory (taken from a trusted environment only, opened once,
 * owned by us or root, not writable by others without the sticky bit), the
 * owner and mode of a segment file, the seals of a memfd handed in, and how
 * a descriptor is reopened (file type checked first, access never widened).
 */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int shmring__force_heap_env(void)
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

/* ---- Segment files and descriptors ------------------------------------ */

int shmring__check_owner(const struct stat *st, uint32_t flags)
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
 * A descriptor with its own open file description (own OFD locks), on the
 * same file as fd. The file type is checked before anything is opened (a
 * FIFO or a device could block or act on open), and the access mode is fd's
 * own: a read-only descriptor never becomes a writable one.
 */
int shmring__reopen_fd(int fd)
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
int shmring__check_seals(int fd, uint32_t flags)
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
