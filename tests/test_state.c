/* State tables: keyed latest values, errors, capacity, concurrent writers, torn reads, dead
 * writers. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "segment.h"
#include "state.h"

static shmring_state_t *make(const char *name, uint32_t entries, uint32_t value_size)
{
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = value_size);
    shmring_state_t *s = NULL;
    int rc = shmring_state_create(name, &cfg, &s);
    cr_assert_eq(rc, 0, "create %s: %s", name, shmring_strerror(rc));
    return s;
}

static shmring_state_t *open_state(const char *name)
{
    shmring_state_t *s = NULL;
    int rc = shmring_state_open(name, 0, &s);
    cr_assert_eq(rc, 0, "open %s: %s", name, shmring_strerror(rc));
    return s;
}

/* Wait for a child at most `seconds`; kill it and fail when it overstays. */
static int wait_child_within(pid_t pid, double seconds)
{
    uint64_t deadline = h_now_ns() + (uint64_t)(seconds * 1e9);
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (h_now_ns() >= deadline) {
            kill(pid, SIGKILL);
            test_wait_child(pid);
            cr_assert_fail("child %d still running after %.1f s", (int)pid, seconds);
        }
        h_sleep_ns(1000000);
    }
}

static void write_ok(shmring_state_t *s, const char *key, const void *val, size_t len)
{
    int rc = shmring_state_write(s, key, val, len);
    cr_assert_eq(rc, 0, "write %s: %s", key, shmring_strerror(rc));
}

static void read_str(shmring_state_t *s, const char *key, const char *want)
{
    char buf[256];
    ssize_t n = shmring_state_read(s, key, buf, sizeof buf);
    cr_assert_eq(n, (ssize_t)strlen(want), "read %s: %zd (%s)", key, n,
                 n < 0 ? shmring_strerror((int)n) : "");
    cr_assert(memcmp(buf, want, (size_t)n) == 0, "read %s: wrong value", key);
}

/* ---- Basics ------------------------------------------------------------------------ */

struct seen {
    char keys[64][64];
    size_t lens[64];
    int n;
};

static int collect(const char *key, size_t len, void *ctx)
{
    struct seen *s = ctx;
    cr_assert_lt(s->n, 64);
    snprintf(s->keys[s->n], sizeof s->keys[0], "%s", key);
    s->lens[s->n] = len;
    s->n++;
    return 0;
}

static int find_seen(const struct seen *s, const char *key)
{
    int found = -1;
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->keys[i], key) == 0) {
            cr_assert_eq(found, -1, "key %s visited twice", key);
            found = i;
        }
    }
    return found;
}

Test(state, write_read_overwrite_delete_iterate)
{
    const char *name = test_name("basic");
    shmring_state_t *s = make(name, 16, 64);
    shmring_state_t *o = open_state(name);
    cr_assert_eq(shmring_state_entries(s), 16);
    cr_assert_eq(shmring_state_value_size(s), 64);
    write_ok(s, "alpha", "one", 3);
    write_ok(s, "beta", "two", 3);
    write_ok(s, "gamma", "three", 5);
    read_str(o, "alpha", "one");
    read_str(o, "beta", "two");
    read_str(o, "gamma", "three");
    /* Overwrite from the other handle, longer then shorter. */
    write_ok(o, "alpha", "uno-dos-tres", 12);
    read_str(s, "alpha", "uno-dos-tres");
    write_ok(o, "alpha", "1", 1);
    read_str(s, "alpha", "1");
    for (int i = 0; i < 100; i++) {
        char v[32];
        snprintf(v, sizeof v, "value %d", i);
        write_ok(i % 2 ? s : o, "beta", v, strlen(v));
        read_str(i % 2 ? o : s, "beta", v);
    }
    struct seen seen = {0};
    cr_assert_eq(shmring_state_foreach(o, collect, &seen), 3);
    cr_assert_eq(seen.n, 3);
    int a = find_seen(&seen, "alpha"), g = find_seen(&seen, "gamma");
    cr_assert(a >= 0 && find_seen(&seen, "beta") >= 0 && g >= 0);
    cr_assert_eq(seen.lens[a], 1);
    cr_assert_eq(seen.lens[g], 5);
    cr_assert_eq(shmring_state_delete(s, "beta"), 0);
    char buf[64];
    cr_assert_eq(shmring_state_read(o, "beta", buf, sizeof buf), -ENOENT);
    cr_assert_eq(shmring_state_delete(o, "beta"), -ENOENT);
    memset(&seen, 0, sizeof seen);
    cr_assert_eq(shmring_state_foreach(s, collect, &seen), 2);
    cr_assert_eq(find_seen(&seen, "beta"), -1);
    /* Deleted then written again: present, with the new value. */
    write_ok(o, "beta", "back", 4);
    read_str(s, "beta", "back");
    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_assert_eq(st.entries, 16);
    cr_assert_eq(st.value_size, 64);
    cr_assert_eq(st.used, 3);
    cr_assert_eq(st.writing, 0);
    cr_assert_eq(st.users, 2);
    cr_assert_eq(st.writes, 3 + 2 + 100 + 1 + 1, "writes %llu", (unsigned long long)st.writes);
    cr_assert_geq(st.reads, 106);
    cr_assert_eq(st.recovered, 0);
    cr_assert_eq(st.creator_pid, getpid());
    cr_assert_eq(st.backend, shmring_state_backend(s));
    shmring_state_close(o);
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_assert_eq(st.users, 1);
    cr_assert_geq(st.reads, 106, "counters of a closed handle are kept");
    shmring_state_close(s);
    cr_assert_eq(shmring_state_unlink(name), 0);
}

static int stop_at_second(const char *key, size_t len, void *ctx)
{
    (void)key;
    (void)len;
    int *n = ctx;
    return ++*n == 2 ? -42 : 0;
}

Test(state, foreach_stops_on_nonzero)
{
    const char *name = test_name("stop");
    shmring_state_t *s = make(name, 8, 8);
    cr_assert_eq(shmring_state_foreach(s, collect, &(struct seen){0}), 0);
    write_ok(s, "a", "1", 1);
    write_ok(s, "b", "2", 1);
    write_ok(s, "c", "3", 1);
    int n = 0;
    cr_assert_eq(shmring_state_foreach(s, stop_at_second, &n), -42);
    cr_assert_eq(n, 2);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

/* ---- Errors ------------------------------------------------------------------------ */

Test(state, argument_errors)
{
    const char *name = test_name("args");
    shmring_state_t *s = make(name, 8, 16);
    char buf[32];
    char long_key[65];
    memset(long_key, 'k', 64);
    long_key[64] = '\0';
    cr_assert_eq(shmring_state_write(NULL, "k", "v", 1), -EINVAL);
    cr_assert_eq(shmring_state_write(s, NULL, "v", 1), -EINVAL);
    cr_assert_eq(shmring_state_write(s, "", "v", 1), -EINVAL);
    cr_assert_eq(shmring_state_write(s, long_key, "v", 1), -EINVAL);
    cr_assert_eq(shmring_state_write(s, "k", NULL, 1), -EINVAL);
    cr_assert_eq(shmring_state_write(s, "k", buf, 17), -EMSGSIZE);
    cr_assert_eq(shmring_state_read(NULL, "k", buf, sizeof buf), -EINVAL);
    cr_assert_eq(shmring_state_read(s, NULL, buf, sizeof buf), -EINVAL);
    cr_assert_eq(shmring_state_read(s, "", buf, sizeof buf), -EINVAL);
    cr_assert_eq(shmring_state_read(s, long_key, buf, sizeof buf), -EINVAL);
    cr_assert_eq(shmring_state_read(s, "k", NULL, 4), -EINVAL);
    cr_assert_eq(shmring_state_read(s, "k", buf, sizeof buf), -ENOENT);
    cr_assert_eq(shmring_state_delete(NULL, "k"), -EINVAL);
    cr_assert_eq(shmring_state_delete(s, ""), -EINVAL);
    cr_assert_eq(shmring_state_delete(s, long_key), -EINVAL);
    cr_assert_eq(shmring_state_delete(s, "k"), -ENOENT);
    cr_assert_eq(shmring_state_foreach(NULL, collect, NULL), -EINVAL);
    cr_assert_eq(shmring_state_foreach(s, NULL, NULL), -EINVAL);
    cr_assert_eq(shmring_state_stats(NULL, NULL), -EINVAL);
    cr_assert_eq(shmring_state_stats(s, NULL), -EINVAL);
    cr_assert_eq(shmring_state_repair(NULL), -EINVAL);
    cr_assert_eq(shmring_state_backend(NULL), -EINVAL);
    cr_assert_eq(shmring_state_fd(NULL), -EINVAL);
    cr_assert_eq(shmring_state_entries(NULL), 0);
    cr_assert_eq(shmring_state_value_size(NULL), 0);
    if (shmring_state_backend(s) == SHMRING_BACKEND_HEAP)
        cr_assert_eq(shmring_state_fd(s), -ENOTSUP);
    else
        cr_assert_geq(shmring_state_fd(s), 0);
    shmring_state_close(NULL);
    /* None of the failed calls created anything. */
    cr_assert_eq(shmring_state_foreach(s, collect, &(struct seen){0}), 0);

    /* A too-small buffer changes nothing: the value stays for a bigger one. */
    unsigned char v[16];
    test_fill(v, sizeof v, 77);
    write_ok(s, "k", v, sizeof v);
    memset(buf, 0x5a, sizeof buf);
    cr_assert_eq(shmring_state_read(s, "k", buf, 15), -EMSGSIZE);
    cr_assert_eq(shmring_state_read(s, "k", NULL, 0), -EMSGSIZE);
    for (size_t i = 0; i < sizeof buf; i++)
        cr_assert_eq((unsigned char)buf[i], 0x5a, "buffer written at %zu on -EMSGSIZE", i);
    cr_assert_eq(shmring_state_read(s, "k", buf, 16), 16);
    uint64_t id;
    cr_assert(test_check(buf, 16, &id) && id == 77);
    /* A refused write leaves the old value. */
    cr_assert_eq(shmring_state_write(s, "k", buf, 17), -EMSGSIZE);
    cr_assert_eq(shmring_state_read(s, "k", buf, sizeof buf), 16);
    cr_assert(test_check(buf, 16, &id) && id == 77);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(state, key_and_value_limits)
{
    const char *name = test_name("limits");
    const uint32_t vs = 100;
    shmring_state_t *s = make(name, 8, vs);
    char k63[64], k64[65];
    memset(k63, 'x', 63);
    k63[63] = '\0';
    memset(k64, 'x', 64);
    k64[64] = '\0';
    unsigned char v[101], out[128];
    test_fill(v, vs, 5);
    write_ok(s, "a", v, vs);
    write_ok(s, k63, "", 0);
    cr_assert_eq(shmring_state_write(s, k64, v, 1), -EINVAL);
    cr_assert_eq(shmring_state_write(s, "b", v, vs + 1), -EMSGSIZE);
    cr_assert_eq(shmring_state_read(s, "a", out, sizeof out), (ssize_t)vs);
    uint64_t id;
    cr_assert(test_check(out, vs, &id) && id == 5);
    cr_assert_eq(shmring_state_read(s, k63, out, sizeof out), 0);
    cr_assert_eq(shmring_state_read(s, k63, NULL, 0), 0, "an empty value fits no buffer");
    cr_assert_eq(shmring_state_read(s, "b", out, sizeof out), -ENOENT);
    /* A 63-byte key is not confused with its 62-byte prefix. */
    k63[62] = '\0';
    cr_assert_eq(shmring_state_read(s, k63, out, sizeof out), -ENOENT);
    struct seen seen = {0};
    cr_assert_eq(shmring_state_foreach(s, collect, &seen), 2);
    memset(k63, 'x', 63);
    k63[63] = '\0';
    int i = find_seen(&seen, k63);
    cr_assert_geq(i, 0, "63-byte key not visited whole");
    cr_assert_eq(seen.lens[i], 0);
    /* Every length from 0 to value_size round-trips. */
    for (size_t len = 0; len <= vs; len++) {
        test_fill(v, len, len);
        write_ok(s, "a", v, len);
        memset(out, 0xee, sizeof out);
        cr_assert_eq(shmring_state_read(s, "a", out, vs), (ssize_t)len);
        cr_assert(memcmp(out, v, len) == 0, "length %zu", len);
    }
    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(state, full_table_and_reuse_of_deleted_slots)
{
    const uint32_t sizes[] = {1, 2, 8, 64};
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        uint32_t n = sizes[z];
        const char *name = test_name("full");
        shmring_state_t *s = make(name, n, 8);
        char key[32];
        for (uint32_t i = 0; i < n; i++) {
            snprintf(key, sizeof key, "key-%u", i);
            write_ok(s, key, &i, sizeof i);
        }
        cr_assert_eq(shmring_state_write(s, "one-too-many", "x", 1), -ENOSPC, "%u entries", n);
        cr_assert_eq(shmring_state_read(s, "one-too-many", key, sizeof key), -ENOENT);
        /* Existing keys can still be rewritten when full. */
        uint32_t big = 1000;
        write_ok(s, "key-0", &big, sizeof big);
        /* Delete one: exactly one new key fits, in its slot. */
        snprintf(key, sizeof key, "key-%u", n - 1);
        cr_assert_eq(shmring_state_delete(s, key), 0);
        shmring_state_stats_t st;
        shmring_state_stats(s, &st);
        cr_assert_eq(st.used, n - 1);
        /* A tombstone, unless the entry after it is empty (then it is cleared). */
        cr_assert_leq(st.tombstones, 1);
        write_ok(s, "newcomer", "y", 1);
        cr_assert_eq(shmring_state_write(s, "second", "x", 1), -ENOSPC);
        shmring_state_stats(s, &st);
        cr_assert_eq(st.used, n);
        cr_assert_leq(st.tombstones, 1);
        read_str(s, "newcomer", "y");
        for (uint32_t i = 0; i + 1 < n; i++) {
            snprintf(key, sizeof key, "key-%u", i);
            uint32_t v = 0;
            cr_assert_eq(shmring_state_read(s, key, &v, sizeof v), (ssize_t)sizeof v);
            cr_assert_eq(v, i == 0 ? big : i);
        }
        /* Empty it completely, then fill it again with other keys. */
        for (uint32_t i = 0; i + 1 < n; i++) {
            snprintf(key, sizeof key, "key-%u", i);
            cr_assert_eq(shmring_state_delete(s, key), 0);
        }
        cr_assert_eq(shmring_state_delete(s, "newcomer"), 0);
        cr_assert_eq(shmring_state_foreach(s, collect, &(struct seen){0}), 0);
        cr_assert_eq(shmring_state_read(s, "newcomer", key, sizeof key), -ENOENT);
        for (uint32_t i = 0; i < n; i++) {
            snprintf(key, sizeof key, "again-%u", i);
            write_ok(s, key, &i, sizeof i);
        }
        cr_assert_eq(shmring_state_write(s, "one-too-many", "x", 1), -ENOSPC);
        shmring_state_close(s);
        shmring_state_unlink(name);
    }
}

static int count_visits(const char *key, size_t len, void *ctx)
{
    (void)key;
    (void)len;
    (*(size_t *)ctx)++;
    return 0;
}

/* `entries` is how many keys a table holds: every one of them fits, whatever
 * the keys, and one more is refused with -ENOSPC. */
Test(state, filled_to_entries_accepts_every_key_and_refuses_one_more)
{
    const uint32_t sizes[] = {1, 2, 4, 16, 1024, 4096};
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        uint32_t n = sizes[z];
        shmring_state_t *s = make(NULL, n, 8);
        char key[32];
        for (uint32_t i = 0; i < n; i++) {
            snprintf(key, sizeof key, "k%u", i * 2654435761u);
            write_ok(s, key, &i, sizeof i);
        }
        for (uint32_t j = 0; j < 16; j++) {
            snprintf(key, sizeof key, "extra-%u", j);
            cr_assert_eq(shmring_state_write(s, key, "x", 1), -ENOSPC, "%u entries, %s", n, key);
            cr_assert_eq(shmring_state_read(s, key, key, sizeof key), -ENOENT);
        }
        shmring_state_stats_t st;
        cr_assert_eq(shmring_state_stats(s, &st), 0);
        cr_assert_eq(st.entries, n);
        cr_assert_eq(st.used, n);
        for (uint32_t i = 0; i < n; i++) {
            snprintf(key, sizeof key, "k%u", i * 2654435761u);
            uint32_t v = UINT32_MAX;
            cr_assert_eq(shmring_state_read(s, key, &v, sizeof v), (ssize_t)sizeof v);
            cr_assert_eq(v, i);
        }
        cr_assert_eq(shmring_state_foreach(s, count_visits, &(size_t){0}), (int)n);
        shmring_state_close(s);
    }
}

/* At full use, a deleted key makes room for exactly one key, the same or
 * another, over and over; the table never holds more than `entries`. */
Test(state, delete_and_reinsert_at_full_use)
{
    const uint32_t n = 256;
    const uint32_t rounds = (uint32_t)(20 * n * test_scale()) + 1;
    shmring_state_t *s = make(NULL, n, 16);
    uint64_t *ids = calloc(n, sizeof *ids);
    cr_assert_not_null(ids);
    char key[32];
    uint64_t next_id = 0;
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = next_id++;
        snprintf(key, sizeof key, "id-%llu", (unsigned long long)ids[i]);
        write_ok(s, key, &ids[i], sizeof ids[i]);
    }
    uint64_t rng = 88172645463325252ull;
    for (uint32_t r = 0; r < rounds; r++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uint32_t victim = (uint32_t)(rng % n);
        snprintf(key, sizeof key, "id-%llu", (unsigned long long)ids[victim]);
        cr_assert_eq(shmring_state_delete(s, key), 0, "round %u: delete %s", r, key);
        cr_assert_eq(shmring_state_delete(s, key), -ENOENT);
        if (rng & 0x100) /* the same key again, or a new one */
            ids[victim] = next_id++;
        snprintf(key, sizeof key, "id-%llu", (unsigned long long)ids[victim]);
        write_ok(s, key, &ids[victim], sizeof ids[victim]);
        if (r % 16 == 0) {
            snprintf(key, sizeof key, "id-%llu", (unsigned long long)next_id);
            cr_assert_eq(shmring_state_write(s, key, "x", 1), -ENOSPC, "round %u", r);
        }
    }
    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_assert_eq(st.used, n);
    cr_assert_eq(st.writing, 0);
    cr_assert_eq(shmring_state_foreach(s, count_visits, &(size_t){0}), (int)n);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "id-%llu", (unsigned long long)ids[i]);
        uint64_t v = UINT64_MAX;
        cr_assert_eq(shmring_state_read(s, key, &v, sizeof v), (ssize_t)sizeof v, "%s", key);
        cr_assert_eq(v, ids[i]);
    }
    free(ids);
    shmring_state_close(s);
}

/* The table's own mapping, through its descriptor (shared backends only). */
static struct shmring__hdr *map_table(shmring_state_t *s, size_t *len)
{
    int fd = shmring_state_fd(s);
    cr_assert_geq(fd, 0);
    *len = SHMRING__HEADER_SIZE;
    void *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(m, MAP_FAILED);
    return m;
}

/* A key count that a dead holder of the insert lock left stale (its version
 * is not the lock's), or that is out of range, is counted again: the table
 * still holds exactly `entries` keys. */
Test(state, stale_key_count_is_counted_again)
{
    if (test_heap_forced())
        cr_skip_test("needs a shared mapping");
    const uint32_t n = 8;
    shmring_state_t *s = make(NULL, n, 8);
    char key[32];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%u", i);
        write_ok(s, key, &i, sizeof i);
    }
    size_t len;
    struct shmring__hdr *h = map_table(s, &len);
    struct shmring__state_shared *sh = (void *)h->object;
    cr_assert_eq(sh->keys, n);
    /* As if the last holder had inserted a key and died before counting it. */
    sh->keys = 0;
    sh->keys_version -= 2;
    cr_assert_eq(shmring_state_write(s, "more", "x", 1), -ENOSPC);
    cr_assert_eq(sh->keys, n);
    /* Out of range with the right version. */
    sh->keys = 1000;
    cr_assert_eq(shmring_state_delete(s, "k3"), 0);
    cr_assert_eq(sh->keys, n - 1);
    write_ok(s, "more", "x", 1);
    cr_assert_eq(shmring_state_write(s, "again", "x", 1), -ENOSPC);
    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_assert_eq(st.used, n);
    munmap(h, len);
    shmring_state_close(s);
}

/* Open checks the index size (exactly twice the entries) and the state
 * layout version; putting the field back makes the table open again. */
Test(state, corrupt_index_size_or_layout_is_refused)
{
    if (test_heap_forced())
        cr_skip_test("needs a shared mapping");
    test_quiet_log();
    const uint32_t n = 16;
    shmring_state_t *s = make(NULL, n, 8);
    write_ok(s, "a", "1", 1);
    size_t len;
    struct shmring__hdr *h = map_table(s, &len);
    struct shmring__state_shared *sh = (void *)h->object;
    cr_assert_eq(h->param[3], 2 * n);
    const uint32_t bad_slots[] = {0, n, 2 * n - 1, 2 * n + 1, 4 * n, UINT32_MAX};
    shmring_state_t *t = NULL;
    for (size_t i = 0; i < sizeof bad_slots / sizeof bad_slots[0]; i++) {
        h->param[3] = bad_slots[i];
        cr_assert_eq(shmring_state_open_fd(shmring_state_fd(s), 0, &t), -EPROTO, "slots %u",
                     bad_slots[i]);
    }
    /* Entries and index agreeing with each other but not with the file. */
    h->param[0] = 2 * n;
    h->param[3] = 4 * n;
    cr_assert_eq(shmring_state_open_fd(shmring_state_fd(s), 0, &t), -EPROTO);
    h->param[0] = n;
    h->param[3] = 2 * n;
    const uint32_t bad_layout[] = {0, 1, SHMRING__STATE_LAYOUT + 1};
    for (size_t i = 0; i < sizeof bad_layout / sizeof bad_layout[0]; i++) {
        sh->layout = bad_layout[i];
        cr_assert_eq(shmring_state_open_fd(shmring_state_fd(s), 0, &t), -EPROTONOSUPPORT,
                     "layout %u", bad_layout[i]);
    }
    sh->layout = SHMRING__STATE_LAYOUT;
    cr_assert_eq(shmring_state_open_fd(shmring_state_fd(s), 0, &t), 0);
    read_str(t, "a", "1");
    shmring_state_close(t);
    munmap(h, len);
    shmring_state_close(s);
}

Test(state, create_and_open_errors)
{
    test_quiet_log();
    shmring_state_t *s = NULL;
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT();
    cr_assert_eq(shmring_state_create("/x", NULL, NULL), -EINVAL);
    cr_assert_eq(shmring_state_create("no-slash", NULL, &s), -EINVAL);
    cr_assert_eq(shmring_state_create("/a/b", NULL, &s), -EINVAL);
    cr_assert_eq(shmring_state_create("/", NULL, &s), -EINVAL);
    cfg.entries = 3;
    cr_assert_eq(shmring_state_create(test_name("c"), &cfg, &s), -EINVAL, "not a power of two");
    cfg.entries = SHMRING_STATE_MAX_ENTRIES * 2;
    cr_assert_eq(shmring_state_create(test_name("c"), &cfg, &s), -EINVAL);
    cfg.entries = 4;
    cfg.value_size = SHMRING_STATE_MAX_VALUE + 1;
    cr_assert_eq(shmring_state_create(test_name("c"), &cfg, &s), -EINVAL);
    cfg.value_size = 8;
    cfg.flags = SHMRING_OVERWRITE;
    cr_assert_eq(shmring_state_create(test_name("c"), &cfg, &s), -EINVAL, "ring flag");
    cfg.flags = 0;
    cfg.mode = 0666;
    cr_assert_eq(shmring_state_create(test_name("c"), &cfg, &s), -EINVAL, "insecure mode");
    cfg.mode = 01600;
    cr_assert_eq(shmring_state_create(test_name("c"), &cfg, &s), -EINVAL);
    cfg.mode = 0;

    const char *name = test_name("exist");
    char kept[128];
    snprintf(kept, sizeof kept, "%s", name);
    s = make(kept, 4, 8);
    shmring_state_t *t = NULL;
    cr_assert_eq(shmring_state_create(kept, &cfg, &t), -EEXIST);
    cr_assert_eq(shmring_state_open(kept, SHMRING_PRODUCER, &t), -EINVAL, "unknown flag");
    cr_assert_eq(shmring_state_open(kept, 0, NULL), -EINVAL);
    cr_assert_eq(shmring_state_open("bad", 0, &t), -EINVAL);
    cr_assert_eq(shmring_state_open(test_name("none"), 0, &t), -ENOENT);
    /* A state table is not a ring, and a ring is not a state table. */
    shmring_t *r = NULL;
    cr_assert_eq(shmring_open(kept, SHMRING_CONSUMER, &r), -EPROTOTYPE);
    const char *rname = test_name("ring");
    char rkept[128];
    snprintf(rkept, sizeof rkept, "%s", rname);
    shmring_config_t rc = SHMRING_CONFIG_INIT(.slots = 4, .slot_size = 8);
    cr_assert_eq(shmring_create(rkept, &rc, &r), 0);
    cr_assert_eq(shmring_state_open(rkept, 0, &t), -EPROTOTYPE);
    cr_assert_eq(shmring_state_create(rkept, NULL, &t), -EEXIST);
    shmring_close(r);
    cr_assert_eq(shmring_unlink(rkept), 0);
    shmring_state_close(s);
    cr_assert_eq(shmring_state_unlink(kept), 0);
    cr_assert_eq(shmring_state_unlink(kept), -ENOENT);
    cr_assert_eq(shmring_state_unlink("bad"), -EINVAL);
    cr_assert_eq(shmring_state_open(kept, 0, &t), -ENOENT);
    /* Defaults. */
    name = test_name("defaults");
    cr_assert_eq(shmring_state_create(name, NULL, &s), 0);
    cr_assert_eq(shmring_state_entries(s), 1024);
    cr_assert_eq(shmring_state_value_size(s), 256);
    shmring_state_close(s);
    shmring_state_unlink(name);
}

Test(state, anonymous_table_shared_by_descriptor)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    shmring_state_t *s = NULL;
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 8, .value_size = 32);
    cr_assert_eq(shmring_state_create(NULL, &cfg, &s), 0);
    cr_assert_eq(shmring_state_backend(s), SHMRING_BACKEND_MEMFD);
    int fd = shmring_state_fd(s);
    cr_assert_geq(fd, 0);
    cr_assert_eq(shmring_state_open_fd(-1, 0, &(shmring_state_t *){NULL}), -EBADF);
    write_ok(s, "from-parent", "p", 1);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_state_t *c = NULL;
        if (shmring_state_open_fd(fd, 0, &c) != 0)
            _exit(1);
        char buf[8];
        if (shmring_state_read(c, "from-parent", buf, sizeof buf) != 1 || buf[0] != 'p')
            _exit(2);
        if (shmring_state_write(c, "from-child", "c", 1) != 0)
            _exit(3);
        shmring_state_close(c);
        _exit(0);
    }
    cr_assert_eq(wait_child_within(pid, 10), 0);
    read_str(s, "from-child", "c");
    shmring_state_close(s);
}

/* ---- Concurrent inserts of the same new keys ---------------------------------------- */

#define RACE_KEYS 1000

struct race {
    const char *name;
    int id;
    int failures;
    int *gate;
};

/* Everyone opens, then all start together so that they collide on each key. */
static int race_writes(const char *name, int id, int *gate, int writers)
{
    shmring_state_t *s = NULL;
    if (shmring_state_open(name, 0, &s) != 0)
        return 1000000;
    __atomic_fetch_add(gate, 1, __ATOMIC_ACQ_REL);
    uint64_t deadline = h_now_ns() + 10000000000ull;
    while (__atomic_load_n(gate, __ATOMIC_ACQUIRE) < writers && h_now_ns() < deadline)
        ;
    int failures = 0;
    char key[32];
    for (int i = 0; i < RACE_KEYS; i++) {
        snprintf(key, sizeof key, "race-%d", i);
        uint64_t v = (uint64_t)id << 32 | (uint64_t)i;
        int rc;
        while ((rc = shmring_state_write(s, key, &v, sizeof v)) == -EAGAIN)
            ;
        failures += rc != 0;
    }
    shmring_state_close(s);
    return failures;
}

static void *race_thread(void *arg)
{
    struct race *r = arg;
    r->failures = race_writes(r->name, r->id, r->gate, 4);
    return NULL;
}

static int count_key(const char *key, size_t len, void *ctx)
{
    int *counts = ctx;
    int i;
    cr_assert_eq(len, sizeof(uint64_t));
    cr_assert_eq(sscanf(key, "race-%d", &i), 1, "unexpected key %s", key);
    cr_assert(i >= 0 && i < RACE_KEYS);
    counts[i]++;
    return 0;
}

static void check_race_table(shmring_state_t *s, int writers)
{
    static int counts[RACE_KEYS];
    memset(counts, 0, sizeof counts);
    cr_assert_eq(shmring_state_foreach(s, count_key, counts), RACE_KEYS);
    char key[32];
    for (int i = 0; i < RACE_KEYS; i++) {
        cr_assert_eq(counts[i], 1, "key race-%d has %d entries", i, counts[i]);
        snprintf(key, sizeof key, "race-%d", i);
        uint64_t v = 0;
        cr_assert_eq(shmring_state_read(s, key, &v, sizeof v), (ssize_t)sizeof v);
        cr_assert_eq(v & 0xffffffffu, (uint64_t)i);
        cr_assert_lt(v >> 32, (uint64_t)writers);
    }
    shmring_state_stats_t st;
    shmring_state_stats(s, &st);
    cr_assert_eq(st.used, RACE_KEYS);
}

Test(state, concurrent_inserts_of_one_key_make_one_entry_threads, .timeout = 60)
{
    if (test_under_valgrind())
        cr_skip_test("races need real parallelism: valgrind runs one thread at a time");
    enum { WRITERS = 4 };
    for (int round = 0; round < 5; round++) {
        const char *name = test_name("race");
        char kept[128];
        snprintf(kept, sizeof kept, "%s", name);
        shmring_state_t *s = make(kept, 2048, 8);
        pthread_t th[WRITERS];
        struct race r[WRITERS];
        int gate = 0;
        for (int i = 0; i < WRITERS; i++) {
            r[i] = (struct race){kept, i, 0, &gate};
            cr_assert_eq(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
        }
        for (int i = 0; i < WRITERS; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(r[i].failures, 0, "writer %d: %d failed writes", i, r[i].failures);
        }
        check_race_table(s, WRITERS);
        shmring_state_close(s);
        shmring_state_unlink(kept);
    }
}

Test(state, concurrent_inserts_of_one_key_make_one_entry_processes, .timeout = 60)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    enum { WRITERS = 3 };
    for (int round = 0; round < 5; round++) {
        const char *name = test_name("prace");
        char kept[128];
        snprintf(kept, sizeof kept, "%s", name);
        shmring_state_t *s = make(kept, 2048, 8);
        pid_t pids[WRITERS];
        int *gate = test_shared_alloc(sizeof *gate);
        for (int i = 0; i < WRITERS; i++) {
            pids[i] = fork();
            cr_assert_geq(pids[i], 0);
            if (pids[i] == 0)
                _exit(race_writes(kept, i, gate, WRITERS) == 0 ? 0 : 1);
        }
        for (int i = 0; i < WRITERS; i++)
            cr_assert_eq(wait_child_within(pids[i], 30), 0, "writer %d", i);
        test_shared_free(gate, sizeof *gate);
        check_race_table(s, WRITERS);
        shmring_state_close(s);
        shmring_state_unlink(kept);
    }
}

/*
 * Inserts racing with deletes of the same few keys in a small table, so that
 * tombstones open up earlier in a probe sequence while a key is being
 * inserted further on. At every pause, no key may be present twice.
 */
#define CHURN_WRITERS 3
#define CHURN_KEYS    6
#define CHURN_ROUNDS  300

struct churn {
    char name[128];
    int arrived;
    int generation;
    int duplicates;
    int errors;
};

/* A barrier for threads or processes over shared memory, with a deadline. */
static void churn_barrier(struct churn *c)
{
    int gen = __atomic_load_n(&c->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&c->arrived, 1, __ATOMIC_ACQ_REL) == CHURN_WRITERS) {
        __atomic_store_n(&c->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&c->generation, gen + 1, __ATOMIC_RELEASE);
        return;
    }
    uint64_t deadline = h_now_ns() + 10000000000ull;
    while (__atomic_load_n(&c->generation, __ATOMIC_ACQUIRE) == gen && h_now_ns() < deadline)
        sched_yield();
}

static int churn_count(const char *key, size_t len, void *ctx)
{
    (void)len;
    int *counts = ctx;
    int i = -1;
    if (sscanf(key, "dup-%d", &i) == 1 && i >= 0 && i < CHURN_KEYS)
        counts[i]++;
    else
        counts[CHURN_KEYS]++;
    return 0;
}

static void churn_writer(struct churn *c, int id)
{
    shmring_state_t *s = NULL;
    if (shmring_state_open(c->name, 0, &s) != 0) {
        __atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
        s = NULL;
    }
    unsigned seed = (unsigned)id * 7919u + 1u;
    char key[16];
    for (int round = 0; round < CHURN_ROUNDS; round++) {
        churn_barrier(c);
        for (int op = 0; op < 40 && s != NULL; op++) {
            snprintf(key, sizeof key, "dup-%d", (int)(rand_r(&seed) % CHURN_KEYS));
            int rc = (rand_r(&seed) % 3 == 0) ? shmring_state_delete(s, key)
                                              : shmring_state_write(s, key, &id, sizeof id);
            if (rc != 0 && rc != -ENOENT && rc != -EAGAIN)
                __atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
        }
        churn_barrier(c);
        if (id == 0 && s != NULL) {
            int counts[CHURN_KEYS + 1] = {0};
            int n = shmring_state_foreach(s, churn_count, counts);
            int distinct = 0;
            for (int k = 0; k < CHURN_KEYS; k++) {
                distinct += counts[k] > 0;
                if (counts[k] > 1)
                    __atomic_add_fetch(&c->duplicates, 1, __ATOMIC_RELAXED);
            }
            if (n != distinct || counts[CHURN_KEYS] != 0)
                __atomic_add_fetch(&c->duplicates, 1, __ATOMIC_RELAXED);
        }
    }
    shmring_state_close(s);
}

struct churn_arg {
    struct churn *c;
    int id;
};

static void *churn_thread(void *arg)
{
    struct churn_arg *a = arg;
    churn_writer(a->c, a->id);
    return NULL;
}

static struct churn *churn_setup(void)
{
    struct churn *c = test_shared_alloc(sizeof *c);
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", test_name("churn"));
    shmring_state_close(make(c->name, 8, 8));
    return c;
}

static void churn_verdict(struct churn *c)
{
    cr_assert_eq(c->errors, 0, "%d unexpected errors", c->errors);
    cr_assert_eq(c->duplicates, 0, "a key was present twice at %d pauses", c->duplicates);
    shmring_state_unlink(c->name);
    test_shared_free(c, sizeof *c);
}

Test(state, inserts_racing_with_deletes_never_duplicate_threads, .timeout = 60)
{
    struct churn *c = churn_setup();
    pthread_t th[CHURN_WRITERS];
    struct churn_arg a[CHURN_WRITERS];
    for (int i = 0; i < CHURN_WRITERS; i++) {
        a[i] = (struct churn_arg){c, i};
        cr_assert_eq(pthread_create(&th[i], NULL, churn_thread, &a[i]), 0);
    }
    for (int i = 0; i < CHURN_WRITERS; i++)
        pthread_join(th[i], NULL);
    churn_verdict(c);
}

Test(state, inserts_racing_with_deletes_never_duplicate_processes, .timeout = 60)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    struct churn *c = churn_setup();
    pid_t pids[CHURN_WRITERS];
    for (int i = 0; i < CHURN_WRITERS; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            churn_writer(c, i);
            _exit(0);
        }
    }
    for (int i = 0; i < CHURN_WRITERS; i++)
        cr_assert_eq(wait_child_within(pids[i], 30), 0);
    churn_verdict(c);
}

/* ---- No torn values ------------------------------------------------------------------ */

#define TORN_KEYS    4
#define TORN_VALUE   200
#define TORN_WRITERS 2
#define TORN_READERS 2

/* Counters of a racing run, in memory shared with child processes. */
struct torn {
    char name[128];
    uint64_t deadline;
    uint64_t writes[TORN_WRITERS];
    uint64_t write_eagain[TORN_WRITERS];
    uint64_t write_errors[TORN_WRITERS];
    uint64_t reads[TORN_READERS];
    uint64_t read_eagain[TORN_READERS];
    uint64_t bad[TORN_READERS];
    uint64_t backwards[TORN_READERS];
    int started;
};

/* id of a value: key, writer and that writer's sequence number. */
static uint64_t torn_id(unsigned key, unsigned writer, uint64_t seq)
{
    return (uint64_t)key << 56 | (uint64_t)writer << 48 | seq;
}

static void torn_writer(struct torn *t, unsigned w)
{
    shmring_state_t *s = NULL;
    if (shmring_state_open(t->name, 0, &s) != 0) {
        t->write_eagain[w] = UINT64_MAX;
        return;
    }
    unsigned char v[TORN_VALUE];
    char key[16];
    uint64_t seq = 1;
    while (h_now_ns() < t->deadline) {
        unsigned k = (unsigned)(seq % TORN_KEYS);
        snprintf(key, sizeof key, "torn-%u", k);
        size_t len = 16 + (size_t)((seq * 7919) % (TORN_VALUE - 15));
        test_fill(v, len, torn_id(k, w, seq));
        int rc = shmring_state_write(s, key, v, len);
        if (rc == 0)
            t->writes[w]++;
        else if (rc == -EAGAIN)
            t->write_eagain[w]++;
        else
            t->write_errors[w]++;
        seq++;
    }
    shmring_state_close(s);
}

static void torn_reader(struct torn *t, unsigned r)
{
    shmring_state_t *s = NULL;
    if (shmring_state_open(t->name, 0, &s) != 0) {
        t->bad[r] = UINT64_MAX;
        return;
    }
    unsigned char v[TORN_VALUE];
    char key[16];
    uint64_t last[TORN_KEYS][TORN_WRITERS] = {{0}};
    uint64_t reads = 0, eagain = 0, bad = 0, backwards = 0;
    for (unsigned i = 0; h_now_ns() < t->deadline; i++) {
        unsigned k = (i * 3 + r) % TORN_KEYS;
        snprintf(key, sizeof key, "torn-%u", k);
        ssize_t n = shmring_state_read(s, key, v, sizeof v);
        if (n == -EAGAIN) {
            eagain++;
            continue;
        }
        uint64_t id;
        if (n < 16 || !test_check(v, (size_t)n, &id) || (id >> 56) != k ||
            ((id >> 48) & 0xff) >= TORN_WRITERS) {
            bad++;
            continue;
        }
        /* The latest value of a key never goes back to an older one of a writer. */
        unsigned w = (unsigned)((id >> 48) & 0xff);
        uint64_t seq = id & 0xffffffffffffull;
        if (seq < last[k][w])
            backwards++;
        last[k][w] = seq;
        reads++;
    }
    t->reads[r] = reads;
    t->read_eagain[r] = eagain;
    t->bad[r] += bad;
    t->backwards[r] = backwards;
    shmring_state_close(s);
}

static struct torn *torn_setup(uint64_t *duration)
{
    struct torn *t = test_shared_alloc(sizeof *t);
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", test_name("torn"));
    shmring_state_t *s = make(t->name, 16, TORN_VALUE);
    /* Every key present before the race, so that every read finds one. */
    unsigned char v[TORN_VALUE];
    char key[16];
    for (unsigned k = 0; k < TORN_KEYS; k++) {
        snprintf(key, sizeof key, "torn-%u", k);
        test_fill(v, 16, torn_id(k, 0, 0));
        write_ok(s, key, v, 16);
    }
    shmring_state_close(s);
    *duration = (uint64_t)(1e9 * test_scale());
    /* Scaled down (valgrind): still long enough for the threads to race. */
    if (*duration < 300000000ull)
        *duration = 300000000ull;
    t->deadline = h_now_ns() + *duration;
    return t;
}

static void torn_verdict(struct torn *t)
{
    uint64_t reads = 0, eagain = 0, writes = 0, weagain = 0;
    for (unsigned r = 0; r < TORN_READERS; r++) {
        cr_assert_eq(t->bad[r], 0, "reader %u: %llu torn or wrong values", r,
                     (unsigned long long)t->bad[r]);
        cr_assert_eq(t->backwards[r], 0, "reader %u: %llu values went back in time", r,
                     (unsigned long long)t->backwards[r]);
        reads += t->reads[r];
        eagain += t->read_eagain[r];
    }
    for (unsigned w = 0; w < TORN_WRITERS; w++) {
        cr_assert_neq(t->write_eagain[w], UINT64_MAX, "writer %u could not open", w);
        cr_assert_eq(t->write_errors[w], 0, "writer %u: failed writes", w);
        writes += t->writes[w];
        weagain += t->write_eagain[w];
    }
    cr_log_info("torn: %llu reads (%llu -EAGAIN), %llu writes (%llu -EAGAIN)",
                (unsigned long long)reads, (unsigned long long)eagain, (unsigned long long)writes,
                (unsigned long long)weagain);
    /* It raced at all (much less under valgrind, where scale is small). */
    uint64_t min_ops = test_scale() >= 1 ? 10000 : 100;
    cr_assert_gt(reads, min_ops, "too few reads: %llu", (unsigned long long)reads);
    cr_assert_gt(writes, min_ops, "too few writes: %llu", (unsigned long long)writes);
    /* Loose bounds: giving up is allowed under contention (and on a loaded
     * machine); what must not happen is a reader that mostly gives up. */
    cr_assert_lt(eagain * 4, reads, "more than 25%% of reads gave up");
    cr_assert_lt(weagain * 2, writes, "more than half of the writes gave up");
    shmring_state_unlink(t->name);
    test_shared_free(t, sizeof *t);
}

struct torn_arg {
    struct torn *t;
    unsigned index;
};

static void *torn_writer_thread(void *arg)
{
    struct torn_arg *a = arg;
    torn_writer(a->t, a->index);
    return NULL;
}

static void *torn_reader_thread(void *arg)
{
    struct torn_arg *a = arg;
    torn_reader(a->t, a->index);
    return NULL;
}

Test(state, no_torn_values_threads, .timeout = 60)
{
    if (test_under_valgrind())
        cr_skip_test("races need real parallelism: valgrind runs one thread at a time");
    uint64_t duration;
    struct torn *t = torn_setup(&duration);
    pthread_t th[TORN_WRITERS + TORN_READERS];
    struct torn_arg args[TORN_WRITERS + TORN_READERS];
    for (unsigned i = 0; i < TORN_WRITERS + TORN_READERS; i++) {
        args[i] = (struct torn_arg){t, i < TORN_WRITERS ? i : i - TORN_WRITERS};
        cr_assert_eq(pthread_create(&th[i], NULL,
                                    i < TORN_WRITERS ? torn_writer_thread : torn_reader_thread,
                                    &args[i]),
                     0);
    }
    for (unsigned i = 0; i < TORN_WRITERS + TORN_READERS; i++)
        pthread_join(th[i], NULL);
    torn_verdict(t);
}

Test(state, no_torn_values_processes, .timeout = 60)
{
    if (test_under_valgrind())
        cr_skip_test("races need real parallelism: valgrind runs one thread at a time");
    if (test_heap_forced())
        cr_skip_test("needs processes");
    uint64_t duration;
    struct torn *t = torn_setup(&duration);
    pid_t pids[TORN_WRITERS + TORN_READERS];
    for (unsigned i = 0; i < TORN_WRITERS + TORN_READERS; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            if (i < TORN_WRITERS)
                torn_writer(t, i);
            else
                torn_reader(t, i - TORN_WRITERS);
            _exit(0);
        }
    }
    for (unsigned i = 0; i < TORN_WRITERS + TORN_READERS; i++)
        cr_assert_eq(wait_child_within(pids[i], 10.0 + 2e-9 * (double)duration), 0);
    torn_verdict(t);
}

/* ---- Writers killed mid-write -------------------------------------------------------- */

#define KILL_VALUE 128

/* Writes "k" (an existing key), inserts and deletes "n" (a new key each
 * time, through the insert lock), as fast as it can, until killed. */
static void kill_target(const char *name, volatile uint64_t *progress)
{
    shmring_state_t *s = NULL;
    if (shmring_state_open(name, 0, &s) != 0)
        _exit(1);
    unsigned char v[KILL_VALUE];
    for (uint64_t seq = 1;; seq++) {
        size_t len = 16 + (size_t)(seq % (KILL_VALUE - 15));
        test_fill(v, len, seq);
        shmring_state_write(s, "k", v, len);
        shmring_state_write(s, "n", v, 16);
        shmring_state_delete(s, "n");
        *progress = seq;
    }
}

/* The value of "k" is readable and well-formed; returns its id. */
static uint64_t read_k(shmring_state_t *s)
{
    unsigned char v[KILL_VALUE];
    uint64_t deadline = h_now_ns() + 1000000000ull;
    ssize_t n;
    while ((n = shmring_state_read(s, "k", v, sizeof v)) == -EAGAIN && h_now_ns() < deadline)
        ;
    cr_assert_geq(n, 16, "read k: %zd (%s)", n, n < 0 ? shmring_strerror((int)n) : "");
    uint64_t id;
    cr_assert(test_check(v, (size_t)n, &id), "k torn after a writer died");
    return id;
}

/* A write of key that succeeds within a second (recovering a dead writer). */
static uint64_t write_within(shmring_state_t *s, const char *key, uint64_t id)
{
    unsigned char v[KILL_VALUE];
    test_fill(v, 40, id);
    uint64_t t0 = h_now_ns(), deadline = t0 + 1000000000ull;
    int rc;
    while ((rc = shmring_state_write(s, key, v, 40)) == -EAGAIN && h_now_ns() < deadline)
        ;
    cr_assert_eq(rc, 0, "write %s after a writer died: %s", key, shmring_strerror(rc));
    return h_now_ns() - t0;
}

Test(state, writer_killed_mid_write_never_loses_the_key, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    const char *name = test_name("kill");
    char kept[128];
    snprintf(kept, sizeof kept, "%s", name);
    shmring_state_t *s = make(kept, 16, KILL_VALUE);
    volatile uint64_t *progress = test_shared_alloc(sizeof *progress);
    write_within(s, "k", 1u << 30);
    unsigned seed = (unsigned)getpid();
    uint64_t worst = 0;
    for (int iter = 0; iter < 50; iter++) {
        *progress = 0;
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            kill_target(kept, progress);
        /* Let it write for a random few milliseconds once it runs. */
        uint64_t deadline = h_now_ns() + 5000000000ull;
        while (*progress == 0 && h_now_ns() < deadline)
            h_sleep_ns(100000);
        cr_assert_neq(*progress, 0, "writer %d never wrote", iter);
        h_sleep_ns(1000000ull + (uint64_t)(rand_r(&seed) % 4000) * 1000ull);
        kill(pid, SIGKILL);
        cr_assert_eq(wait_child_within(pid, 10), 128 + SIGKILL);
        /* Readers never wait for the dead writer: the previous value is there. */
        read_k(s);
        /* The next writers recover what it held, within a bounded time. */
        uint64_t id = (uint64_t)(iter + 1) << 32;
        uint64_t took = write_within(s, "k", id);
        cr_assert_eq(read_k(s), id, "iteration %d: k does not hold the new value", iter);
        char fresh[32];
        snprintf(fresh, sizeof fresh, "fresh-%d", iter);
        took += write_within(s, fresh, id + 1);
        cr_assert_eq(shmring_state_delete(s, fresh), 0);
        int rc = shmring_state_delete(s, "n");
        cr_assert(rc == 0 || rc == -ENOENT, "delete n: %s", shmring_strerror(rc));
        if (took > worst)
            worst = took;
    }
    /* The last writer may have died mid-write on an entry nobody wrote
     * since ("n"): that one is recovered by a repair, not by a writer. */
    cr_assert_geq(shmring_state_repair(s), 0);
    shmring_state_stats_t st;
    cr_assert_eq(shmring_state_stats(s, &st), 0);
    cr_log_info("50 writers killed: %llu entries recovered, slowest recovery %.1f ms",
                (unsigned long long)st.recovered, (double)worst / 1e6);
    cr_assert_gt(st.recovered, 0, "no kill landed mid-write in 50 tries");
    cr_assert_eq(st.writing, 0);
    cr_assert_eq(st.used, 1, "only k is left");
    cr_assert_eq(st.users, 1, "dead writers still counted as users");
    test_shared_free((void *)progress, sizeof *progress);
    shmring_state_close(s);
    shmring_state_unlink(kept);
}

Test(state, repair_recovers_a_dead_writer_at_once, .timeout = 60)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    const char *name = test_name("repair");
    char kept[128];
    snprintf(kept, sizeof kept, "%s", name);
    shmring_state_t *s = make(kept, 16, KILL_VALUE);
    volatile uint64_t *progress = test_shared_alloc(sizeof *progress);
    write_within(s, "k", 7);
    unsigned seed = (unsigned)getpid() * 31u;
    int repaired = 0;
    for (int iter = 0; iter < 50 && repaired == 0; iter++) {
        *progress = 0;
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            kill_target(kept, progress);
        uint64_t deadline = h_now_ns() + 5000000000ull;
        while (*progress == 0 && h_now_ns() < deadline)
            h_sleep_ns(100000);
        h_sleep_ns(500000ull + (uint64_t)(rand_r(&seed) % 2000) * 1000ull);
        kill(pid, SIGKILL);
        cr_assert_eq(wait_child_within(pid, 10), 128 + SIGKILL);
        shmring_state_stats_t st;
        shmring_state_stats(s, &st);
        int n = shmring_state_repair(s);
        /* Every entry it held, and maybe the insert lock. */
        cr_assert(n == (int)st.writing || n == (int)st.writing + 1,
                  "repair: %d for %u held entries", n, st.writing);
        repaired += n;
        shmring_state_stats(s, &st);
        cr_assert_eq(st.writing, 0);
        cr_assert_eq(shmring_state_repair(s), 0);
        read_k(s);
    }
    cr_assert_gt(repaired, 0, "no kill landed mid-write in 50 tries");
    test_shared_free((void *)progress, sizeof *progress);
    shmring_state_close(s);
    shmring_state_unlink(kept);
}
