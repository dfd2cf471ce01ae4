/*
 * `shmring bridge bench NATS_URL`: what the bridge costs, next to the NATS
 * client alone, in one run against one server.
 *
 *   throughput, 64 B and 4 KiB: N messages published by one connection and
 *     received by another (NATS alone), against ring -> bridge out -> NATS
 *     -> bridge in -> ring (core NATS, and JetStream with a memory stream);
 *   round trip, 64 B: a ping answered by an echo, over NATS alone (two
 *     connections, two subjects) and through four bridges (ring -> out ->
 *     in -> ring, echo, ring -> out -> in -> ring).
 *
 * The bridges are this program run again (/proc/self/exe bridge ...). Every
 * payload is checked on arrival (its first 8 bytes carry its number).
 */
#define _GNU_SOURCE
#include "bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RTT_ROUNDS 2000
#define WAIT_NS    (30LL * 1000000000LL) /* longest wait for one message */

static FILE *csv;

static void csv_row(const char *fig, const char *transport, const char *metric, double value,
                    double ratio)
{
    if (csv == NULL)
        return;
    fprintf(csv, "%s,%s,%s,%.6g,", fig, transport, metric, value);
    if (!isnan(ratio))
        fprintf(csv, "%.4g", ratio);
    fputc('\n', csv);
}

static void put_id(unsigned char *buf, size_t len, uint64_t id)
{
    memset(buf, (int)(id & 0xff), len);
    if (len >= 8)
        memcpy(buf, &id, 8);
}

static int check_id(const void *buf, size_t len, size_t want_len, uint64_t want)
{
    uint64_t id = 0;
    if (len != want_len)
        return 0;
    if (len >= 8)
        memcpy(&id, buf, 8);
    return len < 8 || id == want;
}

/* ---- Child bridges ---------------------------------------------------------- */

struct kids {
    pid_t pid[4];
    int n;
};

static pid_t spawn_bridge(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    return pid;
}

static void kids_stop(struct kids *k)
{
    for (int i = 0; i < k->n; i++)
        if (k->pid[i] > 0)
            kill(k->pid[i], SIGTERM);
    for (int i = 0; i < k->n; i++)
        if (k->pid[i] > 0)
            waitpid(k->pid[i], NULL, 0);
    k->n = 0;
}

static int wait_ring(const char *name, shmring_t **out, uint32_t flags)
{
    for (int i = 0; i < 3000; i++) {
        if (shmring_open(name, flags, out) == 0)
            return 0;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

/* Start `in` (NATS subject -> ring `to`) and `out` (ring `from` -> subject). */
static int start_pair(struct kids *k, const char *url, const char *subject, const char *from,
                      const char *to, uint32_t slot_size, const char *stream)
{
    char size[32];
    snprintf(size, sizeof size, "%u", slot_size);
    char *in_argv[16] = {(char *)"shmring",     (char *)"bridge",
                         (char *)"in",          (char *)url,
                         (char *)subject,       (char *)to,
                         (char *)"--slots",     (char *)"4096",
                         (char *)"--slot-size", size};
    char *out_argv[16] = {(char *)"shmring", (char *)"bridge", (char *)"out",
                          (char *)from,      (char *)url,      (char *)subject};
    if (stream != NULL) {
        in_argv[10] = (char *)"--jetstream";
        in_argv[11] = (char *)stream;
        in_argv[12] = (char *)"--js-memory";
        out_argv[6] = (char *)"--jetstream";
        out_argv[7] = (char *)stream;
        out_argv[8] = (char *)"--js-memory";
    }
    k->pid[k->n++] = spawn_bridge(in_argv);
    shmring_t *probe = NULL;
    if (wait_ring(to, &probe, SHMRING_OBSERVER) < 0) /* `in` subscribed: its ring exists */
        return -ETIMEDOUT;
    shmring_close(probe);
    k->pid[k->n++] = spawn_bridge(out_argv);
    return 0;
}

static void remove_side_tables(const char *ring)
{
    char name[320];
    snprintf(name, sizeof name, "%s.bridge-out", ring);
    shmring_state_unlink(name);
    snprintf(name, sizeof name, "%s.bridge-in", ring);
    shmring_state_unlink(name);
}

/* ---- Throughput ---------------------------------------------------------------- */

struct drain {
    shmring_t *ring;       /* bridged: pop from it */
    natsSubscription *sub; /* NATS alone: next message */
    uint64_t count, got, bad;
    size_t size;
    int64_t end_ns;
};

static void *drain_ring(void *arg)
{
    struct drain *d = arg;
    unsigned char *buf = malloc(d->size + 1);
    while (buf != NULL && d->got < d->count) {
        ssize_t n = shmring_pop_wait(d->ring, buf, d->size + 1, WAIT_NS);
        if (n < 0)
            break;
        d->bad += !check_id(buf, (size_t)n, d->size, d->got);
        d->got++;
    }
    d->end_ns = bridge_now_ns();
    free(buf);
    return NULL;
}

static void *drain_sub(void *arg)
{
    struct drain *d = arg;
    while (d->got < d->count) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, d->sub, WAIT_NS / 1000000) != NATS_OK)
            break;
        d->bad += !check_id(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), d->size, d->got);
        d->got++;
        natsMsg_Destroy(m);
    }
    d->end_ns = bridge_now_ns();
    return NULL;
}

/* NATS alone: one connection publishes, another receives. Messages/s. */
static double tput_nats(const char *url, const char *subject, size_t size, uint64_t count)
{
    natsConnection *pub = NULL, *subc = NULL;
    struct drain d = {.count = count, .size = size};
    double rate = -1;
    unsigned char *buf = malloc(size);
    if (buf == NULL || natsConnection_ConnectTo(&pub, url) != NATS_OK ||
        natsConnection_ConnectTo(&subc, url) != NATS_OK ||
        natsConnection_SubscribeSync(&d.sub, subc, subject) != NATS_OK ||
        natsSubscription_SetPendingLimits(d.sub, -1, -1) != NATS_OK ||
        natsConnection_Flush(subc) != NATS_OK)
        goto out;
    pthread_t t;
    int64_t start = bridge_now_ns();
    pthread_create(&t, NULL, drain_sub, &d);
    for (uint64_t i = 0; i < count; i++) {
        put_id(buf, size, i);
        natsConnection_Publish(pub, subject, buf, (int)size);
    }
    natsConnection_Flush(pub);
    pthread_join(t, NULL);
    if (d.got == count && d.bad == 0)
        rate = (double)count / ((double)(d.end_ns - start) / 1e9);
    else
        fprintf(stderr, "bench: NATS alone: %" PRIu64 " of %" PRIu64 " arrived, %" PRIu64 " bad\n",
                d.got, count, d.bad);
out:
    natsSubscription_Destroy(d.sub);
    natsConnection_Destroy(pub);
    natsConnection_Destroy(subc);
    free(buf);
    return rate;
}

/* ring -> out -> NATS -> in -> ring. Messages/s, first push to last pop. */
static double tput_bridged(const char *url, const char *tag, size_t size, uint64_t count,
                           const char *stream)
{
    char a[64], b[64], subject[96];
    snprintf(a, sizeof a, "/bench-%d-%s-a", (int)getpid(), tag);
    snprintf(b, sizeof b, "/bench-%d-%s-b", (int)getpid(), tag);
    snprintf(subject, sizeof subject, "shmring.bench.%d.%s", (int)getpid(), tag);
    shmring_t *src = NULL;
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 4096, .slot_size = (uint32_t)size, .flags = SHMRING_PRODUCER);
    struct kids k = {.n = 0};
    struct drain d = {.count = count, .size = size};
    double rate = -1;
    unsigned char *buf = malloc(size);
    if (buf == NULL || shmring_create(a, &cfg, &src) != 0)
        goto out;
    if (start_pair(&k, url, subject, a, b, (uint32_t)size, stream) < 0 ||
        wait_ring(b, &d.ring, SHMRING_CONSUMER) < 0)
        goto out;
    pthread_t t;
    int64_t start = bridge_now_ns();
    pthread_create(&t, NULL, drain_ring, &d);
    for (uint64_t i = 0; i < count; i++) {
        put_id(buf, size, i);
        if (shmring_push_wait(src, buf, size, WAIT_NS) < 0)
            break;
    }
    pthread_join(t, NULL);
    if (d.got == count && d.bad == 0)
        rate = (double)count / ((double)(d.end_ns - start) / 1e9);
    else
        fprintf(stderr, "bench: bridged %s: %" PRIu64 " of %" PRIu64 " arrived, %" PRIu64 " bad\n",
                tag, d.got, count, d.bad);
out:
    kids_stop(&k);
    shmring_close(d.ring);
    shmring_close(src);
    shmring_unlink(a);
    shmring_unlink(b);
    remove_side_tables(a);
    remove_side_tables(b);
    free(buf);
    return rate;
}

/* ---- Round trip -------------------------------------------------------------------- */

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

struct echo_nats {
    natsConnection *nc;
    natsSubscription *sub;
    const char *reply;
    int rounds;
};

static void *echo_nats_run(void *arg)
{
    struct echo_nats *e = arg;
    for (int i = 0; i < e->rounds; i++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, e->sub, WAIT_NS / 1000000) != NATS_OK)
            break;
        natsConnection_Publish(e->nc, e->reply, natsMsg_GetData(m), natsMsg_GetDataLength(m));
        natsConnection_Flush(e->nc);
        natsMsg_Destroy(m);
    }
    return NULL;
}

/* NATS alone: ping on one connection, echo on another. Fills rtt[]. */
static int rtt_nats(const char *url, size_t size, int64_t *rtt, int rounds)
{
    char ping[96], pong[96];
    snprintf(ping, sizeof ping, "shmring.bench.%d.ping", (int)getpid());
    snprintf(pong, sizeof pong, "shmring.bench.%d.pong", (int)getpid());
    natsConnection *a = NULL, *b = NULL;
    natsSubscription *pongs = NULL;
    struct echo_nats e = {.reply = pong, .rounds = rounds};
    int rc = -1;
    unsigned char buf[64];
    if (natsConnection_ConnectTo(&a, url) != NATS_OK ||
        natsConnection_ConnectTo(&b, url) != NATS_OK ||
        natsConnection_SubscribeSync(&pongs, a, pong) != NATS_OK ||
        natsConnection_SubscribeSync(&e.sub, b, ping) != NATS_OK || natsConnection_Flush(a) ||
        natsConnection_Flush(b))
        goto out;
    e.nc = b;
    pthread_t t;
    pthread_create(&t, NULL, echo_nats_run, &e);
    int i = 0;
    for (; i < rounds; i++) {
        put_id(buf, size, (uint64_t)i);
        int64_t t0 = bridge_now_ns();
        natsConnection_Publish(a, ping, buf, (int)size);
        natsConnection_Flush(a);
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, pongs, WAIT_NS / 1000000) != NATS_OK)
            break;
        rtt[i] = bridge_now_ns() - t0;
        int ok = check_id(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), size, (uint64_t)i);
        natsMsg_Destroy(m);
        if (!ok)
            break;
    }
    pthread_join(t, NULL);
    rc = i == rounds ? 0 : -1;
out:
    natsSubscription_Destroy(pongs);
    natsSubscription_Destroy(e.sub);
    natsConnection_Destroy(a);
    natsConnection_Destroy(b);
    return rc;
}

struct echo_ring {
    shmring_t *from, *to;
    int rounds;
};

static void *echo_ring_run(void *arg)
{
    struct echo_ring *e = arg;
    unsigned char buf[64];
    for (int i = 0; i < e->rounds; i++) {
        ssize_t n = shmring_pop_wait(e->from, buf, sizeof buf, WAIT_NS);
        if (n < 0 || shmring_push_wait(e->to, buf, (size_t)n, WAIT_NS) < 0)
            break;
    }
    return NULL;
}

/* Through four bridges: ring p1 -> NATS -> ring p2 -> echo -> ring p3 -> NATS -> ring p4. */
static int rtt_bridged(const char *url, size_t size, int64_t *rtt, int rounds)
{
    char r[4][64], ping[96], pong[96];
    for (int i = 0; i < 4; i++)
        snprintf(r[i], sizeof r[i], "/bench-%d-rtt-%d", (int)getpid(), i + 1);
    snprintf(ping, sizeof ping, "shmring.bench.%d.bping", (int)getpid());
    snprintf(pong, sizeof pong, "shmring.bench.%d.bpong", (int)getpid());
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 64, .slot_size = 64, .flags = SHMRING_PRODUCER);
    shmring_t *p1 = NULL, *p3 = NULL, *c2 = NULL, *c4 = NULL;
    struct kids k = {.n = 0};
    int rc = -1;
    if (shmring_create(r[0], &cfg, &p1) != 0 || shmring_create(r[2], &cfg, &p3) != 0 ||
        start_pair(&k, url, ping, r[0], r[1], 64, NULL) < 0 ||
        start_pair(&k, url, pong, r[2], r[3], 64, NULL) < 0 ||
        wait_ring(r[1], &c2, SHMRING_CONSUMER) < 0 || wait_ring(r[3], &c4, SHMRING_CONSUMER) < 0)
        goto out;
    struct echo_ring e = {c2, p3, rounds};
    pthread_t t;
    pthread_create(&t, NULL, echo_ring_run, &e);
    unsigned char buf[64];
    int i = 0;
    for (; i < rounds; i++) {
        put_id(buf, size, (uint64_t)i);
        int64_t t0 = bridge_now_ns();
        if (shmring_push_wait(p1, buf, size, WAIT_NS) < 0)
            break;
        ssize_t n = shmring_pop_wait(c4, buf, sizeof buf, WAIT_NS);
        if (n < 0 || !check_id(buf, (size_t)n, size, (uint64_t)i))
            break;
        rtt[i] = bridge_now_ns() - t0;
    }
    if (i < rounds) { /* unblock the echo */
        shmring_close(p1);
        p1 = NULL;
    }
    pthread_join(t, NULL);
    rc = i == rounds ? 0 : -1;
out:
    kids_stop(&k);
    shmring_close(p1);
    shmring_close(p3);
    shmring_close(c2);
    shmring_close(c4);
    for (int j = 0; j < 4; j++) {
        shmring_unlink(r[j]);
        remove_side_tables(r[j]);
    }
    return rc;
}

/* ---- Driver --------------------------------------------------------------------------- */

static int delete_stream(const char *url, const char *stream)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
        return -1;
    if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK)
        js_DeleteStream(js, stream, NULL, NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
}

static void print_tput(const char *fig, const char *name, double rate, size_t size, double base)
{
    if (rate < 0) {
        printf("  %-34s failed\n", name);
        return;
    }
    printf("  %-34s %12.0f msg/s %9.1f MB/s", name, rate, rate * (double)size / 1e6);
    if (base > 0)
        printf("   %.2fx NATS alone", rate / base);
    printf("\n");
    csv_row(fig, name, "msgs_per_s", rate, base > 0 ? rate / base : NAN);
}

static void print_rtt(const char *name, int64_t *rtt, int rounds, int ok, double base_p50)
{
    if (!ok) {
        printf("  %-34s failed\n", name);
        return;
    }
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp_i64);
    double p50 = (double)rtt[rounds / 2], p99 = (double)rtt[rounds * 99 / 100];
    printf("  %-34s p50 %8.1f us   p99 %8.1f us", name, p50 / 1e3, p99 / 1e3);
    if (base_p50 > 0)
        printf("   %.2fx NATS alone", p50 / base_p50);
    printf("\n");
    csv_row("bridge_rtt_64", name, "p50_ns", p50, base_p50 > 0 ? p50 / base_p50 : NAN);
    csv_row("bridge_rtt_64", name, "p99_ns", p99, NAN);
}

int bridge_bench(struct bridge_args *a)
{
    uint64_t count = a->bench_count ? a->bench_count : 200000;
    if (a->bench_csv != NULL) {
        csv = fopen(a->bench_csv, "w");
        if (csv == NULL)
            return cli_fail("bridge", "bench: %s: %s", a->bench_csv, strerror(errno));
        fprintf(csv, "figure,transport,metric,value,ratio\n");
    }
    natsConnection *probe = NULL;
    natsStatus s = natsConnection_ConnectTo(&probe, a->url);
    natsConnection_Destroy(probe);
    if (s != NATS_OK)
        return cli_fail("bridge", "bench: cannot connect to NATS at %s: %s", a->url,
                        natsStatus_GetText(s));
    printf("bridge bench: one nats-server at %s; %" PRIu64 " messages per throughput run "
           "(JetStream: a tenth), %d round trips\n",
           a->url, count, RTT_ROUNDS);
    int failed = 0;
    const size_t sizes[2] = {64, 4096};
    for (int i = 0; i < 2 && !bridge_stopping(); i++) {
        size_t size = sizes[i];
        char fig[32], stream[64], tag[32];
        snprintf(fig, sizeof fig, "bridge_tput_%zu", size);
        printf("throughput, %zu-byte messages:\n", size);
        uint64_t n = size > 1024 ? count / 4 : count;
        double base = tput_nats(a->url, "shmring.bench.plain", size, n);
        print_tput(fig, "nats-alone", base, size, 0);
        snprintf(tag, sizeof tag, "core%zu", size);
        double core = tput_bridged(a->url, tag, size, n, NULL);
        print_tput(fig, "bridged-core", core, size, base);
        snprintf(stream, sizeof stream, "SHMRINGBENCH%d_%zu", (int)getpid(), size);
        snprintf(tag, sizeof tag, "js%zu", size);
        double js = tput_bridged(a->url, tag, size, n / 10 ? n / 10 : 1, stream);
        delete_stream(a->url, stream);
        print_tput(fig, "bridged-jetstream-memory", js, size, base);
        failed |= base < 0 || core < 0 || js < 0;
    }
    int64_t *rtt = calloc(RTT_ROUNDS, sizeof *rtt);
    if (rtt != NULL && !bridge_stopping()) {
        printf("round trip, 64-byte messages (ping and echo):\n");
        int ok = rtt_nats(a->url, 64, rtt, RTT_ROUNDS) == 0;
        double base = ok ? 0 : -1;
        if (ok) {
            qsort(rtt, RTT_ROUNDS, sizeof *rtt, cmp_i64);
            base = (double)rtt[RTT_ROUNDS / 2];
        }
        print_rtt("nats-alone", rtt, RTT_ROUNDS, ok, 0);
        int ok2 = rtt_bridged(a->url, 64, rtt, RTT_ROUNDS) == 0;
        print_rtt("bridged-core-4-bridges", rtt, RTT_ROUNDS, ok2, base);
        failed |= !ok || !ok2;
    }
    free(rtt);
    if (csv != NULL)
        fclose(csv);
    fflush(stdout);
    return failed ? CLI_FAIL : CLI_OK;
}
