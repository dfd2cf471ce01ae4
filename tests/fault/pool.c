/* Crash scenarios for the worker pool's chunk hand-out and completion (see fault_walk.h). */
#define _GNU_SOURCE
#include <stddef.h>

#include "fault_walk.h"

const struct fault_scenario fault_pool_scenarios[] = {
    {NULL, NULL},
};
