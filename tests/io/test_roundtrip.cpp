// Converter + loader round trips: every model at tp 1, 2, 4 in f32 and bf16 (and f16), each
// rank's shard loaded through load_shard, the slices put back together and compared bit for bit
// with the original HF tensors (f32 exactly; bf16/f16 equal to the C++ round-to-nearest-even of
// the f32 source). Also sharded and bf16/f16 safetensors inputs, and lm_head-less checkpoints.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "io/model_dir.h"
#include "io/shard_loader.h"
#include "io_test_util.h"

using namespace tpinfer;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The bytes the converter should store for an HF tensor in dtype dt.
std::vector<unsigned char> expected_bytes(const io_test::StTensor& t, DType dt) {
  if (dt == DType::f32 && t.dtype == "F32") return t.data;
  const std::vector<float> f = t.as_f32();
  std::vector<unsigned char> out(f.size() * dtype_size(dt));
  for (size_t i = 0; i < f.size(); ++i) {
    if (dt == DType::f32) {
      std::memcpy(out.data() + 4 * i, &f[i], 4);
    } else {
      const uint16_t h = dt == DType::bf16 ? f32_to_bf16(f[i]) : f32_to_f16(f[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

struct Loaded {
  std::vector<int64_t> shape;
  std::vector<unsigned char> data;
};

// Loads every rank, checks order/dtype/shapes, reassembles each tensor and compares it with the
// HF original. Returns the number of tensors checked.
size_t check_model_dir(const std::string& out, const io_test::StFile& hf, DType dt, int tp) {
  const ModelDir md = ModelDir::open(out);
  REQUIRE(md.tp == tp);
  REQUIRE(md.dtype == dt);
  REQUIRE(md.format_version == 2);
  REQUIRE(md.tokenizer_dir == md.path);
  const std::vector<TensorSpec> table = sharding_table(md.config);
  const size_t es = dtype_size(dt);

  std::vector<std::map<std::string, Loaded>> ranks(static_cast<size_t>(tp));
  for (int r = 0; r < tp; ++r) {
    size_t i = 0;
    load_shard(md, r,
               [&](const TensorSpec& spec, const std::vector<int64_t>& local, const void* data,
                   DType dtype) {
                 REQUIRE(i < table.size());
                 CHECK(spec.name == table[i].name);  // table order
                 CHECK(dtype == dt);
                 CHECK(local == spec.local_shape(tp));
                 int64_t n = 1;
                 for (int64_t s : local) n *= s;
                 Loaded& l = ranks[static_cast<size_t>(r)][spec.name];
                 l.shape = local;
                 l.data.assign(
                     static_cast<const unsigned char*>(data),
                     static_cast<const unsigned char*>(data) + static_cast<size_t>(n) * es);
                 ++i;
               });
    CHECK(i == table.size());
  }

  // A fused projection's rank slice is [part_0 rows of rank r | part_1 rows of rank r | ...]:
  // cut it back into its parts, which are then checked like any column-parallel tensor.
  std::vector<TensorSpec> checked;
  for (const TensorSpec& spec : table) {
    for (const TensorSpec& part : spec.unfused()) checked.push_back(part);
    if (spec.parts.empty()) continue;
    const int64_t cols = spec.global_shape.size() == 2 ? spec.global_shape[1] : 1;
    for (int r = 0; r < tp; ++r) {
      const Loaded& fused = ranks[static_cast<size_t>(r)].at(spec.name);
      size_t offset = 0;
      for (const TensorSpec& part : spec.unfused()) {
        Loaded& l = ranks[static_cast<size_t>(r)][part.name];
        l.shape = part.local_shape(tp);
        const size_t bytes = static_cast<size_t>(l.shape[0] * cols) * es;
        REQUIRE(offset + bytes <= fused.data.size());
        l.data.assign(fused.data.begin() + static_cast<std::ptrdiff_t>(offset),
                      fused.data.begin() + static_cast<std::ptrdiff_t>(offset + bytes));
        offset += bytes;
      }
      CHECK(offset == fused.data.size());
    }
  }

  for (const TensorSpec& spec : checked) {
    CAPTURE(spec.name);
    REQUIRE(hf.count(spec.name) == 1);
    const io_test::StTensor& src = hf.at(spec.name);
    REQUIRE(src.shape == spec.global_shape);
    const std::vector<unsigned char> want = expected_bytes(src, dt);
    std::vector<unsigned char> got(want.size(), 0xAB);
    const int64_t rows = spec.global_shape[0];
    const int64_t cols = spec.global_shape.size() == 2 ? spec.global_shape[1] : 1;
    for (int r = 0; r < tp; ++r) {
      const Loaded& l = ranks[static_cast<size_t>(r)].at(spec.name);
      switch (spec.split) {
        case SplitDim::none:
          CHECK(l.data == want);  // replicated: every rank holds all of it
          if (r == 0) got = l.data;
          break;
        case SplitDim::out: {
          const int64_t n = l.shape[0];
          for (int64_t i = 0; i < n; ++i) {
            const int64_t g = r * n + i;
            const unsigned char* row = l.data.data() + static_cast<size_t>(i * cols) * es;
            if (g < rows) {
              std::memcpy(got.data() + static_cast<size_t>(g * cols) * es, row,
                          static_cast<size_t>(cols) * es);
            } else {  // vocab padding rows must be zero
              REQUIRE(spec.vocab_padded);
              for (size_t b = 0; b < static_cast<size_t>(cols) * es; ++b) REQUIRE(row[b] == 0);
            }
          }
          break;
        }
        case SplitDim::in: {
          const int64_t n = l.shape[1];
          for (int64_t i = 0; i < rows; ++i) {
            std::memcpy(got.data() + static_cast<size_t>(i * cols + r * n) * es,
                        l.data.data() + static_cast<size_t>(i * n) * es,
                        static_cast<size_t>(n) * es);
          }
          break;
        }
      }
    }
    CHECK(got == want);
  }
  return table.size();
}

// Mixtral's Hub names -> the table's (the converter's renaming, done independently here).
io_test::StFile table_names(const io_test::StFile& hf) {
  io_test::StFile out;
  for (const auto& [name, t] : hf) {
    std::string n = name;
    const size_t b = n.find(".block_sparse_moe.");
    if (b != std::string::npos) {
      n.replace(b, 18, ".mlp.");
      for (auto [from, to] : {std::pair<const char*, const char*>{".w1.", ".gate_proj."},
                              {".w3.", ".up_proj."},
                              {".w2.", ".down_proj."}}) {
        const size_t w = n.find(from);
        if (w != std::string::npos) n.replace(w, 4, to);
      }
    }
    out[n] = t;
  }
  return out;
}

std::string convert_to(const std::string& model_dir, const std::string& out, int tp,
                       const std::string& dtype) {
  const io_test::RunResult r =
      io_test::convert("--model '" + model_dir + "' --tp " + std::to_string(tp) + " --out '" + out +
                       "'" + (dtype.empty() ? "" : " --dtype " + dtype));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  return out;
}

}  // namespace

TEST_CASE("round trip: every model, tp 1/2/4, f32 and bf16", "[roundtrip][converter]") {
  const std::string model = GENERATE(as<std::string>{}, "stories260K", "tiny-qwen3", "tiny-mistral",
                                     "tiny-llama", "tiny-qwen3-moe", "tiny-mixtral");
  const int tp = GENERATE(1, 2, 4);
  const std::string dtype = GENERATE(as<std::string>{}, "f32", "bf16");
  CAPTURE(model, tp, dtype);
  const std::string out =
      io_test::scratch_dir("rt-" + model + "-tp" + std::to_string(tp) + "-" + dtype);
  convert_to(io_test::model_dir(model), out, tp, dtype);
  const io_test::StFile hf = table_names(io_test::read_safetensors_dir(io_test::model_dir(model)));
  const size_t n = check_model_dir(out, hf, parse_dtype(dtype), tp);
  CHECK(n >= 15);  // tiny-qwen3: embed, 2 x (8 per layer), norm

  // Manifest bookkeeping: sizes and hashes of the shards, copied files.
  const json m = io_test::read_json(out + "/manifest.json");
  CHECK(m.at("format") == "tpinfer-shards");
  CHECK(m.at("n_tensors") == n);
  CHECK(m.at("files").size() == static_cast<size_t>(tp));
  for (const json& f : m.at("files")) {
    const std::string p = out + "/" + f.at("path").get<std::string>();
    CHECK(fs::file_size(p) == f.at("bytes").get<uint64_t>());
    CHECK(f.at("sha256").get<std::string>().size() == 64);
  }
  CHECK(fs::exists(out + "/config.json"));
  CHECK(fs::exists(out + "/generation_config.json"));
  CHECK(fs::exists(out + "/tokenizer.json") == (model == "stories260K"));
  CHECK(m.at("source").at("dir") == fs::canonical(io_test::model_dir(model)).string());
}

TEST_CASE("round trip: f16 output", "[roundtrip][converter]") {
  const std::string out = io_test::scratch_dir("rt-f16");
  convert_to(io_test::model_dir("tiny-mistral"), out, 2, "f16");
  check_model_dir(out, io_test::read_safetensors_dir(io_test::model_dir("tiny-mistral")),
                  DType::f16, 2);
}

TEST_CASE("converter inputs: sharded, bf16 and f16 safetensors", "[roundtrip][converter]") {
  const std::string work = io_test::scratch_dir("inputs");
  const io_test::StFile f32 = io_test::read_safetensors_dir(io_test::model_dir("tiny-qwen3"));

  SECTION("sharded f32 checkpoint (model.safetensors.index.json) -> f32") {
    const std::string hf = work + "/hf";
    io_test::copy_dir(io_test::model_dir("tiny-qwen3"), hf);
    io_test::write_sharded(hf, f32, 3);
    REQUIRE_FALSE(fs::exists(hf + "/model.safetensors"));
    const std::string out = convert_to(hf, work + "/out", 2, "");  // default: source dtype
    CHECK(io_test::read_json(out + "/manifest.json").at("dtype") == "f32");
    check_model_dir(out, f32, DType::f32, 2);
    CHECK(io_test::read_json(out + "/manifest.json").at("source").at("weights").size() == 3);
  }
  SECTION("bf16 checkpoint -> f32 is exact, -> bf16 is a copy") {
    const std::string hf = work + "/hf";
    io_test::copy_dir(io_test::model_dir("tiny-qwen3"), hf);
    const io_test::StFile bf = io_test::cast(f32, "BF16");
    io_test::write_safetensors(hf + "/model.safetensors", bf);
    check_model_dir(convert_to(hf, work + "/out32", 4, "f32"), bf, DType::f32, 4);
    const std::string out16 = convert_to(hf, work + "/out16", 4, "");
    CHECK(io_test::read_json(out16 + "/manifest.json").at("dtype") == "bf16");
    check_model_dir(out16, bf, DType::bf16, 4);
  }
  SECTION("f16 checkpoint -> bf16") {
    const std::string hf = work + "/hf";
    io_test::copy_dir(io_test::model_dir("tiny-llama"), hf);
    const io_test::StFile h =
        io_test::cast(io_test::read_safetensors_dir(io_test::model_dir("tiny-llama")), "F16");
    io_test::write_safetensors(hf + "/model.safetensors", h);
    check_model_dir(convert_to(hf, work + "/out", 2, "bf16"), h, DType::bf16, 2);
  }
  SECTION("re-converting at another tp replaces the old shards") {
    const std::string out = work + "/out";
    convert_to(io_test::model_dir("tiny-qwen3"), out, 4, "f32");
    REQUIRE(fs::exists(out + "/rank3-of-4.h5"));
    convert_to(io_test::model_dir("tiny-qwen3"), out, 2, "f32");
    CHECK_FALSE(fs::exists(out + "/rank0-of-4.h5"));
    CHECK_FALSE(fs::exists(out + "/rank3-of-4.h5"));
    check_model_dir(out, f32, DType::f32, 2);
  }
  SECTION("untied config without lm_head.weight is converted as tied") {
    const std::string hf = work + "/hf";
    io_test::copy_dir(io_test::model_dir("tiny-llama"), hf);
    io_test::StFile t = io_test::read_safetensors_dir(hf);
    t.erase("lm_head.weight");
    io_test::write_safetensors(hf + "/model.safetensors", t);
    const std::string out = convert_to(hf, work + "/out", 2, "f32");
    const ModelDir md = ModelDir::open(out);
    CHECK(md.config.tie_word_embeddings);
    check_model_dir(out, t, DType::f32, 2);
  }
}

TEST_CASE("bf16 rounding is round-to-nearest-even, as torch does", "[converter]") {
  // Values straddling bf16 rounding boundaries, including exact ties, in one F32 tensor.
  const std::string work = io_test::scratch_dir("bf16-rne");
  const std::string hf = work + "/hf";
  io_test::copy_dir(io_test::model_dir("stories260K"), hf);
  io_test::StFile t = io_test::read_safetensors_dir(hf);
  io_test::StTensor& norm = t.at("model.norm.weight");  // [64]
  const uint32_t patterns[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu,
                               0xbf808000u, 0x7f7fffffu, 0x00000001u, 0x7f800000u,
                               0xff800000u, 0x7fc00001u, 0x3f80ffffu, 0x80000000u};
  for (size_t i = 0; i < std::size(patterns); ++i) {
    std::memcpy(norm.data.data() + 4 * i, &patterns[i], 4);
  }
  io_test::write_safetensors(hf + "/model.safetensors", t);
  const std::string out = convert_to(hf, work + "/out", 1, "bf16");
  check_model_dir(out, t, DType::bf16, 1);  // compares with tpinfer::f32_to_bf16 bit for bit
  // And against the expected values spelled out for the ties (even mantissa wins).
  CHECK(f32_to_bf16(1.00390625f) == 0x3f80);  // 0x3f808000: tie, round down to even
  std::vector<uint16_t> first(16);
  const ModelDir md = ModelDir::open(out);
  load_shard(md, 0,
             [&](const TensorSpec& spec, const std::vector<int64_t>&, const void* data, DType) {
               if (spec.name == "model.norm.weight")
                 std::memcpy(first.data(), data, 2 * first.size());
             });
  CHECK(first[0] == 0x3f80);  // tie -> even (down)
  CHECK(first[1] == 0x3f82);  // tie -> even (up)
  CHECK(first[2] == 0x3f81);  // just above the tie
  CHECK(first[3] == 0x3f80);  // just below
  CHECK(first[5] == 0x7f80);  // FLT_MAX rounds to inf, as torch does
  CHECK(first[9] == 0x7fc0);  // NaN stays NaN (quiet)
}
