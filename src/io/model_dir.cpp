// manifest.json reader (see model_dir.h for the keys).
#include "io/model_dir.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
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
  std::string stages;  // pipeline stages as recorded (counts of layers per stage)
  if (m.contains("pp") && m["pp"].is_number_integer() && m["pp"].get<int64_t>() > 1 &&
      m.contains("pp_layers") && m["pp_layers"].is_array()) {
    stages = " --pp-layers ";
    for (size_t i = 0; i < m["pp_layers"].size(); ++i) {
      const json& n = m["pp_layers"][i];
      stages += (i ? "," : "") + (n.is_number_integer() ? std::to_string(n.get<int64_t>()) : "N");
    }
  }
  return "/usr/bin/python3 scripts/convert_hf.py --model " + shell_word(src) + " --tp " + tp +
         stages + " --out " + shell_word(path) + dtype;
}

}  // namespace

std::string shard_file_name(int rank, int tp, int stage, int pp) {
  const std::string r = "rank" + std::to_string(rank) + "-of-" + std::to_string(tp) + ".h5";
  if (pp == 1) return r;
  return "stage" + std::to_string(stage) + "-of-" + std::to_string(pp) + "-" + r;
}

std::string ModelDir::shard_path(int rank, int stage) const {
  return path + "/" + shard_file_name(rank, tp, stage, pp);
}

const ShardFile* ModelDir::shard_file(int rank, int stage) const {
  const size_t i = static_cast<size_t>(stage) * tp + rank;
  return i < files.size() ? &files[i] : nullptr;
}

StageRange ModelDir::stage_range(int stage) const {
  return StageRange::of(split, stage, config.tie_word_embeddings);
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

  // Pipeline stages: "pp" and "pp_layers", both or neither (a directory without them is one
  // stage).
  if (m.contains("source") && m["source"].is_object() && m["source"].contains("dir") &&
      m["source"]["dir"].is_string()) {
    md.source_dir = m["source"]["dir"].get<std::string>();
  }
  TPI_CHECK(m.contains("pp") == m.contains("pp_layers"),
            manifest << ": keys 'pp' and 'pp_layers' go together, found only '"
                     << (m.contains("pp") ? "pp" : "pp_layers") << "'");
  if (m.contains("pp")) {
    const int64_t pp = require_int(m, "pp", manifest);
    TPI_CHECK(pp >= 1 && pp <= 4096, manifest << ": key 'pp' must be >= 1, found " << pp);
    md.pp = static_cast<int>(pp);
    const json& pl = m.at("pp_layers");
    TPI_CHECK(
        pl.is_array() && pl.size() == static_cast<size_t>(pp),
        manifest << ": key 'pp_layers' must list " << pp << " layer counts, found " << pl.dump());
    std::vector<int> layers;
    for (const json& v : pl) {
      TPI_CHECK(v.is_number_integer(),
                manifest << ": key 'pp_layers' must hold integers, found " << pl.dump());
      layers.push_back(v.get<int>());
    }
    md.split = StageSplit::from_list(layers, md.config.n_layers, manifest + ": key 'pp_layers'");
  } else {
    md.split.layers = {md.config.n_layers};
  }
  const size_t n_files = static_cast<size_t>(md.tp) * md.pp;

  const json& files = require(m, "files", manifest);
  TPI_CHECK(files.is_array() && files.size() == n_files,
            manifest << ": key 'files' must list " << n_files << " shard files (one per "
                     << (md.pp > 1 ? "stage and rank" : "rank") << "), found "
                     << (files.is_array() ? std::to_string(files.size()) : files.dump()));
  md.files.resize(n_files);
  std::vector<bool> seen(n_files, false);
  for (const json& f : files) {
    const std::string where = manifest + ": files[]";
    const int64_t rank = require_int(f, "rank", where);
    const int64_t stage = md.pp > 1 ? require_int(f, "stage", where) : 0;
    TPI_CHECK(stage >= 0 && stage < md.pp,
              where << ": stage " << stage << " is out of range (pp=" << md.pp << ")");
    const size_t index = static_cast<size_t>(stage) * md.tp + static_cast<size_t>(rank);
    TPI_CHECK(rank >= 0 && rank < md.tp && !seen[index],
              where << ": rank " << rank << (md.pp > 1 ? " of stage " + std::to_string(stage) : "")
                    << " is out of range or listed twice (tp=" << md.tp << ")");
    seen[index] = true;
    ShardFile& sf = md.files[index];
    sf.rank = static_cast<int>(rank);
    sf.stage = static_cast<int>(stage);
    sf.name = require_string(f, "path", where);
    const std::string want = shard_file_name(sf.rank, md.tp, sf.stage, md.pp);
    TPI_CHECK(sf.name == want, where << ": rank " << rank << " path is '" << sf.name
                                     << "', expected '" << want << "'");
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

void check_job_pp(const ModelDir& md, int job_tp, int job_pp) {
  if (md.pp == job_pp) return;
  const std::string src = md.source_dir.empty() ? "HF_DIR" : md.source_dir;
  // The suggested output: this directory's name without its layout suffix, then the job's.
  static const std::regex layout_suffix("(-pp[0-9]+)?-tp[0-9]+$");
  const std::string out = std::regex_replace(md.path, layout_suffix, "") +
                          (job_pp > 1 ? "-pp" + std::to_string(job_pp) : "") + "-tp" +
                          std::to_string(job_tp);
  TPI_FAIL(md.path << ": model converted for pp=" << md.pp << " (layers per stage "
                   << md.split.describe() << ") but the job runs pp=" << job_pp
                   << ": convert it again with: python3 scripts/convert_hf.py --model " << src
                   << " --tp " << job_tp << " --pp " << job_pp << " --out " << out);
}

}  // namespace tpinfer
