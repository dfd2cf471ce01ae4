/*
 * Waiting for a segment to appear in the shm directory (recv --wait, and
 * recv --follow when its ring is replaced): inotify on the directory, so
 * the waiter sleeps until a file is created there; a short poll only where
 * inotify is unavailable (no kernel support, or out of inotify instances or
 * watches).
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/inotify.h>
#include <unistd.h>

/* Poll period without inotify. */
#define APPEAR_POLL_NS 20000000LL /* 20 ms */

/*
 * Events that may mean a segment became openable: created or renamed into
 * the directory, resized by its creator (ftruncate) or given its mode
 * (fchmod); the directory itself going away ends the wait for an event.
 */
#define APPEAR_EVENTS                                                                              \
    (IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF |           \
     IN_MOVE_SELF | IN_ONLYDIR)

int cli_appear_open(struct cli_appear *w)
{
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0)
        return -errno; /* no inotify: poll */
    if (inotify_add_watch(w->fd, shmring_shm_dir(), APPEAR_EVENTS) >= 0)
        return 0;
    int err = errno;
    close(w->fd);
    w->fd = -1;
    return -err; /* no directory (yet), or out of watches: the caller may poll */
}

/* Read the pending events; 1 if the watch is gone (the directory was removed or moved). */
static int drain(int fd)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int gone = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *e = (const void *)(buf + off);
            gone |= (e->mask & IN_IGNORED) != 0;
            off += (ssize_t)sizeof *e + (ssize_t)e->len;
        }
    }
    return gone;
}

int cli_appear_wait(struct cli_appear *w, uint64_t deadline_ns, int64_t max_ns)
{
    uint64_t now = cli_now_ns();
    if (now >= deadline_ns)
        return -ETIMEDOUT;
    uint64_t left = deadline_ns - now;
    if (w->fd < 0 && (max_ns <= 0 || max_ns > APPEAR_POLL_NS))
        max_ns = APPEAR_POLL_NS;
    if (max_ns > 0 && (uint64_t)max_ns < left)
        left = (uint64_t)max_ns;
    if (w->fd < 0) {
        cli_sleep_ns((int64_t)left);
        return 0;
    }
    /* Round up to whole milliseconds so that a short wait does not spin. */
    uint64_t ms = (left + 999999u) / 1000000u;
    struct pollfd p = {w->fd, POLLIN, 0};
    if (poll(&p, 1, ms > INT32_MAX ? INT32_MAX : (int)ms) > 0 && drain(w->fd))
        cli_appear_close(w); /* no directory to watch any more: poll from now on */
    return 0;
}

void cli_appear_close(struct cli_appear *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}
