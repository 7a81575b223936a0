// Tensor-parallel linear layers. A column-parallel layer holds a slice of the output features and
// needs no communication; a row-parallel layer holds a slice of the input features, so its
// partial products are summed across the tp group: it owns that all-reduce. Biases: a
// column-parallel layer holds its slice of the bias; a row-parallel layer holds the whole bias
// and adds it once, after the all-reduce, so it is not counted tp times. A fused projection
// (qkv, gate_up) is one ColumnParallelLinear whose rows are its parts' rank slices one after the
// other ([q_r | k_r | v_r]); the caller splits the output by column ranges.
#pragma once

#include "backend/backend.h"
#include "comm/communicator.h"

namespace tpinfer {

struct ColumnParallelLinear {
  Tensor weight;  // (out_features / tp, in_features)
  Tensor bias;    // (1, out_features / tp), empty when the layer has none
  void forward(Backend& be, Tensor out, Tensor in) const {
    be.matmul(out, in, weight);
    if (!bias.empty()) be.add_bias(out, bias);
  }
};

struct RowParallelLinear {
  Tensor weight;  // (out_features, in_features / tp)
  Tensor bias;    // (1, out_features) replicated, empty when the layer has none
  void forward(Backend& be, Communicator& comm, Tensor out, Tensor in) const {
    be.matmul(out, in, weight);
    if (comm.size() > 1) comm.all_reduce_sum(out.data, static_cast<size_t>(out.numel()), out.dtype);
    if (!bias.empty()) be.add_bias(out, bias);
  }
};

}  // namespace tpinfer
