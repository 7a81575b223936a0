// Tool calling: the parsers of each family's format (whole and streamed in pieces), the format
// each bundled chat template asks for, the OpenAI fields (tools, tool_choice, response_format)
// and their refusals, answers with tool_calls (whole and streamed), and conversations with tool
// calls and tool results rendered through the chat template byte-identical to transformers
// (tests/data/chat goldens, through the same parsing a request body gets).
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "runtime/frontend/openai/protocol.h"
#include "runtime/structured/tool_calls.h"
#include "tokenizer/chat_template.h"

using namespace tpinfer;
using namespace tpinfer::openai;
using Catch::Matchers::Contains;
using structured::ToolCallFormat;
using json = nlohmann::json;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \n");
  return a == std::string::npos ? "" : s.substr(a, s.find_last_not_of(" \n") - a + 1);
}

struct ParserCase {
  ToolCallFormat format;
  std::string text;
  std::string content;
  std::vector<std::pair<std::string, json>> calls;
};

std::vector<ParserCase> parser_cases() {
  return {
      {ToolCallFormat::hermes,
       "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
       "\"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n"
       "</tool_call>",
       "Let me check.",
       {{"get_weather", {{"city", "Paris"}}}, {"now", json::object()}}},
      {ToolCallFormat::hermes,
       "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>",
       "",
       {{"f", {{"x", {1, 2}}}}}},
      {ToolCallFormat::hermes, "No tools needed: 2 < 3.", "No tools needed: 2 < 3.", {}},
      {ToolCallFormat::hermes,
       "<tool_call>\n{not json}\n</tool_call>",
       "<tool_call>\n{not json}\n</tool_call>",
       {}},
      {ToolCallFormat::llama3_json,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
       "",
       {{"get_weather", {{"city", "Paris"}}}}},
      {ToolCallFormat::llama3_json,
       "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": "
       "{\"k\": \"v;}\"}}<|eom_id|>",
       "",
       {{"a", json::object()}, {"b", {{"k", "v;}"}}}}},
      {ToolCallFormat::llama3_json, "The answer is {maybe}.", "The answer is {maybe}.", {}},
      {ToolCallFormat::mistral,
       "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}}, {\"name\": \"g\", "
       "\"arguments\": {}}]",
       "",
       {{"f", {{"a", 1}}}, {"g", json::object()}}},
      {ToolCallFormat::mistral,
       "Sure. [TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]now[ARGS]{}",
       "Sure.",
       {{"get_weather", {{"city", "Oslo"}}}, {"now", json::object()}}},
      {ToolCallFormat::mistral, "[TOOL_CALLS is not a call", "[TOOL_CALLS is not a call", {}},
  };
}

void check_calls(const std::vector<structured::ToolCall>& got,
                 const std::vector<std::pair<std::string, json>>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].name == want[i].first);
    CHECK(json::parse(got[i].arguments) == want[i].second);
  }
}

const char* const kTools = R"([{"type": "function", "function": {"name": "get_weather",
  "description": "Weather of a city", "parameters": {"type": "object", "properties": {
  "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"],
  "additionalProperties": false}}}, {"type": "function", "function": {"name": "now"}}])";

ParsedRequest chat_with(json extra) {
  json body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  for (auto& [k, v] : extra.items()) body[k] = v;
  return parse_request(Endpoint::chat_completions, body);
}

ApiError chat_refusal(json extra) {
  try {
    chat_with(std::move(extra));
  } catch (const ApiError& e) {
    return e;
  }
  FAIL("accepted");
  return ApiError(0, "");
}

}  // namespace

TEST_CASE("tool-call parsers: each family's format", "[tools]") {
  for (const ParserCase& c : parser_cases()) {
    INFO(structured::tool_call_format_name(c.format) << ": " << c.text);
    const structured::ToolCallParse p = structured::parse_tool_calls(c.format, c.text);
    CHECK(p.content == c.content);
    check_calls(p.calls, c.calls);
  }
}

TEST_CASE("tool-call parsers: a stream in any pieces equals the whole", "[tools]") {
  std::mt19937 rng(5);
  for (const ParserCase& c : parser_cases()) {
    for (int trial = 0; trial < 40; ++trial) {
      INFO(structured::tool_call_format_name(c.format) << ": " << c.text << " trial " << trial);
      structured::ToolCallStream s(c.format);
      std::string content;
      for (size_t at = 0; at < c.text.size();) {
        const size_t n = trial == 0 ? 1 : std::uniform_int_distribution<size_t>(1, 9)(rng);
        const std::string piece = s.push(c.text.substr(at, n));
        if (!c.calls.empty()) {  // nothing of a call is ever sent as content
          CHECK(piece.find('{') == std::string::npos);
          CHECK(piece.find('<') == std::string::npos);
          CHECK(piece.find('[') == std::string::npos);
        }
        content += piece;
        at += n;
      }
      const structured::ToolCallParse end = s.finish();
      content += end.content;
      CHECK(trim(content) == c.content);
      check_calls(end.calls, c.calls);
    }
  }
}

TEST_CASE("tool-call format: from the bundled chat templates", "[tools]") {
  const std::string dir = std::string(TPINFER_TEST_DATA) + "/chat/templates/";
  const std::pair<const char*, ToolCallFormat> cases[] = {
      {"Qwen-Qwen3-0.6B.jinja", ToolCallFormat::hermes},
      {"Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallFormat::hermes},
      {"Qwen-QwQ-32B.jinja", ToolCallFormat::hermes},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallFormat::llama3_json},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", ToolCallFormat::llama3_json},
      {"meta-llama-Llama-3.3-70B-Instruct.jinja", ToolCallFormat::llama3_json},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallFormat::mistral},
      {"Mistral-Small-3.2-24B-Instruct-2506.jinja", ToolCallFormat::mistral},
  };
  for (const auto& [file, format] : cases) {
    INFO(file);
    CHECK(structured::tool_call_format_for_template(read_text(dir + file)) == format);
  }
}

TEST_CASE("tools and tool_choice: what each choice runs", "[tools][protocol]") {
  const json tools = json::parse(kTools);
  ParsedRequest p = chat_with({{"tools", tools}});
  CHECK(p.tools.choice == ToolChoice::automatic);
  CHECK(json::parse(p.request.tools_json) == tools);
  CHECK(p.request.response_schema.empty());
  CHECK(p.request.keep_special_text);

  p = chat_with({{"tools", tools}, {"tool_choice", "none"}});
  CHECK(p.tools.choice == ToolChoice::none);
  CHECK_FALSE(p.request.tools_json.empty());  // the template still sees them
  CHECK_FALSE(p.request.keep_special_text);

  p = chat_with({{"tools", tools},
                 {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}});
  CHECK(p.tools.choice == ToolChoice::named);
  CHECK(json::parse(p.request.response_schema) == tools[0]["function"]["parameters"]);

  p = chat_with({{"tools", tools}, {"tool_choice", "required"}, {"parallel_tool_calls", false}});
  CHECK(p.tools.choice == ToolChoice::required);
  const json s = json::parse(p.request.response_schema);
  CHECK(s["type"] == "array");
  CHECK(s["maxItems"] == 1);
  CHECK(s["items"]["anyOf"].size() == 2);
  CHECK(s["items"]["anyOf"][1]["properties"]["name"]["const"] == "now");

  p = chat_with({{"response_format", {{"type", "json_object"}}}});
  CHECK(json::parse(p.request.response_schema) == json{{"type", "object"}});
  p = chat_with(
      {{"response_format",
        {{"type", "json_schema"},
         {"json_schema",
          {{"name", "x"}, {"strict", true}, {"schema", tools[0]["function"]["parameters"]}}}}}});
  CHECK(json::parse(p.request.response_schema) == tools[0]["function"]["parameters"]);
  CHECK(parse_request(Endpoint::completions,
                      {{"prompt", "x"}, {"response_format", {{"type", "json_object"}}}})
            .request.response_schema == R"({"type":"object"})");
}

TEST_CASE("tools, tool_choice, response_format: each refusal names its field",
          "[tools][protocol]") {
  const json tools = json::parse(kTools);
  json bad_params = tools;
  bad_params[0]["function"]["parameters"]["properties"]["city"]["pattern"] = "^[A-Z]";
  struct Case {
    json extra;
    std::string param, message;
  };
  const Case cases[] = {
      {{{"tools", {{{"type", "retrieval"}}}}}, "tools[0].type", "expected \"function\""},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", "a b"}}}}}}},
       "tools[0].function.name",
       "letters, digits"},
      {{{"tools", bad_params}},
       "tools[0].function.parameters",
       "at /properties/city/pattern: 'pattern' is not supported"},
      {{{"tools", tools}, {"tool_choice", "sometimes"}}, "tool_choice", "expected \"none\""},
      {{{"tool_choice", "required"}}, "tool_choice", "needs 'tools'"},
      {{{"tools", tools},
        {"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}},
       "tool_choice.function.name",
       "no tool is named \"nope\""},
      {{{"tools", tools}, {"parallel_tool_calls", "yes"}},
       "parallel_tool_calls",
       "expected a boolean"},
      {{{"response_format", {{"type", "json_schema"}}}}, "response_format.json_schema", "missing"},
      {{{"response_format",
         {{"type", "json_schema"},
          {"json_schema", {{"schema", {{"type", "integer"}, {"minimum", 0}}}}}}}},
       "response_format.json_schema.schema",
       "at /minimum: 'minimum' is not supported"},
      {{{"response_format", {{"type", "json_object"}}},
        {"tools", tools},
        {"tool_choice", "required"}},
       "response_format",
       "cannot be combined"},
      {{{"messages", {{{"role", "assistant"}, {"tool_calls", {{{"function", 3}}}}}}}},
       "messages[0].tool_calls[0].function",
       "expected an object"},
      {{{"messages",
         {{{"role", "user"},
           {"content", "x"},
           {"tool_calls", {{{"function", {{"name", "f"}}}}}}}}}},
       "messages[0].tool_calls",
       "only an assistant message"},
  };
  for (const Case& c : cases) {
    INFO(c.extra.dump());
    const ApiError e = chat_refusal(c.extra);
    CHECK(e.status == 400);
    CHECK(e.param == c.param);
    CHECK_THAT(std::string(e.what()), Contains(c.message));
    CHECK(error_json(e)["error"]["type"] == "invalid_request_error");
  }
}

TEST_CASE("answers with tool calls: whole and streamed", "[tools][protocol]") {
  const json tools = json::parse(kTools);
  const TokenText text_of = [](int32_t) { return std::string("x"); };
  GenerationOutcome o;
  o.finish_reason = "stop";
  o.text =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>";
  o.token_ids = {1, 2, 3};
  ResponseContext ctx = make_context(chat_with({{"tools", tools}}), "m", 1);
  json r = format_response(ctx, o, text_of);
  json msg = r["choices"][0]["message"];
  CHECK(r["choices"][0]["finish_reason"] == "tool_calls");
  CHECK(msg["content"].is_null());
  REQUIRE(msg["tool_calls"].size() == 1);
  CHECK(msg["tool_calls"][0]["type"] == "function");
  CHECK(msg["tool_calls"][0]["id"].get<std::string>().rfind("call_", 0) == 0);
  CHECK(msg["tool_calls"][0]["function"]["name"] == "get_weather");
  CHECK(json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>()) ==
        json{{"city", "Rome"}});

  // tool_choice none: the same text is content.
  ctx = make_context(chat_with({{"tools", tools}, {"tool_choice", "none"}}), "m", 1);
  r = format_response(ctx, o, text_of);
  CHECK(r["choices"][0]["message"]["content"] == o.text);
  CHECK(r["choices"][0]["finish_reason"] == "stop");

  // A named choice: the output is the arguments.
  ctx = make_context(
      chat_with({{"tools", tools},
                 {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}}),
      "m", 1);
  GenerationOutcome named = o;
  named.text = "{\"city\": \"Oslo\"}";
  r = format_response(ctx, named, text_of);
  CHECK(r["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather");
  CHECK(r["choices"][0]["finish_reason"] == "tool_calls");
  named.finish_reason = "length";
  named.text = "{\"city\": \"Os";  // cut short: no call, the text stays
  r = format_response(ctx, named, text_of);
  CHECK(r["choices"][0]["message"]["content"] == named.text);
  CHECK(r["choices"][0]["finish_reason"] == "length");

  // Streamed (auto): content before the call, then one tool_calls chunk, then "tool_calls".
  ctx = make_context(chat_with({{"tools", tools}, {"stream", true}}), "m", 1);
  StreamFormatter f(ctx, text_of);
  std::string events = f.begin();
  const std::string full = "Checking.\n" + o.text;
  for (size_t at = 0; at < full.size(); at += 5) {
    GenerationDelta d;
    d.text = full.substr(at, 5);
    events += f.delta(d);
  }
  GenerationOutcome so = o;
  so.text = full;
  events += f.finish(so);
  std::string content;
  json call;
  std::string finish;
  std::istringstream in(events);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: {", 0) != 0) continue;
    const json c = json::parse(line.substr(6))["choices"][0];
    if (c["delta"].contains("content")) content += c["delta"]["content"].get<std::string>();
    if (c["delta"].contains("tool_calls")) call = c["delta"]["tool_calls"];
    if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  CHECK(trim(content) == "Checking.");
  REQUIRE(call.size() == 1);
  CHECK(call[0]["index"] == 0);
  CHECK(call[0]["function"]["name"] == "get_weather");
  CHECK(finish == "tool_calls");
}

TEST_CASE("tool calls and tool results render through the template as transformers does",
          "[tools][chat]") {
  using ojson = nlohmann::ordered_json;
  const ojson g = ojson::parse(read_text(std::string(TPINFER_TEST_DATA) + "/chat/goldens.json"));
  const std::time_t now = g.at("now_utc").get<std::time_t>();
  int checked = 0;
  for (const ojson& c : g.at("cases")) {
    if (c.at("tools").is_null() || c.contains("error")) continue;
    const ojson& kwargs = c.at("kwargs");
    if (kwargs.size() > 1 || (kwargs.size() == 1 && !kwargs.contains("enable_thinking"))) continue;
    INFO(c.at("template").get<std::string>() << " / " << c.at("conversation").get<std::string>());
    // The conversation as an OpenAI client sends it: arguments as JSON strings.
    ojson messages = c.at("messages");
    for (ojson& m : messages) {
      if (!m.contains("tool_calls")) continue;
      for (ojson& call : m["tool_calls"]) {
        ojson& args = call["function"]["arguments"];
        if (!args.is_string()) args = args.dump();
      }
    }
    const ojson body = {{"messages", messages}, {"tools", c.at("tools")}};
    const ParsedRequest p = parse_request_body(Endpoint::chat_completions, body.dump());
    std::string file = c.at("file").get<std::string>();
    std::string text = read_text(std::string(TPINFER_REPO_ROOT) + "/" + file);
    if (!c.at("key").is_null()) text = ojson::parse(text).at(c.at("key").get<std::string>());
    std::vector<std::pair<std::string, std::string>> special;
    for (const auto& [k, v] : c.at("special_tokens").items()) special.emplace_back(k, v);
    tok::ChatTemplate t;
    t.init(text, special, file);
    const bool thinking = kwargs.value("enable_thinking", true);
    const std::string got = t.render(p.request.messages, c.at("add_generation_prompt").get<bool>(),
                                     thinking, p.request.tools_json, now);
    CHECK(got == c.at("text").get<std::string>());
    ++checked;
  }
  CHECK(checked >= 30);
}

TEST_CASE("an assistant turn with tool calls and content null renders (bundled Qwen3 template)",
          "[tools][chat]") {
  const json cfg = json::parse(read_text(std::string(TPINFER_REPO_ROOT) +
                                         "/configs/tokenizers/qwen3/tokenizer_config.json"));
  tok::ChatTemplate t;
  t.init(cfg.at("chat_template").get<std::string>(), {{"eos_token", "<|im_end|>"}}, "qwen3");
  const ParsedRequest p = parse_request_body(Endpoint::chat_completions, R"({"messages": [
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
       "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}]})");
  const std::string text = t.render(p.request.messages, true, true, "");
  CHECK_THAT(text, Contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                            "\"Paris\"}}\n</tool_call>"));
  CHECK_THAT(text, Contains("<tool_response>\n21 C\n</tool_response>"));
}
