/*
 * The private part of shmring_msg_t (its `opaque` words), seen by the
 * library as a struct of its own; private to src/. Copied in and out with
 * memcpy, so that the caller's array of uint64_t is never read through
 * another type.
 */
#ifndef SHMRING_MSG_H
#define SHMRING_MSG_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "shmring.h"

struct shmring__msg_private {
    uint64_t pos;    /* ring position of the claimed message */
    uint32_t slot;   /* pos & mask, checked against pos at release */
    uint32_t cookie; /* the claiming handle's cookie; 0 once released */
    uint64_t spare;  /* 0; room for a later release */
};

static_assert(sizeof(struct shmring__msg_private) <= sizeof(((shmring_msg_t *)0)->opaque),
              "the private part fits in shmring_msg_t.opaque");
static_assert(_Alignof(struct shmring__msg_private) <= _Alignof(uint64_t),
              "the opaque words are aligned enough");

/* The private fields of a claim (as the caller's copy holds them). */
static inline struct shmring__msg_private shmring__msg_get(const shmring_msg_t *m)
{
    struct shmring__msg_private p;
    memcpy(&p, m->opaque, sizeof p);
    return p;
}

static inline void shmring__msg_set(shmring_msg_t *m, uint64_t pos, uint32_t slot, uint32_t cookie)
{
    struct shmring__msg_private p = {.pos = pos, .slot = slot, .cookie = cookie, .spare = 0};
    memcpy(m->opaque, &p, sizeof p);
}

#endif /* SHMRING_MSG_H */
