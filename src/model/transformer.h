// The Llama-family transformer, written once against Backend and Communicator: Llama (GQA, RoPE,
// RMSNorm, SwiGLU, tied or untied lm_head), Qwen3 (per-head q/k RMSNorm, free head_dim) and
// Mistral (sliding-window attention), Qwen2 (q/k/v biases), Phi3 (converted to separate q/k/v and
// gate/up), with scaled RoPE (src/model/rope.h); Qwen3-MoE and Mixtral, whose sparse layers
// replace the MLP by a mixture of experts (a replicated router, experts split like the MLP, the
// same one all-reduce). Every shape below is per rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "comm/pipe.h"
#include "model/model_config.h"
#include "model/parallel_linear.h"
#include "model/pipeline_stages.h"

namespace tpinfer {

// What one rank of a tp group holds.
struct ShardDims {
  int tp = 1;
  int tp_rank = 0;
  int n_heads = 0;     // local query heads
  int n_kv_heads = 0;  // local kv heads
  int head_dim = 0;
  int hidden = 0;
  int intermediate = 0;      // local MLP width
  int vocab = 0;             // local vocabulary rows (padded: ceil(V / tp))
  int vocab_offset = 0;      // first global id of this rank's rows
  int n_layers = 0;          // layers actually run (the `layers` option may cut the model short)
  int n_experts = 0;         // MoE: experts per sparse layer (all of them on every rank)
  int experts_per_tok = 0;   // MoE: k
  int moe_intermediate = 0;  // MoE: local expert width (moe_intermediate_size / tp)
  // Pipeline parallelism (model/pipeline_stages.h): this rank's stage and what it holds;
  // n_layers is then the stage's layer count, and local layer l is global layer_begin + l.
  int pp = 1, pp_rank = 0;
  StageRange stage;

  static ShardDims make(const ModelConfig& cfg, int tp, int tp_rank, int n_layers);
  // Narrows these dims to stage `stage` of `split` (pp = split.pp()).
  void set_stage(const StageSplit& split, int stage_index, bool tie_word_embeddings);
  bool first_stage() const { return pp_rank == 0; }
  bool last_stage() const { return pp_rank == pp - 1; }
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

struct LayerWeights {
  Tensor attn_norm;              // (1, hidden)
  ColumnParallelLinear qkv;      // (q_dim + 2*kv_dim, hidden): rows [q | k | v] of this rank
  Tensor q_norm, k_norm;         // (1, head_dim), Qwen3 only (empty otherwise)
  RowParallelLinear o;           // (hidden, n_heads*hd)
  Tensor ffn_norm;               // (1, hidden)
  ColumnParallelLinear gate_up;  // (2*intermediate, hidden): rows [gate | up]   dense layers
  RowParallelLinear down;        // (hidden, intermediate)
  // MoE layers: the router (n_experts, hidden), replicated, and the stacked experts
  // (n_experts * moe_intermediate, hidden) x2 and (n_experts * hidden, moe_intermediate).
  Tensor router;
  MoeExperts experts;
  // Each expert's gate, up and down as views into `experts` (the sharding table's tensors), in
  // that order: expert e at 3e, 3e + 1, 3e + 2.
  std::vector<Tensor> expert_views;
};

struct ModelWeights {
  Tensor embed;       // (vocab, hidden): vocab-parallel rows [vocab_offset, vocab_offset + vocab)
  Tensor lm_head;     // (vocab, hidden): the same memory as embed when embeddings are tied
  Tensor final_norm;  // (1, hidden)
  std::vector<LayerWeights> layers;  // this stage's layers: layers[0] is stage.layer_begin
  StageRange stage;                  // what find() hands out (pipeline parallelism)
  // RoPE inv_freq, f32 (1, head_dim/2): not in the checkpoint, computed from the config.
  Tensor rope_inv_freq;
  Tensor rope_inv_freq_long;  // longrope: the long_factor table (the other is the short one)

  // Points a tensor of the sharding table (by its Hugging Face name) at its slot; nullptr for a
  // tensor this rank does not need (a layer cut off by `layers`, another pipeline stage's).
  Tensor* find(const std::string& hf_name);
};

// Scratch for one forward of up to max_tokens tokens, producing logits for up to max_logit_rows
// rows. Allocated once; the decode loop allocates nothing.
struct Activations {
  int max_tokens = 0;
  int max_logit_rows = 0;
  Tensor x;        // (T, hidden) residual stream
  Tensor h;        // (T, hidden) normed
  Tensor delta;    // (T, hidden) attention / MLP output
  Tensor qkv;      // (T, q_dim + 2*kv_dim) the fused projection's output, [q | k | v] per row
  Tensor q;        // (T, q_dim)   T > 1: qkv's columns, copied (T = 1 uses views into qkv)
  Tensor k, v;     // (T, kv_dim)
  Tensor att;      // (T, q_dim)
  Tensor gate_up;  // (T, 2*intermediate) the fused projection's output, [gate | up] per row
  Tensor mlp;      // (T, intermediate) silu(gate) * up
  // MoE layers (empty for dense models); R = T * experts_per_tok routed rows.
  Tensor router_logits;    // f32 (T, n_experts)
  Tensor topk_ids;         // i32 (T, k)
  Tensor topk_weights;     // f32 (T, k)
  MoeScratch moe;          // x, y (R, hidden); gate, up (R, moe_intermediate); order (R)
  Tensor last;             // (max_logit_rows, hidden) the rows that need logits
  Tensor logits;           // f32 (max_logit_rows, vocab) this rank's vocabulary slice
  Tensor logits_all;       // f32 (tp, max_logit_rows, vocab) gathered slices
  int32_t* ids = nullptr;  // device int arrays (max_tokens)
  int32_t* positions = nullptr;
  int32_t* slots = nullptr;
  int32_t* logit_rows = nullptr;    // (max_logit_rows)
  int32_t* block_tables = nullptr;  // (table_entries) the step's block table, fixed stride

  static size_t bytes_needed(const ShardDims& d, DType act, int max_tokens, int max_logit_rows,
                             int64_t table_entries);
};

class Transformer {
 public:
  Transformer(const ModelConfig& cfg, const ShardDims& dims, Backend& backend, Communicator& comm);

  // One forward over a batch whose metadata is already in act.ids/positions/slots/logit_rows
  // and the block tables b points at.
  // Leaves f32 logits of the n_logit_rows requested rows in act.logits_all (every rank; with
  // pipeline stages, every rank of the last stage: the others pass the residual stream on).
  void forward(const std::vector<KvLayer>& kv, Activations& act, const BatchView& batch,
               int n_logit_rows);

  // The link to the neighbouring stages (pp > 1; nullptr otherwise), owned by the caller.
  void set_pipe(PipeLink* pipe) { pipe_ = pipe; }

  // Uploads the RoPE tables into weights.rope_inv_freq(_long) (allocated by the engine).
  void init_rope();

 private:
  // The RoPE table for a forward whose largest position is b.max_position (dynamic: recomputed
  // and uploaded when the length key changes; longrope: short or long table).
  RopeTable rope_for(const BatchView& b);

  const ModelConfig& cfg_;
  ShardDims dims_;
  Backend& be_;
  Communicator& comm_;
  PipeLink* pipe_ = nullptr;
  float rope_attention_factor_ = 1.0f;
  int64_t rope_key_ = -1;  // dynamic: the length key of the uploaded table

 public:
  ModelWeights weights;
};

}  // namespace tpinfer
