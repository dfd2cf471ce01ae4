/* `shmring get`, `put`, `del`, `dump` and `watch`: state tables from the shell. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char get_help[] =
    "Usage: shmring get NAME KEY\n"
    "\n"
    "Print the value of KEY in state table NAME to stdout, as its raw bytes (nothing\n"
    "added). Exit status 1 when the key is absent.\n"
    "\n"
    "Options:\n"
    "  --help  show this help\n";

static const char put_help[] =
    "Usage: shmring put NAME KEY VALUE\n"
    "       shmring put NAME KEY -\n"
    "\n"
    "Set KEY in state table NAME to VALUE (its bytes, without a terminating NUL), or,\n"
    "when VALUE is '-', to the whole of stdin as it is (a trailing newline included).\n"
    "The key is added if absent. The table must exist (shmring create --table).\n"
    "\n"
    "Options:\n"
    "  --help  show this help\n";

static const char del_help[] = "Usage: shmring del NAME KEY\n"
                               "\n"
                               "Remove KEY from state table NAME. Exit status 1 when the key\n"
                               "is absent.\n"
                               "\n"
                               "Options:\n"
                               "  --help  show this help\n";

static const char dump_help[] =
    "Usage: shmring dump NAME [--json]\n"
    "\n"
    "Print every key of state table NAME with its value, one KEY=VALUE per line, in\n"
    "key order. Printable ASCII bytes are printed as they are, others escaped as in C\n"
    "(\\\\, \\n, \\t, \\r, \\xHH); in keys '=' is escaped too (\\x3d).\n"
    "\n"
    "Options:\n"
    "  --json  one JSON array of {\"key\": ..., \"value\": ...} objects instead; a key\n"
    "          or value that is not valid UTF-8 is given as \"key_hex\" or \"value_hex\"\n"
    "          (its bytes in hexadecimal) instead\n"
    "  --help  show this help\n";

static const char watch_help[] =
    "Usage: shmring watch NAME KEY [-n COUNT] [--interval SECONDS]\n"
    "\n"
    "Print the value of KEY in state table NAME, then each new value as it changes,\n"
    "one per line, escaped as by shmring dump. watch sleeps until a writer changes\n"
    "the key (no polling): every write is printed, a write of the same bytes too,\n"
    "except that a value replaced again before watch has read it is skipped (watch\n"
    "shows the latest value). While the key is absent nothing is printed.\n"
    "\n"
    "Ends with status 0 on SIGINT or SIGTERM, after COUNT values, or when the table\n"
    "is removed.\n"
    "\n"
    "Options:\n"
    "  -n COUNT             stop after printing COUNT values\n"
    "  --interval SECONDS   how often to check for a signal or a removed table while\n"
    "                       no write comes (default 0.05, at least 0.001)\n"
    "  --help               show this help\n";

/* Default period of watch's checks for a stop request and a removed table. */
#define WATCH_INTERVAL_NS 50000000LL /* 50 ms */

/* ---- Arguments ----------------------------------------------------------- */

/* The command line of a table command: NAME, KEY and (put) VALUE. */
struct table_args {
    char name[SHMRING_NAME_MAX + 1];
    const char *key;
    const char *value;
    int json;
    uint64_t count;
    int64_t interval_ns;
};

enum { OPT_JSON = 256, OPT_INTERVAL };

static int table_option(const char *cmd, int opt, const char *arg, struct table_args *a)
{
    switch (opt) {
    case OPT_JSON:
        a->json = 1;
        return CLI_OK;
    case OPT_INTERVAL:
        if (cli_parse_seconds(arg, &a->interval_ns) < 0 || a->interval_ns < 1000000)
            return cli_usage(cmd, "--interval: '%s' is not a number of seconds >= 0.001", arg);
        return CLI_OK;
    case 'n':
        if (cli_parse_count(arg, 1, UINT64_MAX, &a->count) < 0)
            return cli_usage(cmd, "-n: '%s' is not a count >= 1", arg);
        return CLI_OK;
    default:
        return -1;
    }
}

/* Positional arguments: NAME, then `nmore` more (KEY, VALUE). */
static int table_positional(const char *cmd, int argc, char **argv, int nmore, struct table_args *a)
{
    static const char *const what[] = {"KEY", "VALUE"};
    int have = argc - optind;
    if (have < 1)
        return cli_usage(cmd, "missing NAME");
    for (int i = 0; i < nmore; i++)
        if (have < 2 + i)
            return cli_usage(cmd, "missing %s", what[i]);
    if (have > 1 + nmore)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1 + nmore]);
    if (cli_segment_name(argv[optind], a->name) < 0)
        return cli_usage(cmd,
                         "invalid name '%s': one leading '/' at most, no other '/', "
                         "at most %d bytes",
                         argv[optind], SHMRING_NAME_MAX);
    if (nmore < 1)
        return CLI_OK;
    a->key = argv[optind + 1];
    size_t len = strlen(a->key);
    if (len == 0 || len > SHMRING_STATE_KEY_MAX)
        return cli_usage(cmd, "invalid key '%s': 1 to %u bytes", a->key, SHMRING_STATE_KEY_MAX);
    if (nmore > 1)
        a->value = argv[optind + 2];
    return CLI_OK;
}

static int table_parse(const char *cmd, int argc, char **argv, int nmore, struct table_args *a)
{
    static const struct option dump_opts[] = {{"json", no_argument, NULL, OPT_JSON},
                                              {NULL, 0, NULL, 0}};
    static const struct option watch_opts[] = {{"interval", required_argument, NULL, OPT_INTERVAL},
                                               {NULL, 0, NULL, 0}};
    static const struct option no_opts[] = {{NULL, 0, NULL, 0}};
    const struct option *opts = no_opts;
    const char *shorts = ":";
    if (strcmp(cmd, "dump") == 0)
        opts = dump_opts;
    if (strcmp(cmd, "watch") == 0) {
        opts = watch_opts;
        shorts = ":n:";
    }
    a->interval_ns = WATCH_INTERVAL_NS;
    /* put: options before NAME only, so that a VALUE may start with '-'. */
    if (nmore == 2)
        shorts = "+:";
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        int rc = table_option(cmd, opt, optarg, a);
        if (rc < 0)
            return cli_bad_option(cmd, opt, argv);
        if (rc != CLI_OK)
            return rc;
    }
    return table_positional(cmd, argc, argv, nmore, a);
}

/* ---- Opening ------------------------------------------------------------- */

static int open_failed(const char *cmd, const char *name, int rc)
{
    if (rc == -EPROTOTYPE)
        return cli_fail(cmd, "%s: a ring, not a state table (see shmring send, recv)", name);
    if (rc == -ENOENT)
        return cli_fail(cmd, "%s: %s (create it with: shmring create --table %s)", name,
                        shmring_strerror(rc), name);
    return cli_fail(cmd, "%s: %s", name, shmring_strerror(rc));
}

static int open_table(const char *cmd, const char *name, shmring_state_t **s)
{
    int rc = shmring_state_open(name, 0, s);
    return rc < 0 ? open_failed(cmd, name, rc) : CLI_OK;
}

static int key_failed(const char *cmd, const struct table_args *a, int rc)
{
    if (rc == -ENOENT)
        return cli_fail(cmd, "%s: no key '%s'", a->name, a->key);
    return cli_fail(cmd, "%s: key '%s': %s", a->name, a->key, shmring_strerror(rc));
}

static int flush_stdout(const char *cmd)
{
    if (fflush(stdout) != 0)
        return cli_fail(cmd, "write error: %s", strerror(errno));
    return CLI_OK;
}

/* ---- get, put, del -------------------------------------------------------- */

static int get_run(int argc, char **argv)
{
    struct table_args a = {0};
    int rc = table_parse("get", argc, argv, 1, &a);
    if (rc != CLI_OK)
        return rc;
    shmring_state_t *s = NULL;
    if ((rc = open_table("get", a.name, &s)) != CLI_OK)
        return rc;
    size_t cap = shmring_state_value_size(s);
    char *buf = malloc(cap ? cap : 1);
    if (buf == NULL) {
        shmring_state_close(s);
        return cli_fail("get", "out of memory");
    }
    ssize_t n = shmring_state_read(s, a.key, buf, cap);
    if (n < 0)
        rc = key_failed("get", &a, (int)n);
    else if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
        rc = cli_fail("get", "write error: %s", strerror(errno));
    else
        rc = flush_stdout("get");
    free(buf);
    shmring_state_close(s);
    return rc;
}

/* All of stdin, up to limit bytes; *len > limit means there was more. */
static int read_stdin(size_t limit, char **out, size_t *len)
{
    size_t cap = limit + 1, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return cli_fail("put", "out of memory");
    size_t got;
    while (n < cap && (got = fread(buf + n, 1, cap - n, stdin)) > 0)
        n += got;
    if (ferror(stdin)) {
        free(buf);
        return cli_fail("put", "reading stdin: %s", strerror(errno));
    }
    *out = buf;
    *len = n;
    return CLI_OK;
}

static int put_value(const struct table_args *a, shmring_state_t *s, const char *val, size_t len)
{
    size_t max = shmring_state_value_size(s);
    if (len > max && strcmp(a->value, "-") == 0)
        return cli_fail("put", "%s: stdin holds more than the table's value size (%zu bytes)",
                        a->name, max);
    if (len > max)
        return cli_fail("put",
                        "%s: a value of %zu bytes is longer than the table's value size "
                        "(%zu)",
                        a->name, len, max);
    int rc = shmring_state_write(s, a->key, val, len);
    if (rc == -ENOSPC)
        return cli_fail("put", "%s: table full: all %u entries hold a key", a->name,
                        shmring_state_entries(s));
    return rc < 0 ? key_failed("put", a, rc) : CLI_OK;
}

static int put_run(int argc, char **argv)
{
    struct table_args a = {0};
    int rc = table_parse("put", argc, argv, 2, &a);
    if (rc != CLI_OK)
        return rc;
    shmring_state_t *s = NULL;
    if ((rc = open_table("put", a.name, &s)) != CLI_OK)
        return rc;
    if (strcmp(a.value, "-") == 0) {
        char *val = NULL;
        size_t len = 0;
        rc = read_stdin(shmring_state_value_size(s), &val, &len);
        if (rc == CLI_OK)
            rc = put_value(&a, s, val, len);
        free(val);
    } else {
        rc = put_value(&a, s, a.value, strlen(a.value));
    }
    shmring_state_close(s);
    return rc;
}

static int del_run(int argc, char **argv)
{
    struct table_args a = {0};
    int rc = table_parse("del", argc, argv, 1, &a);
    if (rc != CLI_OK)
        return rc;
    shmring_state_t *s = NULL;
    if ((rc = open_table("del", a.name, &s)) != CLI_OK)
        return rc;
    rc = shmring_state_delete(s, a.key);
    shmring_state_close(s);
    return rc < 0 ? key_failed("del", &a, rc) : CLI_OK;
}

/* ---- dump ------------------------------------------------------------------ */

struct key_list {
    char **key;
    size_t n, cap;
};

static int collect_key(const char *key, size_t len, void *ctx)
{
    (void)len;
    struct key_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->key, cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        l->key = p;
        l->cap = cap;
    }
    if ((l->key[l->n] = strdup(key)) == NULL)
        return -ENOMEM;
    l->n++;
    return 0;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_keys(struct key_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->key[i]);
    free(l->key);
}

static void put_hex(const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    putchar('"');
    for (size_t i = 0; i < len; i++)
        printf("%02x", p[i]);
    putchar('"');
}

/* "name": "text" for valid UTF-8, else "name_hex": "hex digits". */
static void json_field(const char *name, const void *bytes, size_t len)
{
    if (cli_is_utf8(bytes, len)) {
        printf("\"%s\": ", name);
        cli_put_json_string(stdout, bytes, len);
    } else {
        printf("\"%s_hex\": ", name);
        put_hex(bytes, len);
    }
}

static void dump_entry(const char *key, const char *val, size_t len, int json, int first)
{
    if (json) {
        printf("%s\n  {", first ? "" : ",");
        json_field("key", key, strlen(key));
        printf(", ");
        json_field("value", val, len);
        putchar('}');
        return;
    }
    cli_put_escaped(stdout, key, strlen(key), 1);
    putchar('=');
    cli_put_escaped(stdout, val, len, 0);
    putchar('\n');
}

static int dump_keys(const struct table_args *a, shmring_state_t *s, const struct key_list *l)
{
    size_t cap = shmring_state_value_size(s);
    char *buf = malloc(cap ? cap : 1);
    if (buf == NULL)
        return cli_fail("dump", "out of memory");
    int first = 1, rc = CLI_OK;
    if (a->json)
        putchar('[');
    for (size_t i = 0; i < l->n && rc == CLI_OK; i++) {
        ssize_t n = shmring_state_read(s, l->key[i], buf, cap);
        if (n == -ENOENT)
            continue; /* deleted since the walk */
        if (n < 0) {
            rc = cli_fail("dump", "%s: key '%s': %s", a->name, l->key[i], shmring_strerror((int)n));
            break;
        }
        dump_entry(l->key[i], buf, (size_t)n, a->json, first);
        first = 0;
    }
    if (a->json && rc == CLI_OK)
        printf("%s]\n", first ? "" : "\n");
    free(buf);
    return rc == CLI_OK ? flush_stdout("dump") : rc;
}

static int dump_run(int argc, char **argv)
{
    struct table_args a = {0};
    int rc = table_parse("dump", argc, argv, 0, &a);
    if (rc != CLI_OK)
        return rc;
    shmring_state_t *s = NULL;
    if ((rc = open_table("dump", a.name, &s)) != CLI_OK)
        return rc;
    struct key_list keys = {0};
    int n = shmring_state_foreach(s, collect_key, &keys);
    if (n < 0) {
        rc = cli_fail("dump", "%s: %s", a.name, shmring_strerror(n));
    } else {
        if (keys.n > 1)
            qsort(keys.key, keys.n, sizeof *keys.key, by_key);
        rc = dump_keys(&a, s, &keys);
    }
    free_keys(&keys);
    shmring_state_close(s);
    return rc;
}

/* ---- watch ----------------------------------------------------------------- */

/* The value last printed. */
struct watched {
    char *buf;
    size_t cap;
    uint64_t version; /* of the value printed last; 0: none, or the key is absent */
    uint64_t printed;
};

static int print_value(struct watched *w, size_t n)
{
    cli_put_escaped(stdout, w->buf, n, 0);
    putchar('\n');
    if (fflush(stdout) != 0)
        return cli_fail("watch", "write error: %s", strerror(errno));
    w->printed++;
    return CLI_OK;
}

/* One look at the key: CLI_OK to go on, or an exit status. */
static int watch_once(const struct table_args *a, shmring_state_t *s, struct watched *w)
{
    uint64_t version = 0;
    ssize_t n = shmring_state_read_version(s, a->key, w->buf, w->cap, &version);
    if (n == -ENOENT) {
        w->version = 0;
        return CLI_OK;
    }
    if (n == -EAGAIN)
        return CLI_OK; /* rewritten all the time: look again */
    if (n < 0)
        return key_failed("watch", a, (int)n);
    if (version == w->version)
        return CLI_OK;
    w->version = version;
    return print_value(w, (size_t)n);
}

/*
 * Print the key, then sleep until its version changes (woken by the writer)
 * and print it again. The wait ends every interval to check for a stop
 * request and a removed table: signals do not end it.
 */
static int watch_loop(const struct table_args *a, shmring_state_t *s, struct watched *w)
{
    int fd = shmring_state_fd(s);
    for (;;) {
        int rc = watch_once(a, s, w);
        if (rc != CLI_OK)
            return rc;
        if (a->count != 0 && w->printed >= a->count)
            return CLI_OK;
        if (cli_stop_requested)
            return CLI_OK;
        if (cli_fd_unlinked(fd)) {
            fprintf(stderr, "shmring: watch: %s: the table was removed\n", a->name);
            return CLI_OK;
        }
        rc = shmring_state_wait(s, a->key, w->version, a->interval_ns);
        if (rc < 0 && rc != -ETIMEDOUT && rc != -EAGAIN)
            return key_failed("watch", a, rc);
        if (cli_stop_requested)
            return CLI_OK;
    }
}

static int watch_run(int argc, char **argv)
{
    struct table_args a = {0};
    int rc = table_parse("watch", argc, argv, 1, &a);
    if (rc != CLI_OK)
        return rc;
    if (cli_catch_stop() < 0)
        return cli_fail("watch", "cannot catch SIGINT");
    shmring_state_t *s = NULL;
    if ((rc = open_table("watch", a.name, &s)) != CLI_OK)
        return rc;
    struct watched w = {0};
    w.cap = shmring_state_value_size(s);
    w.buf = malloc(w.cap ? w.cap : 1);
    if (w.buf == NULL)
        rc = cli_fail("watch", "out of memory");
    else
        rc = watch_loop(&a, s, &w);
    free(w.buf);
    shmring_state_close(s);
    return rc;
}

const struct cli_command cli_cmd_get = {
    .name = "get",
    .summary = "print the value of a key of a state table",
    .help = get_help,
    .run = get_run,
};

const struct cli_command cli_cmd_put = {
    .name = "put",
    .summary = "set a key of a state table",
    .help = put_help,
    .run = put_run,
};

const struct cli_command cli_cmd_del = {
    .name = "del",
    .summary = "remove a key from a state table",
    .help = del_help,
    .run = del_run,
};

const struct cli_command cli_cmd_dump = {
    .name = "dump",
    .summary = "print every key and value of a state table",
    .help = dump_help,
    .run = dump_run,
};

const struct cli_command cli_cmd_watch = {
    .name = "watch",
    .summary = "print a key's value each time it changes",
    .help = watch_help,
    .run = watch_run,
};
