/*
 * shmring: lock-free single-producer / multi-consumer rings and shared state
 * in shared memory, with automatic fallback to heap memory.
 *
 * Conventions for every function in this header:
 *  - a function returning int or ssize_t returns 0 (or a non-negative count)
 *    on success and a negative errno value on failure;
 *  - a failed call changes nothing, unless its comment says otherwise;
 *  - any call that reads a ring or table may also return -EPROTO when it
 *    finds the shared segment corrupt (written by a buggy or hostile peer);
 *  - a handle (shmring_t) is used by one thread at a time; another thread or
 *    process opens its own handle.
 *
 * Getters and NULL. Every getter (a function that only reports a property
 * of a handle: shmring_backend, shmring_fd, shmring_slots,
 * shmring_slot_size, shmring_missed, shmring_state_backend,
 * shmring_state_fd, shmring_state_entries, shmring_state_value_size,
 * shmring_pool_workers, shmring_pool_mode, shmring_pool_last_error_item,
 * shmring_pool_restarts, shmring_max_message, shmring_msg_pos, and any
 * added later) takes a NULL handle (or message) and never crashes on it:
 * one that returns int returns -EINVAL, as every int function does; one
 * that returns an unsigned type, which cannot carry an error, returns its
 * "none" value: 0 for a count or a size (no handle has 0 slots, slot size,
 * entries or value size), SIZE_MAX for an index and UINT64_MAX for a
 * position (shmring_msg_pos).
 *
 * Config structs (shmring_config_t, shmring_state_config_t,
 * shmring_pool_config_t) can grow: each starts with `uint32_t size`, set to
 * sizeof the struct the program was compiled with; initialise them with
 * SHMRING_CONFIG_INIT, SHMRING_STATE_CONFIG_INIT and SHMRING_POOL_CONFIG_INIT
 * (the fields not named are 0, their default). Later releases only append
 * fields. The library reads only the fields within the caller's size and
 * takes the others as 0 (their default), so a program built against an
 * older release keeps working; a size larger than the library knows is
 * accepted when the unknown bytes are all zero, and refused with -E2BIG
 * otherwise (a program built against a newer release asks for something
 * this library cannot do). A size of 0 (a struct not set up with the
 * macro), one that ends inside a field, or one above 4096 is -EINVAL. A
 * NULL config means all defaults. docs/abi.md says how versions and the
 * SONAME move.
 *
 * Ordering (what a program may rely on; docs/design.md proves it):
 *  - A push, batch push or commit happens-before the pop, batch pop or
 *    claim that returns the message: after that call the consumer sees the
 *    payload and everything the producer wrote (to any memory) before the
 *    push. The same holds across processes and on every backend.
 *  - Each message goes to exactly one consumer (observers take none).
 *    Positions only grow (also across producers taking the lease over), so
 *    a consumer gets its messages in push order; with several consumers
 *    each one's messages are in push order, but which consumer gets which,
 *    and the order in which they are handled, is not defined. A batch pop
 *    takes consecutive messages. A batch push publishes its messages one
 *    by one, in order: consumers may take the first ones before the last
 *    are written. On a SHMRING_REDELIVER ring, a message claimed by a
 *    consumer that died before releasing it is delivered again, before
 *    newer ones and so out of push order (shmring_msg_pos tells).
 *  - Claims may be released in any order. A release (and a copy pop)
 *    happens-before the producer's reuse of that slot: except in overwrite
 *    mode, the producer rewrites a slot only after the pop that took its
 *    message has finished copying it, or its claim was released.
 *  - Overwrite mode: the producer drops the oldest unclaimed messages when
 *    the ring is full; what a consumer gets is still in push order, with
 *    gaps (shmring_missed). A claim it overwrote is reported by
 *    shmring_release (-ESTALE); a copy pop never returns a torn message.
 *  - A state write happens-before every read that returns its value: the
 *    reader sees everything the writer wrote before shmring_state_write,
 *    so a later read of another key the writer wrote earlier returns that
 *    value or a newer one. A read returns the value published last when it
 *    started, or a newer one; reads of several keys are not a snapshot.
 *
 * Quick start (a producer and a consumer, error handling left out):
 *
 *     shmring_t *p, *c;
 *     shmring_create("/feed", NULL, &p);                 // producer role
 *     shmring_open("/feed", SHMRING_CONSUMER, &c);       // anywhere else
 *     shmring_push(p, "hello", 5);
 *     char buf[256];
 *     ssize_t n = shmring_pop(c, buf, sizeof buf);       // n == 5
 *     shmring_close(c); shmring_close(p); shmring_unlink("/feed");
 */
#ifndef SHMRING_H
#define SHMRING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "shmring/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHMRING_BUILDING) && defined(__GNUC__)
#define SHMRING_API __attribute__((visibility("default")))
#else
#define SHMRING_API
#endif

/* ------------------------------------------------------------------------ */
/* Flags                                                                     */
/* ------------------------------------------------------------------------ */

/* Roles of a handle (shmring_open needs at least one). */
#define SHMRING_PRODUCER 0x0001u /* holds the ring's single producer lease */
#define SHMRING_CONSUMER 0x0002u /* competes with other consumers for messages */
#define SHMRING_OBSERVER 0x0004u /* attaches for shmring_stats only */
/*
 * Broadcast subscriber: sees every message pushed after it attached, in
 * order, whatever the competing consumers and the other subscribers take
 * (shmring_pop, pop_wait, pop_batch, claim, claim_wait, release,
 * shmring_missed and shmring_stats serve it). Not with SHMRING_CONSUMER or
 * SHMRING_OBSERVER on the same handle (-EINVAL). Takes an entry like a
 * consumer (SHMRING_MAX_CONSUMERS in all).
 *
 * Normal (lossless) mode: the producer never overwrites a message that a
 * live subscriber has not passed (popped, or claimed and released): a slow
 * subscriber makes pushes fail with -EAGAIN (push_wait waits), as a slow
 * consumer does. A subscriber that dies stops holding the producer back
 * within SHMRING_DEAD_PEER_NS of a waiting push (a plain push checks on
 * each full try); it is counted in shmring_stats_t.subscribers_dead. While
 * subscribers are attached and no consumer is, the consumers' read side
 * does not hold the producer back either: the messages no consumer is
 * attached to take are passed over once the ring is full (counted in
 * shmring_stats_t.skipped). On a SHMRING_SINGLE_CONSUMER ring they never
 * are: its read index is its consumer's alone.
 *
 * Overwrite mode: the producer never waits for subscribers. A subscriber
 * that falls behind jumps to the oldest message still intact; shmring_missed
 * tells it how many it lost. A torn or lapped message is never returned.
 * Not on a ring whose messages span slots (max_message above slot_size):
 * the open gives -EINVAL.
 */
#define SHMRING_SUBSCRIBER 0x0008u

/* Backend selection. */
#define SHMRING_FORCE_HEAP  0x0100u /* process-private heap memory */
#define SHMRING_FORCE_MEMFD 0x0200u /* anonymous shared memory (memfd) */
#define SHMRING_NO_FALLBACK 0x0400u /* fail instead of falling back */

/* Ring policy (given at creation, fixed for the ring's life). */
#define SHMRING_OVERWRITE 0x1000u /* full ring: drop the oldest messages */
/*
 * Wake-ups without membarrier(): every push pays a locked exchange so that
 * sleepers can be woken, instead of sleepers paying a membarrier() call
 * (docs/design.md, "Wake-ups"). Also chosen when SHMRING_NO_MEMBARRIER is
 * set in the environment (any value but empty or "0") or membarrier() is
 * not available. Create only; not stored in shmring_stats_t.flags.
 */
#define SHMRING_NO_MEMBARRIER 0x2000u
/*
 * At most one consumer handle at a time (observers as usual): it owns the
 * read index and takes each message with a plain store instead of a
 * compare-and-swap. A second consumer gets -EBUSY while the first lives; a
 * dead one is replaced. Not with SHMRING_OVERWRITE. Stored with the ring
 * (shmring_stats_t.flags).
 */
#define SHMRING_SINGLE_CONSUMER 0x4000u
/*
 * At-least-once delivery (docs/ring.md, "Redelivery"): a message claimed by
 * a consumer that dies (or closes) before releasing it is given to another
 * consumer instead of being counted abandoned. The next claim, pop or
 * pop_batch of any consumer takes the oldest such message before anything
 * newer, so it arrives after messages pushed later than it; a message whose
 * consumer died after using it is delivered twice. Copy pops claim, copy and
 * release, so a consumer that dies inside pop loses nothing. Not with
 * SHMRING_OVERWRITE, nor with a max_message above slot_size (messages that
 * span slots). Stored with the ring (shmring_stats_t.flags).
 */
#define SHMRING_REDELIVER 0x8000u

/*
 * Security relaxations: allow opening a segment owned by another user or
 * writable by other users, and creating one with a group/other write mode.
 */
#define SHMRING_ALLOW_INSECURE 0x10000u

/*
 * Open or create (create flags of shmring_create and shmring_state_create):
 * when the name exists with the same geometry and policy, open it (with the
 * requested roles) instead of failing with -EEXIST. See shmring_create.
 */
#define SHMRING_OPEN_EXISTING 0x20000u

/*
 * Follow mode (open flag of a consumer handle: shmring_open, shmring_open_fd,
 * shmring_open_wait, or shmring_create with SHMRING_CONSUMER): the end of a
 * stream is a pause. Once the producer closed (or died) and the ring is
 * drained, this handle's waits keep waiting for the next producer instead
 * of returning -EPIPE, and its plain pops, claims and batch pops return
 * -EAGAIN instead of -EPIPE; the messages of the next producer are taken
 * as usual. While the ring has no live producer a follower's wait sleeps
 * on the futex whatever its wait strategy, waking only for a push and its
 * periodic peer checks. Not with a handle that lacks SHMRING_CONSUMER
 * (-EINVAL).
 */
#define SHMRING_FOLLOW 0x40000u

/*
 * Open flag (shmring_open, shmring_open_wait, shmring_state_open,
 * shmring_state_open_wait): look the name up only among the rings and
 * tables this process created (its memfd and heap segments), never in the
 * shm directory. The *_open_fd calls take it and ignore it. SHMRING_FORCE_HEAP
 * in open flags is its old spelling and still means the same. (Its value
 * stays clear of the pool flags, so that no value means two things.)
 *
 * What SHMRING_FORCE_HEAP means where:
 *   create flags (shmring_config_t, shmring_state_config_t): the heap
 *     backend (and, with SHMRING_OPEN_EXISTING, an existing object is
 *     looked for as with SHMRING_LOCAL_ONLY);
 *   open flags: the old spelling of SHMRING_LOCAL_ONLY;
 *   pool flags: the old spelling of SHMRING_POOL_MESSAGE_PASSING.
 * $SHMRING_FORCE_HEAP (any value but empty or "0"; ignored by setuid and
 * setcap programs) has one meaning: this process has no shared memory. So
 * every create uses the heap backend, every open by name looks only in
 * this process (as SHMRING_LOCAL_ONLY), and pools of processes pass
 * messages, as they do when shared memory cannot be had.
 */
#define SHMRING_LOCAL_ONLY 0x800000u

/* Backends, as returned by shmring_backend(). */
#define SHMRING_BACKEND_SHM   1 /* named POSIX shared memory */
#define SHMRING_BACKEND_MEMFD 2 /* anonymous shared memory */
#define SHMRING_BACKEND_HEAP  3 /* process-private heap memory */

/* Limits. */
#define SHMRING_NAME_MAX      200 /* longest name, leading '/' included */
#define SHMRING_MAX_SLOTS     (1u << 24)
#define SHMRING_MAX_SLOT_SIZE (1u << 30)
#define SHMRING_MAX_CONSUMERS 32 /* attached consumer and observer handles */

/* ------------------------------------------------------------------------ */
/* Errors and logging                                                        */
/* ------------------------------------------------------------------------ */

/* Text for a value returned by any shmring function (negative or positive
 * errno, or 0). Never NULL. */
SHMRING_API const char *shmring_strerror(int err);

/*
 * Log hook: receives one line (without newline) for events that are not
 * errors of the current call, such as a fallback to another backend and its
 * reason. The default writes "shmring: <line>" to stderr. Passing NULL
 * restores the default; pass a function that does nothing to silence it.
 * Not thread-safe against concurrent calls of itself.
 */
typedef void (*shmring_log_fn)(const char *line, void *ctx);
SHMRING_API void shmring_set_log(shmring_log_fn fn, void *ctx);

/* Version of the library at run time ("MAJOR.MINOR.PATCH"). */
SHMRING_API const char *shmring_version(void);

/* ------------------------------------------------------------------------ */
/* Ring                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct shmring shmring_t;

/*
 * Ring configuration. Initialise it with SHMRING_CONFIG_INIT, which sets
 * `size` (see "Config structs" at the top of this header):
 *     shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 64, .slot_size = 128);
 * Later releases append fields after the last one.
 */
typedef struct shmring_config {
    uint32_t size;        /* sizeof(shmring_config_t), set by SHMRING_CONFIG_INIT */
    uint32_t slots;       /* power of two >= 2; 0 = default (1024) */
    uint32_t slot_size;   /* largest message in bytes; 0 = default (256) */
    uint32_t flags;       /* roles, backend, SHMRING_OVERWRITE, ... */
    uint32_t mode;        /* permission bits of a named segment; 0 = 0600 */
    uint32_t max_message; /* largest message in bytes; 0 = slot_size. Above
                             slot_size, a message spans consecutive slots:
                             at most slots * slot_size / 2 */
} shmring_config_t;

#define SHMRING_CONFIG_INIT(...)                                                                   \
    {                                                                                              \
        .size = sizeof(shmring_config_t), __VA_ARGS__                                              \
    }

/*
 * Create a ring. `name` is a POSIX shm name ("/feed": one leading '/', no
 * other '/', not "." or "..", at most SHMRING_NAME_MAX bytes), or NULL for
 * an anonymous ring (memfd, shared through shmring_fd()). `cfg` may be NULL
 * for the defaults. Without a role flag the creator gets the producer role.
 *
 * Backends are tried in order: named shm (in $SHMRING_SHM_DIR or /dev/shm),
 * memfd, heap; each fallback is logged with its reason. A ring that fell
 * back from shm can still be opened by name from the creating process.
 * $SHMRING_FORCE_HEAP=1 forces the heap backend (see SHMRING_LOCAL_ONLY).
 *
 * Memory rule: a segment larger than what this process may use is refused
 * with -ENOMEM before any page is backed (otherwise the pages would be
 * charged at first touch and the process OOM-killed): physical memory,
 * and the room left under the memory limit of the process's cgroup and of
 * each ancestor (v2: memory.max - memory.current; v1:
 * memory.limit_in_bytes - memory.usage_in_bytes). The same rule applies
 * when an open has to back the holes of a sparse segment.
 *
 * The shm directory is opened once per call and checked (see
 * shmring_shm_dir): one that is not owned by the caller or root, or that
 * others may write without the sticky bit, is refused (-EACCES, which
 * falls back to memfd like any unusable directory, with the reason logged).
 *
 * With SHMRING_OPEN_EXISTING and a name that exists, the existing ring is
 * opened as by shmring_open with the requested roles (the producer role by
 * default, as above) if its slots, slot_size and SHMRING_OVERWRITE policy
 * equal the requested ones (after defaults); `mode` and the backend flags
 * then play no part. Two processes doing this at once both succeed, with
 * one ring: one creates it, the other opens it (waiting for its creator to
 * finish, as shmring_open does). Not with a NULL name (nothing to open).
 *
 * SHMRING_FOLLOW is accepted with the SHMRING_CONSUMER role (see that flag).
 *
 * Errors: -EINVAL (NULL out, cfg->size 0 or otherwise not the size of a
 * shmring_config_t of any release, bad name, slots not a power of two in
 * [2, SHMRING_MAX_SLOTS], slot_size above SHMRING_MAX_SLOT_SIZE, unknown
 * flag, mode with bits outside 0777 or writable by group/others without
 * SHMRING_ALLOW_INSECURE, SHMRING_OPEN_EXISTING with a NULL name,
 * SHMRING_SINGLE_CONSUMER or SHMRING_REDELIVER with SHMRING_OVERWRITE,
 * SHMRING_FOLLOW without SHMRING_CONSUMER, SHMRING_SUBSCRIBER with
 * SHMRING_CONSUMER or SHMRING_OBSERVER, max_message other than 0 outside
 * [slot_size, slots * slot_size / 2], SHMRING_REDELIVER with a max_message
 * above slot_size); -E2BIG (cfg->size is larger than this library's
 * shmring_config_t and a field it does not know is not zero: the program
 * was built against a later release and asks for something this one cannot
 * do); -EEXIST (the name exists; with
 * SHMRING_OPEN_EXISTING: it exists with other slots, slot_size, max_message
 * or policy, or is a state table); -ENOSPC (the shm file system is full);
 * -ENOMEM (out of memory, or the memory rule above); -EMFILE/-ENFILE
 * (descriptor limits); any errno of the last backend tried when all fail.
 * With SHMRING_OPEN_EXISTING, also the errors of shmring_open for an
 * existing ring (-EACCES, -ELOOP, -EAGAIN, -EPROTO, -EPROTONOSUPPORT,
 * -EBUSY, -EUSERS, ...).
 */
SHMRING_API int shmring_create(const char *name, const shmring_config_t *cfg, shmring_t **out);

/*
 * Open an existing ring by name with the given roles (at least one of
 * SHMRING_PRODUCER, SHMRING_CONSUMER, SHMRING_OBSERVER, SHMRING_SUBSCRIBER),
 * optionally with SHMRING_ALLOW_INSECURE, SHMRING_LOCAL_ONLY, and for a
 * consumer SHMRING_FOLLOW. The name is looked up first among the memfd and
 * heap rings of this process, then (unless SHMRING_LOCAL_ONLY or
 * $SHMRING_FORCE_HEAP) in the shm directory.
 *
 * A reused ring: a consumer that attaches after the last producer closed
 * its handle finds the stream ended. Once it has taken what is left, its
 * pops return -EPIPE at once (its waits too), until another producer opens
 * the ring. With SHMRING_FOLLOW it gets -EAGAIN instead, and its waits
 * sleep until the next producer pushes.
 *
 * The segment is validated before its data is touched: the shm directory
 * (see shmring_shm_dir), then, on an O_PATH descriptor before the file
 * itself is opened (so that a FIFO, a device or a file leased by someone
 * else is never opened and cannot block the call), its type (a regular
 * file), owner (the caller's effective uid) and permissions (not writable
 * by group or others); then the file is reopened non-blocking through that
 * descriptor, and its header is read with pread into a private copy: size,
 * magic, type, layout version and every size field. A segment with holes
 * (sparse) is then fully allocated (posix_fallocate) before it is mapped,
 * so that no access can later fault on a page the file system cannot
 * supply.
 *
 * SHMRING_FOLLOW without SHMRING_CONSUMER is refused with -EINVAL.
 *
 * Errors: -EINVAL (NULL, bad name, no role, unknown flag, SHMRING_SUBSCRIBER
 * with SHMRING_CONSUMER or SHMRING_OBSERVER, SHMRING_SUBSCRIBER on a ring
 * whose messages span slots); -ENOENT (no such
 * ring); -EACCES (owned by another user or writable by group or others, or
 * no permission, or the shm directory is refused); -ELOOP (a symlink where
 * the segment should be); -EAGAIN (its creator has not finished
 * initialising it within about a second, or its owner holds a lease on it);
 * -ENOSPC (a sparse segment whose holes the full file system cannot back);
 * -ENOMEM (also: backing those holes would break the memory rule of
 * shmring_create);
 * -EPROTO (not a shmring segment, or a corrupt or truncated header, or a
 * max_message no creator could have stored);
 * -EPROTONOSUPPORT (another layout version); -EPROTOTYPE (not a ring);
 * -EBUSY (SHMRING_PRODUCER and a live producer holds the lease, or
 * SHMRING_CONSUMER on a SHMRING_SINGLE_CONSUMER ring whose consumer lives);
 * -EUSERS (SHMRING_MAX_CONSUMERS handles already attached); -ENOMEM;
 * -EMFILE/-ENFILE. A subscriber may also get -EPROTO when the ring's
 * positions are corrupt.
 */
SHMRING_API int shmring_open(const char *name, uint32_t flags, shmring_t **out);

/*
 * Open an anonymous (or any) ring from a file descriptor, e.g. one inherited
 * across fork() or received over a Unix socket. The descriptor is not
 * consumed: the handle keeps its own, reopened through /proc/self/fd with
 * the descriptor's own access mode (a read-only descriptor is never made
 * writable: -EACCES) after checking that it is a regular file (-EPROTO
 * otherwise). A memfd must carry F_SEAL_SHRINK, as the memfds shmring
 * creates do: its sender keeps a descriptor and could otherwise shrink it
 * under the mapping (SIGBUS); an unsealed one is refused with -EACCES
 * unless SHMRING_ALLOW_INSECURE. A file of the shm directory takes no
 * seals and needs none: its owner must be the caller. Otherwise the same
 * validation and errors as shmring_open, plus -EBADF for a descriptor that
 * is not open.
 */
SHMRING_API int shmring_open_fd(int fd, uint32_t flags, shmring_t **out);

/*
 * Wait until ring `name` exists and is initialised, then open it as
 * shmring_open does. The wait sleeps until something is created in the shm
 * directory (inotify on it, not a polling loop); with SHMRING_LOCAL_ONLY
 * (or SHMRING_FORCE_HEAP) in flags or $SHMRING_FORCE_HEAP it waits for a
 * shmring_create of this process. A segment caught while its creator sets
 * it up is tried again every millisecond for up to about two seconds.
 * timeout_ns < 0 waits forever, 0 tries once. Signals do not end it.
 *
 * Errors: -EINVAL (NULL out, bad name, flags as for shmring_open);
 * -ETIMEDOUT (no such ring when the time ran out); -ENOENT (the shm
 * directory does not exist); -EMFILE, -ENOSPC, -ENOMEM (inotify limits or
 * memory); and the errors of shmring_open for the ring that appeared
 * (-EPROTOTYPE for a state table, -EACCES, -EBUSY, -EPROTO, ...).
 */
SHMRING_API int shmring_open_wait(const char *name, uint32_t flags, int64_t timeout_ns,
                                  shmring_t **out);

/*
 * The descriptor of the ring's segment, for passing to another process.
 * Owned by the handle: do not close it. -ENOTSUP on the heap backend,
 * -EINVAL for NULL.
 */
SHMRING_API int shmring_fd(const shmring_t *r);

/*
 * Close a handle: releases its claims (on a SHMRING_REDELIVER ring they are
 * redelivered to other consumers instead), its consumer entry and, for a
 * producer, the lease (consumers then drain what is left and get -EPIPE).
 * NULL is ignored. The ring itself lives on until unlinked and unmapped.
 */
SHMRING_API void shmring_close(shmring_t *r);

/*
 * Remove a ring's name. Handles already open keep working.
 * Errors: -EINVAL (bad name), -ENOENT, -EACCES.
 */
SHMRING_API int shmring_unlink(const char *name);

/* SHMRING_BACKEND_SHM, _MEMFD or _HEAP; -EINVAL for NULL. */
SHMRING_API int shmring_backend(const shmring_t *r);

/* Slot count and slot size of the ring; 0 for NULL. */
SHMRING_API uint32_t shmring_slots(const shmring_t *r);
SHMRING_API uint32_t shmring_slot_size(const shmring_t *r);

/*
 * Largest message the ring takes (shmring_config_t.max_message as created:
 * slot_size unless messages span slots); 0 for NULL.
 *
 * Messages larger than a slot. A ring created with max_message above
 * slot_size takes messages of up to max_message bytes; one of more than
 * slot_size bytes takes ceil(len / slot_size) consecutive slots, so the
 * ring holds fewer of them. It is pushed, popped, claimed and released as
 * one message (one count in the stats, one position in the order), and a
 * consumer never sees part of one: the copy calls copy it whole or not at
 * all. What differs:
 *  - shmring_claim of a message of more than slot_size bytes gives m->data
 *    pointing to a private copy in this process's heap, assembled from its
 *    slots (one copy; messages up to slot_size stay zero-copy). The claim
 *    still holds the message's first slot until release, as any claim
 *    does, so the crash and back-pressure rules are the same; release frees
 *    the copy. In overwrite mode such a release returns 0: the copy was
 *    checked whole before the claim was taken and cannot be torn later.
 *  - shmring_reserve of more than slot_size bytes gives a private buffer
 *    (per handle) that shmring_commit copies into the slots.
 *  - In overwrite mode the producer drops whole messages: read_index only
 *    ever moves to the first slot of a message.
 * Messages up to slot_size take exactly the path they take on a ring whose
 * max_message is slot_size.
 */
SHMRING_API uint32_t shmring_max_message(const shmring_t *r);

/*
 * Push one message of 0..max_message bytes (copy API; max_message is
 * slot_size unless the ring was created with a larger one, see
 * shmring_max_message). Never blocks, never
 * makes a syscall, except when the next slot is still claimed: then it checks
 * the claimer is alive and yields to a claim part-way through for at most
 * about a millisecond.
 * Errors: -EINVAL (NULL ring, or NULL msg with len > 0); -EPERM (no producer
 * role); -EMSGSIZE (len > max_message); -EAGAIN (full: not as many free
 * slots as the message takes, or the next one still holds a claimed
 * message; never in overwrite mode); -EINPROGRESS
 * (not full, but a consumer part-way through claiming the next slot did not
 * finish: try again); -EBUSY (a reservation is open on this handle);
 * -EOWNERDEAD (another producer took the lease from this handle; once a call
 * has returned it, every push, batch push and reserve of the handle returns
 * it and writes nothing).
 */
SHMRING_API int shmring_push(shmring_t *r, const void *msg, size_t len);

/*
 * Pop the oldest message into buf (copy API). Returns its length. The
 * message is taken only if it fits: otherwise -EMSGSIZE and it stays.
 * Never blocks, never makes a syscall.
 * Errors: -EINVAL (NULL ring, or NULL buf with cap > 0); -EPERM (no consumer
 * role); -EMSGSIZE (cap smaller than the next message); -EAGAIN (empty, and
 * only then); -EPROTO (corrupt segment); -EPIPE (empty and the producer
 * closed its handle: end of stream; also at once on a reused ring whose last
 * producer closed before this consumer attached; never with SHMRING_FOLLOW,
 * which gets -EAGAIN); -EINPROGRESS (not empty: other consumers kept taking the oldest
 * message for about a million tries).
 */
SHMRING_API ssize_t shmring_pop(shmring_t *r, void *buf, size_t cap);

/* ---- Blocking waits ----------------------------------------------------- */

/*
 * How a *_wait call waits. SPIN: busy-polls (lowest latency, burns a core);
 * YIELD: polls with sched_yield() between tries (a little slower to react,
 * gives the core to other runnable threads, still 100% CPU when alone);
 * SLEEP (default): spins `spins` times, then sleeps on a futex in the shared
 * header (wake-up costs a few microseconds; no CPU while asleep).
 */
#define SHMRING_WAIT_SPIN     1
#define SHMRING_WAIT_YIELD    2
#define SHMRING_WAIT_SLEEP    3
#define SHMRING_DEFAULT_SPINS 2000

/*
 * Set the wait strategy of this handle and how many polls a SLEEP waiter
 * makes before sleeping. Errors: -EINVAL (NULL, unknown strategy).
 */
SHMRING_API int shmring_set_wait(shmring_t *r, int strategy, uint32_t spins);

/*
 * Waiting variants. timeout_ns < 0 waits forever, 0 does not wait (same as
 * the plain call). Signals do not interrupt them (-EINTR is never returned).
 * Besides the errors of the plain calls: -ETIMEDOUT when the time ran out
 * (with timeout_ns != 0 they never return -EINPROGRESS: they keep trying).
 * A consumer waiting on an empty ring whose producer died without closing
 * gets -EPIPE within SHMRING_DEAD_PEER_NS of the death (unless it has
 * SHMRING_FOLLOW: then it waits for the next producer). A producer whose
 * periodic peer check finds its lease taken gets -EOWNERDEAD at once.
 * -ECANCELED: shmring_interrupt ended the wait (or was called before it);
 * nothing was taken, pushed or reserved.
 */
#define SHMRING_DEAD_PEER_NS 100000000LL /* 100 ms */
SHMRING_API int shmring_push_wait(shmring_t *r, const void *msg, size_t len, int64_t timeout_ns);
SHMRING_API ssize_t shmring_pop_wait(shmring_t *r, void *buf, size_t cap, int64_t timeout_ns);

/*
 * End the wait in progress on this handle: shmring_push_wait,
 * shmring_pop_wait, shmring_reserve_wait or shmring_claim_wait returns
 * -ECANCELED. If none is in progress, the next one of them (with
 * timeout_ns != 0) returns -ECANCELED at once, even if a message or room is
 * there. One-shot: the wait that returns -ECANCELED consumes the interrupt;
 * several calls before it count as one. A wait that succeeds or fails
 * otherwise in the meantime leaves the interrupt for the next wait. Plain
 * calls (and waits with timeout_ns == 0) neither see nor consume it.
 * shmring_open_wait has no handle yet and is not interrupted by this: give
 * it a timeout.
 *
 * Async-signal-safe: it uses only atomic operations and a futex wake-up
 * (and leaves errno unchanged), so a signal handler may call it; so may any
 * other thread while one thread uses the handle (the exception to the
 * one-thread rule), but never during or after shmring_close of the handle.
 * The wait notices it within one pass of its strategy: SPIN and YIELD poll
 * it, a SLEEP waiter is woken on the futex it sleeps on (its other sleepers,
 * in this or other processes, see one spurious wake-up, nothing more).
 *
 * Returns 0. Errors: -EINVAL (NULL).
 */
SHMRING_API int shmring_interrupt(shmring_t *r);
/* ---- Event descriptors (poll, epoll, libuv) ----------------------------- */

/*
 * A descriptor to wait on with poll(), select(), epoll or libuv's uv_poll_t
 * (POLLIN / EPOLLIN / UV_READABLE), for this handle:
 *   - consumer: readable when a message is there for it, or the stream
 *     ended (its next pop or claim returns -EPIPE: the producer closed, or
 *     died and the ring is empty, found by a check every
 *     SHMRING_DEAD_PEER_NS / 2);
 *   - producer: readable when there is room (a push or reserve that
 *     returned -EAGAIN would succeed), or the lease was lost (-EOWNERDEAD);
 *   - both roles: readable when either is true, for the side(s) armed below.
 *
 * Level-triggered, with a one-shot arming done by the ring calls: the
 * descriptor is armed for a side when a call of that side on this handle
 * returns -EAGAIN or -EINPROGRESS (shmring_pop, shmring_pop_batch,
 * shmring_claim and their *_wait with timeout 0 for the data side;
 * shmring_push, shmring_push_batch, shmring_reserve and their *_wait with
 * timeout 0 for room). That call also empties the descriptor first. So:
 *
 *     wait until the descriptor is readable, then repeat the call(s) you
 *     wait for until one returns -EAGAIN (or -EPIPE / -EOWNERDEAD: stop),
 *     then wait again.
 *
 * never misses a message and never spins: after -EAGAIN, the descriptor
 * stays unreadable until the condition becomes true (or a spurious wake,
 * below), and becomes readable once it does, even if it became true during
 * the call. The data side is armed when the descriptor is made (readable at
 * once if a message is already there); the room side only by a call that
 * returned -EAGAIN (a producer is not told about room it did not ask for).
 * After a wake the caller must retry the calls: a wake that it ignores (no
 * call returning -EAGAIN) leaves the descriptor readable, and level-triggered
 * loops will see it again. With EPOLLET, retry until -EAGAIN each time, as
 * above. A handle with both roles has one descriptor for both sides: after
 * a wake, retry the calls of each side you wait for.
 * Spurious wakes happen: every SHMRING_DEAD_PEER_NS / 2 (the peer check),
 * after a race between arming and a push, and for each datagram another
 * process sends to the descriptor's socket; they cost a call that returns
 * -EAGAIN, nothing else. -EINPROGRESS re-arms too, and makes the descriptor
 * readable at once (another consumer is part-way through a claim: retry).
 *
 * The descriptor belongs to the handle: the same one is returned by every
 * call, shmring_close() closes it, the caller must not close it or read from
 * it. It is an epoll instance (a Unix datagram socket with a random
 * abstract name and a timer inside), close-on-exec. Across processes no
 * daemon and no thread are involved: a push, commit, release or close that
 * finds an armed descriptor sends it one datagram; one that finds none makes
 * no syscall. On a handle with a descriptor, a call that returns -EAGAIN
 * makes a few syscalls (emptying and arming the descriptor); other calls are
 * unchanged. Works on every backend (the heap backend within one process).
 * Parties in other network namespaces cannot reach the socket: their
 * wake-ups then come from the periodic check only (docs/design.md, "Event
 * descriptors"). Like the handle, it is for one thread at a time.
 *
 * Returns the descriptor (>= 0). Errors: -EINVAL (NULL); -EPERM (an observer
 * handle: no role to wait for); -EOWNERDEAD (a producer-only handle that lost
 * its lease); -EMFILE, -ENFILE, -ENOMEM (no descriptor or memory for the
 * socket, timer or epoll instance); -EADDRINUSE (no free socket name after
 * 16 random tries).
 */
SHMRING_API int shmring_event_fd(shmring_t *r);

/* ---- Zero-copy ---------------------------------------------------------- */

/*
 * A message held in place by shmring_claim. Only data and len are for the
 * caller; `opaque` belongs to the library (a copy of the struct is the same
 * claim, so it may be moved or copied, but not edited). Its size is part of
 * the ABI: 8 + 3 * 8 bytes after data (40 bytes on LP64), one opaque word of
 * which is spare, so that a later release can keep more per claim without
 * changing it.
 */
typedef struct shmring_msg {
    const void *data; /* payload in shared memory, valid until release */
    size_t len;
    uint64_t opaque[3]; /* private */
} shmring_msg_t;

/*
 * Reserve the next slot for writing in place: *payload points to len bytes
 * in shared memory (len <= slot_size). A reservation of slot_size <
 * len <= max_message takes room for all the message's slots and points
 * *payload to a private buffer of the handle that shmring_commit copies
 * into them (see shmring_max_message). Nothing is visible to consumers until
 * shmring_commit. One reservation at a time per handle. (In ThreadSanitizer
 * builds of the library, *payload is a private buffer that shmring_commit
 * copies into the slot: a consumer holding a stale position may still be
 * reading the slot, which is harmless for a seqlock but a data race to TSan.)
 * Errors: as shmring_push, plus -EINVAL for NULL payload, -EBUSY when a
 * reservation is already open, and -ENOMEM (a reservation longer than a
 * slot whose buffer could not be allocated). shmring_reserve_wait: also
 * those of the waiting variants (-ETIMEDOUT, -ECANCELED: no reservation is
 * open).
 */
SHMRING_API int shmring_reserve(shmring_t *r, size_t len, void **payload);
SHMRING_API int shmring_reserve_wait(shmring_t *r, size_t len, void **payload, int64_t timeout_ns);

/*
 * Publish the open reservation with its final length (len may be smaller
 * than reserved). Errors: -EINVAL (NULL, no open reservation, len larger
 * than reserved).
 */
SHMRING_API int shmring_commit(shmring_t *r, size_t len);

/*
 * Drop the open reservation instead of committing it: nothing is published,
 * no counter moves, and the next push or reserve uses the same slot. Makes
 * no syscall and writes nothing to shared memory (so it also works on a
 * handle whose producer lease was taken over). Errors: -EINVAL (NULL, or no
 * reservation open: none taken, or already committed or discarded); -EPERM
 * (no producer role).
 */
SHMRING_API int shmring_discard(shmring_t *r);

/*
 * Take the oldest message in place: m->data and m->len point into shared
 * memory until shmring_release(m). A handle may hold several claims and
 * release them in any order; the producer never reuses a claimed slot
 * before its release (in overwrite mode claims do not hold the producer
 * back: release then tells whether the data stayed intact). On a
 * SHMRING_REDELIVER ring a message that a dead consumer held comes before
 * the oldest new one, and the same message (same shmring_msg_pos) may come
 * twice.
 * Errors: -EINVAL (NULL); -EPERM (no consumer role); -EAGAIN (empty, and only
 * then); -EPIPE (end of stream, as for shmring_pop); -EINPROGRESS (not empty, but another consumer
 * is part-way through claiming the oldest message and did not finish within
 * about a millisecond: try again); -EPROTO (corrupt segment); -ENOMEM (the
 * oldest message is longer than a slot and its private copy could not be
 * allocated: it stays in the ring). A message longer than a slot is
 * claimed as a private copy, see shmring_max_message.
 * shmring_claim_wait: also those of the waiting variants (-ETIMEDOUT,
 * -ECANCELED: nothing claimed).
 * A subscriber (SHMRING_SUBSCRIBER) claims its next message; in the normal
 * mode the producer does not pass the oldest claim it holds until it is
 * released. Its first claim allocates a bitmap of the ring's slots: -ENOMEM
 * if that fails. It never gets -EINPROGRESS.
 */
SHMRING_API int shmring_claim(shmring_t *r, shmring_msg_t *m);
SHMRING_API int shmring_claim_wait(shmring_t *r, shmring_msg_t *m, int64_t timeout_ns);

/*
 * Give a claimed slot back (and free the private copy of a message longer
 * than a slot). Errors: -EINVAL (NULL, or m not a claim held by
 * this handle, e.g. released already); -ESTALE (overwrite mode: the producer overwrote the slot
 * while it was claimed, so the data read may be torn and must be discarded;
 * the claim is released all the same).
 */
SHMRING_API int shmring_release(shmring_t *r, shmring_msg_t *m);

/*
 * Copy up to cap bytes of a claimed message into buf; returns how many.
 * In overwrite mode the producer may rewrite a claimed slot while it is
 * read: copy it out with this function (whose reads are atomic, so that a
 * concurrent overwrite is not a data race) and trust the copy only if
 * shmring_release then returns 0. In the normal mode reading m->data
 * directly is just as good. Errors: -EINVAL (NULL m, or NULL buf with
 * cap > 0).
 */
SHMRING_API ssize_t shmring_msg_copy(const shmring_msg_t *m, void *buf, size_t cap);

/*
 * The position of a claimed message in the ring: how many messages were
 * pushed before it since the ring was created. Unique to the message while
 * the ring lives, and the same when a SHMRING_REDELIVER ring delivers it
 * again, so it can name the message (e.g. to drop duplicates). Read from
 * the caller's copy of the claim, before or after its release; a getter:
 * UINT64_MAX for NULL.
 */
SHMRING_API uint64_t shmring_msg_pos(const shmring_msg_t *m);

/* ---- Batches ------------------------------------------------------------ */

/*
 * Push up to n messages (iov[i] each) with one index update. Returns how
 * many were pushed (>= 1), in order. All lengths are checked first: one
 * above max_message gives -EMSGSIZE and nothing is pushed.
 * Errors: as shmring_push (-EAGAIN when not even one fits).
 */
SHMRING_API ssize_t shmring_push_batch(shmring_t *r, const struct iovec *iov, size_t n);

/*
 * Pop up to n messages with one index update: message i is copied into
 * iov[i].iov_base (capacity iov[i].iov_len) and iov[i].iov_len is set to its
 * length. Returns how many were taken (>= 1). A message that does not fit
 * its buffer ends the batch before it; if it is the first, -EMSGSIZE and
 * nothing is taken. Errors: as shmring_pop.
 */
SHMRING_API ssize_t shmring_pop_batch(shmring_t *r, struct iovec *iov, size_t n);

/* ---- Overwrite mode ----------------------------------------------------- */

/*
 * Messages the producer dropped (overwrite mode) since this handle last
 * asked or was opened: an upper bound on what this consumer missed, since
 * some dropped messages might have gone to other consumers had they been
 * faster. For a subscriber: exactly the messages it lost to lapping since it
 * last asked (messages it received plus those it missed are all the
 * messages pushed after it attached). 0 for NULL.
 */
SHMRING_API uint64_t shmring_missed(shmring_t *r);

/* ---- Stats -------------------------------------------------------------- */

typedef struct shmring_stats {
    uint32_t slots, slot_size;
    uint32_t flags;        /* SHMRING_OVERWRITE, ... as created */
    int backend;           /* SHMRING_BACKEND_* */
    uint64_t count;        /* messages in the ring now */
    uint64_t pushed;       /* messages pushed since creation */
    uint64_t popped;       /* messages taken by consumers (pop or claim) */
    uint64_t bytes_pushed; /* payload bytes pushed */
    uint64_t bytes_popped; /* payload bytes taken */
    uint64_t dropped;      /* overwritten before any consumer took them */
    uint64_t abandoned;    /* claimed (the claim held) by a consumer that died
                              before release */
    uint64_t full_events;  /* pushes, batches and reserves that gave up on a
                              full ring (a waiting call counts once, when it
                              ends full) */
    uint64_t empty_events; /* pops that found the ring empty */
    int32_t producer_pid;  /* holder of the producer lease (after a close, the
                              last holder); 0 if there never was one */
    int producer_alive;    /* 1 if that holder is alive */
    int producer_closed;   /* 1 if the last producer closed (end of stream) */
    uint32_t consumers;    /* live attached consumer handles */
    uint32_t observers;    /* live attached observer handles */
    int32_t creator_pid;
    uint64_t created_ns;     /* CLOCK_REALTIME at creation */
    uint64_t producer_epoch; /* how many producers have held the lease */
    uint32_t wake;           /* SHMRING_WAKE_*: how pushes wake sleepers */
    uint32_t redelivered;    /* SHMRING_REDELIVER: claims of consumers that died
                                or closed before release, offered again (low
                                32 bits of the ring's count; 0 otherwise) */
    uint32_t max_message;    /* largest message (slot_size unless they span) */
    uint32_t subscribers;    /* live attached subscriber handles */
    uint32_t reserved2;
    uint64_t delivered;        /* messages read by subscribers, each counting its own */
    uint64_t sub_missed;       /* messages subscribers lost to lapping (overwrite mode) */
    uint64_t subscribers_dead; /* subscribers that died attached, detached by a peer */
    uint64_t skipped;          /* passed over with subscribers and no consumer attached */
} shmring_stats_t;

/* shmring_stats_t.wake */
#define SHMRING_WAKE_MEMBARRIER 1 /* plain store and load; sleepers call membarrier() */
#define SHMRING_WAKE_EXCHANGE   2 /* locked exchange on push and release (the fallback) */

/*
 * Fill *st. Counters are read without stopping the ring, so they are each
 * exact but not a single snapshot. Also reclaims the entries and claims of
 * consumers that died. Errors: -EINVAL (NULL).
 */
SHMRING_API int shmring_stats(shmring_t *r, shmring_stats_t *st);

#include "shmring/state.h"
#include "shmring/pool.h"
#include "shmring/metrics.h"
#include "shmring/inspect.h"
#ifdef __cplusplus
}
#endif

#endif /* SHMRING_H */
