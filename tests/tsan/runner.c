/* Runner of the Criterion-compatible TSan test shim: each test in a forked child. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SKIP_STATUS 77

static struct cr_shim_test *head, **tail = &head;

void cr_shim_register(struct cr_shim_test *t)
{
    *tail = t;
    tail = &t->next;
}

void cr_shim_fail(const char *file, int line, const char *what, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[----] %s:%d: %s. ", file, line, what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

void cr_shim_skip(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[SKIP] ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(SKIP_STATUS);
}

void cr_shim_log(const char *level, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[%s] ", level);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_one(struct cr_shim_test *t, double default_timeout)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        double to = t->data.timeout > 0 ? t->data.timeout : default_timeout;
        alarm((unsigned)(to + 0.999));
        t->fn();
        fflush(NULL);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    fprintf(stderr, "[----] %s::%s: killed by signal %d%s\n", t->suite, t->name, WTERMSIG(st),
            WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
    return 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
    double default_timeout = 300;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            default_timeout = atof(argv[++i]);
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
            i++;
    }
    int tested = 0, passed = 0, failed = 0, crashed = 0, skipped = 0;
    for (struct cr_shim_test *t = head; t != NULL; t = t->next) {
        char full[256];
        snprintf(full, sizeof full, "%s::%s", t->suite, t->name);
        if (filter != NULL && strstr(full, filter) == NULL)
            continue;
        if (t->data.disabled) {
            skipped++;
            continue;
        }
        double t0 = now_s();
        int rc = run_one(t, default_timeout);
        double dt = now_s() - t0;
        tested++;
        if (rc == 0) {
            passed++;
            fprintf(stderr, "[PASS] %s: (%.2fs)\n", full, dt);
        } else if (rc == SKIP_STATUS) {
            tested--;
            skipped++;
            fprintf(stderr, "[SKIP] %s\n", full);
        } else if (rc >= 128) {
            crashed++;
            fprintf(stderr, "[FAIL] %s: crashed (%.2fs)\n", full, dt);
        } else {
            failed++;
            fprintf(stderr, "[FAIL] %s: (%.2fs)\n", full, dt);
        }
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d\n",
            tested, passed, failed + crashed, crashed);
    return failed + crashed == 0 ? 0 : 1;
}
