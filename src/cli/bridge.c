/*
 * `shmring bridge`: carry a ring over NATS. `out` takes messages from a local
 * ring and publishes them to a subject; `in` subscribes to a subject and
 * pushes what arrives into a local ring. Core NATS gives at-most-once;
 * --jetstream gives at-least-once with duplicates removed (docs/distributed.md).
 *
 * Only the public shmring API is used here; the library itself never links
 * NATS.
 */
#define _GNU_SOURCE
#include "bridge.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char bridge_help[] =
    "Usage: shmring bridge out RING NATS_URL SUBJECT [options]\n"
    "       shmring bridge in NATS_URL SUBJECT RING [options]\n"
    "       shmring bridge bench NATS_URL [--count N] [--csv FILE]\n"
    "\n"
    "Carry a ring over NATS. `out` takes each message from RING (as a competing\n"
    "consumer) and publishes it to SUBJECT, one NATS message per ring message, payload\n"
    "unchanged. `in` subscribes to SUBJECT and pushes each message into RING (created\n"
    "if absent), waiting for room rather than dropping unless RING is in overwrite mode.\n"
    "When RING's producer closes and RING is drained, `out` sends a final empty message\n"
    "with the header Shmring-End-Of-Stream: 1 and exits; `in` then closes its producer\n"
    "handle, so RING's consumers see end of stream, and exits. NATS_URL is\n"
    "nats://HOST:PORT (several, comma-separated, for a cluster).\n"
    "\n"
    "Delivery: core NATS (the default) is at-most-once: messages published while\n"
    "nobody listens, or dropped by a slow `in`, are lost (counted where the bridge can\n"
    "know). --jetstream STREAM is at-least-once with duplicates removed: `out` holds\n"
    "each message as a claim of RING until JetStream acknowledges it, and publishes\n"
    "with a message id made of RING's creation time and the message's position, so\n"
    "that JetStream discards copies; `in` reads through a durable consumer and\n"
    "acknowledges a message only once it is in RING, remembering the last message it\n"
    "pushed and RING's pushed count (state table RING.bridge-in), so that nothing\n"
    "reaches RING twice or out of order. A bridge killed and restarted resumes where\n"
    "it stopped; for `out` to lose nothing then, RING must be created with\n"
    "SHMRING_REDELIVER (`shmring create --redeliver`), otherwise the messages in\n"
    "flight are lost (counted as abandoned). See docs/distributed.md.\n"
    "\n"
    "Options:\n"
    "  --jetstream STREAM  at-least-once through JetStream stream STREAM (created\n"
    "                      with SUBJECT if absent)\n"
    "  --js-memory         create STREAM in memory instead of on disk\n"
    "  --durable NAME      in: durable consumer name (default: shmring-RING)\n"
    "  --window N          out: messages in flight awaiting acknowledgement, in:\n"
    "                      messages fetched at once (default 256)\n"
    "  --ack-wait SECONDS  in: JetStream redelivers unacknowledged messages after\n"
    "                      this long (default 10)\n"
    "  --slots N           in: slots of RING when it is created (default 1024)\n"
    "  --slot-size N       in: slot size of RING when created (default 256)\n"
    "  --overwrite         in: create RING in overwrite mode (never waits for room)\n"
    "  --oversize skip|stop  in: a message larger than RING's slots is counted and\n"
    "                      skipped (default), or stops the bridge with exit status 1\n"
    "                      (with --jetstream it stays unacknowledged in the stream)\n"
    "  --stats             print counters on stderr every second\n"
    "  --subscriber        out: read RING as a broadcast subscriber (every message\n"
    "                      pushed after it attached) instead of a competing consumer\n"
    "  --help              show this help\n"
    "\n"
    "Ends cleanly on SIGINT or SIGTERM. Reconnects by itself after the server\n"
    "restarts. Exit status: 0 end of stream or signal, 1 runtime error (e.g. server\n"
    "unreachable, oversize with --oversize stop), 2 usage error (e.g. bad URL or\n"
    "subject).\n";

/* ---- Signals, time, counters --------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int bridge_stopping(void)
{
    return stop_requested;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int64_t bridge_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Counters: the main thread and NATS's callback threads both count, so they
 * sit behind one mutex (a few operations per message batch). */
struct counters {
    pthread_mutex_t lock;
    uint64_t msgs, bytes; /* carried across */
    uint64_t in_flight;   /* out: published, not yet acknowledged */
    uint64_t errors;      /* publish, fetch and connection errors */
    uint64_t dropped;     /* known lost (core NATS slow consumer) */
    uint64_t oversize;    /* in: larger than the ring's slots, skipped */
    uint64_t duplicates;  /* removed: JetStream said duplicate, or in saw it twice */
    uint64_t resent;      /* out: published again after an error or restart */
    uint64_t reconnects;
    uint64_t disconnects;
};

static struct counters counters = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void count(uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&counters.lock);
    *field += n;
    pthread_mutex_unlock(&counters.lock);
}

static void count_message(size_t len)
{
    pthread_mutex_lock(&counters.lock);
    counters.msgs++;
    counters.bytes += len;
    pthread_mutex_unlock(&counters.lock);
}

static struct counters snapshot(void)
{
    pthread_mutex_lock(&counters.lock);
    struct counters c = counters;
    pthread_mutex_unlock(&counters.lock);
    return c;
}

static const char *dir_name(const struct bridge_args *a)
{
    return a->out ? "out" : "in";
}

static void print_stats(const struct bridge_args *a, const char *when, double secs,
                        uint64_t prev_msgs)
{
    struct counters c = snapshot();
    double rate = secs > 0 ? (double)(c.msgs - prev_msgs) / secs : 0.0;
    fprintf(stderr,
            "shmring: bridge %s: %s msgs=%" PRIu64 " bytes=%" PRIu64
            " rate=%.0f/s in_flight=%" PRIu64 " errors=%" PRIu64 " dropped=%" PRIu64
            " oversize=%" PRIu64 " duplicates=%" PRIu64 " resent=%" PRIu64 " reconnects=%" PRIu64
            " disconnects=%" PRIu64 "\n",
            dir_name(a), when, c.msgs, c.bytes, rate, c.in_flight, c.errors, c.dropped, c.oversize,
            c.duplicates, c.resent, c.reconnects, c.disconnects);
}

/* Called often from the loops: prints --stats once a second. */
void bridge_tick(struct bridge_args *a)
{
    if (!a->stats)
        return;
    int64_t now = bridge_now_ns();
    if (a->last_stats_ns == 0) {
        a->last_stats_ns = now;
        return;
    }
    if (now - a->last_stats_ns < 1000000000LL)
        return;
    struct counters c = snapshot();
    print_stats(a, "stats", (double)(now - a->last_stats_ns) / 1e9, a->last_stats_msgs);
    a->last_stats_ns = now;
    a->last_stats_msgs = c.msgs;
}

/* ---- Argument checks ------------------------------------------------------ */

/*
 * A subject to publish to: tokens of printable characters without spaces,
 * separated by single dots; wildcards only where `wildcards` (a
 * subscription): '*' as a whole token, '>' as the whole last token.
 */
int bridge_subject_valid(const char *s, int wildcards)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 255)
        return 0;
    const char *tok = s;
    for (;;) {
        const char *end = strchr(tok, '.');
        size_t len = end ? (size_t)(end - tok) : strlen(tok);
        if (len == 0)
            return 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)tok[i];
            if (ch <= ' ' || ch >= 127)
                return 0;
            if ((ch == '*' || ch == '>') && (!wildcards || len != 1))
                return 0;
        }
        if (tok[0] == '>' && end != NULL)
            return 0;
        if (end == NULL)
            return 1;
        tok = end + 1;
    }
}

/* One server address: [nats://|tls://][user[:pass]@]host[:port]. */
static int url_one_valid(const char *u, size_t len)
{
    const char *end = u + len;
    const char *sep = NULL;
    for (const char *p = u; p + 2 < end; p++)
        if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
            sep = p;
            break;
        }
    if (sep != NULL) {
        size_t slen = (size_t)(sep - u);
        if (!((slen == 4 && strncmp(u, "nats", 4) == 0) ||
              (slen == 3 && strncmp(u, "tls", 3) == 0)))
            return 0;
        u = sep + 3;
    }
    const char *at = memchr(u, '@', (size_t)(end - u));
    if (at != NULL)
        u = at + 1;
    if (u >= end)
        return 0;
    const char *host = u;
    const char *colon = NULL;
    if (*host == '[') { /* [IPv6]:port */
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (close == NULL || close == host + 1)
            return 0;
        colon = close + 1 < end ? close + 1 : NULL;
        if (colon != NULL && *colon != ':')
            return 0;
    } else {
        colon = memchr(host, ':', (size_t)(end - host));
        if (colon == host)
            return 0;
    }
    for (const char *p = host; p < (colon ? colon : end); p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || (unsigned char)*p >= 127)
            return 0;
    if (colon != NULL) {
        const char *p = colon + 1;
        if (p >= end || end - p > 5)
            return 0;
        long port = 0;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return 0;
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535)
            return 0;
    }
    return 1;
}

int bridge_url_valid(const char *url)
{
    if (url == NULL || url[0] == '\0')
        return 0;
    const char *u = url;
    for (;;) {
        const char *comma = strchr(u, ',');
        size_t len = comma ? (size_t)(comma - u) : strlen(u);
        if (len == 0 || !url_one_valid(u, len))
            return 0;
        if (comma == NULL)
            return 1;
        u = comma + 1;
    }
}

/* A JetStream stream or consumer name: no spaces, dots, wildcards or slashes. */
static int js_name_valid(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 200)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127 || strchr(".*>/\\", *p))
            return 0;
    return 1;
}

/* ---- Connection ----------------------------------------------------------- */

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
    count(&counters.disconnects, 1);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
    count(&counters.reconnects, 1);
}

/* Asynchronous errors are counted. A slow consumer in this process (not
 * with in's unbounded queue) is counted exactly, once, at the end. */
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)closure;
    if (err == NATS_SLOW_CONSUMER && sub != NULL) {
        /* natsSubscription_GetDropped gives the exact count; read at the end. */
        return;
    }
    count(&counters.errors, 1);
}

/*
 * Connect with the client library's own reconnect: forever, every 250 ms,
 * buffering publishes meanwhile. Returns CLI_OK, or CLI_FAIL with a message.
 */
int bridge_connect(const char *cmd, const char *url, const char *name, natsConnection **nc)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(opts, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(opts, on_error, NULL);
    if (s != NATS_OK) {
        natsOptions_Destroy(opts);
        return cli_usage(cmd, "NATS URL '%s': %s", url, natsStatus_GetText(s));
    }
    s = natsConnection_Connect(nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK)
        return cli_fail(cmd, "cannot connect to NATS at %s: %s", url, natsStatus_GetText(s));
    return CLI_OK;
}

/* Create the stream with SUBJECT if it does not exist. */
static int ensure_stream(const char *cmd, jsCtx *js, const struct bridge_args *a, int64_t *created)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, a->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        const char *subjects[1] = {a->subject};
        cfg.Name = a->stream;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = a->js_memory ? js_MemoryStorage : js_FileStorage;
        s = js_AddStream(&si, js, &cfg, NULL, &jerr);
        if (s == NATS_OK)
            fprintf(stderr, "shmring: %s: created JetStream stream %s for %s\n", cmd, a->stream,
                    a->subject);
        else if (jerr != 0) { /* created meanwhile by the other bridge */
            s = js_GetStreamInfo(&si, js, a->stream, NULL, &jerr);
        }
    }
    if (s == NATS_NO_RESPONDERS)
        return cli_fail(cmd,
                        "JetStream stream %s: the server does not run JetStream (nats-server -js)",
                        a->stream);
    if (s != NATS_OK)
        return cli_fail(cmd, "JetStream stream %s: %s (%s)", a->stream, natsStatus_GetText(s),
                        nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    if (created != NULL)
        *created = si->Created;
    jsStreamInfo_Destroy(si);
    return CLI_OK;
}

/* ---- out ------------------------------------------------------------------ */

static natsStatus eos_message(const char *subject, natsMsg **m)
{
    natsStatus s = natsMsg_Create(m, subject, NULL, NULL, 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*m, BRIDGE_EOS_HEADER, "1");
    return s;
}

/* Core NATS: pop, publish; end of stream crosses as the header message. */
static int out_core(struct bridge_args *a, shmring_t *r, natsConnection *nc)
{
    size_t cap = shmring_max_message(r);
    void *buf = malloc(cap ? cap : 1);
    if (buf == NULL)
        return cli_fail("bridge", "out of memory");
    int rc = CLI_OK;
    uint64_t since_flush = 0;
    while (!bridge_stopping()) {
        bridge_tick(a);
        /* The client library sends in batches; when the ring runs dry,
         * send what is buffered now rather than on its own schedule
         * (latency at low rates; at high rates the ring is never dry). */
        ssize_t n = shmring_pop(r, buf, cap);
        if (n == -EAGAIN && since_flush > 0) {
            natsConnection_FlushTimeout(nc, 1000);
            since_flush = 0;
        }
        if (n == -EAGAIN)
            n = shmring_pop_wait(r, buf, cap, 100000000LL);
        if (n == -ETIMEDOUT || n == -EAGAIN) {
            if (since_flush > 0)
                natsConnection_FlushTimeout(nc, 1000);
            since_flush = 0;
            continue;
        }
        if (n == -EPIPE) {
            natsMsg *m = NULL;
            natsStatus s = eos_message(a->subject, &m);
            if (s == NATS_OK)
                s = natsConnection_PublishMsg(nc, m);
            natsMsg_Destroy(m);
            if (s == NATS_OK)
                s = natsConnection_FlushTimeout(nc, 5000);
            if (s != NATS_OK)
                rc = cli_fail("bridge", "out: end of stream not sent: %s", natsStatus_GetText(s));
            else
                a->eos = 1;
            break;
        }
        if (n < 0) {
            rc = cli_fail("bridge", "out: %s: %s", a->ring, shmring_strerror((int)n));
            break;
        }
        natsStatus s = natsConnection_Publish(nc, a->subject, buf, (int)n);
        if (s == NATS_OK) {
            count_message((size_t)n);
            since_flush++;
        } else {
            /* Lost: at-most-once (e.g. larger than the server's max_payload,
             * or the reconnect buffer is full). */
            count(&counters.errors, 1);
            count(&counters.dropped, 1);
        }
    }
    natsConnection_FlushTimeout(nc, 2000);
    free(buf);
    return rc;
}

static int out_run(struct bridge_args *a)
{
    shmring_t *r = NULL;
    int err = shmring_open(a->ring, a->subscriber ? SHMRING_SUBSCRIBER : SHMRING_CONSUMER, &r);
    if (err < 0)
        return cli_fail("bridge", "out: cannot open ring %s: %s", a->ring, shmring_strerror(err));
    natsConnection *nc = NULL;
    int rc = bridge_connect("bridge", a->url, "shmring-bridge-out", &nc);
    if (rc != CLI_OK) {
        shmring_close(r);
        return rc;
    }
    if ((int64_t)shmring_slot_size(r) > natsConnection_GetMaxPayload(nc))
        fprintf(stderr,
                "shmring: bridge: out: %s's slots (%u bytes) exceed the server's max_payload "
                "(%" PRId64 "): larger messages will be counted as errors and not sent\n",
                a->ring, shmring_slot_size(r), natsConnection_GetMaxPayload(nc));
    if (a->stream != NULL) {
        jsCtx *js = NULL;
        natsStatus s = natsConnection_JetStream(&js, nc, NULL);
        if (s != NATS_OK)
            rc = cli_fail("bridge", "out: JetStream: %s", natsStatus_GetText(s));
        if (rc == CLI_OK)
            rc = ensure_stream("bridge", js, a, NULL);
        if (rc == CLI_OK)
            rc = bridge_out_jetstream(a, r, nc, js);
        jsCtx_Destroy(js);
    } else {
        rc = out_core(a, r, nc);
    }
    if (a->stats || rc != CLI_OK)
        print_stats(a, "end", 0, 0);
    natsConnection_Destroy(nc);
    shmring_close(r);
    return rc;
}

/* Hooks for the JetStream half (bridge_js.c). */
uint64_t bridge_reconnects(void)
{
    return snapshot().reconnects;
}

void bridge_count_message(size_t len)
{
    count_message(len);
}

void bridge_count(enum bridge_counter which, uint64_t n)
{
    uint64_t *f = NULL;
    switch (which) {
    case BRIDGE_ERRORS:
        f = &counters.errors;
        break;
    case BRIDGE_DUPLICATES:
        f = &counters.duplicates;
        break;
    case BRIDGE_RESENT:
        f = &counters.resent;
        break;
    case BRIDGE_OVERSIZE:
        f = &counters.oversize;
        break;
    case BRIDGE_DROPPED:
        f = &counters.dropped;
        break;
    }
    count(f, n);
}

void bridge_set_in_flight(uint64_t n)
{
    pthread_mutex_lock(&counters.lock);
    counters.in_flight = n;
    pthread_mutex_unlock(&counters.lock);
}

/* ---- in ------------------------------------------------------------------- */

/* Open RING as its producer, creating it with --slots/--slot-size if absent. */
static int open_target(struct bridge_args *a, shmring_t **r)
{
    int err = shmring_open(a->ring, SHMRING_PRODUCER, r);
    if (err == -ENOENT) {
        shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = a->slots, .slot_size = a->slot_size,
                                                   .flags = SHMRING_PRODUCER | SHMRING_NO_FALLBACK |
                                                            (a->overwrite ? SHMRING_OVERWRITE : 0));
        err = shmring_create(a->ring, &cfg, r);
        if (err == -EEXIST)
            err = shmring_open(a->ring, SHMRING_PRODUCER, r);
        else if (err == 0)
            fprintf(stderr, "shmring: bridge: in: created %s (%u slots of %u bytes)\n", a->ring,
                    shmring_slots(*r), shmring_slot_size(*r));
    }
    if (err < 0)
        return cli_fail("bridge", "in: cannot open ring %s as its producer: %s", a->ring,
                        shmring_strerror(err));
    shmring_stats_t st;
    if (shmring_stats(*r, &st) == 0)
        a->ring_overwrite = (st.flags & SHMRING_OVERWRITE) != 0;
    if (a->ring_overwrite)
        fprintf(stderr,
                "shmring: bridge: in: %s is in overwrite mode: when it is full its oldest "
                "messages are dropped (the ring counts them), never waited for\n",
                a->ring);
    return CLI_OK;
}

/*
 * Push one message into the ring, waiting for room (an overwrite ring never
 * waits). Returns BRIDGE_PUSH_OK, _SKIPPED (larger than the slots, --oversize
 * skip), _STOPPED (a signal came while waiting) or _FATAL (oversize with
 * --oversize stop, or a ring error, already reported).
 */
int bridge_push(struct bridge_args *a, shmring_t *r, const void *data, size_t len)
{
    if (len > shmring_max_message(r)) {
        bridge_count(BRIDGE_OVERSIZE, 1);
        if (++a->oversize_reported > 10 && !a->oversize_stop)
            return BRIDGE_PUSH_SKIPPED; /* counted in the stats; the first ten are shown */
        fprintf(
            stderr,
            "shmring: bridge: in: a message of %zu bytes does not fit %s's slots (%u bytes)%s\n",
            len, a->ring, shmring_max_message(r), a->oversize_stop ? ": stopping" : ": skipped");
        return a->oversize_stop ? BRIDGE_PUSH_FATAL : BRIDGE_PUSH_SKIPPED;
    }
    for (;;) {
        int err = shmring_push_wait(r, data, len, 100000000LL);
        if (err == 0) {
            count_message(len);
            return BRIDGE_PUSH_OK;
        }
        if (err != -ETIMEDOUT && err != -EAGAIN) {
            cli_fail("bridge", "in: push into %s: %s", a->ring, shmring_strerror(err));
            return BRIDGE_PUSH_FATAL;
        }
        bridge_tick(a);
        if (bridge_stopping())
            return BRIDGE_PUSH_STOPPED;
    }
}

int bridge_is_eos(natsMsg *m)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, BRIDGE_EOS_HEADER, &v) == NATS_OK && v != NULL &&
           strcmp(v, "1") == 0;
}

/*
 * Core NATS: subscribe before the ring is opened, so that once RING exists
 * the subscription is known to the server (a test, or a producer that waits
 * for RING, loses nothing to a late subscription).
 */
static int in_core_subscribe(struct bridge_args *a, natsConnection *nc, natsSubscription **sub)
{
    natsStatus s = natsConnection_SubscribeSync(sub, nc, a->subject);
    if (s == NATS_OK) /* no limit in this process: drops happen only at the server */
        s = natsSubscription_SetPendingLimits(*sub, -1, -1);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(nc, 5000);
    if (s != NATS_OK) {
        natsSubscription_Destroy(*sub);
        *sub = NULL;
        return cli_fail("bridge", "in: subscribe to %s: %s", a->subject, natsStatus_GetText(s));
    }
    return CLI_OK;
}

static int in_core(struct bridge_args *a, shmring_t *r, natsConnection *nc, natsSubscription *sub)
{
    natsStatus s;
    int rc = CLI_OK;
    while (!bridge_stopping()) {
        bridge_tick(a);
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 100);
        if (s == NATS_TIMEOUT)
            continue;
        if (s == NATS_SLOW_CONSUMER) /* reported once per episode; counted below */
            continue;
        if (s != NATS_OK) {
            if (natsConnection_IsClosed(nc)) {
                rc = cli_fail("bridge", "in: connection closed: %s", natsStatus_GetText(s));
                break;
            }
            count(&counters.errors, 1);
            continue;
        }
        if (bridge_is_eos(m)) {
            natsMsg_Destroy(m);
            a->eos = 1;
            break;
        }
        int p = bridge_push(a, r, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
        if (p == BRIDGE_PUSH_FATAL) {
            rc = CLI_FAIL;
            break;
        }
        if (p == BRIDGE_PUSH_STOPPED)
            break;
    }
    int64_t dropped = 0;
    if (natsSubscription_GetDropped(sub, &dropped) == NATS_OK && dropped > 0)
        count(&counters.dropped, (uint64_t)dropped);
    natsSubscription_Unsubscribe(sub);
    return rc;
}

static int in_run(struct bridge_args *a)
{
    natsConnection *nc = NULL;
    int rc = bridge_connect("bridge", a->url, "shmring-bridge-in", &nc);
    if (rc != CLI_OK)
        return rc;
    natsSubscription *sub = NULL;
    if (a->stream == NULL)
        rc = in_core_subscribe(a, nc, &sub);
    shmring_t *r = NULL;
    if (rc == CLI_OK)
        rc = open_target(a, &r);
    if (rc == CLI_OK && a->stream != NULL) {
        jsCtx *js = NULL;
        int64_t created = 0;
        natsStatus s = natsConnection_JetStream(&js, nc, NULL);
        if (s != NATS_OK)
            rc = cli_fail("bridge", "in: JetStream: %s", natsStatus_GetText(s));
        if (rc == CLI_OK)
            rc = ensure_stream("bridge", js, a, &created);
        if (rc == CLI_OK)
            rc = bridge_in_jetstream(a, r, nc, js, created);
        jsCtx_Destroy(js);
    } else if (rc == CLI_OK) {
        rc = in_core(a, r, nc, sub);
    }
    /* Close first: the connection's reader thread stops before the
     * subscription it feeds goes away. */
    natsConnection_Close(nc);
    natsSubscription_Destroy(sub);
    if (a->stats || rc != CLI_OK)
        print_stats(a, "end", 0, 0);
    if (a->eos)
        fprintf(stderr, "shmring: bridge: in: end of stream: closing %s's producer\n", a->ring);
    /* Closing the producer handle is what tells RING's consumers the stream
     * ended; on a signal it ends too, as after `shmring send`. */
    shmring_close(r);
    natsConnection_Destroy(nc);
    return rc;
}

/* ---- Command line --------------------------------------------------------- */

enum {
    OPT_JETSTREAM = 256,
    OPT_JS_MEMORY,
    OPT_DURABLE,
    OPT_WINDOW,
    OPT_ACK_WAIT,
    OPT_SLOTS,
    OPT_SLOT_SIZE,
    OPT_OVERWRITE,
    OPT_OVERSIZE,
    OPT_STATS,
    OPT_SUBSCRIBER,
    OPT_COUNT,
    OPT_CSV,
};

static int bridge_option(int opt, const char *arg, struct bridge_args *a)
{
    uint64_t v = 0;
    int64_t ns = 0;
    switch (opt) {
    case OPT_JETSTREAM:
        if (!js_name_valid(arg))
            return cli_usage("bridge", "--jetstream: '%s' is not a valid stream name", arg);
        a->stream = arg;
        return CLI_OK;
    case OPT_JS_MEMORY:
        a->js_memory = 1;
        return CLI_OK;
    case OPT_DURABLE:
        if (!js_name_valid(arg))
            return cli_usage("bridge", "--durable: '%s' is not a valid consumer name", arg);
        snprintf(a->durable, sizeof a->durable, "%s", arg);
        return CLI_OK;
    case OPT_WINDOW:
        if (cli_parse_count(arg, 1, 65536, &v) < 0)
            return cli_usage("bridge", "--window: '%s' is not a count in [1, 65536]", arg);
        a->window = (unsigned)v;
        return CLI_OK;
    case OPT_ACK_WAIT:
        if (cli_parse_seconds(arg, &ns) < 0 || ns < 1000000000LL)
            return cli_usage("bridge", "--ack-wait: '%s' is not a number of seconds >= 1", arg);
        a->ack_wait_ns = ns;
        return CLI_OK;
    case OPT_SLOTS:
        if (cli_parse_count(arg, 2, SHMRING_MAX_SLOTS, &v) < 0 || (v & (v - 1)) != 0)
            return cli_usage("bridge", "--slots: '%s' is not a power of two in [2, %u]", arg,
                             SHMRING_MAX_SLOTS);
        a->slots = (uint32_t)v;
        return CLI_OK;
    case OPT_SLOT_SIZE:
        if (cli_parse_count(arg, 1, SHMRING_MAX_SLOT_SIZE, &v) < 0)
            return cli_usage("bridge", "--slot-size: '%s' is not a size in [1, %u]", arg,
                             SHMRING_MAX_SLOT_SIZE);
        a->slot_size = (uint32_t)v;
        return CLI_OK;
    case OPT_OVERWRITE:
        a->overwrite = 1;
        return CLI_OK;
    case OPT_OVERSIZE:
        if (strcmp(arg, "skip") == 0)
            a->oversize_stop = 0;
        else if (strcmp(arg, "stop") == 0)
            a->oversize_stop = 1;
        else
            return cli_usage("bridge", "--oversize: '%s' is neither skip nor stop", arg);
        return CLI_OK;
    case OPT_STATS:
        a->stats = 1;
        return CLI_OK;
    case OPT_SUBSCRIBER:
        a->subscriber = 1;
        return CLI_OK;
    case OPT_COUNT:
        if (cli_parse_count(arg, 1, UINT64_MAX, &v) < 0)
            return cli_usage("bridge", "--count: '%s' is not a count >= 1", arg);
        a->bench_count = v;
        return CLI_OK;
    case OPT_CSV:
        a->bench_csv = arg;
        return CLI_OK;
    default:
        return -1;
    }
}

static int bridge_parse(int argc, char **argv, struct bridge_args *a)
{
    static const struct option opts[] = {
        {"jetstream", required_argument, NULL, OPT_JETSTREAM},
        {"js-memory", no_argument, NULL, OPT_JS_MEMORY},
        {"durable", required_argument, NULL, OPT_DURABLE},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"ack-wait", required_argument, NULL, OPT_ACK_WAIT},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"slot-size", required_argument, NULL, OPT_SLOT_SIZE},
        {"overwrite", no_argument, NULL, OPT_OVERWRITE},
        {"oversize", required_argument, NULL, OPT_OVERSIZE},
        {"stats", no_argument, NULL, OPT_STATS},
        {"subscriber", no_argument, NULL, OPT_SUBSCRIBER},
        {"count", required_argument, NULL, OPT_COUNT},
        {"csv", required_argument, NULL, OPT_CSV},
        {NULL, 0, NULL, 0},
    };
    a->window = 256;
    a->ack_wait_ns = 10000000000LL;
    cli_getopt_reset();
    int opt;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int rc = bridge_option(opt, optarg, a);
        if (rc < 0)
            return cli_bad_option("bridge", opt, argv);
        if (rc != CLI_OK)
            return rc;
    }
    int npos = argc - optind;
    char **pos = argv + optind;
    if (npos < 1)
        return cli_usage("bridge", "missing direction: out, in or bench");
    const char *ring_arg, *url, *subject = NULL;
    if (strcmp(pos[0], "out") == 0 && npos == 4) {
        a->out = 1;
        ring_arg = pos[1], url = pos[2], subject = pos[3];
    } else if (strcmp(pos[0], "in") == 0 && npos == 4) {
        url = pos[1], subject = pos[2], ring_arg = pos[3];
    } else if (strcmp(pos[0], "bench") == 0 && npos == 2) {
        a->bench = 1;
        a->url = pos[1];
        return bridge_url_valid(a->url)
                   ? CLI_OK
                   : cli_usage("bridge", "'%s' is not a NATS URL (nats://HOST:PORT)", a->url);
    } else if (strcmp(pos[0], "out") == 0) {
        return cli_usage("bridge", "out takes RING NATS_URL SUBJECT");
    } else if (strcmp(pos[0], "in") == 0) {
        return cli_usage("bridge", "in takes NATS_URL SUBJECT RING");
    } else {
        return cli_usage("bridge", "unknown direction '%s' (out, in or bench)", pos[0]);
    }
    if (cli_segment_name(ring_arg, a->ring) < 0)
        return cli_usage("bridge", "'%s' is not a valid ring name", ring_arg);
    if (!bridge_url_valid(url))
        return cli_usage("bridge", "'%s' is not a NATS URL (nats://HOST:PORT[,...])", url);
    /* A JetStream stream's subject or `out`'s subject must be literal. */
    if (!bridge_subject_valid(subject, !a->out && a->stream == NULL))
        return cli_usage("bridge", "'%s' is not a valid NATS subject%s", subject,
                         a->out || a->stream ? " (no wildcards here)" : "");
    a->url = url;
    a->subject = subject;
    if (a->out && (a->slots || a->slot_size || a->overwrite || a->durable[0]))
        return cli_usage("bridge", "--slots, --slot-size, --overwrite and --durable are for `in`");
    if (!a->out && a->subscriber)
        return cli_usage("bridge", "--subscriber is for `out`");
    if ((a->js_memory || a->durable[0]) && a->stream == NULL)
        return cli_usage("bridge", "--js-memory and --durable need --jetstream");
    if (a->durable[0] == '\0') {
        snprintf(a->durable, sizeof a->durable, "shmring-%s", a->ring + 1);
        for (char *p = a->durable; *p; p++)
            if (strchr(".*>/\\ ", *p))
                *p = '_';
    }
    return CLI_OK;
}

static int bridge_run(int argc, char **argv)
{
    struct bridge_args a;
    memset(&a, 0, sizeof a);
    int rc = bridge_parse(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    install_signals();
    rc = a.bench ? bridge_bench(&a) : a.out ? out_run(&a) : in_run(&a);
    nats_CloseAndWait(2000); /* lets the client library's threads end before exit */
    return rc;
}

const struct cli_command cli_cmd_bridge = {
    .name = "bridge",
    .summary = "carry a ring over NATS (out: ring to subject, in: subject to ring)",
    .help = bridge_help,
    .run = bridge_run,
};
