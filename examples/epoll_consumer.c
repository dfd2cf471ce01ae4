/*
 * Event-loop integration with epoll: a producer process and consumer
 * processes that sleep in epoll_wait() on shmring_event_fd() and never poll.
 *
 * The producer pushes the numbers 1..N in bursts with pauses; when the ring
 * is full it waits in epoll for room on its own descriptor. Each consumer
 * pops until -EAGAIN after every wake-up, sums what it got, and reports
 * through a pipe. The parent checks that every number arrived exactly once
 * (count and sum) and prints how many wake-ups each consumer had.
 *
 *   epoll_consumer [messages] [consumers]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <shmring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct report {
    uint64_t count, sum, wakes;
};

/* Wait until fd is readable (level-triggered epoll). */
static int wait_readable(int epfd)
{
    struct epoll_event e;
    for (;;) {
        int n = epoll_wait(epfd, &e, 1, -1);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

static int epoll_on(int fd)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        return -1;
    return epfd;
}

static int consumer(const char *name, int out)
{
    shmring_t *r;
    int rc = shmring_open(name, SHMRING_CONSUMER, &r);
    if (rc < 0) {
        fprintf(stderr, "consumer: open: %s\n", shmring_strerror(rc));
        return 1;
    }
    int epfd = epoll_on(shmring_event_fd(r));
    if (epfd < 0)
        return 1;
    struct report rep = {0, 0, 0};
    for (;;) {
        if (wait_readable(epfd) < 0)
            return 1;
        rep.wakes++;
        uint64_t v;
        ssize_t n;
        /* After each wake-up: pop until -EAGAIN, then wait again. */
        while ((n = shmring_pop(r, &v, sizeof v)) == (ssize_t)sizeof v) {
            rep.count++;
            rep.sum += v;
        }
        if (n == -EPIPE)
            break; /* the producer closed and the ring is empty */
        if (n != -EAGAIN && n != -EINPROGRESS) {
            fprintf(stderr, "consumer: pop: %s\n", shmring_strerror((int)n));
            return 1;
        }
    }
    shmring_close(r);
    return write(out, &rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 1;
}

static int produce(shmring_t *r, uint64_t messages, uint64_t *room_waits)
{
    int epfd = epoll_on(shmring_event_fd(r));
    if (epfd < 0)
        return -1;
    srand(42);
    for (uint64_t v = 1; v <= messages;) {
        int rc = shmring_push(r, &v, sizeof v);
        if (rc == 0) {
            /* A pause now and then, so that consumers go to sleep. */
            if (v++ % 997 == 0) {
                struct timespec ts = {0, (rand() % 2000) * 1000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (rc != -EAGAIN && rc != -EINPROGRESS)
            return rc;
        /* Full: sleep in epoll until there is room, then push again. */
        (*room_waits)++;
        if (wait_readable(epfd) < 0)
            return -errno;
    }
    close(epfd);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t messages = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    int consumers = argc > 2 ? atoi(argv[2]) : 2;
    if (consumers < 1 || consumers > 16)
        consumers = 2;
    char name[64];
    snprintf(name, sizeof name, "/epoll-example-%d", (int)getpid());
    shmring_unlink(name);
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 64, .slot_size = 8, .flags = SHMRING_PRODUCER);
    shmring_t *p;
    int rc = shmring_create(name, &cfg, &p);
    if (rc < 0) {
        fprintf(stderr, "create: %s\n", shmring_strerror(rc));
        return 1;
    }
    if (shmring_backend(p) == SHMRING_BACKEND_HEAP) {
        printf("epoll_consumer: heap backend, no processes to share with: skipped\n");
        shmring_close(p);
        return 0;
    }
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return 1;
    for (int i = 0; i < consumers; i++)
        if (fork() == 0)
            _exit(consumer(name, pipefd[1]));
    close(pipefd[1]);

    uint64_t room_waits = 0;
    rc = produce(p, messages, &room_waits);
    shmring_close(p); /* end of stream: consumers see -EPIPE */
    shmring_unlink(name);
    if (rc < 0) {
        fprintf(stderr, "push: %s\n", shmring_strerror(rc));
        return 1;
    }

    struct report total = {0, 0, 0}, rep;
    int reports = 0;
    while (read(pipefd[0], &rep, sizeof rep) == (ssize_t)sizeof rep) {
        printf("consumer %d: %" PRIu64 " messages, %" PRIu64 " wake-ups\n", reports, rep.count,
               rep.wakes);
        total.count += rep.count;
        total.sum += rep.sum;
        reports++;
    }
    int failed = 0, status;
    while (wait(&status) > 0)
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    uint64_t want = messages * (messages + 1) / 2;
    printf("producer: %" PRIu64 " messages, waited for room %" PRIu64 " times\n", messages,
           room_waits);
    if (failed || reports != consumers || total.count != messages || total.sum != want) {
        fprintf(stderr,
                "FAILED: %d reports, %" PRIu64 " messages (want %" PRIu64 "), sum %" PRIu64
                " (want %" PRIu64 ")\n",
                reports, total.count, messages, total.sum, want);
        return 1;
    }
    printf("every message arrived exactly once\n");
    return 0;
}
