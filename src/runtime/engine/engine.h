// One rank's share of a model, ready to run: weights on the device, the KV cache as a pool of
// n_blocks blocks of block_size positions per layer, and scratch for max_tokens tokens per step,
// all allocated once at construction. step() runs one forward over the block tables it is given
// and hands back the logits of the rows asked for.
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

// Positions per KV-cache block: 16. A smaller block wastes less of a sequence's last block
// (8 positions on average) and lets prefix caching share prompts at a finer grain; a larger one
// means fewer table entries and block switches in the kernels. 16 is vLLM's GPU default, still
// divides the CPU tiled attention's 64-key tiles (a tile gathers 4 whole blocks) and the CUDA
// kernels' 64-key chunks, and its table (ceil(max_seq / 16) ints per sequence) stays small
// next to the step's other inputs. Kernels take any power of two.
constexpr int kKvBlockSize = 16;

struct EngineShape {
  int max_seq = 0;         // positions of the longest sequence
  int n_slots = 1;         // the most sequences in one step (rows of the block table)
  int max_tokens = 256;    // tokens per forward (prefill chunk; >= n_slots)
  int max_logit_rows = 1;  // rows that need logits per forward (>= n_slots)
  // int8 linear weights (sharding.h int8_quantized) with f32 scales per group of this many input
  // columns, 0 = one scale per output row; -1 = float weights (the backend's weight_dtype()).
  int int8_group = -1;
  int block_size = kKvBlockSize;  // positions per KV block (a power of two)
  // Blocks in the KV pool (per layer); 0 = n_slots * blocks_per_seq(), room for every row at
  // max_seq (the reservation of a cache without paging).
  int n_blocks = 0;

  // Entries of one block-table row: the blocks of a max_seq sequence.
  int blocks_per_seq() const {
    return block_size > 0 ? (max_seq + block_size - 1) / block_size : 0;
  }
  int pool_blocks() const { return n_blocks > 0 ? n_blocks : n_slots * blocks_per_seq(); }
};

// A KV layer of this shape with no memory yet (k = v = nullptr): what the engine allocates per
// layer, and what the memory plan asks the backend's workspace_bytes about.
KvLayer kv_layer_shape(const EngineShape& shape, const ShardDims& dims, DType act_dtype);

class Engine {
 public:
  Engine(const ModelConfig& cfg, const ShardDims& dims, const EngineShape& shape, Backend& backend,
         Communicator& comm);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Pipeline parallelism (dims.pp > 1): the link to the neighbouring stages, owned by the
  // caller, set before the first step. The stage's forward receives the residual stream from
  // the previous stage and sends it to the next; step() returns the logits on the replica
  // leader (first stage, tp rank 0) only, sent there by the last stage's tp rank 0.
  void set_pipe(PipeLink* pipe);

  // Reads this rank's shard (only its own file) into device memory.
  void load(const ModelDir& dir, int world_rank_for_messages, bool verify_sha256 = true);
  // Random weights from the config alone (for speed and memory measurements of full shapes).
  void load_dummy(uint64_t seed);

  // One small prefill and one decode step through a table row of blocks 0, 1, ..., so that the
  // first request does not pay the backend's one-time setup (Backend::has_lazy_setup). Every
  // rank of the tp group calls it, before any request. What it writes to those blocks is never
  // read: a request writes every position it attends to before attending to it (a cached
  // prefix is written by the request that filled it).
  void warm_up();

  // Runs tokens ids[t] at positions[t] of the sequences whose block tables are rows slots[t] of
  // block_table (host, row-major [n_table_rows, table_stride], valid for this call: position p
  // of row r is in block block_table[r * table_stride + p / block_size]); returns logits (f32,
  // unpadded vocabulary, row-major [n_logit_rows, vocab_size]) of the rows logit_rows (indices
  // into the batch), on the host. want_host_logits = false skips the copy (ranks that do not
  // sample; with pipeline stages only the replica leader gets them). rope_seq_len: see BatchView (a
  // whole sequence recomputed in chunks). n_table_rows <= n_slots and table_stride <=
  // blocks_per_seq(); every entry a token writes or attends to must be a block id in [0,
  // pool_blocks()) (checked: one clear error); entries past a sequence's end or wholly before its
  // window may be anything (-1).
  const float* step(const int32_t* ids, const int32_t* positions, const int32_t* slots, int n,
                    const int32_t* block_table, int n_table_rows, int table_stride,
                    const int32_t* logit_rows, int n_logit_rows, bool want_host_logits,
                    int rope_seq_len = 0);
  // This rank's part of step() alone: with pipeline stages, the stage's layers (activations
  // received from the previous stage and sent to the next), and the logits (want_host_logits)
  // returned on the last stage's tp rank 0 only, where they are computed; the caller takes them to
  // the leader (the scheduler's PlanChannel, which keeps several steps in flight). pp = 1: step().
  const float* forward(const int32_t* ids, const int32_t* positions, const int32_t* slots, int n,
                       const int32_t* block_table, int n_table_rows, int table_stride,
                       const int32_t* logit_rows, int n_logit_rows, bool want_host_logits,
                       int rope_seq_len = 0);
  // The same with the identity table: row i owns blocks [i * blocks_per_seq(), (i + 1) *
  // blocks_per_seq()), so slots[t] is a slot as before paging. Needs the default pool size
  // (n_blocks = 0 or at least n_slots * blocks_per_seq()). For tools and tests.
  const float* step(const int32_t* ids, const int32_t* positions, const int32_t* slots, int n,
                    const int32_t* logit_rows, int n_logit_rows, bool want_host_logits,
                    int rope_seq_len = 0);
  // The identity table of the overload above (row-major [n_slots, blocks_per_seq()]).
  const std::vector<int32_t>& identity_block_table() const;

  // Copies block src's K and V into block dst in every layer, enqueued on the backend's stream
  // in order with the steps (n > 1: the choices share a prompt's full blocks and each gets a
  // copy of the partial last one).
  void copy_block(int dst, int src);

  const ModelConfig& config() const { return cfg_; }
  const ShardDims& dims() const { return dims_; }
  const EngineShape& shape() const { return shape_; }
  Backend& backend() { return be_; }
  PipeLink* pipe() { return pipe_; }
  size_t weight_bytes() const { return weight_bytes_; }
  size_t kv_bytes() const { return kv_bytes_; }
  size_t activation_bytes() const { return act_bytes_; }

 private:
  Tensor alloc_tensor(DType dtype, int64_t rows, int64_t cols);
  // The gathered (tp, rows, vocab_local) logits reassembled into host_logits_ (rows, vocab).
  const float* assemble_host_logits(int n_logit_rows);
  void forward_decode_graph(const BatchView& b, int n_logit_rows);
  // Throws one clear line when a step's rows or table entries are out of range.
  void check_block_table(const int32_t* positions, const int32_t* slots, int n,
                         const int32_t* block_table, int n_table_rows, int table_stride);
  void allocate_weights();
  void allocate_experts();
  void finish_weights();

  ModelConfig cfg_;
  ShardDims dims_;
  EngineShape shape_;
  Backend& be_;
  Communicator& comm_;
  PipeLink* pipe_ = nullptr;
  Transformer model_;
  std::vector<KvLayer> kv_;
  Activations act_;
  std::vector<void*> owned_;
  std::vector<float> host_gathered_;  // (tp, max_logit_rows, vocab_local)
  std::vector<float> host_logits_;    // (max_logit_rows, vocab_size)
  std::vector<int32_t>
      host_table_;  // (n_slots, blocks_per_seq) a step's table at the device stride
  mutable std::vector<int32_t> identity_table_;  // built on first use
  std::vector<int> row_lo_, row_hi_;             // (n_slots) check_block_table's scratch
  size_t weight_bytes_ = 0, kv_bytes_ = 0, act_bytes_ = 0;

  // Decode steps (one token per row, every row wants logits) are captured once per batch size
  // and replayed; the step's inputs live at fixed device addresses (act_.ids/positions/slots/
  // block_tables, the table at a fixed stride of blocks_per_seq()).
  struct DecodeGraph {
    bool enabled = true;  // off for backends without graphs and for the MPI communicator
    int n = 0;            // batch size of the captured (or last eager) decode step
    bool captured = false;
    int eager_steps = 0;  // eager steps seen at batch size n (the first warms up workspaces)
  } graph_;
};

}  // namespace tpinfer
