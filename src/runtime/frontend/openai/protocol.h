// The OpenAI API as tpinfer speaks it, without HTTP, MPI or a model: a POST body of
// /v1/completions or /v1/chat/completions parsed into a GenerationRequest (every field OpenAI
// documents is either honoured or refused with a 400 naming it; unknown fields are ignored, as
// vLLM does), and the answers: the non-streaming response object, the server-sent-event chunks
// of a streaming one, and OpenAI's error JSON. Token text may be a fragment of a UTF-8 character
// (byte-level BPE): every JSON is dumped with invalid bytes replaced by U+FFFD, and logprobs carry
// the raw bytes in "bytes" arrays.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/frontend/openai/structured_fields.h"
#include "runtime/scheduler/request.h"
#include "runtime/structured/tool_calls.h"

namespace tpinfer::openai {

enum class Endpoint { completions, chat_completions };

const char* endpoint_path(Endpoint e);  // "/v1/completions" | "/v1/chat/completions"

// An answer other than 200, as OpenAI writes it: {"error": {"message", "type", "param", "code"}}.
// An empty param or code is written as null.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "",
           std::string type = "");
  int status;
  std::string type;  // "" = the usual type for the status (see default_error_type)
  std::string param;
  std::string code;
};

// "invalid_request_error" for 4xx (429: "requests", OpenAI's rate-limit type), "server_error"
// for 5xx.
std::string default_error_type(int status);
nlohmann::json error_json(int status, const std::string& message, const std::string& param = "",
                          const std::string& code = "", const std::string& type = "");
nlohmann::json error_json(const ApiError& e);

// The JSON text of any answer: compact, invalid UTF-8 replaced by U+FFFD (never throws on
// token fragments).
std::string dump(const nlohmann::json& j);

// A parsed request with what only the answer needs.
struct ParsedRequest {
  Endpoint endpoint = Endpoint::completions;
  // request.max_new_tokens is kMaxNewTokensAsFit when the body gives no max_tokens: the job
  // clamps it to what fits max_seq after the prompt.
  GenerationRequest request;
  std::string model;           // as given; "" when absent (the served model)
  bool stream = false;         // also in request.stream
  bool include_usage = false;  // stream_options.include_usage
  // The logprobs form of the answer: -1 none, else the number of alternatives per token
  // (completions: "logprobs": N; chat: "logprobs": true with "top_logprobs": N).
  int logprobs = -1;
  ToolsRequest tools;  // chat: tools, tool_choice (request.tools_json / response_schema set)
  std::vector<std::string> ignored_fields;  // unknown top-level fields (accepted, unused)
  // /v1/completions: every prompt of the body, in order (a list of prompts is answered with one
  // choice each, `index` in this order); request.prompt / prompt_ids hold the first. A prompt is
  // text (ids empty) or token ids (text empty).
  struct Prompt {
    std::string text;
    std::vector<int32_t> ids;
  };
  std::vector<Prompt> prompts;
  // echo: each choice's text (and with logprobs, its tokens) starts with its prompt; with
  // logprobs, request.prompt_logprobs asks the scheduler to score the prompt.
  bool echo = false;
};

// The request of prompt i of a parsed completions body (p.request with that prompt).
GenerationRequest request_for_prompt(const ParsedRequest& p, size_t i);

// Sampling values of a body that gives none: OpenAI's (temperature 1, top_p 1, no top_k). A job
// may pass its configured defaults instead.
SamplingParams openai_sampling_defaults();

// Parses a body. Throws ApiError (400, param = the field) on malformed JSON, a wrong type, a value
// out of range or a feature tpinfer does not have.
ParsedRequest parse_request_body(Endpoint endpoint, std::string_view body,
                                 const SamplingParams& defaults = openai_sampling_defaults());
ParsedRequest parse_request(Endpoint endpoint, const nlohmann::json& body,
                            const SamplingParams& defaults = openai_sampling_defaults());
// After parse_request of `body` (its text): tools and earlier tool calls in the key order the
// client wrote (parse_request_body does it; a caller that parsed the JSON itself calls it).
void keep_order(ParsedRequest& p, std::string_view body);

// A chat's "messages" array (the same checks as /v1/chat/completions'; /tokenize uses it).
std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& messages);

// A request naming a model other than the one served: ApiError 404 "model_not_found". An empty
// name (the field was absent) is the served model.
void check_model(const std::string& requested, const std::string& served);

// The bytes of a token id, for logprobs (GenerationService::token_text).
using TokenText = std::function<std::string(int32_t)>;

// What every chunk and response of one request repeats.
struct ResponseContext {
  Endpoint endpoint = Endpoint::completions;
  std::string id;  // "cmpl-..." | "chatcmpl-..."
  int64_t created = 0;
  std::string model;
  int logprobs = -1;  // as ParsedRequest::logprobs
  bool include_usage = false;
  int n = 1;  // choices
  // Chat with tools: automatic = the output is parsed for calls in tool_format; required /
  // named = the output is the calls' JSON (constrained); none = plain content.
  ToolChoice tool_choice = ToolChoice::none;
  std::string tool_named;  // the function of a named choice
  structured::ToolCallFormat tool_format = structured::ToolCallFormat::hermes;
};

// n random lowercase hex digits (ids of responses, batch lines and requests).
std::string random_hex(int n);
// "cmpl-" or "chatcmpl-" and 24 random hex digits.
std::string new_response_id(Endpoint endpoint);
ResponseContext make_context(const ParsedRequest& p, std::string model, int64_t created);

// Logprobs as the endpoint shows them. text_offset (completions) counts bytes from the start of
// the completion, starting at `text_offset`. Logprobs of -inf are written as -9999.0.
nlohmann::json format_logprobs(const ResponseContext& ctx, const std::vector<TokenLogprob>& lp,
                               const TokenText& token_text, int64_t text_offset = 0);
nlohmann::json usage_json(int prompt_tokens, int completion_tokens);

// The non-streaming answer of a finished request: one outcome per choice ("stop" or "length"),
// in any order; the answer lists them by index. usage counts the prompt once and the completion
// tokens of every choice. An outcome with finish_reason "error" or "cancelled" throws ApiError
// (500 / 503): it never reaches a client as a choice.
nlohmann::json format_response(const ResponseContext& ctx,
                               const std::vector<GenerationOutcome>& outcomes,
                               const TokenText& token_text);
nlohmann::json format_response(const ResponseContext& ctx, const GenerationOutcome& outcome,
                               const TokenText& token_text);  // one choice

// The answer of a completions request with several prompts and/or echo: one choice per outcome
// (outcomes[i] answers prompts[i]). echo_texts[i]: the prompt's text, put in front of the choice's
// text when echo is on; with logprobs, the prompt's tokens and logprobs (the first one null) come
// first. Throws ApiError as format_response does when any outcome failed.
nlohmann::json format_completions(const ResponseContext& ctx,
                                  const std::vector<GenerationOutcome>& outcomes, bool echo,
                                  const std::vector<std::string>& echo_texts,
                                  const TokenText& token_text);

// One `data: <json>\n\n` event.
std::string sse_event(const nlohmann::json& j);
extern const char* const kSseDone;  // "data: [DONE]\n\n"

// The events of one streaming request, in order: begin(), then delta() and finish() as the
// choices produce them (interleaved; every chunk carries its choice's index), finish() once per
// choice. The stream ends (done()) with the last choice's finish, or at the first failed one.
class StreamFormatter {
 public:
  StreamFormatter(ResponseContext ctx, TokenText token_text);
  // Chat: a first chunk per choice, delta {"role": "assistant", "content": ""}. Completions:
  // nothing.
  std::string begin();
  // A chunk with the delta's text (and logprobs) for its choice; "" when the delta carries
  // nothing (or its choice has finished).
  std::string delta(const GenerationDelta& d);
  // A choice's end: for "stop"/"length", any text its deltas did not carry (a service that
  // streams nothing sends it all here) and a chunk with finish_reason and an empty delta; after
  // the last choice, the usage chunk when asked (the prompt once, every choice's completion
  // tokens) and [DONE]. For "error"/"cancelled": an error event, then [DONE], at once.
  std::string finish(const GenerationOutcome& o);
  bool done() const { return done_; }  // [DONE] was written

 private:
  struct Choice {
    size_t text_sent = 0;    // bytes of completion text sent so far
    size_t tokens_sent = 0;  // tokens whose logprobs were sent
    bool finished = false;
    std::unique_ptr<structured::ToolCallStream> tool_stream;  // tool_choice automatic
    std::string held;      // tool_choice required / named: the calls' JSON, answered at the end
    size_t text_seen = 0;  // bytes of completion text received in deltas (tools)
  };
  nlohmann::json chunk(nlohmann::json choice) const;
  Choice* choice_of(int index);  // null for an index out of range
  std::string content_chunk(Choice& c, int index, const std::string& text,
                            const std::vector<TokenLogprob>& lp);
  ResponseContext ctx_;
  TokenText token_text_;
  std::vector<Choice> choices_;
  size_t n_finished_ = 0;
  int prompt_tokens_ = 0, completion_tokens_ = 0;
  bool done_ = false;
};

}  // namespace tpinfer::openai
