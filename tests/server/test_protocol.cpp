// The OpenAI request parser (every field honoured or refused with its name) and the response,
// chunk and error formats of both endpoints.
#include <catch2/catch.hpp>
#include <string>

#include "runtime/frontend/openai/protocol.h"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;
using namespace tpinfer;
using namespace tpinfer::openai;

namespace {

ParsedRequest completion(const json& body) {
  return parse_request(Endpoint::completions, body);
}
ParsedRequest chat(const json& body) {
  return parse_request(Endpoint::chat_completions, body);
}

// The ApiError a body gets: its status, param and message.
ApiError refusal(Endpoint e, const json& body) {
  try {
    parse_request(e, body);
  } catch (const ApiError& err) {
    return err;
  }
  FAIL("accepted: " << body.dump());
  return ApiError(0, "");
}

std::string token_text(int32_t id) {
  if (id == 99) return std::string("\xe2\x82");  // the first two bytes of the euro sign
  std::string s = "t";  // appended: `"t" + std::string` trips GCC 12's -Wrestrict
  s += std::to_string(id);
  return s;
}

json chat_messages() {
  return json::array({{{"role", "user"}, {"content", "hi"}}});
}

}  // namespace

TEST_CASE("completions: a body with every supported field", "[protocol]") {
  const ParsedRequest p = completion({{"model", "m"},
                                      {"prompt", "Once upon"},
                                      {"max_tokens", 16},
                                      {"temperature", 0.5},
                                      {"top_p", 0.9},
                                      {"top_k", 40},
                                      {"seed", 7},
                                      {"stop", {"\n", "The end"}},
                                      {"n", 1},
                                      {"logprobs", 3},
                                      {"stream", true},
                                      {"stream_options", {{"include_usage", true}}},
                                      {"presence_penalty", 0},
                                      {"frequency_penalty", 0.0},
                                      {"logit_bias", json::object()},
                                      {"user", "u1"},
                                      {"best_of", 1},
                                      {"echo", false},
                                      {"suffix", nullptr},
                                      {"ignore_eos", true},
                                      {"some_vendor_field", 1}});
  CHECK(p.endpoint == Endpoint::completions);
  CHECK(p.model == "m");
  CHECK(p.request.prompt == "Once upon");
  CHECK(p.request.messages.empty());
  CHECK(p.request.max_new_tokens == 16);
  CHECK(p.request.sampling.temperature == Approx(0.5));
  CHECK(p.request.sampling.top_p == Approx(0.9));
  CHECK(p.request.sampling.top_k == 40);
  CHECK(p.request.sampling.seed == 7);
  CHECK(p.request.stop == std::vector<std::string>{"\n", "The end"});
  CHECK(p.request.logprobs == 3);
  CHECK(p.logprobs == 3);
  CHECK(p.stream);
  CHECK(p.request.stream);
  CHECK(p.include_usage);
  CHECK(p.request.ignore_eos);
  CHECK(p.ignored_fields == std::vector<std::string>{"some_vendor_field"});
}

TEST_CASE("completions: defaults and accepted alternatives", "[protocol]") {
  ParsedRequest p = completion({{"prompt", json::array({"only one"})}});
  CHECK(p.model.empty());
  CHECK(p.request.prompt == "only one");
  CHECK(p.request.max_new_tokens == kMaxNewTokensAsFit);
  CHECK(p.request.sampling.temperature == Approx(1.0));  // OpenAI's default
  CHECK(p.request.logprobs == -1);
  CHECK_FALSE(p.stream);
  p = completion({{"prompt", "x"},
                  {"top_k", -1},
                  {"stop", "END"},
                  {"max_tokens", 4.0},
                  {"temperature", nullptr}});
  CHECK(p.request.sampling.top_k == 0);
  CHECK(p.request.stop == std::vector<std::string>{"END"});
  CHECK(p.request.max_new_tokens == 4);

  // A job's own defaults apply to what the body leaves out.
  SamplingParams mine;
  mine.temperature = 0.0f;
  mine.top_k = 40;
  mine.seed = 9;
  p = parse_request(Endpoint::completions, json{{"prompt", "x"}, {"top_k", 5}}, mine);
  CHECK(p.request.sampling.temperature == 0.0f);
  CHECK(p.request.sampling.top_k == 5);
  CHECK(p.request.sampling.seed == 9);
}

TEST_CASE("completions: each refusal names its field", "[protocol]") {
  struct Case {
    json body;
    std::string param;
    std::string message;
  };
  const Case cases[] = {
      {{{"max_tokens", 5}}, "prompt", "'prompt': missing"},
      {{{"prompt", 5}}, "prompt", "expected a string or an array of one string, found an integer"},
      {{{"prompt", {"a", "b"}}}, "prompt", "only one prompt per request"},
      {{{"prompt", {1, 2, 3}}}, "prompt", "token ids are not supported"},
      {{{"prompt", json::array()}}, "prompt", "empty array"},
      {{{"prompt", "x"}, {"model", 3}}, "model", "'model': expected a string, found an integer"},
      {{{"prompt", "x"}, {"temperature", "hot"}},
       "temperature",
       "'temperature': expected a number, found a string"},
      {{{"prompt", "x"}, {"temperature", 2.5}}, "temperature", "expected a number in [0, 2]"},
      {{{"prompt", "x"}, {"top_p", 0}}, "top_p", "expected a number in (0, 1]"},
      {{{"prompt", "x"}, {"top_k", -2}}, "top_k", "found -2"},
      {{{"prompt", "x"}, {"max_tokens", 0}}, "max_tokens", "expected an integer in [1,"},
      {{{"prompt", "x"}, {"max_tokens", 1.5}}, "max_tokens", "expected an integer, found a number"},
      {{{"prompt", "x"}, {"seed", "7"}}, "seed", "expected an integer, found a string"},
      {{{"prompt", "x"}, {"stop", {"a", "b", "c", "d", "e"}}}, "stop", "at most 4"},
      {{{"prompt", "x"}, {"stop", {"a", 1}}}, "stop[1]", "expected a string, found an integer"},
      {{{"prompt", "x"}, {"stop", ""}}, "stop", "must not be empty"},
      {{{"prompt", "x"}, {"n", 2}}, "n", "only n=1"},
      {{{"prompt", "x"}, {"best_of", 3}}, "best_of", "only best_of=1"},
      {{{"prompt", "x"}, {"logprobs", 21}}, "logprobs", "expected an integer in [0, 20]"},
      {{{"prompt", "x"}, {"logprobs", true}}, "logprobs", "expected an integer, found a boolean"},
      {{{"prompt", "x"}, {"echo", true}}, "echo", "echo=true is not supported"},
      {{{"prompt", "x"}, {"suffix", "tail"}}, "suffix", "not supported"},
      {{{"prompt", "x"}, {"stream", "yes"}}, "stream", "expected a boolean, found a string"},
      {{{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}},
       "stream_options",
       "only allowed when 'stream' is true"},
      {{{"prompt", "x"}, {"stream", true}, {"stream_options", {{"include_usage", 1}}}},
       "stream_options.include_usage",
       "expected a boolean"},
      {{{"prompt", "x"}, {"presence_penalty", 0.5}}, "presence_penalty", "not supported"},
      {{{"prompt", "x"}, {"frequency_penalty", -1}}, "frequency_penalty", "not supported"},
      {{{"prompt", "x"}, {"frequency_penalty", 3}}, "frequency_penalty", "[-2, 2]"},
      {{{"prompt", "x"}, {"repetition_penalty", 1.2}}, "repetition_penalty", "not supported"},
      {{{"prompt", "x"}, {"logit_bias", {{"50256", -100}}}}, "logit_bias", "not supported"},
      {{{"prompt", "x"}, {"user", 5}}, "user", "expected a string"},
      {{{"prompt", "x"}, {"tools", {{{"type", "function"}}}}}, "tools", "not supported"},
      {{{"prompt", "x"}, {"tool_choice", "auto"}}, "tool_choice", "only available on /v1/chat"},
      {{{"prompt", "x"}, {"functions", {{{"name", "f"}}}}}, "functions", "not supported"},
      {{{"prompt", "x"}, {"response_format", {{"type", "xml"}}}},
       "response_format.type",
       "expected \"text\", \"json_object\" or \"json_schema\""},
      {{{"prompt", "x"}, {"ignore_eos", "no"}}, "ignore_eos", "expected a boolean"},
  };
  for (const Case& c : cases) {
    INFO(c.body.dump());
    const ApiError e = refusal(Endpoint::completions, c.body);
    CHECK(e.status == 400);
    CHECK(e.param == c.param);
    CHECK_THAT(std::string(e.what()), Contains(c.message));
    CHECK_THAT(std::string(e.what()), StartsWith("'" + c.param + "'"));
  }
}

TEST_CASE("chat: messages, roles and content parts", "[protocol]") {
  const ParsedRequest p = chat(
      {{"messages",
        {{{"role", "developer"}, {"content", "be brief"}},
         {{"role", "user"},
          {"content", {{{"type", "text"}, {"text", "one"}}, {{"type", "text"}, {"text", "two"}}}}},
         {{"role", "assistant"}, {"content", "ok"}, {"name", "bot"}, {"tool_calls", json::array()}},
         {{"role", "user"}, {"content", "go"}}}},
       {"max_completion_tokens", 12},
       {"max_tokens", 99},
       {"logprobs", true},
       {"top_logprobs", 2},
       {"tool_choice", "none"},
       {"response_format", {{"type", "text"}}}});
  REQUIRE(p.request.messages.size() == 4);
  CHECK(p.request.messages[0].role == "system");
  CHECK(p.request.messages[0].content == "be brief");
  CHECK(p.request.messages[1].content == "one\ntwo");
  CHECK(p.request.messages[2].role == "assistant");
  CHECK(p.request.max_new_tokens == 12);  // max_completion_tokens wins over max_tokens
  CHECK(p.logprobs == 2);
  CHECK(p.request.logprobs == 2);
  CHECK(p.request.prompt.empty());

  CHECK(chat({{"messages", chat_messages()}, {"logprobs", true}}).logprobs == 0);
  CHECK(chat({{"messages", chat_messages()}, {"logprobs", false}}).logprobs == -1);
  CHECK(chat({{"messages", chat_messages()}, {"max_tokens", 3}}).request.max_new_tokens == 3);
}

TEST_CASE("chat: each refusal names its field", "[protocol]") {
  struct Case {
    json body;
    std::string param;
    std::string message;
  };
  const json user = {{"role", "user"}, {"content", "hi"}};
  const Case cases[] = {
      {{{"prompt", "x"}}, "messages", "'messages': missing"},
      {{{"messages", json::array()}}, "messages", "at least one message"},
      {{{"messages", "hi"}}, "messages", "expected an array, found a string"},
      {{{"messages", {5}}}, "messages[0]", "expected an object, found an integer"},
      {{{"messages", {user, {{"content", "x"}}}}}, "messages[1].role", "missing"},
      {{{"messages", {user, {{"role", "tool"}, {"content", "x"}}}}},
       "messages[1].tool_call_id",
       "missing"},
      {{{"messages", {{{"role", "user"}}}}}, "messages[0].content", "missing"},
      {{{"messages", {{{"role", "user"}, {"content", 3}}}}},
       "messages[0].content",
       "expected a string or an array of content parts, found an integer"},
      {{{"messages",
         {user,
          {{"role", "user"},
           {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "image_url"}}}}}}}},
       "messages[1].content[1].type",
       "only \"text\" content parts"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}}}}}}}},
       "messages[0].content[0].text",
       "missing"},
      {{{"messages", {{{"role", "assistant"}, {"content", "x"}, {"tool_calls", {{{"id", "1"}}}}}}}},
       "messages[0].tool_calls[0].function",
       "missing"},
      {{{"messages", {user}}, {"logprobs", 2}}, "logprobs", "expected a boolean, found an integer"},
      {{{"messages", {user}}, {"top_logprobs", 2}},
       "top_logprobs",
       "only allowed when 'logprobs' is true"},
      {{{"messages", {user}}, {"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs", "[0, 20]"},
      {{{"messages", {user}}, {"max_completion_tokens", -1}},
       "max_completion_tokens",
       "expected an integer in [1,"},
      {{{"messages", {user}}, {"n", 3}}, "n", "only n=1"},
  };
  for (const Case& c : cases) {
    INFO(c.body.dump());
    const ApiError e = refusal(Endpoint::chat_completions, c.body);
    CHECK(e.status == 400);
    CHECK(e.param == c.param);
    CHECK_THAT(std::string(e.what()), Contains(c.message));
  }
}

TEST_CASE("a body that is not JSON or not an object", "[protocol]") {
  try {
    parse_request_body(Endpoint::completions, "{\"prompt\": ");
    FAIL("accepted");
  } catch (const ApiError& e) {
    CHECK(e.status == 400);
    CHECK(e.param.empty());
    CHECK_THAT(std::string(e.what()), StartsWith("the request body is not valid JSON"));
  }
  CHECK_THAT(std::string(refusal(Endpoint::completions, json::array()).what()),
             Contains("must be a JSON object, found an array"));
  CHECK(parse_request_body(Endpoint::completions, R"({"prompt": "ok"})").request.prompt == "ok");
}

TEST_CASE("the model check answers 404 model_not_found", "[protocol]") {
  CHECK_NOTHROW(check_model("", "tiny"));
  CHECK_NOTHROW(check_model("tiny", "tiny"));
  try {
    check_model("gpt-4", "tiny");
    FAIL("accepted");
  } catch (const ApiError& e) {
    CHECK(e.status == 404);
    CHECK(e.code == "model_not_found");
    CHECK_THAT(std::string(e.what()), Contains("`gpt-4`"));
    const json j = error_json(e);
    CHECK(j["error"]["type"] == "invalid_request_error");
  }
}

TEST_CASE("error JSON is OpenAI's shape", "[protocol]") {
  const json j = error_json(400, "'temperature': bad", "temperature");
  CHECK(j == json{{"error",
                   {{"message", "'temperature': bad"},
                    {"type", "invalid_request_error"},
                    {"param", "temperature"},
                    {"code", nullptr}}}});
  CHECK(error_json(429, "queue full")["error"]["type"] == "requests");
  CHECK(error_json(500, "boom")["error"]["type"] == "server_error");
  CHECK(error_json(503, "bye")["error"]["param"].is_null());
  CHECK(error_json(401, "key", "", "invalid_api_key")["error"]["code"] == "invalid_api_key");
}

TEST_CASE("ids have their endpoint's prefix and are unique", "[protocol]") {
  const std::string a = new_response_id(Endpoint::completions);
  const std::string b = new_response_id(Endpoint::chat_completions);
  CHECK_THAT(a, StartsWith("cmpl-"));
  CHECK_THAT(b, StartsWith("chatcmpl-"));
  CHECK(a.size() == 5 + 24);
  CHECK(new_response_id(Endpoint::completions) != a);
}

namespace {
GenerationOutcome outcome_of(std::string text, std::vector<int32_t> ids, std::string reason) {
  GenerationOutcome o;
  o.text = std::move(text);
  o.token_ids = std::move(ids);
  o.finish_reason = std::move(reason);
  o.prompt_tokens = 5;
  return o;
}
ResponseContext context(Endpoint e, int logprobs = -1, bool usage = false) {
  ResponseContext c;
  c.endpoint = e;
  c.id = e == Endpoint::completions ? "cmpl-x" : "chatcmpl-x";
  c.created = 1700000000;
  c.model = "tiny";
  c.logprobs = logprobs;
  c.include_usage = usage;
  return c;
}
}  // namespace

TEST_CASE("non-streaming responses of both endpoints", "[protocol]") {
  const GenerationOutcome o = outcome_of("Hello world", {1, 2}, "length");
  json r = format_response(context(Endpoint::completions), o, token_text);
  CHECK(r["id"] == "cmpl-x");
  CHECK(r["object"] == "text_completion");
  CHECK(r["created"] == 1700000000);
  CHECK(r["model"] == "tiny");
  REQUIRE(r["choices"].size() == 1);
  CHECK(r["choices"][0] == json{{"index", 0},
                                {"text", "Hello world"},
                                {"logprobs", nullptr},
                                {"finish_reason", "length"}});
  CHECK(r["usage"] == json{{"prompt_tokens", 5}, {"completion_tokens", 2}, {"total_tokens", 7}});

  r = format_response(context(Endpoint::chat_completions), outcome_of("Hi", {1}, "stop"),
                      token_text);
  CHECK(r["object"] == "chat.completion");
  CHECK(r["choices"][0]["message"] == json{{"role", "assistant"}, {"content", "Hi"}});
  CHECK(r["choices"][0]["finish_reason"] == "stop");
  CHECK(r["usage"]["total_tokens"] == 6);
}

TEST_CASE("an error or cancelled outcome never becomes a choice", "[protocol]") {
  GenerationOutcome o = outcome_of("partial", {1}, "error");
  o.error = "non-finite logits";
  try {
    format_response(context(Endpoint::completions), o, token_text);
    FAIL("formatted");
  } catch (const ApiError& e) {
    CHECK(e.status == 500);
    CHECK_THAT(std::string(e.what()), Contains("non-finite logits"));
  }
  o.finish_reason = "cancelled";
  CHECK_THROWS_AS(format_response(context(Endpoint::chat_completions), o, token_text), ApiError);
}

TEST_CASE("logprobs in each endpoint's form, with raw bytes", "[protocol]") {
  GenerationOutcome o = outcome_of("t1t99", {1, 99}, "stop");
  o.logprobs = {{1, -0.25f, {{1, -0.25f}, {2, -1.5f}}},
                {99, -std::numeric_limits<float>::infinity(), {{99, -2.0f}, {3, -3.0f}}}};
  json c = format_response(context(Endpoint::chat_completions, 2), o, token_text);
  const json& content = c["choices"][0]["logprobs"]["content"];
  REQUIRE(content.size() == 2);
  CHECK(content[0]["token"] == "t1");
  CHECK(content[0]["logprob"] == Approx(-0.25));
  CHECK(content[0]["bytes"] == json{116, 49});
  REQUIRE(content[0]["top_logprobs"].size() == 2);
  CHECK(content[0]["top_logprobs"][1] ==
        json{{"token", "t2"}, {"logprob", -1.5}, {"bytes", {116, 50}}});
  CHECK(content[1]["bytes"] == json{0xe2, 0x82});   // a character's first bytes, as they are
  CHECK(content[1]["logprob"] == Approx(-9999.0));  // -inf is not JSON
  // Dumping never throws on the fragment: it becomes U+FFFD.
  const std::string text = dump(c);
  CHECK_THAT(text, Contains("\xef\xbf\xbd"));
  CHECK_NOTHROW(json::parse(text));

  json t = format_response(context(Endpoint::completions, 2), o, token_text);
  const json& lp = t["choices"][0]["logprobs"];
  REQUIRE(lp["tokens"].size() == 2);
  CHECK(lp["tokens"][0] == "t1");  // [1] holds the raw fragment until dumped
  CHECK(lp["token_logprobs"][0] == Approx(-0.25));
  CHECK(lp["top_logprobs"][0] == json{{"t1", -0.25}, {"t2", -1.5}});
  CHECK(lp["text_offset"] == json{0, 2});
  CHECK_NOTHROW(json::parse(dump(t)));
}

namespace {
// The data of each `data: ...` event, in order.
std::vector<std::string> events(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t end = s.find("\n\n", pos);
    REQUIRE(end != std::string::npos);
    const std::string ev = s.substr(pos, end - pos);
    REQUIRE(ev.rfind("data: ", 0) == 0);
    out.push_back(ev.substr(6));
    pos = end + 2;
  }
  return out;
}
GenerationDelta delta_of(std::string text, std::vector<int32_t> ids) {
  GenerationDelta d;
  d.text = std::move(text);
  d.token_ids = std::move(ids);
  return d;
}
}  // namespace

TEST_CASE("chat streaming: role chunk, content deltas, finish chunk, usage, [DONE]", "[protocol]") {
  StreamFormatter f(context(Endpoint::chat_completions, -1, true), token_text);
  std::string all = f.begin();
  all += f.delta(delta_of("Hel", {1}));
  all += f.delta(delta_of("", {}));  // nothing to say: no event
  all += f.delta(delta_of("lo", {2}));
  all += f.finish(outcome_of("Hello", {1, 2}, "stop"));
  const auto ev = events(all);
  REQUIRE(ev.size() == 6);
  const json first = json::parse(ev[0]);
  CHECK(first["object"] == "chat.completion.chunk");
  CHECK(first["id"] == "chatcmpl-x");
  CHECK(first["choices"][0]["delta"] == json{{"role", "assistant"}, {"content", ""}});
  CHECK(first["usage"].is_null());
  CHECK(first.contains("usage"));
  CHECK(json::parse(ev[1])["choices"][0]["delta"]["content"] == "Hel");
  CHECK(json::parse(ev[2])["choices"][0]["delta"]["content"] == "lo");
  const json last = json::parse(ev[3]);
  CHECK(last["choices"][0]["delta"] == json::object());
  CHECK(last["choices"][0]["finish_reason"] == "stop");
  const json usage = json::parse(ev[4]);
  CHECK(usage["choices"] == json::array());
  CHECK(usage["usage"]["completion_tokens"] == 2);
  CHECK(ev[5] == "[DONE]");
}

TEST_CASE("completion streaming: text deltas, leftover text, no usage unless asked", "[protocol]") {
  StreamFormatter f(context(Endpoint::completions, 1), token_text);
  std::string all = f.begin();
  CHECK(all.empty());
  GenerationDelta d = delta_of("t1", {1});
  d.logprobs = {{1, -0.5f, {{1, -0.5f}}}};
  all += f.delta(d);
  // The outcome holds text the deltas did not carry: it is sent before the finish chunk.
  GenerationOutcome o = outcome_of("t1t2", {1, 2}, "length");
  o.logprobs = {{1, -0.5f, {{1, -0.5f}}}, {2, -0.75f, {{2, -0.75f}}}};
  all += f.finish(o);
  const auto ev = events(all);
  REQUIRE(ev.size() == 4);
  const json a = json::parse(ev[0]);
  CHECK(a["object"] == "text_completion");
  CHECK_FALSE(a.contains("usage"));
  CHECK(a["choices"][0]["text"] == "t1");
  CHECK(a["choices"][0]["logprobs"]["tokens"] == json{"t1"});
  CHECK(a["choices"][0]["finish_reason"].is_null());
  const json b = json::parse(ev[1]);
  CHECK(b["choices"][0]["text"] == "t2");
  CHECK(b["choices"][0]["logprobs"]["text_offset"] == json{2});
  const json c = json::parse(ev[2]);
  CHECK(c["choices"][0]["text"] == "");
  CHECK(c["choices"][0]["finish_reason"] == "length");
  CHECK(ev[3] == "[DONE]");
}

TEST_CASE("a stream that fails ends with an error event and [DONE]", "[protocol]") {
  StreamFormatter f(context(Endpoint::chat_completions), token_text);
  f.begin();
  GenerationOutcome o = outcome_of("", {}, "error");
  o.error = "replica lost";
  const auto ev = events(f.finish(o));
  REQUIRE(ev.size() == 2);
  const json e = json::parse(ev[0]);
  CHECK(e["error"]["type"] == "server_error");
  CHECK_THAT(e["error"]["message"].get<std::string>(), Contains("replica lost"));
  CHECK(ev[1] == "[DONE]");
}
