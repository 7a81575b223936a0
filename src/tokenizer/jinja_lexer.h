// Private to src/tokenizer: the Jinja lexer. Splits a template into text and the tokens inside
// {{ }} / {% %} tags, applying jinja2's whitespace rules as transformers configures them:
// trim_blocks and lstrip_blocks on, {%- -%} / {{- -}} stripping, {%+ opting out of lstrip,
// comments dropped, newlines normalised to \n and one trailing newline removed.
#pragma once

#include <string>
#include <vector>

namespace tpinfer::tok::jinja {

struct Token {
  enum class K { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };
  K k;
  std::string s;  // text, name, string value, number text or operator
  int line;
};

// where names the template for messages ("FILE chat_template"); throws tpinfer::Error with the
// line.
std::vector<Token> lex(const std::string& source, const std::string& where);

}  // namespace tpinfer::tok::jinja
