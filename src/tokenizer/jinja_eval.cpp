// The Jinja evaluator: walks the syntax tree with scopes (the template's, one per for loop, one
// per macro call), loop variables, macros with caller(), namespaces and the globals transformers
// adds (raise_exception, strftime_now, namespace, dict) plus range.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_builtins.h"

namespace tpinfer::tok::jinja {

namespace {

// An error that already carries the template name and line.
class Located : public tpinfer::Error {
 public:
  explicit Located(const std::string& what) : tpinfer::Error(what) {}
};

using Scope = std::map<std::string, Value>;

class Evaluator {
 public:
  Evaluator(const std::string& where, std::optional<std::time_t> now) : where_(where), now_(now) {
    scopes_.push_back(std::make_shared<Scope>());
    install_globals();
  }

  void set_var(const std::string& name, Value v) { (*scopes_[0])[name] = std::move(v); }

  std::string run(const Body& body) {
    std::string out;
    exec(body, out);
    return out;
  }

 private:
  enum class Flow { Normal, Break, Continue };

  [[noreturn]] void fail(int line, const std::string& msg) const {
    throw Located(where_ + " line " + std::to_string(line) + ": " + msg);
  }

  void install_globals() {
    Scope& g = globals_;
    g["raise_exception"] = Value::make_func([this](Args& a) -> Value {
      const std::string msg = a.pos.empty() ? "" : py_str(a.pos[0]);
      throw Located(where_ + ": the template raised an error: " + msg);
    });
    g["strftime_now"] = Value::make_func([this](Args& a) -> Value {
      if (a.pos.empty() || !a.pos[0].is_string()) TPI_FAIL("strftime_now expects a format string");
      std::tm tm{};
      if (now_) {
        gmtime_r(&*now_, &tm);
      } else {
        const std::time_t t = std::time(nullptr);
        localtime_r(&t, &tm);
      }
      char buf[512];
      const size_t n = std::strftime(buf, sizeof buf, a.pos[0].s.c_str(), &tm);
      return Value(std::string(buf, n));
    });
    auto make_dict = [](Args& a, bool ns) -> Value {
      Value d = Value::make_dict();
      d.namespace_ = ns;
      if (!a.pos.empty()) {
        if (!a.pos[0].is_dict()) TPI_FAIL((ns ? "namespace" : "dict") << "() expects a mapping");
        for (const auto& kv : a.pos[0].dict->items) d.dict->set(kv.first, kv.second);
      }
      for (const auto& kv : a.kw) d.dict->set(kv.first, kv.second);
      return d;
    };
    g["namespace"] = Value::make_func([make_dict](Args& a) { return make_dict(a, true); });
    g["dict"] = Value::make_func([make_dict](Args& a) { return make_dict(a, false); });
    g["range"] = Value::make_func([](Args& a) -> Value {
      int64_t start = 0, stop = 0, step = 1;
      auto num = [](const Value& v) {
        if (v.t != Value::T::Int) TPI_FAIL("range expects integers, got " << v.type_name());
        return v.i;
      };
      if (a.pos.size() == 1) {
        stop = num(a.pos[0]);
      } else if (a.pos.size() >= 2) {
        start = num(a.pos[0]);
        stop = num(a.pos[1]);
        if (a.pos.size() >= 3) step = num(a.pos[2]);
      } else {
        TPI_FAIL("range expects 1 to 3 arguments");
      }
      if (step == 0) TPI_FAIL("range() arg 3 must not be zero");
      List out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        out.emplace_back(i);
        if (out.size() > 1000000) TPI_FAIL("range too large");
      }
      return Value::make_list(std::move(out));
    });
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = (*it)->find(name);
      if (f != (*it)->end()) return f->second;
    }
    auto g = globals_.find(name);
    if (g != globals_.end()) return g->second;
    return Value::undefined(name);
  }

  void assign(const std::string& name, Value v) { (*scopes_.back())[name] = std::move(v); }

  void bind_targets(const std::vector<std::string>& targets, const Value& v, int line) {
    if (targets.size() == 1) {
      assign(targets[0], v);
      return;
    }
    List items;
    if (v.is_list()) {
      items = *v.list;
    } else {
      try {
        items = iterate(v);
      } catch (const tpinfer::Error& e) {
        fail(line, std::string("cannot unpack: ") + e.what());
      }
    }
    if (items.size() != targets.size()) {
      fail(line, "cannot unpack " + std::to_string(items.size()) + " values into " +
                     std::to_string(targets.size()) + " names");
    }
    for (size_t k = 0; k < targets.size(); ++k) assign(targets[k], items[k]);
  }

  // ---- statements ----

  Flow exec(const Body& body, std::string& out) {
    for (const auto& n : body) {
      const Flow f = exec_node(*n, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec_node(const Node& n, std::string& out) {
    switch (n.k) {
      case Node::K::Text:
        out += n.text;
        return Flow::Normal;
      case Node::K::Output:
        out += py_str(eval(*n.expr));
        return Flow::Normal;
      case Node::K::If:
        for (size_t k = 0; k < n.conds.size(); ++k) {
          if (!n.conds[k] || truthy(eval(*n.conds[k]))) return exec(n.bodies[k], out);
        }
        return Flow::Normal;
      case Node::K::For:
        return exec_for(n, out);
      case Node::K::Set: {
        Value v = eval(*n.expr);
        if (!n.attr.empty()) {
          Value ns = lookup(n.targets[0]);
          if (!ns.is_dict() || !ns.namespace_) {
            fail(n.line, "cannot assign attribute '" + n.attr + "' on '" + n.targets[0] +
                             "', which is not a namespace()");
          }
          ns.dict->set(n.attr, std::move(v));
        } else {
          bind_targets(n.targets, v, n.line);
        }
        return Flow::Normal;
      }
      case Node::K::SetBlock: {
        std::string captured;
        exec(n.body, captured);
        assign(n.targets[0], Value(captured));
        return Flow::Normal;
      }
      case Node::K::Macro:
        assign(n.name, make_macro(n));
        return Flow::Normal;
      case Node::K::CallBlock: {
        const Expr& call = *n.expr;
        Value callee = eval(*call.a[0]);
        if (callee.t != Value::T::Func) fail(n.line, "'{% call %}' of something not a macro");
        Args args = eval_args(call);
        auto saved = scopes_;
        const Node* np = &n;
        args.kw.emplace_back("caller", Value::make_func([this, np, saved](Args& a) -> Value {
                               return run_scoped(saved, *np, a);
                             }));
        out += py_str(invoke(callee, args, n.line));
        return Flow::Normal;
      }
      case Node::K::Break:
        return Flow::Break;
      case Node::K::Continue:
        return Flow::Continue;
      case Node::K::Generation:
        return exec(n.body, out);
    }
    return Flow::Normal;
  }

  // Runs a macro (or a caller body) with its own scope on top of base.
  Value run_scoped(const std::vector<std::shared_ptr<Scope>>& base, const Node& n, Args& a) {
    if (depth_ >= kMaxDepth) {
      TPI_FAIL("macro calls nested deeper than " << kMaxDepth << " (endless recursion?)");
    }
    auto saved = scopes_;
    scopes_ = base;
    scopes_.push_back(std::make_shared<Scope>());
    std::string out;
    ++depth_;
    struct Depth {
      int& d;
      ~Depth() { --d; }
    } depth_guard{depth_};
    try {
      size_t pos = 0;
      for (size_t k = 0; k < n.params.size(); ++k) {
        const std::string& p = n.params[k];
        Value v = Value::undefined(p);
        bool have = false;
        if (pos < a.pos.size()) {
          v = a.pos[pos++];
          have = true;
        }
        for (const auto& kv : a.kw) {
          if (kv.first == p) {
            v = kv.second;
            have = true;
          }
        }
        if (!have && n.defaults[k]) v = eval(*n.defaults[k]);
        assign(p, v);
      }
      for (const auto& kv : a.kw) {
        if (kv.first == "caller") assign("caller", kv.second);
      }
      exec(n.body, out);
    } catch (...) {
      scopes_ = saved;
      throw;
    }
    scopes_ = saved;
    return Value(out);
  }

  Value make_macro(const Node& n) {
    const Node* np = &n;
    return Value::make_func(
        [this, np](Args& a) -> Value { return run_scoped({scopes_[0]}, *np, a); });
  }

  Flow exec_for(const Node& n, std::string& out) {
    const Value seq = eval(*n.expr);
    List items;
    try {
      items = seq.is_dict() && seq.namespace_ ? List{} : iterate(seq);
    } catch (const tpinfer::Error& e) {
      fail(n.line, e.what());
    }
    // Each iteration has a fresh scope, as in jinja2: a `set` in the body is gone at the next
    // iteration and after the loop (namespace() is the way to carry values).
    struct Push {
      std::vector<std::shared_ptr<Scope>>& s;
      explicit Push(std::vector<std::shared_ptr<Scope>>& v) : s(v) {
        s.push_back(std::make_shared<Scope>());
      }
      ~Push() { s.pop_back(); }
    };
    if (n.filter) {
      List kept;
      for (const auto& item : items) {
        Push scope(scopes_);
        bind_targets(n.targets, item, n.line);
        if (truthy(eval(*n.filter))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const auto len = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < len; ++k) {
      Push scope(scopes_);
      Value loop = Value::make_dict();
      auto& d = *loop.dict;
      d.set("index", Value(k + 1));
      d.set("index0", Value(k));
      d.set("revindex", Value(len - k));
      d.set("revindex0", Value(len - k - 1));
      d.set("first", Value(k == 0));
      d.set("last", Value(k == len - 1));
      d.set("length", Value(len));
      d.set("depth", Value(1));
      d.set("depth0", Value(0));
      d.set("previtem",
            k > 0 ? items[static_cast<size_t>(k - 1)] : Value::undefined("loop.previtem"));
      d.set("nextitem",
            k + 1 < len ? items[static_cast<size_t>(k + 1)] : Value::undefined("loop.nextitem"));
      d.set("cycle", Value::make_func([k](Args& a) -> Value {
              if (a.pos.empty()) TPI_FAIL("loop.cycle needs at least one argument");
              return a.pos[static_cast<size_t>(k) % a.pos.size()];
            }));
      assign("loop", loop);
      bind_targets(n.targets, items[static_cast<size_t>(k)], n.line);
      if (exec(n.body, out) == Flow::Break) break;
    }
    if (len == 0) exec(n.else_body, out);
    return Flow::Normal;
  }

  // ---- expressions ----

  Args eval_args(const Expr& e) {
    Args a;
    for (size_t k = 1; k < e.a.size(); ++k) {
      Value v = eval(*e.a[k]);
      if (e.argnames[k - 1].empty()) {
        a.pos.push_back(std::move(v));
      } else {
        a.kw.emplace_back(e.argnames[k - 1], std::move(v));
      }
    }
    return a;
  }

  Value invoke(const Value& callee, Args& args, int line) {
    if (callee.t != Value::T::Func) {
      fail(line, callee.is_undefined()
                     ? "'" + callee.s + "' is undefined and cannot be called"
                     : std::string("'") + callee.type_name() + "' object is not callable");
    }
    return (*callee.fn)(args);
  }

  Value eval(const Expr& e) {
    try {
      return eval_inner(e);
    } catch (const Located&) {
      throw;
    } catch (const tpinfer::Error& x) {
      fail(e.line, x.what());
    }
  }

  static int64_t as_int(const Value& v) { return v.t == Value::T::Bool ? v.b : v.i; }

  Value slice(const Value& obj, const Expr& e) {
    auto opt = [&](size_t k) -> std::optional<int64_t> {
      if (!e.a[k]) return std::nullopt;
      Value v = eval(*e.a[k]);
      if (v.is_none()) return std::nullopt;
      if (v.t != Value::T::Int && v.t != Value::T::Bool) TPI_FAIL("slice indices must be integers");
      return as_int(v);
    };
    const auto start = opt(1), stop = opt(2), step_o = opt(3);
    const int64_t step = step_o.value_or(1);
    if (step == 0) TPI_FAIL("slice step cannot be zero");
    List items;
    if (obj.is_list()) {
      items = *obj.list;
    } else if (obj.is_string()) {
      items = iterate(obj);
    } else {
      TPI_FAIL("'" << obj.type_name() << "' object is not subscriptable");
    }
    const auto n = static_cast<int64_t>(items.size());
    auto norm = [&](std::optional<int64_t> v, int64_t def) {
      if (!v) return def;
      int64_t x = *v < 0 ? *v + n : *v;
      if (step > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    const int64_t b = norm(start, step > 0 ? 0 : n - 1);
    const int64_t en = norm(stop, step > 0 ? n : -1);
    List out;
    for (int64_t k = b; step > 0 ? k < en : k > en; k += step)
      out.push_back(items[static_cast<size_t>(k)]);
    if (obj.is_string()) {
      std::string s;
      for (const auto& c : out) s += c.s;
      return Value(s);
    }
    return Value::make_list(std::move(out), obj.tuple);
  }

  // Python's printf-style `fmt % args` for %s %r %d %i %f (with width / precision) and %%.
  static std::string percent_format(const std::string& fmt, const Value& args) {
    List vals = args.is_list() && args.tuple ? *args.list : List{args};
    size_t next = 0;
    std::string out;
    for (size_t k = 0; k < fmt.size(); ++k) {
      if (fmt[k] != '%') {
        out += fmt[k];
        continue;
      }
      size_t e = k + 1;
      while (e < fmt.size() && std::strchr("-+ 0#.123456789", fmt[e])) ++e;
      if (e >= fmt.size()) TPI_FAIL("incomplete format in '" << fmt << "'");
      const char conv = fmt[e];
      const std::string flags = fmt.substr(k + 1, e - k - 1);
      k = e;
      if (conv == '%') {
        out += '%';
        continue;
      }
      if (next >= vals.size()) TPI_FAIL("not enough arguments for format string '" << fmt << "'");
      const Value& v = vals[next++];
      char buf[512];
      if (conv == 's' || conv == 'r') {
        const std::string s = conv == 's' ? py_str(v) : py_repr(v);
        std::snprintf(buf, sizeof buf, ("%" + flags + "s").c_str(), s.c_str());
      } else if (conv == 'd' || conv == 'i') {
        if (!v.is_number()) TPI_FAIL("%d format: a number is required, not " << v.type_name());
        const auto i = v.t == Value::T::Float ? static_cast<long long>(v.f)
                                              : static_cast<long long>(as_int(v));
        std::snprintf(buf, sizeof buf, ("%" + flags + "lld").c_str(), i);
      } else if (conv == 'f') {
        if (!v.is_number()) TPI_FAIL("%f format: a number is required, not " << v.type_name());
        std::snprintf(buf, sizeof buf, ("%" + flags + "f").c_str(), v.as_double());
      } else {
        TPI_FAIL("unsupported construct: format '%" << conv << "' in '" << fmt << "'");
      }
      out += buf;
    }
    if (next < vals.size()) TPI_FAIL("not all arguments converted during string formatting");
    return out;
  }

  Value arith(const std::string& op, const Value& l, const Value& r) {
    using T = Value::T;
    if (op == "~") return Value(py_str(l) + py_str(r));
    if (op == "+") {
      if (l.is_string() && r.is_string()) return Value(l.s + r.s);
      if (l.is_list() && r.is_list()) {
        List out = *l.list;
        out.insert(out.end(), r.list->begin(), r.list->end());
        return Value::make_list(std::move(out), l.tuple);
      }
    }
    if (op == "*") {
      if ((l.is_string() || l.is_list()) && (r.t == T::Int || r.t == T::Bool)) {
        const int64_t n = as_int(r);
        const size_t unit = l.is_string() ? l.s.size() : l.list->size();
        if (n > 0 && unit > 0 && static_cast<uint64_t>(n) > (size_t{1} << 26) / unit) {
          TPI_FAIL("repetition by " << n << " is too large");
        }
        if (l.is_string()) {
          std::string out;
          for (int64_t k = 0; k < n; ++k) out += l.s;
          return Value(out);
        }
        List out;
        for (int64_t k = 0; k < n; ++k) out.insert(out.end(), l.list->begin(), l.list->end());
        return Value::make_list(std::move(out));
      }
    }
    if (op == "%" && l.is_string()) return Value(percent_format(l.s, r));
    if (!l.is_number() || !r.is_number()) {
      if (l.is_undefined() || r.is_undefined()) {
        const Value& u = l.is_undefined() ? l : r;
        TPI_FAIL((u.s.empty() ? std::string("a value") : "'" + u.s + "'")
                 << " is undefined (operand of '" << op << "')");
      }
      TPI_FAIL("unsupported operand type(s) for " << op << ": '" << l.type_name() << "' and '"
                                                  << r.type_name() << "'");
    }
    const bool ints = l.t != T::Float && r.t != T::Float;
    if (op == "/") {
      if (r.as_double() == 0) TPI_FAIL("division by zero");
      return Value(l.as_double() / r.as_double());
    }
    if (ints) {
      const int64_t a = as_int(l), b = as_int(r);
      if (op == "+") return Value(a + b);
      if (op == "-") return Value(a - b);
      if (op == "*") return Value(a * b);
      if (op == "//" || op == "%") {
        if (b == 0) TPI_FAIL("integer division or modulo by zero");
        int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) {
          --q;
          m += b;
        }
        return Value(op == "//" ? q : m);
      }
      if (op == "**") {
        if (b < 0) return Value(std::pow(static_cast<double>(a), static_cast<double>(b)));
        int64_t x = 1;
        for (int64_t k = 0; k < b; ++k) x *= a;
        return Value(x);
      }
    }
    const double a = l.as_double(), b = r.as_double();
    if (op == "+") return Value(a + b);
    if (op == "-") return Value(a - b);
    if (op == "*") return Value(a * b);
    if (op == "//" || op == "%") {
      if (b == 0) TPI_FAIL("float division or modulo by zero");
      const double q = std::floor(a / b);
      return Value(op == "//" ? q : a - q * b);
    }
    if (op == "**") return Value(std::pow(a, b));
    TPI_FAIL("unknown operator " << op);
  }

  Value eval_inner(const Expr& e) {
    using K = Expr::K;
    switch (e.k) {
      case K::Lit:
        return e.lit;
      case K::Name:
        return lookup(e.name);
      case K::List:
      case K::Tuple: {
        List items;
        for (const auto& x : e.a) items.push_back(eval(*x));
        return Value::make_list(std::move(items), e.k == K::Tuple);
      }
      case K::Dict: {
        Value d = Value::make_dict();
        for (size_t k = 0; k + 1 < e.a.size(); k += 2) {
          Value key = eval(*e.a[k]);
          if (!key.is_string())
            TPI_FAIL("dict literal keys must be strings here, got " << key.type_name());
          d.dict->set(key.s, eval(*e.a[k + 1]));
        }
        return d;
      }
      case K::Attr: {
        Value obj = eval(*e.a[0]);
        if (obj.is_undefined() && e.a[0]->k == K::Name) obj.s = e.a[0]->name;
        return get_attr(obj, e.name);
      }
      case K::Index: {
        Value obj = eval(*e.a[0]);
        if (obj.is_undefined() && e.a[0]->k == K::Name) obj.s = e.a[0]->name;
        return get_item(obj, eval(*e.a[1]));
      }
      case K::Slice: {
        Value obj = eval(*e.a[0]);
        return slice(obj, e);
      }
      case K::Call: {
        const Expr& callee = *e.a[0];
        if (callee.k == K::Attr) {
          Value obj = eval(*callee.a[0]);
          Args args = eval_args(e);
          Value result;
          if (call_method(obj, callee.name, args, result)) return result;
          if (obj.is_dict()) {
            if (const Value* f = obj.dict->find(callee.name)) return invoke(*f, args, e.line);
          }
          TPI_FAIL("unsupported construct: method ." << callee.name << "() on a "
                                                     << obj.type_name());
        }
        Value f = eval(callee);
        if (f.is_undefined() && callee.k == K::Name) f.s = callee.name;
        Args args = eval_args(e);
        return invoke(f, args, e.line);
      }
      case K::Filter: {
        Value v = eval(*e.a[0]);
        Args args = eval_args(e);
        return apply_filter(e.name, v, args);
      }
      case K::Test: {
        Value v = eval(*e.a[0]);
        Args args = eval_args(e);
        return Value(apply_test(e.name, v, args) != e.negate);
      }
      case K::Neg:
      case K::Pos: {
        Value v = eval(*e.a[0]);
        if (!v.is_number())
          TPI_FAIL("bad operand type for unary " << (e.k == K::Neg ? "-" : "+") << ": '"
                                                 << v.type_name() << "'");
        if (e.k == K::Pos) return v.t == Value::T::Bool ? Value(as_int(v)) : v;
        if (v.t == Value::T::Float) return Value(-v.f);
        return Value(-as_int(v));
      }
      case K::Not:
        return Value(!truthy(eval(*e.a[0])));
      case K::And: {
        Value l = eval(*e.a[0]);
        return truthy(l) ? eval(*e.a[1]) : l;
      }
      case K::Or: {
        Value l = eval(*e.a[0]);
        return truthy(l) ? l : eval(*e.a[1]);
      }
      case K::Cond:
        if (truthy(eval(*e.a[1]))) return eval(*e.a[0]);
        return e.a[2] ? eval(*e.a[2]) : Value::undefined("conditional expression without else");
      case K::Bin: {
        Value l = eval(*e.a[0]);
        Value r = eval(*e.a[1]);
        const std::string& op = e.name;
        if (op == "==") return Value(py_eq(l, r));
        if (op == "!=") return Value(!py_eq(l, r));
        if (op == "<") return Value(py_less(l, r));
        if (op == ">") return Value(py_less(r, l));
        if (op == "<=") return Value(!py_less(r, l));
        if (op == ">=") return Value(!py_less(l, r));
        if (op == "in") return Value(value_in(l, r));
        if (op == "notin") return Value(!value_in(l, r));
        return arith(op, l, r);
      }
    }
    TPI_FAIL("unknown expression");
  }

  static constexpr int kMaxDepth = 200;
  int depth_ = 0;
  const std::string& where_;
  std::optional<std::time_t> now_;
  Scope globals_;
  std::vector<std::shared_ptr<Scope>> scopes_;
};

}  // namespace

JinjaTemplate::JinjaTemplate(const std::string& source, std::string where)
    : tmpl_(parse_template(source, where)), where_(std::move(where)) {}

JinjaTemplate::~JinjaTemplate() = default;

std::string JinjaTemplate::render(const std::vector<std::pair<std::string, Value>>& vars,
                                  std::optional<std::time_t> now) const {
  Evaluator ev(where_, now);
  for (const auto& [k, v] : vars) ev.set_var(k, v);
  return ev.run(tmpl_->body);
}

}  // namespace tpinfer::tok::jinja
