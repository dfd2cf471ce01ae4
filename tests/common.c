#define _GNU_SOURCE
#include "common.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

const char *test_name(const char *tag)
{
    static __thread char buf[128];
    static unsigned n;
    snprintf(buf, sizeof buf, "/t-%d-%s-%u", (int)getpid(), tag,
             __atomic_fetch_add(&n, 1, __ATOMIC_RELAXED));
    return buf;
}

int test_heap_forced(void)
{
    const char *v = getenv("SHMRING_FORCE_HEAP");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t body_sum(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void test_fill(void *buf, size_t len, uint64_t id)
{
    unsigned char *p = buf;
    uint64_t x = mix(id + 1);
    for (size_t i = 16; i < len; i++) {
        p[i] = (unsigned char)(x >> ((i % 8) * 8));
        if (i % 8 == 7)
            x = mix(x);
    }
    if (len >= 16) {
        uint64_t sum = body_sum(p + 16, len - 16) ^ mix(id) ^ len;
        memcpy(p, &id, 8);
        memcpy(p + 8, &sum, 8);
    } else {
        for (size_t i = 0; i < len; i++)
            p[i] = (unsigned char)(id + i);
    }
}

int test_check(const void *buf, size_t len, uint64_t *id)
{
    const unsigned char *p = buf;
    if (len < 16)
        return 0;
    uint64_t i, sum;
    memcpy(&i, p, 8);
    memcpy(&sum, p + 8, 8);
    if (sum != (body_sum(p + 16, len - 16) ^ mix(i) ^ len))
        return 0;
    *id = i;
    return 1;
}

void *test_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert(p != MAP_FAILED);
    return p;
}

void test_shared_free(void *p, size_t size)
{
    munmap(p, size);
}

int test_wait_child(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

double test_scale(void)
{
    const char *v = getenv("SHMRING_TEST_SCALE");
    double s = v ? atof(v) : 1.0;
    return s > 0 ? s : 1.0;
}

int test_under_valgrind(void)
{
    const char *v = getenv("SHMRING_TEST_VALGRIND");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static void quiet(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

void test_quiet_log(void)
{
    shmring_set_log(quiet, NULL);
}

size_t test_len_of(uint64_t id, uint32_t slot_size)
{
    return 16 + (size_t)(id % (slot_size - 15));
}

shmring_t *test_make(const char *name, uint32_t slots, uint32_t slot_size, uint32_t flags)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = slots, .slot_size = slot_size, .flags = flags);
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    return r;
}

shmring_t *test_open_as(const char *name, uint32_t flags)
{
    shmring_t *r = NULL;
    cr_assert_eq(shmring_open(name, flags, &r), 0);
    return r;
}

void test_push_id(shmring_t *p, uint64_t id, size_t len)
{
    unsigned char buf[256];
    test_fill(buf, len, id);
    cr_assert_eq(shmring_push(p, buf, len), 0, "push of id %llu", (unsigned long long)id);
}

void test_expect_id(const void *buf, ssize_t len, uint64_t want)
{
    uint64_t id = 0;
    cr_assert_geq(len, 16, "pop returned %zd", len);
    cr_assert(test_check(buf, (size_t)len, &id), "corrupt message");
    cr_assert_eq(id, want, "got id %llu, expected %llu", (unsigned long long)id,
                 (unsigned long long)want);
}

const char *test_tool(void)
{
    static char path[PATH_MAX];
    char self[PATH_MAX - 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(n, 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    cr_assert_not_null(slash);
    *slash = '\0';
    snprintf(path, sizeof path, "%s/../shmring", self);
    if (access(path, X_OK) != 0)
        cr_skip_test("the shmring tool is not built (%s)", path);
    return path;
}

int test_dir_count(const char *path)
{
    DIR *dir = opendir(path);
    cr_assert_not_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(dir);
    return n;
}

const char *test_seg_path(const char *dir, const char *name)
{
    static __thread char p[512];
    snprintf(p, sizeof p, "%s%s", dir, name);
    return p;
}

void test_remove_dir(const char *path)
{
    DIR *dir = opendir(path);
    if (dir != NULL) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            unlink(p);
        }
        closedir(dir);
    }
    rmdir(path);
}
