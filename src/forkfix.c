/*
 * Segment descriptors across fork(): a child gets descriptors of its own.
 */
#define _GNU_SOURCE
#include "segment.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- Descriptors across fork() ----------------------------------------- */

/*
 * A child of fork() shares its parent's open file descriptions, and with
 * them the parent's OFD liveness locks: as long as the child keeps them, a
 * dead parent would look alive. So the child replaces the descriptor of every
 * open segment with a fresh open file description (no locks) under the same
 * number and maps it over the inherited mapping (which also references the
 * description); the inherited description then dies with the parent.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmring__seg *open_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&open_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&open_lock);
}

static void atfork_child(void)
{
    for (struct shmring__seg *s = open_head; s != NULL; s = s->next_open) {
        int nfd = shmring__reopen_fd(s->fd);
        if (nfd < 0)
            continue;
        /* The mapping holds a reference to the description too: map the
         * fresh one over it (same pages, same address). */
        if (s->base != NULL && s->size > 0)
            mmap(s->base, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, nfd, 0);
        if (nfd != s->fd) {
            dup3(nfd, s->fd, O_CLOEXEC);
            close(nfd);
        }
    }
    pthread_mutex_unlock(&open_lock);
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void shmring__seg_track(struct shmring__seg *s)
{
    if (s->fd < 0)
        return;
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&open_lock);
    s->next_open = open_head;
    open_head = s;
    pthread_mutex_unlock(&open_lock);
}

void shmring__seg_untrack(struct shmring__seg *s)
{
    if (s->fd < 0)
        return;
    pthread_mutex_lock(&open_lock);
    struct shmring__seg **pp = &open_head;
    while (*pp != NULL && *pp != s)
        pp = &(*pp)->next_open;
    if (*pp == s)
        *pp = s->next_open;
    pthread_mutex_unlock(&open_lock);
}
