// Private to src/tokenizer: the chat template of a tokenizer (tokenizer_config.json's
// chat_template, or a chat_template.jinja beside it), rendered with the Jinja renderer
// (tokenizer/jinja.h) exactly as transformers' apply_chat_template(..., tokenize=False) does:
// the same variables (messages, tools, documents, add_generation_prompt, the special tokens and
// extra keyword arguments such as enable_thinking), no per-model code. A template the renderer
// cannot parse is reported, with its line and construct, when chat mode is used.
#pragma once

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace tpinfer::tok {

namespace jinja {
class JinjaTemplate;
}

class ChatTemplate {
 public:
  // template_text empty = none. special_tokens: name -> text (bos_token, eos_token, ...), passed
  // to the template as transformers passes special_tokens_map. where names the file for messages.
  void init(std::string template_text,
            std::vector<std::pair<std::string, std::string>> special_tokens, std::string where);
  bool has_template() const { return !text_.empty(); }
  const std::string& text() const { return text_; }

  // The engine's conversation: role/content messages (with an assistant's tool_calls, a tool
  // turn's tool_call_id and name), enable_thinking passed as a keyword, tools_json (an OpenAI
  // `tools` array as JSON text, "" = None) as `tools`.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     bool enable_thinking, const std::string& tools_json = "",
                     std::optional<std::time_t> now = std::nullopt) const;

  // transformers' render_jinja_template for one conversation: messages (a list of dicts, with
  // its reasoning-field aliasing), tools / documents (null = None), add_generation_prompt and
  // extra keyword arguments (an object; they override special tokens of the same name). now fixes
  // strftime_now's clock (tests).
  std::string render_json(const nlohmann::ordered_json& messages,
                          const nlohmann::ordered_json& tools,
                          const nlohmann::ordered_json& documents, bool add_generation_prompt,
                          const nlohmann::ordered_json& kwargs,
                          std::optional<std::time_t> now = std::nullopt) const;

 private:
  std::string text_;
  std::shared_ptr<jinja::JinjaTemplate> tmpl_;
  std::string parse_error_;
  std::vector<std::pair<std::string, std::string>> special_;
  std::string where_;
};

}  // namespace tpinfer::tok
