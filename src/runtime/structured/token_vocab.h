// The vocabulary as structured output sees it, built once per tokenizer and shared by every
// constrained request: each id's bytes as they appear inside a sequence (a byte-level or
// SentencePiece token's text, a byte-fallback token's byte; special tokens and ids without a
// token have none and are never allowed), a byte trie over all of them (the mask walks it with
// the automaton's state, so shared prefixes are stepped once and a dead prefix prunes its whole
// subtree), a second trie over the tokens that can leave a JSON string (a '"', '\' or control
// byte: the others only extend a string), and, for the inside of a string, the set of tokens
// that stay in it for each count of pending UTF-8 continuation bytes (one OR of a bit set
// instead of a walk over ~150k tokens).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tpinfer {
class Tokenizer;
}

namespace tpinfer::structured {

// A byte trie with each node's children contiguous (node 0 is the root, the empty prefix).
struct VocabTrie {
  struct Node {
    uint32_t first_child = 0, n_children = 0;
    uint32_t tok_begin = 0, tok_end = 0;  // ids whose bytes end here: tokens[tok_begin, tok_end)
    uint8_t byte = 0;
  };
  std::vector<Node> nodes;
  std::vector<int32_t> tokens;
  int max_depth = 0;  // bytes of the longest token
  // ids with non-empty bytes[id] and keep[id]
  static VocabTrie build(const std::vector<std::string>& bytes, const std::vector<bool>& keep);
};

class TokenVocabulary {
 public:
  // bytes[id]: the id's bytes ("" = never allowed).
  explicit TokenVocabulary(std::vector<std::string> bytes);
  // Built on first use for this tokenizer and kept for the job (thread-safe).
  static std::shared_ptr<const TokenVocabulary> of(const Tokenizer& tokenizer);

  int size() const { return static_cast<int>(bytes_.size()); }
  int words() const { return (size() + 63) / 64; }  // uint64 words of a mask
  const std::string& bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  const VocabTrie& all() const { return all_; }
  const VocabTrie& exits() const { return exits_; }
  // Tokens that stay inside a string whose current character still needs `pending` (0..3)
  // continuation bytes: as a bit set, and as ids sorted by their count of characters.
  const std::vector<uint64_t>& body_bits(int pending) const { return body_bits_[pending]; }
  const std::vector<int32_t>& body_ids(int pending) const { return body_ids_[pending]; }
  const std::vector<uint32_t>& body_chars(int pending) const { return body_chars_[pending]; }

 private:
  std::vector<std::string> bytes_;
  VocabTrie all_, exits_;
  std::vector<uint64_t> body_bits_[4];
  std::vector<int32_t> body_ids_[4];
  std::vector<uint32_t> body_chars_[4];
};

}  // namespace tpinfer::structured
