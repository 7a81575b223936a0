// OpenAI Batch API lines: format detection, input parsing with field-naming errors, output lines
// for results and refusals, and the resume key.
#include <catch2/catch.hpp>
#include <string>

#include "runtime/frontend/openai/batch_lines.h"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;
using namespace tpinfer;
using namespace tpinfer::openai;

namespace {

BatchLineError line_error(const std::string& line, const std::string& model = "") {
  try {
    parse_batch_line(line, model);
  } catch (const BatchLineError& e) {
    return e;
  }
  FAIL("accepted: " << line);
  return BatchLineError("", 0, "");
}

std::string no_text(int32_t) {
  return "";
}

}  // namespace

TEST_CASE("batch lines: the two formats are told apart", "[batch_lines]") {
  CHECK(detect_line_format(std::string_view(R"({"id": "a", "prompt": "x"})")) ==
        LineFormat::simple);
  CHECK(detect_line_format(std::string_view(R"({"id": 3, "messages": []})")) == LineFormat::simple);
  CHECK(detect_line_format(std::string_view(
            R"({"custom_id": "r1", "method": "POST", "url": "/v1/completions", "body": {}})")) ==
        LineFormat::openai);
  CHECK(detect_line_format(std::string_view(R"({"custom_id": "r1"})")) == LineFormat::unknown);
  CHECK(detect_line_format(std::string_view("not json")) == LineFormat::unknown);
  CHECK(detect_line_format(std::string_view("[1]")) == LineFormat::unknown);
}

TEST_CASE("batch lines: chat and completion requests", "[batch_lines]") {
  BatchLine b = parse_batch_line(
      R"({"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",)"
      R"( "body": {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],)"
      R"( "max_completion_tokens": 8, "temperature": 0}})",
      "tiny");
  CHECK(b.custom_id == "r1");
  CHECK(b.request.endpoint == Endpoint::chat_completions);
  REQUIRE(b.request.request.messages.size() == 1);
  CHECK(b.request.request.max_new_tokens == 8);
  CHECK(b.request.request.sampling.temperature == 0.0f);
  CHECK_FALSE(b.request.request.stream);

  b = parse_batch_line(
      R"({"custom_id": "r2", "url": "/v1/completions", "body": {"prompt": "Once", "logprobs": 2}})");
  CHECK(b.request.endpoint == Endpoint::completions);
  CHECK(b.request.request.prompt == "Once");
  CHECK(b.request.logprobs == 2);
}

TEST_CASE("batch lines: refusals name the field and keep the custom_id", "[batch_lines]") {
  BatchLineError e = line_error("{not json");
  CHECK(e.custom_id.empty());
  CHECK(e.status == 0);
  e = line_error(R"({"url": "/v1/completions", "body": {}})");
  CHECK_THAT(std::string(e.what()), Contains("'custom_id': missing"));
  e = line_error(R"({"custom_id": 5, "url": "/v1/completions", "body": {}})");
  CHECK_THAT(std::string(e.what()), Contains("'custom_id': expected a non-empty string"));
  e = line_error(R"({"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": {}})");
  CHECK(e.custom_id == "a");
  CHECK(e.status == 0);
  CHECK_THAT(std::string(e.what()), Contains("'method': expected \"POST\""));
  e = line_error(R"({"custom_id": "a", "url": "/v1/embeddings", "body": {}})");
  CHECK_THAT(std::string(e.what()), Contains("'url': expected"));
  e = line_error(R"({"custom_id": "a", "url": "/v1/completions", "body": "x"})");
  CHECK_THAT(std::string(e.what()), Contains("'body': expected an object"));
  e = line_error(R"({"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "x",)"
                 R"( "temperature": "hot"}})");
  CHECK(e.custom_id == "a");
  CHECK(e.status == 400);
  CHECK(e.param == "temperature");
  CHECK_THAT(std::string(e.what()),
             StartsWith("'body.temperature': expected a number, found a string"));
  e = line_error(R"({"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "x",)"
                 R"( "stream": true}})");
  CHECK(e.status == 400);
  CHECK_THAT(std::string(e.what()), Contains("'body.stream': streaming is not available"));
  e = line_error(R"({"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "x",)"
                 R"( "model": "other"}})",
                 "tiny");
  CHECK(e.status == 404);
  CHECK(e.code == "model_not_found");
}

TEST_CASE("batch lines: a result line holds the API response", "[batch_lines]") {
  ResponseContext ctx;
  ctx.endpoint = Endpoint::chat_completions;
  ctx.id = "chatcmpl-1";
  ctx.created = 1;
  ctx.model = "tiny";
  GenerationOutcome o;
  o.text = "Hello";
  o.finish_reason = "stop";
  o.prompt_tokens = 3;
  o.token_ids = {1, 2};
  const json line = json::parse(format_batch_result("r1", ctx, o, no_text));
  CHECK_THAT(line["id"].get<std::string>(), StartsWith("batch_req_"));
  CHECK(line["custom_id"] == "r1");
  CHECK(line["error"].is_null());
  CHECK(line["response"]["status_code"] == 200);
  CHECK_THAT(line["response"]["request_id"].get<std::string>(), StartsWith("req_"));
  const json& body = line["response"]["body"];
  CHECK(body["object"] == "chat.completion");
  CHECK(body["choices"][0]["message"]["content"] == "Hello");
  CHECK(body["usage"]["total_tokens"] == 5);
  CHECK(output_line_custom_id(line.dump()) == std::optional<std::string>("r1"));

  o.finish_reason = "error";
  o.error = "non-finite logits";
  const json failed = json::parse(format_batch_result("r2", ctx, o, no_text));
  CHECK(failed["response"]["status_code"] == 500);
  CHECK(failed["response"]["body"]["error"]["type"] == "server_error");
  CHECK_THAT(failed["response"]["body"]["error"]["message"].get<std::string>(),
             Contains("non-finite logits"));
  CHECK(failed["error"].is_null());
}

TEST_CASE("batch lines: a body's n answers its choices by index", "[batch_lines][n]") {
  const BatchLine b = parse_batch_line(
      R"({"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "n": 2}})");
  CHECK(b.request.request.n == 2);
  ResponseContext ctx = make_context(b.request, "tiny", 1);
  CHECK(ctx.n == 2);
  std::vector<GenerationOutcome> outcomes(2);
  for (int i = 0; i < 2; ++i) {
    outcomes[static_cast<size_t>(i)].index = 1 - i;  // any order
    outcomes[static_cast<size_t>(i)].text = "c" + std::to_string(1 - i);
    outcomes[static_cast<size_t>(i)].finish_reason = "length";
    outcomes[static_cast<size_t>(i)].prompt_tokens = 3;
    outcomes[static_cast<size_t>(i)].token_ids = {1, 2};
  }
  const json line = json::parse(format_batch_result("c", ctx, outcomes, no_text));
  const json& body = line["response"]["body"];
  REQUIRE(body["choices"].size() == 2);
  CHECK(body["choices"][0]["index"] == 0);
  CHECK(body["choices"][0]["text"] == "c0");
  CHECK(body["choices"][1]["text"] == "c1");
  CHECK(body["usage"] == json{{"prompt_tokens", 3}, {"completion_tokens", 4}, {"total_tokens", 7}});
}

TEST_CASE("batch lines: refusal lines", "[batch_lines]") {
  const json api = json::parse(
      format_batch_error(BatchLineError("r3", 400, "'body.top_p': expected a number", "top_p")));
  CHECK(api["custom_id"] == "r3");
  CHECK(api["response"]["status_code"] == 400);
  CHECK(api["response"]["body"]["error"]["param"] == "top_p");
  CHECK(api["response"]["body"]["error"]["type"] == "invalid_request_error");
  CHECK(api["error"].is_null());

  const json not_a_request = json::parse(
      format_batch_error(BatchLineError("r4", 0, "'url': expected ...", "url", "invalid_url")));
  CHECK(not_a_request["response"].is_null());
  CHECK(not_a_request["error"] ==
        json{{"code", "invalid_url"}, {"message", "'url': expected ..."}});
  CHECK(output_line_custom_id(not_a_request.dump()) == std::optional<std::string>("r4"));

  const json queue = json::parse(format_batch_error("r5", 429, "queue full"));
  CHECK(queue["response"]["body"]["error"]["type"] == "requests");

  CHECK_FALSE(output_line_custom_id(R"({"id": "a1", "text": "x"})").has_value());
  CHECK_FALSE(output_line_custom_id("torn {").has_value());
}
