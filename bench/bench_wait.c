/* Benchmark: the wait strategies (SPIN, YIELD, SLEEP with spins) in latency and idle CPU cost. */
/*
 * Two processes, each pinned to its own CPU, ping-pong 8-byte messages over
 * two rings (one per direction); both sides wait with pop_wait and the
 * strategy under test. Per strategy:
 *   busy   round trips back to back: p50 / p99 (the receiver is polling);
 *   idle   one round trip after the receiver has waited `--gap-us` on an
 *          empty ring: p50 / p99 (with SLEEP, it has gone to sleep and the
 *          figure includes the futex wake-up);
 *   cpu    CPU time (getrusage: user + system) the consumer burns per second
 *          of waiting on an idle ring, in percent of one core.
 * Every reply carries the request's sequence number; a mismatch aborts.
 * Table on stdout; rows figure,transport,metric,value,ratio to --csv FILE
 * (ratio: to spin), so that bench/run.sh can run it beside bench_ipc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

#define NSEC         1000000000ll
#define OP_TIMEOUT   (5 * NSEC) /* one wait that makes no progress */
#define CMD_ECHO     1u
#define CMD_IDLE_CPU 2u
#define CMD_STOP     3u

struct strategy {
    const char *name;
    int wait;
    uint32_t spins;
};

static const struct strategy strategies[] = {
    {"spin", SHMRING_WAIT_SPIN, 0},
    {"yield", SHMRING_WAIT_YIELD, 0},
    {"sleep", SHMRING_WAIT_SLEEP, SHMRING_DEFAULT_SPINS},
    {"sleep-spins-0", SHMRING_WAIT_SLEEP, 0},
    {"sleep-spins-100k", SHMRING_WAIT_SLEEP, 100000},
};
#define NSTRAT (sizeof strategies / sizeof strategies[0])

static const char *const figures[] = {"wait_busy", "wait_idle", "wait_cpu"};
#define NFIG (sizeof figures / sizeof figures[0])

struct msg {
    uint32_t cmd;
    uint32_t pad;
    uint64_t seq; /* echoed back; for CMD_IDLE_CPU, the wait in ns */
};

struct reply {
    uint64_t seq;
    uint64_t cpu_ns; /* CMD_IDLE_CPU: CPU time used while waiting */
    uint64_t wall_ns;
};

static struct {
    int quick;
    const char *only;
    const char *csv_path;
    long busy_iters;
    long idle_iters;
    long gap_us;
    double cpu_seconds;
    int pin;
} opt;

static int cpu_a = -1, cpu_b = -1;
static pid_t child_pid;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_wait: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
    }
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * (uint64_t)NSEC + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * (uint64_t)NSEC +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

static void pause_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / NSEC), .tv_nsec = (long)(ns % NSEC)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void print_load(const char *when)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(buf, sizeof buf, f) == NULL)
            buf[0] = '\0';
        fclose(f);
    }
    double a = 0, b = 0, c = 0;
    if (sscanf(buf, "%lf %lf %lf", &a, &b, &c) == 3)
        printf("  load average %s: %.2f %.2f %.2f (other work on these CPUs shows as noise)\n",
               when, a, b, c);
}

/* ---- Selection (--only) ----------------------------------------------------- */

static int listed(const char *name)
{
    size_t n = strlen(name);
    for (const char *p = opt.only; p != NULL;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* --only: the figures listed (all if none is) for the strategies listed (all
 * if none is); a list naming neither (another benchmark's names) runs
 * nothing here. */
static int selected(const char *figure, const char *strategy)
{
    if (opt.only == NULL)
        return 1;
    int any_fig = 0, any_strat = 0;
    for (size_t i = 0; i < NFIG; i++)
        any_fig |= listed(figures[i]);
    for (size_t i = 0; i < NSTRAT; i++)
        any_strat |= listed(strategies[i].name);
    if (!any_fig && !any_strat)
        return 0;
    return (!any_fig || listed(figure)) && (!any_strat || listed(strategy));
}

/* ---- CPUs ------------------------------------------------------------------- */

static void pick_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        die("sched_getaffinity: %s", strerror(errno));
    for (int c = 0; c < CPU_SETSIZE && cpu_b < 0; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        if (cpu_a < 0)
            cpu_a = c;
        else
            cpu_b = c;
    }
    if (cpu_b < 0) {
        cpu_b = cpu_a;
        fprintf(stderr,
                "bench_wait: one CPU only: both sides share CPU %d, SPIN and YIELD "
                "figures are meaningless\n",
                cpu_a);
    }
}

static void pin(int cpu)
{
    if (!opt.pin)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity(CPU %d): %s", cpu, strerror(errno));
}

/* ---- The echoing child ------------------------------------------------------ */

static void child_fail(const char *what, ssize_t rc)
{
    fprintf(stderr, "bench_wait: child: %s: %s\n", what, shmring_strerror((int)rc));
    _exit(1);
}

static void child_main(int ping_fd, int pong_fd, const struct strategy *s)
{
    shmring_t *in, *out;
    int rc = shmring_open_fd(ping_fd, SHMRING_CONSUMER, &in);
    if (rc < 0)
        child_fail("open ping", rc);
    rc = shmring_open_fd(pong_fd, SHMRING_PRODUCER, &out);
    if (rc < 0)
        child_fail("open pong", rc);
    pin(cpu_b);
    shmring_set_wait(in, s->wait, s->spins);
    shmring_set_wait(out, s->wait, s->spins);
    for (;;) {
        struct msg m;
        ssize_t n = shmring_pop_wait(in, &m, sizeof m, OP_TIMEOUT);
        if (n != (ssize_t)sizeof m)
            child_fail("pop", n < 0 ? n : -EPROTO);
        struct reply r = {.seq = m.seq};
        if (m.cmd == CMD_STOP)
            break;
        if (m.cmd == CMD_IDLE_CPU) {
            /* Wait on the empty ring for m.seq ns; nothing arrives. */
            uint64_t c0 = cpu_ns(), t0 = now_ns();
            n = shmring_pop_wait(in, &m, sizeof m, (int64_t)r.seq);
            if (n != -ETIMEDOUT)
                child_fail("idle wait", n < 0 ? n : -EPROTO);
            r.wall_ns = now_ns() - t0;
            r.cpu_ns = cpu_ns() - c0;
        }
        rc = shmring_push_wait(out, &r, sizeof r, OP_TIMEOUT);
        if (rc < 0)
            child_fail("push", rc);
    }
    shmring_close(out);
    shmring_close(in);
    _exit(0);
}

/* ---- The measuring parent --------------------------------------------------- */

struct session {
    shmring_t *ping, *pong;
    uint64_t seq;
};

static struct reply round_trip(struct session *ss, uint32_t cmd, uint64_t arg, int64_t timeout)
{
    struct msg m = {.cmd = cmd, .seq = cmd == CMD_ECHO ? ++ss->seq : arg};
    int rc = shmring_push_wait(ss->ping, &m, sizeof m, OP_TIMEOUT);
    if (rc < 0)
        die("push: %s", shmring_strerror(rc));
    struct reply r;
    ssize_t n = shmring_pop_wait(ss->pong, &r, sizeof r, timeout);
    if (n != (ssize_t)sizeof r)
        die("pop: %s", n < 0 ? shmring_strerror((int)n) : "short reply");
    if (r.seq != m.seq)
        die("reply %llu to request %llu", (unsigned long long)r.seq, (unsigned long long)m.seq);
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct quantiles {
    double p50, p99;
};

static struct quantiles quantiles_of(uint64_t *v, long n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_u64);
    return (struct quantiles){(double)v[n / 2], (double)v[(n * 99) / 100]};
}

static struct quantiles measure_rtt(struct session *ss, long iters, uint64_t gap_ns)
{
    uint64_t *v = malloc((size_t)iters * sizeof *v);
    if (v == NULL)
        die("out of memory");
    for (long i = 0; i < iters / 10 + 1; i++) /* warm-up */
        round_trip(ss, CMD_ECHO, 0, OP_TIMEOUT);
    for (long i = 0; i < iters; i++) {
        if (gap_ns > 0)
            pause_ns(gap_ns);
        uint64_t t0 = now_ns();
        round_trip(ss, CMD_ECHO, 0, OP_TIMEOUT);
        v[i] = now_ns() - t0;
    }
    struct quantiles q = quantiles_of(v, iters);
    free(v);
    return q;
}

struct result {
    int have_busy, have_idle, have_cpu;
    struct quantiles busy, idle;
    double cpu_pct;
};

static void reap_child(void)
{
    uint64_t deadline = now_ns() + (uint64_t)OP_TIMEOUT;
    int status = 0;
    for (;;) {
        pid_t p = waitpid(child_pid, &status, WNOHANG);
        if (p == child_pid)
            break;
        if (p < 0 && errno != EINTR)
            die("waitpid: %s", strerror(errno));
        if (now_ns() > deadline)
            die("child did not exit");
        pause_ns(1000000);
    }
    child_pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("child failed (status %d)", status);
}

static void run_strategy(const struct strategy *s, struct result *res)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 64, .slot_size = 64, .flags = SHMRING_PRODUCER);
    struct session ss = {0};
    int rc = shmring_create(NULL, &cfg, &ss.ping);
    if (rc < 0)
        die("create: %s", shmring_strerror(rc));
    cfg.flags = SHMRING_CONSUMER;
    rc = shmring_create(NULL, &cfg, &ss.pong);
    if (rc < 0)
        die("create: %s", shmring_strerror(rc));
    if (shmring_backend(ss.ping) == SHMRING_BACKEND_HEAP)
        die("the rings are in heap memory: this benchmark needs shared memory");
    fflush(NULL);
    child_pid = fork();
    if (child_pid < 0)
        die("fork: %s", strerror(errno));
    if (child_pid == 0)
        child_main(shmring_fd(ss.ping), shmring_fd(ss.pong), s);
    pin(cpu_a);
    shmring_set_wait(ss.ping, s->wait, s->spins);
    shmring_set_wait(ss.pong, s->wait, s->spins);
    round_trip(&ss, CMD_ECHO, 0, OP_TIMEOUT); /* the child is attached */

    if (selected("wait_busy", s->name)) {
        res->busy = measure_rtt(&ss, opt.busy_iters, 0);
        res->have_busy = 1;
    }
    if (selected("wait_idle", s->name)) {
        res->idle = measure_rtt(&ss, opt.idle_iters, (uint64_t)opt.gap_us * 1000u);
        res->have_idle = 1;
    }
    if (selected("wait_cpu", s->name)) {
        /* This side sleeps meanwhile, so as not to disturb the other CPU. */
        shmring_set_wait(ss.pong, SHMRING_WAIT_SLEEP, 0);
        uint64_t wait_ns = (uint64_t)(opt.cpu_seconds * (double)NSEC);
        struct reply r = round_trip(&ss, CMD_IDLE_CPU, wait_ns, (int64_t)wait_ns + OP_TIMEOUT);
        res->cpu_pct = 100.0 * (double)r.cpu_ns / (double)r.wall_ns;
        res->have_cpu = 1;
    }
    struct msg stop = {.cmd = CMD_STOP};
    rc = shmring_push_wait(ss.ping, &stop, sizeof stop, OP_TIMEOUT);
    if (rc < 0)
        die("push: %s", shmring_strerror(rc));
    reap_child();
    shmring_close(ss.ping);
    shmring_close(ss.pong);
}

/* ---- Output ------------------------------------------------------------------- */

static FILE *csv;

static void csv_row(const char *fig, const char *s, const char *metric, double v, double base)
{
    if (csv == NULL)
        return;
    fprintf(csv, "%s,%s,%s,%.6g,", fig, s, metric, v);
    if (base > 0)
        fprintf(csv, "%.4g", v / base);
    fputc('\n', csv);
}

static void print_ns(int have, double ns)
{
    if (!have)
        printf(" %10s", "-");
    else if (ns < 10000)
        printf(" %8.0f ns", ns);
    else
        printf(" %8.1f us", ns / 1000);
}

static void report(const struct result *res)
{
    printf("%-17s %11s %11s %11s %11s %9s\n", "strategy", "busy p50", "busy p99", "idle p50",
           "idle p99", "idle CPU");
    const struct result *base = &res[0]; /* spin */
    for (size_t i = 0; i < NSTRAT; i++) {
        const struct result *r = &res[i];
        if (!r->have_busy && !r->have_idle && !r->have_cpu)
            continue;
        const char *n = strategies[i].name;
        printf("%-17s", n);
        print_ns(r->have_busy, r->busy.p50);
        print_ns(r->have_busy, r->busy.p99);
        print_ns(r->have_idle, r->idle.p50);
        print_ns(r->have_idle, r->idle.p99);
        if (r->have_cpu)
            printf(" %8.1f%%\n", r->cpu_pct);
        else
            printf(" %9s\n", "-");
        if (r->have_busy) {
            csv_row("wait_busy", n, "p50_ns", r->busy.p50, base->have_busy ? base->busy.p50 : 0);
            csv_row("wait_busy", n, "p99_ns", r->busy.p99, base->have_busy ? base->busy.p99 : 0);
        }
        if (r->have_idle) {
            csv_row("wait_idle", n, "p50_ns", r->idle.p50, base->have_idle ? base->idle.p50 : 0);
            csv_row("wait_idle", n, "p99_ns", r->idle.p99, base->have_idle ? base->idle.p99 : 0);
        }
        if (r->have_cpu)
            csv_row("wait_cpu", n, "cpu_percent", r->cpu_pct, base->have_cpu ? base->cpu_pct : 0);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_wait [--quick] [--only NAME[,NAME...]] [--csv FILE] [--dist-dir DIR]\n"
            "                  [--busy-iters N] [--idle-iters N] [--gap-us N] [--cpu-seconds S]\n"
            "                  [--no-pin]\n"
            "  --quick         short run (a few seconds)\n"
            "  --only          figures (wait_busy wait_idle wait_cpu) and/or strategies:");
    for (size_t i = 0; i < NSTRAT; i++)
        fprintf(out, " %s", strategies[i].name);
    fprintf(out, "\n"
                 "  --csv           write rows figure,transport,metric,value,ratio (ratio: to "
                 "spin)\n"
                 "  --dist-dir      accepted for bench/run.sh; unused\n"
                 "  --busy-iters    back-to-back round trips per strategy (default 50000)\n"
                 "  --idle-iters    round trips after an idle gap (default 1000)\n"
                 "  --gap-us        the idle gap before each of those (default 1000)\n"
                 "  --cpu-seconds   idle wait whose CPU time is measured (default 1)\n"
                 "  --no-pin        do not pin the two processes to two CPUs\n");
}

static void parse_options(int argc, char **argv)
{
    long busy = -1, idle = -1;
    double secs = -1;
    opt.pin = 1;
    opt.gap_us = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
            continue;
        }
        if (strcmp(a, "--no-pin") == 0) {
            opt.pin = 0;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (v == NULL) {
            usage(stderr);
            exit(2);
        }
        if (strcmp(a, "--only") == 0)
            opt.only = v;
        else if (strcmp(a, "--csv") == 0)
            opt.csv_path = v;
        else if (strcmp(a, "--dist-dir") == 0)
            ;
        else if (strcmp(a, "--busy-iters") == 0)
            busy = atol(v);
        else if (strcmp(a, "--idle-iters") == 0)
            idle = atol(v);
        else if (strcmp(a, "--gap-us") == 0)
            opt.gap_us = atol(v);
        else if (strcmp(a, "--cpu-seconds") == 0)
            secs = atof(v);
        else {
            usage(stderr);
            exit(2);
        }
    }
    opt.busy_iters = busy > 0 ? busy : opt.quick ? 5000 : 50000;
    opt.idle_iters = idle > 0 ? idle : opt.quick ? 200 : 1000;
    opt.cpu_seconds = secs > 0 ? secs : opt.quick ? 0.3 : 1.0;
    if (opt.gap_us < 0)
        opt.gap_us = 0;
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    if (opt.csv_path != NULL) {
        csv = fopen(opt.csv_path, "w");
        if (csv == NULL)
            die("%s: %s", opt.csv_path, strerror(errno));
        fprintf(csv, "figure,transport,metric,value,ratio\n");
    }
    pick_cpus();
    struct result res[NSTRAT];
    memset(res, 0, sizeof res);
    int any = 0;
    for (size_t i = 0; i < NSTRAT; i++)
        for (size_t f = 0; f < NFIG; f++)
            any |= selected(figures[f], strategies[i].name);
    if (any) {
        printf("bench_wait: 16-byte request / 24-byte reply round trips between two processes%s\n"
               "  busy: %ld back to back; idle: %ld, each after %ld us idle; CPU of a consumer "
               "waiting %.1f s on an empty ring\n",
               opt.pin ? "" : " (not pinned)", opt.busy_iters, opt.idle_iters, opt.gap_us,
               opt.cpu_seconds);
        if (opt.pin)
            printf("  pinned to CPUs %d and %d\n", cpu_a, cpu_b);
        print_load("at start");
        for (size_t i = 0; i < NSTRAT; i++) {
            int want = 0;
            for (size_t f = 0; f < NFIG; f++)
                want |= selected(figures[f], strategies[i].name);
            if (want)
                run_strategy(&strategies[i], &res[i]);
        }
        print_load("at end");
        report(res);
    }
    if (csv != NULL && fclose(csv) != 0)
        die("%s: %s", opt.csv_path, strerror(errno));
    return 0;
}
