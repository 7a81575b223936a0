// The sharding table (see sharding.h); scripts/convert_hf.py's sharding_table() is its twin.
#include "model/sharding.h"

#include <sstream>
#include <utility>

#include "core/error.h"

namespace tpinfer {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

std::vector<int64_t> TensorSpec::local_shape(int tp) const {
  TPI_CHECK(tp >= 1, "tensor " << name << ": tp must be >= 1, got " << tp);
  std::vector<int64_t> s = global_shape;
  if (split == SplitDim::none) return s;
  const size_t d = static_cast<size_t>(split);
  TPI_CHECK(d < s.size(),
            "tensor " << name << ": split dim " << d << " of a " << s.size() << "-D tensor");
  if (vocab_padded) {
    s[d] = (s[d] + tp - 1) / tp;
  } else {
    TPI_CHECK(s[d] % tp == 0, "tensor " << name << ": tp=" << tp << " does not divide dim " << d
                                        << " of " << shape_str(global_shape));
    s[d] /= tp;
  }
  return s;
}

int64_t TensorSpec::local_offset(int tp, int rank) const {
  if (split == SplitDim::none) return 0;
  return local_shape(tp)[static_cast<size_t>(split)] * rank;
}

std::string TensorSpec::describe(int tp) const {
  std::ostringstream os;
  if (split == SplitDim::none) {
    os << "replicated, global " << shape_str(global_shape);
  } else {
    os << "split dim " << static_cast<int>(split) << " of global " << shape_str(global_shape)
       << " over tp=" << tp;
    if (vocab_padded) {
      os << ", vocab rows padded to " << local_shape(tp)[0] << " per rank";
    }
    if (!parts.empty()) {
      os << ", fused per rank as [";
      for (size_t i = 0; i < parts.size(); ++i) {
        os << (i ? " | " : "") << parts[i].rows << "/tp rows of " << parts[i].name;
      }
      os << ']';
    }
  }
  return os.str();
}

std::vector<TensorSpec> TensorSpec::unfused() const {
  if (parts.empty()) return {*this};
  std::vector<TensorSpec> out;
  for (const FusedPart& p : parts) {
    std::vector<int64_t> shape = global_shape;
    shape[0] = p.rows;
    out.push_back(TensorSpec{p.name, std::move(shape), split, false, {}});
  }
  return out;
}

bool is_router(const std::string& name) {
  static const std::string suffix = ".mlp.gate.weight";
  return name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool int8_quantized(const TensorSpec& spec) {
  return spec.global_shape.size() == 2 && spec.name != "model.embed_tokens.weight" &&
         !is_router(spec.name);
}

std::string int8_scales_name(const std::string& weight_name) {
  return weight_name + "_scales";
}

std::vector<TensorSpec> sharding_table(const ModelConfig& cfg) {
  const int64_t hidden = cfg.hidden_size;
  const int64_t vocab = cfg.vocab_size;
  const int64_t inter = cfg.intermediate_size;
  const int64_t q_dim = static_cast<int64_t>(cfg.n_heads) * cfg.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(cfg.n_kv_heads) * cfg.head_dim;

  std::vector<TensorSpec> t;
  auto add = [&](std::string name, std::vector<int64_t> shape, SplitDim split,
                 bool vocab_padded = false) {
    t.push_back(TensorSpec{std::move(name), std::move(shape), split, vocab_padded, {}});
  };
  add("model.embed_tokens.weight", {vocab, hidden}, SplitDim::out, true);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {hidden}, SplitDim::none);
    // A column-parallel bias is split with its weight's rows; a row-parallel bias is replicated
    // and added once, after the all-reduce (never tp times).
    auto column = [&](const std::string& name, int64_t out, bool bias) {
      add(p + name + ".weight", {out, hidden}, SplitDim::out);
      if (bias) add(p + name + ".bias", {out}, SplitDim::out);
    };
    auto row = [&](const std::string& name, int64_t in, bool bias) {
      add(p + name + ".weight", {hidden, in}, SplitDim::in);
      if (bias) add(p + name + ".bias", {hidden}, SplitDim::none);
    };
    // A fused column-parallel projection: one tensor (and one bias) whose rank slice is
    // [part_0 rows of rank r | part_1 rows of rank r | ...].
    auto fused = [&](const std::string& name,
                     const std::vector<std::pair<std::string, int64_t>>& of, bool bias) {
      for (const char* kind : {"weight", "bias"}) {
        if (std::string(kind) == "bias" && !bias) break;
        TensorSpec s{p + name + "." + kind, {0}, SplitDim::out, false, {}};
        for (const auto& [part, rows] : of) {
          s.parts.push_back(FusedPart{p + part + "." + kind, rows});
          s.global_shape[0] += rows;
        }
        if (std::string(kind) == "weight") s.global_shape.push_back(hidden);
        t.push_back(std::move(s));
      }
    };
    fused("self_attn.qkv_proj",
          {{"self_attn.q_proj", q_dim}, {"self_attn.k_proj", kv_dim}, {"self_attn.v_proj", kv_dim}},
          cfg.qkv_bias);
    row("self_attn.o_proj", q_dim, cfg.o_bias);
    if (cfg.qk_norm) {
      add(p + "self_attn.q_norm.weight", {cfg.head_dim}, SplitDim::none);
      add(p + "self_attn.k_norm.weight", {cfg.head_dim}, SplitDim::none);
    }
    add(p + "post_attention_layernorm.weight", {hidden}, SplitDim::none);
    if (cfg.is_moe_layer(l)) {
      // The router is replicated (every rank routes every token the same way); each expert is a
      // dense MLP split like the one below, so the layer still ends in one all-reduce.
      add(p + "mlp.gate.weight", {cfg.n_experts, hidden}, SplitDim::none);
      for (int e = 0; e < cfg.n_experts; ++e) {
        const std::string x = "mlp.experts." + std::to_string(e) + ".";
        column(x + "gate_proj", cfg.moe_intermediate_size, false);
        column(x + "up_proj", cfg.moe_intermediate_size, false);
        row(x + "down_proj", cfg.moe_intermediate_size, false);
      }
      continue;
    }
    fused("mlp.gate_up_proj", {{"mlp.gate_proj", inter}, {"mlp.up_proj", inter}}, cfg.mlp_bias);
    row("mlp.down_proj", inter, cfg.mlp_bias);
  }
  add("model.norm.weight", {hidden}, SplitDim::none);
  if (!cfg.tie_word_embeddings) add("lm_head.weight", {vocab, hidden}, SplitDim::out, true);
  return t;
}

}  // namespace tpinfer
