// Batch inference from files: prompts in (JSON Lines), results out (JSON Lines), spread over the
// data-parallel replicas, each replica decoding many sequences together.
#pragma once

#include <chrono>

#include "comm/world.h"
#include "config/run_config.h"

namespace tpinfer {

void run_batch_job(World& world, const RunConfig& cfg,
                   std::chrono::steady_clock::time_point launch);

}  // namespace tpinfer
