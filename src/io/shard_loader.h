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
// Pipeline stages (md.pp > 1): stage picks the file and the tensors (md.stage_range(stage)).
void load_shard(const ModelDir& md, int rank, const TensorSink& sink, bool verify_sha256 = true,
                int stage = 0);

// int8 shards (md.dtype int8): the linear weights (int8_quantized(spec)) go to int8_sink with their
// scales, f32 [rows, ceil(cols / group)] where group is md.int8_group, or the local column count
// when that is 0 (per channel); every other tensor goes to sink in md.float_dtype. A float model
// loads as above. Valid only during the call.
using Int8Sink = std::function<void(const TensorSpec& spec, const std::vector<int64_t>& local_shape,
                                    const int8_t* q, const float* scales, int64_t group)>;
void load_shard(const ModelDir& md, int rank, const TensorSink& sink, const Int8Sink& int8_sink,
                bool verify_sha256 = true, int stage = 0);
// The same with the stage first (Engine::load).
inline void load_shard(const ModelDir& md, int rank, int stage, const TensorSink& sink,
                       const Int8Sink& int8_sink, bool verify_sha256) {
  load_shard(md, rank, sink, int8_sink, verify_sha256, stage);
}

}  // namespace tpinfer
