// Normalizers of tokenizer.json: Sequence, NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace, Strip.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void apply(std::string& s) const override {
    for (const auto& p : parts_) p->apply(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormForm form) : form_(form) {}
  void apply(std::string& s) const override {
    std::string out;
    if (normalize_unicode(s, form_, out)) s.swap(out);
  }

 private:
  NormForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void apply(std::string& s) const override { s = to_lower(s); }
};

// Prepend: only a non-empty string gets the prefix.
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prefix_(std::move(p)) {}
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string pattern, bool is_regex, std::string content,
                    const std::string& where)
      : pattern_(std::move(pattern)), content_(std::move(content)) {
    if (is_regex) regex_ = std::make_unique<Regex>(pattern_, where);
  }
  void apply(std::string& s) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    if (regex_) {
      regex_->find_all(s, matches);
    } else {
      if (pattern_.empty()) return;
      for (size_t pos = s.find(pattern_); pos != std::string::npos;
           pos = s.find(pattern_, pos + pattern_.size())) {
        matches.emplace_back(pos, pos + pattern_.size());
      }
    }
    if (matches.empty()) return;
    std::string out;
    out.reserve(s.size() + matches.size() * content_.size());
    size_t prev = 0;
    for (const auto& [b, e] : matches) {
      out.append(s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    s.swap(out);
  }

 private:
  std::string pattern_;
  std::string content_;
  std::unique_ptr<Regex> regex_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_whitespace(next_cp(s, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_whitespace(next_cp(s, i))) break;
        e = start;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

std::string pattern_of(const nlohmann::json& pat, bool& is_regex, const std::string& where) {
  TPI_CHECK(pat.is_object(), where << ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
  if (pat.contains("String")) {
    is_regex = false;
    return pat.at("String").get<std::string>();
  }
  TPI_CHECK(pat.contains("Regex"),
            where << ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
  is_regex = true;
  return pat.at("Regex").get<std::string>();
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& n : j.at("normalizers")) {
      if (auto p = make_normalizer(n, where)) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormForm::NFC);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormForm::NFD);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormForm::NFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormForm::NFKD);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(j.at("prepend").get<std::string>());
  if (type == "Replace") {
    bool is_regex = false;
    std::string pat = pattern_of(j.at("pattern"), is_regex, where);
    return std::make_unique<ReplaceNormalizer>(std::move(pat), is_regex,
                                               j.at("content").get<std::string>(), where);
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(j.value("strip_left", true),
                                             j.value("strip_right", true));
  }
  TPI_FAIL(where << ": normalizer type '" << type
                 << "' is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, "
                    "Prepend, Replace, Strip)");
}

}  // namespace tpinfer::tok
