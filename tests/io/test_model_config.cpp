// ModelConfig: HF config.json parsing for the bundled and tiny models, the manifest round trip,
// tp checks and every refusal of from_hf.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "io_test_util.h"
#include "model/model_config.h"

using namespace tpinfer;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using nlohmann::json;

namespace {

ModelConfig load_hf(const std::string& model) {
  const std::string dir = io_test::model_dir(model);
  return ModelConfig::from_hf(io_test::read_json(dir + "/config.json"),
                              io_test::read_json(dir + "/generation_config.json"),
                              dir + "/config.json");
}

json tiny_config(const std::string& model) {
  return io_test::read_json(io_test::model_dir(model) + "/config.json");
}

std::string refusal(const json& config) {
  try {
    ModelConfig::from_hf(config, nullptr, "x/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("from_hf reads the bundled stories260K config", "[model_config]") {
  const ModelConfig c = load_hf("stories260K");
  CHECK(c.arch == Arch::llama);
  CHECK(c.vocab_size == 512);
  CHECK(c.hidden_size == 64);
  CHECK(c.intermediate_size == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.head_dim == 8);
  CHECK(c.max_position_embeddings == 512);
  CHECK(c.rope_theta == 10000.0f);
  CHECK(c.rms_norm_eps == 1e-5f);
  CHECK(c.tie_word_embeddings);
  CHECK_FALSE(c.qk_norm);
  CHECK(c.sliding_window == 0);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int>{2});
}

TEST_CASE("from_hf reads transformers-5 configs of the tiny models", "[model_config]") {
  SECTION("qwen3: head_dim independent of hidden/heads, qk norm, tied, eos union") {
    const ModelConfig c = load_hf("tiny-qwen3");
    CHECK(c.arch == Arch::qwen3);
    CHECK(c.head_dim == 16);
    CHECK(c.hidden_size / c.n_heads == 8);
    CHECK(c.qk_norm);
    CHECK(c.tie_word_embeddings);
    CHECK(c.rope_theta == 1e6f);  // from rope_parameters.rope_theta
    CHECK(c.rms_norm_eps == 1e-6f);
    CHECK(c.sliding_window == 0);  // sliding_window null and use_sliding_window false
    CHECK(c.bos_token_id == -1);
    CHECK(c.eos_token_ids == std::vector<int>{5, 7});
  }
  SECTION("mistral: sliding window, untied") {
    const ModelConfig c = load_hf("tiny-mistral");
    CHECK(c.arch == Arch::mistral);
    CHECK(c.sliding_window == 8);
    CHECK_FALSE(c.tie_word_embeddings);
    CHECK_FALSE(c.qk_norm);
    CHECK(c.vocab_size == 259);
  }
  SECTION("llama: rope_theta 5e5, eps 1e-6, eos union of int and list") {
    const ModelConfig c = load_hf("tiny-llama");
    CHECK(c.arch == Arch::llama);
    CHECK(c.rope_theta == 500000.0f);
    CHECK(c.rms_norm_eps == 1e-6f);
    CHECK(c.n_layers == 3);
    CHECK(c.eos_token_ids == std::vector<int>{2, 3});
  }
  SECTION("qwen3-moe: experts (saved as num_local_experts), top-k, a dense layer") {
    const ModelConfig c = load_hf("tiny-qwen3-moe");
    CHECK(c.arch == Arch::qwen3_moe);
    CHECK(c.qk_norm);
    CHECK(c.n_experts == 8);
    CHECK(c.n_experts_per_tok == 3);
    CHECK(c.moe_intermediate_size == 32);
    CHECK(c.intermediate_size == 128);
    CHECK(c.norm_topk_prob);
    CHECK(c.is_moe_layer(0));
    CHECK_FALSE(c.is_moe_layer(1));  // mlp_only_layers [1]
    CHECK(c.is_moe_layer(2));
    CHECK(ModelConfig::from_manifest(c.to_manifest(), "m").to_manifest() == c.to_manifest());
  }
  SECTION("qwen3-moe: decoder_sparse_step 2 makes every other layer sparse") {
    json j = tiny_config("tiny-qwen3-moe");
    j["decoder_sparse_step"] = 2;
    j["mlp_only_layers"] = json::array();
    j.erase("num_local_experts");
    j["num_experts"] = 4;  // the Hub's key
    const ModelConfig c = ModelConfig::from_hf(j, nullptr, "x");
    CHECK(c.n_experts == 4);
    CHECK_FALSE(c.is_moe_layer(0));
    CHECK(c.is_moe_layer(1));
    CHECK_FALSE(c.is_moe_layer(2));
  }
  SECTION("mixtral: experts of intermediate_size, top-2 renormalised, sliding window") {
    const ModelConfig c = load_hf("tiny-mixtral");
    CHECK(c.arch == Arch::mixtral);
    CHECK_FALSE(c.qk_norm);
    CHECK(c.n_experts == 4);
    CHECK(c.n_experts_per_tok == 2);
    CHECK(c.moe_intermediate_size == c.intermediate_size);
    CHECK(c.norm_topk_prob);
    CHECK(c.sliding_window == 8);
    CHECK(c.is_moe_layer(0));
    CHECK(c.is_moe_layer(1));
  }
}

TEST_CASE("from_hf defaults and fallbacks", "[model_config]") {
  json j = tiny_config("tiny-llama");
  j.erase("architectures");
  j.erase("head_dim");
  j.erase("num_key_value_heads");
  j.erase("rope_parameters");
  j["rope_theta"] = 250000;
  j["eos_token_id"] = json::array({2, 9});
  const ModelConfig c = ModelConfig::from_hf(j, json{{"eos_token_id", 9}}, "x");
  CHECK(c.arch == Arch::llama);  // from model_type
  CHECK(c.head_dim == 8);        // hidden / heads
  CHECK(c.n_kv_heads == 8);      // = heads
  CHECK(c.rope_theta == 250000.0f);
  CHECK(c.eos_token_ids == std::vector<int>{2, 9});

  json q = tiny_config("tiny-qwen3");
  q["sliding_window"] = 4096;  // ignored while use_sliding_window is false
  CHECK(ModelConfig::from_hf(q, nullptr, "x").sliding_window == 0);
  json m = tiny_config("tiny-mistral");
  m["sliding_window"] = nullptr;  // Mistral v0.3 style: no window
  CHECK(ModelConfig::from_hf(m, nullptr, "x").sliding_window == 0);
  m["rope_scaling"] = nullptr;
  CHECK_NOTHROW(ModelConfig::from_hf(m, nullptr, "x"));
}

TEST_CASE("from_hf refuses what the engine does not implement", "[model_config][refusal]") {
  json j = tiny_config("tiny-llama");
  SECTION("unknown architecture") {
    j["architectures"] = json::array({"GemmaForCausalLM"});
    CHECK_THAT(refusal(j), Equals("x/config.json: unsupported architecture 'GemmaForCausalLM'; "
                                  "supported: LlamaForCausalLM, MistralForCausalLM, "
                                  "Qwen3ForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM, "
                                  "Qwen3MoeForCausalLM, MixtralForCausalLM"));
  }
  SECTION("unknown model_type without architectures") {
    j.erase("architectures");
    j["model_type"] = "gpt2";
    CHECK_THAT(refusal(j), Contains("unsupported model_type 'gpt2'"));
  }
  SECTION("rope_scaling (old style)") {
    j["rope_scaling"] = {{"rope_type", "proportional"}, {"factor", 8.0}};
    CHECK_THAT(refusal(j), Equals("x/config.json: rope_scaling type 'proportional' is not "
                                  "implemented; supported: default, linear, dynamic, llama3, "
                                  "yarn, longrope"));
  }
  SECTION("rope_parameters (transformers 5 style)") {
    j["rope_parameters"] = {{"rope_type", "mrope"}, {"rope_theta", 1e4}, {"factor", 4.0}};
    CHECK_THAT(refusal(j), Contains("rope_scaling type 'mrope' is not implemented"));
  }
  SECTION("old 'type' key, missing factor") {
    j["rope_scaling"] = {{"type", "linear"}};
    CHECK_THAT(refusal(j), Equals("x/config.json rope_scaling: missing key 'factor'"));
  }
  SECTION("longrope factors of the wrong length") {
    j["rope_scaling"] = {{"rope_type", "longrope"},
                         {"short_factor", {1.0, 1.0}},
                         {"long_factor", {1.0, 1.0}},
                         {"original_max_position_embeddings", 16}};
    CHECK_THAT(refusal(j), Contains("must have head_dim/2 = 4 entries, found 2"));
  }
  SECTION("partial rotary factor") {
    j["partial_rotary_factor"] = 0.5;
    CHECK_THAT(refusal(j), Contains("partial_rotary_factor 0.5 is not supported"));
  }
  SECTION("activation") {
    j["hidden_act"] = "gelu";
    CHECK_THAT(refusal(j), Contains("hidden_act \"gelu\" is not supported"));
  }
  SECTION("Qwen3 sliding-window layers") {
    j = tiny_config("tiny-qwen3");
    j["use_sliding_window"] = true;
    j["sliding_window"] = 16;
    CHECK_THAT(refusal(j), Contains("use_sliding_window=true is not supported for qwen3"));
  }
  SECTION("missing and mistyped keys") {
    j.erase("hidden_size");
    CHECK_THAT(refusal(j), Equals("x/config.json: missing key 'hidden_size'"));
    j["hidden_size"] = "64";
    CHECK_THAT(refusal(j), Contains("key 'hidden_size' must be an integer"));
  }
  SECTION("kv heads not dividing heads") {
    j["num_key_value_heads"] = 3;
    CHECK_THAT(refusal(j), Contains("num_key_value_heads=3 does not divide num_attention_heads=8"));
  }
}

TEST_CASE("check_tp names the valid tp sizes", "[model_config][refusal]") {
  const ModelConfig c = load_hf("stories260K");  // 8 heads, 4 kv heads, intermediate 172
  CHECK(c.valid_tp_sizes() == std::vector<int>{1, 2, 4});
  CHECK_NOTHROW(c.check_tp(1));
  CHECK_NOTHROW(c.check_tp(4));
  CHECK_THROWS_WITH(c.check_tp(3),
                    Equals("tp=3 does not divide num_attention_heads=8; valid tp: 1, 2, 4"));
  CHECK_THROWS_WITH(c.check_tp(8),
                    Equals("tp=8 does not divide num_key_value_heads=4; valid tp: 1, 2, 4"));
  CHECK_THROWS_WITH(c.check_tp(0), Contains("tp must be >= 1"));

  ModelConfig wide = c;
  wide.n_heads = 32;
  wide.n_kv_heads = 8;
  wide.intermediate_size = 11008;
  CHECK_THROWS_WITH(wide.check_tp(3),
                    Equals("tp=3 does not divide num_attention_heads=32; valid tp: 1, 2, 4, 8"));
  wide.n_heads = 24;
  CHECK_THROWS_WITH(wide.check_tp(3),
                    Equals("tp=3 does not divide num_key_value_heads=8; valid tp: 1, 2, 4, 8"));
  wide.n_kv_heads = 6;
  wide.intermediate_size = 100;
  CHECK_THROWS_WITH(wide.check_tp(3),
                    Equals("tp=3 does not divide intermediate_size=100; valid tp: 1, 2"));
}

TEST_CASE("manifest config round trip", "[model_config]") {
  for (const char* model : {"stories260K", "tiny-qwen3", "tiny-mistral", "tiny-llama"}) {
    CAPTURE(model);
    const ModelConfig a = load_hf(model);
    const ModelConfig b = ModelConfig::from_manifest(a.to_manifest(), "m");
    CHECK(b.to_manifest() == a.to_manifest());
    CHECK(b.arch == a.arch);
    CHECK(b.head_dim == a.head_dim);
    CHECK(b.rope_theta == a.rope_theta);
    CHECK(b.rms_norm_eps == a.rms_norm_eps);
    CHECK(b.eos_token_ids == a.eos_token_ids);
  }
  json j = load_hf("tiny-qwen3").to_manifest();
  j.erase("head_dim");
  CHECK_THROWS_WITH(ModelConfig::from_manifest(j, "d/manifest.json"),
                    Equals("d/manifest.json: config: missing key 'head_dim'"));
  j = load_hf("tiny-qwen3").to_manifest();
  j["arch"] = "gpt2";
  CHECK_THROWS_WITH(ModelConfig::from_manifest(j, "d/manifest.json"),
                    Contains("unknown arch 'gpt2'"));
}

TEST_CASE("huge sizes in a manifest or config.json are refused, not overflowed",
          "[model_config][refusal]") {
  // Before: vocab_size 2147483647 passed, and vocab_per_rank(tp) overflowed (UBSan: signed
  // overflow at model_config.h) on the way to a nonsense memory plan.
  json j = load_hf("stories260K").to_manifest();
  j["vocab_size"] = 2147483647;
  CHECK_THROWS_WITH(ModelConfig::from_manifest(j, "d/manifest.json"),
                    Equals("d/manifest.json: config: key 'vocab_size' must be a positive integer "
                           "up to 16777216, found 2147483647"));
  json hf = tiny_config("tiny-llama");
  hf["max_position_embeddings"] = int64_t{1} << 40;
  CHECK_THAT(refusal(hf), Contains("key 'max_position_embeddings' must be a positive integer up "
                                   "to 16777216, found 1099511627776"));
  const ModelConfig ok = ModelConfig::from_manifest(load_hf("stories260K").to_manifest(), "m");
  CHECK(ok.vocab_per_rank(4) == 128);
}

TEST_CASE("n_params counts the HF tensors", "[model_config]") {
  for (const char* model : {"stories260K", "tiny-qwen3", "tiny-mistral", "tiny-llama",
                            "tiny-qwen3-moe", "tiny-mixtral"}) {
    CAPTURE(model);
    int64_t n = 0, expert = 0;
    for (const auto& [name, t] : io_test::read_safetensors_dir(io_test::model_dir(model))) {
      int64_t numel = 1;
      for (int64_t s : t.shape) numel *= s;
      n += numel;
      if (name.find(".experts.") != std::string::npos) expert += numel;
    }
    const ModelConfig cfg = load_hf(model);
    CHECK(cfg.n_params() == n);
    // Active: k of the E experts of each sparse layer.
    const int64_t inactive =
        cfg.is_moe() ? expert / cfg.n_experts * (cfg.n_experts - cfg.n_experts_per_tok) : 0;
    CHECK(cfg.n_active_params() == n - inactive);
  }
  // The published figures: Qwen3-30B-A3B 30.5B total / 3.3B active, Mixtral 8x7B 46.7B / 12.9B.
  auto shape = [](const std::string& name) {
    const std::string dir = io_test::repo_root() + "/configs/models/" + name;
    return ModelConfig::from_hf(io_test::read_json(dir + "/config.json"), nullptr, dir);
  };
  const ModelConfig q = shape("qwen3-30b-a3b");
  CHECK(q.n_params() / 100000000 == 305);
  CHECK(q.n_active_params() / 100000000 == 33);
  const ModelConfig m = shape("mixtral-8x7b");
  CHECK(m.n_params() / 100000000 == 467);
  CHECK((m.n_active_params() + 50000000) / 100000000 == 129);  // 12.88B
}
