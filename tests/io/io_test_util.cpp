// Helpers for the io tests (see io_test_util.h).
#include "io_test_util.h"

#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/dtype.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace io_test {

std::string repo_root() {
  return TPINFER_REPO_ROOT;
}
std::string python() {
  return TPINFER_SYSTEM_PYTHON;
}
std::string convert_script() {
  return repo_root() + "/scripts/convert_hf.py";
}

std::string model_dir(const std::string& model) {
  if (model == "stories260K") return repo_root() + "/configs/models/stories260K";
  return std::string(TPINFER_TEST_DATA) + "/models/" + model;
}

std::string scratch_dir(const std::string& name) {
  std::string safe = name;
  for (char& c : safe) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  const fs::path p = fs::path(TPINFER_BUILD_DIR) / "test-io" / safe;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void copy_dir(const std::string& src, const std::string& dst) {
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(src)) {
    if (e.is_regular_file()) fs::copy_file(e.path(), fs::path(dst) / e.path().filename());
  }
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

RunResult run(const std::string& cmd) {
  static int counter = 0;
  const std::string base = (fs::path(TPINFER_BUILD_DIR) / "test-io").string();
  fs::create_directories(base);
  const std::string stem =
      base + "/run-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const std::string full = cmd + " > '" + stem + ".out' 2> '" + stem + ".err'";
  const int status = std::system(full.c_str());
  RunResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = file_text(stem + ".out");
  r.err = file_text(stem + ".err");
  fs::remove(stem + ".out");
  fs::remove(stem + ".err");
  return r;
}

RunResult convert(const std::string& args) {
  return run(python() + " '" + convert_script() + "' --quiet " + args);
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  json j;
  in >> j;
  return j;
}

void write_json(const std::string& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
}

std::vector<float> StTensor::as_f32() const {
  std::vector<float> v;
  if (dtype == "F32") {
    v.resize(data.size() / 4);
    std::memcpy(v.data(), data.data(), data.size());
  } else {
    v.resize(data.size() / 2);
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, data.data() + 2 * i, 2);
      v[i] = dtype == "BF16" ? tpinfer::bf16_to_f32(h) : tpinfer::f16_to_f32(h);
    }
  }
  return v;
}

StFile read_safetensors(const std::string& path) {
  const std::string bytes = file_text(path);
  if (bytes.size() < 8) throw std::runtime_error(path + ": too short");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  const json header = json::parse(bytes.substr(8, n));
  StFile out;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") continue;
    StTensor t;
    t.dtype = e.at("dtype").get<std::string>();
    t.shape = e.at("shape").get<std::vector<int64_t>>();
    const size_t begin = e.at("data_offsets")[0].get<size_t>();
    const size_t end = e.at("data_offsets")[1].get<size_t>();
    t.data.assign(bytes.begin() + 8 + n + begin, bytes.begin() + 8 + n + end);
    out[name] = std::move(t);
  }
  return out;
}

StFile read_safetensors_dir(const std::string& dir) {
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (!fs::exists(index)) return read_safetensors(dir + "/model.safetensors");
  StFile out;
  std::map<std::string, bool> files;
  for (const auto& [name, file] : read_json(index.string()).at("weight_map").items()) {
    files[file.get<std::string>()] = true;
  }
  for (const auto& [file, _] : files) {
    for (auto& [name, t] : read_safetensors(dir + "/" + file)) out[name] = t;
  }
  return out;
}

void write_safetensors(const std::string& path, const StFile& tensors) {
  json header = json::object();
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    header[name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  header["__metadata__"] = {{"format", "pt"}};
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& [name, t] : tensors) {
    out.write(reinterpret_cast<const char*>(t.data.data()),
              static_cast<std::streamsize>(t.data.size()));
  }
}

StFile cast(const StFile& tensors, const std::string& dtype) {
  StFile out;
  for (const auto& [name, t] : tensors) {
    const std::vector<float> f = t.as_f32();
    StTensor c;
    c.dtype = dtype;
    c.shape = t.shape;
    if (dtype == "F32") {
      c.data.resize(f.size() * 4);
      std::memcpy(c.data.data(), f.data(), c.data.size());
    } else {
      c.data.resize(f.size() * 2);
      for (size_t i = 0; i < f.size(); ++i) {
        const uint16_t h = dtype == "BF16" ? tpinfer::f32_to_bf16(f[i]) : tpinfer::f32_to_f16(f[i]);
        std::memcpy(c.data.data() + 2 * i, &h, 2);
      }
    }
    out[name] = std::move(c);
  }
  return out;
}

void write_sharded(const std::string& dir, const StFile& tensors, int n_shards) {
  std::vector<StFile> parts(static_cast<size_t>(n_shards));
  json weight_map = json::object();
  int i = 0;
  for (const auto& [name, t] : tensors) {
    const int s = i++ % n_shards;
    const std::string file = "model-0000" + std::to_string(s + 1) + "-of-0000" +
                             std::to_string(n_shards) + ".safetensors";
    parts[static_cast<size_t>(s)][name] = t;
    weight_map[name] = file;
  }
  for (int s = 0; s < n_shards; ++s) {
    write_safetensors(dir + "/model-0000" + std::to_string(s + 1) + "-of-0000" +
                          std::to_string(n_shards) + ".safetensors",
                      parts[static_cast<size_t>(s)]);
  }
  write_json(dir + "/model.safetensors.index.json",
             {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}});
  fs::remove(dir + "/model.safetensors");
}

}  // namespace io_test
