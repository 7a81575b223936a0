// Mixture-of-experts checkpoints through the converter: transformers' fused expert tensors
// (mlp.experts.gate_up_proj [E, 2I, H], down_proj [E, H, I]) give the same shards as the Hub's
// per-expert tensors; --dtype int8 quantizes the experts and keeps the router float; the
// refusals name the expert width and the expert tensors.
#include <catch2/catch.hpp>
#include <cstring>
#include <map>

#include "core/error.h"
#include "io/model_dir.h"
#include "io/shard_loader.h"
#include "io_test_util.h"
#include "model/sharding.h"

using namespace tpinfer;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using nlohmann::json;

namespace {

std::string convert_ok(const std::string& model_dir, const std::string& out, int tp,
                       const std::string& extra = "") {
  const io_test::RunResult r = io_test::convert(
      "--model '" + model_dir + "' --tp " + std::to_string(tp) + " --out '" + out + "' " + extra);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  return out;
}

// Every rank's tensors as raw bytes, by name.
std::map<std::string, std::vector<unsigned char>> shard_bytes(const std::string& dir, int rank) {
  std::map<std::string, std::vector<unsigned char>> out;
  const ModelDir md = ModelDir::open(dir);
  load_shard(
      md, rank,
      [&](const TensorSpec& spec, const std::vector<int64_t>& shape, const void* data, DType dt) {
        size_t n = dtype_size(dt);
        for (int64_t s : shape) n *= static_cast<size_t>(s);
        const auto* p = static_cast<const unsigned char*>(data);
        out[spec.name].assign(p, p + n);
      });
  return out;
}

// The per-expert tensors of `hf` replaced by transformers' fused layout under `prefix`
// ("model.layers.L.mlp.experts."), for every sparse layer.
io_test::StFile fuse_experts(const io_test::StFile& hf, const std::string& arch, int n_layers,
                             int n_experts) {
  io_test::StFile out = hf;
  const bool mixtral = arch == "mixtral";
  for (int l = 0; l < n_layers; ++l) {
    const std::string src = "model.layers." + std::to_string(l) +
                            (mixtral ? ".block_sparse_moe.experts." : ".mlp.experts.");
    const std::string dst = "model.layers." + std::to_string(l) + ".mlp.experts.";
    auto name = [&](int e, const char* qwen, const char* mix) {
      return src + std::to_string(e) + "." + (mixtral ? mix : qwen) + ".weight";
    };
    if (hf.count(name(0, "gate_proj", "w1")) == 0) continue;  // a dense layer
    io_test::StTensor gate_up, down;
    gate_up.dtype = down.dtype = "F32";
    const auto& g0 = hf.at(name(0, "gate_proj", "w1"));
    const auto& d0 = hf.at(name(0, "down_proj", "w2"));
    gate_up.shape = {n_experts, 2 * g0.shape[0], g0.shape[1]};
    down.shape = {n_experts, d0.shape[0], d0.shape[1]};
    for (int e = 0; e < n_experts; ++e) {
      for (auto [q, m] :
           {std::pair<const char*, const char*>{"gate_proj", "w1"}, {"up_proj", "w3"}}) {
        const auto& t = hf.at(name(e, q, m));
        gate_up.data.insert(gate_up.data.end(), t.data.begin(), t.data.end());
        out.erase(name(e, q, m));
      }
      const auto& t = hf.at(name(e, "down_proj", "w2"));
      down.data.insert(down.data.end(), t.data.begin(), t.data.end());
      out.erase(name(e, "down_proj", "w2"));
    }
    out[dst + "gate_up_proj"] = gate_up;
    out[dst + "down_proj"] = down;
  }
  return out;
}

}  // namespace

TEST_CASE("MoE: fused expert tensors convert to the same shards as per-expert ones",
          "[converter][moe]") {
  for (const char* model : {"tiny-qwen3-moe", "tiny-mixtral"}) {
    CAPTURE(model);
    const std::string src = io_test::model_dir(model);
    const json cfg = io_test::read_json(src + "/config.json");
    const std::string base = io_test::scratch_dir(std::string("moe-fused-") + model);
    const std::string fused = base + "/hf";
    io_test::copy_dir(src, fused);
    const io_test::StFile hf = io_test::read_safetensors_dir(src);
    const io_test::StFile f =
        fuse_experts(hf, cfg.at("model_type"), cfg.at("num_hidden_layers"),
                     cfg.contains("num_local_experts") ? cfg.at("num_local_experts").get<int>()
                                                       : cfg.at("num_experts").get<int>());
    REQUIRE(f.size() < hf.size());
    io_test::write_safetensors(fused + "/model.safetensors", f);
    const std::string a = convert_ok(src, base + "/per-expert", 2, "--dtype f32");
    const std::string b = convert_ok(fused, base + "/fused", 2, "--dtype f32");
    for (int r = 0; r < 2; ++r) {
      const auto ta = shard_bytes(a, r), tb = shard_bytes(b, r);
      CHECK(ta.size() == tb.size());
      CHECK(ta == tb);
    }
  }
}

TEST_CASE("MoE: int8 quantizes the experts and keeps the router float", "[converter][moe][int8]") {
  const std::string out = convert_ok(io_test::model_dir("tiny-qwen3-moe"),
                                     io_test::scratch_dir("moe-int8"), 2, "--dtype int8");
  const ModelDir md = ModelDir::open(out);
  int n_float_router = 0, n_int8_expert = 0, n_float_expert = 0, n_int8_router = 0;
  load_shard(
      md, 1,
      [&](const TensorSpec& spec, const std::vector<int64_t>&, const void*, DType) {
        if (is_router(spec.name)) ++n_float_router;
        if (spec.name.find(".experts.") != std::string::npos) ++n_float_expert;
      },
      [&](const TensorSpec& spec, const std::vector<int64_t>& shape, const int8_t*, const float*,
          int64_t) {
        if (is_router(spec.name)) ++n_int8_router;
        if (spec.name.find(".experts.") != std::string::npos) {
          ++n_int8_expert;
          CHECK(shape == spec.local_shape(2));
        }
      });
  CHECK(n_float_router == 2);  // layers 0 and 2 (layer 1 is dense)
  CHECK(n_int8_router == 0);
  CHECK(n_int8_expert == 2 * 8 * 3);
  CHECK(n_float_expert == 0);
}

TEST_CASE("MoE refusals: expert width, top-k, expert tensors", "[refusal][converter][moe]") {
  auto fixture = [](const std::string& name, const std::function<void(json&)>& edit) {
    const std::string dir = io_test::scratch_dir("moe-refuse-" + name) + "/hf";
    io_test::copy_dir(io_test::model_dir("tiny-qwen3-moe"), dir);
    json c = io_test::read_json(dir + "/config.json");
    if (edit) edit(c);
    io_test::write_json(dir + "/config.json", c);
    return dir;
  };
  auto refusal = [](const std::string& dir, int tp) {
    const io_test::RunResult r = io_test::convert("--model '" + dir + "' --tp " +
                                                  std::to_string(tp) + " --out '" + dir + "-out'");
    INFO(r.err);
    CHECK(r.rc == 1);
    return r.err;
  };
  SECTION("tp must divide the experts' width") {
    const std::string dir = fixture("width", [](json& c) { c["moe_intermediate_size"] = 34; });
    const std::string msg =
        "tp=4 does not divide the experts' width moe_intermediate_size=34; valid tp: 1, 2";
    CHECK(refusal(dir, 4) == "convert_hf.py: error: " + msg + "\n");
    const ModelConfig cfg =
        ModelConfig::from_hf(io_test::read_json(dir + "/config.json"), nullptr, "x");
    CHECK_THROWS_WITH(cfg.check_tp(4), Equals(msg));
    CHECK(cfg.valid_tp_sizes(8) == std::vector<int>{1, 2});
  }
  SECTION("top-k above the expert count, with the C++ twin's message") {
    const std::string dir = fixture("topk", [](json& c) { c["num_experts_per_tok"] = 9; });
    const std::string msg = dir + "/config.json: num_experts_per_tok=9 exceeds the 8 experts";
    CHECK(refusal(dir, 1) == "convert_hf.py: error: " + msg + "\n");
    CHECK_THROWS_WITH(ModelConfig::from_hf(io_test::read_json(dir + "/config.json"), nullptr,
                                           dir + "/config.json"),
                      Equals(msg));
  }
  SECTION("mlp_only_layers must be a list of layer indices") {
    const std::string dir = fixture("mlp-only", [](json& c) { c["mlp_only_layers"] = "1"; });
    CHECK_THAT(refusal(dir, 1), Contains("key 'mlp_only_layers' must be a list of layer indices"));
  }
  SECTION("a missing expert tensor is named") {
    const std::string dir = fixture("missing", nullptr);
    io_test::StFile t = io_test::read_safetensors_dir(dir);
    t.erase("model.layers.2.mlp.experts.5.up_proj.weight");
    io_test::write_safetensors(dir + "/model.safetensors", t);
    CHECK_THAT(refusal(dir, 2), Contains("missing tensor model.layers.2.mlp.experts.5.up_proj."
                                         "weight (expected shape [32, 64]"));
  }
  SECTION("a missing Mixtral expert is named by its Hub name too") {
    const std::string dir = io_test::scratch_dir("moe-refuse-mixtral") + "/hf";
    io_test::copy_dir(io_test::model_dir("tiny-mixtral"), dir);
    io_test::StFile t = io_test::read_safetensors_dir(dir);
    t.erase("model.layers.1.block_sparse_moe.experts.2.w3.weight");
    io_test::write_safetensors(dir + "/model.safetensors", t);
    CHECK_THAT(refusal(dir, 2),
               Contains("missing tensor model.layers.1.mlp.experts.2.up_proj.weight (Mixtral: "
                        "model.layers.1.block_sparse_moe.experts.2.w3.weight) (expected shape "
                        "[64, 64]"));
  }
  SECTION("experts in a layer that mlp_only_layers makes dense are refused, not ignored") {
    const std::string dir = fixture("dense", [](json& c) { c["mlp_only_layers"] = {0, 1}; });
    CHECK_THAT(refusal(dir, 1), Contains("unexpected tensor model.layers.0.mlp.experts.0."
                                         "down_proj.weight: not in the qwen3_moe sharding table"));
  }
}
