/*
 * shmring inspection: what a segment in the shm directory is, read without
 * attaching to it, and the small calls a tool that lists and removes
 * segments needs.
 *
 * Included by <shmring.h>; do not include this file directly.
 *
 * shmring_inspect is safe against hostile files by construction: the file
 * is never mapped. Its header is read with pread into a private copy and
 * validated like an open validates it; a hole reads as zeros (nothing is
 * allocated), a truncated file as a short read. Nothing is opened before
 * the name is known to be a regular file (no FIFO, device or symlink is
 * ever opened), and the open is read-only and non-blocking (a lease on the
 * file is not broken). Any file, of any owner, can be inspected: its owner
 * and mode are reported, not refused.
 */
#ifndef SHMRING_INSPECT_H
#define SHMRING_INSPECT_H

/* What a segment is (shmring_info_t.kind). */
#define SHMRING_KIND_RING          1
#define SHMRING_KIND_STATE         2
#define SHMRING_KIND_OTHER_VERSION 3 /* a shmring segment of another layout version */

/* Health bits (shmring_info_t.health): 0 is a healthy segment of ours. */
#define SHMRING_HEALTH_FOREIGN  0x01u /* owned by another user: open refuses it */
#define SHMRING_HEALTH_WRITABLE 0x02u /* writable by group or others: open refuses it */
#define SHMRING_HEALTH_SPARSE                                                                      \
    0x04u                              /* not every page allocated: an open allocates them         \
                                          first, or fails with -ENOSPC or -ENOMEM */
#define SHMRING_HEALTH_NOT_READY 0x08u /* its creator has not finished it (or died doing so) */
#define SHMRING_HEALTH_INDICES   0x10u /* ring indices out of order or more than slots apart */

/* Role of a party of a state table (shmring_party_info_t.role). */
#define SHMRING_USER 0x0008u

/* Entries in the party table of a segment. */
#define SHMRING_INFO_PARTIES 33

/* One attached (or attaching) party. */
typedef struct shmring_party_info {
    uint32_t index; /* its entry: 0 is the producer lease of a ring */
    uint32_t role;  /* SHMRING_PRODUCER, _CONSUMER, _OBSERVER or SHMRING_USER */
    int32_t pid;
    int alive; /* 1 if it still holds its liveness lock, or its process lives */
} shmring_party_info_t;

typedef struct shmring_info {
    int kind;        /* SHMRING_KIND_* */
    uint32_t health; /* SHMRING_HEALTH_* bits */
    /* The file. */
    uint64_t size;
    uint32_t uid;
    uint32_t mode; /* permission bits */
    uint64_t dev, ino;
    /* The object (all 0 for SHMRING_KIND_OTHER_VERSION). */
    uint32_t flags;     /* object flags as created (SHMRING_OVERWRITE, ...) */
    uint64_t capacity;  /* ring: slots; state table: entries */
    uint64_t item_size; /* ring: slot size; state table: value size */
    uint64_t fill;      /* ring: messages in it (at most capacity); state: keys in it */
    int32_t creator_pid;
    int creator_alive;
    uint64_t created_ns;  /* CLOCK_REALTIME at creation */
    int32_t producer_pid; /* ring: holder of the lease; 0 if none is attached */
    int producer_alive;
    int producer_closed; /* ring: the last producer closed (end of stream) */
    uint32_t consumers;  /* live consumer entries */
    uint32_t observers;  /* live observer entries */
    uint32_t users;      /* live users of a state table */
    int any_alive;       /* the creator or some attached party lives */
    uint32_t nparties;   /* entries of party[] in use */
    shmring_party_info_t party[SHMRING_INFO_PARTIES];
} shmring_info_t;

/*
 * Describe segment `name` of the shm directory without attaching to it.
 * Every field read from the segment is a copy taken at one moment; peers
 * may have changed it since.
 * Errors: -EINVAL (NULL info, bad name); -ENOENT (no such name, or no shm
 * directory); -EACCES (the shm directory is refused: see shmring_shm_dir;
 * or the file cannot be read); -ELOOP (a symlink); -EPROTO (not a regular
 * file, or not a shmring segment: bad magic, corrupt header, or a size that
 * does not match its header); -EAGAIN (a lease holder refuses the open);
 * -EMFILE/-ENFILE; -ENOMEM.
 */
SHMRING_API int shmring_inspect(const char *name, shmring_info_t *info);

/*
 * Remove segment `name` only if it is still the very file that
 * shmring_inspect described in *info (same device and inode), relative to
 * one descriptor of the shm directory: a name replaced since is left alone.
 * (Only the file's owner or root can replace a name between this check and
 * the unlink, since the shm directory is refused unless it is ours or
 * root's and sticky when others may write it.)
 * Errors: -EINVAL (NULL, bad name); -ENOENT; -ESTALE (the name now holds
 * another file); -EACCES (the shm directory is refused); -EPERM or -EACCES
 * (a file of another user in a sticky directory, or no write permission on
 * the directory).
 */
SHMRING_API int shmring_unlink_inspected(const char *name, const shmring_info_t *info);

/*
 * The shm directory of named segments: $SHMRING_SHM_DIR when set and not
 * empty (read with secure_getenv: a setuid or setcap program ignores it),
 * else "/dev/shm". Never NULL.
 *
 * The library opens it once per operation and does every step relative to
 * that descriptor. It refuses (-EACCES) a directory that is not owned by
 * the caller's effective uid or root, or that group or others may write
 * without the sticky bit: its owner, or those writers, could swap the
 * caller's segments by renaming them.
 */
SHMRING_API const char *shmring_shm_dir(void);

/*
 * 0 if `name` is a valid segment name ("/x": one leading '/', no other '/',
 * no control characters, not "/." or "/..", 2..SHMRING_NAME_MAX bytes);
 * -EINVAL otherwise (NULL included).
 */
SHMRING_API int shmring_name_check(const char *name);

#endif /* SHMRING_INSPECT_H */
