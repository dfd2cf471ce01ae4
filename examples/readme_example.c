/* README example: a producer process and a consumer process share a named ring. */
#include <errno.h>
#include <shmring.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    char buf[256];
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.flags = SHMRING_CONSUMER); /* 1024 x 256 B */
    shmring_t *ring, *prod = NULL;
    if (shmring_create("/readme-example", &cfg, &ring) < 0)
        return 1;
    if (fork() == 0) { /* the producer: any process that knows the name */
        if (shmring_open("/readme-example", SHMRING_PRODUCER, &prod) == 0)
            for (int i = 1; i <= 3; i++)
                shmring_push_wait(prod, buf, (size_t)sprintf(buf, "message %d", i), -1);
        shmring_close(prod); /* end of stream */
        _exit(0);
    }
    ssize_t n, got = 0;
    while ((n = shmring_pop_wait(ring, buf, sizeof buf, 2000000000)) >= 0)
        got += printf("got \"%.*s\"\n", (int)n, buf) > 0;
    shmring_close(ring);
    shmring_unlink("/readme-example");
    wait(NULL);
    return n == -EPIPE && got == 3 ? 0 : 1; /* -EPIPE: the producer closed, ring drained */
}
