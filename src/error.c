/* Error text, the log hook and the run-time version. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "shmring.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static shmring_log_fn log_fn;
static void *log_ctx;

SHMRING_API void shmring_set_log(shmring_log_fn fn, void *ctx)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_ctx = ctx;
    pthread_mutex_unlock(&log_lock);
}

void shmring__log_line(const char *line);
void shmring__log_line(const char *line)
{
    pthread_mutex_lock(&log_lock);
    shmring_log_fn fn = log_fn;
    void *ctx = log_ctx;
    pthread_mutex_unlock(&log_lock);
    if (fn != NULL)
        fn(line, ctx);
    else
        fprintf(stderr, "shmring: %s\n", line);
}

SHMRING_API const char *shmring_strerror(int err)
{
    if (err == INT_MIN)
        return "unknown error";
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case EAGAIN:
        return "would block: ring empty or full, or segment not ready";
    case EPIPE:
        return "end of stream: the producer is gone and the ring is drained";
    case EMSGSIZE:
        return "message too large for the slot or the buffer";
    case EPERM:
        return "the handle does not have the role this call needs";
    case EBUSY:
        return "busy: another live producer holds the lease, or a reservation is open";
    case EPROTO:
        return "not a valid shmring segment (bad magic, corrupt or truncated header)";
    case EPROTONOSUPPORT:
        return "segment has an unsupported layout version";
    case EPROTOTYPE:
        return "segment holds another kind of object";
    case EUSERS:
        return "too many handles attached to the segment";
    case ESTALE:
        return "claimed data was overwritten while held";
    case EOWNERDEAD:
        return "the producer lease was taken over by another handle";
    case ETIMEDOUT:
        return "timed out";
    case ECANCELED:
        return "wait ended by shmring_interrupt or shmring_state_interrupt";
    case E2BIG:
        return "a config struct of a later release sets a field this library does not know";
    case EINPROGRESS:
        return "another consumer is part-way through a claim on the slot: neither empty nor full";
    default:
        return strerror(err);
    }
}

SHMRING_API const char *shmring_version(void)
{
    return SHMRING_VERSION_STRING;
}
