// Structured output: a JSON Schema (the supported subset) compiled into a byte-level pushdown
// automaton, and the automaton's state. The state is a set of stacks of frames (anyOf, enum and
// object keys branch; a byte that a stack cannot take drops it), so "does this byte string keep
// the output a valid prefix?" is answered byte by byte without backtracking or re-parsing. The
// token mask (grammar_processor.h) walks a trie of the vocabulary with this state.
//
// Supported: type (one or a list) object / array / string / number / integer / boolean / null;
// properties, required, additionalProperties (false, true or a schema: free keys only on an
// object without properties); items, minItems, maxItems; minLength, maxLength; enum, const;
// anyOf (oneOf is read as anyOf); allOf of one schema; $ref to #/$defs/... or
// #/definitions/... (recursion included); annotations (title, description, default, examples,
// $schema, $id, $comment) are ignored. Anything else is refused with SchemaError naming it.
// Output: properties in any order, each at most once; whitespace between tokens bounded
// (kMaxWhitespace bytes per gap); numbers bounded (15 integer and 15 fraction digits, exponent
// of 2 digits); nesting bounded (kMaxDepth frames); strings are valid UTF-8 by lead/continuation
// bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer::structured {

constexpr int kMaxWhitespace = 16;  // bytes of whitespace in one gap between JSON tokens
constexpr int kMaxDepth = 40;       // frames in one stack (about half as many nesting levels)
constexpr int kMaxProperties = 64;  // properties of one object schema (a bit mask of seen keys)

// A schema the compiler refuses. path: where, as a JSON pointer into the schema ("" = the root,
// "/properties/age/minimum"); the message names the keyword and what is supported.
class SchemaError : public std::runtime_error {
 public:
  SchemaError(std::string path, const std::string& message);
  std::string path;
};

// One schema node of the compiled grammar.
struct GrammarNode {
  enum Kind : uint8_t { object, array, string, number, integer, literal, any_of };
  Kind kind = any_of;
  // object: declared properties (their JSON-encoded keys as literal nodes, their value nodes)
  std::vector<uint32_t> key_literal, value;
  uint64_t required = 0;    // bit i: property i is required
  int32_t additional = -1;  // value node of free keys (-1: no free keys)
  // array
  uint32_t items = 0;
  uint32_t min_items = 0, max_items = UINT32_MAX;
  // string
  uint32_t min_length = 0, max_length = UINT32_MAX;
  // literal: the exact bytes (a const / enum value, true, false, null, a key with its quotes)
  std::string text;
  // any_of: the alternatives (never themselves any_of)
  std::vector<uint32_t> branches;
};

struct Grammar {
  std::vector<GrammarNode> nodes;
  uint32_t root = 0;
  uint32_t free_key = 0;  // a plain string node (object keys of free-key objects)
};

// Compiles a schema; throws SchemaError. `{"type": "object"}` is what response_format
// json_object asks for.
std::shared_ptr<const Grammar> compile_json_schema(const nlohmann::json& schema);

// UTF-8 inside a string, strictly (no overlong forms, no surrogates, nothing past U+10FFFF): the
// state is the count of continuation bytes still due (bits 0-1) and the range the next one must
// be in (bits 2-4: 0 = 80..BF, 1 = A0..BF after E0, 2 = 80..9F after ED, 3 = 90..BF after F0,
// 4 = 80..8F after F4). False for a byte that breaks it (state then unchanged). A byte below
// 0x80 with nothing due is accepted (the caller handles '"', '\\' and control bytes).
inline bool utf8_step(uint16_t& state, uint8_t b) {
  const int due = state & 3, range = state >> 2;
  if (due > 0) {
    static constexpr uint8_t lo[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
    static constexpr uint8_t hi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
    if (b < lo[range] || b > hi[range]) return false;
    state = static_cast<uint16_t>(due - 1);
    return true;
  }
  if (b < 0x80) return true;
  if (b >= 0xC2 && b <= 0xDF) {
    state = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    state = static_cast<uint16_t>(2 | (b == 0xE0 ? 1 << 2 : b == 0xED ? 2 << 2 : 0));
  } else if (b >= 0xF0 && b <= 0xF4) {
    state = static_cast<uint16_t>(3 | (b == 0xF0 ? 3 << 2 : b == 0xF4 ? 4 << 2 : 0));
  } else {
    return false;
  }
  return true;
}

// One frame of a stack. Which fields mean what depends on kind (see json_grammar.cpp).
struct Frame {
  uint32_t node = 0;
  uint32_t n = 0;  // count: whitespace, characters, items, literal position
  uint16_t m = 0;  // second counter: UTF-8 bytes pending, hex digits left, digits, property
  uint8_t kind = 0;
  uint8_t phase = 0;
  uint8_t ws = 0;     // whitespace bytes in the current gap
  uint64_t seen = 0;  // object: properties already written
};

// The automaton's state: stacks stored one after the other (stack i is frames[ends[i-1],
// ends[i])). Empty = dead (nothing valid continues).
struct MatchState {
  std::vector<Frame> frames;
  std::vector<uint32_t> ends;
  bool dead() const { return ends.empty(); }
  size_t n_stacks() const { return ends.size(); }
};

class JsonAutomaton {
 public:
  explicit JsonAutomaton(std::shared_ptr<const Grammar> grammar);
  const Grammar& grammar() const { return *g_; }

  MatchState initial() const;
  // The state after one byte, into `out` (cleared first; its capacity is reused). False: dead.
  bool step(const MatchState& in, uint8_t byte, MatchState& out) const;
  // The same for the one stack `stack` of `in` only.
  bool step_stack(const MatchState& in, size_t stack, uint8_t byte, MatchState& out) const;
  // A complete value: the end of the sequence is allowed here.
  bool can_end(const MatchState& s) const;
  // Complete and nothing else can follow.
  bool must_end(const MatchState& s) const;
  // Free string body of stack i: its frame (top of the stack) when the top is inside a string
  // outside an escape, and the next byte may be any continuation byte (utf8 state < 4), else
  // nullptr (the mask's fast path, see grammar_processor.cpp).
  const Frame* string_body(const MatchState& s, size_t stack) const;

 private:
  void feed(MatchState& out, size_t start, uint8_t b) const;
  void branch(MatchState& out, size_t start, uint8_t b, bool keys) const;
  std::shared_ptr<const Grammar> g_;
};

// Feeds a whole string: true when every byte was accepted (`s` then advanced), else `s` is
// unchanged. For tests and tools; the decoder's path is step().
bool advance(const JsonAutomaton& a, MatchState& s, std::string_view bytes);

}  // namespace tpinfer::structured
