#include "runtime/structured/tool_calls.h"

#include <nlohmann/json.hpp>

namespace tpinfer::structured {
namespace {

using json = nlohmann::json;

const char* const kHermesOpen = "<tool_call>";
const char* const kHermesClose = "</tool_call>";
const char* const kPythonTag = "<|python_tag|>";
const char* const kMistralCalls = "[TOOL_CALLS]";
const char* const kMistralArgs = "[ARGS]";

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// A call object {"name": ..., args_key: {...}} (args_key "arguments" or "parameters"; either is
// read). False when it is not one.
bool read_call(const json& j, ToolCall& out) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  out.name = j["name"].get<std::string>();
  const json* args = nullptr;
  for (const char* k : {"arguments", "parameters"}) {
    if (j.contains(k)) args = &j[k];
  }
  if (!args) {
    out.arguments = "{}";
  } else if (args->is_string()) {  // some models write the arguments as a JSON string
    out.arguments = args->get<std::string>();
  } else {
    out.arguments = args->dump();
  }
  return true;
}

// The first JSON value of `text` from `at`; `end` is set past it. Discarded when malformed.
json first_value(const std::string& text, size_t at, size_t& end) {
  // nlohmann parses a whole input: find the value's end by bracket depth outside strings.
  int depth = 0;
  bool in_str = false, esc = false;
  size_t i = text.find_first_not_of(" \t\r\n", at);
  if (i == std::string::npos) return json::value_t::discarded;
  const size_t start = i;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (in_str) {
      if (esc) {
        esc = false;
      } else if (c == '\\') {
        esc = true;
      } else if (c == '"') {
        in_str = false;
      }
      continue;
    }
    if (c == '"') {
      in_str = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) {
        end = i + 1;
        return json::parse(text.begin() + static_cast<std::ptrdiff_t>(start),
                           text.begin() + static_cast<std::ptrdiff_t>(end), nullptr, false);
      }
    }
  }
  return json::value_t::discarded;
}

ToolCallParse parse_hermes(const std::string& text) {
  ToolCallParse out;
  const size_t first = text.find(kHermesOpen);
  if (first == std::string::npos) {
    out.content = text;
    return out;
  }
  std::string rest;
  size_t at = first;
  while (at != std::string::npos) {
    const size_t body = at + std::string(kHermesOpen).size();
    size_t close = text.find(kHermesClose, body);
    const std::string inner =
        text.substr(body, close == std::string::npos ? std::string::npos : close - body);
    const json j = json::parse(trim(inner), nullptr, false);
    ToolCall c;
    if (!j.is_discarded() && read_call(j, c)) {
      out.calls.push_back(std::move(c));
    } else {
      rest += text.substr(at, close == std::string::npos
                                  ? std::string::npos
                                  : close + std::string(kHermesClose).size() - at);
    }
    if (close == std::string::npos) break;
    const size_t after = close + std::string(kHermesClose).size();
    at = text.find(kHermesOpen, after);
    rest += text.substr(after, at == std::string::npos ? std::string::npos : at - after);
  }
  if (out.calls.empty()) {
    out.content = text;
    return out;
  }
  out.content = trim(text.substr(0, first) + trim(rest));
  return out;
}

ToolCallParse parse_llama3(const std::string& text) {
  ToolCallParse out;
  std::string t = trim(text);
  if (t.rfind(kPythonTag, 0) == 0) t = trim(t.substr(std::string(kPythonTag).size()));
  for (const char* eom : {"<|eom_id|>", "<|eot_id|>"}) {
    const std::string e = eom;
    if (t.size() >= e.size() && t.compare(t.size() - e.size(), e.size(), e) == 0) {
      t = trim(t.substr(0, t.size() - e.size()));
    }
  }
  if (t.empty() || t[0] != '{') {
    out.content = text;
    return out;
  }
  size_t at = 0;
  while (at < t.size()) {
    size_t end = 0;
    const json j = first_value(t, at, end);
    ToolCall c;
    if (j.is_discarded() || !read_call(j, c)) {
      out.calls.clear();
      out.content = text;
      return out;
    }
    out.calls.push_back(std::move(c));
    at = t.find_first_not_of(" \t\r\n", end);
    if (at == std::string::npos) break;
    if (t[at] != ';') {
      out.calls.clear();
      out.content = text;
      return out;
    }
    ++at;
  }
  return out;
}

ToolCallParse parse_mistral(const std::string& text) {
  ToolCallParse out;
  const std::string marker = kMistralCalls;
  const size_t first = text.find(marker);
  if (first == std::string::npos) {
    out.content = text;
    return out;
  }
  size_t at = first;
  while (at != std::string::npos) {
    const size_t body = at + marker.size();
    const size_t next = text.find(marker, body);
    const std::string part =
        trim(text.substr(body, next == std::string::npos ? std::string::npos : next - body));
    if (!part.empty() && part[0] == '[') {  // [{"name", "arguments"}, ...]
      const json a = json::parse(part, nullptr, false);
      if (a.is_array()) {
        for (const json& j : a) {
          ToolCall c;
          if (read_call(j, c)) out.calls.push_back(std::move(c));
        }
      }
    } else {  // name[ARGS]{...}
      const size_t args = part.find(kMistralArgs);
      if (args != std::string::npos) {
        const json j =
            json::parse(trim(part.substr(args + std::string(kMistralArgs).size())), nullptr, false);
        if (!j.is_discarded()) {
          out.calls.push_back({trim(part.substr(0, args)), j.dump()});
        }
      }
    }
    at = next;
  }
  if (out.calls.empty()) {
    out.content = text;
    return out;
  }
  out.content = trim(text.substr(0, first));
  return out;
}

// Where a call starts in `text` (npos: not yet), and how many trailing bytes may still become
// its marker (held back).
size_t call_start(ToolCallFormat f, const std::string& text, size_t from, size_t& hold) {
  hold = 0;
  if (f == ToolCallFormat::llama3_json) {
    // A call is the whole message: it starts at the first non-space byte when that is '{' or
    // the python tag.
    const size_t a = text.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) {
      hold = text.size() - from;
      return std::string::npos;
    }
    if (a < from) return std::string::npos;  // content was already sent
    if (text[a] == '{') return a;
    const std::string tag = kPythonTag;
    const std::string head = text.substr(a, tag.size());
    if (tag.compare(0, head.size(), head) == 0) {
      if (head.size() == tag.size()) return a;
      hold = text.size() - from;
    }
    return std::string::npos;
  }
  const std::string marker = f == ToolCallFormat::hermes ? kHermesOpen : kMistralCalls;
  const size_t at = text.find(marker, from);
  if (at != std::string::npos) return at;
  // The longest suffix that is a prefix of the marker waits.
  for (size_t k = std::min(marker.size() - 1, text.size() - from); k > 0; --k) {
    if (text.compare(text.size() - k, k, marker, 0, k) == 0) {
      hold = k;
      break;
    }
  }
  return std::string::npos;
}

}  // namespace

const char* tool_call_format_name(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::hermes:
      return "hermes";
    case ToolCallFormat::llama3_json:
      return "llama3_json";
    case ToolCallFormat::mistral:
      return "mistral";
  }
  return "hermes";
}

ToolCallFormat tool_call_format_for_template(const std::string& t) {
  if (t.find("[TOOL_CALLS]") != std::string::npos) return ToolCallFormat::mistral;
  if (t.find("<tool_call>") != std::string::npos) return ToolCallFormat::hermes;
  if (t.find("<|python_tag|>") != std::string::npos || t.find("ipython") != std::string::npos) {
    return ToolCallFormat::llama3_json;
  }
  return ToolCallFormat::hermes;
}

ToolCallParse parse_tool_calls(ToolCallFormat format, const std::string& text) {
  switch (format) {
    case ToolCallFormat::llama3_json:
      return parse_llama3(text);
    case ToolCallFormat::mistral:
      return parse_mistral(text);
    case ToolCallFormat::hermes:
      break;
  }
  return parse_hermes(text);
}

std::string ToolCallStream::push(const std::string& piece) {
  text_ += piece;
  if (in_call_) return "";
  size_t hold = 0;
  const size_t at = call_start(format_, text_, sent_, hold);
  size_t upto = text_.size() - hold;
  if (at != std::string::npos) {
    in_call_ = true;
    call_at_ = at;
    upto = at;
  }
  if (upto <= sent_) return "";
  std::string out = text_.substr(sent_, upto - sent_);
  sent_ = upto;
  return out;
}

ToolCallParse ToolCallStream::finish() {
  ToolCallParse p = parse_tool_calls(format_, text_);
  ToolCallParse out;
  out.calls = std::move(p.calls);
  if (out.calls.empty()) {  // no call after all: what was held back is content
    out.content = text_.substr(sent_);
  } else {
    // Content after the sent part: what the parse kept beyond the prefix already sent.
    const std::string sent = text_.substr(0, sent_);
    out.content = p.content.size() > trim(sent).size() && p.content.rfind(trim(sent), 0) == 0
                      ? p.content.substr(trim(sent).size())
                      : "";
  }
  return out;
}

}  // namespace tpinfer::structured
