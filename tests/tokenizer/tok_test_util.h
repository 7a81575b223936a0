// Shared helpers of the tokenizer tests: repo paths, cached tokenizers, golden files.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace tok_test {

inline std::string repo(const std::string& rel) {
  return std::string(TPINFER_REPO_ROOT) + "/" + rel;
}
inline std::string data(const std::string& rel) {
  return std::string(TPINFER_TEST_DATA) + "/tokenizer/" + rel;
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_text(path));
}

// The tokenizer of a repo directory holding tokenizer.json (+ tokenizer_config.json), loaded
// once per test process.
inline const tpinfer::Tokenizer& tokenizer(const std::string& rel_dir) {
  static std::map<std::string, std::unique_ptr<tpinfer::Tokenizer>> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[rel_dir];
  if (!slot) slot = tpinfer::Tokenizer::from_dir(repo(rel_dir));
  return *slot;
}

inline const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> out;
    std::istringstream in(read_text(data("corpus.jsonl")));
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line).get<std::string>());
    }
    return out;
  }();
  return lines;
}

inline const nlohmann::json& golden(const std::string& name) {
  static std::map<std::string, nlohmann::json> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, read_json(data("golden_" + name + ".json"))).first;
  return it->second;
}

inline const std::vector<std::string>& golden_names() {
  static const std::vector<std::string> names = {"qwen3", "mistral", "llama3", "stories260K",
                                                 "metaspace"};
  return names;
}

inline std::string escape(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

}  // namespace tok_test
