/*
 * Clocks, processes (liveness by pid and start time) and logging.
 */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- Clocks and processes ---------------------------------------------- */

uint64_t shmring__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t shmring__realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Read a process's state letter and start time (clock ticks since boot)
 * from /proc/PID/stat. Returns 0, or -1 if unknown.
 */
static int proc_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The command name may hold spaces and ')': fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0')
        return -1;
    *state = p[2];
    /* Field 3 (state) follows; starttime is field 22. */
    int field = 2;
    for (p++; *p != '\0' && field < 21; p++)
        if (*p == ' ')
            field++;
    *start = strtoull(p, NULL, 10);
    return 0;
}

uint64_t shmring__proc_start_time(pid_t pid)
{
    char state;
    uint64_t start;
    return proc_stat(pid, &state, &start) == 0 ? start : 0;
}

int shmring__pid_alive(pid_t pid, uint64_t start)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state;
    uint64_t now;
    /* Unknown (no /proc): trust the pid. */
    if (proc_stat(pid, &state, &now) != 0)
        return 1;
    /* A zombie is dead, even if its parent has not reaped it yet. */
    if (state == 'Z' || state == 'X')
        return 0;
    /* A different start time: the pid was reused. */
    return start == 0 || now == start;
}

uint64_t shmring__self_start_time(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static pid_t cached_pid;
    static uint64_t cached_start;
    pid_t me = getpid();
    pthread_mutex_lock(&lock);
    if (cached_pid != me) {
        cached_start = shmring__proc_start_time(me);
        cached_pid = me;
    }
    uint64_t s = cached_start;
    pthread_mutex_unlock(&lock);
    return s;
}

/* ---- Logging ------------------------------------------------------------ */

/* Defined in error.c. */
void shmring__log_line(const char *line);

void shmring__log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    shmring__log_line(line);
}
