/* The shmring command-line tool, run as a separate program: every subcommand, errors, pipes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "segment.h"

#define DEADLINE_S 60.0

/* ---- Finding the tool and a private shm directory ------------------------ */

static const char *tool_path;
static char shm_dir[64];

static void remove_dir(void)
{
    if (shm_dir[0] == '\0')
        return;
    DIR *d = opendir(shm_dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(shm_dir);
    shm_dir[0] = '\0';
}

/*
 * Every test gets its own shm directory (the tool and the library both honour
 * $SHMRING_SHM_DIR), so that ls and gc see only what the test made.
 */
static void setup(int needs_processes)
{
    if (needs_processes && test_heap_forced())
        cr_skip_test("needs processes");
    tool_path = test_tool();
    test_quiet_log();
    snprintf(shm_dir, sizeof shm_dir, "/dev/shm/shmring-cli-XXXXXX");
    if (mkdtemp(shm_dir) == NULL) {
        snprintf(shm_dir, sizeof shm_dir, "/tmp/shmring-cli-XXXXXX");
        cr_assert_not_null(mkdtemp(shm_dir));
    }
    cr_assert_eq(setenv("SHMRING_SHM_DIR", shm_dir, 1), 0);
    static int registered;
    if (!registered)
        atexit(remove_dir);
    registered = 1;
}

static int dir_has(const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", shm_dir, file);
    return access(path, F_OK) == 0;
}

static unsigned dir_count(void)
{
    DIR *d = opendir(shm_dir);
    cr_assert_not_null(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- Running processes --------------------------------------------------- */

struct buf {
    char *data;
    size_t len, cap;
};

struct proc {
    pid_t pid;
    int in, out, err; /* our ends, -1 once closed */
    const char *input;
    size_t input_len, input_off;
    struct buf o, e;
    int status; /* exit status, or 128 + signal */
};

static void child_exec(const char *path, char *const argv[], int in[2], int out[2], int err[2])
{
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    close(err[0]);
    close(err[1]);
    execv(path, argv);
    _exit(127);
}

/* Start path with argv; input (may be NULL) is fed to its stdin, then closed. */
static void start(struct proc *p, const char *path, char *const argv[], const char *input,
                  size_t input_len)
{
    int in[2], out[2], err[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    memset(p, 0, sizeof *p);
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0)
        child_exec(path, argv, in, out, err);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    p->in = in[1];
    p->out = out[0];
    p->err = err[0];
    p->input = input;
    p->input_len = input != NULL ? input_len : 0;
    cr_assert_eq(fcntl(p->in, F_SETFL, O_NONBLOCK), 0);
    if (p->input_len == 0) {
        close(p->in);
        p->in = -1;
    }
}

static void buf_read(int *fd, struct buf *b)
{
    if (b->cap - b->len < 65536) {
        b->cap = b->cap * 2 + 65536;
        b->data = realloc(b->data, b->cap + 1);
        cr_assert_not_null(b->data);
    }
    ssize_t n = read(*fd, b->data + b->len, b->cap - b->len);
    if (n > 0) {
        b->len += (size_t)n;
        b->data[b->len] = '\0';
    } else if (n == 0 || errno != EINTR) {
        close(*fd);
        *fd = -1;
    }
}

static void feed(struct proc *p)
{
    ssize_t n = write(p->in, p->input + p->input_off, p->input_len - p->input_off);
    if (n > 0)
        p->input_off += (size_t)n;
    if ((n < 0 && errno != EAGAIN && errno != EINTR) || p->input_off == p->input_len) {
        close(p->in);
        p->in = -1;
    }
}

static int proc_open(const struct proc *p)
{
    return p->in >= 0 || p->out >= 0 || p->err >= 0;
}

/* One poll round over every descriptor of every process. */
static void pump(struct proc *ps, int n)
{
    struct pollfd fds[24];
    int nfds = 0;
    for (int i = 0; i < n; i++) {
        int own[3] = {ps[i].in, ps[i].out, ps[i].err};
        for (int j = 0; j < 3; j++)
            if (own[j] >= 0)
                fds[nfds++] = (struct pollfd){own[j], j == 0 ? POLLOUT : POLLIN, 0};
    }
    if (poll(fds, (nfds_t)nfds, 100) <= 0)
        return;
    for (int i = 0; i < n; i++) {
        struct proc *p = &ps[i];
        for (int k = 0; k < nfds; k++) {
            if (fds[k].revents == 0)
                continue;
            if (fds[k].fd == p->in)
                feed(p);
            else if (fds[k].fd == p->out)
                buf_read(&p->out, &p->o);
            else if (fds[k].fd == p->err)
                buf_read(&p->err, &p->e);
        }
    }
}

static void kill_all(struct proc *ps, int n)
{
    for (int i = 0; i < n; i++) {
        kill(ps[i].pid, SIGKILL);
        test_wait_child(ps[i].pid);
    }
}

/* Collect the output of n processes and reap them, failing the test after a deadline. */
static void finish(struct proc *ps, int n)
{
    double deadline = h_now_s() + DEADLINE_S;
    for (;;) {
        int open = 0;
        for (int i = 0; i < n; i++)
            open |= proc_open(&ps[i]);
        if (!open)
            break;
        if (h_now_s() > deadline) {
            kill_all(ps, n);
            cr_assert_fail("processes still running after %.0f s", DEADLINE_S);
        }
        pump(ps, n);
    }
    for (int i = 0; i < n; i++) {
        ps[i].status = test_wait_child(ps[i].pid);
        if (ps[i].o.data == NULL)
            ps[i].o.data = strdup("");
        if (ps[i].e.data == NULL)
            ps[i].e.data = strdup("");
    }
}

static void proc_free(struct proc *p)
{
    free(p->o.data);
    free(p->e.data);
}

#define MAX_ARGS 16

/* Run the tool with a NULL-terminated argument list and optional stdin. */
static void run_in(struct proc *p, const char *input, size_t input_len, const char *arg, ...)
{
    char *argv[MAX_ARGS + 2];
    int n = 0;
    argv[n++] = (char *)"shmring";
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL && n <= MAX_ARGS; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    start(p, tool_path, argv, input, input_len);
    finish(p, 1);
}

#define RUN(p, ...)       run_in((p), NULL, 0, __VA_ARGS__, (const char *)NULL)
#define RUN_INPUT(p, ...) run_in((p), __VA_ARGS__, (const char *)NULL)

/* A shell command line; each "TOOL" in it stands for the tool's path. */
static void start_shell(struct proc *p, const char *fmt)
{
    static char cmd[4][PATH_MAX * 4];
    static unsigned next;
    char *c = cmd[next++ % 4];
    size_t off = 0;
    const char *t;
    cr_assert_not_null(strstr(fmt, "TOOL"));
    while ((t = strstr(fmt, "TOOL")) != NULL) {
        off += (size_t)snprintf(c + off, PATH_MAX * 4 - off, "%.*s'%s'", (int)(t - fmt), fmt,
                                tool_path);
        fmt = t + 4;
    }
    snprintf(c + off, PATH_MAX * 4 - off, "%s", fmt);
    char *argv[] = {(char *)"sh", (char *)"-c", c, NULL};
    start(p, "/bin/sh", argv, NULL, 0);
}

static void assert_status(const struct proc *p, int status, const char *what)
{
    cr_assert_eq(p->status, status, "%s: exit %d, expected %d; stderr: %s", what, p->status, status,
                 p->e.data);
}

static void assert_contains(const char *text, const char *needle)
{
    cr_assert_not_null(strstr(text, needle), "'%s' not found in:\n%s", needle, text);
}

/* The line of ls output that starts with name, or NULL. */
static char *ls_line(const char *out, const char *name)
{
    static char line[512];
    size_t len = strlen(name);
    for (const char *p = out; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, name, len) == 0 && p[len] == ' ') {
            const char *end = strchr(p, '\n');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            snprintf(line, sizeof line, "%.*s", (int)n, p);
            return line;
        }
    }
    return NULL;
}

/* ---- Help, version, usage errors ------------------------------------------ */

static const char *const subcommands[] = {"ls",  "stat", "create", "rm",   "gc",    "send", "recv",
                                          "get", "put",  "del",    "dump", "watch", "bench"};

Test(cli, help_of_every_subcommand)
{
    setup(0);
    struct proc p;
    char want[64];
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        RUN(&p, subcommands[i], "--help");
        assert_status(&p, 0, subcommands[i]);
        snprintf(want, sizeof want, "Usage: shmring %s", subcommands[i]);
        cr_assert_eq(strncmp(p.o.data, want, strlen(want)), 0, "%s", p.o.data);
        cr_assert_eq(p.e.len, 0u);
        proc_free(&p);
    }
    RUN(&p, "--help");
    assert_status(&p, 0, "--help");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        snprintf(want, sizeof want, "\n  %s ", subcommands[i]);
        assert_contains(p.o.data, want);
    }
    proc_free(&p);
    RUN(&p, "--version");
    assert_status(&p, 0, "--version");
    snprintf(want, sizeof want, "shmring %s\n", shmring_version());
    cr_assert_str_eq(p.o.data, want);
    proc_free(&p);
    remove_dir();
}

static const char *const bad_usages[][6] = {
    {NULL},
    {"frobnicate", NULL},
    {"ls", "extra", NULL},
    {"ls", "--bogus", NULL},
    {"stat", NULL},
    {"stat", "/a", "/b", NULL},
    {"stat", "/a", "--watch", NULL},
    {"stat", "/a", "--watch", "-1", NULL},
    {"create", "/a", "--slots", "3", NULL},
    {"create", "/a", "--slots", "0", NULL},
    {"create", "/a", "--slot-size", "x", NULL},
    {"create", "/a", "--mode", "999", NULL},
    {"create", "/a", "--mode", "0666", NULL},
    {"create", "a/b", NULL},
    {"create", NULL},
    {"rm", NULL},
    {"rm", "/a", "--force", NULL},
    {"gc", "now", NULL},
    {"send", "/a", "--size", "10", NULL},
    {"send", "/a", "--timeout", "soon", NULL},
    {"send", "/a", "-n", "3", NULL},
    {"recv", "/a", "-n", "0", NULL},
    {"recv", "/a", "-n", "many", NULL},
    {"recv", "/a", "--timeout", NULL},
    {"recv", "/a", "--timeout", "-2", NULL},
    {"recv", "/a", "--size", "8", NULL},
    {"create", "/a", "--state", "--slots", "8", NULL},
    {"create", "/a", "--entries", "8", NULL},
    {"create", "/a", "--state", "--entries", "6", NULL},
    {"create", "/a", "--state", "--value-size", "0", NULL},
    {"create", "--table", "/a", "--slot-size", "8", NULL},
    {"create", "--table", "/a", "--entries", "3", NULL},
    {"create", "--table", "/a", "--value-size", "17M", NULL},
    {"create", "/a", "--value-size", "8", NULL},
    {"send", "/a", "--binary", "--framed", NULL},
    {"send", "/a", "--follow", NULL},
    {"send", "/a", "--wait", NULL},
    {"recv", "/a", "--framed", "--binary", NULL},
    {"recv", "/a", "--wait-timeout", "1", NULL},
    {"recv", "/a", "--wait", "--wait-timeout", "x", NULL},
    {"recv", "/a", "--allow-fallback", NULL},
    {"get", NULL},
    {"get", "/t", NULL},
    {"get", "/t", "k", "extra", NULL},
    {"get", "a/b", "k", NULL},
    {"get", "/t", "", NULL},
    {"get", "/t", "k123456789k123456789k123456789k123456789k123456789k123456789abcd", NULL},
    {"get", "/t", "k", "--json", NULL},
    {"put", "/t", "k", NULL},
    {"put", "/t", "k", "v", "w", NULL},
    {"put", "--bogus", "/t", "k", "v", NULL},
    {"put", "/t", "", "v", NULL},
    {"del", "/t", NULL},
    {"del", "/t", "k", "v", NULL},
    {"dump", NULL},
    {"dump", "/t", "k", NULL},
    {"dump", "/t", "--bogus", NULL},
    {"watch", "/t", NULL},
    {"watch", "/t", "k", "-n", "0", NULL},
    {"watch", "/t", "k", "--interval", "0", NULL},
    {"watch", "/t", "k", "--interval", NULL},
};

Test(cli, bad_arguments_exit_2)
{
    setup(0);
    for (size_t i = 0; i < sizeof bad_usages / sizeof bad_usages[0]; i++) {
        const char *const *a = bad_usages[i];
        char *argv[8] = {(char *)"shmring"};
        int n = 1;
        for (; a[n - 1] != NULL; n++)
            argv[n] = (char *)a[n - 1];
        argv[n] = NULL;
        struct proc p;
        start(&p, tool_path, argv, NULL, 0);
        finish(&p, 1);
        assert_status(&p, 2, a[0] ? a[0] : "(no command)");
        cr_assert_gt(p.e.len, 0u, "usage error %zu says nothing", i);
        cr_assert_eq(p.o.len, 0u, "usage error %zu printed on stdout", i);
        proc_free(&p);
    }
    cr_assert_eq(dir_count(), 0u, "a rejected command line changed the shm directory");
    remove_dir();
}

Test(cli, nonexistent_name_exit_1)
{
    setup(0);
    const char *const cmds[][2] = {{"stat", NULL}, {"recv", NULL}, {"rm", NULL}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        struct proc p;
        RUN(&p, cmds[i][0], "/nope");
        assert_status(&p, 1, cmds[i][0]);
        assert_contains(p.e.data, "/nope");
        assert_contains(p.e.data, strerror(ENOENT));
        proc_free(&p);
    }
    remove_dir();
}

/* ---- create, rm, ls, stat ------------------------------------------------ */

Test(cli, create_stays_and_rm_removes)
{
    setup(1);
    struct proc p;
    RUN(&p, "create", "/c", "--slots", "16", "--slot-size", "100");
    assert_status(&p, 0, "create");
    proc_free(&p);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open("/c", SHMRING_CONSUMER, &c), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.slots, 16u);
    cr_assert_eq(st.slot_size, 100u);
    cr_assert_eq(st.producer_pid, 0, "create left a producer lease");
    cr_assert_eq(st.producer_closed, 0, "create signalled end of stream");
    cr_assert_neq(st.creator_pid, (int32_t)getpid());
    char buf[128];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN);
    shmring_close(c);

    RUN(&p, "create", "c");
    assert_status(&p, 1, "create again");
    assert_contains(p.e.data, strerror(EEXIST));
    proc_free(&p);
    RUN(&p, "rm", "/c");
    assert_status(&p, 0, "rm");
    proc_free(&p);
    cr_assert_eq(shmring_open("/c", SHMRING_CONSUMER, &c), -ENOENT);
    cr_assert_eq(dir_count(), 0u);
    remove_dir();
}

Test(cli, create_overwrite_and_mode)
{
    setup(1);
    struct proc p;
    RUN(&p, "create", "/o", "--overwrite", "--mode", "0640", "--slots", "4K");
    assert_status(&p, 0, "create");
    proc_free(&p);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/o", shm_dir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0640u);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open("/o", SHMRING_OBSERVER, &c), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert(st.flags & SHMRING_OVERWRITE);
    cr_assert_eq(st.slots, 4096u);
    cr_assert_eq(st.slot_size, 256u);
    shmring_close(c);
    cr_assert_eq(shmring_unlink("/o"), 0);
    remove_dir();
}

/* A ring left behind by a child that died holding the producer role and a consumer entry. */
static void make_dead_ring(const char *name)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *r = NULL, *c = NULL;
        if (shmring_create(name, NULL, &r) != 0 || shmring_open(name, SHMRING_CONSUMER, &c) != 0)
            _exit(1);
        for (int i = 0; i < 3; i++)
            if (shmring_push(r, &i, sizeof i) != 0)
                _exit(1);
        _exit(0); /* no close: the entries stay ACTIVE, their locks go */
    }
    cr_assert_eq(test_wait_child(pid), 0);
}

/* A file with shmring's magic and another layout version. */
static void make_future_segment(const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", shm_dir, file);
    struct shmring__hdr h;
    memset(&h, 0, sizeof h);
    h.magic = SHMRING__MAGIC;
    h.layout = SHMRING__LAYOUT + 7;
    h.header_size = SHMRING__HEADER_SIZE;
    h.total_size = 2 * SHMRING__HEADER_SIZE;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, &h, sizeof h), (ssize_t)sizeof h);
    cr_assert_eq(ftruncate(fd, 2 * SHMRING__HEADER_SIZE), 0);
    close(fd);
}

static void make_junk(const char *file, size_t size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", shm_dir, file);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

Test(cli, ls_shows_parties_and_fill)
{
    setup(1);
    shmring_t *p = NULL, *c1 = NULL, *c2 = NULL;
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 64, .slot_size = 32);
    cr_assert_eq(shmring_create("/live", &cfg, &p), 0);
    cr_assert_eq(shmring_open("/live", SHMRING_CONSUMER, &c1), 0);
    cr_assert_eq(shmring_open("/live", SHMRING_CONSUMER, &c2), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(shmring_push(p, &i, sizeof i), 0);
    make_dead_ring("/dead");
    make_future_segment("future");
    make_junk("junk", 8192);
    make_junk("tiny", 10);

    struct proc r;
    RUN(&r, "ls");
    assert_status(&r, 0, "ls");
    cr_assert_eq(strncmp(r.o.data, "NAME ", 5), 0, "%s", r.o.data);
    char want[64];
    snprintf(want, sizeof want, " %d (alive) ", (int)getpid());
    char *line = ls_line(r.o.data, "/live");
    cr_assert_not_null(line, "%s", r.o.data);
    assert_contains(line, " ring ");
    assert_contains(line, want); /* creator and producer */
    assert_contains(line, " 2 ");
    assert_contains(line, " 5/64");
    line = ls_line(r.o.data, "/dead");
    cr_assert_not_null(line, "%s", r.o.data);
    cr_assert_not_null(strstr(line, "(dead)"), "%s", line);
    cr_assert_not_null(strstr(strstr(line, "(dead)") + 1, "(dead)"), "%s", line);
    assert_contains(line, " 0 "); /* its consumer died */
    assert_contains(line, " 3/1024");
    line = ls_line(r.o.data, "/future");
    cr_assert_not_null(line, "%s", r.o.data);
    assert_contains(line, "unknown-version");
    cr_assert_null(ls_line(r.o.data, "/junk"));
    cr_assert_null(ls_line(r.o.data, "/tiny"));
    proc_free(&r);

    RUN(&r, "ls", "--json");
    assert_status(&r, 0, "ls --json");
    cr_assert_eq(r.o.data[0], '[');
    assert_contains(r.o.data, "\"name\": \"/live\", \"type\": \"ring\"");
    assert_contains(r.o.data, "\"consumers\": 2, \"observers\": 0");
    assert_contains(r.o.data, "\"fill\": 5, \"capacity\": 64, \"item_size\": 32");
    assert_contains(r.o.data, "\"type\": \"unknown-version\"");
    cr_assert_null(strstr(r.o.data, "junk"));
    proc_free(&r);

    shmring_close(c1);
    shmring_close(c2);
    shmring_close(p);
    remove_dir();
}

Test(cli, stat_prints_counters)
{
    setup(1);
    shmring_t *p = NULL, *c = NULL;
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64);
    cr_assert_eq(shmring_create("/s", &cfg, &p), 0);
    cr_assert_eq(shmring_open("/s", SHMRING_CONSUMER, &c), 0);
    char msg[10] = "0123456789", buf[64];
    for (int i = 0; i < 7; i++)
        cr_assert_eq(shmring_push(p, msg, sizeof msg), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), 10);
    struct proc r;
    RUN(&r, "stat", "s");
    assert_status(&r, 0, "stat");
    char want[64];
    assert_contains(r.o.data, "name:            /s\n");
    assert_contains(r.o.data, "slots:           16 x 64 bytes\n");
    assert_contains(r.o.data, "count:           4\n");
    assert_contains(r.o.data, "pushed:          7 messages, 70 bytes\n");
    assert_contains(r.o.data, "popped:          3 messages, 30 bytes\n");
    snprintf(want, sizeof want, "producer:        pid %d (alive)\n", (int)getpid());
    assert_contains(r.o.data, want);
    assert_contains(r.o.data, "consumers:       1\n");
    assert_contains(r.o.data, "observers:       1 (this one included)\n");
    proc_free(&r);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/s"), 0);
    remove_dir();
}

Test(cli, stat_prints_the_wake_path)
{
    setup(1);
    shmring_t *m = NULL, *x = NULL;
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64);
    cr_assert_eq(shmring_create("/wm", &cfg, &m), 0);
    cfg.flags = SHMRING_NO_MEMBARRIER;
    cr_assert_eq(shmring_create("/wx", &cfg, &x), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(m, &st), 0);
    struct proc r;
    RUN(&r, "stat", "wm");
    assert_status(&r, 0, "stat");
    /* The library's own choice (membarrier where this kernel has it). */
    assert_contains(r.o.data, st.wake == SHMRING_WAKE_MEMBARRIER ? "wake-ups:        membarrier"
                                                                 : "wake-ups:        exchange");
    proc_free(&r);
    RUN(&r, "stat", "wx");
    assert_status(&r, 0, "stat");
    assert_contains(r.o.data, "wake-ups:        exchange (membarrier not used)\n");
    proc_free(&r);
    shmring_close(x);
    shmring_close(m);
    cr_assert_eq(shmring_unlink("/wm"), 0);
    cr_assert_eq(shmring_unlink("/wx"), 0);
    remove_dir();
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static unsigned count_of(const char *text, const char *needle)
{
    unsigned n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(cli, stat_watch_blocks_rates_and_ctrl_c)
{
    setup(1);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create("/w", NULL, &p), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(shmring_push(p, "abcd", 4), 0);
    struct proc r;
    char *argv[] = {(char *)"shmring", (char *)"stat", (char *)"/w",
                    (char *)"--watch", (char *)"0.1",  NULL};
    start(&r, tool_path, argv, NULL, 0);
    /* Wait until the tool has attached (slow under valgrind), then give it
     * time to print its first frame before the ring changes. */
    shmring_stats_t st = {0};
    for (int i = 0; i < 1000 && st.observers == 0; i++) {
        cr_assert_eq(shmring_stats(p, &st), 0);
        if (st.observers == 0)
            sleep_ms(10);
    }
    cr_assert_eq(st.observers, 1, "stat --watch never attached");
    sleep_ms(250);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(shmring_push(p, "abcd", 4), 0);
    sleep_ms(350);
    cr_assert_eq(kill(r.pid, SIGINT), 0);
    finish(&r, 1);
    assert_status(&r, 0, "stat --watch after SIGINT");
    cr_assert_null(strstr(r.o.data, "\033["), "escape codes on a pipe");
    cr_assert_geq(count_of(r.o.data, "name:            /w\n"), 3u, "%s", r.o.data);
    assert_contains(r.o.data, "pushed:          10 messages, 40 bytes\n");
    assert_contains(r.o.data, "pushed:          15 messages, 60 bytes\n");
    assert_contains(r.o.data, "push rate:       ");
    assert_contains(r.o.data, "pop rate:        0 msgs/s, 0 bytes/s\n");
    proc_free(&r);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/w"), 0);
    remove_dir();
}

/* ---- gc ------------------------------------------------------------------ */

Test(cli, gc_removes_only_dead_segments)
{
    setup(1);
    shmring_t *live = NULL, *att = NULL;
    cr_assert_eq(shmring_create("/live", NULL, &live), 0);
    make_dead_ring("/dead");
    struct proc r;
    RUN(&r, "create", "/made");
    assert_status(&r, 0, "create /made");
    proc_free(&r);
    RUN(&r, "create", "/attached");
    assert_status(&r, 0, "create /attached");
    proc_free(&r);
    cr_assert_eq(shmring_open("/attached", SHMRING_CONSUMER, &att), 0);
    make_future_segment("future");
    make_junk("junk", 8192);

    RUN(&r, "gc", "--dry-run");
    assert_status(&r, 0, "gc --dry-run");
    assert_contains(r.o.data, "would remove /dead ");
    assert_contains(r.o.data, "would remove /made ");
    cr_assert_eq(count_of(r.o.data, "\n"), 2u, "%s", r.o.data);
    proc_free(&r);
    cr_assert_eq(dir_count(), 6u);

    RUN(&r, "gc");
    assert_status(&r, 0, "gc");
    assert_contains(r.o.data, "removed /dead ");
    assert_contains(r.o.data, "removed /made ");
    cr_assert_eq(count_of(r.o.data, "\n"), 2u, "%s", r.o.data);
    proc_free(&r);
    cr_assert(!dir_has("dead") && !dir_has("made"));
    cr_assert(dir_has("live") && dir_has("attached") && dir_has("future") && dir_has("junk"));

    /* The survivors still work. */
    char buf[8];
    cr_assert_eq(shmring_push(live, "x", 1), 0);
    cr_assert_eq(shmring_pop(att, buf, sizeof buf), -EAGAIN);
    shmring_close(att);
    shmring_close(live);
    cr_assert_eq(shmring_unlink("/live"), 0);
    cr_assert_eq(shmring_unlink("/attached"), 0);
    remove_dir();
}

/* ---- send and recv ------------------------------------------------------- */

Test(cli, seq_pipeline_two_shells, .timeout = 120)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "/x");
    assert_status(&r, 0, "create");
    proc_free(&r);
    struct proc ps[2];
    double t0 = h_now_s();
    start_shell(&ps[0], "seq 100000 | TOOL send /x");
    start_shell(&ps[1], "TOOL recv /x -n 100000 | tail -1");
    finish(ps, 2);
    cr_log_info("100000 lines through the ring in %.3f s", h_now_s() - t0);
    assert_status(&ps[0], 0, "send");
    assert_status(&ps[1], 0, "recv");
    cr_assert_str_eq(ps[1].o.data, "100000\n");
    cr_assert_eq(ps[0].e.len, 0u, "%s", ps[0].e.data);
    proc_free(&ps[0]);
    proc_free(&ps[1]);

    shmring_t *o = NULL;
    cr_assert_eq(shmring_open("/x", SHMRING_OBSERVER, &o), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.pushed, 100000u);
    cr_assert_eq(st.popped, 100000u);
    cr_assert_eq(st.producer_closed, 1);
    shmring_close(o);
    cr_assert_eq(shmring_unlink("/x"), 0);
    remove_dir();
}

/* Lines of lengths 0 to 64 (the slot size), each naming its number. */
static char *make_lines(unsigned n, size_t *len)
{
    char *text = malloc((size_t)n * 66 + 1);
    cr_assert_not_null(text);
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i % 13 != 0) {
            size_t start = off, want = 8 + i % 57;
            off += (size_t)snprintf(text + off, 66, "%u:", i);
            for (; off - start < want; off++)
                text[off] = (char)('a' + (i + off) % 26);
        }
        text[off++] = '\n';
    }
    text[off] = '\0';
    *len = off;
    return text;
}

Test(cli, every_line_arrives_in_order_then_end_of_stream, .timeout = 120)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "/l", "--slots", "64", "--slot-size", "64");
    assert_status(&r, 0, "create");
    proc_free(&r);
    size_t len;
    char *text = make_lines(20000, &len);
    struct proc ps[2];
    char *send_argv[] = {(char *)"shmring", (char *)"send", (char *)"/l", NULL};
    char *recv_argv[] = {(char *)"shmring", (char *)"recv", (char *)"/l", NULL};
    start(&ps[1], tool_path, recv_argv, NULL, 0);
    start(&ps[0], tool_path, send_argv, text, len);
    finish(ps, 2);
    assert_status(&ps[0], 0, "send");
    assert_status(&ps[1], 0, "recv (end of stream)");
    cr_assert_eq(ps[1].o.len, len);
    cr_assert(memcmp(ps[1].o.data, text, len) == 0, "recv output differs from send input");
    proc_free(&ps[0]);
    proc_free(&ps[1]);
    free(text);
    cr_assert_eq(shmring_unlink("/l"), 0);
    remove_dir();
}

Test(cli, send_creates_the_ring_and_says_so)
{
    setup(1);
    struct proc r;
    RUN_INPUT(&r, "a\n\nb", 4, "send", "/auto");
    assert_status(&r, 0, "send");
    assert_contains(r.e.data, "created /auto");
    proc_free(&r);
    RUN(&r, "recv", "/auto");
    assert_status(&r, 0, "recv");
    cr_assert_str_eq(r.o.data, "a\n\nb\n");
    proc_free(&r);
    cr_assert_eq(shmring_unlink("/auto"), 0);
    remove_dir();
}

Test(cli, send_rejects_a_line_longer_than_a_slot)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "/s", "--slot-size", "8");
    assert_status(&r, 0, "create");
    proc_free(&r);
    const char *in = "short\n12345678\n123456789\nnever\n";
    RUN_INPUT(&r, in, strlen(in), "send", "/s");
    assert_status(&r, 1, "send");
    assert_contains(r.e.data, "line 3 ");
    proc_free(&r);
    RUN(&r, "recv", "/s");
    assert_status(&r, 0, "recv");
    cr_assert_str_eq(r.o.data, "short\n12345678\n");
    proc_free(&r);
    cr_assert_eq(shmring_unlink("/s"), 0);
    remove_dir();
}

Test(cli, binary_messages_are_checksummed_slots)
{
    setup(1);
    enum { N = 500, SIZE = 64 };
    struct proc r;
    RUN(&r, "create", "/b", "--slot-size", "64");
    assert_status(&r, 0, "create");
    proc_free(&r);
    char *in = malloc((size_t)N * SIZE);
    cr_assert_not_null(in);
    for (unsigned i = 0; i < N; i++)
        test_fill(in + (size_t)i * SIZE, SIZE, i);
    /* 1024 slots hold all 500: the sender is done before the receiver starts. */
    RUN_INPUT(&r, in, (size_t)N * SIZE, "send", "/b", "--binary");
    assert_status(&r, 0, "send --binary");
    proc_free(&r);
    RUN(&r, "recv", "/b", "--binary", "-n", "500");
    assert_status(&r, 0, "recv --binary");
    cr_assert_eq(r.o.len, (size_t)N * SIZE);
    for (unsigned i = 0; i < N; i++) {
        uint64_t id = ~0ull;
        cr_assert(test_check(r.o.data + (size_t)i * SIZE, SIZE, &id), "message %u corrupt", i);
        cr_assert_eq(id, i);
    }
    proc_free(&r);
    free(in);
    cr_assert_eq(shmring_unlink("/b"), 0);
    remove_dir();
}

Test(cli, binary_chunks_of_size_with_a_short_tail)
{
    setup(1);
    size_t len = 48 * 100 + 10;
    char *in = malloc(len);
    cr_assert_not_null(in);
    for (size_t i = 0; i < len; i++)
        in[i] = (char)(i * 131 + 7);
    struct proc r;
    RUN_INPUT(&r, in, len, "send", "/k", "--binary", "--size", "48");
    assert_status(&r, 0, "send");
    proc_free(&r);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_open("/k", SHMRING_CONSUMER, &c), 0);
    char buf[256];
    for (size_t i = 0; i < 101; i++) {
        ssize_t n = shmring_pop(c, buf, sizeof buf);
        cr_assert_eq(n, i < 100 ? 48 : 10, "chunk %zu", i);
        cr_assert(memcmp(buf, in + i * 48, (size_t)n) == 0, "chunk %zu differs", i);
    }
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EPIPE);
    shmring_close(c);
    free(in);
    cr_assert_eq(shmring_unlink("/k"), 0);
    remove_dir();
}

Test(cli, recv_timeout_rules)
{
    setup(1);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create("/t", NULL, &p), 0);
    struct proc r;
    RUN(&r, "recv", "/t", "--timeout", "0.2");
    assert_status(&r, 1, "recv on an empty ring");
    assert_contains(r.e.data, "no message");
    cr_assert_eq(r.o.len, 0u);
    proc_free(&r);

    cr_assert_eq(shmring_push(p, "one", 3), 0);
    cr_assert_eq(shmring_push(p, "two", 3), 0);
    RUN(&r, "recv", "/t", "--timeout", "0.2");
    assert_status(&r, 0, "recv without -n: a quiet period ends the stream");
    cr_assert_str_eq(r.o.data, "one\ntwo\n");
    proc_free(&r);

    cr_assert_eq(shmring_push(p, "three", 5), 0);
    RUN(&r, "recv", "/t", "--timeout", "0.2", "-n", "2");
    assert_status(&r, 1, "recv -n 2 with one message");
    cr_assert_str_eq(r.o.data, "three\n");
    assert_contains(r.e.data, "(1 received)");
    proc_free(&r);

    cr_assert_eq(shmring_push(p, "four", 4), 0);
    cr_assert_eq(shmring_push(p, "five", 4), 0);
    RUN(&r, "recv", "/t", "-n", "1");
    assert_status(&r, 0, "recv -n 1");
    cr_assert_str_eq(r.o.data, "four\n");
    proc_free(&r);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/t"), 0);
    remove_dir();
}

Test(cli, send_timeout_when_nobody_reads)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "/f", "--slots", "2", "--slot-size", "8");
    assert_status(&r, 0, "create");
    proc_free(&r);
    RUN_INPUT(&r, "a\nb\nc\n", 6, "send", "/f", "--timeout", "0.2");
    assert_status(&r, 1, "send into a full ring");
    assert_contains(r.e.data, "full");
    proc_free(&r);
    RUN(&r, "recv", "/f");
    assert_status(&r, 0, "recv");
    cr_assert_str_eq(r.o.data, "a\nb\n");
    proc_free(&r);
    cr_assert_eq(shmring_unlink("/f"), 0);
    remove_dir();
}

/* ---- State tables -------------------------------------------------------- */

/* A state table left behind by a child that died attached to it. */
static void make_dead_state(const char *name)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_state_t *s = NULL;
        if (shmring_state_create(name, NULL, &s) != 0 || shmring_state_write(s, "k", "v", 1) != 0)
            _exit(1);
        _exit(0); /* no close: its user entry stays ACTIVE, its lock goes */
    }
    cr_assert_eq(test_wait_child(pid), 0);
}

Test(cli, state_create_ls_stat_gc_rm)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "--table", "/st", "--entries", "16", "--value-size", "32");
    assert_status(&r, 0, "create --table");
    proc_free(&r);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_open("/st", 0, &s), 0);
    cr_assert_eq(shmring_state_entries(s), 16u);
    cr_assert_eq(shmring_state_value_size(s), 32u);
    cr_assert_eq(shmring_state_write(s, "a", "1", 1), 0);
    cr_assert_eq(shmring_state_write(s, "b", "22", 2), 0);
    cr_assert_eq(shmring_state_write(s, "c", "333", 3), 0);
    cr_assert_eq(shmring_state_delete(s, "b"), 0);
    make_dead_state("/gone");

    RUN(&r, "ls");
    assert_status(&r, 0, "ls");
    /* Only tables: their own columns, no ring columns. */
    cr_assert_eq(strncmp(r.o.data, "NAME ", 5), 0, "%s", r.o.data);
    assert_contains(r.o.data, " ENTRIES  USED  VALUE-SIZE  USERS\n");
    cr_assert_null(strstr(r.o.data, "PRODUCER"), "%s", r.o.data);
    cr_assert_null(strstr(r.o.data, "FILL"), "%s", r.o.data);
    char *line = ls_line(r.o.data, "/st");
    cr_assert_not_null(line, "%s", r.o.data);
    assert_contains(line, " state ");
    cr_assert(strstr(line, "  16       2     32          1") != NULL, "%s", line);
    line = ls_line(r.o.data, "/gone");
    cr_assert_not_null(line, "%s", r.o.data);
    cr_assert(strstr(line, "  1024     1     256         0") != NULL, "%s", line);
    proc_free(&r);
    RUN(&r, "ls", "--json");
    assert_status(&r, 0, "ls --json");
    assert_contains(r.o.data, "\"name\": \"/st\", \"type\": \"state\"");
    assert_contains(r.o.data, "\"entries\": 16, \"used\": 2, \"value_size\": 32, \"users\": 1}");
    cr_assert_null(strstr(r.o.data, "\"producer\""), "%s", r.o.data);
    proc_free(&r);

    /* With a ring beside them, both tables, rings first. */
    shmring_t *ring = NULL;
    cr_assert_eq(shmring_create("/ring", NULL, &ring), 0);
    RUN(&r, "ls");
    assert_status(&r, 0, "ls with a ring");
    const char *tables = strstr(r.o.data, "\n\nNAME ");
    cr_assert_not_null(tables, "%s", r.o.data);
    cr_assert_not_null(ls_line(r.o.data, "/ring"));
    cr_assert(strstr(r.o.data, "/ring ") < tables, "%s", r.o.data);
    cr_assert(strstr(r.o.data, "/st ") > tables, "%s", r.o.data);
    assert_contains(r.o.data, " PRODUCER ");
    assert_contains(r.o.data, " FILL\n");
    proc_free(&r);
    shmring_close(ring);
    cr_assert_eq(shmring_unlink("/ring"), 0);

    RUN(&r, "stat", "/st");
    assert_status(&r, 0, "stat");
    assert_contains(r.o.data, "type:            state\n");
    assert_contains(r.o.data, "entries:         16 x 32 bytes\n");
    assert_contains(r.o.data, "used:            2\n");
    /* A deleted key leaves a tombstone unless the entry after it is empty. */
    shmring_state_stats_t sst;
    cr_assert_eq(shmring_state_stats(s, &sst), 0);
    char tomb_line[64];
    snprintf(tomb_line, sizeof tomb_line, "tombstones:      %u\n", sst.tombstones);
    assert_contains(r.o.data, tomb_line);
    assert_contains(r.o.data, "writes:          4\n");
    assert_contains(r.o.data, "users:           2 (this one included)\n");
    proc_free(&r);

    RUN(&r, "gc");
    assert_status(&r, 0, "gc");
    cr_assert_eq(strncmp(r.o.data, "removed /gone (state, creator ", 30), 0, "%s", r.o.data);
    cr_assert_eq(count_of(r.o.data, "\n"), 1u, "%s", r.o.data);
    proc_free(&r);
    cr_assert(dir_has("st") && !dir_has("gone"));

    char buf[32];
    cr_assert_eq(shmring_state_read(s, "c", buf, sizeof buf), 3);
    shmring_state_close(s);
    RUN(&r, "rm", "st");
    assert_status(&r, 0, "rm");
    proc_free(&r);
    cr_assert_eq(shmring_state_open("/st", 0, &s), -ENOENT);
    remove_dir();
}

/* ---- State tables from the shell: get, put, del, dump ------------------- */

/* Pump one running process until its stdout holds needle; fails after the deadline. */
static void wait_output(struct proc *p, const char *needle)
{
    double deadline = h_now_s() + DEADLINE_S;
    while (p->o.data == NULL || strstr(p->o.data, needle) == NULL) {
        if (h_now_s() > deadline || !proc_open(p)) {
            kill_all(p, 1);
            cr_assert_fail("'%s' never printed; stdout: %s; stderr: %s", needle,
                           p->o.data ? p->o.data : "", p->e.data ? p->e.data : "");
        }
        pump(p, 1);
    }
}

/* 1 while the process has not exited (it is not reaped here). */
static int still_running(const struct proc *p)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    return waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
}

Test(cli, table_put_get_del)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "--table", "/t", "--entries", "2", "--value-size", "8");
    assert_status(&r, 0, "create --table");
    cr_assert_eq(r.e.len, 0u, "%s", r.e.data);
    proc_free(&r);

    RUN(&r, "put", "/t", "a", "hello");
    assert_status(&r, 0, "put");
    proc_free(&r);
    RUN(&r, "get", "t", "a");
    assert_status(&r, 0, "get");
    cr_assert_eq(r.o.len, 5u); /* raw bytes, no newline */
    cr_assert_str_eq(r.o.data, "hello");
    proc_free(&r);

    /* From stdin with '-': every byte, NUL, 0xff and the newline included. */
    const char bin[] = {'x', '\0', '\xff', '\n'};
    RUN_INPUT(&r, bin, sizeof bin, "put", "/t", "a", "-");
    assert_status(&r, 0, "put -");
    proc_free(&r);
    RUN(&r, "get", "/t", "a");
    assert_status(&r, 0, "get binary");
    cr_assert_eq(r.o.len, sizeof bin);
    cr_assert(memcmp(r.o.data, bin, sizeof bin) == 0);
    proc_free(&r);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_open("/t", 0, &s), 0);
    char buf[8];
    cr_assert_eq(shmring_state_read(s, "a", buf, sizeof buf), (ssize_t)sizeof bin);
    cr_assert(memcmp(buf, bin, sizeof bin) == 0);

    /* A value that starts with '-', and an empty value. */
    RUN(&r, "put", "/t", "b", "-5");
    assert_status(&r, 0, "put -5");
    proc_free(&r);
    cr_assert_eq(shmring_state_read(s, "b", buf, sizeof buf), 2);
    cr_assert(memcmp(buf, "-5", 2) == 0);
    RUN(&r, "put", "/t", "b", "");
    assert_status(&r, 0, "put empty");
    proc_free(&r);
    RUN(&r, "get", "/t", "b");
    assert_status(&r, 0, "get empty");
    cr_assert_eq(r.o.len, 0u);
    proc_free(&r);

    /* Missing key: status 1, nothing on stdout. */
    RUN(&r, "get", "/t", "nope");
    assert_status(&r, 1, "get of a missing key");
    cr_assert_eq(r.o.len, 0u);
    assert_contains(r.e.data, "no key 'nope'");
    proc_free(&r);

    /* Too long a value, from the command line and from stdin; a full table. */
    RUN(&r, "put", "/t", "a", "123456789");
    assert_status(&r, 1, "put of 9 bytes into 8");
    assert_contains(r.e.data, "longer than the table's value size (8)");
    proc_free(&r);
    RUN_INPUT(&r, "123456789", 9, "put", "/t", "a", "-");
    assert_status(&r, 1, "put - of 9 bytes into 8");
    assert_contains(r.e.data, "value size (8 bytes)");
    proc_free(&r);
    cr_assert_eq(shmring_state_read(s, "a", buf, sizeof buf), (ssize_t)sizeof bin, "changed");
    RUN(&r, "put", "/t", "c", "3");
    assert_status(&r, 1, "put of a third key into 2 entries");
    assert_contains(r.e.data, "table full");
    proc_free(&r);

    RUN(&r, "del", "/t", "a");
    assert_status(&r, 0, "del");
    proc_free(&r);
    cr_assert_eq(shmring_state_read(s, "a", buf, sizeof buf), -ENOENT);
    RUN(&r, "del", "/t", "a");
    assert_status(&r, 1, "del of a missing key");
    assert_contains(r.e.data, "no key 'a'");
    proc_free(&r);
    shmring_state_close(s);
    cr_assert_eq(shmring_state_unlink("/t"), 0);
    remove_dir();
}

Test(cli, table_commands_on_a_missing_table_or_a_ring)
{
    setup(1);
    const char *const cmds[][5] = {
        {"get", "/x", "k", NULL}, {"put", "/x", "k", "v", NULL}, {"del", "/x", "k", NULL},
        {"dump", "/x", NULL},     {"watch", "/x", "k", NULL},
    };
    shmring_t *ring = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            char *argv[6] = {(char *)"shmring"};
            for (int j = 0; cmds[i][j] != NULL; j++)
                argv[j + 1] = (char *)cmds[i][j];
            struct proc p;
            start(&p, tool_path, argv, NULL, 0);
            finish(&p, 1);
            assert_status(&p, 1, cmds[i][0]);
            cr_assert_eq(p.o.len, 0u);
            assert_contains(p.e.data, "/x");
            assert_contains(p.e.data, pass == 0 ? strerror(ENOENT) : "a ring, not a state table");
            proc_free(&p);
        }
        if (pass == 0)
            cr_assert_eq(shmring_create("/x", NULL, &ring), 0);
    }
    cr_assert_eq(shmring_push(ring, "m", 1), 0);
    /* And the ring commands on a table. */
    struct proc p;
    RUN(&p, "create", "--table", "/tab");
    assert_status(&p, 0, "create --table");
    proc_free(&p);
    RUN(&p, "recv", "/tab");
    assert_status(&p, 1, "recv on a table");
    assert_contains(p.e.data, "a state table, not a ring");
    proc_free(&p);
    RUN_INPUT(&p, "a\n", 2, "send", "/tab");
    assert_status(&p, 1, "send on a table");
    assert_contains(p.e.data, "a state table, not a ring");
    proc_free(&p);
    shmring_close(ring);
    cr_assert_eq(shmring_unlink("/x"), 0);
    cr_assert_eq(shmring_state_unlink("/tab"), 0);
    remove_dir();
}

Test(cli, dump_escapes_and_json)
{
    setup(1);
    shmring_state_t *s = NULL;
    shmring_state_config_t cfg = SHMRING_STATE_CONFIG_INIT(.entries = 16, .value_size = 32);
    cr_assert_eq(shmring_state_create("/d", &cfg, &s), 0);
    struct proc r;
    RUN(&r, "dump", "/d");
    assert_status(&r, 0, "dump of an empty table");
    cr_assert_eq(r.o.len, 0u);
    proc_free(&r);
    RUN(&r, "dump", "/d", "--json");
    assert_status(&r, 0, "dump --json of an empty table");
    cr_assert_str_eq(r.o.data, "[]\n");
    proc_free(&r);

    cr_assert_eq(shmring_state_write(s, "temp", "21.5", 4), 0);
    cr_assert_eq(shmring_state_write(s, "a=b", "x\ny\t\\\"", 6), 0);
    cr_assert_eq(shmring_state_write(s, "bin", "\0\x01\xff", 3), 0);
    cr_assert_eq(shmring_state_write(s, "empty", "", 0), 0);
    cr_assert_eq(shmring_state_write(s, "caf\xc3\xa9", "\xc3\xa9t\xc3\xa9", 5), 0);
    cr_assert_eq(shmring_state_write(s, "gone", "1", 1), 0);
    cr_assert_eq(shmring_state_delete(s, "gone"), 0);

    RUN(&r, "dump", "/d");
    assert_status(&r, 0, "dump");
    cr_assert_str_eq(r.o.data, "a\\x3db=x\\ny\\t\\\\\"\n"
                               "bin=\\x00\\x01\\xff\n"
                               "caf\\xc3\\xa9=\\xc3\\xa9t\\xc3\\xa9\n"
                               "empty=\n"
                               "temp=21.5\n");
    proc_free(&r);
    RUN(&r, "dump", "/d", "--json");
    assert_status(&r, 0, "dump --json");
    cr_assert_str_eq(r.o.data, "[\n"
                               "  {\"key\": \"a=b\", \"value\": \"x\\ny\\t\\\\\\\"\"},\n"
                               "  {\"key\": \"bin\", \"value_hex\": \"0001ff\"},\n"
                               "  {\"key\": \"caf\xc3\xa9\", \"value\": \"\xc3\xa9t\xc3\xa9\"},\n"
                               "  {\"key\": \"empty\", \"value\": \"\"},\n"
                               "  {\"key\": \"temp\", \"value\": \"21.5\"}\n"
                               "]\n");
    proc_free(&r);
    shmring_state_close(s);
    cr_assert_eq(shmring_state_unlink("/d"), 0);
    remove_dir();
}

/* ---- watch ----------------------------------------------------------------- */

Test(cli, watch_prints_each_new_value)
{
    setup(1);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create("/w", NULL, &s), 0);
    struct proc r;
    char *argv[] = {(char *)"shmring",    (char *)"watch", (char *)"/w",
                    (char *)"k",          (char *)"-n",    (char *)"4",
                    (char *)"--interval", (char *)"0.01",  NULL};
    start(&r, tool_path, argv, NULL, 0);
    /* Absent at first: nothing is printed until it is written. */
    cr_assert_eq(shmring_state_write(s, "k", "one", 3), 0);
    wait_output(&r, "one\n");
    cr_assert_eq(shmring_state_write(s, "k", "two", 3), 0);
    wait_output(&r, "two\n");
    cr_assert_eq(shmring_state_write(s, "k", "a\nb", 3), 0);
    wait_output(&r, "a\\nb\n");
    cr_assert_eq(shmring_state_write(s, "k", "three", 5), 0);
    finish(&r, 1);
    assert_status(&r, 0, "watch -n 4");
    cr_assert_str_eq(r.o.data, "one\ntwo\na\\nb\nthree\n");
    proc_free(&r);

    /* SIGINT and SIGTERM end it with status 0. */
    char *argv2[] = {(char *)"shmring", (char *)"watch", (char *)"/w", (char *)"k", NULL};
    const int sigs[] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        start(&r, tool_path, argv2, NULL, 0);
        wait_output(&r, "three\n");
        cr_assert_eq(kill(r.pid, sigs[i]), 0);
        finish(&r, 1);
        assert_status(&r, 0, strsignal(sigs[i]));
        cr_assert_str_eq(r.o.data, "three\n");
        proc_free(&r);
    }

    /* Removing the table ends it with status 0. */
    start(&r, tool_path, argv2, NULL, 0);
    wait_output(&r, "three\n");
    cr_assert_eq(shmring_state_unlink("/w"), 0);
    finish(&r, 1);
    assert_status(&r, 0, "watch of a removed table");
    assert_contains(r.e.data, "removed");
    proc_free(&r);
    shmring_state_close(s);
    remove_dir();
}

/* ---- send --framed, recv --framed ----------------------------------------- */

static void put_frame(char *out, size_t *off, const void *msg, uint32_t len)
{
    unsigned char h[4] = {(unsigned char)len, (unsigned char)(len >> 8), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 24)};
    memcpy(out + *off, h, 4);
    memcpy(out + *off + 4, msg, len);
    *off += 4 + len;
}

/* Frames: empty ones, binary ones with NUL and newline bytes, slot-sized ones. */
static char *make_frames(unsigned n, size_t *len)
{
    char *out = malloc((size_t)n * (4 + 64));
    cr_assert_not_null(out);
    char msg[64];
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        uint32_t l = i % 5 == 0 ? 0 : (i % 7 == 0 ? 64 : (uint32_t)(16 + i % 48));
        if (l >= 16)
            test_fill(msg, l, i);
        for (uint32_t j = 16; j < l; j++)
            msg[j] = (char)(j % 3 == 0 ? '\0' : (j % 3 == 1 ? '\n' : (char)(i + j)));
        put_frame(out, &off, msg, l);
    }
    *len = off;
    return out;
}

Test(cli, framed_round_trip_through_two_rings, .timeout = 120)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "/A", "--slot-size", "64", "--slots", "16");
    assert_status(&r, 0, "create /A");
    proc_free(&r);
    RUN(&r, "create", "/B", "--slot-size", "64", "--slots", "16");
    assert_status(&r, 0, "create /B");
    proc_free(&r);
    size_t len;
    char *in = make_frames(3000, &len);
    /* Rings of 16 slots: the three stages run at once, each waiting for the next. */
    struct proc ps[3];
    char *send_argv[] = {(char *)"shmring", (char *)"send", (char *)"/A", (char *)"--framed", NULL};
    char *recv_argv[] = {(char *)"shmring", (char *)"recv", (char *)"/B", (char *)"--framed", NULL};
    start_shell(&ps[0], "TOOL recv --framed /A | TOOL send --framed /B");
    start(&ps[1], tool_path, recv_argv, NULL, 0);
    start(&ps[2], tool_path, send_argv, in, len);
    finish(ps, 3);
    assert_status(&ps[2], 0, "send --framed /A");
    assert_status(&ps[0], 0, "recv --framed /A | send --framed /B");
    assert_status(&ps[1], 0, "recv --framed /B");
    cr_assert_eq(ps[1].o.len, len);
    cr_assert(memcmp(ps[1].o.data, in, len) == 0, "frames changed on the way");
    for (int i = 0; i < 3; i++)
        proc_free(&ps[i]);

    /* Every message kept its length: 0 for the empty ones. */
    shmring_t *o = NULL;
    cr_assert_eq(shmring_open("/B", SHMRING_OBSERVER, &o), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.pushed, 3000u);
    shmring_close(o);
    free(in);
    cr_assert_eq(shmring_unlink("/A"), 0);
    cr_assert_eq(shmring_unlink("/B"), 0);
    remove_dir();
}

Test(cli, framed_input_errors)
{
    setup(1);
    struct proc r;
    RUN(&r, "create", "/f", "--slot-size", "8");
    assert_status(&r, 0, "create");
    proc_free(&r);
    char in[64];
    size_t off = 0;
    put_frame(in, &off, "ok", 2);
    put_frame(in, &off, "", 0);
    size_t good = off;

    /* A length cut short. */
    memcpy(in + off, "\x05\x00", 2);
    RUN_INPUT(&r, in, off + 2, "send", "/f", "--framed");
    assert_status(&r, 1, "send of a truncated length");
    assert_contains(r.e.data, "truncated frame 3: input ends after 2 of the 4 bytes of its length");
    proc_free(&r);

    /* A body cut short. */
    memcpy(in + off,
           "\x05\x00\x00\x00"
           "ab",
           6);
    RUN_INPUT(&r, in, off + 6, "send", "/f", "--framed");
    assert_status(&r, 1, "send of a truncated body");
    assert_contains(r.e.data, "truncated frame 3: input ends after 2 of its 5 bytes");
    proc_free(&r);

    /* A frame larger than a slot. */
    memcpy(in + off,
           "\x09\x00\x00\x00"
           "123456789",
           13);
    RUN_INPUT(&r, in, off + 13, "send", "/f", "--framed");
    assert_status(&r, 1, "send of a frame larger than a slot");
    assert_contains(r.e.data, "frame 3 is 9 bytes, longer than the largest message (8)");
    proc_free(&r);

    /* The whole frames before each error went through, with their lengths. */
    RUN(&r, "recv", "/f", "--framed");
    assert_status(&r, 0, "recv --framed");
    cr_assert_eq(r.o.len, 3 * good);
    for (int i = 0; i < 3; i++)
        cr_assert(memcmp(r.o.data + (size_t)i * good, in, good) == 0, "copy %d", i);
    proc_free(&r);
    cr_assert_eq(shmring_unlink("/f"), 0);
    remove_dir();
}

/* ---- recv --wait, recv --follow ------------------------------------------- */

/* 1 when process pid holds an inotify descriptor (recv --wait is watching). */
static int has_inotify(pid_t pid)
{
    char dir[64], path[PATH_MAX], link[256];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = '\0';
            found = strcmp(link, "anon_inode:inotify") == 0;
        }
    }
    closedir(d);
    return found;
}

static void wait_inotify(struct proc *p)
{
    double deadline = h_now_s() + DEADLINE_S;
    while (!has_inotify(p->pid)) {
        if (h_now_s() > deadline || !still_running(p)) {
            kill_all(p, 1);
            cr_assert_fail("recv --wait never watched the directory");
        }
        sleep_ms(5);
    }
}

Test(cli, recv_wait_for_the_ring_to_appear)
{
    setup(1);
    struct proc r;
    char *argv[] = {(char *)"shmring",
                    (char *)"recv",
                    (char *)"/late",
                    (char *)"--wait",
                    (char *)"-n",
                    (char *)"2",
                    NULL};
    start(&r, tool_path, argv, NULL, 0);
    wait_inotify(&r); /* it is waiting, and the ring does not exist yet */
    cr_assert(!dir_has("late"));
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create("/late", NULL, &p), 0);
    cr_assert_eq(shmring_push(p, "first", 5), 0);
    cr_assert_eq(shmring_push(p, "second", 6), 0);
    finish(&r, 1);
    assert_status(&r, 0, "recv --wait");
    cr_assert_str_eq(r.o.data, "first\nsecond\n");
    proc_free(&r);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/late"), 0);

    /* Created through a rename into the directory (an editor's way). */
    char *argv2[] = {(char *)"shmring",
                     (char *)"recv",
                     (char *)"/moved",
                     (char *)"--wait",
                     (char *)"-n",
                     (char *)"1",
                     NULL};
    start(&r, tool_path, argv2, NULL, 0);
    wait_inotify(&r);
    cr_assert_eq(shmring_create("/staging", NULL, &p), 0);
    cr_assert_eq(shmring_push(p, "m", 1), 0);
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof from, "%s/staging", shm_dir);
    snprintf(to, sizeof to, "%s/moved", shm_dir);
    cr_assert_eq(rename(from, to), 0);
    finish(&r, 1);
    assert_status(&r, 0, "recv --wait for a renamed ring");
    cr_assert_str_eq(r.o.data, "m\n");
    proc_free(&r);
    shmring_close(p);
    cr_assert_eq(shmring_unlink("/moved"), 0);

    /* Without --wait: "No such file"; with a --wait-timeout: its own message. */
    RUN(&r, "recv", "/never");
    assert_status(&r, 1, "recv without --wait");
    assert_contains(r.e.data, strerror(ENOENT));
    proc_free(&r);
    RUN(&r, "recv", "/never", "--wait", "--wait-timeout", "0.1");
    assert_status(&r, 1, "recv --wait --wait-timeout");
    assert_contains(r.e.data, "/never: did not appear within the --wait-timeout");
    proc_free(&r);

    /* A table under that name is not waited for: wrong type. */
    start(&r, tool_path, argv, NULL, 0);
    wait_inotify(&r);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create("/late", NULL, &s), 0);
    finish(&r, 1);
    assert_status(&r, 1, "recv --wait for a name that became a table");
    assert_contains(r.e.data, "a state table, not a ring");
    proc_free(&r);
    shmring_state_close(s);
    cr_assert_eq(shmring_state_unlink("/late"), 0);
    remove_dir();
}

/* A producer that pushes msg and dies without closing. */
static void producer_dies_after(const char *name, const char *msg)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *p = NULL;
        if (shmring_open(name, SHMRING_PRODUCER, &p) != 0 || shmring_push(p, msg, strlen(msg)))
            _exit(1);
        _exit(0); /* no close: no end of stream, the lease holder just dies */
    }
    cr_assert_eq(test_wait_child(pid), 0);
}

Test(cli, recv_follow_across_producers, .timeout = 120)
{
    setup(1);
    struct proc r, s;
    RUN(&r, "create", "/F");
    assert_status(&r, 0, "create");
    proc_free(&r);
    char *argv[] = {(char *)"shmring", (char *)"recv", (char *)"/F", (char *)"--follow",
                    (char *)"-n",      (char *)"6",    NULL};
    start(&r, tool_path, argv, NULL, 0);

    /* First producer: sends and closes (end of stream). */
    RUN_INPUT(&s, "1\n2\n", 4, "send", "/F");
    assert_status(&s, 0, "first send");
    proc_free(&s);
    wait_output(&r, "1\n2\n");
    shmring_t *o = NULL;
    cr_assert_eq(shmring_open("/F", SHMRING_OBSERVER, &o), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(o, &st), 0);
    cr_assert_eq(st.producer_closed, 1);
    sleep_ms(100);
    cr_assert(still_running(&r), "recv --follow ended at end of stream");

    /* Second producer: dies without closing. */
    producer_dies_after("/F", "3");
    wait_output(&r, "3\n");

    /* Third producer takes the dead one's lease. */
    RUN_INPUT(&s, "4\n", 2, "send", "/F");
    assert_status(&s, 0, "third send");
    proc_free(&s);
    wait_output(&r, "4\n");
    shmring_close(o);

    /* The ring removed and made again by the next producer: followed too. */
    cr_assert_eq(shmring_unlink("/F"), 0);
    RUN_INPUT(&s, "5\n6\n", 4, "send", "/F");
    assert_status(&s, 0, "send to a new /F");
    proc_free(&s);
    finish(&r, 1);
    assert_status(&r, 0, "recv --follow -n 6");
    cr_assert_str_eq(r.o.data, "1\n2\n3\n4\n5\n6\n");
    proc_free(&r);

    /* Without --follow, end of stream ends it. */
    RUN(&r, "recv", "/F");
    assert_status(&r, 0, "recv at end of stream");
    cr_assert_eq(r.o.len, 0u);
    proc_free(&r);
    /* With --follow, --timeout still bounds the wait for a message. */
    RUN(&r, "recv", "/F", "--follow", "--timeout", "0.1");
    assert_status(&r, 1, "recv --follow --timeout with nothing");
    assert_contains(r.e.data, "no message");
    proc_free(&r);
    cr_assert_eq(shmring_unlink("/F"), 0);
    remove_dir();
}

/* ---- Fallback backends ------------------------------------------------------ */

Test(cli, named_segments_refuse_fallback_backends)
{
    setup(1);
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/missing", shm_dir);
    cr_assert_eq(setenv("SHMRING_SHM_DIR", missing, 1), 0);
    struct proc r;
    RUN(&r, "create", "/x");
    assert_status(&r, 1, "create without a usable shm directory");
    assert_contains(r.e.data, "/x: refusing to create this ring on the memfd backend");
    assert_contains(r.e.data, missing);
    assert_contains(r.e.data, strerror(ENOENT));
    assert_contains(r.e.data, "--allow-fallback");
    proc_free(&r);
    RUN(&r, "create", "--table", "/x");
    assert_status(&r, 1, "create --table without a usable shm directory");
    assert_contains(r.e.data, "refusing to create this state table on the memfd backend");
    proc_free(&r);
    RUN_INPUT(&r, "lost\n", 5, "send", "/x");
    assert_status(&r, 1, "send without a usable shm directory");
    assert_contains(r.e.data, "refusing to create this ring");
    proc_free(&r);

    /* Allowed: made on memfd, with a note on stderr. */
    RUN(&r, "create", "/x", "--allow-fallback");
    assert_status(&r, 0, "create --allow-fallback");
    assert_contains(r.e.data, "on the memfd backend: only this process sees it");
    proc_free(&r);
    RUN(&r, "create", "--table", "/x", "--allow-fallback");
    assert_status(&r, 0, "create --table --allow-fallback");
    proc_free(&r);
    RUN_INPUT(&r, "kept\n", 5, "send", "/x", "--allow-fallback");
    assert_status(&r, 0, "send --allow-fallback");
    assert_contains(r.e.data, "created /x");
    proc_free(&r);

    /* The heap backend forced: refused, naming the variable. */
    cr_assert_eq(setenv("SHMRING_SHM_DIR", shm_dir, 1), 0);
    cr_assert_eq(setenv("SHMRING_FORCE_HEAP", "1", 1), 0);
    RUN(&r, "create", "/x");
    assert_status(&r, 1, "create with SHMRING_FORCE_HEAP");
    assert_contains(r.e.data, "on the heap backend");
    assert_contains(r.e.data, "SHMRING_FORCE_HEAP");
    proc_free(&r);
    cr_assert_eq(unsetenv("SHMRING_FORCE_HEAP"), 0);
    cr_assert_eq(dir_count(), 0u);
    RUN(&r, "create", "/x");
    assert_status(&r, 0, "create in shared memory");
    cr_assert_eq(r.e.len, 0u, "%s", r.e.data);
    proc_free(&r);
    cr_assert(dir_has("x"));
    cr_assert_eq(shmring_unlink("/x"), 0);
    remove_dir();
}

/* 1 if the len bytes are valid UTF-8 (no overlongs or surrogates checked: enough here). */
static int valid_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = p[i] < 0x80         ? 1
                   : (p[i] >> 5) == 6  ? 2
                   : (p[i] >> 4) == 14 ? 3
                   : (p[i] >> 3) == 30 ? 4
                                       : 0;
        if (n == 0 || i + n > len)
            return 0;
        for (size_t k = 1; k < n; k++)
            if ((p[i + k] >> 6) != 2)
                return 0;
        i += n;
    }
    return 1;
}

/* Names with bytes >= 0x80: escaped in the table, valid JSON (a name that is not UTF-8 is
 * written with \u00XX). */
Test(cli, ls_escapes_high_bytes)
{
    setup(1); /* named files that the tool lists */
    shmring_t *a = NULL, *b = NULL;
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 32, .flags = SHMRING_OBSERVER);
    cr_assert_eq(shmring_create("/caf\xe9", &cfg, &a), 0);         /* Latin-1: not UTF-8 */
    cr_assert_eq(shmring_create("/\xc3\xbcml\\aut", &cfg, &b), 0); /* UTF-8, and a backslash */
    struct proc r;
    RUN(&r, "ls");
    assert_status(&r, 0, "ls");
    cr_assert_null(memchr(r.o.data, 0xe9, r.o.len), "raw byte in the table: %s", r.o.data);
    assert_contains(r.o.data, "/caf\\xe9 ");
    assert_contains(r.o.data, "/\\xc3\\xbcml\\\\aut ");
    proc_free(&r);
    RUN(&r, "ls", "--json");
    assert_status(&r, 0, "ls --json");
    cr_assert(valid_utf8(r.o.data, r.o.len), "ls --json is not UTF-8: %s", r.o.data);
    assert_contains(r.o.data, "\"name\": \"/caf\\u00e9\"");
    assert_contains(r.o.data, "\"name\": \"/\xc3\xbcml\\\\aut\"");
    proc_free(&r);
    shmring_close(a);
    shmring_close(b);
}

/* recv --subscriber: every message pushed after it attached, beside a consumer that takes them too.
 */
Test(cli, recv_subscriber_sees_what_a_consumer_takes, .timeout = 120)
{
    setup(1);
    shmring_t *p = test_make("/S", 8, 64, SHMRING_PRODUCER);
    test_push_id(p, 100, 20); /* before the subscriber: not for it */
    shmring_t *c = test_open_as("/S", SHMRING_CONSUMER);
    struct proc r;
    char *argv[] = {(char *)"shmring", (char *)"recv", (char *)"/S", (char *)"--subscriber",
                    (char *)"-n",      (char *)"3",    NULL};
    start(&r, tool_path, argv, NULL, 0);
    shmring_stats_t st;
    double deadline = h_now_s() + DEADLINE_S;
    while (shmring_stats(p, &st) == 0 && st.subscribers == 0) {
        cr_assert(h_now_s() < deadline, "recv --subscriber did not attach");
        sleep_ms(10);
    }
    cr_assert_eq(shmring_push(p, "a", 1), 0);
    cr_assert_eq(shmring_push(p, "b", 1), 0);
    cr_assert_eq(shmring_push(p, "c", 1), 0);
    char buf[64];
    test_expect_id(buf, shmring_pop(c, buf, sizeof buf), 100);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), 1, "the consumer takes its own copy");
        cr_assert_eq(buf[0], 'a' + i);
    }
    finish(&r, 1);
    assert_status(&r, 0, "recv --subscriber -n 3");
    cr_assert_str_eq(r.o.data, "a\nb\nc\n");
    proc_free(&r);
    RUN(&r, "stat", "/S");
    assert_status(&r, 0, "stat");
    assert_contains(r.o.data, "subscribers:     0 (3 delivered, 0 missed, 0 dead, 0 skipped)\n");
    proc_free(&r);
    shmring_close(c);
    shmring_close(p);
}
