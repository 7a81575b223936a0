// Private to src/tokenizer: chat templates of the supported families. tokenizer_config.json holds
// a Jinja template; the engine recognises the exact templates it knows (by a 64-bit FNV-1a hash of
// the text) and renders them with C++ code equivalent to that template, so any other template is
// a clear error rather than a silently different prompt.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace tpinfer::tok {

enum class ChatFamily {
  None,       // tokenizer_config.json has no chat_template
  Unknown,    // a template the engine does not know
  Qwen3,      // Qwen3 ChatML with <think> handling and enable_thinking
  Llama3,     // Meta-Llama-3 Instruct: header per turn, assistant header if add_generation_prompt
  Llama3Always,  // the Llama-3 variant that always appends the assistant header
  MistralV1,  // Mistral-7B-Instruct-v0.1: <s>[INST] ... [/INST]answer</s> ...
};

const char* chat_family_name(ChatFamily f);
uint64_t chat_template_hash(std::string_view text);
ChatFamily chat_family_of(std::string_view template_text);

class ChatTemplate {
 public:
  // template_text empty = none. where names the file for messages.
  void init(std::string template_text, std::string bos_token, std::string eos_token,
            std::string where);
  bool has_template() const { return family_ != ChatFamily::None; }
  ChatFamily family() const { return family_; }
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     bool enable_thinking) const;

 private:
  std::string render_qwen3(const std::vector<ChatMessage>& m, bool gen, bool thinking) const;
  std::string render_llama3(const std::vector<ChatMessage>& m, bool gen) const;
  std::string render_mistral_v1(const std::vector<ChatMessage>& m) const;

  ChatFamily family_ = ChatFamily::None;
  std::string template_;
  std::string bos_, eos_;
  std::string where_;
};

}  // namespace tpinfer::tok
