/*
 * shmring worker pools: run a task function over an array of items in
 * parallel, in worker processes (or threads), results in item order.
 *
 * Included by <shmring.h>; do not include this file directly.
 *
 * A pool starts its workers once, at creation, and reuses them for every
 * map. Three ways of running a map:
 *
 *  - shared memory (processes, the default): worker processes forked at
 *    creation (they inherit the task function and its ctx). One anonymous
 *    shared arena, mapped before the fork and so at the same address in
 *    every worker, holds the data: memory from shmring_pool_alloc is in it,
 *    and a map whose items and results are there copies nothing; items and
 *    results elsewhere are copied into a staging block of the arena's free
 *    space (in rounds when they do not all fit) and the results copied out.
 *    Index ranges ("chunks") go out through a shmring ring; workers read
 *    items and write results in place.
 *  - message passing (processes): the same workers, but each chunk's items
 *    travel to a worker over a Unix socket and its results come back the
 *    same way. Used when asked for (SHMRING_POOL_MESSAGE_PASSING, or
 *    SHMRING_FORCE_HEAP, its old spelling, in the flags), when
 *    $SHMRING_FORCE_HEAP=1 says that this process has no shared memory,
 *    and when shared memory cannot be had (logged through the log hook).
 *  - threads (SHMRING_POOL_THREADS): threads of the calling process run the
 *    same chunk loop directly over the caller's arrays, with no copy.
 *
 * Two forms of map: shmring_pool_map calls the task once per item, with
 * pointers to the item and its result; shmring_pool_map_range calls a range
 * task once per block of indices [begin, end), for reductions and for work
 * so cheap per item that one call per item would cost more than the item.
 *
 * Results are the same, bit for bit, whichever way runs the map.
 *
 * Work is spread dynamically: a map is cut into about workers * 8 chunks
 * that free workers claim one at a time, so a slow item holds up its own
 * chunk, not a fixed share of the items.
 *
 * Worker processes that die during a map (killed, or crashing in the task)
 * lose nothing: the parent notices, hands the dead worker's unfinished
 * chunk to another worker, and starts a replacement. An item (or range)
 * that kills SHMRING_POOL_MAX_KILLS workers fails the map with -ECHILD, and
 * shmring_pool_last_error_item names it.
 *
 * The parent never trusts the shared control page that its workers can
 * write: it decides with its own copy of each map's parameters and checks
 * what workers report. A task that writes over the control page (a stray
 * pointer) fails the map with -EPROTO; every worker is then restarted.
 *
 * Workers exit when the pool is destroyed and when the process that owns
 * the pool dies (also when the thread that forked them exits: they are then
 * restarted by the next map).
 *
 * Worker processes are forked copies of the caller and never exec: they
 * inherit every descriptor the application has open when they are forked
 * (close-on-exec does not close them), so a socket or file the application
 * opened stays open in the workers for the pool's life. Close your own
 * before creating the pool if workers must not hold them. Descriptors
 * that shmring opens are all O_CLOEXEC, so a program that execs does not
 * pass them on.
 *
 * A pool is used by one thread at a time, and only in the process that
 * created it. In the worker processes, the task runs in a forked copy of
 * the caller: it must not use locks or threads of the parent that fork()
 * does not carry over.
 */
#ifndef SHMRING_POOL_H
#define SHMRING_POOL_H

#ifndef SHMRING_H
#error "include <shmring.h>, not <shmring/pool.h>"
#endif

/*
 * Pool flags (shmring_pool_config_t.flags). SHMRING_FORCE_HEAP is also
 * taken, as the old spelling of SHMRING_POOL_MESSAGE_PASSING.
 */
#define SHMRING_POOL_PROCESSES       0x100000u /* worker processes (the default) */
#define SHMRING_POOL_THREADS         0x200000u /* worker threads of this process */
#define SHMRING_POOL_MESSAGE_PASSING 0x400000u /* processes, items and results over sockets */

/* How a pool runs its maps, as returned by shmring_pool_mode(). */
#define SHMRING_POOL_MODE_SHARED          1 /* processes, shared-memory arena */
#define SHMRING_POOL_MODE_MESSAGE_PASSING 2 /* processes, Unix sockets */
#define SHMRING_POOL_MODE_THREADS         3 /* threads over the caller's memory */

/* Limits. */
#define SHMRING_POOL_MAX_RANGES    512u        /* ranges of one shmring_pool_map_range: 0..511 */
#define SHMRING_POOL_MAX_WORKERS   32          /* the consumer limit of a ring */
#define SHMRING_POOL_MAX_KILLS     3           /* deaths on one item that fail a map */
#define SHMRING_POOL_DEFAULT_ARENA (16u << 20) /* arena bytes when arena_size is 0 */

typedef struct shmring_pool shmring_pool_t;

/*
 * The task: compute the result of one item. `item` points to item_size
 * bytes, `result` to result_size bytes to fill (NULL when result_size is
 * 0). Returns 0, or a negative errno value that fails the map. Runs in a
 * worker process or thread; `ctx` is the pointer given at creation (in a
 * worker process: the forked copy of what it pointed to at creation, or at
 * the worker's restart).
 */
typedef int (*shmring_task_fn)(const void *item, size_t item_size, void *result, size_t result_size,
                               void *ctx);

/*
 * The range task: run indices [begin, end) of a map of n (begin < end <= n).
 * `range` numbers the ranges in index order, 0 <= range <
 * SHMRING_POOL_MAX_RANGES (a reduction keeps one partial result per range).
 * Returns 0, or a negative errno value that fails the map. A range whose
 * worker died is run again from begin, so its output should be stored, not
 * added to (a partial per range, overwritten, is safe).
 */
typedef int (*shmring_range_fn)(size_t begin, size_t end, size_t range, void *ctx);

/*
 * Pool configuration. Initialise it with SHMRING_POOL_CONFIG_INIT, which
 * sets `size` (see "Config structs" in <shmring.h>); later releases append
 * fields after `arena_size`.
 */
typedef struct shmring_pool_config {
    uint32_t size;     /* sizeof(shmring_pool_config_t), set by SHMRING_POOL_CONFIG_INIT */
    uint32_t workers;  /* 1..SHMRING_POOL_MAX_WORKERS; 0 = online CPUs (at most the max) */
    uint32_t flags;    /* SHMRING_POOL_PROCESSES (default), SHMRING_POOL_THREADS,
                          SHMRING_POOL_MESSAGE_PASSING (SHMRING_FORCE_HEAP, its old
                          spelling, is still taken for it) */
    uint32_t reserved; /* 0 */
    size_t arena_size; /* shared bytes for items and results; 0 = SHMRING_POOL_DEFAULT_ARENA */
} shmring_pool_config_t;

#define SHMRING_POOL_CONFIG_INIT(...)                                                              \
    {                                                                                              \
        .size = sizeof(shmring_pool_config_t), __VA_ARGS__                                         \
    }

/*
 * Create a pool and start its workers. `cfg` may be NULL for the defaults.
 * Worker processes are forked here, before this function returns: create
 * pools before starting threads where possible.
 *
 * Errors: -EINVAL (NULL fn or out, cfg->size 0 or otherwise not the size
 * of a shmring_pool_config_t of any release, workers above
 * SHMRING_POOL_MAX_WORKERS, unknown flag, reserved not 0,
 * SHMRING_POOL_THREADS together with SHMRING_POOL_PROCESSES,
 * SHMRING_POOL_MESSAGE_PASSING or SHMRING_FORCE_HEAP, arena_size above
 * 1 TiB); -E2BIG (cfg->size larger than this library's struct and a field
 * it does not know is not zero, as for shmring_create); -ENOMEM; -EAGAIN (fork() or
 * pthread_create() failed: process or thread limit); -EMFILE/-ENFILE (descriptor limits).
 */
SHMRING_API int shmring_pool_create(const shmring_pool_config_t *cfg, shmring_task_fn fn, void *ctx,
                                    shmring_pool_t **out);

/*
 * Run the task over n items of item_size bytes at `items`; the result of
 * item i goes to results + i * result_size. Returns when every item is done
 * (0), or when the map failed. n = 0 does nothing and returns 0.
 *
 * Errors:
 *  -EINVAL: NULL p, item_size 0 with n > 0, NULL items with n > 0, NULL
 *           results with n > 0 and result_size > 0, n * item_size or
 *           n * result_size overflowing, or called from a process other
 *           than the pool's creator;
 *  -EINVAL also: items or results that overlap the arena without lying
 *           inside one live block of shmring_pool_alloc (shared-memory mode);
 *  -EMSGSIZE: shared-memory mode, items or results to copy, and one item
 *           and its result do not fit in the arena (item_size + result_size
 *           + 64 > arena_size);
 *  -ENOMEM: shared-memory mode, items or results to copy, and the arena's
 *           free space (what shmring_pool_alloc blocks leave) cannot stage
 *           one item and its result;
 *  any negative errno returned by the task: the map stops handing out work
 *           and fails with the error of the lowest failing item index seen
 *           (items after it may or may not have run; shmring_pool_last_error_item
 *           gives that index). A positive return value, or one below -4095,
 *           counts as -EINVAL;
 *  -ECHILD: worker processes died SHMRING_POOL_MAX_KILLS times on the same
 *           item (shmring_pool_last_error_item gives it), or kept dying
 *           without finishing any work (then the last error item is
 *           SIZE_MAX);
 *  -EAGAIN: a replacement worker could not be forked and no worker is left;
 *  -EPROTO: a worker sent back a malformed reply (message passing), or a
 *           task wrote over the pool's control page (shared memory: the
 *           round parameters, a chunk's state, error or done count, or the
 *           abort word changed under the parent); every worker is then
 *           restarted.
 * On error the contents of `results` are unspecified; the pool stays
 * usable and the next map starts afresh.
 */
SHMRING_API int shmring_pool_map(shmring_pool_t *p, const void *items, size_t n, size_t item_size,
                                 void *results, size_t result_size);

/*
 * Run fn over the indices [0, n), cut into ranges of consecutive indices
 * (about 8 per worker, at most SHMRING_POOL_MAX_RANGES), one call per
 * range. n = 0 does nothing and returns 0.
 *
 * `ctx` is passed as it is. In worker processes it therefore points into
 * each worker's forked copy of the caller's memory as it was when the
 * worker was started: data that the task reads must be in the arena
 * (shmring_pool_alloc) or unchanged since shmring_pool_create, and
 * everything it writes must go to the arena (a worker's other writes stay
 * in the worker). In threads mode ctx is the caller's memory itself.
 *
 * Message-passing mode (SHMRING_POOL_MESSAGE_PASSING, or no shared memory): a range
 * task could return nothing from another process, so the calling thread
 * runs the ranges itself, in order (the same results, without the
 * parallelism; said once per pool through the log hook).
 *
 * Errors: -EINVAL (NULL p or fn, or called from a process other than the
 * pool's creator); any negative errno returned by the task (the lowest
 * failing range's; shmring_pool_last_error_item gives its begin index; a
 * positive return, or one below -4095, counts as -EINVAL); -ECHILD (worker
 * processes died SHMRING_POOL_MAX_KILLS times on the same range:
 * shmring_pool_last_error_item gives its begin, or kept dying without
 * finishing any range); -EAGAIN (no worker could be restarted); -EPROTO (a
 * task wrote over the pool's control page).
 */
SHMRING_API int shmring_pool_map_range(shmring_pool_t *p, size_t n, shmring_range_fn fn, void *ctx);

/*
 * Allocate `bytes` (rounded up to 64, 64-byte aligned) from the pool's
 * shared arena (shmring_pool_config_t.arena_size bytes, shared with the
 * staging of maps that copy). The memory is mapped at the same address in
 * the caller and in every worker, so a task may follow pointers into it;
 * items and results of shmring_pool_map that lie in one block are read and
 * written in place, without a copy. The contents are not cleared (a fresh
 * arena is zero-filled). Blocks live until shmring_pool_free or
 * shmring_pool_destroy.
 *
 * Threads and message-passing modes have no arena: the block comes from
 * the process heap (64-byte aligned) and is tracked the same way, so code
 * written for the shared-memory mode runs unchanged; shmring_pool_map then
 * uses it as it uses any memory (threads: in place; message passing:
 * copied over the sockets), and arena_size does not limit it.
 *
 * Returns the block, or NULL with errno set: EINVAL (NULL p, bytes 0, or
 * called from a process other than the pool's creator); ENOMEM (no free
 * run of the arena is that large, or the heap is exhausted).
 */
SHMRING_API void *shmring_pool_alloc(shmring_pool_t *p, size_t bytes);

/*
 * Give back a block from shmring_pool_alloc. Must not be called while a map
 * that uses the block runs (a pool is used by one thread at a time).
 * Errors: -EINVAL (NULL p or ptr; ptr not the start of a live block of this
 * pool: never allocated, inside a block, from another pool, or already
 * freed: a double free is refused and changes nothing; called from a
 * process other than the pool's creator).
 */
SHMRING_API int shmring_pool_free(shmring_pool_t *p, void *ptr);

/* Number of workers (>= 1); -EINVAL for NULL. */
SHMRING_API int shmring_pool_workers(const shmring_pool_t *p);

/* SHMRING_POOL_MODE_SHARED, _MESSAGE_PASSING or _THREADS; -EINVAL for NULL. */
SHMRING_API int shmring_pool_mode(const shmring_pool_t *p);

/*
 * Index of the item that failed the last map (the lowest failing index seen,
 * or the item that kept killing workers); SIZE_MAX when the last map
 * succeeded, failed for another reason, or p is NULL.
 */
SHMRING_API size_t shmring_pool_last_error_item(const shmring_pool_t *p);

/*
 * Copy the pids of the current worker processes into pids[0..cap) and
 * return how many workers there are (which may exceed cap). May be called
 * from another thread while a map runs (a pid may then be that of a worker
 * being replaced). Threads mode: returns 0. Errors: -EINVAL (NULL p, or
 * NULL pids with cap > 0).
 */
SHMRING_API int shmring_pool_pids(const shmring_pool_t *p, pid_t *pids, size_t cap);

/*
 * Worker processes that died and were replaced since the pool was created.
 * 0 for NULL and in threads mode.
 */
SHMRING_API uint64_t shmring_pool_restarts(const shmring_pool_t *p);

/*
 * Stop every worker and free the pool: worker processes are told to exit,
 * killed (SIGKILL) if they have not exited within about 100 ms, and reaped,
 * so that no zombie is left; worker threads are joined; the arena and every
 * block of shmring_pool_alloc are freed. NULL is ignored.
 * Called in a forked child of the pool's creator, it only frees the
 * child's copy of the handle and leaves the workers alone.
 */
SHMRING_API void shmring_pool_destroy(shmring_pool_t *p);

#endif /* SHMRING_POOL_H */
