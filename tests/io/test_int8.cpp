// Converter + loader round trips of --dtype int8: at tp 1 and 2, blocks of 32 and per channel,
// every linear weight comes back as int8 with scales of the right shape, each scale is max|x| / 127
// of ITS rank's slice (a row-parallel o/down weight has the input dim split, so its per-channel
// scales and blocks are computed per shard, never across two ranks), every value is within half a
// step of the source, and the embedding, norms and biases come back in the float dtype untouched.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>

#include "core/error.h"
#include "io/model_dir.h"
#include "io/shard_loader.h"
#include "io_test_util.h"

using namespace tpinfer;
using nlohmann::json;

TEST_CASE("int8 round trip: per-shard scales, tp 1/2, blocks of 32 and per channel",
          "[roundtrip][converter][int8]") {
  const std::string model = GENERATE(as<std::string>{}, "stories260K", "tiny-mistral");
  const int tp = GENERATE(1, 2);
  const int block = GENERATE(32, 0);
  CAPTURE(model, tp, block);
  const std::string out = io_test::scratch_dir("int8-" + model + "-tp" + std::to_string(tp) + "-b" +
                                               std::to_string(block));
  const io_test::RunResult r =
      io_test::convert("--model '" + io_test::model_dir(model) + "' --tp " + std::to_string(tp) +
                       " --out '" + out + "' --dtype int8 --int8-block " + std::to_string(block));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const json m = io_test::read_json(out + "/manifest.json");
  CHECK(m.at("dtype") == "int8");
  CHECK(m.at("int8").at("group_size") == block);
  CHECK(m.at("int8").at("float_dtype") == "f32");  // both sources are f32 checkpoints
  CHECK(m.at("int8").at("scale_dtype") == "f32");

  const ModelDir md = ModelDir::open(out);
  REQUIRE(md.dtype == DType::i8);
  REQUIRE(md.float_dtype == DType::f32);
  REQUIRE(md.int8_group == block);
  const io_test::StFile hf = io_test::read_safetensors_dir(io_test::model_dir(model));
  int n_int8 = 0, n_float = 0;
  for (int rank = 0; rank < tp; ++rank) {
    load_shard(
        md, rank,
        [&](const TensorSpec& spec, const std::vector<int64_t>& local, const void* data,
            DType dtype) {
          CAPTURE(spec.name);
          CHECK_FALSE(int8_quantized(spec));
          CHECK(dtype == DType::f32);
          if (spec.split == SplitDim::none) {  // replicated: bit for bit the source
            const std::vector<float> src = hf.at(spec.name).as_f32();
            CHECK(std::memcmp(data, src.data(), sizeof(float) * src.size()) == 0);
          }
          ++n_float;
        },
        [&](const TensorSpec& spec, const std::vector<int64_t>& local, const int8_t* q,
            const float* scales, int64_t group) {
          CAPTURE(spec.name, rank);
          REQUIRE(int8_quantized(spec));
          REQUIRE(local.size() == 2);
          const int64_t rows = local[0], cols = local[1];
          CHECK(group == (block > 0 ? block : cols));
          const int64_t ng = (cols + group - 1) / group;
          // Each local row's source: a fused projection's row i lies in part p (its rank slice
          // is [part_0 rows of this rank | part_1 ...]), any other tensor's in itself.
          std::map<std::string, std::vector<float>> src;
          std::vector<std::pair<const std::vector<float>*, int64_t>> row_src;  // (tensor, row)
          for (const TensorSpec& part : spec.unfused()) {
            const std::vector<float>& t = src[part.name] = hf.at(part.name).as_f32();
            const int64_t n = part.local_shape(tp)[0];
            for (int64_t i = 0; i < n; ++i) {
              row_src.emplace_back(&t, spec.split == SplitDim::out ? rank * n + i : i);
            }
          }
          REQUIRE(static_cast<int64_t>(row_src.size()) == rows);
          const int64_t gcols = spec.global_shape[1], grows = spec.global_shape[0];
          // This rank's slice of the source: rows (column-parallel) or columns (row-parallel).
          auto x = [&](int64_t i, int64_t k) -> float {
            const auto [t, gi] = row_src[static_cast<size_t>(i)];
            const int64_t gk = spec.split == SplitDim::in ? rank * cols + k : k;
            return gi < grows ? (*t)[static_cast<size_t>(gi * gcols + gk)] : 0.f;  // vocab pad
          };
          for (int64_t i = 0; i < rows; ++i) {
            for (int64_t g = 0; g < ng; ++g) {
              float amax = 0.f;
              for (int64_t k = g * group; k < std::min(cols, (g + 1) * group); ++k) {
                amax = std::max(amax, std::fabs(x(i, k)));
              }
              const float s = scales[i * ng + g];
              REQUIRE(s == amax / 127.f);
              for (int64_t k = g * group; k < std::min(cols, (g + 1) * group); ++k) {
                const int8_t v = q[i * cols + k];
                REQUIRE(v >= -127);
                REQUIRE(std::fabs(double(v) * s - x(i, k)) <= 0.5 * s * (1 + 1e-6) + 1e-12);
              }
            }
          }
          ++n_int8;
        });
  }
  // 4 projections per layer (qkv and gate_up fused, o, down), and lm_head when it is not tied to
  // the embedding.
  const int layers = md.config.n_layers;
  CHECK(n_int8 == tp * (4 * layers + (md.config.tie_word_embeddings ? 0 : 1)));
  CHECK(n_float > 0);

  SECTION("a float-only reader refuses the int8 tensors by name") {
    REQUIRE_THROWS_WITH(
        load_shard(md, 0,
                   [](const TensorSpec&, const std::vector<int64_t>&, const void*, DType) {}),
        Catch::Contains("is int8, and this reader takes float tensors only"));
  }
}
