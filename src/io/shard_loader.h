// Loads one rank's shard file, checked against the manifest and the sharding table before any
// tensor is handed out, so a bad file fails before the first upload.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/dtype.h"
#include "io/model_dir.h"
#include "model/sharding.h"

namespace tpinfer {

// data holds prod(local_shape) elements of dtype (md.dtype: f32, or bf16/f16 bit patterns), rows
// contiguous. It is valid only during the call.
using TensorSink =
    std::function<void(const TensorSpec& spec, const std::vector<int64_t>& local_shape,
                       const void* data, DType dtype)>;

// Opens ONLY this rank's file; checks its byte size and (verify_sha256) its sha256 against the
// manifest, hashing the whole file before anything else is read; then its attributes
// (format_version, rank, tp, dtype) and every tensor of sharding_table(md.config) (presence,
// element type, local shape, global_shape and split_dim attributes; no extra datasets), then
// hands each tensor to sink in table order, one at a time (one tensor's host buffer alive at once).
void load_shard(const ModelDir& md, int rank, const TensorSink& sink, bool verify_sha256 = true);

}  // namespace tpinfer
