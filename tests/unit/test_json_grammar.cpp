// Structured output: the schema compiler (what it accepts, what it refuses and where), the
// byte automaton (valid and invalid documents), and the token mask of GrammarProcessor against a
// brute-force scan of a small vocabulary along random walks: every allowed token keeps a valid
// prefix, every refused one breaks it, end-of-sequence exactly when the value is complete; the
// finished outputs parse and validate (a small validator of the supported subset).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "runtime/structured/grammar_processor.h"
#include "runtime/structured/json_grammar.h"
#include "runtime/structured/token_vocab.h"

using namespace tpinfer::structured;
using json = nlohmann::json;

namespace {

bool accepts(const json& schema, const std::string& doc, bool complete = true) {
  JsonAutomaton a(compile_json_schema(schema));
  MatchState s = a.initial();
  if (!advance(a, s, doc)) return false;
  return !complete || a.can_end(s);
}

// The supported subset, as jsonschema reads it.
bool validates(const json& v, const json& s, const json& root) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return validates(v, root["$defs"][ref.substr(std::string("#/$defs/").size())], root);
  }
  if (s.contains("anyOf")) {
    for (const json& b : s["anyOf"]) {
      if (validates(v, b, root)) return true;
    }
    return false;
  }
  if (s.contains("enum")) {
    for (const json& e : s["enum"]) {
      if (e == v) return true;
    }
    return false;
  }
  if (s.contains("const")) return s["const"] == v;
  if (s.contains("type")) {
    const json types = s["type"].is_array() ? s["type"] : json::array({s["type"]});
    bool ok = false;
    for (const json& t : types) {
      ok |= (t == "object" && v.is_object()) || (t == "array" && v.is_array()) ||
            (t == "string" && v.is_string()) || (t == "number" && v.is_number()) ||
            (t == "integer" && v.is_number_integer()) || (t == "boolean" && v.is_boolean()) ||
            (t == "null" && v.is_null());
    }
    if (!ok) return false;
  }
  if (v.is_object()) {
    for (const auto& [k, x] : v.items()) {
      if (s.contains("properties") && s["properties"].contains(k)) {
        if (!validates(x, s["properties"][k], root)) return false;
      } else if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return false;
      }
    }
    if (s.contains("required")) {
      for (const json& r : s["required"]) {
        if (!v.contains(r.get<std::string>())) return false;
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return false;
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return false;
    if (s.contains("items")) {
      for (const json& x : v) {
        if (!validates(x, s["items"], root)) return false;
      }
    }
  }
  if (v.is_string()) {
    size_t chars = 0;
    for (char c : v.get<std::string>()) chars += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
    if (s.contains("minLength") && chars < s["minLength"].get<size_t>()) return false;
    if (s.contains("maxLength") && chars > s["maxLength"].get<size_t>()) return false;
  }
  return true;
}

// A small vocabulary: every ASCII byte alone, pieces that cross JSON's punctuation, keys and
// literals cut anywhere, multi-byte characters whole and in halves; id 1 is end-of-sequence and
// id 2 a special token (no bytes).
std::vector<std::string> small_vocab() {
  std::vector<std::string> v = {"<pad>", "", ""};
  for (int c = 1; c < 128; ++c) v.emplace_back(1, static_cast<char>(c));
  for (const char* t : {"{\"",          "\":",      "\": ",     "\",",
                        "\", \"",       "\"}",      "\"]",      "}}",
                        "]}",           "},",       "{}",       "[]",
                        "[\"",          "name",     "na",       "me\"",
                        "\"name\"",     "age",      "tags",     "ok",
                        "score",        "true",     "false",    "null",
                        "tru",          "nu",       "12",       "0.",
                        ".5",           "e+",       "-1",       "007",
                        "\n",           "\n  ",     "    ",     " \"",
                        "\\n",          "\\u00",    "e9",       "ab",
                        "hello world",  "\xC3\xA9", "\xC3",     "\xA9",
                        "\xE6\x97\xA5", "\xE6\x97", "\x97\xA5", "\xF0\x9F\x98\x80",
                        "\xFF",         "kids",     "\"v\"",    "v",
                        "red",          "\"red\"",  "\"x\"",    "{\"a\":[1,2]}",
                        "a\"",          "\":[",     "1,",       "\"b\""}) {
    v.emplace_back(t);
  }
  return v;
}

int32_t pick(const std::vector<std::string>& vocab, const std::vector<uint64_t>& bits,
             std::mt19937& rng, bool wind_down) {
  const auto allowed = [&](int32_t id) { return (bits[id / 64] >> (id % 64)) & 1; };
  if (wind_down) {  // toward the end: close things
    for (const char* t : {"", "}", "]", "\"", "0", "null", "\"x\"", "v", "\"v\""}) {
      for (int32_t id = 1; id < static_cast<int32_t>(vocab.size()); ++id) {
        if ((id == 1 && *t == 0) || (id != 1 && *t != 0 && vocab[id] == t)) {
          if (allowed(id)) return id;
        }
      }
    }
  }
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < static_cast<int32_t>(vocab.size()); ++id) {
    if (allowed(id)) ids.push_back(id);
  }
  REQUIRE(!ids.empty());
  return ids[std::uniform_int_distribution<size_t>(0, ids.size() - 1)(rng)];
}

}  // namespace

TEST_CASE("json schema: refusals name the keyword and where", "[grammar]") {
  struct Case {
    json schema;
    std::string path, message;
  };
  const Case cases[] = {
      {{{"type", "string"}, {"pattern", "^a+$"}}, "/pattern", "'pattern' is not supported"},
      {{{"type", "string"}, {"format", "date-time"}}, "/format", "'format' is not supported"},
      {{{"type", "object"}, {"properties", {{"n", {{"type", "integer"}, {"minimum", 0}}}}}},
       "/properties/n/minimum",
       "'minimum' is not supported"},
      {{{"type", "array"}, {"items", {{{"type", "string"}}}}}, "/items", "tuple"},
      {{{"$ref", "http://x/y.json"}}, "/$ref", "only local references"},
      {{{"$ref", "#/$defs/missing"}}, "/$ref", "names no schema"},
      {{{"type", "object"}, {"properties", {{"a", true}}}, {"required", {"b"}}},
       "/required",
       "\"b\" is not in 'properties'"},
      {false, "", "allows no value"},
      {{{"type", "text"}}, "/type", "unknown type"},
      {{{"allOf", {json::object(), json::object()}}}, "/allOf", "exactly one"},
      {{{"type", "string"}, {"minLength", 3}, {"maxLength", 2}}, "/minLength", "above"},
      {{{"anyOf", {{{"type", "string"}}}}, {"type", "string"}}, "/type", "beside 'anyOf'"},
  };
  for (const Case& c : cases) {
    INFO(c.schema.dump());
    try {
      compile_json_schema(c.schema);
      FAIL("accepted");
    } catch (const SchemaError& e) {
      CHECK(e.path == c.path);
      CHECK_THAT(std::string(e.what()), Catch::Contains(c.message));
    }
  }
  json many = {{"type", "object"}, {"properties", json::object()}};
  for (int i = 0; i < 65; ++i) {
    std::string key = "p";
    key += std::to_string(i);
    many["properties"][key] = true;
  }
  CHECK_THROWS_AS(compile_json_schema(many), SchemaError);
  // Annotations are ignored; oneOf reads as anyOf.
  CHECK_NOTHROW(compile_json_schema({{"title", "T"},
                                     {"description", "d"},
                                     {"$schema", "x"},
                                     {"oneOf", {{{"type", "null"}}, {{"type", "integer"}}}}}));
}

TEST_CASE("json automaton: documents accepted and refused", "[grammar]") {
  const json person = {{"type", "object"},
                       {"properties",
                        {{"name", {{"type", "string"}, {"maxLength", 4}}},
                         {"age", {{"type", "integer"}}},
                         {"tags",
                          {{"type", "array"},
                           {"items", {{"enum", {"a", "b"}}}},
                           {"minItems", 1},
                           {"maxItems", 2}}}}},
                       {"required", {"name", "age"}},
                       {"additionalProperties", false}};
  CHECK(accepts(person, R"({"name": "Bo", "age": 3})"));
  CHECK(accepts(person, R"({ "age" : -12 , "name":"\u00e9\n", "tags": ["a","b"] })"));
  CHECK(accepts(person, "{\"name\": \"\xC3\xA9t\xC3\xA9\", \"age\": 0}"));  // 3 characters
  CHECK_FALSE(accepts(person, R"({"name": "Bo"})"));                        // age is required
  CHECK_FALSE(accepts(person, R"({"name": "Bob", "age": 1.5})"));           // an integer
  CHECK_FALSE(accepts(person, R"({"name": "Bobby", "age": 1})"));           // maxLength 4
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 1, "x": 1})"));       // no other keys
  CHECK_FALSE(accepts(person, R"({"name": "B", "name": "C", "age": 1})"));
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 1, "tags": []})"));  // minItems
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 1, "tags": ["a","b","a"]})"));
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 1, "tags": ["c"]})"));
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 01})"));
  CHECK_FALSE(accepts(person, "{\"name\": \"\xFF\", \"age\": 1}", false));
  // Strict UTF-8: no surrogates, no overlong forms, nothing past U+10FFFF.
  CHECK_FALSE(accepts(person, "{\"name\": \"\xED\xA0\x80", false));
  CHECK_FALSE(accepts(person, "{\"name\": \"\xE0\x80\x80", false));
  CHECK_FALSE(accepts(person, "{\"name\": \"\xF4\x90\x80\x80", false));
  CHECK_FALSE(accepts(person, "{\"name\": \"\xC0\xAF", false));
  CHECK(accepts(person, "{\"name\": \"\xED\x9F\xBF\xF4\x8F\xBF\xBF\", \"age\": 1}"));
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 1,})", false));
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 1} )", false));  // nothing after the value
  CHECK(accepts(person, R"({"name": "B", "age": 1)", false));          // a valid prefix
  CHECK_FALSE(accepts(person, R"({"name": "B", "age": 1)"));           // not complete

  const json any = {{"type", "object"}};
  CHECK(accepts(any, R"({"a": [1, -2.5e+3, "x", {"b": null}], "c": true, "": false})"));
  CHECK(accepts(any, "{}"));
  CHECK_FALSE(accepts(any, "[]"));
  CHECK_FALSE(accepts(any, "{'a': 1}", false));
  std::string spaces(kMaxWhitespace + 2, ' ');
  spaces[0] = '{';
  CHECK_FALSE(accepts(any, spaces, false));

  const json num = {{"type", "number"}};
  CHECK(accepts(num, "-0.25E-7"));
  CHECK(accepts(num, "3"));
  CHECK_FALSE(accepts(num, "3."));
  CHECK_FALSE(accepts(num, "1e123", false));  // exponents are bounded

  const json tree = {{"$defs",
                      {{"node",
                        {{"type", "object"},
                         {"properties",
                          {{"v", {{"type", "integer"}}},
                           {"kids", {{"type", "array"}, {"items", {{"$ref", "#/$defs/node"}}}}}}},
                         {"required", {"v"}},
                         {"additionalProperties", false}}}}},
                     {"$ref", "#/$defs/node"}};
  CHECK(accepts(tree, R"({"v": 1, "kids": [{"v": 2}, {"kids": [], "v": 3}]})"));
  CHECK_FALSE(accepts(tree, R"({"v": 1, "kids": [{"w": 2}]})", false));

  const json alt = {{"anyOf",
                     {{{"type", "object"},
                       {"properties", {{"a", {{"type", "integer"}}}}},
                       {"required", {"a"}},
                       {"additionalProperties", false}},
                      {{"type", "object"},
                       {"properties", {{"a", {{"type", "string"}}}, {"b", {{"const", 7}}}}},
                       {"required", {"a", "b"}},
                       {"additionalProperties", false}}}}};
  CHECK(accepts(alt, R"({"a": 1})"));
  CHECK(accepts(alt, R"({"a": "x", "b": 7})"));
  CHECK_FALSE(accepts(alt, R"({"a": "x"})"));
  CHECK_FALSE(accepts(alt, R"({"a": 1, "b": 7})"));
  CHECK(accepts({{"enum", {1, "x", nullptr, {{"a", {1, 2}}}}}}, R"({"a":[1,2]})"));
  CHECK_FALSE(accepts({{"enum", {"red", "green"}}}, R"("blue")", false));
}

TEST_CASE("grammar mask equals a brute-force scan of the vocabulary", "[grammar]") {
  const std::vector<std::string> vocab = small_vocab();
  auto tv = std::make_shared<const TokenVocabulary>(vocab);
  const std::vector<json> schemas = {
      {{"type", "object"},
       {"properties",
        {{"name", {{"type", "string"}, {"maxLength", 6}}},
         {"age", {{"type", "integer"}}},
         {"tags",
          {{"type", "array"},
           {"items", {{"enum", {"red", "x"}}}},
           {"minItems", 1},
           {"maxItems", 3}}},
         {"ok", {{"type", "boolean"}}},
         {"score", {{"type", {"number", "null"}}}}}},
       {"required", {"name", "age", "tags"}},
       {"additionalProperties", false}},
      {{"type", "object"}},
      {{"$defs",
        {{"node",
          {{"type", "object"},
           {"properties",
            {{"v", {{"type", "integer"}}},
             {"kids",
              {{"type", "array"}, {"items", {{"$ref", "#/$defs/node"}}}, {"maxItems", 2}}}}},
           {"required", {"v"}},
           {"additionalProperties", false}}}}},
       {"$ref", "#/$defs/node"}},
      {{"type", "number"}},
      {{"enum", {1, "x", nullptr, {{"a", {1, 2}}}}}},
      {{"type", "array"},
       {"items",
        {{"anyOf",
          {{{"type", "string"}, {"minLength", 2}}, {{"type", "boolean"}}, {{"type", "null"}}}}}}},
  };
  std::mt19937 rng(11);
  int finished = 0, walks = 0;
  for (const json& schema : schemas) {
    for (int walk = 0; walk < 12; ++walk, ++walks) {
      INFO(schema.dump() << " walk " << walk);
      auto grammar = compile_json_schema(schema);
      GrammarProcessor proc(grammar, tv, {1});
      JsonAutomaton a(grammar);
      std::string text;
      for (int step = 0; step < 300; ++step) {
        const std::vector<uint64_t> bits = proc.allowed();
        for (int32_t id = 0; id < static_cast<int32_t>(vocab.size()); ++id) {
          const bool bit = (bits[id / 64] >> (id % 64)) & 1;
          bool ok;
          if (id == 1) {
            ok = a.can_end(proc.state());
          } else {
            MatchState s = proc.state();
            ok = !vocab[id].empty() && advance(a, s, vocab[id]);
          }
          if (bit != ok) {
            FAIL("token " << id << " " << json(vocab[id]).dump() << " after " << json(text).dump()
                          << ": mask " << bit << ", brute force " << ok);
          }
        }
        const int32_t tok = pick(vocab, bits, rng, step > 40 + walk * 5);
        proc.accept(tok);
        REQUIRE_FALSE(proc.rejected());
        if (tok == 1) break;
        text += vocab[tok];
        if (proc.finished()) break;
      }
      if (!proc.finished()) continue;
      ++finished;
      INFO(text);
      const json doc = json::parse(text);  // throws if the output does not parse
      CHECK(validates(doc, schema, schema));
    }
  }
  CHECK(finished >= walks * 3 / 4);
}

TEST_CASE("grammar: a complete value allows only the end, then finished()", "[grammar]") {
  auto tv = std::make_shared<const TokenVocabulary>(small_vocab());
  GrammarProcessor proc(compile_json_schema({{"type", "boolean"}}), tv, {1});
  for (const char* t : {"tru", "e"}) {
    int32_t id = 0;
    while (tv->bytes(id) != t) ++id;
    proc.accept(id);
  }
  CHECK(proc.finished());
  std::vector<float> logits(static_cast<size_t>(tv->size()) + 3, 0.0f);  // padded row
  proc.apply(logits.data(), static_cast<int>(logits.size()));
  for (size_t i = 0; i < logits.size(); ++i) CHECK((logits[i] == 0.0f) == (i == 1));
}
