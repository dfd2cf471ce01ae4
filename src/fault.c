/* Fault injection: the table of points, and the run-time rules (fault.h). */
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <string.h>

static const struct {
    const char *name;
    const char *what;
} points[] = {
#define SHMRING__FAULT_ROW(id, name, what) {name, what},
    SHMRING__FAULT_POINTS(SHMRING__FAULT_ROW)
#undef SHMRING__FAULT_ROW
};

_Static_assert(sizeof points / sizeof points[0] == SHMRING__FP_COUNT, "one row per point");

int shmring__fault_count(void)
{
    return SHMRING__FP_COUNT;
}

const char *shmring__fault_name(int point)
{
    return point >= 0 && point < SHMRING__FP_COUNT ? points[point].name : NULL;
}

const char *shmring__fault_describe(int point)
{
    return point >= 0 && point < SHMRING__FP_COUNT ? points[point].what : NULL;
}

int shmring__fault_lookup(const char *name)
{
    for (int i = 0; name != NULL && i < SHMRING__FP_COUNT; i++)
        if (strcmp(points[i].name, name) == 0)
            return i;
    return -ENOENT;
}

#if !defined(SHMRING_FAULT_INJECTION)

int shmring__fault_compiled(void)
{
    return 0;
}

#else

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"

enum action { ACT_NONE, ACT_KILL, ACT_STOP, ACT_YIELD, ACT_DELAY, ACT_EXIT, ACT_HOOK };

struct rule {
    uint32_t action;
    uint32_t pad;
    uint64_t arg; /* microseconds for delay, status for exit */
    uint64_t nth; /* 0: every hit, else only the nth */
};

/* Rules and counters are written by shmring__fault_set and read at every
 * hit in any thread: relaxed atomics, no ordering needed (a test arms the
 * rules before it starts the threads that hit them, and joins or signals
 * them through its own synchronisation). */
static struct rule rules[SHMRING__FP_COUNT];
static uint64_t hits[SHMRING__FP_COUNT];
static uint32_t armed;
static shmring__fault_hook_fn hook_fn;
static void *hook_ctx;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

int shmring__fault_compiled(void)
{
    return 1;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 18)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int parse_action(const char *s, size_t n, struct rule *r)
{
    static const struct {
        const char *word;
        enum action act;
        int takes_arg;
    } words[] = {{"kill", ACT_KILL, 0},   {"stop", ACT_STOP, 0}, {"yield", ACT_YIELD, 0},
                 {"delay", ACT_DELAY, 1}, {"exit", ACT_EXIT, 1}, {"hook", ACT_HOOK, 0}};
    const char *eq = memchr(s, '=', n);
    size_t wlen = eq != NULL ? (size_t)(eq - s) : n;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strlen(words[i].word) != wlen || memcmp(words[i].word, s, wlen) != 0)
            continue;
        if ((eq != NULL) != (words[i].takes_arg != 0))
            return -EINVAL;
        r->action = words[i].act;
        r->arg = 0;
        if (eq != NULL)
            return parse_u64(eq + 1, n - wlen - 1, &r->arg);
        return 0;
    }
    return -EINVAL;
}

/* POINT:ACTION[@N] */
static int parse_rule(const char *s, size_t n, struct rule *table)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL)
        return -EINVAL;
    char name[64];
    size_t nlen = (size_t)(colon - s);
    if (nlen == 0 || nlen >= sizeof name)
        return -EINVAL;
    memcpy(name, s, nlen);
    name[nlen] = '\0';
    int point = shmring__fault_lookup(name);
    if (point < 0)
        return -EINVAL;
    const char *act = colon + 1;
    size_t alen = n - nlen - 1;
    const char *at = memchr(act, '@', alen);
    struct rule r = {0};
    if (at != NULL) {
        if (parse_u64(at + 1, alen - (size_t)(at - act) - 1, &r.nth) != 0 || r.nth == 0)
            return -EINVAL;
        alen = (size_t)(at - act);
    }
    int rc = parse_action(act, alen, &r);
    if (rc != 0)
        return rc;
    table[point] = r;
    return 0;
}

static int parse_spec(const char *spec, struct rule *table)
{
    while (spec != NULL && *spec != '\0') {
        const char *end = strchr(spec, ',');
        size_t n = end != NULL ? (size_t)(end - spec) : strlen(spec);
        int rc = parse_rule(spec, n, table);
        if (rc != 0)
            return rc;
        spec = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

static void install(const struct rule *table)
{
    uint32_t any = 0;
    for (int i = 0; i < SHMRING__FP_COUNT; i++) {
        /* Relaxed: see the comment at the declarations. */
        shmring__store_relaxed_64(&rules[i].arg, table[i].arg);
        shmring__store_relaxed_64(&rules[i].nth, table[i].nth);
        shmring__store_relaxed_32(&rules[i].action, table[i].action);
        any |= table[i].action != ACT_NONE;
    }
    shmring__store_relaxed_32(&armed, any);
}

static void load_env(void)
{
    struct rule table[SHMRING__FP_COUNT];
    memset(table, 0, sizeof table);
    const char *spec = secure_getenv("SHMRING_FAULT");
    if (spec != NULL && parse_spec(spec, table) == 0)
        install(table);
}

int shmring__fault_set(const char *spec)
{
    pthread_once(&env_once, load_env);
    struct rule table[SHMRING__FP_COUNT];
    memset(table, 0, sizeof table);
    int rc = parse_spec(spec, table);
    if (rc != 0)
        return rc;
    install(table);
    return 0;
}

void shmring__fault_hook_set(shmring__fault_hook_fn fn, void *ctx)
{
    /* Set by a test before it arms a "hook" rule; no concurrent hits. */
    hook_ctx = ctx;
    hook_fn = fn;
}

uint64_t shmring__fault_hits(int point)
{
    if (point < 0 || point >= SHMRING__FP_COUNT)
        return 0;
    /* Relaxed: a count, read after the test's own synchronisation. */
    return shmring__load_relaxed_64(&hits[point]);
}

void shmring__fault_reset_hits(void)
{
    for (int i = 0; i < SHMRING__FP_COUNT; i++)
        shmring__store_relaxed_64(&hits[i], 0); /* relaxed: a count */
}

static void act(enum shmring__fault_point point, uint32_t action, uint64_t arg)
{
    switch (action) {
    case ACT_KILL:
        raise(SIGKILL);
        break;
    case ACT_STOP:
        raise(SIGSTOP);
        break;
    case ACT_YIELD:
        sched_yield();
        break;
    case ACT_DELAY: {
        struct timespec ts = {(time_t)(arg / 1000000u), (long)(arg % 1000000u) * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        break;
    }
    case ACT_EXIT:
        _exit((int)arg);
    case ACT_HOOK:
        if (hook_fn != NULL)
            hook_fn((int)point, hook_ctx);
        break;
    default:
        break;
    }
}

void shmring__fault(enum shmring__fault_point point)
{
    pthread_once(&env_once, load_env);
    /* A count: its fetch-add needs no ordering (see the declarations). */
    uint64_t n = shmring__faa_64(&hits[point], 1) + 1;
    if (shmring__load_relaxed_32(&armed) == 0)
        return;
    uint32_t action = shmring__load_relaxed_32(&rules[point].action);
    if (action == ACT_NONE)
        return;
    uint64_t nth = shmring__load_relaxed_64(&rules[point].nth);
    if (nth != 0 && nth != n)
        return;
    int saved = errno;
    act(point, action, shmring__load_relaxed_64(&rules[point].arg));
    errno = saved;
}

#endif
