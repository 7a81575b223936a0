// Where the tensor-parallel groups landed. Every layer all-reduces inside a tp group, so a group
// should share a node (NVLink / shared memory); World lays groups out on consecutive ranks, which
// keeps them on one node whenever the ranks per node are a multiple of tp. This check refuses a
// layout where a group spans nodes, unless TPINFER_ALLOW_CROSS_NODE_TP=1 (then it warns).
#pragma once

#include "comm/world.h"

namespace tpinfer {

// Collective over the world; throws tpinfer::Error on every rank alike when refused.
void check_tp_layout(World& world);

}  // namespace tpinfer
