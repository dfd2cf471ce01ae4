/* `shmring bridge bench`: placeholder until the benchmark is written. */
#include "bridge.h"

int bridge_bench(struct bridge_args *a)
{
    (void)a;
    return cli_fail("bridge", "bench: not written yet");
}
