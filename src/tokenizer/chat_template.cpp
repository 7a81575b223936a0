#include "tokenizer/chat_template.h"

#include <cstdio>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

namespace {

// The exact templates the engine renders, by FNV-1a 64 of their text.
struct KnownTemplate {
  uint64_t hash;
  ChatFamily family;
  const char* source;
};
const KnownTemplate kKnown[] = {
    // Qwen/Qwen3-* (0.6B .. 235B-A22B) tokenizer_config.json, = configs/tokenizers/qwen3
    {0x2bfdb7aa9754484eull, ChatFamily::Qwen3, "Qwen3"},
    // meta-llama/Meta-Llama-3-8B-Instruct, with {% if add_generation_prompt %}
    {0x0e60067a5537498eull, ChatFamily::Llama3, "Meta-Llama-3-Instruct"},
    // the early Llama-3 file that always appends the assistant header, = configs/tokenizers/llama3
    {0x74891e390e614ae2ull, ChatFamily::Llama3Always, "Llama-3 (header always)"},
    // mistralai/Mistral-7B-Instruct-v0.1 as documented by transformers
    {0xc730acc029ce6ee0ull, ChatFamily::MistralV1, "Mistral-7B-Instruct-v0.1"},
};

// ---- Python str semantics the templates rely on ----

bool py_isspace(uint32_t cp) {
  return is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

// str.strip() / lstrip() / rstrip() with no argument (Unicode whitespace).
std::string py_strip_ws(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e) {
    size_t i = b;
    if (!py_isspace(next_cp(s, i))) break;
    b = i;
  }
  while (e > b) {
    size_t start = e - 1;
    while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    size_t i = start;
    if (!py_isspace(next_cp(s, i))) break;
    e = start;
  }
  return std::string(s.substr(b, e - b));
}

std::string lstrip_nl(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && s[b] == '\n') ++b;
  return std::string(s.substr(b));
}
std::string rstrip_nl(std::string_view s) {
  size_t e = s.size();
  while (e > 0 && s[e - 1] == '\n') --e;
  return std::string(s.substr(0, e));
}
std::string strip_nl(std::string_view s) { return lstrip_nl(rstrip_nl(s)); }

// s.split(sep)[0] and s.split(sep)[-1].
std::string split_first(std::string_view s, std::string_view sep) {
  const size_t p = s.find(sep);
  return std::string(p == std::string_view::npos ? s : s.substr(0, p));
}
std::string split_last(std::string_view s, std::string_view sep) {
  const size_t p = s.rfind(sep);
  return std::string(p == std::string_view::npos ? s : s.substr(p + sep.size()));
}
bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

}  // namespace

const char* chat_family_name(ChatFamily f) {
  switch (f) {
    case ChatFamily::None: return "none";
    case ChatFamily::Unknown: return "unknown";
    case ChatFamily::Qwen3: return "qwen3";
    case ChatFamily::Llama3: return "llama3";
    case ChatFamily::Llama3Always: return "llama3-always";
    case ChatFamily::MistralV1: return "mistral-v0.1";
  }
  return "?";
}

uint64_t chat_template_hash(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : text) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

ChatFamily chat_family_of(std::string_view text) {
  if (text.empty()) return ChatFamily::None;
  const uint64_t h = chat_template_hash(text);
  for (const auto& k : kKnown) {
    if (k.hash == h) return k.family;
  }
  return ChatFamily::Unknown;
}

void ChatTemplate::init(std::string template_text, std::string bos_token, std::string eos_token,
                        std::string where) {
  family_ = chat_family_of(template_text);
  template_ = std::move(template_text);
  bos_ = std::move(bos_token);
  eos_ = std::move(eos_token);
  where_ = std::move(where);
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, bool enable_thinking) const {
  switch (family_) {
    case ChatFamily::None:
      TPI_FAIL(where_ << ": has no chat_template, so chat mode cannot be used with this "
                         "tokenizer (use a chat/instruct checkpoint, or run with chat: false)");
    case ChatFamily::Unknown: {
      char hash[32];
      std::snprintf(hash, sizeof hash, "%016llx",
                    static_cast<unsigned long long>(chat_template_hash(template_)));
      TPI_FAIL(where_ << ": chat_template is not one the engine knows (fnv64 " << hash
                      << ", starts '" << template_.substr(0, 60)
                      << "'); supported: Qwen3, Llama-3 Instruct, Mistral-7B-Instruct-v0.1");
    }
    default: break;
  }
  TPI_CHECK(!messages.empty(), where_ << ": chat template needs at least one message");
  switch (family_) {
    case ChatFamily::Qwen3: return render_qwen3(messages, add_generation_prompt, enable_thinking);
    case ChatFamily::Llama3: return render_llama3(messages, add_generation_prompt);
    case ChatFamily::Llama3Always: return render_llama3(messages, true);
    case ChatFamily::MistralV1: return render_mistral_v1(messages);
    default: TPI_FAIL("unreachable");
  }
}

// The Qwen3 template without tools (the engine passes none). Roles: system, user, assistant,
// tool; anything else is an error (the template would silently drop it).
std::string ChatTemplate::render_qwen3(const std::vector<ChatMessage>& m, bool gen,
                                       bool thinking) const {
  const size_t n = m.size();
  for (const auto& msg : m) {
    TPI_CHECK(msg.role == "system" || msg.role == "user" || msg.role == "assistant" ||
                  msg.role == "tool",
              where_ << ": the Qwen3 chat template has no role '" << msg.role
                     << "' (system, user, assistant, tool)");
  }
  std::string out;
  if (m[0].role == "system") out += "<|im_start|>system\n" + m[0].content + "<|im_end|>\n";
  // The last user message that is not a tool response.
  bool multi_step_tool = true;
  size_t last_query_index = n - 1;
  for (size_t r = 0; r < n; ++r) {
    const size_t index = n - 1 - r;
    const ChatMessage& msg = m[index];
    if (multi_step_tool && msg.role == "user" &&
        !(starts_with(msg.content, "<tool_response>") &&
          ends_with(msg.content, "</tool_response>"))) {
      multi_step_tool = false;
      last_query_index = index;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& msg = m[i];
    const bool first = i == 0, last = i + 1 == n;
    if (msg.role == "user" || (msg.role == "system" && !first)) {
      out += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
    } else if (msg.role == "assistant") {
      std::string content = msg.content;
      std::string reasoning;
      if (msg.content.find("</think>") != std::string::npos) {
        content = lstrip_nl(split_last(msg.content, "</think>"));
        reasoning = lstrip_nl(split_last(rstrip_nl(split_first(msg.content, "</think>")), "<think>"));
      }
      if (i > last_query_index && (last || !reasoning.empty())) {
        out += "<|im_start|>" + msg.role + "\n<think>\n" + strip_nl(reasoning) + "\n</think>\n\n" +
               lstrip_nl(content);
      } else {
        out += "<|im_start|>" + msg.role + "\n" + content;
      }
      out += "<|im_end|>\n";
    } else if (msg.role == "tool") {
      if (first || m[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + msg.content + "\n</tool_response>";
      if (last || m[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (gen) {
    out += "<|im_start|>assistant\n";
    if (!thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

std::string ChatTemplate::render_llama3(const std::vector<ChatMessage>& m, bool gen) const {
  std::string out;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i == 0) out += bos_;
    out += "<|start_header_id|>" + m[i].role + "<|end_header_id|>\n\n" + py_strip_ws(m[i].content) +
           "<|eot_id|>";
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string ChatTemplate::render_mistral_v1(const std::vector<ChatMessage>& m) const {
  std::string out = bos_;
  for (size_t i = 0; i < m.size(); ++i) {
    TPI_CHECK((m[i].role == "user") == (i % 2 == 0),
              where_ << ": Conversation roles must alternate user/assistant/user/assistant/... "
                        "(message " << i << " is '" << m[i].role << "')");
    if (m[i].role == "user") {
      out += "[INST] " + m[i].content + " [/INST]";
    } else if (m[i].role == "assistant") {
      out += m[i].content + eos_ + " ";
    } else {
      TPI_FAIL(where_ << ": Only user and assistant roles are supported! (message " << i << " is '"
                      << m[i].role << "')");
    }
  }
  return out;
}

}  // namespace tpinfer::tok
