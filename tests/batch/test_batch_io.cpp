// The batch files without MPI: request parsing and its messages, the resume scan (done ids, a
// torn last line), the append-only writer and the result line format.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "runtime/frontend/batch_io.h"

using Catch::Matchers::Contains;
using tpinfer::BatchRequest;
using tpinfer::Error;
using tpinfer::RequestDefaults;

namespace {

std::string temp_path(const std::string& name) {
  return std::string("/tmp/tpinfer_test_batch_io_") + std::to_string(::getpid()) + "_" + name;
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RequestDefaults defaults() {
  RequestDefaults d;
  d.max_new_tokens = 50;
  d.sampling.temperature = 0.5f;
  d.sampling.top_k = 0;
  d.sampling.top_p = 0.9f;
  d.sampling.seed = 11;
  return d;
}

std::string parse_error(const std::string& line) {
  try {
    tpinfer::parse_request_line(line, defaults());
  } catch (const Error& e) {
    return e.what();
  }
  return "(parsed)";
}

}  // namespace

TEST_CASE("a request line takes the defaults and its own overrides", "[batch]") {
  const auto p = tpinfer::parse_request_line(R"({"id": "a1", "prompt": "Hello"})", defaults());
  CHECK(p.request.id == "a1");
  CHECK(p.request.key == "\"a1\"");
  CHECK(p.request.prompt == "Hello");
  CHECK(p.request.max_new_tokens == 50);
  CHECK(p.request.sampling.temperature == 0.5f);
  CHECK(p.request.sampling.seed == 11);
  CHECK(p.request.stop.empty());
  CHECK(p.unknown_keys.empty());

  const auto q = tpinfer::parse_request_line(
      R"({"id": 7, "prompt": "x", "max_new_tokens": 3, "temperature": 0, "top_k": 4,
          "top_p": 0.5, "seed": 18446744073709551615, "stop": "\n", "meta": 1})",
      defaults());
  CHECK(q.request.key == "7");
  CHECK(q.request.max_new_tokens == 3);
  CHECK(q.request.sampling.temperature == 0.0f);
  CHECK(q.request.sampling.top_k == 4);
  CHECK(q.request.sampling.top_p == 0.5f);
  CHECK(q.request.sampling.seed == 18446744073709551615ull);
  REQUIRE(q.request.stop.size() == 1);
  CHECK(q.request.stop[0] == "\n");
  CHECK(q.unknown_keys == std::vector<std::string>{"meta"});
}

TEST_CASE("chat messages are read in order", "[batch]") {
  const auto p = tpinfer::parse_request_line(
      R"({"id": "c", "messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Hi"}], "stop": ["a", "b"]})",
      defaults());
  REQUIRE(p.request.messages.size() == 2);
  CHECK(p.request.messages[0].role == "system");
  CHECK(p.request.messages[1].content == "Hi");
  CHECK(p.request.stop == std::vector<std::string>{"a", "b"});
}

TEST_CASE("response_format: the API's field in the simple format", "[batch]") {
  const auto p = tpinfer::parse_request_line(
      R"({"id": "j", "prompt": "x", "response_format": {"type": "json_schema",
          "json_schema": {"schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}})",
      defaults());
  CHECK(p.request.response_schema == R"({"properties":{"a":{"type":"integer"}},"type":"object"})");
  CHECK(p.unknown_keys.empty());
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "response_format": {"type": "json_schema",
                           "json_schema": {"schema": {"type": "string", "pattern": "a"}}}})"),
             Contains("at /pattern: 'pattern' is not supported"));
}

TEST_CASE("bad request lines say what is wrong", "[batch]") {
  CHECK_THAT(parse_error("not json"), Contains("not valid JSON"));
  CHECK_THAT(parse_error("[1, 2]"), Contains("must be a JSON object"));
  CHECK_THAT(parse_error(R"({"prompt": "x"})"), Contains("missing \"id\""));
  CHECK_THAT(parse_error(R"({"id": 1.5, "prompt": "x"})"), Contains("\"id\" must be"));
  CHECK_THAT(parse_error(R"({"id": "", "prompt": "x"})"), Contains("\"id\" must be"));
  CHECK_THAT(parse_error(R"({"id": "a"})"), Contains("missing \"prompt\""));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "messages": []})"), Contains("not both"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": 3})"), Contains("\"prompt\" must be a string"));
  CHECK_THAT(parse_error(R"({"id": "a", "messages": [{"role": "bot", "content": "x"}]})"),
             Contains("role must be system, user or assistant"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "max_new_tokens": -1})"),
             Contains("\"max_new_tokens\" must be in [0,"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "max_new_tokens": "5"})"),
             Contains("\"max_new_tokens\" must be an integer"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "temperature": -0.1})"),
             Contains("\"temperature\" must be >= 0"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "top_p": 0})"),
             Contains("\"top_p\" must be in (0, 1]"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "seed": -3})"),
             Contains("\"seed\" must be an integer >= 0"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "stop": [""]})"),
             Contains("must not be empty"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "stop": 5})"),
             Contains("\"stop\" must be a string or an array"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "n": 0})"),
             Contains("\"n\" must be in [1, 128], found 0"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "n": 129})"),
             Contains("\"n\" must be in [1, 128], found 129"));
  CHECK_THAT(parse_error(R"({"id": "a", "prompt": "x", "n": "3"})"),
             Contains("\"n\" must be an integer"));
}

TEST_CASE("n: a line asks for choices; their line lists them by index", "[batch][n]") {
  CHECK(tpinfer::parse_request_line(R"({"id": "a", "prompt": "x"})", defaults()).request.n == 1);
  const auto p = tpinfer::parse_request_line(R"({"id": "a", "prompt": "x", "n": 3})", defaults());
  CHECK(p.request.n == 3);
  CHECK(p.unknown_keys.empty());  // "n" is a known key

  const char* const kTexts[] = {"t0", "t1", "t2"};
  std::vector<tpinfer::BatchResult> choices(3);
  for (int i = 0; i < 3; ++i) {
    tpinfer::BatchResult& r = choices[static_cast<size_t>(i)];
    r.id = "a";
    r.text = kTexts[i];
    r.finish_reason = i == 2 ? "stop" : "length";
    r.prompt_tokens = 4;
    r.token_ids = std::vector<int32_t>(static_cast<size_t>(i + 1), 9);
    r.logprobs_asked = true;
    r.logprobs = std::vector<tpinfer::TokenLogprob>(static_cast<size_t>(i + 1),
                                                    tpinfer::TokenLogprob{9, -0.5f, {}});
  }
  const std::string line = tpinfer::format_choices_line(choices);
  CHECK(line.rfind("{\"id\":\"a\",\"n\":3,", 0) == 0);  // the id first: resume reads it
  const nlohmann::json j = nlohmann::json::parse(line);
  CHECK(j["prompt_tokens"] == 4);      // once
  CHECK(j["completion_tokens"] == 6);  // over all choices
  REQUIRE(j["choices"].size() == 3);
  for (int i = 0; i < 3; ++i) {
    const nlohmann::json& c = j["choices"][static_cast<size_t>(i)];
    CHECK(c["index"] == i);
    CHECK(c["text"] == kTexts[i]);
    CHECK(c["completion_tokens"] == i + 1);
    CHECK(c["logprobs"].size() == static_cast<size_t>(i + 1));
    CHECK_FALSE(c.contains("prompt_tokens"));
  }
  CHECK(j["choices"][2]["finish_reason"] == "stop");
  // One choice: the plain line, unchanged.
  CHECK(tpinfer::format_choices_line({choices[0]}) == tpinfer::format_result_line(choices[0]));
  // The output scan finds the id of a choices line (a rerun skips the request).
  const std::string path = temp_path("choices.jsonl");
  write_file(path, line + "\n");
  CHECK(tpinfer::scan_output_file(path).done_keys.count("\"a\"") == 1);
  std::remove(path.c_str());
}

TEST_CASE("the input file reports bad lines by number and skips blank ones", "[batch]") {
  const std::string path = temp_path("in.jsonl");
  write_file(path,
             "{\"id\": \"a\", \"prompt\": \"x\"}\n"
             "\n"
             "{\"id\": \"b\", \"prompt\": \"y\", \"colour\": 1}\n"
             "{broken\n"
             "{\"id\": \"a\", \"prompt\": \"again\"}\n"
             "{\"id\": 1, \"prompt\": \"z\"}");  // no final newline: still a line
  const tpinfer::InputFile f = tpinfer::read_input_file(path, defaults());
  CHECK(f.n_lines == 6);
  REQUIRE(f.requests.size() == 3);
  CHECK(f.requests[0].line == 1);
  CHECK(f.requests[1].line == 3);
  CHECK(f.requests[2].key == "1");
  REQUIRE(f.bad_lines.size() == 2);
  CHECK_THAT(f.bad_lines[0], Contains(path + ":4: not valid JSON"));
  CHECK_THAT(f.bad_lines[1], Contains(path + ":5: duplicate id \"a\" (first on line 1)"));
  REQUIRE(f.warnings.size() == 1);
  CHECK_THAT(f.warnings[0], Contains(":3: unknown key \"colour\""));
  std::remove(path.c_str());
  CHECK_THROWS_WITH(tpinfer::read_input_file(path, defaults()), Contains("cannot open"));
}

TEST_CASE("resume: the output's ids are done and a torn last line is cut", "[batch]") {
  const std::string path = temp_path("out.jsonl");
  std::remove(path.c_str());
  const tpinfer::OutputFile none = tpinfer::scan_output_file(path);
  CHECK(none.done_keys.empty());
  CHECK(none.complete_bytes == 0);

  const std::string complete = "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": 2, \"text\": \"y\"}\n";
  write_file(path, complete + "{\"id\": \"c\", \"te");
  const tpinfer::OutputFile f = tpinfer::scan_output_file(path);
  CHECK(f.n_results == 2);
  CHECK(f.done_keys.count("\"a\"") == 1);
  CHECK(f.done_keys.count("2") == 1);
  CHECK(f.done_keys.count("\"c\"") == 0);
  CHECK(f.complete_bytes == complete.size());
  CHECK(f.torn_bytes == 15);
  tpinfer::truncate_file(path, f.complete_bytes);
  CHECK(read_file(path) == complete);

  // A torn line that happens to be valid JSON is still torn: it lacks its newline.
  write_file(path, complete + "{\"id\": \"c\"}");
  CHECK(tpinfer::scan_output_file(path).done_keys.count("\"c\"") == 0);

  write_file(path, complete + complete);
  CHECK(tpinfer::scan_output_file(path).n_duplicates == 2);

  write_file(path, "{\"id\": \"a\"}\ngarbage\n{\"id\": \"b\"}\n");
  CHECK_THROWS_WITH(tpinfer::scan_output_file(path), Contains(path + ":2: not a result line"));
  write_file(path, "{\"text\": \"no id\"}\n");
  CHECK_THROWS_WITH(tpinfer::scan_output_file(path),
                    Contains(":1: not a result line (no \"id\" or \"custom_id\")"));
  std::remove(path.c_str());
}

TEST_CASE("the writer appends whole lines to what is there", "[batch]") {
  const std::string path = temp_path("w.jsonl");
  write_file(path, "{\"id\": \"old\"}\n");
  {
    tpinfer::ResultWriter w(path);
    w.write_line("{\"id\": \"new\"}");
    // Visible to a reader at once (no user-space buffer): a kill now loses nothing.
    CHECK(read_file(path) == "{\"id\": \"old\"}\n{\"id\": \"new\"}\n");
    w.write_line(std::string(100000, 'x'));
  }
  CHECK(read_file(path).size() == 28 + 100001);
  {
    // One writer per file: a second one (another job) is refused while the first is open.
    tpinfer::ResultWriter first(path);
    CHECK_THROWS_WITH(tpinfer::ResultWriter(path), Contains("another job is writing"));
    CHECK_THROWS_WITH(tpinfer::check_output_unlocked(path), Contains("another job is writing"));
  }
  CHECK_NOTHROW(tpinfer::check_output_unlocked(path));
  CHECK_NOTHROW(tpinfer::ResultWriter(path));
  std::remove(path.c_str());
  CHECK_THROWS_WITH(tpinfer::ResultWriter("/nonexistent-dir/x.jsonl"),
                    Contains("cannot open the output file"));
}

TEST_CASE("a result line has the id first and survives invalid UTF-8", "[batch]") {
  tpinfer::BatchResult r;
  r.id = "q1";
  r.text = std::string("ok \xff end");
  r.finish_reason = "length";
  r.prompt_tokens = 4;
  r.token_ids = {5, 6, 7};
  r.ttft_ms = 2.0;
  r.total_ms = 12.0;
  r.replica = 1;
  const std::string line = tpinfer::format_result_line(r);
  CHECK(line.rfind("{\"id\":\"q1\",\"text\":", 0) == 0);
  CHECK(line.find('\n') == std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  CHECK(j["completion_tokens"] == 3);
  CHECK(j["prompt_tokens"] == 4);
  CHECK(j["finish_reason"] == "length");
  CHECK(j["decode_tokens_per_s"].get<double>() == Approx(200.0));
  CHECK(j["text"].get<std::string>() == "ok \xef\xbf\xbd end");
}

TEST_CASE("a failed request's line says why and counts as finished", "[batch]") {
  tpinfer::BatchResult r;
  r.id = 7;
  r.finish_reason = "error";
  r.error = "token 3: non-finite logits: NaN at token id 0";
  r.token_ids = {5, 6};
  const std::string line = tpinfer::format_result_line(r);
  CHECK_THAT(line, Contains("\"finish_reason\":\"error\",\"error\":\"token 3: non-finite logits"));
  const std::string path = temp_path("err.jsonl");
  write_file(path, line + "\n");
  CHECK(tpinfer::scan_output_file(path).done_keys.count("7") == 1);
  std::remove(path.c_str());
}

TEST_CASE("request limits: line size and numeric fields, one message per field", "[batch]") {
  RequestDefaults d = defaults();
  d.max_request_bytes = 100;
  const std::string path = temp_path("limits.jsonl");
  write_file(path, "{\"id\": 1, \"prompt\": \"" + std::string(200, 'x') + "\"}\n" +
                       "{\"id\": 2, \"prompt\": \"x\", \"temperature\": 1e39}\n" +
                       "{\"id\": 3, \"prompt\": \"x\", \"max_new_tokens\": 2147483647}\n" +
                       "{\"id\": 4, \"prompt\": \"x\"}\n");
  const tpinfer::InputFile f = tpinfer::read_input_file(path, d);
  REQUIRE(f.requests.size() == 1);
  REQUIRE(f.bad_lines.size() == 3);
  CHECK_THAT(f.bad_lines[0], Contains(":1: the line is 223 bytes, larger than "
                                      "max_request_bytes=100 (refused before tokenizing)"));
  CHECK_THAT(f.bad_lines[1], Contains(":2: temperature must be a finite number >= 0, found inf"));
  CHECK_THAT(f.bad_lines[2],
             Contains(":3: \"max_new_tokens\" must be in [0, 16777216], found 2147483647"));
  std::remove(path.c_str());
}

TEST_CASE("the writer locks before the scan and leaves no empty file when refused", "[batch]") {
  const std::string path = temp_path("lock.jsonl");
  std::remove(path.c_str());
  {
    tpinfer::ResultWriter w(path);  // creates and locks
    CHECK_THROWS_WITH(tpinfer::ResultWriter(path), Contains("another job is writing"));
    w.discard_if_created_empty();
  }
  CHECK(!std::ifstream(path).good());  // gone: the refused job made it and wrote nothing
  write_file(path, "{\"id\": 1}\n");
  {
    tpinfer::ResultWriter w(path);
    w.discard_if_created_empty();  // not ours: kept
  }
  CHECK(read_file(path) == "{\"id\": 1}\n");
  std::remove(path.c_str());
  CHECK_THROWS_WITH(tpinfer::scan_output_file("/tmp"),
                    Contains("/tmp: the output is not a regular file (a directory?)"));
}

TEST_CASE("OpenAI batch lines: requests, answered refusals, and custom_id as the resume key",
          "[batch]") {
  const std::string in = temp_path("openai_in.jsonl");
  write_file(
      in,
      R"({"custom_id": "q1", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "max_tokens": 3, "logprobs": 2}})"
      "\n"
      R"({"custom_id": "q2", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}]}})"
      "\n"
      R"({"custom_id": "q3", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "top_p": 7}})"
      "\n"
      R"({"custom_id": "q4", "method": "POST", "url": "/v1/completions", "body": {"model": "other", "prompt": "x"}})"
      "\n"
      R"({"method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}})"
      "\n"
      R"({"custom_id": "q1", "method": "POST", "url": "/v1/completions", "body": {"prompt": "y"}})"
      "\n");
  tpinfer::RequestDefaults d = defaults();
  d.max_new_tokens = 11;
  d.served_model = "mine";
  const tpinfer::InputFile f = tpinfer::read_input_file(in, d);
  REQUIRE(f.requests.size() == 2);
  CHECK(f.requests[0].key == "\"q1\"");
  CHECK(f.requests[0].max_new_tokens == 3);
  CHECK(f.requests[0].logprobs == 2);
  REQUIRE(f.requests[0].openai);
  CHECK(f.requests[1].messages.size() == 1);
  CHECK(f.requests[1].max_new_tokens == 11);  // no max_tokens: the job's max_new_tokens
  REQUIRE(f.refused.size() == 2);             // answered in the output with their status
  CHECK(f.refused[0].first == "\"q3\"");
  CHECK_THAT(f.refused[0].second, Contains("\"status_code\":400") && Contains("top_p"));
  CHECK(f.refused[1].first == "\"q4\"");
  CHECK_THAT(f.refused[1].second, Contains("\"status_code\":404") && Contains("model_not_found"));
  REQUIRE(f.bad_lines.size() == 2);  // no custom_id; a repeated custom_id
  CHECK_THAT(f.bad_lines[1], Contains(":6: duplicate custom_id \"q1\" (first on line 1)"));

  const std::string out = temp_path("openai_out.jsonl");
  write_file(out, R"({"id": "batch_req_1", "custom_id": "q1", "response": null, "error": null})"
                  "\n");
  const tpinfer::OutputFile o = tpinfer::scan_output_file(out);
  CHECK(o.done_keys.count("\"q1\"") == 1);  // the custom_id, not the line's own id
  CHECK(o.done_keys.count("\"batch_req_1\"") == 0);
  std::remove(in.c_str());
  std::remove(out.c_str());
}
