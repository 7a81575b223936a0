// The run configuration: one member per key of the YAML file, each overridable by a flag
// (`--key-name`) and, for the keys the seed defined, an environment variable.
// Precedence: flag > environment > YAML > default. configs/README.md lists every key.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/log.h"

namespace tpinfer {

enum class BackendChoice { auto_, cpu, cuda };
enum class CommChoice { auto_, mpi, nccl };
// dtype of dummy weights (int8: int8 linear weights in blocks of 32, bf16 embedding and norms)
enum class DTypeChoice { auto_, f32, bf16, f16, int8 };
enum class OnBadLine { skip, fail };  // batch input: a line that does not parse

struct RunConfig {
  // Model
  std::string model;      // converted model dir (manifest.json + shards); HF dir with dummy_weights
  std::string tokenizer;  // directory with tokenizer.json; "" = same as model
  bool dummy_weights = false;
  DTypeChoice dtype = DTypeChoice::auto_;
  int layers = 0;                // 0 = all
  bool verify_checksums = true;  // hash each shard against manifest.json's sha256 before loading

  // Prompt
  std::string prompt;           // [PROMPT]
  std::string prompt_file;      // read by load_prompt(); set at most one of prompt / prompt_file
  bool chat = false;            // apply the tokenizer's chat template
  std::string system;           // system message (chat only)
  bool enable_thinking = true;  // Qwen3 chat template switch

  // Sampling
  int max_new_tokens = 256;         // [TOKENS]
  float temperature = 0.0f;         // [TEMP] 0 = greedy
  int top_k = 0;                    // [TOP_K] 0 = off
  float top_p = 1.0f;               // [TOP_P] in (0, 1]
  uint64_t seed = 0;                // fixed default, so runs are reproducible
  float min_p = 0.0f;               // in [0, 1]; 0 = off
  float presence_penalty = 0.0f;    // in [-2, 2] (OpenAI)
  float frequency_penalty = 0.0f;   // in [-2, 2] (OpenAI)
  float repetition_penalty = 1.0f;  // > 0; 1 = off (transformers)
  std::string logit_bias;           // "ID:BIAS,ID:BIAS" (bias in [-100, 100]); "" = none
  std::string stop_token_ids;       // "ID,ID": more ids that end generation; "" = none
  bool ignore_eos = false;
  std::string stop;   // a stop string: the text ends before it ("" = none)
  int logprobs = -1;  // metrics_json: each token's logprob and this many alternatives; -1 = off

  // Resources and parallelism
  int max_seq = 0;  // [MAX_SEQ] 0 = chosen by the engine
  // KV cache blocks per replica (16 tokens each); 0 = auto: on a GPU what mem_frac leaves after
  // weights, scratch and workspace, on the CPU batch_size sequences of max_seq (within budget).
  int64_t kv_cache_blocks = 0;
  bool prefix_caching = true;  // reuse the KV blocks of a prompt prefix seen before
  float mem_frac = 0.9f;       // [MEM_FRAC] in (0, 1]
  BackendChoice backend = BackendChoice::auto_;
  CommChoice comm = CommChoice::auto_;
  bool allow_gpu_sharing = false;
  int tp = 0;                           // 0 = world size / pp
  int pp = 1;                           // pipeline stages per replica (world = dp x pp x tp)
  int threads = 0;                      // CPU threads per rank; 0 = auto
  bool deterministic = false;           // CPU: the portable matmul, the same bits on every CPU
  bool allow_long_context = false;      // accept prompt + max_new_tokens > max_position_embeddings
  int64_t max_request_bytes = 4 << 20;  // a prompt (or JSONL line) larger than this is refused
  // Watchdog: a rank that sees no progress (no step, no collective completing) for this long
  // names what it was waiting on and aborts the job. 0 = off; -1 (`auto`) = adaptive:
  // max(60 s, 3 x the slowest step seen), see core/watchdog.h.
  double step_timeout_s = -1;

  // Output
  std::string metrics_json;  // "" = none; written by rank 0
  bool stream = true;
  bool echo = true;                     // print the prompt before the completion (not in chat mode)
  LogLevel log_level = LogLevel::info;  // [TPINFER_LOG_LEVEL]

  // Batch inference
  std::string input;   // JSONL prompts
  std::string output;  // JSONL results
  int batch_size = 8;
  OnBadLine on_bad_line = OnBadLine::fail;
  double progress_interval_s = 5.0;  // 0 = no progress reports
  // OpenAI-compatible server (rank 0 serves HTTP; the dp replicas decode)
  std::string serve;              // "HOST:PORT" (or ":PORT" / "PORT" for 127.0.0.1); "" = no server
  std::string api_key;            // [TPINFER_API_KEY] "" = no key asked for
  std::string served_model_name;  // the model id of /v1/models; "" = the model dir's name
  int max_queue = 256;            // requests waiting for a slot; one more is answered 429
  double shutdown_grace_s = 30.0;      // SIGTERM: running requests get this long to finish
  int max_connections = 2048;          // open HTTP connections; one more is answered 503
  double request_timeout_s = 30.0;     // a request's head and body must arrive within this
  double keep_alive_timeout_s = 60.0;  // an idle kept-alive connection is closed after this

  std::string config_path;  // the YAML file read, "" if none
};

// Parses argv (argv[1] may be the YAML path) and the environment (getenv; take a getter for tests).
// Returns std::nullopt after printing --help/--version to stdout (the caller exits 0).
// Throws tpinfer::Error on any bad input.
std::optional<RunConfig> parse_run_config(
    int argc, const char* const* argv,
    const std::function<const char*(const char*)>& getenv_fn = ::getenv);

std::string describe(const RunConfig&);  // one-line summary for the log

// Checks ranges, required keys and conflicts of a config built in code (parse_run_config has
// already done so, naming where each value came from). Throws tpinfer::Error.
void validate(const RunConfig&);

// The prompt text: `prompt`, or the contents of `prompt_file`. Throws if the file cannot be read.
std::string load_prompt(const RunConfig&);

// The list keys, parsed (validate() checks them): logit_bias "ID:BIAS,..." (BIAS in [-100, 100])
// and stop_token_ids "ID,...", ids >= 0. Throw naming the key, what was expected and what was
// found.
std::vector<std::pair<int32_t, float>> parse_logit_bias_key(const std::string& value);
std::vector<int32_t> parse_stop_token_ids_key(const std::string& value);

// The tokenizer location: `tokenizer`, or `model` when it is empty.
std::string tokenizer_path(const RunConfig&);

std::string help_text(const std::string& program);  // what --help prints
std::string version_text();                         // what --version prints

const char* to_string(BackendChoice);  // "auto" | "cpu" | "cuda"
const char* to_string(CommChoice);     // "auto" | "mpi" | "nccl"
const char* to_string(DTypeChoice);    // "auto" | "f32" | "bf16" | "f16" | "int8"
const char* to_string(OnBadLine);      // "skip" | "fail"
// The element type for dummy weights, or nullopt for auto (the model's torch_dtype).
std::optional<DType> to_dtype(DTypeChoice);

}  // namespace tpinfer
