/* Helpers of the command-line tool: error messages, option and number parsing. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vreport(const char *cmd, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void vreport(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "shmring: %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(cmd, fmt, ap);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'shmring %s --help'.\n", cmd);
    return CLI_USAGE;
}

int cli_bad_option(const char *cmd, int opt, char **argv)
{
    const char *arg = argv[optind - 1];
    if (opt == ':')
        return cli_usage(cmd, "option '%s' needs a value", arg);
    if (optopt != 0)
        return cli_usage(cmd, "unknown option '-%c'", optopt);
    return cli_usage(cmd, "unknown option '%s'", arg);
}

void cli_getopt_reset(void)
{
    /* 0 makes glibc's getopt re-initialise its internal state. */
    optind = 0;
    opterr = 0;
}

static int suffix_shift(const char *s, unsigned *shift)
{
    if (s[0] == '\0') {
        *shift = 0;
        return 0;
    }
    if (s[1] != '\0')
        return -EINVAL;
    switch (s[0]) {
    case 'k':
    case 'K':
        *shift = 10;
        return 0;
    case 'm':
    case 'M':
        *shift = 20;
        return 0;
    case 'g':
    case 'G':
        *shift = 30;
        return 0;
    default:
        return -EINVAL;
    }
}

int cli_parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (errno != 0 || suffix_shift(end, &shift) < 0)
        return -EINVAL;
    if (v > (UINT64_MAX >> shift))
        return -EINVAL;
    v <<= shift;
    if (v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int cli_parse_seconds(const char *s, int64_t *ns)
{
    if (s == NULL || s[0] == '\0' || s[0] == '-' || s[0] == '+')
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0 || v > 1e9)
        return -EINVAL;
    *ns = (int64_t)(v * 1e9);
    return 0;
}

int cli_parse_mode(const char *s, uint32_t *mode)
{
    if (s == NULL || s[0] < '0' || s[0] > '7')
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 8);
    if (errno != 0 || *end != '\0' || v > 0777)
        return -EINVAL;
    *mode = (uint32_t)v;
    return 0;
}

int cli_segment_name(const char *arg, char out[SHMRING_NAME_MAX + 1])
{
    int n = snprintf(out, SHMRING_NAME_MAX + 1, "%s%s", arg[0] == '/' ? "" : "/", arg);
    if (n < 0 || n > SHMRING_NAME_MAX)
        return -EINVAL;
    return shmring__name_check(out);
}

int cli_take_name(const char *cmd, int argc, char **argv, char out[SHMRING_NAME_MAX + 1])
{
    if (optind >= argc)
        return cli_usage(cmd, "missing NAME");
    if (optind + 1 < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind + 1]);
    if (cli_segment_name(argv[optind], out) < 0)
        return cli_usage(cmd,
                         "invalid name '%s': one leading '/' at most, no other '/', "
                         "at most %d bytes",
                         argv[optind], SHMRING_NAME_MAX);
    return CLI_OK;
}

void cli_human_size(uint64_t bytes, char *buf, size_t cap)
{
    static const char units[] = "BKMGT";
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u + 1 < sizeof units - 1) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%lluB", (unsigned long long)bytes);
    else
        snprintf(buf, cap, "%.1f%c", v, units[u]);
}
