/* Benchmark: the wake-up round trip through shmring_event_fd() (epoll), the futex sleep, a pipe. */
/*
 * Two processes, each pinned to its own CPU, ping-pong 16-byte messages;
 * both sides sleep in the kernel for every message, so each round trip is
 * two wake-ups:
 *   event-fd   a ring each way; the receiver pops, and on -EAGAIN sleeps in
 *              epoll_wait() on its shmring_event_fd() (the sender's push
 *              finds the descriptor armed and sends it a datagram);
 *   futex      the same rings; the receiver sleeps in shmring_pop_wait()
 *              with SHMRING_WAIT_SLEEP and no spins (futex wake-up);
 *   pipe       a pipe each way, blocking read() and write().
 * The ring rows run on the default (membarrier) wake-up path and again on
 * rings created with SHMRING_NO_MEMBARRIER ("-xchg").
 *   rtt        round trips back to back: p50 / p99;
 *   rtt_idle   one round trip after the sender slept --gap-us: p50 / p99.
 * Every reply carries the request's sequence number; a mismatch aborts.
 * Table on stdout; rows figure,transport,metric,value,ratio to --csv FILE
 * (ratio: to pipe), so that bench/run.sh runs it beside the others.
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
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"

#define NSEC     1000000000ll
#define CMD_ECHO 1u
#define CMD_STOP 2u

enum kind { EVENT_FD, FUTEX, PIPE };

struct transport {
    const char *name;
    enum kind kind;
    uint32_t flags; /* ring creation flags */
};

static const struct transport transports[] = {
    {"event-fd", EVENT_FD, 0},
    {"futex", FUTEX, 0},
    {"event-fd-xchg", EVENT_FD, SHMRING_NO_MEMBARRIER},
    {"futex-xchg", FUTEX, SHMRING_NO_MEMBARRIER},
    {"pipe", PIPE, 0},
};
#define NTRANS (sizeof transports / sizeof transports[0])

struct msg {
    uint64_t cmd;
    uint64_t seq;
};

/* One side of a session: how it sends and how it receives. */
struct side {
    const struct transport *t;
    shmring_t *in, *out; /* rings */
    int epfd;            /* event-fd: epoll on in's descriptor */
    int rfd, wfd;        /* pipe */
};

struct quantiles {
    double p50, p99;
};

static struct {
    long iters, idle_iters, gap_us;
    int quick, pin;
    const char *only, *csv_path;
} opt;

static int cpu_a = -1, cpu_b = -1;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_event: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

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
    if (cpu_b < 0)
        cpu_b = cpu_a;
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

static void print_load(const char *when)
{
    double l[3];
    if (getloadavg(l, 3) == 3)
        printf("  load average %s: %.2f %.2f %.2f (other work on these CPUs shows as noise)\n",
               when, l[0], l[1], l[2]);
}

/* ---- Sending and receiving ---------------------------------------------------- */

static void send_msg(struct side *s, const struct msg *m)
{
    if (s->t->kind == PIPE) {
        if (write(s->wfd, m, sizeof *m) != (ssize_t)sizeof *m)
            die("write: %s", strerror(errno));
        return;
    }
    /* One message in flight each way: the ring never fills. */
    int rc = shmring_push(s->out, m, sizeof *m);
    if (rc != 0)
        die("push: %s", shmring_strerror(rc));
}

static void recv_msg(struct side *s, struct msg *m)
{
    ssize_t n;
    switch (s->t->kind) {
    case PIPE:
        if (read(s->rfd, m, sizeof *m) != (ssize_t)sizeof *m)
            die("read: %s", strerror(errno));
        return;
    case FUTEX:
        n = shmring_pop_wait(s->in, m, sizeof *m, 10 * NSEC);
        if (n != (ssize_t)sizeof *m)
            die("pop_wait: %s", shmring_strerror((int)n));
        return;
    case EVENT_FD:
        /* The event-loop pattern: pop; on -EAGAIN (which arms the
         * descriptor) sleep until it is readable, then pop again. */
        while ((n = shmring_pop(s->in, m, sizeof *m)) == -EAGAIN) {
            struct epoll_event e;
            int k = epoll_wait(s->epfd, &e, 1, 10000);
            if (k == 0)
                die("epoll_wait: no wake-up in 10 s");
            if (k < 0 && errno != EINTR)
                die("epoll_wait: %s", strerror(errno));
        }
        if (n != (ssize_t)sizeof *m)
            die("pop: %s", shmring_strerror((int)n));
        return;
    }
}

static void open_side(struct side *s, const struct transport *t, const char *in, const char *out)
{
    s->t = t;
    if (t->kind == PIPE)
        return;
    int rc = shmring_open(in, SHMRING_CONSUMER, &s->in);
    if (rc == 0)
        rc = shmring_open(out, SHMRING_PRODUCER, &s->out);
    if (rc != 0)
        die("open: %s", shmring_strerror(rc));
    shmring_set_wait(s->in, SHMRING_WAIT_SLEEP, 0);
    if (t->kind == EVENT_FD) {
        int fd = shmring_event_fd(s->in);
        if (fd < 0)
            die("shmring_event_fd: %s", shmring_strerror(fd));
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event e = {.events = EPOLLIN};
        if (s->epfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) != 0)
            die("epoll: %s", strerror(errno));
    }
}

static void close_side(struct side *s)
{
    if (s->t->kind == EVENT_FD)
        close(s->epfd);
    shmring_close(s->in);
    shmring_close(s->out);
}

/* ---- A session ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static struct quantiles quantiles_of(uint64_t *v, long n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return (struct quantiles){(double)v[n / 2], (double)v[(n * 99) / 100]};
}

static struct quantiles measure(struct side *s, long iters, long gap_us, uint64_t *seq)
{
    uint64_t *v = malloc((size_t)iters * sizeof *v);
    if (v == NULL)
        die("out of memory");
    for (long i = 0; i < iters; i++) {
        if (gap_us > 0) {
            struct timespec ts = {gap_us / 1000000, (gap_us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
        struct msg m = {CMD_ECHO, ++*seq}, r;
        uint64_t t0 = now_ns();
        send_msg(s, &m);
        recv_msg(s, &r);
        v[i] = now_ns() - t0;
        if (r.seq != m.seq)
            die("reply %llu to request %llu", (unsigned long long)r.seq, (unsigned long long)m.seq);
    }
    struct quantiles q = quantiles_of(v, iters);
    free(v);
    return q;
}

static void echo_child(const struct transport *t, const char *req, const char *rep, int p[4])
{
    pin(cpu_b);
    struct side s = {0};
    if (t->kind == PIPE) {
        s.t = t;
        s.rfd = p[0];
        s.wfd = p[3];
    } else {
        open_side(&s, t, req, rep);
    }
    for (;;) {
        struct msg m;
        recv_msg(&s, &m);
        if (m.cmd == CMD_STOP)
            break;
        send_msg(&s, &m);
    }
    if (t->kind != PIPE)
        close_side(&s);
    _exit(0);
}

struct result {
    int have;
    struct quantiles rtt, idle;
};

static void run(const struct transport *t, struct result *res)
{
    char req[64], rep[64];
    snprintf(req, sizeof req, "/bench-event-req-%d", (int)getpid());
    snprintf(rep, sizeof rep, "/bench-event-rep-%d", (int)getpid());
    shmring_unlink(req);
    shmring_unlink(rep);
    shmring_t *keep_req = NULL, *keep_rep = NULL;
    int p[4] = {-1, -1, -1, -1};
    if (t->kind == PIPE) {
        if (pipe(p) != 0 || pipe(p + 2) != 0)
            die("pipe: %s", strerror(errno));
    } else {
        shmring_config_t cfg =
            SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 16, .flags = SHMRING_OBSERVER | t->flags);
        int rc = shmring_create(req, &cfg, &keep_req);
        if (rc == 0)
            rc = shmring_create(rep, &cfg, &keep_rep);
        if (rc != 0)
            die("create: %s", shmring_strerror(rc));
        if (shmring_backend(keep_req) == SHMRING_BACKEND_HEAP)
            die("the heap backend cannot be shared with another process");
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0)
        echo_child(t, req, rep, p);
    pin(cpu_a);
    struct side s = {0};
    if (t->kind == PIPE) {
        s.t = t;
        s.rfd = p[2];
        s.wfd = p[1];
    } else {
        open_side(&s, t, rep, req);
    }
    uint64_t seq = 0;
    measure(&s, opt.iters / 10 + 1, 0, &seq); /* warm-up */
    res->rtt = measure(&s, opt.iters, 0, &seq);
    res->idle = measure(&s, opt.idle_iters, opt.gap_us, &seq);
    res->have = 1;
    struct msg stop = {CMD_STOP, 0};
    send_msg(&s, &stop);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("%s: the echoing process failed", t->name);
    if (t->kind == PIPE) {
        for (int i = 0; i < 4; i++)
            close(p[i]);
    } else {
        close_side(&s);
        shmring_close(keep_req);
        shmring_close(keep_rep);
        shmring_unlink(req);
        shmring_unlink(rep);
    }
}

/* ---- Report ---------------------------------------------------------------------- */

static FILE *csv;

static void csv_row(const char *fig, const char *t, const char *metric, double v, double base)
{
    if (csv == NULL)
        return;
    fprintf(csv, "%s,%s,%s,%.6g,", fig, t, metric, v);
    if (base > 0)
        fprintf(csv, "%.4g", v / base);
    fputc('\n', csv);
}

static void print_ns(double ns)
{
    if (ns >= 100000.0)
        printf("  %8.1f us", ns / 1000.0);
    else
        printf("  %8.0f ns", ns);
}

static void report(const struct result *res)
{
    const struct result *pipe_res = &res[NTRANS - 1];
    printf("%-15s %11s %11s %11s %11s   (ratio p50 to pipe)\n", "transport", "rtt p50", "rtt p99",
           "idle p50", "idle p99");
    for (size_t i = 0; i < NTRANS; i++) {
        const struct result *r = &res[i];
        if (!r->have)
            continue;
        const char *n = transports[i].name;
        printf("%-15s", n);
        print_ns(r->rtt.p50);
        print_ns(r->rtt.p99);
        print_ns(r->idle.p50);
        print_ns(r->idle.p99);
        if (pipe_res->have)
            printf("   %.2fx / %.2fx", r->rtt.p50 / pipe_res->rtt.p50,
                   r->idle.p50 / pipe_res->idle.p50);
        printf("\n");
        double b50 = pipe_res->have ? pipe_res->rtt.p50 : 0,
               b99 = pipe_res->have ? pipe_res->rtt.p99 : 0;
        double i50 = pipe_res->have ? pipe_res->idle.p50 : 0,
               i99 = pipe_res->have ? pipe_res->idle.p99 : 0;
        csv_row("wake_rtt", n, "p50_ns", r->rtt.p50, b50);
        csv_row("wake_rtt", n, "p99_ns", r->rtt.p99, b99);
        csv_row("wake_rtt_idle", n, "p50_ns", r->idle.p50, i50);
        csv_row("wake_rtt_idle", n, "p99_ns", r->idle.p99, i99);
    }
}

/* ---- Options ----------------------------------------------------------------------- */

static int listed(const char *name)
{
    if (opt.only == NULL)
        return 1;
    size_t n = strlen(name);
    for (const char *p = opt.only; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (e != NULL);
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_event [--quick] [--only NAME[,NAME...]] [--csv FILE] [--dist-dir DIR]\n"
            "                   [--iters N] [--idle-iters N] [--gap-us N] [--no-pin]\n"
            "  --quick         short run\n"
            "  --only          transports:");
    for (size_t i = 0; i < NTRANS; i++)
        fprintf(out, " %s", transports[i].name);
    fprintf(out,
            "\n"
            "  --csv           write rows figure,transport,metric,value,ratio (ratio: to pipe)\n"
            "  --dist-dir      accepted for bench/run.sh; unused\n"
            "  --iters         back-to-back round trips per transport (default 20000)\n"
            "  --idle-iters    round trips after an idle gap (default 1000)\n"
            "  --gap-us        the idle gap before each of those (default 1000)\n"
            "  --no-pin        do not pin the two processes to two CPUs\n");
}

static void parse_options(int argc, char **argv)
{
    long iters = -1, idle = -1;
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
        else if (strcmp(a, "--iters") == 0)
            iters = atol(v);
        else if (strcmp(a, "--idle-iters") == 0)
            idle = atol(v);
        else if (strcmp(a, "--gap-us") == 0)
            opt.gap_us = atol(v);
        else {
            usage(stderr);
            exit(2);
        }
    }
    opt.iters = iters > 0 ? iters : opt.quick ? 2000 : 20000;
    opt.idle_iters = idle > 0 ? idle : opt.quick ? 200 : 1000;
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
    int any = 0;
    for (size_t i = 0; i < NTRANS; i++)
        any |= listed(transports[i].name);
    if (any) {
        printf("bench_event: wake-up round trips (16-byte message each way, both sides asleep) "
               "between two processes%s\n"
               "  rtt: %ld back to back; idle: %ld, each after %ld us idle\n",
               opt.pin ? "" : " (not pinned)", opt.iters, opt.idle_iters, opt.gap_us);
        if (opt.pin)
            printf("  pinned to CPUs %d and %d\n", cpu_a, cpu_b);
        print_load("at start");
        struct result res[NTRANS];
        memset(res, 0, sizeof res);
        for (size_t i = 0; i < NTRANS; i++)
            if (listed(transports[i].name))
                run(&transports[i], &res[i]);
        print_load("at end");
        report(res);
    }
    if (csv != NULL && fclose(csv) != 0)
        die("%s: %s", opt.csv_path, strerror(errno));
    return 0;
}
