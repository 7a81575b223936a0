// The table of run-configuration keys: for each, its RunConfig member, value type and range,
// environment variable and help. The YAML reader, the flag parser, --help, describe() and
// validate() all read this one table, so a key added here is a key everywhere.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config/run_config.h"

namespace tpinfer::config {

enum class OptionKind { string, boolean, integer, number, choice };

struct OptionSpec {
  std::string key;         // YAML key, snake_case; the flag is "--" + key with '_' -> '-'
  std::string env;         // environment variable, "" when none
  std::string group;       // --help section
  std::string value_name;  // placeholder in --help: PATH, N, X, TEXT, auto|cpu|cuda
  std::string help;
  std::string default_note;  // --help default when the plain value would mislead; "" = value
  OptionKind kind = OptionKind::string;
  std::string expected;  // what a valid value is: "a number in (0, 1]"
  // Parses text into the member; false when the text is not a valid value.
  std::function<bool(RunConfig&, const std::string&)> set;
  // The member's value as text that set() reads back ("true", "0.9", "cuda").
  std::function<std::string(const RunConfig&)> get;
  // Whether the member's current value is in range (for configs built in code).
  std::function<bool(const RunConfig&)> valid;
};

const std::vector<OptionSpec>& option_specs();
const OptionSpec* find_option(std::string_view key);  // exact key, nullptr if none
std::string flag_name(const OptionSpec& spec);        // "--max-new-tokens"

// true/false, 1/0, yes/no, on/off, any case, surrounding spaces ignored; false if none of them.
bool parse_bool(const std::string& text, bool& out);

}  // namespace tpinfer::config
