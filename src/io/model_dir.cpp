// manifest.json reader (see model_dir.h for the keys).
#include "io/model_dir.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace tpinfer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string join_ints(const std::vector<int>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  return os.str();
}

const json& require(const json& j, const char* key, const std::string& where) {
  TPI_CHECK(j.is_object() && j.contains(key), where << ": missing key '" << key << "'");
  return j.at(key);
}

int64_t require_int(const json& j, const char* key, const std::string& where) {
  const json& v = require(j, key, where);
  TPI_CHECK(v.is_number_integer(),
            where << ": key '" << key << "' must be an integer, found " << v.dump());
  return v.get<int64_t>();
}

std::string require_string(const json& j, const char* key, const std::string& where) {
  const json& v = require(j, key, where);
  TPI_CHECK(v.is_string(), where << ": key '" << key << "' must be a string, found " << v.dump());
  return v.get<std::string>();
}

// A shell word: quoted when it holds anything but [A-Za-z0-9_./=+-].
std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_./=+-") == std::string::npos) {
    return s;
  }
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The command that converts a model directory again, from what its manifest recorded (the
// source directory, tp, dtype and int8 group): for a directory of another format version.
std::string reconvert_command(const json& m, const std::string& path) {
  std::string src = "HF_DIR", tp = "N", dtype;
  if (m.contains("source") && m["source"].is_object() && m["source"].contains("dir") &&
      m["source"]["dir"].is_string()) {
    src = m["source"]["dir"].get<std::string>();
  }
  if (m.contains("tp") && m["tp"].is_number_integer()) tp = std::to_string(m["tp"].get<int64_t>());
  if (m.contains("dtype") && m["dtype"].is_string()) {
    dtype = " --dtype " + shell_word(m["dtype"].get<std::string>());
    if (m["dtype"] == "int8" && m.contains("int8") && m["int8"].is_object() &&
        m["int8"].value("group_size", json(32)) == json(0)) {
      dtype += " --int8-block 0";
    }
  }
  return "/usr/bin/python3 scripts/convert_hf.py --model " + shell_word(src) + " --tp " + tp +
         " --out " + shell_word(path) + dtype;
}

std::string shard_name(int rank, int tp) {
  return "rank" + std::to_string(rank) + "-of-" + std::to_string(tp) + ".h5";
}

}  // namespace

std::string ModelDir::shard_path(int rank) const {
  return path + "/" + shard_name(rank, tp);
}

ModelDir ModelDir::open(const std::string& path_in) {
  std::string path = path_in;
  if (fs::path(path).filename() == "manifest.json") path = fs::path(path).parent_path().string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty()) path = ".";
  if (!fs::is_directory(path)) {
    std::error_code ec;
    const fs::path cwd = fs::current_path(ec);
    TPI_FAIL(path << ": model directory not found"
                  << (fs::path(path).is_relative() && !ec
                          ? " (relative paths are resolved from the working directory, " +
                                cwd.string() + ")"
                          : std::string()));
  }

  const std::string manifest = path + "/manifest.json";
  if (!fs::exists(manifest)) {
    if (fs::exists(path + "/config.json")) {
      TPI_FAIL(manifest << ": not found; " << path
                        << " looks like a Hugging Face model: convert it with "
                           "scripts/convert_hf.py --model "
                        << path << " --tp N --out OUT_DIR");
    }
    TPI_FAIL(manifest << ": not found (convert a Hugging Face model with scripts/convert_hf.py "
                         "--model HF_DIR --tp N --out OUT_DIR)");
  }
  json m;
  {
    std::ifstream in(manifest);
    TPI_CHECK(in, manifest << ": cannot open");
    try {
      in >> m;
    } catch (const json::exception& e) {
      TPI_FAIL(manifest << ": invalid JSON: " << e.what());
    }
  }
  TPI_CHECK(m.is_object(), manifest << ": expected a JSON object");

  const std::string format = require_string(m, "format", manifest);
  TPI_CHECK(format == "tpinfer-shards",
            manifest << ": key 'format' is '" << format << "', expected 'tpinfer-shards'");
  const int64_t version = require_int(m, "format_version", manifest);
  // Version 2 stores q/k/v and gate/up fused (src/model/sharding.h): an older directory holds
  // other tensors, so it is refused up front with the command that converts it again.
  TPI_CHECK(version == kShardFormatVersion,
            path << ": model directory has format_version " << version << ", this build reads "
                 << kShardFormatVersion
                 << (version < kShardFormatVersion
                         ? " (since version 2 q/k/v and gate/up are stored fused)"
                         : " (written by a newer converter)")
                 << "; convert it again: " << reconvert_command(m, path));

  ModelDir md;
  md.path = path;
  md.tokenizer_dir = path;
  md.format_version = static_cast<int>(version);
  md.architecture = require_string(m, "architecture", manifest);
  const std::string dtype = require_string(m, "dtype", manifest);
  TPI_CHECK(dtype == "f32" || dtype == "f16" || dtype == "bf16" || dtype == "int8",
            manifest << ": key 'dtype' is '" << dtype << "', expected f32, f16, bf16 or int8");
  md.dtype = parse_dtype(dtype);
  md.float_dtype = md.dtype;
  if (md.dtype == DType::i8) {
    const json& q = require(m, "int8", manifest);
    TPI_CHECK(q.is_object(), manifest << ": key 'int8' must be an object");
    const int64_t group = require_int(q, "group_size", manifest);
    TPI_CHECK(group == 0 || group == 32, manifest << ": key 'int8.group_size' is " << group
                                                  << ", expected 0 (per output channel) or 32");
    md.int8_group = static_cast<int>(group);
    const std::string fd = require_string(q, "float_dtype", manifest);
    TPI_CHECK(fd == "f32" || fd == "f16" || fd == "bf16",
              manifest << ": key 'int8.float_dtype' is '" << fd << "', expected f32, f16 or bf16");
    md.float_dtype = parse_dtype(fd);
    const std::string sd = require_string(q, "scale_dtype", manifest);
    TPI_CHECK(sd == "f32", manifest << ": key 'int8.scale_dtype' is '" << sd << "', expected f32");
  }
  const int64_t tp = require_int(m, "tp", manifest);
  TPI_CHECK(tp >= 1 && tp <= 4096, manifest << ": key 'tp' must be >= 1, found " << tp);
  md.tp = static_cast<int>(tp);
  md.config = ModelConfig::from_manifest(require(m, "config", manifest), manifest);
  try {
    md.config.check_tp(md.tp);
  } catch (const Error& e) {
    TPI_FAIL(manifest << ": " << e.what());
  }

  const json& files = require(m, "files", manifest);
  TPI_CHECK(files.is_array() && files.size() == static_cast<size_t>(md.tp),
            manifest << ": key 'files' must list " << md.tp << " shard files (one per rank), found "
                     << (files.is_array() ? std::to_string(files.size()) : files.dump()));
  md.files.resize(static_cast<size_t>(md.tp));
  std::vector<bool> seen(static_cast<size_t>(md.tp), false);
  for (const json& f : files) {
    const std::string where = manifest + ": files[]";
    const int64_t rank = require_int(f, "rank", where);
    TPI_CHECK(
        rank >= 0 && rank < md.tp && !seen[static_cast<size_t>(rank)],
        where << ": rank " << rank << " is out of range or listed twice (tp=" << md.tp << ")");
    seen[static_cast<size_t>(rank)] = true;
    ShardFile& sf = md.files[static_cast<size_t>(rank)];
    sf.rank = static_cast<int>(rank);
    sf.name = require_string(f, "path", where);
    TPI_CHECK(sf.name == shard_name(sf.rank, md.tp), where << ": rank " << rank << " path is '"
                                                           << sf.name << "', expected '"
                                                           << shard_name(sf.rank, md.tp) << "'");
    sf.bytes = require_int(f, "bytes", where);
    sf.sha256 = require_string(f, "sha256", where);
    TPI_CHECK(sf.sha256.size() == 64 &&
                  sf.sha256.find_first_not_of("0123456789abcdef") == std::string::npos,
              where << ": rank " << rank << " sha256 is '" << sf.sha256
                    << "', expected 64 lower-case hex digits");
  }
  return md;
}

void check_job_tp(const ModelDir& md, int job_tp) {
  if (md.tp == job_tp) return;
  std::ostringstream hint;
  const std::vector<int> valid = md.config.valid_tp_sizes();
  bool job_tp_valid = false;
  for (int v : valid) job_tp_valid |= v == job_tp;
  if (!job_tp_valid)
    hint << " (tp=" << job_tp << " does not fit this model; valid tp: " << join_ints(valid) << ")";
  TPI_FAIL(md.path << ": model converted for tp=" << md.tp << " but the job runs tp=" << job_tp
                   << ": re-run scripts/convert_hf.py --tp " << job_tp << hint.str());
}

}  // namespace tpinfer
