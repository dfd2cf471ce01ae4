/*
 * Closing handles: a consumer or observer that holds no claim closes without
 * touching a single slot (the slots of its mapping are made inaccessible
 * first: a walk over them would crash the test), whatever other consumers
 * hold; one that holds claims gives exactly those back.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"

#define MAX_MAPS 64

/* Start and end of every mapping of segment `name` in this process. */
static int maps_of(const char *name, uintptr_t start[MAX_MAPS], uintptr_t end[MAX_MAPS])
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    char line[1024];
    size_t nlen = strlen(name);
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL && n < MAX_MAPS) {
        size_t len = strcspn(line, "\n");
        line[len] = '\0';
        if (len < nlen || strcmp(line + len - nlen, name) != 0)
            continue;
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2) {
            start[n] = a;
            end[n] = b;
            n++;
        }
    }
    fclose(f);
    return n;
}

/*
 * Open `name` with `flags`, let `use` exercise the handle, then make its
 * slots inaccessible (only the header page stays) and close it.
 */
static void close_without_touching_slots(const char *name, uint32_t flags, void (*use)(shmring_t *))
{
    uintptr_t s0[MAX_MAPS], e0[MAX_MAPS], s1[MAX_MAPS], e1[MAX_MAPS];
    int n0 = maps_of(name, s0, e0);
    shmring_t *h = test_open_as(name, flags);
    if (use != NULL)
        use(h);
    int n1 = maps_of(name, s1, e1);
    cr_assert_eq(n1, n0 + 1, "one new mapping for the new handle");
    uintptr_t start = 0, end = 0;
    for (int i = 0; i < n1 && start == 0; i++) {
        int old = 0;
        for (int j = 0; j < n0; j++)
            old |= s0[j] == s1[i];
        if (!old) {
            start = s1[i];
            end = e1[i];
        }
    }
    cr_assert_gt(end, start + 4096);
    cr_assert_eq(mprotect((void *)(start + 4096), end - start - 4096, PROT_NONE), 0);
    shmring_close(h); /* crashes here if it walks the slots */
}

static void pop_and_release(shmring_t *c)
{
    char buf[64];
    cr_assert_geq(shmring_pop(c, buf, sizeof buf), 16);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), 0);
    cr_assert_eq(shmring_release(c, &m), 0);
}

Test(close, consumer_and_observer_without_claims_touch_no_slot)
{
    if (test_heap_forced())
        cr_skip_test("the heap backend shares one mapping between handles");
    char name[128];
    snprintf(name, sizeof name, "%s", test_name("close"));
    shmring_t *p = test_make(name, 256, 64, SHMRING_PRODUCER);
    for (uint64_t id = 0; id < 8; id++)
        test_push_id(p, id, 32);
    /* Another consumer holds a claim all along. */
    shmring_t *other = test_open_as(name, SHMRING_CONSUMER);
    shmring_msg_t held;
    cr_assert_eq(shmring_claim(other, &held), 0);
    close_without_touching_slots(name, SHMRING_CONSUMER, pop_and_release);
    close_without_touching_slots(name, SHMRING_OBSERVER, NULL);
    close_without_touching_slots(name, SHMRING_CONSUMER, NULL);
    /* The other consumer's claim is still its own. */
    uint64_t id;
    cr_assert(test_check(held.data, held.len, &id));
    cr_assert_eq(id, 0);
    cr_assert_eq(shmring_release(other, &held), 0);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.consumers, 1);
    cr_assert_eq(st.observers, 0);
    cr_assert_eq(st.abandoned, 0);
    shmring_close(other);
    shmring_close(p);
    shmring_unlink(name);
}

Test(close, claims_held_at_close_are_given_back)
{
    const char *name = test_name("closeheld");
    shmring_t *p = test_make(name, 4, 64, SHMRING_PRODUCER);
    for (uint64_t id = 0; id < 4; id++)
        test_push_id(p, id, 32);
    shmring_t *other = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_msg_t m[3];
    cr_assert_eq(shmring_claim(c, &m[0]), 0);
    cr_assert_eq(shmring_claim(c, &m[1]), 0);
    cr_assert_eq(shmring_claim(other, &m[2]), 0);
    cr_assert_eq(shmring_release(c, &m[0]), 0);
    shmring_close(c); /* still holds id 1 */
    char buf[64];
    test_expect_id(buf, shmring_pop(other, buf, sizeof buf), 3);
    /* Slots of ids 0, 1 and 3 are free again; id 2's is still claimed. */
    test_push_id(p, 4, 32);
    test_push_id(p, 5, 32);
    cr_assert_eq(shmring_push(p, buf, 16), -EAGAIN, "the other consumer's claim pins its slot");
    cr_assert_eq(shmring_release(other, &m[2]), 0);
    test_push_id(p, 6, 32);
    shmring_stats_t st;
    cr_assert_eq(shmring_stats(p, &st), 0);
    cr_assert_eq(st.abandoned, 0, "a claim given back at close is not abandoned");
    shmring_close(other);
    shmring_close(p);
    shmring_unlink(name);
}
