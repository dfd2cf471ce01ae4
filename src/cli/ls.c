/* `shmring ls`: list the shmring segments of the shm directory. */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LS_COLUMNS 9 /* the most of either table */

static const char ls_help[] =
    "Usage: shmring ls [--json]\n"
    "\n"
    "List every shmring segment in the shm directory ($SHMRING_SHM_DIR, or /dev/shm):\n"
    "rings first, then state tables, each with columns of their own. Files that are\n"
    "not shmring segments are skipped; files are read, never mapped. In the table,\n"
    "name bytes >= 0x80 and '\\' are escaped as \\xHH and \\\\; in JSON, a name that\n"
    "is not valid UTF-8 has each byte >= 0x80 written as \\u00XX.\n"
    "\n"
    "Ring columns: NAME, TYPE (ring, or unknown-version for a segment of another\n"
    "layout version), SIZE, OWNER, CREATOR (pid and whether it lives), PRODUCER (pid\n"
    "and whether it lives; 'closed' after end of stream, '-' if none), CONSUMERS\n"
    "(live consumer handles), FILL (messages in it / slots).\n"
    "State table columns: NAME, TYPE (state), SIZE, OWNER, CREATOR, ENTRIES (keys it\n"
    "can hold), USED (keys in it), VALUE-SIZE (largest value), USERS (live handles).\n"
    "\n"
    "Options:\n"
    "  --json     one JSON array of objects instead of the tables\n"
    "  --help     show this help\n";

/* The rows of one table: ncol cells each. */
struct ls_rows {
    char *(*cell)[LS_COLUMNS];
    size_t n, cap;
};

/* What ls prints: a table of rings (and unknown versions) and one of state tables. */
struct ls_tables {
    struct ls_rows rings, states;
};

#define RING_COLUMNS  8
#define STATE_COLUMNS 9

static const char *const ring_titles[RING_COLUMNS] = {
    "NAME", "TYPE", "SIZE", "OWNER", "CREATOR", "PRODUCER", "CONSUMERS", "FILL",
};

static const char *const state_titles[STATE_COLUMNS] = {
    "NAME", "TYPE", "SIZE", "OWNER", "CREATOR", "ENTRIES", "USED", "VALUE-SIZE", "USERS",
};

static void owner_name(uid_t uid, char *buf, size_t cap)
{
    struct passwd *pw = getpwuid(uid);
    if (pw != NULL)
        snprintf(buf, cap, "%s", pw->pw_name);
    else
        snprintf(buf, cap, "%u", (unsigned)uid);
}

static void pid_cell(int32_t pid, int alive, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d (%s)", (int)pid, alive ? "alive" : "dead");
}

static void producer_cell(const struct cli_seg *s, char *buf, size_t cap)
{
    if (s->type != CLI_SEG_RING)
        snprintf(buf, cap, "-");
    else if (s->producer_pid != 0)
        pid_cell(s->producer_pid, s->producer_alive, buf, cap);
    else
        snprintf(buf, cap, "%s", s->producer_closed ? "closed" : "-");
}

/* The cells of a ring (or unknown-version) row, from c[1] on. */
static void format_ring_row(const struct cli_seg *s, char c[LS_COLUMNS][64])
{
    int known = s->type != CLI_SEG_UNKNOWN_VERSION;
    if (known)
        pid_cell(s->creator_pid, s->creator_alive, c[4], 64);
    else
        snprintf(c[4], 64, "-");
    producer_cell(s, c[5], 64);
    if (known)
        snprintf(c[6], 64, "%u", s->consumers);
    else
        snprintf(c[6], 64, "-");
    if (known)
        snprintf(c[7], 64, "%llu/%llu", (unsigned long long)s->fill,
                 (unsigned long long)s->capacity);
    else
        snprintf(c[7], 64, "-");
}

/* The cells of a state table row, from c[4] on. */
static void format_state_row(const struct cli_seg *s, char c[LS_COLUMNS][64])
{
    pid_cell(s->creator_pid, s->creator_alive, c[4], 64);
    snprintf(c[5], 64, "%llu", (unsigned long long)s->capacity);
    snprintf(c[6], 64, "%llu", (unsigned long long)s->fill);
    snprintf(c[7], 64, "%llu", (unsigned long long)s->item_size);
    snprintf(c[8], 64, "%u", s->users);
}

/* The cells of one segment, as strings in c[1..]; returns how many columns. */
static int format_row(const struct cli_seg *s, char c[LS_COLUMNS][64])
{
    snprintf(c[1], 64, "%s", cli_seg_type_name(s->type));
    cli_human_size(s->size, c[2], 64);
    owner_name(s->uid, c[3], 64);
    if (s->type == CLI_SEG_STATE) {
        format_state_row(s, c);
        return STATE_COLUMNS;
    }
    format_ring_row(s, c);
    return RING_COLUMNS;
}

/* The name for the table: bytes >= 0x80 (and '\\') escaped C-style, as \xHH. */
static char *escaped_name(const char *name)
{
    size_t len = strlen(name);
    char *out = malloc(len * 4 + 1);
    if (out == NULL)
        return NULL;
    char *p = out;
    for (const unsigned char *c = (const unsigned char *)name; *c != '\0'; c++) {
        if (*c == '\\')
            p += sprintf(p, "\\\\");
        else if (*c < 0x20 || *c >= 0x7f)
            p += sprintf(p, "\\x%02x", *c);
        else
            *p++ = (char)*c;
    }
    *p = '\0';
    return out;
}

static int grow(struct ls_rows *rows)
{
    if (rows->n < rows->cap)
        return 0;
    size_t cap = rows->cap ? rows->cap * 2 : 16;
    void *p = realloc(rows->cell, cap * sizeof *rows->cell);
    if (p == NULL)
        return 1;
    rows->cell = p;
    rows->cap = cap;
    return 0;
}

/* Returns 1 when out of memory (stops the scan). */
static int add_row(const struct cli_seg *s, void *ctx)
{
    struct ls_tables *t = ctx;
    struct ls_rows *rows = s->type == CLI_SEG_STATE ? &t->states : &t->rings;
    if (grow(rows))
        return 1;
    char c[LS_COLUMNS][64];
    int ncol = format_row(s, c);
    char **row = rows->cell[rows->n];
    memset(row, 0, sizeof rows->cell[0]);
    row[0] = escaped_name(s->name);
    for (int i = 1; i < ncol; i++)
        row[i] = strdup(c[i]);
    for (int i = 0; i < ncol; i++) {
        if (row[i] == NULL) {
            for (int j = 0; j < ncol; j++)
                free(row[j]);
            return 1;
        }
    }
    rows->n++;
    return 0;
}

static void free_rows(struct ls_rows *rows)
{
    for (size_t r = 0; r < rows->n; r++)
        for (int i = 0; i < LS_COLUMNS; i++)
            free(rows->cell[r][i]);
    free(rows->cell);
}

static void print_line(const char *const *cells, const int *width, int ncol)
{
    for (int i = 0; i < ncol - 1; i++)
        printf("%-*s  ", width[i], cells[i]);
    printf("%s\n", cells[ncol - 1]);
}

static void print_table(const struct ls_rows *rows, const char *const *titles, int ncol)
{
    int width[LS_COLUMNS];
    for (int i = 0; i < ncol; i++)
        width[i] = (int)strlen(titles[i]);
    for (size_t r = 0; r < rows->n; r++)
        for (int i = 0; i < ncol; i++)
            if ((int)strlen(rows->cell[r][i]) > width[i])
                width[i] = (int)strlen(rows->cell[r][i]);
    print_line(titles, width, ncol);
    for (size_t r = 0; r < rows->n; r++)
        print_line((const char *const *)rows->cell[r], width, ncol);
}

/*
 * A JSON string. Names may hold any byte but '/' and control characters: a
 * valid UTF-8 name is written as it is; in any other, each byte >= 0x80 is
 * written as \u00XX (its Latin-1 reading), so the output stays valid JSON.
 */
static void json_string(const char *s)
{
    int utf8 = cli_is_utf8(s, strlen(s));
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_pid(const char *key, int32_t pid, int alive)
{
    if (pid != 0)
        printf(", \"%s\": {\"pid\": %d, \"alive\": %s}", key, (int)pid, alive ? "true" : "false");
    else
        printf(", \"%s\": null", key);
}

static int json_row(const struct cli_seg *s, void *ctx)
{
    int *first = ctx;
    char owner[64];
    owner_name(s->uid, owner, sizeof owner);
    printf("%s\n  {\"name\": ", *first ? "" : ",");
    *first = 0;
    json_string(s->name);
    printf(", \"type\": \"%s\", \"size\": %llu, \"owner\": ", cli_seg_type_name(s->type),
           (unsigned long long)s->size);
    json_string(owner);
    if (s->type == CLI_SEG_UNKNOWN_VERSION) {
        printf("}");
        return 0;
    }
    json_pid("creator", s->creator_pid, s->creator_alive);
    if (s->type == CLI_SEG_STATE) {
        printf(", \"entries\": %llu, \"used\": %llu, \"value_size\": %llu, \"users\": %u}",
               (unsigned long long)s->capacity, (unsigned long long)s->fill,
               (unsigned long long)s->item_size, s->users);
        return 0;
    }
    json_pid("producer", s->producer_pid, s->producer_alive);
    printf(", \"producer_closed\": %s, \"consumers\": %u, \"observers\": %u",
           s->producer_closed ? "true" : "false", s->consumers, s->observers);
    printf(", \"fill\": %llu, \"capacity\": %llu, \"item_size\": %llu}",
           (unsigned long long)s->fill, (unsigned long long)s->capacity,
           (unsigned long long)s->item_size);
    return 0;
}

static int ls_json(void)
{
    int first = 1;
    putchar('[');
    int rc = cli_scan(json_row, &first);
    printf("%s]\n", first ? "" : "\n");
    return rc;
}

/* Rings (with the titles alone when there is nothing at all), then state tables. */
static int ls_table(void)
{
    struct ls_tables t = {{0}, {0}};
    int rc = cli_scan(add_row, &t);
    if (rc == 0 && (t.rings.n > 0 || t.states.n == 0))
        print_table(&t.rings, ring_titles, RING_COLUMNS);
    if (rc == 0 && t.states.n > 0) {
        if (t.rings.n > 0)
            putchar('\n');
        print_table(&t.states, state_titles, STATE_COLUMNS);
    }
    free_rows(&t.rings);
    free_rows(&t.states);
    return rc;
}

static int ls_run(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int json = 0, opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt != 'j')
            return cli_bad_option("ls", opt, argv);
        json = 1;
    }
    if (optind < argc)
        return cli_usage("ls", "unexpected argument '%s'", argv[optind]);
    int rc = json ? ls_json() : ls_table();
    if (rc > 0)
        return cli_fail("ls", "out of memory");
    if (rc < 0)
        return cli_fail("ls", "%s: %s", shmring_shm_dir(), shmring_strerror(rc));
    if (fflush(stdout) != 0)
        return cli_fail("ls", "write error");
    return CLI_OK;
}

const struct cli_command cli_cmd_ls = {
    .name = "ls",
    .summary = "list shmring segments with their parties and fill level",
    .help = ls_help,
    .run = ls_run,
};
