// Helpers for the io tests: scratch folders, running the converter, reading and rewriting
// safetensors (to make fixtures: drop a tensor, add a bias, change the dtype, shard the file),
// and editing JSON files.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace io_test {

std::string repo_root();
std::string python();
std::string convert_script();
// Path of a bundled model: "stories260K" or a tiny model name.
std::string model_dir(const std::string& model);

// A fresh, empty folder under the build dir, named after the test.
std::string scratch_dir(const std::string& name);
// Copies a model dir (files only) to dst (created fresh).
void copy_dir(const std::string& src, const std::string& dst);

struct RunResult {
  int rc = -1;
  std::string out;
  std::string err;
};
// Runs a shell command, capturing stdout and stderr.
RunResult run(const std::string& cmd);
// Runs scripts/convert_hf.py with args (quiet).
RunResult convert(const std::string& args);

nlohmann::json read_json(const std::string& path);
void write_json(const std::string& path, const nlohmann::json& j);

struct StTensor {
  std::string dtype;  // F32, F16, BF16
  std::vector<int64_t> shape;
  std::vector<unsigned char> data;
  std::vector<float> as_f32() const;
};
using StFile = std::map<std::string, StTensor>;
// Reads model.safetensors or every shard of model.safetensors.index.json.
StFile read_safetensors_dir(const std::string& dir);
StFile read_safetensors(const std::string& path);
void write_safetensors(const std::string& path, const StFile& tensors);
// Converts every tensor's data to F32 / BF16 / F16 (from F32).
StFile cast(const StFile& tensors, const std::string& dtype);
// Writes tensors as n_shards files + model.safetensors.index.json (removes model.safetensors).
void write_sharded(const std::string& dir, const StFile& tensors, int n_shards);

std::string file_text(const std::string& path);

}  // namespace io_test
