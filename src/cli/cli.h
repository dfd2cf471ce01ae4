/* The `shmring` command-line tool: subcommand table, exit codes and shared helpers. */
#ifndef SHMRING_CLI_H
#define SHMRING_CLI_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "shmring.h"

/* Exit codes of every subcommand. */
#define CLI_OK    0 /* success */
#define CLI_FAIL  1 /* runtime error (no such ring, timeout, I/O error, ...) */
#define CLI_USAGE 2 /* bad command line */

/* Large stdio buffers for send and recv. */
#define CLI_STDIO_BUFFER (1u << 20)

/*
 * One subcommand. `run` gets the arguments from the subcommand name on
 * (argv[0] is the subcommand) and returns an exit code. `help` is printed
 * for `shmring NAME --help`.
 */
struct cli_command {
    const char *name;
    const char *summary;
    const char *help;
    int (*run)(int argc, char **argv);
};

extern const struct cli_command cli_cmd_ls;
extern const struct cli_command cli_cmd_stat;
extern const struct cli_command cli_cmd_create;
extern const struct cli_command cli_cmd_rm;
extern const struct cli_command cli_cmd_gc;
extern const struct cli_command cli_cmd_send;
extern const struct cli_command cli_cmd_recv;
extern const struct cli_command cli_cmd_bench;
extern const struct cli_command cli_cmd_get;
extern const struct cli_command cli_cmd_put;
extern const struct cli_command cli_cmd_del;
extern const struct cli_command cli_cmd_dump;
extern const struct cli_command cli_cmd_watch;
extern const struct cli_command cli_cmd_bridge; /* only with libnats (SHMRING_HAVE_NATS) */

/* ---- Messages (util.c) --------------------------------------------------- */

/* "shmring: <cmd>: <message>" on stderr; returns CLI_FAIL. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* As cli_fail, plus a hint to read --help; returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Usage error for the option getopt_long just rejected (opterr = 0, ":" optstring). */
int cli_bad_option(const char *cmd, int opt, char **argv);

/* Reset getopt_long for a new argument vector. */
void cli_getopt_reset(void);

/* ---- Arguments (util.c) -------------------------------------------------- */

/*
 * Parse an unsigned decimal count with an optional binary suffix (K, M, G)
 * in [min, max]. Returns 0, or -EINVAL.
 */
int cli_parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parse a non-negative number of seconds (fractions allowed) as nanoseconds. */
int cli_parse_seconds(const char *s, int64_t *ns);

/* Parse an octal permission mode within 0777. */
int cli_parse_mode(const char *s, uint32_t *mode);

/*
 * Turn a command-line name into a segment name: "feed" and "/feed" both
 * give "/feed". Returns 0, or -EINVAL for a name shmring does not accept.
 */
int cli_segment_name(const char *arg, char out[SHMRING_NAME_MAX + 1]);

/*
 * The single positional NAME of a subcommand after getopt: usage error when
 * missing, extra, or invalid. Returns CLI_OK or CLI_USAGE.
 */
int cli_take_name(const char *cmd, int argc, char **argv, char out[SHMRING_NAME_MAX + 1]);

/* "1.5K", "256M": a short human-readable size. */
void cli_human_size(uint64_t bytes, char *buf, size_t cap);

/* ---- Signals, time, output (util.c) -------------------------------------- */

/* Set by SIGINT and SIGTERM once cli_catch_stop() has run. */
extern volatile sig_atomic_t cli_stop_requested;

/* Catch SIGINT and SIGTERM without SA_RESTART (a sleep ends early). 0 or -errno. */
int cli_catch_stop(void);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t cli_now_ns(void);

/* Sleep ns, or less when a stop signal arrives. */
void cli_sleep_ns(int64_t ns);

/* "shm", "memfd", "heap" or "?" for a SHMRING_BACKEND_* value. */
const char *cli_backend_name(int backend);

/*
 * Write len bytes with printable ASCII as is and every other byte escaped
 * C-style (\\, \n, \t, \r, \xHH). With is_key, '=' is escaped too (\x3d),
 * so that "KEY=VALUE" splits at the first '='.
 */
void cli_put_escaped(FILE *out, const void *bytes, size_t len, int is_key);

/* Write len bytes as a JSON string (only for valid UTF-8: see cli_is_utf8). */
void cli_put_json_string(FILE *out, const void *bytes, size_t len);

/* 1 if the len bytes are valid UTF-8 without NUL. */
int cli_is_utf8(const void *bytes, size_t len);

/* ---- Creating named segments (fallback.c) -------------------------------- */

/*
 * Create a named ring or state table for a command of the tool. Named
 * segments belong in shared memory: one that the library would put on a
 * fallback backend (memfd or heap, which no other process can open by name)
 * is removed again and refused with a message naming the reason, unless
 * allow_fallback is set (then a note says where it went). cfg->flags must
 * not hold SHMRING_NO_FALLBACK. Returns 0; a negative errno of the create
 * call (not reported); or CLI_FAIL after reporting a refusal.
 */
int cli_create_ring(const char *cmd, const char *name, const shmring_config_t *cfg,
                    int allow_fallback, shmring_t **out);
int cli_create_state(const char *cmd, const char *name, const shmring_state_config_t *cfg,
                     int allow_fallback, shmring_state_t **out);

/* 1 when the segment behind fd has been unlinked (its name removed or replaced). */
int cli_fd_unlinked(int fd);

/* ---- Segments in the shm directory (scan.c) ------------------------------ */

enum cli_seg_type {
    CLI_SEG_RING,
    CLI_SEG_STATE,
    CLI_SEG_UNKNOWN_VERSION, /* a shmring segment of another layout version */
};

/* What shmring_inspect says about one segment (the fields the commands use most, and all of it). */
struct cli_seg {
    char name[SHMRING_NAME_MAX + 1];
    enum cli_seg_type type;
    uint64_t size;
    uid_t uid;
    int32_t creator_pid;
    int creator_alive;
    int32_t producer_pid; /* 0: no producer attached */
    int producer_alive;
    int producer_closed; /* the last producer closed (end of stream) */
    unsigned consumers;  /* live consumer entries */
    unsigned observers;  /* live observer entries */
    unsigned users;      /* live users of a state table */
    unsigned parties;    /* ACTIVE or TAKING entries, live or not */
    int any_alive;       /* the creator or some ACTIVE/TAKING party lives */
    uint64_t fill;       /* ring: messages in it; state: used entries */
    uint64_t capacity;   /* ring: slots; state: entries */
    uint64_t item_size;  /* ring: slot size; state: value size */
    shmring_info_t info; /* all that shmring_inspect said */
};

/*
 * Read segment `name` ("/x") from the shm directory. Returns 1 if it is a
 * shmring segment (filled in *out), 0 if it is not (or cannot be read), or
 * -ENOENT when it does not exist.
 */
int cli_seg_read(const char *name, struct cli_seg *out);

/*
 * Call fn for every shmring segment in the shm directory, in name order.
 * Stops at the first non-zero return of fn and returns it; returns a
 * negative errno if the directory cannot be read.
 */
typedef int (*cli_seg_fn)(const struct cli_seg *seg, void *ctx);
int cli_scan(cli_seg_fn fn, void *ctx);

/*
 * Called by cli_scan for a file it cannot inspect because this user may
 * not read it (-EACCES): what it is cannot be known. NULL (the default):
 * such files are left out.
 */
typedef void (*cli_unreadable_fn)(const char *name, void *ctx);
extern cli_unreadable_fn cli_scan_unreadable;

/* "ring", "state" or "unknown-version". */
const char *cli_seg_type_name(enum cli_seg_type type);

#endif /* SHMRING_CLI_H */
