/* `shmring bench transfer`: what handing a payload to another process costs through a pipe and
 * through rings. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_SIZE        (1u << 20)
#define DEFAULT_VOLUME      (100ull << 20) /* bytes per path when --iterations is not given */
#define DEFAULT_ITERATIONS  100u
#define MIN_AUTO_ITERATIONS 10u

static const char bench_help[] =
    "Usage: shmring bench transfer [--size N] [--iterations N]\n"
    "\n"
    "Measure what shared memory buys over message passing: hand N bytes to another\n"
    "process through a pipe, through a ring by copy (push, pop) and through a ring\n"
    "by zero-copy (reserve/commit, claim/release), and print each path's median\n"
    "time and speed, and how many times faster than the pipe the fastest ring is.\n"
    "The receiver sums every byte and sends the sum back; a wrong sum fails the run.\n"
    "Sender and receiver run on two different CPUs when there are two. The rings are\n"
    "anonymous (memfd): nothing is left in the shm directory.\n"
    "\n"
    "Options:\n"
    "  --size N        bytes per hand-over, with an optional K, M or G suffix\n"
    "                  (default 1M, at most 256M)\n"
    "  --iterations N  timed hand-overs per path, after 3 untimed ones (default 100,\n"
    "                  fewer above 1M: about 100M per path, at least 10)\n"
    "  --help          show this help\n"
    "\n"
    "Needs shared memory between processes: with the heap backend\n"
    "($SHMRING_FORCE_HEAP=1) it fails.\n";

struct bench_args {
    uint64_t size;
    uint64_t iterations; /* 0: chosen from the size */
};

enum { OPT_SIZE = 256, OPT_ITERATIONS };

static int bench_option(int opt, const char *arg, struct bench_args *a)
{
    switch (opt) {
    case OPT_SIZE:
        if (cli_parse_count(arg, 1, SHMRING_TRANSFER_MAX_BYTES, &a->size) < 0)
            return cli_usage("bench", "--size: '%s' is not a size in [1, 256M]", arg);
        return CLI_OK;
    case OPT_ITERATIONS:
        if (cli_parse_count(arg, 1, SHMRING_TRANSFER_MAX_ITERATIONS, &a->iterations) < 0)
            return cli_usage("bench", "--iterations: '%s' is not a count in [1, %u]", arg,
                             SHMRING_TRANSFER_MAX_ITERATIONS);
        return CLI_OK;
    default:
        return -1;
    }
}

static int bench_parse(int argc, char **argv, struct bench_args *a)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, OPT_SIZE},
        {"iterations", required_argument, NULL, OPT_ITERATIONS},
        {NULL, 0, NULL, 0},
    };
    int opt;
    a->size = DEFAULT_SIZE;
    a->iterations = 0;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int rc = bench_option(opt, optarg, a);
        if (rc < 0)
            return cli_bad_option("bench", opt, argv);
        if (rc != CLI_OK)
            return rc;
    }
    if (optind >= argc)
        return cli_usage("bench", "missing what to measure: transfer");
    if (strcmp(argv[optind], "transfer") != 0)
        return cli_usage("bench", "unknown benchmark '%s' (there is: transfer)", argv[optind]);
    if (optind + 1 < argc)
        return cli_usage("bench", "unexpected argument '%s'", argv[optind + 1]);
    return CLI_OK;
}

/* About DEFAULT_VOLUME bytes per path, between MIN_AUTO_ITERATIONS and DEFAULT_ITERATIONS. */
static unsigned default_iterations(uint64_t size)
{
    uint64_t n = DEFAULT_VOLUME / size;
    if (n > DEFAULT_ITERATIONS)
        return DEFAULT_ITERATIONS;
    return n < MIN_AUTO_ITERATIONS ? MIN_AUTO_ITERATIONS : (unsigned)n;
}

static const char *transfer_error(int rc)
{
    switch (-rc) {
    case ENOTSUP:
        return "no shared memory between processes here (heap backend, or no memfd)";
    case EIO:
        return "a receiver's checksum differs from the sender's: the data did not arrive intact";
    case EPIPE:
        return "a receiver process failed or died";
    case ETIMEDOUT:
        return "a hand-over took more than a minute";
    default:
        return shmring_strerror(rc);
    }
}

static int bench_run(int argc, char **argv)
{
    struct bench_args a;
    int rc = bench_parse(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    unsigned iterations = a.iterations ? (unsigned)a.iterations : default_iterations(a.size);
    shmring_transfer_report_t report;
    rc = shmring_measure_transfer((size_t)a.size, iterations, &report);
    if (rc < 0)
        return cli_fail("bench", "transfer: %s", transfer_error(rc));
    char table[1024];
    if (shmring_transfer_format(&report, table, sizeof table) < 0)
        return cli_fail("bench", "transfer: cannot format the report");
    if (fputs(table, stdout) == EOF || fflush(stdout) != 0)
        return cli_fail("bench", "write error");
    return CLI_OK;
}

const struct cli_command cli_cmd_bench = {
    .name = "bench",
    .summary = "measure how fast a payload reaches another process: pipe vs rings",
    .help = bench_help,
    .run = bench_run,
};
