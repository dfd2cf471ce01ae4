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
    "Usage: shmring send NAME [--timeout SECONDS] [--binary [--size N] | --framed]\n"
    "                         [--allow-fallback]\n"
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
    "  --framed           stdin is a stream of frames, each a 32-bit little-endian\n"
    "                     length and that many bytes: one message per frame (what\n"
    "                     recv --framed writes); a truncated frame is an error\n"
    "  --allow-fallback   when the ring must be created and shared memory is not\n"
    "                     usable, create it on the memfd or heap backend anyway\n"
    "                     (visible to no other process); refused by default\n"
    "  --help             show this help\n";

static const char recv_help[] =
    "Usage: shmring recv NAME [-n COUNT] [--timeout SECONDS] [--binary | --framed]\n"
    "                         [--wait [--wait-timeout SECONDS]] [--follow] [--subscriber]\n"
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
    "  -n COUNT              stop after COUNT messages\n"
    "  --timeout SECONDS     longest wait for one message (default: forever)\n"
    "  --binary              print messages as they are, without a newline after each\n"
    "  --framed              print each message as a frame: its length as a 32-bit\n"
    "                        little-endian number, then its bytes (for send --framed)\n"
    "  --wait                when the ring does not exist yet, wait for it to appear\n"
    "                        instead of failing\n"
    "  --wait-timeout SECONDS  with --wait: give up (exit 1) when the ring has not\n"
    "                        appeared after SECONDS (default: wait forever)\n"
    "  --follow              at end of stream (the producer closed or died and the\n"
    "                        ring is drained), wait for the next producer instead of\n"
    "                        stopping; a ring removed and created again is reopened\n"
    "  --subscriber          read as a broadcast subscriber instead of a consumer: every\n"
    "                        message pushed after it attached, whatever consumers take\n"
    "  --help                show this help\n";

struct io_args {
    char name[SHMRING_NAME_MAX + 1];
    int64_t timeout_ns; /* -1: forever */
    int binary;
    int framed;
    int wait;
    int follow;
    int allow_fallback;
    int64_t wait_timeout_ns; /* -1: forever */
    int wait_timeout_given;
    uint64_t size;  /* send --binary chunk size, 0: slot size */
    uint64_t count; /* recv -n, 0: unlimited */
    uint32_t role;  /* recv: SHMRING_CONSUMER, or SHMRING_SUBSCRIBER (--subscriber) */
};

enum {
    OPT_TIMEOUT = 256,
    OPT_BINARY,
    OPT_SIZE,
    OPT_FRAMED,
    OPT_WAIT,
    OPT_WAIT_TIMEOUT,
    OPT_FOLLOW,
    OPT_ALLOW_FALLBACK,
    OPT_SUBSCRIBER,
};

/* Frame header of --framed: the message length, 32-bit little-endian. */
#define FRAME_HEADER 4u

/* Longest sleep of recv --follow before it checks whether its ring was removed. */
#define FOLLOW_CHECK_NS 100000000LL /* 100 ms */

static int io_flag(int opt, struct io_args *a)
{
    switch (opt) {
    case OPT_BINARY:
        a->binary = 1;
        return CLI_OK;
    case OPT_FRAMED:
        a->framed = 1;
        return CLI_OK;
    case OPT_WAIT:
        a->wait = 1;
        return CLI_OK;
    case OPT_FOLLOW:
        a->follow = 1;
        return CLI_OK;
    case OPT_ALLOW_FALLBACK:
        a->allow_fallback = 1;
        return CLI_OK;
    case OPT_SUBSCRIBER:
        a->role = SHMRING_SUBSCRIBER;
        return CLI_OK;
    default:
        return -1;
    }
}

static int io_option(const char *cmd, int opt, const char *arg, struct io_args *a)
{
    switch (opt) {
    case OPT_TIMEOUT:
        if (cli_parse_seconds(arg, &a->timeout_ns) < 0)
            return cli_usage(cmd, "--timeout: '%s' is not a number of seconds", arg);
        return CLI_OK;
    case OPT_WAIT_TIMEOUT:
        if (cli_parse_seconds(arg, &a->wait_timeout_ns) < 0)
            return cli_usage(cmd, "--wait-timeout: '%s' is not a number of seconds", arg);
        a->wait_timeout_given = 1;
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
        return io_flag(opt, a);
    }
}

static int io_check(const char *cmd, const struct io_args *a)
{
    if (a->size != 0 && !a->binary)
        return cli_usage(cmd, "--size needs --binary");
    if (a->binary && a->framed)
        return cli_usage(cmd, "--binary and --framed exclude each other");
    if (a->wait_timeout_given && !a->wait)
        return cli_usage(cmd, "--wait-timeout needs --wait");
    return CLI_OK;
}

static int io_parse(const char *cmd, int argc, char **argv, struct io_args *a)
{
    static const struct option send_opts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"size", required_argument, NULL, OPT_SIZE},
        {"framed", no_argument, NULL, OPT_FRAMED},
        {"allow-fallback", no_argument, NULL, OPT_ALLOW_FALLBACK},
        {NULL, 0, NULL, 0},
    };
    static const struct option recv_opts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"framed", no_argument, NULL, OPT_FRAMED},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"subscriber", no_argument, NULL, OPT_SUBSCRIBER},
        {NULL, 0, NULL, 0},
    };
    int is_send = strcmp(cmd, "send") == 0;
    const char *shorts = is_send ? ":" : ":n:";
    int opt;
    a->timeout_ns = -1;
    a->wait_timeout_ns = -1;
    a->role = SHMRING_CONSUMER;
    cli_getopt_reset();
    while ((opt = getopt_long(argc, argv, shorts, is_send ? send_opts : recv_opts, NULL)) != -1) {
        int rc = io_option(cmd, opt, optarg, a);
        if (rc < 0)
            return cli_bad_option(cmd, opt, argv);
        if (rc != CLI_OK)
            return rc;
    }
    int rc = io_check(cmd, a);
    if (rc != CLI_OK)
        return rc;
    return cli_take_name(cmd, argc, argv, a->name);
}

/* An error opening a ring, with the object type spelled out for -EPROTOTYPE. */
static int open_failed(const char *cmd, const char *name, int rc)
{
    if (rc == -EPROTOTYPE)
        return cli_fail(cmd, "%s: a state table, not a ring (see shmring get, put, dump)", name);
    return cli_fail(cmd, "%s: %s", name, shmring_strerror(rc));
}

/* ---- send ------------------------------------------------------------------ */

/* Open the ring as producer, creating it when absent. 0, CLI_FAIL (reported) or -errno. */
static int open_producer(const struct io_args *a, shmring_t **r)
{
    int rc = shmring_open(a->name, SHMRING_PRODUCER, r);
    if (rc != -ENOENT)
        return rc;
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.flags = SHMRING_PRODUCER);
    rc = cli_create_ring("send", a->name, &cfg, a->allow_fallback, r);
    if (rc == -EEXIST) /* created meanwhile by someone else */
        return shmring_open(a->name, SHMRING_PRODUCER, r);
    if (rc != 0)
        return rc;
    fprintf(stderr, "shmring: send: created %s (%u slots of %u bytes)\n", a->name,
            shmring_slots(*r), shmring_slot_size(*r));
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

static int read_error(void)
{
    return cli_fail("send", "reading stdin: %s", strerror(errno));
}

static int send_lines(const struct io_args *a, shmring_t *r)
{
    size_t slot_size = shmring_max_message(r), cap = 0;
    char *line = NULL;
    ssize_t n;
    int rc = CLI_OK;
    for (uint64_t lineno = 1; rc == CLI_OK && (n = getline(&line, &cap, stdin)) >= 0; lineno++) {
        size_t len = (size_t)n;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (len > slot_size)
            rc = cli_fail("send", "line %llu is %zu bytes, longer than the largest message (%zu)",
                          (unsigned long long)lineno, len, slot_size);
        else
            rc = push_one(a, r, line, len);
    }
    free(line);
    if (rc == CLI_OK && ferror(stdin))
        rc = read_error();
    return rc;
}

static int send_chunks(const struct io_args *a, shmring_t *r)
{
    size_t size = a->size ? (size_t)a->size : shmring_slot_size(r);
    if (size > shmring_max_message(r))
        return cli_fail("send", "--size %zu is larger than the largest message (%u)", size,
                        shmring_max_message(r));
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return cli_fail("send", "out of memory");
    int rc = CLI_OK;
    size_t n;
    while (rc == CLI_OK && (n = fread(buf, 1, size, stdin)) > 0)
        rc = push_one(a, r, buf, n);
    free(buf);
    if (rc == CLI_OK && ferror(stdin))
        rc = read_error();
    return rc;
}

/*
 * Read the header of frame `index` (counted from 1). Returns 1 with *len
 * set, 0 at a clean end of input, or CLI_FAIL after reporting.
 */
static int read_frame_header(uint64_t index, uint32_t *len)
{
    unsigned char h[FRAME_HEADER];
    size_t got = fread(h, 1, sizeof h, stdin);
    if (got == 0 && !ferror(stdin))
        return 0;
    if (ferror(stdin))
        return -read_error();
    if (got < sizeof h)
        return -cli_fail("send",
                         "truncated frame %llu: input ends after %zu of the %u bytes of its "
                         "length",
                         (unsigned long long)index, got, FRAME_HEADER);
    *len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    return 1;
}

static int send_one_frame(const struct io_args *a, shmring_t *r, char *buf, uint64_t index,
                          uint32_t len)
{
    size_t slot_size = shmring_max_message(r);
    if (len > slot_size)
        return cli_fail("send", "frame %llu is %u bytes, longer than the largest message (%zu)",
                        (unsigned long long)index, len, slot_size);
    size_t got = len > 0 ? fread(buf, 1, len, stdin) : 0;
    if (ferror(stdin))
        return read_error();
    if (got < len)
        return cli_fail("send", "truncated frame %llu: input ends after %zu of its %u bytes",
                        (unsigned long long)index, got, len);
    return push_one(a, r, buf, len);
}

static int send_frames(const struct io_args *a, shmring_t *r)
{
    size_t slot_size = shmring_max_message(r);
    char *buf = malloc(slot_size ? slot_size : 1);
    if (buf == NULL)
        return cli_fail("send", "out of memory");
    int rc = CLI_OK;
    for (uint64_t index = 1; rc == CLI_OK; index++) {
        uint32_t len = 0;
        int h = read_frame_header(index, &len);
        if (h <= 0) {
            rc = -h;
            break;
        }
        rc = send_one_frame(a, r, buf, index, len);
    }
    free(buf);
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
    rc = open_producer(&a, &r);
    if (rc > 0)
        return rc;
    if (rc < 0)
        return open_failed("send", a.name, rc);
    if (a.framed)
        rc = send_frames(&a, r);
    else
        rc = a.binary ? send_chunks(&a, r) : send_lines(&a, r);
    shmring_close(r);
    return rc;
}

/* ---- recv ------------------------------------------------------------------ */

/* A consumer handle and a buffer of its slot size. */
struct consumer {
    shmring_t *r;
    char *buf;
    size_t cap;
    uint64_t received;
};

static uint64_t deadline_after(int64_t timeout_ns)
{
    return timeout_ns < 0 ? UINT64_MAX : cli_now_ns() + (uint64_t)timeout_ns;
}

/*
 * Open `name` as consumer, waiting for it to appear until deadline
 * (shmring_open_wait: inotify on the shm directory). 0, or a negative
 * errno (-ETIMEDOUT: it never appeared).
 */
static int open_when_there(const char *name, uint32_t flags, uint64_t deadline, shmring_t **r)
{
    int64_t timeout = -1;
    if (deadline != UINT64_MAX) {
        uint64_t now = cli_now_ns();
        timeout = deadline > now ? (int64_t)(deadline - now) : 0;
    }
    return shmring_open_wait(name, flags, timeout, r);
}

/* recv's open flags: its role (consumer or subscriber); --follow follows the
 * ring across producers. */
static uint32_t consumer_flags(const struct io_args *a)
{
    return a->role | (a->follow ? SHMRING_FOLLOW : 0);
}

static int consumer_open(const struct io_args *a, struct consumer *c)
{
    int rc;
    if (a->wait)
        rc = open_when_there(a->name, consumer_flags(a), deadline_after(a->wait_timeout_ns), &c->r);
    else
        rc = shmring_open(a->name, consumer_flags(a), &c->r);
    if (rc == -ETIMEDOUT)
        return cli_fail("recv", "%s: did not appear within the --wait-timeout (%.3g s)", a->name,
                        (double)a->wait_timeout_ns / 1e9);
    if (rc < 0)
        return open_failed("recv", a->name, rc);
    size_t cap = shmring_max_message(c->r);
    char *buf = realloc(c->buf, cap ? cap : 1);
    if (buf == NULL) {
        shmring_close(c->r);
        c->r = NULL;
        return cli_fail("recv", "out of memory");
    }
    c->buf = buf;
    c->cap = cap ? cap : 1;
    return CLI_OK;
}

static void consumer_close(struct consumer *c)
{
    shmring_close(c->r);
    free(c->buf);
}

/* recv --follow: the ring was removed; open the one made under its name next. */
static int reopen(const struct io_args *a, struct consumer *c, uint64_t deadline)
{
    shmring_close(c->r);
    c->r = NULL;
    int rc = open_when_there(a->name, consumer_flags(a), deadline, &c->r);
    if (rc < 0)
        return rc;
    size_t cap = shmring_max_message(c->r);
    char *buf = realloc(c->buf, cap ? cap : 1);
    if (buf == NULL)
        return -ENOMEM;
    c->buf = buf;
    c->cap = cap ? cap : 1;
    return 0;
}

/*
 * recv --follow: the handle has SHMRING_FOLLOW, so its wait sleeps through
 * the end of a stream until the next producer pushes. It wakes every
 * FOLLOW_CHECK_NS to see whether the ring was removed: then it waits for a
 * ring of the same name and follows that one.
 */
static ssize_t wait_following(const struct io_args *a, struct consumer *c)
{
    uint64_t deadline = deadline_after(a->timeout_ns);
    for (;;) {
        uint64_t now = cli_now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        int64_t slice = deadline - now < (uint64_t)FOLLOW_CHECK_NS ? (int64_t)(deadline - now)
                                                                   : FOLLOW_CHECK_NS;
        ssize_t n = shmring_pop_wait(c->r, c->buf, c->cap, slice);
        if (n != -ETIMEDOUT)
            return n;
        if (cli_fd_unlinked(shmring_fd(c->r))) {
            int rc = reopen(a, c, deadline);
            if (rc < 0)
                return rc;
        }
    }
}

/* Take one message: without waiting if one is there, else flush stdout and
 * wait. A length, or a negative errno (-EPIPE: end of stream, never with
 * --follow). */
static ssize_t take(const struct io_args *a, struct consumer *c)
{
    ssize_t n = shmring_pop(c->r, c->buf, c->cap);
    if (n != -EAGAIN)
        return n;
    if (fflush(stdout) != 0)
        return -EIO;
    if (a->follow)
        return wait_following(a, c);
    return shmring_pop_wait(c->r, c->buf, c->cap, a->timeout_ns);
}

static int timed_out(const struct io_args *a, uint64_t received)
{
    if (a->count == 0 && received > 0)
        return CLI_OK;
    return cli_fail("recv", "%s: no message for %.3g s (%llu received)", a->name,
                    (double)a->timeout_ns / 1e9, (unsigned long long)received);
}

static int write_error(void)
{
    return cli_fail("recv", "write error: %s", strerror(errno));
}

static int print_message(const struct io_args *a, const char *msg, size_t n)
{
    if (a->framed) {
        unsigned char h[FRAME_HEADER] = {(unsigned char)n, (unsigned char)(n >> 8),
                                         (unsigned char)(n >> 16), (unsigned char)(n >> 24)};
        if (fwrite(h, 1, sizeof h, stdout) != sizeof h)
            return write_error();
    }
    if (n > 0 && fwrite(msg, 1, n, stdout) != n)
        return write_error();
    if (!a->binary && !a->framed && putchar('\n') == EOF)
        return write_error();
    return CLI_OK;
}

static int recv_loop(const struct io_args *a, struct consumer *c)
{
    while (a->count == 0 || c->received < a->count) {
        ssize_t n = take(a, c);
        if (n == -EPIPE)
            break;
        if (n == -ETIMEDOUT)
            return timed_out(a, c->received);
        if (n == -EIO)
            return write_error();
        if (n < 0)
            return open_failed("recv", a->name, (int)n);
        int rc = print_message(a, c->buf, (size_t)n);
        if (rc != CLI_OK)
            return rc;
        c->received++;
    }
    if (fflush(stdout) != 0)
        return write_error();
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
    struct consumer c = {0};
    rc = consumer_open(&a, &c);
    if (rc == CLI_OK)
        rc = recv_loop(&a, &c);
    consumer_close(&c);
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
