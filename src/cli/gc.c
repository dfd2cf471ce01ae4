/* `shmring gc`: remove segments that no live process created or uses. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>

static const char gc_help[] =
    "Usage: shmring gc [--dry-run]\n"
    "\n"
    "Remove every shmring segment whose creator is dead and whose parties (producer,\n"
    "consumers, observers, state users) attached now are all dead, and print each\n"
    "name removed. A segment with any live party is never removed, nor one of an\n"
    "unknown layout version. A ring made by 'shmring create' has a dead creator:\n"
    "gc removes it once nothing is attached to it. A dead segment of another user is\n"
    "reported as skipped and left to its owner. Files are read, never mapped, and a\n"
    "name is removed only if it still holds the file that was checked.\n"
    "\n"
    "Options:\n"
    "  --dry-run  print what would be removed, remove nothing\n"
    "  --help     show this help\n";

struct gc_ctx {
    int dry_run;
    unsigned removed;
    unsigned failed;
};

static int is_garbage(const struct cli_seg *s)
{
    return s->type != CLI_SEG_UNKNOWN_VERSION && !s->any_alive;
}

/* Read the segment again just before removing it: it must be the same file, still dead. */
static int still_garbage(const struct cli_seg *s)
{
    struct cli_seg now;
    if (cli_seg_read(s->name, &now) != 1)
        return 0;
    return now.info.dev == s->info.dev && now.info.ino == s->info.ino && is_garbage(&now);
}

static void describe(const struct cli_seg *s, const char *verb)
{
    printf("%s %s (%s, creator %d dead, %u dead part%s)\n", verb, s->name,
           cli_seg_type_name(s->type), (int)s->creator_pid, s->parties,
           s->parties == 1 ? "y" : "ies");
}

/* A dead segment of another user: said, and left to its owner. */
static void skip_foreign(const struct cli_seg *s)
{
    printf("skipped %s (%s of uid %u, dead: only its owner removes it)\n", s->name,
           cli_seg_type_name(s->type), (unsigned)s->uid);
}

/* A file this user may not read: whether it is garbage cannot be known. */
static void skip_unreadable(const char *name, void *ctx)
{
    (void)ctx;
    printf("skipped %s (this user may not read it: only its owner or root can judge it)\n", name);
}

static int gc_one(const struct cli_seg *s, void *ctx)
{
    struct gc_ctx *gc = ctx;
    if (!is_garbage(s))
        return 0;
    if (s->info.health & SHMRING_HEALTH_FOREIGN) {
        skip_foreign(s);
        return 0;
    }
    if (gc->dry_run) {
        describe(s, "would remove");
        return 0;
    }
    if (!still_garbage(s))
        return 0;
    /* Removed only if the name still holds the file just inspected. */
    int rc = shmring_unlink_inspected(s->name, &s->info);
    if (rc == -ESTALE || rc == -ENOENT)
        return 0;
    if (rc < 0) {
        cli_fail("gc", "%s: %s", s->name, shmring_strerror(rc));
        gc->failed++;
        return 0;
    }
    describe(s, "removed");
    gc->removed++;
    return 0;
}

static int gc_run(int argc, char **argv)
{
    static const struct option opts[] = {{"dry-run", no_argument, NULL, 'n'}, {NULL, 0, NULL, 0}};
    struct gc_ctx gc = {0};
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt != 'n')
            return cli_bad_option("gc", opt, argv);
        gc.dry_run = 1;
    }
    if (optind < argc)
        return cli_usage("gc", "unexpected argument '%s'", argv[optind]);
    cli_scan_unreadable = skip_unreadable;
    int rc = cli_scan(gc_one, &gc);
    if (fflush(stdout) != 0)
        return cli_fail("gc", "write error");
    if (rc < 0)
        return cli_fail("gc", "%s: %s", shmring_shm_dir(), shmring_strerror(rc));
    return gc.failed > 0 ? CLI_FAIL : CLI_OK;
}

const struct cli_command cli_cmd_gc = {
    .name = "gc",
    .summary = "remove segments whose processes are all dead",
    .help = gc_help,
    .run = gc_run,
};
