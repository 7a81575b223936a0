// Every refusal, with its message: the converter's (one line on stderr, exit status 1, no
// manifest written) and the loader's (tpinfer::Error naming the file, the tensor, what was
// expected and what was found). Fixtures are copies of the bundled/tiny models with one thing
// changed; shards are damaged with tamper_shard.py (h5py), which keeps the manifest's size in
// step so that the check under test is the one that fires.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "core/error.h"
#include "io/model_dir.h"
#include "io/sha256.h"
#include "io/shard_loader.h"
#include "io_test_util.h"

using namespace tpinfer;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::Equals;
using Catch::Matchers::StartsWith;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Copies a model into a fresh scratch folder, edits its config.json, returns the folder.
std::string fixture(const std::string& name, const std::string& model,
                    const std::function<void(json&)>& edit = nullptr) {
  const std::string dir = io_test::scratch_dir("refuse-" + name) + "/hf";
  io_test::copy_dir(io_test::model_dir(model), dir);
  if (edit) {
    json c = io_test::read_json(dir + "/config.json");
    edit(c);
    io_test::write_json(dir + "/config.json", c);
  }
  return dir;
}

void edit_tensors(const std::string& dir, const std::function<void(io_test::StFile&)>& edit) {
  io_test::StFile t = io_test::read_safetensors_dir(dir);
  edit(t);
  io_test::write_safetensors(dir + "/model.safetensors", t);
}

// Runs the converter on dir and returns its one-line message (without the prefix); checks the
// exit status and that no manifest was written.
std::string converter_refusal(const std::string& dir, int tp = 2) {
  const std::string out = fs::path(dir).parent_path().string() + "/out";
  const io_test::RunResult r =
      io_test::convert("--model '" + dir + "' --tp " + std::to_string(tp) + " --out '" + out + "'");
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK_FALSE(fs::exists(out + "/manifest.json"));
  const std::string prefix = "convert_hf.py: error: ";
  REQUIRE(r.err.rfind(prefix, 0) == 0);
  REQUIRE(!r.err.empty());
  CHECK(r.err.back() == '\n');
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line
  return r.err.substr(prefix.size(), r.err.size() - prefix.size() - 1);
}

// The C++ twin's message for the same config.json.
std::string cpp_refusal(const std::string& dir) {
  try {
    ModelConfig::from_hf(io_test::read_json(dir + "/config.json"),
                         io_test::read_json(dir + "/generation_config.json"), dir + "/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string load_error(const std::string& dir, int rank, bool verify_sha256 = true) {
  try {
    const ModelDir md = ModelDir::open(dir);
    load_shard(
        md, rank, [](const TensorSpec&, const std::vector<int64_t>&, const void*, DType) {},
        verify_sha256);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string open_error(const std::string& dir) {
  try {
    ModelDir::open(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// stories260K converted at tp=4 (f32) once per test case (ctest runs test cases in parallel
// processes, so they must not share a folder); each section gets its own copy.
std::string converted_copy(const std::string& name) {
  static std::map<std::string, std::string> pristine;
  if (pristine.count(name) == 0) {
    const std::string p = io_test::scratch_dir("refuse-pristine-" + name);
    const io_test::RunResult r = io_test::convert("--model '" + io_test::model_dir("stories260K") +
                                                  "' --tp 4 --dtype f32 --out '" + p + "'");
    if (r.rc != 0) throw std::runtime_error("conversion failed: " + r.err);
    pristine[name] = p;
  }
  const std::string dir = io_test::scratch_dir("refuse-load-" + name);
  io_test::copy_dir(pristine[name], dir);
  return dir;
}

void tamper(const std::string& dir, int rank, const std::string& op) {
  const io_test::RunResult r =
      io_test::run(io_test::python() + " '" + std::string(TPINFER_IO_TEST_DIR) +
                   "/tamper_shard.py' '" + dir + "' " + std::to_string(rank) + " " + op);
  INFO(r.err);
  REQUIRE(r.rc == 0);
}

void edit_manifest(const std::string& dir, const std::function<void(json&)>& edit) {
  json m = io_test::read_json(dir + "/manifest.json");
  edit(m);
  io_test::write_json(dir + "/manifest.json", m);
}

}  // namespace

TEST_CASE("converter refuses unsupported configs with the C++ twin's message",
          "[refusal][converter]") {
  struct Case {
    std::string name, model;
    std::function<void(json&)> edit;
    std::string message;  // after "<dir>/config.json: "
  };
  const std::vector<Case> cases = {
      {"arch", "tiny-llama", [](json& c) { c["architectures"] = json::array({"GPT2LMHeadModel"}); },
       "unsupported architecture 'GPT2LMHeadModel'; supported: LlamaForCausalLM, "
       "MistralForCausalLM, Qwen3ForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM, "
       "Qwen3MoeForCausalLM, MixtralForCausalLM"},
      {"rope-scaling", "tiny-llama",
       [](json& c) {
         c["rope_scaling"] = {{"rope_type", "proportional"}, {"factor", 8.0}};
       },
       "rope_scaling type 'proportional' is not implemented; supported: default, linear, dynamic, "
       "llama3, yarn, longrope"},
      {"rope-parameters", "tiny-qwen3", [](json& c) { c["rope_parameters"]["rope_type"] = "su"; },
       "rope_scaling type 'su' is not implemented; supported: default, linear, dynamic, llama3, "
       "yarn, longrope"},
      {"partial-rotary", "tiny-llama", [](json& c) { c["partial_rotary_factor"] = 0.5; },
       "partial_rotary_factor 0.5 is not supported (RoPE over the whole head only)"},
      {"qwen3-sliding", "tiny-qwen3", [](json& c) { c["use_sliding_window"] = true; },
       "use_sliding_window=true is not supported for qwen3 (sliding-window layers are not "
       "implemented)"},
      {"act", "tiny-mistral", [](json& c) { c["hidden_act"] = "gelu_pytorch_tanh"; },
       "hidden_act \"gelu_pytorch_tanh\" is not supported (only \"silu\")"},
      {"missing-key", "tiny-mistral", [](json& c) { c.erase("num_hidden_layers"); },
       "missing key 'num_hidden_layers'"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string dir = fixture(c.name, c.model, c.edit);
    const std::string expected = dir + "/config.json: " + c.message;
    CHECK(converter_refusal(dir) == expected);
    CHECK(cpp_refusal(dir) == expected);
  }
}

TEST_CASE("converter refuses tp sizes that do not divide the model", "[refusal][converter]") {
  CHECK(converter_refusal(fixture("tp3", "tiny-llama"), 3) ==
        "tp=3 does not divide num_attention_heads=8; valid tp: 1, 2, 4");
  CHECK(converter_refusal(fixture("tp8", "stories260K"), 8) ==
        "tp=8 does not divide num_key_value_heads=4; valid tp: 1, 2, 4");
  const std::string dir =
      fixture("tp-mlp", "tiny-llama", [](json& c) { c["intermediate_size"] = 130; });
  CHECK(converter_refusal(dir, 4) == "tp=4 does not divide intermediate_size=130; valid tp: 1, 2");
  // The same message from the C++ side.
  const ModelConfig cfg =
      ModelConfig::from_hf(io_test::read_json(dir + "/config.json"), nullptr, "x");
  CHECK_THROWS_WITH(cfg.check_tp(4), Equals("tp=4 does not divide intermediate_size=130; "
                                            "valid tp: 1, 2"));
}

TEST_CASE("converter refuses bad checkpoints", "[refusal][converter]") {
  SECTION("missing tensor") {
    const std::string dir = fixture("missing-tensor", "tiny-llama");
    edit_tensors(dir, [](io_test::StFile& t) { t.erase("model.layers.1.mlp.up_proj.weight"); });
    CHECK(converter_refusal(dir) == dir +
                                        ": missing tensor model.layers.1.mlp.up_proj.weight "
                                        "(expected shape [128, 64]; checked model.safetensors)");
  }
  SECTION("missing lm_head is fine, missing embedding is not") {
    const std::string dir = fixture("missing-embed", "tiny-mistral");
    edit_tensors(dir, [](io_test::StFile& t) { t.erase("model.embed_tokens.weight"); });
    CHECK_THAT(converter_refusal(dir), Contains("missing tensor model.embed_tokens.weight"));
  }
  SECTION("bias tensor in a bias-free config") {
    const std::string dir = fixture("bias-tensor", "tiny-qwen3");
    edit_tensors(dir, [](io_test::StFile& t) {
      io_test::StTensor b;
      b.dtype = "F32";
      b.shape = {128};
      b.data.assign(128 * 4, 0);
      t["model.layers.0.self_attn.q_proj.bias"] = b;
    });
    CHECK(converter_refusal(dir) == dir +
                                        ": tensor model.layers.0.self_attn.q_proj.bias: a bias "
                                        "that config.json does not announce (qwen3 has none "
                                        "there)");
  }
  SECTION("unexpected tensor") {
    const std::string dir = fixture("extra-tensor", "tiny-llama");
    edit_tensors(dir, [](io_test::StFile& t) {
      t["model.layers.0.self_attn.extra_gate.weight"] = t.at("model.norm.weight");
    });
    CHECK_THAT(converter_refusal(dir),
               Contains("unexpected tensor model.layers.0.self_attn.extra_gate.weight: not in "
                        "the llama sharding table"));
  }
  SECTION("tensor shape disagrees with config.json") {
    const std::string dir =
        fixture("shape", "tiny-llama", [](json& c) { c["intermediate_size"] = 136; });
    CHECK(converter_refusal(dir) == dir +
                                        ": tensor model.layers.0.mlp.gate_proj.weight has "
                                        "shape [128, 64] but config.json implies [136, 64]");
  }
  SECTION("unsupported tensor dtype") {
    const std::string dir = fixture("f64", "tiny-llama");
    edit_tensors(dir, [](io_test::StFile& t) {
      io_test::StTensor& n = t.at("model.norm.weight");
      n.dtype = "F64";
      n.data.resize(n.data.size() * 2);
    });
    CHECK(converter_refusal(dir) ==
          dir + ": tensor model.norm.weight has dtype F64; supported: F32, F16, BF16");
  }
  SECTION("truncated safetensors") {
    const std::string dir = fixture("truncated-st", "tiny-llama");
    fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 100);
    CHECK_THAT(converter_refusal(dir), Contains("(truncated?)"));
  }
  SECTION("output directory is the model directory") {
    const std::string dir = fixture("same-dir", "tiny-llama");
    const io_test::RunResult r =
        io_test::convert("--model '" + dir + "' --tp 1 --out '" + dir + "/'");
    CHECK(r.rc == 1);
    CHECK(r.err ==
          "convert_hf.py: error: --out must be a different directory from --model (" + dir + ")\n");
    CHECK_FALSE(fs::exists(dir + "/manifest.json"));
  }
  SECTION("no weights, no config") {
    const std::string dir = fixture("no-weights", "tiny-llama");
    fs::remove(dir + "/model.safetensors");
    CHECK_THAT(converter_refusal(dir), Contains("no model.safetensors or "
                                                "model.safetensors.index.json"));
    fs::remove(dir + "/config.json");
    CHECK(converter_refusal(dir) == dir + "/config.json: not found");
  }
}

TEST_CASE("manifest refusals", "[refusal][loader]") {
  SECTION("missing manifest") {
    const std::string empty = io_test::scratch_dir("refuse-empty");
    CHECK_THAT(open_error(empty), StartsWith(empty + "/manifest.json: not found (convert"));
    const std::string hf = io_test::model_dir("tiny-llama");
    CHECK_THAT(open_error(hf), Contains("looks like a Hugging Face model: convert it with "
                                        "scripts/convert_hf.py --model " +
                                        hf));
    CHECK_THAT(open_error(empty + "/nope"), Equals(empty + "/nope: model directory not found"));
  }
  const std::string dir = converted_copy("manifest");
  REQUIRE(open_error(dir) == "(no error)");
  SECTION("format version 1 (separate q/k/v and gate/up): the command that converts it again") {
    const std::string src = io_test::read_json(dir + "/manifest.json")["source"]["dir"];
    edit_manifest(dir, [](json& m) { m["format_version"] = 1; });
    CHECK(open_error(dir) == dir +
                                 ": model directory has format_version 1, this build reads 2 "
                                 "(since version 2 q/k/v and gate/up are stored fused); "
                                 "convert it again: /usr/bin/python3 scripts/convert_hf.py "
                                 "--model " +
                                 src + " --tp 4 --out " + dir + " --dtype f32");
    // int8 per channel and a path that needs quoting.
    edit_manifest(dir, [](json& m) {
      m["dtype"] = "int8";
      m["int8"] = json{{"group_size", 0}, {"float_dtype", "f32"}, {"scale_dtype", "f32"}};
      m["source"]["dir"] = "/models/my model's dir";
    });
    CHECK_THAT(open_error(dir), EndsWith("--model '/models/my model'\\''s dir' --tp 4 --out " +
                                         dir + " --dtype int8 --int8-block 0"));
  }
  SECTION("a newer format version") {
    edit_manifest(dir, [](json& m) { m["format_version"] = 3; });
    CHECK_THAT(open_error(dir),
               StartsWith(dir + ": model directory has format_version 3, this build reads 2 "
                                "(written by a newer converter); convert it again: "));
  }
  SECTION("wrong format") {
    edit_manifest(dir, [](json& m) { m["format"] = "gguf"; });
    CHECK_THAT(open_error(dir), Contains("key 'format' is 'gguf', expected 'tpinfer-shards'"));
  }
  SECTION("missing and bad keys") {
    edit_manifest(dir, [](json& m) { m.erase("dtype"); });
    CHECK(open_error(dir) == dir + "/manifest.json: missing key 'dtype'");
    edit_manifest(dir, [](json& m) { m["dtype"] = "fp8"; });
    CHECK_THAT(open_error(dir), Contains("key 'dtype' is 'fp8', expected f32, f16, bf16 or int8"));
    // int8: the quantization record is required and checked.
    edit_manifest(dir, [](json& m) { m["dtype"] = "int8"; });
    CHECK(open_error(dir) == dir + "/manifest.json: missing key 'int8'");
    edit_manifest(dir, [](json& m) {
      m["int8"] = {{"group_size", 16}, {"float_dtype", "f32"}, {"scale_dtype", "f32"}};
    });
    CHECK_THAT(open_error(dir), Contains("key 'int8.group_size' is 16, expected 0 (per output "
                                         "channel) or 32"));
    edit_manifest(dir, [](json& m) {
      m["int8"]["group_size"] = 32;
      m["int8"]["float_dtype"] = "int8";
    });
    CHECK_THAT(open_error(dir),
               Contains("key 'int8.float_dtype' is 'int8', expected f32, f16 or bf16"));
    edit_manifest(dir, [](json& m) {
      m["int8"]["float_dtype"] = "f32";
      m["int8"]["scale_dtype"] = "f16";
    });
    CHECK_THAT(open_error(dir), Contains("key 'int8.scale_dtype' is 'f16', expected f32"));
    edit_manifest(dir, [](json& m) { m.erase("int8"); });
    edit_manifest(dir, [](json& m) {
      m["dtype"] = "f32";
      m["config"].erase("n_kv_heads");
    });
    CHECK(open_error(dir) == dir + "/manifest.json: config: missing key 'n_kv_heads'");
  }
  SECTION("invalid JSON") {
    std::ofstream(dir + "/manifest.json") << "{ \"format\": ";
    CHECK_THAT(open_error(dir), StartsWith(dir + "/manifest.json: invalid JSON"));
  }
  SECTION("files list does not match tp") {
    edit_manifest(dir, [](json& m) { m["files"].erase(3); });
    CHECK_THAT(open_error(dir), Contains("key 'files' must list 4 shard files (one per rank), "
                                         "found 3"));
  }
  SECTION("tp that the config does not allow") {
    edit_manifest(dir, [](json& m) { m["tp"] = 3; });
    CHECK(open_error(dir) == dir +
                                 "/manifest.json: tp=3 does not divide num_attention_heads=8; "
                                 "valid tp: 1, 2, 4");
  }
  SECTION("job tp differs from the converted tp") {
    const ModelDir md = ModelDir::open(dir);
    CHECK_NOTHROW(check_job_tp(md, 4));
    CHECK_THROWS_WITH(check_job_tp(md, 2),
                      Equals(dir + ": model converted for tp=4 but the job runs tp=2: re-run "
                                   "scripts/convert_hf.py --tp 2"));
    CHECK_THROWS_WITH(check_job_tp(md, 3), Contains("valid tp: 1, 2, 4"));
  }
}

TEST_CASE("shard refusals", "[refusal][loader]") {
  const std::string dir = converted_copy("shard");
  for (int r = 0; r < 4; ++r) REQUIRE(load_error(dir, r) == "(no error)");
  const std::string r1 = dir + "/rank1-of-4.h5";
  const std::string r2 = dir + "/rank2-of-4.h5";

  SECTION("shape mismatch") {
    tamper(dir, 2, "reshape model.layers.0.mlp.down_proj.weight '[64, 86]'");
    CHECK(load_error(dir, 2) == r2 + ": tensor model.layers.0.mlp.down_proj.weight: expected "
                                     "local shape [64, 43] (split dim 1 of global [64, 172] over "
                                     "tp=4), found [64, 86]");
    CHECK(load_error(dir, 1) == "(no error)");  // only the damaged rank's file is read
  }
  SECTION("missing tensor") {
    tamper(dir, 1, "delete model.layers.3.self_attn.qkv_proj.weight");
    CHECK(load_error(dir, 1) ==
          r1 + ": tensor model.layers.3.self_attn.qkv_proj.weight: missing (expected local shape "
               "[32, 64], split dim 0 of global [128, 64] over tp=4, fused per rank as [64/tp "
               "rows of model.layers.3.self_attn.q_proj.weight | 32/tp rows of "
               "model.layers.3.self_attn.k_proj.weight | 32/tp rows of "
               "model.layers.3.self_attn.v_proj.weight])");
  }
  SECTION("rank attribute (files swapped)") {
    fs::rename(dir + "/rank0-of-4.h5", dir + "/tmp.h5");
    fs::rename(r1, dir + "/rank0-of-4.h5");
    fs::rename(dir + "/tmp.h5", r1);
    // The checksum notices first; without it, the rank attribute does.
    CHECK_THAT(load_error(dir, 1), StartsWith(r1 + ": sha256 is "));
    CHECK(load_error(dir, 1, false) == r1 + ": attribute rank is 0, expected 1 (shard files "
                                            "renamed or swapped?)");
  }
  SECTION("tp attribute") {
    tamper(dir, 1, "root-attr tp 2");
    CHECK(load_error(dir, 1) == r1 + ": attribute tp is 2, manifest.json says tp=4");
  }
  SECTION("dtype attribute") {
    tamper(dir, 1, "root-attr dtype bf16");
    CHECK(load_error(dir, 1) == r1 + ": attribute dtype is 'bf16', manifest.json says 'f32'");
  }
  SECTION("format_version attribute") {
    tamper(dir, 1, "root-attr format_version 7");
    CHECK(load_error(dir, 1) == r1 + ": attribute format_version is 7, manifest.json says 2");
  }
  SECTION("global_shape attribute") {
    tamper(dir, 1, "attr model.layers.0.mlp.gate_up_proj.weight global_shape '[352, 64]'");
    CHECK(load_error(dir, 1) == r1 + ": tensor model.layers.0.mlp.gate_up_proj.weight: "
                                     "attribute global_shape is [352, 64], the sharding table "
                                     "expects [344, 64] (converted from a different config?)");
  }
  SECTION("split_dim attribute") {
    tamper(dir, 1, "attr model.layers.0.self_attn.o_proj.weight split_dim 0");
    CHECK(load_error(dir, 1) == r1 + ": tensor model.layers.0.self_attn.o_proj.weight: attribute "
                                     "split_dim is 0, the sharding table expects 1 (converter "
                                     "and engine disagree on the sharding)");
  }
  SECTION("missing attribute") {
    tamper(dir, 1, "root-attr rank 1");  // rewrite is harmless; now drop a dataset attribute
    const io_test::RunResult r =
        io_test::run(io_test::python() + " -c \"import h5py; f=h5py.File('" + r1 +
                     "','r+'); del f['model.norm.weight'].attrs['split_dim']\"");
    REQUIRE(r.rc == 0);
    edit_manifest(dir, [&](json& m) {
      m["files"][1]["bytes"] = fs::file_size(r1);
      m["files"][1]["sha256"] = sha256_file(r1);
    });
    CHECK(load_error(dir, 1) == r1 + ": tensor model.norm.weight: missing attribute 'split_dim'");
  }
  SECTION("element type") {
    tamper(dir, 1, "retype model.norm.weight float64");
    CHECK(load_error(dir, 1) == r1 + ": tensor model.norm.weight: expected float32 data for "
                                     "dtype f32, found float64");
  }
  SECTION("extra dataset") {
    tamper(dir, 1, "add model.layers.0.mlp.extra.weight");
    CHECK(load_error(dir, 1) == r1 + ": tensor model.layers.0.mlp.extra.weight: not in the "
                                     "sharding table of this llama config (converted from a "
                                     "different model?)");
  }
  SECTION("truncated file") {
    const auto size = fs::file_size(r1);
    fs::resize_file(r1, size / 2);
    CHECK(load_error(dir, 1) == r1 + ": file is " + std::to_string(size / 2) +
                                    " bytes, manifest.json records " + std::to_string(size) +
                                    " (truncated? re-run scripts/convert_hf.py)");
    // Even when the manifest is edited to match, HDF5 notices and the error names the file.
    edit_manifest(dir, [&](json& m) { m["files"][1]["bytes"] = size / 2; });
    CHECK_THAT(load_error(dir, 1), StartsWith(r1 + ": sha256 is "));
    CHECK_THAT(load_error(dir, 1, false), StartsWith(r1 + ": "));
    CHECK_THAT(load_error(dir, 1, false), Contains("truncated or corrupt"));
  }
  SECTION("not an HDF5 file") {
    const auto size = fs::file_size(r1);
    {
      std::ofstream out(r1, std::ios::binary | std::ios::trunc);
      out << std::string(size, 'x');
    }
    CHECK_THAT(load_error(dir, 1), StartsWith(r1 + ": sha256 is "));
    CHECK(load_error(dir, 1, false) == r1 + ": not a readable HDF5 file (bad signature)");
  }
  SECTION("changed bytes of the right size (one flipped bit)") {
    const std::string expected = io_test::read_json(dir + "/manifest.json")["files"][1]["sha256"];
    const auto size = fs::file_size(r1);
    {
      std::fstream f(r1, std::ios::binary | std::ios::in | std::ios::out);
      f.seekg(static_cast<std::streamoff>(size - size / 3));
      char c = 0;
      f.read(&c, 1);
      c = static_cast<char>(c ^ 0x10);
      f.seekp(static_cast<std::streamoff>(size - size / 3));
      f.write(&c, 1);
    }
    const std::string found = sha256_file(r1);
    REQUIRE(found != expected);
    CHECK(load_error(dir, 1) ==
          r1 + ": sha256 is " + found + ", manifest.json records " + expected +
              " (the file changed after conversion: a bad copy or a damaged disk?); re-run "
              "scripts/convert_hf.py, or set verify_checksums: false to skip this check");
    CHECK(load_error(dir, 0) == "(no error)");  // only the damaged rank's file is hashed
  }
  SECTION("missing shard file") {
    fs::remove(r2);
    CHECK(load_error(dir, 2) ==
          r2 + ": shard file not found (listed in " + dir + "/manifest.json)");
  }
  SECTION("rank out of range") {
    CHECK(load_error(dir, 4) == dir + ": rank 4 is out of range for tp=4");
  }
}
