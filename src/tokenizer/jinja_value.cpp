// The Jinja renderer's value type: Python truthiness, equality, ordering, str(), repr() and
// transformers' tojson.
#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok::jinja {

Value Value::undefined(std::string name) {
  Value v;
  v.s = std::move(name);
  return v;
}
Value Value::none() {
  Value v;
  v.t = T::None;
  return v;
}
Value::Value(bool v) : t(T::Bool), b(v) {}
Value::Value(int v) : t(T::Int), i(v) {}
Value::Value(int64_t v) : t(T::Int), i(v) {}
Value::Value(double v) : t(T::Float), f(v) {}
Value::Value(std::string v) : t(T::String), s(std::move(v)) {}
Value::Value(const char* v) : t(T::String), s(v) {}
Value Value::make_list(List items, bool tuple) {
  Value v;
  v.t = T::List;
  v.list = std::make_shared<List>(std::move(items));
  v.tuple = tuple;
  return v;
}
Value Value::make_dict() {
  Value v;
  v.t = T::Dict;
  v.dict = std::make_shared<Dict>();
  return v;
}
Value Value::make_func(Func f) {
  Value v;
  v.t = T::Func;
  v.fn = std::make_shared<Func>(std::move(f));
  return v;
}

double Value::as_double() const {
  switch (t) {
    case T::Bool:
      return b ? 1 : 0;
    case T::Int:
      return static_cast<double>(i);
    case T::Float:
      return f;
    default:
      return 0;
  }
}

const char* Value::type_name() const {
  switch (t) {
    case T::Undefined:
      return "undefined";
    case T::None:
      return "NoneType";
    case T::Bool:
      return "bool";
    case T::Int:
      return "int";
    case T::Float:
      return "float";
    case T::String:
      return "str";
    case T::List:
      return tuple ? "tuple" : "list";
    case T::Dict:
      return namespace_ ? "Namespace" : "dict";
    case T::Func:
      return "function";
  }
  return "?";
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& kv : items) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  for (auto& kv : items) {
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  }
  items.emplace_back(key, std::move(v));
}

bool truthy(const Value& v) {
  switch (v.t) {
    case Value::T::Undefined:
    case Value::T::None:
      return false;
    case Value::T::Bool:
      return v.b;
    case Value::T::Int:
      return v.i != 0;
    case Value::T::Float:
      return v.f != 0;
    case Value::T::String:
      return !v.s.empty();
    case Value::T::List:
      return !v.list->empty();
    case Value::T::Dict:
      return v.namespace_ || !v.dict->items.empty();
    case Value::T::Func:
      return true;
  }
  return false;
}

// Python's float repr: the shortest digits that round-trip, positional for exponents in
// [-4, 16), scientific otherwise, always with a '.0' or an exponent.
std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci = sci.substr(1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  if (exp >= -4 && exp < 16) {
    std::string out;
    if (exp < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exp) + 1) + "." +
            digits.substr(static_cast<size_t>(exp) + 1);
    }
    return sign + out;
  }
  std::string mant = digits.substr(0, 1);
  if (digits.size() > 1) mant += "." + digits.substr(1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return sign + mant + ebuf;
}

namespace {

std::string repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<unsigned char>(q)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += q;
  return out;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

struct JsonSeps {
  std::string item, key;
};

void json_dump(std::string& out, const Value& v, std::optional<int> indent, bool sort_keys,
               int level, const JsonSeps& seps) {
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(*indent * lvl), ' ');
  };
  const std::string& item_sep = seps.item;
  switch (v.t) {
    case Value::T::Undefined:
      TPI_FAIL("tojson: Object of type Undefined is not JSON serializable");
    case Value::T::None:
      out += "null";
      return;
    case Value::T::Bool:
      out += v.b ? "true" : "false";
      return;
    case Value::T::Int:
      out += std::to_string(v.i);
      return;
    case Value::T::Float:
      if (std::isnan(v.f)) {
        out += "NaN";
      } else if (std::isinf(v.f)) {
        out += v.f > 0 ? "Infinity" : "-Infinity";
      } else {
        out += py_float_repr(v.f);
      }
      return;
    case Value::T::String:
      json_string(out, v.s);
      return;
    case Value::T::List: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& e : *v.list) {
        if (!first) out += item_sep;
        first = false;
        if (indent) newline(level + 1);
        json_dump(out, e, indent, sort_keys, level + 1, seps);
      }
      if (indent) newline(level);
      out += ']';
      return;
    }
    case Value::T::Dict: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.dict->items) items.push_back(&kv);
      if (sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](auto* a, auto* b) { return a->first < b->first; });
      }
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += item_sep;
        first = false;
        if (indent) newline(level + 1);
        json_string(out, kv->first);
        out += seps.key;
        json_dump(out, kv->second, indent, sort_keys, level + 1, seps);
      }
      if (indent) newline(level);
      out += '}';
      return;
    }
    case Value::T::Func:
      TPI_FAIL("tojson: Object of type function is not JSON serializable");
  }
}

}  // namespace

std::string py_repr(const Value& v) {
  switch (v.t) {
    case Value::T::Undefined:
      return "";
    case Value::T::None:
      return "None";
    case Value::T::Bool:
      return v.b ? "True" : "False";
    case Value::T::Int:
      return std::to_string(v.i);
    case Value::T::Float:
      return py_float_repr(v.f);
    case Value::T::String:
      return repr_string(v.s);
    case Value::T::List: {
      std::string out = v.tuple ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += ", ";
        out += py_repr((*v.list)[k]);
      }
      if (v.tuple && v.list->size() == 1) out += ",";
      out += v.tuple ? ")" : "]";
      return out;
    }
    case Value::T::Dict: {
      if (v.namespace_) return "<Namespace>";
      std::string out = "{";
      bool first = true;
      for (const auto& kv : v.dict->items) {
        if (!first) out += ", ";
        first = false;
        out += repr_string(kv.first) + ": " + py_repr(kv.second);
      }
      return out + "}";
    }
    case Value::T::Func:
      return "<function>";
  }
  return "";
}

std::string py_str(const Value& v) {
  if (v.t == Value::T::String) return v.s;
  return py_repr(v);
}

bool py_eq(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.t != Value::T::Float && b.t != Value::T::Float) {
      return (a.t == Value::T::Bool ? a.b : a.i) == (b.t == Value::T::Bool ? b.b : b.i);
    }
    return a.as_double() == b.as_double();
  }
  if (a.t != b.t) return false;
  switch (a.t) {
    case Value::T::Undefined:
    case Value::T::None:
      return true;
    case Value::T::String:
      return a.s == b.s;
    case Value::T::List: {
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k) {
        if (!py_eq((*a.list)[k], (*b.list)[k])) return false;
      }
      return true;
    }
    case Value::T::Dict: {
      if (a.dict == b.dict) return true;
      if (a.namespace_ || b.namespace_) return false;
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& kv : a.dict->items) {
        const Value* o = b.dict->find(kv.first);
        if (!o || !py_eq(kv.second, *o)) return false;
      }
      return true;
    }
    case Value::T::Func:
      return a.fn == b.fn;
    default:
      return false;
  }
}

bool py_less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.t == Value::T::Float || b.t == Value::T::Float) return a.as_double() < b.as_double();
    return (a.t == Value::T::Bool ? a.b : a.i) < (b.t == Value::T::Bool ? b.b : b.i);
  }
  if (a.is_string() && b.is_string()) return a.s < b.s;  // UTF-8 order = code point order
  if (a.is_list() && b.is_list()) {
    const size_t n = std::min(a.list->size(), b.list->size());
    for (size_t k = 0; k < n; ++k) {
      if (!py_eq((*a.list)[k], (*b.list)[k])) return py_less((*a.list)[k], (*b.list)[k]);
    }
    return a.list->size() < b.list->size();
  }
  TPI_FAIL("'<' not supported between instances of '" << a.type_name() << "' and '" << b.type_name()
                                                      << "'");
}

std::string to_json(const Value& v, std::optional<int> indent, bool sort_keys,
                    const std::optional<std::pair<std::string, std::string>>& separators) {
  JsonSeps seps{indent ? "," : ", ", ": "};
  if (separators) seps = {separators->first, separators->second};
  std::string out;
  json_dump(out, v, indent, sort_keys, 0, seps);
  return out;
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      for (const auto& e : j) items.push_back(from_json(e));
      return Value::make_list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = Value::make_dict();
      for (const auto& [k, e] : j.items()) d.dict->items.emplace_back(k, from_json(e));
      return d;
    }
    default:
      TPI_FAIL("chat template context: unsupported JSON value " << j.dump());
  }
}

List iterate(const Value& v) {
  switch (v.t) {
    case Value::T::Undefined:
      return {};
    case Value::T::List:
      return *v.list;
    case Value::T::Dict: {
      List keys;
      for (const auto& kv : v.dict->items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::T::String: {
      List chars;
      size_t i = 0;
      while (i < v.s.size()) {
        const size_t start = i;
        next_cp(v.s, i);
        chars.emplace_back(v.s.substr(start, i - start));
      }
      return chars;
    }
    default:
      TPI_FAIL("'" << v.type_name() << "' object is not iterable");
  }
}

}  // namespace tpinfer::tok::jinja
