/*
 * shmring state tables: the latest value of each key, shared between
 * processes (or threads), protected by one seqlock per entry.
 *
 * Included by <shmring.h>; do not include this file directly.
 *
 * A state table holds up to `entries` keys (NUL-terminated strings of 1 to
 * SHMRING_STATE_KEY_MAX bytes), each with a value of 0 to `value_size`
 * bytes. Any number of processes and threads may write and read, each
 * through its own handle. Readers never wait for writers and never make a
 * syscall; writers of the same key exclude each other for the few
 * nanoseconds of a copy.
 *
 * Each entry keeps two copies of its value: a writer fills the copy that is
 * not current, then publishes it as current in one store. So:
 *  - a reader always gets a complete value: the one published last when it
 *    started, or a newer one;
 *  - a writer that dies in the middle of a write (SIGKILL at any
 *    instruction) never loses the previous value: readers keep reading it
 *    while the entry is still marked as being written, and the next writer
 *    of that entry, after seeing it stuck for about a millisecond, finds
 *    the recorded writer dead and recovers the entry to its previous value
 *    (counted in shmring_state_stats' `recovered`). The unfinished write is
 *    simply lost, as if it had never started. A new key whose insertion
 *    died halfway does not exist. A writer that waits about 50 ms for a
 *    live writer of the same entry gives up with -EAGAIN (checked on every
 *    pass, so a peer that keeps re-marking an entry cannot hold it longer).
 *    Recoveries are logged at most once per entry per second per process.
 *
 * Liveness of a writer is that of its handle: each handle holds a party
 * entry with an open-file-description lock on the segment's file for as
 * long as it is open, which the kernel drops when the last thread of the
 * process ends. A process whose main thread exited while others run (state
 * Z in /proc) is alive; one that has exited is dead at once, reaped or not.
 * Pids play no part, so processes in different pid namespaces may share a
 * table (without OFD locks, before Linux 3.15, the pid and start time are
 * the fallback: that needs a shared pid namespace and takes a process whose
 * main thread exited for dead). A child of fork()
 * that writes through its parent's handle takes a party entry of its own at
 * its first write.
 *
 * Lookup: open addressing with linear probing over a power-of-two index of
 * 2 * entries entries, so that a table holding its `entries` keys is at most
 * half full and probe sequences stay short (the index costs twice the
 * memory of `entries` entries). Deleting a key leaves a tombstone, reused by
 * the next new key on its probe sequence (or emptied at once when the entry
 * after it is empty). Inserting a new key and deleting one take the table's
 * insert lock (recovered like an entry if its holder dies), so two
 * processes inserting the same new key concurrently never make two entries
 * and the table never holds more than `entries` keys; updates and reads of
 * existing keys never touch it.
 */
#ifndef SHMRING_STATE_H
#define SHMRING_STATE_H

#ifndef SHMRING_H
#error "include <shmring.h>, not <shmring/state.h>"
#endif

#define SHMRING_STATE_KEY_MAX     63u        /* longest key, NUL excluded */
#define SHMRING_STATE_MAX_ENTRIES (1u << 24) /* most entries in one table */
#define SHMRING_STATE_MAX_VALUE   (1u << 24) /* largest value_size */

typedef struct shmring_state shmring_state_t;

/*
 * State table configuration. Initialise it with SHMRING_STATE_CONFIG_INIT,
 * which sets `size` (see "Config structs" in <shmring.h>); later releases
 * append fields after `mode`.
 */
typedef struct shmring_state_config {
    uint32_t size;       /* sizeof(shmring_state_config_t), set by SHMRING_STATE_CONFIG_INIT */
    uint32_t entries;    /* how many keys it can hold: a power of two; 0 = default (1024) */
    uint32_t value_size; /* largest value in bytes; 0 = default (256) */
    uint32_t flags;      /* SHMRING_FORCE_HEAP, SHMRING_FORCE_MEMFD, SHMRING_NO_FALLBACK,
                            SHMRING_ALLOW_INSECURE, SHMRING_OPEN_EXISTING */
    uint32_t mode;       /* permission bits of a named table; 0 = 0600 */
} shmring_state_config_t;

#define SHMRING_STATE_CONFIG_INIT(...)                                                             \
    {                                                                                              \
        .size = sizeof(shmring_state_config_t), __VA_ARGS__                                        \
    }

/*
 * Create a state table. `name` is a POSIX shm name as for shmring_create, or
 * NULL for an anonymous table (memfd, shared through shmring_state_fd()).
 * `cfg` may be NULL for the defaults. Backends and fallback as for
 * shmring_create. All keys start absent.
 *
 * Errors: -EINVAL (NULL out, cfg->size 0 or otherwise not the size of a
 * shmring_state_config_t of any release, bad name, entries not a power of two in
 * [1, SHMRING_STATE_MAX_ENTRIES], value_size above SHMRING_STATE_MAX_VALUE,
 * a table of more than 1 TiB, unknown flag, mode with bits outside 0777 or writable by group/others
 * without SHMRING_ALLOW_INSECURE, SHMRING_OPEN_EXISTING with a NULL name);
 * -E2BIG (cfg->size larger than this library's struct and a field it does
 * not know is not zero, as for shmring_create); -EEXIST (the name exists; with
 * SHMRING_OPEN_EXISTING: it exists with other entries or value_size, or is a ring); -ENOSPC (the
 * shm file system is full); -ENOMEM; -EMFILE/-ENFILE (descriptor limits); any errno of the last
 * backend tried when all fail.
 *
 * With SHMRING_OPEN_EXISTING and a name that exists, the existing table is
 * opened as by shmring_state_open if its entries and value_size equal the
 * requested ones (after defaults); `mode` and the backend flags then play
 * no part, and the errors of shmring_state_open for an existing table
 * (-EACCES, -ELOOP, -EAGAIN, -EPROTO, -EPROTONOSUPPORT, -EUSERS, ...) may
 * be returned too. Two processes doing this at once both succeed, with one
 * table.
 */
SHMRING_API int shmring_state_create(const char *name, const shmring_state_config_t *cfg,
                                     shmring_state_t **out);

/*
 * Open an existing state table by name. `flags`: 0, or SHMRING_LOCAL_ONLY
 * (look only among the tables of this process; SHMRING_FORCE_HEAP is its
 * old spelling) and/or SHMRING_ALLOW_INSECURE. The segment is
 * validated as by shmring_open before its data is touched.
 *
 * Errors: -EINVAL (NULL out, bad name, unknown flag); -ENOENT (no such
 * table); -EACCES (owned by another user or writable by group or others,
 * or no permission, or the shm directory is refused); -ELOOP (a symlink where the segment should
 * be); -EAGAIN (its creator has not finished initialising it within about a second); -EPROTO (not a
 * shmring segment, or a corrupt or truncated header: any size field out of range, or an index that
 * is not exactly 2 * entries); -EPROTONOSUPPORT (another segment layout version, or another
 * state-table layout); -EPROTOTYPE (a ring, not a state table); -EUSERS (SHMRING_MAX_CONSUMERS
 * handles already attached); -ENOSPC (a sparse table whose holes the full file system cannot back);
 * -ENOMEM (also: the memory rule of shmring_create); -EMFILE/-ENFILE.
 * The checks and their order are those of shmring_open.
 */
SHMRING_API int shmring_state_open(const char *name, uint32_t flags, shmring_state_t **out);

/*
 * Open a state table from a file descriptor (inherited across fork() or
 * received over a Unix socket). The descriptor is not consumed. Same flags,
 * validation and errors as shmring_state_open, plus -EBADF for a descriptor
 * that is not open; the descriptor checks of shmring_open_fd (regular file,
 * never upgraded to read-write, a memfd must carry F_SEAL_SHRINK unless
 * SHMRING_ALLOW_INSECURE: -EACCES) apply.
 */
SHMRING_API int shmring_state_open_fd(int fd, uint32_t flags, shmring_state_t **out);

/*
 * Wait until state table `name` exists and is initialised, then open it as
 * shmring_state_open does; the wait is that of shmring_open_wait (inotify
 * on the shm directory; on the heap backend, a shmring_state_create of this
 * process). timeout_ns < 0 waits forever, 0 tries once.
 *
 * Errors: -EINVAL (NULL out, bad name, unknown flag); -ETIMEDOUT; -ENOENT
 * (no shm directory); -EMFILE, -ENOSPC, -ENOMEM (inotify limits or
 * memory); the errors of shmring_state_open for the table that appeared
 * (-EPROTOTYPE for a ring, -EACCES, -EPROTO, -EUSERS, ...).
 */
SHMRING_API int shmring_state_open_wait(const char *name, uint32_t flags, int64_t timeout_ns,
                                        shmring_state_t **out);

/*
 * Close a handle and release its entry in the table's user list. NULL is
 * ignored. The table lives on until unlinked and unmapped by every handle.
 */
SHMRING_API void shmring_state_close(shmring_state_t *s);

/*
 * Remove a state table's name. Handles already open keep working.
 * Errors: -EINVAL (bad name), -ENOENT, -EACCES.
 */
SHMRING_API int shmring_state_unlink(const char *name);

/*
 * Set key to the len bytes at val, inserting the key if it is absent. The
 * value is visible to readers all at once, never in part. Makes no syscall
 * unless it has to wait for another writer of the same entry (or of a new
 * key).
 *
 * Errors: -EINVAL (NULL table or key, empty key, key longer than
 * SHMRING_STATE_KEY_MAX, NULL val with len > 0); -EMSGSIZE (len above the
 * table's value_size); -ENOSPC (the key is absent and the table holds
 * `entries` keys already); -EAGAIN (a live writer held the entry, or the
 * insert lock, for about 50 ms); -EPROTO (a corrupt table); -EUSERS (a
 * child of fork() writing through its parent's handle, and no party entry
 * left for it). On error nothing is changed.
 */
SHMRING_API int shmring_state_write(shmring_state_t *s, const char *key, const void *val,
                                    size_t len);

/*
 * Copy the latest value of key into buf (capacity cap) and return its
 * length (0 to value_size). Never waits for a writer and never makes a
 * syscall; the buffer may be written even when an error is returned.
 *
 * Errors: -EINVAL (NULL table or key, empty or too long key, NULL buf with
 * cap > 0); -ENOENT (no such key); -EMSGSIZE (cap smaller than the value:
 * nothing is consumed, call again with a bigger buffer); -EAGAIN (the entry
 * was rewritten during every one of about 1,000 attempts); -EPROTO (a
 * corrupt entry).
 */
SHMRING_API ssize_t shmring_state_read(shmring_state_t *s, const char *key, void *buf, size_t cap);

/*
 * Like shmring_state_read, and also store the key's version in *version
 * (which may be NULL). The version is a number that changes with every
 * write or delete of the key and never repeats while the key stays in its
 * entry: it grows by 2 with each write of the key (it is 32 bits of write
 * count, wrapping after 2^31 writes of one entry, plus the entry's place in
 * the table in the upper bits; a key deleted and written again may land in
 * another entry, and then its version changes but need not grow). A key
 * that is not there has version 0, and *version is set to 0 with -ENOENT;
 * a present key never has version 0. Pass the version to shmring_state_wait
 * to sleep until the key changes. Same cost as shmring_state_read.
 *
 * Errors: those of shmring_state_read (-EINVAL, -ENOENT, -EMSGSIZE, -EAGAIN,
 * -EPROTO). With -EMSGSIZE, *version is the version of the value that did
 * not fit; with any other error it is left as it was, except -ENOENT (0).
 */
SHMRING_API ssize_t shmring_state_read_version(shmring_state_t *s, const char *key, void *buf,
                                               size_t cap, uint64_t *version);

/*
 * Wait until key's version differs from `version`: the key was written,
 * deleted (its version becomes 0), or appeared (when `version` is 0). Returns
 * at once if it already differs. Read the key again afterwards (with
 * shmring_state_read_version, for the next wait); several writes may have
 * happened meanwhile, and a wake-up never lets a change pass unseen: the
 * waiter announces itself in the table before it checks the version for the
 * last time, and every writer checks for sleepers after publishing. Writers
 * pay no syscall when nobody waits (one fence and one load of a word
 * that no writer stores to until someone sleeps); a write of a key that
 * shares a wait word with a watched key (keys are spread over 16 words by
 * hash) wakes its waiters for a re-check, which costs them a spurious
 * wake-up, never a wrong return. An entry recovered from a dead writer
 * gets a new version too, and wakes every waiter of the table. A sleeping
 * waiter also looks again every SHMRING_DEAD_PEER_NS: a writer killed
 * between publishing and its wake-up call delays the return by at most
 * that much.
 *
 * timeout_ns < 0 waits forever, 0 only checks. Signals do not interrupt the
 * wait (-EINTR is never returned). Works across processes (a futex on a
 * word of the shared table, not FUTEX_PRIVATE) and between threads, on
 * every backend.
 *
 * Returns 0 when the version differs. Errors: -EINVAL (NULL table or key,
 * empty or too long key); -ETIMEDOUT (the version still equals `version`
 * when the time ran out); -ECANCELED (shmring_state_interrupt ended the
 * wait, or was called before it); -EAGAIN (the entry was rewritten during
 * every one of about 1,000 attempts to read its version); -EPROTO (a
 * corrupt table).
 */
SHMRING_API int shmring_state_wait(shmring_state_t *s, const char *key, uint64_t version,
                                   int64_t timeout_ns);

/*
 * End the shmring_state_wait in progress on this handle: it returns
 * -ECANCELED. If none is in progress, the next one (with timeout_ns != 0)
 * returns -ECANCELED at once, even if the version already differs.
 * One-shot, as shmring_interrupt is for rings: the wait that returns
 * -ECANCELED consumes it; a wait that returns anything else leaves it for
 * the next. shmring_state_open_wait is not interrupted by it.
 *
 * Async-signal-safe (atomic operations and a futex wake-up only; errno is
 * left unchanged): a signal handler or another thread may call it while a
 * thread waits on the handle, never during or after shmring_state_close.
 * Waiters of other keys that share the sleeping word see one spurious
 * wake-up. Returns 0. Errors: -EINVAL (NULL).
 */
SHMRING_API int shmring_state_interrupt(shmring_state_t *s);

/*
 * Remove key (under the insert lock); the table has room for one more key.
 * Errors: -EINVAL (NULL table or key, empty or too long key); -ENOENT (no
 * such key); -EAGAIN (a live writer held the entry, or the insert lock, for
 * about 50 ms); -EPROTO (a corrupt table); -EUSERS (as for write).
 */
SHMRING_API int shmring_state_delete(shmring_state_t *s, const char *key);

/*
 * Call fn(key, value length, ctx) for every key present, in table order.
 * A key written or deleted during the walk may or may not be visited; a
 * key present for the whole walk is visited exactly once. `key` points to a
 * copy valid only during the call. fn returns 0 to go on; any other value
 * stops the walk and is returned (return a negative value, so that it
 * cannot be mistaken for a count).
 *
 * Returns the number of keys visited. Errors: -EINVAL (NULL s or fn);
 * -EAGAIN (an entry was rewritten during every one of about 1,000 attempts
 * to read its key).
 */
typedef int (*shmring_state_fn)(const char *key, size_t len, void *ctx);
SHMRING_API int shmring_state_foreach(shmring_state_t *s, shmring_state_fn fn, void *ctx);

/*
 * Recover every entry left mid-write by a dead writer now, instead of
 * waiting for the next writer of each; entries of live writers are left
 * alone. Makes syscalls for entries found being written. Returns how many
 * entries it recovered. Errors: -EINVAL (NULL).
 */
SHMRING_API int shmring_state_repair(shmring_state_t *s);

/* SHMRING_BACKEND_SHM, _MEMFD or _HEAP; -EINVAL for NULL. */
SHMRING_API int shmring_state_backend(const shmring_state_t *s);

/*
 * The descriptor of the table's segment, for passing to another process.
 * Owned by the handle: do not close it. -ENOTSUP on the heap backend,
 * -EINVAL for NULL.
 */
SHMRING_API int shmring_state_fd(const shmring_state_t *s);

/* Entry count and largest value size of the table; 0 for NULL. */
SHMRING_API uint32_t shmring_state_entries(const shmring_state_t *s);
SHMRING_API uint32_t shmring_state_value_size(const shmring_state_t *s);

typedef struct shmring_state_stats {
    uint32_t entries;      /* capacity in keys */
    uint32_t value_size;   /* largest value */
    uint32_t used;         /* keys present now */
    uint32_t tombstones;   /* entries of deleted keys, reusable */
    uint32_t writing;      /* entries being written now (or left so by a dead writer) */
    uint32_t users;        /* live attached handles */
    int backend;           /* SHMRING_BACKEND_* */
    int32_t creator_pid;   /* process that created the table */
    uint64_t created_ns;   /* CLOCK_REALTIME at creation */
    uint64_t writes;       /* successful writes and deletes */
    uint64_t reads;        /* successful reads */
    uint64_t read_retries; /* reads that had to copy an entry again */
    uint64_t eagain;       /* calls that gave up with -EAGAIN */
    uint64_t write_waits;  /* writes that found their entry being written */
    uint64_t recovered;    /* entries recovered from dead writers */
} shmring_state_stats_t;

/*
 * Fill *st. Counters are read without stopping the table: each is exact but
 * they are not a single snapshot; `used`, `tombstones` and `writing` come
 * from a walk over the entries. Errors: -EINVAL (NULL).
 */
SHMRING_API int shmring_state_stats(shmring_state_t *s, shmring_state_stats_t *st);

#endif /* SHMRING_STATE_H */
