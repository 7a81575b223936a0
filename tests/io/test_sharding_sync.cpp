// The converter and the engine must follow the same sharding table: scripts/convert_hf.py
// --print-sharding dumps its parsed config and table, compared here to ModelConfig::from_hf and
// sharding_table() tensor by tensor. Also the table's own rules.
#include <catch2/catch.hpp>

#include "io_test_util.h"
#include "model/sharding.h"

using namespace tpinfer;
using nlohmann::json;

namespace {

ModelConfig load_hf(const std::string& dir) {
  return ModelConfig::from_hf(io_test::read_json(dir + "/config.json"),
                              io_test::read_json(dir + "/generation_config.json"),
                              dir + "/config.json");
}

void check_in_step(const std::string& dir, int tp) {
  CAPTURE(dir, tp);
  const io_test::RunResult r =
      io_test::run(io_test::python() + " '" + io_test::convert_script() +
                   "' --print-sharding --model '" + dir + "' --tp " + std::to_string(tp));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const json py = json::parse(r.out);
  const ModelConfig cfg = load_hf(dir);

  // Same config: the Python dict is a valid manifest config equal to the C++ one.
  const ModelConfig from_py = ModelConfig::from_manifest(py.at("config"), "converter");
  CHECK(from_py.to_manifest() == cfg.to_manifest());
  const json cpp_config = cfg.to_manifest();
  for (const auto& [key, value] : cpp_config.items()) {
    CAPTURE(key);
    REQUIRE(py.at("config").contains(key));
    if (value.is_number_float()) {
      CHECK(static_cast<float>(py.at("config").at(key).get<double>()) == value.get<float>());
    } else {
      CHECK(py.at("config").at(key) == value);
    }
  }
  CHECK(py.at("config").size() == cpp_config.size());

  const std::vector<TensorSpec> table = sharding_table(cfg);
  const json& tensors = py.at("tensors");
  REQUIRE(tensors.size() == table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const TensorSpec& s = table[i];
    const json& t = tensors[i];
    CAPTURE(i, s.name);
    CHECK(t.at("name").get<std::string>() == s.name);
    CHECK(t.at("global_shape").get<std::vector<int64_t>>() == s.global_shape);
    CHECK(t.at("split_dim").get<int>() == static_cast<int>(s.split));
    CHECK(t.at("vocab_padded").get<bool>() == s.vocab_padded);
    CHECK(t.at("local_shape").get<std::vector<int64_t>>() == s.local_shape(tp));
    // Fused projections: the same parts, in the same order, with the same rows.
    const json& parts = t.at("parts");
    REQUIRE(parts.is_null() == s.parts.empty());
    if (parts.is_null()) continue;
    REQUIRE(parts.size() == s.parts.size());
    for (size_t j = 0; j < s.parts.size(); ++j) {
      CHECK(parts[j][0].get<std::string>() == s.parts[j].name);
      CHECK(parts[j][1].get<int64_t>() == s.parts[j].rows);
    }
  }
}

}  // namespace

TEST_CASE("converter and C++ sharding tables agree", "[sharding][converter]") {
  for (const char* model :
       {"stories260K", "tiny-qwen3", "tiny-mistral", "tiny-llama", "tiny-qwen2", "tiny-llama3",
        "tiny-mistral-nemo", "tiny-phi3", "tiny-qwen3-moe", "tiny-mixtral"}) {
    for (int tp : {1, 2, 4}) check_in_step(io_test::model_dir(model), tp);
  }
  // The bundled MoE shapes (18k tensors for Qwen3-30B-A3B) at tp 4.
  for (const char* shape : {"qwen3-30b-a3b", "mixtral-8x7b"}) {
    check_in_step(io_test::repo_root() + "/configs/models/" + shape, 4);
  }
  // A 7B-shaped config (no weights needed): Mistral-7B's 32/8 heads, 14336 MLP, tp=8.
  const std::string dir = io_test::scratch_dir("sync_mistral7b");
  json c = io_test::read_json(io_test::model_dir("tiny-mistral") + "/config.json");
  c["hidden_size"] = 4096;
  c["intermediate_size"] = 14336;
  c["num_hidden_layers"] = 32;
  c["num_attention_heads"] = 32;
  c["num_key_value_heads"] = 8;
  c["head_dim"] = 128;
  c["vocab_size"] = 32768;
  c["sliding_window"] = 4096;
  io_test::write_json(dir + "/config.json", c);
  io_test::write_json(dir + "/generation_config.json", json::object());
  for (int tp : {1, 8}) check_in_step(dir, tp);
}

TEST_CASE("sharding table rules", "[sharding]") {
  const ModelConfig qwen = load_hf(io_test::model_dir("tiny-qwen3"));
  const std::vector<TensorSpec> t = sharding_table(qwen);
  // embed + 2 layers x 8 (norm, qkv, o, q_norm, k_norm, norm, gate_up, down) + norm; tied: no
  // lm_head.
  REQUIRE(t.size() == 1 + 2 * 8 + 1);
  CHECK(t.front().name == "model.embed_tokens.weight");
  CHECK(t.back().name == "model.norm.weight");
  for (const TensorSpec& s : t) {
    CAPTURE(s.name);
    const bool column = s.name.find("qkv_proj") != std::string::npos ||
                        s.name.find("gate_up_proj") != std::string::npos;
    CHECK(column == !s.parts.empty());
    const bool row =
        s.name.find("o_proj") != std::string::npos || s.name.find("down_proj") != std::string::npos;
    const bool vocab = s.name == "model.embed_tokens.weight" || s.name == "lm_head.weight";
    if (column) CHECK(s.split == SplitDim::out);
    if (row) CHECK(s.split == SplitDim::in);
    if (vocab) CHECK((s.split == SplitDim::out && s.vocab_padded));
    if (!column && !row && !vocab) CHECK((s.split == SplitDim::none && s.global_shape.size() == 1));
    if (s.name.find("q_norm") != std::string::npos)
      CHECK(s.global_shape == std::vector<int64_t>{16});
  }
  // q/k/v fused: 8 query heads and 4 kv heads of head_dim 16, each rank [q_r | k_r | v_r].
  const TensorSpec& qkv = t[2];
  REQUIRE(qkv.name == "model.layers.0.self_attn.qkv_proj.weight");
  CHECK(qkv.global_shape == std::vector<int64_t>{128 + 2 * 64, 64});
  CHECK(qkv.local_shape(4) == std::vector<int64_t>{64, 64});
  REQUIRE(qkv.parts.size() == 3);
  CHECK(qkv.parts[0].name == "model.layers.0.self_attn.q_proj.weight");
  CHECK(qkv.parts[1].name == "model.layers.0.self_attn.k_proj.weight");
  CHECK(qkv.parts[2].name == "model.layers.0.self_attn.v_proj.weight");
  CHECK(qkv.parts[0].rows == 128);
  CHECK(qkv.parts[2].rows == 64);
  const std::vector<TensorSpec> qkv_parts = qkv.unfused();
  REQUIRE(qkv_parts.size() == 3);
  CHECK(qkv_parts[1].name == "model.layers.0.self_attn.k_proj.weight");
  CHECK(qkv_parts[1].global_shape == std::vector<int64_t>{64, 64});
  CHECK(qkv_parts[1].split == SplitDim::out);
  CHECK(qkv_parts[1].local_shape(4) == std::vector<int64_t>{16, 64});
  CHECK(qkv.describe(2) ==
        "split dim 0 of global [256, 64] over tp=2, fused per rank as [128/tp rows of "
        "model.layers.0.self_attn.q_proj.weight | 64/tp rows of "
        "model.layers.0.self_attn.k_proj.weight | 64/tp rows of "
        "model.layers.0.self_attn.v_proj.weight]");
  const TensorSpec& gate_up = t[7];
  REQUIRE(gate_up.name == "model.layers.0.mlp.gate_up_proj.weight");
  CHECK(gate_up.global_shape == std::vector<int64_t>{2 * 128, 64});
  CHECK(gate_up.local_shape(4) == std::vector<int64_t>{2 * 32, 64});
  REQUIRE(gate_up.parts.size() == 2);
  CHECK(gate_up.parts[1].name == "model.layers.0.mlp.up_proj.weight");
  CHECK(t[1].unfused().size() == 1);
  const TensorSpec& o = t[3];
  REQUIRE(o.name == "model.layers.0.self_attn.o_proj.weight");
  CHECK(o.local_shape(4) == std::vector<int64_t>{64, 32});
  CHECK(o.local_offset(4, 3) == 96);
  // Vocab 302 over tp=4: 76 rows per rank, the last rank holds 74 real rows + 2 zero rows.
  CHECK(t[0].local_shape(4) == std::vector<int64_t>{76, 64});
  CHECK(t[0].local_shape(2) == std::vector<int64_t>{151, 64});
  CHECK(t[0].describe(4) ==
        "split dim 0 of global [302, 64] over tp=4, vocab rows padded to 76 per rank");
  CHECK(t[1].describe(4) == "replicated, global [64]");
  CHECK(o.describe(4) == "split dim 1 of global [64, 128] over tp=4");

  const ModelConfig mistral = load_hf(io_test::model_dir("tiny-mistral"));
  const std::vector<TensorSpec> m = sharding_table(mistral);
  REQUIRE(m.back().name == "lm_head.weight");
  CHECK(m.back().vocab_padded);
  CHECK(m.back().local_shape(4) == std::vector<int64_t>{65, 64});  // ceil(259 / 4)
  CHECK_THROWS_WITH(m[2].local_shape(3), Catch::Matchers::Contains("tp=3 does not divide dim 0"));

  // Biases are fused with their weights (Qwen2: q/k/v biases).
  const ModelConfig qwen2 = load_hf(io_test::model_dir("tiny-qwen2"));
  const std::vector<TensorSpec> q2 = sharding_table(qwen2);
  REQUIRE(q2[3].name == "model.layers.0.self_attn.qkv_proj.bias");
  REQUIRE(q2[3].parts.size() == 3);
  CHECK(q2[3].parts[1].name == "model.layers.0.self_attn.k_proj.bias");
  CHECK(q2[3].global_shape.size() == 1);
  CHECK(q2[3].split == SplitDim::out);
}
