/*
 * inspect_fuzzer: the input is a file image that someone else planted in the
 * shm directory, inspected by shmring_inspect (through its descriptor form).
 *
 * The first bytes choose a kind (ring or state table), a geometry, a file
 * size (exact, cut short, longer, or a large sparse size), and which pages
 * of the file are written (the others stay holes); a valid header is built
 * and the rest of the input is XORed over it (sparse (offset, byte) pairs,
 * then a tail over the header page and the first entries), so both garbage
 * and valid-looking headers with garbage parties, indices and entries are
 * explored. Must not crash, fault, leak, read out of bounds or loop; what it
 * reports must respect the validated geometry.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ring.h"
#include "segment.h"
#include "shmring.h"
#include "state.h"

#define IMAGE_MAX (64u * 4096u) /* bytes of the image that are built and written */

static int file_fd = -1;

static void quiet(const char *line, void *ctx)
{
    (void)line;
    (void)ctx;
}

/* A valid header for the chosen kind and geometry; total is the size it claims. */
static int build_header(const uint8_t *in, struct shmring__hdr *h, uint64_t *total)
{
    memset(h, 0, sizeof *h);
    uint32_t param[4] = {0, 0, 0, 0};
    uint32_t type;
    if (in[0] & 1) {
        type = SHMRING__TYPE_STATE;
        param[0] = 1u << (in[1] % 21); /* entries: 1 .. 1M (large ones are sparse) */
        param[1] = (uint32_t)in[2] * 8 + 1;
        uint32_t vstride = (param[1] + 7u) & ~7u;
        param[2] = (SHMRING__STATE_ENTRY_HEADER + 2 * vstride + 63u) & ~63u;
        if (shmring__state_layout(param, 0, total) < 0)
            return -1;
    } else {
        type = SHMRING__TYPE_RING;
        param[0] = 2u << (in[1] % 20); /* slots: 2 .. 1M */
        param[1] = (uint32_t)in[2] * 4;
        param[2] = (uint32_t)((SHMRING__SLOT_HEADER + param[1] + 63) & ~63u);
        if (shmring__ring_layout(param, 0, total) < 0)
            return -1;
    }
    h->magic = SHMRING__MAGIC;
    h->type = type;
    h->layout = SHMRING__LAYOUT;
    h->header_size = SHMRING__HEADER_SIZE;
    h->total_size = *total;
    memcpy(h->param, param, sizeof param);
    h->creator_pid = (int32_t)getpid();
    h->ready = SHMRING__READY;
    return 0;
}

static uint64_t file_size(uint8_t how, uint64_t total)
{
    switch (how % 6) {
    case 0:
        return total / 2; /* truncated */
    case 1:
        return total + 4096; /* longer than its header says */
    case 2:
        return how; /* tiny */
    default:
        return total;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    if (n < 6)
        return 0;
    shmring_set_log(quiet, NULL);
    if (file_fd < 0)
        file_fd = memfd_create("inspect_fuzzer", MFD_CLOEXEC);
    if (file_fd < 0)
        abort();
    struct shmring__hdr h;
    uint64_t total = 0;
    if (build_header(in, &h, &total) < 0)
        return 0;
    static unsigned char img[IMAGE_MAX];
    memset(img, 0, sizeof img);
    memcpy(img, &h, sizeof h);
    size_t i = 6;
    for (; i + 3 <= n && i < 6 + 3 * 64; i += 3) {
        size_t off = ((size_t)in[i] << 8 | in[i + 1]) * 4 % IMAGE_MAX;
        img[off] ^= in[i + 2];
    }
    for (size_t j = 0; i < n && j < IMAGE_MAX; i++, j++)
        img[(j * 61) % (2 * SHMRING__HEADER_SIZE)] ^= in[i];
    /* The file: its size, and which pages hold data (bits of in[4..5]); the others are holes. */
    uint64_t size = file_size(in[3], total);
    if (ftruncate(file_fd, 0) != 0 || ftruncate(file_fd, (off_t)size) != 0)
        abort();
    uint32_t written = (uint32_t)in[4] << 8 | in[5];
    for (unsigned p = 0; p < 64 && (uint64_t)p * 4096 < size; p++) {
        if (p > 0 && !(written & (1u << (p % 16))))
            continue; /* a hole */
        size_t len = (uint64_t)p * 4096 + 4096 <= size ? 4096 : (size_t)(size - (uint64_t)p * 4096);
        if (pwrite(file_fd, img + (size_t)p * 4096, len, (off_t)p * 4096) != (ssize_t)len)
            abort();
    }
    shmring_info_t info;
    int rc = shmring__inspect_fd(file_fd, &info);
    if (rc == 0) {
        /* What it says must stay within what was validated. */
        if (info.kind != SHMRING_KIND_RING && info.kind != SHMRING_KIND_STATE &&
            info.kind != SHMRING_KIND_OTHER_VERSION)
            abort();
        if (info.kind != SHMRING_KIND_OTHER_VERSION &&
            (info.size != total || info.fill > info.capacity))
            abort();
        if (info.nparties > SHMRING_INFO_PARTIES)
            abort();
        for (uint32_t k = 0; k < info.nparties; k++)
            if (info.party[k].index >= SHMRING_INFO_PARTIES)
                abort();
    } else if (rc != -EPROTO && rc != -ENOMEM) {
        abort();
    }
    return 0;
}
