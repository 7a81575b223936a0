// Pre-tokenizers of tokenizer.json: Sequence, Split, ByteLevel, Metaspace, Digits, Whitespace,
// WhitespaceSplit; and the hand-written scanner for the GPT-2 / Llama-3 / Qwen2 split patterns.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

// ---- the scanner for well-known patterns -------------------------------------------------------

namespace {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Character kinds for the patterns: letter, number, whitespace (\s), other.
enum Kind : uint8_t { kL, kN, kS, kO };

struct Ch {
  uint32_t cp;
  uint32_t len;
  Kind kind;
};

struct AsciiKinds {
  Kind k[128];
  AsciiKinds() {
    for (uint32_t c = 0; c < 128; ++c) {
      const uint8_t cls = char_class(c);
      k[c] = (cls & kClassLetter) ? kL : (cls & kClassNumber) ? kN : (cls & kClassSpace) ? kS : kO;
    }
  }
};
const AsciiKinds kAscii;

inline Ch char_at(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) return {b, 1, kAscii.k[b]};
  size_t len = valid_utf8_len(s, i);
  if (len == 0) return {0xFFFD, 1, kO};  // not reached: input is valid UTF-8
  const uint32_t cp = decode_utf8(s, i, len);
  const uint8_t cls = char_class(cp);
  const Kind k = (cls & kClassLetter)   ? kL
                 : (cls & kClassNumber) ? kN
                 : (cls & kClassSpace)  ? kS
                                        : kO;
  return {cp, static_cast<uint32_t>(len), k};
}

// End of the run of characters of kind k starting at i.
inline size_t run_of(std::string_view s, size_t i, Kind k) {
  const size_t n = s.size();
  while (i < n) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      if (kAscii.k[b] != k) break;
      ++i;
      continue;
    }
    const Ch c = char_at(s, i);
    if (c.kind != k) break;
    i += c.len;
  }
  return i;
}

inline uint32_t fold(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp == 0x17F) return 's';  // LATIN SMALL LETTER LONG S folds to s
  return cp;
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) at s[i] == '\'', 0 if none.
size_t contraction(std::string_view s, size_t i, bool ci) {
  const size_t n = s.size();
  size_t j = i + 1;
  if (j >= n) return 0;
  Ch a = char_at(s, j);
  const uint32_t a1 = ci ? fold(a.cp) : a.cp;
  if (a1 == 's' || a1 == 't' || a1 == 'm' || a1 == 'd') return 1 + a.len;
  if (a1 != 'r' && a1 != 'v' && a1 != 'l') return 0;
  size_t k = j + a.len;
  if (k >= n) return 0;
  Ch b = char_at(s, k);
  const uint32_t b1 = ci ? fold(b.cp) : b.cp;
  if ((a1 == 'r' || a1 == 'v') && b1 == 'e') return 1 + a.len + b.len;
  if (a1 == 'l' && b1 == 'l') return 1 + a.len + b.len;
  return 0;
}

// Whitespace run from i: returns its end, and the start of its last character in last.
inline size_t space_run(std::string_view s, size_t i, size_t& last, size_t& count,
                        size_t* last_newline) {
  const size_t n = s.size();
  count = 0;
  last = i;
  while (i < n) {
    const Ch c = char_at(s, i);
    if (c.kind != kS) break;
    if (last_newline && (c.cp == '\r' || c.cp == '\n')) *last_newline = i;
    last = i;
    ++count;
    i += c.len;
  }
  return i;
}

class KnownSplitter : public FastSplitter {
 public:
  // llama_style: the Llama-3 / Qwen2 pattern; max_digits: 1 (Qwen2), 3 (Llama-3).
  KnownSplitter(bool llama_style, int max_digits) : llama_(llama_style), max_digits_(max_digits) {}

  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const override {
    size_t i = 0;
    while (i < s.size()) {
      const size_t e = llama_ ? match_llama(s, i) : match_gpt2(s, i);
      out.emplace_back(i, e);
      i = e;
    }
  }

 private:
  size_t match_gpt2(std::string_view s, size_t i) const {
    const size_t n = s.size();
    const Ch c = char_at(s, i);
    if (c.cp == '\'') {
      if (size_t m = contraction(s, i, false)) return i + m;
    }
    if (c.cp == ' ' && i + 1 < n) {
      const Ch d = char_at(s, i + 1);
      if (d.kind != kS) return run_of(s, i + 1, d.kind);
    }
    if (c.kind != kS) return run_of(s, i, c.kind);
    size_t last = 0, count = 0;
    const size_t j = space_run(s, i, last, count, nullptr);
    if (j == n) return j;
    if (count >= 2) return last;  // \s+(?!\S) gives back the last space
    return j;
  }

  size_t match_llama(std::string_view s, size_t i) const {
    const size_t n = s.size();
    const Ch c = char_at(s, i);
    if (c.cp == '\'') {
      if (size_t m = contraction(s, i, true)) return i + m;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c.kind == kL) return run_of(s, i, kL);
    if (c.kind != kN && c.cp != '\r' && c.cp != '\n' && i + c.len < n) {
      const Ch d = char_at(s, i + c.len);
      if (d.kind == kL) return run_of(s, i + c.len, kL);
    }
    // \p{N}{1,max}
    if (c.kind == kN) {
      size_t j = i + c.len;
      for (int k = 1; k < max_digits_ && j < n; ++k) {
        const Ch d = char_at(s, j);
        if (d.kind != kN) break;
        j += d.len;
      }
      return j;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    size_t o = std::string_view::npos;
    if (c.kind == kO) {
      o = i;
    } else if (c.cp == ' ' && i + 1 < n && char_at(s, i + 1).kind == kO) {
      o = i + 1;
    }
    if (o != std::string_view::npos) {
      size_t j = run_of(s, o, kO);
      while (j < n && (s[j] == '\r' || s[j] == '\n')) ++j;
      return j;
    }
    // c is whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
    size_t last = 0, count = 0, last_nl = std::string_view::npos;
    const size_t j = space_run(s, i, last, count, &last_nl);
    if (last_nl != std::string_view::npos) return last_nl + 1;
    if (j == n) return j;
    if (count >= 2) return last;
    return j;
  }

  bool llama_;
  int max_digits_;
};

}  // namespace

std::unique_ptr<FastSplitter> make_fast_splitter(const std::string& pattern) {
  if (pattern == kGpt2Pattern) return std::make_unique<KnownSplitter>(false, 0);
  if (pattern == kLlama3Pattern) return std::make_unique<KnownSplitter>(true, 3);
  if (pattern == kQwen2Pattern) return std::make_unique<KnownSplitter>(true, 1);
  return nullptr;
}

// ---- split behaviours
// ----------------------------------------------------------------------------

void split_by_matches(const std::vector<std::pair<size_t, size_t>>& matches, size_t n,
                      SplitBehavior behavior, bool invert,
                      std::vector<std::pair<size_t, size_t>>& pieces) {
  // (offsets, is_match) over the whole text, as tokenizers' Pattern::find_matches gives them.
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> all;
  all.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (const auto& m : matches) {
    if (prev != m.first) all.push_back({{prev, m.first}, false});
    all.push_back({m, true});
    prev = m.second;
  }
  if (prev != n) all.push_back({{prev, n}, false});
  if (invert) {
    for (auto& a : all) a.second = !a.second;
  }
  std::vector<std::pair<size_t, size_t>> res;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& a : all) res.push_back(a.first);
      break;
    case SplitBehavior::Removed:
      for (const auto& a : all) {
        if (!a.second) res.push_back(a.first);
      }
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const auto& a : all) {
        if (a.second && !prev_match && !res.empty()) {
          res.back().second = a.first.second;
        } else {
          res.push_back(a.first);
        }
        prev_match = a.second;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        if (it->second && !prev_match && !res.empty()) {
          res.back().first = it->first.first;
        } else {
          res.push_back(it->first);
        }
        prev_match = it->second;
      }
      std::reverse(res.begin(), res.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool prev_match = false;
      for (const auto& a : all) {
        if (a.second == prev_match && !res.empty()) {
          res.back().second = a.first.second;
        } else {
          res.push_back(a.first);
        }
        prev_match = a.second;
      }
      break;
    }
  }
  for (const auto& r : res) {
    if (r.second > r.first) pieces.push_back(r);
  }
}

// ---- pre-tokenizers
// ------------------------------------------------------------------------------

namespace {

// Finds matches with the fast scanner when the pattern is a known one, else with PCRE2.
class Matcher {
 public:
  Matcher(const std::string& pattern, bool is_regex, const std::string& where) {
    if (!is_regex) {
      literal_ = pattern;
      is_literal_ = true;
      return;
    }
    fast_ = make_fast_splitter(pattern);
    if (!fast_) regex_ = std::make_unique<Regex>(pattern, where);
  }
  // True when every character belongs to a match (the known patterns), so that Isolated
  // splitting is the matches themselves.
  bool covers_all() const { return fast_ != nullptr; }
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
    if (fast_) {
      fast_->find_all(s, out);
    } else if (regex_) {
      regex_->find_all(s, out);
    } else if (!literal_.empty()) {
      for (size_t p = s.find(literal_); p != std::string_view::npos;
           p = s.find(literal_, p + literal_.size())) {
        out.emplace_back(p, p + literal_.size());
      }
    }
  }

 private:
  bool is_literal_ = false;
  std::string literal_;
  std::unique_ptr<FastSplitter> fast_;
  std::unique_ptr<Regex> regex_;
};

// Applies a matcher + behaviour to every span.
void split_spans(Pieces& p, const Matcher& m, SplitBehavior behavior, bool invert) {
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  spans.reserve(p.spans.size() * 4);
  std::vector<std::pair<size_t, size_t>> matches, pieces;
  const bool direct = m.covers_all() && behavior == SplitBehavior::Isolated && !invert;
  for (const auto& [b, e] : p.spans) {
    const std::string_view text(p.buf.data() + b, e - b);
    matches.clear();
    m.find_all(text, matches);
    const std::vector<std::pair<size_t, size_t>>* res = &matches;
    if (!direct) {
      pieces.clear();
      split_by_matches(matches, text.size(), behavior, invert, pieces);
      res = &pieces;
    }
    for (const auto& [mb, me] : *res) {
      spans.emplace_back(static_cast<uint32_t>(b + mb), static_cast<uint32_t>(b + me));
    }
  }
  p.spans.swap(spans);
}

SplitBehavior parse_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  TPI_FAIL(where << ": Split behavior '" << s << "' is not supported");
}

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void apply(Pieces& p, bool at_start) const override {
    for (const auto& part : parts_) part->apply(p, at_start);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPre : public PreTokenizer {
 public:
  SplitPre(const std::string& pattern, bool is_regex, SplitBehavior behavior, bool invert,
           const std::string& where)
      : matcher_(pattern, is_regex, where), behavior_(behavior), invert_(invert) {}
  void apply(Pieces& p, bool) const override { split_spans(p, matcher_, behavior_, invert_); }

 private:
  Matcher matcher_;
  SplitBehavior behavior_;
  bool invert_;
};

// Rebuilds buf from transformed pieces: fn(piece text, index, out buf, out spans).
template <typename Fn>
void rebuild(Pieces& p, Fn fn) {
  std::string buf;
  buf.reserve(p.buf.size() + p.spans.size() * 3);
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  spans.reserve(p.spans.size());
  for (size_t k = 0; k < p.spans.size(); ++k) {
    const auto [b, e] = p.spans[k];
    fn(std::string_view(p.buf.data() + b, e - b), b, buf, spans);
  }
  p.buf.swap(buf);
  p.spans.swap(spans);
}

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        matcher_(use_regex ? std::make_unique<Matcher>(kGpt2Pattern, true, "ByteLevel") : nullptr) {
  }
  void apply(Pieces& p, bool) const override {
    if (add_prefix_space_) {
      rebuild(p, [](std::string_view t, size_t, std::string& buf,
                    std::vector<std::pair<uint32_t, uint32_t>>& spans) {
        const auto b = static_cast<uint32_t>(buf.size());
        if (t.empty() || t[0] != ' ') buf.push_back(' ');
        buf.append(t);
        spans.emplace_back(b, static_cast<uint32_t>(buf.size()));
      });
    }
    if (matcher_) split_spans(p, *matcher_, SplitBehavior::Isolated, false);
  }
  bool is_byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Matcher> matcher_;
};

class MetaspacePre : public PreTokenizer {
 public:
  enum class Prepend { Always, Never, First };
  MetaspacePre(std::string rep, Prepend prepend, bool split)
      : rep_(std::move(rep)), prepend_(prepend), split_(split) {}
  void apply(Pieces& p, bool at_start) const override {
    const std::string& rep = rep_;
    const Prepend prepend = prepend_;
    rebuild(p, [&](std::string_view t, size_t orig_begin, std::string& buf,
                   std::vector<std::pair<uint32_t, uint32_t>>& spans) {
      std::string piece;
      piece.reserve(t.size() + rep.size());
      for (char ch : t) {
        if (ch == ' ') {
          piece += rep;
        } else {
          piece.push_back(ch);
        }
      }
      const bool starts = piece.compare(0, rep.size(), rep) == 0;
      if (!starts && (prepend == Prepend::Always ||
                      (prepend == Prepend::First && at_start && orig_begin == 0))) {
        piece.insert(0, rep);
      }
      const auto base = static_cast<uint32_t>(buf.size());
      buf += piece;
      if (!split_) {
        if (!piece.empty()) spans.emplace_back(base, static_cast<uint32_t>(buf.size()));
        return;
      }
      std::vector<std::pair<size_t, size_t>> matches, pieces;
      for (size_t q = piece.find(rep); q != std::string::npos;
           q = piece.find(rep, q + rep.size())) {
        matches.emplace_back(q, q + rep.size());
      }
      split_by_matches(matches, piece.size(), SplitBehavior::MergedWithNext, false, pieces);
      for (const auto& [b, e] : pieces) {
        spans.emplace_back(base + static_cast<uint32_t>(b), base + static_cast<uint32_t>(e));
      }
    });
  }

 private:
  std::string rep_;
  Prepend prepend_;
  bool split_;
};

// Splits with a per-character predicate: Removed (WhitespaceSplit) or Isolated/Contiguous
// (Digits).
template <typename Pred>
void split_chars(Pieces& p, Pred pred, SplitBehavior behavior) {
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  std::vector<std::pair<size_t, size_t>> matches, pieces;
  for (const auto& [b, e] : p.spans) {
    const std::string_view text(p.buf.data() + b, e - b);
    matches.clear();
    pieces.clear();
    for (size_t i = 0; i < text.size();) {
      const size_t start = i;
      const uint32_t cp = next_cp(text, i);
      if (pred(cp)) matches.emplace_back(start, i);
    }
    split_by_matches(matches, text.size(), behavior, false, pieces);
    for (const auto& [mb, me] : pieces) {
      spans.emplace_back(static_cast<uint32_t>(b + mb), static_cast<uint32_t>(b + me));
    }
  }
  p.spans.swap(spans);
}

class DigitsPre : public PreTokenizer {
 public:
  explicit DigitsPre(bool individual) : individual_(individual) {}
  void apply(Pieces& p, bool) const override {
    split_chars(
        p, [](uint32_t cp) { return (char_class(cp) & kClassNumber) != 0; },
        individual_ ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
  }

 private:
  bool individual_;
};

class WhitespaceSplitPre : public PreTokenizer {
 public:
  void apply(Pieces& p, bool) const override {
    split_chars(
        p, [](uint32_t cp) { return is_whitespace(cp); }, SplitBehavior::Removed);
  }
};

// Whitespace: the matches of \w+|[^\w\s]+ (Rust regex crate classes), whitespace dropped.
class WhitespacePre : public PreTokenizer {
 public:
  void apply(Pieces& p, bool) const override {
    std::vector<std::pair<uint32_t, uint32_t>> spans;
    for (const auto& [b, e] : p.spans) {
      const std::string_view text(p.buf.data() + b, e - b);
      int run_kind = -1;  // 0 word, 1 other
      size_t run_start = 0;
      for (size_t i = 0; i < text.size();) {
        const size_t start = i;
        const uint32_t cp = next_cp(text, i);
        const int kind = is_whitespace(cp) ? -1 : is_rust_word(cp) ? 0 : 1;
        if (kind != run_kind) {
          if (run_kind >= 0) spans.emplace_back(b + run_start, b + start);
          run_kind = kind;
          run_start = start;
        }
      }
      if (run_kind >= 0) spans.emplace_back(b + run_start, e);
    }
    p.spans.swap(spans);
  }
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where,
                                                 bool* byte_level) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    const auto& list = j.at("pretokenizers");
    for (size_t k = 0; k < list.size(); ++k) {
      bool bl = false;
      auto p = make_pre_tokenizer(list[k], where, &bl);
      TPI_CHECK(!bl || k + 1 == list.size(),
                where << ": a ByteLevel pre-tokenizer is supported only as the last of a Sequence");
      if (bl) *byte_level = true;
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePre>(std::move(parts));
  }
  if (type == "Split") {
    const auto& pat = j.at("pattern");
    const bool is_regex = pat.contains("Regex");
    TPI_CHECK(is_regex || pat.contains("String"),
              where << ": Split pattern must be {\"String\": ...} or {\"Regex\": ...}");
    const std::string pattern =
        is_regex ? pat.at("Regex").get<std::string>() : pat.at("String").get<std::string>();
    return std::make_unique<SplitPre>(pattern, is_regex,
                                      parse_behavior(j.value("behavior", "Isolated"), where),
                                      j.value("invert", false), where);
  }
  if (type == "ByteLevel") {
    *byte_level = true;
    return std::make_unique<ByteLevelPre>(j.value("add_prefix_space", true),
                                          j.value("use_regex", true));
  }
  if (type == "Metaspace") {
    std::string rep = j.value("replacement", std::string("\xE2\x96\x81"));
    MetaspacePre::Prepend prepend = MetaspacePre::Prepend::Always;
    if (j.contains("prepend_scheme")) {
      const std::string s = j.at("prepend_scheme").get<std::string>();
      if (s == "never") {
        prepend = MetaspacePre::Prepend::Never;
      } else if (s == "first") {
        prepend = MetaspacePre::Prepend::First;
      } else {
        TPI_CHECK(s == "always", where << ": Metaspace prepend_scheme '" << s << "' is unknown");
      }
    } else if (!j.value("add_prefix_space", true)) {
      prepend = MetaspacePre::Prepend::Never;
    }
    return std::make_unique<MetaspacePre>(std::move(rep), prepend, j.value("split", true));
  }
  if (type == "Digits") return std::make_unique<DigitsPre>(j.value("individual_digits", false));
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPre>();
  if (type == "Whitespace") return std::make_unique<WhitespacePre>();
  TPI_FAIL(where << ": pre_tokenizer type '" << type
                 << "' is not supported (supported: Sequence, Split, ByteLevel, Metaspace, Digits, "
                    "Whitespace, WhitespaceSplit)");
}

}  // namespace tpinfer::tok
