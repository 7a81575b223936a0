// The Jinja parser: tokens -> syntax tree, with jinja2's operator precedence
// (or < and < not < comparisons < + - < ~ < * / // % < ** < unary < postfix, filters and tests).
#include <set>

#include "core/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_lexer.h"

namespace tpinfer::tok::jinja {

namespace {

using TK = Token::K;

class Parser {
 public:
  Parser(std::vector<Token> toks, const std::string& where)
      : toks_(std::move(toks)), where_(where) {}

  std::shared_ptr<Template> run() {
    auto t = std::make_shared<Template>();
    std::string end;
    t->body = parse_body({}, end);
    if (peek().k != TK::End) fail("unexpected '{% " + end + " %}'");
    return t;
  }

 private:
  [[noreturn]] void fail(const std::string& msg, int line = -1) {
    TPI_FAIL(where_ << " line " << (line < 0 ? peek().line : line) << ": " << msg);
  }
  const Token& peek(size_t ahead = 0) const {
    return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
  }
  const Token& next() { return toks_[std::min(pos_++, toks_.size() - 1)]; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).k == TK::Op && peek(ahead).s == op;
  }
  bool is_name(const char* n, size_t ahead = 0) const {
    return peek(ahead).k == TK::Name && peek(ahead).s == n;
  }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const char* n) {
    if (!is_name(n)) return false;
    ++pos_;
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.k) {
      case TK::Text:
        return "text";
      case TK::VarBegin:
        return "'{{'";
      case TK::VarEnd:
        return "'}}'";
      case TK::BlockBegin:
        return "'{%'";
      case TK::BlockEnd:
        return "'%}'";
      case TK::End:
        return "end of template";
      case TK::String:
        return "string literal";
      default:
        return "'" + t.s + "'";
    }
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(std::string("expected '") + op + "', found " + describe(peek()));
  }
  void expect(TK k, const char* what) {
    if (peek().k != k) fail(std::string("expected ") + what + ", found " + describe(peek()));
    ++pos_;
  }
  std::string expect_name() {
    if (peek().k != TK::Name) fail("expected a name, found " + describe(peek()));
    return next().s;
  }

  // Statements until `{% <one of ends> ...`; leaves pos_ after the end keyword and returns it.
  Body parse_body(const std::set<std::string>& ends, std::string& end) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.k == TK::End) {
        if (!ends.empty()) {
          fail("unexpected end of template, expected '{% " + *ends.rbegin() + " %}'");
        }
        return body;
      }
      if (t.k == TK::Text) {
        auto n = std::make_unique<Node>();
        n->k = Node::K::Text;
        n->line = t.line;
        n->text = t.s;
        body.push_back(std::move(n));
        ++pos_;
        continue;
      }
      if (t.k == TK::VarBegin) {
        ++pos_;
        auto n = std::make_unique<Node>();
        n->k = Node::K::Output;
        n->line = t.line;
        n->expr = parse_tuple_expr();
        expect(TK::VarEnd, "'}}'");
        body.push_back(std::move(n));
        continue;
      }
      if (t.k != TK::BlockBegin) fail("unexpected " + describe(t));
      const Token& kw = peek(1);
      if (kw.k != TK::Name) fail("expected a statement name after '{%'");
      if (ends.count(kw.s)) {
        pos_ += 2;
        end = kw.s;
        return body;
      }
      body.push_back(parse_statement());
    }
  }

  NodeP parse_statement() {
    ++pos_;  // {%
    const Token kw = next();
    auto n = std::make_unique<Node>();
    n->line = kw.line;
    std::string end;
    if (kw.s == "if") {
      n->k = Node::K::If;
      n->conds.push_back(parse_tuple_expr());
      expect(TK::BlockEnd, "'%}'");
      while (true) {
        n->bodies.push_back(parse_body({"elif", "else", "endif"}, end));
        if (end == "endif") break;
        if (end == "elif") {
          n->conds.push_back(parse_tuple_expr());
          expect(TK::BlockEnd, "'%}'");
        } else {
          n->conds.push_back(nullptr);
          expect(TK::BlockEnd, "'%}'");
          n->bodies.push_back(parse_body({"endif"}, end));
          break;
        }
      }
    } else if (kw.s == "for") {
      n->k = Node::K::For;
      n->targets.push_back(expect_name());
      while (accept_op(",")) n->targets.push_back(expect_name());
      if (!accept_name("in")) fail("expected 'in' in a for loop");
      n->expr = parse_tuple_expr(/*with_cond=*/false);
      if (accept_name("if")) n->filter = parse_expr();
      if (is_name("recursive")) fail("unsupported construct 'for ... recursive'");
      expect(TK::BlockEnd, "'%}'");
      n->body = parse_body({"else", "endfor"}, end);
      if (end == "else") {
        expect(TK::BlockEnd, "'%}'");
        n->else_body = parse_body({"endfor"}, end);
      }
    } else if (kw.s == "set") {
      n->targets.push_back(expect_name());
      if (accept_op(".")) {
        n->attr = expect_name();
      } else {
        while (accept_op(",")) n->targets.push_back(expect_name());
      }
      if (accept_op("=")) {
        n->k = Node::K::Set;
        n->expr = parse_tuple_expr();
      } else {
        if (n->targets.size() != 1 || !n->attr.empty()) fail("expected '=' in set");
        if (is_op("|")) fail("unsupported construct 'set NAME | filter' block");
        n->k = Node::K::SetBlock;
        expect(TK::BlockEnd, "'%}'");
        n->body = parse_body({"endset"}, end);
      }
    } else if (kw.s == "macro") {
      n->k = Node::K::Macro;
      n->name = expect_name();
      parse_params(*n);
      expect(TK::BlockEnd, "'%}'");
      n->body = parse_body({"endmacro"}, end);
      if (peek().k == TK::Name) ++pos_;  // {% endmacro name %}
    } else if (kw.s == "call") {
      n->k = Node::K::CallBlock;
      if (is_op("(")) parse_params(*n);
      n->expr = parse_expr();
      if (n->expr->k != Expr::K::Call) fail("expected a macro call after '{% call'");
      expect(TK::BlockEnd, "'%}'");
      n->body = parse_body({"endcall"}, end);
    } else if (kw.s == "break" || kw.s == "continue") {
      n->k = kw.s == "break" ? Node::K::Break : Node::K::Continue;
    } else if (kw.s == "generation") {
      n->k = Node::K::Generation;
      expect(TK::BlockEnd, "'%}'");
      n->body = parse_body({"endgeneration"}, end);
    } else {
      fail("unsupported construct '{% " + kw.s + " %}'", kw.line);
    }
    expect(TK::BlockEnd, "'%}'");
    return n;
  }

  void parse_params(Node& n) {
    expect_op("(");
    while (!accept_op(")")) {
      if (!n.params.empty()) expect_op(",");
      if (accept_op(")")) break;
      n.params.push_back(expect_name());
      n.defaults.push_back(accept_op("=") ? parse_expr() : nullptr);
    }
  }

  ExprP make(Expr::K k, int line) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->line = line;
    return e;
  }

  // A bare tuple `a, b` is allowed at the top of {{ }} / set / for.
  ExprP parse_tuple_expr(bool with_cond = true) {
    const int line = peek().line;
    ExprP first = with_cond ? parse_expr() : parse_or();
    if (!is_op(",")) return first;
    auto t = make(Expr::K::Tuple, line);
    t->a.push_back(std::move(first));
    while (accept_op(",")) {
      if (peek().k == TK::BlockEnd || peek().k == TK::VarEnd) break;
      t->a.push_back(with_cond ? parse_expr() : parse_or());
    }
    return t;
  }

  ExprP parse_expr() {
    ExprP e = parse_or();
    while (is_name("if")) {
      const int line = next().line;
      auto c = make(Expr::K::Cond, line);
      c->a.push_back(std::move(e));
      c->a.push_back(parse_or());
      c->a.push_back(accept_name("else") ? parse_expr() : nullptr);
      e = std::move(c);
    }
    return e;
  }

  ExprP parse_or() {
    ExprP l = parse_and();
    while (is_name("or")) {
      auto n = make(Expr::K::Or, next().line);
      n->a.push_back(std::move(l));
      n->a.push_back(parse_and());
      l = std::move(n);
    }
    return l;
  }
  ExprP parse_and() {
    ExprP l = parse_not();
    while (is_name("and")) {
      auto n = make(Expr::K::And, next().line);
      n->a.push_back(std::move(l));
      n->a.push_back(parse_not());
      l = std::move(n);
    }
    return l;
  }
  ExprP parse_not() {
    if (is_name("not")) {
      auto n = make(Expr::K::Not, next().line);
      n->a.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  ExprP parse_compare() {
    ExprP l = parse_math1();
    while (true) {
      std::string op;
      const int line = peek().line;
      if (peek().k == TK::Op && (peek().s == "==" || peek().s == "!=" || peek().s == "<" ||
                                 peek().s == ">" || peek().s == "<=" || peek().s == ">=")) {
        op = next().s;
      } else if (accept_name("in")) {
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        pos_ += 2;
        op = "notin";
      } else {
        return l;
      }
      auto n = make(Expr::K::Bin, line);
      n->name = op;
      n->a.push_back(std::move(l));
      n->a.push_back(parse_math1());
      l = std::move(n);
    }
  }
  ExprP bin(ExprP l, std::string op, ExprP r, int line) {
    auto n = make(Expr::K::Bin, line);
    n->name = std::move(op);
    n->a.push_back(std::move(l));
    n->a.push_back(std::move(r));
    return n;
  }
  ExprP parse_math1() {
    ExprP l = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      l = bin(std::move(l), t.s, parse_concat(), t.line);
    }
    return l;
  }
  ExprP parse_concat() {
    ExprP l = parse_math2();
    while (is_op("~")) {
      const Token& t = next();
      l = bin(std::move(l), "~", parse_math2(), t.line);
    }
    return l;
  }
  ExprP parse_math2() {
    ExprP l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      l = bin(std::move(l), t.s, parse_pow(), t.line);
    }
    return l;
  }
  ExprP parse_pow() {
    ExprP l = parse_unary(true);
    while (is_op("**")) {
      const Token& t = next();
      l = bin(std::move(l), "**", parse_unary(true), t.line);
    }
    return l;
  }
  ExprP parse_unary(bool with_filter) {
    ExprP e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = make(t.s == "-" ? Expr::K::Neg : Expr::K::Pos, t.line);
      e->a.push_back(parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filters(std::move(e));
    return e;
  }

  ExprP parse_primary() {
    const Token t = next();
    switch (t.k) {
      case TK::Name: {
        if (t.s == "true" || t.s == "True") return lit(Value(true), t.line);
        if (t.s == "false" || t.s == "False") return lit(Value(false), t.line);
        if (t.s == "none" || t.s == "None") return lit(Value::none(), t.line);
        auto n = make(Expr::K::Name, t.line);
        n->name = t.s;
        return n;
      }
      case TK::String: {
        std::string s = t.s;
        while (peek().k == TK::String) s += next().s;  // adjacent literals concatenate
        return lit(Value(s), t.line);
      }
      case TK::Int:
        return lit(Value(static_cast<int64_t>(std::stoll(t.s))), t.line);
      case TK::Float:
        return lit(Value(std::stod(t.s)), t.line);
      case TK::Op:
        if (t.s == "(") {
          if (accept_op(")")) {
            auto e = make(Expr::K::Tuple, t.line);
            return e;
          }
          ExprP e = parse_expr();
          if (is_op(",")) {
            auto tup = make(Expr::K::Tuple, t.line);
            tup->a.push_back(std::move(e));
            while (accept_op(",")) {
              if (is_op(")")) break;
              tup->a.push_back(parse_expr());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (t.s == "[") {
          auto e = make(Expr::K::List, t.line);
          while (!accept_op("]")) {
            if (!e->a.empty()) expect_op(",");
            if (accept_op("]")) break;
            e->a.push_back(parse_expr());
          }
          return e;
        }
        if (t.s == "{") {
          auto e = make(Expr::K::Dict, t.line);
          while (!accept_op("}")) {
            if (!e->a.empty()) expect_op(",");
            if (accept_op("}")) break;
            e->a.push_back(parse_expr());
            expect_op(":");
            e->a.push_back(parse_expr());
          }
          return e;
        }
        break;
      default:
        break;
    }
    fail("unexpected " + describe(t) + " in an expression", t.line);
  }

  ExprP lit(Value v, int line) {
    auto e = make(Expr::K::Lit, line);
    e->lit = std::move(v);
    return e;
  }

  void parse_call_args(Expr& call) {
    // after '('
    while (!accept_op(")")) {
      if (!call.argnames.empty()) expect_op(",");
      if (accept_op(")")) break;
      if (is_op("*") || is_op("**")) fail("unsupported construct '*args' / '**kwargs' in a call");
      if (peek().k == TK::Name && is_op("=", 1)) {
        call.argnames.push_back(next().s);
        ++pos_;
      } else {
        call.argnames.push_back("");
      }
      call.a.push_back(parse_expr());
    }
  }

  ExprP parse_postfix(ExprP e) {
    while (true) {
      const int line = peek().line;
      if (accept_op(".")) {
        auto n = make(Expr::K::Attr, line);
        if (peek().k == TK::Int) {  // x.0 is x[0]
          n->k = Expr::K::Index;
          n->a.push_back(std::move(e));
          n->a.push_back(lit(Value(static_cast<int64_t>(std::stoll(next().s))), line));
        } else {
          n->name = expect_name();
          n->a.push_back(std::move(e));
        }
        e = std::move(n);
      } else if (accept_op("[")) {
        ExprP start, stop, step;
        bool slice = false;
        if (!is_op(":")) start = parse_expr();
        if (accept_op(":")) {
          slice = true;
          if (!is_op("]") && !is_op(":")) stop = parse_expr();
          if (accept_op(":")) {
            if (!is_op("]")) step = parse_expr();
          }
        }
        expect_op("]");
        auto n = make(slice ? Expr::K::Slice : Expr::K::Index, line);
        n->a.push_back(std::move(e));
        n->a.push_back(std::move(start));
        if (slice) {
          n->a.push_back(std::move(stop));
          n->a.push_back(std::move(step));
        }
        e = std::move(n);
      } else if (accept_op("(")) {
        auto n = make(Expr::K::Call, line);
        n->a.push_back(std::move(e));
        parse_call_args(*n);
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  ExprP parse_filters(ExprP e) {
    while (true) {
      const int line = peek().line;
      if (accept_op("|")) {
        auto n = make(Expr::K::Filter, line);
        n->name = expect_name();
        if (!has_filter(n->name)) fail("unsupported construct: filter '" + n->name + "'", line);
        n->a.push_back(std::move(e));
        if (accept_op("(")) parse_call_args(*n);
        e = std::move(n);
      } else if (is_name("is")) {
        ++pos_;
        auto n = make(Expr::K::Test, line);
        n->negate = accept_name("not");
        n->name = expect_name();
        if (!has_test(n->name)) fail("unsupported construct: test '" + n->name + "'", line);
        n->a.push_back(std::move(e));
        if (accept_op("(")) {
          parse_call_args(*n);
        } else if (peek().k == TK::String || peek().k == TK::Int || peek().k == TK::Float ||
                   (peek().k == TK::Name && !is_name("else") && !is_name("and") && !is_name("or") &&
                    !is_name("if") && !is_name("in") && !is_name("not") && !is_name("is")) ||
                   is_op("[") || is_op("{")) {
          n->argnames.push_back("");
          n->a.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(n);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  const std::string& where_;
};

}  // namespace

std::shared_ptr<Template> parse_template(const std::string& source, const std::string& where) {
  return Parser(lex(source, where), where).run();
}

}  // namespace tpinfer::tok::jinja
