/* Waiting for a named object to appear; private to src/. */
#ifndef SHMRING_APPEAR_H
#define SHMRING_APPEAR_H

#include <stdint.h>

/* Open `name` with flags into *out: 0 or a negative errno (-ENOENT: absent). */
typedef int (*shmring__try_open_fn)(const char *name, uint32_t flags, void *out);

/*
 * Call try_open until it finds the object or fails for another reason than
 * its absence (or its being created), sleeping in between until something
 * is created: inotify on the shm directory, or, on the heap backend, until
 * shmring__appear_notify. timeout_ns < 0: forever. Returns try_open's
 * result, -ETIMEDOUT, -EINVAL (bad name), or the inotify errors (-ENOENT:
 * no shm directory; -EMFILE, -ENOSPC: inotify limits; -ENOMEM).
 */
int shmring__appear_wait(const char *name, uint32_t flags, int64_t timeout_ns,
                         shmring__try_open_fn try_open, void *out);

/* A named object was created in this process: wake heap waiters. */
void shmring__appear_notify(void);

#endif /* SHMRING_APPEAR_H */
