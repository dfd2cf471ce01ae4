/* Segments: backends, names, O_EXCL, permissions, header validation, fallback, descriptors. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "ring.h"
#include "segment.h"

/* ---- Helpers ------------------------------------------------------------ */

/* An environment variable set for one test and restored afterwards. */
struct env_saved {
    const char *key;
    char *value; /* previous value, or NULL if it was unset */
};

static void env_set(struct env_saved *s, const char *key, const char *value)
{
    const char *old = getenv(key);
    s->key = key;
    s->value = old != NULL ? strdup(old) : NULL;
    if (value != NULL)
        cr_assert_eq(setenv(key, value, 1), 0);
    else
        unsetenv(key);
}

static void env_restore(struct env_saved *s)
{
    if (s->value != NULL)
        setenv(s->key, s->value, 1);
    else
        unsetenv(s->key);
    free(s->value);
    s->value = NULL;
}

/* A private shm directory ($SHMRING_SHM_DIR) so that nothing reaches /dev/shm. */
struct shm_dir {
    char path[64];
    struct env_saved env;
};

static void dir_open(struct shm_dir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/shmring-seg-XXXXXX");
    cr_assert_not_null(mkdtemp(d->path), "mkdtemp: %s", strerror(errno));
    env_set(&d->env, "SHMRING_SHM_DIR", d->path);
}

static void dir_close(struct shm_dir *d)
{
    test_remove_dir(d->path);
    env_restore(&d->env);
}

/* Log hook that records what it receives. */
struct log_capture {
    int lines;
    char last[512];
};

static void capture_log(const char *line, void *ctx)
{
    struct log_capture *c = ctx;
    c->lines++;
    snprintf(c->last, sizeof c->last, "%s", line);
}

static shmring_t *make(const char *name, uint32_t slots, uint32_t slot_size, uint32_t flags)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = slots, .slot_size = slot_size, .flags = flags);
    shmring_t *r = NULL;
    int rc = shmring_create(name, &cfg, &r);
    cr_assert_eq(rc, 0, "create %s: %s", name ? name : "(anonymous)", shmring_strerror(rc));
    return r;
}

/* Push ids [first, first+n) with checksummed payloads; the ring must have room. */
static void push_ids(shmring_t *p, uint64_t first, uint64_t n)
{
    uint32_t ss = shmring_slot_size(p);
    unsigned char buf[1024];
    cr_assert_leq(ss, sizeof buf);
    for (uint64_t id = first; id < first + n; id++) {
        size_t len = test_len_of(id, ss);
        test_fill(buf, len, id);
        int rc = shmring_push(p, buf, len);
        cr_assert_eq(rc, 0, "push %llu: %s", (unsigned long long)id, shmring_strerror(rc));
    }
}

/* Pop ids [first, first+n) in order, each intact, then find the ring empty. */
static void pop_ids(shmring_t *c, uint64_t first, uint64_t n)
{
    uint32_t ss = shmring_slot_size(c);
    unsigned char buf[1024];
    for (uint64_t id = first; id < first + n; id++) {
        ssize_t len = shmring_pop(c, buf, sizeof buf);
        cr_assert_eq(len, (ssize_t)test_len_of(id, ss), "pop %llu: %zd (%s)",
                     (unsigned long long)id, len, shmring_strerror((int)len));
        uint64_t got = UINT64_MAX;
        cr_assert(test_check(buf, (size_t)len, &got), "message %llu torn", (unsigned long long)id);
        cr_assert_eq(got, id);
    }
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
}

static void skip_on_heap(void)
{
    if (test_heap_forced())
        cr_skip_test("needs the shm backend (SHMRING_FORCE_HEAP is set)");
}

/* ---- Create, open, close, unlink ---------------------------------------- */

Test(segment, named_shm_lifecycle)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    const char *name = "/lifecycle";
    shmring_t *p = make(name, 16, 64, 0);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_SHM);
    struct stat st;
    cr_assert_eq(stat(test_seg_path(d.path, name), &st), 0, "segment file missing in the shm dir");
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq((uint64_t)st.st_size, SHMRING__RING_DATA + 16ull * 128);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    cr_assert_eq(shmring_backend(c), SHMRING_BACKEND_SHM);
    cr_assert_eq(shmring_slots(c), 16);
    cr_assert_eq(shmring_slot_size(c), 64);
    push_ids(p, 0, 10);
    pop_ids(c, 0, 10);
    shmring_close(c);
    shmring_close(p);
    /* Closing does not remove the name. */
    cr_assert_eq(stat(test_seg_path(d.path, name), &st), 0);
    cr_assert_eq(shmring_open(name, SHMRING_OBSERVER, &c), 0);
    shmring_close(c);
    cr_assert_eq(shmring_unlink(name), 0);
    cr_assert_neq(stat(test_seg_path(d.path, name), &st), 0);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), -ENOENT);
    cr_assert_eq(shmring_unlink(name), -ENOENT);
    cr_assert_eq(test_dir_count(d.path), 0);
    dir_close(&d);
}

Test(segment, unlink_keeps_open_handles_working)
{
    struct shm_dir d;
    dir_open(&d);
    const char *name = test_name("unl");
    shmring_t *p = make(name, 8, 64, 0);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    cr_assert_eq(shmring_unlink(name), 0);
    push_ids(p, 0, 8);
    pop_ids(c, 0, 8);
    /* The name is free again. */
    shmring_t *q = make(name, 8, 64, 0);
    shmring_close(q);
    cr_assert_eq(shmring_unlink(name), 0);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(test_dir_count(d.path), 0);
    dir_close(&d);
}

Test(segment, anonymous_memfd)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    shmring_t *r = make(NULL, 8, 64, SHMRING_PRODUCER | SHMRING_CONSUMER);
    cr_assert_eq(shmring_backend(r), SHMRING_BACKEND_MEMFD);
    int fd = shmring_fd(r);
    cr_assert_geq(fd, 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, SHMRING__RING_DATA + 8ull * 128);
    push_ids(r, 0, 8);
    pop_ids(r, 0, 8);
    /* Nothing named appears anywhere. */
    cr_assert_eq(test_dir_count(d.path), 0);
    shmring_close(r);
    dir_close(&d);
}

Test(segment, force_heap_flag)
{
    struct shm_dir d;
    dir_open(&d);
    const char *name = test_name("heapflag");
    shmring_t *p = make(name, 8, 64, SHMRING_PRODUCER | SHMRING_FORCE_HEAP);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_HEAP);
    cr_assert_eq(shmring_fd(p), -ENOTSUP);
    cr_assert_eq(test_dir_count(d.path), 0, "a heap segment left a file in the shm dir");
    /* Reachable by name from this process. */
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    cr_assert_eq(shmring_backend(c), SHMRING_BACKEND_HEAP);
    push_ids(p, 0, 8);
    pop_ids(c, 0, 8);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), -ENOENT);
    /* Anonymous heap ring. */
    shmring_t *a = make(NULL, 8, 64, SHMRING_PRODUCER | SHMRING_CONSUMER | SHMRING_FORCE_HEAP);
    cr_assert_eq(shmring_backend(a), SHMRING_BACKEND_HEAP);
    cr_assert_eq(shmring_fd(a), -ENOTSUP);
    push_ids(a, 0, 8);
    pop_ids(a, 0, 8);
    shmring_close(a);
    dir_close(&d);
}

Test(segment, force_heap_env)
{
    struct shm_dir d;
    dir_open(&d);
    struct env_saved e;
    env_set(&e, "SHMRING_FORCE_HEAP", "1");
    const char *name = test_name("heapenv");
    shmring_t *p = make(name, 8, 64, 0);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_HEAP);
    cr_assert_eq(shmring_fd(p), -ENOTSUP);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    push_ids(p, 0, 5);
    pop_ids(c, 0, 5);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
    shmring_t *a = make(NULL, 8, 64, 0);
    cr_assert_eq(shmring_backend(a), SHMRING_BACKEND_HEAP);
    shmring_close(a);
    cr_assert_eq(test_dir_count(d.path), 0);
    env_restore(&e);
    dir_close(&d);
}

Test(segment, fd_per_backend)
{
    struct shm_dir d;
    dir_open(&d);
    const char *name = test_name("fd");
    shmring_t *r = make(name, 8, 64, 0);
    int fd = shmring_fd(r);
    if (test_heap_forced()) {
        cr_assert_eq(fd, -ENOTSUP);
    } else {
        cr_assert_geq(fd, 0);
        struct stat a, b;
        cr_assert_eq(fstat(fd, &a), 0);
        cr_assert_eq(stat(test_seg_path(d.path, name), &b), 0);
        cr_assert_eq(a.st_ino, b.st_ino, "shmring_fd is not the segment's file");
    }
    shmring_close(r);
    cr_assert_eq(shmring_unlink(name), 0);
    dir_close(&d);
}

/* ---- Names --------------------------------------------------------------- */

Test(segment, name_validation)
{
    struct shm_dir d;
    dir_open(&d);
    const char *bad[] = {"",   "x",   "feed",  "/",     "/a/b",   "//a",    "/a/",
                         "/.", "/..", "/a\nb", "/\x01", "/a\x7f", "/tab\t", "/\x1f"};
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmring_t *r = NULL;
        cr_assert_eq(shmring_create(bad[i], &cfg, &r), -EINVAL, "create accepted bad name #%zu", i);
        cr_assert_null(r);
        cr_assert_eq(shmring_open(bad[i], SHMRING_CONSUMER, &r), -EINVAL,
                     "open accepted bad name #%zu", i);
        cr_assert_eq(shmring_unlink(bad[i]), -EINVAL, "unlink accepted bad name #%zu", i);
    }
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(NULL, &cfg, NULL), -EINVAL);
    cr_assert_eq(shmring_open(NULL, SHMRING_CONSUMER, &r), -EINVAL);
    cr_assert_eq(shmring_unlink(NULL), -EINVAL);
    cr_assert_eq(test_dir_count(d.path), 0, "a refused name left a file behind");

    /* SHMRING_NAME_MAX bytes, leading '/' included: accepted. */
    char longest[SHMRING_NAME_MAX + 2];
    longest[0] = '/';
    memset(longest + 1, 'n', SHMRING_NAME_MAX - 1);
    longest[SHMRING_NAME_MAX] = '\0';
    cr_assert_eq(strlen(longest), SHMRING_NAME_MAX);
    cr_assert_eq(shmring_create(longest, &cfg, &r), 0);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(longest, SHMRING_CONSUMER, &c), 0);
    push_ids(r, 0, 3);
    pop_ids(c, 0, 3);
    shmring_close(c);
    shmring_close(r);
    cr_assert_eq(shmring_unlink(longest), 0);
    /* One byte more: refused everywhere. */
    longest[SHMRING_NAME_MAX] = 'n';
    longest[SHMRING_NAME_MAX + 1] = '\0';
    r = NULL;
    cr_assert_eq(shmring_create(longest, &cfg, &r), -EINVAL);
    cr_assert_null(r);
    cr_assert_eq(shmring_open(longest, SHMRING_CONSUMER, &r), -EINVAL);
    cr_assert_eq(shmring_unlink(longest), -EINVAL);
    cr_assert_eq(test_dir_count(d.path), 0);
    dir_close(&d);
}

/* ---- O_EXCL -------------------------------------------------------------- */

Test(segment, exclusive_create)
{
    struct shm_dir d;
    dir_open(&d);
    const char *name = "/excl";
    shmring_t *p = make(name, 8, 64, 0);
    shmring_config_t other = SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 128);
    shmring_t *q = NULL;
    cr_assert_eq(shmring_create(name, &other, &q), -EEXIST);
    cr_assert_null(q);
    /* The first ring is untouched. */
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    cr_assert_eq(shmring_slots(c), 8);
    cr_assert_eq(shmring_slot_size(c), 64);
    push_ids(p, 0, 8);
    pop_ids(c, 0, 8);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
    dir_close(&d);
}

Test(segment, exclusive_create_foreign_file)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    const char *name = "/foreign";
    int fd = open(test_seg_path(d.path, name), O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "hello", 5), 5);
    close(fd);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(name, NULL, &r), -EEXIST);
    struct stat st;
    cr_assert_eq(stat(test_seg_path(d.path, name), &st), 0);
    cr_assert_eq(st.st_size, 5, "create changed an existing file");
    dir_close(&d);
}

Test(segment, exclusive_create_heap_registry)
{
    struct shm_dir d;
    dir_open(&d);
    const char *name = test_name("exheap");
    shmring_t *p = make(name, 8, 64, SHMRING_FORCE_HEAP);
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .flags = SHMRING_FORCE_HEAP);
    shmring_t *q = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &q), -EEXIST);
    cr_assert_null(q);
    /* Not on another backend either: the name is taken in this process. */
    cfg.flags = 0;
    cr_assert_eq(shmring_create(name, &cfg, &q), -EEXIST);
    cr_assert_eq(test_dir_count(d.path), 0);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
    cr_assert_eq(shmring_create(name, &cfg, &q), 0);
    shmring_close(q);
    cr_assert_eq(shmring_unlink(name), 0);
    dir_close(&d);
}

/* ---- Permissions ----------------------------------------------------------- */

Test(segment, default_mode_0600)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    mode_t old = umask(0);
    const char *name = "/mode";
    shmring_t *p = make(name, 8, 64, 0);
    umask(old);
    struct stat st;
    cr_assert_eq(stat(test_seg_path(d.path, name), &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", (unsigned)(st.st_mode & 07777));
    cr_assert_eq(st.st_uid, geteuid());
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
    dir_close(&d);
}

Test(segment, explicit_mode_regardless_of_umask)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    const uint32_t modes[] = {0640, 0604, 0644, 0700, 0600};
    const mode_t masks[] = {077, 0777, 022, 0, 0177};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        mode_t old = umask(masks[i]);
        shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .mode = modes[i]);
        shmring_t *r = NULL;
        int rc = shmring_create("/m", &cfg, &r);
        umask(old);
        cr_assert_eq(rc, 0, "mode %o: %s", modes[i], shmring_strerror(rc));
        struct stat st;
        cr_assert_eq(stat(test_seg_path(d.path, "/m"), &st), 0);
        cr_assert_eq(st.st_mode & 07777, modes[i], "asked %o under umask %o, got %o", modes[i],
                     (unsigned)masks[i], (unsigned)(st.st_mode & 07777));
        shmring_t *c = NULL;
        cr_assert_eq(shmring_open("/m", SHMRING_CONSUMER, &c), 0);
        shmring_close(c);
        shmring_close(r);
        cr_assert_eq(shmring_unlink("/m"), 0);
    }
    dir_close(&d);
}

Test(segment, insecure_mode_refused)
{
    struct shm_dir d;
    dir_open(&d);
    const uint32_t bad[] = {0620, 0602, 0622, 0666, 0777, 0660};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .mode = bad[i]);
        shmring_t *r = NULL;
        cr_assert_eq(shmring_create("/insecure", &cfg, &r), -EINVAL, "mode %o accepted", bad[i]);
        cr_assert_null(r);
    }
    /* Bits outside 0777 are refused even with ALLOW_INSECURE. */
    const uint32_t outside[] = {01600, 02600, 04600, 010600};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .mode = outside[i],
                                                   .flags = SHMRING_ALLOW_INSECURE);
        shmring_t *r = NULL;
        cr_assert_eq(shmring_create("/insecure", &cfg, &r), -EINVAL, "mode %o accepted",
                     outside[i]);
    }
    cr_assert_eq(test_dir_count(d.path), 0, "a refused create left a file");
    shmring_t *r = NULL;
    cr_assert_eq(shmring_open("/insecure", SHMRING_CONSUMER, &r), -ENOENT);
    dir_close(&d);
}

Test(segment, insecure_mode_allowed_explicitly)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    mode_t old = umask(022);
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .mode = 0666,
                                               .flags = SHMRING_ALLOW_INSECURE);
    shmring_t *p = NULL;
    int rc = shmring_create("/open", &cfg, &p);
    umask(old);
    cr_assert_eq(rc, 0, "%s", shmring_strerror(rc));
    struct stat st;
    cr_assert_eq(stat(test_seg_path(d.path, "/open"), &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0666);
    /* A world-writable segment is refused unless the opener allows it too. */
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open("/open", SHMRING_CONSUMER, &c), -EACCES);
    cr_assert_eq(shmring_open("/open", SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &c), 0);
    push_ids(p, 0, 4);
    pop_ids(c, 0, 4);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/open"), 0);
    dir_close(&d);
}

Test(segment, chmod_world_writable_refused)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = make("/chmod", 8, 64, 0);
    cr_assert_eq(chmod(test_seg_path(d.path, "/chmod"), 0606), 0);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open("/chmod", SHMRING_CONSUMER, &c), -EACCES);
    cr_assert_eq(shmring_open("/chmod", SHMRING_PRODUCER, &c), -EACCES);
    cr_assert_eq(shmring_open("/chmod", SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &c), 0);
    push_ids(p, 0, 4);
    pop_ids(c, 0, 4);
    shmring_close(c);
    /* Back to private: accepted again. */
    cr_assert_eq(chmod(test_seg_path(d.path, "/chmod"), 0600), 0);
    cr_assert_eq(shmring_open("/chmod", SHMRING_CONSUMER, &c), 0);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/chmod"), 0);
    dir_close(&d);
}

Test(segment, other_owner_refused)
{
    skip_on_heap();
    if (geteuid() != 0)
        cr_skip_test("changing a file's owner needs root");
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = make("/owner", 8, 64, 0);
    cr_assert_eq(chown(test_seg_path(d.path, "/owner"), 12345, 12345), 0);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open("/owner", SHMRING_CONSUMER, &c), -EACCES);
    cr_assert_eq(shmring_open("/owner", SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &c), 0);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/owner"), 0);
    dir_close(&d);
}

Test(segment, symlink_refused)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = make("/real", 8, 64, 0);
    char real[512];
    snprintf(real, sizeof real, "%s", test_seg_path(d.path, "/real"));
    cr_assert_eq(symlink(real, test_seg_path(d.path, "/link")), 0);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open("/link", SHMRING_CONSUMER, &c), -ELOOP);
    cr_assert_eq(shmring_open("/link", SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &c), -ELOOP);
    /* Creating over the symlink does not follow it either. */
    cr_assert_eq(shmring_create("/link", NULL, &c), -EEXIST);
    /* A dangling symlink is not followed to create a file. */
    char target[512];
    snprintf(target, sizeof target, "%s", test_seg_path(d.path, "/target"));
    cr_assert_eq(symlink(target, test_seg_path(d.path, "/dangling")), 0);
    cr_assert_eq(shmring_create("/dangling", NULL, &c), -EEXIST);
    struct stat st;
    cr_assert_neq(stat(test_seg_path(d.path, "/target"), &st), 0, "create followed a symlink");
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/real"), 0);
    dir_close(&d);
}

/* ---- Corrupt headers -------------------------------------------------------- */

#define HDR_OFF(field) offsetof(struct shmring__hdr, field)

/*
 * Create a ring, overwrite `len` bytes at `off` of its file with `val`, and
 * expect open to fail with `expected`; then put the bytes back and expect
 * open to succeed (the corruption, and nothing else, was the cause).
 */
static void expect_corrupt(const char *what, size_t off, const void *val, size_t len, int expected)
{
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = make("/corrupt", 8, 64, 0);
    shmring_close(p);
    int fd = open(test_seg_path(d.path, "/corrupt"), O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char orig[64];
    cr_assert_leq(len, sizeof orig);
    cr_assert_eq(pread(fd, orig, len, (off_t)off), (ssize_t)len);
    cr_assert_eq(pwrite(fd, val, len, (off_t)off), (ssize_t)len);
    uint32_t roles[] = {SHMRING_CONSUMER, SHMRING_PRODUCER, SHMRING_OBSERVER,
                        SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        shmring_t *c = NULL;
        int rc = shmring_open("/corrupt", roles[i], &c);
        cr_assert_eq(rc, expected, "%s: open gave %d (%s), expected %d (%s)", what, rc,
                     shmring_strerror(rc), expected, shmring_strerror(expected));
        cr_assert_null(c);
        /* The same through a descriptor. */
        rc = shmring_open_fd(fd, roles[i], &c);
        cr_assert_eq(rc, expected, "%s: open_fd gave %d (%s), expected %d", what, rc,
                     shmring_strerror(rc), expected);
    }
    cr_assert_eq(pwrite(fd, orig, len, (off_t)off), (ssize_t)len);
    close(fd);
    shmring_t *c = NULL;
    int rc = shmring_open("/corrupt", SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, 0, "%s: restored segment refused: %s", what, shmring_strerror(rc));
    shmring_close(c);
    cr_assert_eq(shmring_unlink("/corrupt"), 0);
    dir_close(&d);
}

static void corrupt_u32(const char *what, size_t off, uint32_t v, int expected)
{
    expect_corrupt(what, off, &v, sizeof v, expected);
}

static void corrupt_u64(const char *what, size_t off, uint64_t v, int expected)
{
    expect_corrupt(what, off, &v, sizeof v, expected);
}

Test(segment, corrupt_identity)
{
    skip_on_heap();
    corrupt_u64("magic", HDR_OFF(magic), 0x0123456789abcdefull, -EPROTO);
    corrupt_u64("magic zero", HDR_OFF(magic), 0, -EPROTO);
    corrupt_u32("magic one byte", HDR_OFF(magic), 0x4d485354u, -EPROTO);
    corrupt_u32("layout 2", HDR_OFF(layout), SHMRING__LAYOUT + 1, -EPROTONOSUPPORT);
    corrupt_u32("layout 0", HDR_OFF(layout), 0, -EPROTONOSUPPORT);
    corrupt_u32("type state", HDR_OFF(type), SHMRING__TYPE_STATE, -EPROTOTYPE);
    corrupt_u32("type unknown", HDR_OFF(type), 77, -EPROTO);
    corrupt_u32("type zero", HDR_OFF(type), 0, -EPROTO);
    corrupt_u32("header_size", HDR_OFF(header_size), 8192, -EPROTO);
    corrupt_u32("header_size 0", HDR_OFF(header_size), 0, -EPROTO);
    corrupt_u32("unknown flags", HDR_OFF(flags), 0x40000000u, -EPROTO);
    corrupt_u32("role flag as object flag", HDR_OFF(flags), SHMRING_PRODUCER, -EPROTO);
}

Test(segment, corrupt_sizes)
{
    skip_on_heap();
    const uint64_t total = SHMRING__RING_DATA + 8ull * 128;
    corrupt_u64("total_size +64", HDR_OFF(total_size), total + 64, -EPROTO);
    corrupt_u64("total_size -64", HDR_OFF(total_size), total - 64, -EPROTO);
    corrupt_u64("total_size huge", HDR_OFF(total_size), UINT64_MAX, -EPROTO);
    corrupt_u32("slots 6", HDR_OFF(param[0]), 6, -EPROTO);
    corrupt_u32("slots 1", HDR_OFF(param[0]), 1, -EPROTO);
    corrupt_u32("slots 0", HDR_OFF(param[0]), 0, -EPROTO);
    corrupt_u32("slots 16", HDR_OFF(param[0]), 16, -EPROTO); /* larger than the file */
    corrupt_u32("slots 4", HDR_OFF(param[0]), 4, -EPROTO);   /* smaller than the file */
    corrupt_u32("slots above max", HDR_OFF(param[0]), SHMRING_MAX_SLOTS << 1, -EPROTO);
    corrupt_u32("slot_size too large", HDR_OFF(param[1]), SHMRING_MAX_SLOT_SIZE + 1, -EPROTO);
    corrupt_u32("slot_size max", HDR_OFF(param[1]), SHMRING_MAX_SLOT_SIZE, -EPROTO);
    corrupt_u32("slot_size beyond stride", HDR_OFF(param[1]), 200, -EPROTO);
    corrupt_u32("stride 192", HDR_OFF(param[2]), 192, -EPROTO);
    corrupt_u32("stride 64", HDR_OFF(param[2]), 64, -EPROTO);
    corrupt_u32("stride 0", HDR_OFF(param[2]), 0, -EPROTO);
    corrupt_u32("param 3", HDR_OFF(param[3]), 1, -EPROTO);
}

Test(segment, truncated_after_creation)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    const off_t total = SHMRING__RING_DATA + 8 * 128;
    const off_t sizes[] = {total - 64, SHMRING__HEADER_SIZE, SHMRING__HEADER_SIZE - 1, 100,
                           0,          total + 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        /* Closed first: a handle must not touch pages cut off under it. */
        shmring_close(make("/trunc", 8, 64, 0));
        cr_assert_eq(truncate(test_seg_path(d.path, "/trunc"), sizes[i]), 0);
        shmring_t *c = NULL;
        int rc = shmring_open("/trunc", SHMRING_CONSUMER, &c);
        /* An empty file is one whose creator has not sized it yet: waited
         * for about a second, then -EAGAIN. */
        int want = sizes[i] == 0 ? -EAGAIN : -EPROTO;
        cr_assert_eq(rc, want, "size %lld: %s", (long long)sizes[i], shmring_strerror(rc));
        cr_assert_eq(shmring_unlink("/trunc"), 0);
    }
    dir_close(&d);
}

Test(segment, file_smaller_than_header)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    const size_t sizes[] = {0, 1, 64, 4095};
    static unsigned char img[SHMRING__HEADER_SIZE];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        /* The start of a valid header, cut short. */
        struct shmring__hdr *h = (struct shmring__hdr *)(void *)img;
        memset(img, 0, sizeof img);
        h->magic = SHMRING__MAGIC;
        h->type = SHMRING__TYPE_RING;
        h->layout = SHMRING__LAYOUT;
        h->header_size = SHMRING__HEADER_SIZE;
        h->ready = SHMRING__READY;
        int fd = open(test_seg_path(d.path, "/small"), O_RDWR | O_CREAT | O_EXCL, 0600);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, img, sizes[i]), (ssize_t)sizes[i]);
        close(fd);
        shmring_t *c = NULL;
        int rc = shmring_open("/small", SHMRING_CONSUMER, &c);
        /* An empty file is one whose creator has not sized it yet. */
        int want = sizes[i] == 0 ? -EAGAIN : -EPROTO;
        cr_assert_eq(rc, want, "size %zu: %s", sizes[i], shmring_strerror(rc));
        cr_assert_eq(shmring_unlink("/small"), 0);
    }
    dir_close(&d);
}

Test(segment, never_ready, .timeout = 30)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = make("/unready", 8, 64, 0);
    int fd = open(test_seg_path(d.path, "/unready"), O_RDWR);
    cr_assert_geq(fd, 0);
    uint32_t zero = 0;
    cr_assert_eq(pwrite(fd, &zero, sizeof zero, (off_t)HDR_OFF(ready)), (ssize_t)sizeof zero);
    shmring_t *c = NULL;
    double t0 = h_now_s();
    int rc = shmring_open("/unready", SHMRING_CONSUMER, &c);
    double dt = h_now_s() - t0;
    cr_assert_eq(rc, -EAGAIN, "open of a segment never ready: %s", shmring_strerror(rc));
    cr_assert(dt >= 0.5 && dt <= 3.0, "gave up after %.3f s", dt);
    /* Once ready, it opens at once. */
    uint32_t ready = SHMRING__READY;
    cr_assert_eq(pwrite(fd, &ready, sizeof ready, (off_t)HDR_OFF(ready)), (ssize_t)sizeof ready);
    close(fd);
    t0 = h_now_s();
    cr_assert_eq(shmring_open("/unready", SHMRING_CONSUMER, &c), 0);
    cr_assert_lt(h_now_s() - t0, 0.5);
    push_ids(p, 0, 4);
    pop_ids(c, 0, 4);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/unready"), 0);
    dir_close(&d);
}

Test(segment, not_a_regular_file)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    cr_assert_eq(mkdir(test_seg_path(d.path, "/adir"), 0700), 0);
    shmring_t *c = NULL;
    int rc = shmring_open("/adir", SHMRING_CONSUMER, &c);
    cr_assert(rc == -EPROTO || rc == -EISDIR, "directory as segment: %s", shmring_strerror(rc));
    cr_assert_eq(rmdir(test_seg_path(d.path, "/adir")), 0);
    dir_close(&d);
}

/* ---- Fallback --------------------------------------------------------------- */

/*
 * With the shm dir unusable (dir_kind 0: missing; 1: a regular file), a named
 * create falls back to memfd, says why once, and stays reachable by name.
 */
static void fallback_case(int dir_kind)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    char bad[128];
    snprintf(bad, sizeof bad, "%s/%s", d.path, dir_kind == 0 ? "missing" : "file");
    if (dir_kind == 1) {
        int fd = open(bad, O_WRONLY | O_CREAT | O_EXCL, 0600);
        cr_assert_geq(fd, 0);
        close(fd);
    }
    struct env_saved e;
    env_set(&e, "SHMRING_SHM_DIR", bad);
    const char *reason = dir_kind == 0 ? strerror(ENOENT) : strerror(ENOTDIR);
    char reason_copy[128];
    snprintf(reason_copy, sizeof reason_copy, "%s", reason);

    struct log_capture cap = {0};
    shmring_set_log(capture_log, &cap);
    char name[64];
    snprintf(name, sizeof name, "%s", test_name("fallback"));
    shmring_t *p = make(name, 16, 64, 0);
    shmring_set_log(NULL, NULL);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_MEMFD);
    cr_assert_eq(cap.lines, 1, "fallback logged %d lines", cap.lines);
    cr_assert_not_null(strstr(cap.last, reason_copy), "log line does not name the reason: %s",
                       cap.last);
    cr_assert_not_null(strstr(cap.last, name), "log line does not name the ring: %s", cap.last);
    cr_assert_geq(shmring_fd(p), 0);

    /* Same process: reachable by name, messages move. */
    cap.lines = 0;
    shmring_set_log(capture_log, &cap);
    shmring_t *c = NULL;
    int rc = shmring_open(name, SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, 0, "open by name after fallback: %s", shmring_strerror(rc));
    cr_assert_eq(shmring_backend(c), SHMRING_BACKEND_MEMFD);
    push_ids(p, 0, 16);
    pop_ids(c, 0, 16);
    push_ids(p, 16, 10);
    pop_ids(c, 16, 10);
    shmring_t *q = NULL;
    cr_assert_eq(shmring_create(name, NULL, &q), -EEXIST);
    shmring_set_log(NULL, NULL);
    cr_assert_eq(cap.lines, 0, "open logged: %s", cap.last);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);

    /* NO_FALLBACK: the create fails with the reason, silently, and leaves nothing. */
    cap.lines = 0;
    shmring_set_log(capture_log, &cap);
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64, .flags = SHMRING_NO_FALLBACK);
    q = NULL;
    rc = shmring_create(name, &cfg, &q);
    shmring_set_log(NULL, NULL);
    cr_assert_eq(rc, dir_kind == 0 ? -ENOENT : -ENOTDIR, "NO_FALLBACK create: %s",
                 shmring_strerror(rc));
    cr_assert_null(q);
    cr_assert_eq(cap.lines, 0);

    env_restore(&e);
    if (dir_kind == 1)
        unlink(bad);
    dir_close(&d);
}

Test(segment, fallback_missing_dir)
{
    fallback_case(0);
}

Test(segment, fallback_dir_is_a_file)
{
    fallback_case(1);
}

/* Opening a name that exists nowhere, with the shm dir unusable: "no such ring". */
static void open_missing_case(int dir_kind)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    char bad[128];
    snprintf(bad, sizeof bad, "%s/%s", d.path, dir_kind == 0 ? "missing" : "file");
    if (dir_kind == 1) {
        int fd = open(bad, O_WRONLY | O_CREAT | O_EXCL, 0600);
        cr_assert_geq(fd, 0);
        close(fd);
    }
    struct env_saved e;
    env_set(&e, "SHMRING_SHM_DIR", bad);
    shmring_t *c = NULL;
    int rc = shmring_open("/nowhere", SHMRING_CONSUMER, &c);
    int urc = shmring_unlink("/nowhere");
    env_restore(&e);
    if (dir_kind == 1)
        unlink(bad);
    dir_close(&d);
    cr_assert_eq(rc, -ENOENT, "open: %s", shmring_strerror(rc));
    cr_assert_eq(urc, -ENOENT, "unlink: %s", shmring_strerror(urc));
}

Test(segment, open_missing_name_missing_dir)
{
    open_missing_case(0);
}

Test(segment, open_missing_name_dir_is_a_file)
{
    open_missing_case(1);
}

/* ---- Anonymous rings shared with other processes ------------------------ */

struct child_report {
    int opened;        /* 1 ok, a negative errno if open failed, 0 not yet */
    int end;           /* how the child's stream ended (-EPIPE expected) */
    uint64_t received; /* messages taken */
    uint64_t bad;      /* torn, out of order or duplicated */
};

#define FORK_MESSAGES 20000u

/* Consume ids 0.. in order until the end of the stream (child side). */
static int child_consume(shmring_t *c, struct child_report *rep)
{
    unsigned char buf[1024];
    double deadline = h_now_s() + 20.0;
    uint64_t expect = 0;
    unsigned idle = 0;
    for (;;) {
        ssize_t n = shmring_pop(c, buf, sizeof buf);
        if (n == -EAGAIN) {
            if (++idle % 64 == 0) {
                if (h_now_s() > deadline) {
                    rep->end = -ETIMEDOUT;
                    return 3;
                }
                sched_yield();
            }
            continue;
        }
        if (n < 0) {
            rep->end = (int)n;
            break;
        }
        idle = 0;
        uint64_t id = UINT64_MAX;
        if (!test_check(buf, (size_t)n, &id) || id != expect ||
            (size_t)n != test_len_of(id, shmring_slot_size(c)))
            rep->bad++;
        expect = id + 1;
        __atomic_store_n(&rep->received, rep->received + 1, __ATOMIC_RELAXED);
    }
    return rep->bad == 0 && rep->received == FORK_MESSAGES && rep->end == -EPIPE ? 0 : 4;
}

/* Push FORK_MESSAGES ids, waiting for room; gives up if the child failed. */
static void parent_produce(shmring_t *p, struct child_report *rep)
{
    unsigned char buf[1024];
    uint32_t ss = shmring_slot_size(p);
    double deadline = h_now_s() + 20.0;
    for (uint64_t id = 0; id < FORK_MESSAGES; id++) {
        size_t len = test_len_of(id, ss);
        test_fill(buf, len, id);
        unsigned tries = 0;
        int rc;
        while ((rc = shmring_push(p, buf, len)) == -EAGAIN) {
            if (++tries % 64 == 0) {
                if (h_now_s() > deadline || __atomic_load_n(&rep->end, __ATOMIC_RELAXED) != 0)
                    return;
                sched_yield();
            }
        }
        cr_assert_eq(rc, 0, "push: %s", shmring_strerror(rc));
    }
}

static int wait_opened(struct child_report *rep)
{
    double deadline = h_now_s() + 10.0;
    int v;
    while ((v = __atomic_load_n(&rep->opened, __ATOMIC_ACQUIRE)) == 0 && h_now_s() < deadline)
        usleep(1000);
    return v;
}

static void check_child(pid_t pid, struct child_report *rep, int opened)
{
    int st = test_wait_child(pid);
    cr_assert_eq(opened, 1, "child could not open the ring from its descriptor: %s",
                 shmring_strerror(opened));
    cr_assert_eq(rep->bad, 0, "child saw %llu torn, lost or reordered messages",
                 (unsigned long long)rep->bad);
    cr_assert_eq(rep->received, FORK_MESSAGES, "child received %llu of %u",
                 (unsigned long long)rep->received, FORK_MESSAGES);
    cr_assert_eq(rep->end, -EPIPE, "stream ended with %s", shmring_strerror(rep->end));
    cr_assert_eq(st, 0, "child exit status %d", st);
}

Test(segment, anonymous_shared_by_fork, .timeout = 60)
{
    skip_on_heap();
    struct child_report *rep = test_shared_alloc(sizeof *rep);
    memset(rep, 0, sizeof *rep);
    shmring_t *p = make(NULL, 64, 200, SHMRING_PRODUCER);
    cr_assert_eq(shmring_backend(p), SHMRING_BACKEND_MEMFD);
    int fd = shmring_fd(p);
    cr_assert_geq(fd, 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *c = NULL;
        int rc = shmring_open_fd(fd, SHMRING_CONSUMER, &c);
        __atomic_store_n(&rep->opened, rc == 0 ? 1 : rc, __ATOMIC_RELEASE);
        if (rc < 0) {
            rep->end = rc;
            _exit(2);
        }
        int code = child_consume(c, rep);
        shmring_close(c);
        _exit(code);
    }
    int opened = wait_opened(rep);
    if (opened == 1)
        parent_produce(p, rep);
    shmring_close(p); /* end of stream for the child */
    check_child(pid, rep, opened);
    test_shared_free(rep, sizeof *rep);
}

static int send_fd(int sock, int fd)
{
    char byte = 'r';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -errno;
}

static int recv_fd(int sock)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
        return -errno;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm == NULL || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        return -EBADMSG;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

Test(segment, anonymous_passed_over_socket, .timeout = 60)
{
    skip_on_heap();
    struct child_report *rep = test_shared_alloc(sizeof *rep);
    memset(rep, 0, sizeof *rep);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* The child forks before the ring exists: it inherits no handle to it. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int s = sv[1];
        /* Close everything inherited except stdio and the socket. */
        close_range(3, (unsigned)s - 1, 0);
        close_range((unsigned)s + 1, ~0u, 0);
        struct timeval tv = {.tv_sec = 10};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int fd = recv_fd(s);
        if (fd < 0) {
            __atomic_store_n(&rep->opened, fd, __ATOMIC_RELEASE);
            _exit(2);
        }
        shmring_t *c = NULL;
        int rc = shmring_open_fd(fd, SHMRING_CONSUMER, &c);
        close(fd); /* the handle keeps its own descriptor */
        __atomic_store_n(&rep->opened, rc == 0 ? 1 : rc, __ATOMIC_RELEASE);
        if (rc < 0) {
            rep->end = rc;
            _exit(2);
        }
        int code = child_consume(c, rep);
        shmring_close(c);
        _exit(code);
    }
    close(sv[1]);
    shmring_t *p = make(NULL, 64, 200, SHMRING_PRODUCER);
    int fd = shmring_fd(p);
    cr_assert_geq(fd, 0);
    int rc = send_fd(sv[0], fd);
    close(sv[0]);
    int opened = rc == 0 ? wait_opened(rep) : rc;
    if (opened == 1)
        parent_produce(p, rep);
    shmring_close(p);
    check_child(pid, rep, opened);
    test_shared_free(rep, sizeof *rep);
}

Test(segment, open_fd_named_segment)
{
    skip_on_heap();
    struct shm_dir d;
    dir_open(&d);
    shmring_t *p = make("/byfd", 8, 64, 0);
    int fd = open(test_seg_path(d.path, "/byfd"), O_RDWR);
    cr_assert_geq(fd, 0);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open_fd(fd, SHMRING_CONSUMER, &c), 0);
    close(fd); /* not consumed, but the handle does not need it */
    cr_assert_eq(shmring_backend(c), SHMRING_BACKEND_SHM);
    push_ids(p, 0, 8);
    pop_ids(c, 0, 8);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/byfd"), 0);
    dir_close(&d);
}

Test(segment, open_fd_bad_descriptors, .timeout = 30)
{
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open_fd(-1, SHMRING_CONSUMER, &c), -EBADF);
    cr_assert_eq(shmring_open_fd(-100, SHMRING_CONSUMER, &c), -EBADF);
    int fd = open("/dev/null", O_RDONLY);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(shmring_open_fd(fd, SHMRING_CONSUMER, &c), -EBADF);
    cr_assert_null(c);

    /* Regular files that are not segments. */
    char path[] = "/tmp/shmring-notseg-XXXXXX";
    fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(shmring_open_fd(fd, SHMRING_CONSUMER, &c), -EPROTO, "empty file");
    cr_assert_eq(write(fd, "not a ring\n", 11), 11);
    cr_assert_eq(shmring_open_fd(fd, SHMRING_CONSUMER, &c), -EPROTO, "small file");
    close(fd);

    /* A pipe is not a segment. */
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    int rc = shmring_open_fd(pfd[0], SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, -EPROTO, "pipe: %s", shmring_strerror(rc));
    close(pfd[0]);
    close(pfd[1]);
}

/*
 * A text file larger than a header page is not a segment: its first bytes
 * are neither a creator's zeroes nor the magic, so there is nothing to wait
 * for.
 */
Test(segment, open_fd_text_file, .timeout = 30)
{
    char path[] = "/tmp/shmring-notseg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    static char text[3 * SHMRING__HEADER_SIZE];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    cr_assert_eq(pwrite(fd, text, sizeof text, 0), (ssize_t)sizeof text);
    shmring_t *c = NULL;
    double t0 = h_now_s();
    int rc = shmring_open_fd(fd, SHMRING_CONSUMER, &c);
    double dt = h_now_s() - t0;
    close(fd);
    cr_assert_eq(rc, -EPROTO, "a %zu-byte text file: %s after %.2f s", sizeof text,
                 shmring_strerror(rc), dt);
}

/* ---- Bad arguments ----------------------------------------------------------- */

Test(segment, bad_arguments_change_nothing)
{
    struct shm_dir d;
    dir_open(&d);
    const char *name = "/args";
    shmring_config_t good = SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64);
    shmring_config_t bad_cfgs[] = {
        SHMRING_CONFIG_INIT(.slots = 3, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 1, .slot_size = 64),
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = SHMRING_MAX_SLOT_SIZE + 1),
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .flags = 0x80000000u),
        SHMRING_CONFIG_INIT(.slots = 8, .slot_size = 64, .mode = 0666),
    };
    shmring_t *r = (shmring_t *)(uintptr_t)0x1;
    cr_assert_eq(shmring_create(name, &good, NULL), -EINVAL);
    for (size_t i = 0; i < sizeof bad_cfgs / sizeof bad_cfgs[0]; i++) {
        cr_assert_eq(shmring_create(name, &bad_cfgs[i], &r), -EINVAL, "bad config #%zu", i);
        cr_assert_eq(shmring_create(NULL, &bad_cfgs[i], &r), -EINVAL, "bad config #%zu", i);
    }
    cr_assert_eq(r, (shmring_t *)(uintptr_t)0x1, "a failed create wrote *out");
    cr_assert_eq(test_dir_count(d.path), 0, "a failed create left a file behind");
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &r), -ENOENT);
    cr_assert_eq(shmring_unlink(name), -ENOENT);

    /* With a ring in place, bad opens leave it working. */
    shmring_t *p = make(name, 8, 64, 0);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, NULL), -EINVAL);
    cr_assert_eq(shmring_open(name, 0, &r), -EINVAL);
    cr_assert_eq(shmring_open(name, 0x80000000u, &r), -EINVAL);
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER | 0x80000000u, &r), -EINVAL);
    cr_assert_eq(shmring_open(NULL, SHMRING_CONSUMER, &r), -EINVAL);
    cr_assert_eq(shmring_open("/args-missing", SHMRING_CONSUMER, &r), -ENOENT);
    int fd = shmring_fd(p);
    if (fd >= 0) {
        cr_assert_eq(shmring_open_fd(fd, SHMRING_CONSUMER, NULL), -EINVAL);
        cr_assert_eq(shmring_open_fd(fd, 0, &r), -EINVAL);
        cr_assert_eq(shmring_open_fd(fd, 0x80000000u | SHMRING_CONSUMER, &r), -EINVAL);
        cr_assert_geq(fcntl(fd, F_GETFD), 0, "a failed open_fd closed the descriptor");
    }
    cr_assert_eq(r, (shmring_t *)(uintptr_t)0x1, "a failed open wrote *out");
    cr_assert_eq(shmring_create(name, &good, &r), -EEXIST);
    cr_assert_eq(shmring_unlink("/args-missing"), -ENOENT);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    push_ids(p, 0, 8);
    pop_ids(c, 0, 8);
    shmring_close(c);

    /* Accessors of NULL. */
    cr_assert_eq(shmring_backend(NULL), -EINVAL);
    cr_assert_eq(shmring_fd(NULL), -EINVAL);
    cr_assert_eq(shmring_slots(NULL), 0);
    cr_assert_eq(shmring_slot_size(NULL), 0);
    shmring_close(NULL);

    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
    cr_assert_eq(test_dir_count(d.path), 0);
    dir_close(&d);
}

/* ---- A full shm file system --------------------------------------------------- */

Test(segment, full_shm_filesystem, .timeout = 30)
{
    skip_on_heap();
    char mnt[] = "/tmp/shmring-full-XXXXXX";
    cr_assert_not_null(mkdtemp(mnt));
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k,mode=0700") != 0) {
        int err = errno;
        rmdir(mnt);
        cr_skip_test("cannot mount a small tmpfs to fill (%s)", strerror(err));
    }
    struct env_saved e;
    env_set(&e, "SHMRING_SHM_DIR", mnt);
    /* A small ring fits. */
    shmring_t *small = make("/small", 8, 64, 0);
    cr_assert_eq(shmring_backend(small), SHMRING_BACKEND_SHM);
    /* 1024 slots of 256 bytes (about 320 KiB) do not. */
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 1024, .slot_size = 256);
    shmring_t *big = NULL;
    int rc = shmring_create("/big", &cfg, &big);
    char path[128];
    snprintf(path, sizeof path, "%s/big", mnt);
    struct stat st;
    int left = stat(path, &st) == 0;
    shmring_close(small);
    shmring_unlink("/small");
    if (big != NULL) {
        shmring_close(big);
        shmring_unlink("/big");
    }
    env_restore(&e);
    umount2(mnt, MNT_DETACH);
    rmdir(mnt);
    cr_assert_eq(rc, -ENOSPC, "create on a full shm fs: %s", shmring_strerror(rc));
    cr_assert_not(left, "a failed create left its file on the full file system");
}
