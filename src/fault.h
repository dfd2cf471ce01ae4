/*
 * Fault injection: named points at every step that another party can
 * observe, compiled in only with SHMRING_FAULT_INJECTION (a CMake option, off
 * by default and refused for installed builds). Without it, SHMRING_FAULT()
 * expands to nothing.
 *
 * At a point, code writes SHMRING_FAULT(RING_P1); the point must be listed in
 * src/fault_points.h, the one table of point names, so that a test can walk
 * all of them (shmring__fault_count / shmring__fault_name).
 *
 * What happens at a point is chosen at run time, by the environment variable
 * SHMRING_FAULT or by shmring__fault_set() with the same syntax:
 *
 *   SHMRING_FAULT=RULE[,RULE...]
 *   RULE   = POINT:ACTION[@N]
 *   ACTION = kill | stop | yield | delay=MICROSECONDS | exit=STATUS | hook
 *
 *   kill    the process sends itself SIGKILL (dies at that instruction)
 *   stop    the process sends itself SIGSTOP (a test resumes it with SIGCONT)
 *   yield   sched_yield()
 *   delay   sleep that many microseconds
 *   exit    _exit(STATUS) (a death the parent can tell from a signal)
 *   hook    call the function set with shmring__fault_hook_set()
 *   @N      act only on the N-th hit of that point (1-based); without it,
 *           on every hit
 *
 * Example: SHMRING_FAULT=ring.Z1:kill,party.seize:delay=3000@2
 *
 * Every hit is counted (shmring__fault_hits), armed or not, so that a test
 * can tell that a point was reached.
 */
#ifndef SHMRING_FAULT_H
#define SHMRING_FAULT_H

#include <stdint.h>

#include "fault_points.h"

enum shmring__fault_point {
#define SHMRING__FAULT_ENUM(id, name, what) SHMRING__FP_##id,
    SHMRING__FAULT_POINTS(SHMRING__FAULT_ENUM)
#undef SHMRING__FAULT_ENUM
        SHMRING__FP_COUNT
};

#if defined(SHMRING_FAULT_INJECTION)

void shmring__fault(enum shmring__fault_point point);
#define SHMRING_FAULT(id) shmring__fault(SHMRING__FP_##id)

/* Replace the armed rules with those of spec (NULL or "" disarms all).
 * Returns 0, or -EINVAL for a spec that does not parse (nothing changes).
 * Not to be called while another thread may be at a point. */
int shmring__fault_set(const char *spec);

/* A test's function for the "hook" action; ctx is passed back. */
typedef void (*shmring__fault_hook_fn)(int point, void *ctx);
void shmring__fault_hook_set(shmring__fault_hook_fn fn, void *ctx);

/* Hits of a point since the process started (or since the last reset). */
uint64_t shmring__fault_hits(int point);
void shmring__fault_reset_hits(void);

#else

#define SHMRING_FAULT(id) ((void)0)

#endif

/* The table, available in every build so that tools and tests can list it. */
int shmring__fault_count(void);
const char *shmring__fault_name(int point);     /* NULL past the end */
const char *shmring__fault_describe(int point); /* what another party sees */
int shmring__fault_lookup(const char *name);    /* index, or -ENOENT */
int shmring__fault_compiled(void);              /* 1 with SHMRING_FAULT_INJECTION */

#endif /* SHMRING_FAULT_H */
