// --help and --version text, generated from the key table so it cannot drift from the parser.
#include <sstream>

#include "config/options.h"
#include "config/run_config.h"

#ifndef TPINFER_VERSION
#define TPINFER_VERSION "unknown"
#endif

namespace tpinfer {

std::string help_text(const std::string& program) {
  constexpr size_t kColumn = 30;  // where the description starts
  const std::string indent(kColumn, ' ');
  std::ostringstream os;
  os << "Usage: " << program << " [CONFIG.yaml] [--key value ...]\n"
     << "       " << program << " --model DIR [--key value ...]\n\n"
     << "Tensor-parallel LLM inference; run under mpirun, one rank per GPU (or per CPU slice).\n"
     << "Every key of CONFIG.yaml is also a flag: key max_new_tokens is --max-new-tokens.\n"
     << "Precedence: flag > environment variable > CONFIG.yaml > default.\n"
     << "Boolean flags: --chat means --chat=true; --chat=false or --chat false turns it off.\n";

  std::string group;
  const RunConfig defaults;
  for (const auto& spec : config::option_specs()) {
    if (spec.group != group) {
      group = spec.group;
      os << "\n" << group << ":\n";
    }
    std::string left = "  " + config::flag_name(spec);
    left += spec.kind == config::OptionKind::boolean ? "[=BOOL]" : " " + spec.value_name;
    os << left;
    if (left.size() + 1 >= kColumn)
      os << "\n" << indent;
    else
      os << std::string(kColumn - left.size(), ' ');
    os << spec.help << "\n";

    std::string def = spec.default_note.empty() ? spec.get(defaults) : spec.default_note;
    if (def.empty()) def = "\"\"";
    os << indent << "default: " << def;
    if (!spec.env.empty()) os << "; env " << spec.env;
    os << "\n";
  }
  os << "\nOther:\n"
     << "  -h, --help                  print this help and exit\n"
     << "  --version                   print the version and exit\n"
     << "\nExamples:\n"
     << "  mpirun -np 4 " << program << " configs/demo.yaml\n"
     << "  mpirun -np 4 " << program
     << " configs/demo.yaml --temperature 0 --max-new-tokens 50 --prompt \"Once\"\n"
     << "  mpirun -np 4 " << program
     << " --model build/models/stories260K-tp4 --prompt \"Hello\" --backend cpu\n"
     << "\nAll keys, with their YAML form: configs/README.md\n";
  return os.str();
}

std::string version_text() {
  return std::string("tpinfer ") + TPINFER_VERSION + "\n";
}

}  // namespace tpinfer
