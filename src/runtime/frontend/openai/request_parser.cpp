// Parsing the OpenAI request bodies: /v1/completions and /v1/chat/completions JSON into a
// ParsedRequest (protocol.h). Every documented field is honoured or refused with a 400 naming
// it; unknown fields are ignored, as vLLM does. The answers are built in protocol.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "runtime/frontend/openai/protocol.h"

namespace tpinfer::openai {
namespace {

using json = nlohmann::json;

// A JSON type as OpenAI's messages name it.
std::string found(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an integer";
  }
}

[[noreturn]] void bad(const std::string& param, const std::string& what) {
  throw ApiError(400, "'" + param + "': " + what, param);
}

[[noreturn]] void wrong_type(const std::string& param, const char* expected, const json& v) {
  bad(param, std::string("expected ") + expected + ", found " + found(v));
}

double get_number(const json& v, const std::string& param, double lo, double hi, bool lo_open) {
  if (!v.is_number()) wrong_type(param, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo)) {
    std::ostringstream os;
    os << "expected a number in " << (lo_open ? "(" : "[") << lo << ", " << hi << "], found "
       << v.dump();
    bad(param, os.str());
  }
  return x;
}

int64_t get_integer(const json& v, const std::string& param) {
  // 3.0 is an integer to Python clients; 3.5 is not.
  if (v.is_number_float()) {
    const double x = v.get<double>();
    if (std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9e15)
      return static_cast<int64_t>(x);
  }
  if (!v.is_number_integer()) wrong_type(param, "an integer", v);
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return std::numeric_limits<int64_t>::max();
  }
  return v.get<int64_t>();
}

int get_int_range(const json& v, const std::string& param, int64_t lo, int64_t hi) {
  const int64_t x = get_integer(v, param);
  if (x < lo || x > hi) {
    std::ostringstream os;
    os << "expected an integer in [" << lo << ", " << hi << "], found " << v.dump();
    bad(param, os.str());
  }
  return static_cast<int>(x);
}

bool get_bool(const json& v, const std::string& param) {
  if (!v.is_boolean()) wrong_type(param, "a boolean", v);
  return v.get<bool>();
}

const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

// Fields both endpoints share, and what each one does.
const char* const kCommon[] = {"model",
                               "max_tokens",
                               "temperature",
                               "top_p",
                               "top_k",
                               "seed",
                               "stop",
                               "n",
                               "logprobs",
                               "stream",
                               "stream_options",
                               "presence_penalty",
                               "frequency_penalty",
                               "repetition_penalty",
                               "logit_bias",
                               "user",
                               "ignore_eos",
                               "min_tokens",
                               "tools",
                               "tool_choice",
                               "functions",
                               "function_call",
                               "parallel_tool_calls",
                               "response_format"};
const char* const kCompletionsOnly[] = {"prompt", "best_of", "echo", "suffix"};
// Extensions vLLM also takes (sampling and scoring).
const char* const kExtensions[] = {"min_p", "stop_token_ids"};
const char* const kChatOnly[] = {"messages", "max_completion_tokens", "top_logprobs"};

bool known(Endpoint e, const std::string& key) {
  for (const char* k : kCommon)
    if (key == k) return true;
  for (const char* k : kExtensions)
    if (key == k) return true;
  if (e == Endpoint::completions) {
    for (const char* k : kCompletionsOnly)
      if (key == k) return true;
  } else {
    for (const char* k : kChatOnly)
      if (key == k) return true;
  }
  return false;
}

// The most prompts one completions request may carry.
constexpr size_t kMaxPrompts = 1024;

std::vector<int32_t> parse_token_ids(const json& v, const std::string& param) {
  if (v.empty()) bad(param, "expected a non-empty array of token ids, found an empty array");
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    if (!v[i].is_number()) wrong_type(p, "a token id (an integer >= 0)", v[i]);
    ids.push_back(get_int_range(v[i], p, 0, std::numeric_limits<int32_t>::max()));
  }
  return ids;
}

// A string, a list of strings, a list of token ids, or a list of lists of token ids.
std::vector<ParsedRequest::Prompt> parse_prompt(const json& v) {
  const char* expected =
      "a string, an array of strings, an array of token ids or an array of arrays of token ids";
  std::vector<ParsedRequest::Prompt> out;
  if (v.is_string()) {
    out.push_back({v.get<std::string>(), {}});
    return out;
  }
  if (!v.is_array()) wrong_type("prompt", expected, v);
  if (v.empty()) bad("prompt", std::string("expected ") + expected + ", found an empty array");
  if (v[0].is_number()) {
    out.push_back({"", parse_token_ids(v, "prompt")});
    return out;
  }
  if (v.size() > kMaxPrompts) {
    bad("prompt", "expected at most " + std::to_string(kMaxPrompts) + " prompts, found " +
                      std::to_string(v.size()));
  }
  const bool ids = v[0].is_array();
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = "prompt[" + std::to_string(i) + "]";
    if (ids) {
      if (!v[i].is_array()) wrong_type(p, "an array of token ids (as prompt[0])", v[i]);
      out.push_back({"", parse_token_ids(v[i], p)});
    } else {
      if (!v[i].is_string()) wrong_type(p, "a string (as prompt[0])", v[i]);
      out.push_back({v[i].get<std::string>(), {}});
    }
  }
  return out;
}

std::vector<int32_t> parse_stop_token_ids(const json& v) {
  if (!v.is_array()) wrong_type("stop_token_ids", "an array of token ids", v);
  std::vector<int32_t> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = "stop_token_ids[" + std::to_string(i) + "]";
    out.push_back(get_int_range(v[i], p, 0, std::numeric_limits<int32_t>::max()));
  }
  return out;
}

// OpenAI's logit_bias: {"token id": bias}; a bias outside [-100, 100] is clipped (as vLLM does).
std::vector<std::pair<int32_t, float>> parse_logit_bias(const json& v) {
  if (!v.is_object()) wrong_type("logit_bias", "an object mapping token ids to numbers", v);
  std::vector<std::pair<int32_t, float>> out;
  for (const auto& [key, value] : v.items()) {
    const std::string p = "logit_bias." + key;
    int64_t id = -1;
    if (!key.empty() && key.size() <= 10 &&
        key.find_first_not_of("0123456789") == std::string::npos)
      id = std::stoll(key);
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      bad("logit_bias", "expected token ids (integers >= 0) as keys, found \"" + key + "\"");
    }
    if (!value.is_number()) wrong_type(p, "a number", value);
    const double b = value.get<double>();
    if (!std::isfinite(b)) bad(p, "expected a finite number, found " + value.dump());
    out.emplace_back(static_cast<int32_t>(id), static_cast<float>(std::clamp(b, -100.0, 100.0)));
  }
  return out;
}

std::string parse_content(const json& v, const std::string& param) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) wrong_type(param, "a string or an array of content parts", v);
  std::string text;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const json& part = v[i];
    if (!part.is_object()) wrong_type(p, "an object", part);
    const json* type = field(part, "type");
    if (!type) bad(p + ".type", "missing (expected \"text\")");
    if (!type->is_string()) wrong_type(p + ".type", "a string", *type);
    if (type->get<std::string>() != "text") {
      bad(p + ".type", "only \"text\" content parts are supported, found " + type->dump());
    }
    const json* t = field(part, "text");
    if (!t) bad(p + ".text", "missing");
    if (!t->is_string()) wrong_type(p + ".text", "a string", *t);
    if (i > 0) text += "\n";  // parts are paragraphs of one message
    text += t->get<std::string>();
  }
  return text;
}

// An assistant message's tool_calls: [{"id", "type": "function", "function": {"name",
// "arguments": a JSON string}}], returned as JSON text.
std::string parse_tool_calls_field(const json& v, const std::string& param) {
  if (!v.is_array()) wrong_type(param, "an array of tool calls", v);
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const json& c = v[i];
    if (!c.is_object()) wrong_type(p, "an object", c);
    if (const json* t = field(c, "type"); t && *t != "function") {
      bad(p + ".type", "expected \"function\", found " + t->dump());
    }
    const json* f = field(c, "function");
    if (!f) bad(p + ".function", "missing");
    if (!f->is_object()) wrong_type(p + ".function", "an object", *f);
    const json* name = field(*f, "name");
    if (!name) bad(p + ".function.name", "missing");
    if (!name->is_string()) wrong_type(p + ".function.name", "a string", *name);
    const json* args = field(*f, "arguments");
    if (args && !args->is_string() && !args->is_object()) {
      wrong_type(p + ".function.arguments", "a JSON string", *args);
    }
  }
  return v.dump();
}

std::vector<ChatMessage> parse_messages(const json& v) {
  if (!v.is_array()) wrong_type("messages", "an array", v);
  if (v.empty()) bad("messages", "expected at least one message, found an empty array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object()) wrong_type(p, "an object", m);
    const json* role = field(m, "role");
    if (!role) bad(p + ".role", "missing");
    if (!role->is_string()) wrong_type(p + ".role", "a string", *role);
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      bad(p + ".role",
          "expected \"system\", \"developer\", \"user\", \"assistant\" or \"tool\", found " +
              role->dump());
    }
    for (const char* k : {"function_call", "audio"}) {
      const json* x = field(m, k);
      if (x && !(x->is_array() && x->empty())) bad(p + "." + k, "not supported");
    }
    ChatMessage msg;
    msg.role = r;
    if (const json* calls = field(m, "tool_calls");
        calls && !(calls->is_array() && calls->empty())) {
      if (r != "assistant") bad(p + ".tool_calls", "only an assistant message has tool calls");
      msg.tool_calls_json = parse_tool_calls_field(*calls, p + ".tool_calls");
    }
    if (r == "tool") {
      const json* id = field(m, "tool_call_id");
      if (!id) bad(p + ".tool_call_id", "missing (a tool message answers a tool call)");
      if (!id->is_string()) wrong_type(p + ".tool_call_id", "a string", *id);
      msg.tool_call_id = id->get<std::string>();
    }
    if (const json* name = field(m, "name")) {
      if (!name->is_string()) wrong_type(p + ".name", "a string", *name);
      if (r == "tool") msg.name = name->get<std::string>();
    }
    const json* content = field(m, "content");
    if (!content) {
      if (msg.tool_calls_json.empty()) bad(p + ".content", "missing");
      // An assistant turn that only calls tools: "" as vLLM passes it (templates such as
      // Qwen3's test `'</think>' in content`, which fails on None in transformers too).
    } else {
      msg.content = parse_content(*content, p + ".content");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<std::string> parse_stop(const json& v) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else {
    if (!v.is_array()) wrong_type("stop", "a string or an array of strings", v);
    if (v.size() > 4) {
      bad("stop", "expected at most 4 stop strings, found " + std::to_string(v.size()));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) wrong_type("stop[" + std::to_string(i) + "]", "a string", v[i]);
      out.push_back(v[i].get<std::string>());
    }
  }
  for (const std::string& s : out) {
    if (s.empty()) bad("stop", "stop strings must not be empty");
  }
  return out;
}

void refuse_if_set(const json& body, const char* key) {
  const json* v = field(body, key);
  if (!v) return;
  if ((v->is_array() || v->is_object() || v->is_string()) && v->empty()) return;
  if (v->is_boolean() && !v->get<bool>()) return;
  bad(key, "not supported by this server");
}
}  // namespace

void keep_order(ParsedRequest& p, std::string_view body) {
  GenerationRequest& r = p.request;
  if (p.endpoint != Endpoint::chat_completions) return;
  if (r.tools_json.empty() &&
      std::none_of(r.messages.begin(), r.messages.end(),
                   [](const ChatMessage& m) { return !m.tool_calls_json.empty(); })) {
    return;
  }
  std::vector<std::string*> calls;
  for (ChatMessage& m : r.messages) calls.push_back(&m.tool_calls_json);
  keep_tool_key_order(body, r.tools_json, calls);
  p.tools.tools_json = r.tools_json;
}

ParsedRequest parse_request_body(Endpoint endpoint, std::string_view body,
                                 const SamplingParams& defaults) {
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const json::parse_error& e) {
    // nlohmann's message names the byte; drop its "[json.exception.parse_error.101] " prefix.
    std::string what = e.what();
    const size_t cut = what.find("] ");
    if (cut != std::string::npos) what = what.substr(cut + 2);
    throw ApiError(400, "the request body is not valid JSON: " + what);
  }
  ParsedRequest p = parse_request(endpoint, j, defaults);
  keep_order(p, body);
  return p;
}

ParsedRequest parse_request(Endpoint endpoint, const json& body, const SamplingParams& defaults) {
  if (!body.is_object()) {
    throw ApiError(400, "the request body must be a JSON object, found " + found(body));
  }
  ParsedRequest p;
  p.endpoint = endpoint;
  GenerationRequest& r = p.request;
  r.max_new_tokens = kMaxNewTokensAsFit;
  r.sampling = defaults;
  const bool chat = endpoint == Endpoint::chat_completions;

  for (const auto& [key, value] : body.items()) {
    if (!known(endpoint, key)) p.ignored_fields.push_back(key);
  }

  if (const json* v = field(body, "model")) {
    if (!v->is_string()) wrong_type("model", "a string", *v);
    p.model = v->get<std::string>();
  }

  if (chat) {
    const json* m = field(body, "messages");
    if (!m) bad("messages", "missing (a chat request needs its messages)");
    r.messages = parse_messages(*m);
  } else {
    const json* v = field(body, "prompt");
    if (!v) bad("prompt", "missing (a completion request needs its prompt)");
    p.prompts = parse_prompt(*v);
    r.prompt = p.prompts[0].text;
    r.prompt_ids = p.prompts[0].ids;
    if (const json* e = field(body, "echo")) p.echo = get_bool(*e, "echo");
  }

  const char* max_key = "max_tokens";
  const json* max_tokens = field(body, "max_tokens");
  if (chat && field(body, "max_completion_tokens")) {
    max_key = "max_completion_tokens";  // the newer name wins when both are given
    max_tokens = field(body, "max_completion_tokens");
  }
  if (max_tokens) {
    // 0 with echo: score the prompt without generating (an evaluation harness's loglikelihood).
    r.max_new_tokens =
        get_int_range(*max_tokens, max_key, p.echo ? 0 : 1, std::numeric_limits<int>::max());
  }

  if (const json* v = field(body, "temperature")) {
    r.sampling.temperature = static_cast<float>(get_number(*v, "temperature", 0.0, 2.0, false));
  }
  if (const json* v = field(body, "top_p")) {
    r.sampling.top_p = static_cast<float>(get_number(*v, "top_p", 0.0, 1.0, true));
  }
  if (const json* v = field(body, "top_k")) {
    const int64_t k = get_integer(*v, "top_k");
    if (k < -1 || k > std::numeric_limits<int>::max()) {
      bad("top_k", "expected -1 or 0 (off) or a positive integer, found " + v->dump());
    }
    r.sampling.top_k = k <= 0 ? 0 : static_cast<int>(k);
  }
  if (const json* v = field(body, "seed")) {
    r.sampling.seed = static_cast<uint64_t>(get_integer(*v, "seed"));
  }
  if (const json* v = field(body, "stop")) r.stop = parse_stop(*v);
  if (const json* v = field(body, "n")) r.n = get_int_range(*v, "n", 1, kMaxChoices);
  if (const json* v = field(body, "ignore_eos")) r.ignore_eos = get_bool(*v, "ignore_eos");

  if (const json* v = field(body, "stream")) p.stream = get_bool(*v, "stream");
  r.stream = p.stream;
  if (const json* v = field(body, "stream_options")) {
    if (!v->is_object()) wrong_type("stream_options", "an object", *v);
    if (!p.stream) bad("stream_options", "only allowed when 'stream' is true");
    if (const json* u = field(*v, "include_usage")) {
      p.include_usage = get_bool(*u, "stream_options.include_usage");
    }
  }

  if (chat) {
    bool want = false;
    if (const json* v = field(body, "logprobs")) want = get_bool(*v, "logprobs");
    int top = 0;
    if (const json* v = field(body, "top_logprobs")) {
      top = get_int_range(*v, "top_logprobs", 0, kMaxTopLogprobs);
      if (!want) bad("top_logprobs", "only allowed when 'logprobs' is true");
    }
    p.logprobs = want ? top : -1;
  } else {
    if (const json* v = field(body, "logprobs")) {
      if (v->is_boolean()) wrong_type("logprobs", "an integer", *v);
      p.logprobs = get_int_range(*v, "logprobs", 0, kMaxTopLogprobs);
    }
    if (const json* v = field(body, "best_of")) {
      // best_of = n returns every choice generated: nothing to rank. More is not supported.
      const int64_t best_of = get_integer(*v, "best_of");
      if (best_of < r.n) {
        bad("best_of", "must be >= n (" + std::to_string(r.n) + "), found " + v->dump());
      }
      if (best_of > r.n) {
        bad("best_of", "only best_of = n is supported (no ranking of extra choices), found " +
                           v->dump() + " with n = " + std::to_string(r.n));
      }
    }
    if (p.echo && p.stream) {
      bad("echo",
          "echo=true is not supported with stream=true; send stream=false to score a "
          "prompt");
    }
    if (p.prompts.size() > 1 && p.stream) {
      bad("prompt", "a list of " + std::to_string(p.prompts.size()) +
                        " prompts is not supported with stream=true; send one request per prompt "
                        "or stream=false");
    }
    // echo with logprobs: the prompt's tokens are scored too.
    if (p.echo && p.logprobs >= 0) r.prompt_logprobs = p.logprobs;
    if (const json* v = field(body, "suffix")) {
      if (!v->is_string()) wrong_type("suffix", "a string", *v);
      if (!v->get<std::string>().empty()) bad("suffix", "not supported by this server");
    }
  }
  r.logprobs = p.logprobs;

  if (const json* v = field(body, "presence_penalty")) {
    r.sampling.presence_penalty =
        static_cast<float>(get_number(*v, "presence_penalty", -2, 2, false));
  }
  if (const json* v = field(body, "frequency_penalty")) {
    r.sampling.frequency_penalty =
        static_cast<float>(get_number(*v, "frequency_penalty", -2, 2, false));
  }
  if (const json* v = field(body, "repetition_penalty")) {
    r.sampling.repetition_penalty =
        static_cast<float>(get_number(*v, "repetition_penalty", 0, 1e9, true));
  }
  if (const json* v = field(body, "min_p")) {
    r.sampling.min_p = static_cast<float>(get_number(*v, "min_p", 0, 1, false));
  }
  if (const json* v = field(body, "stop_token_ids")) r.stop_token_ids = parse_stop_token_ids(*v);
  if (const json* v = field(body, "min_tokens")) {
    if (get_integer(*v, "min_tokens") != 0) bad("min_tokens", "not supported by this server");
  }
  if (const json* v = field(body, "logit_bias")) r.sampling.logit_bias = parse_logit_bias(*v);
  if (const json* v = field(body, "user")) {
    if (!v->is_string()) wrong_type("user", "a string", *v);
  }
  for (const char* k : {"functions", "function_call"}) refuse_if_set(body, k);
  if (const json* v = field(body, "response_format")) {
    r.response_schema = parse_response_format(*v);
  }
  const json* tools = field(body, "tools");
  const json* tool_choice = field(body, "tool_choice");
  if (!chat) {
    refuse_if_set(body, "tools");
    if (tool_choice && !(tool_choice->is_string() && *tool_choice == "none")) {
      bad("tool_choice", "tools are only available on /v1/chat/completions");
    }
    if (const json* v = field(body, "parallel_tool_calls")) get_bool(*v, "parallel_tool_calls");
  } else {
    p.tools = parse_tools(tools, tool_choice, field(body, "parallel_tool_calls"));
    r.tools_json = p.tools.tools_json;
    if (!p.tools.schema.empty()) {
      if (!r.response_schema.empty()) {
        bad("response_format",
            "cannot be combined with tool_choice \"required\" or a named function (both "
            "constrain the output)");
      }
      r.response_schema = p.tools.schema;
    }
    // A tool-call marker may be a special token (Mistral's [TOOL_CALLS]): keep it in the text.
    r.keep_special_text = p.tools.choice == ToolChoice::automatic;
  }
  return p;
}

std::vector<ChatMessage> parse_chat_messages(const json& messages) {
  return parse_messages(messages);
}

void check_model(const std::string& requested, const std::string& served) {
  if (requested.empty() || requested == served) return;
  throw ApiError(
      404, "The model `" + requested + "` does not exist (this server serves `" + served + "`)",
      "model", "model_not_found", "invalid_request_error");
}

}  // namespace tpinfer::openai
