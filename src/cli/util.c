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
#include <sys/stat.h>
#include <time.h>

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
    return shmring_name_check(out);
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

volatile sig_atomic_t cli_stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    cli_stop_requested = 1;
}

int cli_catch_stop(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the signal cuts a sleep short. */
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -errno;
    return 0;
}

uint64_t cli_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cli_sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (!cli_stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

const char *cli_backend_name(int backend)
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

void cli_put_escaped(FILE *out, const void *bytes, size_t len, int is_key)
{
    const unsigned char *p = bytes;
    for (size_t i = 0; i < len; i++) {
        unsigned c = p[i];
        if (c == '\\')
            fputs("\\\\", out);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (c < 0x20 || c > 0x7e || (is_key && c == '='))
            fprintf(out, "\\x%02x", c);
        else
            putc((int)c, out);
    }
}

void cli_put_json_string(FILE *out, const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    putc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned c = p[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", (int)c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            putc((int)c, out);
    }
    putc('"', out);
}

/* Length of the UTF-8 sequence starting with byte c, 0 if c cannot start one. */
static size_t utf8_length(unsigned c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* 1 if the n-byte sequence at p is well formed (shortest form, no surrogate, <= U+10FFFF). */
static int utf8_sequence_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && p[0] == 0xe0 && p[1] < 0xa0)
        return 0; /* overlong */
    if (n == 3 && p[0] == 0xed && p[1] >= 0xa0)
        return 0; /* surrogate */
    if (n == 4 && p[0] == 0xf0 && p[1] < 0x90)
        return 0; /* overlong */
    if (n == 4 && p[0] == 0xf4 && p[1] >= 0x90)
        return 0; /* above U+10FFFF */
    return 1;
}

int cli_is_utf8(const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_length(p[i]);
        if (n == 0 || p[i] == 0 || n > len - i || !utf8_sequence_ok(p + i, n))
            return 0;
        i += n;
    }
    return 1;
}

int cli_fd_unlinked(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && st.st_nlink == 0;
}
