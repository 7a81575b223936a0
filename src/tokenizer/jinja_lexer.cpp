// The Jinja lexer: text, tags and expression tokens with jinja2's whitespace control.
#include "tokenizer/jinja_lexer.h"

#include <cctype>
#include <cstring>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok::jinja {

namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string normalise(const std::string& src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  Lexer(std::string src, const std::string& where) : src_(std::move(src)), where_(where) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const size_t tag = find_tag(pos);
      std::string text = src_.substr(pos, tag - pos);
      if (tag == src_.size()) {
        push_text(text, pos);
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_ws(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if (l_pos > 0 || line_starting) {
          bool all_ws = l_pos < text.size();
          for (size_t k = l_pos; k < text.size(); ++k) all_ws = all_ws && is_ws(text[k]);
          if (all_ws) text.resize(l_pos);
        }
      }
      push_text(text, pos);
      line_ += count_nl(pos, tag);
      pos = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        const size_t end = src_.find("#}", pos);
        if (end == std::string::npos) fail("unterminated comment {# ... #}");
        line_ += count_nl(pos, end);
        const bool strip = end > pos && src_[end - 1] == '-';
        pos = end + 2;
        pos = after_tag(pos, strip, true, line_starting);
        continue;
      }
      toks_.push_back({kind == '{' ? Token::K::VarBegin : Token::K::BlockBegin, "", line_});
      bool strip = false;
      pos = lex_inside(pos, kind == '{' ? '}' : '%', strip);
      toks_.push_back({kind == '{' ? Token::K::VarEnd : Token::K::BlockEnd, "", line_});
      pos = after_tag(pos, strip, kind == '%', line_starting);
    }
    toks_.push_back({Token::K::End, "", line_});
    return std::move(toks_);
  }

 private:
  [[noreturn]] void fail(const std::string& msg) {
    TPI_FAIL(where_ << " line " << line_ << ": " << msg);
  }

  int count_nl(size_t a, size_t b) const {
    int n = 0;
    for (size_t k = a; k < b && k < src_.size(); ++k) n += src_[k] == '\n';
    return n;
  }

  size_t find_tag(size_t pos) const {
    for (size_t k = pos; k + 1 < src_.size(); ++k) {
      if (src_[k] == '{' && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) {
        return k;
      }
    }
    return src_.size();
  }

  void push_text(const std::string& text, size_t) {
    if (!text.empty()) toks_.push_back({Token::K::Text, text, line_});
  }

  // After a tag end: -%} / -}} / -#} eat all whitespace; a block or comment end eats one \n.
  size_t after_tag(size_t pos, bool strip, bool trim, bool& line_starting) {
    const size_t start = pos;
    if (strip) {
      while (pos < src_.size() && is_ws(src_[pos])) ++pos;
    } else if (trim && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
    }
    line_starting = pos > start && src_[pos - 1] == '\n';
    line_ += count_nl(start, pos);
    return pos;
  }

  // Expression tokens up to the closing `}}` / `%}` (end = '}' or '%'); returns the position
  // after it. Braces opened inside (dict literals) are balanced first.
  size_t lex_inside(size_t pos, char end, bool& strip) {
    int depth = 0;
    while (true) {
      if (pos >= src_.size()) fail(std::string("unterminated tag, expected '") + end + "}'");
      const char c = src_[pos];
      if (c == '\n') {
        ++line_;
        ++pos;
        continue;
      }
      if (is_ws(c)) {
        ++pos;
        continue;
      }
      if (depth == 0) {
        if (c == '-' && pos + 2 < src_.size() + 0 && src_[pos + 1] == end && src_[pos + 2] == '}') {
          strip = true;
          return pos + 3;
        }
        if (c == end && pos + 1 < src_.size() && src_[pos + 1] == '}') return pos + 2;
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos;
        while (e < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) {
          ++e;
        }
        toks_.push_back({Token::K::Name, src_.substr(pos, e - pos), line_});
        pos = e;
        continue;
      }
      if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = pos;
        bool is_float = false;
        while (e < src_.size() &&
               (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) {
          ++e;
        }
        if (e + 1 < src_.size() && src_[e] == '.' &&
            std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        }
        if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
          size_t k = e + 1;
          if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
          if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
            is_float = true;
            e = k;
            while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
          }
        }
        std::string num;
        for (size_t k = pos; k < e; ++k) {
          if (src_[k] != '_') num += src_[k];
        }
        toks_.push_back({is_float ? Token::K::Float : Token::K::Int, num, line_});
        pos = e;
        continue;
      }
      if (c == '"' || c == '\'') {
        pos = lex_string(pos);
        continue;
      }
      static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                   "/",  "%",  "~",  "<",  ">",  "(",  ")", "[", "]",
                                   "{",  "}",  ",",  ".",  ":",  "|",  "=", ";"};
      bool found = false;
      for (const char* op : kOps) {
        const size_t n = std::strlen(op);
        if (src_.compare(pos, n, op) == 0) {
          if (op[0] == '{') ++depth;
          if (op[0] == '}') --depth;
          toks_.push_back({Token::K::Op, op, line_});
          pos += n;
          found = true;
          break;
        }
      }
      if (!found) fail(std::string("unexpected character '") + c + "' in a tag");
    }
  }

  // A string literal with Python's escapes (jinja2 decodes them with unicode-escape).
  size_t lex_string(size_t pos) {
    const char q = src_[pos];
    const int start_line = line_;
    std::string out;
    size_t k = pos + 1;
    while (true) {
      if (k >= src_.size()) fail("unterminated string literal");
      const char c = src_[k];
      if (c == q) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        ++k;
        continue;
      }
      if (k + 1 >= src_.size()) fail("unterminated string literal");
      const char e = src_[k + 1];
      k += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case '\n':
          ++line_;
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (size_t d = 0; d < n; ++d) {
            const int h = k + d < src_.size() ? hexval(src_[k + d]) : -1;
            if (h < 0) fail(std::string("bad \\") + e + " escape in a string literal");
            cp = cp * 16 + static_cast<uint32_t>(h);
          }
          k += n;
          append_utf8(out, cp);
          break;
        }
        default:
          out += '\\';
          out += e;
      }
    }
    toks_.push_back({Token::K::String, out, start_line});
    return k + 1;
  }

  std::string src_;
  const std::string& where_;
  int line_ = 1;
  std::vector<Token> toks_;
};

}  // namespace

std::vector<Token> lex(const std::string& source, const std::string& where) {
  return Lexer(normalise(source), where).run();
}

}  // namespace tpinfer::tok::jinja
