/* Crash scenarios for zero-copy claims and releases, and reservations: Z1, Z2, Z3 (see
 * fault_walk.h). */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

const struct fault_scenario fault_claim_scenarios[] = {
    {NULL, NULL},
};
