// Hugging Face tokenizer.json in C++: byte-level BPE (Qwen3, Llama-3) and SentencePiece-style
// BPE with byte fallback (Llama-2, Mistral, stories260K), added/special tokens, the
// post-processor's BOS/EOS, decoding, streaming decode and chat templates (a Jinja renderer).
// Produces exactly the ids of the Hugging Face `tokenizers` library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpinfer {

struct ChatMessage {
  ChatMessage() = default;
  ChatMessage(std::string role_, std::string content_)
      : role(std::move(role_)), content(std::move(content_)) {}
  std::string role;  // "system" | "user" | "assistant" | "tool"
  std::string content;
  // An assistant turn's tool calls, as a JSON array of OpenAI tool calls ({"id", "type",
  // "function": {"name", "arguments"}}); "" = none. The template sees each call's arguments as
  // an object (as transformers expects).
  std::string tool_calls_json;
  std::string tool_call_id;  // a tool turn: the call it answers
  std::string name;          // a tool turn: the function's name (when given)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json. Throws tpinfer::Error
  // naming the file and what is unsupported.
  static std::unique_ptr<Tokenizer> from_dir(const std::string& dir);
  // The same from explicit paths; tokenizer_config_json may be empty (no config file). Lets a
  // tokenizer.json be combined with another tokenizer_config.json (e.g. a chat template fixture).
  static std::unique_ptr<Tokenizer> from_files(const std::string& tokenizer_json,
                                               const std::string& tokenizer_config_json);

  // add_special = true matches `tokenizer.encode(text)`, false `add_special_tokens=False`.
  // Text that is not valid UTF-8 is read as from_utf8_lossy would (U+FFFD). encode and decode are
  // safe to call from several threads.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Throws tpinfer::Error for an id outside [0, vocab_size()) or without a token (Hugging Face
  // silently drops those).
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;

  virtual int vocab_size() const = 0;  // including added tokens
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // Ids of the tokens tokenizer_config.json names eos_token (and, if set, pad/eot conventions
  // are NOT included). Empty when none is named.
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;

  // Renders a conversation with the chat template of tokenizer_config.json (or chat_template.jinja
  // beside it) through the C++ Jinja renderer, as transformers' apply_chat_template(...,
  // tokenize=False) does (special tokens and enable_thinking passed as it passes them). Throws
  // tpinfer::Error when there is no template, when it uses a construct the renderer lacks (file,
  // line, construct) or when the template raises (its message). The result is text: encode it
  // with add_special = false (the template already holds the BOS where the model has one).
  // tools_json: an OpenAI `tools` array as JSON text ("" = none), passed to the template as
  // transformers passes `tools` (each entry as given: {"type": "function", "function": {...}}).
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt = true,
                                          bool enable_thinking = true,
                                          const std::string& tools_json = "") const = 0;
  // The chat template's Jinja source ("" = none): which tool-call format the model writes, and
  // /tokenizer_info's chat_template for clients that render it themselves.
  virtual std::string chat_template_text() const = 0;
  virtual bool has_chat_template() const = 0;
};

// Turns ids into text one at a time for streaming: never emits half a UTF-8 character, turns
// byte-fallback tokens back into their bytes, and applies the decoder's rules (e.g. the leading
// space SentencePiece strips at the start) exactly as a full decode would, so the concatenation of
// every push() and the final flush() equals decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string push(int32_t id);  // the text that became final with this id (may be empty)
  std::string flush();           // whatever is left (invalid trailing bytes as U+FFFD)
  void reset();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t emitted_bytes_ = 0;  // bytes of decode(ids_) already returned
};

}  // namespace tpinfer
