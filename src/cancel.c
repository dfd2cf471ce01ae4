/* Ending a wait from outside: see cancel.h. */
#define _GNU_SOURCE
#include "cancel.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"
#include "wait.h"

void shmring__cancel_raise(struct shmring__cancel *c)
{
    int saved = errno; /* a signal handler must leave errno as it found it */
    /* I1: exchange, pairs with the load in shmring__cancel_check(). */
    shmring__xchg_32(&c->pending, 1);
    /* I1: full fence, pairs with the fence of I2 (Dekker). */
    shmring__fence_seq_cst();
    /* Relaxed: ordered by the fence above. */
    uint32_t *word = (uint32_t *)(uintptr_t)shmring__load_relaxed_64(&c->word);
    if (word != NULL) {
        /* I3: fetch-add one counter step (flags untouched): the value the
         * waiter's futex sleep expects is gone. */
        shmring__faa_32(word, SHMRING__EC_ONE);
        SHMRING_FAULT(CANCEL_WAKE);
        /* Shared (not FUTEX_PRIVATE), like every sleep on the word. */
        syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
    errno = saved;
}
