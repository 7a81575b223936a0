// Tool calls in a model's output, in the format its family writes them, and the one place that
// picks the format from the chat template:
//   hermes       Qwen2.5, Qwen3, QwQ, Hermes, SmolLM3: <tool_call>{"name", "arguments"}</tool_call>
//                (repeated for parallel calls; text before the first one is content)
//   llama3_json  Llama 3.1 / 3.2 / 3.3: a JSON object {"name", "parameters"} as the whole
//                message (optionally after <|python_tag|>; several separated by ';')
//   mistral      Mistral / Mistral Nemo: [TOOL_CALLS][{"name", "arguments"}, ...], or the newer
//                [TOOL_CALLS]name[ARGS]{...} (repeated)
// Text that does not hold a well-formed call stays content.
#pragma once

#include <string>
#include <vector>

namespace tpinfer::structured {

enum class ToolCallFormat { hermes, llama3_json, mistral };

const char* tool_call_format_name(ToolCallFormat f);
// The format a chat template asks its model to write (hermes when the template says nothing).
ToolCallFormat tool_call_format_for_template(const std::string& chat_template);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object as compact text
};

struct ToolCallParse {
  std::string content;  // the text outside the calls (trimmed of the whitespace around them)
  std::vector<ToolCall> calls;
};

ToolCallParse parse_tool_calls(ToolCallFormat format, const std::string& text);

// The same for a stream: push() returns the content that is safe to send now (never a piece of
// a tool-call marker or of a call); finish() parses what was held back.
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallFormat format) : format_(format) {}
  std::string push(const std::string& piece);
  // The content not sent yet (when the held text was no call after all) and the calls.
  ToolCallParse finish();

 private:
  ToolCallFormat format_;
  std::string text_;      // everything pushed
  size_t sent_ = 0;       // bytes of text_ returned as content
  bool in_call_ = false;  // a call started: everything from call_at_ waits for finish()
  size_t call_at_ = 0;
};

}  // namespace tpinfer::structured
