// The three places a run-configuration value can come from, each read into the same form: a
// list of (key, text, where) settings. parse_run_config applies them in precedence order.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/options.h"

namespace tpinfer::config {

struct Setting {
  const OptionSpec* spec = nullptr;
  std::string text;    // the value as written
  std::string origin;  // for messages: "configs/demo.yaml:7", "environment variable TEMP",
                       // "flag --temperature"
  // Set when the value is not text at all (a YAML list or mapping, or an empty YAML value for a
  // non-string key): what was found instead, e.g. "a list".
  std::optional<std::string> not_text;
};

// Reads the top-level mapping of a YAML file. Throws on unreadable or invalid YAML, a top level
// that is not a mapping, unknown keys (with a did-you-mean) and keys given twice.
std::vector<Setting> read_yaml_settings(const std::string& path);

// The keys that have an environment variable, for those variables that are set and non-empty.
std::vector<Setting> read_env_settings(const std::function<const char*(const char*)>& getenv_fn);

struct CommandLine {
  std::optional<std::string> config_path;  // the positional YAML argument
  std::vector<Setting> settings;           // in command-line order; a repeated flag: last wins
  bool help = false;
  bool version = false;
};

// Parses argv[1..]. Throws on unknown flags (with a did-you-mean), a missing value and more
// than one positional argument.
CommandLine read_command_line(int argc, const char* const* argv);

}  // namespace tpinfer::config
