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
      {{{"prompt", 5}}, "prompt", "expected a string, an array of strings, an array of token ids"},
      {{{"prompt", {"a", 2}}}, "prompt[1]", "expected a string (as prompt[0]), found an integer"},
      {{{"prompt", {1, -2, 3}}}, "prompt[1]", "expected an integer in [0, 2147483647], found -2"},
      {{{"prompt", {1, "a"}}}, "prompt[1]", "expected a token id"},
      {{{"prompt", {{1, 2}, json::array()}}}, "prompt[1]", "found an empty array"},
      {{{"prompt", {{1, 2}, "a"}}}, "prompt[1]", "expected an array of token ids (as prompt[0])"},
      {{{"prompt", json::array()}}, "prompt", "empty array"},
      {{{"prompt", {"a", "b"}}, {"stream", true}}, "prompt", "not supported with stream=true"},
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
      {{{"prompt", "x"}, {"n", 0}}, "n", "expected an integer in [1, 128], found 0"},
      {{{"prompt", "x"}, {"n", 129}}, "n", "expected an integer in [1, 128], found 129"},
      {{{"prompt", "x"}, {"n", 2.5}}, "n", "expected an integer, found a number"},
      {{{"prompt", "x"}, {"n", "3"}}, "n", "expected an integer, found a string"},
      {{{"prompt", "x"}, {"best_of", 3}}, "best_of", "only best_of = n is supported"},
      {{{"prompt", "x"}, {"n", 3}, {"best_of", 2}}, "best_of", "must be >= n (3), found 2"},
      {{{"prompt", "x"}, {"logprobs", 21}}, "logprobs", "expected an integer in [0, 20]"},
      {{{"prompt", "x"}, {"logprobs", true}}, "logprobs", "expected an integer, found a boolean"},
      {{{"prompt", "x"}, {"echo", true}, {"stream", true}}, "echo", "not supported with stream"},
      {{{"prompt", "x"}, {"echo", 1}}, "echo", "expected a boolean"},
      {{{"prompt", "x"}, {"max_tokens", 0}, {"echo", false}}, "max_tokens", "in [1,"},
      {{{"prompt", "x"}, {"min_p", 1.5}}, "min_p", "expected a number in [0, 1]"},
      {{{"prompt", "x"}, {"stop_token_ids", 3}}, "stop_token_ids", "expected an array"},
      {{{"prompt", "x"}, {"stop_token_ids", {1, -1}}}, "stop_token_ids[1]", "found -1"},
      {{{"prompt", "x"}, {"logit_bias", {{"abc", 1}}}}, "logit_bias", "found \"abc\""},
      {{{"prompt", "x"}, {"logit_bias", {{"5", "high"}}}}, "logit_bias.5", "expected a number"},
      {{{"prompt", "x"}, {"logit_bias", {1, 2}}}, "logit_bias", "expected an object"},
      {{{"prompt", "x"}, {"repetition_penalty", 0}}, "repetition_penalty", "in (0,"},
      {{{"prompt", "x"}, {"suffix", "tail"}}, "suffix", "not supported"},
      {{{"prompt", "x"}, {"stream", "yes"}}, "stream", "expected a boolean, found a string"},
      {{{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}},
       "stream_options",
       "only allowed when 'stream' is true"},
      {{{"prompt", "x"}, {"stream", true}, {"stream_options", {{"include_usage", 1}}}},
       "stream_options.include_usage",
       "expected a boolean"},
      {{{"prompt", "x"}, {"presence_penalty", 2.5}}, "presence_penalty", "[-2, 2]"},
      {{{"prompt", "x"}, {"frequency_penalty", 3}}, "frequency_penalty", "[-2, 2]"},
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
      {{{"messages", {user}}, {"n", -1}}, "n", "expected an integer in [1, 128], found -1"},
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

// --- n > 1: choices -----------------------------------------------------------------------------

TEST_CASE("n: parsed on both endpoints, best_of = n accepted, 1 by default", "[protocol][n]") {
  CHECK(completion({{"prompt", "x"}}).request.n == 1);
  CHECK(completion({{"prompt", "x"}, {"n", 3}}).request.n == 3);
  CHECK(completion({{"prompt", "x"}, {"n", 3.0}}).request.n == 3);
  CHECK(completion({{"prompt", "x"}, {"n", 4}, {"best_of", 4}}).request.n == 4);
  CHECK(completion({{"prompt", "x"}, {"n", 128}}).request.n == kMaxChoices);
  CHECK(chat({{"messages", chat_messages()}, {"n", 5}}).request.n == 5);
  const ApiError e = refusal(Endpoint::chat_completions, {{"messages", chat_messages()}, {"n", 0}});
  CHECK(e.status == 400);
  CHECK(e.param == "n");
  const json j = error_json(e);
  CHECK(j["error"]["param"] == "n");
  CHECK(j["error"]["type"] == "invalid_request_error");
  // The context of the answer knows how many choices to expect.
  const ParsedRequest p = completion({{"prompt", "x"}, {"n", 3}});
  CHECK(make_context(p, "tiny", 1).n == 3);
}

namespace {
GenerationOutcome choice_of(int index, std::string text, std::vector<int32_t> ids,
                            std::string reason) {
  GenerationOutcome o = outcome_of(std::move(text), std::move(ids), std::move(reason));
  o.index = index;
  return o;
}
ResponseContext context_n(Endpoint e, int n, int logprobs = -1, bool usage = false) {
  ResponseContext c = context(e, logprobs, usage);
  c.n = n;
  return c;
}
}  // namespace

TEST_CASE("n: a response lists the choices by index; usage counts the prompt once",
          "[protocol][n]") {
  // Outcomes arrive in any order.
  const std::vector<GenerationOutcome> outcomes = {choice_of(2, "c", {3, 4, 5}, "length"),
                                                   choice_of(0, "a", {1}, "stop"),
                                                   choice_of(1, "b", {2, 2}, "length")};
  json r = format_response(context_n(Endpoint::completions, 3), outcomes, token_text);
  REQUIRE(r["choices"].size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(r["choices"][i]["index"] == i);
  CHECK(r["choices"][0]["text"] == "a");
  CHECK(r["choices"][0]["finish_reason"] == "stop");
  CHECK(r["choices"][1]["text"] == "b");
  CHECK(r["choices"][2]["text"] == "c");
  CHECK(r["choices"][2]["finish_reason"] == "length");
  CHECK(r["usage"] == json{{"prompt_tokens", 5}, {"completion_tokens", 6}, {"total_tokens", 11}});

  json c = format_response(context_n(Endpoint::chat_completions, 3, 0), outcomes, token_text);
  REQUIRE(c["choices"].size() == 3);
  CHECK(c["choices"][1]["message"] == json{{"role", "assistant"}, {"content", "b"}});
  // Logprobs per choice: each choice's own tokens.
  CHECK(c["choices"][0]["logprobs"]["content"].size() == 0);  // outcome_of has no logprobs

  // One failed choice fails the answer (its error, not a partial list).
  std::vector<GenerationOutcome> failed = outcomes;
  failed[1].finish_reason = "error";
  failed[1].error = "non-finite logits";
  try {
    format_response(context_n(Endpoint::completions, 3), failed, token_text);
    FAIL("expected an ApiError");
  } catch (const ApiError& e) {
    CHECK(e.status == 500);
    CHECK_THAT(std::string(e.what()), Contains("non-finite logits"));
  }
  // A repeated or missing index is an internal error, never a malformed answer.
  std::vector<GenerationOutcome> twice = {choice_of(0, "a", {1}, "stop"),
                                          choice_of(0, "a", {1}, "stop")};
  CHECK_THROWS_AS(format_response(context_n(Endpoint::completions, 2), twice, token_text),
                  ApiError);
}

TEST_CASE("n: streamed choices interleave, each chunk with its index, one [DONE] at the end",
          "[protocol][n]") {
  StreamFormatter f(context_n(Endpoint::chat_completions, 2, 1, true), token_text);
  std::string all = f.begin();  // a role chunk per choice
  GenerationDelta d0 = delta_of("A", {1});
  d0.logprobs = {{1, -0.5f, {{1, -0.5f}}}};
  GenerationDelta d1 = delta_of("B", {2});
  d1.index = 1;
  d1.logprobs = {{2, -0.25f, {{2, -0.25f}}}};
  all += f.delta(d0);
  all += f.delta(d1);
  GenerationOutcome o1 = choice_of(1, "B", {2}, "stop");
  o1.logprobs = d1.logprobs;
  all += f.finish(o1);
  CHECK_FALSE(f.done());
  GenerationDelta d0b = delta_of("A2", {3});
  d0b.logprobs = {{3, -1.0f, {{3, -1.0f}}}};
  all += f.delta(d0b);
  GenerationOutcome o0 = choice_of(0, "AA2", {1, 3}, "length");
  o0.logprobs = {d0.logprobs[0], d0b.logprobs[0]};
  all += f.finish(o0);
  CHECK(f.done());
  const auto ev = events(all);
  REQUIRE(ev.size() == 9);
  auto choice = [&](size_t i) { return json::parse(ev[i])["choices"][0]; };
  CHECK(choice(0)["index"] == 0);
  CHECK(choice(0)["delta"]["role"] == "assistant");
  CHECK(choice(1)["index"] == 1);
  CHECK(choice(1)["delta"]["role"] == "assistant");
  CHECK(choice(2)["index"] == 0);
  CHECK(choice(2)["delta"]["content"] == "A");
  CHECK(choice(3)["index"] == 1);
  CHECK(choice(3)["delta"]["content"] == "B");
  CHECK(choice(3)["logprobs"]["content"][0]["logprob"] == -0.25);
  CHECK(choice(4)["index"] == 1);
  CHECK(choice(4)["finish_reason"] == "stop");
  CHECK(choice(5)["index"] == 0);
  CHECK(choice(5)["delta"]["content"] == "A2");
  CHECK(choice(6)["index"] == 0);
  CHECK(choice(6)["finish_reason"] == "length");
  const json usage = json::parse(ev[7]);
  CHECK(usage["choices"] == json::array());
  CHECK(usage["usage"] ==
        json{{"prompt_tokens", 5}, {"completion_tokens", 3}, {"total_tokens", 8}});
  CHECK(ev[8] == "[DONE]");
  // Nothing after the end.
  CHECK(f.delta(d0).empty());
  CHECK(f.finish(o0).empty());
}

TEST_CASE("n: completion offsets count per choice; a failed choice ends the stream",
          "[protocol][n]") {
  StreamFormatter f(context_n(Endpoint::completions, 2, 0), token_text);
  GenerationDelta a = delta_of("t1", {1});
  a.logprobs = {{1, -0.5f, {}}};
  GenerationDelta b = delta_of("t2", {2});
  b.index = 1;
  b.logprobs = {{2, -0.5f, {}}};
  GenerationDelta a2 = delta_of("t2", {2});
  a2.logprobs = {{2, -0.5f, {}}};
  std::string all = f.delta(a);  // one after the other: the offsets depend on the order
  all += f.delta(b);
  all += f.delta(a2);
  auto ev = events(all);
  REQUIRE(ev.size() == 3);
  CHECK(json::parse(ev[1])["choices"][0]["logprobs"]["text_offset"] == json{0});  // choice 1
  CHECK(json::parse(ev[2])["choices"][0]["logprobs"]["text_offset"] == json{2});  // choice 0
  GenerationOutcome bad = choice_of(1, "", {}, "error");
  bad.error = "replica lost";
  ev = events(f.finish(bad));
  REQUIRE(ev.size() == 2);
  CHECK(json::parse(ev[0])["error"]["type"] == "server_error");
  CHECK(ev[1] == "[DONE]");
  CHECK(f.done());
  CHECK(f.finish(choice_of(0, "t1t2", {1, 2}, "length")).empty());  // the stream is over
}

TEST_CASE("completions: prompts as text, lists and token ids; echo; sampling fields",
          "[protocol]") {
  ParsedRequest p = completion({{"prompt", {1, 2, 3}}});
  REQUIRE(p.prompts.size() == 1);
  CHECK(p.request.prompt_ids == std::vector<int32_t>{1, 2, 3});
  p = completion({{"prompt", {{4, 5}, {6}}}, {"max_tokens", 1}});
  REQUIRE(p.prompts.size() == 2);
  CHECK(p.prompts[1].ids == std::vector<int32_t>{6});
  CHECK(request_for_prompt(p, 1).prompt_ids == std::vector<int32_t>{6});
  CHECK(request_for_prompt(p, 1).max_new_tokens == 1);
  p = completion({{"prompt", {"a", "b", "c"}}});
  REQUIRE(p.prompts.size() == 3);
  CHECK(request_for_prompt(p, 2).prompt == "c");
  CHECK(request_for_prompt(p, 2).prompt_ids.empty());

  p = completion({{"prompt", "x"}, {"echo", true}, {"max_tokens", 0}, {"logprobs", 2}});
  CHECK(p.echo);
  CHECK(p.request.max_new_tokens == 0);
  CHECK(p.request.prompt_logprobs == 2);
  p = completion({{"prompt", "x"}, {"echo", true}});
  CHECK(p.request.prompt_logprobs == -1);  // echo alone: the text, nothing to score

  p = completion({{"prompt", "x"},
                  {"presence_penalty", 0.5},
                  {"frequency_penalty", -1},
                  {"repetition_penalty", 1.2},
                  {"min_p", 0.05},
                  {"stop_token_ids", {7, 8}},
                  {"logit_bias", {{"50256", -100}, {"3", 250}}}});
  const SamplingParams& s = p.request.sampling;
  CHECK(s.presence_penalty == 0.5f);
  CHECK(s.frequency_penalty == -1.0f);
  CHECK(s.repetition_penalty == 1.2f);
  CHECK(s.min_p == 0.05f);
  CHECK(p.request.stop_token_ids == std::vector<int32_t>{7, 8});
  REQUIRE(s.logit_bias.size() == 2);
  CHECK(s.logit_bias[1] == std::pair<int32_t, float>{50256, -100.0f});
  CHECK(s.logit_bias[0] == std::pair<int32_t, float>{3, 100.0f});  // clipped
  CHECK(p.ignored_fields.empty());
}

TEST_CASE("completions with echo: prompt tokens first, the first one null", "[protocol]") {
  ParsedRequest p = completion({{"prompt", {{5, 6, 7}, {8, 9}}}, {"echo", true}, {"logprobs", 1}});
  const ResponseContext ctx = make_context(p, "m", 1);
  std::vector<GenerationOutcome> outs(2);
  for (int i = 0; i < 2; ++i) {
    GenerationOutcome& o = outs[static_cast<size_t>(i)];
    o.finish_reason = "length";
    o.text = "t11";
    o.prompt_tokens = 3 - i;
    o.prompt_ids = i == 0 ? std::vector<int32_t>{5, 6, 7} : std::vector<int32_t>{8, 9};
    for (size_t k = 1; k < o.prompt_ids.size(); ++k) {
      o.prompt_logprobs.push_back({o.prompt_ids[k], -0.5f, {{1, -0.25f}}});
    }
    o.token_ids = {11};
    o.logprobs = {{11, -1.0f, {{11, -1.0f}}}};
  }
  const json r = format_completions(ctx, outs, true, {"t5t6t7", "t8t9"}, token_text);
  REQUIRE(r["choices"].size() == 2);
  const json& c0 = r["choices"][0];
  CHECK(c0["index"] == 0);
  CHECK(c0["text"] == "t5t6t7t11");
  CHECK(c0["logprobs"]["tokens"] == json({"t5", "t6", "t7", "t11"}));
  CHECK(c0["logprobs"]["token_logprobs"] == json({nullptr, -0.5, -0.5, -1.0}));
  CHECK(c0["logprobs"]["top_logprobs"][0].is_null());
  CHECK(c0["logprobs"]["top_logprobs"][1] == json({{"t1", -0.25}}));
  CHECK(c0["logprobs"]["text_offset"] == json({0, 2, 4, 6}));
  CHECK(r["choices"][1]["index"] == 1);
  CHECK(r["choices"][1]["text"] == "t8t9t11");
  CHECK(r["usage"] == json({{"prompt_tokens", 5}, {"completion_tokens", 2}, {"total_tokens", 7}}));
}
