/*
 * The registry of process-local named segments (memfd and heap), private to
 * src/. See registry.c.
 */
#ifndef SHMRING_REGISTRY_H
#define SHMRING_REGISTRY_H

#include "segment.h"

/* backend, fd, heap and size are fixed once the entry is added. */
struct shmring__reg {
    struct shmring__reg *next;
    char name[SHMRING_NAME_MAX + 1];
    int backend;
    int fd;     /* memfd, or -1 */
    void *heap; /* heap memory, or NULL */
    size_t size;
    unsigned refs; /* open handles */
    int linked;    /* still reachable by name */
};

/*
 * Register segment s (memfd or heap, just created) under name, or unnamed
 * (name NULL: only reference counted). The entry owns the heap memory and a
 * descriptor of its own; s->reg points to it. -EEXIST, -ENOMEM, or an errno
 * of reopening the descriptor.
 */
int shmring__reg_add(const char *name, struct shmring__seg *s);

/* 1 if name is registered (and not unlinked). */
int shmring__reg_contains(const char *name);

/* The entry of name with one more reference, or NULL. */
struct shmring__reg *shmring__reg_get(const char *name);

/* Drop a reference; the last one of an unlinked entry frees it. */
void shmring__reg_put(struct shmring__reg *e);

/* Remove name from the registry; 1 if it was there. */
int shmring__reg_unlink(const char *name);

#endif /* SHMRING_REGISTRY_H */
