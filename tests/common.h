/* Helpers shared by the test suites. */
#ifndef SHMRING_TEST_COMMON_H
#define SHMRING_TEST_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmring.h"

/* A name unique to this process and call: "/t-<pid>-<tag>-<n>". */
const char *test_name(const char *tag);

/* 1 when the suite runs with SHMRING_FORCE_HEAP (no cross-process tests). */
int test_heap_forced(void);

/* Payload of message `id` with a given length: bytes derived from id, and
 * the first 8 bytes (when len >= 8) hold id, the next 8 a checksum. */
void test_fill(void *buf, size_t len, uint64_t id);
/* 1 if buf/len is a well-formed message; its id in *id (len >= 16). */
int test_check(const void *buf, size_t len, uint64_t *id);

/* Shared anonymous memory visible across fork(). */
void *test_shared_alloc(size_t size);
void test_shared_free(void *p, size_t size);

/* Wait for a child; returns its exit status or 128+signal. */
int test_wait_child(pid_t pid);

/* Scale factor for long tests ($SHMRING_TEST_SCALE, default 1). */
double test_scale(void);

/* 1 when the suite runs under valgrind (make memcheck sets
 * SHMRING_TEST_VALGRIND=1): one thread at a time, 20-50 times slower. */
int test_under_valgrind(void);

/* Silence the fallback log for the duration of a test. */
void test_quiet_log(void);

/* Length of message `id` in a ring of slot_size (> 16) bytes: 16 + id %
 * (slot_size - 15), so that every length from 16 to slot_size comes round. */
size_t test_len_of(uint64_t id, uint32_t slot_size);

/* Create ring `name` (NULL: anonymous) with these slots, slot size and
 * flags; asserts success. */
shmring_t *test_make(const char *name, uint32_t slots, uint32_t slot_size, uint32_t flags);
/* Open ring `name` with these role flags; asserts success. */
shmring_t *test_open_as(const char *name, uint32_t flags);
/* Push message `id` with a test_fill payload of len (<= 256) bytes; asserts
 * success. */
void test_push_id(shmring_t *p, uint64_t id, size_t len);
/* Assert that a pop returned len >= 16 bytes of a well-formed message whose
 * id is `want`. */
void test_expect_id(const void *buf, ssize_t len, uint64_t want);

/* Path of the shmring tool, next to the tests directory:
 * <build>/tests/../shmring; skips the test when it is not built. */
const char *test_tool(void);

/* Entries in directory `path`, "." and ".." aside. */
int test_dir_count(const char *path);
/* The file of segment `name` ("/x") in shm directory `dir` (a per-thread
 * buffer, overwritten by the next call). */
const char *test_seg_path(const char *dir, const char *name);
/* Unlink every entry of directory `path`, then remove it. */
void test_remove_dir(const char *path);

#endif
