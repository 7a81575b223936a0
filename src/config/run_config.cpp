// parse_run_config: defaults, then the YAML file, then environment variables, then flags, each
// value checked against the key table (options.cpp) as it is applied so that an error names the
// place it came from. Also validate() for configs built in code, and describe().
#include "config/run_config.h"

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "config/options.h"
#include "config/path_checks.h"
#include "config/sources.h"
#include "core/error.h"

namespace tpinfer {

namespace {

using config::OptionSpec;
using config::Setting;

std::string quoted_for_message(const std::string& text) {
  constexpr size_t kMax = 60;
  std::string shown = text.size() > kMax ? text.substr(0, kMax) + "..." : text;
  return "'" + shown + "'";
}

void apply(RunConfig& cfg, const Setting& s) {
  const OptionSpec& spec = *s.spec;
  if (s.not_text) {
    TPI_FAIL(s.origin << ": key '" << spec.key << "': expected " << spec.expected << ", found "
                      << *s.not_text);
  }
  if (!spec.set(cfg, s.text)) {
    TPI_FAIL(s.origin << ": key '" << spec.key << "': expected " << spec.expected << ", found "
                      << quoted_for_message(s.text));
  }
}

// Applies the settings of one source. `prompt` and `prompt_file` are one slot: a source that
// sets either replaces what lower sources put in both, and one source may not give both.
void apply_source(RunConfig& cfg, const std::vector<Setting>& settings) {
  const Setting* prompt = nullptr;
  const Setting* prompt_file = nullptr;
  for (const auto& s : settings) {
    apply(cfg, s);
    if (s.spec->key == "prompt") prompt = &s;
    if (s.spec->key == "prompt_file") prompt_file = &s;
  }
  if (prompt && prompt_file && !cfg.prompt.empty() && !cfg.prompt_file.empty()) {
    TPI_FAIL("'prompt' (" << prompt->origin << ") and 'prompt_file' (" << prompt_file->origin
                          << ") are both set; expected at most one of them");
  }
  if (prompt && !prompt_file) cfg.prompt_file.clear();
  if (prompt_file && !prompt) cfg.prompt.clear();
}

bool contains_flag(int argc, const char* const* argv, std::initializer_list<const char*> names) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") return false;
    for (const char* n : names) {
      if (arg == n) return true;
    }
  }
  return false;
}

// Under mpirun every rank parses the command line; print --help/--version once.
bool is_first_rank(const std::function<const char*(const char*)>& getenv_fn) {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    const char* v = getenv_fn(var);
    if (v != nullptr && *v != '\0') return std::string(v) == "0";
  }
  return true;
}

std::string program_name(int argc, const char* const* argv) {
  if (argc < 1 || argv[0] == nullptr || *argv[0] == '\0') return "tpinfer";
  std::string p = argv[0];
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

bool needs_quotes(const std::string& v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '\'' || c == '\n' || c == '\t' || c == '\\') return true;
  }
  return false;
}

// A short, single-line, double-quoted rendering for describe().
std::string short_quoted(const std::string& v, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : v) {
    if (n++ == max_chars) {
      out += "...";
      break;
    }
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        out += c;
    }
  }
  return out + "\"";
}

}  // namespace

std::optional<RunConfig> parse_run_config(
    int argc, const char* const* argv, const std::function<const char*(const char*)>& getenv_fn) {
  // Before anything can fail: `tpinfer --bogus --help` should still show the help.
  const bool help = contains_flag(argc, argv, {"--help", "-h"});
  if (help || contains_flag(argc, argv, {"--version"})) {
    if (is_first_rank(getenv_fn)) {
      std::cout << (help ? help_text(program_name(argc, argv)) : version_text()) << std::flush;
    }
    return std::nullopt;
  }

  const config::CommandLine cl = config::read_command_line(argc, argv);
  if (cl.help || cl.version) {  // e.g. a bundled short option: -h given as part of another token
    if (is_first_rank(getenv_fn)) {
      std::cout << (cl.help ? help_text(program_name(argc, argv)) : version_text()) << std::flush;
    }
    return std::nullopt;
  }

  RunConfig cfg;
  if (cl.config_path) {
    cfg.config_path = *cl.config_path;
    apply_source(cfg, config::read_yaml_settings(cfg.config_path));
  }

  // A flag beats its environment variable, so a stray variable (TEMP is a temp directory on
  // some systems) is only an error when it would be used.
  std::set<std::string> flagged;
  for (const auto& s : cl.settings) flagged.insert(s.spec->key);
  std::vector<Setting> env;
  for (auto& s : config::read_env_settings(getenv_fn)) {
    if (!flagged.count(s.spec->key)) env.push_back(std::move(s));
  }
  apply_source(cfg, env);
  apply_source(cfg, cl.settings);

  if (cfg.model.empty()) {
    if (cfg.config_path.empty()) {
      TPI_FAIL("no model given: expected a config file (" << program_name(argc, argv)
                                                          << " CONFIG.yaml) or --model DIR; see "
                                                             "--help");
    }
    TPI_FAIL("no model given: key 'model' is not set in " << cfg.config_path
                                                          << "; expected it there or --model DIR");
  }
  validate(cfg);
  return cfg;
}

void validate(const RunConfig& cfg) {
  for (const auto& spec : config::option_specs()) {
    if (!spec.valid(cfg)) {
      TPI_FAIL("run config: key '" << spec.key << "': expected " << spec.expected << ", found '"
                                   << spec.get(cfg) << "'");
    }
  }
  TPI_CHECK(!cfg.model.empty(), "run config: key 'model' is empty; expected a model directory");
  TPI_CHECK(cfg.prompt.empty() || cfg.prompt_file.empty(),
            "run config: 'prompt' and 'prompt_file' are both set; expected at most one of them");
  TPI_CHECK(cfg.logprobs <= 20,
            "run config: key 'logprobs': expected an integer in [-1, 20], found '" << cfg.logprobs
                                                                                   << "'");
  parse_logit_bias_key(cfg.logit_bias);
  parse_stop_token_ids_key(cfg.stop_token_ids);
  TPI_CHECK(cfg.serve.empty() || (cfg.input.empty() && cfg.output.empty()),
            "run config: 'serve' and 'input'/'output' are both set; expected a server or a batch "
            "job, not both");
}

std::string describe(const RunConfig& cfg) {
  std::ostringstream os;
  if (!cfg.config_path.empty()) os << "config=" << cfg.config_path;
  for (const auto& spec : config::option_specs()) {
    const std::string v = spec.get(cfg);
    if (os.tellp() > 0) os << ' ';
    os << spec.key << '=';
    if (spec.key == "api_key")
      os << (v.empty() ? "" : "(set)");  // a secret never reaches a log
    else if (spec.key == "prompt" || spec.key == "system")
      os << short_quoted(v, 40);
    else if (needs_quotes(v))
      os << short_quoted(v, 200);
    else
      os << v;
  }
  return os.str();
}

namespace {

// The comma-separated items of a list key, each trimmed; "" is the empty list.
std::vector<std::string> list_items(const std::string& value) {
  std::vector<std::string> out;
  if (value.find_first_not_of(" \t") == std::string::npos) return out;
  std::stringstream in(value);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    out.push_back(b == std::string::npos ? std::string() : item.substr(b, e - b + 1));
  }
  if (!value.empty() && value.back() == ',') out.push_back("");
  return out;
}

bool parse_id(const std::string& text, int32_t& id) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
      text.size() > 9) {
    return false;
  }
  id = static_cast<int32_t>(std::stol(text));
  return true;
}

}  // namespace

std::vector<std::pair<int32_t, float>> parse_logit_bias_key(const std::string& value) {
  std::vector<std::pair<int32_t, float>> out;
  for (const std::string& item : list_items(value)) {
    const size_t colon = item.find(':');
    int32_t id = 0;
    float bias = 0.0f;
    bool ok = colon != std::string::npos && parse_id(item.substr(0, colon), id);
    if (ok) {
      try {
        size_t used = 0;
        const std::string b = item.substr(colon + 1);
        bias = std::stof(b, &used);
        ok = used == b.size() && bias >= -100.0f && bias <= 100.0f;
      } catch (const std::exception&) {
        ok = false;
      }
    }
    TPI_CHECK(ok,
              "run config: key 'logit_bias': expected ID:BIAS pairs separated by commas (ID "
              "a token id >= 0, BIAS a number in [-100, 100]), found '"
                  << item << "' in '" << value << "'");
    out.emplace_back(id, bias);
  }
  return out;
}

std::vector<int32_t> parse_stop_token_ids_key(const std::string& value) {
  std::vector<int32_t> out;
  for (const std::string& item : list_items(value)) {
    int32_t id = 0;
    TPI_CHECK(parse_id(item, id),
              "run config: key 'stop_token_ids': expected token ids >= 0 "
              "separated by commas, found '"
                  << item << "' in '" << value << "'");
    out.push_back(id);
  }
  return out;
}

std::string load_prompt(const RunConfig& cfg) {
  if (cfg.prompt_file.empty()) return cfg.prompt;
  // A directory opens as a stream that reads nothing: that was an empty prompt.
  check_readable_file("prompt_file", cfg.prompt_file, "a readable text file with the prompt");
  std::ifstream in(cfg.prompt_file, std::ios::binary);
  TPI_CHECK(in, "key 'prompt_file': cannot open '" << cfg.prompt_file
                                                   << "'; expected a readable text file");
  std::ostringstream text;
  text << in.rdbuf();
  TPI_CHECK(!in.bad(), "key 'prompt_file': error reading '" << cfg.prompt_file << "'");
  std::string prompt = text.str();
  // Editors end files with a newline that is not part of the prompt.
  if (!prompt.empty() && prompt.back() == '\n') prompt.pop_back();
  if (!prompt.empty() && prompt.back() == '\r') prompt.pop_back();
  return prompt;
}

std::string tokenizer_path(const RunConfig& cfg) {
  return cfg.tokenizer.empty() ? cfg.model : cfg.tokenizer;
}

const char* to_string(BackendChoice v) {
  switch (v) {
    case BackendChoice::auto_:
      return "auto";
    case BackendChoice::cpu:
      return "cpu";
    case BackendChoice::cuda:
      return "cuda";
  }
  return "?";
}

const char* to_string(CommChoice v) {
  switch (v) {
    case CommChoice::auto_:
      return "auto";
    case CommChoice::mpi:
      return "mpi";
    case CommChoice::nccl:
      return "nccl";
  }
  return "?";
}

const char* to_string(DTypeChoice v) {
  switch (v) {
    case DTypeChoice::auto_:
      return "auto";
    case DTypeChoice::f32:
      return "f32";
    case DTypeChoice::bf16:
      return "bf16";
    case DTypeChoice::f16:
      return "f16";
    case DTypeChoice::int8:
      return "int8";
  }
  return "?";
}

const char* to_string(OnBadLine v) {
  switch (v) {
    case OnBadLine::skip:
      return "skip";
    case OnBadLine::fail:
      return "fail";
  }
  return "?";
}

std::optional<DType> to_dtype(DTypeChoice v) {
  switch (v) {
    case DTypeChoice::auto_:
      return std::nullopt;
    case DTypeChoice::f32:
      return DType::f32;
    case DTypeChoice::bf16:
      return DType::bf16;
    case DTypeChoice::f16:
      return DType::f16;
    case DTypeChoice::int8:
      return DType::i8;
  }
  return std::nullopt;
}

}  // namespace tpinfer
