// Private to src/tokenizer: the tokenizer.json implementation of tpinfer::Tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer::tok {

struct AddedToken {
  std::string content;
  // What id_to_token / decode give: tokenizers keeps a normalized added token in its normalized
  // form (e.g. "Zorp" -> "\u2581Zorp" under SentencePiece's Prepend), the content otherwise.
  std::string as_token;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Leftmost-longest matcher over added-token contents (what tokenizers' Aho-Corasick with
// MatchKind::LeftmostLongest finds), plus the single_word / lstrip / rstrip rules.
class AddedTokenMatcher {
 public:
  void build(std::vector<std::pair<std::string, size_t>> patterns);  // (text, index into tokens)
  bool empty() const { return nodes_.size() <= 1; }
  // Splits s into (begin, end, token index or -1) parts, as AddedVocabulary::find_matches.
  void split(std::string_view s, const std::vector<AddedToken>& tokens,
             std::vector<std::tuple<size_t, size_t, int>>& parts) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
    int32_t token = -1;                             // index into tokens when a pattern ends here
  };
  int32_t child(int32_t node, uint8_t b) const;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

class HfTokenizer final : public Tokenizer {
 public:
  // config_path may be empty (no tokenizer_config.json).
  HfTokenizer(const std::string& tokenizer_json_path, const std::string& config_path);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const override;
  int vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = true, bool enable_thinking = true,
                                  const std::string& tools_json = "") const override;
  bool has_chat_template() const override { return chat_.has_template(); }
  std::string chat_template_text() const override { return chat_.text(); }

  // ---- for StreamDecoder ----
  // The decoder's output for ids[0, n) before from_utf8_lossy (byte-level decoders may leave a
  // character cut in half at the end).
  std::string decode_raw(const int32_t* ids, size_t n, bool skip_special,
                         bool keep_trailing = false) const;
  // True when decode drops this id (skip_special and a special token).
  bool skipped(int32_t id, bool skip_special) const {
    return skip_special && id >= 0 && id < vocab_size_ && special_[static_cast<size_t>(id)];
  }
  bool is_byte_fallback_token(int32_t id) const {
    return decoder_traits_.byte_fallback && id >= 0 && id < vocab_size_ &&
           byte_token_[static_cast<size_t>(id)];
  }
  const DecoderTraits& decoder_traits() const { return decoder_traits_; }
  const std::string& token_text(int32_t id) const;  // throws when id has no token

 private:
  void check_id(int32_t id) const;
  void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& ids, Pieces& pieces,
                   bool use_cache) const;

  std::string where_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  DecoderTraits decoder_traits_;

  std::vector<AddedToken> added_;
  AddedTokenMatcher raw_matcher_;     // added tokens with normalized = false
  AddedTokenMatcher norm_matcher_;    // normalized = true (contents normalized)
  std::vector<int32_t> added_index_;  // id -> index into added_, or -1
  std::vector<char> special_;         // id -> special added token
  std::vector<char> byte_token_;      // id -> "<0xNN>"
  int vocab_size_ = 0;

  std::vector<int32_t> eos_ids_;
  std::optional<int32_t> bos_id_;
  ChatTemplate chat_;
};

}  // namespace tpinfer::tok
