/*
 * The memory rule: a segment is backed only if it fits what this process may
 * use. A segment larger than that would not fail with an error code: its
 * pages would be charged at fault time and the process OOM-killed.
 *
 * The room is the smallest of: physical memory; for the memory cgroup of
 * this process and each of its ancestors, the limit minus what is charged
 * now (cgroup v2: memory.max - memory.current; v1: memory.limit_in_bytes -
 * memory.usage_in_bytes). A cgroup file that cannot be read sets no bound.
 */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A number from a cgroup file; UINT64_MAX for "max" or when unreadable. */
static uint64_t read_u64(const char *dir, const char *file)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
        return UINT64_MAX;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return UINT64_MAX;
    char buf[64];
    uint64_t v = UINT64_MAX;
    if (fgets(buf, sizeof buf, f) != NULL && buf[0] >= '0' && buf[0] <= '9')
        v = strtoull(buf, NULL, 10);
    fclose(f);
    return v;
}

/* Room left in one cgroup directory: limit - usage, or UINT64_MAX when unbounded. */
static uint64_t cgroup_room(const char *dir, const char *limit_file, const char *usage_file)
{
    uint64_t limit = read_u64(dir, limit_file);
    if (limit == UINT64_MAX)
        return UINT64_MAX;
    uint64_t usage = read_u64(dir, usage_file);
    if (usage == UINT64_MAX)
        usage = 0;
    return limit > usage ? limit - usage : 0;
}

/* The smallest room along mount/path and its ancestors up to mount. */
static uint64_t hierarchy_room(const char *mount, const char *path, const char *limit_file,
                               const char *usage_file)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s%s", mount, path) >= (int)sizeof dir)
        return UINT64_MAX;
    size_t base = strlen(mount);
    uint64_t room = UINT64_MAX;
    for (;;) {
        uint64_t r = cgroup_room(dir, limit_file, usage_file);
        if (r < room)
            room = r;
        char *slash = strrchr(dir, '/');
        if (slash == NULL || (size_t)(slash - dir) < base)
            break;
        *slash = '\0';
        if (strlen(dir) < base)
            break;
    }
    return room;
}

/* Room under the memory cgroups of this process (v1 and v2), from /proc/self/cgroup. */
static uint64_t cgroups_room(void)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return UINT64_MAX;
    uint64_t room = UINT64_MAX;
    char line[4096];
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        const char *path = c2 + 1;
        if (strcmp(path, "/") == 0)
            path = "";
        uint64_t r = UINT64_MAX;
        *c2 = '\0';
        if (strcmp(line, "0:") == 0) {
            r = hierarchy_room("/sys/fs/cgroup", path, "memory.max", "memory.current");
            uint64_t u =
                hierarchy_room("/sys/fs/cgroup/unified", path, "memory.max", "memory.current");
            r = u < r ? u : r;
        } else {
            /* v1: "N:controller[,controller]" */
            char *ctl = c1 + 1, *save = NULL;
            for (char *t = strtok_r(ctl, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, "memory") == 0)
                    r = hierarchy_room("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes",
                                       "memory.usage_in_bytes");
        }
        if (r < room)
            room = r;
    }
    fclose(f);
    return room;
}

int shmring__mem_check(uint64_t bytes)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && bytes > (uint64_t)pages * (uint64_t)page)
        return -ENOMEM;
    return bytes > cgroups_room() ? -ENOMEM : 0;
}
