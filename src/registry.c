/*
 * The registry of process-local named segments: a ring or table that fell
 * back to memfd or heap memory stays reachable by name in the process that
 * created it (and, for memfd, in its children). Entries are reference
 * counted: memory and descriptor go with the last handle of an unlinked
 * name.
 */
#define _GNU_SOURCE
#include "registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmring__reg *reg_head;

static struct shmring__reg *reg_find_locked(const char *name)
{
    for (struct shmring__reg *e = reg_head; e != NULL; e = e->next)
        if (e->linked && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void reg_unlink_locked(struct shmring__reg *e)
{
    struct shmring__reg **pp = &reg_head;
    while (*pp != NULL && *pp != e)
        pp = &(*pp)->next;
    if (*pp == e)
        *pp = e->next;
    e->linked = 0;
}

static void reg_put_locked(struct shmring__reg *e)
{
    if (--e->refs > 0 || e->linked)
        return;
    if (e->fd >= 0)
        close(e->fd);
    free(e->heap);
    free(e);
}

int shmring__reg_add(const char *name, struct shmring__seg *s)
{
    struct shmring__reg *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    e->backend = s->backend;
    e->size = s->size;
    e->refs = 1;
    e->linked = name != NULL;
    e->fd = -1;
    if (s->backend == SHMRING_BACKEND_HEAP) {
        e->heap = s->base;
    } else if (name != NULL) {
        /* Its own open file description: a dup would share the creator's
         * liveness locks with every child that inherits the registry. */
        e->fd = shmring__reopen_fd(s->fd);
        if (e->fd < 0) {
            int err = e->fd;
            free(e);
            return err;
        }
    }
    if (name != NULL)
        snprintf(e->name, sizeof e->name, "%s", name);
    pthread_mutex_lock(&reg_lock);
    if (name != NULL && reg_find_locked(name) != NULL) {
        pthread_mutex_unlock(&reg_lock);
        if (e->fd >= 0)
            close(e->fd);
        free(e);
        return -EEXIST;
    }
    if (e->linked) {
        e->next = reg_head;
        reg_head = e;
    }
    pthread_mutex_unlock(&reg_lock);
    s->reg = e;
    return 0;
}

int shmring__reg_contains(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    int found = reg_find_locked(name) != NULL;
    pthread_mutex_unlock(&reg_lock);
    return found;
}

struct shmring__reg *shmring__reg_get(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    struct shmring__reg *e = reg_find_locked(name);
    if (e != NULL)
        e->refs++;
    pthread_mutex_unlock(&reg_lock);
    return e;
}

void shmring__reg_put(struct shmring__reg *e)
{
    pthread_mutex_lock(&reg_lock);
    reg_put_locked(e);
    pthread_mutex_unlock(&reg_lock);
}

int shmring__reg_unlink(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    struct shmring__reg *e = reg_find_locked(name);
    if (e != NULL) {
        reg_unlink_locked(e);
        e->refs++; /* reg_put_locked() frees once the last handle is gone */
        reg_put_locked(e);
    }
    pthread_mutex_unlock(&reg_lock);
    return e != NULL;
}
