/*
 * Event descriptors of rings (shmring_event_fd), private to src/.
 *
 * A handle that asks for a descriptor gets a Unix datagram socket bound to
 * an abstract name made of a random token, a timerfd, and an epoll instance
 * holding both (the descriptor the caller polls). The token lives in the
 * handle's party entries, counter[SHMRING__C_EVENT]:
 *
 *   63                                    1   0
 *   +--------------------------------------+-----+
 *   | token (random, bit 0 clear)           | ARM |
 *   +--------------------------------------+-----+
 *
 * The consumer entry of the handle carries the data side, entry 0 (the
 * producer lease) the room side. The owner sets ARM (release store) and
 * then announces itself on the matching eventcount (shmring__ec_announce:
 * V1); a notifier that clears SLEEPER in shmring__ec_wake() scans the
 * entries of that side (V2), clears each ARM with a CAS, and the winner
 * sends one datagram to the token's name. No notifier looks at the entries
 * unless SLEEPER was set, so a push with nobody armed makes no syscall.
 * docs/design.md, "Event descriptors", gives the reasons and the proofs.
 */
#ifndef SHMRING_EVENT_H
#define SHMRING_EVENT_H

#include <stdint.h>

#include "segment.h"

/* Party counter that holds a handle's token and ARM (segment.h: counter[4]). */
#define SHMRING__C_EVENT   4
#define SHMRING__EVENT_ARM 1ull

enum shmring__event_side {
    SHMRING__EV_DATA = 0, /* consumer: a message is there, or the stream ended */
    SHMRING__EV_ROOM = 1, /* producer: there is room */
};

struct shmring__event;

/*
 * Every ring handle of the process is registered while it is open, so that
 * a wake on its eventcounts finds the ring's party table (V2). 0 or -ENOMEM.
 */
int shmring__event_register(struct shmring__seg *seg);
void shmring__event_unregister(struct shmring__seg *seg);

/* A handle took party entry `entry`: a token left there by a previous owner
 * (a reclaimed entry keeps its counters) is cleared. */
void shmring__event_reset(struct shmring__seg *seg, unsigned entry);

/* Called by shmring__ec_wake() after it cleared SLEEPER (V2). */
void shmring__event_woke(uint32_t *word);

/*
 * A descriptor for a handle whose data side is party entry data_entry (or
 * -1) and whose room side is entry 0 when room is set; not armed.
 * 0, -ENOMEM, -EMFILE, -ENFILE, -EADDRINUSE (no free name found).
 */
int shmring__event_create(struct shmring__seg *seg, int data_entry, int room,
                          struct shmring__event **out);
int shmring__event_fd_of(const struct shmring__event *ev);
void shmring__event_close(struct shmring__event *ev);

/* Arm a new descriptor's data side (readable at once if a message is there
 * or the stream ended). The room side waits for the first -EAGAIN. */
void shmring__event_start(shmring_t *r, struct shmring__event *ev);

/*
 * The handle's call on `side` found nothing to do (-EAGAIN or
 * -EINPROGRESS): drain the descriptor, run the periodic peer check if its
 * timer fired, arm the side if it is not armed, and re-check; the
 * descriptor is readable again if the re-check finds the condition true.
 * Returns 0, or the peer check's error (-EPIPE, -EOWNERDEAD).
 */
int shmring__event_idle(shmring_t *r, struct shmring__event *ev, enum shmring__event_side side);

/* Period of a descriptor's peer check, SHMRING_DEAD_PEER_NS / 2 (tests may
 * lengthen it before making descriptors, to show that no wake-up needs it). */
extern long long shmring__event_check_ns;

/* ---- Provided by ring.c ------------------------------------------------- */

/* Announce an armed descriptor on the side's eventcount (V1, M2, D1). 1 if
 * every notifier will see it, 0 if one may not (then poll soon). */
int shmring__ring_event_announce(shmring_t *r, enum shmring__event_side side);

/* Is the side's condition true now (a message or the end; room)? */
int shmring__ring_event_ready(shmring_t *r, enum shmring__event_side side);

/* The periodic look at the peers: 0, -EPIPE (the producer died and the ring
 * is empty), -EOWNERDEAD (the lease was taken). Reclaims dead consumers. */
int shmring__ring_event_peers(shmring_t *r, enum shmring__event_side side);

#endif /* SHMRING_EVENT_H */
