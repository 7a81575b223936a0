// Unit tests: UTF-8 helpers with Rust's semantics, loading errors, ids out of range.
#include <catch2/catch.hpp>
#include <chrono>
#include <iostream>

#include "tok_test_util.h"
#include "tokenizer/unicode_util.h"

namespace tk = tpinfer::tok;

TEST_CASE("utf8_lossy replaces maximal invalid subparts like from_utf8_lossy",
          "[tokenizer][unit]") {
  const std::string R = "\xEF\xBF\xBD";
  CHECK(tk::utf8_lossy("abc") == "abc");
  CHECK(tk::utf8_lossy("\xE4\xB8"
                       "A") == R + "A");                       // cut 3-byte char: one U+FFFD
  CHECK(tk::utf8_lossy("\xF0\x9F\x98") == R);                  // cut 4-byte char at the end
  CHECK(tk::utf8_lossy("\xC0\x80") == R + R);                  // overlong: each byte
  CHECK(tk::utf8_lossy("\xED\xA0\x80") == R + R + R);          // surrogate: each byte
  CHECK(tk::utf8_lossy("\x80\xBF") == R + R);                  // lone continuation bytes
  CHECK(tk::utf8_lossy("\xF4\x90\x80\x80") == R + R + R + R);  // above U+10FFFF
  CHECK(tk::utf8_lossy("\xE0\xA0") == R);
  CHECK(tk::utf8_lossy("\xFF"
                       "a\xE4\xB8\xAD") == R + "a\xE4\xB8\xAD");
}

TEST_CASE("incomplete_utf8_tail finds a character cut at the end", "[tokenizer][unit]") {
  CHECK(tk::incomplete_utf8_tail("ab") == 0);
  CHECK(tk::incomplete_utf8_tail("a\xE4") == 1);
  CHECK(tk::incomplete_utf8_tail("a\xE4\xB8") == 2);
  CHECK(tk::incomplete_utf8_tail("a\xE4\xB8\xAD") == 0);
  CHECK(tk::incomplete_utf8_tail("\xF0\x9F\x98") == 3);
  CHECK(tk::incomplete_utf8_tail("\xE4"
                                 "A") == 0);
  CHECK(tk::incomplete_utf8_tail("\x80") == 0);      // invalid, not cut: final
  CHECK(tk::incomplete_utf8_tail("\xC0") == 0);      // never valid
  CHECK(tk::incomplete_utf8_tail("\xED\xA0") == 0);  // surrogate prefix: already invalid
}

TEST_CASE("load errors name the file and what is wrong", "[tokenizer][unit]") {
  CHECK_THROWS_WITH(tpinfer::Tokenizer::from_dir("/nonexistent/dir"),
                    Catch::Contains("/nonexistent/dir/tokenizer.json not found"));
  const std::string dir = std::string(TPINFER_BUILD_DIR) + "/tokenizer_test_tmp";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& text) {
    std::ofstream(dir + "/tokenizer.json") << text;
    std::filesystem::remove(dir + "/tokenizer_config.json");
  };
  write("{not json");
  CHECK_THROWS_WITH(tpinfer::Tokenizer::from_dir(dir), Catch::Contains("not valid JSON"));
  write(R"({"model": {"type": "WordPiece", "vocab": {}}})");
  CHECK_THROWS_WITH(tpinfer::Tokenizer::from_dir(dir),
                    Catch::Contains("model type 'WordPiece' is not supported"));
  write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
            "pre_tokenizer": {"type": "BertPreTokenizer"}})");
  CHECK_THROWS_WITH(tpinfer::Tokenizer::from_dir(dir),
                    Catch::Contains("pre_tokenizer type 'BertPreTokenizer' is not supported"));
  write(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})");
  CHECK_THROWS_WITH(tpinfer::Tokenizer::from_dir(dir),
                    Catch::Contains("which is not in the vocabulary"));
  write(
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}})");
  auto tok = tpinfer::Tokenizer::from_dir(dir);
  CHECK(tok->encode("abba", false) == std::vector<int32_t>{2, 1, 0});
  CHECK(tok->decode({2, 1}) == "ab b");  // no decoder: tokens joined by spaces, as tokenizers does
  CHECK_FALSE(tok->has_chat_template());
}

TEST_CASE("ids out of range are errors", "[tokenizer][unit]") {
  const auto& tok = tok_test::tokenizer("configs/tokenizers/mistral");
  CHECK(tok.vocab_size() == 32000);
  CHECK_THROWS_WITH(tok.decode({1, 32000}), Catch::Contains("id 32000 is out of range [0, 32000)"));
  CHECK_THROWS_AS(tok.decode({-1}), tpinfer::Error);
  CHECK_THROWS_AS(tok.id_to_token(40000), tpinfer::Error);
}

TEST_CASE("special tokens, BOS and EOS from tokenizer_config.json", "[tokenizer][unit]") {
  const auto& qwen = tok_test::tokenizer("configs/tokenizers/qwen3");
  CHECK(qwen.vocab_size() == 151669);
  CHECK(qwen.eos_ids() == std::vector<int32_t>{151645});  // <|im_end|>
  CHECK_FALSE(qwen.bos_id().has_value());
  CHECK(qwen.is_special(151643));
  CHECK_FALSE(qwen.is_special(151667));  // <think> is added but not special
  CHECK(qwen.token_to_id("<think>") == 151667);
  CHECK(qwen.id_to_token(9707) == "Hello");
  const auto& mistral = tok_test::tokenizer("configs/tokenizers/mistral");
  CHECK(mistral.bos_id() == 1);
  CHECK(mistral.eos_ids() == std::vector<int32_t>{2});
  const auto& llama = tok_test::tokenizer("configs/tokenizers/llama3");
  CHECK(llama.bos_id() == 128000);
  CHECK(llama.eos_ids() == std::vector<int32_t>{128001});
  CHECK(llama.vocab_size() == 128256);
}

TEST_CASE("the Qwen3 tokenizer.json loads in well under a second", "[tokenizer][unit]") {
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = tpinfer::Tokenizer::from_dir(tok_test::repo("configs/tokenizers/qwen3"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "load qwen3 tokenizer.json: " << s << " s\n";
  CHECK(s < 2.0);  // generous: shared CI machines; the measured time is printed
}

TEST_CASE("normalisation follows tokenizers' Unicode data, not utf8proc's", "[tokenizer][unit]") {
  auto nf = [](const std::string& s, tk::NormForm f) {
    std::string out;
    return tk::normalize_unicode(s, f, out) ? out : s;
  };
  // Dives Akuru vowel sign O: utf8proc (Unicode 15) composes / decomposes it, tokenizers does not.
  const std::string o = "\xF0\x91\xA4\xB8", parts = "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0";
  CHECK(nf(parts, tk::NormForm::NFC) == parts);
  CHECK(nf(o, tk::NormForm::NFC) == o);
  CHECK(nf(o, tk::NormForm::NFD) == o);
  CHECK(nf("e\xCC\x81" + parts + "x", tk::NormForm::NFKC) == "\xC3\xA9" + parts + "x");
  // SQUARE ERA NAME REIWA has no compatibility decomposition in tokenizers.
  CHECK(nf("\xE3\x8B\xBF\xCC\x81", tk::NormForm::NFKC) == "\xE3\x8B\xBF\xCC\x81");
  // Ordinary cases: composition, Hangul, singletons, compatibility.
  CHECK(nf("Cafe\xCC\x81", tk::NormForm::NFC) == "Caf\xC3\xA9");
  CHECK(nf("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", tk::NormForm::NFC) == "\xEA\xB0\x81");
  CHECK(nf("\xE2\x84\xAB", tk::NormForm::NFC) == "\xC3\x85");  // ANGSTROM SIGN
  CHECK(nf("\xEF\xAC\x81", tk::NormForm::NFKC) == "fi");
  // Lowercase: Unicode 16 pairs that utf8proc 2.8 does not know, and U+0130.
  CHECK(tk::to_lower("\xE1\xB2\x89") == "\xE1\xB2\x8A");
  CHECK(tk::to_lower("\xC4\xB0") == "i\xCC\x87");
  CHECK(tk::to_lower("\xCE\xA3\xCE\x91\xCE\xA3") == "\xCF\x83\xCE\xB1\xCF\x83");  // no final sigma
}
