// The JSON Schema compiler and the byte-level automaton (json_grammar.h).
//
// Frames, by kind (fields of Frame):
//   root   phase 0 while its value runs, 1 when complete (nothing more is accepted)
//   value  a value of `node` is expected; ws counts leading whitespace. Its first other byte
//          turns it into the node's own frame (any_of: one stack per alternative)
//   object phase: open, first (after '{'), key_start (after ','), in_key, colon, in_value,
//          after (after a value); m = the property being written; seen = properties written
//   array  phase: open, first, in_value, after; n = items started
//   string phase: open, body, escape, hex; n = characters; m = UTF-8 state (body, see
//          utf8_step) or hex digits left (hex)
//   number phase below (int_digits ...); m = digits in the current part
//   literal n = bytes matched of node.text
// A frame that completes is popped and its parent moves on (pop_done). A number ends only when
// the next byte is not part of it: that byte then goes to the parent.
#include "runtime/structured/json_grammar.h"

#include <algorithm>
#include <map>

namespace tpinfer::structured {
namespace {

using json = nlohmann::json;

enum Kind : uint8_t { kRoot, kValue, kObject, kArray, kString, kNumber, kLiteral };
enum ObjectPhase : uint8_t { kOOpen, kOFirst, kOKeyStart, kOInKey, kOColon, kOInValue, kOAfter };
enum ArrayPhase : uint8_t { kAOpen, kAFirst, kAInValue, kAAfter };
enum StringPhase : uint8_t { kSOpen, kSBody, kSEscape, kSHex };
enum NumberPhase : uint8_t {
  kNStart,
  kNMinus,
  kNZero,  // accepting
  kNInt,   // accepting
  kNDot,
  kNFrac,  // accepting
  kNE,
  kNESign,
  kNExp  // accepting
};
constexpr int kMaxIntDigits = 15, kMaxFracDigits = 15, kMaxExpDigits = 2;
constexpr uint16_t kFreeKey = 0xFFFF;
constexpr int kMaxBranchDepth = 64;  // any_of inside any_of without a byte between

bool is_ws(uint8_t b) {
  return b == ' ' || b == '\n' || b == '\t' || b == '\r';
}
bool is_digit(uint8_t b) {
  return b >= '0' && b <= '9';
}
bool is_hex(uint8_t b) {
  return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
}
bool number_accepting(uint8_t phase) {
  return phase == kNZero || phase == kNInt || phase == kNFrac || phase == kNExp;
}

const char* const kAnnotations[] = {"title",   "description", "default", "examples",
                                    "$schema", "$id",         "$comment"};
const char* const kKeywords[] = {"type",       "properties", "required", "additionalProperties",
                                 "items",      "minItems",   "maxItems", "minLength",
                                 "maxLength",  "enum",       "const",    "anyOf",
                                 "oneOf",      "allOf",      "$ref",     "$defs",
                                 "definitions"};

std::string supported_list() {
  std::string s;
  for (const char* k : kKeywords) s += std::string(s.empty() ? "" : ", ") + k;
  return s;
}

std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

class Compiler {
 public:
  explicit Compiler(const json& root) : root_(root) {}

  Grammar run() {
    g_.free_key = add(string_node(0, UINT32_MAX));
    g_.root = compile(root_, "");
    return std::move(g_);
  }

 private:
  [[noreturn]] static void fail(const std::string& path, const std::string& what) {
    throw SchemaError(path, what);
  }

  uint32_t add(GrammarNode n) {
    g_.nodes.push_back(std::move(n));
    return static_cast<uint32_t>(g_.nodes.size() - 1);
  }
  static GrammarNode string_node(uint32_t lo, uint32_t hi) {
    GrammarNode n;
    n.kind = GrammarNode::string;
    n.min_length = lo;
    n.max_length = hi;
    return n;
  }
  uint32_t literal(std::string text) {
    GrammarNode n;
    n.kind = GrammarNode::literal;
    n.text = std::move(text);
    return add(std::move(n));
  }
  uint32_t any_of(std::vector<uint32_t> branches) {
    if (branches.size() == 1) return branches[0];
    GrammarNode n;
    n.kind = GrammarNode::any_of;
    n.branches = std::move(branches);
    return add(std::move(n));
  }
  // Any JSON value (json_object's values, a schema of `true` or `{}`).
  uint32_t any() {
    if (any_ != UINT32_MAX) return any_;
    any_ = add(GrammarNode());  // filled below: an any_of that refers to itself
    GrammarNode obj;
    obj.kind = GrammarNode::object;
    obj.additional = static_cast<int32_t>(any_);
    GrammarNode arr;
    arr.kind = GrammarNode::array;
    arr.items = any_;
    GrammarNode num;
    num.kind = GrammarNode::number;
    std::vector<uint32_t> b = {
        add(std::move(obj)), add(std::move(arr)), add(string_node(0, UINT32_MAX)),
        add(std::move(num)), literal("true"),     literal("false"),
        literal("null")};
    g_.nodes[any_].kind = GrammarNode::any_of;
    g_.nodes[any_].branches = std::move(b);
    return any_;
  }

  static uint32_t count(const json& s, const char* key, const std::string& path) {
    const json& v = s.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      fail(path + "/" + key,
           std::string("'") + key + "' must be a non-negative integer, found " + v.dump());
    }
    return static_cast<uint32_t>(std::min<int64_t>(v.get<int64_t>(), UINT32_MAX));
  }

  const json& resolve(const std::string& ref, const std::string& path) {
    if (ref == "#") return root_;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      const std::string p = prefix;
      if (ref.compare(0, p.size(), p) != 0) continue;
      const std::string name = ref.substr(p.size());
      const std::string section = p.substr(2, p.size() - 3);
      auto sec = root_.find(section);
      if (sec != root_.end() && sec->is_object()) {
        auto it = sec->find(name);
        if (it != sec->end()) return *it;
      }
      fail(path + "/$ref", "'$ref' " + json(ref).dump() + " names no schema under " + section);
    }
    fail(path + "/$ref", "'$ref' " + json(ref).dump() +
                             " is not supported (only local references: #/$defs/NAME, "
                             "#/definitions/NAME or #)");
  }

  // Only annotations may stand beside a keyword that says everything ($ref, anyOf, allOf, ...).
  static void alone(const json& s, const char* keyword, const std::string& path) {
    for (const auto& [k, v] : s.items()) {
      if (k == keyword || k == "$defs" || k == "definitions") continue;
      if (std::find_if(std::begin(kAnnotations), std::end(kAnnotations),
                       [&](const char* a) { return k == a; }) != std::end(kAnnotations)) {
        continue;
      }
      fail(path + "/" + escape_pointer(k), std::string("'") + k + "' beside '" + keyword +
                                               "' is not supported (put it inside the "
                                               "alternatives)");
    }
  }

  uint32_t compile(const json& s, const std::string& path) {
    if (++depth_ > 200) fail(path, "the schema nests deeper than 200 levels");
    const uint32_t r = compile_inner(s, path);
    --depth_;
    return r;
  }

  uint32_t compile_inner(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "the schema 'false' allows no value");
      return any();
    }
    if (!s.is_object()) fail(path, "expected a schema (an object or a boolean), found " + s.dump());
    for (const auto& [k, v] : s.items()) {
      const auto is = [&](const char* x) { return k == x; };
      if (std::any_of(std::begin(kKeywords), std::end(kKeywords), is) ||
          std::any_of(std::begin(kAnnotations), std::end(kAnnotations), is)) {
        continue;
      }
      fail(path + "/" + escape_pointer(k),
           "'" + k + "' is not supported by structured output (supported keywords: " +
               supported_list() + ")");
    }
    if (auto it = s.find("$ref"); it != s.end()) {
      alone(s, "$ref", path);
      if (!it->is_string()) fail(path + "/$ref", "'$ref' must be a string");
      const std::string ref = it->get<std::string>();
      auto known = refs_.find(ref);
      if (known != refs_.end()) return known->second;
      const uint32_t slot = add(GrammarNode());
      refs_[ref] = slot;
      const uint32_t target = compile(resolve(ref, path), path + "/$ref");
      g_.nodes[slot] = g_.nodes[target];
      return slot;
    }
    if (auto it = s.find("allOf"); it != s.end()) {
      alone(s, "allOf", path);
      if (!it->is_array() || it->size() != 1) {
        fail(path + "/allOf", "'allOf' is supported with exactly one schema");
      }
      return compile((*it)[0], path + "/allOf/0");
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      auto it = s.find(key);
      if (it == s.end()) continue;
      alone(s, key, path);
      if (!it->is_array() || it->empty()) {
        fail(path + "/" + key, std::string("'") + key + "' must be a non-empty array of schemas");
      }
      std::vector<uint32_t> b;
      for (size_t i = 0; i < it->size(); ++i) {
        b.push_back(compile((*it)[i], path + "/" + key + "/" + std::to_string(i)));
      }
      return any_of(std::move(b));
    }
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array() || it->empty()) fail(path + "/enum", "'enum' must be a non-empty array");
      std::vector<uint32_t> b;
      for (const json& v : *it) b.push_back(literal(v.dump()));
      return any_of(std::move(b));
    }
    if (auto it = s.find("const"); it != s.end()) return literal(it->dump());

    std::vector<std::string> types;
    if (auto it = s.find("type"); it != s.end()) {
      if (it->is_string()) {
        types.push_back(it->get<std::string>());
      } else if (it->is_array() && !it->empty()) {
        for (const json& t : *it) {
          if (!t.is_string()) fail(path + "/type", "'type' must be a string or array of strings");
          types.push_back(t.get<std::string>());
        }
      } else {
        fail(path + "/type", "'type' must be a string or a non-empty array of strings");
      }
    } else if (s.contains("properties") || s.contains("required") ||
               s.contains("additionalProperties")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("minLength") || s.contains("maxLength")) {
      types.push_back("string");
    } else {
      return any();
    }
    std::vector<uint32_t> b;
    for (const std::string& t : types) b.push_back(typed(s, t, path));
    return any_of(std::move(b));
  }

  uint32_t typed(const json& s, const std::string& type, const std::string& path) {
    if (type == "object") return object(s, path);
    if (type == "array") {
      GrammarNode n;
      n.kind = GrammarNode::array;
      auto it = s.find("items");
      if (it != s.end() && it->is_array()) {
        fail(path + "/items", "'items' as an array (a tuple) is not supported; use one schema");
      }
      n.items = it == s.end() ? any() : compile(*it, path + "/items");
      if (s.contains("minItems")) n.min_items = count(s, "minItems", path);
      if (s.contains("maxItems")) n.max_items = count(s, "maxItems", path);
      if (n.min_items > n.max_items) fail(path + "/minItems", "'minItems' is above 'maxItems'");
      return add(std::move(n));
    }
    if (type == "string") {
      GrammarNode n = string_node(0, UINT32_MAX);
      if (s.contains("minLength")) n.min_length = count(s, "minLength", path);
      if (s.contains("maxLength")) n.max_length = count(s, "maxLength", path);
      if (n.min_length > n.max_length) {
        fail(path + "/minLength", "'minLength' is above 'maxLength'");
      }
      return add(std::move(n));
    }
    if (type == "number" || type == "integer") {
      GrammarNode n;
      n.kind = type == "number" ? GrammarNode::number : GrammarNode::integer;
      return add(std::move(n));
    }
    if (type == "boolean") return any_of({literal("true"), literal("false")});
    if (type == "null") return literal("null");
    fail(path + "/type", "unknown type " + json(type).dump() +
                             " (expected object, array, string, number, integer, boolean or "
                             "null)");
  }

  uint32_t object(const json& s, const std::string& path) {
    GrammarNode n;
    n.kind = GrammarNode::object;
    std::vector<std::string> names;
    if (auto it = s.find("properties"); it != s.end()) {
      if (!it->is_object()) fail(path + "/properties", "'properties' must be an object");
      if (it->size() > static_cast<size_t>(kMaxProperties)) {
        fail(path + "/properties", "more than " + std::to_string(kMaxProperties) +
                                       " properties in one object are not supported");
      }
      for (const auto& [k, v] : it->items()) {
        names.push_back(k);
        n.key_literal.push_back(literal(json(k).dump()));
        n.value.push_back(compile(v, path + "/properties/" + escape_pointer(k)));
      }
    }
    if (auto it = s.find("required"); it != s.end()) {
      if (!it->is_array()) fail(path + "/required", "'required' must be an array of strings");
      for (const json& r : *it) {
        if (!r.is_string()) fail(path + "/required", "'required' must be an array of strings");
        auto at = std::find(names.begin(), names.end(), r.get<std::string>());
        if (at == names.end()) {
          fail(path + "/required", "required property " + r.dump() +
                                       " is not in 'properties' (every required property must "
                                       "be declared)");
        }
        n.required |= uint64_t{1} << (at - names.begin());
      }
    }
    const auto add_it = s.find("additionalProperties");
    if (names.empty()) {
      // Free keys: any name, values of the additionalProperties schema (any value by default).
      if (add_it == s.end()) {
        n.additional = static_cast<int32_t>(any());
      } else if (!(add_it->is_boolean() && !add_it->get<bool>())) {
        n.additional = static_cast<int32_t>(compile(*add_it, path + "/additionalProperties"));
      }
    } else if (add_it != s.end() && !add_it->is_boolean()) {
      fail(path + "/additionalProperties",
           "'additionalProperties' as a schema beside 'properties' is not supported (use false, "
           "or no 'properties')");
    }
    // With properties, only they are written (a valid subset when more would be allowed).
    return add(std::move(n));
  }

  const json& root_;
  Grammar g_;
  std::map<std::string, uint32_t> refs_;
  uint32_t any_ = UINT32_MAX;
  int depth_ = 0;
};

}  // namespace

SchemaError::SchemaError(std::string path_, const std::string& message)
    : std::runtime_error(message), path(std::move(path_)) {}

std::shared_ptr<const Grammar> compile_json_schema(const nlohmann::json& schema) {
  return std::make_shared<const Grammar>(Compiler(schema).run());
}

JsonAutomaton::JsonAutomaton(std::shared_ptr<const Grammar> grammar) : g_(std::move(grammar)) {}

MatchState JsonAutomaton::initial() const {
  MatchState s;
  Frame root;
  root.kind = kRoot;
  Frame value;
  value.kind = kValue;
  value.node = g_->root;
  s.frames = {root, value};
  s.ends = {2};
  return s;
}

namespace {

// Pops the completed top frame; its parent moves past it.
void pop_done(std::vector<Frame>& st) {
  st.pop_back();
  Frame& p = st.back();
  p.ws = 0;
  switch (p.kind) {
    case kRoot:
      p.phase = 1;
      break;
    case kObject:
      p.phase = p.phase == kOInKey ? kOColon : kOAfter;
      break;
    case kArray:
      p.phase = kAAfter;
      break;
    default:
      break;
  }
}

Frame value_frame(uint32_t node) {
  Frame f;
  f.kind = kValue;
  f.node = node;
  return f;
}

}  // namespace

// Consumes b on the stack out.frames[start, end): on success the stack stays and its end is
// recorded in out.ends; on failure out.frames is cut back to start.
void JsonAutomaton::feed(MatchState& out, size_t start, uint8_t b) const {
  std::vector<Frame>& st = out.frames;
  const auto ok = [&] { out.ends.push_back(static_cast<uint32_t>(st.size())); };
  const auto dead = [&] { st.resize(start); };
  const auto whitespace = [&](Frame& f) {  // a bounded gap between JSON tokens
    if (f.ws >= kMaxWhitespace) return dead();
    ++f.ws;
    ok();
  };
  for (;;) {
    Frame& f = st.back();
    const GrammarNode& nd = g_->nodes[f.node];
    switch (f.kind) {
      case kRoot:
        return dead();
      case kValue: {
        if (is_ws(b)) return whitespace(f);
        switch (nd.kind) {
          case GrammarNode::any_of:
            return branch(out, start, b, false);
          case GrammarNode::object:
          case GrammarNode::array:
            if (st.size() - start >= static_cast<size_t>(kMaxDepth)) return dead();
            f.kind = nd.kind == GrammarNode::object ? kObject : kArray;
            break;
          case GrammarNode::string:
            f.kind = kString;
            break;
          case GrammarNode::number:
          case GrammarNode::integer:
            f.kind = kNumber;
            break;
          case GrammarNode::literal:
            f.kind = kLiteral;
            break;
        }
        f.phase = 0;
        f.n = 0;
        f.m = 0;
        f.ws = 0;
        f.seen = 0;
        continue;  // the byte goes to the value's own frame
      }
      case kLiteral:
        if (f.n >= nd.text.size() || static_cast<uint8_t>(nd.text[f.n]) != b) return dead();
        if (++f.n == nd.text.size()) pop_done(st);
        return ok();
      case kString:
        switch (f.phase) {
          case kSOpen:
            if (b != '"') return dead();
            f.phase = kSBody;
            return ok();
          case kSBody:
            if (f.m > 0) {  // inside a multi-byte character
              return utf8_step(f.m, b) ? ok() : dead();
            }
            if (b == '"') {
              if (f.n < nd.min_length) return dead();
              pop_done(st);
              return ok();
            }
            if (b < 0x20 || f.n >= nd.max_length) return dead();
            if (b == '\\') {
              f.phase = kSEscape;
            } else if (!utf8_step(f.m, b)) {
              return dead();
            }
            ++f.n;
            return ok();
          case kSEscape:
            if (b == 'u') {
              f.phase = kSHex;
              f.m = 4;
              return ok();
            }
            if (b != '"' && b != '\\' && b != '/' && b != 'b' && b != 'f' && b != 'n' && b != 'r' &&
                b != 't') {
              return dead();
            }
            f.phase = kSBody;
            return ok();
          default:  // kSHex
            if (!is_hex(b)) return dead();
            if (--f.m == 0) f.phase = kSBody;
            return ok();
        }
      case kNumber: {
        const bool integer = nd.kind == GrammarNode::integer;
        const bool digit = is_digit(b);
        switch (f.phase) {
          case kNStart:
          case kNMinus:
            if (b == '-' && f.phase == kNStart) {
              f.phase = kNMinus;
              return ok();
            }
            if (!digit) return dead();
            f.phase = b == '0' ? kNZero : kNInt;
            f.m = 1;
            return ok();
          case kNInt:
            if (digit) {
              if (f.m >= kMaxIntDigits) return dead();
              ++f.m;
              return ok();
            }
            [[fallthrough]];
          case kNZero:
            if (!integer && b == '.') {
              f.phase = kNDot;
              return ok();
            }
            if (!integer && (b == 'e' || b == 'E')) {
              f.phase = kNE;
              return ok();
            }
            break;  // the number ends before b
          case kNDot:
            if (!digit) return dead();
            f.phase = kNFrac;
            f.m = 1;
            return ok();
          case kNFrac:
            if (digit) {
              if (f.m >= kMaxFracDigits) return dead();
              ++f.m;
              return ok();
            }
            if (b == 'e' || b == 'E') {
              f.phase = kNE;
              return ok();
            }
            break;
          case kNE:
            if (b == '+' || b == '-') {
              f.phase = kNESign;
              return ok();
            }
            [[fallthrough]];
          case kNESign:
            if (!digit) return dead();
            f.phase = kNExp;
            f.m = 1;
            return ok();
          case kNExp:
            if (digit) {
              if (f.m >= kMaxExpDigits) return dead();
              ++f.m;
              return ok();
            }
            break;
        }
        if (!number_accepting(f.phase)) return dead();
        pop_done(st);
        continue;  // b belongs to the parent
      }
      case kObject:
        switch (f.phase) {
          case kOOpen:
            if (b != '{') return dead();
            f.phase = kOFirst;
            return ok();
          case kOFirst:
          case kOKeyStart:
            if (is_ws(b)) return whitespace(f);
            if (b == '}' && f.phase == kOFirst && (nd.required & ~f.seen) == 0) {
              pop_done(st);
              return ok();
            }
            if (b != '"') return dead();
            return branch(out, start, b, true);
          case kOColon:
            if (is_ws(b)) return whitespace(f);
            if (b != ':') return dead();
            f.phase = kOInValue;
            {
              const uint32_t v =
                  f.m == kFreeKey ? static_cast<uint32_t>(nd.additional) : nd.value[f.m];
              st.push_back(value_frame(v));
            }
            return ok();
          case kOAfter: {
            if (is_ws(b)) return whitespace(f);
            if (b == '}' && (nd.required & ~f.seen) == 0) {
              pop_done(st);
              return ok();
            }
            const uint64_t all = nd.key_literal.size() >= 64
                                     ? ~uint64_t{0}
                                     : (uint64_t{1} << nd.key_literal.size()) - 1;
            if (b == ',' && (nd.additional >= 0 || (all & ~f.seen) != 0)) {
              f.phase = kOKeyStart;
              f.ws = 0;
              return ok();
            }
            return dead();
          }
          default:
            return dead();
        }
      case kArray:
        switch (f.phase) {
          case kAOpen:
            if (b != '[') return dead();
            f.phase = kAFirst;
            return ok();
          case kAFirst:
            if (is_ws(b)) return whitespace(f);
            if (b == ']' && nd.min_items == 0) {
              pop_done(st);
              return ok();
            }
            if (nd.max_items == 0) return dead();
            f.phase = kAInValue;
            f.n = 1;
            st.push_back(value_frame(nd.items));
            continue;  // b starts the first item
          case kAAfter:
            if (is_ws(b)) return whitespace(f);
            if (b == ']' && f.n >= nd.min_items) {
              pop_done(st);
              return ok();
            }
            if (b == ',' && f.n < nd.max_items) {
              f.phase = kAInValue;
              ++f.n;
              f.ws = 0;
              st.push_back(value_frame(nd.items));
              return ok();
            }
            return dead();
          default:
            return dead();
        }
    }
    return dead();
  }
}

// The stack at out.frames[start, end) splits: keys = false: its top value frame (an any_of)
// into one stack per alternative, each fed b; keys = true: its top object frame, which just read
// the '"' of a key, into one stack per property it may still write (and one for a free key).
void JsonAutomaton::branch(MatchState& out, size_t start, uint8_t b, bool keys) const {
  thread_local int depth = 0;
  if (depth >= kMaxBranchDepth) {
    out.frames.resize(start);
    return;
  }
  ++depth;
  const std::vector<Frame> base(out.frames.begin() + static_cast<std::ptrdiff_t>(start),
                                out.frames.end());
  out.frames.resize(start);
  const Frame top = base.back();
  const GrammarNode& nd = g_->nodes[top.node];
  const auto copy = [&] {
    const size_t s = out.frames.size();
    out.frames.insert(out.frames.end(), base.begin(), base.end());
    return s;
  };
  if (!keys) {
    for (uint32_t alt : nd.branches) {
      const size_t s = copy();
      out.frames.back().node = alt;
      feed(out, s, b);
    }
  } else {
    for (size_t i = 0; i < nd.key_literal.size(); ++i) {
      if ((top.seen >> i) & 1) continue;
      copy();
      Frame& o = out.frames.back();
      o.phase = kOInKey;
      o.m = static_cast<uint16_t>(i);
      o.seen |= uint64_t{1} << i;
      o.ws = 0;
      Frame key;
      key.kind = kLiteral;
      key.node = nd.key_literal[i];
      key.n = 1;  // its opening quote is b
      out.frames.push_back(key);
      out.ends.push_back(static_cast<uint32_t>(out.frames.size()));
    }
    if (nd.additional >= 0) {
      copy();
      Frame& o = out.frames.back();
      o.phase = kOInKey;
      o.m = kFreeKey;
      o.ws = 0;
      Frame key;
      key.kind = kString;
      key.node = g_->free_key;
      key.phase = kSBody;
      out.frames.push_back(key);
      out.ends.push_back(static_cast<uint32_t>(out.frames.size()));
    }
  }
  --depth;
}

bool JsonAutomaton::step_stack(const MatchState& in, size_t i, uint8_t byte,
                               MatchState& out) const {
  const size_t from = i == 0 ? 0 : in.ends[i - 1], to = in.ends[i];
  const size_t s = out.frames.size();
  out.frames.insert(out.frames.end(), in.frames.begin() + static_cast<std::ptrdiff_t>(from),
                    in.frames.begin() + static_cast<std::ptrdiff_t>(to));
  feed(out, s, byte);
  return !out.dead();
}

bool JsonAutomaton::step(const MatchState& in, uint8_t byte, MatchState& out) const {
  out.frames.clear();
  out.ends.clear();
  for (size_t i = 0; i < in.ends.size(); ++i) step_stack(in, i, byte, out);
  return !out.dead();
}

bool JsonAutomaton::can_end(const MatchState& s) const {
  for (size_t i = 0, from = 0; i < s.ends.size(); from = s.ends[i++]) {
    const size_t n = s.ends[i] - from;
    const Frame* st = s.frames.data() + from;
    if (n == 1 && st[0].phase == 1) return true;
    if (n == 2 && st[1].kind == kNumber && number_accepting(st[1].phase)) return true;
  }
  return false;
}

bool JsonAutomaton::must_end(const MatchState& s) const {
  if (s.dead()) return false;
  for (size_t i = 0, from = 0; i < s.ends.size(); from = s.ends[i++]) {
    if (s.ends[i] - from != 1 || s.frames[from].phase != 1) return false;
  }
  return true;
}

const Frame* JsonAutomaton::string_body(const MatchState& s, size_t i) const {
  const Frame& top = s.frames[s.ends[i] - 1];
  return top.kind == kString && top.phase == kSBody && top.m < 4 ? &top : nullptr;
}

bool advance(const JsonAutomaton& a, MatchState& s, std::string_view bytes) {
  MatchState cur = s, next;
  for (char c : bytes) {
    if (!a.step(cur, static_cast<uint8_t>(c), next)) return false;
    std::swap(cur, next);
  }
  s = std::move(cur);
  return true;
}

}  // namespace tpinfer::structured
