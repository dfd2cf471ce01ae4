/* `shmring stat`: statistics of a ring or state table, once or refreshed every few seconds. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char stat_help[] =
    "Usage: shmring stat NAME [--watch SECONDS]\n"
    "\n"
    "Attach to a ring as an observer (it takes one of the ring's 32 consumer/observer\n"
    "entries, and is counted among the observers), or to a state table as a user,\n"
    "and print its statistics.\n"
    "\n"
    "Options:\n"
    "  --watch SECONDS  refresh every SECONDS (fractions allowed) and show rates\n"
    "                   (ring: messages/s, bytes/s; state: writes/s, reads/s)\n"
    "                   between refreshes, until Ctrl-C; the\n"
    "                   screen is redrawn in place when stdout is a terminal, else\n"
    "                   one block is printed per interval\n"
    "  --help           show this help\n";

static void print_created(uint64_t ns)
{
    char when[64];
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL || strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(when, sizeof when, "?");
    printf("created:         %s\n", when);
}

static void print_producer(const shmring_stats_t *st)
{
    if (st->producer_closed)
        printf("producer:        closed (end of stream)\n");
    else if (st->producer_pid == 0)
        printf("producer:        none\n");
    else
        printf("producer:        pid %d (%s)\n", (int)st->producer_pid,
               st->producer_alive ? "alive" : "dead");
    printf("producer epoch:  %llu\n", (unsigned long long)st->producer_epoch);
}

static void print_stats(const char *name, const shmring_stats_t *st)
{
    printf("name:            %s\n", name);
    printf("type:            ring%s\n", (st->flags & SHMRING_OVERWRITE)   ? " (overwrite)"
                                        : (st->flags & SHMRING_REDELIVER) ? " (redeliver)"
                                                                          : "");
    printf("backend:         %s\n", cli_backend_name(st->backend));
    printf("wake-ups:        %s\n",
           st->wake == SHMRING_WAKE_MEMBARRIER ? "membarrier (no locked instruction on push)"
           : st->wake == SHMRING_WAKE_EXCHANGE ? "exchange (membarrier not used)"
                                               : "?");
    printf("slots:           %u x %u bytes\n", st->slots, st->slot_size);
    printf("count:           %llu\n", (unsigned long long)st->count);
    printf("pushed:          %llu messages, %llu bytes\n", (unsigned long long)st->pushed,
           (unsigned long long)st->bytes_pushed);
    printf("popped:          %llu messages, %llu bytes\n", (unsigned long long)st->popped,
           (unsigned long long)st->bytes_popped);
    printf("dropped:         %llu\n", (unsigned long long)st->dropped);
    printf("abandoned:       %llu\n", (unsigned long long)st->abandoned);
    if (st->flags & SHMRING_REDELIVER)
        printf("redelivered:     %u\n", st->redelivered);
    printf("full events:     %llu\n", (unsigned long long)st->full_events);
    printf("empty events:    %llu\n", (unsigned long long)st->empty_events);
    print_producer(st);
    printf("consumers:       %u\n", st->consumers);
    printf("observers:       %u (this one included)\n", st->observers);
    printf("subscribers:     %u (%llu delivered, %llu missed, %llu dead, %llu skipped)\n",
           st->subscribers, (unsigned long long)st->delivered, (unsigned long long)st->sub_missed,
           (unsigned long long)st->subscribers_dead, (unsigned long long)st->skipped);
    printf("creator:         pid %d\n", (int)st->creator_pid);
    print_created(st->created_ns);
}

static double rate(uint64_t now, uint64_t before, double seconds)
{
    return now >= before ? (double)(now - before) / seconds : 0.0;
}

static void print_rates(const shmring_stats_t *st, const shmring_stats_t *prev, double seconds)
{
    printf("push rate:       %.0f msgs/s, %.0f bytes/s\n", rate(st->pushed, prev->pushed, seconds),
           rate(st->bytes_pushed, prev->bytes_pushed, seconds));
    printf("pop rate:        %.0f msgs/s, %.0f bytes/s\n", rate(st->popped, prev->popped, seconds),
           rate(st->bytes_popped, prev->bytes_popped, seconds));
}

/* ---- State tables ------------------------------------------------------- */

static void print_state(const char *name, const shmring_state_stats_t *st)
{
    printf("name:            %s\n", name);
    printf("type:            state\n");
    printf("backend:         %s\n", cli_backend_name(st->backend));
    printf("entries:         %u x %u bytes\n", st->entries, st->value_size);
    printf("used:            %u\n", st->used);
    printf("tombstones:      %u\n", st->tombstones);
    printf("being written:   %u\n", st->writing);
    printf("writes:          %llu\n", (unsigned long long)st->writes);
    printf("reads:           %llu\n", (unsigned long long)st->reads);
    printf("read retries:    %llu\n", (unsigned long long)st->read_retries);
    printf("write waits:     %llu\n", (unsigned long long)st->write_waits);
    printf("gave up:         %llu\n", (unsigned long long)st->eagain);
    printf("recovered:       %llu\n", (unsigned long long)st->recovered);
    printf("users:           %u (this one included)\n", st->users);
    printf("creator:         pid %d\n", (int)st->creator_pid);
    print_created(st->created_ns);
}

static void print_state_rates(const shmring_state_stats_t *st, const shmring_state_stats_t *prev,
                              double seconds)
{
    printf("write rate:      %.0f/s\n", rate(st->writes, prev->writes, seconds));
    printf("read rate:       %.0f/s\n", rate(st->reads, prev->reads, seconds));
}

/* ---- One object, ring or state table ------------------------------------ */

struct target {
    const char *name;
    shmring_t *ring;        /* or NULL */
    shmring_state_t *state; /* or NULL */
};

union snapshot {
    shmring_stats_t ring;
    shmring_state_stats_t state;
};

static int fetch(const struct target *t, union snapshot *s)
{
    if (t->ring != NULL)
        return shmring_stats(t->ring, &s->ring);
    return shmring_state_stats(t->state, &s->state);
}

/* One block of output; rates against prev when seconds > 0. */
static void print_block(const struct target *t, const union snapshot *s, const union snapshot *prev,
                        double seconds)
{
    if (t->ring != NULL)
        print_stats(t->name, &s->ring);
    else
        print_state(t->name, &s->state);
    if (seconds <= 0)
        return;
    if (t->ring != NULL)
        print_rates(&s->ring, &prev->ring, seconds);
    else
        print_state_rates(&s->state, &prev->state, seconds);
}

static int watch(const struct target *t, int64_t interval_ns)
{
    int tty = isatty(STDOUT_FILENO);
    union snapshot prev, cur;
    int rc = fetch(t, &prev);
    uint64_t prev_t = cli_now_ns();
    for (unsigned block = 0; rc == 0 && !cli_stop_requested; block++) {
        if (block > 0) {
            cli_sleep_ns(interval_ns);
            if (cli_stop_requested)
                break;
        }
        rc = fetch(t, &cur);
        uint64_t now = cli_now_ns();
        if (rc < 0)
            break;
        printf("%s", tty ? "\033[H\033[2J" : (block > 0 ? "\n" : ""));
        print_block(t, &cur, &prev, block > 0 ? (double)(now - prev_t) / 1e9 : 0);
        if (fflush(stdout) != 0)
            return cli_fail("stat", "write error");
        prev = cur;
        prev_t = now;
    }
    if (rc < 0)
        return cli_fail("stat", "%s: %s", t->name, shmring_strerror(rc));
    return CLI_OK;
}

static int stat_once(const struct target *t)
{
    union snapshot s;
    int rc = fetch(t, &s);
    if (rc < 0)
        return cli_fail("stat", "%s: %s", t->name, shmring_strerror(rc));
    print_block(t, &s, NULL, 0);
    if (fflush(stdout) != 0)
        return cli_fail("stat", "write error");
    return CLI_OK;
}

/* Attach as a ring observer, or as a state table user when it is not a ring. */
static int attach(struct target *t)
{
    int rc = shmring_open(t->name, SHMRING_OBSERVER, &t->ring);
    if (rc == -EPROTOTYPE)
        rc = shmring_state_open(t->name, 0, &t->state);
    return rc;
}

static void detach(struct target *t)
{
    shmring_close(t->ring);
    shmring_state_close(t->state);
}

static int stat_parse(int argc, char **argv, char *name, int64_t *watch_ns)
{
    static const struct option opts[] = {{"watch", required_argument, NULL, 'w'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt != 'w')
            return cli_bad_option("stat", opt, argv);
        if (cli_parse_seconds(optarg, watch_ns) < 0 || *watch_ns < 1000000)
            return cli_usage("stat", "--watch: '%s' is not a number of seconds >= 0.001", optarg);
    }
    return cli_take_name("stat", argc, argv, name);
}

static int stat_run(int argc, char **argv)
{
    char name[SHMRING_NAME_MAX + 1];
    int64_t watch_ns = 0;
    int rc = stat_parse(argc, argv, name, &watch_ns);
    if (rc != CLI_OK)
        return rc;
    struct target t = {.name = name};
    rc = attach(&t);
    if (rc < 0)
        return cli_fail("stat", "%s: %s", name, shmring_strerror(rc));
    if (watch_ns > 0 && cli_catch_stop() < 0)
        rc = cli_fail("stat", "cannot catch SIGINT");
    else
        rc = watch_ns > 0 ? watch(&t, watch_ns) : stat_once(&t);
    detach(&t);
    return rc;
}

const struct cli_command cli_cmd_stat = {
    .name = "stat",
    .summary = "show the statistics of a ring or state table, optionally with rates",
    .help = stat_help,
    .run = stat_run,
};
