// Environment variables from the seed (PROMPT, TOKENS, TEMP, ...): the keys that have one.
#include "config/sources.h"

namespace tpinfer::config {

std::vector<Setting> read_env_settings(const std::function<const char*(const char*)>& getenv_fn) {
  std::vector<Setting> out;
  for (const auto& spec : option_specs()) {
    if (spec.env.empty()) continue;
    const char* value = getenv_fn(spec.env.c_str());
    // `export TOKENS=` is how shells unset a variable for one command; treat it as unset.
    if (value == nullptr || *value == '\0') continue;
    out.push_back(Setting{&spec, value, "environment variable " + spec.env, std::nullopt});
  }
  return out;
}

}  // namespace tpinfer::config
