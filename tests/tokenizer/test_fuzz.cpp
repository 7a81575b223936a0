// Fuzz-style tests: random bytes and random Unicode never crash, encode/decode round-trips where
// the tokenizer is lossless, streaming always equals the full decode, and the hand-written
// scanner for the GPT-2 / Llama-3 / Qwen2 split patterns agrees with PCRE2 running the pattern.
#include <catch2/catch.hpp>
#include <iostream>
#include <random>

#include "tok_test_util.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_util.h"

using tok_test::escape;
namespace tk = tpinfer::tok;

namespace {

const char* const kDirs[] = {"configs/tokenizers/qwen3", "configs/tokenizers/mistral",
                             "configs/tokenizers/llama3", "configs/models/stories260K"};

uint32_t random_cp(std::mt19937& rng) {
  static const uint32_t spaces[] = {' ',    ' ',    ' ',    '\t',   '\n',   '\r',
                                    0x0B,   0x0C,   0x85,   0xA0,   0x1680, 0x2000,
                                    0x2028, 0x202F, 0x3000, 0x180E, 0x200B};
  static const uint32_t marks[] = {0x300,   0x301,  0x308,  0x323,  0x35C,  0x200D, 0xFE0F,
                                   0x1F3FD, 0x0E31, 0x093F, 0x094D, 0x064E, 0x3099};
  static const uint32_t letters[] = {
      'a',    'Z',    's',    'S',    'l',    'L',     'r',     'e',    'v',     'd',
      't',    'm',    0x17F,  0x212A, 0xDF,   0xE9,    0x4E2D,  0x65E5, 0xAC00,  0x1100,
      0x1161, 0x11A8, 0x0627, 0x0928, 0x0E2A, 0x1F600, 0x1F1E9, 0x1C89, 0x11F00, 0x105C0};
  std::uniform_int_distribution<int> kind(0, 9);
  switch (kind(rng)) {
    case 0:
    case 1:
      return spaces[rng() % (sizeof spaces / sizeof spaces[0])];
    case 2:
      return marks[rng() % (sizeof marks / sizeof marks[0])];
    case 3:
    case 4:
      return letters[rng() % (sizeof letters / sizeof letters[0])];
    case 5:
      return static_cast<uint32_t>('0' + rng() % 10);
    case 6:
      return static_cast<uint32_t>("!\"#$%&'()*+,-./:;=?@[\\]^_`{|}~"[rng() % 30]);
    case 7:
      return static_cast<uint32_t>(0x20 + rng() % 0x5F);
    default: {
      for (;;) {  // anything but surrogates
        const uint32_t cp = 1 + rng() % 0x10FFFF;
        if (cp < 0xD800 || cp > 0xDFFF) return cp;
      }
    }
  }
}

std::string random_text(std::mt19937& rng, size_t max_chars) {
  std::string s;
  const size_t n = rng() % (max_chars + 1);
  for (size_t k = 0; k < n; ++k) tk::append_utf8(s, random_cp(rng));
  return s;
}

std::string random_bytes(std::mt19937& rng, size_t max_len) {
  std::string s(rng() % (max_len + 1), '\0');
  for (auto& c : s) c = static_cast<char>(rng() % 256);
  return s;
}

std::string stream_all(const tpinfer::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  tpinfer::StreamDecoder sd(tok, skip);
  std::string out;
  for (int32_t id : ids) out += sd.push(id);
  return out + sd.flush();
}

}  // namespace

TEST_CASE("fuzz: random bytes never crash and stream like they decode", "[tokenizer][fuzz]") {
  std::mt19937 rng(12345);
  for (const char* dir : kDirs) {
    const auto& tok = tok_test::tokenizer(dir);
    for (int k = 0; k < 300; ++k) {
      const std::string s = random_bytes(rng, 64);
      INFO(dir << " bytes " << escape(s));
      std::vector<int32_t> ids;
      REQUIRE_NOTHROW(ids = tok.encode(s, true));
      const std::string text = tok.decode(ids, false);
      CHECK(tk::is_valid_utf8(text));
      CHECK(stream_all(tok, ids, false) == text);
      // Invalid UTF-8 is read as from_utf8_lossy reads it.
      CHECK(tok.encode(tk::utf8_lossy(s), true) == ids);
    }
  }
}

TEST_CASE("fuzz: random Unicode round-trips through encode and decode", "[tokenizer][fuzz]") {
  std::mt19937 rng(777);
  size_t checked = 0;
  for (const char* dir : kDirs) {
    const auto& tok = tok_test::tokenizer(dir);
    const bool nfc = std::string(dir).find("qwen3") != std::string::npos;
    for (int k = 0; k < 400; ++k) {
      std::string s = random_text(rng, 40);
      // Text that spells an added token (all of them start with '<' here) is not a round trip.
      std::replace(s.begin(), s.end(), '<', '(');
      std::string want = s;
      if (nfc) tk::normalize_unicode(s, tk::NormForm::NFC, want);
      INFO(dir << " text " << escape(s));
      const auto ids = tok.encode(s, false);
      CHECK(escape(tok.decode(ids, false)) == escape(want));
      CHECK(stream_all(tok, ids, true) == tok.decode(ids, true));
      ++checked;
    }
  }
  std::cout << "fuzz: " << checked << " random Unicode strings round-tripped\n";
}

TEST_CASE("fuzz: random ids stream like they decode", "[tokenizer][fuzz]") {
  std::mt19937 rng(4242);
  for (const char* dir : kDirs) {
    const auto& tok = tok_test::tokenizer(dir);
    for (int k = 0; k < 200; ++k) {
      std::vector<int32_t> ids;
      const size_t n = rng() % 40;
      while (ids.size() < n) {
        const auto id = static_cast<int32_t>(rng() % static_cast<uint32_t>(tok.vocab_size()));
        try {
          tok.id_to_token(id);
          ids.push_back(id);
        } catch (const tpinfer::Error&) {  // a hole in the id space
        }
      }
      INFO(dir << " ids " << nlohmann::json(ids).dump());
      for (bool skip : {false, true}) CHECK(stream_all(tok, ids, skip) == tok.decode(ids, skip));
    }
  }
}

TEST_CASE("fuzz: the split-pattern scanner agrees with PCRE2", "[tokenizer][fuzz]") {
  const char* patterns[] = {
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
  };
  std::mt19937 rng(99);
  for (const char* p : patterns) {
    auto fast = tk::make_fast_splitter(p);
    REQUIRE(fast);
    tk::Regex re(p, "test");
    for (int k = 0; k < 3000; ++k) {
      const std::string s = random_text(rng, 30);
      std::vector<std::pair<size_t, size_t>> a, b;
      fast->find_all(s, a);
      re.find_all(s, b);
      INFO("pattern " << p << " text " << escape(s));
      REQUIRE(a == b);
    }
  }
}
