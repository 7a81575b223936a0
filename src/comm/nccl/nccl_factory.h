// Entry point of the NCCL communicator (CUDA builds only). No NCCL types here.
#pragma once

#include <memory>

#include "comm/communicator.h"
#include "comm/pipe.h"

namespace tpinfer {

// Rank 0 of the tp group calls ncclGetUniqueId, World broadcasts it over the group's MPI
// communicator, and every rank calls ncclCommInitRank with the backend's device current (the
// call takes no stream; the collectives are later enqueued on the backend's stream).
std::unique_ptr<Communicator> make_nccl_communicator(World& world, Backend& backend);

// The pipeline link over NCCL: one communicator per pipeline column (its rank i is stage i;
// stage 0 makes the id, MPI broadcasts it over the column), ncclSend / ncclRecv of activations
// on the backend's stream; the logits go over MPI on the host (PipeLinkBase).
std::unique_ptr<PipeLink> make_nccl_pipe_link(World& world, Backend& backend);

}  // namespace tpinfer
