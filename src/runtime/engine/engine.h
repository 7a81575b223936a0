// One rank's share of a model, ready to run: weights on the device, the KV cache for n_slots
// sequences of max_seq positions, and scratch for max_tokens tokens per step, all allocated once
// at construction. step() runs one forward and hands back the logits of the rows asked for.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "model/model_config.h"
#include "model/transformer.h"

namespace tpinfer {

struct ModelDir;

struct EngineShape {
  int max_seq = 0;         // positions per KV slot
  int n_slots = 1;         // sequences decoded together
  int max_tokens = 256;    // tokens per forward (prefill chunk; >= n_slots)
  int max_logit_rows = 1;  // rows that need logits per forward (>= n_slots)
  // int8 linear weights (sharding.h int8_quantized) with f32 scales per group of this many input
  // columns, 0 = one scale per output row; -1 = float weights (the backend's weight_dtype()).
  int int8_group = -1;
};

class Engine {
 public:
  Engine(const ModelConfig& cfg, const ShardDims& dims, const EngineShape& shape, Backend& backend,
         Communicator& comm);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Reads this rank's shard (only its own file) into device memory.
  void load(const ModelDir& dir, int world_rank_for_messages, bool verify_sha256 = true);
  // Random weights from the config alone (for speed and memory measurements of full shapes).
  void load_dummy(uint64_t seed);

  // One small prefill and one decode step in KV slot 0, so that the first request does not pay
  // the backend's one-time setup (Backend::has_lazy_setup). Every rank of the tp group calls it.
  // What it writes to the cache is never read: a request writes every position it attends to
  // (its prefill, then each decoded token) before attending to it.
  void warm_up();

  // Runs tokens ids[t] at positions[t] in KV slots slots[t]; returns logits (f32, unpadded
  // vocabulary, row-major [n_logit_rows, vocab_size]) of the rows logit_rows (indices into the
  // batch), on the host. want_host_logits = false skips the copy (ranks that do not sample).
  // rope_seq_len: see BatchView (a whole sequence recomputed in chunks).
  const float* step(const int32_t* ids, const int32_t* positions, const int32_t* slots, int n,
                    const int32_t* logit_rows, int n_logit_rows, bool want_host_logits,
                    int rope_seq_len = 0);

  const ModelConfig& config() const { return cfg_; }
  const ShardDims& dims() const { return dims_; }
  const EngineShape& shape() const { return shape_; }
  Backend& backend() { return be_; }
  size_t weight_bytes() const { return weight_bytes_; }
  size_t kv_bytes() const { return kv_bytes_; }
  size_t activation_bytes() const { return act_bytes_; }

 private:
  Tensor alloc_tensor(DType dtype, int64_t rows, int64_t cols);
  void forward_decode_graph(const BatchView& b, int n_logit_rows);
  void allocate_weights();
  void allocate_experts();
  void finish_weights();

  ModelConfig cfg_;
  ShardDims dims_;
  EngineShape shape_;
  Backend& be_;
  Communicator& comm_;
  Transformer model_;
  std::vector<KvLayer> kv_;
  Activations act_;
  std::vector<void*> owned_;
  std::vector<float> host_gathered_;  // (tp, max_logit_rows, vocab_local)
  std::vector<float> host_logits_;    // (max_logit_rows, vocab_size)
  size_t weight_bytes_ = 0, kv_bytes_ = 0, act_bytes_ = 0;

  // Decode steps (one token per row, every row wants logits) are captured once per batch size
  // and replayed; the step's inputs live at fixed device addresses (act_.ids/positions/slots).
  struct DecodeGraph {
    bool enabled = true;  // off for backends without graphs and for the MPI communicator
    int n = 0;            // batch size of the captured (or last eager) decode step
    bool captured = false;
    int eager_steps = 0;  // eager steps seen at batch size n (the first warms up workspaces)
  } graph_;
};

}  // namespace tpinfer
