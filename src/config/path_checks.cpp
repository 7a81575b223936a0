// File-argument checks (see path_checks.h).
#include "config/path_checks.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace tpinfer {
namespace fs = std::filesystem;

namespace {

const char* kind_of(const fs::file_status& st) {
  switch (st.type()) {
    case fs::file_type::directory:
      return "a directory";
    case fs::file_type::regular:
      return "a regular file";
    case fs::file_type::not_found:
      return "missing";
    case fs::file_type::symlink:
      return "a dangling symlink";
    case fs::file_type::fifo:
      return "a named pipe";
    case fs::file_type::socket:
      return "a socket";
    case fs::file_type::block:
    case fs::file_type::character:
      return "a device";
    case fs::file_type::none:
    case fs::file_type::unknown:
      return "of unknown type";
  }
  return "of unknown type";
}

std::string cwd_note(const std::string& path) {
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (!fs::path(path).is_relative() || ec) return "";
  return " (relative to the working directory " + cwd.string() + ")";
}

}  // namespace

void check_readable_file(const std::string& key, const std::string& path,
                         const std::string& expected) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  TPI_CHECK(st.type() != fs::file_type::not_found, "key '" << key << "': '" << path
                                                           << "' does not exist" << cwd_note(path)
                                                           << "; expected " << expected);
  TPI_CHECK(st.type() == fs::file_type::regular, "key '" << key << "': '" << path << "' is "
                                                         << kind_of(st) << "; expected "
                                                         << expected);
  TPI_CHECK(::access(path.c_str(), R_OK) == 0,
            "key '" << key << "': '" << path << "' cannot be read (" << std::strerror(errno)
                    << "); expected " << expected);
}

void check_writable_file(const std::string& key, const std::string& path,
                         const std::string& expected) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (st.type() != fs::file_type::not_found) {
    TPI_CHECK(st.type() == fs::file_type::regular, "key '" << key << "': '" << path << "' is "
                                                           << kind_of(st) << "; expected "
                                                           << expected);
    TPI_CHECK(::access(path.c_str(), W_OK) == 0,
              "key '" << key << "': '" << path << "' is not writable (" << std::strerror(errno)
                      << "); expected " << expected);
    return;
  }
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const fs::file_status dst = fs::status(dir, ec);
  TPI_CHECK(dst.type() == fs::file_type::directory,
            "key '" << key << "': the directory of '" << path << "' (" << dir.string() << ") is "
                    << kind_of(dst) << cwd_note(path) << "; expected " << expected
                    << " in an existing directory");
  TPI_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
            "key '" << key << "': cannot create '" << path << "': its directory is not writable ("
                    << std::strerror(errno) << "); expected " << expected);
}

void check_file_keys(const RunConfig& cfg) {
  if (!cfg.prompt_file.empty()) {
    check_readable_file("prompt_file", cfg.prompt_file, "a readable text file with the prompt");
  }
  if (!cfg.tokenizer.empty()) {
    std::error_code ec;
    TPI_CHECK(fs::is_directory(cfg.tokenizer, ec),
              "key 'tokenizer': '"
                  << cfg.tokenizer << "' is " << kind_of(fs::status(cfg.tokenizer, ec))
                  << cwd_note(cfg.tokenizer) << "; expected a directory holding tokenizer.json");
  }
  if (!cfg.input.empty()) {
    check_readable_file("input", cfg.input, "a JSON Lines file of requests");
  }
  if (!cfg.output.empty()) {
    check_writable_file("output", cfg.output, "a JSON Lines file to append results to");
    std::error_code ec;
    // A job reading its own output would take every request line for a finished result.
    TPI_CHECK(cfg.input.empty() || !fs::equivalent(cfg.input, cfg.output, ec),
              "keys 'input' and 'output' name the same file ('"
                  << cfg.input << "' and '" << cfg.output
                  << "'); expected the results in a file of their own");
  }
  if (!cfg.metrics_json.empty()) {
    check_writable_file("metrics_json", cfg.metrics_json, "a JSON file to write the metrics to");
    std::error_code ec;
    for (const auto& [key, path] : {std::pair<const char*, const std::string&>{"input", cfg.input},
                                    {"output", cfg.output},
                                    {"prompt_file", cfg.prompt_file}}) {
      TPI_CHECK(path.empty() || !fs::equivalent(path, cfg.metrics_json, ec),
                "keys '" << key << "' and 'metrics_json' name the same file ('" << path
                         << "'); expected the metrics in a file of their own");
    }
  }
}

}  // namespace tpinfer
