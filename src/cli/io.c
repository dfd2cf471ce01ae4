/* `shmring send` and `shmring recv`: stdin to a ring, a ring to stdout. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static const char send_help[] =
    "Usage: shmring send NAME [--timeout SECONDS] [--binary [--size N]]\n"
    "\n"
    "Push stdin into a ring as its producer: each line, without its newline, becomes\n"
    "one message. The ring is created with the defaults (1024 slots of 256 bytes) if\n"
    "it does not exist. A line longer than the slot size is an error. At end of input\n"
    "the producer closes: consumers see end of stream once they have drained the ring.\n"
    "\n"
    "Options:\n"
    "  --timeout SECONDS  give up (exit 1) when the ring stays full that long\n"
    "                     (default: wait for consumers forever)\n"
    "  --binary           send stdin in chunks of --size bytes, not lines\n"
    "  --size N           chunk size of --binary (default: the slot size); the last\n"
    "                     chunk may be shorter\n"
    "  --help             show this help\n";

static const char recv_help[] =
    "Usage: shmring recv NAME [-n COUNT] [--timeout SECONDS] [--binary]\n"
    "\n"
    "Take messages from a ring as one of its consumers (consumers compete: each\n"
    "message goes to one of them) and print each followed by a newline.\n"
    "\n"
    "Stops, with exit status 0, after COUNT messages or at end of stream (the\n"
    "producer closed and the ring is drained). With --timeout, when SECONDS pass\n"
    "without a message it stops with exit status 1, except when no -n was given and\n"
    "at least one message was received: then the quiet period ends the stream and\n"
    "the exit status is 0.\n"
    "\n"
    "Options:\n"
    "  -n COUNT           stop after COUNT messages\n"
    "  --timeout SECONDS  longest wait for one message (default: forever)\n"
    "  --binary           print messages as they are, without a newline after each\n"
    "  --help             show this help\n";

struct io_args {
    char name[SHMRING_NAME_MAX + 1];
    int64_t timeout_ns; /* -1: forever */
    int binary;
    uint64_t size;  /* send --binary chunk size, 0: slot size */
    uint64_t count; /* recv -n, 0: unlimited */
};

enum { OPT_TIMEOUT = 256, OPT_BINARY, OPT_SIZE };

static int io_option(const char *cmd, int opt, const char *arg, struct io_args *a)
{
    switch (opt) {
    case OPT_TIMEOUT:
        if (cli_parse_seconds(arg, &a->timeout_ns) < 0)
            return cli_usage(cmd, "--timeout: '%s' is not a number of seconds", arg);
        return CLI_OK;
    case OPT_BINARY:
        a->binary = 1;
        return CLI_OK;
    case OPT_SIZE:
        if (cli_parse_count(arg, 1, SHMRING_MAX_SLOT_SIZE, &a->size) < 0)
            return cli_usage(cmd, "--size: '%s' is not a size in [1, %u]", arg,
                             SHMRING_MAX_SLOT_SIZE);
        return CLI_OK;
    case 'n':
        if (cli_parse_count(arg, 1, UINT64_MAX, &a->count) < 0)
            return cli_usage(cmd, "-n: '%s' is not a count >= 1", arg);
        return CLI_OK;
    default:
        return -1;
    }
}

static int io_parse(const char *cmd, int argc, char **argv, struct io_args *a)
{
    static const struct option send_opts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"size", required_argument, NULL, OPT_SIZE},
        {NULL, 0, NULL, 0},
    };
    static const struct option recv_opts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"binary", no_argument, NULL, OPT_BINARY},
        {NULL, 0, NULL, 0},
    };
    int is_send = strcmp(cmd, "send") == 0;
    const char *shorts = is_send ? ":" : ":n:";
    int opt;
    a->timeout_ns = -1;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, shorts, is_send ? send_opts : recv_opts, NULL)) != -1) {
        int rc = io_option(cmd, opt, optarg, a);
        if (rc < 0)
            return cli_bad_option(cmd, opt, argv);
        if (rc != CLI_OK)
            return rc;
    }
    if (a->size != 0 && !a->binary)
        return cli_usage(cmd, "--size needs --binary");
    return cli_take_name(cmd, argc, argv, a->name);
}

/* ---- send ------------------------------------------------------------------ */

static int open_producer(const char *name, shmring_t **r)
{
    int rc = shmring_open(name, SHMRING_PRODUCER, r);
    if (rc != -ENOENT)
        return rc;
    shmring_config_t cfg = {.flags = SHMRING_PRODUCER | SHMRING_NO_FALLBACK};
    rc = shmring_create(name, &cfg, r);
    if (rc == -EEXIST) /* created meanwhile by someone else */
        return shmring_open(name, SHMRING_PRODUCER, r);
    if (rc < 0)
        return rc;
    if (shmring_backend(*r) != SHMRING_BACKEND_SHM) {
        shmring_close(*r);
        return -ENOTSUP;
    }
    fprintf(stderr, "shmring: send: created %s (%u slots of %u bytes)\n", name, shmring_slots(*r),
            shmring_slot_size(*r));
    return 0;
}

static int push_one(const struct io_args *a, shmring_t *r, const void *msg, size_t len)
{
    int rc = shmring_push_wait(r, msg, len, a->timeout_ns);
    if (rc == -ETIMEDOUT)
        return cli_fail("send", "%s: ring still full after the --timeout (no consumer?)", a->name);
    if (rc < 0)
        return cli_fail("send", "%s: %s", a->name, shmring_strerror(rc));
    return CLI_OK;
}

static int send_lines(const struct io_args *a, shmring_t *r)
{
    size_t slot_size = shmring_slot_size(r), cap = 0;
    char *line = NULL;
    ssize_t n;
    int rc = CLI_OK;
    for (uint64_t lineno = 1; rc == CLI_OK && (n = getline(&line, &cap, stdin)) >= 0; lineno++) {
        size_t len = (size_t)n;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (len > slot_size)
            rc = cli_fail("send", "line %llu is %zu bytes, longer than the slot size (%zu)",
                          (unsigned long long)lineno, len, slot_size);
        else
            rc = push_one(a, r, line, len);
    }
    free(line);
    if (rc == CLI_OK && ferror(stdin))
        rc = cli_fail("send", "reading stdin: %s", strerror(errno));
    return rc;
}

static int send_chunks(const struct io_args *a, shmring_t *r)
{
    size_t size = a->size ? (size_t)a->size : shmring_slot_size(r);
    if (size > shmring_slot_size(r))
        return cli_fail("send", "--size %zu is larger than the slot size (%u)", size,
                        shmring_slot_size(r));
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return cli_fail("send", "out of memory");
    int rc = CLI_OK;
    size_t n;
    while (rc == CLI_OK && (n = fread(buf, 1, size, stdin)) > 0)
        rc = push_one(a, r, buf, n);
    free(buf);
    if (rc == CLI_OK && ferror(stdin))
        rc = cli_fail("send", "reading stdin: %s", strerror(errno));
    return rc;
}

static int send_run(int argc, char **argv)
{
    struct io_args a = {0};
    int rc = io_parse("send", argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    if (setvbuf(stdin, NULL, _IOFBF, CLI_STDIO_BUFFER) != 0)
        return cli_fail("send", "cannot buffer stdin");
    shmring_t *r = NULL;
    rc = open_producer(a.name, &r);
    if (rc == -ENOTSUP)
        return cli_fail("send", "%s: not created in shared memory (is SHMRING_FORCE_HEAP set?)",
                        a.name);
    if (rc < 0)
        return cli_fail("send", "%s: %s", a.name, shmring_strerror(rc));
    rc = a.binary ? send_chunks(&a, r) : send_lines(&a, r);
    shmring_close(r);
    return rc;
}

/* ---- recv ------------------------------------------------------------------ */

/* Take one message: without waiting if one is there, else flush stdout and wait. */
static ssize_t take(shmring_t *r, void *buf, size_t cap, int64_t timeout_ns)
{
    ssize_t n = shmring_pop(r, buf, cap);
    if (n != -EAGAIN)
        return n;
    if (fflush(stdout) != 0)
        return -EIO;
    return shmring_pop_wait(r, buf, cap, timeout_ns);
}

static int timed_out(const struct io_args *a, uint64_t received)
{
    if (a->count == 0 && received > 0)
        return CLI_OK;
    return cli_fail("recv", "%s: no message for %.3g s (%llu received)", a->name,
                    (double)a->timeout_ns / 1e9, (unsigned long long)received);
}

static int recv_loop(const struct io_args *a, shmring_t *r, char *buf, size_t cap)
{
    uint64_t received = 0;
    while (a->count == 0 || received < a->count) {
        ssize_t n = take(r, buf, cap, a->timeout_ns);
        if (n == -EPIPE)
            break;
        if (n == -ETIMEDOUT)
            return timed_out(a, received);
        if (n == -EIO)
            return cli_fail("recv", "write error: %s", strerror(errno));
        if (n < 0)
            return cli_fail("recv", "%s: %s", a->name, shmring_strerror((int)n));
        if (n > 0 && fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
            return cli_fail("recv", "write error: %s", strerror(errno));
        if (!a->binary && putchar('\n') == EOF)
            return cli_fail("recv", "write error: %s", strerror(errno));
        received++;
    }
    if (fflush(stdout) != 0)
        return cli_fail("recv", "write error: %s", strerror(errno));
    return CLI_OK;
}

static int recv_run(int argc, char **argv)
{
    struct io_args a = {0};
    int rc = io_parse("recv", argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    if (setvbuf(stdout, NULL, _IOFBF, CLI_STDIO_BUFFER) != 0)
        return cli_fail("recv", "cannot buffer stdout");
    shmring_t *r = NULL;
    rc = shmring_open(a.name, SHMRING_CONSUMER, &r);
    if (rc < 0)
        return cli_fail("recv", "%s: %s", a.name, shmring_strerror(rc));
    size_t cap = shmring_slot_size(r);
    char *buf = malloc(cap ? cap : 1);
    if (buf == NULL)
        rc = cli_fail("recv", "out of memory");
    else
        rc = recv_loop(&a, r, buf, cap ? cap : 1);
    free(buf);
    shmring_close(r);
    return rc;
}

const struct cli_command cli_cmd_send = {
    .name = "send",
    .summary = "push stdin into a ring, one message per line",
    .help = send_help,
    .run = send_run,
};

const struct cli_command cli_cmd_recv = {
    .name = "recv",
    .summary = "print messages taken from a ring, one per line",
    .help = recv_help,
    .run = recv_run,
};
