// The key table and the text -> value conversions behind it. Values arrive as text from all three
// sources (YAML scalars, environment, flags), so one parser per type keeps them consistent.
#include "config/options.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>

namespace tpinfer::config {

namespace {

std::string trim(const std::string& s) {
  const auto is_space = [](unsigned char c) { return std::isspace(c) != 0; };
  auto b = std::find_if_not(s.begin(), s.end(), is_space);
  auto e = std::find_if_not(s.rbegin(), s.rend(), is_space).base();
  return b < e ? std::string(b, e) : std::string();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Whole-string conversion; a leading '+' is allowed (from_chars does not take it).
template <typename T>
bool parse_whole(const std::string& text, T& out) {
  std::string t = trim(text);
  if (!t.empty() && t[0] == '+') t.erase(0, 1);
  if (t.empty() || t[0] == '+') return false;
  if constexpr (std::is_unsigned_v<T>) {
    if (t[0] == '-') return false;  // from_chars would reject it too; say so explicitly
  }
  const char* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, out);
  return ec == std::errc() && ptr == end;
}

template <typename T>
std::string number_text(T v) {
  std::ostringstream os;
  os << std::setprecision(std::numeric_limits<T>::digits10 + 1) << v;
  return os.str();
}

OptionSpec base(const char* key, const char* env, const char* group, const char* value_name,
                const char* help, const char* default_note) {
  OptionSpec s;
  s.key = key;
  s.env = env ? env : "";
  s.group = group;
  s.value_name = value_name;
  s.help = help;
  s.default_note = default_note ? default_note : "";
  return s;
}

OptionSpec string_opt(const char* key, const char* env, const char* group, const char* value_name,
                      std::string RunConfig::*m, const char* help,
                      const char* default_note = nullptr) {
  OptionSpec s = base(key, env, group, value_name, help, default_note);
  s.kind = OptionKind::string;
  s.expected = "a string";
  s.set = [m](RunConfig& c, const std::string& t) {
    c.*m = t;
    return true;
  };
  s.get = [m](const RunConfig& c) { return c.*m; };
  s.valid = [](const RunConfig&) { return true; };
  return s;
}

OptionSpec bool_opt(const char* key, const char* group, bool RunConfig::*m, const char* help) {
  OptionSpec s = base(key, nullptr, group, "BOOL", help, nullptr);
  s.kind = OptionKind::boolean;
  s.expected = "true or false";
  s.set = [m](RunConfig& c, const std::string& t) { return parse_bool(t, c.*m); };
  s.get = [m](const RunConfig& c) { return std::string(c.*m ? "true" : "false"); };
  s.valid = [](const RunConfig&) { return true; };
  return s;
}

// v >= min without a tautological-comparison warning for unsigned types with min 0.
template <typename T>
bool at_least(T v, T min) {
  if constexpr (std::is_unsigned_v<T>) {
    return min == 0 || v >= min;
  } else {
    return v >= min;
  }
}

// An integer member with a lower bound (and the type's upper bound).
template <typename T>
OptionSpec int_opt(const char* key, const char* env, const char* group, T RunConfig::*m, T min,
                   const char* help, const char* default_note = nullptr) {
  OptionSpec s = base(key, env, group, "N", help, default_note);
  s.kind = OptionKind::integer;
  s.expected = "an integer >= " + std::to_string(min);
  if (std::is_same_v<T, uint64_t>) s.expected += " (64-bit)";
  s.set = [m, min](RunConfig& c, const std::string& t) {
    T v{};
    if (!parse_whole(t, v) || !at_least(v, min)) return false;
    c.*m = v;
    return true;
  };
  s.get = [m](const RunConfig& c) { return std::to_string(c.*m); };
  s.valid = [m, min](const RunConfig& c) { return at_least(c.*m, min); };
  return s;
}

// A finite floating-point member in a range whose ends may be open, closed or absent.
struct Range {
  double lo;
  bool lo_open;
  std::optional<double> hi;
  bool hi_open;
  bool contains(double v) const {
    if (!std::isfinite(v)) return false;
    if (lo_open ? !(v > lo) : !(v >= lo)) return false;
    if (hi && (hi_open ? !(v < *hi) : !(v <= *hi))) return false;
    return true;
  }
  std::string text() const {
    if (!hi) return std::string(lo_open ? "> " : ">= ") + number_text(lo);
    return std::string("in ") + (lo_open ? "(" : "[") + number_text(lo) + ", " + number_text(*hi) +
           (hi_open ? ")" : "]");
  }
};

template <typename T>
OptionSpec number_opt(const char* key, const char* env, const char* group, T RunConfig::*m,
                      Range range, const char* help, const char* default_note = nullptr) {
  OptionSpec s = base(key, env, group, "X", help, default_note);
  s.kind = OptionKind::number;
  s.expected = "a number " + range.text();
  s.set = [m, range](RunConfig& c, const std::string& t) {
    double v = 0;
    if (!parse_whole(t, v) || !range.contains(v)) return false;
    c.*m = static_cast<T>(v);
    return true;
  };
  s.get = [m](const RunConfig& c) { return number_text(c.*m); };
  s.valid = [m, range](const RunConfig& c) { return range.contains(c.*m); };
  return s;
}

// An enum member; names are matched case-insensitively.
template <typename E>
OptionSpec choice_opt(const char* key, const char* env, const char* group, E RunConfig::*m,
                      std::vector<std::pair<const char*, E>> names, const char* help) {
  std::string value_name, listed;
  for (size_t i = 0; i < names.size(); ++i) {
    // Appended piece by piece: `"..." + std::string(...)` here trips GCC 12's -Wrestrict false
    // positive (GCC bug 105329) at -O3, which -DTPINFER_WERROR=ON turns into an error.
    if (i > 0) value_name += '|';
    value_name += names[i].first;
    listed += i == 0 ? "" : i + 1 == names.size() ? " or " : ", ";
    listed += names[i].first;
  }
  OptionSpec s = base(key, env, group, "", help, nullptr);
  s.value_name = value_name;
  s.kind = OptionKind::choice;
  s.expected = "one of " + listed;
  s.set = [m, names](RunConfig& c, const std::string& t) {
    const std::string want = lower(trim(t));
    for (const auto& [name, value] : names) {
      if (want == name) {
        c.*m = value;
        return true;
      }
    }
    return false;
  };
  s.get = [m, names](const RunConfig& c) {
    for (const auto& [name, value] : names) {
      if (c.*m == value) return std::string(name);
    }
    return std::string("?");
  };
  s.valid = [m, names](const RunConfig& c) {
    return std::any_of(names.begin(), names.end(), [&](const auto& n) { return n.second == c.*m; });
  };
  return s;
}

std::vector<OptionSpec> build_specs() {
  using C = RunConfig;
  const Range non_negative{0, false, std::nullopt, false};
  const Range unit_interval{0, true, 1.0, false};
  const Range positive{0, true, std::nullopt, false};
  std::vector<OptionSpec> v;

  // Model
  v.push_back(string_opt("model", nullptr, "Model", "PATH", &C::model,
                         "converted model dir; with --dummy-weights an HF dir", "required"));
  v.push_back(string_opt("tokenizer", nullptr, "Model", "PATH", &C::tokenizer,
                         "directory with tokenizer.json (+ tokenizer_config.json)",
                         "same as model"));
  v.push_back(bool_opt("dummy_weights", "Model", &C::dummy_weights,
                       "random weights of the model's shapes (for speed and memory tests)"));
  v.push_back(choice_opt("dtype", nullptr, "Model", &C::dtype,
                         {{"auto", DTypeChoice::auto_},
                          {"f32", DTypeChoice::f32},
                          {"bf16", DTypeChoice::bf16},
                          {"f16", DTypeChoice::f16},
                          {"int8", DTypeChoice::int8}},
                         "dtype of dummy weights; auto = the model's torch_dtype; int8 = int8 "
                         "linear weights (blocks of 32), bf16 embedding"));
  v.push_back(int_opt("layers", "LAYERS", "Model", &C::layers, 0,
                      "run only the first N layers; 0 = all", "0 (all)"));
  v.push_back(bool_opt("verify_checksums", "Model", &C::verify_checksums,
                       "check each shard's sha256 against manifest.json before loading it"));

  // Prompt
  v.push_back(string_opt("prompt", "PROMPT", "Prompt", "TEXT", &C::prompt, "the prompt text"));
  v.push_back(string_opt("prompt_file", nullptr, "Prompt", "PATH", &C::prompt_file,
                         "read the prompt from this file instead (not with --prompt)"));
  v.push_back(bool_opt("chat", "Prompt", &C::chat, "wrap the prompt in the model's chat template"));
  v.push_back(
      string_opt("system", nullptr, "Prompt", "TEXT", &C::system, "system message (with --chat)"));
  v.push_back(bool_opt("enable_thinking", "Prompt", &C::enable_thinking,
                       "Qwen3 chat template: let the model think first"));

  // Sampling
  v.push_back(int_opt("max_new_tokens", "TOKENS", "Sampling", &C::max_new_tokens, 0,
                      "tokens to generate at most"));
  v.push_back(number_opt("temperature", "TEMP", "Sampling", &C::temperature, non_negative,
                         "sampling temperature; 0 = greedy", "0 (greedy)"));
  v.push_back(int_opt("top_k", "TOP_K", "Sampling", &C::top_k, 0,
                      "sample from the K most likely tokens; 0 = off", "0 (off)"));
  v.push_back(number_opt("top_p", "TOP_P", "Sampling", &C::top_p, unit_interval,
                         "nucleus sampling: smallest set with probability >= P; 1 = off"));
  v.push_back(int_opt<uint64_t>("seed", nullptr, "Sampling", &C::seed, 0,
                                "random seed (the default 0 is a fixed seed: runs repeat)"));
  v.push_back(number_opt("min_p", nullptr, "Sampling", &C::min_p, Range{0, false, 1.0, false},
                         "drop tokens less likely than P x the most likely one (after "
                         "temperature); 0 = off",
                         "0 (off)"));
  v.push_back(number_opt("presence_penalty", nullptr, "Sampling", &C::presence_penalty,
                         Range{-2, false, 2.0, false},
                         "OpenAI presence penalty: subtract X from every token generated so far"));
  v.push_back(number_opt("frequency_penalty", nullptr, "Sampling", &C::frequency_penalty,
                         Range{-2, false, 2.0, false},
                         "OpenAI frequency penalty: subtract X per time a token was generated"));
  v.push_back(number_opt("repetition_penalty", nullptr, "Sampling", &C::repetition_penalty,
                         Range{0, true, std::nullopt, false},
                         "transformers' repetition penalty over prompt + generated tokens "
                         "(> 1 discourages repeats); 1 = off"));
  v.push_back(string_opt("logit_bias", nullptr, "Sampling", "ID:BIAS,...", &C::logit_bias,
                         "add BIAS (in [-100, 100]) to token ID's logit before sampling, e.g. "
                         "'13:-100,42:5'"));
  v.push_back(string_opt("stop_token_ids", nullptr, "Sampling", "ID,...", &C::stop_token_ids,
                         "more token ids that end generation, e.g. '13,198'"));
  v.push_back(bool_opt("ignore_eos", "Sampling", &C::ignore_eos,
                       "keep generating past end-of-sequence (goldens, benchmarks)"));
  v.push_back(string_opt("stop", nullptr, "Sampling", "TEXT", &C::stop,
                         "stop string: generation ends before it (batch lines and server "
                         "requests give their own)"));
  v.push_back(int_opt("logprobs", nullptr, "Sampling", &C::logprobs, -1,
                      "metrics_json gets each generated token's logprob and the N most likely "
                      "alternatives (0..20); -1 = off",
                      "-1 (off)"));

  // Resources and parallelism
  v.push_back(int_opt("max_seq", "MAX_SEQ", "Resources", &C::max_seq, 0,
                      "KV cache length in tokens; 0 = chosen by the engine", "0 (auto)"));
  v.push_back(int_opt<int64_t>(
      "kv_cache_blocks", nullptr, "Resources", &C::kv_cache_blocks, 0,
      "KV cache blocks of 16 tokens per replica; 0 = auto (GPU: what mem_frac leaves after "
      "weights and scratch; CPU: batch_size sequences of max_seq, within the memory budget)",
      "0 (auto)"));
  v.push_back(bool_opt("prefix_caching", "Resources", &C::prefix_caching,
                       "reuse the KV cache of prompt prefixes seen before (greedy output is "
                       "the same with it off)"));
  v.push_back(number_opt("mem_frac", "MEM_FRAC", "Resources", &C::mem_frac, unit_interval,
                         "fraction of free GPU memory tpinfer may use"));
  v.push_back(choice_opt(
      "backend", nullptr, "Resources", &C::backend,
      {{"auto", BackendChoice::auto_}, {"cpu", BackendChoice::cpu}, {"cuda", BackendChoice::cuda}},
      "compute backend; auto = cuda when built and a GPU is visible"));
  v.push_back(choice_opt(
      "comm", nullptr, "Resources", &C::comm,
      {{"auto", CommChoice::auto_}, {"mpi", CommChoice::mpi}, {"nccl", CommChoice::nccl}},
      "collectives; auto = nccl with cuda, mpi with cpu"));
  v.push_back(bool_opt("allow_gpu_sharing", "Resources", &C::allow_gpu_sharing,
                       "let several ranks use one GPU (testing only)"));
  v.push_back(int_opt("tp", nullptr, "Resources", &C::tp, 0,
                      "tensor-parallel size; 0 = MPI world size / pp", "0 (world size / pp)"));
  v.push_back(int_opt("pp", nullptr, "Resources", &C::pp, 1,
                      "pipeline-parallel stages (layers split across them; world = dp x pp x tp); "
                      "the model must be converted with the same --pp",
                      "1"));
  v.push_back(int_opt("threads", nullptr, "Resources", &C::threads, 0,
                      "CPU threads per rank; 0 = auto", "0 (auto)"));
  v.push_back(bool_opt("allow_long_context", "Resources", &C::allow_long_context,
                       "run prompt + max_new_tokens beyond the model's max_position_embeddings "
                       "(with a warning)"));
  v.push_back(int_opt<int64_t>("max_request_bytes", nullptr, "Resources", &C::max_request_bytes, 1,
                               "refuse a prompt (or batch input line) larger than this, before "
                               "tokenizing it",
                               "4194304 (4 MiB)"));
  {
    // A number >= 0, or "auto" (stored as -1): the watchdog's adaptive limit.
    OptionSpec o =
        number_opt("step_timeout_s", nullptr, "Resources", &C::step_timeout_s, non_negative,
                   "abort the job when a step or collective makes no progress for "
                   "this many seconds; 0 = never; auto = max(60, 3 x the slowest step)",
                   "auto");
    o.expected = "a number >= 0 or auto";
    auto number_set = o.set;
    o.set = [number_set](RunConfig& c, const std::string& t) {
      if (lower(trim(t)) == "auto") {
        c.step_timeout_s = -1;
        return true;
      }
      return number_set(c, t);
    };
    o.get = [](const RunConfig& c) {
      return c.step_timeout_s < 0 ? std::string("auto") : number_text(c.step_timeout_s);
    };
    o.valid = [non_negative](const RunConfig& c) {
      return c.step_timeout_s == -1 || non_negative.contains(c.step_timeout_s);
    };
    v.push_back(std::move(o));
  }
  v.push_back(bool_opt("deterministic", "Resources", &C::deterministic,
                       "CPU: portable matmul, bitwise the same on every CPU (slower)"));

  // Output
  v.push_back(string_opt("metrics_json", nullptr, "Output", "PATH", &C::metrics_json,
                         "write run metrics as JSON here (rank 0); empty = none"));
  v.push_back(bool_opt("stream", "Output", &C::stream, "print text to stdout as it is generated"));
  v.push_back(bool_opt("echo", "Output", &C::echo,
                       "print the prompt before the generated text (plain prompts, not chat)"));
  v.push_back(choice_opt("log_level", "TPINFER_LOG_LEVEL", "Output", &C::log_level,
                         {{"error", LogLevel::error},
                          {"warn", LogLevel::warn},
                          {"info", LogLevel::info},
                          {"debug", LogLevel::debug}},
                         "stderr log verbosity"));

  // Batch inference
  v.push_back(string_opt("input", nullptr, "Batch", "PATH", &C::input,
                         "JSONL file of prompts: run them in batches instead of --prompt"));
  v.push_back(string_opt("output", nullptr, "Batch", "PATH", &C::output,
                         "JSONL file for the batch results"));
  v.push_back(
      int_opt("batch_size", nullptr, "Batch", &C::batch_size, 1,
              "sequences a replica runs at once (their KV cache comes from the block pool)"));
  v.push_back(choice_opt("on_bad_line", nullptr, "Batch", &C::on_bad_line,
                         {{"skip", OnBadLine::skip}, {"fail", OnBadLine::fail}},
                         "an input line that does not parse: skip it or stop"));
  v.push_back(number_opt("progress_interval_s", nullptr, "Batch", &C::progress_interval_s,
                         non_negative, "seconds between progress reports; 0 = none"));

  // Server
  v.push_back(string_opt("serve", nullptr, "Server", "HOST:PORT", &C::serve,
                         "serve the OpenAI API over HTTP on rank 0 (PORT alone binds 127.0.0.1)"));
  v.push_back(string_opt("api_key", "TPINFER_API_KEY", "Server", "KEY", &C::api_key,
                         "require 'Authorization: Bearer KEY' on every /v1 request"));
  v.push_back(string_opt("served_model_name", nullptr, "Server", "NAME", &C::served_model_name,
                         "the model id clients name", "the model directory's name"));
  v.push_back(int_opt("max_queue", nullptr, "Server", &C::max_queue, 1,
                      "requests that may wait for a slot; beyond it the answer is 429"));
  v.push_back(number_opt("shutdown_grace_s", nullptr, "Server", &C::shutdown_grace_s, non_negative,
                         "on SIGTERM, seconds running requests get to finish"));
  v.push_back(int_opt("max_connections", nullptr, "Server", &C::max_connections, 1,
                      "open HTTP connections; one more is answered 503 with Retry-After"));
  v.push_back(number_opt("request_timeout_s", nullptr, "Server", &C::request_timeout_s, positive,
                         "a request's head and body must arrive within this many seconds of its "
                         "first byte (a new connection's: of the connect)"));
  v.push_back(number_opt("keep_alive_timeout_s", nullptr, "Server", &C::keep_alive_timeout_s,
                         positive,
                         "an idle kept-alive connection is closed after this many "
                         "seconds"));
  return v;
}

}  // namespace

bool parse_bool(const std::string& text, bool& out) {
  const std::string t = lower(trim(text));
  if (t == "true" || t == "1" || t == "yes" || t == "on") {
    out = true;
    return true;
  }
  if (t == "false" || t == "0" || t == "no" || t == "off") {
    out = false;
    return true;
  }
  return false;
}

const std::vector<OptionSpec>& option_specs() {
  static const std::vector<OptionSpec> specs = build_specs();
  return specs;
}

const OptionSpec* find_option(std::string_view key) {
  for (const auto& s : option_specs()) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

std::string flag_name(const OptionSpec& spec) {
  std::string f = "--" + spec.key;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

}  // namespace tpinfer::config
