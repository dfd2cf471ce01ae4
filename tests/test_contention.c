/*
 * Contention is not emptiness: -EAGAIN from claim and push means empty or
 * full, nothing else; a claim part-way through (another consumer between
 * storing its claim and taking the message) is waited out, reclaimed if its
 * owner died, cleared if it is stale, or reported as -EINPROGRESS; and the
 * stats count only real empty and full events. The deterministic tests,
 * which hold a claimer at a named point, are in test_fault_claims.c.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"

Test(contention, strerror_names_a_claim_part_way_through)
{
    const char *s = shmring_strerror(-EINPROGRESS);
    cr_assert_not_null(strstr(s, "claim"), "%s", s);
    cr_assert_str_neq(s, shmring_strerror(-EAGAIN));
}

/* ---- Claimers racing on a large ring ------------------------------------ */

struct claimer {
    const char *name;
    uint32_t *seen;
    uint64_t n;
    uint64_t claimed, eagain, inprogress, epipe, errors;
    int last_error;
};

/* Claim and release until the end of the stream: every -EAGAIN is a lie,
 * since the producer published everything and closed before we started. */
static void *claim_all(void *arg)
{
    struct claimer *w = arg;
    shmring_t *c;
    if (shmring_open(w->name, SHMRING_CONSUMER, &c) != 0) {
        w->errors++;
        return NULL;
    }
    uint64_t bad = 0;
    for (;;) {
        shmring_msg_t m;
        int rc = shmring_claim(c, &m);
        if (rc == -EPIPE) {
            w->epipe++;
            break;
        }
        if (rc == -EAGAIN) {
            w->eagain++;
            continue;
        }
        if (rc == -EINPROGRESS) {
            w->inprogress++;
            continue;
        }
        if (rc != 0) {
            w->errors++;
            w->last_error = rc;
            break;
        }
        uint64_t id;
        if (!test_check(m.data, m.len, &id))
            w->errors++;
        else
            h_mark(w->seen, w->n, id, &bad);
        w->claimed++;
        if (shmring_release(c, &m) != 0)
            w->errors++;
    }
    w->errors += bad;
    shmring_close(c);
    return NULL;
}

static void claimers_on_a_large_ring(int nthreads)
{
    const char *name = test_name("bigclaim");
    const uint32_t slots = 1u << 20;
    uint64_t n = h_count(slots);
    if (n > slots)
        n = slots;
    shmring_t *p = test_make(name, slots, 16, SHMRING_PRODUCER);
    shmring_t *obs = test_open_as(name, SHMRING_OBSERVER);
    for (uint64_t id = 0; id < n; id++)
        test_push_id(p, id, 16);
    shmring_close(p);

    uint32_t *seen = calloc(n, sizeof *seen);
    cr_assert_not_null(seen);
    struct claimer w[4];
    pthread_t t[4];
    h_arm_deadline(120);
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct claimer){.name = name, .seen = seen, .n = n};
        cr_assert_eq(pthread_create(&t[i], NULL, claim_all, &w[i]), 0);
    }
    uint64_t eagain = 0, inprogress = 0, epipe = 0, claimed = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].errors, 0, "claimer %d: errors (last %d)", i, w[i].last_error);
        eagain += w[i].eagain;
        inprogress += w[i].inprogress;
        epipe += w[i].epipe;
        claimed += w[i].claimed;
    }
    h_disarm_deadline();
    cr_log_info("%d claimers, %llu messages: %llu -EAGAIN, %llu -EINPROGRESS", nthreads,
                (unsigned long long)n, (unsigned long long)eagain, (unsigned long long)inprogress);
    cr_assert_eq(eagain, 0, "%llu -EAGAIN (\"empty\") while messages waited",
                 (unsigned long long)eagain);
    cr_assert_eq(epipe, (uint64_t)nthreads);
    cr_assert_eq(claimed, n);
    h_check_exactly_once(seen, n);

    shmring_stats_t st;
    cr_assert_eq(shmring_stats(obs, &st), 0);
    cr_assert_eq(st.popped, n);
    cr_assert_eq(st.count, 0);
    /* Only the real ends of the stream are empty events. */
    cr_assert_eq(st.empty_events, epipe, "empty_events %llu, real empties %llu",
                 (unsigned long long)st.empty_events, (unsigned long long)epipe);
    free(seen);
    shmring_close(obs);
    shmring_unlink(name);
}

Test(contention, two_claimers_never_see_empty_while_messages_wait, .timeout = 300)
{
    claimers_on_a_large_ring(2);
}

Test(contention, four_claimers_never_see_empty_while_messages_wait, .timeout = 300)
{
    claimers_on_a_large_ring(4);
}
