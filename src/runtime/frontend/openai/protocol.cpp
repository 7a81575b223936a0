// The OpenAI answers (protocol.h): error JSON, the non-streaming response objects, logprobs and
// the server-sent-event chunks of a stream. Request bodies are parsed in request_parser.cpp.
#include "runtime/frontend/openai/protocol.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>

namespace tpinfer::openai {
namespace {

using json = nlohmann::json;

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double finite_logprob(float x) {
  return std::isfinite(x) ? static_cast<double>(x) : -9999.0;
}

json bytes_json(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

}  // namespace

const char* endpoint_path(Endpoint e) {
  return e == Endpoint::completions ? "/v1/completions" : "/v1/chat/completions";
}

ApiError::ApiError(int status, const std::string& message, std::string param, std::string code,
                   std::string type)
    : std::runtime_error(message),
      status(status),
      type(std::move(type)),
      param(std::move(param)),
      code(std::move(code)) {}

std::string default_error_type(int status) {
  if (status == 429) return "requests";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

json error_json(int status, const std::string& message, const std::string& param,
                const std::string& code, const std::string& type) {
  json e;
  e["message"] = message;
  e["type"] = type.empty() ? default_error_type(status) : type;
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return json{{"error", e}};
}

json error_json(const ApiError& e) {
  return error_json(e.status, e.what(), e.param, e.code, e.type);
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

SamplingParams openai_sampling_defaults() {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 1.0f;
  p.top_k = 0;
  p.seed = 0;
  return p;
}

std::string random_hex(int n) {
  static thread_local std::mt19937_64 gen(std::random_device{}() ^
                                          static_cast<uint64_t>(now_unix()));
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < n; ++i) out += hex[gen() & 15];
  return out;
}

std::string new_response_id(Endpoint endpoint) {
  return (endpoint == Endpoint::completions ? "cmpl-" : "chatcmpl-") + random_hex(24);
}

ResponseContext make_context(const ParsedRequest& p, std::string model, int64_t created) {
  ResponseContext c;
  c.endpoint = p.endpoint;
  c.id = new_response_id(p.endpoint);
  c.created = created;
  c.model = std::move(model);
  c.logprobs = p.logprobs;
  c.include_usage = p.include_usage;
  c.n = p.request.n;
  if (p.endpoint == Endpoint::chat_completions) {
    c.tool_choice = p.tools.choice;
    c.tool_named = p.tools.named;
  }
  return c;
}

json format_logprobs(const ResponseContext& ctx, const std::vector<TokenLogprob>& lp,
                     const TokenText& token_text, int64_t text_offset) {
  if (ctx.endpoint == Endpoint::chat_completions) {
    json content = json::array();
    for (const TokenLogprob& t : lp) {
      const std::string text = token_text(t.id);
      json top = json::array();
      for (const auto& [id, x] : t.top) {
        const std::string s = token_text(id);
        top.push_back({{"token", s}, {"logprob", finite_logprob(x)}, {"bytes", bytes_json(s)}});
      }
      content.push_back({{"token", text},
                         {"logprob", finite_logprob(t.logprob)},
                         {"bytes", bytes_json(text)},
                         {"top_logprobs", top}});
    }
    return json{{"content", content}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const TokenLogprob& t : lp) {
    const std::string text = token_text(t.id);
    tokens.push_back(text);
    token_logprobs.push_back(finite_logprob(t.logprob));
    json alternatives = json::object();
    for (const auto& [id, x] : t.top) {
      // Two ids whose text is the same after U+FFFD replacement share a key: the best one stays.
      json key = token_text(id);
      const std::string k = dump(key);
      const std::string name = json::parse(k).get<std::string>();
      if (!alternatives.contains(name)) alternatives[name] = finite_logprob(x);
    }
    top.push_back(alternatives);
    offsets.push_back(text_offset);
    text_offset += static_cast<int64_t>(text.size());
  }
  return json{{"tokens", tokens},
              {"token_logprobs", token_logprobs},
              {"top_logprobs", top},
              {"text_offset", offsets}};
}

json usage_json(int prompt_tokens, int completion_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {
void throw_if_failed(const GenerationOutcome& o) {
  if (o.finish_reason == "error") {
    throw ApiError(500, "the request failed: " + (o.error.empty() ? "unknown error" : o.error));
  }
  if (o.finish_reason == "cancelled") {
    throw ApiError(503, "the request was cancelled (the server is shutting down)");
  }
}
}  // namespace

namespace {

struct ToolAnswer {
  json content;  // a string, or null when the message is only tool calls
  std::vector<structured::ToolCall> calls;
};

// The calls of a constrained (required / named) output: its JSON as the schema wrote it.
std::vector<structured::ToolCall> constrained_calls(const ResponseContext& ctx,
                                                    const std::string& text) {
  std::vector<structured::ToolCall> calls;
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return calls;  // cut short (max_tokens): the text stays content
  if (ctx.tool_choice == ToolChoice::named) {
    if (j.is_object()) calls.push_back({ctx.tool_named, j.dump()});
    return calls;
  }
  if (!j.is_array()) return calls;
  for (const json& c : j) {
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string()) return {};
    calls.push_back({c["name"].get<std::string>(),
                     c.contains("parameters") ? c["parameters"].dump() : std::string("{}")});
  }
  return calls;
}

ToolAnswer tool_answer(const ResponseContext& ctx, const std::string& text) {
  ToolAnswer a;
  a.content = text;
  switch (ctx.tool_choice) {
    case ToolChoice::none:
      return a;
    case ToolChoice::automatic: {
      structured::ToolCallParse p = structured::parse_tool_calls(ctx.tool_format, text);
      a.calls = std::move(p.calls);
      if (!a.calls.empty()) a.content = p.content.empty() ? json() : json(p.content);
      return a;
    }
    case ToolChoice::required:
    case ToolChoice::named:
      a.calls = constrained_calls(ctx, text);
      if (!a.calls.empty()) a.content = nullptr;
      return a;
  }
  return a;
}

// OpenAI's tool_calls array (streamed: with each call's index).
json tool_calls_json(const std::vector<structured::ToolCall>& calls, bool stream) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json c;
    if (stream) c["index"] = i;
    c["id"] = new_tool_call_id();
    c["type"] = "function";
    c["function"] = {{"name", calls[i].name}, {"arguments", calls[i].arguments}};
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

json format_response(const ResponseContext& ctx, const std::vector<GenerationOutcome>& outcomes,
                     const TokenText& token_text) {
  for (const GenerationOutcome& o : outcomes) throw_if_failed(o);
  std::vector<const GenerationOutcome*> by_index(outcomes.size(), nullptr);
  for (const GenerationOutcome& o : outcomes) {
    const size_t i = static_cast<size_t>(o.index);
    if (i >= by_index.size() || by_index[i]) {
      throw ApiError(500, "internal error: choice " + std::to_string(o.index) + " of " +
                              std::to_string(outcomes.size()) + " is missing or repeated");
    }
    by_index[i] = &o;
  }
  const bool chat = ctx.endpoint == Endpoint::chat_completions;
  json choices = json::array();
  int prompt_tokens = 0, completion_tokens = 0;
  for (const GenerationOutcome* o : by_index) {
    json choice;
    choice["index"] = o->index;
    std::string finish_reason = o->finish_reason;
    if (chat) {
      const ToolAnswer a = tool_answer(ctx, o->text);
      choice["message"] = {{"role", "assistant"}, {"content", a.content}};
      if (!a.calls.empty()) {
        choice["message"]["tool_calls"] = tool_calls_json(a.calls, false);
        if (finish_reason == "stop") finish_reason = "tool_calls";
      }
    } else {
      choice["text"] = o->text;
    }
    choice["logprobs"] = ctx.logprobs >= 0 ? format_logprobs(ctx, o->logprobs, token_text) : json();
    choice["finish_reason"] = finish_reason;
    choices.push_back(std::move(choice));
    // The prompt counts once, the completion tokens of every choice add up (as OpenAI counts).
    prompt_tokens = o->prompt_tokens;
    completion_tokens += static_cast<int>(o->token_ids.size());
  }
  return json{{"id", ctx.id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", ctx.created},
              {"model", ctx.model},
              {"choices", std::move(choices)},
              {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json format_response(const ResponseContext& ctx, const GenerationOutcome& outcome,
                     const TokenText& token_text) {
  return format_response(ctx, std::vector<GenerationOutcome>{outcome}, token_text);
}

GenerationRequest request_for_prompt(const ParsedRequest& p, size_t i) {
  GenerationRequest r = p.request;
  if (i < p.prompts.size()) {
    r.prompt = p.prompts[i].text;
    r.prompt_ids = p.prompts[i].ids;
  }
  return r;
}

json format_completions(const ResponseContext& ctx, const std::vector<GenerationOutcome>& outcomes,
                        bool echo, const std::vector<std::string>& echo_texts,
                        const TokenText& token_text) {
  for (const GenerationOutcome& o : outcomes) throw_if_failed(o);
  json choices = json::array();
  int prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const GenerationOutcome& o = outcomes[i];
    prompt_tokens += o.prompt_tokens;
    completion_tokens += static_cast<int>(o.token_ids.size());
    const std::string prefix = echo && i < echo_texts.size() ? echo_texts[i] : std::string();
    json choice;
    choice["index"] = static_cast<int>(i);
    choice["text"] = prefix + o.text;
    json lp;
    if (ctx.logprobs >= 0) {
      lp = format_logprobs(ctx, o.logprobs, token_text);
      if (echo) {
        // The prompt's tokens first: the first has no logprob (null), as OpenAI and vLLM write.
        json pre = format_logprobs(ctx, o.prompt_logprobs, token_text);
        const std::string first =
            o.prompt_ids.empty() ? std::string() : token_text(o.prompt_ids[0]);
        json tokens = json::array({first}), token_lp = json::array({nullptr}),
             top = json::array({nullptr}), offsets = json::array({0});
        int64_t offset = static_cast<int64_t>(first.size());
        for (size_t k = 0; k < pre["tokens"].size(); ++k) {
          tokens.push_back(pre["tokens"][k]);
          token_lp.push_back(pre["token_logprobs"][k]);
          top.push_back(pre["top_logprobs"][k]);
          offsets.push_back(offset);
          offset += static_cast<int64_t>(token_text(o.prompt_logprobs[k].id).size());
        }
        // The completion's offsets count from the start of the echoed prompt text.
        const int64_t base = static_cast<int64_t>(prefix.size());
        for (size_t k = 0; k < lp["tokens"].size(); ++k) {
          tokens.push_back(lp["tokens"][k]);
          token_lp.push_back(lp["token_logprobs"][k]);
          top.push_back(lp["top_logprobs"][k]);
          offsets.push_back(base + lp["text_offset"][k].get<int64_t>());
        }
        lp = json{{"tokens", tokens},
                  {"token_logprobs", token_lp},
                  {"top_logprobs", top},
                  {"text_offset", offsets}};
      }
    }
    choice["logprobs"] = lp;
    choice["finish_reason"] = o.finish_reason;
    choices.push_back(std::move(choice));
  }
  return json{{"id", ctx.id},           {"object", "text_completion"},
              {"created", ctx.created}, {"model", ctx.model},
              {"choices", choices},     {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

const char* const kSseDone = "data: [DONE]\n\n";

std::string sse_event(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

StreamFormatter::StreamFormatter(ResponseContext ctx, TokenText token_text)
    : ctx_(std::move(ctx)),
      token_text_(std::move(token_text)),
      choices_(static_cast<size_t>(std::max(1, ctx_.n))) {
  if (ctx_.endpoint == Endpoint::chat_completions && ctx_.tool_choice == ToolChoice::automatic) {
    for (Choice& c : choices_) {
      c.tool_stream = std::make_unique<structured::ToolCallStream>(ctx_.tool_format);
    }
  }
}

json StreamFormatter::chunk(json choice) const {
  const bool chat = ctx_.endpoint == Endpoint::chat_completions;
  json c{{"id", ctx_.id},
         {"object", chat ? "chat.completion.chunk" : "text_completion"},
         {"created", ctx_.created},
         {"model", ctx_.model},
         {"choices", json::array({std::move(choice)})}};
  if (ctx_.include_usage) c["usage"] = nullptr;
  return c;
}

std::string StreamFormatter::begin() {
  if (ctx_.endpoint != Endpoint::chat_completions) return "";
  std::string out;
  for (size_t i = 0; i < choices_.size(); ++i) {
    out += sse_event(chunk({{"index", i},
                            {"delta", {{"role", "assistant"}, {"content", ""}}},
                            {"logprobs", nullptr},
                            {"finish_reason", nullptr}}));
  }
  return out;
}

StreamFormatter::Choice* StreamFormatter::choice_of(int index) {
  if (index < 0 || static_cast<size_t>(index) >= choices_.size()) return nullptr;
  return &choices_[static_cast<size_t>(index)];
}

std::string StreamFormatter::content_chunk(Choice& c, int index, const std::string& text,
                                           const std::vector<TokenLogprob>& lp) {
  const bool with_logprobs = ctx_.logprobs >= 0 && !lp.empty();
  if (text.empty() && !with_logprobs) return "";
  json choice{{"index", index}};
  if (ctx_.endpoint == Endpoint::chat_completions) {
    choice["delta"] = {{"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] =
      with_logprobs ? format_logprobs(ctx_, lp, token_text_, static_cast<int64_t>(c.text_sent))
                    : json();
  choice["finish_reason"] = nullptr;
  c.text_sent += text.size();
  c.tokens_sent += lp.size();
  return sse_event(chunk(std::move(choice)));
}

std::string StreamFormatter::delta(const GenerationDelta& d) {
  Choice* c = choice_of(d.index);
  if (!c || c->finished || done_) return "";
  if (ctx_.tool_choice == ToolChoice::none) return content_chunk(*c, d.index, d.text, d.logprobs);
  // Tools: content only while it cannot be part of a call; calls are sent at the end.
  c->text_seen += d.text.size();
  std::string content;
  if (c->tool_stream) {
    content = c->tool_stream->push(d.text);
  } else {
    c->held += d.text;
  }
  return content_chunk(*c, d.index, content, d.logprobs);
}

std::string StreamFormatter::finish(const GenerationOutcome& o) {
  Choice* c = choice_of(o.index);
  if (!c || c->finished || done_) return "";
  try {
    throw_if_failed(o);
  } catch (const ApiError& e) {
    done_ = true;  // one failed choice ends the stream: the others are cancelled by the caller
    return sse_event(error_json(e)) + kSseDone;
  }
  std::string out;
  std::vector<TokenLogprob> rest_lp;
  if (o.logprobs.size() > c->tokens_sent) {
    rest_lp.assign(o.logprobs.begin() + static_cast<std::ptrdiff_t>(c->tokens_sent),
                   o.logprobs.end());
  }
  std::string finish_reason = o.finish_reason;
  if (ctx_.tool_choice == ToolChoice::none) {
    // What the deltas did not carry (a service that streams nothing, or trailing text).
    out += content_chunk(*c, o.index,
                         o.text.size() > c->text_sent ? o.text.substr(c->text_sent) : "", rest_lp);
  } else {
    const std::string rest = o.text.size() > c->text_seen ? o.text.substr(c->text_seen) : "";
    std::string content;
    std::vector<structured::ToolCall> calls;
    if (c->tool_stream) {
      content = c->tool_stream->push(rest);
      structured::ToolCallParse p = c->tool_stream->finish();
      content += p.content;
      calls = std::move(p.calls);
    } else {
      calls = constrained_calls(ctx_, o.text);
      if (calls.empty()) content = o.text;
    }
    out += content_chunk(*c, o.index, content, rest_lp);
    if (!calls.empty()) {
      out += sse_event(chunk({{"index", o.index},
                              {"delta", {{"tool_calls", tool_calls_json(calls, true)}}},
                              {"logprobs", nullptr},
                              {"finish_reason", nullptr}}));
      if (finish_reason == "stop") finish_reason = "tool_calls";
    }
  }
  json last{{"index", o.index}};
  if (ctx_.endpoint == Endpoint::chat_completions) {
    last["delta"] = json::object();
  } else {
    last["text"] = "";
  }
  last["logprobs"] = nullptr;
  last["finish_reason"] = finish_reason;
  out += sse_event(chunk(std::move(last)));
  c->finished = true;
  prompt_tokens_ = o.prompt_tokens;
  completion_tokens_ += static_cast<int>(o.token_ids.size());
  if (++n_finished_ < choices_.size()) return out;
  done_ = true;
  if (ctx_.include_usage) {
    const bool chat = ctx_.endpoint == Endpoint::chat_completions;
    out += sse_event({{"id", ctx_.id},
                      {"object", chat ? "chat.completion.chunk" : "text_completion"},
                      {"created", ctx_.created},
                      {"model", ctx_.model},
                      {"choices", json::array()},
                      {"usage", usage_json(prompt_tokens_, completion_tokens_)}});
  }
  return out + kSseDone;
}

}  // namespace tpinfer::openai
