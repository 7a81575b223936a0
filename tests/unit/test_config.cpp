// RunConfig: defaults, the three sources and their precedence, and the message of every kind of
// bad input (each must name the key and say what was expected).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "config/options.h"
#include "config/run_config.h"
#include "config/suggest.h"
#include "core/error.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using tpinfer::RunConfig;

namespace {

using Env = std::map<std::string, std::string>;

// A fresh directory per test case for YAML fixtures.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("tpinfer_test_config_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::optional<RunConfig> parse(std::vector<std::string> args, const Env& env = {}) {
  args.insert(args.begin(), "tpinfer");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return tpinfer::parse_run_config(static_cast<int>(argv.size()), argv.data(),
                                   [&env](const char* name) -> const char* {
                                     auto it = env.find(name);
                                     return it == env.end() ? nullptr : it->second.c_str();
                                   });
}

RunConfig parse_ok(std::vector<std::string> args, const Env& env = {}) {
  auto cfg = parse(std::move(args), env);
  REQUIRE(cfg.has_value());
  return *cfg;
}

std::string parse_error(std::vector<std::string> args, const Env& env = {}) {
  try {
    parse(std::move(args), env);
  } catch (const tpinfer::Error& e) {
    return e.what();
  }
  FAIL("expected tpinfer::Error");
  return "";
}

// Runs f with std::cout captured.
template <typename F>
std::string capture_stdout(F f) {
  std::ostringstream captured;
  auto* old = std::cout.rdbuf(captured.rdbuf());
  try {
    f();
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  return captured.str();
}

}  // namespace

TEST_CASE("defaults with only --model", "[config]") {
  const RunConfig c = parse_ok({"--model", "m"});
  CHECK(c.model == "m");
  CHECK(c.tokenizer.empty());
  CHECK(tpinfer::tokenizer_path(c) == "m");
  CHECK(c.prompt.empty());
  CHECK(c.prompt_file.empty());
  CHECK_FALSE(c.chat);
  CHECK(c.system.empty());
  CHECK(c.enable_thinking);
  CHECK(c.max_new_tokens == 256);
  CHECK(c.temperature == 0.0f);
  CHECK(c.top_k == 0);
  CHECK(c.top_p == 1.0f);
  CHECK(c.seed == 0);
  CHECK(c.max_seq == 0);
  CHECK(c.mem_frac == 0.9f);
  CHECK(c.layers == 0);
  CHECK(c.backend == tpinfer::BackendChoice::auto_);
  CHECK(c.comm == tpinfer::CommChoice::auto_);
  CHECK_FALSE(c.allow_gpu_sharing);
  CHECK(c.tp == 0);
  CHECK(c.threads == 0);
  CHECK_FALSE(c.dummy_weights);
  CHECK(c.dtype == tpinfer::DTypeChoice::auto_);
  CHECK_FALSE(c.ignore_eos);
  CHECK(c.metrics_json.empty());
  CHECK(c.stream);
  CHECK(c.log_level == tpinfer::LogLevel::info);
  CHECK(c.input.empty());
  CHECK(c.output.empty());
  CHECK(c.batch_size == 8);
  CHECK(c.on_bad_line == tpinfer::OnBadLine::fail);
  CHECK(c.progress_interval_s == 5.0);
  CHECK(c.step_timeout_s == -1.0);  // auto
  CHECK(c.config_path.empty());
  CHECK_NOTHROW(tpinfer::validate(c));
}

TEST_CASE("every key read from YAML", "[config]") {
  TempDir dir;
  const std::string path = dir.write("all.yaml", R"(# every key, none at its default
model: models/x
tokenizer: tok/tokenizer.json
prompt: "Hello: world"
chat: true
system: |-
  Be brief.
  Be kind.
enable_thinking: false
max_new_tokens: 12
temperature: 0.7
top_k: 40
top_p: 0.95
seed: 18446744073709551615
max_seq: 1024
mem_frac: 0.5
layers: 3
backend: cuda
comm: NCCL
allow_gpu_sharing: yes
tp: 4
threads: 2
dummy_weights: true
dtype: bf16
ignore_eos: True
metrics_json: out/metrics.json
stream: false
log_level: debug
input: in.jsonl
output: out.jsonl
batch_size: 16
on_bad_line: skip
progress_interval_s: 0.5
step_timeout_s: 30
)");
  const RunConfig c = parse_ok({path});
  CHECK(c.config_path == path);
  CHECK(c.model == "models/x");
  CHECK(c.tokenizer == "tok/tokenizer.json");
  CHECK(tpinfer::tokenizer_path(c) == "tok/tokenizer.json");
  CHECK(c.prompt == "Hello: world");
  CHECK(c.chat);
  CHECK(c.system == "Be brief.\nBe kind.");
  CHECK_FALSE(c.enable_thinking);
  CHECK(c.max_new_tokens == 12);
  CHECK(c.temperature == Approx(0.7));
  CHECK(c.top_k == 40);
  CHECK(c.top_p == Approx(0.95));
  CHECK(c.seed == 18446744073709551615ull);
  CHECK(c.max_seq == 1024);
  CHECK(c.mem_frac == Approx(0.5));
  CHECK(c.layers == 3);
  CHECK(c.backend == tpinfer::BackendChoice::cuda);
  CHECK(c.comm == tpinfer::CommChoice::nccl);
  CHECK(c.allow_gpu_sharing);
  CHECK(c.tp == 4);
  CHECK(c.threads == 2);
  CHECK(c.dummy_weights);
  CHECK(c.dtype == tpinfer::DTypeChoice::bf16);
  CHECK(tpinfer::to_dtype(c.dtype) == tpinfer::DType::bf16);
  CHECK(c.ignore_eos);
  CHECK(c.metrics_json == "out/metrics.json");
  CHECK_FALSE(c.stream);
  CHECK(c.log_level == tpinfer::LogLevel::debug);
  CHECK(c.input == "in.jsonl");
  CHECK(c.output == "out.jsonl");
  CHECK(c.batch_size == 16);
  CHECK(c.on_bad_line == tpinfer::OnBadLine::skip);
  CHECK(c.progress_interval_s == Approx(0.5));
  CHECK(c.step_timeout_s == Approx(30));
}

TEST_CASE("every key read from flags, both --key value and --key=value", "[config]") {
  const RunConfig c = parse_ok({"--model",
                                "m",
                                "--tokenizer=t",
                                "--prompt",
                                "Hi there",
                                "--chat",
                                "--system",
                                "sys",
                                "--enable-thinking=false",
                                "--max-new-tokens",
                                "7",
                                "--temperature=1.5",
                                "--top-k",
                                "5",
                                "--top-p",
                                "0.5",
                                "--seed",
                                "42",
                                "--max-seq",
                                "64",
                                "--mem-frac",
                                "0.25",
                                "--layers",
                                "2",
                                "--backend",
                                "cpu",
                                "--comm",
                                "mpi",
                                "--allow-gpu-sharing",
                                "--tp",
                                "2",
                                "--threads",
                                "3",
                                "--dummy-weights",
                                "--dtype",
                                "f16",
                                "--ignore-eos",
                                "--metrics-json",
                                "m.json",
                                "--stream=false",
                                "--log-level",
                                "warn",
                                "--input",
                                "i",
                                "--output",
                                "o",
                                "--batch-size",
                                "1",
                                "--on-bad-line",
                                "skip",
                                "--progress-interval-s",
                                "0",
                                "--step-timeout-s=0"});
  CHECK(c.model == "m");
  CHECK(c.tokenizer == "t");
  CHECK(c.prompt == "Hi there");
  CHECK(c.chat);
  CHECK(c.system == "sys");
  CHECK_FALSE(c.enable_thinking);
  CHECK(c.max_new_tokens == 7);
  CHECK(c.temperature == Approx(1.5));
  CHECK(c.top_k == 5);
  CHECK(c.top_p == Approx(0.5));
  CHECK(c.seed == 42);
  CHECK(c.max_seq == 64);
  CHECK(c.mem_frac == Approx(0.25));
  CHECK(c.layers == 2);
  CHECK(c.backend == tpinfer::BackendChoice::cpu);
  CHECK(c.comm == tpinfer::CommChoice::mpi);
  CHECK(c.allow_gpu_sharing);
  CHECK(c.tp == 2);
  CHECK(c.threads == 3);
  CHECK(c.dummy_weights);
  CHECK(c.dtype == tpinfer::DTypeChoice::f16);
  CHECK(c.ignore_eos);
  CHECK(c.metrics_json == "m.json");
  CHECK_FALSE(c.stream);
  CHECK(c.log_level == tpinfer::LogLevel::warn);
  CHECK(c.input == "i");
  CHECK(c.output == "o");
  CHECK(c.batch_size == 1);
  CHECK(c.on_bad_line == tpinfer::OnBadLine::skip);
  CHECK(c.progress_interval_s == 0.0);
  CHECK(c.step_timeout_s == 0.0);
}

TEST_CASE("precedence: flag > env > YAML > default", "[config]") {
  TempDir dir;
  const std::string path = dir.write("p.yaml",
                                     "model: m\n"
                                     "prompt: from yaml\n"
                                     "max_new_tokens: 10\n"
                                     "temperature: 0.5\n"
                                     "top_k: 3\n"
                                     "top_p: 0.8\n"
                                     "max_seq: 100\n"
                                     "mem_frac: 0.6\n"
                                     "layers: 1\n"
                                     "log_level: warn\n");
  SECTION("YAML over defaults") {
    const RunConfig c = parse_ok({path});
    CHECK(c.prompt == "from yaml");
    CHECK(c.max_new_tokens == 10);
    CHECK(c.temperature == Approx(0.5));
    CHECK(c.seed == 0);  // not in the file: default
  }
  SECTION("env over YAML, for every variable") {
    const Env env = {{"PROMPT", "from env"}, {"TOKENS", "20"}, {"TEMP", "0.25"},
                     {"TOP_K", "4"},         {"TOP_P", "0.7"}, {"MAX_SEQ", "200"},
                     {"MEM_FRAC", "0.7"},    {"LAYERS", "2"},  {"TPINFER_LOG_LEVEL", "error"}};
    const RunConfig c = parse_ok({path}, env);
    CHECK(c.prompt == "from env");
    CHECK(c.max_new_tokens == 20);
    CHECK(c.temperature == Approx(0.25));
    CHECK(c.top_k == 4);
    CHECK(c.top_p == Approx(0.7));
    CHECK(c.max_seq == 200);
    CHECK(c.mem_frac == Approx(0.7));
    CHECK(c.layers == 2);
    CHECK(c.log_level == tpinfer::LogLevel::error);
  }
  SECTION("flags over env") {
    const Env env = {{"TEMP", "0.25"}, {"TOKENS", "20"}, {"PROMPT", "from env"}};
    const RunConfig c = parse_ok(
        {path, "--temperature", "0.9", "--max-new-tokens", "30", "--prompt", "from flag"}, env);
    CHECK(c.temperature == Approx(0.9));
    CHECK(c.max_new_tokens == 30);
    CHECK(c.prompt == "from flag");
  }
  SECTION("env without YAML over defaults") {
    const RunConfig c = parse_ok({"--model", "m"}, {{"TOKENS", "5"}});
    CHECK(c.max_new_tokens == 5);
  }
  SECTION("an empty environment variable counts as unset") {
    const RunConfig c = parse_ok({path}, {{"TOKENS", ""}, {"PROMPT", ""}});
    CHECK(c.max_new_tokens == 10);
    CHECK(c.prompt == "from yaml");
  }
  SECTION("a bad environment variable is ignored when a flag overrides it") {
    const RunConfig c = parse_ok({path, "--temperature", "1"}, {{"TEMP", "/tmp"}});
    CHECK(c.temperature == Approx(1.0));
  }
  SECTION("--model overrides the file's model") {
    CHECK(parse_ok({path, "--model", "other"}).model == "other");
  }
  SECTION("a repeated flag: the last one wins") {
    CHECK(parse_ok({path, "--top-k", "5", "--top-k=6"}).top_k == 6);
  }
  SECTION("the config file may come after the flags") {
    CHECK(parse_ok({"--top-k", "5", path}).top_k == 5);
  }
}

// One bad value per non-string key, given three ways; each message names the key, where the
// value came from, what was expected, and what was found.
TEST_CASE("the list keys logit_bias and stop_token_ids", "[config]") {
  using tpinfer::parse_logit_bias_key;
  using tpinfer::parse_stop_token_ids_key;
  CHECK(parse_logit_bias_key("").empty());
  const auto bias = parse_logit_bias_key("13:-100, 42:2.5");
  REQUIRE(bias.size() == 2);
  CHECK(bias[0] == std::pair<int32_t, float>{13, -100.0f});
  CHECK(bias[1] == std::pair<int32_t, float>{42, 2.5f});
  CHECK(parse_stop_token_ids_key(" 1, 2 ,3") == std::vector<int32_t>{1, 2, 3});
  CHECK_THROWS_WITH(parse_logit_bias_key("13:-101"),
                    Catch::Matchers::Contains("key 'logit_bias': expected ID:BIAS pairs") &&
                        Catch::Matchers::Contains("found '13:-101'"));
  CHECK_THROWS_WITH(parse_logit_bias_key("13"), Catch::Matchers::Contains("found '13'"));
  CHECK_THROWS_WITH(parse_logit_bias_key("-1:3"), Catch::Matchers::Contains("found '-1:3'"));
  CHECK_THROWS_WITH(parse_stop_token_ids_key("1,,2"),
                    Catch::Matchers::Contains("key 'stop_token_ids': expected token ids >= 0") &&
                        Catch::Matchers::Contains("found ''"));
  CHECK_THROWS_WITH(parse_stop_token_ids_key("1,x"), Catch::Matchers::Contains("found 'x'"));
}

TEST_CASE("every key's bad value is reported with the key and what was expected", "[config]") {
  struct Bad {
    const char* key;
    const char* value;
    const char* expected;
  };
  const std::vector<Bad> cases = {
      {"chat", "maybe", "expected true or false"},
      {"enable_thinking", "2", "expected true or false"},
      {"max_new_tokens", "-1", "expected an integer >= 0"},
      {"temperature", "hot", "expected a number >= 0"},
      {"top_k", "1.5", "expected an integer >= 0"},
      {"top_p", "0", "expected a number in (0, 1]"},
      {"seed", "-3", "expected an integer >= 0 (64-bit)"},
      {"max_seq", "12x", "expected an integer >= 0"},
      {"mem_frac", "1.5", "expected a number in (0, 1]"},
      {"layers", "all", "expected an integer >= 0"},
      {"backend", "gpu", "expected one of auto, cpu or cuda"},
      {"comm", "gloo", "expected one of auto, mpi or nccl"},
      {"allow_gpu_sharing", "sure", "expected true or false"},
      {"tp", "-2", "expected an integer >= 0"},
      {"pp", "0", "expected an integer >= 1"},
      {"threads", "many", "expected an integer >= 0"},
      {"deterministic", "perhaps", "expected true or false"},
      {"dummy_weights", "y es", "expected true or false"},
      {"dtype", "fp8", "expected one of auto, f32, bf16, f16 or int8"},
      {"ignore_eos", "nope", "expected true or false"},
      {"stream", "2", "expected true or false"},
      {"echo", "loud", "expected true or false"},
      {"log_level", "verbose", "expected one of error, warn, info or debug"},
      {"batch_size", "0", "expected an integer >= 1"},
      {"on_bad_line", "ignore", "expected one of skip or fail"},
      {"progress_interval_s", "-1", "expected a number >= 0"},
      {"max_queue", "0", "expected an integer >= 1"},
      {"logprobs", "-2", "expected an integer >= -1"},
      {"shutdown_grace_s", "-1", "expected a number >= 0"},
      {"verify_checksums", "perhaps", "expected true or false"},
      {"allow_long_context", "2", "expected true or false"},
      {"max_request_bytes", "0", "expected an integer >= 1"},
      {"step_timeout_s", "-5", "expected a number >= 0 or auto"},
      {"max_connections", "0", "expected an integer >= 1"},
      {"request_timeout_s", "0", "expected a number > 0"},
      {"keep_alive_timeout_s", "-1", "expected a number > 0"},
      {"kv_cache_blocks", "-1", "expected an integer >= 0"},
      {"prefix_caching", "sometimes", "expected true or false"},
      {"min_p", "1.5", "expected a number in [0, 1]"},
      {"presence_penalty", "3", "expected a number in [-2, 2]"},
      {"frequency_penalty", "-2.5", "expected a number in [-2, 2]"},
      {"repetition_penalty", "0", "expected a number > 0"},
  };
  // Keep this list complete: every key that can hold a bad value is in it.
  for (const auto& spec : tpinfer::config::option_specs()) {
    if (spec.kind == tpinfer::config::OptionKind::string) continue;
    bool listed = false;
    for (const auto& c : cases) listed = listed || spec.key == c.key;
    INFO("key " << spec.key);
    CHECK(listed);
  }

  TempDir dir;
  for (const auto& c : cases) {
    const std::string key = c.key;
    const std::string found = std::string("found '") + c.value + "'";
    INFO("key " << key << " value " << c.value);

    const std::string path =
        dir.write(key + ".yaml", "model: m\n# a comment line\n" + key + ": '" + c.value + "'\n");
    const std::string yaml_msg = parse_error({path});
    CHECK_THAT(yaml_msg, Contains(path + ":3: key '" + key + "': " + c.expected));
    CHECK_THAT(yaml_msg, Contains(found));

    std::string flag = "--" + key;
    for (char& ch : flag) ch = ch == '_' ? '-' : ch;
    const std::string flag_msg = parse_error({"--model", "m", flag + "=" + c.value});
    CHECK_THAT(flag_msg, Contains("flag " + flag + ": key '" + key + "': " + c.expected));
    CHECK_THAT(flag_msg, Contains(found));

    const auto* spec = tpinfer::config::find_option(key);
    REQUIRE(spec != nullptr);
    if (!spec->env.empty()) {
      const std::string env_msg = parse_error({"--model", "m"}, {{spec->env, c.value}});
      CHECK_THAT(env_msg, Contains("environment variable " + spec->env + ": key '" + key +
                                   "': " + c.expected));
      CHECK_THAT(env_msg, Contains(found));
    }
  }
}

TEST_CASE("numbers: range ends, overflow, junk", "[config]") {
  CHECK(parse_ok({"--model", "m", "--top-p", "1"}).top_p == 1.0f);
  CHECK(parse_ok({"--model", "m", "--mem-frac=1"}).mem_frac == 1.0f);
  CHECK(parse_ok({"--model", "m", "--temperature", "0"}).temperature == 0.0f);
  CHECK(parse_ok({"--model", "m", "--temperature", "+2e-1"}).temperature == Approx(0.2));
  CHECK(parse_ok({"--model", "m", "--max-new-tokens", " 8 "}).max_new_tokens == 8);
  CHECK_THAT(parse_error({"--model", "m", "--temperature", "-1"}),
             Contains("key 'temperature': expected a number >= 0, found '-1'"));
  CHECK_THAT(parse_error({"--model", "m", "--temperature=nan"}),
             Contains("expected a number >= 0, found 'nan'"));
  CHECK_THAT(parse_error({"--model", "m", "--temperature=inf"}),
             Contains("expected a number >= 0, found 'inf'"));
  CHECK_THAT(parse_error({"--model", "m", "--max-new-tokens=99999999999"}),
             Contains("key 'max_new_tokens': expected an integer >= 0"));
  CHECK_THAT(parse_error({"--model", "m", "--seed=18446744073709551616"}), Contains("key 'seed'"));
  CHECK_THAT(parse_error({"--model", "m", "--top-k="}),
             Contains("flag --top-k: key 'top_k': expected an integer >= 0, found ''"));
  CHECK_THAT(parse_error({"--model", "m", "--max-new-tokens=0x10"}), Contains("found '0x10'"));
}

TEST_CASE("YAML values that are not scalars", "[config]") {
  TempDir dir;
  CHECK_THAT(parse_error({dir.write("a.yaml", "model: m\ntemperature: [1, 2]\n")}),
             Contains("a.yaml:2: key 'temperature': expected a number >= 0, found a list"));
  CHECK_THAT(parse_error({dir.write("b.yaml", "model: m\nbackend:\n  name: cuda\n")}),
             Contains("key 'backend': expected one of auto, cpu or cuda, found a mapping"));
  CHECK_THAT(parse_error({dir.write("c.yaml", "model: m\nmax_new_tokens:\nseed: 1\n")}),
             Contains("c.yaml:2: key 'max_new_tokens': expected an integer >= 0, found an empty "
                      "value"));
  CHECK_THAT(parse_error({dir.write("d.yaml", "model: [a, b]\n")}),
             Contains("key 'model': expected a string, found a list"));
  // An empty string value is the empty string.
  CHECK(parse_ok({dir.write("e.yaml", "model: m\nsystem:\nprompt: ''\n")}).system.empty());
  // A number where a string is expected is that text.
  CHECK(parse_ok({dir.write("f.yaml", "model: m\nprompt: 123\n")}).prompt == "123");
}

TEST_CASE("YAML file problems", "[config]") {
  TempDir dir;
  SECTION("unknown key, with did-you-mean") {
    const std::string path = dir.write("u.yaml", "model: m\nmax_tokens: 5\n");
    CHECK_THAT(parse_error({path}), Contains("unknown key 'max_tokens' in " + path +
                                             ":2 (did you mean 'max_new_tokens'?)"));
    CHECK_THAT(parse_error({dir.write("t.yaml", "model: m\ntemprature: 1\n")}),
               Contains("(did you mean 'temperature'?)"));
    CHECK_THAT(parse_error({dir.write("d.yaml", "model: m\nmax-new-tokens: 5\n")}),
               Contains("unknown key 'max-new-tokens'"));
    CHECK_THAT(parse_error({dir.write("d2.yaml", "model: m\nmax-new-tokens: 5\n")}),
               Contains("(did you mean 'max_new_tokens'?)"));
  }
  SECTION("unknown key with nothing close") {
    const std::string msg = parse_error({dir.write("z.yaml", "model: m\nzzzzzzzz: 1\n")});
    CHECK_THAT(msg, Contains("unknown key 'zzzzzzzz'"));
    CHECK_THAT(msg, !Contains("did you mean"));
  }
  SECTION("invalid YAML syntax") {
    const std::string path = dir.write("s.yaml", "model: m\ntop_k: [1,\n");
    CHECK_THAT(parse_error({path}), Contains(path + ":"));
    CHECK_THAT(parse_error({path}), Contains("invalid YAML"));
  }
  SECTION("top level is not a mapping") {
    CHECK_THAT(parse_error({dir.write("l.yaml", "- model\n- m\n")}),
               Contains("expected a mapping of 'key: value' lines at the top level, found a "
                        "list"));
  }
  SECTION("a key given twice") {
    const std::string path = dir.write("dup.yaml", "model: m\ntop_k: 1\ntop_k: 2\n");
    CHECK_THAT(parse_error({path}),
               Contains(path + ":3: key 'top_k' is set twice (first at " + path + ":2)"));
  }
  SECTION("missing file and directory") {
    CHECK_THAT(parse_error({dir.path("nope.yaml")}),
               Contains("config file '" + dir.path("nope.yaml") + "' does not exist"));
    fs::create_directories(dir.path("modeldir"));
    CHECK_THAT(parse_error({dir.path("modeldir")}), Contains("is a directory"));
    CHECK_THAT(parse_error({dir.path("modeldir")}), Contains("--model"));
  }
  SECTION("an empty file sets nothing") {
    const RunConfig c = parse_ok({dir.write("empty.yaml", "# nothing\n"), "--model", "m"});
    CHECK(c.max_new_tokens == 256);
  }
}

TEST_CASE("command-line problems", "[config]") {
  SECTION("unknown flag, with did-you-mean") {
    CHECK_THAT(parse_error({"--model", "m", "--temprature", "1"}),
               Contains("unknown option '--temprature' (did you mean '--temperature'?)"));
    CHECK_THAT(parse_error({"--model", "m", "--max_new_tokens=5"}),
               Contains("unknown option '--max_new_tokens' (did you mean '--max-new-tokens'?)"));
    // No prefix guessing: --temp is not silently --temperature.
    CHECK_THAT(parse_error({"--model", "m", "--temp", "1"}),
               Contains("unknown option '--temp' (did you mean '--temperature'?)"));
    CHECK_THAT(parse_error({"--model", "m", "--frobnicate"}),
               Contains("unknown option '--frobnicate'"));
    CHECK_THAT(parse_error({"--model", "m", "-x"}), Contains("unknown option '-x'"));
  }
  SECTION("a flag without its value") {
    CHECK_THAT(parse_error({"--model", "m", "--top-k"}),
               Contains("flag --top-k: key 'top_k': expected a value after it (an integer >= 0)"));
  }
  SECTION("two positional arguments") {
    TempDir dir;
    const std::string path = dir.write("a.yaml", "model: m\n");
    CHECK_THAT(parse_error({path, "extra"}),
               Contains("unexpected argument 'extra': expected one config file"));
  }
}

TEST_CASE("boolean forms", "[config]") {
  CHECK(parse_ok({"--model", "m", "--chat"}).chat);
  CHECK(parse_ok({"--model", "m", "--chat=true"}).chat);
  CHECK(parse_ok({"--model", "m", "--chat=1"}).chat);
  CHECK(parse_ok({"--model", "m", "--chat=on"}).chat);
  CHECK_FALSE(parse_ok({"--model", "m", "--chat=false"}).chat);
  CHECK_FALSE(parse_ok({"--model", "m", "--chat=FALSE"}).chat);
  CHECK_FALSE(parse_ok({"--model", "m", "--chat=0"}).chat);
  CHECK_FALSE(parse_ok({"--model", "m", "--stream=no"}).stream);
  CHECK_FALSE(parse_ok({"--model", "m", "--chat", "--chat=false"}).chat);
  CHECK(parse_ok({"--chat", "--model", "m"}).chat);
  // The next argument is the flag's value only when it is a boolean word.
  CHECK_FALSE(parse_ok({"--model", "m", "--chat", "false"}).chat);
  CHECK(parse_ok({"--model", "m", "--chat", "yes"}).chat);
  CHECK_THAT(parse_error({"--model", "m", "--chat=maybe"}),
             Contains("flag --chat: key 'chat': expected true or false, found 'maybe'"));

  TempDir dir;
  const std::string cfg = dir.write("c.yaml", "model: m\n");
  const RunConfig c = parse_ok({"--chat", cfg});  // the file is not taken as --chat's value
  CHECK(c.chat);
  CHECK(c.config_path == cfg);
  CHECK(parse_ok({"--", cfg}).config_path == cfg);
  CHECK(parse_ok({dir.write("t.yaml", "model: m\nchat: true\n")}).chat);
  CHECK_FALSE(parse_ok({dir.write("f.yaml", "model: m\nstream: false\n")}).stream);
  CHECK(parse_ok({dir.write("q.yaml", "model: m\nchat: 'true'\n")}).chat);
  // A flag overrides the file's boolean either way.
  CHECK_FALSE(parse_ok({dir.path("t.yaml"), "--chat=false"}).chat);
  CHECK(parse_ok({dir.path("f.yaml"), "--stream"}).stream);
}

TEST_CASE("model is required unless help or version", "[config]") {
  CHECK_THAT(parse_error({}), Contains("no model given: expected a config file"));
  CHECK_THAT(parse_error({"--prompt", "x"}), Contains("--model DIR"));
  TempDir dir;
  const std::string path = dir.write("nomodel.yaml", "prompt: hi\n");
  CHECK_THAT(parse_error({path}), Contains("no model given: key 'model' is not set in " + path));
  CHECK(parse_ok({path, "--model", "m"}).prompt == "hi");
}

TEST_CASE("prompt and prompt_file", "[config]") {
  TempDir dir;
  SECTION("both in one YAML file") {
    const std::string path = dir.write("b.yaml", "model: m\nprompt: hi\nprompt_file: p.txt\n");
    const std::string msg = parse_error({path});
    CHECK_THAT(msg, Contains("'prompt' (" + path + ":2) and 'prompt_file' (" + path +
                             ":3) are both set; expected at most one of them"));
  }
  SECTION("both as flags") {
    CHECK_THAT(parse_error({"--model", "m", "--prompt", "hi", "--prompt-file", "p.txt"}),
               Contains("'prompt' (flag --prompt) and 'prompt_file' (flag --prompt-file) are "
                        "both set"));
  }
  SECTION("a higher source replaces the other one") {
    const std::string with_prompt = dir.write("p.yaml", "model: m\nprompt: from yaml\n");
    RunConfig c = parse_ok({with_prompt, "--prompt-file", "p.txt"});
    CHECK(c.prompt.empty());
    CHECK(c.prompt_file == "p.txt");

    const std::string with_file = dir.write("f.yaml", "model: m\nprompt_file: p.txt\n");
    c = parse_ok({with_file}, {{"PROMPT", "from env"}});
    CHECK(c.prompt == "from env");
    CHECK(c.prompt_file.empty());
  }
  SECTION("load_prompt") {
    RunConfig c;
    c.model = "m";
    c.prompt = "inline";
    CHECK(tpinfer::load_prompt(c) == "inline");
    c.prompt.clear();
    c.prompt_file = dir.write("p.txt", "line one\nline two\n");
    CHECK(tpinfer::load_prompt(c) == "line one\nline two");
    c.prompt_file = dir.path("missing.txt");
    CHECK_THROWS_WITH(tpinfer::load_prompt(c),
                      Contains("key 'prompt_file': '" + dir.path("missing.txt") +
                               "' does not exist; expected a readable"));
  }
}

TEST_CASE("--help and --version print and return nullopt", "[config]") {
  std::optional<RunConfig> result = RunConfig{};
  const std::string help = capture_stdout([&] { result = parse({"--help"}); });
  CHECK_FALSE(result.has_value());
  CHECK_THAT(help, Contains("Usage: tpinfer [CONFIG.yaml]"));
  for (const auto& spec : tpinfer::config::option_specs()) {
    INFO(spec.key);
    CHECK_THAT(help, Contains(tpinfer::config::flag_name(spec)));
    if (!spec.env.empty()) CHECK_THAT(help, Contains("env " + spec.env));
  }
  CHECK_THAT(help, Contains("default: 256; env TOKENS"));
  CHECK_THAT(help, Contains("mpirun -np 4"));

  // Help wins over everything else, even bad input.
  result = RunConfig{};
  capture_stdout([&] { result = parse({"--bogus", "-h"}); });
  CHECK_FALSE(result.has_value());

  result = RunConfig{};
  const std::string version = capture_stdout([&] { result = parse({"--version"}); });
  CHECK_FALSE(result.has_value());
  CHECK_THAT(version, Contains("tpinfer "));

  // Printed by the first MPI rank only.
  const std::string quiet = capture_stdout([&] {
    result = parse({"--help"}, {{"OMPI_COMM_WORLD_RANK", "2"}});
  });
  CHECK_FALSE(result.has_value());
  CHECK(quiet.empty());
}

TEST_CASE("describe is one line naming every key", "[config]") {
  RunConfig c = parse_ok({"--model", "models/x", "--prompt", "Once upon a time\nthere was",
                          "--temperature", "0.8", "--top-p", "0.9", "--seed", "42"});
  const std::string d = tpinfer::describe(c);
  CHECK(d.find('\n') == std::string::npos);
  CHECK_THAT(d, Contains("model=models/x"));
  CHECK_THAT(d, Contains("prompt=\"Once upon a time\\nthere was\""));
  CHECK_THAT(d, Contains("temperature=0.8"));
  CHECK_THAT(d, Contains("top_p=0.9"));
  CHECK_THAT(d, Contains("seed=42"));
  CHECK_THAT(d, Contains("backend=auto"));
  CHECK_THAT(d, Contains("log_level=info"));
  for (const auto& spec : tpinfer::config::option_specs()) CHECK_THAT(d, Contains(spec.key + "="));
  c.prompt = std::string(100, 'a');
  CHECK_THAT(tpinfer::describe(c), Contains(std::string(40, 'a') + "...\""));
}

TEST_CASE("validate checks configs built in code", "[config]") {
  const auto valid = [] {
    RunConfig c;
    c.model = "m";
    return c;
  };
  CHECK_NOTHROW(tpinfer::validate(valid()));

  RunConfig c = valid();
  c.top_p = 0.0f;
  CHECK_THROWS_WITH(tpinfer::validate(c),
                    Contains("key 'top_p': expected a number in (0, 1], found '0'"));
  c = valid();
  c.batch_size = 0;
  CHECK_THROWS_WITH(tpinfer::validate(c), Contains("key 'batch_size'"));
  CHECK_THROWS_WITH(tpinfer::validate(RunConfig{}), Contains("key 'model'"));
  const auto both_prompts = [] {
    RunConfig b;
    b.model = "m";
    b.prompt = "a";
    b.prompt_file = "b";
    return b;
  };
  CHECK_THROWS_WITH(tpinfer::validate(both_prompts()), Contains("both set"));
}

TEST_CASE("enum names", "[config]") {
  CHECK(std::string(tpinfer::to_string(tpinfer::BackendChoice::auto_)) == "auto");
  CHECK(std::string(tpinfer::to_string(tpinfer::BackendChoice::cuda)) == "cuda");
  CHECK(std::string(tpinfer::to_string(tpinfer::CommChoice::nccl)) == "nccl");
  CHECK(std::string(tpinfer::to_string(tpinfer::DTypeChoice::f16)) == "f16");
  CHECK(std::string(tpinfer::to_string(tpinfer::OnBadLine::skip)) == "skip");
  CHECK_FALSE(tpinfer::to_dtype(tpinfer::DTypeChoice::auto_).has_value());
  CHECK(tpinfer::to_dtype(tpinfer::DTypeChoice::f32) == tpinfer::DType::f32);
}

TEST_CASE("closest_match", "[config]") {
  using tpinfer::config::closest_match;
  const std::vector<std::string> keys = {"max_new_tokens", "temperature", "top_k", "top_p",
                                         "max_seq"};
  CHECK(closest_match("max_tokens", keys) == std::optional<std::string>("max_new_tokens"));
  CHECK(closest_match("topk", keys) == std::optional<std::string>("top_k"));
  CHECK(closest_match("TOP-P", keys) == std::optional<std::string>("top_p"));
  CHECK(closest_match("temp", keys) == std::optional<std::string>("temperature"));
  CHECK_FALSE(closest_match("quantization", keys).has_value());
  CHECK(tpinfer::config::edit_distance("kitten", "sitting") == 3);
}

TEST_CASE("configs/demo.yaml parses", "[config]") {
  const std::string path = std::string(TPINFER_REPO_ROOT) + "/configs/demo.yaml";
  const RunConfig c = parse_ok({path});
  CHECK(c.model == "build/models/stories260K-tp4");
  CHECK(c.prompt == "Once upon a time");
  CHECK(c.max_new_tokens == 200);
  CHECK(c.temperature == Approx(0.8));
  CHECK(c.top_p == Approx(0.9));
  CHECK(c.seed == 42);
}

TEST_CASE("step_timeout_s: auto (the default), a number, or 0", "[config]") {
  CHECK(parse_ok({"--model", "m"}).step_timeout_s == -1.0);
  CHECK(parse_ok({"--model", "m", "--step-timeout-s", "auto"}).step_timeout_s == -1.0);
  CHECK(parse_ok({"--model", "m", "--step-timeout-s", "AUTO"}).step_timeout_s == -1.0);
  CHECK(parse_ok({"--model", "m", "--step-timeout-s", "45"}).step_timeout_s == 45.0);
  CHECK(parse_ok({"--model", "m", "--step-timeout-s", "0"}).step_timeout_s == 0.0);
}
