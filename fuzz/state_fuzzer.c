/*
 * state_fuzzer: the keyed state table against a reference map, and corrupt
 * table images from a hostile peer.
 *
 * Input byte 0 chooses the mode.
 *  - even: a program of writes, reads, deletes, foreach walks and stats over
 *    a small heap table (1..8 entries, so tombstones, probing and a full
 *    table all happen); a plain array predicts every return value, length,
 *    value byte and walk; any difference aborts.
 *  - odd: a valid table image is built, input bytes are XORed over its
 *    header (before attaching) or its entries and lock words (after
 *    attaching), then reads, writes, deletes, foreach, stats and repair run
 *    on it. Must not crash, read out of bounds or loop forever. Half of the
 *    images are marked as a shared backend, so that writers are judged by
 *    their party entries and handle generations, and corrupt lock words
 *    naming dead or absent handles get recovered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segment.h"
#include "shmring.h"
#include "state.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "mismatch: %s (line %d)\n", #cond, __LINE__);                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MODEL_KEYS 64
#define MAX_VALUE  48

struct model_entry {
    char key[SHMRING_STATE_KEY_MAX + 1];
    unsigned char val[MAX_VALUE];
    size_t len;
    int live;
};

static struct model_entry M[MODEL_KEYS];
static size_t M_live;

static void quiet(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

/* A cursor over the input. */
struct cur {
    const uint8_t *p;
    size_t n, i;
};

static uint8_t next(struct cur *c)
{
    return c->i < c->n ? c->p[c->i++] : 0;
}

/*
 * A key from the input: mostly one of 12 short keys (so that keys collide
 * in a small table), otherwise raw bytes of length 0..69 (empty, too long,
 * embedded NUL, any byte).
 */
static void take_key(struct cur *c, char key[80])
{
    uint8_t kb = next(c);
    if (kb < 0xc0) {
        snprintf(key, 80, "k%u", (unsigned)(kb % 12));
        return;
    }
    size_t len = next(c) % 70;
    for (size_t i = 0; i < len; i++)
        key[i] = (char)next(c);
    key[len] = '\0';
}

static int key_valid(const char *key)
{
    size_t n = strnlen(key, 80);
    return n >= 1 && n <= SHMRING_STATE_KEY_MAX;
}

static struct model_entry *model_find(const char *key)
{
    for (size_t i = 0; i < MODEL_KEYS; i++)
        if (M[i].live && strcmp(M[i].key, key) == 0)
            return &M[i];
    return NULL;
}

static void fill(unsigned char *p, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(seed * 131 + i * 7 + 1);
}

static void op_write(shmring_state_t *s, struct cur *c, uint32_t entries, uint32_t vsize,
                     uint64_t serial)
{
    char key[80];
    take_key(c, key);
    size_t len = next(c) % (vsize + 4);
    unsigned char val[MAX_VALUE + 4];
    fill(val, len, serial);
    int rc = shmring_state_write(s, key, len ? val : NULL, len);
    if (!key_valid(key)) {
        CHECK(rc == -EINVAL);
        return;
    }
    if (len > vsize) {
        CHECK(rc == -EMSGSIZE);
        return;
    }
    struct model_entry *e = model_find(key);
    if (e == NULL && M_live == entries) {
        CHECK(rc == -ENOSPC);
        return;
    }
    CHECK(rc == 0);
    if (e == NULL) {
        for (size_t i = 0; i < MODEL_KEYS && e == NULL; i++)
            if (!M[i].live)
                e = &M[i];
        CHECK(e != NULL); /* entries <= 8 < MODEL_KEYS */
        snprintf(e->key, sizeof e->key, "%s", key);
        e->live = 1;
        M_live++;
    }
    memcpy(e->val, val, len);
    e->len = len;
}

static void op_read(shmring_state_t *s, struct cur *c)
{
    char key[80];
    take_key(c, key);
    size_t cap = next(c) % (MAX_VALUE + 2);
    unsigned char buf[MAX_VALUE + 2];
    ssize_t n = shmring_state_read(s, key, cap ? buf : NULL, cap);
    if (!key_valid(key)) {
        CHECK(n == -EINVAL);
        return;
    }
    struct model_entry *e = model_find(key);
    if (e == NULL) {
        CHECK(n == -ENOENT);
    } else if (e->len > cap) {
        CHECK(n == -EMSGSIZE);
    } else {
        CHECK(n == (ssize_t)e->len);
        CHECK(n == 0 || memcmp(buf, e->val, e->len) == 0);
    }
}

static void op_delete(shmring_state_t *s, struct cur *c)
{
    char key[80];
    take_key(c, key);
    int rc = shmring_state_delete(s, key);
    if (!key_valid(key)) {
        CHECK(rc == -EINVAL);
        return;
    }
    struct model_entry *e = model_find(key);
    if (e == NULL) {
        CHECK(rc == -ENOENT);
        return;
    }
    CHECK(rc == 0);
    e->live = 0;
    M_live--;
}

/* A walk: every live key once, with its length; stops early when asked. */
struct walk {
    unsigned char seen[MODEL_KEYS];
    size_t visits, stop_after;
};

static int visit(const char *key, size_t len, void *ctx)
{
    struct walk *w = ctx;
    struct model_entry *e = model_find(key);
    CHECK(e != NULL);
    CHECK(e->len == len);
    size_t i = (size_t)(e - M);
    CHECK(!w->seen[i]);
    w->seen[i] = 1;
    w->visits++;
    return w->visits == w->stop_after ? -77 : 0;
}

static void op_foreach(shmring_state_t *s, struct cur *c)
{
    struct walk w;
    memset(&w, 0, sizeof w);
    w.stop_after = next(c) % 12; /* 0: never stop */
    int rc = shmring_state_foreach(s, visit, &w);
    if (w.stop_after != 0 && w.stop_after <= M_live) {
        CHECK(rc == -77);
        CHECK(w.visits == w.stop_after);
    } else {
        CHECK(rc == (int)M_live);
        CHECK(w.visits == M_live);
    }
}

static void op_stats(shmring_state_t *s, uint32_t entries, uint32_t vsize)
{
    shmring_state_stats_t st;
    CHECK(shmring_state_stats(s, &st) == 0);
    CHECK(st.entries == entries && st.value_size == vsize);
    CHECK(st.used == M_live);
    CHECK(st.writing == 0);
    CHECK(st.used + st.tombstones <= SHMRING__STATE_SLOTS(entries));
}

static void differential(const uint8_t *data, size_t size)
{
    memset(M, 0, sizeof M);
    M_live = 0;
    uint32_t entries = 1u << (data[0] >> 1) % 4; /* 1..8 */
    uint32_t vsize = 1 + data[1] % MAX_VALUE;
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = vsize,
                                                           .flags = SHMRING_FORCE_HEAP, .mode = 0);
    shmring_state_t *s = NULL;
    CHECK(shmring_state_create(NULL, &cfg, &s) == 0);
    struct cur c = {data + 2, size - 2, 0};
    for (uint64_t serial = 0; c.i < c.n && serial < 512; serial++) {
        switch (next(&c) % 8) {
        case 0:
        case 1:
        case 2:
            op_write(s, &c, entries, vsize, serial);
            break;
        case 3:
        case 4:
            op_read(s, &c);
            break;
        case 5:
            op_delete(s, &c);
            break;
        case 6:
            op_foreach(s, &c);
            break;
        case 7:
            op_stats(s, entries, vsize);
            break;
        }
    }
    op_stats(s, entries, vsize);
    shmring_state_close(s);
}

/* ---- Corrupt images ------------------------------------------------------ */

static size_t build_image(uint32_t entries, uint32_t vsize, unsigned char **out)
{
    uint32_t vstride = (vsize + 7) & ~7u;
    uint32_t param[4] = {entries, vsize, (SHMRING__STATE_ENTRY_HEADER + 2 * vstride + 63) & ~63u,
                         SHMRING__STATE_SLOTS(entries)};
    uint64_t total = 0;
    if (shmring__state_layout(param, 0, &total) < 0)
        return 0;
    unsigned char *img = NULL;
    if (posix_memalign((void **)&img, 4096, (size_t)total) != 0)
        return 0;
    memset(img, 0, (size_t)total);
    struct shmring__hdr *h = (struct shmring__hdr *)(void *)img;
    h->magic = SHMRING__MAGIC;
    h->type = SHMRING__TYPE_STATE;
    h->layout = SHMRING__LAYOUT;
    h->header_size = SHMRING__HEADER_SIZE;
    h->total_size = total;
    memcpy(h->param, param, sizeof param);
    ((struct shmring__state_shared *)(void *)h->object)->layout = SHMRING__STATE_LAYOUT;
    h->ready = SHMRING__READY;
    *out = img;
    return (size_t)total;
}

/* XOR (offset, byte) pairs over the image: offsets within the header's
 * first lines (before attach) or the table's lock lines and entries. */
static void overlay(unsigned char *img, size_t total, int header, struct cur *c)
{
    size_t pairs = next(c) % 48;
    for (size_t k = 0; k < pairs; k++) {
        size_t x = (size_t)next(c) << 8 | next(c);
        uint8_t v = next(c);
        size_t off;
        if (header)
            off = x % 256;
        else if (x & 0x8000)
            off = 128 + x % 320; /* insert lock, counters, handle generations */
        else
            off = SHMRING__HEADER_SIZE + x % (total - SHMRING__HEADER_SIZE);
        img[off] ^= v;
    }
}

static int count_key(const char *key, size_t len, void *ctx)
{
    (void)len;
    size_t *n = ctx;
    CHECK(strlen(key) < SHMRING__STATE_KEY_FIELD);
    (*n)++;
    return 0;
}

static void corrupt_ops(shmring_state_t *s, struct cur *c)
{
    unsigned char buf[MAX_VALUE + 8];
    /* Writes and deletes may wait about 50 ms each for an entry a corrupt
     * lock word shows as held: a few per input. */
    int slow = 0;
    for (int i = 0; i < 24 && c->i < c->n; i++) {
        char key[80];
        uint8_t op = next(c);
        take_key(c, key);
        switch (op % 6) {
        case 0:
            if (slow++ < 2)
                (void)shmring_state_write(s, key, buf, op % (MAX_VALUE + 1));
            break;
        case 1: {
            ssize_t n = shmring_state_read(s, key, buf, sizeof buf);
            CHECK(n < 0 || (size_t)n <= shmring_state_value_size(s));
            break;
        }
        case 2:
            if (slow++ < 2)
                (void)shmring_state_delete(s, key);
            break;
        case 3: {
            size_t n = 0;
            int rc = shmring_state_foreach(s, count_key, &n);
            CHECK(rc < 0 || (size_t)rc == n);
            /* A corrupt index may show a key in every one of its slots. */
            CHECK(n <= SHMRING__STATE_SLOTS(shmring_state_entries(s)));
            break;
        }
        case 4: {
            shmring_state_stats_t st;
            CHECK(shmring_state_stats(s, &st) == 0);
            CHECK(st.used <= SHMRING__STATE_SLOTS(st.entries) &&
                  st.tombstones <= SHMRING__STATE_SLOTS(st.entries));
            break;
        }
        case 5:
            CHECK(shmring_state_repair(s) >= 0);
            break;
        }
    }
}

static void corrupted(const uint8_t *data, size_t size)
{
    uint32_t entries = 1u << (data[0] >> 1) % 6; /* 1..32 */
    uint32_t vsize = 1 + data[1] % MAX_VALUE;
    unsigned char *img = NULL;
    size_t total = build_image(entries, vsize, &img);
    CHECK(total != 0);
    struct cur c = {data + 2, size - 2, 0};
    int header = data[0] & 0x80;
    if (header)
        overlay(img, total, 1, &c);
    struct shmring__seg *seg = NULL;
    shmring_state_t *s = NULL;
    if (shmring__seg_attach_image(img, total, SHMRING__TYPE_STATE, shmring__state_layout, &seg) ==
        0) {
        /* Judge writers by their party entries, as on a shared backend, so
         * that corrupt lock words naming dead handles exercise recovery. */
        if (data[0] & 0x40)
            seg->backend = SHMRING_BACKEND_MEMFD;
        if (shmring__state_from_seg(seg, &s) == 0) {
            if (!header)
                overlay(img, total, 0, &c);
            corrupt_ops(s, &c);
            shmring_state_close(s);
        } else {
            shmring__seg_close(seg);
        }
    } else {
        CHECK(header); /* only a corrupt header is refused */
    }
    free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        shmring_set_log(quiet, NULL);
        init = 1;
    }
    if (size < 2)
        return 0;
    if (data[0] & 1)
        corrupted(data, size);
    else
        differential(data, size);
    return 0;
}
