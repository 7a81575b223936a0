#include "runtime/frontend/openai/structured_fields.h"

#include <algorithm>
#include <cctype>

#include "runtime/frontend/openai/protocol.h"
#include "runtime/structured/json_grammar.h"

namespace tpinfer::openai {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& what) {
  throw ApiError(400, "'" + param + "': " + what, param);
}

// Compiles a schema to check it; a refusal names the field and where in the schema.
void check_schema(const json& schema, const std::string& param) {
  try {
    structured::compile_json_schema(schema);
  } catch (const structured::SchemaError& e) {
    bad(param, (e.path.empty() ? std::string() : "at " + e.path + ": ") + e.what());
  }
}

bool valid_function_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

const json* field(const json& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

std::string parse_response_format(const json& v) {
  if (!v.is_object()) bad("response_format", "expected an object, found " + v.dump());
  const json* t = field(v, "type");
  if (!t || !t->is_string()) {
    bad("response_format.type", "expected \"text\", \"json_object\" or \"json_schema\"");
  }
  const std::string type = t->get<std::string>();
  if (type == "text") return "";
  if (type == "json_object") return R"({"type":"object"})";
  if (type != "json_schema") {
    bad("response_format.type",
        "expected \"text\", \"json_object\" or \"json_schema\", found " + t->dump());
  }
  const json* js = field(v, "json_schema");
  if (!js) bad("response_format.json_schema", "missing (a json_schema response format needs it)");
  if (!js->is_object()) bad("response_format.json_schema", "expected an object");
  if (const json* name = field(*js, "name")) {
    if (!name->is_string() || !valid_function_name(name->get<std::string>())) {
      bad("response_format.json_schema.name",
          "expected 1 to 64 letters, digits, '_' or '-', found " + name->dump());
    }
  }
  if (const json* strict = field(*js, "strict"); strict && !strict->is_boolean()) {
    bad("response_format.json_schema.strict", "expected a boolean, found " + strict->dump());
  }
  const json* schema = field(*js, "schema");
  if (!schema) return R"({"type":"object"})";
  if (!schema->is_object() && !schema->is_boolean()) {
    bad("response_format.json_schema.schema", "expected a JSON Schema object");
  }
  check_schema(*schema, "response_format.json_schema.schema");
  return schema->dump();
}

ToolsRequest parse_tools(const json* tools, const json* tool_choice,
                         const json* parallel_tool_calls) {
  ToolsRequest out;
  std::vector<json> params;
  if (tools) {
    if (!tools->is_array()) bad("tools", "expected an array of tools, found " + tools->dump());
    for (size_t i = 0; i < tools->size(); ++i) {
      const std::string p = "tools[" + std::to_string(i) + "]";
      const json& t = (*tools)[i];
      if (!t.is_object()) bad(p, "expected an object");
      const json* type = field(t, "type");
      if (!type || *type != "function") {
        bad(p + ".type", "expected \"function\" (the only tool type), found " +
                             (type ? type->dump() : std::string("nothing")));
      }
      const json* f = field(t, "function");
      if (!f || !f->is_object()) bad(p + ".function", "expected an object");
      const json* name = field(*f, "name");
      if (!name || !name->is_string() || !valid_function_name(name->get<std::string>())) {
        bad(p + ".function.name", "expected 1 to 64 letters, digits, '_' or '-', found " +
                                      (name ? name->dump() : std::string("nothing")));
      }
      if (const json* d = field(*f, "description"); d && !d->is_string()) {
        bad(p + ".function.description", "expected a string");
      }
      json schema = {{"type", "object"}};
      if (const json* s = field(*f, "parameters")) {
        if (!s->is_object()) bad(p + ".function.parameters", "expected a JSON Schema object");
        check_schema(*s, p + ".function.parameters");
        schema = *s;
      }
      out.names.push_back(name->get<std::string>());
      params.push_back(std::move(schema));
    }
    if (!tools->empty()) out.tools_json = tools->dump();
  }
  const bool have = !out.names.empty();
  out.choice = have ? ToolChoice::automatic : ToolChoice::none;
  if (tool_choice) {
    if (tool_choice->is_string()) {
      const std::string c = tool_choice->get<std::string>();
      if (c == "none") {
        out.choice = ToolChoice::none;
      } else if (c == "auto" || c == "required") {
        if (!have) bad("tool_choice", "\"" + c + "\" needs 'tools'");
        out.choice = c == "auto" ? ToolChoice::automatic : ToolChoice::required;
      } else {
        bad("tool_choice",
            "expected \"none\", \"auto\", \"required\" or {\"type\": "
            "\"function\", \"function\": {\"name\": ...}}, found " +
                tool_choice->dump());
      }
    } else if (tool_choice->is_object()) {
      const json* f = field(*tool_choice, "function");
      const json* name = f && f->is_object() ? field(*f, "name") : nullptr;
      if (!name || !name->is_string()) {
        bad("tool_choice.function.name", "expected the name of one of the tools");
      }
      out.named = name->get<std::string>();
      auto it = std::find(out.names.begin(), out.names.end(), out.named);
      if (it == out.names.end()) {
        bad("tool_choice.function.name",
            "no tool is named " + name->dump() + (have ? "" : " ('tools' is empty)"));
      }
      out.choice = ToolChoice::named;
      out.schema = params[static_cast<size_t>(it - out.names.begin())].dump();
    } else {
      bad("tool_choice", "expected a string or an object, found " + tool_choice->dump());
    }
  }
  bool parallel = true;
  if (parallel_tool_calls) {
    if (!parallel_tool_calls->is_boolean()) {
      bad("parallel_tool_calls", "expected a boolean, found " + parallel_tool_calls->dump());
    }
    parallel = parallel_tool_calls->get<bool>();
  }
  if (out.choice == ToolChoice::required) {
    // An array of calls, each {"name": one of the tools, "parameters": its arguments}.
    json any = json::array();
    for (size_t i = 0; i < out.names.size(); ++i) {
      any.push_back(
          {{"type", "object"},
           {"properties", {{"name", {{"const", out.names[i]}}}, {"parameters", params[i]}}},
           {"required", {"name", "parameters"}},
           {"additionalProperties", false}});
    }
    json s = {{"type", "array"}, {"minItems", 1}, {"items", {{"anyOf", any}}}};
    if (!parallel) s["maxItems"] = 1;
    check_schema(s, "tools");  // e.g. a $ref that only resolved inside its own function
    out.schema = s.dump();
  }
  return out;
}

void keep_tool_key_order(std::string_view body, std::string& tools_json,
                         std::vector<std::string*> tool_calls_json) {
  const nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, false);
  if (!j.is_object()) return;
  if (!tools_json.empty() && j.contains("tools")) tools_json = j["tools"].dump();
  auto m = j.find("messages");
  if (m == j.end() || !m->is_array() || m->size() != tool_calls_json.size()) return;
  for (size_t i = 0; i < m->size(); ++i) {
    if (tool_calls_json[i]->empty()) continue;
    auto c = (*m)[i].find("tool_calls");
    if (c != (*m)[i].end()) *tool_calls_json[i] = c->dump();
  }
}

std::string new_tool_call_id() {
  return "call_" + random_hex(24);
}

}  // namespace tpinfer::openai
