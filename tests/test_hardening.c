/* Hardening: NULL and zero arguments, lengths, names, hostile files, full file systems, descriptor
 * limits, modes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "segment.h"

/* ---- Helpers ------------------------------------------------------------ */

/* A private shm directory ($SHMRING_SHM_DIR): nothing reaches /dev/shm. */
struct shm_dir {
    char path[64];
    char *saved; /* previous $SHMRING_SHM_DIR, or NULL */
};

static void dir_open(struct shm_dir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/shmring-hard-XXXXXX");
    cr_assert_not_null(mkdtemp(d->path), "mkdtemp: %s", strerror(errno));
    const char *old = getenv("SHMRING_SHM_DIR");
    d->saved = old != NULL ? strdup(old) : NULL;
    cr_assert_eq(setenv("SHMRING_SHM_DIR", d->path, 1), 0);
}

static void dir_close(struct shm_dir *d)
{
    test_remove_dir(d->path);
    if (d->saved != NULL)
        setenv("SHMRING_SHM_DIR", d->saved, 1);
    else
        unsetenv("SHMRING_SHM_DIR");
    free(d->saved);
}

static void skip_on_heap(void)
{
    if (test_heap_forced())
        cr_skip_test("needs named shared memory files");
}

static shmring_t *ring_make(const char *name, uint32_t slots, uint32_t slot_size)
{
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = slots, .slot_size = slot_size);
    shmring_t *r = NULL;
    int rc = shmring_create(name, &cfg, &r);
    cr_assert_eq(rc, 0, "create %s: %s", name ? name : "(anonymous)", shmring_strerror(rc));
    return r;
}

static shmring_state_t *state_make(const char *name, uint32_t entries, uint32_t value_size)
{
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = value_size);
    shmring_state_t *s = NULL;
    int rc = shmring_state_create(name, &cfg, &s);
    cr_assert_eq(rc, 0, "state create %s: %s", name ? name : "(anonymous)", shmring_strerror(rc));
    return s;
}

/* Push checksummed messages first..first+n-1 of length len (>= 16). */
static void push_ids(shmring_t *p, uint64_t first, uint64_t n, size_t len)
{
    unsigned char buf[256];
    for (uint64_t id = first; id < first + n; id++) {
        test_fill(buf, len, id);
        int rc = shmring_push(p, buf, len);
        cr_assert_eq(rc, 0, "push %llu: %s", (unsigned long long)id, shmring_strerror(rc));
    }
}

static void pop_ids(shmring_t *c, uint64_t first, uint64_t n, size_t len)
{
    unsigned char buf[256];
    for (uint64_t id = first; id < first + n; id++) {
        ssize_t got = shmring_pop(c, buf, sizeof buf);
        cr_assert_eq(got, (ssize_t)len, "pop %llu: %zd", (unsigned long long)id, got);
        uint64_t seen = 0;
        cr_assert(test_check(buf, len, &seen), "message %llu torn", (unsigned long long)id);
        cr_assert_eq(seen, id, "expected message %llu, got %llu", (unsigned long long)id,
                     (unsigned long long)seen);
    }
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "more messages than pushed");
}

/* Write a checksummed value of id to key, read it back through another handle. */
static void state_roundtrip(shmring_state_t *w, shmring_state_t *r, const char *key, uint64_t id)
{
    unsigned char v[32], out[64];
    test_fill(v, sizeof v, id);
    cr_assert_eq(shmring_state_write(w, key, v, sizeof v), 0);
    cr_assert_eq(shmring_state_read(r, key, out, sizeof out), (ssize_t)sizeof v);
    uint64_t seen = 0;
    cr_assert(test_check(out, sizeof v, &seen) && seen == id, "value of %s", key);
}

/* Overwrite `len` bytes at `off` of the file of a segment. */
static void patch(const struct shm_dir *d, const char *name, size_t off, const void *v, size_t len)
{
    int fd = open(test_seg_path(d->path, name), O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, v, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* ---- NULL, zero and lengths ---------------------------------------------- */

Test(hardening, ring_null_and_zero_arguments)
{
    test_quiet_log();
    /* One handle with both roles: the same on every backend. */
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 4, .slot_size = 64,
                                               .flags = SHMRING_PRODUCER | SHMRING_CONSUMER);
    shmring_t *p = NULL, *c = NULL;
    cr_assert_eq(shmring_create(NULL, &cfg, &p), 0);
    c = p;
    unsigned char buf[64] = {0};
    shmring_stats_t st;
    cr_assert_eq(shmring_push(NULL, buf, 1), -EINVAL);
    cr_assert_eq(shmring_push(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(shmring_pop(NULL, buf, sizeof buf), -EINVAL);
    cr_assert_eq(shmring_pop(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(shmring_push(p, NULL, 1), -EINVAL, "NULL message with a length");
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN, "a refused push pushed");
    cr_assert_eq(shmring_stats(NULL, &st), -EINVAL);
    cr_assert_eq(shmring_stats(p, NULL), -EINVAL);
    cr_assert_eq(shmring_missed(NULL), 0);
    cr_assert_eq(shmring_open_fd(-1, SHMRING_CONSUMER, &c), -EBADF);
    cr_assert_eq(shmring_open_fd(INT_MAX, SHMRING_CONSUMER, &c), -EBADF);
    /* A zero-length message needs no buffer on either side. */
    cr_assert_eq(shmring_push(p, NULL, 0), 0);
    push_ids(p, 1, 1, 40);
    cr_assert_eq(shmring_pop(c, NULL, 1), -EINVAL, "NULL buffer with a capacity");
    cr_assert_eq(shmring_pop(c, NULL, 0), 0, "the empty message");
    cr_assert_eq(shmring_pop(c, NULL, 0), -EMSGSIZE, "40 bytes into no buffer");
    pop_ids(c, 1, 1, 40);
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.pushed, 2, "refused calls were counted as pushes");
    cr_assert_eq(st.popped, 2);
    /* Error text for anything, never NULL. */
    const int errs[] = {0, -EINVAL, EINVAL, -EPROTO, INT_MIN, INT_MAX, -4095, 100000};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        const char *t = shmring_strerror(errs[i]);
        cr_assert_not_null(t);
        cr_assert_gt(strlen(t), 0, "empty text for %d", errs[i]);
    }
    shmring_set_log(NULL, NULL); /* restores the default hook */
    test_quiet_log();
    shmring_close(p);
}

Test(hardening, state_null_and_zero_arguments)
{
    test_quiet_log();
    shmring_state_t *s = NULL, *t = (shmring_state_t *)(uintptr_t)0x1;
    cr_assert_eq(shmring_state_create(NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(shmring_state_open(NULL, 0, &t), -EINVAL);
    cr_assert_eq(shmring_state_unlink(NULL), -EINVAL);
    cr_assert_eq(shmring_state_open_fd(-1, 0, &t), -EBADF);
    cr_assert_eq(shmring_state_open_fd(INT_MAX, 0, &t), -EBADF);
    /* Sizes: 0 means the default; others must be powers of two in range. */
    const uint32_t bad_entries[] = {3, 6, 1000, 1u << 25, 1u << 31, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_entries / sizeof bad_entries[0]; i++) {
        shmring_state_config_t cfg =
            SHMRING_STATE_CONFIG_INIT(.entries = bad_entries[i], .value_size = 8);
        cr_assert_eq(shmring_state_create(NULL, &cfg, &t), -EINVAL, "entries %u", bad_entries[i]);
    }
    shmring_state_config_t big = SHMRING_STATE_CONFIG_INIT(.entries = 4, .value_size = UINT32_MAX);
    cr_assert_eq(shmring_state_create(NULL, &big, &t), -EINVAL, "value_size UINT32_MAX");
    cr_assert_eq(t, (shmring_state_t *)(uintptr_t)0x1, "a failed call wrote *out");
    shmring_state_config_t one = SHMRING_STATE_CONFIG_INIT(.entries = 1, .value_size = 1);
    cr_assert_eq(shmring_state_create(NULL, &one, &s), 0, "the smallest table");
    cr_assert_eq(shmring_state_entries(s), 1);
    int fd = shmring_state_fd(s);
    if (fd >= 0) {
        cr_assert_eq(shmring_state_open_fd(fd, 0, NULL), -EINVAL);
        cr_assert_eq(shmring_state_open_fd(fd, 0x80000000u, &t), -EINVAL);
        cr_assert_geq(fcntl(fd, F_GETFD), 0, "a failed open_fd closed the descriptor");
    }
    /* Zero-length values need no buffer. */
    cr_assert_eq(shmring_state_write(s, "k", NULL, 0), 0);
    cr_assert_eq(shmring_state_read(s, "k", NULL, 0), 0);
    cr_assert_eq(shmring_state_write(s, "other", "x", 1), -ENOSPC, "one entry, one key");
    cr_assert_eq(shmring_state_write(s, "k", "y", 2), -EMSGSIZE);
    char out[4];
    cr_assert_eq(shmring_state_write(s, "k", "z", 1), 0);
    cr_assert_eq(shmring_state_read(s, "k", out, sizeof out), 1);
    cr_assert_eq(out[0], 'z');
    shmring_state_close(s);
}

/* Every length at and around the slot size, on every path that takes one. */
Test(hardening, lengths_around_the_slot_size)
{
    test_quiet_log();
    const uint32_t sizes[] = {16, 17, 63, 64, 65, 200};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint32_t ss = sizes[i];
        shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 2, .slot_size = ss,
                                                   .flags = SHMRING_PRODUCER | SHMRING_CONSUMER);
        shmring_t *r = NULL;
        cr_assert_eq(shmring_create(NULL, &cfg, &r), 0);
        unsigned char buf[256];
        void *payload = NULL;
        cr_assert_eq(shmring_push(r, buf, ss + 1), -EMSGSIZE, "slot %u", ss);
        cr_assert_eq(shmring_push(r, buf, SIZE_MAX), -EMSGSIZE);
        cr_assert_eq(shmring_reserve(r, ss + 1, &payload), -EMSGSIZE);
        cr_assert_eq(shmring_reserve(r, SIZE_MAX, &payload), -EMSGSIZE);
        struct iovec over = {buf, ss + 1};
        cr_assert_eq(shmring_push_batch(r, &over, 1), -EMSGSIZE);
        cr_assert_eq(shmring_pop(r, buf, sizeof buf), -EAGAIN, "a refused length pushed");
        push_ids(r, i, 1, ss); /* exactly the slot size */
        cr_assert_eq(shmring_pop(r, buf, ss - 1), -EMSGSIZE, "one byte short");
        struct iovec small = {buf, ss - 1};
        cr_assert_eq(shmring_pop_batch(r, &small, 1), -EMSGSIZE);
        shmring_msg_t m;
        pop_ids(r, i, 1, ss); /* still there, whole */
        cr_assert_eq(shmring_claim(r, &m), -EAGAIN);
        shmring_close(r);
    }
}

/* ---- Names --------------------------------------------------------------- */

Test(hardening, bad_names_everywhere)
{
    test_quiet_log();
    struct shm_dir d;
    dir_open(&d);
    char too_long[SHMRING_NAME_MAX + 2];
    too_long[0] = '/';
    memset(too_long + 1, 'n', SHMRING_NAME_MAX);
    too_long[SHMRING_NAME_MAX + 1] = '\0';
    const char *bad[] = {"",    "x",    "feed",  "/",       "/a/b",  "//a",   "/a/",   "/.",
                         "/..", "../x", "/../x", "/x/../y", "/a\nb", "/\x7f", "/\x01", too_long};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmring_t *r = (shmring_t *)(uintptr_t)0x1;
        shmring_state_t *s = (shmring_state_t *)(uintptr_t)0x1;
        cr_assert_eq(shmring_create(bad[i], NULL, &r), -EINVAL, "ring create, name #%zu", i);
        cr_assert_eq(shmring_open(bad[i], SHMRING_CONSUMER, &r), -EINVAL, "ring open #%zu", i);
        cr_assert_eq(shmring_unlink(bad[i]), -EINVAL, "ring unlink #%zu", i);
        cr_assert_eq(shmring_state_create(bad[i], NULL, &s), -EINVAL, "state create #%zu", i);
        cr_assert_eq(shmring_state_open(bad[i], 0, &s), -EINVAL, "state open #%zu", i);
        cr_assert_eq(shmring_state_unlink(bad[i]), -EINVAL, "state unlink #%zu", i);
        cr_assert_eq(r, (shmring_t *)(uintptr_t)0x1);
        cr_assert_eq(s, (shmring_state_t *)(uintptr_t)0x1);
    }
    cr_assert_eq(test_dir_count(d.path), 0, "a refused name left a file");
    /* One byte shorter is the longest name: a state table accepts it too. */
    too_long[SHMRING_NAME_MAX] = '\0';
    shmring_state_t *a = state_make(too_long, 4, 32), *b = NULL;
    cr_assert_eq(shmring_state_open(too_long, 0, &b), 0);
    state_roundtrip(a, b, "key", 7);
    shmring_state_close(b);
    shmring_state_close(a);
    cr_assert_eq(shmring_state_unlink(too_long), 0);
    cr_assert_eq(test_dir_count(d.path), 0);
    dir_close(&d);
}

/* ---- Hostile files --------------------------------------------------------- */

/* Open through a descriptor of the file itself, as a peer that passes one. */
static int open_fd_of(const struct shm_dir *d, const char *name, int state, uint32_t flags)
{
    int fd = open(test_seg_path(d->path, name), O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    int rc;
    if (state) {
        shmring_state_t *s = NULL;
        rc = shmring_state_open_fd(fd, flags, &s);
        shmring_state_close(s);
    } else {
        shmring_t *r = NULL;
        rc = shmring_open_fd(fd, flags | SHMRING_CONSUMER, &r);
        shmring_close(r);
    }
    close(fd);
    return rc;
}

Test(hardening, segment_of_another_user_refused)
{
    skip_on_heap();
    if (geteuid() != 0)
        cr_skip_test("changing a file's owner to uid 65534 needs root");
    test_quiet_log();
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = ring_make("/foreign-ring", 8, 64);
    shmring_state_t *s = state_make("/foreign-state", 4, 32);
    cr_assert_eq(chown(test_seg_path(d.path, "/foreign-ring"), 65534, 65534), 0);
    cr_assert_eq(chown(test_seg_path(d.path, "/foreign-state"), 65534, 65534), 0);
    shmring_t *c = NULL;
    shmring_state_t *t = NULL;
    cr_assert_eq(shmring_open("/foreign-ring", SHMRING_CONSUMER, &c), -EACCES);
    cr_assert_eq(shmring_open("/foreign-ring", SHMRING_OBSERVER, &c), -EACCES);
    cr_assert_eq(shmring_state_open("/foreign-state", 0, &t), -EACCES);
    cr_assert_eq(open_fd_of(&d, "/foreign-ring", 0, 0), -EACCES);
    cr_assert_eq(open_fd_of(&d, "/foreign-state", 1, 0), -EACCES);
    /* Allowed explicitly: works, and the data is the creator's. */
    cr_assert_eq(open_fd_of(&d, "/foreign-ring", 0, SHMRING_ALLOW_INSECURE), 0);
    cr_assert_eq(shmring_open("/foreign-ring", SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &c), 0);
    push_ids(p, 0, 5, 32);
    pop_ids(c, 0, 5, 32);
    cr_assert_eq(shmring_state_open("/foreign-state", SHMRING_ALLOW_INSECURE, &t), 0);
    state_roundtrip(s, t, "k", 9);
    shmring_state_close(t);
    shmring_close(c);
    shmring_state_close(s);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/foreign-ring"), 0);
    cr_assert_eq(shmring_state_unlink("/foreign-state"), 0);
    dir_close(&d);
}

Test(hardening, symlink_refused_for_both_objects)
{
    skip_on_heap();
    test_quiet_log();
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = ring_make("/real-ring", 8, 64);
    shmring_state_t *s = state_make("/real-state", 4, 32);
    char target[512];
    snprintf(target, sizeof target, "%s", test_seg_path(d.path, "/real-ring"));
    cr_assert_eq(symlink(target, test_seg_path(d.path, "/ring-link")), 0);
    snprintf(target, sizeof target, "%s", test_seg_path(d.path, "/real-state"));
    cr_assert_eq(symlink(target, test_seg_path(d.path, "/state-link")), 0);
    /* A link to a file outside the directory is not followed either. */
    cr_assert_eq(symlink("/etc/passwd", test_seg_path(d.path, "/outside")), 0);
    shmring_t *c = NULL;
    shmring_state_t *t = NULL;
    cr_assert_eq(shmring_open("/ring-link", SHMRING_CONSUMER, &c), -ELOOP);
    cr_assert_eq(shmring_open("/ring-link", SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &c), -ELOOP);
    cr_assert_eq(shmring_state_open("/state-link", 0, &t), -ELOOP);
    cr_assert_eq(shmring_state_open("/state-link", SHMRING_ALLOW_INSECURE, &t), -ELOOP);
    cr_assert_eq(shmring_open("/outside", SHMRING_CONSUMER, &c), -ELOOP);
    cr_assert_eq(shmring_state_open("/outside", 0, &t), -ELOOP);
    cr_assert_eq(shmring_state_create("/state-link", NULL, &t), -EEXIST);
    /* Unlink removes the link, not what it points to. */
    cr_assert_eq(shmring_state_unlink("/state-link"), 0);
    cr_assert_eq(shmring_state_open("/real-state", 0, &t), 0);
    state_roundtrip(s, t, "k", 3);
    shmring_state_close(t);
    struct stat st;
    cr_assert_eq(stat("/etc/passwd", &st), 0);
    shmring_state_close(s);
    shmring_close(p);
    dir_close(&d);
}

/* A state table whose header names another type or layout version. */
Test(hardening, state_table_of_wrong_type_or_version)
{
    skip_on_heap();
    test_quiet_log();
    struct shm_dir d;
    dir_open(&d);
    struct {
        const char *what;
        size_t off;
        uint32_t value;
        int expected;
    } cases[] = {
        {"layout 2", offsetof(struct shmring__hdr, layout), SHMRING__LAYOUT + 1, -EPROTONOSUPPORT},
        {"layout 0", offsetof(struct shmring__hdr, layout), 0, -EPROTONOSUPPORT},
        {"type ring", offsetof(struct shmring__hdr, type), SHMRING__TYPE_RING, -EPROTOTYPE},
        {"type 77", offsetof(struct shmring__hdr, type), 77, -EPROTO},
        {"magic", offsetof(struct shmring__hdr, magic), 0x12345678u, -EPROTO},
        {"entries 3", offsetof(struct shmring__hdr, param[0]), 3, -EPROTO},
        {"value_size 0", offsetof(struct shmring__hdr, param[1]), 0, -EPROTO},
        {"flags", offsetof(struct shmring__hdr, flags), SHMRING_OVERWRITE, -EPROTO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        shmring_state_t *s = state_make("/typed", 4, 32);
        shmring_state_close(s);
        uint32_t saved;
        int fd = open(test_seg_path(d.path, "/typed"), O_RDONLY);
        cr_assert_eq(pread(fd, &saved, sizeof saved, (off_t)cases[i].off), (ssize_t)sizeof saved);
        close(fd);
        patch(&d, "/typed", cases[i].off, &cases[i].value, sizeof cases[i].value);
        shmring_state_t *t = NULL;
        int rc = shmring_state_open("/typed", 0, &t);
        cr_assert_eq(rc, cases[i].expected, "%s: %s", cases[i].what, shmring_strerror(rc));
        cr_assert_eq(open_fd_of(&d, "/typed", 1, 0), cases[i].expected, "%s by fd", cases[i].what);
        /* Put back: the corruption, and nothing else, was the cause. */
        patch(&d, "/typed", cases[i].off, &saved, sizeof saved);
        cr_assert_eq(shmring_state_open("/typed", 0, &t), 0, "%s restored", cases[i].what);
        shmring_state_close(t);
        cr_assert_eq(shmring_state_unlink("/typed"), 0);
    }
    dir_close(&d);
}

Test(hardening, state_table_truncated_after_creation)
{
    skip_on_heap();
    test_quiet_log();
    struct shm_dir d;
    dir_open(&d);
    shmring_state_t *s = state_make("/cut", 4, 32);
    shmring_state_close(s);
    struct stat st;
    cr_assert_eq(stat(test_seg_path(d.path, "/cut"), &st), 0);
    const off_t sizes[] = {st.st_size - 64,  SHMRING__HEADER_SIZE, SHMRING__HEADER_SIZE - 1, 64, 0,
                           st.st_size + 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        shmring_state_close(state_make("/trunc", 4, 32));
        cr_assert_eq(truncate(test_seg_path(d.path, "/trunc"), sizes[i]), 0);
        shmring_state_t *t = NULL;
        int rc = shmring_state_open("/trunc", 0, &t);
        /* An empty file is one whose creator has not sized it yet. */
        int want = sizes[i] == 0 ? -EAGAIN : -EPROTO;
        cr_assert_eq(rc, want, "size %lld: %s", (long long)sizes[i], shmring_strerror(rc));
        cr_assert_eq(shmring_state_unlink("/trunc"), 0);
    }
    cr_assert_eq(shmring_state_unlink("/cut"), 0);
    dir_close(&d);
}

/*
 * An anonymous (memfd) segment is sealed against shrinking and growing, so a
 * process that holds its descriptor (shmring_fd() exists to pass it on)
 * cannot ftruncate() it under the mappings of others. (A named segment
 * cannot be sealed: truncating one under an open handle is a documented
 * limitation, see docs/hardening.md.)
 */
Test(hardening, memfd_segment_cannot_be_truncated_under_a_handle)
{
    skip_on_heap();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        test_quiet_log();
        shmring_config_t cfg =
            SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64,
                                .flags = SHMRING_FORCE_MEMFD | SHMRING_NO_FALLBACK);
        shmring_t *p = NULL, *c = NULL;
        if (shmring_create(NULL, &cfg, &p) != 0)
            _exit(2);
        if (shmring_open_fd(shmring_fd(p), SHMRING_CONSUMER, &c) != 0)
            _exit(3);
        /* A peer holding the descriptor shrinks the segment. */
        int rc = ftruncate(shmring_fd(p), SHMRING__HEADER_SIZE);
        unsigned char buf[64] = {0};
        for (int i = 0; i < 16; i++) {
            (void)shmring_push(p, buf, sizeof buf);
            (void)shmring_pop(c, buf, sizeof buf);
        }
        _exit(rc == 0 ? 4 : 0); /* survived, and the shrink was refused */
    }
    int st = test_wait_child(pid);
    cr_assert_eq(st, 0, "child ended with %d (128+%d is a signal: SIGBUS=%d)", st, st - 128,
                 SIGBUS);
}

Test(hardening, full_shm_filesystem_state_table, .timeout = 30)
{
    skip_on_heap();
    test_quiet_log();
    char mnt[] = "/tmp/shmring-hfull-XXXXXX";
    cr_assert_not_null(mkdtemp(mnt));
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k,mode=0700") != 0) {
        int err = errno;
        rmdir(mnt);
        cr_skip_test("cannot mount a 64 KiB tmpfs (%s): needs root and CAP_SYS_ADMIN",
                     strerror(err));
    }
    const char *old = getenv("SHMRING_SHM_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("SHMRING_SHM_DIR", mnt, 1);
    /* A small table fits; 1024 entries of 256 bytes (about 600 KiB) do not. */
    shmring_state_t *small = NULL, *big = NULL;
    int rc_small = shmring_state_create(
        "/small",
        &(shmring_state_config_t)SHMRING_STATE_CONFIG_INIT(.entries = 4, .value_size = 32,
                                                           .flags = 0, .mode = 0),
        &small);
    int rc_big = shmring_state_create(
        "/big",
        &(shmring_state_config_t)SHMRING_STATE_CONFIG_INIT(.entries = 1024, .value_size = 256,
                                                           .flags = 0, .mode = 0),
        &big);
    /* A ring that needs more than what is left fails the same way. */
    shmring_t *ring = NULL;
    shmring_config_t rcfg = SHMRING_CONFIG_INIT(.slots = 1024, .slot_size = 256);
    int rc_ring = shmring_create("/ring", &rcfg, &ring);
    char path[128];
    snprintf(path, sizeof path, "%s/big", mnt);
    struct stat st;
    int left = stat(path, &st) == 0;
    int backend = small ? shmring_state_backend(small) : 0;
    shmring_state_close(small);
    shmring_state_close(big);
    shmring_close(ring);
    shmring_state_unlink("/small");
    shmring_state_unlink("/big");
    shmring_unlink("/ring");
    if (saved)
        setenv("SHMRING_SHM_DIR", saved, 1);
    else
        unsetenv("SHMRING_SHM_DIR");
    free(saved);
    umount2(mnt, MNT_DETACH);
    rmdir(mnt);
    cr_assert_eq(rc_small, 0, "small table: %s", shmring_strerror(rc_small));
    cr_assert_eq(backend, SHMRING_BACKEND_SHM);
    cr_assert_eq(rc_big, -ENOSPC, "table on a full fs: %s (no silent fallback)",
                 shmring_strerror(rc_big));
    cr_assert_eq(rc_ring, -ENOSPC, "ring on a full fs: %s", shmring_strerror(rc_ring));
    cr_assert_not(left, "a failed create left its file on the full file system");
}

/* ---- Descriptor limits ----------------------------------------------------- */

/* Open descriptors of this process. */
static int fd_count(void)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

static int dir_entries(const char *path)
{
    DIR *dir = opendir(path);
    if (dir == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

static int lowest_free_fd(void)
{
    int fd = fcntl(0, F_DUPFD, 0);
    if (fd >= 0)
        close(fd);
    return fd;
}

#define CHILD_FAIL(code, ...)                                                                      \
    do {                                                                                           \
        fprintf(stderr, "descriptor limit: " __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                                       \
        _exit(code);                                                                               \
    } while (0)

/*
 * One call that needs descriptors, under the current limit: 0 or -EMFILE,
 * never anything else; on success the object works and is closed again.
 */
static int limited_call(int op, int ring_fd, int state_fd)
{
    shmring_t *r = NULL;
    shmring_state_t *s = NULL;
    int rc;
    switch (op) {
    case 0:
        rc = shmring_create(
            "/made", &(shmring_config_t)SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64), &r);
        break;
    case 1:
        rc = shmring_open("/ring", SHMRING_CONSUMER, &r);
        break;
    case 2:
        rc = shmring_open_fd(ring_fd, SHMRING_OBSERVER, &r);
        break;
    case 3:
        rc = shmring_create(NULL,
                            &(shmring_config_t)SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64,
                                                                   .flags = SHMRING_NO_FALLBACK),
                            &r);
        break;
    case 4:
        rc = shmring_state_create(
            "/made-state",
            &(shmring_state_config_t)SHMRING_STATE_CONFIG_INIT(.entries = 4, .value_size = 16,
                                                               .flags = 0, .mode = 0),
            &s);
        break;
    case 5:
        rc = shmring_state_open("/state", 0, &s);
        break;
    default:
        rc = shmring_state_open_fd(state_fd, 0, &s);
        break;
    }
    shmring_close(r);
    shmring_state_close(s);
    shmring_unlink("/made");
    shmring_state_unlink("/made-state");
    return rc;
}

static void descriptor_limit_child(const char *dir)
{
    test_quiet_log();
    shmring_t *ring = NULL;
    shmring_state_t *state = NULL;
    if (shmring_create("/ring", &(shmring_config_t)SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64),
                       &ring) != 0 ||
        shmring_state_create(
            "/state",
            &(shmring_state_config_t)SHMRING_STATE_CONFIG_INIT(.entries = 4, .value_size = 16,
                                                               .flags = 0, .mode = 0),
            &state) != 0)
        CHILD_FAIL(2, "setup failed");
    int ring_fd = shmring_fd(ring), state_fd = shmring_state_fd(state);
    struct rlimit saved;
    getrlimit(RLIMIT_NOFILE, &saved);
    int fds = fd_count(), files = dir_entries(dir);
    int failures = 0;
    for (int slack = 0; slack < 5; slack++) {
        for (int op = 0; op < 7; op++) {
            struct rlimit low = saved;
            low.rlim_cur = (rlim_t)(lowest_free_fd() + slack);
            if (setrlimit(RLIMIT_NOFILE, &low) != 0)
                CHILD_FAIL(3, "setrlimit: %s", strerror(errno));
            int rc = limited_call(op, ring_fd, state_fd);
            setrlimit(RLIMIT_NOFILE, &saved);
            if (rc != 0 && rc != -EMFILE)
                CHILD_FAIL(4, "op %d, %d spare: %s instead of EMFILE", op, slack,
                           shmring_strerror(rc));
            if (slack == 0 && rc != -EMFILE)
                CHILD_FAIL(5, "op %d succeeded without a spare descriptor", op);
            failures += rc != 0;
            if (fd_count() != fds)
                CHILD_FAIL(6, "op %d, %d spare (%s): %d descriptors instead of %d", op, slack,
                           shmring_strerror(rc), fd_count(), fds);
            if (dir_entries(dir) != files)
                CHILD_FAIL(7, "op %d, %d spare (%s) left a file", op, slack, shmring_strerror(rc));
        }
    }
    if (failures < 7)
        CHILD_FAIL(8, "only %d calls hit the limit", failures);
    /* With the limit raised again, everything works. */
    for (int op = 0; op < 7; op++)
        if (limited_call(op, ring_fd, state_fd) != 0)
            CHILD_FAIL(9, "op %d fails after the limit was raised", op);
    shmring_t *c = NULL;
    unsigned char buf[64], out[64];
    test_fill(buf, sizeof buf, 42);
    uint64_t id = 0;
    if (shmring_open("/ring", SHMRING_CONSUMER, &c) != 0 || shmring_push(ring, buf, 64) != 0 ||
        shmring_pop(c, out, sizeof out) != 64 || !test_check(out, 64, &id) || id != 42)
        CHILD_FAIL(10, "ring does not carry a message after the limit was raised");
    shmring_close(c);
    shmring_close(ring);
    shmring_state_close(state);
    shmring_unlink("/ring");
    shmring_state_unlink("/state");
    _exit(0);
}

Test(hardening, descriptor_limit_gives_emfile_and_leaks_nothing, .timeout = 60)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        descriptor_limit_child(d.path);
    int st = test_wait_child(pid);
    int left = test_dir_count(d.path);
    dir_close(&d);
    cr_assert_eq(st, 0, "child failed with %d (see its message above)", st);
    cr_assert_eq(left, 0);
}

/* ---- Modes ------------------------------------------------------------------ */

Test(hardening, world_writable_state_table_refused)
{
    skip_on_heap();
    test_quiet_log();
    struct shm_dir d;
    dir_open(&d);
    shmring_state_t *s = state_make("/ww", 4, 32), *t = NULL;
    const mode_t refused[] = {0602, 0606, 0666, 0777, 0642};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        cr_assert_eq(chmod(test_seg_path(d.path, "/ww"), refused[i]), 0);
        cr_assert_eq(shmring_state_open("/ww", 0, &t), -EACCES, "mode %o", refused[i]);
        cr_assert_eq(open_fd_of(&d, "/ww", 1, 0), -EACCES, "mode %o by fd", refused[i]);
        cr_assert_eq(shmring_state_open("/ww", SHMRING_ALLOW_INSECURE, &t), 0);
        state_roundtrip(s, t, "k", i);
        shmring_state_close(t);
    }
    cr_assert_eq(chmod(test_seg_path(d.path, "/ww"), 0600), 0);
    cr_assert_eq(shmring_state_open("/ww", 0, &t), 0);
    shmring_state_close(t);
    /* A world-writable ring opened by descriptor is refused like by name. */
    shmring_t *p = ring_make("/ww-ring", 8, 64);
    cr_assert_eq(chmod(test_seg_path(d.path, "/ww-ring"), 0666), 0);
    cr_assert_eq(open_fd_of(&d, "/ww-ring", 0, 0), -EACCES);
    cr_assert_eq(open_fd_of(&d, "/ww-ring", 0, SHMRING_ALLOW_INSECURE), 0);
    shmring_close(p);
    shmring_state_close(s);
    dir_close(&d);
}

static mode_t mode_of_fd(int fd)
{
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(st.st_uid, geteuid());
    return st.st_mode & 07777;
}

Test(hardening, fresh_segments_private_under_umask_0)
{
    skip_on_heap();
    test_quiet_log();
    struct shm_dir d;
    dir_open(&d);
    mode_t old = umask(0);
    shmring_t *named = ring_make("/fresh-ring", 8, 64);
    shmring_state_t *named_state = state_make("/fresh-state", 4, 32);
    shmring_t *anon = ring_make(NULL, 8, 64);
    shmring_state_t *anon_state = state_make(NULL, 4, 32);
    umask(old);
    cr_assert_eq(mode_of_fd(shmring_fd(named)), 0600);
    cr_assert_eq(mode_of_fd(shmring_state_fd(named_state)), 0600);
    struct stat st;
    cr_assert_eq(stat(test_seg_path(d.path, "/fresh-ring"), &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600, "named ring %o", (unsigned)(st.st_mode & 07777));
    cr_assert_eq(stat(test_seg_path(d.path, "/fresh-state"), &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600, "named table %o", (unsigned)(st.st_mode & 07777));
    cr_assert_eq(shmring_backend(anon), SHMRING_BACKEND_MEMFD);
    cr_assert_eq(mode_of_fd(shmring_fd(anon)), 0600, "memfd ring");
    cr_assert_eq(mode_of_fd(shmring_state_fd(anon_state)), 0600, "memfd table");
    shmring_close(named);
    shmring_close(anon);
    shmring_state_close(named_state);
    shmring_state_close(anon_state);
    cr_assert_eq(shmring_unlink("/fresh-ring"), 0);
    cr_assert_eq(shmring_state_unlink("/fresh-state"), 0);
    dir_close(&d);
}
