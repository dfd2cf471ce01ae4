/* Transfer measurement: arguments, a real measurement, checksum verification, the report table,
 * `shmring bench transfer`. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "metrics.h"

#define TOOL_DEADLINE_S 120

/* 1 when an anonymous ring can be shared with a child (not the heap backend). */
static int shared_memory_available(void)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 2, .slot_size = 64, .flags = SHMRING_FORCE_MEMFD);
    shmring_t *r = NULL;
    test_quiet_log();
    if (shmring_create(NULL, &cfg, &r) < 0)
        return 0;
    int shared = shmring_backend(r) == SHMRING_BACKEND_MEMFD;
    shmring_close(r);
    return shared;
}

static unsigned open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* What a measurement must leave as it found: children, descriptors, CPUs, signals. */
struct process_state {
    unsigned fds;
    cpu_set_t cpus;
    sigset_t mask;
};

static void state_save(struct process_state *s)
{
    s->fds = open_fds();
    cr_assert_eq(sched_getaffinity(0, sizeof s->cpus, &s->cpus), 0);
    cr_assert_eq(pthread_sigmask(SIG_SETMASK, NULL, &s->mask), 0);
}

static void state_check(const struct process_state *s)
{
    struct process_state now;
    state_save(&now);
    cr_assert_eq(now.fds, s->fds, "descriptors: %u before, %u after", s->fds, now.fds);
    cr_assert(CPU_EQUAL(&now.cpus, &s->cpus), "the CPU affinity was not restored");
    cr_assert_eq(sigismember(&now.mask, SIGPIPE), sigismember(&s->mask, SIGPIPE),
                 "the SIGPIPE mask was not restored");
    sigset_t pending;
    cr_assert_eq(sigpending(&pending), 0);
    cr_assert_not(sigismember(&pending, SIGPIPE), "a SIGPIPE was left pending");
    errno = 0;
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a receiver process was left behind");
    cr_assert_eq(errno, ECHILD);
}

/* ---- Arguments ------------------------------------------------------------- */

Test(metrics, bad_arguments_change_nothing)
{
    shmring_transfer_report_t r, before;
    memset(&r, 0xa5, sizeof r);
    before = r;
    cr_assert_eq(shmring_measure_transfer(1024, 10, NULL), -EINVAL);
    cr_assert_eq(shmring_measure_transfer(0, 10, &r), -EINVAL);
    cr_assert_eq(shmring_measure_transfer(SHMRING_TRANSFER_MAX_BYTES + 1u, 10, &r), -EINVAL);
    cr_assert_eq(shmring_measure_transfer(1024, 0, &r), -EINVAL);
    cr_assert_eq(shmring_measure_transfer(1024, SHMRING_TRANSFER_MAX_ITERATIONS + 1u, &r), -EINVAL);
    cr_assert_eq(memcmp(&r, &before, sizeof r), 0, "a rejected call wrote the report");

    char buf[16];
    cr_assert_eq(shmring_transfer_format(NULL, buf, sizeof buf), -EINVAL);
    cr_assert_eq(shmring_transfer_format(&r, NULL, 4), -EINVAL);
    errno = 0;
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a rejected call forked");
}

/* ---- Measurements ---------------------------------------------------------- */

Test(metrics, without_shared_memory_not_supported)
{
    if (shared_memory_available())
        cr_skip_test("shared memory is available here");
    struct process_state s;
    state_save(&s);
    shmring_transfer_report_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(shmring_measure_transfer(4096, 5, &r), -ENOTSUP);
    cr_assert_eq(r.bytes, 0u, "a failed measurement wrote the report");
    state_check(&s);
}

Test(metrics, small_measurement_reports_medians, .timeout = 120)
{
    if (!shared_memory_available())
        cr_skip_test("needs processes");
    struct process_state s;
    state_save(&s);
    shmring_transfer_report_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(shmring_measure_transfer(64 * 1024, 20, &r), 0);
    cr_assert_eq(r.bytes, 64u * 1024);
    cr_assert_eq(r.iterations, 20u);
    cr_assert_gt(r.message_passing_ns, 0.0);
    cr_assert_gt(r.shared_copy_ns, 0.0);
    cr_assert_gt(r.shared_zero_copy_ns, 0.0);
    double best =
        r.shared_copy_ns < r.shared_zero_copy_ns ? r.shared_copy_ns : r.shared_zero_copy_ns;
    cr_assert(r.improvement == r.message_passing_ns / best,
              "improvement %.17g, message passing / best shared %.17g", r.improvement,
              r.message_passing_ns / best);
    cr_log_info("64 KiB: pipe %.0f ns, copy %.0f ns, zero-copy %.0f ns, %.2fx",
                r.message_passing_ns, r.shared_copy_ns, r.shared_zero_copy_ns, r.improvement);
    state_check(&s);
}

/* Sizes that are not whole words: the tail bytes are carried and summed too. */
Test(metrics, sizes_that_are_not_whole_words, .timeout = 120)
{
    if (!shared_memory_available())
        cr_skip_test("needs processes");
    static const size_t sizes[] = {1, 7, 9, 1003, 65536 + 5};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        shmring_transfer_report_t r;
        cr_assert_eq(shmring_measure_transfer(sizes[i], 3, &r), 0, "%zu bytes", sizes[i]);
        cr_assert_eq(r.bytes, sizes[i]);
        cr_assert_eq(r.iterations, 3u);
    }
}

/* A receiver that sees one flipped byte must fail the measurement, on every path. */
Test(metrics, checksum_catches_a_corrupt_byte_on_each_path, .timeout = 120)
{
    if (!shared_memory_available())
        cr_skip_test("needs processes");
    static const unsigned paths[] = {SHMRING__TRANSFER_PIPE, SHMRING__TRANSFER_COPY,
                                     SHMRING__TRANSFER_ZERO_COPY};
    static const size_t sizes[] = {5, 4096, 65536 + 3};
    struct process_state s;
    state_save(&s);
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            shmring_transfer_report_t r;
            memset(&r, 0, sizeof r);
            shmring__transfer_corrupt = paths[p];
            int rc = shmring_measure_transfer(sizes[i], 4, &r);
            shmring__transfer_corrupt = 0;
            cr_assert_eq(rc, -EIO, "path %u, %zu bytes: %d", paths[p], sizes[i], rc);
            cr_assert_eq(r.bytes, 0u, "a failed measurement wrote the report");
        }
    }
    state_check(&s);
    /* and the same measurement without the corruption passes */
    shmring_transfer_report_t r;
    cr_assert_eq(shmring_measure_transfer(4096, 4, &r), 0);
}

/* ---- The table ------------------------------------------------------------- */

static const shmring_transfer_report_t sample = {
    .bytes = 1u << 20,
    .iterations = 50,
    .message_passing_ns = 500000,
    .shared_copy_ns = 125000,
    .shared_zero_copy_ns = 100000,
    .improvement = 5,
};

Test(metrics, format_writes_the_table)
{
    char buf[1024];
    int n = shmring_transfer_format(&sample, buf, sizeof buf);
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, strlen(buf));
    cr_assert_not_null(strstr(buf, "transfer of 1 MiB (1048576 bytes) to another process, "
                                   "median of 50\n"),
                       "%s", buf);
    /* 1048576 bytes in 500 µs is 2.10 GB/s; in 125 µs 8.39; in 100 µs 10.49 */
    cr_assert_not_null(strstr(buf, "message passing (pipe)           500.00       2.10\n"), "%s",
                       buf);
    cr_assert_not_null(strstr(buf, "shared memory, copy              125.00       8.39\n"), "%s",
                       buf);
    cr_assert_not_null(strstr(buf, "shared memory, zero-copy         100.00      10.49\n"), "%s",
                       buf);
    cr_assert_not_null(strstr(buf, "improvement: 5.00x"), "%s", buf);
}

Test(metrics, format_truncates_like_snprintf)
{
    char full[1024], small[10];
    int n = shmring_transfer_format(&sample, full, sizeof full);
    cr_assert_eq(shmring_transfer_format(&sample, small, sizeof small), n);
    cr_assert_eq(strlen(small), sizeof small - 1);
    cr_assert_eq(strncmp(small, full, sizeof small - 1), 0);
    cr_assert_eq(shmring_transfer_format(&sample, NULL, 0), n);
    shmring_transfer_report_t odd = sample;
    odd.bytes = 1000;
    cr_assert_gt(shmring_transfer_format(&odd, full, sizeof full), 0);
    cr_assert_not_null(strstr(full, "transfer of 1000 bytes (1000 bytes)"), "%s", full);
}

/* ---- The command-line tool ------------------------------------------------- */

struct run {
    int status; /* exit status, or 128 + signal */
    char out[4096], err[4096];
};

static void slurp(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Run the tool with args (NULL-terminated, after the program name), output in files. */
static void run_tool(struct run *r, const char *const args[])
{
    char *argv[16] = {(char *)"shmring"};
    for (int i = 0; args[i] != NULL && i < 14; i++)
        argv[i + 1] = (char *)args[i];
    const char *path = test_tool();
    FILE *out = tmpfile(), *err = tmpfile();
    cr_assert(out != NULL && err != NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fileno(out), STDOUT_FILENO);
        dup2(fileno(err), STDERR_FILENO);
        execv(path, argv);
        _exit(127);
    }
    time_t deadline = time(NULL) + TOOL_DEADLINE_S;
    int st = 0;
    pid_t got;
    while ((got = waitpid(pid, &st, WNOHANG)) == 0 && time(NULL) < deadline) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        test_wait_child(pid);
        cr_assert_fail("the tool still ran after %d s", TOOL_DEADLINE_S);
    }
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
}

Test(metrics, cli_bench_transfer_prints_the_table, .timeout = 180)
{
    static const char *const args[] = {"bench",        "transfer", "--size", "64K",
                                       "--iterations", "20",       NULL};
    struct run r;
    run_tool(&r, args);
    if (!shared_memory_available()) {
        cr_assert_eq(r.status, 1, "exit %d; stderr: %s", r.status, r.err);
        cr_assert_not_null(strstr(r.err, "shmring: bench: transfer: no shared memory"), "%s",
                           r.err);
        cr_assert_eq(r.out[0], '\0');
        return;
    }
    cr_assert_eq(r.status, 0, "exit %d; stderr: %s", r.status, r.err);
    cr_assert_eq(r.err[0], '\0', "stderr: %s", r.err);
    cr_assert_not_null(
        strstr(r.out, "transfer of 64 KiB (65536 bytes) to another process, median of 20\n"), "%s",
        r.out);
    static const char *const rows[] = {"message passing (pipe)", "shared memory, copy",
                                       "shared memory, zero-copy"};
    double us[3];
    for (int i = 0; i < 3; i++) {
        const char *line = strstr(r.out, rows[i]);
        cr_assert_not_null(line, "no row '%s' in:\n%s", rows[i], r.out);
        double gbs;
        cr_assert_eq(sscanf(line + strlen(rows[i]), "%lf %lf", &us[i], &gbs), 2, "%s", line);
        cr_assert_gt(us[i], 0.0, "%s", line);
        cr_assert_gt(gbs, 0.0, "%s", line);
    }
    const char *imp = strstr(r.out, "improvement: ");
    cr_assert_not_null(imp, "%s", r.out);
    double factor;
    cr_assert_eq(sscanf(imp, "improvement: %lfx", &factor), 1);
    double best = us[1] < us[2] ? us[1] : us[2];
    /* the table rounds to 0.01 µs: the printed factor agrees within that */
    double lo = (us[0] - 0.005) / (best + 0.005), hi = (us[0] + 0.005) / (best - 0.005);
    cr_assert(factor >= lo - 0.005 && factor <= hi + 0.005, "factor %.2f outside [%.4f, %.4f]",
              factor, lo, hi);
}

Test(metrics, cli_bench_help_and_usage_errors)
{
    struct run r;
    static const char *const help[] = {"bench", "--help", NULL};
    run_tool(&r, help);
    cr_assert_eq(r.status, 0);
    cr_assert_eq(strncmp(r.out, "Usage: shmring bench transfer", 29), 0, "%s", r.out);
    static const char *const help2[] = {"bench", "transfer", "--help", NULL};
    run_tool(&r, help2);
    cr_assert_eq(r.status, 0);
    cr_assert_eq(strncmp(r.out, "Usage: shmring bench transfer", 29), 0, "%s", r.out);
    static const char *const list[] = {"--help", NULL};
    run_tool(&r, list);
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "\n  bench "), "%s", r.out);

    static const char *const bad[][6] = {
        {"bench", NULL},
        {"bench", "latency", NULL},
        {"bench", "transfer", "extra", NULL},
        {"bench", "transfer", "--size", "0", NULL},
        {"bench", "transfer", "--size", "257M", NULL},
        {"bench", "transfer", "--size", "lots", NULL},
        {"bench", "transfer", "--size", NULL},
        {"bench", "transfer", "--iterations", "0", NULL},
        {"bench", "transfer", "--iterations", "2000000", NULL},
        {"bench", "transfer", "--bogus", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_tool(&r, bad[i]);
        cr_assert_eq(r.status, 2, "usage %zu: exit %d", i, r.status);
        cr_assert_not_null(strstr(r.err, "shmring: bench: "), "usage %zu: %s", i, r.err);
        cr_assert_not_null(strstr(r.err, "Try 'shmring bench --help'."), "usage %zu: %s", i, r.err);
        cr_assert_eq(r.out[0], '\0', "usage %zu printed on stdout: %s", i, r.out);
    }
}
