// RoPE frequencies (src/model/rope.cpp) against transformers' own: for every scaling kind
// (default, linear, dynamic, llama3, yarn with and without mscale, longrope short and long) on
// real shapes, inv_freq and the attention factor from tests/data/goldens/rope_frequencies.json
// (scripts/gen_rope_goldens.py), parsed from the same config.json objects as a checkpoint's.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/model_config.h"
#include "model/rope.h"

using namespace tpinfer;
using nlohmann::json;

TEST_CASE("RoPE frequencies equal transformers' for every scaling kind", "[rope]") {
  std::ifstream in(TPINFER_TEST_DATA "/goldens/rope_frequencies.json");
  REQUIRE(in.good());
  const json g = json::parse(in);
  REQUIRE(g.at("cases").size() >= 10);
  for (const json& c : g.at("cases")) {
    const std::string name = c.at("name");
    INFO(name);
    const ModelConfig cfg = ModelConfig::from_hf(c.at("config"), nullptr, name);
    // The manifest round trip keeps the scaling (the engine reads the manifest, not config.json).
    CHECK(ModelConfig::from_manifest(cfg.to_manifest(), name).rope_scaling == cfg.rope_scaling);
    const RopeFrequencies f = rope_frequencies(cfg, c.at("seq_len").get<int64_t>());
    const std::vector<double> want = c.at("inv_freq");
    REQUIRE(f.inv_freq.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::abs(f.inv_freq[i] - want[i]) / std::abs(want[i]));
    }
    INFO("worst relative inv_freq error " << worst);
    CHECK(worst <= 1e-6);
    CHECK(f.attention_factor == Approx(c.at("attention_factor").get<double>()).epsilon(1e-6));
  }
}

TEST_CASE("length-dependent kinds switch where transformers does", "[rope]") {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"vocab_size", 100},
            {"hidden_size", 64},
            {"intermediate_size", 64},
            {"num_hidden_layers", 1},
            {"num_attention_heads", 4},
            {"max_position_embeddings", 32},
            {"rope_theta", 10000.0}};
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  const ModelConfig dyn = ModelConfig::from_hf(j, nullptr, "dynamic");
  CHECK(rope_depends_on_length(dyn));
  CHECK(rope_length_key(dyn, 10) == 32);  // below max_position_embeddings: plain RoPE
  CHECK(rope_frequencies(dyn, 10).inv_freq == rope_frequencies(dyn, 32).inv_freq);
  CHECK(rope_frequencies(dyn, 33).inv_freq[1] < rope_frequencies(dyn, 32).inv_freq[1]);
  j["rope_scaling"] = {{"rope_type", "longrope"},
                       {"short_factor", std::vector<double>(8, 1.0)},
                       {"long_factor", std::vector<double>(8, 4.0)},
                       {"original_max_position_embeddings", 16}};
  const ModelConfig lr = ModelConfig::from_hf(j, nullptr, "longrope");
  CHECK(rope_length_key(lr, 16) == 0);
  CHECK(rope_length_key(lr, 17) == 1);
  CHECK(rope_frequencies(lr, 17).inv_freq[3] == Approx(rope_frequencies(lr, 16).inv_freq[3] / 4));
  // factor derived from max_position_embeddings / original = 2: sqrt(1 + ln 2 / ln 16).
  CHECK(rope_frequencies(lr, 1).attention_factor ==
        Approx(std::sqrt(1.0 + std::log(2.0) / std::log(16.0))));
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  CHECK_FALSE(rope_depends_on_length(ModelConfig::from_hf(j, nullptr, "linear")));
}
