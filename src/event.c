/*
 * Event descriptors of rings: shmring_event_fd (see event.h for the shape,
 * docs/design.md "Event descriptors" for the reasons).
 *
 * Memory-ordering edges:
 *
 *   V0  owner: sets its entry's bit in event_entries (CAS) when it makes a
 *       descriptor, before it stores the token; cleared only by the entry's
 *       next owner (shmring__event_reset). V2 reads that word first.
 *   V1  owner: ARM := 1 in its entry (release store), then a CAS that sets
 *       SLEEPER in the side's eventcount even if it is set (seq_cst), then
 *       membarrier() or a fence (M2 / W), then a re-check of the condition.
 *   V2  notifier: after publishing, M1 / W as for any sleeper; the CAS in
 *       shmring__ec_wake() that clears SLEEPER, then an acquire load of each
 *       entry of the side and a CAS that clears ARM; the winner sends.
 *
 * Either V1's CAS precedes V2's in the word's modification order (V2's CAS
 * then reads it or a later RMW, and its loads see ARM), or it follows, and
 * then SLEEPER is set again for the next notifier, which the eventcount's own
 * Dekker argument (wait.h) makes see it unless the owner's re-check sees the
 * notifier's publication. So after V1 the owner is signalled, or its
 * re-check finds the condition true and it signals itself.
 *
 * The notifier side (shmring__event_woke) runs in whatever process wakes: it
 * is async-signal-safe and takes no lock. Its registry of the process's ring
 * headers is a list of nodes that are never freed, only reused.
 */
#define _GNU_SOURCE
#include "event.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "fault.h"
#include "ring.h"

_Static_assert(SHMRING__PARTIES <= 64, "event_entries has a bit per party entry");

/* The peer check's period, as the waiting calls' (tests lengthen it to show
 * that no wake-up depends on it). */
long long shmring__event_check_ns = SHMRING_DEAD_PEER_NS / 2;
#define UNSURE_NS  1000000ll /* a notifier may not see us: look this soon */
#define BIND_TRIES 16
#define DRAIN_MAX  256 /* datagrams per drain; more (a flood) leaves it readable */

struct shmring__event {
    struct shmring__seg *seg;
    int epfd;     /* what the caller polls: sock and timer */
    int sock;     /* datagram socket bound to the token's abstract name */
    int timer;    /* periodic peer check */
    int unsure;   /* the last announcement may escape a notifier (D1) */
    int wants[2]; /* this side was armed and its signal not yet passed on */
    uint64_t token;
    int entry[2]; /* party entry per side, or -1 */
    struct sockaddr_un addr;
    socklen_t addrlen;
};

/* ---- Names -------------------------------------------------------------- */

static socklen_t name_of(uint64_t token, struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    /* Abstract namespace: sun_path[0] is 0, nothing in the file system. */
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "shmring-ev-%016llx",
                     (unsigned long long)token);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static uint64_t new_token(void)
{
    uint64_t t = 0;
    if (getrandom(&t, sizeof t, GRND_NONBLOCK) != (ssize_t)sizeof t) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec << 32 ^
             (uint64_t)getpid() << 16 ^ (uint64_t)(uintptr_t)&t;
    }
    t &= ~SHMRING__EVENT_ARM;
    return t != 0 ? t : 2;
}

/* ---- Registry (async-signal-safe readers) -------------------------------- */

struct node {
    uint64_t hdr; /* struct shmring__hdr * of a registered handle, or 0 (free) */
    struct node *next;
};

static uint64_t head; /* struct node *: the list only grows */
static int sender = -1;

static struct node *first_node(void)
{
    /* Acquire: pairs with the CAS that pushed the node (its next is set). */
    return (struct node *)(uintptr_t)shmring__load_acquire_64(&head);
}

static uint64_t *entries_of(struct shmring__hdr *hdr)
{
    return &((struct shmring__ring_shared *)(void *)hdr->object)->event_entries;
}

/* Set or clear bit `entry` of event_entries (CAS). */
static void mark_entry(struct shmring__hdr *hdr, unsigned entry, int set)
{
    uint64_t *w = entries_of(hdr);
    uint64_t bit = 1ull << entry;
    /* Relaxed: the CAS decides. */
    uint64_t v = shmring__load_relaxed_64(w);
    /* V0: CAS (seq_cst), before the token is stored and long before any
     * V1: a notifier's V2 that sees ARM sees the bit first. */
    while (!shmring__cas_64(w, &v, set ? v | bit : v & ~bit))
        ;
}

void shmring__event_reset(struct shmring__seg *seg, unsigned entry)
{
    /* Relaxed: a notifier racing with it clears ARM and sends one stale
     * datagram, or finds nothing; harmless either way. */
    shmring__store_relaxed_64(&seg->hdr->party[entry].counter[SHMRING__C_EVENT], 0);
    /* The entry is ours and has no token: nobody needs the bit (a
     * previous owner's descriptor died with it). */
    mark_entry(seg->hdr, entry, 0);
}

int shmring__event_register(struct shmring__seg *seg)
{
    uint64_t h = (uint64_t)(uintptr_t)seg->hdr;
    for (struct node *n = first_node(); n != NULL; n = n->next) {
        uint64_t zero = 0;
        /* CAS: a free node; pairs with the acquire loads in find(). */
        if (shmring__cas_64(&n->hdr, &zero, h))
            return 0;
    }
    struct node *n = malloc(sizeof *n);
    if (n == NULL)
        return -ENOMEM;
    n->hdr = h;
    /* Relaxed: only a guess for the CAS below, which decides. */
    uint64_t old = shmring__load_relaxed_64(&head);
    do
        n->next = (struct node *)(uintptr_t)old;
    /* CAS (release): the node's fields before it is reachable. */
    while (!shmring__cas_64(&head, &old, (uint64_t)(uintptr_t)n));
    return 0;
}

void shmring__event_unregister(struct shmring__seg *seg)
{
    uint64_t h = (uint64_t)(uintptr_t)seg->hdr;
    for (struct node *n = first_node(); n != NULL; n = n->next) {
        uint64_t expect = h;
        /* CAS: one of the nodes of this header (duplicates are alike). */
        if (shmring__cas_64(&n->hdr, &expect, 0))
            return;
    }
}

/* Which side of a registered ring is `word`? -1 if none. */
static int find(uint32_t *word, struct shmring__hdr **hdr)
{
    for (struct node *n = first_node(); n != NULL; n = n->next) {
        /* Acquire: pairs with the CAS in shmring__event_register(). Only the
         * address is compared: the caller's handle keeps the word mapped. */
        struct shmring__hdr *h =
            (struct shmring__hdr *)(uintptr_t)shmring__load_acquire_64(&n->hdr);
        if (h == NULL)
            continue;
        struct shmring__ring_shared *sh = (struct shmring__ring_shared *)(void *)h->object;
        if (word == &sh->data_ec || word == &sh->space_ec) {
            *hdr = h;
            return word == &sh->data_ec ? SHMRING__EV_DATA : SHMRING__EV_ROOM;
        }
    }
    return -1;
}

static int sender_fd(void)
{
    /* Acquire: pairs with the CAS below. */
    int fd = (int)shmring__load_acquire_32((const uint32_t *)&sender);
    if (fd >= 0)
        return fd;
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -1;
    uint32_t none = (uint32_t)-1;
    /* CAS: one socket per process; a racing thread closes its own. */
    if (!shmring__cas_32((uint32_t *)&sender, &none, (uint32_t)s)) {
        close(s);
        return (int)none;
    }
    return s;
}

static void send_token(uint64_t token)
{
    int fd = sender_fd();
    if (fd < 0)
        return; /* no descriptor left: the owner's periodic check still wakes it */
    struct sockaddr_un a;
    socklen_t len = name_of(token, &a);
    char b = 1;
    /* Never blocks: a full queue (EAGAIN) means the socket is readable
     * already; a gone one (ECONNREFUSED, a dead owner) costs this one call,
     * its ARM being cleared. */
    (void)sendto(fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a, len);
}

void shmring__event_woke(uint32_t *word)
{
    struct shmring__hdr *hdr = NULL;
    int side = find(word, &hdr);
    if (side < 0)
        return;
    /* V2: acquire, after the CAS that cleared SLEEPER; pairs with V0. */
    uint64_t entries = shmring__load_acquire_64(entries_of(hdr));
    entries &= side == SHMRING__EV_ROOM ? 1ull : ~1ull;
    for (unsigned i = 0; i < SHMRING__PARTIES; i++) {
        if (!(entries & (1ull << i)))
            continue;
        uint64_t *w = &hdr->party[i].counter[SHMRING__C_EVENT];
        /* V2: acquire, after the CAS that cleared SLEEPER; pairs with V1. */
        uint64_t v = shmring__load_acquire_64(w);
        if (!(v & SHMRING__EVENT_ARM))
            continue;
        /* V2: CAS, one notifier per arming sends. Peer-written: any token
         * value only names a socket to send one byte to. */
        if (!shmring__cas_64(w, &v, v & ~SHMRING__EVENT_ARM))
            continue;
        SHMRING_FAULT(EVENT_SEND);
        send_token(v & ~SHMRING__EVENT_ARM);
    }
}

/* ---- Owner side ---------------------------------------------------------- */

static void kick(struct shmring__event *ev)
{
    char b = 0;
    /* To our own name: the descriptor becomes readable. EAGAIN: it is. */
    (void)sendto(ev->sock, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&ev->addr,
                 ev->addrlen);
}

static int bind_new_name(struct shmring__event *ev)
{
    for (int i = 0; i < BIND_TRIES; i++) {
        ev->token = new_token();
        ev->addrlen = name_of(ev->token, &ev->addr);
        if (bind(ev->sock, (struct sockaddr *)&ev->addr, ev->addrlen) == 0)
            return 0;
        if (errno != EADDRINUSE)
            return -errno;
        /* Taken (squatted or a collision): another token. */
    }
    return -EADDRINUSE;
}

static int set_timer(int fd, long long first_ns)
{
    long long every = shmring__event_check_ns;
    struct itimerspec it = {
        .it_interval = {every / 1000000000ll, every % 1000000000ll},
        .it_value = {first_ns / 1000000000ll, first_ns % 1000000000ll},
    };
    return timerfd_settime(fd, 0, &it, NULL) == 0 ? 0 : -errno;
}

static int add_to_epoll(int epfd, int fd)
{
    struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == 0 ? 0 : -errno;
}

static int open_fds(struct shmring__event *ev)
{
    ev->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (ev->sock < 0)
        return -errno;
    int rc = bind_new_name(ev);
    if (rc < 0)
        return rc;
    ev->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (ev->timer < 0)
        return -errno;
    if ((rc = set_timer(ev->timer, shmring__event_check_ns)) < 0)
        return rc;
    ev->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ev->epfd < 0)
        return -errno;
    if ((rc = add_to_epoll(ev->epfd, ev->sock)) < 0 || (rc = add_to_epoll(ev->epfd, ev->timer)) < 0)
        return rc;
    return 0;
}

static uint64_t *event_word(struct shmring__event *ev, enum shmring__event_side side)
{
    return &ev->seg->hdr->party[ev->entry[side]].counter[SHMRING__C_EVENT];
}

int shmring__event_create(struct shmring__seg *seg, int data_entry, int room,
                          struct shmring__event **out)
{
    struct shmring__event *ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return -ENOMEM;
    ev->seg = seg;
    ev->epfd = ev->sock = ev->timer = -1;
    ev->entry[SHMRING__EV_DATA] = data_entry;
    ev->entry[SHMRING__EV_ROOM] = room ? 0 : -1;
    int rc = open_fds(ev);
    if (rc < 0) {
        shmring__event_close(ev);
        return rc == -ENFILE || rc == -EMFILE || rc == -ENOMEM || rc == -EADDRINUSE ? rc : -ENOMEM;
    }
    for (int side = 0; side < 2; side++)
        if (ev->entry[side] >= 0) {
            mark_entry(seg->hdr, (unsigned)ev->entry[side], 1);
            /* Release: the token, not armed; notifiers only clear ARM. */
            shmring__store_release_64(event_word(ev, side), ev->token);
        }
    *out = ev;
    return 0;
}

int shmring__event_fd_of(const struct shmring__event *ev)
{
    return ev->epfd;
}

void shmring__event_close(struct shmring__event *ev)
{
    if (ev == NULL)
        return;
    for (int side = 0; side < 2; side++)
        if (ev->entry[side] >= 0 && ev->token != 0) {
            uint64_t v = ev->token | SHMRING__EVENT_ARM;
            /* CAS: our token only (the entry is still ours); a notifier's
             * clear of ARM may race, then the plain token is cleared. */
            if (!shmring__cas_64(event_word(ev, side), &v, 0) && v == ev->token)
                shmring__cas_64(event_word(ev, side), &v, 0);
        }
    if (ev->epfd >= 0)
        close(ev->epfd);
    if (ev->timer >= 0)
        close(ev->timer);
    if (ev->sock >= 0)
        close(ev->sock);
    free(ev);
}

/* Empty the descriptor; 1 if the peer-check timer fired. */
static int drain(struct shmring__event *ev)
{
    struct epoll_event e[2];
    int n = epoll_wait(ev->epfd, e, 2, 0);
    int due = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].data.fd == ev->timer) {
            uint64_t ticks;
            due = read(ev->timer, &ticks, sizeof ticks) == (ssize_t)sizeof ticks;
            continue;
        }
        char b[16];
        /* Any datagram is only a hint: a hostile one is a spurious wake. */
        for (int k = 0; k < DRAIN_MAX && recv(ev->sock, b, sizeof b, MSG_DONTWAIT) >= 0; k++)
            ;
    }
    return due;
}

/* Arm `side` unless it is armed (V1), and re-check its condition. */
static void arm(shmring_t *r, struct shmring__event *ev, enum shmring__event_side side)
{
    uint64_t *w = event_word(ev, side);
    /* Relaxed: our own word; notifiers only clear ARM. Still armed: no
     * notifier has looked since, and the next one will (V2). */
    if ((shmring__load_relaxed_64(w) & SHMRING__EVENT_ARM) && !ev->unsure)
        return;
    /* V1: release store, then the announcing CAS (pairs with V2). */
    shmring__store_release_64(w, ev->token | SHMRING__EVENT_ARM);
    SHMRING_FAULT(EVENT_ARM);
    ev->unsure = !shmring__ring_event_announce(r, side);
    if (ev->unsure)
        /* A notifier may miss us (D1): look again soon by ourselves. */
        set_timer(ev->timer, UNSURE_NS);
    ev->wants[side] = 1;
    if (shmring__ring_event_ready(r, side))
        kick(ev);
}

void shmring__event_start(shmring_t *r, struct shmring__event *ev)
{
    if (ev->entry[SHMRING__EV_DATA] >= 0)
        arm(r, ev, SHMRING__EV_DATA);
}

int shmring__event_idle(shmring_t *r, struct shmring__event *ev, enum shmring__event_side side)
{
    if (ev->entry[side] < 0)
        return 0;
    if (drain(ev)) {
        int rc = shmring__ring_event_peers(r, side);
        if (rc < 0) {
            kick(ev); /* stays readable: the caller sees the end again */
            return rc;
        }
    }
    /* Both roles share the socket: a signal for the other side that this
     * drain may have taken (its ARM was cleared by a notifier) is passed
     * on once, as one more datagram. */
    enum shmring__event_side other = side == SHMRING__EV_DATA ? SHMRING__EV_ROOM : SHMRING__EV_DATA;
    /* Relaxed: our own word; a clear ARM means a notifier took it. */
    if (ev->wants[other] &&
        !(shmring__load_relaxed_64(event_word(ev, other)) & SHMRING__EVENT_ARM)) {
        ev->wants[other] = 0;
        kick(ev);
    }
    arm(r, ev, side);
    return 0;
}
