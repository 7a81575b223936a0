// The single-prompt front end: the `prompt` (or `prompt_file`) of the config as one request
// through the same scheduler as every other, its text streamed to stdout as it comes, one
// metrics line on stderr and, if asked, the metrics JSON.
#pragma once

#include <chrono>

#include "comm/world.h"
#include "config/run_config.h"

namespace tpinfer {

void run_single_prompt(World& world, const RunConfig& cfg,
                       std::chrono::steady_clock::time_point launch);

}  // namespace tpinfer
