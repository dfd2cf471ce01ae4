/* `shmring stat`: a ring's statistics, once or refreshed every few seconds. */
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
    "entries, and is counted among the observers) and print its statistics.\n"
    "\n"
    "Options:\n"
    "  --watch SECONDS  refresh every SECONDS (fractions allowed) and show rates\n"
    "                   (messages/s, bytes/s) between refreshes, until Ctrl-C; the\n"
    "                   screen is redrawn in place when stdout is a terminal, else\n"
    "                   one block is printed per interval\n"
    "  --help           show this help\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int install_stop_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the signal cuts the sleep between refreshes short. */
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -errno;
    return 0;
}

static const char *backend_name(int backend)
{
    switch (backend) {
    case SHMRING_BACKEND_SHM:
        return "shm";
    case SHMRING_BACKEND_MEMFD:
        return "memfd";
    case SHMRING_BACKEND_HEAP:
        return "heap";
    default:
        return "?";
    }
}

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
    printf("type:            ring%s\n", (st->flags & SHMRING_OVERWRITE) ? " (overwrite)" : "");
    printf("backend:         %s\n", backend_name(st->backend));
    printf("slots:           %u x %u bytes\n", st->slots, st->slot_size);
    printf("count:           %llu\n", (unsigned long long)st->count);
    printf("pushed:          %llu messages, %llu bytes\n", (unsigned long long)st->pushed,
           (unsigned long long)st->bytes_pushed);
    printf("popped:          %llu messages, %llu bytes\n", (unsigned long long)st->popped,
           (unsigned long long)st->bytes_popped);
    printf("dropped:         %llu\n", (unsigned long long)st->dropped);
    printf("abandoned:       %llu\n", (unsigned long long)st->abandoned);
    printf("full events:     %llu\n", (unsigned long long)st->full_events);
    printf("empty events:    %llu\n", (unsigned long long)st->empty_events);
    print_producer(st);
    printf("consumers:       %u\n", st->consumers);
    printf("observers:       %u (this one included)\n", st->observers);
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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleep ns unless a stop signal arrives. */
static void pause_for(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (!stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int watch(const char *name, shmring_t *r, int64_t interval_ns)
{
    int tty = isatty(STDOUT_FILENO);
    shmring_stats_t prev, st;
    int rc = shmring_stats(r, &prev);
    uint64_t prev_t = now_ns();
    for (unsigned block = 0; rc == 0 && !stop_requested; block++) {
        if (block > 0) {
            pause_for(interval_ns);
            if (stop_requested)
                break;
        }
        rc = shmring_stats(r, &st);
        uint64_t t = now_ns();
        if (rc < 0)
            break;
        printf("%s", tty ? "\033[H\033[2J" : (block > 0 ? "\n" : ""));
        print_stats(name, &st);
        if (block > 0)
            print_rates(&st, &prev, (double)(t - prev_t) / 1e9);
        if (fflush(stdout) != 0)
            return cli_fail("stat", "write error");
        prev = st;
        prev_t = t;
    }
    if (rc < 0)
        return cli_fail("stat", "%s: %s", name, shmring_strerror(rc));
    return CLI_OK;
}

static int stat_once(const char *name, shmring_t *r)
{
    shmring_stats_t st;
    int rc = shmring_stats(r, &st);
    if (rc < 0)
        return cli_fail("stat", "%s: %s", name, shmring_strerror(rc));
    print_stats(name, &st);
    if (fflush(stdout) != 0)
        return cli_fail("stat", "write error");
    return CLI_OK;
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
    shmring_t *r = NULL;
    rc = shmring_open(name, SHMRING_OBSERVER, &r);
    if (rc < 0)
        return cli_fail("stat", "%s: %s", name, shmring_strerror(rc));
    if (watch_ns > 0 && install_stop_handler() < 0)
        rc = cli_fail("stat", "cannot catch SIGINT");
    else
        rc = watch_ns > 0 ? watch(name, r, watch_ns) : stat_once(name, r);
    shmring_close(r);
    return rc;
}

const struct cli_command cli_cmd_stat = {
    .name = "stat",
    .summary = "show a ring's statistics, optionally refreshed with rates",
    .help = stat_help,
    .run = stat_run,
};
