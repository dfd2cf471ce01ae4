/*
 * `shmring bridge`: rings carried over NATS, through a nats-server each test
 * starts on 127.0.0.1 (a free port, JetStream in a temporary directory) and
 * stops by its pid.
 *
 * Every message is checksummed (test_fill) and numbered; the consumer of the
 * target ring checks that they all arrive, in order, intact. The 1,000,000
 * message round trip uses core NATS: with `in` subscribed before the target
 * ring exists, its in-process queue unbounded, and one healthy server, core
 * NATS loses a message only if the server cuts `in` off as a slow consumer,
 * which the bridge would count and this test would see. The kill -9 and
 * server-restart tests use JetStream, whose guarantee does not depend on
 * luck.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fault.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define DEADLINE_S 240.0 /* generous: the machine may be shared */
#define SLOT_SIZE  256u

/* ---- Time, files, processes ------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static const char *tool;
static char shm_dir[96];
static char work_dir[64]; /* server store and logs */

static void cleanup_dirs(void)
{
    if (shm_dir[0] != '\0')
        test_remove_dir(shm_dir);
    if (work_dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", work_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", work_dir);
    }
}

static const char *path_in(const char *name)
{
    static __thread char p[4][256];
    static __thread int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", work_dir, name);
    return p[k];
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return strdup("");
    char *buf = NULL;
    size_t cap = 0, len = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf = realloc(buf, cap = len + n + 1);
        cr_assert_not_null(buf);
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf == NULL)
        return strdup("");
    buf[len] = '\0';
    (void)cap;
    return buf;
}

/* Value of `field=` in the last line of `log` that contains `line_tag`. */
static long long log_field(const char *log, const char *line_tag, const char *field)
{
    char *s = slurp(path_in(log));
    long long v = -1;
    char key[64];
    snprintf(key, sizeof key, " %s=", field);
    for (char *line = strtok(s, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, line_tag) == NULL)
            continue;
        const char *f = strstr(line, key);
        if (f != NULL)
            v = strtoll(f + strlen(key), NULL, 10);
    }
    free(s);
    return v;
}

static int log_has(const char *log, const char *text)
{
    char *s = slurp(path_in(log));
    int found = strstr(s, text) != NULL;
    free(s);
    return found;
}

/* The end of each log, for a failure message. */
static void dump_logs(void)
{
    const char *logs[] = {"out.log", "in.log", "server.log"};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        char *s = slurp(path_in(logs[i]));
        size_t len = strlen(s);
        fprintf(stderr, "---- %s (end) ----\n%s\n", logs[i], s + (len > 6000 ? len - 6000 : 0));
        free(s);
    }
}

/* Start argv[0] with stdout and stderr appended to `log` in the work dir. */
/* A fault-injection rule (SHMRING_FAULT) for the next spawned process only. */
static const char *spawn_fault;

static pid_t spawn(const char *log, char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* A test that fails ends its process at once: its server and
         * bridges must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(path_in(log), O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, STDIN_FILENO);
        if (spawn_fault != NULL)
            setenv("SHMRING_FAULT", spawn_fault, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Exit status of pid (128 + signal when killed), or -1 after `secs` (then
 * it is killed). */
static int wait_exit(pid_t pid, double secs)
{
    double end = now_s() + secs;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        sleep_s(0.01);
    }
}

/* ---- nats-server ---------------------------------------------------------- */

struct server {
    pid_t pid;
    int port;
    char url[64];
};

static const char *server_path(void)
{
    static char found[512];
    const char *fixed[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                           "/usr/local/bin/nats-server"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (access(fixed[i], X_OK) == 0)
            return fixed[i];
    const char *path = getenv("PATH");
    if (path == NULL)
        return NULL;
    char *copy = strdup(path), *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        snprintf(found, sizeof found, "%s/nats-server", d);
        if (access(found, X_OK) == 0) {
            free(copy);
            return found;
        }
    }
    free(copy);
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Start (or restart, on the same port and store) the server. */
static void server_start(struct server *s)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        if (s->port == 0 || attempt > 0)
            s->port = free_port();
        char port[16];
        snprintf(port, sizeof port, "%d", s->port);
        char *argv[] = {
            (char *)server_path(), (char *)"-a",  (char *)"127.0.0.1",   (char *)"-p", port,
            (char *)"-js",         (char *)"-sd", (char *)path_in("js"), NULL};
        s->pid = spawn("server.log", argv);
        double end = now_s() + 60;
        while (now_s() < end) {
            if (port_open(s->port)) {
                snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
                return;
            }
            int st;
            if (waitpid(s->pid, &st, WNOHANG) == s->pid)
                break; /* the port was taken meanwhile: try another */
            sleep_s(0.02);
        }
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        if (attempt == 0 && s->port != 0 && s->url[0] != '\0')
            cr_assert_fail("nats-server did not come back on port %d", s->port);
    }
    cr_assert_fail("nats-server did not start; log:\n%s", slurp(path_in("server.log")));
}

static void server_stop(struct server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    if (wait_exit(s->pid, 30) < 0)
        fprintf(stderr, "nats-server %d needed SIGKILL\n", (int)s->pid);
    s->pid = 0;
}

static struct server server;

static void stop_server_at_exit(void)
{
    if (server.pid > 0)
        kill(server.pid, SIGKILL);
}

/* Skips unless the tool has `bridge` and nats-server is installed. */
static void setup(void)
{
    cleanup_dirs(); /* a previous test's, when tests share a process */
    shm_dir[0] = work_dir[0] = '\0';
    if (test_heap_forced())
        cr_skip_test("needs processes (the bridge is a program of its own)");
    tool = test_tool();
    char *argv[] = {(char *)tool, (char *)"bridge", (char *)"--help", NULL};
    snprintf(work_dir, sizeof work_dir, "/tmp/shmring-bridge-XXXXXX");
    cr_assert_not_null(mkdtemp(work_dir));
    if (wait_exit(spawn("help.txt", argv), 60) != 0)
        cr_skip_test("the shmring tool was built without libnats: no `shmring bridge`");
    if (server_path() == NULL)
        cr_skip_test("nats-server is not installed (scripts/deps.sh installs it)");
    test_quiet_log();
    /* Inside the caller's private shm directory when there is one (as
     * found before the first test replaced $SHMRING_SHM_DIR). */
    static char base[48];
    if (base[0] == '\0') {
        const char *env = getenv("SHMRING_SHM_DIR");
        struct stat st;
        snprintf(base, sizeof base, "%s",
                 env != NULL && strlen(env) < sizeof base && stat(env, &st) == 0 &&
                         S_ISDIR(st.st_mode)
                     ? env
                     : "/dev/shm");
    }
    snprintf(shm_dir, sizeof shm_dir, "%s/shmring-bridge-XXXXXX", base);
    if (mkdtemp(shm_dir) == NULL) {
        snprintf(shm_dir, sizeof shm_dir, "/tmp/shmring-bridge-shm-XXXXXX");
        cr_assert_not_null(mkdtemp(shm_dir));
    }
    cr_assert_eq(setenv("SHMRING_SHM_DIR", shm_dir, 1), 0);
    static int registered;
    if (!registered) {
        atexit(cleanup_dirs);
        atexit(stop_server_at_exit);
    }
    registered = 1;
    memset(&server, 0, sizeof server);
}

/* The end of every test that passed: stop the server, remove the dirs. */
static void finish(void)
{
    server_stop(&server);
    cleanup_dirs();
    shm_dir[0] = work_dir[0] = '\0';
}

/* ---- Bridges ------------------------------------------------------------------ */

struct bridge {
    char *argv[24];
    char log[32];
    pid_t pid;
};

/* `shmring bridge DIR ...` with the given extra arguments (NULL-terminated). */
static void bridge_init(struct bridge *b, const char *log, const char *first, ...)
{
    memset(b, 0, sizeof *b);
    snprintf(b->log, sizeof b->log, "%s", log);
    int n = 0;
    b->argv[n++] = (char *)tool;
    b->argv[n++] = (char *)"bridge";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 23; a = va_arg(ap, const char *))
        b->argv[n++] = (char *)a;
    va_end(ap);
    b->argv[n] = NULL;
}

static void bridge_start(struct bridge *b)
{
    b->pid = spawn(b->log, b->argv);
}

static int bridge_wait(struct bridge *b, double secs)
{
    int rc = wait_exit(b->pid, secs);
    b->pid = 0;
    return rc;
}

static void bridge_kill9_and_restart(struct bridge *b)
{
    cr_assert_eq(kill(b->pid, SIGKILL), 0);
    cr_assert_eq(wait_exit(b->pid, 30), 128 + SIGKILL);
    bridge_start(b);
}

static void wait_for_ring(const char *name)
{
    double end = now_s() + 60;
    while (access(test_seg_path(shm_dir, name), F_OK) != 0) {
        cr_assert(now_s() < end, "ring %s was not created", name);
        sleep_s(0.01);
    }
}

/* ---- Producer (a thread) and consumer (the test) --------------------------------- */

/* What message `id` of a run looks like: its length, and whether it is too
 * large for the target ring (and so never arrives). */
struct plan {
    uint64_t count;
    uint32_t slot_size;   /* of the source ring */
    uint32_t target_size; /* slot size of the target ring */
    int with_empty;       /* every 10th message (id % 10 == 3) is empty */
};

static size_t plan_len(const struct plan *p, uint64_t id)
{
    if (p->with_empty && id % 10 == 3)
        return 0;
    return test_len_of(id * 2654435761u, p->slot_size);
}

static int plan_arrives(const struct plan *p, uint64_t id)
{
    return plan_len(p, id) <= p->target_size;
}

struct producer {
    pthread_t thread;
    shmring_t *ring;
    const struct plan *plan;
    int error;
};

static void *produce(void *arg)
{
    struct producer *pr = arg;
    unsigned char *buf = malloc(pr->plan->slot_size);
    for (uint64_t id = 0; id < pr->plan->count && buf != NULL; id++) {
        size_t len = plan_len(pr->plan, id);
        test_fill(buf, len, id);
        int err = shmring_push_wait(pr->ring, buf, len, (int64_t)(DEADLINE_S * 1e9));
        if (err < 0) {
            pr->error = err;
            break;
        }
    }
    free(buf);
    shmring_close(pr->ring); /* end of stream */
    return NULL;
}

static void producer_start(struct producer *pr, const char *name, const struct plan *plan,
                           uint32_t flags)
{
    memset(pr, 0, sizeof *pr);
    pr->plan = plan;
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 4096, .slot_size = plan->slot_size, .flags = flags);
    cr_assert_eq(shmring_create(name, &cfg, &pr->ring), 0);
    cr_assert_eq(pthread_create(&pr->thread, NULL, produce, pr), 0);
}

static void producer_join(struct producer *pr)
{
    pthread_join(pr->thread, NULL);
    cr_assert_eq(pr->error, 0, "producer: %s", shmring_strerror(pr->error));
}

struct received {
    uint64_t msgs;       /* messages taken in order */
    uint64_t duplicates; /* a message seen again */
    uint64_t missing;    /* skipped over (only when the caller allows gaps) */
    int eos;             /* end of stream seen after the last message */
};

/* Called by consume() after every message, e.g. to kill a bridge. */
typedef void (*progress_fn)(uint64_t received, void *ctx);

/*
 * Take every message of the plan from ring `name`, in order, checking each.
 * A message seen before (a duplicate) is counted, anything else out of
 * order fails the test. Waits for end of stream at the end.
 */
static struct received consume(const char *name, const struct plan *plan, int allow_gaps,
                               progress_fn fn, void *ctx)
{
    wait_for_ring(name);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char *buf = malloc(plan->slot_size + 1);
    cr_assert_not_null(buf);
    struct received rx = {0, 0, 0, 0};
    uint64_t next = 0;
    while (next < plan->count && !plan_arrives(plan, next))
        next++;
    double end = now_s() + DEADLINE_S;
    for (;;) {
        ssize_t n = shmring_pop_wait(c, buf, plan->slot_size + 1, 100000000LL);
        if (n == -ETIMEDOUT || n == -EAGAIN || n == -EPIPE) {
            if (n == -EPIPE && next >= plan->count) {
                rx.eos = 1;
                break;
            }
            /* -EPIPE before the end: the bridge `in` was killed or is
             * restarting; a new one takes the producer role over. */
            if (now_s() > end) {
                dump_logs();
                cr_assert_fail("timed out after %llu of %llu messages", (unsigned long long)rx.msgs,
                               (unsigned long long)plan->count);
            }
            if (n == -EPIPE)
                sleep_s(0.01);
            if (fn != NULL)
                fn(rx.msgs, ctx);
            continue;
        }
        cr_assert_geq(n, 0, "pop: %s", shmring_strerror((int)n));
        uint64_t id = 0;
        if (n == 0) {
            cr_assert(plan->with_empty, "an empty message that was never sent");
            /* Empty messages carry no id: they must come where expected. */
            if (next < plan->count && plan_len(plan, next) == 0)
                id = next;
            else {
                rx.duplicates++;
                continue;
            }
        } else {
            cr_assert(test_check(buf, (size_t)n, &id), "corrupt message after id %llu",
                      (unsigned long long)next);
            cr_assert_eq((size_t)n, plan_len(plan, id), "id %llu has length %zd",
                         (unsigned long long)id, n);
        }
        if (id < next) {
            rx.duplicates++;
            continue;
        }
        if (allow_gaps && id > next && id < plan->count) {
            for (; next < id; next++)
                rx.missing += (uint64_t)plan_arrives(plan, next);
        }
        if (id != next)
            dump_logs();
        cr_assert_eq(id, next, "got id %llu, expected %llu (a message was lost or reordered)",
                     (unsigned long long)id, (unsigned long long)next);
        rx.msgs++;
        next++;
        while (next < plan->count && !plan_arrives(plan, next))
            next++;
        if (fn != NULL)
            fn(rx.msgs, ctx);
    }
    free(buf);
    shmring_close(c);
    return rx;
}

static uint64_t arriving(const struct plan *p)
{
    uint64_t n = 0;
    for (uint64_t id = 0; id < p->count; id++)
        n += (uint64_t)plan_arrives(p, id);
    return n;
}

static uint64_t scaled(uint64_t n, uint64_t sanitized)
{
    double v = (double)(SANITIZED ? sanitized : n) * test_scale();
    return v < 1000 ? 1000 : (uint64_t)v;
}

/* ---- Round trip, core NATS ------------------------------------------------------- */

Test(bridge, core_round_trip_one_million_in_order, .timeout = 600)
{
    setup();
    server_start(&server);
    static struct plan plan; /* static: outlives a failed test's exit */
    plan = (struct plan){
        .count = scaled(1000000, 100000), .slot_size = SLOT_SIZE, .target_size = SLOT_SIZE};
    struct bridge in, out;
    bridge_init(&in, "in.log", "in", server.url, "rt.core", "/rtb", "--slots", "4096",
                "--slot-size", "256", "--stats", NULL);
    bridge_init(&out, "out.log", "out", "/rta", server.url, "rt.core", "--stats", NULL);
    bridge_start(&in);
    wait_for_ring("/rtb"); /* `in` is subscribed once its ring exists */
    struct producer pr;
    producer_start(&pr, "/rta", &plan, 0);
    bridge_start(&out);
    struct received rx = consume("/rtb", &plan, 0, NULL, NULL);
    producer_join(&pr);
    cr_assert_eq(rx.msgs, plan.count);
    cr_assert_eq(rx.duplicates, 0);
    cr_assert(rx.eos, "end of stream did not cross");
    cr_assert_eq(bridge_wait(&out, 60), 0, "out:\n%s", slurp(path_in("out.log")));
    cr_assert_eq(bridge_wait(&in, 60), 0, "in:\n%s", slurp(path_in("in.log")));
    cr_assert(log_has("in.log", "dropped=0"), "in:\n%s", slurp(path_in("in.log")));
    cr_assert(log_has("out.log", "errors=0"), "out:\n%s", slurp(path_in("out.log")));
    fprintf(stderr, "bridge: core round trip: %llu messages in order\n",
            (unsigned long long)rx.msgs);
    finish();
}

/* ---- JetStream: kill -9 and server restarts ------------------------------------- */

static uint32_t ring_redelivered(const char *name)
{
    shmring_t *o = NULL;
    if (shmring_open(name, SHMRING_OBSERVER, &o) != 0)
        return 0;
    shmring_stats_t st;
    shmring_stats(o, &st);
    shmring_close(o);
    return st.redelivered;
}

static uint64_t ring_abandoned(const char *name)
{
    shmring_t *o = NULL;
    if (shmring_open(name, SHMRING_OBSERVER, &o) != 0)
        return 0;
    shmring_stats_t st;
    shmring_stats(o, &st);
    shmring_close(o);
    return st.abandoned;
}

struct chaos {
    struct bridge *victim; /* killed with -9 and restarted */
    int restart_server;    /* or: restart nats-server */
    int self_killed;       /* or: the victim kills itself at a fault point */
    uint64_t at[2];        /* after this many messages */
    int done;
};

/* A victim that killed itself at its fault point is started again, without
 * the rule. */
static void restart_if_dead(struct chaos *ch)
{
    int st = 0;
    if (ch->done >= 2 || waitpid(ch->victim->pid, &st, WNOHANG) != ch->victim->pid)
        return;
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "victim: status %d, not killed", st);
    spawn_fault = NULL;
    bridge_start(ch->victim);
    ch->done = 2;
}

static void chaos_step(uint64_t received, void *ctx)
{
    struct chaos *ch = ctx;
    if (ch->self_killed) {
        restart_if_dead(ch);
        return;
    }
    if (ch->done >= 2 || received != ch->at[ch->done])
        return;
    if (ch->restart_server) {
        server_stop(&server);
        server_start(&server); /* same port, same store */
    } else {
        bridge_kill9_and_restart(ch->victim);
    }

    ch->done++;
}

/* 0: kill `out`, 1: kill `in`, 2: restart the server; 3: `out` kills
 * itself at claim.Z3 (acknowledged, not released), 4: `in` at ring.W
 * (pushed, not recorded), 5: the same at its first push. */
static void jetstream_run(int what)
{
    server_start(&server);
    static struct plan plan; /* static: outlives a failed test's exit */
    plan = (struct plan){.count = scaled(30000, 10000),
                         .slot_size = SLOT_SIZE,
                         .target_size = SLOT_SIZE,
                         .with_empty = 1};
    struct bridge in, out;
    bridge_init(&in, "in.log", "in", server.url, "js.rt", "/jsb", "--jetstream", "RT",
                "--slot-size", "256", "--ack-wait", "2", "--stats", NULL);
    bridge_init(&out, "out.log", "out", "/jsa", server.url, "js.rt", "--jetstream", "RT", "--stats",
                NULL);
    struct producer pr;
    /* Lossless `out` needs a ring that redelivers a dead consumer's claims
     * (docs/distributed.md). */
    producer_start(&pr, "/jsa", &plan, SHMRING_REDELIVER);
    char rule[64];
    snprintf(rule, sizeof rule, "%s:kill@%llu", what == 3 ? "claim.Z3" : "ring.W",
             what == 5 ? 1ull : (unsigned long long)plan.count / 3);
    spawn_fault = what == 3 ? rule : NULL;
    bridge_start(&out);
    spawn_fault = what >= 4 ? rule : NULL;
    bridge_start(&in);
    spawn_fault = NULL;
    struct chaos ch = {.victim = what == 0 || what == 3 ? &out : &in,
                       .restart_server = what == 2,
                       .self_killed = what >= 3,
                       .at = {plan.count / 4, plan.count / 2}};
    struct received rx = consume("/jsb", &plan, 0, chaos_step, &ch);
    producer_join(&pr);
    cr_assert_eq(ch.done, 2);
    cr_assert(rx.eos, "end of stream did not cross");
    uint32_t redelivered = ring_redelivered("/jsa");
    cr_assert_eq(bridge_wait(&out, 60), 0, "out:\n%s", slurp(path_in("out.log")));
    cr_assert_eq(bridge_wait(&in, 60), 0, "in:\n%s", slurp(path_in("in.log")));
    /*
     * In order (consume() checked, with no gap allowed), nothing twice,
     * nothing abandoned: a killed `out`'s claims come back to its successor
     * and JetStream drops what it stored already; a killed `in`'s successor
     * skips what the ring counts as pushed beyond its record.
     */
    uint64_t abandoned = ring_abandoned("/jsa");
    fprintf(stderr,
            "bridge: jetstream (%s): %llu of %llu messages, %llu missing, %llu duplicate(s), "
            "%llu claim(s) abandoned, %u redelivered\n",
            what == 0   ? "kill out"
            : what == 1 ? "kill in"
            : what == 2 ? "server restart"
            : what == 3 ? "out killed at claim.Z3"
                        : "in killed at ring.W",
            (unsigned long long)rx.msgs, (unsigned long long)plan.count,
            (unsigned long long)rx.missing, (unsigned long long)rx.duplicates,
            (unsigned long long)abandoned, redelivered);
    /* `out` killed in a release held that claim at least: it came back to
     * its successor. (A kill -9 at a random moment may find `out` idle,
     * with everything sent, when `in` is the slower side.) */
    if (what == 3)
        cr_assert_gt(redelivered, 0);
    /* Killed after an acknowledgement: its successor published again what
     * JetStream had, which JetStream reported as duplicates. */
    if (what == 3)
        cr_assert_gt(log_field("out.log", " end ", "duplicates"), 0);
    /* Killed between a push and its record: its successor skipped it. */
    if (what >= 4)
        cr_assert(log_has("in.log", "pushed after the last record"), "in:\n%s",
                  slurp(path_in("in.log")));
    if (what == 2) /* `in` (alive to the end) lost the server twice and came back; `out`
                      may have sent everything before the second restart */
        cr_assert_geq(log_field("in.log", " end ", "reconnects"), 2);
    if (what == 2)
        cr_assert_geq(log_field("out.log", " end ", "reconnects"), 1);
    cr_assert_eq(rx.msgs, arriving(&plan));
    cr_assert_eq(rx.missing, 0);
    cr_assert_eq(rx.duplicates, 0, "%llu message(s) arrived twice",
                 (unsigned long long)rx.duplicates);
    cr_assert_eq(abandoned, 0);
    finish();
}

Test(bridge, jetstream_kill_out_twice_loses_nothing, .timeout = 600)
{
    setup();
    jetstream_run(0);
}

Test(bridge, jetstream_kill_in_twice_loses_nothing, .timeout = 600)
{
    setup();
    jetstream_run(1);
}

Test(bridge, jetstream_server_restart_loses_nothing, .timeout = 600)
{
    setup();
    jetstream_run(2);
}

/* The two windows hit exactly, in fault-injection builds (`make fault`, then
 * ctest -R test_bridge in build/fault): the bridge kills itself there. */
static void need_fault_tool(void)
{
    if (!shmring__fault_compiled())
        cr_skip_test("needs a SHMRING_FAULT_INJECTION build (make fault)");
}

Test(bridge, jetstream_out_killed_after_ack_before_release, .timeout = 600)
{
    setup();
    need_fault_tool();
    jetstream_run(3);
}

Test(bridge, jetstream_in_killed_after_push_before_record, .timeout = 600)
{
    setup();
    need_fault_tool();
    jetstream_run(4);
}

Test(bridge, jetstream_in_killed_after_first_push_before_record, .timeout = 600)
{
    setup();
    need_fault_tool();
    jetstream_run(5);
}

/* ---- Bad input -------------------------------------------------------------------- */

static int run_tool(const char *log, const char *first, ...)
{
    struct bridge b;
    memset(&b, 0, sizeof b);
    int n = 0;
    b.argv[n++] = (char *)tool;
    b.argv[n++] = (char *)"bridge";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 23; a = va_arg(ap, const char *))
        b.argv[n++] = (char *)a;
    va_end(ap);
    unlink(path_in(log));
    return wait_exit(spawn(log, b.argv), 60);
}

Test(bridge, unreachable_server_is_exit_1, .timeout = 600)
{
    setup();
    shmring_t *r = test_make("/un", 8, 64, 0);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", free_port()); /* nobody listens */
    cr_assert_eq(run_tool("e.log", "out", "/un", url, "x", NULL), 1);
    cr_assert(log_has("e.log", "cannot connect to NATS"), "%s", slurp(path_in("e.log")));
    cr_assert_eq(run_tool("e.log", "in", url, "x", "/un2", NULL), 1);
    cr_assert(log_has("e.log", "cannot connect to NATS"), "%s", slurp(path_in("e.log")));
    cr_assert_eq(run_tool("e.log", "in", url, "x", "/un2", "--jetstream", "S", NULL), 1);
    shmring_close(r);
    finish();
}

Test(bridge, invalid_subject_url_or_option_is_exit_2, .timeout = 600)
{
    setup();
    const char *url = "nats://127.0.0.1:4222"; /* never reached: checked first */
    const char *bad_subjects[] = {"", "a..b", ".a", "a.", "a b", "a.>", "a.*", "*"};
    for (size_t i = 0; i < sizeof bad_subjects / sizeof bad_subjects[0]; i++)
        cr_assert_eq(run_tool("e.log", "out", "/r", url, bad_subjects[i], NULL), 2, "'%s'",
                     bad_subjects[i]);
    cr_assert_eq(run_tool("e.log", "in", url, "a.>.b", "/r", NULL), 2);
    cr_assert_eq(run_tool("e.log", "in", url, "a.*", "/r", "--jetstream", "S", NULL), 2);
    const char *bad_urls[] = {"",
                              "http://127.0.0.1:4222",
                              "nats://",
                              "nats://:4222",
                              "nats://host:99999",
                              "nats://host:12ab",
                              "nats://a b:1",
                              "nats://h:1,,nats://h:2"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        cr_assert_eq(run_tool("e.log", "out", "/r", bad_urls[i], "a", NULL), 2, "'%s'",
                     bad_urls[i]);
        cr_assert(log_has("e.log", "is not a NATS URL"), "%s", slurp(path_in("e.log")));
    }
    cr_assert_eq(run_tool("e.log", "in", url, "a", "/r", "--subscriber", NULL), 2);
    cr_assert(log_has("e.log", "--subscriber is for `out`"));
    cr_assert_eq(run_tool("e.log", "out", "/r", url, "a", "--jetstream", "a.b", NULL), 2);
    cr_assert_eq(run_tool("e.log", "in", url, "a", "/r", "--slots", "1000", NULL), 2);
    cr_assert_eq(run_tool("e.log", "in", url, "a", "/r", "--oversize", "drop", NULL), 2);
    cr_assert_eq(run_tool("e.log", "sideways", url, "a", "/r", NULL), 2);
    cr_assert_eq(run_tool("e.log", "out", "/r", url, NULL), 2);
    cr_assert_eq(run_tool("e.log", "out", "bad/name", url, "a", NULL), 2);
    /* Nothing was created by any of these. */
    cr_assert_eq(test_dir_count(shm_dir), 0);
    finish();
}

/* Messages larger than the target ring's slots are counted, reported and
 * skipped (the stream goes on), or stop the bridge with --oversize stop. */
Test(bridge, oversize_messages_are_skipped_and_counted_or_stop, .timeout = 600)
{
    setup();
    server_start(&server);
    static struct plan plan; /* static: outlives a failed test's exit */
    plan =
        (struct plan){.count = 2000, .slot_size = SLOT_SIZE, .target_size = 100, .with_empty = 1};
    struct bridge in, out;
    bridge_init(&in, "in.log", "in", server.url, "ov", "/ovb", "--slot-size", "100", "--stats",
                NULL);
    bridge_init(&out, "out.log", "out", "/ova", server.url, "ov", NULL);
    bridge_start(&in);
    wait_for_ring("/ovb");
    struct producer pr;
    producer_start(&pr, "/ova", &plan, 0);
    bridge_start(&out);
    struct received rx = consume("/ovb", &plan, 0, NULL, NULL);
    producer_join(&pr);
    cr_assert_eq(rx.msgs, arriving(&plan));
    cr_assert(rx.eos);
    cr_assert_eq(bridge_wait(&out, 60), 0);
    cr_assert_eq(bridge_wait(&in, 60), 0);
    char want[64];
    snprintf(want, sizeof want, "oversize=%llu",
             (unsigned long long)(plan.count - arriving(&plan)));
    cr_assert(log_has("in.log", want), "want %s in:\n%s", want, slurp(path_in("in.log")));
    cr_assert(log_has("in.log", "does not fit"));

    /* --oversize stop: exit 1 at the first one, the messages before it are in
     * the ring. */
    static struct plan p2;
    p2 = plan;
    bridge_init(&in, "in2.log", "in", server.url, "ov2", "/ovd", "--slot-size", "100", "--oversize",
                "stop", NULL);
    bridge_init(&out, "out2.log", "out", "/ovc", server.url, "ov2", NULL);
    bridge_start(&in);
    wait_for_ring("/ovd");
    producer_start(&pr, "/ovc", &p2, 0);
    bridge_start(&out);
    cr_assert_eq(bridge_wait(&in, 60), 1, "in:\n%s", slurp(path_in("in2.log")));
    cr_assert(log_has("in2.log", "stopping"));
    uint64_t first_big = 0;
    while (plan_arrives(&p2, first_big))
        first_big++;
    shmring_t *c = test_open_as("/ovd", SHMRING_CONSUMER);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(c, &st), 0);
    cr_assert_eq(st.pushed, first_big);
    shmring_close(c);
    kill(out.pid, SIGTERM);
    cr_assert_eq(bridge_wait(&out, 60), 0);
    producer_join(&pr);
    finish();
}

/* SIGTERM ends both directions cleanly; --stats prints counters every second;
 * `in` closes its producer handle, so the ring's consumers see end of stream. */
Test(bridge, sigterm_ends_cleanly_with_stats, .timeout = 600)
{
    setup();
    server_start(&server);
    struct bridge in, out;
    bridge_init(&in, "in.log", "in", server.url, "st", "/stb", "--stats", NULL);
    bridge_init(&out, "out.log", "out", "/sta", server.url, "st", "--stats", NULL);
    bridge_start(&in);
    wait_for_ring("/stb");
    shmring_t *p = test_make("/sta", 64, 256, 0);
    bridge_start(&out);
    for (uint64_t id = 0; id < 10; id++)
        test_push_id(p, id, 32);
    shmring_t *c = test_open_as("/stb", SHMRING_CONSUMER);
    unsigned char buf[256];
    for (uint64_t id = 0; id < 10; id++)
        test_expect_id(buf, shmring_pop_wait(c, buf, sizeof buf, (int64_t)(DEADLINE_S * 1e9)), id);
    /* Long enough for a stats line (every second). */
    double end = now_s() + DEADLINE_S;
    while (!log_has("in.log", "stats msgs=") || !log_has("out.log", "stats msgs=")) {
        cr_assert(now_s() < end, "no stats line");
        sleep_s(0.1);
    }
    cr_assert_eq(kill(out.pid, SIGTERM), 0);
    cr_assert_eq(kill(in.pid, SIGINT), 0);
    cr_assert_eq(bridge_wait(&out, 60), 0);
    cr_assert_eq(bridge_wait(&in, 60), 0);
    cr_assert(log_has("in.log", "end msgs=10 "), "%s", slurp(path_in("in.log")));
    cr_assert(log_has("out.log", "end msgs=10 "), "%s", slurp(path_in("out.log")));
    cr_assert_eq(shmring_pop_wait(c, buf, sizeof buf, (int64_t)(DEADLINE_S * 1e9)), -EPIPE);
    shmring_close(c);
    shmring_close(p);
    finish();
}

/* ---- out --subscriber ------------------------------------------------------------ */

/* A competing consumer on a thread (no assertions here: the test checks). */
struct ring_reader {
    pthread_t thread;
    shmring_t *c;
    const struct plan *plan;
    uint64_t msgs; /* messages in order, each well formed */
    uint64_t bad;  /* anything else */
    int end;
};

static void *read_ring(void *arg)
{
    struct ring_reader *rr = arg;
    unsigned char *buf = malloc(rr->plan->slot_size + 1);
    for (uint64_t next = 0; buf != NULL; next++) {
        ssize_t n =
            shmring_pop_wait(rr->c, buf, rr->plan->slot_size + 1, (int64_t)(DEADLINE_S * 1e9));
        uint64_t id = 0;
        if (n < 0) {
            rr->end = (int)n;
            break;
        }
        if (n == (ssize_t)plan_len(rr->plan, next) &&
            (n == 0 || (test_check(buf, (size_t)n, &id) && id == next)))
            rr->msgs++;
        else
            rr->bad++;
    }
    free(buf);
    return NULL;
}

/* `out --subscriber` reads every message of its ring while a competing
 * consumer of the same ring also takes every one of them. */
Test(bridge, out_subscriber_sees_all_beside_a_consumer, .timeout = 600)
{
    setup();
    server_start(&server);
    static struct plan plan; /* static: outlives a failed test's exit */
    plan = (struct plan){
        .count = scaled(100000, 20000), .slot_size = SLOT_SIZE, .target_size = SLOT_SIZE};
    struct bridge in, out;
    bridge_init(&in, "in.log", "in", server.url, "sub.core", "/sbb", "--slots", "4096",
                "--slot-size", "256", NULL);
    bridge_init(&out, "out.log", "out", "/sba", server.url, "sub.core", "--subscriber", "--stats",
                NULL);
    bridge_start(&in);
    wait_for_ring("/sbb");
    struct producer pr = {.plan = &plan};
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 4096, .slot_size = plan.slot_size);
    cr_assert_eq(shmring_create("/sba", &cfg, &pr.ring), 0);
    bridge_start(&out);
    /* The bridge sees what is pushed after it attached: wait for it. */
    shmring_stats_t st = {0};
    double end = now_s() + DEADLINE_S;
    while (shmring_stats(pr.ring, &st) == 0 && st.subscribers == 0) {
        cr_assert(now_s() < end, "out --subscriber did not attach");
        sleep_s(0.01);
    }
    static struct ring_reader local;
    local = (struct ring_reader){.c = test_open_as("/sba", SHMRING_CONSUMER), .plan = &plan};
    cr_assert_eq(pthread_create(&local.thread, NULL, read_ring, &local), 0);
    cr_assert_eq(pthread_create(&pr.thread, NULL, produce, &pr), 0);
    struct received rx = consume("/sbb", &plan, 0, NULL, NULL);
    producer_join(&pr);
    pthread_join(local.thread, NULL);
    cr_assert_eq(rx.msgs, plan.count, "through the bridge");
    cr_assert_eq(rx.duplicates, 0);
    cr_assert(rx.eos, "end of stream did not cross");
    cr_assert_eq(local.msgs, plan.count, "the ring's own consumer");
    cr_assert_eq(local.bad, 0);
    cr_assert_eq(local.end, -EPIPE);
    shmring_close(local.c);
    cr_assert_eq(bridge_wait(&out, 60), 0, "out:\n%s", slurp(path_in("out.log")));
    cr_assert_eq(bridge_wait(&in, 60), 0, "in:\n%s", slurp(path_in("in.log")));
    finish();
}
