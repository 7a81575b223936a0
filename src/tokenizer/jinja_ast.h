// Private to src/tokenizer: the Jinja syntax tree (expressions and statements) and the parser
// that builds it from jinja_lexer's tokens. Anything the renderer does not implement is refused
// here with the template's line and the construct, so an unsupported template fails at load.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace tpinfer::tok::jinja {

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
  enum class K {
    Lit,     // lit
    Name,    // name
    List,    // a = items
    Tuple,   // a = items
    Dict,    // a = k0, v0, k1, v1, ...
    Attr,    // a[0].name
    Index,   // a[0][a[1]]
    Slice,   // a[0][a[1]:a[2]:a[3]] (null = omitted)
    Call,    // a[0](a[1..]), argnames parallel to a[1..] ("" = positional)
    Filter,  // a[0] | name(a[1..])
    Test,    // a[0] is [not] name(a[1..])
    Neg,
    Pos,
    Not,
    Bin,  // a[0] name a[1]: + - * / // % ** ~ == != < > <= >= in notin
    And,
    Or,
    Cond,  // a[0] if a[1] else a[2] (a[2] may be null)
  };
  K k;
  int line = 0;
  Value lit;
  std::string name;
  bool negate = false;
  std::vector<ExprP> a;
  std::vector<std::string> argnames;
};

struct Node;
using NodeP = std::unique_ptr<Node>;
using Body = std::vector<NodeP>;

struct Node {
  enum class K {
    Text,       // text
    Output,     // {{ expr }}
    If,         // conds[i] -> bodies[i]; a null cond is the else
    For,        // for targets in expr [if filter]: body [else: else_body]
    Set,        // set targets = expr, or set targets[0].attr = expr when attr is not empty
    SetBlock,   // set targets[0] %}body{% endset
    Macro,      // macro name(params = defaults): body
    CallBlock,  // call(params) expr: body (the body is the macro's caller())
    Break,
    Continue,
    Generation,  // transformers' {% generation %}: renders its body
  };
  K k;
  int line = 0;
  std::string text;
  ExprP expr, filter;
  std::vector<ExprP> conds;
  std::vector<Body> bodies;
  Body body, else_body;
  std::vector<std::string> targets;
  std::string attr;
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprP> defaults;  // parallel to params; null = no default
};

struct Template {
  Body body;
};

// where names the template for messages; throws tpinfer::Error "WHERE line N: ...".
std::shared_ptr<Template> parse_template(const std::string& source, const std::string& where);

}  // namespace tpinfer::tok::jinja
