/*
 * name_fuzzer: segment names and the command-line tool's argument parsers.
 *
 * The input is split at its first 0xff byte into a name and the rest.
 *  - shmring__name_check is compared with a reference predicate;
 *  - shmring_open, shmring_state_open, shmring_unlink and shmring_state_unlink
 *    of the name must give -EINVAL exactly for the names the predicate
 *    rejects and -ENOENT for the others; a valid name is then created as a
 *    ring (or table), opened, unlinked twice (0, then -ENOENT). Segments go
 *    to a private temporary directory ($SHMRING_SHM_DIR), which must be
 *    empty again after every input: a name never reaches outside it.
 *  - the tool's parsers (src/cli/util.c: counts with K/M/G suffixes, octal
 *    modes, seconds, command-line names) are compared with reference
 *    parsers. The tool has no argument parser free of side effects (each
 *    subcommand parses and acts in one function), so those are what is
 *    fuzzed of it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "segment.h"
#include "shmring.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "mismatch: %s (line %d)\n", #cond, __LINE__);                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char dir[64];

static void quiet(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

static void remove_dir(void)
{
    if (dir[0] != '\0')
        rmdir(dir);
}

static void setup(void)
{
    shmring_set_log(quiet, NULL);
    snprintf(dir, sizeof dir, "/tmp/shmring-name-fuzz-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    setenv("SHMRING_SHM_DIR", dir, 1);
    unsetenv("SHMRING_FORCE_HEAP");
    atexit(remove_dir);
}

/* Reference: one leading '/', 2..SHMRING_NAME_MAX bytes, no other '/', no
 * control character, not "/." or "/..". */
static int ref_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len < 2 || len > SHMRING_NAME_MAX || s[0] != '/')
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '/' || ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return strcmp(s, "/.") != 0 && strcmp(s, "/..") != 0;
}

static size_t dir_entries(void)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void names(const char *name, uint8_t sel)
{
    int ok = ref_name_ok(name);
    CHECK((shmring__name_check(name) == 0) == ok);
    shmring_t *r = NULL;
    shmring_state_t *s = NULL;
    int want = ok ? -ENOENT : -EINVAL;
    CHECK(shmring_open(name, SHMRING_CONSUMER, &r) == want);
    CHECK(shmring_state_open(name, 0, &s) == want);
    CHECK(shmring_unlink(name) == want);
    CHECK(shmring_state_unlink(name) == want);
    if (!ok || (sel & 3) == 3)
        return;
    if (sel & 1) {
        shmring_state_config_t cfg =
            SHMRING_STATE_CONFIG_INIT(.entries = 1, .value_size = 8, .flags = SHMRING_NO_FALLBACK,
                                      .mode = 0);
        CHECK(shmring_state_create(name, &cfg, &s) == 0);
        CHECK(dir_entries() == 1);
        shmring_state_t *s2 = NULL;
        CHECK(shmring_state_open(name, 0, &s2) == 0);
        CHECK(shmring_open(name, SHMRING_CONSUMER, &r) == -EPROTOTYPE);
        CHECK(shmring_state_unlink(name) == 0);
        CHECK(shmring_state_unlink(name) == -ENOENT);
        shmring_state_close(s2);
        shmring_state_close(s);
    } else {
        shmring_config_t cfg =
            SHMRING_CONFIG_INIT(.slots = 2, .slot_size = 8, .flags = SHMRING_NO_FALLBACK);
        CHECK(shmring_create(name, &cfg, &r) == 0);
        CHECK(dir_entries() == 1);
        shmring_t *c = NULL;
        CHECK(shmring_open(name, SHMRING_CONSUMER, &c) == 0);
        CHECK(shmring_state_open(name, 0, &s) == -EPROTOTYPE);
        shmring_t *dup = NULL;
        CHECK(shmring_create(name, &cfg, &dup) == -EEXIST);
        CHECK(shmring_unlink(name) == 0);
        CHECK(shmring_unlink(name) == -ENOENT);
        shmring_close(c);
        shmring_close(r);
    }
    CHECK(dir_entries() == 0);
}

/* Reference count parser: digits, then at most one of kKmMgG. */
static int ref_count(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    if (s[i] != '\0') {
        if (s[i + 1] != '\0')
            return -EINVAL;
        switch (s[i]) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return -EINVAL;
        }
    }
    if (v > (UINT64_MAX >> shift))
        return -EINVAL;
    v <<= shift;
    if (v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Reference mode parser: octal digits only, at most 0777. */
static int ref_mode(const char *s, uint32_t *mode)
{
    if (s[0] == '\0')
        return -EINVAL;
    uint32_t v = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '7')
            return -EINVAL;
        v = v * 8 + (uint32_t)(s[i] - '0');
        if (v > 0777)
            return -EINVAL;
    }
    *mode = v;
    return 0;
}

static int all_digits(const char *s)
{
    if (s[0] == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static void parsers(const char *arg, uint8_t a, uint8_t b)
{
    uint64_t min = (uint64_t)a << (b % 40), max = min + ((uint64_t)b << (a % 50));
    uint64_t got = 12345, ref = 54321;
    int rc = cli_parse_count(arg, min, max, &got);
    int rrc = ref_count(arg, min, max, &ref);
    CHECK(rc == rrc);
    CHECK(rc < 0 || got == ref);

    uint32_t mode = 1, rmode = 2;
    rc = cli_parse_mode(arg, &mode);
    CHECK(rc == ref_mode(arg, &rmode));
    CHECK(rc < 0 || mode == rmode);

    int64_t ns = -1;
    rc = cli_parse_seconds(arg, &ns);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc == 0)
        CHECK(ns >= 0 && ns <= 1000000000LL * 1000000000LL);
    if (all_digits(arg) && strlen(arg) <= 9)
        CHECK(rc == 0 && ns == strtoll(arg, NULL, 10) * 1000000000LL);

    char out[SHMRING_NAME_MAX + 1];
    char ref_name[SHMRING_NAME_MAX + 8];
    rc = cli_segment_name(arg, out);
    int fits = strlen(arg) + (arg[0] == '/' ? 0 : 1) <= SHMRING_NAME_MAX;
    snprintf(ref_name, sizeof ref_name, "%s%s", arg[0] == '/' ? "" : "/", fits ? arg : "");
    CHECK((rc == 0) == (fits && ref_name_ok(ref_name)));
    CHECK(rc < 0 || strcmp(out, ref_name) == 0);

    char human[16];
    size_t cap = 1 + b % sizeof human;
    cli_human_size(got ^ ((uint64_t)a << 56), human, cap);
    CHECK(strlen(human) < cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        setup();
        init = 1;
    }
    if (size < 2)
        return 0;
    /* The name: bytes up to the first 0xff (at most 300), NUL-terminated. */
    char name[302];
    size_t n = 0;
    size_t i = 2;
    for (; i < size && data[i] != 0xff && n < 300; i++)
        name[n++] = (char)data[i];
    name[n] = '\0';
    names(name, data[0]);
    parsers(name, data[0], data[1]);
    return 0;
}
