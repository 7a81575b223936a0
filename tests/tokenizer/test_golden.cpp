// Every corpus string encodes to exactly the ids Hugging Face tokenizers gives (with and without
// special tokens), and ids decode to exactly its text (with and without skip_special_tokens).
#include <catch2/catch.hpp>
#include <iostream>

#include "tok_test_util.h"

using tok_test::corpus;
using tok_test::escape;
using tok_test::golden;

namespace {

std::vector<int32_t> ids_of(const nlohmann::json& j) {
  return j.get<std::vector<int32_t>>();
}

// An entry's string: a corpus line ("i") or its own "text".
std::string text_of(const nlohmann::json& e) {
  return e.contains("text") ? e.at("text").get<std::string>()
                            : corpus().at(e.at("i").get<size_t>());
}

void check_encode(const std::string& name) {
  const auto& g = golden(name);
  const auto& tok = tok_test::tokenizer(g.at("tokenizer").get<std::string>());
  size_t ok_with = 0, ok_without = 0, n = 0;
  for (const auto& e : g.at("encode")) {
    const std::string text = text_of(e);
    const auto want = ids_of(e.at("ids"));
    const auto want_ns = e.contains("ids_no_special") ? ids_of(e.at("ids_no_special")) : want;
    INFO(name << " entry " << e.value("i", -1) << ": " << escape(text).substr(0, 200));
    const auto got = tok.encode(text, true);
    const auto got_ns = tok.encode(text, false);
    CHECK(got == want);
    CHECK(got_ns == want_ns);
    ok_with += got == want;
    ok_without += got_ns == want_ns;
    ++n;
  }
  std::cout << "golden " << name << ": encode with special " << ok_with << "/" << n
            << ", without special " << ok_without << "/" << n << "\n";
}

void check_decode(const std::string& name) {
  const auto& g = golden(name);
  const auto& tok = tok_test::tokenizer(g.at("tokenizer").get<std::string>());
  size_t ok = 0, n = 0;
  for (const auto& e : g.at("encode")) {
    const std::string text = text_of(e);
    const auto ids = ids_of(e.at("ids"));
    const std::string want = e.at("decode").is_null() ? text : e.at("decode").get<std::string>();
    const std::string want_skip =
        e.at("decode_skip").is_null() ? text : e.at("decode_skip").get<std::string>();
    INFO(name << " entry " << e.value("i", -1) << ": " << escape(text).substr(0, 200));
    const std::string got = tok.decode(ids, false), got_skip = tok.decode(ids, true);
    CHECK(escape(got) == escape(want));
    CHECK(escape(got_skip) == escape(want_skip));
    ok += (got == want) + (got_skip == want_skip);
    n += 2;
  }
  size_t rok = 0, rn = 0;
  for (const auto& e : g.at("decode_random")) {
    const auto ids = ids_of(e.at("ids"));
    INFO(name << " random ids " << e.at("ids").dump());
    const std::string got = tok.decode(ids, false), got_skip = tok.decode(ids, true);
    CHECK(escape(got) == escape(e.at("decode").get<std::string>()));
    CHECK(escape(got_skip) == escape(e.at("decode_skip").get<std::string>()));
    rok += (got == e.at("decode").get<std::string>()) +
           (got_skip == e.at("decode_skip").get<std::string>());
    rn += 2;
  }
  std::cout << "golden " << name << ": decode of corpus ids " << ok << "/" << n
            << ", decode of random ids " << rok << "/" << rn << "\n";
}

}  // namespace

TEST_CASE("golden encode: qwen3", "[tokenizer][golden]") {
  check_encode("qwen3");
}
TEST_CASE("golden encode: mistral", "[tokenizer][golden]") {
  check_encode("mistral");
}
TEST_CASE("golden encode: llama3", "[tokenizer][golden]") {
  check_encode("llama3");
}
TEST_CASE("golden encode: stories260K", "[tokenizer][golden]") {
  check_encode("stories260K");
}
TEST_CASE("golden encode: metaspace", "[tokenizer][golden]") {
  check_encode("metaspace");
}
TEST_CASE("golden encode: synthetic", "[tokenizer][golden]") {
  check_encode("synthetic");
}
TEST_CASE("golden decode: synthetic", "[tokenizer][golden]") {
  check_decode("synthetic");
}
TEST_CASE("golden encode: synthetic2", "[tokenizer][golden]") {
  check_encode("synthetic2");
}
TEST_CASE("golden decode: synthetic2", "[tokenizer][golden]") {
  check_decode("synthetic2");
}
TEST_CASE("golden decode: qwen3", "[tokenizer][golden]") {
  check_decode("qwen3");
}
TEST_CASE("golden decode: mistral", "[tokenizer][golden]") {
  check_decode("mistral");
}
TEST_CASE("golden decode: llama3", "[tokenizer][golden]") {
  check_decode("llama3");
}
TEST_CASE("golden decode: stories260K", "[tokenizer][golden]") {
  check_decode("stories260K");
}
TEST_CASE("golden decode: metaspace", "[tokenizer][golden]") {
  check_decode("metaspace");
}
