/*
 * Creating named rings and state tables for the tool: in shared memory, or
 * not at all unless --allow-fallback.
 *
 * The library falls back from named shm to memfd, then to heap memory, and
 * says why through its log hook (shmring_set_log); shmring_backend() and
 * shmring_state_backend() tell where a segment ended up. A named segment on
 * a fallback backend exists only inside the process that made it: a tool
 * that creates one and exits (or pushes into it) loses the data. So the
 * tool captures the log line while it creates, checks the backend, and
 * removes and refuses a segment that is not in shared memory.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fallback_log {
    char line[512]; /* the first line logged during the create call */
};

static void capture(const char *line, void *ctx)
{
    struct fallback_log *log = ctx;
    if (log->line[0] == '\0')
        snprintf(log->line, sizeof log->line, "%s", line);
}

/* The log line without its leading "NAME: ", or why the heap was used without one. */
static const char *reason_of(const char *name, const struct fallback_log *log)
{
    size_t n = strlen(name);
    if (log->line[0] == '\0')
        return "the heap backend is forced ($SHMRING_FORCE_HEAP is set)";
    if (strncmp(log->line, name, n) == 0 && strncmp(log->line + n, ": ", 2) == 0)
        return log->line + n + 2;
    return log->line;
}

static int refuse(const char *cmd, const char *name, const char *what, int backend,
                  const struct fallback_log *log)
{
    const char *fix = log->line[0] != '\0' ? "make the shm directory ($SHMRING_SHM_DIR, or "
                                             "/dev/shm) usable"
                                           : "unset SHMRING_FORCE_HEAP";
    return cli_fail(cmd,
                    "%s: refusing to create this %s on the %s backend, where no other process "
                    "can open it by name (reason: %s); %s, or pass --allow-fallback to create "
                    "it anyway",
                    name, what, cli_backend_name(backend), reason_of(name, log), fix);
}

static void note_fallback(const char *cmd, const char *name, const char *what, int backend)
{
    fprintf(stderr,
            "shmring: %s: %s: this %s is on the %s backend: only this process sees it, and it "
            "vanishes when the command exits\n",
            cmd, name, what, cli_backend_name(backend));
}

/* Before a create: capture the log unless fallback is allowed (then the default hook prints). */
static void log_begin(int allow_fallback, struct fallback_log *log)
{
    memset(log, 0, sizeof *log);
    if (!allow_fallback)
        shmring_set_log(capture, log);
}

int cli_create_ring(const char *cmd, const char *name, const shmring_config_t *cfg,
                    int allow_fallback, shmring_t **out)
{
    struct fallback_log log;
    log_begin(allow_fallback, &log);
    int rc = shmring_create(name, cfg, out);
    shmring_set_log(NULL, NULL);
    if (rc < 0)
        return rc;
    int backend = shmring_backend(*out);
    if (backend == SHMRING_BACKEND_SHM)
        return 0;
    if (allow_fallback) {
        note_fallback(cmd, name, "ring", backend);
        return 0;
    }
    shmring_close(*out);
    *out = NULL;
    shmring_unlink(name); /* its entry in this process's registry of fallback names */
    return refuse(cmd, name, "ring", backend, &log);
}

int cli_create_state(const char *cmd, const char *name, const shmring_state_config_t *cfg,
                     int allow_fallback, shmring_state_t **out)
{
    struct fallback_log log;
    log_begin(allow_fallback, &log);
    int rc = shmring_state_create(name, cfg, out);
    shmring_set_log(NULL, NULL);
    if (rc < 0)
        return rc;
    int backend = shmring_state_backend(*out);
    if (backend == SHMRING_BACKEND_SHM)
        return 0;
    if (allow_fallback) {
        note_fallback(cmd, name, "state table", backend);
        return 0;
    }
    shmring_state_close(*out);
    *out = NULL;
    shmring_state_unlink(name);
    return refuse(cmd, name, "state table", backend, &log);
}
