#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/watchdog.h"
#include "model/rope.h"

namespace tpinfer {

ShardDims ShardDims::make(const ModelConfig& cfg, int tp, int tp_rank, int n_layers) {
  cfg.check_tp(tp);
  ShardDims d;
  d.tp = tp;
  d.tp_rank = tp_rank;
  d.n_heads = cfg.n_heads / tp;
  d.n_kv_heads = cfg.n_kv_heads / tp;
  d.head_dim = cfg.head_dim;
  d.hidden = cfg.hidden_size;
  d.intermediate = cfg.intermediate_size / tp;
  d.vocab = cfg.vocab_per_rank(tp);
  d.vocab_offset = tp_rank * d.vocab;
  d.n_layers = (n_layers <= 0 || n_layers > cfg.n_layers) ? cfg.n_layers : n_layers;
  if (cfg.is_moe()) {
    d.n_experts = cfg.n_experts;
    d.experts_per_tok = cfg.n_experts_per_tok;
    d.moe_intermediate = cfg.moe_intermediate_size / tp;
  }
  return d;
}

void ShardDims::set_stage(const StageSplit& split, int stage_index, bool tie_word_embeddings) {
  pp = split.pp();
  pp_rank = stage_index;
  stage = StageRange::of(split, stage_index, tie_word_embeddings);
  n_layers = stage.layer_end - stage.layer_begin;
}

Tensor* ModelWeights::find(const std::string& name) {
  if (!stage.holds(name)) return nullptr;  // another pipeline stage's tensor
  if (name == "model.embed_tokens.weight") return &embed;
  if (name == "lm_head.weight") return &lm_head;
  if (name == "model.norm.weight") return &final_norm;
  static const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return nullptr;
  size_t pos = prefix.size();
  const size_t dot = name.find('.', pos);
  if (dot == std::string::npos) return nullptr;
  const int layer = std::stoi(name.substr(pos, dot - pos)) - stage.layer_begin;
  if (layer < 0 || layer >= static_cast<int>(layers.size())) return nullptr;
  LayerWeights& L = layers[layer];
  const std::string rest = name.substr(dot + 1);
  if (rest == "input_layernorm.weight") return &L.attn_norm;
  if (rest == "post_attention_layernorm.weight") return &L.ffn_norm;
  if (rest == "self_attn.qkv_proj.weight") return &L.qkv.weight;
  if (rest == "self_attn.o_proj.weight") return &L.o.weight;
  if (rest == "self_attn.qkv_proj.bias") return &L.qkv.bias;
  if (rest == "self_attn.o_proj.bias") return &L.o.bias;
  if (rest == "mlp.gate_up_proj.bias") return &L.gate_up.bias;
  if (rest == "mlp.down_proj.bias") return &L.down.bias;
  if (rest == "self_attn.q_norm.weight") return &L.q_norm;
  if (rest == "self_attn.k_norm.weight") return &L.k_norm;
  if (rest == "mlp.gate_up_proj.weight") return &L.gate_up.weight;
  if (rest == "mlp.down_proj.weight") return &L.down.weight;
  if (rest == "mlp.gate.weight") return &L.router;
  static const std::string experts = "mlp.experts.";
  if (rest.compare(0, experts.size(), experts) == 0) {
    const size_t e_end = rest.find('.', experts.size());
    if (e_end == std::string::npos) return nullptr;
    const int e = std::stoi(rest.substr(experts.size(), e_end - experts.size()));
    const std::string proj = rest.substr(e_end + 1);
    const int which = proj == "gate_proj.weight"   ? 0
                      : proj == "up_proj.weight"   ? 1
                      : proj == "down_proj.weight" ? 2
                                                   : -1;
    if (e < 0 || which < 0) return nullptr;
    if (L.expert_views.size() < 3 * static_cast<size_t>(e + 1)) {
      L.expert_views.resize(3 * static_cast<size_t>(e + 1));
    }
    return &L.expert_views[3 * static_cast<size_t>(e) + which];
  }
  return nullptr;
}

size_t Activations::bytes_needed(const ShardDims& d, DType act, int max_tokens, int max_logit_rows,
                                 int64_t table_entries) {
  const size_t a = dtype_size(act);
  const size_t T = static_cast<size_t>(max_tokens);
  size_t bytes = 0;
  bytes += 3 * T * d.hidden * a;                                            // x, h, delta
  bytes += T * (d.q_dim() + 2 * d.kv_dim()) * a;                            // qkv
  bytes += 2 * T * d.q_dim() * a;                                           // q, att
  bytes += 2 * T * d.kv_dim() * a;                                          // k, v
  bytes += 3 * T * d.intermediate * a;                                      // gate_up, mlp
  bytes += static_cast<size_t>(max_logit_rows) * d.hidden * a;              // last
  bytes += static_cast<size_t>(max_logit_rows) * d.vocab * 4 * (1 + d.tp);  // logits, logits_all
  bytes += (3 * T + max_logit_rows) * sizeof(int32_t);  // ids, positions, slots, logit_rows
  if (d.n_experts > 0) {
    const size_t k = static_cast<size_t>(d.experts_per_tok), R = T * k;
    bytes += T * d.n_experts * 4 + T * k * 4 * 2;  // router_logits, topk ids, weights
    bytes += 2 * R * d.hidden * a + 2 * R * d.moe_intermediate * a;  // x, y, gate, up
    bytes += (R + d.n_experts + 1) * sizeof(int32_t);                // order, offsets
  }
  bytes += static_cast<size_t>(table_entries) * sizeof(int32_t);  // block_tables
  return bytes;
}

Transformer::Transformer(const ModelConfig& cfg, const ShardDims& dims, Backend& backend,
                         Communicator& comm)
    : cfg_(cfg), dims_(dims), be_(backend), comm_(comm) {
  weights.layers.resize(dims.n_layers);
  weights.stage = dims.stage;
}

void Transformer::init_rope() {
  TPI_CHECK(!weights.rope_inv_freq.empty(), "transformer: the RoPE table is not allocated");
  auto upload = [&](Tensor t, int64_t seq_len) {
    const RopeFrequencies f = rope_frequencies(cfg_, seq_len);
    TPI_CHECK(static_cast<int64_t>(f.inv_freq.size()) == t.numel(),
              "transformer: RoPE table of " << f.inv_freq.size() << " for " << t.numel());
    be_.copy_to_device(t.data, f.inv_freq.data(), f.inv_freq.size() * sizeof(float));
    rope_attention_factor_ = f.attention_factor;
  };
  upload(weights.rope_inv_freq, 0);
  rope_key_ = rope_length_key(cfg_, 0);
  if (cfg_.rope_scaling.kind == RopeKind::longrope) {
    upload(weights.rope_inv_freq_long, cfg_.rope_scaling.original_max_position_embeddings + 1);
  }
}

RopeTable Transformer::rope_for(const BatchView& b) {
  const int64_t seq_len =
      std::max<int64_t>(static_cast<int64_t>(b.max_position) + 1, b.rope_seq_len);
  RopeTable t{static_cast<const float*>(weights.rope_inv_freq.data), rope_attention_factor_};
  if (cfg_.rope_scaling.kind == RopeKind::longrope && rope_length_key(cfg_, seq_len) == 1) {
    t.inv_freq = static_cast<const float*>(weights.rope_inv_freq_long.data);
  } else if (cfg_.rope_scaling.kind == RopeKind::dynamic) {
    const int64_t key = rope_length_key(cfg_, seq_len);
    if (key != rope_key_) {
      const RopeFrequencies f = rope_frequencies(cfg_, key);
      be_.copy_to_device(weights.rope_inv_freq.data, f.inv_freq.data(),
                         f.inv_freq.size() * sizeof(float));
      rope_key_ = key;
    }
  }
  return t;
}

void Transformer::forward(const std::vector<KvLayer>& kv, Activations& act, const BatchView& b,
                          int n_logit_rows) {
  const int T = b.n_tokens;
  TPI_CHECK(T > 0 && T <= act.max_tokens,
            "forward: " << T << " tokens, scratch holds " << act.max_tokens);
  TPI_CHECK(n_logit_rows >= 0 && n_logit_rows <= act.max_logit_rows,
            "forward: " << n_logit_rows << " logit rows, scratch holds " << act.max_logit_rows);
  const float eps = cfg_.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dims_.head_dim));
  Tensor x = act.x.first_rows(T), h = act.h.first_rows(T), delta = act.delta.first_rows(T);
  const int q_dim = dims_.q_dim(), kv_dim = dims_.kv_dim();
  Tensor qkv = act.qkv.first_rows(T), att = act.att.first_rows(T);
  // One token: q, k and v are contiguous column ranges of qkv's only row, so views (no copy);
  // more tokens: the columns are copied out (attention, RoPE and the KV append take contiguous
  // rows), a cost small next to the projection's matmul at T > 1.
  Tensor q = act.q.first_rows(T), k = act.k.first_rows(T), v = act.v.first_rows(T);
  if (T == 1) {
    q = qkv.col_range(0, q_dim);
    k = qkv.col_range(q_dim, kv_dim);
    v = qkv.col_range(q_dim + kv_dim, kv_dim);
  }
  Tensor gate_up = act.gate_up.first_rows(T), mlp = act.mlp.first_rows(T);

  // Vocab-parallel embedding: each rank fills the rows of its vocabulary slice, the sum completes.
  // A later pipeline stage instead receives the residual stream and the last layer's output
  // (its first layer adds them, exactly as the layer before it would have).
  const RopeTable rope = rope_for(b);
  if (dims_.first_stage()) {
    be_.embed(x, weights.embed, act.ids, dims_.vocab_offset);
    if (comm_.size() > 1) comm_.all_reduce_sum(x.data, static_cast<size_t>(x.numel()), x.dtype);
  } else {
    TPI_CHECK(pipe_ != nullptr, "forward: pipeline stage " << dims_.pp_rank << " has no link");
    pipe_->recv_prev(x.data, x.bytes());
    pipe_->recv_prev(delta.data, delta.bytes());
  }

  for (int l = 0; l < dims_.n_layers; ++l) {
    // A long prefill is progress, a third of a layer at a time (here, after the attention and
    // after gate_up): tp 1 has no collective to beat, and a 256-token chunk of a big layer on a
    // slow or busy CPU takes seconds.
    watch_beat();
    const LayerWeights& L = weights.layers[l];
    // Pre-norm; from layer 1 on, the previous MLP's residual add is fused into it.
    if (l == 0 && dims_.first_stage()) {
      be_.rmsnorm(h, x, L.attn_norm, eps);
    } else {
      be_.add_rmsnorm(h, x, delta, L.attn_norm, eps);
    }
    L.qkv.forward(be_, qkv, h);
    if (T > 1) {
      be_.copy_cols(q, qkv, 0);
      be_.copy_cols(k, qkv, q_dim);
      be_.copy_cols(v, qkv, q_dim + kv_dim);
    }
    be_.qk_norm_rope(q, k, L.q_norm, L.k_norm, b, dims_.head_dim, rope, eps);
    be_.kv_append(kv[l], k, v, b);
    be_.attention(att, q, kv[l], b, dims_.n_heads, cfg_.sliding_window, scale);
    L.o.forward(be_, comm_, delta, att);
    watch_beat();

    be_.add_rmsnorm(h, x, delta, L.ffn_norm, eps);
    if (!L.router.empty()) {
      // Mixture of experts: every rank routes every token alike (replicated router), runs its
      // slice of each active expert, and one all-reduce sums the slices, as for the dense MLP.
      Tensor logits = act.router_logits.first_rows(T);
      Tensor ids = act.topk_ids.first_rows(T), w = act.topk_weights.first_rows(T);
      be_.matmul(logits, h, L.router);
      be_.moe_route(ids, w, logits, cfg_.norm_topk_prob);
      be_.moe_experts(delta, h, L.experts, ids, w, act.moe);
      if (comm_.size() > 1) {
        comm_.all_reduce_sum(delta.data, static_cast<size_t>(delta.numel()), delta.dtype);
      }
      continue;
    }
    L.gate_up.forward(be_, gate_up, h);
    watch_beat();
    be_.silu_mul_fused(mlp, gate_up);
    L.down.forward(be_, comm_, delta, mlp);
  }
  if (!dims_.last_stage()) {  // (T, hidden) x 2 to the same tp rank of the next stage
    pipe_->send_next(x.data, x.bytes());
    pipe_->send_next(delta.data, delta.bytes());
    return;
  }
  be_.add_rmsnorm(h, x, delta, weights.final_norm, eps);
  if (n_logit_rows == 0) return;

  // Vocab-parallel lm_head on the rows that need logits, then gather the slices.
  Tensor last = act.last.first_rows(n_logit_rows);
  Tensor logits = act.logits.first_rows(n_logit_rows);
  be_.gather_rows(last, h, act.logit_rows);
  be_.matmul(logits, last, weights.lm_head);
  comm_.all_gather(act.logits_all.data, logits.data, static_cast<size_t>(logits.numel()),
                   DType::f32);
}

}  // namespace tpinfer
