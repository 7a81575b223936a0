// Private to src/tokenizer: the value type of the Jinja renderer (jinja_*.cpp) with the Python
// semantics chat templates rely on: jinja2's Undefined, None, bool, int, float, str, list/tuple,
// insertion-ordered dict, namespace and callables; truthiness, ==, <, str(), repr() and
// transformers' tojson (json.dumps with ensure_ascii=False, sort_keys=False). Lists and dicts are
// shared by reference, as Python objects are (a namespace set inside a loop is seen after it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpinfer::tok::jinja {

struct Value;
struct Dict;
using List = std::vector<Value>;

// Arguments of a call: positional, then keyword, in the order written.
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};
using Func = std::function<Value(Args&)>;

struct Value {
  enum class T { Undefined, None, Bool, Int, Float, String, List, Dict, Func };
  T t = T::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // String; for Undefined the name that was looked up (for messages)
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Func> fn;
  bool tuple = false;       // a List written/returned as a Python tuple (repr uses parentheses)
  bool namespace_ = false;  // a Dict made by namespace(): `set ns.x = ...` may assign it

  Value() = default;
  static Value undefined(std::string name = {});
  static Value none();
  Value(bool v);         // NOLINT: implicit, as Python's literals
  Value(int v);          // NOLINT
  Value(int64_t v);      // NOLINT
  Value(double v);       // NOLINT
  Value(std::string v);  // NOLINT
  Value(const char* v);  // NOLINT
  static Value make_list(List items = {}, bool tuple = false);
  static Value make_dict();
  static Value make_func(Func f);

  bool is_undefined() const { return t == T::Undefined; }
  bool is_none() const { return t == T::None; }
  bool is_string() const { return t == T::String; }
  bool is_number() const { return t == T::Int || t == T::Float || t == T::Bool; }
  bool is_list() const { return t == T::List; }
  bool is_dict() const { return t == T::Dict; }
  double as_double() const;

  // Python type name for messages: str, int, list, dict, NoneType, undefined ...
  const char* type_name() const;
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

bool truthy(const Value& v);
std::string py_str(const Value& v);   // str(v); Undefined renders as ""
std::string py_repr(const Value& v);  // repr(v)
std::string py_float_repr(double d);
bool py_eq(const Value& a, const Value& b);
// a < b for numbers, strings and lists; throws tpinfer::Error (the caller adds the line) else.
bool py_less(const Value& a, const Value& b);

// transformers' tojson: json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys)
// separators = (item separator, key separator); default (", ", ": "), or ("," ": ") with indent.
std::string to_json(const Value& v, std::optional<int> indent, bool sort_keys = false,
                    const std::optional<std::pair<std::string, std::string>>& separators = {});
Value from_json(const nlohmann::ordered_json& j);

// Elements a for loop / list() sees: list items, dict keys, string characters (code points).
List iterate(const Value& v);

}  // namespace tpinfer::tok::jinja
