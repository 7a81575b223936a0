// The server front end: `tpinfer CONFIG --serve HOST:PORT` under mpirun or srun. World rank 0
// serves the OpenAI API over HTTP (runtime/frontend/server) and queues each request for the
// dispatcher, which spreads them over the data-parallel replicas with continuous batching; the
// other ranks run their replica's share. SIGTERM stops accepting, gives running requests
// shutdown_grace_s to finish, and the job exits 0.
#pragma once

#include <chrono>

#include "comm/world.h"
#include "config/run_config.h"

namespace tpinfer {

void run_server_job(World& world, const RunConfig& cfg,
                    std::chrono::steady_clock::time_point launch);

}  // namespace tpinfer
