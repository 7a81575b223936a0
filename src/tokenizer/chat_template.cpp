// A tokenizer's chat template: transformers' render variables around the Jinja renderer.
#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja.h"

namespace tpinfer::tok {

void ChatTemplate::init(std::string template_text,
                        std::vector<std::pair<std::string, std::string>> special_tokens,
                        std::string where) {
  text_ = std::move(template_text);
  special_ = std::move(special_tokens);
  where_ = std::move(where);
  tmpl_.reset();
  parse_error_.clear();
  if (text_.empty()) return;
  // A template the renderer cannot read only matters in chat mode: keep the reason for then.
  try {
    const bool own_file = where_.size() >= 6 && where_.compare(where_.size() - 6, 6, ".jinja") == 0;
    tmpl_ = std::make_shared<jinja::JinjaTemplate>(text_,
                                                   own_file ? where_ : where_ + " chat_template");
  } catch (const Error& e) {
    parse_error_ = e.what();
  }
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, bool enable_thinking,
                                 const std::string& tools_json,
                                 std::optional<std::time_t> now) const {
  TPI_CHECK(has_template(), where_ << ": has no chat_template, so chat mode cannot be used with "
                                      "this tokenizer (use a chat/instruct checkpoint, or run "
                                      "with chat: false)");
  TPI_CHECK(!messages.empty(), where_ << ": chat template needs at least one message");
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (const auto& m : messages) {
    TPI_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant" || m.role == "tool",
              where_ << ": chat message has no role '" << m.role
                     << "' (expected system, user, assistant or tool)");
    nlohmann::ordered_json j = {{"role", m.role}};
    j["content"] = m.content;
    if (!m.tool_calls_json.empty()) {
      // As vLLM and transformers' examples pass them: each call's arguments as an object.
      nlohmann::ordered_json calls = nlohmann::ordered_json::parse(m.tool_calls_json);
      for (auto& c : calls) {
        if (!c.contains("function") || !c["function"].is_object()) continue;
        auto& args = c["function"]["arguments"];
        if (args.is_string()) {
          try {
            args = nlohmann::ordered_json::parse(args.get<std::string>());
          } catch (const nlohmann::json::parse_error&) {  // left as the string it is
          }
        }
      }
      j["tool_calls"] = std::move(calls);
    }
    if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
    if (!m.name.empty()) j["name"] = m.name;
    msgs.push_back(std::move(j));
  }
  nlohmann::ordered_json kwargs = {{"enable_thinking", enable_thinking}};
  const nlohmann::ordered_json tools =
      tools_json.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json::parse(tools_json);
  return render_json(msgs, tools, nullptr, add_generation_prompt, kwargs, now);
}

std::string ChatTemplate::render_json(const nlohmann::ordered_json& messages,
                                      const nlohmann::ordered_json& tools,
                                      const nlohmann::ordered_json& documents,
                                      bool add_generation_prompt,
                                      const nlohmann::ordered_json& kwargs,
                                      std::optional<std::time_t> now) const {
  TPI_CHECK(has_template(), where_ << ": has no chat_template, so chat mode cannot be used with "
                                      "this tokenizer (use a chat/instruct checkpoint, or run "
                                      "with chat: false)");
  if (!tmpl_) TPI_FAIL(parse_error_);
  TPI_CHECK(messages.is_array(), where_ << ": chat messages must be a list");
  // transformers' _alias_reasoning_fields: reasoning under any of its names is also passed as
  // `reasoning_content` (last) and `thinking` (first).
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (const auto& m : messages) {
    TPI_CHECK(m.is_object(), where_ << ": a chat message must be an object, got " << m.dump());
    const nlohmann::ordered_json* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
      if (m.contains(key) && !m.at(key).is_null()) {
        reasoning = &m.at(key);
        break;
      }
    }
    if (!reasoning) {
      msgs.push_back(m);
      continue;
    }
    nlohmann::ordered_json a = nlohmann::ordered_json::object();
    a["thinking"] = *reasoning;
    for (const auto& [k, v] : m.items()) a[k] = v;
    a["reasoning_content"] = *reasoning;
    msgs.push_back(std::move(a));
  }
  std::vector<std::pair<std::string, jinja::Value>> vars;
  vars.emplace_back("messages", jinja::from_json(msgs));
  vars.emplace_back("tools", jinja::from_json(tools));
  vars.emplace_back("documents", jinja::from_json(documents));
  vars.emplace_back("add_generation_prompt", jinja::Value(add_generation_prompt));
  for (const auto& [k, v] : special_) vars.emplace_back(k, jinja::Value(v));
  if (kwargs.is_object()) {
    for (const auto& [k, v] : kwargs.items()) vars.emplace_back(k, jinja::from_json(v));
  }
  return tmpl_->render(vars, now);
}

}  // namespace tpinfer::tok
