// Shards per pipeline stage (scripts/convert_hf.py --pp / --pp-layers): the manifest's split,
// each (stage, tp rank) file holding exactly that stage's tensors with the same bytes as the
// one-stage conversion, the converter's refusals, the manifest's pp keys, and the job's pp
// against the directory's.
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/model_dir.h"
#include "io/shard_loader.h"
#include "io_test_util.h"

using namespace tpinfer;
using Catch::Contains;
using Catch::Equals;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string convert_ok(const std::string& name, const std::string& model, const std::string& args) {
  const std::string out = io_test::scratch_dir(name) + "/out";
  const io_test::RunResult r = io_test::convert("--model '" + io_test::model_dir(model) +
                                                "' --dtype f32 --out '" + out + "' " + args);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  return out;
}

std::string convert_error(const std::string& name, const std::string& args) {
  const std::string out = io_test::scratch_dir(name) + "/out";
  const io_test::RunResult r = io_test::convert("--model '" + io_test::model_dir("tiny-llama") +
                                                "' --tp 1 --out '" + out + "' " + args);
  CHECK(r.rc == 1);
  CHECK_FALSE(fs::exists(out + "/manifest.json"));
  return r.err;
}

// Every tensor of one file: name -> bytes.
std::map<std::string, std::vector<char>> read_all(const ModelDir& md, int rank, int stage) {
  std::map<std::string, std::vector<char>> out;
  load_shard(
      md, rank,
      [&](const TensorSpec& spec, const std::vector<int64_t>& shape, const void* data, DType dt) {
        size_t n = dtype_size(dt);
        for (int64_t s : shape) n *= static_cast<size_t>(s);
        const char* p = static_cast<const char*>(data);
        out[spec.name] = std::vector<char>(p, p + n);
      },
      true, stage);
  return out;
}

}  // namespace

TEST_CASE("converter --pp: one shard per stage and tp rank, the same bytes as one stage",
          "[pipeline]") {
  // tiny-llama: 3 layers, untied; --pp 2 -> layers 2, 1.
  const ModelDir one = ModelDir::open(convert_ok("pp-one", "tiny-llama", "--tp 2"));
  const ModelDir two = ModelDir::open(convert_ok("pp-two", "tiny-llama", "--tp 2 --pp 2"));
  CHECK(one.pp == 1);
  CHECK(one.split.layers == std::vector<int>{3});
  CHECK(two.pp == 2);
  CHECK(two.split.layers == std::vector<int>{2, 1});
  REQUIRE(two.files.size() == 4);
  CHECK(two.files[2].name == "stage1-of-2-rank0-of-2.h5");
  CHECK(two.shard_path(1, 1) == two.path + "/stage1-of-2-rank1-of-2.h5");
  for (int rank = 0; rank < 2; ++rank) {
    const auto all = read_all(one, rank, 0);
    std::set<std::string> seen;
    for (int stage = 0; stage < 2; ++stage) {
      const StageRange range = two.stage_range(stage);
      for (const auto& [name, bytes] : read_all(two, rank, stage)) {
        INFO("stage " << stage << " rank " << rank << " " << name);
        CHECK(range.holds(name));
        CHECK(bytes == all.at(name));
        CHECK(seen.insert(name).second);  // no tensor on two stages (untied)
      }
    }
    CHECK(seen.size() == all.size());
  }
  // An explicit split, and --pp 1 writes the one-stage layout.
  const ModelDir explicit_split =
      ModelDir::open(convert_ok("pp-list", "tiny-llama", "--tp 1 --pp-layers 1,2"));
  CHECK(explicit_split.split.layers == std::vector<int>{1, 2});
  CHECK(explicit_split.stage_range(1).layer_begin == 1);
  const ModelDir pp1 = ModelDir::open(convert_ok("pp-1", "tiny-llama", "--tp 1 --pp 1"));
  CHECK(pp1.pp == 1);
  CHECK(pp1.files[0].name == "rank0-of-1.h5");
  CHECK_FALSE(io_test::read_json(pp1.path + "/manifest.json").contains("pp"));
}

TEST_CASE("converter --pp: tied embeddings put the embedding on the last stage too", "[pipeline]") {
  const ModelDir md = ModelDir::open(convert_ok("pp-tied", "tiny-qwen3", "--tp 1 --pp 2"));
  REQUIRE(md.config.tie_word_embeddings);
  CHECK(read_all(md, 0, 0).count("model.embed_tokens.weight") == 1);
  CHECK(read_all(md, 0, 1).count("model.embed_tokens.weight") == 1);
  CHECK(read_all(md, 0, 1).count("model.norm.weight") == 1);
  CHECK(read_all(md, 0, 0).count("model.norm.weight") == 0);
}

TEST_CASE("converter --pp refusals", "[pipeline][refusal]") {
  CHECK(convert_error("pp-big", "--pp 4") ==
        "convert_hf.py: error: --pp 4 is more pipeline stages than the model's 3 layers (every "
        "stage runs at least one layer); use --pp <= 3\n");
  CHECK(convert_error("pp-sum", "--pp-layers 2,2") ==
        "convert_hf.py: error: --pp-layers 2,2 covers 4 layers, the model has 3\n");
  CHECK(convert_error("pp-zero", "--pp-layers 3,0") ==
        "convert_hf.py: error: --pp-layers 3,0: every stage needs at least one layer\n");
  CHECK(convert_error("pp-both", "--pp 2 --pp-layers 1,1,1") ==
        "convert_hf.py: error: --pp 2 but --pp-layers lists 3 stages\n");
  CHECK(convert_error("pp-text", "--pp-layers a,b") ==
        "convert_hf.py: error: --pp-layers must be comma-separated layer counts such as "
        "10,10,8,8, found 'a,b'\n");
}

TEST_CASE("manifest pp keys and the job's pp", "[pipeline][refusal]") {
  const std::string dir = convert_ok("pp-manifest", "tiny-llama", "--tp 1 --pp 2");
  const ModelDir md = ModelDir::open(dir);
  CHECK_NOTHROW(check_job_pp(md, 1, 2));
  CHECK_THROWS_WITH(check_job_pp(md, 1, 1),
                    Catch::StartsWith(dir + ": model converted for pp=2 (layers per stage 2,1) "
                                            "but the job runs pp=1: convert it again with: "
                                            "python3 scripts/convert_hf.py --model /") &&
                        Catch::EndsWith("tiny-llama --tp 1 --pp 1 --out " + dir + "-tp1"));
  const json m = io_test::read_json(dir + "/manifest.json");
  auto open_with = [&](const std::function<void(json&)>& edit) {
    json e = m;
    edit(e);
    io_test::write_json(dir + "/manifest.json", e);
    std::string err = "(no error)";
    try {
      ModelDir::open(dir);
    } catch (const Error& x) {
      err = x.what();
    }
    io_test::write_json(dir + "/manifest.json", m);
    return err;
  };
  CHECK(open_with([](json& e) { e.erase("pp_layers"); }) ==
        dir + "/manifest.json: keys 'pp' and 'pp_layers' go together, found only 'pp'");
  CHECK(open_with([](json& e) {
          e["pp_layers"] = {2, 2};
        }) ==
        dir + "/manifest.json: key 'pp_layers': the split 2,2 covers 4 layers, the model has 3");
  CHECK(open_with([](json& e) { e["files"][1]["stage"] = 0; }) ==
        dir + "/manifest.json: files[]: rank 0 of stage 0 is out of range or listed twice (tp=1)");
}
