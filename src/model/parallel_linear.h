// Tensor-parallel linear layers. A column-parallel layer holds a slice of the output features and
// needs no communication; a row-parallel layer holds a slice of the input features, so its
// partial products are summed across the tp group: it owns that all-reduce.
#pragma once

#include "backend/backend.h"
#include "comm/communicator.h"

namespace tpinfer {

struct ColumnParallelLinear {
  Tensor weight;  // (out_features / tp, in_features)
  void forward(Backend& be, Tensor out, Tensor in) const { be.matmul(out, in, weight); }
};

struct RowParallelLinear {
  Tensor weight;  // (out_features, in_features / tp)
  void forward(Backend& be, Communicator& comm, Tensor out, Tensor in) const {
    be.matmul(out, in, weight);
    if (comm.size() > 1) comm.all_reduce_sum(out.data, static_cast<size_t>(out.numel()), out.dtype);
  }
};

}  // namespace tpinfer
