// The op set the transformer is written against, once, for every device. A backend owns its
// memory and its stream; ops are enqueued in order and synchronize() waits for them. Kernels
// live in kernels/<device>/ as framework-free launchers; a backend validates and dispatches.
//
// Shapes below are per rank. T = tokens in the batch, H = hidden size, hd = head_dim.
// "Device int arrays" (ids, positions, slots, block tables) are int32 arrays in backend memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace tpinfer {

enum class BackendKind { cpu, cuda };

const char* backend_kind_name(BackendKind k);

struct DeviceMemory {
  size_t total_bytes = 0;
  size_t free_bytes = 0;
};

// One layer's KV cache, paged: K and V each a pool [n_blocks, block_size, n_kv_heads_local,
// head_dim] of fixed-size blocks that sequences take through their block tables (BatchView).
// max_seq and max_rows bound what one step may ask for: a position is below max_seq (a table
// row has ceil(max_seq / block_size) entries) and a step uses at most max_rows table rows (the
// sequences of a batched decode, which sizes the CUDA flash-decoding workspace).
struct KvLayer {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::f32;
  int n_blocks = 0;
  int block_size = 0;  // positions per block, a power of two (kKvBlockSize in engine.h)
  int n_kv_heads = 0;
  int head_dim = 0;
  int max_seq = 0;
  int max_rows = 0;
};

// What attention needs to know about the batch: token t sits at position positions[t] of the
// sequence whose block table is row slots[t] of block_tables; it attends to positions
// [max(0, pos - window + 1), pos] of that sequence. Position p of row r lives in block
// block_tables[r * table_stride + p / block_size], at offset p % block_size. A prefill is T
// tokens of one row; a batched decode is one token of each of T rows. Entries past what a
// sequence uses, or of blocks wholly before the window of every token of its row in the step,
// may be -1: kernels never read them.
struct BatchView {
  int n_tokens = 0;
  const int32_t* positions = nullptr;     // device int array [T]
  const int32_t* slots = nullptr;         // device int array [T]: the block-table row of token t
  const int32_t* block_tables = nullptr;  // device int array [n_rows, table_stride]: block ids
  int table_stride = 0;
  int max_position = 0;  // largest entry of positions: a host-side hint, stale under replay()
  // RoPE kinds that depend on the length (dynamic, longrope) pick their frequencies for
  // max(max_position + 1, rope_seq_len): a sequence recomputed in chunks keeps the frequencies
  // of its whole length.
  int rope_seq_len = 0;
};

// RoPE frequencies for qk_norm_rope (src/model/rope.h computes them as transformers does):
// inv_freq[i], an f32 device array of head_dim/2, and the attention factor that multiplies cos
// and sin (yarn, longrope; 1 otherwise).
struct RopeTable {
  const float* inv_freq = nullptr;
  float attention_factor = 1.0f;
};

// A mixture-of-experts layer's experts on this rank, stacked: expert e's gate/up rows are
// [e * I, (e + 1) * I) of gate/up [n_experts * I, H] and its down rows [e * H, (e + 1) * H) of
// down [n_experts * H, I] (I = the local expert width, moe_intermediate / tp). Any weight dtype
// matmul() takes, int8 included (scales stacked the same way).
struct MoeExperts {
  Tensor gate, up, down;
  int n_experts = 0;
};

// Scratch of moe_experts for up to R = T * k routed rows (allocated once by the engine).
struct MoeScratch {
  Tensor x;                    // (R, H) the routed rows, grouped by expert
  Tensor gate, up;             // (R, I)
  Tensor y;                    // (R, H) each routed row's expert output
  int32_t* order = nullptr;    // device int array (R): routed row -> t * k + j
  int32_t* offsets = nullptr;  // device int array (n_experts + 1): each expert's first row
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual BackendKind kind() const = 0;
  virtual std::string describe() const = 0;  // e.g. "cpu, 2 threads" or "cuda:0 NVIDIA H100"
  virtual DType weight_dtype() const = 0;    // the dtype weights are kept in on the device
  virtual DType act_dtype() const = 0;       // the dtype of hidden states and KV cache
  virtual DeviceMemory memory() const = 0;

  // Memory. alloc throws tpinfer::Error naming the size when the device is out of memory.
  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  // Host <-> backend copies: ordered after the work already enqueued, complete on return.
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  // Backend -> backend copy, enqueued in order with the ops (and so capturable in a graph).
  virtual void copy_device(void* dst, const void* src, size_t bytes) = 0;
  // Whether host code may read and write alloc()'d memory directly (the plain CPU backend). When
  // false, every access goes through the ops and copies above: the CUDA backend, and the CPU
  // backend's guarded test mode, which keeps its memory unreadable to the host outside them.
  virtual bool host_accessible() const = 0;
  // Whether the first call of an op at a new shape pays one-time setup (kernel modules loaded on
  // first use, library plans, graph capture), which a warm-up step after loading moves out of
  // the first request's time to first token.
  virtual bool has_lazy_setup() const { return false; }
  // Converts host data of dtype `src_dtype` to weight_dtype() while uploading.
  virtual void upload_weight(Tensor dst, const void* src, DType src_dtype) = 0;
  // int8 weights (scripts/convert_hf.py --dtype int8): whether matmul() takes an i8 weight, and
  // its upload: dst is i8 [rows, cols] with dst.scales allocated (f32 [rows, dst.n_groups()]);
  // q and scales are host arrays of those shapes. Backends without int8 kernels refuse.
  virtual bool supports_int8_weights() const { return false; }
  virtual void upload_int8_weight(Tensor dst, const int8_t* q, const float* scales);
  virtual void synchronize() = 0;
  // Bytes currently held through alloc() (for the memory report: planned vs real).
  virtual size_t allocated_bytes() const = 0;
  // Bytes the backend will hold for itself (cuBLAS workspace, flash-decoding partials) when it
  // runs attention over a KV cache of this shape (the pool's block size and count, max_seq,
  // max_rows) with n_heads local query heads, so the memory plan can count them before anything
  // is allocated.
  virtual size_t workspace_bytes(const KvLayer& cache_shape, int n_heads) const { return 0; }

  // Optional whole-step capture (CUDA graphs). The engine enqueues one decode step between
  // capture_begin() and capture_end(); replay() then re-runs it. Every input the step reads
  // (token ids, positions, slots, block tables) lives at fixed device addresses that the engine
  // rewrites before each replay, so ops must read positions from device memory, not from host
  // hints. Backends without graphs return false from capture_begin() and the engine runs eagerly.
  virtual bool capture_begin() { return false; }
  virtual void capture_end() {}
  virtual void replay() {}
  // Whether a captured step is still there to replay (a backend may drop it, e.g. when a
  // workspace it points into had to grow); the engine captures again when it is not.
  virtual bool graph_ready() const { return false; }
  // Ends an open capture without keeping it (an op threw between capture_begin() and
  // capture_end()), so the error that caused it is the one reported and the next step can run
  // eagerly or capture again. A no-op when no capture is open.
  virtual void capture_abort() {}

  // out[T, H] = table[ids[t] - vocab_offset] for ids inside [vocab_offset, vocab_offset +
  // table.rows), zeros otherwise (the vocab-parallel embedding: an all-reduce completes it).
  virtual void embed(Tensor out, Tensor table, const int32_t* ids, int vocab_offset) = 0;
  // out[r] = in[r] / rms(in[r]) * weight (weight [1, cols]).
  virtual void rmsnorm(Tensor out, Tensor in, Tensor weight, float eps) = 0;
  // residual += delta; out = rmsnorm(residual) * weight. (The fused pre-norm of a block.)
  virtual void add_rmsnorm(Tensor out, Tensor residual, Tensor delta, Tensor weight, float eps) = 0;
  // out[T, N] = in[T, K] @ weight[N, K]^T (weights in Hugging Face [out, in] layout).
  // out may be f32 even when activations are not (logits).
  virtual void matmul(Tensor out, Tensor in, Tensor weight) = 0;
  // In place on q [T, n_heads*hd] and k [T, n_kv_heads*hd]: optional per-head RMSNorm (Qwen3;
  // skipped when q_norm is empty), then rotate-half RoPE at positions[t]: pair (i, i + hd/2)
  // rotated by angle positions[t] * inv_freq[i], cos and sin times the attention factor.
  virtual void qk_norm_rope(Tensor q, Tensor k, Tensor q_norm, Tensor k_norm, const BatchView& b,
                            int head_dim, const RopeTable& rope, float eps) = 0;
  // out[T, N] += bias[1, N] (linear layers with biases; bias in the activation dtype).
  virtual void add_bias(Tensor out, Tensor bias) = 0;
  // Writes k and v [T, n_kv_heads*hd] into the cache at positions[t] of row slots[t], through
  // the block table.
  virtual void kv_append(const KvLayer& cache, Tensor k, Tensor v, const BatchView& b) = 0;
  // out[T, n_heads*hd] = softmax(q k^T * scale) v over the cached positions of each token's
  // sequence (read through its block-table row), causal, grouped-query (n_heads / n_kv_heads
  // queries share a kv head), sliding window if > 0 (blocks wholly outside it are not read).
  virtual void attention(Tensor out, Tensor q, const KvLayer& cache, const BatchView& b,
                         int n_heads, int sliding_window, float scale) = 0;
  // out[T, I] = silu(gate) * up.
  virtual void silu_mul(Tensor out, Tensor gate, Tensor up) = 0;
  // The fused gate/up projection's activation: out[T, I] = silu(gate_up[:, :I]) *
  // gate_up[:, I:2I] (gate_up [T, 2I], each row [gate | up]).
  virtual void silu_mul_fused(Tensor out, Tensor gate_up) = 0;
  // out[T, n] = in[:, first : first + n] (same dtype): a column range of each row, copied
  // (splitting the fused qkv projection's output); enqueued in order, capturable.
  virtual void copy_cols(Tensor out, Tensor in, int64_t first) = 0;
  // out[i] = in[rows[i]] for i < out.rows (rows: device int array).
  virtual void gather_rows(Tensor out, Tensor in, const int32_t* rows) = 0;
  // Converts between activation dtypes (same shape), e.g. bf16 hidden -> f32 for the host.
  virtual void convert(Tensor out, Tensor in) = 0;

  // --- Mixture of experts (Qwen3-MoE, Mixtral) -----------------------------------------------
  // Routing as transformers' TopKRouter: p = softmax(logits[t]) in f32 over the E experts, the
  // k = ids.cols largest (on the CPU, equal scores pick and order experts exactly as
  // torch.topk on the CPU does), divided by their sum when normalize. logits f32 [T, E]; ids
  // i32 [T, k]; weights f32 [T, k].
  virtual void moe_route(Tensor ids, Tensor weights, Tensor logits, bool normalize);
  // out[T, H] = sum_j weights[t, j] * down_e(silu(gate_e in[t]) * up_e in[t]), e = ids[t, j],
  // summed from zero in increasing expert index as transformers' experts loop adds them. Tokens
  // are grouped by expert and each active expert runs once over its tokens: only the active
  // experts' weights are read. With tp > 1 out is this rank's partial sum (one all-reduce
  // completes the layer, as for the dense MLP's down_proj).
  virtual void moe_experts(Tensor out, Tensor in, const MoeExperts& experts, Tensor ids,
                           Tensor weights, const MoeScratch& scratch);
};

struct BackendOptions {
  int device_ordinal = 0;  // CUDA: which visible GPU this rank binds
  int n_threads = 0;       // CPU: 0 = let OpenMP decide
  // The dtype the weights arrive in (the shards' or the dummy weights'). The CPU backend keeps
  // bf16 weights as bf16 (half the memory, converted inside the matmul) and everything else as
  // f32; the CUDA backend always uses bf16.
  DType stored_weight_dtype = DType::f32;
  // CPU, tests only: keep alloc()'d memory unreadable to the host outside ops and copies, so host
  // code that touches "device" memory faults here as it would on a GPU (host_accessible() is
  // false). Also on when the environment has TPINFER_CPU_GUARD_MEMORY=1.
  bool guard_memory = false;
  // The shards hold int8 linear weights (their float tensors are in stored_weight_dtype).
  bool int8_weights = false;
  // CPU: the portable matmul (the same bits on every CPU) instead of the fastest path for this
  // CPU's instruction set (which is batch invariant too, but rounds differently per ISA).
  bool deterministic = false;
};

// The only place that knows which backends were compiled in (src/backend/registry.cpp).
std::unique_ptr<Backend> make_backend(BackendKind kind, const BackendOptions& opts);
bool backend_available(BackendKind kind);
// Number of usable CUDA devices (0 on a CPU-only build or a machine with no GPU).
int cuda_device_count();
// The GPU this rank binds, from its node-local rank (respecting CUDA_VISIBLE_DEVICES and SLURM's
// binding); throws when the node has more ranks than GPUs unless sharing is allowed.
int pick_device_ordinal(int local_rank, int local_size, bool allow_sharing);

}  // namespace tpinfer
