/* `shmring create` and `shmring rm`: make and remove named rings and state tables. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>

static const char create_help[] =
    "Usage: shmring create NAME [--slots N] [--slot-size N] [--overwrite] [--mode MODE]\n"
    "                            [--insecure] [--allow-fallback] [--max-message N]\n"
    "                            [--redeliver]\n"
    "       shmring create --table NAME [--entries N] [--value-size N] [--mode MODE]\n"
    "                            [--insecure] [--allow-fallback]\n"
    "\n"
    "Create a ring that stays after shmring exits, with no producer attached: a later\n"
    "producer (e.g. shmring send) takes the producer role, consumers may attach first.\n"
    "With --table (or --state), create a keyed state table instead, with every key\n"
    "absent (see shmring put, get, del, dump, watch).\n"
    "\n"
    "Options:\n"
    "  --slots N         slot count, a power of two >= 2 (default 1024)\n"
    "  --slot-size N     largest message in bytes (default 256); K, M, G suffixes allowed\n"
    "  --max-message N   larger messages, up to N bytes (at most slots * slot size / 2),\n"
    "                    each spanning consecutive slots\n"
    "  --overwrite       a full ring drops its oldest messages instead of blocking\n"
    "  --redeliver       a message claimed by a consumer that dies before releasing it\n"
    "                    goes to another consumer (SHMRING_REDELIVER; not with\n"
    "                    --overwrite)\n"
    "  --mode MODE       octal permission bits (default 0600)\n"
    "  --insecure        allow a MODE writable by group or others\n"
    "  --table, --state  create a state table (shmring_state_*), not a ring\n"
    "  --entries N       table: how many keys it holds, a power of two (default 1024)\n"
    "  --value-size N    table: largest value in bytes (default 256)\n"
    "  --allow-fallback  when shared memory is not usable, create it on the memfd or\n"
    "                    heap backend anyway: it then vanishes when the command exits\n"
    "                    (refused by default)\n"
    "  --help            show this help\n";

static const char rm_help[] = "Usage: shmring rm NAME\n"
                              "\n"
                              "Remove a segment's name. Handles already open keep working;\n"
                              "nothing new can open it. Refuses a file that is not a shmring\n"
                              "segment (the file is read, never mapped), and removes the name\n"
                              "only if it still holds the file that was checked.\n";

struct create_args {
    char name[SHMRING_NAME_MAX + 1];
    shmring_config_t cfg;
    int state;        /* --state */
    int ring_options; /* a ring-only option was given */
    int allow_fallback;
    shmring_state_config_t state_cfg;
};

enum {
    OPT_SLOTS = 256,
    OPT_SLOT_SIZE,
    OPT_MAX_MESSAGE,
    OPT_OVERWRITE,
    OPT_MODE,
    OPT_INSECURE,
    OPT_STATE,
    OPT_ENTRIES,
    OPT_VALUE_SIZE,
    OPT_ALLOW_FALLBACK,
    OPT_REDELIVER,
};

static int state_option(int opt, const char *arg, struct create_args *a)
{
    uint64_t v = 0;
    switch (opt) {
    case OPT_STATE:
        a->state = 1;
        return CLI_OK;
    case OPT_ALLOW_FALLBACK:
        a->allow_fallback = 1;
        return CLI_OK;
    case OPT_ENTRIES:
        if (cli_parse_count(arg, 1, SHMRING_STATE_MAX_ENTRIES, &v) < 0 || (v & (v - 1)) != 0)
            return cli_usage("create", "--entries: '%s' is not a power of two in [1, %u]", arg,
                             SHMRING_STATE_MAX_ENTRIES);
        a->state_cfg.entries = (uint32_t)v;
        return CLI_OK;
    case OPT_VALUE_SIZE:
        if (cli_parse_count(arg, 1, SHMRING_STATE_MAX_VALUE, &v) < 0)
            return cli_usage("create", "--value-size: '%s' is not a size in [1, %u]", arg,
                             SHMRING_STATE_MAX_VALUE);
        a->state_cfg.value_size = (uint32_t)v;
        return CLI_OK;
    default:
        return -1;
    }
}

static int create_option(int opt, const char *arg, struct create_args *a)
{
    uint64_t v = 0;
    a->ring_options |= opt == OPT_SLOTS || opt == OPT_SLOT_SIZE || opt == OPT_OVERWRITE ||
                       opt == OPT_MAX_MESSAGE || opt == OPT_REDELIVER;
    switch (opt) {
    case OPT_SLOTS:
        if (cli_parse_count(arg, 2, SHMRING_MAX_SLOTS, &v) < 0 || (v & (v - 1)) != 0)
            return cli_usage("create", "--slots: '%s' is not a power of two in [2, %u]", arg,
                             SHMRING_MAX_SLOTS);
        a->cfg.slots = (uint32_t)v;
        return CLI_OK;
    case OPT_SLOT_SIZE:
        if (cli_parse_count(arg, 1, SHMRING_MAX_SLOT_SIZE, &v) < 0)
            return cli_usage("create", "--slot-size: '%s' is not a size in [1, %u]", arg,
                             SHMRING_MAX_SLOT_SIZE);
        a->cfg.slot_size = (uint32_t)v;
        return CLI_OK;
    case OPT_MAX_MESSAGE:
        if (cli_parse_count(arg, 1, UINT32_MAX, &v) < 0)
            return cli_usage("create", "--max-message: '%s' is not a size in [1, %u]", arg,
                             UINT32_MAX);
        a->cfg.max_message = (uint32_t)v;
        return CLI_OK;
    case OPT_OVERWRITE:
        a->cfg.flags |= SHMRING_OVERWRITE;
        return CLI_OK;
    case OPT_REDELIVER:
        a->cfg.flags |= SHMRING_REDELIVER;
        return CLI_OK;
    case OPT_MODE:
        if (cli_parse_mode(arg, &a->cfg.mode) < 0 || a->cfg.mode == 0)
            return cli_usage("create", "--mode: '%s' is not an octal mode in [1, 0777]", arg);
        return CLI_OK;
    case OPT_INSECURE:
        a->cfg.flags |= SHMRING_ALLOW_INSECURE;
        return CLI_OK;
    default:
        return state_option(opt, arg, a);
    }
}

static int create_parse(int argc, char **argv, struct create_args *a)
{
    static const struct option opts[] = {
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"slot-size", required_argument, NULL, OPT_SLOT_SIZE},
        {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
        {"overwrite", no_argument, NULL, OPT_OVERWRITE},
        {"redeliver", no_argument, NULL, OPT_REDELIVER},
        {"mode", required_argument, NULL, OPT_MODE},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"state", no_argument, NULL, OPT_STATE},
        {"table", no_argument, NULL, OPT_STATE},
        {"allow-fallback", no_argument, NULL, OPT_ALLOW_FALLBACK},
        {"entries", required_argument, NULL, OPT_ENTRIES},
        {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
        {NULL, 0, NULL, 0},
    };
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int rc = create_option(opt, optarg, a);
        if (rc < 0)
            return cli_bad_option("create", opt, argv);
        if (rc != CLI_OK)
            return rc;
    }
    if (a->state && a->ring_options)
        return cli_usage("create",
                         "--slots, --slot-size, --overwrite and --redeliver are for rings, not "
                         "--table");
    if (!a->state && (a->state_cfg.entries || a->state_cfg.value_size))
        return cli_usage("create", "--entries and --value-size need --table");
    if ((a->cfg.mode & 0022u) && !(a->cfg.flags & SHMRING_ALLOW_INSECURE))
        return cli_usage("create", "mode %04o is writable by group or others: add --insecure",
                         a->cfg.mode);
    return cli_take_name("create", argc, argv, a->name);
}

static int create_ring(const struct create_args *a)
{
    shmring_config_t cfg = a->cfg;
    /* Observer only: no producer lease is held, so closing signals no end of stream. */
    cfg.flags |= SHMRING_OBSERVER;
    shmring_t *r = NULL;
    int rc = cli_create_ring("create", a->name, &cfg, a->allow_fallback, &r);
    if (rc > 0)
        return rc;
    if (rc < 0)
        return cli_fail("create", "%s: %s", a->name, shmring_strerror(rc));
    shmring_close(r);
    return CLI_OK;
}

static int create_state(struct create_args *a)
{
    shmring_state_config_t cfg = a->state_cfg;
    cfg.flags = a->cfg.flags & SHMRING_ALLOW_INSECURE;
    cfg.mode = a->cfg.mode;
    shmring_state_t *s = NULL;
    int rc = cli_create_state("create", a->name, &cfg, a->allow_fallback, &s);
    if (rc > 0)
        return rc;
    if (rc < 0)
        return cli_fail("create", "%s: %s", a->name, shmring_strerror(rc));
    shmring_state_close(s);
    return CLI_OK;
}

static int create_run(int argc, char **argv)
{
    struct create_args a = {.cfg = SHMRING_CONFIG_INIT(), .state_cfg = SHMRING_STATE_CONFIG_INIT()};
    int rc = create_parse(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    return a.state ? create_state(&a) : create_ring(&a);
}

static int rm_run(int argc, char **argv)
{
    static const struct option opts[] = {{NULL, 0, NULL, 0}};
    char name[SHMRING_NAME_MAX + 1];
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1)
        return cli_bad_option("rm", opt, argv);
    int rc = cli_take_name("rm", argc, argv, name);
    if (rc != CLI_OK)
        return rc;
    struct cli_seg seg;
    rc = cli_seg_read(name, &seg);
    if (rc < 0)
        return cli_fail("rm", "%s: %s", name, shmring_strerror(rc));
    if (rc == 0)
        return cli_fail("rm", "%s: %s", name, shmring_strerror(-EPROTO));
    /* Removed only if the name still holds the file just inspected. */
    rc = shmring_unlink_inspected(name, &seg.info);
    if (rc < 0)
        return cli_fail("rm", "%s: %s", name, shmring_strerror(rc));
    return CLI_OK;
}

const struct cli_command cli_cmd_create = {
    .name = "create",
    .summary = "create a ring (or a state table) that outlives the command",
    .help = create_help,
    .run = create_run,
};

const struct cli_command cli_cmd_rm = {
    .name = "rm",
    .summary = "remove a segment",
    .help = rm_help,
    .run = rm_run,
};
