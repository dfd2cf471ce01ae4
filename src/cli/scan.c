/* Segments in the shm directory, described through shmring_inspect (never mapped), for ls, gc
 * and rm. */
#define _GNU_SOURCE
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cli_seg_type_name(enum cli_seg_type type)
{
    switch (type) {
    case CLI_SEG_RING:
        return "ring";
    case CLI_SEG_STATE:
        return "state";
    default:
        return "unknown-version";
    }
}

static void from_info(const char *name, const shmring_info_t *in, struct cli_seg *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->info = *in;
    s->type = in->kind == SHMRING_KIND_RING    ? CLI_SEG_RING
              : in->kind == SHMRING_KIND_STATE ? CLI_SEG_STATE
                                               : CLI_SEG_UNKNOWN_VERSION;
    s->size = in->size;
    s->uid = (uid_t)in->uid;
    s->creator_pid = in->creator_pid;
    s->creator_alive = in->creator_alive;
    s->producer_pid = in->producer_pid;
    s->producer_alive = in->producer_alive;
    s->producer_closed = in->producer_closed;
    s->consumers = in->consumers;
    s->observers = in->observers;
    s->users = in->users;
    s->parties = in->nparties;
    s->any_alive = in->any_alive;
    s->fill = in->fill;
    s->capacity = in->capacity;
    s->item_size = in->item_size;
}

int cli_seg_read(const char *name, struct cli_seg *out)
{
    shmring_info_t info;
    int rc = shmring_inspect(name, &info);
    if (rc == -ENOENT)
        return -ENOENT;
    if (rc < 0)
        return 0;
    from_info(name, &info, out);
    return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

cli_unreadable_fn cli_scan_unreadable;

static int scan_entry(const char *file, cli_seg_fn fn, void *ctx)
{
    char name[SHMRING_NAME_MAX + 1];
    int n = snprintf(name, sizeof name, "/%s", file);
    if (n < 0 || n > SHMRING_NAME_MAX || shmring_name_check(name) < 0)
        return 0;
    shmring_info_t info;
    int rc = shmring_inspect(name, &info);
    if (rc == -EACCES && cli_scan_unreadable != NULL)
        cli_scan_unreadable(name, ctx);
    if (rc < 0)
        return 0;
    struct cli_seg s;
    from_info(name, &info, &s);
    return fn(&s, ctx);
}

int cli_scan(cli_seg_fn fn, void *ctx)
{
    /* Only the names come from this listing: each is then inspected (and
     * removed) by the library, relative to its own checked directory descriptor. */
    int dfd = open(shmring_shm_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    struct dirent **list = NULL;
    int n = scandirat(dfd, ".", &list, NULL, by_name);
    int err = n < 0 ? -errno : 0;
    close(dfd);
    if (n < 0)
        return err;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0)
            rc = scan_entry(list[i]->d_name, fn, ctx);
        free(list[i]);
    }
    free(list);
    return rc;
}
