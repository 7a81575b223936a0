// Batch files in the OpenAI Batch API format, as vLLM's run_batch reads them, without MPI: one
// input line per request,
//   {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
// (url "/v1/completions" for a completion; the body as the HTTP endpoint takes it, without
// "stream"), and one output line per request,
//   {"id": "batch_req_...", "custom_id": "r1",
//    "response": {"status_code": 200, "request_id": "req_...", "body": <the API response>},
//    "error": null}
// A request the API refuses or that fails has its status (400, 404, 500) and body {"error":
// {...}}; a line that is not a request at all (no body, a wrong url) has "response": null and
// "error": {"code", "message"}. custom_id is the resume key: a rerun skips the custom_ids
// already in the output. The simple tpinfer format (batch_io.h) stays; detect_line_format tells
// the two apart line by line.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "runtime/frontend/openai/protocol.h"

namespace tpinfer::openai {

enum class LineFormat {
  simple,  // tpinfer's: "id" and "prompt" or "messages"
  openai,  // "custom_id" and "body"
  unknown  // neither, or not a JSON object
};
LineFormat detect_line_format(const nlohmann::json& line);
LineFormat detect_line_format(std::string_view line);  // malformed JSON: unknown

// A line that cannot run. custom_id is "" when the line has none (then it can only be reported,
// not answered). status: the HTTP status the API would answer (400, 404); 0 when the line is not
// a request at all (bad JSON, method, url): the output line then has "response": null.
class BatchLineError : public std::runtime_error {
 public:
  BatchLineError(std::string custom_id, int status, const std::string& message,
                 std::string param = "", std::string code = "");
  std::string custom_id;
  int status;
  std::string param;
  std::string code;
};

struct BatchLine {
  std::string custom_id;
  ParsedRequest request;  // endpoint from "url"; never streaming
};

// Parses one input line. `served_model`: a body naming another model is refused (404) when
// non-empty. Throws BatchLineError naming the field ("body.temperature: ...").
// `defaults`: sampling values of a body that gives none.
BatchLine parse_batch_line(std::string_view line, const std::string& served_model = "",
                           const SamplingParams& defaults = openai_sampling_defaults());

// Output lines (without their newline). A finished request: 200 with the response body (its
// choices, one outcome per choice of the body's n, as the API answers), or, for an outcome with
// finish_reason "error" (or "cancelled"), 500 (503) with an error body.
std::string format_batch_result(const std::string& custom_id, const ResponseContext& ctx,
                                const std::vector<GenerationOutcome>& outcomes,
                                const TokenText& token_text);
std::string format_batch_result(const std::string& custom_id, const ResponseContext& ctx,
                                const GenerationOutcome& outcome, const TokenText& token_text);
// A refused line, as BatchLineError says (status 0: "response": null, "error": {...}).
std::string format_batch_error(const BatchLineError& e);
// The same from any refusal of the request (the service's RequestRefused maps onto it).
std::string format_batch_error(const std::string& custom_id, int status, const std::string& message,
                               const std::string& param = "", const std::string& code = "");

// The resume key of an output line: its custom_id, or nothing when the line is not an OpenAI
// batch output line.
std::optional<std::string> output_line_custom_id(std::string_view line);

}  // namespace tpinfer::openai
