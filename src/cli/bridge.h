/* `shmring bridge`: what its three files (bridge.c, bridge_js.c, bridge_bench.c) share. */
#ifndef SHMRING_CLI_BRIDGE_H
#define SHMRING_CLI_BRIDGE_H

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

/* Header of the final empty message that carries a ring's end of stream. */
#define BRIDGE_EOS_HEADER "Shmring-End-Of-Stream"

struct bridge_args {
    int out;   /* 1: ring -> NATS; 0: NATS -> ring */
    int bench; /* `shmring bridge bench` */
    char ring[SHMRING_NAME_MAX + 1];
    const char *url, *subject;
    const char *stream; /* --jetstream, or NULL for core NATS */
    int js_memory;
    char durable[224];
    unsigned window;
    int64_t ack_wait_ns;
    uint32_t slots, slot_size;
    int overwrite, oversize_stop, stats;
    int subscriber;     /* out: read RING as a broadcast subscriber (--subscriber) */
    int ring_overwrite; /* in: the target ring is in overwrite mode */
    int eos;            /* the stream ended (end of stream crossed) */
    uint64_t oversize_reported;
    int64_t last_stats_ns;
    uint64_t last_stats_msgs;
    uint64_t bench_count;
    const char *bench_csv;
};

enum bridge_counter {
    BRIDGE_ERRORS,
    BRIDGE_DUPLICATES,
    BRIDGE_RESENT,
    BRIDGE_OVERSIZE,
    BRIDGE_DROPPED
};

/* bridge_push results. */
#define BRIDGE_PUSH_OK      0
#define BRIDGE_PUSH_SKIPPED 1 /* larger than the ring's slots, --oversize skip */
#define BRIDGE_PUSH_STOPPED 2 /* SIGINT/SIGTERM while waiting for room */
#define BRIDGE_PUSH_FATAL   3 /* oversize with --oversize stop, or a ring error */

int bridge_stopping(void);
int64_t bridge_now_ns(void);
void bridge_tick(struct bridge_args *a);
void bridge_count_message(size_t len);
void bridge_count(enum bridge_counter which, uint64_t n);
void bridge_set_in_flight(uint64_t n);
uint64_t bridge_reconnects(void);
int bridge_subject_valid(const char *s, int wildcards);
int bridge_url_valid(const char *url);
int bridge_connect(const char *cmd, const char *url, const char *name, natsConnection **nc);
int bridge_push(struct bridge_args *a, shmring_t *r, const void *data, size_t len);
int bridge_is_eos(natsMsg *m);

/* JetStream halves (bridge_js.c). */
int bridge_out_jetstream(struct bridge_args *a, shmring_t *r, natsConnection *nc, jsCtx *js);
int bridge_in_jetstream(struct bridge_args *a, shmring_t *r, natsConnection *nc, jsCtx *js,
                        int64_t stream_created);

/* `shmring bridge bench` (bridge_bench.c). */
int bridge_bench(struct bridge_args *a);

#endif
