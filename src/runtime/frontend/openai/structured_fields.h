// The OpenAI fields of structured output and tool calling, checked and turned into what the
// engine runs: response_format -> the JSON Schema the output must validate against; tools ->
// the chat template's `tools`; tool_choice -> whether the output is parsed for calls (auto),
// left alone (none) or constrained to calls (required, a named function: the arguments then
// validate against the function's parameters, whatever the model). Every bad value is an
// ApiError 400 naming the field.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer::openai {

enum class ToolChoice { none, automatic, required, named };

struct ToolsRequest {
  ToolChoice choice = ToolChoice::none;
  std::string named;               // the function of a named choice
  std::vector<std::string> names;  // the functions offered, in order
  std::string tools_json;          // the `tools` array as given (for the chat template)
  // The schema that constrains a required or named choice's output ("" = none).
  std::string schema;
};

// response_format: "" for {"type": "text"}, else the schema's JSON text.
std::string parse_response_format(const nlohmann::json& v);
// tools, tool_choice and parallel_tool_calls of a chat body (null = absent).
ToolsRequest parse_tools(const nlohmann::json* tools, const nlohmann::json* tool_choice,
                         const nlohmann::json* parallel_tool_calls);

// The body's JSON object is read with sorted keys; a chat template shows `tools` and the tool
// calls of earlier turns as the client wrote them (tojson keeps their order). Re-reads those two
// from the body's text in their written order (body: the request's JSON object as text).
void keep_tool_key_order(std::string_view body, std::string& tools_json,
                         std::vector<std::string*> tool_calls_json);

// A tool-call id as OpenAI writes them: "call_" and 24 hex digits.
std::string new_tool_call_id();

}  // namespace tpinfer::openai
