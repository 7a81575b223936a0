// Private to src/tokenizer: PCRE2 (UTF + UCP, JIT-compiled) with the semantics of the Oniguruma
// regexes Hugging Face `tokenizers` uses for its patterns. Thread-safe: match data and JIT stacks
// are per thread.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace tpinfer::tok {

class Regex {
 public:
  // Throws tpinfer::Error (with `where` in the message) when PCRE2 rejects the pattern.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends every non-overlapping match of the pattern in subject as (begin, end) byte offsets,
  // scanning left to right the way Rust's find_iter does (an empty match advances one char).
  // subject must be valid UTF-8.
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

// Translates an Oniguruma pattern (as found in tokenizer.json) into PCRE2 syntax where the two
// differ: \s \S \w \W \p{L} \p{N} (and negations) become explicit classes measured from
// tokenizers' Oniguruma (Unicode 16; the system PCRE2 has Unicode 14 tables).
std::string onig_to_pcre2(const std::string& pattern);

}  // namespace tpinfer::tok
