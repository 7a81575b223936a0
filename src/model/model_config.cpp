// ModelConfig: parsing Hugging Face config.json and the tpinfer manifest's "config" object, and
// the refusals for what the engine does not implement. scripts/hf_config.py's parse_hf_config()
// is the Python twin and prints the same messages.
#include "model/model_config.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace tpinfer {

using nlohmann::json;

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::llama:
      return "llama";
    case Arch::mistral:
      return "mistral";
    case Arch::qwen3:
      return "qwen3";
    case Arch::qwen2:
      return "qwen2";
    case Arch::phi3:
      return "phi3";
    case Arch::qwen3_moe:
      return "qwen3_moe";
    case Arch::mixtral:
      return "mixtral";
  }
  return "?";
}

const char* rope_kind_name(RopeKind k) {
  switch (k) {
    case RopeKind::none:
      return "default";
    case RopeKind::linear:
      return "linear";
    case RopeKind::dynamic:
      return "dynamic";
    case RopeKind::llama3:
      return "llama3";
    case RopeKind::yarn:
      return "yarn";
    case RopeKind::longrope:
      return "longrope";
  }
  return "?";
}

namespace {

constexpr const char* kSupportedArchitectures =
    "LlamaForCausalLM, MistralForCausalLM, Qwen3ForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM, "
    "Qwen3MoeForCausalLM, MixtralForCausalLM";
constexpr const char* kSupportedRope = "default, linear, dynamic, llama3, yarn, longrope";

struct ArchName {
  const char* hf;     // architectures[0]
  const char* model;  // model_type == the manifest's arch
  Arch arch;
};
constexpr ArchName kArchs[] = {{"LlamaForCausalLM", "llama", Arch::llama},
                               {"MistralForCausalLM", "mistral", Arch::mistral},
                               {"Qwen3ForCausalLM", "qwen3", Arch::qwen3},
                               {"Qwen2ForCausalLM", "qwen2", Arch::qwen2},
                               {"Phi3ForCausalLM", "phi3", Arch::phi3},
                               {"Qwen3MoeForCausalLM", "qwen3_moe", Arch::qwen3_moe},
                               {"MixtralForCausalLM", "mixtral", Arch::mixtral}};

bool present(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && !j.at(key).is_null();
}

std::string type_of(const json& v) {
  return v.dump().size() > 40 ? std::string(v.type_name()) : v.dump();
}

int64_t get_int(const json& j, const char* key, const std::string& source) {
  TPI_CHECK(present(j, key), source << ": missing key '" << key << "'");
  const json& v = j.at(key);
  TPI_CHECK(v.is_number_integer(),
            source << ": key '" << key << "' must be an integer, found " << type_of(v));
  return v.get<int64_t>();
}

int get_positive(const json& j, const char* key, const std::string& source) {
  const int64_t v = get_int(j, key, source);
  // Every size of a real model is far below 2^24; the cap keeps products of two sizes (and
  // vocab_size + tp - 1) from overflowing an int.
  constexpr int64_t kMax = int64_t{1} << 24;
  TPI_CHECK(v > 0 && v <= kMax, source << ": key '" << key << "' must be a positive integer up to "
                                       << kMax << ", found " << v);
  return static_cast<int>(v);
}

double get_number(const json& j, const char* key, const std::string& source) {
  TPI_CHECK(present(j, key), source << ": missing key '" << key << "'");
  const json& v = j.at(key);
  TPI_CHECK(v.is_number(),
            source << ": key '" << key << "' must be a number, found " << type_of(v));
  return v.get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& source) {
  TPI_CHECK(j.is_object() && j.contains(key), source << ": missing key '" << key << "'");
  const json& v = j.at(key);
  TPI_CHECK(v.is_boolean(),
            source << ": key '" << key << "' must be true or false, found " << type_of(v));
  return v.get<bool>();
}

// eos_token_id is an int, a list of ints, or null.
void add_token_ids(const json& j, const char* key, const std::string& source,
                   std::vector<int>& out) {
  if (!present(j, key)) return;
  const json& v = j.at(key);
  auto add = [&](const json& e) {
    TPI_CHECK(e.is_number_integer(), source << ": key '" << key
                                            << "' must be an integer or a list of integers, found "
                                            << type_of(v));
    const int id = e.get<int>();
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  };
  if (v.is_array()) {
    for (const json& e : v) add(e);
  } else {
    add(v);
  }
}

// A number, or 0 when the key is absent or null (transformers then derives the value).
double number_or_unset(const json& r, const char* key, const std::string& source) {
  return present(r, key) ? get_number(r, key, source) : 0.0;
}

std::vector<double> factor_list(const json& r, const char* key, const std::string& source) {
  TPI_CHECK(present(r, key) && r.at(key).is_array(),
            source << ": key '" << key << "' must be a list of numbers");
  std::vector<double> v;
  for (const json& e : r.at(key)) {
    TPI_CHECK(e.is_number(),
              source << ": key '" << key << "' must be a list of numbers, found " << type_of(e));
    v.push_back(e.get<double>());
  }
  return v;
}

// rope_scaling / rope_parameters of a Hugging Face config (transformers 5 writes rope_parameters
// {rope_type, rope_theta, ...}; older configs rope_scaling {type | rope_type, ...} or null), read
// as transformers' standardize_rope_params() does. Unknown kinds are refused with the list.
RopeScaling parse_rope(const json& config, int max_position_embeddings, int head_dim,
                       const std::string& source) {
  RopeScaling rs;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!present(config, key)) continue;
    const json& r = config.at(key);
    const std::string src = source + " " + key;
    TPI_CHECK(r.is_object(),
              source << ": key '" << key << "' must be an object or null, found " << type_of(r));
    std::string kind = "default";
    if (present(r, "rope_type")) {
      kind = r.at("rope_type").is_string() ? r.at("rope_type").get<std::string>()
                                           : r.at("rope_type").dump();
    } else if (present(r, "type")) {
      kind = r.at("type").is_string() ? r.at("type").get<std::string>() : r.at("type").dump();
    } else if (std::string(key) == "rope_scaling") {
      kind = "unnamed";
    }
    if (present(r, "partial_rotary_factor")) {
      TPI_CHECK(get_number(r, "partial_rotary_factor", src) == 1.0,
                src << ": partial_rotary_factor " << r.at("partial_rotary_factor").dump()
                    << " is not supported (RoPE over the whole head only)");
    }
    if (kind == "default") continue;
    RopeKind k = RopeKind::none;
    for (RopeKind c : {RopeKind::linear, RopeKind::dynamic, RopeKind::llama3, RopeKind::yarn,
                       RopeKind::longrope}) {
      if (kind == rope_kind_name(c)) k = c;
    }
    TPI_CHECK(k != RopeKind::none, source << ": rope_scaling type '" << kind
                                          << "' is not implemented; supported: " << kSupportedRope);
    rs.kind = k;
    if (k == RopeKind::linear || k == RopeKind::dynamic || k == RopeKind::llama3) {
      rs.factor = get_number(r, "factor", src);
    } else {
      rs.factor = number_or_unset(r, "factor", src);
    }
    TPI_CHECK(
        rs.factor > 0.0 || (rs.factor == 0.0 && (k == RopeKind::yarn || k == RopeKind::longrope)),
        src << ": key 'factor' must be positive, found " << rs.factor);
    if (k == RopeKind::llama3 || k == RopeKind::yarn || k == RopeKind::longrope) {
      // transformers: a top-level original_max_position_embeddings (Phi3) wins, then the rope
      // object's, then max_position_embeddings.
      if (present(config, "original_max_position_embeddings")) {
        rs.original_max_position_embeddings =
            get_positive(config, "original_max_position_embeddings", source);
      } else if (present(r, "original_max_position_embeddings")) {
        rs.original_max_position_embeddings =
            get_positive(r, "original_max_position_embeddings", src);
      } else {
        rs.original_max_position_embeddings = max_position_embeddings;
      }
    }
    if (k == RopeKind::llama3) {
      rs.low_freq_factor = get_number(r, "low_freq_factor", src);
      rs.high_freq_factor = get_number(r, "high_freq_factor", src);
      TPI_CHECK(rs.high_freq_factor != rs.low_freq_factor,
                src << ": high_freq_factor must differ from low_freq_factor");
    }
    if (k == RopeKind::yarn || k == RopeKind::longrope) {
      rs.attention_factor = number_or_unset(r, "attention_factor", src);
    }
    if (k == RopeKind::yarn) {
      rs.beta_fast = number_or_unset(r, "beta_fast", src);
      rs.beta_slow = number_or_unset(r, "beta_slow", src);
      rs.mscale = number_or_unset(r, "mscale", src);
      rs.mscale_all_dim = number_or_unset(r, "mscale_all_dim", src);
      if (present(r, "truncate")) rs.truncate = get_bool(r, "truncate", src);
    }
    if (k == RopeKind::longrope) {
      rs.short_factor = factor_list(r, "short_factor", src);
      rs.long_factor = factor_list(r, "long_factor", src);
      for (const auto* f : {&rs.short_factor, &rs.long_factor}) {
        TPI_CHECK(static_cast<int>(f->size()) == head_dim / 2,
                  src << ": short_factor and long_factor must have head_dim/2 = " << head_dim / 2
                      << " entries, found " << f->size());
      }
    }
  }
  return rs;
}

json rope_to_json(const RopeScaling& rs) {
  if (rs.kind == RopeKind::none) return nullptr;
  auto unset_null = [](double v) -> json { return v == 0.0 ? json(nullptr) : json(v); };
  json j;
  j["rope_type"] = rope_kind_name(rs.kind);
  j["factor"] = unset_null(rs.factor);
  if (rs.kind == RopeKind::llama3 || rs.kind == RopeKind::yarn || rs.kind == RopeKind::longrope) {
    j["original_max_position_embeddings"] = rs.original_max_position_embeddings;
  }
  if (rs.kind == RopeKind::llama3) {
    j["low_freq_factor"] = rs.low_freq_factor;
    j["high_freq_factor"] = rs.high_freq_factor;
  }
  if (rs.kind == RopeKind::yarn || rs.kind == RopeKind::longrope) {
    j["attention_factor"] = unset_null(rs.attention_factor);
  }
  if (rs.kind == RopeKind::yarn) {
    j["beta_fast"] = unset_null(rs.beta_fast);
    j["beta_slow"] = unset_null(rs.beta_slow);
    j["mscale"] = unset_null(rs.mscale);
    j["mscale_all_dim"] = unset_null(rs.mscale_all_dim);
    j["truncate"] = rs.truncate;
  }
  if (rs.kind == RopeKind::longrope) {
    j["short_factor"] = rs.short_factor;
    j["long_factor"] = rs.long_factor;
  }
  return j;
}

// The mixture-of-experts keys of a Qwen3-MoE or Mixtral config.json, as transformers reads them.
void parse_moe(const json& config, const std::string& source, ModelConfig& c) {
  if (c.arch == Arch::mixtral) {
    c.n_experts = present(config, "num_local_experts")
                      ? get_positive(config, "num_local_experts", source)
                      : 8;  // MixtralConfig's defaults
    c.n_experts_per_tok = present(config, "num_experts_per_tok")
                              ? get_positive(config, "num_experts_per_tok", source)
                              : 2;
    c.moe_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = true;
  } else {
    // Hub configs say num_experts; transformers 5 saves it as num_local_experts.
    c.n_experts = get_positive(
        config, present(config, "num_experts") ? "num_experts" : "num_local_experts", source);
    c.n_experts_per_tok = get_positive(config, "num_experts_per_tok", source);
    c.moe_intermediate_size = get_positive(config, "moe_intermediate_size", source);
    c.norm_topk_prob = present(config, "norm_topk_prob")
                           ? get_bool(config, "norm_topk_prob", source)
                           : false;  // Qwen3MoeConfig's default
    c.decoder_sparse_step = present(config, "decoder_sparse_step")
                                ? get_positive(config, "decoder_sparse_step", source)
                                : 1;
    if (present(config, "mlp_only_layers")) {
      const json& m = config.at("mlp_only_layers");
      TPI_CHECK(m.is_array(), source << ": key 'mlp_only_layers' must be a list of layer indices, "
                                     << "found " << type_of(m));
      for (const json& e : m) {
        TPI_CHECK(e.is_number_integer(), source << ": key 'mlp_only_layers' must be a list of "
                                                << "layer indices, found " << type_of(e));
        c.mlp_only_layers.push_back(e.get<int>());
      }
    }
  }
  TPI_CHECK(c.n_experts_per_tok <= c.n_experts,
            source << ": num_experts_per_tok=" << c.n_experts_per_tok << " exceeds the "
                   << c.n_experts << " experts");
}

std::string join(const std::vector<int>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  return os.str();
}

}  // namespace

ModelConfig ModelConfig::from_hf(const json& config, const json& generation_config,
                                 const std::string& source) {
  TPI_CHECK(config.is_object(), source << ": expected a JSON object");
  ModelConfig c;

  std::string name;
  const bool by_architectures = present(config, "architectures") &&
                                config.at("architectures").is_array() &&
                                !config.at("architectures").empty();
  if (by_architectures) {
    const json& a = config.at("architectures")[0];
    name = a.is_string() ? a.get<std::string>() : a.dump();
  } else {
    TPI_CHECK(present(config, "model_type"),
              source << ": neither 'architectures' nor 'model_type' is set; supported: "
                     << kSupportedArchitectures);
    const json& mt = config.at("model_type");
    name = mt.is_string() ? mt.get<std::string>() : mt.dump();
  }
  bool known = false;
  for (const ArchName& a : kArchs) {
    if (name == (by_architectures ? a.hf : a.model)) {
      c.arch = a.arch;
      known = true;
    }
  }
  TPI_CHECK(known, source << ": unsupported " << (by_architectures ? "architecture" : "model_type")
                          << " '" << name << "'; supported: " << kSupportedArchitectures);

  // Biases as transformers builds the layers: Qwen2 always has q/k/v biases; Llama and Qwen3
  // follow attention_bias (q/k/v/o) and Llama mlp_bias (gate/up/down); Mistral and Phi3 have none.
  auto flag = [&](const char* key) {
    return present(config, key) && config.at(key).is_boolean() && config.at(key).get<bool>();
  };
  const bool qwen3_like = c.arch == Arch::qwen3 || c.arch == Arch::qwen3_moe;
  c.qkv_bias =
      c.arch == Arch::qwen2 || ((c.arch == Arch::llama || qwen3_like) && flag("attention_bias"));
  c.o_bias = (c.arch == Arch::llama || qwen3_like) && flag("attention_bias");
  c.mlp_bias = c.arch == Arch::llama && flag("mlp_bias");
  if (present(config, "hidden_act")) {
    const json& act = config.at("hidden_act");
    TPI_CHECK(act.is_string() && act.get<std::string>() == "silu",
              source << ": hidden_act " << act.dump() << " is not supported (only \"silu\")");
  }

  c.vocab_size = get_positive(config, "vocab_size", source);
  c.hidden_size = get_positive(config, "hidden_size", source);
  c.intermediate_size = get_positive(config, "intermediate_size", source);
  c.n_layers = get_positive(config, "num_hidden_layers", source);
  c.n_heads = get_positive(config, "num_attention_heads", source);
  c.n_kv_heads = present(config, "num_key_value_heads")
                     ? get_positive(config, "num_key_value_heads", source)
                     : c.n_heads;
  if (present(config, "head_dim")) {
    c.head_dim = get_positive(config, "head_dim", source);
  } else {
    TPI_CHECK(c.hidden_size % c.n_heads == 0,
              source << ": head_dim is absent and num_attention_heads=" << c.n_heads
                     << " does not divide hidden_size=" << c.hidden_size);
    c.head_dim = c.hidden_size / c.n_heads;
  }
  TPI_CHECK(c.n_heads % c.n_kv_heads == 0,
            source << ": num_key_value_heads=" << c.n_kv_heads
                   << " does not divide num_attention_heads=" << c.n_heads);
  c.max_position_embeddings = get_positive(config, "max_position_embeddings", source);

  if (present(config, "rope_theta")) {
    c.rope_theta = static_cast<float>(get_number(config, "rope_theta", source));
  } else if (present(config, "rope_parameters") &&
             present(config.at("rope_parameters"), "rope_theta")) {
    c.rope_theta = static_cast<float>(
        get_number(config.at("rope_parameters"), "rope_theta", source + " rope_parameters"));
  }
  if (present(config, "rms_norm_eps")) {
    c.rms_norm_eps = static_cast<float>(get_number(config, "rms_norm_eps", source));
  }
  if (present(config, "tie_word_embeddings")) {
    c.tie_word_embeddings = get_bool(config, "tie_word_embeddings", source);
  }

  c.qk_norm = qwen3_like;
  if ((c.arch == Arch::mistral || c.arch == Arch::phi3 || c.arch == Arch::mixtral) &&
      present(config, "sliding_window")) {
    c.sliding_window = get_positive(config, "sliding_window", source);
  }
  if ((qwen3_like || c.arch == Arch::qwen2) && flag("use_sliding_window")) {
    TPI_FAIL(source << ": use_sliding_window=true is not supported for " << arch_name(c.arch)
                    << " (sliding-window layers are not implemented)");
  }
  if (present(config, "partial_rotary_factor")) {
    TPI_CHECK(get_number(config, "partial_rotary_factor", source) == 1.0,
              source << ": partial_rotary_factor " << config.at("partial_rotary_factor").dump()
                     << " is not supported (RoPE over the whole head only)");
  }
  c.rope_scaling = parse_rope(config, c.max_position_embeddings, c.head_dim, source);
  if (c.arch == Arch::qwen3_moe || c.arch == Arch::mixtral) parse_moe(config, source, c);

  const std::string gen_source = "generation_config.json";
  if (present(config, "bos_token_id") && config.at("bos_token_id").is_number_integer()) {
    c.bos_token_id = config.at("bos_token_id").get<int>();
  } else if (present(generation_config, "bos_token_id") &&
             generation_config.at("bos_token_id").is_number_integer()) {
    c.bos_token_id = generation_config.at("bos_token_id").get<int>();
  }
  add_token_ids(config, "eos_token_id", source, c.eos_token_ids);
  add_token_ids(generation_config, "eos_token_id", gen_source, c.eos_token_ids);
  return c;
}

json ModelConfig::to_manifest() const {
  json j;
  j["arch"] = arch_name(arch);
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["n_layers"] = n_layers;
  j["n_heads"] = n_heads;
  j["n_kv_heads"] = n_kv_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rope_theta"] = rope_theta;
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["qk_norm"] = qk_norm;
  j["qkv_bias"] = qkv_bias;
  j["o_bias"] = o_bias;
  j["mlp_bias"] = mlp_bias;
  j["rope_scaling"] = rope_to_json(rope_scaling);
  j["sliding_window"] = sliding_window;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_ids"] = eos_token_ids;
  if (is_moe()) {
    j["n_experts"] = n_experts;
    j["n_experts_per_tok"] = n_experts_per_tok;
    j["moe_intermediate_size"] = moe_intermediate_size;
    j["norm_topk_prob"] = norm_topk_prob;
    j["decoder_sparse_step"] = decoder_sparse_step;
    j["mlp_only_layers"] = mlp_only_layers;
  }
  return j;
}

ModelConfig ModelConfig::from_manifest(const json& j, const std::string& source) {
  TPI_CHECK(j.is_object(), source << ": 'config' must be an object");
  ModelConfig c;
  const std::string src = source + ": config";
  TPI_CHECK(present(j, "arch") && j.at("arch").is_string(),
            src << ": missing key 'arch' (a string)");
  const std::string a = j.at("arch").get<std::string>();
  bool known = false;
  for (const ArchName& n : kArchs) {
    if (a == n.model) {
      c.arch = n.arch;
      known = true;
    }
  }
  TPI_CHECK(known, src << ": unknown arch '" << a
                       << "' (expected llama, mistral, qwen3, qwen2, phi3, qwen3_moe or mixtral)");
  c.vocab_size = get_positive(j, "vocab_size", src);
  c.hidden_size = get_positive(j, "hidden_size", src);
  c.intermediate_size = get_positive(j, "intermediate_size", src);
  c.n_layers = get_positive(j, "n_layers", src);
  c.n_heads = get_positive(j, "n_heads", src);
  c.n_kv_heads = get_positive(j, "n_kv_heads", src);
  c.head_dim = get_positive(j, "head_dim", src);
  c.max_position_embeddings = get_positive(j, "max_position_embeddings", src);
  c.rope_theta = static_cast<float>(get_number(j, "rope_theta", src));
  c.rms_norm_eps = static_cast<float>(get_number(j, "rms_norm_eps", src));
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", src);
  c.qk_norm = get_bool(j, "qk_norm", src);
  // Manifests written before biases and RoPE scaling existed have neither.
  for (auto [key, field] : {std::pair<const char*, bool*>{"qkv_bias", &c.qkv_bias},
                            {"o_bias", &c.o_bias},
                            {"mlp_bias", &c.mlp_bias}}) {
    if (j.contains(key)) *field = get_bool(j, key, src);
  }
  if (present(j, "rope_scaling")) {
    json wrapped = {{"rope_scaling", j.at("rope_scaling")}};
    c.rope_scaling = parse_rope(wrapped, c.max_position_embeddings, c.head_dim, src);
  }
  const int64_t window = get_int(j, "sliding_window", src);
  TPI_CHECK(window >= 0, src << ": key 'sliding_window' must be >= 0, found " << window);
  c.sliding_window = static_cast<int>(window);
  c.bos_token_id = static_cast<int>(get_int(j, "bos_token_id", src));
  TPI_CHECK(j.contains("eos_token_ids") && j.at("eos_token_ids").is_array(),
            src << ": missing key 'eos_token_ids' (a list of integers)");
  add_token_ids(j, "eos_token_ids", src, c.eos_token_ids);
  TPI_CHECK(c.n_heads % c.n_kv_heads == 0,
            src << ": n_kv_heads=" << c.n_kv_heads << " does not divide n_heads=" << c.n_heads);
  if (c.arch == Arch::qwen3_moe || c.arch == Arch::mixtral) {
    c.n_experts = get_positive(j, "n_experts", src);
    c.n_experts_per_tok = get_positive(j, "n_experts_per_tok", src);
    c.moe_intermediate_size = get_positive(j, "moe_intermediate_size", src);
    c.norm_topk_prob = get_bool(j, "norm_topk_prob", src);
    c.decoder_sparse_step = get_positive(j, "decoder_sparse_step", src);
    TPI_CHECK(j.contains("mlp_only_layers") && j.at("mlp_only_layers").is_array(),
              src << ": missing key 'mlp_only_layers' (a list of integers)");
    for (const json& e : j.at("mlp_only_layers")) {
      TPI_CHECK(e.is_number_integer(),
                src << ": key 'mlp_only_layers' must be a list of integers, found " << type_of(e));
      c.mlp_only_layers.push_back(e.get<int>());
    }
    TPI_CHECK(c.n_experts_per_tok <= c.n_experts,
              src << ": n_experts_per_tok=" << c.n_experts_per_tok
                  << " exceeds n_experts=" << c.n_experts);
  }
  return c;
}

std::vector<int> ModelConfig::valid_tp_sizes(int max_tp) const {
  std::vector<int> v;
  for (int tp = 1; tp <= max_tp; ++tp) {
    if (n_heads % tp == 0 && n_kv_heads % tp == 0 && intermediate_size % tp == 0 &&
        (!is_moe() || moe_intermediate_size % tp == 0)) {
      v.push_back(tp);
    }
  }
  return v;
}

void ModelConfig::check_tp(int tp) const {
  TPI_CHECK(tp >= 1, "tp must be >= 1, got " << tp);
  const std::pair<const char*, int> dims[] = {{"num_attention_heads", n_heads},
                                              {"num_key_value_heads", n_kv_heads},
                                              {"intermediate_size", intermediate_size}};
  for (const auto& [key, value] : dims) {
    TPI_CHECK(value % tp == 0, "tp=" << tp << " does not divide " << key << "=" << value
                                     << "; valid tp: " << join(valid_tp_sizes()));
  }
  if (is_moe()) {
    TPI_CHECK(moe_intermediate_size % tp == 0,
              "tp=" << tp << " does not divide the experts' width moe_intermediate_size="
                    << moe_intermediate_size << "; valid tp: " << join(valid_tp_sizes()));
  }
}

bool ModelConfig::is_moe_layer(int layer) const {
  if (!is_moe()) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) {
    return false;
  }
  return (layer + 1) % decoder_sparse_step == 0;
}

int64_t ModelConfig::n_params() const {
  const int64_t h = hidden_size;
  const int64_t q_dim = static_cast<int64_t>(n_heads) * head_dim;
  const int64_t kv_dim = static_cast<int64_t>(n_kv_heads) * head_dim;
  const int64_t attn = 2 * h                                     // norms
                       + q_dim * h + 2 * kv_dim * h + h * q_dim  // q, k, v, o
                       + (qk_norm ? 2 * static_cast<int64_t>(head_dim) : 0) +
                       (qkv_bias ? q_dim + 2 * kv_dim : 0) + (o_bias ? h : 0);
  const int64_t dense_mlp = 3 * static_cast<int64_t>(intermediate_size) * h +
                            (mlp_bias ? 2 * static_cast<int64_t>(intermediate_size) + h : 0);
  const int64_t expert = 3 * static_cast<int64_t>(moe_intermediate_size) * h;
  int64_t layers = 0;
  for (int l = 0; l < n_layers; ++l) {
    layers += attn + (is_moe_layer(l) ? static_cast<int64_t>(n_experts) * (h + expert) : dense_mlp);
  }
  const int64_t embed = static_cast<int64_t>(vocab_size) * h;
  return embed + layers + h + (tie_word_embeddings ? 0 : embed);
}

int64_t ModelConfig::n_active_params() const {
  int64_t inactive = 0;
  for (int l = 0; l < n_layers; ++l) {
    if (is_moe_layer(l)) {
      inactive += static_cast<int64_t>(n_experts - n_experts_per_tok) * 3 * moe_intermediate_size *
                  hidden_size;
    }
  }
  return n_params() - inactive;
}

}  // namespace tpinfer
