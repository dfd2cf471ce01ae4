/* `shmring ls`: list the shmring segments of the shm directory. */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LS_COLUMNS 8

static const char ls_help[] =
    "Usage: shmring ls [--json]\n"
    "\n"
    "List every shmring segment in the shm directory ($SHMRING_SHM_DIR, or /dev/shm).\n"
    "Files that are not shmring segments are skipped.\n"
    "\n"
    "Columns: NAME, TYPE (ring, state, unknown-version), SIZE, OWNER, CREATOR (pid and\n"
    "whether it lives), PRODUCER (pid and whether it lives; 'closed' after end of\n"
    "stream, '-' if none), CONSUMERS (live consumer handles; users of a state table),\n"
    "FILL (ring: messages in it / slots; state: used entries / entries).\n"
    "\n"
    "Options:\n"
    "  --json     one JSON array of objects instead of the table\n"
    "  --help     show this help\n";

struct ls_rows {
    char *(*cell)[LS_COLUMNS];
    size_t n, cap;
};

static const char *const ls_titles[LS_COLUMNS] = {
    "NAME", "TYPE", "SIZE", "OWNER", "CREATOR", "PRODUCER", "CONSUMERS", "FILL",
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

/* The eight cells of one segment, as strings in c[]. */
static void format_row(const struct cli_seg *s, char c[LS_COLUMNS][64])
{
    int known = s->type != CLI_SEG_UNKNOWN_VERSION;
    snprintf(c[1], 64, "%s", cli_seg_type_name(s->type));
    cli_human_size(s->size, c[2], 64);
    owner_name(s->uid, c[3], 64);
    if (known)
        pid_cell(s->creator_pid, s->creator_alive, c[4], 64);
    else
        snprintf(c[4], 64, "-");
    producer_cell(s, c[5], 64);
    if (known)
        snprintf(c[6], 64, "%u", s->type == CLI_SEG_RING ? s->consumers : s->users);
    else
        snprintf(c[6], 64, "-");
    if (known)
        snprintf(c[7], 64, "%llu/%llu", (unsigned long long)s->fill,
                 (unsigned long long)s->capacity);
    else
        snprintf(c[7], 64, "-");
}

/* Returns 1 when out of memory (stops the scan). */
static int add_row(const struct cli_seg *s, void *ctx)
{
    struct ls_rows *rows = ctx;
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? rows->cap * 2 : 16;
        void *p = realloc(rows->cell, cap * sizeof *rows->cell);
        if (p == NULL)
            return 1;
        rows->cell = p;
        rows->cap = cap;
    }
    char c[LS_COLUMNS][64];
    format_row(s, c);
    char **row = rows->cell[rows->n];
    row[0] = strdup(s->name);
    for (int i = 1; i < LS_COLUMNS; i++)
        row[i] = strdup(c[i]);
    for (int i = 0; i < LS_COLUMNS; i++) {
        if (row[i] == NULL) {
            for (int j = 0; j < LS_COLUMNS; j++)
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

static void print_line(const char *const cells[LS_COLUMNS], const int width[LS_COLUMNS])
{
    for (int i = 0; i < LS_COLUMNS - 1; i++)
        printf("%-*s  ", width[i], cells[i]);
    printf("%s\n", cells[LS_COLUMNS - 1]);
}

static void print_table(const struct ls_rows *rows)
{
    int width[LS_COLUMNS];
    for (int i = 0; i < LS_COLUMNS; i++)
        width[i] = (int)strlen(ls_titles[i]);
    for (size_t r = 0; r < rows->n; r++)
        for (int i = 0; i < LS_COLUMNS; i++)
            if ((int)strlen(rows->cell[r][i]) > width[i])
                width[i] = (int)strlen(rows->cell[r][i]);
    print_line(ls_titles, width);
    for (size_t r = 0; r < rows->n; r++)
        print_line((const char *const *)rows->cell[r], width);
}

/* A JSON string: names may hold any byte but '/' and control characters. */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
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
    json_pid("producer", s->producer_pid, s->producer_alive);
    printf(", \"producer_closed\": %s, \"consumers\": %u, \"observers\": %u, \"users\": %u",
           s->producer_closed ? "true" : "false", s->consumers, s->observers, s->users);
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

static int ls_table(void)
{
    struct ls_rows rows = {0};
    int rc = cli_scan(add_row, &rows);
    if (rc == 0)
        print_table(&rows);
    free_rows(&rows);
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
        return cli_fail("ls", "%s: %s", shmring__shm_dir(), shmring_strerror(rc));
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
