// The whole job of one rank, from a parsed RunConfig to the streamed answer and the metrics.
#pragma once

#include <chrono>

#include "comm/world.h"
#include "config/run_config.h"

namespace tpinfer {

// Throws tpinfer::Error for bad input. Errors before the first collective are raised on every
// rank alike (every rank reads the same config and manifest) or agreed through World::agree, so
// no rank is left waiting in a collective.
void run_job(World& world, const RunConfig& cfg, std::chrono::steady_clock::time_point launch);

}  // namespace tpinfer
