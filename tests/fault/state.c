/* Crash scenarios for state-table write steps, insertion, deletion and recovery (see fault_walk.h).
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

const struct fault_scenario fault_state_scenarios[] = {
    {NULL, NULL},
};
