/* Producer takeover: a successor resumes exactly where a dead producer stopped, even mid-batch. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
#include "ring.h"

#define SLOTS   8u
#define SLOT_SZ 64u
#define BATCH   3u
#define MSG_LEN 40u

/* The ring's shared lines, mapped from its file in the shm directory. */
static struct shmring__ring_shared *map_ring(const char *name, void **base, size_t *size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s",
             getenv("SHMRING_SHM_DIR") ? getenv("SHMRING_SHM_DIR") : "/dev/shm", name + 1);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s", path);
    *size = SHMRING__HEADER_SIZE;
    *base = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    cr_assert(*base != MAP_FAILED);
    struct shmring__hdr *h = *base;
    return (struct shmring__ring_shared *)(void *)h->object;
}

/*
 * The dead producer published a whole batch, but died before storing
 * write_index (the single step after the batch's slots are published). The
 * consumer takes the batch; then a new producer takes the lease over and
 * must be able to push the next message, which the consumer gets next.
 */
Test(resume, successor_after_death_between_batch_and_write_index, .timeout = 30)
{
    if (test_heap_forced())
        cr_skip_test("needs processes");
    test_quiet_log();
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("resume"));
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = SLOTS, .slot_size = SLOT_SZ, .flags = SHMRING_CONSUMER);
    shmring_t *c = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &c), 0);

    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *p = NULL;
        if (shmring_open(name, SHMRING_PRODUCER, &p) != 0)
            _exit(2);
        unsigned char msg[BATCH][MSG_LEN];
        struct iovec iov[BATCH];
        for (unsigned i = 0; i < BATCH; i++) {
            test_fill(msg[i], MSG_LEN, i);
            iov[i] = (struct iovec){msg[i], MSG_LEN};
        }
        if (shmring_push_batch(p, iov, BATCH) != BATCH)
            _exit(3);
        /* The state of a producer killed after publishing the batch's slots
         * and before its write_index store. */
        void *base;
        size_t size;
        struct shmring__ring_shared *sh = map_ring(name, &base, &size);
        __atomic_store_n(&sh->write_index, 0, __ATOMIC_SEQ_CST);
        raise(SIGKILL);
        _exit(4);
    }
    int st = test_wait_child(pid);
    cr_assert_eq(st, 128 + SIGKILL, "producer status %d", st);

    unsigned char buf[SLOT_SZ];
    uint64_t id;
    for (uint64_t i = 0; i < BATCH; i++) {
        ssize_t n = shmring_pop(c, buf, sizeof buf);
        cr_assert_eq(n, (ssize_t)MSG_LEN, "pop %llu: %s", (unsigned long long)i,
                     shmring_strerror((int)n));
        cr_assert(test_check(buf, (size_t)n, &id) && id == i, "message %llu",
                  (unsigned long long)i);
    }

    shmring_t *p2 = NULL;
    cr_assert_eq(shmring_open(name, SHMRING_PRODUCER, &p2), 0, "takeover");
    test_fill(buf, MSG_LEN, 100);
    int rc = shmring_push(p2, buf, MSG_LEN);
    ssize_t n = shmring_pop(c, buf, sizeof buf);
    shmring_close(p2);
    shmring_close(c);
    shmring_unlink(name);
    cr_assert_eq(rc, 0, "the successor's first push after the takeover: %s", shmring_strerror(rc));
    cr_assert_eq(n, (ssize_t)MSG_LEN, "pop after the takeover: %s", shmring_strerror((int)n));
    cr_assert(test_check(buf, (size_t)n, &id) && id == 100, "the successor's message");
}
