#define _GNU_SOURCE
/* Ring basics: FIFO, empty/full, sizes, EMSGSIZE both ways, roles, lease. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common.h"

static shmring_t *make(const char *name, uint32_t slots, uint32_t slot_size, uint32_t flags)
{
    shmring_config_t cfg = {.slots = slots, .slot_size = slot_size, .flags = flags};
    shmring_t *r = NULL;
    cr_assert_eq(shmring_create(name, &cfg, &r), 0);
    return r;
}

Test(ring, fifo_single_handle_roles)
{
    const char *name = test_name("fifo");
    shmring_t *p = make(name, 8, 64, 0);
    shmring_t *c;
    cr_assert_eq(shmring_open(name, SHMRING_CONSUMER, &c), 0);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(shmring_push(p, &i, sizeof i), 0);
    int x = 99;
    cr_assert_eq(shmring_push(p, &x, sizeof x), -EAGAIN);
    for (int i = 0; i < 8; i++) {
        int v = -1;
        cr_assert_eq(shmring_pop(c, &v, sizeof v), (ssize_t)sizeof v);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(shmring_pop(c, &x, sizeof x), -EAGAIN);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_unlink(name), 0);
}

Test(ring, every_size)
{
    const char *name = test_name("sizes");
    shmring_t *p = make(name, 4, 300, SHMRING_PRODUCER | SHMRING_CONSUMER);
    unsigned char in[300], out[300];
    for (size_t len = 0; len <= 300; len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char)(len * 7 + i);
        cr_assert_eq(shmring_push(p, in, len), 0);
        memset(out, 0xee, sizeof out);
        cr_assert_eq(shmring_pop(p, out, sizeof out), (ssize_t)len);
        cr_assert(memcmp(in, out, len) == 0);
    }
    cr_assert_eq(shmring_push(p, in, 301), -EMSGSIZE);
    cr_assert_eq(shmring_push(p, in, 10), 0);
    cr_assert_eq(shmring_pop(p, out, 9), -EMSGSIZE);
    cr_assert_eq(shmring_pop(p, out, 10), 10);
    shmring_close(p);
    shmring_unlink(name);
}
