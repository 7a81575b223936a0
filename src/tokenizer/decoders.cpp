// Decoders of tokenizer.json: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

namespace {

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void apply(std::vector<std::string>& t, bool keep_trailing) const override {
    for (const auto& p : parts_) p->apply(t, keep_trailing);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// Byte-level: every token's characters back to bytes (a token with a character outside the table
// contributes its own UTF-8), all joined into one token. from_utf8_lossy is left to the caller.
class ByteLevelDecoder : public Decoder {
 public:
  void apply(std::vector<std::string>& t, bool keep_trailing) const override {
    std::string out;
    for (const auto& tok : t) {
      const size_t mark = out.size();
      bool ok = true;
      for (size_t i = 0; i < tok.size();) {
        const uint32_t cp = next_cp(tok, i);
        const int b = unicode_to_byte(cp);
        if (b < 0) {
          ok = false;
          break;
        }
        out.push_back(static_cast<char>(b));
      }
      if (!ok) {
        out.resize(mark);
        out += tok;
      }
    }
    t.assign(1, std::move(out));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string pattern, bool is_regex, std::string content, const std::string& where)
      : pattern_(std::move(pattern)), content_(std::move(content)) {
    if (is_regex) regex_ = std::make_unique<Regex>(pattern_, where);
  }
  void apply(std::vector<std::string>& t, bool keep_trailing) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    for (auto& tok : t) {
      matches.clear();
      if (regex_) {
        regex_->find_all(tok, matches);
      } else if (!pattern_.empty()) {
        for (size_t p = tok.find(pattern_); p != std::string::npos;
             p = tok.find(pattern_, p + pattern_.size())) {
          matches.emplace_back(p, p + pattern_.size());
        }
      }
      if (matches.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : matches) {
        out.append(tok, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(tok, prev, std::string::npos);
      tok.swap(out);
    }
  }

 private:
  std::string pattern_, content_;
  std::unique_ptr<Regex> regex_;
};

// "<0xNN>" -> the byte, else -1.
int byte_token(const std::string& tok) {
  if (tok.size() != 6 || tok.compare(0, 3, "<0x") != 0 || tok[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int h = hex(tok[3]), l = hex(tok[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

// Consecutive <0xNN> tokens become their bytes when those are valid UTF-8, else one U+FFFD per
// byte.
class ByteFallbackDecoder : public Decoder {
 public:
  void apply(std::vector<std::string>& t, bool keep_trailing) const override {
    std::vector<std::string> out;
    out.reserve(t.size());
    std::string bytes;
    size_t count = 0;
    auto flush = [&] {
      if (count == 0) return;
      if (is_valid_utf8(bytes)) {
        out.push_back(bytes);
      } else {
        for (size_t k = 0; k < count; ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      bytes.clear();
      count = 0;
    };
    for (auto& tok : t) {
      const int b = byte_token(tok);
      if (b >= 0) {
        bytes.push_back(static_cast<char>(b));
        ++count;
      } else {
        flush();
        out.push_back(std::move(tok));
      }
    }
    flush();
    t.swap(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void apply(std::vector<std::string>& t, bool keep_trailing) const override {
    std::string out;
    for (const auto& tok : t) out += tok;
    t.assign(1, std::move(out));
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(uint32_t content, size_t start, size_t stop, bool whole_text)
      : content_(content), start_(start), stop_(stop), whole_text_(whole_text) {}
  void apply(std::vector<std::string>& t, bool keep_trailing) const override {
    for (auto& tok : t) {
      std::vector<size_t> starts;  // byte offset of each char
      for (size_t i = 0; i < tok.size();) {
        starts.push_back(i);
        next_cp(tok, i);
      }
      const size_t nchars = starts.size();
      auto cp_at = [&](size_t k) {
        size_t i = starts[k];
        return next_cp(tok, i);
      };
      size_t start_cut = 0;
      for (size_t k = 0; k < start_ && k < nchars; ++k) {
        if (cp_at(k) != content_) break;
        start_cut = k + 1;
      }
      size_t stop_cut = nchars;
      const size_t stop = keep_trailing && whole_text_ ? 0 : stop_;
      for (size_t k = 0; k < stop && k < nchars; ++k) {
        const size_t idx = nchars - k - 1;
        if (cp_at(idx) != content_) break;
        stop_cut = idx;
      }
      if (start_cut >= stop_cut) {
        tok.clear();
        continue;
      }
      const size_t b = start_cut < nchars ? starts[start_cut] : tok.size();
      const size_t e = stop_cut < nchars ? starts[stop_cut] : tok.size();
      tok = tok.substr(b, e - b);
    }
  }

 private:
  uint32_t content_;
  size_t start_, stop_;
  bool whole_text_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string rep, bool strip_first)
      : rep_(std::move(rep)), strip_first_(strip_first) {}
  void apply(std::vector<std::string>& t, bool keep_trailing) const override {
    for (size_t k = 0; k < t.size(); ++k) {
      std::string& tok = t[k];
      std::string out;
      out.reserve(tok.size());
      for (size_t p = 0; p < tok.size();) {
        if (tok.compare(p, rep_.size(), rep_) == 0) {
          if (!(k == 0 && strip_first_)) out.push_back(' ');
          p += rep_.size();
        } else {
          out.push_back(tok[p++]);
        }
      }
      tok.swap(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

std::string pattern_of(const nlohmann::json& pat, bool& is_regex, const std::string& where) {
  TPI_CHECK(pat.is_object() && (pat.contains("String") || pat.contains("Regex")),
            where << ": decoder pattern must be {\"String\": ...} or {\"Regex\": ...}");
  is_regex = pat.contains("Regex");
  return is_regex ? pat.at("Regex").get<std::string>() : pat.at("String").get<std::string>();
}

}  // namespace

int byte_fallback_value(const std::string& tok) {
  return byte_token(tok);
}

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where,
                                      DecoderTraits& traits) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& d : j.at("decoders")) {
      if (auto p = make_decoder(d, where, traits)) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel") {
    traits.fused = true;
    return std::make_unique<ByteLevelDecoder>();
  }
  if (type == "Replace") {
    bool is_regex = false;
    std::string pat = pattern_of(j.at("pattern"), is_regex, where);
    return std::make_unique<ReplaceDecoder>(std::move(pat), is_regex,
                                            j.at("content").get<std::string>(), where);
  }
  if (type == "ByteFallback") {
    traits.byte_fallback = true;
    return std::make_unique<ByteFallbackDecoder>();
  }
  if (type == "Fuse") {
    traits.fused = true;
    return std::make_unique<FuseDecoder>();
  }
  if (type == "Strip") {
    const std::string content = j.at("content").get<std::string>();
    size_t i = 0;
    TPI_CHECK(!content.empty(), where << ": Strip decoder needs a one-character content");
    const uint32_t cp = next_cp(content, i);
    // Before a Fuse the strip is per token and streaming needs nothing; after it, it applies to
    // the start and end of the whole text.
    if (traits.fused) {
      traits.strip_start = std::max(traits.strip_start, j.value("start", size_t{0}));
      traits.strip_stop = std::max(traits.strip_stop, j.value("stop", size_t{0}));
      traits.strip_content = content.substr(0, i);
    }
    return std::make_unique<StripDecoder>(cp, j.value("start", size_t{0}),
                                          j.value("stop", size_t{0}), traits.fused);
  }
  if (type == "Metaspace") {
    bool strip_first = true;
    if (j.contains("prepend_scheme")) {
      strip_first = j.at("prepend_scheme").get<std::string>() != "never";
    } else {
      strip_first = j.value("add_prefix_space", true);
    }
    return std::make_unique<MetaspaceDecoder>(j.value("replacement", std::string("\xE2\x96\x81")),
                                              strip_first);
  }
  TPI_FAIL(where << ": decoder type '" << type
                 << "' is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, "
                    "Fuse, Strip, Metaspace)");
}

}  // namespace tpinfer::tok
