// Private to src/tokenizer: a minimal JSON scanner for the big parts of tokenizer.json (model.vocab
// with 150k entries and model.merges with 150k-280k pairs). Building an nlohmann DOM for those
// and copying out of it took most of the load time; the scanner streams them straight into the
// model's tables. Everything else still goes through nlohmann (parsed from the value's text).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpinfer::tok {

class JsonScanner {
 public:
  JsonScanner(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}

  void skip_ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\r' || s_[p_] == '\t'))
      ++p_;
  }
  char peek() {
    skip_ws();
    return p_ < s_.size() ? s_[p_] : '\0';
  }
  bool consume(char c) {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  void expect(char c);
  bool at_end() {
    skip_ws();
    return p_ >= s_.size();
  }

  // Parses the string at the cursor (which must be '"') into out, decoding escapes.
  void string(std::string& out);
  int64_t integer();
  // Skips the value at the cursor and returns its text.
  std::string_view value();

  // Calls on_member(key) for each member of the object at the cursor; on_member must consume
  // the value.
  template <typename F>
  void object(F&& on_member) {
    expect('{');
    if (consume('}')) return;
    std::string key;
    do {
      string(key);
      expect(':');
      on_member(key);
    } while (consume(','));
    expect('}');
  }
  // Calls on_element() for each element of the array at the cursor; it must consume the value.
  template <typename F>
  void array(F&& on_element) {
    expect('[');
    if (consume(']')) return;
    do {
      on_element();
    } while (consume(','));
    expect(']');
  }

  // The members of the object at the cursor as (key, value text).
  std::vector<std::pair<std::string, std::string_view>> members();

  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::string_view s_;
  size_t p_ = 0;
  std::string where_;
};

}  // namespace tpinfer::tok
