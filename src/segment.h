/*
 * Segments: one shared object (ring, state table) lives in one segment, a
 * 4 KiB header page followed by the object's data.
 *
 *   0        64       128                                  1984             4096
 *   +--------+--------+------------------------------------+----------------+----------
 *   |identity| ready  | object lines (29 x 64 B), layout   | party table    | data ...
 *   |line    | line   | private to the object's module     | 33 x 64 B      |
 *   +--------+--------+------------------------------------+----------------+----------
 *
 * The identity line is written once by the creator before `ready` is set
 * (release) and never again. A process that opens the segment validates it
 * and copies what it needs into process-local memory: nothing read from the
 * segment after that is trusted to size or index memory.
 *
 * The party table has one cache line per attached party, written only by
 * that party (and by whoever reclaims it after its death). Entry 0 is the
 * producer lease of a ring; the others are consumers, observers, or users of
 * a state table. Liveness of a party: an open-file-description lock on byte
 * `index` of the segment's file, held for as long as the party is attached;
 * the kernel drops it when the process dies, whatever its pid namespace.
 * The pid and process start time beside it are for display and are the
 * fallback where such locks are not available.
 *
 * Backends: named POSIX shm (a file in $SHMRING_SHM_DIR or /dev/shm), memfd,
 * heap. Named segments on the memfd or heap backend (a fallback, or forced)
 * are kept in a process-local registry so that the threads of the creating
 * process can open them by name.
 */
#ifndef SHMRING_SEGMENT_H
#define SHMRING_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "shmring.h"

/* Layout 2: party owner words carry a generation; state lock words name a handle.
 * Layout 3: rings may carry messages larger than a slot (ring line 11, src/span.h),
 * redeliver dead claimers' messages (line 6, src/redeliver.h); a ring party's
 * counter[4] holds its event descriptor's token, ring line 7 the entries that
 * have one (src/event.h); rings have a subscriber region after the header page
 * (lines 9 and 10, src/subscriber.h). */
#define SHMRING__MAGIC        0x474e49524d485353ull /* "SSHMRING" little-endian */
#define SHMRING__LAYOUT       3u
#define SHMRING__HEADER_SIZE  4096u
#define SHMRING__LINE         64u
#define SHMRING__OBJECT_LINES 29u
#define SHMRING__PARTIES      33u /* entry 0: producer lease; 1..32: others */
#define SHMRING__MAX_TOTAL    (1ull << 40)
#define SHMRING__READY        0x52454459u /* "READY" */

enum shmring__type {
    SHMRING__TYPE_RING = 1,
    SHMRING__TYPE_STATE = 2,
};

/* Party states. */
enum shmring__party_state {
    SHMRING__PARTY_FREE = 0,
    SHMRING__PARTY_TAKING = 1, /* being set up by its owner */
    SHMRING__PARTY_ACTIVE = 2,
    SHMRING__PARTY_CLOSED = 3, /* lease only: the holder closed (end of stream) */
};

/* Roles recorded in a party entry. */
#define SHMRING__ROLE_PRODUCER 1u
#define SHMRING__ROLE_CONSUMER 2u
#define SHMRING__ROLE_OBSERVER 4u
#define SHMRING__ROLE_USER     8u

/* A broadcast subscriber of a ring (its cursor line: ring.h). */
#define SHMRING__ROLE_SUBSCRIBER 16u

/* Flag in party.role: the owner holds its OFD liveness lock (also in the
 * owner word, SHMRING__OWNER_LOCKED; kept here for readers such as the tool). */
#define SHMRING__ROLE_LOCKED 0x80000000u
/* Flag given to shmring__party_take only: the entry's counters carry over
 * from one owner to the next (the object sums them and never folds them). */
#define SHMRING__ROLE_KEEP_COUNTERS 0x40000000u

/*
 * One party: a cache line written by its owner. `owner` packs, so that an
 * entry, the process that holds it and the hand-over they belong to change
 * together in one CAS:
 *
 *   63            32 31                 4   3      2   0
 *   +---------------+--------------------+------+-------+
 *   | pid           | generation (28 b)  |LOCKED| state |
 *   +---------------+--------------------+------+-------+
 *
 * The generation is bumped by every take (free, closed or dead -> TAKING), so
 * that a CAS that expects a word loaded before the entry changed hands fails
 * even when the same pid holds it again (no ABA). LOCKED: the holder of the
 * word holds the OFD lock on byte `index` of the file: it lives exactly as
 * long as the lock is held, in TAKING as in ACTIVE.
 */
struct shmring__party {
    uint64_t owner;      /* see above; CAS */
    uint32_t role;       /* SHMRING__ROLE_* */
    uint32_t generation; /* the owner word's generation, once start_time is valid */
    uint64_t start_time; /* process start, clock ticks since boot */
    uint64_t counter[5]; /* object-defined, written by the owner only (rings: counter[4], see
                          * src/event.h, also has ARM cleared by notifiers) */
};

#define SHMRING__OWNER_LOCKED 0x8u
#define SHMRING__GEN_MASK     0x0fffffffu
#define SHMRING__OWNER_WORD(state, gen, pid)                                                       \
    ((uint64_t)(uint32_t)(pid) << 32 | ((uint64_t)((gen)&SHMRING__GEN_MASK) << 4) |                \
     (uint32_t)(state))
#define SHMRING__OWNER_STATE(o) ((uint32_t)(o)&0x7u)
#define SHMRING__OWNER_GEN(o)   ((uint32_t)((o) >> 4) & SHMRING__GEN_MASK)
#define SHMRING__OWNER_PID(o)   ((int32_t)((o) >> 32))

struct shmring__hdr {
    /* line 0: identity, immutable once ready */
    uint64_t magic;
    uint32_t type;
    uint32_t layout;
    uint32_t header_size;
    uint32_t flags; /* object flags given at creation */
    uint64_t total_size;
    uint32_t param[4]; /* object-defined sizes */
    int32_t creator_pid;
    uint32_t reserved0;
    uint64_t creator_start;
    /* line 1 */
    uint32_t ready; /* SHMRING__READY once initialised; release store, last */
    uint32_t reserved1;
    uint64_t created_ns; /* CLOCK_REALTIME; written before ready */
    uint64_t reserved2[6];
    /* lines 2..30: the object's own lines */
    unsigned char object[SHMRING__OBJECT_LINES * SHMRING__LINE];
    /* lines 31..63 */
    struct shmring__party party[SHMRING__PARTIES];
};

_Static_assert(sizeof(struct shmring__party) == SHMRING__LINE, "party is one line");
_Static_assert(sizeof(struct shmring__hdr) == SHMRING__HEADER_SIZE, "header is one page");

/*
 * Computes the total segment size for the object-defined params, or returns
 * a negative errno if they are out of range. Used at creation and to
 * validate a segment on open.
 */
typedef int (*shmring__layout_fn)(const uint32_t param[4], uint32_t flags, uint64_t *total);

/* A process-local view of a segment. */
struct shmring__seg {
    unsigned char *base;
    struct shmring__hdr *hdr;
    size_t size;
    int fd; /* -1 on the heap backend */
    int backend;
    int locks;                /* 1 if OFD locks work on fd */
    struct shmring__reg *reg; /* registry entry (memfd/heap names), or NULL */
    uint32_t type;
    uint32_t flags;    /* object flags (validated copy) */
    uint32_t param[4]; /* validated copy */
    char name[SHMRING_NAME_MAX + 1];
    struct shmring__seg *next_open; /* list of segments with descriptors */
};

/* 0 if name is a valid segment name, -EINVAL otherwise. */
int shmring__name_check(const char *name);

/*
 * Create a segment (not yet ready: the caller initialises the object, then
 * calls shmring__seg_publish). name NULL: anonymous (memfd, else heap).
 * flags: SHMRING_FORCE_*, SHMRING_NO_FALLBACK, SHMRING_ALLOW_INSECURE, plus
 * object flags stored in the header.
 */
int shmring__seg_create(const char *name, uint32_t type, uint32_t flags, uint32_t object_flags,
                        uint32_t mode, const uint32_t param[4], shmring__layout_fn layout,
                        struct shmring__seg **out);
void shmring__seg_publish(struct shmring__seg *seg);

/* Open and validate a ready segment by name or by descriptor. */
int shmring__seg_open(const char *name, uint32_t type, uint32_t flags, shmring__layout_fn layout,
                      struct shmring__seg **out);
int shmring__seg_open_fd(int fd, uint32_t type, uint32_t flags, shmring__layout_fn layout,
                         struct shmring__seg **out);

/*
 * Validate a segment image already in memory (header and data, `size`
 * bytes) with the same checks as an open, and wrap it without copying.
 * Internal: for fuzzers and tests. The image must stay valid until close.
 */
int shmring__seg_attach_image(void *image, size_t size, uint32_t type, shmring__layout_fn layout,
                              struct shmring__seg **out);

void shmring__seg_close(struct shmring__seg *seg);
int shmring__seg_unlink(const char *name);

/*
 * Remove name only if it is still the file (dev, ino) that the caller
 * validated: -ESTALE if the name now holds another file.
 */
int shmring__seg_unlink_same(const char *name, uint64_t dev, uint64_t ino);

/* shmring_inspect on an open regular file (inspect.c; for fuzzers and tests). */
int shmring__inspect_fd(int fd, shmring_info_t *info);

/* Directory of named segments: $SHMRING_SHM_DIR or /dev/shm (secure_getenv). */
const char *shmring__shm_dir(void);

/*
 * Open the shm directory once for one operation, whose every step is then
 * relative to the descriptor (openat, fstatat, unlinkat). Refused (-EACCES,
 * logged) unless shmring__dir_trusted(); otherwise the errno of open(2).
 */
int shmring__shm_dir_open(void);
/* The same for a lookup: a missing directory (or a file in its place) holds no segment: -ENOENT. */
int shmring__shm_dir_lookup(void);

/* 0 if a directory is owned by us or root and not writable by others
 * without the sticky bit; -EACCES or -ENOTDIR otherwise. */
int shmring__dir_trusted(const struct stat *st);

/* 1 if $SHMRING_FORCE_HEAP asks for the heap backend (secure_getenv). */
int shmring__force_heap_env(void);

/* Open flags that look a name up only in this process's registry:
 * SHMRING_LOCAL_ONLY, and SHMRING_FORCE_HEAP, its old spelling at open. */
#define SHMRING__OPEN_LOCAL (SHMRING_LOCAL_ONLY | SHMRING_FORCE_HEAP)

/* 0 if a segment file may be used: owned by the caller and writable by
 * neither group nor others (or SHMRING_ALLOW_INSECURE in flags); -EACCES. */
int shmring__check_owner(const struct stat *st, uint32_t flags);

/* 0 unless fd is a memfd without F_SEAL_SHRINK (-EACCES, unless
 * SHMRING_ALLOW_INSECURE in flags). */
int shmring__check_seals(int fd, uint32_t flags);

/*
 * A descriptor with its own open file description (own OFD locks) on the
 * same regular file as fd, non-blocking, with fd's access mode (never
 * widened). -EPROTO for another file type, -EAGAIN for a leased file.
 */
int shmring__reopen_fd(int fd);

/* Track a segment with a descriptor so that a fork() child gets a
 * descriptor of its own (forkfix.c); untrack before closing it. */
void shmring__seg_track(struct shmring__seg *s);
void shmring__seg_untrack(struct shmring__seg *s);

/*
 * Memory rule (memlimit.c): 0 if `bytes` more of shared memory fit what this
 * process may use: physical memory, and the room left under the memory limit
 * of its cgroup and each ancestor (v2 memory.max - memory.current, v1
 * memory.limit_in_bytes - memory.usage_in_bytes). -ENOMEM otherwise.
 */
int shmring__mem_check(uint64_t bytes);

/* Validate a header copy against its layout function and a size. */
int shmring__hdr_check(const struct shmring__hdr *h, uint32_t type, size_t size,
                       shmring__layout_fn layout);

/* ---- Parties ------------------------------------------------------------ */

/*
 * Take a free party entry in [first, last] for `role` (SHMRING__ROLE_*, plus
 * SHMRING__ROLE_KEEP_COUNTERS to keep the entry's counters), holding its
 * liveness lock. If none is free, entries of dead parties are seized, handed
 * to `reclaim` (which must release what they held) and reused. Returns the
 * index or -EUSERS.
 */
typedef void (*shmring__reclaim_fn)(struct shmring__seg *seg, unsigned index, void *ctx);
int shmring__party_take(struct shmring__seg *seg, unsigned first, unsigned last, uint32_t role,
                        shmring__reclaim_fn reclaim, void *ctx);

/* Take the producer lease (entry 0): -EBUSY while a live holder has it. */
int shmring__lease_take(struct shmring__seg *seg, int *took_over);

/*
 * Release an entry this process holds (its own, or one it seized); `final_state`
 * FREE or CLOSED. Does nothing if the entry is no longer held by this process
 * (a handle inherited over fork(), or an entry that changed hands).
 */
void shmring__party_release(struct shmring__seg *seg, unsigned index, uint32_t final_state);

/*
 * 1 if the party at index is attached (or being set up) and its process
 * lives, 0 if it is dead (or the entry is free). Makes a syscall: not for
 * fast paths.
 */
int shmring__party_alive(const struct shmring__seg *seg, unsigned index);

/*
 * If the entry at index is ACTIVE or TAKING but its holder died, move it to
 * TAKING for the caller (a CAS on the owner word loaded before judging, with
 * its generation: it fails if the entry changed hands meanwhile) and return
 * 1, the caller holding the entry's liveness lock: it reclaims the entry and
 * then frees it with shmring__party_release (or sets it up as its own).
 * Otherwise 0. Never seizes an entry of the calling process.
 */
int shmring__party_seize_dead(struct shmring__seg *seg, unsigned index);

/* 1 if an open file description other than fd's holds the OFD lock on
 * byte `index` of fd's file (a live party), 0 if none does, <0 an error. */
int shmring__ofd_held(int fd, unsigned index);

/* Start time of a process (clock ticks since boot), 0 if unknown. */
uint64_t shmring__proc_start_time(pid_t pid);
/* 1 if pid runs and (when start != 0) started at `start`. */
int shmring__pid_alive(pid_t pid, uint64_t start);
/* Start time of this process, cached per pid (a fork() child gets its own). */
uint64_t shmring__self_start_time(void);

/* Log one formatted line through the log hook. */
void shmring__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic and real-time clocks in nanoseconds. */
uint64_t shmring__now_ns(void);
uint64_t shmring__realtime_ns(void);

#endif /* SHMRING_SEGMENT_H */
