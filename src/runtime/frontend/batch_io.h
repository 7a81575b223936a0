// The files of batch inference, without MPI: one request per input line (JSON Lines), one result
// per output line, and what a rerun needs to resume (the ids already in the output, a torn last
// line from a killed job cut away). Results are appended whole, one write() per line, so a kill
// at any moment leaves complete lines followed by at most one partial line.
//
// Input line:  {"id": "a1", "prompt": "Once upon a time", "max_new_tokens": 64, "temperature": 0.7,
//               "top_k": 40, "top_p": 0.9, "seed": 7, "stop": ["\n\n", "The end"]}
//              or "messages": [{"role": "user", "content": "..."}] instead of "prompt";
//              "logprobs": N adds each token's logprob and its N most likely alternatives;
//              "n": N (1..128) asks for N choices (sampled with seeds choice_seed(seed, i)).
//              Or, line by line, the OpenAI Batch API format (openai/batch_lines.h): {"custom_id",
//              "method": "POST", "url": "/v1/completions" | "/v1/chat/completions", "body"},
//              answered by {"id", "custom_id", "response": {"status_code", "request_id",
//              "body"}, "error"}; custom_id is then the resume key.
// Output line: {"id": "a1", "text": "...", "finish_reason": "stop"|"length", "prompt_tokens": 5,
//               "completion_tokens": 64, "token_ids": [...], "ttft_ms": .., "total_ms": ..,
//               "decode_tokens_per_s": .., "replica": 0}
//              With "n" > 1: {"id", "n", "prompt_tokens", "completion_tokens" (all choices),
//              "choices": [{"index", "text", "finish_reason", ...the fields above}]}
//              (format_choices_line).
//              A request that failed on its own (non-finite logits, an id with no token) has
//              "finish_reason": "error" and "error": "..." (the text generated until then); it
//              counts as finished, like any other line: a rerun does not repeat it.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "runtime/engine/sampler.h"
#include "runtime/frontend/openai/protocol.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

struct BatchRequest {
  nlohmann::json id;                  // a string or an integer, echoed in the result as given
  std::string key;                    // id.dump(): what duplicates and resume compare
  int line = 0;                       // 1-based line of the input file
  std::string prompt;                 // either a prompt ...
  std::vector<ChatMessage> messages;  // ... or a chat (non-empty)
  int max_new_tokens = 0;
  SamplingParams sampling;
  std::vector<std::string> stop;        // stop strings (the text ends before the match)
  std::vector<int32_t> stop_token_ids;  // more ids that end the request
  int logprobs = -1;                    // "logprobs": N (0..20): each token's logprob and N more
  int n = 1;                            // "n": choices (1..kMaxChoices), each with its own seed
  std::vector<int32_t> prompt_ids;  // filled by tokenization (or given: an OpenAI prompt of ids)
  std::string response_schema;      // structured output (GenerationRequest::response_schema)
  std::string tools_json;           // a chat's tools (GenerationRequest::tools_json)
  bool keep_special_text = false;   // GenerationRequest::keep_special_text
  // An OpenAI batch line (custom_id, method, url, body): the parsed body, for its answer.
  std::shared_ptr<const openai::ParsedRequest> openai;
};

// Values of the run configuration that a request may override.
struct RequestDefaults {
  int max_new_tokens = 256;
  SamplingParams sampling;
  int64_t max_request_bytes = 4 << 20;  // a longer input line is a bad line, never parsed
  std::string served_model;             // an OpenAI line naming another model is refused (404)
};

struct ParsedLine {
  BatchRequest request;
  std::vector<std::string> unknown_keys;  // ignored, worth a warning
};

// Parses one input line. Throws tpinfer::Error saying what is wrong (without the line number).
ParsedLine parse_request_line(std::string_view line, const RequestDefaults& defaults);

// Whole input file: valid requests in file order, and one message per bad line
// ("PATH:LINE: reason"). Blank lines are ignored; a repeated id is a bad line.
struct InputFile {
  std::vector<BatchRequest> requests;
  // OpenAI lines refused as requests (a bad body, another model): answered in the output like
  // any result, {"custom_id", "response": {"status_code": 400, ...}} (key, output line).
  std::vector<std::pair<std::string, std::string>> refused;
  std::vector<std::string> bad_lines;
  std::vector<std::string> warnings;
  int n_lines = 0;
};
InputFile read_input_file(const std::string& path, const RequestDefaults& defaults);

// What an existing output file already holds. A last line without its newline (a job killed
// mid-write) is not counted; complete_bytes is where the complete lines end. A complete line
// that is not a result object with an id throws (the file is not ours, or was edited).
struct OutputFile {
  std::unordered_set<std::string> done_keys;
  size_t complete_bytes = 0;
  size_t torn_bytes = 0;  // bytes after the last newline
  int n_results = 0;
  int n_duplicates = 0;
};
OutputFile scan_output_file(const std::string& path);  // a missing file is empty

// Throws when another process holds the output file's writer lock (a job still running on it).
void check_output_unlocked(const std::string& path);

// Cuts the file to its first `bytes` bytes (drops a torn last line before appending).
void truncate_file(const std::string& path, size_t bytes);

// Appends whole lines with one write() each, so a kill never leaves half a line behind a complete
// one. Not buffered in user space: a line is in the kernel when write_line returns. Holds an
// exclusive flock on the file while open; throws if another writer holds it. A job takes it
// BEFORE scanning the output for finished ids, so two jobs on one output never both run.
class ResultWriter {
 public:
  explicit ResultWriter(const std::string& path);
  ~ResultWriter();
  ResultWriter(const ResultWriter&) = delete;
  ResultWriter& operator=(const ResultWriter&) = delete;
  void write_line(const std::string& line);  // `line` without its newline
  void sync();                               // fdatasync
  // A job refused (or with nothing to do) after taking the lock leaves no empty file it made.
  void discard_if_created_empty();

 private:
  std::string path_;
  int fd_ = -1;
  bool created_ = false;  // this writer created the file
};

// A finished request as the output line shows it.
struct BatchResult {
  nlohmann::json id;
  std::string text;
  std::string finish_reason;  // "stop" | "length" | "error"
  std::string error;          // why the request failed ("error" only): the line carries it
  int prompt_tokens = 0;
  std::vector<int32_t> token_ids;  // generated ids (a stop id is not included)
  double ttft_ms = 0.0;            // admission to the replica until the first token
  double total_ms = 0.0;           // admission until finished
  int replica = 0;
  bool logprobs_asked = false;  // the line then has "logprobs"
  std::vector<TokenLogprob> logprobs;
};
std::string format_result_line(const BatchResult& r);
// A request with n > 1 choices (in index order): {"id", "n", "prompt_tokens" (once),
// "completion_tokens" (over all choices), "choices": [{"index", "text", "finish_reason",
// "completion_tokens", "token_ids", "ttft_ms", "total_ms", "decode_tokens_per_s", "replica",
// "logprobs"?, "error"?}, ...]}. One choice: format_result_line's line, unchanged.
std::string format_choices_line(const std::vector<BatchResult>& choices);

}  // namespace tpinfer
