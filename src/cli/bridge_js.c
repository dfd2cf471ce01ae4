/*
 * `shmring bridge --jetstream`: at-least-once over JetStream, duplicates
 * removed on both sides.
 *
 * out: every message is taken from the ring as a zero-copy claim and
 * published with the message id HOST:RING:CREATED-POS (the ring's creation
 * time and the message's position); a window of them is published
 * asynchronously, and the claims are released once every one is
 * acknowledged. After an error (server restart, timeout) the window is
 * published again one by one in order. A bridge killed with claims in flight
 * leaves them to the ring, which on a SHMRING_REDELIVER ring redelivers them
 * to the restarted bridge; JetStream's duplicate window drops the copies it
 * already stored.
 *
 * in: a durable pull consumer (acknowledge-all). Each message is pushed into
 * the ring, then its stream sequence and the ring's pushed count are
 * recorded in a state table RING.bridge-in, and only then acknowledged; a
 * redelivered message at or below the recorded sequence is acknowledged and
 * skipped, and after a restart a ring that counts one push more than the
 * record (killed between push and record) makes the next message skipped.
 * A message that arrives after a gap (an earlier one was delivered on a
 * connection that broke) is refused (NAK) until the earlier one is
 * redelivered, so the ring receives the stream in order.
 */
#define _GNU_SOURCE
#include "bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACK_WAIT_MS 5000 /* longest wait for a window's acknowledgements */
#define RETRY_NS    250000000LL

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    nanosleep(&ts, NULL);
}

/* "/feed" + ".bridge-out" within SHMRING_NAME_MAX. */
static int side_name(const char *ring, const char *suffix, char out[SHMRING_NAME_MAX + 1])
{
    int n = snprintf(out, SHMRING_NAME_MAX + 1, "%s%s", ring, suffix);
    return n > 0 && n <= SHMRING_NAME_MAX ? 0 : -ENAMETOOLONG;
}

static int open_table(const char *name, uint32_t entries, uint32_t value_size,
                      shmring_state_t **out)
{
    int err = shmring_state_open(name, 0, out);
    if (err != -ENOENT)
        return err;
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = value_size,
                                  .flags = SHMRING_NO_FALLBACK);
    err = shmring_state_create(name, &cfg, out);
    if (err == -EEXIST)
        err = shmring_state_open(name, 0, out);
    return err;
}

/* ---- out: claims held until acknowledged ----------------------------------- */

/*
 * `out` holds each message as a zero-copy claim of the ring until JetStream
 * has acknowledged it, then releases it. A bridge killed with claims in
 * flight leaves them to the ring: on a ring created with SHMRING_REDELIVER
 * they are redelivered to the restarted bridge (oldest first, before any
 * newer message, since it reclaims dead consumers before its first claim)
 * and published again with the same id, which JetStream drops if it stored
 * the first copy; on another ring they are counted as abandoned.
 *
 * The id is HOST:RING:CREATED-POS: the ring's creation time (microseconds:
 * a ring made again under the same name starts new ids) and the message's
 * position in the ring, which every delivery of one message shares and
 * which grows with the ring's order (positions never repeat, also across
 * producers), so that `in` can tell a message it has pushed by its id.
 */
struct out_ids {
    char prefix[256];  /* HOST:RING: */
    uint64_t created;  /* the ring's creation time, us */
    char last_id[320]; /* id of the message published before the next one */
};

static void msg_id(const struct out_ids *o, uint64_t pos, char out[320])
{
    snprintf(out, 320, "%s%" PRIu64 "-%" PRIu64, o->prefix, o->created, pos);
}

/* Publish one message synchronously, retrying until JetStream stores it (or
 * says it already has it). Returns 0, or -EINTR when asked to stop. */
static int publish_sync(struct bridge_args *a, jsCtx *js, const char *id, const void *data,
                        size_t len)
{
    for (;;) {
        natsMsg *m = NULL;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = ACK_WAIT_MS;
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        natsStatus s = natsMsg_Create(&m, a->subject, NULL, data, (int)len);
        if (s == NATS_OK)
            s = js_PublishMsg(&pa, js, m, &po, &jerr);
        natsMsg_Destroy(m);
        if (s == NATS_OK) {
            if (pa->Duplicate)
                bridge_count(BRIDGE_DUPLICATES, 1);
            jsPubAck_Destroy(pa);
            return 0;
        }
        if (s == NATS_MAX_PAYLOAD) {
            fprintf(stderr,
                    "shmring: bridge: out: a message of %zu bytes exceeds the server's "
                    "max_payload: not sent\n",
                    len);
            bridge_count(BRIDGE_DROPPED, 1);
            return 0;
        }
        bridge_count(BRIDGE_ERRORS, 1);
        bridge_tick(a);
        if (bridge_stopping())
            return -EINTR;
        sleep_ns(RETRY_NS);
    }
}

/*
 * Before the first claim: reclaim dead consumers (a killed predecessor's
 * claims become redeliverable, and so come before anything newer), and
 * name the ring's messages.
 */
static int out_ids_init(struct bridge_args *a, struct out_ids *o, shmring_t *r)
{
    shmring_stats_t st;
    int err = shmring_stats(r, &st);
    if (err < 0)
        return cli_fail("bridge", "out: %s: %s", a->ring, shmring_strerror(err));
    if (!(st.flags & SHMRING_REDELIVER))
        fprintf(stderr,
                "shmring: bridge: out: %s was not created with SHMRING_REDELIVER: messages in "
                "flight when this bridge is killed are lost (the ring counts them as "
                "abandoned)\n",
                a->ring);
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(o->prefix, sizeof o->prefix, "%s:%s:", host, a->ring);
    o->created = st.created_ns / 1000;
    o->last_id[0] = '\0';
    return CLI_OK;
}

/* Acknowledgements of the asynchronous publishes of one window. */
static pthread_mutex_t ack_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned ack_errors;

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)closure;
    if (pa != NULL && pa->Duplicate)
        bridge_count(BRIDGE_DUPLICATES, 1);
    if (pae != NULL) {
        pthread_mutex_lock(&ack_lock);
        ack_errors++;
        pthread_mutex_unlock(&ack_lock);
        bridge_count(BRIDGE_ERRORS, 1);
    }
    natsMsg_Destroy(msg);
}

struct window {
    shmring_msg_t *claims; /* held, oldest first */
    unsigned n;
    int failed; /* a publish was refused: send the window again in order */
};

/* Publish one claimed message (still held) asynchronously. */
static void window_add(struct bridge_args *a, struct out_ids *o, jsCtx *js, struct window *w,
                       natsConnection *nc, const shmring_msg_t *m)
{
    w->claims[w->n++] = *m;
    natsMsg *nm = NULL;
    natsStatus s = natsMsg_Create(&nm, a->subject, NULL, m->data, (int)m->len);
    if (s != NATS_OK || w->failed || natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
        /* Not sent now: the window is published again in order below, so
         * that nothing goes on a new connection ahead of an older message. */
        natsMsg_Destroy(nm);
        w->failed = 1;
        return;
    }
    /* Each message may only follow its predecessor: a message that the
     * client library sends on a new connection after older ones were lost
     * with the old one is refused, so the stream keeps the ring's order
     * (the window is then sent again in order). */
    char id[320];
    jsPubOptions po;
    jsPubOptions_Init(&po);
    msg_id(o, shmring_msg_pos(m), id);
    po.MsgId = id;
    po.ExpectLastMsgId = o->last_id[0] != '\0' ? o->last_id : NULL;
    s = js_PublishMsgAsync(js, &nm, &po);
    snprintf(o->last_id, sizeof o->last_id, "%s", id);
    natsMsg_Destroy(nm);
    if (s != NATS_OK)
        w->failed = 1;
}

/*
 * Wait for the window's acknowledgements; on any error send it again in
 * order, one message at a time. Then release its claims. Returns -1 when
 * asked to stop before every message was stored (the claims stay held: the
 * close hands them back to the ring).
 */
static int window_finish(struct bridge_args *a, struct out_ids *o, jsCtx *js, shmring_t *r,
                         struct window *w)
{
    bridge_set_in_flight(w->n);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = ACK_WAIT_MS;
    natsStatus s = js_PublishAsyncComplete(js, &po);
    pthread_mutex_lock(&ack_lock);
    int failed = w->failed || s != NATS_OK || ack_errors > 0;
    ack_errors = 0;
    pthread_mutex_unlock(&ack_lock);
    if (failed) {
        natsMsgList pending = {NULL, 0};
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK)
            natsMsgList_Destroy(&pending);
        for (unsigned i = 0; i < w->n; i++) {
            char id[320];
            msg_id(o, shmring_msg_pos(&w->claims[i]), id);
            if (publish_sync(a, js, id, w->claims[i].data, w->claims[i].len) < 0)
                return -1;
            snprintf(o->last_id, sizeof o->last_id, "%s", id);
            bridge_count(BRIDGE_RESENT, 1);
        }
    }
    for (unsigned i = 0; i < w->n; i++) {
        bridge_count_message(w->claims[i].len);
        int err = shmring_release(r, &w->claims[i]);
        if (err < 0)
            return cli_fail("bridge", "out: release: %s", shmring_strerror(err));
    }
    w->n = 0;
    w->failed = 0;
    bridge_set_in_flight(0);
    return CLI_OK;
}

/* The end of stream, with an id that is the same however often it is sent:
 * the ring's creation time and producer epoch. */
static int send_eos(struct bridge_args *a, const struct out_ids *o, shmring_t *r, jsCtx *js)
{
    shmring_stats_t st;
    memset(&st, 0, sizeof st);
    shmring_stats(r, &st);
    char id[320];
    snprintf(id, sizeof id, "%seos-%" PRIu64 "-%" PRIu64, o->prefix, st.created_ns,
             st.producer_epoch);
    for (;;) {
        natsMsg *m = NULL;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = ACK_WAIT_MS;
        jsErrCode jerr = 0;
        natsStatus s = natsMsg_Create(&m, a->subject, NULL, NULL, 0);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, BRIDGE_EOS_HEADER, "1");
        if (s == NATS_OK)
            s = js_PublishMsg(NULL, js, m, &po, &jerr);
        natsMsg_Destroy(m);
        if (s == NATS_OK)
            return CLI_OK;
        bridge_count(BRIDGE_ERRORS, 1);
        if (bridge_stopping())
            return CLI_OK;
        sleep_ns(RETRY_NS);
    }
}

int bridge_out_jetstream(struct bridge_args *a, shmring_t *r, natsConnection *nc, jsCtx *js_admin)
{
    (void)js_admin;
    struct out_ids ids;
    struct window w = {calloc(a->window, sizeof(shmring_msg_t)), 0, 0};
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = a->window;
    jo.PublishAsync.AckHandler = on_pub_ack;
    int rc = w.claims != NULL ? CLI_OK : cli_fail("bridge", "out of memory");
    if (rc == CLI_OK && natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
        rc = cli_fail("bridge", "out: JetStream context");
    if (rc == CLI_OK)
        rc = out_ids_init(a, &ids, r);
    int ended = 0;
    while (rc == CLI_OK && !bridge_stopping() && !ended) {
        bridge_tick(a);
        shmring_msg_t m;
        int err = shmring_claim_wait(r, &m, 100000000LL);
        while (err == 0) {
            window_add(a, &ids, js, &w, nc, &m);
            if (w.n == a->window)
                break;
            err = shmring_claim(r, &m);
        }
        if (err == -EPIPE)
            ended = 1;
        else if (err < 0 && err != -EAGAIN && err != -ETIMEDOUT && err != -EINPROGRESS &&
                 rc == CLI_OK)
            rc = cli_fail("bridge", "out: %s: %s", a->ring, shmring_strerror(err));
        if (w.n > 0 && window_finish(a, &ids, js, r, &w) != CLI_OK)
            rc = bridge_stopping() ? CLI_OK : CLI_FAIL;
    }
    if (ended && rc == CLI_OK) {
        rc = send_eos(a, &ids, r, js);
        a->eos = 1;
    }
    /* Stopping with a window in flight: one more bounded wait for its
     * acknowledgements; whatever is not confirmed stays claimed, and the
     * ring takes it back when the handle closes (redelivered on a
     * SHMRING_REDELIVER ring). */
    if (w.n > 0 && js != NULL) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = ACK_WAIT_MS;
        pthread_mutex_lock(&ack_lock);
        ack_errors = 0;
        pthread_mutex_unlock(&ack_lock);
        natsStatus s = js_PublishAsyncComplete(js, &po);
        pthread_mutex_lock(&ack_lock);
        int ok = s == NATS_OK && ack_errors == 0 && !w.failed;
        pthread_mutex_unlock(&ack_lock);
        for (unsigned i = 0; ok && i < w.n; i++) {
            bridge_count_message(w.claims[i].len);
            shmring_release(r, &w.claims[i]);
        }
    }
    jsCtx_Destroy(js);
    free(w.claims);
    return rc;
}

/* ---- in ---------------------------------------------------------------------- */

/*
 * What `in` remembers between runs, under key "last" of RING.bridge-in: the
 * stream sequence and the message id (from `out`) of the last message it
 * pushed into the ring, and the ring's count of pushed messages just after
 * it. `in` is the ring's only producer (it holds the lease), so a ring that
 * counts more pushes than the record says that `in` was killed between a
 * push and its record: the next message of the stream is in the ring
 * already. The ring's own count is exact across a producer's death (a new
 * holder of the lease counts what its predecessor published and did not
 * count).
 */
struct in_mark {
    int64_t stream_created;
    uint64_t last_seq;     /* stream sequence of the last message pushed */
    char last_id[320];     /* its Nats-Msg-Id, "" if it had none */
    char consumer[432];    /* STREAM/DURABLE */
    uint64_t ring_created; /* the ring's created_ns */
    uint64_t ring_pushed;  /* the ring's pushed count after that message */
};

struct in_state {
    shmring_state_t *st;
    struct in_mark mark;
    natsSubscription *sub;
    uint64_t reconnects; /* bridge_reconnects() when last checked */
    uint64_t pushed;     /* the ring's pushed count now (we are its producer) */
    uint64_t skip;       /* messages pushed but not recorded by a killed run */
};

/* An id HOST:RING:EPOCH-N from `out`: its source (HOST:RING:) and numbers. */
struct out_id {
    size_t source_len;
    uint64_t epoch, n;
};

/* Digits of a decimal number at *p, advancing *p; 0 if there are none. */
static int take_number(const char **p, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    while (*s >= '0' && *s <= '9' && x < UINT64_MAX / 10)
        x = x * 10 + (uint64_t)(*s++ - '0');
    if (s == *p)
        return 0;
    *p = s;
    *v = x;
    return 1;
}

static int parse_out_id(const char *id, struct out_id *o)
{
    const char *colon = id != NULL ? strrchr(id, ':') : NULL;
    if (colon == NULL)
        return 0;
    const char *p = colon + 1;
    if (!take_number(&p, &o->epoch) || *p++ != '-' || !take_number(&p, &o->n) || *p != '\0')
        return 0;
    o->source_len = (size_t)(colon + 1 - id);
    return 1;
}

/* 1 if message id `id` is at or before `last` from the same `out`. */
static int id_not_after(const char *id, const char *last)
{
    struct out_id a, b;
    if (!parse_out_id(id, &a) || !parse_out_id(last, &b) || a.source_len != b.source_len ||
        strncmp(id, last, a.source_len) != 0)
        return 0;
    return a.epoch < b.epoch || (a.epoch == b.epoch && a.n <= b.n);
}

static const char *msg_id_of(natsMsg *m)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, "Nats-Msg-Id", &v) == NATS_OK ? v : NULL;
}

static int in_state_open(struct bridge_args *a, struct in_state *is, shmring_t *r, int64_t created)
{
    char name[SHMRING_NAME_MAX + 1];
    if (side_name(a->ring, ".bridge-in", name) < 0)
        return cli_fail("bridge", "in: ring name too long for its state name");
    int err = open_table(name, 16, sizeof(struct in_mark), &is->st);
    if (err < 0)
        return cli_fail("bridge", "in: state %s: %s", name, shmring_strerror(err));
    char consumer[sizeof is->mark.consumer];
    snprintf(consumer, sizeof consumer, "%s/%s", a->stream, a->durable);
    struct in_mark m;
    memset(&m, 0, sizeof m);
    ssize_t n = shmring_state_read(is->st, "last", &m, sizeof m);
    m.consumer[sizeof m.consumer - 1] = '\0';
    m.last_id[sizeof m.last_id - 1] = '\0';
    if (n != (ssize_t)sizeof m || m.stream_created != created ||
        strcmp(m.consumer, consumer) != 0) {
        /* Another stream (or a recreated one): its sequences start again. */
        memset(&m, 0, sizeof m);
        m.stream_created = created;
        snprintf(m.consumer, sizeof m.consumer, "%s", consumer);
    }
    shmring_stats_t rs;
    err = shmring_stats(r, &rs);
    if (err < 0)
        return cli_fail("bridge", "in: %s: %s", a->ring, shmring_strerror(err));
    is->pushed = rs.pushed;
    if (m.ring_created == rs.created_ns && rs.pushed > m.ring_pushed) {
        is->skip = rs.pushed - m.ring_pushed;
        fprintf(stderr,
                "shmring: bridge: in: %s holds %" PRIu64 " message(s) pushed after the last "
                "record (sequence %" PRIu64 "): skipping them in the stream\n",
                a->ring, is->skip, m.last_seq);
    }
    m.ring_created = rs.created_ns;
    m.ring_pushed = rs.pushed - is->skip; /* the skipped ones count once skipped */
    is->mark = m;
    /* Recorded before the first push: a run killed right after it is
     * caught too (and one killed again before its skip, once more). */
    err = shmring_state_write(is->st, "last", &is->mark, sizeof is->mark);
    if (err < 0)
        return cli_fail("bridge", "in: state: %s", shmring_strerror(err));
    return CLI_OK;
}

static int in_state_record(struct in_state *is, uint64_t seq, const char *id)
{
    is->mark.last_seq = seq;
    is->mark.ring_pushed = is->pushed;
    snprintf(is->mark.last_id, sizeof is->mark.last_id, "%s", id != NULL ? id : "");
    return shmring_state_write(is->st, "last", &is->mark, sizeof is->mark);
}

/* Is stream sequence `seq` absent from the stream (deleted, or never stored
 * for our subject), so that a gap before the next one is real? */
static int seq_absent(jsCtx *js, const struct bridge_args *a, uint64_t seq)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, js, a->stream, seq, NULL, &jerr);
    natsMsg_Destroy(m);
    /* Only "no message found" says so: a stream not found (a server still
     * starting) or a timeout says nothing. */
    return s == NATS_NOT_FOUND && jerr == JSNoMessageFoundErr;
}

static int in_subscribe(struct bridge_args *a, jsCtx *js, struct in_state *is, uint64_t start)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = a->stream;
    so.Config.Durable = a->durable;
    so.Config.AckPolicy = js_AckAll;
    so.Config.AckWait = a->ack_wait_ns;
    so.Config.MaxAckPending = 4 * (int64_t)a->window;
    so.Config.DeliverPolicy = start > 0 ? js_DeliverByStartSequence : js_DeliverAll;
    so.Config.OptStartSeq = start;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&is->sub, js, a->subject, a->durable, NULL, &so, &jerr);
    if (s != NATS_OK)
        return cli_fail("bridge", "in: durable consumer %s on %s: %s (%s)", a->durable, a->stream,
                        natsStatus_GetText(s),
                        nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    return CLI_OK;
}

/*
 * Start the durable consumer right after stream sequence `last` (0: from
 * the beginning). `in`'s own record, not the consumer's acknowledgements,
 * says where the ring stands: a consumer left by a killed `in`, or by a
 * connection that broke, holds deliveries that would only come back after
 * the acknowledgement wait; one made afresh delivers them now, in order.
 */
static int in_restart_consumer(struct bridge_args *a, jsCtx *js, struct in_state *is, uint64_t last)
{
    natsSubscription_Destroy(is->sub);
    is->sub = NULL;
    /* Also before the first record: a consumer left by a run killed after
     * its first fetch holds those deliveries until the acknowledgement
     * wait, and would hand out later ones first. */
    js_DeleteConsumer(js, a->stream, a->durable, NULL, NULL);
    return in_subscribe(a, js, is, last > 0 ? last + 1 : 0);
}

/*
 * Where to start after a (re)connection: after the last message `in`
 * pushed. A server stopped while messages were in flight can come back
 * without the end of the stream that `in` already pushed, and number new
 * messages with the same sequences; so look for the last message still in
 * the stream that `in` has pushed (by the ids from `out`). The id check
 * drops whatever arrives twice.
 */
static int in_find_start(struct bridge_args *a, jsCtx *js, struct in_state *is, uint64_t *start)
{
    uint64_t seq = is->mark.last_seq;
    struct out_id mine;
    /* Without an id from `out` (or after the end of stream) there is
     * nothing to recognise messages by: trust the sequence. */
    while (seq > 0 && parse_out_id(is->mark.last_id, &mine)) {
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetMsg(&m, js, a->stream, seq, NULL, &jerr);
        if (s != NATS_OK && !(s == NATS_NOT_FOUND && jerr == JSNoMessageFoundErr)) {
            natsMsg_Destroy(m);
            if (bridge_stopping())
                return -1;
            sleep_ns(RETRY_NS); /* the server is still starting */
            continue;
        }
        const char *id = s == NATS_OK ? msg_id_of(m) : NULL;
        int same = id != NULL && strcmp(id, is->mark.last_id) == 0;
        int before = id != NULL && id_not_after(id, is->mark.last_id);
        natsMsg_Destroy(m);
        if (same || before)
            break;
        seq--;
    }
    if (seq != is->mark.last_seq) {
        fprintf(stderr,
                "shmring: bridge: in: the stream lost messages after sequence %" PRIu64
                " in a server restart: consumer %s starts again there\n",
                seq, a->durable);
        is->mark.last_seq = seq;
        int err = shmring_state_write(is->st, "last", &is->mark, sizeof is->mark);
        if (err < 0)
            return cli_fail("bridge", "in: state: %s", shmring_strerror(err));
    }
    *start = seq;
    return CLI_OK;
}

static int in_resume(struct bridge_args *a, jsCtx *js, struct in_state *is)
{
    uint64_t last = 0;
    int rc = in_find_start(a, js, is, &last);
    if (rc != CLI_OK)
        return bridge_stopping() ? CLI_OK : rc;
    return in_restart_consumer(a, js, is, last);
}

struct in_item {
    uint64_t seq;
    natsMsg *m;
};

static int item_order(const void *x, const void *y)
{
    const struct in_item *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Already in the ring? By the id from `out` when there is one (sequences
 * can be reused after a server restart), else by stream sequence. */
static int already_pushed(const struct in_state *is, natsMsg *m, uint64_t seq)
{
    const char *id = msg_id_of(m);
    struct out_id o;
    if (id != NULL && parse_out_id(id, &o) && parse_out_id(is->mark.last_id, &o))
        return id_not_after(id, is->mark.last_id);
    return seq <= is->mark.last_seq;
}

/* One fetched batch, in stream order: push, record, then acknowledge all. */
static int in_batch(struct bridge_args *a, shmring_t *r, jsCtx *js, struct in_state *is,
                    natsMsgList *list)
{
    struct in_item *items = calloc((size_t)list->Count, sizeof *items);
    if (items == NULL)
        return cli_fail("bridge", "out of memory");
    for (int k = 0; k < list->Count; k++) {
        jsMsgMetaData *meta = NULL;
        items[k].m = list->Msgs[k];
        if (natsMsg_GetMetaData(&meta, list->Msgs[k]) == NATS_OK) {
            items[k].seq = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
        }
    }
    qsort(items, (size_t)list->Count, sizeof *items, item_order);
    natsMsg *ack = NULL;
    int rc = CLI_OK, i = 0;
    for (; i < list->Count; i++) {
        natsMsg *m = items[i].m;
        uint64_t seq = items[i].seq, last = is->mark.last_seq;
        if (seq == 0) { /* no metadata: not a JetStream message */
            bridge_count(BRIDGE_ERRORS, 1);
            continue;
        }
        if (already_pushed(is, m, seq)) { /* delivered again */
            bridge_count(BRIDGE_DUPLICATES, 1);
            ack = m;
            continue;
        }
        if (last > 0 && seq > last + 1 && !seq_absent(js, a, last + 1))
            break; /* an earlier message is still on its way: refuse the rest */
        int eos = bridge_is_eos(m);
        size_t len = (size_t)natsMsg_GetDataLength(m);
        int p = BRIDGE_PUSH_OK;
        if (!eos && is->skip > 0 && len <= shmring_slot_size(r)) {
            /* Pushed by a run killed before its record: in the ring already. */
            is->skip--;
            bridge_count(BRIDGE_DUPLICATES, 1);
        } else if (!eos) {
            p = bridge_push(a, r, natsMsg_GetData(m), len);
            is->pushed += p == BRIDGE_PUSH_OK;
        }
        if (p == BRIDGE_PUSH_STOPPED || p == BRIDGE_PUSH_FATAL) {
            rc = p == BRIDGE_PUSH_FATAL ? CLI_FAIL : CLI_OK;
            break;
        }
        int err = in_state_record(is, seq, msg_id_of(m));
        if (err < 0) {
            rc = cli_fail("bridge", "in: state: %s", shmring_strerror(err));
            break;
        }
        ack = m;
        if (eos) {
            a->eos = 1;
            i++;
            break;
        }
    }
    if (ack != NULL && natsMsg_AckSync(ack, NULL, NULL) != NATS_OK)
        bridge_count(BRIDGE_ERRORS, 1); /* redelivered later, then skipped */
    /* Refused: back to the server, redelivered after a short pause (by then
     * the missing earlier message is due again). */
    for (; i < list->Count; i++)
        natsMsg_NakWithDelay(items[i].m, 100, NULL);
    free(items);
    return rc;
}

int bridge_in_jetstream(struct bridge_args *a, shmring_t *r, natsConnection *nc, jsCtx *js,
                        int64_t stream_created)
{
    struct in_state is;
    memset(&is, 0, sizeof is);
    is.reconnects = bridge_reconnects();
    int rc = in_state_open(a, &is, r, stream_created);
    if (rc == CLI_OK)
        rc = in_resume(a, js, &is);
    while (rc == CLI_OK && is.sub != NULL && !bridge_stopping() && !a->eos) {
        bridge_tick(a);
        natsMsgList list = {NULL, 0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, is.sub, (int)a->window, 200, &jerr);
        uint64_t reconnects = bridge_reconnects();
        if (reconnects != is.reconnects) {
            is.reconnects = reconnects;
            natsMsgList_Destroy(&list); /* delivered again after the restart */
            rc = in_resume(a, js, &is);
            continue;
        }
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            if (natsConnection_IsClosed(nc)) {
                rc = cli_fail("bridge", "in: connection closed");
                break;
            }
            bridge_count(BRIDGE_ERRORS, 1);
            sleep_ns(100000000LL);
            continue;
        }
        bridge_set_in_flight((uint64_t)list.Count);
        rc = in_batch(a, r, js, &is, &list);
        bridge_set_in_flight(0);
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Destroy(is.sub);
    shmring_state_close(is.st);
    return rc;
}
