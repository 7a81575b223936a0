#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

namespace {

// Per-thread PCRE2 scratch: match data (only group 0 is read) and a JIT stack big enough for
// very long words.
struct ThreadScratch {
  pcre2_match_data* md = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  ThreadScratch() {
    md = pcre2_match_data_create(1, nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    if (ctx && stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~ThreadScratch() {
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(md);
  }
};

ThreadScratch& scratch() {
  thread_local ThreadScratch s;
  return s;
}

std::string pcre2_error(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string onig_to_pcre2(const std::string& p) {
  // Replaces \s \S \w \W \p{L} \p{N} \P{L} \P{N} \pL \pN by explicit classes built from the
  // measured tables, outside and inside [...] (inside a class only the positive forms can be
  // expanded).
  std::string out;
  out.reserve(p.size());
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      char cls = 0;
      bool negated = false;
      size_t consumed = 2;
      if (e == 's' || e == 'S' || e == 'w' || e == 'W') {
        cls = static_cast<char>(e | 0x20);
        negated = e == 'S' || e == 'W';
      } else if ((e == 'p' || e == 'P') && i + 2 < p.size()) {
        negated = e == 'P';
        if (p.compare(i + 2, 3, "{L}") == 0 || p.compare(i + 2, 3, "{N}") == 0) {
          cls = p[i + 3];
          consumed = 5;
        } else if (p[i + 2] == 'L' || p[i + 2] == 'N') {
          cls = p[i + 2];
          consumed = 3;
        }
      }
      if (cls != 0 && !(in_class && negated)) {
        const std::string& body = class_ranges_pcre2(cls);
        if (in_class) {
          out += body;
        } else {
          out += negated ? "[^" : "[";
          out += body;
          out += "]";
        }
        i += consumed - 1;
        continue;
      }
      out += c;
      out += e;
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') {
        out += '^';
        ++i;
      }
      if (i + 1 < p.size() && p[i + 1] == ']') {
        out += ']';
        ++i;
      }
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern, const std::string& where) : pattern_(pattern) {
  const std::string translated = onig_to_pcre2(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
  TPI_CHECK(code_ != nullptr, where << ": regex '" << pattern << "' is not supported ("
                                    << pcre2_error(err) << " at offset " << off << ")");
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  pcre2_code_free(code_);
}

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  ThreadScratch& s = scratch();
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t pos = 0;
  while (pos <= subject.size()) {
    const int rc =
        jit_ ? pcre2_jit_match(code_, subj, subject.size(), pos, 0, s.md, s.ctx)
             : pcre2_match(code_, subj, subject.size(), pos, PCRE2_NO_UTF_CHECK, s.md, s.ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    TPI_CHECK(rc >= 0, "tokenizer: regex '" << pattern_ << "' failed on a " << subject.size()
                                            << "-byte input: " << pcre2_error(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {  // empty match: step over one character
      pos = b + 1;
      while (pos < subject.size() && (static_cast<uint8_t>(subject[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
}

}  // namespace tpinfer::tok
