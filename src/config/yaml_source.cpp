// The YAML config file: a flat mapping of key: value, read into settings with file:line origins.
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "config/sources.h"
#include "config/suggest.h"
#include "core/error.h"

namespace tpinfer::config {

namespace {

// yaml-cpp marks are 0-based; editors count from 1.
std::string where(const std::string& path, const YAML::Mark& mark) {
  if (mark.is_null()) return path;
  return path + ":" + std::to_string(mark.line + 1);
}

const char* node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
      return "nothing";
    case YAML::NodeType::Null:
      return "an empty value";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
  }
  return "?";
}

std::vector<std::string> all_keys() {
  std::vector<std::string> keys;
  for (const auto& spec : option_specs()) keys.push_back(spec.key);
  return keys;
}

}  // namespace

std::vector<Setting> read_yaml_settings(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    TPI_FAIL("config file '" << path
                             << "' is a directory; expected a YAML file (to run a model "
                                "directory without one, pass --model "
                             << path << ")");
  }
  if (!std::filesystem::exists(path, ec)) {
    TPI_FAIL("config file '" << path << "' does not exist; expected a YAML file");
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    TPI_FAIL("cannot open config file '" << path << "'");
  } catch (const YAML::ParserException& e) {
    TPI_FAIL(path << ":" << e.mark.line + 1 << ":" << e.mark.column + 1
                  << ": invalid YAML: " << e.msg);
  }

  std::vector<Setting> out;
  if (root.IsNull()) return out;  // an empty file (or only comments) sets nothing
  if (!root.IsMap()) {
    TPI_FAIL(where(path, root.Mark()) << ": expected a mapping of 'key: value' lines at the top "
                                         "level, found "
                                      << node_kind(root));
  }
  std::map<std::string, std::string> seen;  // key -> where it was first set
  for (const auto& entry : root) {
    // Copies, not references: Nodes are handles, and yaml-cpp's iterator hands out temporaries.
    const YAML::Node key_node = entry.first;
    const YAML::Node value = entry.second;
    const std::string key_at = where(path, key_node.Mark());
    if (!key_node.IsScalar()) {
      TPI_FAIL(key_at << ": expected a key name, found " << node_kind(key_node));
    }
    const std::string key = key_node.Scalar();
    const OptionSpec* spec = find_option(key);
    if (spec == nullptr) {
      std::ostringstream msg;
      msg << "unknown key '" << key << "' in " << key_at;
      if (auto near = closest_match(key, all_keys()))
        msg << " (did you mean '" << *near << "'?)";
      else
        msg << " (see tpinfer --help or configs/README.md for the keys)";
      throw Error(msg.str());
    }
    if (auto [first, inserted] = seen.emplace(key, key_at); !inserted) {
      TPI_FAIL(key_at << ": key '" << key << "' is set twice (first at " << first->second
                      << "); expected each key once");
    }

    Setting s;
    s.spec = spec;
    // An empty value's mark points past the key (often the next line); the key's line is the
    // one to show.
    s.origin = value.IsNull() ? key_at : where(path, value.Mark());
    if (value.IsScalar()) {
      s.text = value.Scalar();
    } else if (value.IsNull() && spec->kind == OptionKind::string) {
      s.text = "";  // `system:` with nothing after it means the empty string
    } else {
      s.not_text = node_kind(value);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tpinfer::config
