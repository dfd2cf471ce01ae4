/*
 * Event-loop integration with libuv: a consumer driven by a uv_poll_t on
 * shmring_event_fd(), beside a uv_timer_t in the same loop, and a producer
 * process that pushes the numbers 1..N with pauses.
 *
 * On every UV_READABLE the callback pops until -EAGAIN (then the loop
 * sleeps again) or -EPIPE (the producer closed: the watcher stops and the
 * loop ends). The program checks that every number arrived once, in order.
 *
 *   uv_consumer [messages]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <shmring.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

struct consumer {
    shmring_t *ring;
    uv_poll_t poll;
    uv_timer_t ticker;
    uint64_t next; /* the number expected next */
    uint64_t wakes, ticks;
    int failed;
};

static void on_readable(uv_poll_t *w, int status, int events)
{
    struct consumer *c = w->data;
    if (status < 0 || !(events & UV_READABLE)) {
        c->failed = 1;
        uv_poll_stop(w);
        uv_timer_stop(&c->ticker);
        return;
    }
    c->wakes++;
    uint64_t v;
    ssize_t n;
    while ((n = shmring_pop(c->ring, &v, sizeof v)) == (ssize_t)sizeof v) {
        if (v != c->next)
            c->failed = 1;
        c->next = v + 1;
    }
    if (n == -EAGAIN || n == -EINPROGRESS)
        return; /* armed again: the loop sleeps until the next message */
    if (n != -EPIPE) {
        fprintf(stderr, "pop: %s\n", shmring_strerror((int)n));
        c->failed = 1;
    }
    uv_poll_stop(w); /* end of stream */
    uv_timer_stop(&c->ticker);
}

/* Something else the loop does meanwhile. */
static void on_tick(uv_timer_t *t)
{
    struct consumer *c = t->data;
    c->ticks++;
}

static int producer(const char *name, uint64_t messages)
{
    shmring_t *p;
    if (shmring_open(name, SHMRING_PRODUCER, &p) != 0)
        return 1;
    for (uint64_t v = 1; v <= messages; v++) {
        /* Waits for room (futex sleep) when the consumer lags. */
        if (shmring_push_wait(p, &v, sizeof v, -1) != 0)
            return 1;
        if (v % 500 == 0) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    shmring_close(p);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t messages = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    char name[64];
    snprintf(name, sizeof name, "/uv-example-%d", (int)getpid());
    shmring_unlink(name);
    struct consumer c = {.next = 1};
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 256, .slot_size = 8, .flags = SHMRING_CONSUMER);
    int rc = shmring_create(name, &cfg, &c.ring);
    if (rc < 0) {
        fprintf(stderr, "create: %s\n", shmring_strerror(rc));
        return 1;
    }
    if (shmring_backend(c.ring) == SHMRING_BACKEND_HEAP) {
        printf("uv_consumer: heap backend, no processes to share with: skipped\n");
        shmring_close(c.ring);
        return 0;
    }
    int fd = shmring_event_fd(c.ring);
    if (fd < 0) {
        fprintf(stderr, "event fd: %s\n", shmring_strerror(fd));
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0)
        _exit(producer(name, messages));

    uv_loop_t *loop = uv_default_loop();
    uv_poll_init(loop, &c.poll, fd);
    c.poll.data = &c;
    uv_poll_start(&c.poll, UV_READABLE, on_readable);
    uv_timer_init(loop, &c.ticker);
    c.ticker.data = &c;
    uv_timer_start(&c.ticker, on_tick, 10, 10);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&c.poll, NULL);
    uv_close((uv_handle_t *)&c.ticker, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);

    int status;
    waitpid(pid, &status, 0);
    shmring_close(c.ring);
    shmring_unlink(name);
    printf("%" PRIu64 " messages in %" PRIu64 " wake-ups; the timer ticked %" PRIu64 " times\n",
           c.next - 1, c.wakes, c.ticks);
    if (c.failed || c.next != messages + 1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "FAILED: got up to %" PRIu64 " of %" PRIu64 "\n", c.next - 1, messages);
        return 1;
    }
    printf("every message arrived once, in order\n");
    return 0;
}
