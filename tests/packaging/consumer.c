/* Packaging test: a program built against an installed shmring pushes and pops one message. */
#include <errno.h>
#include <shmring.h>
#include <stdio.h>
#include <string.h>

#if !defined(SHMRING_VERSION_MAJOR) || !defined(SHMRING_VERSION_NUMBER) ||                         \
    SHMRING_SOVERSION != SHMRING_VERSION_MAJOR
#error "shmring/version.h not installed beside shmring.h"
#endif

static int fail(const char *what, int err)
{
    fprintf(stderr, "consumer: %s: %s\n", what, shmring_strerror(err));
    return 1;
}

int main(void)
{
    static const char msg[] = "a message through an installed shmring";
    char buf[64];
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 4, .slot_size = sizeof buf,
                                               .flags = SHMRING_PRODUCER | SHMRING_CONSUMER);
    shmring_t *r;
    int err = shmring_create(NULL, &cfg, &r); /* anonymous: leaves no name behind */
    if (err < 0)
        return fail("shmring_create", err);
    err = shmring_push(r, msg, sizeof msg);
    if (err < 0)
        return fail("shmring_push", err);
    ssize_t n = shmring_pop(r, buf, sizeof buf);
    if (n < 0)
        return fail("shmring_pop", (int)n);
    if ((size_t)n != sizeof msg || memcmp(buf, msg, sizeof msg) != 0) {
        fprintf(stderr, "consumer: popped %zd bytes, not the message pushed\n", n);
        return 1;
    }
    n = shmring_pop(r, buf, sizeof buf);
    if (n != -EAGAIN) {
        fprintf(stderr, "consumer: second pop returned %zd, expected -EAGAIN\n", n);
        return 1;
    }
    shmring_close(r);

    char header[32];
    snprintf(header, sizeof header, "%d.%d.%d", SHMRING_VERSION_MAJOR, SHMRING_VERSION_MINOR,
             SHMRING_VERSION_PATCH);
    printf("library %s header %s\n", shmring_version(), SHMRING_VERSION_STRING);
    if (strcmp(shmring_version(), SHMRING_VERSION_STRING) != 0 ||
        strcmp(header, SHMRING_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: versions differ: library %s, header %s (%s)\n",
                shmring_version(), SHMRING_VERSION_STRING, header);
        return 1;
    }
    return 0;
}
