#include "tokenizer/json_scan.h"

#include <cstring>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

void JsonScanner::fail(const std::string& what) const {
  TPI_FAIL(where_ << ": not valid JSON at byte " << p_ << " (" << what << ")");
}

void JsonScanner::expect(char c) {
  if (!consume(c)) fail(std::string("expected '") + c + "'");
}

void JsonScanner::string(std::string& out) {
  out.clear();
  if (peek() != '"') fail("expected a string");
  ++p_;
  for (;;) {
    // Copy the run up to the next quote or backslash in one go.
    size_t q = p_;
    while (q < s_.size() && s_[q] != '"' && s_[q] != '\\') ++q;
    out.append(s_.data() + p_, q - p_);
    p_ = q;
    if (p_ >= s_.size()) fail("unterminated string");
    if (s_[p_] == '"') {
      ++p_;
      return;
    }
    // escape
    if (p_ + 1 >= s_.size()) fail("unterminated escape");
    const char e = s_[p_ + 1];
    p_ += 2;
    switch (e) {
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '/':
        out.push_back('/');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        auto hex4 = [&]() -> uint32_t {
          if (p_ + 4 > s_.size()) fail("short \\u escape");
          uint32_t v = 0;
          for (int k = 0; k < 4; ++k) {
            const char c = s_[p_ + static_cast<size_t>(k)];
            v <<= 4;
            if (c >= '0' && c <= '9')
              v |= static_cast<uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f')
              v |= static_cast<uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
              v |= static_cast<uint32_t>(c - 'A' + 10);
            else
              fail("bad \\u escape");
          }
          p_ += 4;
          return v;
        };
        uint32_t cp = hex4();
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (p_ + 6 <= s_.size() && s_[p_] == '\\' && s_[p_ + 1] == 'u') {
            p_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else {
            fail("unpaired surrogate");
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fail("unpaired surrogate");
        }
        append_utf8(out, cp);
        break;
      }
      default:
        fail("bad escape");
    }
  }
}

int64_t JsonScanner::integer() {
  skip_ws();
  bool neg = false;
  if (p_ < s_.size() && s_[p_] == '-') {
    neg = true;
    ++p_;
  }
  if (p_ >= s_.size() || s_[p_] < '0' || s_[p_] > '9') fail("expected an integer");
  int64_t v = 0;
  while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') {
    v = v * 10 + (s_[p_] - '0');
    if (v > (int64_t{1} << 40)) fail("integer too large");
    ++p_;
  }
  if (p_ < s_.size() && (s_[p_] == '.' || s_[p_] == 'e' || s_[p_] == 'E'))
    fail("expected an integer");
  return neg ? -v : v;
}

std::string_view JsonScanner::value() {
  skip_ws();
  const size_t start = p_;
  int depth = 0;
  do {
    if (p_ >= s_.size()) fail("unexpected end");
    const char c = s_[p_];
    if (c == '"') {
      ++p_;
      while (p_ < s_.size() && s_[p_] != '"') p_ += s_[p_] == '\\' ? 2 : 1;
      if (p_ >= s_.size()) fail("unterminated string");
      ++p_;
    } else if (c == '{' || c == '[') {
      ++depth;
      ++p_;
    } else if (c == '}' || c == ']') {
      if (depth == 0) fail("unexpected bracket");
      --depth;
      ++p_;
    } else if (depth == 0) {  // a scalar: up to a delimiter
      while (p_ < s_.size() && s_[p_] != ',' && s_[p_] != '}' && s_[p_] != ']' && s_[p_] != ' ' &&
             s_[p_] != '\n' && s_[p_] != '\r' && s_[p_] != '\t') {
        ++p_;
      }
    } else {
      ++p_;
    }
  } while (depth > 0);
  if (p_ == start) fail("expected a value");
  return s_.substr(start, p_ - start);
}

std::vector<std::pair<std::string, std::string_view>> JsonScanner::members() {
  std::vector<std::pair<std::string, std::string_view>> out;
  object([&](const std::string& key) { out.emplace_back(key, value()); });
  return out;
}

}  // namespace tpinfer::tok
