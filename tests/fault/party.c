/* Crash scenarios for party take, release and seize, and the producer lease takeover (see
 * fault_walk.h). */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

const struct fault_scenario fault_party_scenarios[] = {
    {NULL, NULL},
};
