// The Jinja renderer's filters, tests and Python str / dict methods.
#include "tokenizer/jinja_builtins.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok::jinja {

namespace {

// The argument at position idx, else the keyword name, else def.
Value arg(const Args& a, size_t idx, const char* name, Value def = Value::undefined()) {
  if (idx < a.pos.size()) return a.pos[idx];
  for (const auto& kv : a.kw) {
    if (kv.first == name) return kv.second;
  }
  return def;
}

std::vector<uint32_t> cps(const std::string& s) {
  std::vector<uint32_t> out;
  size_t i = 0;
  while (i < s.size()) out.push_back(next_cp(s, i));
  return out;
}
std::string from_cps(const std::vector<uint32_t>& c, size_t b, size_t e) {
  std::string out;
  for (size_t k = b; k < e; ++k) append_utf8(out, c[k]);
  return out;
}

bool py_space(uint32_t cp) {
  return is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}
uint32_t cp_upper(uint32_t c) {
  return static_cast<uint32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c)));
}
uint32_t cp_lower(uint32_t c) {
  return static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
}
bool cp_cased_letter(uint32_t c) {
  return cp_upper(c) != c || cp_lower(c) != c;
}

std::string map_case(const std::string& s, bool upper) {
  std::string out;
  for (uint32_t c : cps(s)) append_utf8(out, upper ? cp_upper(c) : cp_lower(c));
  return out;
}

std::string capitalize(const std::string& s) {
  auto c = cps(s);
  std::string out;
  for (size_t k = 0; k < c.size(); ++k) append_utf8(out, k == 0 ? cp_upper(c[k]) : cp_lower(c[k]));
  return out;
}

// Python str.title(): a cased letter after an uncased character starts a word.
std::string py_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (uint32_t c : cps(s)) {
    const bool cased = cp_cased_letter(c);
    append_utf8(out, cased ? (prev_cased ? cp_lower(c) : cp_upper(c)) : c);
    prev_cased = cased;
  }
  return out;
}

// jinja2's title filter: words start after whitespace, '-', '(', '{', '[' or '<'.
std::string jinja_title(const std::string& s) {
  std::string out;
  bool start = true;
  for (uint32_t c : cps(s)) {
    const bool sep = py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      append_utf8(out, c);
      start = true;
    } else {
      append_utf8(out, start ? cp_upper(c) : cp_lower(c));
      start = false;
    }
  }
  return out;
}

const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_string()) {
    TPI_FAIL(what << " expects a string, got " << v.type_name()
                  << (v.is_undefined() && !v.s.empty() ? " ('" + v.s + "' is undefined)" : ""));
  }
  return v.s;
}

int64_t need_int(const Value& v, const char* what) {
  if (v.t == Value::T::Int) return v.i;
  if (v.t == Value::T::Bool) return v.b;
  TPI_FAIL(what << " expects an integer, got " << v.type_name());
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit,
                                  bool from_right) {
  std::vector<std::string> parts;
  if (sep.is_none() || sep.is_undefined()) {
    auto c = cps(s);
    // whitespace runs; from_right handled by collecting all then merging
    std::vector<std::pair<size_t, size_t>> words;
    size_t k = 0;
    while (k < c.size()) {
      while (k < c.size() && py_space(c[k])) ++k;
      if (k >= c.size()) break;
      size_t e = k;
      while (e < c.size() && !py_space(c[e])) ++e;
      words.emplace_back(k, e);
      k = e;
    }
    if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
      for (auto [b, e] : words) parts.push_back(from_cps(c, b, e));
      return parts;
    }
    const size_t m = static_cast<size_t>(maxsplit);
    if (!from_right) {
      for (size_t w = 0; w < m; ++w) parts.push_back(from_cps(c, words[w].first, words[w].second));
      size_t e = c.size();
      while (e > words[m].first && py_space(c[e - 1])) --e;
      parts.push_back(from_cps(c, words[m].first, e));
    } else {
      const size_t first = words.size() - m;
      size_t b = 0;
      while (b < words[first - 1].second && py_space(c[b])) ++b;
      parts.push_back(from_cps(c, b, words[first - 1].second));
      for (size_t w = first; w < words.size(); ++w) {
        parts.push_back(from_cps(c, words[w].first, words[w].second));
      }
    }
    return parts;
  }
  const std::string& sp = need_str(sep, "split");
  if (sp.empty()) TPI_FAIL("split: empty separator");
  if (!from_right) {
    size_t start = 0;
    int64_t n = 0;
    while (maxsplit < 0 || n < maxsplit) {
      const size_t p = s.find(sp, start);
      if (p == std::string::npos) break;
      parts.push_back(s.substr(start, p - start));
      start = p + sp.size();
      ++n;
    }
    parts.push_back(s.substr(start));
    return parts;
  }
  size_t end = s.size();
  int64_t n = 0;
  std::vector<std::string> rev;
  while (maxsplit < 0 || n < maxsplit) {
    if (end < sp.size()) break;
    const size_t p = s.rfind(sp, end - sp.size());
    if (p == std::string::npos) break;
    rev.push_back(s.substr(p + sp.size(), end - p - sp.size()));
    end = p;
    ++n;
  }
  rev.push_back(s.substr(0, end));
  return {rev.rbegin(), rev.rend()};
}

Value str_list(const std::vector<std::string>& v) {
  List l;
  for (const auto& s : v) l.emplace_back(s);
  return Value::make_list(std::move(l));
}

bool prefix_test(const std::string& s, const Value& p, bool suffix) {
  if (p.is_list()) {
    for (const auto& e : *p.list) {
      if (prefix_test(s, e, suffix)) return true;
    }
    return false;
  }
  const std::string& x = need_str(p, suffix ? "endswith" : "startswith");
  if (x.size() > s.size()) return false;
  return suffix ? s.compare(s.size() - x.size(), x.size(), x) == 0 : s.compare(0, x.size(), x) == 0;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep,
                       int64_t count) {
  if (old.empty()) {
    // Python inserts rep between every character (and at both ends).
    auto c = cps(s);
    std::string out;
    int64_t n = 0;
    for (size_t k = 0; k <= c.size(); ++k) {
      if (count < 0 || n < count) {
        out += rep;
        ++n;
      }
      if (k < c.size()) append_utf8(out, c[k]);
    }
    return out;
  }
  std::string out;
  size_t start = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t p = s.find(old, start);
    if (p == std::string::npos) break;
    out += s.substr(start, p - start) + rep;
    start = p + old.size();
    ++n;
  }
  return out + s.substr(start);
}

// Attribute of an item for selectattr / map / sort / join: dotted paths like "a.b".
Value item_attr(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    if (cur.is_undefined()) return cur;
    bool digit = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = digit && cur.is_list() ? get_item(cur, Value(static_cast<int64_t>(std::stoll(part))))
                                 : get_attr(cur, part);
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(map_case(v.s, false));
  return v;
}

bool py_in(const Value& needle, const Value& hay) {
  switch (hay.t) {
    case Value::T::String:
      return hay.s.find(need_str(needle, "'in <string>'")) != std::string::npos;
    case Value::T::List:
      for (const auto& e : *hay.list) {
        if (py_eq(e, needle)) return true;
      }
      return false;
    case Value::T::Dict:
      return needle.is_string() && hay.dict->find(needle.s) != nullptr;
    case Value::T::Undefined:
      return false;
    default:
      TPI_FAIL("argument of type '" << hay.type_name() << "' is not iterable");
  }
}

const std::set<std::string>& filter_names() {
  static const std::set<std::string> k = {
      "abs",        "batch",    "capitalize", "count", "d",      "default", "dictsort",
      "first",      "float",    "indent",     "int",   "items",  "join",    "last",
      "length",     "list",     "lower",      "map",   "max",    "min",     "reject",
      "rejectattr", "replace",  "reverse",    "round", "safe",   "select",  "selectattr",
      "sort",       "string",   "sum",        "title", "tojson", "trim",    "unique",
      "upper",      "wordcount"};
  return k;
}

const std::set<std::string>& test_names() {
  static const std::set<std::string> k = {
      "boolean", "callable", "defined",  "divisibleby", "eq",   "equalto",   "even",
      "false",   "float",    "ge",       "gt",          "in",   "integer",   "iterable",
      "le",      "lower",    "lt",       "mapping",     "ne",   "none",      "number",
      "odd",     "sameas",   "sequence", "string",      "true", "undefined", "upper",
      "==",      "!=",       "<",        ">",           "<=",   ">="};
  return k;
}

}  // namespace

size_t cp_count(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto c = cps(s);
  std::vector<uint32_t> set;
  const bool ws = chars.is_none() || chars.is_undefined();
  if (!ws) set = cps(need_str(chars, "strip"));
  auto strip_it = [&](uint32_t x) {
    return ws ? py_space(x) : std::find(set.begin(), set.end(), x) != set.end();
  };
  size_t b = 0, e = c.size();
  if (left) {
    while (b < e && strip_it(c[b])) ++b;
  }
  if (right) {
    while (e > b && strip_it(c[e - 1])) --e;
  }
  return from_cps(c, b, e);
}

bool has_filter(const std::string& name) {
  return filter_names().count(name) > 0;
}
bool has_test(const std::string& name) {
  return test_names().count(name) > 0;
}

namespace {
Value no_attr(const char* type, const std::string& name) {
  std::string msg = "'";
  msg.append(type).append(" object' has no attribute '").append(name).append("'");
  return Value::undefined(msg);
}
}  // namespace

// Why obj is undefined: "'x' is undefined" for a name, else the recorded reason.
std::string undefined_why(const Value& obj) {
  if (obj.s.empty()) return "a value is undefined";
  if (obj.s.find(' ') != std::string::npos) return obj.s;
  return "'" + obj.s + "' is undefined";
}

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) TPI_FAIL(undefined_why(obj) << " (reading ." << name << ")");
  if (obj.is_dict()) {
    if (const Value* v = obj.dict->find(name)) return *v;
    return no_attr(obj.namespace_ ? "Namespace" : "dict", name);
  }
  return no_attr(obj.type_name(), name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) TPI_FAIL(undefined_why(obj) << " (reading [" << py_repr(key) << "])");
  if (obj.is_dict()) {
    if (key.is_string()) {
      if (const Value* v = obj.dict->find(key.s)) return *v;
    }
    return Value::undefined("'dict object' has no attribute " + py_repr(key));
  }
  if ((obj.is_list() || obj.is_string()) && (key.t == Value::T::Int || key.t == Value::T::Bool)) {
    const int64_t k = key.t == Value::T::Bool ? key.b : key.i;
    if (obj.is_list()) {
      const auto n = static_cast<int64_t>(obj.list->size());
      const int64_t j = k < 0 ? k + n : k;
      if (j < 0 || j >= n)
        return Value::undefined(std::string(obj.type_name()) + " index out of range");
      return (*obj.list)[static_cast<size_t>(j)];
    }
    auto c = cps(obj.s);
    const auto n = static_cast<int64_t>(c.size());
    const int64_t j = k < 0 ? k + n : k;
    if (j < 0 || j >= n) return Value::undefined("string index out of range");
    return Value(from_cps(c, static_cast<size_t>(j), static_cast<size_t>(j) + 1));
  }
  if (key.is_string()) return get_attr(obj, key.s);
  return no_attr(obj.type_name(), py_repr(key));
}

bool apply_test(const std::string& name, const Value& v, Args& args) {
  using T = Value::T;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict() && !v.namespace_;
  if (name == "iterable") {
    return v.is_undefined() || v.is_string() || v.is_list() || (v.is_dict() && !v.namespace_);
  }
  if (name == "sequence") return v.is_string() || v.is_list() || (v.is_dict() && !v.namespace_);
  if (name == "number") return v.is_number();
  if (name == "integer") return v.t == T::Int;
  if (name == "float") return v.t == T::Float;
  if (name == "boolean") return v.t == T::Bool;
  if (name == "true") return v.t == T::Bool && v.b;
  if (name == "false") return v.t == T::Bool && !v.b;
  if (name == "callable") return v.t == T::Func;
  if (name == "lower") return v.is_string() && map_case(v.s, false) == v.s;
  if (name == "upper") return v.is_string() && map_case(v.s, true) == v.s;
  if (name == "odd" || name == "even") {
    const int64_t i = need_int(v, name.c_str());
    return ((i % 2 + 2) % 2 == 1) == (name == "odd");
  }
  const Value other = arg(args, 0, "value");
  if (name == "divisibleby") {
    const int64_t d = need_int(other, "divisibleby");
    if (d == 0) TPI_FAIL("divisibleby 0");
    return need_int(v, "divisibleby") % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return py_eq(v, other);
  if (name == "ne" || name == "!=") return !py_eq(v, other);
  if (name == "lt" || name == "<") return py_less(v, other);
  if (name == "gt" || name == ">") return py_less(other, v);
  if (name == "le" || name == "<=") return !py_less(other, v);
  if (name == "ge" || name == ">=") return !py_less(v, other);
  if (name == "in") return py_in(v, other);
  if (name == "sameas") {
    if (v.t != other.t) return false;
    if (v.is_list()) return v.list == other.list;
    if (v.is_dict()) return v.dict == other.dict;
    return py_eq(v, other);
  }
  TPI_FAIL("no test named '" << name << "'");
}

namespace {

List items_of(const Value& v, const char* what) {
  if (v.is_undefined()) return {};
  if (v.is_list() || v.is_string() || v.is_dict()) return iterate(v);
  TPI_FAIL(what << ": '" << v.type_name() << "' object is not iterable");
}

Value select_like(const Value& v, Args& args, bool attr_mode, bool keep) {
  List out;
  size_t first = 0;
  std::string attr;
  if (attr_mode) {
    attr = need_str(arg(args, 0, "attribute"), "selectattr");
    first = 1;
  }
  std::string test;
  Args targs;
  if (args.pos.size() > first) {
    test = need_str(args.pos[first], "select test");
    targs.pos.assign(args.pos.begin() + static_cast<long>(first) + 1, args.pos.end());
    if (!has_test(test)) TPI_FAIL("no test named '" << test << "'");
  }
  for (const auto& item : items_of(v, "select")) {
    const Value x = attr_mode ? item_attr(item, attr) : item;
    const bool ok = test.empty() ? truthy(x) : apply_test(test, x, targs);
    if (ok == keep) out.push_back(item);
  }
  return Value::make_list(std::move(out));
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, Args& args) {
  using T = Value::T;
  if (name == "safe") return v;
  if (name == "default" || name == "d") {
    const bool boolean = truthy(arg(args, 1, "boolean", Value(false)));
    if (v.is_undefined() || (boolean && !truthy(v)))
      return arg(args, 0, "default_value", Value(""));
    return v;
  }
  if (name == "trim")
    return Value(py_strip(need_str(v, "trim"), arg(args, 0, "chars"), true, true));
  if (name == "tojson") {
    const Value ea = arg(args, 0, "ensure_ascii", Value(false));
    if (truthy(ea)) TPI_FAIL("tojson(ensure_ascii=True) is not supported");
    const Value ind = arg(args, 1, "indent", Value::none());
    const Value sep = arg(args, 2, "separators", Value::none());
    std::optional<std::pair<std::string, std::string>> seps;
    if (!sep.is_none()) {
      if (!sep.is_list() || sep.list->size() != 2) TPI_FAIL("tojson separators must be a pair");
      seps.emplace(need_str((*sep.list)[0], "tojson separators"),
                   need_str((*sep.list)[1], "tojson separators"));
    }
    std::optional<int> indent;
    if (!ind.is_none()) indent = static_cast<int>(need_int(ind, "tojson indent"));
    return Value(to_json(v, indent, truthy(arg(args, 3, "sort_keys", Value(false))), seps));
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value(static_cast<int64_t>(cp_count(v.s)));
    if (v.is_list()) return Value(static_cast<int64_t>(v.list->size()));
    if (v.is_dict()) return Value(static_cast<int64_t>(v.dict->items.size()));
    if (v.is_undefined()) return Value(0);
    TPI_FAIL("object of type '" << v.type_name() << "' has no len()");
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::make_list();
    if (!v.is_dict()) TPI_FAIL("items expects a mapping, got " << v.type_name());
    List out;
    for (const auto& kv : v.dict->items)
      out.push_back(Value::make_list({Value(kv.first), kv.second}, true));
    return Value::make_list(std::move(out));
  }
  if (name == "list") return Value::make_list(items_of(v, "list"));
  if (name == "join") {
    const Value sep = arg(args, 0, "d", Value(""));
    const Value attr = arg(args, 1, "attribute", Value::none());
    std::string out;
    bool first = true;
    for (const auto& item : items_of(v, "join")) {
      if (!first) out += py_str(sep);
      first = false;
      out += py_str(attr.is_none() ? item : item_attr(item, py_str(attr)));
    }
    return Value(out);
  }
  if (name == "selectattr") return select_like(v, args, true, true);
  if (name == "rejectattr") return select_like(v, args, true, false);
  if (name == "select") return select_like(v, args, false, true);
  if (name == "reject") return select_like(v, args, false, false);
  if (name == "map") {
    List out;
    const Value attr = arg(args, 99, "attribute");
    if (!attr.is_undefined()) {
      const Value def = arg(args, 99, "default");
      for (const auto& item : items_of(v, "map")) {
        Value x = item_attr(item, py_str(attr));
        out.push_back(x.is_undefined() && !def.is_undefined() ? def : x);
      }
      return Value::make_list(std::move(out));
    }
    const std::string f = need_str(arg(args, 0, "filter"), "map");
    if (!has_filter(f)) TPI_FAIL("no filter named '" << f << "'");
    Args fargs;
    fargs.pos.assign(args.pos.begin() + 1, args.pos.end());
    fargs.kw = args.kw;
    for (const auto& item : items_of(v, "map")) out.push_back(apply_filter(f, item, fargs));
    return Value::make_list(std::move(out));
  }
  if (name == "first" || name == "last") {
    List items = items_of(v, name.c_str());
    if (items.empty()) return Value::undefined("no first/last item of an empty sequence");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "lower") return Value(map_case(py_str(v), false));
  if (name == "upper") return Value(map_case(py_str(v), true));
  if (name == "capitalize") return Value(capitalize(py_str(v)));
  if (name == "title") return Value(jinja_title(py_str(v)));
  if (name == "replace") {
    const Value count = arg(args, 2, "count", Value::none());
    return Value(py_replace(py_str(v), py_str(arg(args, 0, "old")), py_str(arg(args, 1, "new")),
                            count.is_none() ? -1 : need_int(count, "replace count")));
  }
  if (name == "string") return Value(py_str(v));
  if (name == "int") {
    const Value def = arg(args, 0, "default", Value(0));
    if (v.t == T::Int) return v;
    if (v.t == T::Bool) return Value(static_cast<int64_t>(v.b));
    if (v.t == T::Float) return Value(static_cast<int64_t>(v.f));
    if (v.is_string()) {
      try {
        size_t used = 0;
        const std::string s = py_strip(v.s, Value::none(), true, true);
        const long long x = std::stoll(s, &used);
        if (used == s.size()) return Value(static_cast<int64_t>(x));
        const double d = std::stod(s, &used);
        if (used == s.size()) return Value(static_cast<int64_t>(d));
      } catch (const std::exception&) {
      }
    }
    return def;
  }
  if (name == "float") {
    const Value def = arg(args, 0, "default", Value(0.0));
    if (v.is_number()) return Value(v.as_double());
    if (v.is_string()) {
      try {
        size_t used = 0;
        const std::string s = py_strip(v.s, Value::none(), true, true);
        const double d = std::stod(s, &used);
        if (used == s.size()) return Value(d);
      } catch (const std::exception&) {
      }
    }
    return def;
  }
  if (name == "abs") {
    if (v.t == T::Int) return Value(v.i < 0 ? -v.i : v.i);
    if (v.t == T::Bool) return Value(static_cast<int64_t>(v.b));
    if (v.t == T::Float) return Value(std::fabs(v.f));
    TPI_FAIL("bad operand type for abs(): '" << v.type_name() << "'");
  }
  if (name == "round") {
    const int64_t prec = need_int(arg(args, 0, "precision", Value(0)), "round");
    const std::string method = py_str(arg(args, 1, "method", Value("common")));
    if (!v.is_number()) TPI_FAIL("round expects a number, got " << v.type_name());
    if (method == "common" && prec >= 0 && prec < 300) {
      // Python's round(x, n): the correctly rounded decimal of the exact binary value, which
      // glibc's printf gives (half to even on exact ties).
      char buf[400];
      std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec), v.as_double());
      return Value(std::strtod(buf, nullptr));
    }
    const double scale = std::pow(10.0, static_cast<double>(prec));
    const double x = v.as_double() * scale;
    double r;
    if (method == "ceil") {
      r = std::ceil(x);
    } else if (method == "floor") {
      r = std::floor(x);
    } else {
      r = std::nearbyint(x);
    }
    return Value(r / scale);
  }
  if (name == "unique") {
    const bool cs = truthy(arg(args, 0, "case_sensitive", Value(false)));
    const Value attr = arg(args, 1, "attribute", Value::none());
    List out, seen;
    for (const auto& item : items_of(v, "unique")) {
      const Value key = sort_key(attr.is_none() ? item : item_attr(item, py_str(attr)), cs);
      bool dup = false;
      for (const auto& s : seen) dup = dup || py_eq(s, key);
      if (!dup) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return Value::make_list(std::move(out));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      auto c = cps(v.s);
      std::reverse(c.begin(), c.end());
      return Value(from_cps(c, 0, c.size()));
    }
    List items = items_of(v, "reverse");
    std::reverse(items.begin(), items.end());
    return Value::make_list(std::move(items));
  }
  if (name == "sort") {
    const bool rev = truthy(arg(args, 0, "reverse", Value(false)));
    const bool cs = truthy(arg(args, 1, "case_sensitive", Value(false)));
    const Value attr = arg(args, 2, "attribute", Value::none());
    List items = items_of(v, "sort");
    auto key = [&](const Value& x) {
      return sort_key(attr.is_none() ? x : item_attr(x, py_str(attr)), cs);
    };
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      return rev ? py_less(key(b), key(a)) : py_less(key(a), key(b));
    });
    return Value::make_list(std::move(items));
  }
  if (name == "dictsort") {
    if (!v.is_dict()) TPI_FAIL("dictsort expects a mapping, got " << v.type_name());
    const bool cs = truthy(arg(args, 0, "case_sensitive", Value(false)));
    const std::string by = py_str(arg(args, 1, "by", Value("key")));
    const bool rev = truthy(arg(args, 2, "reverse", Value(false)));
    List items;
    for (const auto& kv : v.dict->items)
      items.push_back(Value::make_list({Value(kv.first), kv.second}, true));
    const size_t idx = by == "value" ? 1 : 0;
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      const Value ka = sort_key((*a.list)[idx], cs), kb = sort_key((*b.list)[idx], cs);
      return rev ? py_less(kb, ka) : py_less(ka, kb);
    });
    return Value::make_list(std::move(items));
  }
  if (name == "min" || name == "max") {
    List items = items_of(v, name.c_str());
    if (items.empty()) return Value::undefined("no min/max of an empty sequence");
    Value best = items[0];
    for (const auto& x : items) {
      if (name == "min" ? py_less(sort_key(x, false), sort_key(best, false))
                        : py_less(sort_key(best, false), sort_key(x, false))) {
        best = x;
      }
    }
    return best;
  }
  if (name == "sum") {
    const Value attr = arg(args, 0, "attribute", Value::none());
    Value acc = arg(args, 1, "start", Value(0));
    for (const auto& x0 : items_of(v, "sum")) {
      const Value x = attr.is_none() ? x0 : item_attr(x0, py_str(attr));
      if (!x.is_number() || !acc.is_number()) TPI_FAIL("sum expects numbers");
      if (x.t == T::Float || acc.t == T::Float) {
        acc = Value(acc.as_double() + x.as_double());
      } else {
        acc = Value(static_cast<int64_t>(acc.as_double()) + static_cast<int64_t>(x.as_double()));
      }
    }
    return acc;
  }
  if (name == "batch") {
    const int64_t n = need_int(arg(args, 0, "linecount"), "batch");
    if (n <= 0) TPI_FAIL("batch: linecount must be positive");
    const Value fill = arg(args, 1, "fill_with", Value::none());
    List out, cur;
    for (const auto& x : items_of(v, "batch")) {
      cur.push_back(x);
      if (static_cast<int64_t>(cur.size()) == n) {
        out.push_back(Value::make_list(std::move(cur)));
        cur.clear();
      }
    }
    if (!cur.empty()) {
      if (!fill.is_none()) {
        while (static_cast<int64_t>(cur.size()) < n) cur.push_back(fill);
      }
      out.push_back(Value::make_list(std::move(cur)));
    }
    return Value::make_list(std::move(out));
  }
  if (name == "indent") {
    const Value w = arg(args, 0, "width", Value(4));
    const std::string pad =
        w.is_string() ? w.s : std::string(static_cast<size_t>(need_int(w, "indent")), ' ');
    const bool first = truthy(arg(args, 1, "first", Value(false)));
    const bool blank = truthy(arg(args, 2, "blank", Value(false)));
    const std::string s = py_str(v);
    std::vector<std::string> lines;
    size_t start = 0;
    while (true) {
      const size_t p = s.find('\n', start);
      lines.push_back(s.substr(start, p == std::string::npos ? p : p - start));
      if (p == std::string::npos) break;
      start = p + 1;
    }
    std::string out;
    for (size_t k = 0; k < lines.size(); ++k) {
      if (k) out += '\n';
      const bool do_pad = (k > 0 || first) && (blank || !lines[k].empty());
      out += (do_pad ? pad : "") + lines[k];
    }
    return Value(out);
  }
  if (name == "wordcount") {
    return Value(static_cast<int64_t>(py_split(py_str(v), Value::none(), -1, false).size()));
  }
  TPI_FAIL("no filter named '" << name << "'");
}

bool call_method(const Value& obj, const std::string& name, Args& args, Value& result) {
  if (obj.is_string()) {
    const std::string& s = obj.s;
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      result = Value(
          py_strip(s, arg(args, 0, "chars", Value::none()), name != "rstrip", name != "lstrip"));
    } else if (name == "split" || name == "rsplit") {
      const Value mx = arg(args, 1, "maxsplit", Value(-1));
      result = str_list(py_split(s, arg(args, 0, "sep", Value::none()), need_int(mx, "maxsplit"),
                                 name == "rsplit"));
    } else if (name == "startswith" || name == "endswith") {
      result = Value(prefix_test(s, arg(args, 0, "prefix"), name == "endswith"));
    } else if (name == "replace") {
      const Value count = arg(args, 2, "count", Value(-1));
      result =
          Value(py_replace(s, need_str(arg(args, 0, "old"), "replace"),
                           need_str(arg(args, 1, "new"), "replace"), need_int(count, "count")));
    } else if (name == "upper" || name == "lower") {
      result = Value(map_case(s, name == "upper"));
    } else if (name == "title") {
      result = Value(py_title(s));
    } else if (name == "capitalize") {
      result = Value(capitalize(s));
    } else if (name == "find" || name == "rfind" || name == "count") {
      const Value sub_value = arg(args, 0, "sub");  // need_str refers into it: keep it alive
      const std::string& sub = need_str(sub_value, name.c_str());
      if (name == "count") {
        int64_t n = 0;
        if (sub.empty()) {
          n = static_cast<int64_t>(cp_count(s)) + 1;
        } else {
          for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        }
        result = Value(n);
      } else {
        const size_t p = name == "find" ? s.find(sub) : s.rfind(sub);
        result = Value(p == std::string::npos ? static_cast<int64_t>(-1)
                                              : static_cast<int64_t>(cp_count(s.substr(0, p))));
      }
    } else if (name == "join") {
      std::string out;
      bool first = true;
      for (const auto& x : items_of(arg(args, 0, "iterable"), "join")) {
        if (!first) out += s;
        first = false;
        out += need_str(x, "str.join item");
      }
      result = Value(out);
    } else if (name == "isdigit" || name == "isspace" || name == "isalpha" || name == "isalnum") {
      auto c = cps(s);
      bool ok = !c.empty();
      for (uint32_t x : c) {
        const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(x));
        const bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        const bool digit = cat == UTF8PROC_CATEGORY_ND;
        if (name == "isdigit") ok = ok && digit;
        if (name == "isspace") ok = ok && py_space(x);
        if (name == "isalpha") ok = ok && alpha;
        if (name == "isalnum") ok = ok && (alpha || digit);
      }
      result = Value(ok);
    } else {
      return false;
    }
    return true;
  }
  if (obj.is_dict() && !obj.namespace_) {
    if (name == "get") {
      const Value key = arg(args, 0, "key");
      const Value* v = key.is_string() ? obj.dict->find(key.s) : nullptr;
      result = v ? *v : arg(args, 1, "default", Value::none());
    } else if (name == "items" || name == "keys" || name == "values") {
      List out;
      for (const auto& kv : obj.dict->items) {
        if (name == "items") {
          out.push_back(Value::make_list({Value(kv.first), kv.second}, true));
        } else {
          out.push_back(name == "keys" ? Value(kv.first) : kv.second);
        }
      }
      result = Value::make_list(std::move(out));
    } else {
      return false;
    }
    return true;
  }
  return false;
}

bool value_in(const Value& needle, const Value& hay) {
  return py_in(needle, hay);
}

}  // namespace tpinfer::tok::jinja
