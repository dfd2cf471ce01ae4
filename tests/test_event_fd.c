/* Event descriptors (shmring_event_fd): errors, readiness, end of stream,
 * dead peers, hostile senders, and a lost-wake-up stress across processes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "event.h"
#include "harness.h"
#include "segment.h"

#define MS 1000000LL

/* Is fd readable within ms milliseconds (0: now)? */
static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return n == 1 && (p.revents & POLLIN);
}

/* Pop until -EAGAIN; returns how many messages (each checked). */
static int drain_ring(shmring_t *c)
{
    unsigned char buf[256];
    int got = 0;
    ssize_t n;
    while ((n = shmring_pop(c, buf, sizeof buf)) >= 0) {
        uint64_t id;
        cr_assert(test_check(buf, (size_t)n, &id), "torn message");
        got++;
    }
    cr_assert_eq(n, -EAGAIN, "pop: %zd", n);
    return got;
}

/* ---- Errors --------------------------------------------------------------- */

Test(event_fd, null_is_einval)
{
    cr_assert_eq(shmring_event_fd(NULL), -EINVAL);
}

Test(event_fd, observer_is_eperm)
{
    const char *name = test_name("ev-obs");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *o = test_open_as(name, SHMRING_OBSERVER);
    cr_assert_eq(shmring_event_fd(o), -EPERM);
    cr_assert_eq(shmring_event_fd(o), -EPERM, "no descriptor was made on the way");
    cr_assert_geq(shmring_event_fd(p), 0);
    shmring_close(o);
    shmring_close(p);
    shmring_unlink(name);
}

Test(event_fd, no_descriptors_left_is_emfile)
{
    const char *name = test_name("ev-mfile");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Use up every descriptor below a tiny limit. */
        struct rlimit rl = {16, 16};
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(2);
        while (dup(0) >= 0)
            ;
        int rc = shmring_event_fd(c);
        if (rc != -EMFILE)
            _exit(3);
        /* Nothing was left half-made: with room again, it works. */
        for (int fd = 3; fd < 16; fd++)
            close(fd);
        int fd = shmring_event_fd(c);
        if (fd < 0 || readable(fd, 0))
            _exit(4);
        test_push_id(p, 0, 32);
        _exit(readable(fd, 0) ? 0 : 5);
    }
    cr_assert_eq(test_wait_child(pid), 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(event_fd, producer_that_lost_its_lease_is_eownerdead)
{
    if (test_heap_forced())
        cr_skip_test("the lease word is changed through a second mapping of the segment");
    const char *name = test_name("ev-lease");
    shmring_t *p = test_make(name, 8, 64, SHMRING_PRODUCER);
    struct shmring__hdr *h =
        mmap(NULL, SHMRING__HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, shmring_fd(p), 0);
    cr_assert(h != MAP_FAILED);
    /* Another holder's word (a later generation), as after a takeover. */
    uint64_t o = __atomic_load_n(&h->party[0].owner, __ATOMIC_ACQUIRE);
    __atomic_store_n(&h->party[0].owner,
                     SHMRING__OWNER_WORD(SHMRING__PARTY_ACTIVE, SHMRING__OWNER_GEN(o) + 1,
                                         SHMRING__OWNER_PID(o)),
                     __ATOMIC_RELEASE);
    cr_assert_eq(shmring_event_fd(p), -EOWNERDEAD);
    cr_assert_eq(shmring_event_fd(p), -EOWNERDEAD);
    munmap(h, SHMRING__HEADER_SIZE);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Readiness in one process (both backends) ----------------------------- */

Test(event_fd, same_descriptor_close_on_exec_and_starts_armed)
{
    const char *name = test_name("ev-same");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    cr_assert_geq(fd, 0);
    cr_assert_eq(shmring_event_fd(c), fd);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    cr_assert_not(readable(fd, 0), "empty ring: not readable");
    test_push_id(p, 0, 32);
    cr_assert(readable(fd, 0), "armed from the start");
    cr_assert_eq(drain_ring(c), 1);
    cr_assert_not(readable(fd, 0));
    /* A descriptor made while a message waits is readable at once. */
    test_push_id(p, 1, 32);
    shmring_t *c2 = test_open_as(name, SHMRING_CONSUMER);
    int fd2 = shmring_event_fd(c2);
    cr_assert_neq(fd2, fd);
    cr_assert(readable(fd2, 0));
    cr_assert_eq(drain_ring(c2), 1);
    cr_assert_not(readable(fd2, 0));
    shmring_close(c2);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(event_fd, consumer_readable_exactly_when_a_message_is_there)
{
    const char *name = test_name("ev-data");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    cr_assert_geq(fd, 0);
    cr_assert_eq(drain_ring(c), 0);
    for (uint64_t round = 0; round < 50; round++) {
        cr_assert_not(readable(fd, 0), "round %llu: readable while empty",
                      (unsigned long long)round);
        test_push_id(p, round, 32);
        cr_assert(readable(fd, 0), "round %llu: a message, not readable",
                  (unsigned long long)round);
        cr_assert(readable(fd, 0), "level-triggered: still readable before the pops");
        cr_assert_eq(drain_ring(c), 1);
    }
    /* A push that lands before the caller waits still leaves it readable. */
    test_push_id(p, 100, 32);
    test_push_id(p, 101, 32);
    cr_assert(readable(fd, 0));
    cr_assert_eq(drain_ring(c), 2);
    cr_assert_not(readable(fd, 0));
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* A subscriber's descriptor follows its own cursor, beside a consumer's. */
Test(event_fd, subscriber_readable_when_a_message_is_there_for_it)
{
    const char *name = test_name("ev-sub");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    shmring_t *s = test_open_as(name, SHMRING_SUBSCRIBER);
    int fd = shmring_event_fd(s);
    cr_assert_geq(fd, 0);
    cr_assert_eq(drain_ring(s), 0);
    for (uint64_t round = 0; round < 20; round++) {
        cr_assert_not(readable(fd, 0), "round %llu: readable with nothing new",
                      (unsigned long long)round);
        test_push_id(p, round, 32);
        /* The consumer takes it first: the subscriber still has it to read. */
        cr_assert_eq(drain_ring(c), 1);
        cr_assert(readable(fd, 0), "round %llu: a message for the subscriber, not readable",
                  (unsigned long long)round);
        cr_assert_eq(drain_ring(s), 1);
    }
    /* End of stream: readable, then -EPIPE. */
    shmring_close(p);
    cr_assert(readable(fd, 0), "end of stream, not readable");
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(s, buf, sizeof buf), -EPIPE);
    shmring_close(s);
    shmring_close(c);
    shmring_unlink(name);
}

Test(event_fd, claims_arm_it_too)
{
    const char *name = test_name("ev-claim");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    cr_assert_not(readable(fd, 0));
    test_push_id(p, 1, 32);
    cr_assert(readable(fd, 0));
    cr_assert_eq(shmring_claim(c, &m), 0);
    test_expect_id(m.data, (ssize_t)m.len, 1);
    cr_assert_eq(shmring_release(c, &m), 0);
    cr_assert_eq(shmring_claim(c, &m), -EAGAIN);
    cr_assert_not(readable(fd, 0));
    struct iovec iov[4];
    unsigned char bufs[4][64];
    for (int i = 0; i < 4; i++)
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
    test_push_id(p, 2, 32);
    cr_assert(readable(fd, 0));
    cr_assert_eq(shmring_pop_batch(c, iov, 4), 1);
    cr_assert_eq(shmring_pop_batch(c, iov, 4), -EAGAIN);
    cr_assert_not(readable(fd, 0));
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(event_fd, producer_readable_when_there_is_room)
{
    const char *name = test_name("ev-room");
    shmring_t *p = test_make(name, 4, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(p);
    cr_assert_geq(fd, 0);
    cr_assert_not(readable(fd, 0), "room is signalled only after -EAGAIN");
    unsigned char buf[64];
    for (int round = 0; round < 20; round++) {
        /* Push until full. */
        int pushed = 0;
        int rc;
        for (;;) {
            test_fill(buf, 32, (uint64_t)pushed);
            if ((rc = shmring_push(p, buf, 32)) != 0)
                break;
            pushed++;
        }
        cr_assert_eq(rc, -EAGAIN);
        cr_assert_not(readable(fd, 0), "round %d: full, yet readable", round);
        cr_assert_gt(shmring_pop(c, buf, sizeof buf), 0);
        cr_assert(readable(fd, 0), "round %d: room, not readable", round);
        while (shmring_pop(c, buf, sizeof buf) > 0)
            ;
    }
    /* Reserve arms it as push does. */
    void *payload;
    while (shmring_push(p, buf, 32) == 0)
        ;
    cr_assert_eq(shmring_reserve(p, 32, &payload), -EAGAIN);
    cr_assert_not(readable(fd, 0));
    cr_assert_gt(shmring_pop(c, buf, sizeof buf), 0);
    cr_assert(readable(fd, 0));
    cr_assert_eq(shmring_reserve(p, 32, &payload), 0);
    test_fill(payload, 32, 7);
    cr_assert_eq(shmring_commit(p, 32), 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(event_fd, room_after_a_release)
{
    const char *name = test_name("ev-rel");
    shmring_t *p = test_make(name, 2, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(p);
    test_push_id(p, 0, 32);
    test_push_id(p, 1, 32);
    shmring_msg_t m;
    cr_assert_eq(shmring_claim(c, &m), 0);
    unsigned char buf[32];
    test_fill(buf, sizeof buf, 2);
    cr_assert_eq(shmring_push(p, buf, sizeof buf), -EAGAIN, "slot 0 is claimed");
    cr_assert_not(readable(fd, 0));
    cr_assert_eq(shmring_release(c, &m), 0);
    cr_assert(readable(fd, 0), "a release gives room");
    cr_assert_eq(shmring_push(p, buf, sizeof buf), 0);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

Test(event_fd, both_roles_on_one_handle)
{
    const char *name = test_name("ev-both");
    shmring_t *pc = test_make(name, 2, 64, SHMRING_PRODUCER | SHMRING_CONSUMER);
    int fd = shmring_event_fd(pc);
    cr_assert_geq(fd, 0);
    cr_assert_eq(drain_ring(pc), 0);
    cr_assert_not(readable(fd, 0));
    test_push_id(pc, 0, 32);
    cr_assert(readable(fd, 0), "its own push");
    test_push_id(pc, 1, 32);
    unsigned char buf[32];
    test_fill(buf, sizeof buf, 2);
    cr_assert_eq(shmring_push(pc, buf, sizeof buf), -EAGAIN);
    cr_assert_eq(drain_ring(pc), 2);
    cr_assert(readable(fd, 0), "room after its own pops, though the pop's -EAGAIN drained");
    cr_assert_eq(shmring_push(pc, buf, sizeof buf), 0);
    cr_assert_eq(drain_ring(pc), 1);
    /* Signals of the other side are passed on once, not forever. */
    cr_assert_not(readable(fd, 0), "no side is waiting for anything");
    test_push_id(pc, 3, 32);
    cr_assert(readable(fd, 0), "its own push");
    cr_assert_eq(drain_ring(pc), 1);
    cr_assert_not(readable(fd, 0));
    shmring_close(pc);
    shmring_unlink(name);
}

Test(event_fd, end_of_stream_makes_it_readable)
{
    const char *name = test_name("ev-eos");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    test_push_id(p, 0, 32);
    cr_assert_eq(drain_ring(c), 1);
    cr_assert_not(readable(fd, 0));
    shmring_close(p);
    cr_assert(readable(fd, 0), "the producer closed");
    unsigned char buf[64];
    cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EPIPE);
    shmring_close(c);
    shmring_unlink(name);
}

Test(event_fd, close_with_an_armed_descriptor)
{
    const char *name = test_name("ev-close");
    shmring_t *p = test_make(name, 8, 64, 0);
    int fds = test_dir_count("/proc/self/fd");
    for (int i = 0; i < 40; i++) {
        shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
        cr_assert_geq(shmring_event_fd(c), 0);
        unsigned char buf[64];
        cr_assert_eq(shmring_pop(c, buf, sizeof buf), -EAGAIN); /* armed */
        shmring_close(c);
    }
    cr_assert_eq(test_dir_count("/proc/self/fd"), fds, "close closes the descriptor's fds");
    /* The entries were reused; the producer still pushes and a new
     * descriptor still wakes. */
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    cr_assert_eq(drain_ring(c), 0);
    test_push_id(p, 0, 32);
    cr_assert(readable(fd, 0));
    cr_assert_eq(drain_ring(c), 1);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Hostile senders ------------------------------------------------------ */

/* The abstract name of the socket inside the descriptor (an epoll instance:
 * /proc/self/fdinfo lists its targets). */
static socklen_t socket_name_of(int epfd, struct sockaddr_un *a)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[256];
    socklen_t found = 0;
    while (found == 0 && fgets(line, sizeof line, f) != NULL) {
        int tfd;
        if (sscanf(line, "tfd: %d", &tfd) != 1)
            continue;
        socklen_t len = sizeof *a;
        if (getsockname(tfd, (struct sockaddr *)a, &len) == 0 && a->sun_family == AF_UNIX)
            found = len;
    }
    fclose(f);
    cr_assert_gt(found, 0, "no socket in the descriptor");
    return found;
}

Test(event_fd, a_stranger_causes_at_most_a_spurious_wake)
{
    const char *name = test_name("ev-host");
    shmring_t *p = test_make(name, 8, 64, 0);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    struct sockaddr_un a;
    socklen_t alen = socket_name_of(fd, &a);
    cr_assert_eq(a.sun_path[0], '\0', "abstract name: nothing in the file system");
    cr_assert_eq(drain_ring(c), 0);

    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    cr_assert_geq(s, 0);
    /* One datagram: one spurious wake, gone after the next -EAGAIN. */
    cr_assert_eq(sendto(s, "x", 1, 0, (struct sockaddr *)&a, alen), 1);
    cr_assert(readable(fd, 0));
    cr_assert_eq(drain_ring(c), 0);
    cr_assert_not(readable(fd, 0));

    /* The same from another user (when the tests run as root: a child
     * that drops to nobody). */
    if (getuid() == 0) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(2);
            int own = socket(AF_UNIX, SOCK_DGRAM, 0);
            _exit(own >= 0 && sendto(own, "y", 1, 0, (struct sockaddr *)&a, alen) == 1 ? 0 : 3);
        }
        cr_assert_eq(test_wait_child(pid), 0);
        cr_assert(readable(fd, 0), "another user's datagram: a spurious wake");
        cr_assert_eq(drain_ring(c), 0);
        cr_assert_not(readable(fd, 0), "and nothing more");
    }

    /* A flood fills the socket's queue: the producer's datagram finds it
     * full, yet the message is seen, and the flood ends with one round. */
    int sent = 0;
    while (sendto(s, "x", 1, 0, (struct sockaddr *)&a, alen) == 1 && sent < 100000)
        sent++;
    cr_assert_gt(sent, 0);
    test_push_id(p, 5, 32);
    cr_assert(readable(fd, 0));
    cr_assert_eq(drain_ring(c), 1, "the message behind the flood");
    cr_assert_not(readable(fd, 0), "the flood is gone with one round");
    test_push_id(p, 6, 32);
    cr_assert(readable(fd, 0));
    cr_assert_eq(drain_ring(c), 1);
    close(s);
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Dead peers (processes) ----------------------------------------------- */

Test(event_fd, dead_producer_ends_the_stream, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs several processes");
    h_arm_deadline(60);
    const char *name = test_name("ev-dead");
    shmring_t *c = test_make(name, 8, 64, SHMRING_CONSUMER);
    int fd = shmring_event_fd(c);
    cr_assert_eq(drain_ring(c), 0);
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *p;
        if (shmring_open(name, SHMRING_PRODUCER, &p) != 0)
            _exit(2);
        unsigned char buf[32];
        for (uint64_t i = 0; i < 3; i++) {
            test_fill(buf, sizeof buf, i);
            if (shmring_push(p, buf, sizeof buf) != 0)
                _exit(3);
        }
        char b = 1;
        if (write(go[1], &b, 1) != 1)
            _exit(4);
        pause(); /* killed here, the lease still held */
        _exit(5);
    }
    char b;
    cr_assert_eq(read(go[0], &b, 1), 1);
    kill(pid, SIGKILL);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    /* An event loop: every message, then -EPIPE, each after a wake. */
    unsigned char buf[64];
    int got = 0;
    for (;;) {
        cr_assert(readable(fd, 30000), "no wake-up in 30 s");
        ssize_t n;
        while ((n = shmring_pop(c, buf, sizeof buf)) > 0)
            got++;
        if (n == -EPIPE)
            break;
        cr_assert_eq(n, -EAGAIN);
    }
    cr_assert_eq(got, 3);
    h_disarm_deadline();
    shmring_close(c);
    shmring_unlink(name);
}

Test(event_fd, dead_claimer_gives_the_producer_room, .timeout = 120)
{
    if (test_heap_forced())
        cr_skip_test("needs several processes");
    h_arm_deadline(60);
    const char *name = test_name("ev-dclaim");
    shmring_t *p = test_make(name, 2, 64, 0);
    int fd = shmring_event_fd(p);
    test_push_id(p, 0, 32);
    test_push_id(p, 1, 32);
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *c;
        shmring_msg_t m;
        if (shmring_open(name, SHMRING_CONSUMER, &c) != 0 || shmring_claim(c, &m) != 0)
            _exit(2);
        char b = 1;
        if (write(go[1], &b, 1) != 1)
            _exit(3);
        pause(); /* killed holding the claim on slot 0 */
        _exit(4);
    }
    char b;
    cr_assert_eq(read(go[0], &b, 1), 1);
    kill(pid, SIGKILL);
    cr_assert_eq(test_wait_child(pid), 128 + SIGKILL);
    shmring_t *c = test_open_as(name, SHMRING_CONSUMER);
    unsigned char buf[64];
    cr_assert_gt(shmring_pop(c, buf, sizeof buf), 0); /* message 1; slot 0 stays claimed */
    test_fill(buf, 32, 2);
    int rc;
    while ((rc = shmring_push(p, buf, 32)) == -EAGAIN || rc == -EINPROGRESS)
        cr_assert(readable(fd, 30000), "no room signalled in 30 s");
    cr_assert_eq(rc, 0, "push: %d", rc);
    h_disarm_deadline();
    shmring_close(c);
    shmring_close(p);
    shmring_unlink(name);
}

/* ---- Lost wake-ups: producer bursts, consumers in epoll loops ------------- */

#define STRESS_CONSUMERS 3

struct stress {
    const char *name;
    uint64_t n;
    uint32_t *seen;
    uint64_t *shared; /* [0] consumers ready, [1] bad messages, [2] wakes, [3] empty wakes,
                       * [4] messages taken */
};

static int epoll_on(int fd)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        return -1;
    return epfd;
}

static int wait_in(int epfd)
{
    struct epoll_event e;
    int n;
    while ((n = epoll_wait(epfd, &e, 1, -1)) < 0 && errno == EINTR)
        ;
    return n == 1 ? 0 : -1;
}

static int stress_consumer(struct stress *st)
{
    shmring_t *c;
    if (shmring_open(st->name, SHMRING_CONSUMER, &c) != 0)
        return 2;
    int epfd = epoll_on(shmring_event_fd(c));
    if (epfd < 0)
        return 3;
    __atomic_fetch_add(&st->shared[0], 1, __ATOMIC_SEQ_CST);
    unsigned char buf[64];
    uint64_t bad = 0, wakes = 0, empty = 0;
    for (;;) {
        if (wait_in(epfd) < 0)
            return 4;
        wakes++;
        ssize_t n;
        int got = 0;
        while ((n = shmring_pop(c, buf, sizeof buf)) >= 0) {
            uint64_t id;
            if (!test_check(buf, (size_t)n, &id))
                bad++;
            else
                h_mark(st->seen, st->n, id, &bad);
            __atomic_fetch_add(&st->shared[4], 1, __ATOMIC_SEQ_CST);
            got++;
        }
        empty += got == 0;
        if (n == -EPIPE)
            break;
        if (n != -EAGAIN && n != -EINPROGRESS)
            return 5;
    }
    __atomic_fetch_add(&st->shared[1], bad, __ATOMIC_RELAXED);
    __atomic_fetch_add(&st->shared[2], wakes, __ATOMIC_RELAXED);
    __atomic_fetch_add(&st->shared[3], empty, __ATOMIC_RELAXED);
    close(epfd);
    shmring_close(c);
    return 0;
}

static int stress_producer(struct stress *st)
{
    shmring_t *p;
    if (shmring_open(st->name, SHMRING_PRODUCER, &p) != 0)
        return 2;
    int epfd = epoll_on(shmring_event_fd(p));
    if (epfd < 0)
        return 3;
    while (__atomic_load_n(&st->shared[0], __ATOMIC_SEQ_CST) < STRESS_CONSUMERS)
        h_sleep_us(100);
    uint64_t rnd = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    uint64_t burst = 1;
    unsigned char buf[64];
    for (uint64_t id = 0; id < st->n;) {
        size_t len = 16 + (size_t)(id % 49);
        test_fill(buf, len, id);
        int rc = shmring_push(p, buf, len);
        if (rc == -EAGAIN || rc == -EINPROGRESS) {
            if (wait_in(epfd) < 0)
                return 4;
            continue;
        }
        if (rc != 0)
            return 5;
        id++;
        /* Bursts of random length, then a random pause (often none), so
         * that consumers keep going to sleep and being woken. */
        if (--burst == 0) {
            burst = 1 + h_rand(&rnd) % 200;
            uint64_t r = h_rand(&rnd) % 8;
            if (r == 0) {
                /* Quiet: nothing more until every message is taken. A
                 * consumer that slept through its wake-up hangs the test
                 * (the periodic check that would hide it is off). */
                while (__atomic_load_n(&st->shared[4], __ATOMIC_SEQ_CST) < id)
                    h_sleep_us(20);
            } else if (r < 3)
                h_sleep_us((unsigned)(h_rand(&rnd) % 300));
            else if (r < 5)
                sched_yield();
        }
    }
    close(epfd);
    shmring_close(p); /* end of stream */
    return 0;
}

static void *consumer_thread(void *arg)
{
    return (void *)(intptr_t)stress_consumer(arg);
}

static void *producer_thread(void *arg)
{
    return (void *)(intptr_t)stress_producer(arg);
}

Test(event_fd, no_lost_wakeup_in_epoll_loops, .timeout = 600)
{
    h_arm_deadline(240);
    /* No periodic check: every wake-up must come from a notifier. */
    shmring__event_check_ns = 3600LL * 1000000000LL;
    struct stress st;
    st.name = test_name("ev-stress");
    st.n = h_count(300000);
    st.seen = test_shared_alloc(st.n * sizeof *st.seen);
    st.shared = test_shared_alloc(5 * sizeof *st.shared);
    shmring_t *keep = test_make(st.name, 16, 64, SHMRING_OBSERVER);
    if (test_heap_forced()) {
        /* One process: the same loops in threads. */
        pthread_t t[STRESS_CONSUMERS + 1];
        for (int i = 0; i < STRESS_CONSUMERS; i++)
            cr_assert_eq(pthread_create(&t[i], NULL, consumer_thread, &st), 0);
        cr_assert_eq(pthread_create(&t[STRESS_CONSUMERS], NULL, producer_thread, &st), 0);
        for (int i = 0; i <= STRESS_CONSUMERS; i++) {
            void *rc;
            pthread_join(t[i], &rc);
            cr_assert_eq((intptr_t)rc, 0, "thread %d failed: %d", i, (int)(intptr_t)rc);
        }
    } else {
        pid_t pids[STRESS_CONSUMERS + 1];
        for (int i = 0; i <= STRESS_CONSUMERS; i++) {
            pids[i] = fork();
            cr_assert_geq(pids[i], 0);
            if (pids[i] == 0) {
                alarm(h_sanitized() ? 1200 : 200);
                _exit(i < STRESS_CONSUMERS ? stress_consumer(&st) : stress_producer(&st));
            }
        }
        for (int i = 0; i <= STRESS_CONSUMERS; i++)
            cr_assert_eq(test_wait_child(pids[i]), 0, "party %d failed", i);
    }
    cr_assert_eq(st.shared[1], 0, "bad messages");
    h_check_exactly_once(st.seen, st.n);
    cr_log_info("%llu messages, %llu wake-ups, %llu with nothing to pop", (unsigned long long)st.n,
                (unsigned long long)st.shared[2], (unsigned long long)st.shared[3]);
    h_disarm_deadline();
    shmring_close(keep);
    shmring_unlink(st.name);
    test_shared_free(st.seen, st.n * sizeof *st.seen);
    test_shared_free(st.shared, 5 * sizeof *st.shared);
}
