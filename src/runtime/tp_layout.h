// Where the tensor-parallel groups landed. Every layer all-reduces inside a tp group, so a group
// should share a node (NVLink / shared memory); World lays groups out on consecutive ranks, which
// keeps them on one node whenever the ranks per node are a multiple of tp. This check refuses a
// layout where a group spans nodes, unless TPINFER_ALLOW_CROSS_NODE_TP=1 (then it warns). And the
// log's table of the layout: node, rank, dp, pp, tp and device of every rank.
#pragma once

#include <string>

#include "comm/world.h"

namespace tpinfer {

// Collective over the world; throws tpinfer::Error on every rank alike when refused.
void check_tp_layout(World& world);

// Collective over the world: world rank 0 logs one line per rank (up to 64, then a count),
//   node  host     rank  dp  pp  tp  device
//   0     gpu-a01  0     0   0   0   GPU 0
// `device` is this rank's ("GPU 3", "CPU (8 threads)").
void log_layout(World& world, const std::string& device);

}  // namespace tpinfer
