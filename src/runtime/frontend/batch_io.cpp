#include "runtime/frontend/batch_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <unordered_map>

#include "core/error.h"
#include "runtime/frontend/openai/batch_lines.h"
#include "runtime/scheduler/request_check.h"

namespace tpinfer {
namespace {

using json = nlohmann::json;

const char* const kKnownKeys[] = {"id",
                                  "prompt",
                                  "messages",
                                  "max_new_tokens",
                                  "temperature",
                                  "top_k",
                                  "top_p",
                                  "seed",
                                  "stop",
                                  "logprobs",
                                  "min_p",
                                  "presence_penalty",
                                  "frequency_penalty",
                                  "repetition_penalty",
                                  "logit_bias",
                                  "stop_token_ids",
                                  "n",
                                  "response_format"};

std::string type_name(const json& v) {
  return v.type_name();
}

int get_int(const json& v, const char* key, int64_t lo, int64_t hi) {
  TPI_CHECK(v.is_number_integer(),
            "\"" << key << "\" must be an integer, found " << type_name(v) << " " << v.dump());
  const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)
                        ? hi + 1
                        : v.get<int64_t>();
  TPI_CHECK(x >= lo && x <= hi,
            "\"" << key << "\" must be in [" << lo << ", " << hi << "], found " << v.dump());
  return static_cast<int>(x);
}

float get_number(const json& v, const char* key) {
  TPI_CHECK(v.is_number(),
            "\"" << key << "\" must be a number, found " << type_name(v) << " " << v.dump());
  return v.get<float>();
}

std::vector<std::string> get_stop(const json& v) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else {
    TPI_CHECK(v.is_array(),
              "\"stop\" must be a string or an array of strings, found " << type_name(v));
    for (const json& s : v) {
      TPI_CHECK(s.is_string(),
                "\"stop\" must hold strings, found " << type_name(s) << " " << s.dump());
      out.push_back(s.get<std::string>());
    }
  }
  for (const std::string& s : out) TPI_CHECK(!s.empty(), "\"stop\" strings must not be empty");
  return out;
}

std::vector<ChatMessage> get_messages(const json& v) {
  TPI_CHECK(v.is_array() && !v.empty(),
            "\"messages\" must be a non-empty array of {\"role\", \"content\"} objects");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& m = v[i];
    TPI_CHECK(m.is_object() && m.contains("role") && m.contains("content") &&
                  m["role"].is_string() && m["content"].is_string(),
              "messages[" << i << "] must be {\"role\": string, \"content\": string}");
    const std::string role = m["role"].get<std::string>();
    TPI_CHECK(
        role == "system" || role == "user" || role == "assistant",
        "messages[" << i << "].role must be system, user or assistant, found \"" << role << "\"");
    out.push_back({role, m["content"].get<std::string>()});
  }
  return out;
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

ParsedLine parse_request_line(std::string_view line, const RequestDefaults& defaults) {
  json j;
  try {
    j = json::parse(line.begin(), line.end());
  } catch (const json::parse_error& e) {
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at ..."
    std::string what = e.what();
    const size_t cut = what.find("] ");
    TPI_FAIL("not valid JSON: " << (cut == std::string::npos ? what : what.substr(cut + 2)));
  }
  TPI_CHECK(j.is_object(), "a request must be a JSON object, found " << type_name(j));
  ParsedLine out;
  BatchRequest& r = out.request;
  TPI_CHECK(j.contains("id"), "missing \"id\"");
  r.id = j["id"];
  TPI_CHECK((r.id.is_string() && !r.id.get<std::string>().empty()) || r.id.is_number_integer(),
            "\"id\" must be a non-empty string or an integer, found " << type_name(r.id) << " "
                                                                      << r.id.dump());
  r.key = r.id.dump();
  const bool has_prompt = j.contains("prompt"), has_messages = j.contains("messages");
  TPI_CHECK(has_prompt != has_messages,
            (has_prompt ? "give either \"prompt\" or \"messages\", not both"
                        : "missing \"prompt\" (a string) or \"messages\" (a chat)"));
  if (has_prompt) {
    TPI_CHECK(j["prompt"].is_string(),
              "\"prompt\" must be a string, found " << type_name(j["prompt"]));
    r.prompt = j["prompt"].get<std::string>();
  } else {
    r.messages = get_messages(j["messages"]);
  }
  r.max_new_tokens = defaults.max_new_tokens;
  r.sampling = defaults.sampling;
  if (j.contains("max_new_tokens")) {
    r.max_new_tokens = get_int(j["max_new_tokens"], "max_new_tokens", 0, kMaxNewTokensCap);
  }
  if (j.contains("temperature")) {
    r.sampling.temperature = get_number(j["temperature"], "temperature");
    TPI_CHECK(r.sampling.temperature >= 0.0f,
              "\"temperature\" must be >= 0, found " << j["temperature"].dump());
  }
  if (j.contains("top_k")) {
    r.sampling.top_k = get_int(j["top_k"], "top_k", 0, std::numeric_limits<int>::max());
  }
  if (j.contains("top_p")) {
    r.sampling.top_p = get_number(j["top_p"], "top_p");
    TPI_CHECK(r.sampling.top_p > 0.0f && r.sampling.top_p <= 1.0f,
              "\"top_p\" must be in (0, 1], found " << j["top_p"].dump());
  }
  if (j.contains("seed")) {
    const json& s = j["seed"];
    TPI_CHECK(s.is_number_unsigned() || (s.is_number_integer() && s.get<int64_t>() >= 0),
              "\"seed\" must be an integer >= 0, found " << s.dump());
    r.sampling.seed = s.get<uint64_t>();
  }
  if (j.contains("stop")) r.stop = get_stop(j["stop"]);
  if (j.contains("min_p")) r.sampling.min_p = get_number(j["min_p"], "min_p");
  if (j.contains("presence_penalty")) {
    r.sampling.presence_penalty = get_number(j["presence_penalty"], "presence_penalty");
  }
  if (j.contains("frequency_penalty")) {
    r.sampling.frequency_penalty = get_number(j["frequency_penalty"], "frequency_penalty");
  }
  if (j.contains("repetition_penalty")) {
    r.sampling.repetition_penalty = get_number(j["repetition_penalty"], "repetition_penalty");
  }
  if (j.contains("logit_bias")) {
    const json& b = j["logit_bias"];
    TPI_CHECK(b.is_object(),
              "\"logit_bias\" must be an object {\"token id\": bias}, found " << type_name(b));
    r.sampling.logit_bias.clear();
    for (const auto& [key, value] : b.items()) {
      const bool id_ok = !key.empty() && key.size() <= 9 &&
                         key.find_first_not_of("0123456789") == std::string::npos;
      TPI_CHECK(id_ok,
                "\"logit_bias\" keys must be token ids (integers >= 0), found \"" << key << "\"");
      r.sampling.logit_bias.emplace_back(std::stoi(key), get_number(value, "logit_bias"));
    }
  }
  if (j.contains("stop_token_ids")) {
    const json& ids = j["stop_token_ids"];
    TPI_CHECK(ids.is_array(),
              "\"stop_token_ids\" must be an array of token ids, found " << type_name(ids));
    for (const json& id : ids) {
      r.stop_token_ids.push_back(
          get_int(id, "stop_token_ids", 0, std::numeric_limits<int32_t>::max()));
    }
  }
  if (j.contains("logprobs")) r.logprobs = get_int(j["logprobs"], "logprobs", 0, kMaxTopLogprobs);
  if (j.contains("n")) r.n = get_int(j["n"], "n", 1, kMaxChoices);
  if (j.contains("response_format") && !j["response_format"].is_null()) {
    try {  // the same field as the API's (openai/structured_fields.h)
      r.response_schema = openai::parse_response_format(j["response_format"]);
    } catch (const openai::ApiError& e) {
      TPI_FAIL(e.what());
    }
  }
  // What the types above do not say (a temperature of 1e39 is Inf as a float): the same checks
  // as every other front end's.
  check_request_params(r.max_new_tokens, r.sampling);
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (std::find(std::begin(kKnownKeys), std::end(kKnownKeys), key) == std::end(kKnownKeys)) {
      out.unknown_keys.push_back(key);
    }
  }
  return out;
}

namespace {

// An OpenAI batch line as a request; a line refused with a custom_id is answered (added to
// `refused`, an empty request returned), one without is a bad line (throws).
BatchRequest parse_openai_line(const std::string& line, const RequestDefaults& defaults,
                               std::vector<std::pair<std::string, std::string>>& refused) {
  BatchRequest r;
  try {
    openai::BatchLine b = openai::parse_batch_line(line, defaults.served_model);
    GenerationRequest& g = b.request.request;
    r.id = b.custom_id;
    r.key = r.id.dump();
    r.prompt = g.prompt;
    r.messages = g.messages;
    // No max_tokens: the job's max_new_tokens (a batch sizes its KV cache for the longest).
    r.max_new_tokens =
        g.max_new_tokens == kMaxNewTokensAsFit ? defaults.max_new_tokens : g.max_new_tokens;
    r.sampling = g.sampling;
    r.stop = g.stop;
    r.stop_token_ids = g.stop_token_ids;
    r.prompt_ids = g.prompt_ids;
    r.logprobs = g.logprobs;
    r.n = g.n;
    r.response_schema = g.response_schema;
    r.tools_json = g.tools_json;
    r.keep_special_text = g.keep_special_text;
    r.openai = std::make_shared<const openai::ParsedRequest>(std::move(b.request));
  } catch (const openai::BatchLineError& e) {
    if (e.custom_id.empty()) TPI_FAIL(e.what());
    refused.emplace_back(json(e.custom_id).dump(), openai::format_batch_error(e));
  }
  return r;
}

}  // namespace

InputFile read_input_file(const std::string& path, const RequestDefaults& defaults) {
  std::ifstream in(path, std::ios::binary);
  TPI_CHECK(in, path << ": cannot open the input file: " << std::strerror(errno));
  InputFile f;
  std::unordered_map<std::string, int> first_line;  // key -> line
  std::unordered_set<std::string> warned_keys;
  std::string line;
  while (std::getline(in, line)) {
    ++f.n_lines;
    if (is_blank(line)) continue;
    try {
      RequestLimits limits;
      limits.max_request_bytes = defaults.max_request_bytes;
      check_request_bytes(line.size(), "the line", limits);
      if (openai::detect_line_format(std::string_view(line)) == openai::LineFormat::openai) {
        BatchRequest r = parse_openai_line(line, defaults, f.refused);
        if (r.key.empty()) continue;  // refused: answered in the output
        r.line = f.n_lines;
        const auto [it, inserted] = first_line.emplace(r.key, f.n_lines);
        TPI_CHECK(inserted,
                  "duplicate custom_id " << r.key << " (first on line " << it->second << ")");
        f.requests.push_back(std::move(r));
        continue;
      }
      ParsedLine p = parse_request_line(line, defaults);
      p.request.line = f.n_lines;
      const auto [it, inserted] = first_line.emplace(p.request.key, f.n_lines);
      TPI_CHECK(inserted,
                "duplicate id " << p.request.key << " (first on line " << it->second << ")");
      for (const std::string& k : p.unknown_keys) {
        if (warned_keys.insert(k).second) {
          f.warnings.push_back(path + ":" + std::to_string(f.n_lines) + ": unknown key \"" + k +
                               "\" ignored (and on any later line)");
        }
      }
      f.requests.push_back(std::move(p.request));
    } catch (const Error& e) {
      f.bad_lines.push_back(path + ":" + std::to_string(f.n_lines) + ": " + e.what());
    }
  }
  TPI_CHECK(!in.bad(), path << ": read error");
  return f;
}

OutputFile scan_output_file(const std::string& path) {
  OutputFile f;
  struct stat st = {};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return f;  // no output yet
  TPI_CHECK(S_ISREG(st.st_mode), path << ": the output is not a regular file (a directory?); "
                                      << "expected a JSON Lines file to append results to");
  std::ifstream in(path, std::ios::binary);
  TPI_CHECK(in, path << ": cannot read the output file: " << std::strerror(errno));
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  int line_no = 0;
  while (pos < content.size()) {
    const size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) {
      f.torn_bytes = content.size() - pos;  // the job was killed while writing this line
      break;
    }
    ++line_no;
    const std::string_view line(content.data() + pos, nl - pos);
    pos = nl + 1;
    f.complete_bytes = pos;
    if (is_blank(line)) continue;
    json j;
    try {
      j = json::parse(line.begin(), line.end());
    } catch (const json::parse_error&) {
      TPI_FAIL(path << ":" << line_no << ": not a result line (not valid JSON); the output file "
                    << "must hold only tpinfer results: remove that line or choose another output");
    }
    // An OpenAI batch output line is keyed by its custom_id (its "id" is the line's own).
    const bool openai = j.is_object() && j.contains("custom_id") && j["custom_id"].is_string();
    TPI_CHECK(openai || (j.is_object() && j.contains("id") &&
                         (j["id"].is_string() || j["id"].is_number_integer())),
              path << ":" << line_no << ": not a result line (no \"id\" or \"custom_id\"); the "
                   << "output file must hold only tpinfer results: remove that line or choose "
                   << "another output");
    ++f.n_results;
    if (!f.done_keys.insert((openai ? j["custom_id"] : j["id"]).dump()).second) ++f.n_duplicates;
  }
  return f;
}

void truncate_file(const std::string& path, size_t bytes) {
  TPI_CHECK(::truncate(path.c_str(), static_cast<off_t>(bytes)) == 0,
            path << ": cannot cut the torn last line: " << std::strerror(errno));
}

namespace {
const char* const kLockedMessage =
    ": another job is writing this output file (it is locked); run one job per output file";
}  // namespace

void check_output_unlocked(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // no file, no writer
  const bool locked = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  TPI_CHECK(!locked, path << kLockedMessage);
}

ResultWriter::ResultWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  created_ = fd_ >= 0;
  if (!created_ && errno == EEXIST) fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  TPI_CHECK(fd_ >= 0,
            path << ": cannot open the output file for appending: " << std::strerror(errno));
  // Held until the writer closes (or the process dies): a second job on the same file stops
  // here instead of writing every id a second time.
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const bool locked = errno == EWOULDBLOCK;
    ::close(fd_);
    fd_ = -1;
    TPI_CHECK(!locked, path << kLockedMessage);
  }
}

ResultWriter::~ResultWriter() {
  if (fd_ >= 0) {
    ::fdatasync(fd_);
    ::close(fd_);
  }
}

void ResultWriter::write_line(const std::string& line) {
  std::string buf;
  buf.reserve(line.size() + 1);
  buf.append(line).push_back('\n');
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = ::write(fd_, buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) continue;
    TPI_CHECK(n > 0, path_ << ": write failed: " << std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

void ResultWriter::sync() {
  ::fdatasync(fd_);
}

void ResultWriter::discard_if_created_empty() {
  struct stat st = {};
  if (fd_ < 0 || !created_ || ::fstat(fd_, &st) != 0 || st.st_size != 0) return;
  ::unlink(path_.c_str());  // while still locked: no other job can have written to it
  ::close(fd_);
  fd_ = -1;
}

namespace {

// A result's own fields (all but its id; prompt_tokens when `with_prompt`).
nlohmann::ordered_json result_fields(const BatchResult& r, bool with_prompt) {
  nlohmann::ordered_json j;
  j["text"] = r.text;
  j["finish_reason"] = r.finish_reason;
  if (!r.error.empty()) j["error"] = r.error;
  if (with_prompt) j["prompt_tokens"] = r.prompt_tokens;
  j["completion_tokens"] = r.token_ids.size();
  j["token_ids"] = r.token_ids;
  const double decode_ms = r.total_ms - r.ttft_ms;
  const size_t n_decoded = r.token_ids.size() > 1 ? r.token_ids.size() - 1 : 0;
  j["ttft_ms"] = std::round(r.ttft_ms * 1000.0) / 1000.0;
  j["total_ms"] = std::round(r.total_ms * 1000.0) / 1000.0;
  j["decode_tokens_per_s"] = decode_ms > 0 && n_decoded > 0
                                 ? std::round(n_decoded / (decode_ms / 1000.0) * 10.0) / 10.0
                                 : 0.0;
  j["replica"] = r.replica;
  if (r.logprobs_asked) {
    nlohmann::ordered_json lps = nlohmann::ordered_json::array();
    for (const TokenLogprob& lp : r.logprobs) {
      nlohmann::ordered_json top = nlohmann::ordered_json::array();
      for (const auto& [id, v] : lp.top) top.push_back({{"id", id}, {"logprob", v}});
      lps.push_back({{"id", lp.id}, {"logprob", lp.logprob}, {"top_logprobs", top}});
    }
    j["logprobs"] = lps;
  }
  return j;
}

// Generated text may hold invalid UTF-8 (a model can emit any byte); never fail on it.
std::string dump_line(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace

std::string format_result_line(const BatchResult& r) {
  nlohmann::ordered_json j;
  j["id"] = r.id;
  j.update(result_fields(r, true));
  return dump_line(j);
}

std::string format_choices_line(const std::vector<BatchResult>& choices) {
  TPI_CHECK(!choices.empty(), "format_choices_line: no choices");
  if (choices.size() == 1) return format_result_line(choices[0]);
  nlohmann::ordered_json j;
  j["id"] = choices[0].id;
  j["n"] = choices.size();
  j["prompt_tokens"] = choices[0].prompt_tokens;
  size_t completion = 0;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    nlohmann::ordered_json c;
    c["index"] = i;
    c.update(result_fields(choices[i], false));
    completion += choices[i].token_ids.size();
    list.push_back(std::move(c));
  }
  j["completion_tokens"] = completion;
  j["choices"] = std::move(list);
  return dump_line(j);
}

}  // namespace tpinfer
