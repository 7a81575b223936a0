// StreamDecoder: the concatenation of every push() and flush() equals decode(all ids), for every
// golden id sequence (corpus and random ids, which cut UTF-8 and mix byte tokens and specials),
// with and without skipping special tokens; no push returns a cut character.
#include <catch2/catch.hpp>
#include <iostream>

#include "tok_test_util.h"
#include "tokenizer/unicode_util.h"

using tok_test::escape;
using tok_test::golden;

namespace {

// Returns true when the streamed text equals the full decode.
bool stream_matches(const tpinfer::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  tpinfer::StreamDecoder sd(tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = sd.push(id);
    CHECK(tpinfer::tok::is_valid_utf8(piece));
    streamed += piece;
  }
  streamed += sd.flush();
  const std::string full = tok.decode(ids, skip);
  CHECK(escape(streamed) == escape(full));
  return streamed == full;
}

void check_stream(const std::string& name) {
  const auto& g = golden(name);
  const auto& tok = tok_test::tokenizer(g.at("tokenizer").get<std::string>());
  size_t ok = 0, n = 0;
  for (const char* section : {"encode", "decode_random"}) {
    for (const auto& e : g.at(section)) {
      const auto ids = e.at("ids").get<std::vector<int32_t>>();
      INFO(name << " " << section << " ids " << e.at("ids").dump().substr(0, 300));
      for (bool skip : {false, true}) {
        ok += stream_matches(tok, ids, skip);
        ++n;
      }
    }
  }
  std::cout << "stream " << name << ": " << ok << "/" << n
            << " id sequences stream to the full decode\n";
}

}  // namespace

TEST_CASE("stream decode equals full decode: qwen3", "[tokenizer][stream]") {
  check_stream("qwen3");
}
TEST_CASE("stream decode equals full decode: mistral", "[tokenizer][stream]") {
  check_stream("mistral");
}
TEST_CASE("stream decode equals full decode: llama3", "[tokenizer][stream]") {
  check_stream("llama3");
}
TEST_CASE("stream decode equals full decode: stories260K", "[tokenizer][stream]") {
  check_stream("stories260K");
}
TEST_CASE("stream decode equals full decode: metaspace", "[tokenizer][stream]") {
  check_stream("metaspace");
}

TEST_CASE("stream decode equals full decode: synthetic", "[tokenizer][stream]") {
  check_stream("synthetic");
}

TEST_CASE("stream decode equals full decode: synthetic2", "[tokenizer][stream]") {
  check_stream("synthetic2");
}

TEST_CASE("stream decode holds a cut character and byte-fallback groups", "[tokenizer][stream]") {
  // Qwen3 (byte-level): "中" is three bytes; a token for its first byte alone emits nothing.
  const auto& qwen = tok_test::tokenizer("configs/tokenizers/qwen3");
  {
    auto byte_token = [&](uint8_t b) {
      std::string s;
      tpinfer::tok::append_utf8(s, tpinfer::tok::byte_to_unicode(b));
      const auto id = qwen.token_to_id(s);
      REQUIRE(id);
      return *id;
    };
    const int32_t lead = byte_token(0xE4);
    tpinfer::StreamDecoder sd(qwen);
    CHECK(sd.push(lead).empty());
    CHECK(sd.push(byte_token(0xB8)).empty());
    CHECK(sd.push(byte_token(0xAD)) == "\xE4\xB8\xAD");
    CHECK(sd.flush().empty());
    // A cut character at the end is flushed as U+FFFD, as the full decode gives it.
    CHECK(sd.push(lead).empty());
    CHECK(sd.flush() == "\xEF\xBF\xBD");
  }
  // stories260K (byte fallback): <0xE4><0xB8><0xAD> is held until the group ends.
  const auto& st = tok_test::tokenizer("configs/models/stories260K");
  {
    tpinfer::StreamDecoder sd(st);
    const auto hello = st.encode("Hello", false);
    std::string out;
    for (int32_t id : hello) out += sd.push(id);
    CHECK(out == "Hello");
    CHECK(sd.push(*st.token_to_id("<0xE4>")).empty());
    CHECK(sd.push(*st.token_to_id("<0xB8>")).empty());
    CHECK(sd.push(*st.token_to_id("<0xAD>")).empty());
    CHECK(sd.push(*st.token_to_id("\xE2\x96\x81")) == "\xE4\xB8\xAD ");
    CHECK(sd.flush().empty());
  }
  // Skipped specials do not break the leading-space rule.
  {
    tpinfer::StreamDecoder sd(st, true);
    std::string out = sd.push(1);
    for (int32_t id : st.encode("Hi there", false)) out += sd.push(id);
    out += sd.push(2);
    for (int32_t id : st.encode("again", false)) out += sd.push(id);
    out += sd.flush();
    std::vector<int32_t> all = {1};
    for (int32_t id : st.encode("Hi there", false)) all.push_back(id);
    all.push_back(2);
    for (int32_t id : st.encode("again", false)) all.push_back(id);
    CHECK(out == st.decode(all, true));
  }
  // An id out of range throws and leaves the decoder usable.
  {
    tpinfer::StreamDecoder sd(st);
    CHECK_THROWS_AS(sd.push(100000), tpinfer::Error);
    const int32_t h = st.encode("Hi", false).at(0);
    CHECK(sd.push(h) == st.decode({h}));
  }
}

TEST_CASE("stream decode holds back what a trailing Strip may remove", "[tokenizer][stream]") {
  const std::string dir = std::string(TPINFER_BUILD_DIR) + "/tokenizer_test_strip";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json") << R"({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, " ": 2, "<0x41>": 3}, "merges": []},
    "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 2}]}})";
  std::filesystem::remove(dir + "/tokenizer_config.json");
  const auto tok = tpinfer::Tokenizer::from_dir(dir);
  const std::vector<std::vector<int32_t>> cases = {
      {2, 0, 2, 2, 1, 2, 2, 2}, {0, 2}, {2, 2, 2}, {3, 2, 3, 2, 2}, {0, 2, 2, 3, 3, 2, 0}};
  for (const auto& ids : cases) {
    tpinfer::StreamDecoder sd(*tok, false);
    std::string out;
    for (int32_t id : ids) out += sd.push(id);
    out += sd.flush();
    INFO(nlohmann::json(ids).dump());
    CHECK(out == tok->decode(ids));
  }
  CHECK(tok->decode({2, 0, 2, 2, 2}) == "a ");  // one leading and two trailing spaces go
}
