/*
 * Waiting for a named ring or state table to appear (shmring_open_wait,
 * shmring_state_open_wait).
 *
 * Named shm segments are files in the shm directory: the waiter watches the
 * directory with inotify (created, renamed into it, resized or given its
 * mode by its creator) and tries to open after each event. Segments of the
 * heap backend (and named memfd segments) live in this process's registry:
 * their creator calls shmring__appear_notify() after publishing, an
 * eventcount (wait.h) that costs it a fence and a load when nobody waits.
 */
#define _GNU_SOURCE
#include "appear.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "segment.h"
#include "wait.h"

#define APPEAR_EVENTS                                                                              \
    (IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_ONLYDIR)

/* Pause before trying again an object caught in the middle of its creation,
 * and how long it may look so before its error stands (a creator publishes
 * within about a second, or openers give up on it with -EAGAIN). */
#define CREATING_PAUSE_NS 1000000L
#define CREATING_MAX_NS   2000000000ull

/* Named objects created in this process; process-local, so a plain word. */
static uint32_t appear_ec;

void shmring__appear_notify(void)
{
    /* Fence, then the flag; pairs with shmring__ec_prepare() in shmring__appear_wait(). */
    shmring__ec_notify(&appear_ec);
}

static int heap_only(uint32_t flags)
{
    return (flags & SHMRING__OPEN_LOCAL) || shmring__force_heap_env();
}

/* An inotify descriptor watching the shm directory, or -errno. */
static int watch_dir(void)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (inotify_add_watch(fd, shmring__shm_dir(), APPEAR_EVENTS) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Sleep until an inotify event or ns pass; empties the queue. */
static void wait_event(int fd, uint64_t ns)
{
    uint64_t ms = (ns + 999999u) / 1000000u; /* round up: a short wait does not spin */
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms > INT32_MAX ? INT32_MAX : (int)ms) > 0) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        while (read(fd, buf, sizeof buf) > 0)
            ;
    }
}

int shmring__appear_wait(const char *name, uint32_t flags, int64_t timeout_ns,
                         shmring__try_open_fn try_open, void *out)
{
    if (shmring__name_check(name) < 0)
        return -EINVAL;
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : shmring__now_ns() + (uint64_t)timeout_ns;
    int heap = heap_only(flags);
    int fd = -1;
    if (!heap && (fd = watch_dir()) < 0)
        return fd;
    int rc;
    uint64_t creating_since = 0;
    for (;;) {
        /* Announce the waiter before trying (no lost wake-up from a creator
         * in this process); the inotify watch is set before the first try. */
        uint32_t seen = heap ? shmring__ec_prepare(&appear_ec) : 0;
        rc = try_open(name, flags, out);
        /* Absent, or caught while its creator sizes or initialises it. */
        int creating = rc == -EPROTO || rc == -EAGAIN;
        if (rc != -ENOENT && !creating)
            break;
        uint64_t now = shmring__now_ns();
        if (now >= deadline) {
            if (rc == -ENOENT)
                rc = -ETIMEDOUT;
            break;
        }
        uint64_t left = deadline - now;
        if (creating && creating_since == 0)
            creating_since = now;
        if (creating && now - creating_since >= CREATING_MAX_NS)
            break; /* not a creation in progress: a broken segment */
        if (!creating)
            creating_since = 0;
        if (creating) {
            struct timespec ts = {0, CREATING_PAUSE_NS};
            nanosleep(&ts, NULL);
        } else if (heap) {
            shmring__ec_sleep(&appear_ec, seen, left);
        } else {
            wait_event(fd, left);
        }
    }
    if (fd >= 0)
        close(fd);
    return rc;
}
