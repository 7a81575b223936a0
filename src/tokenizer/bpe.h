// Private to src/tokenizer: the BPE model of tokenizer.json ("type": "BPE"), for byte-level
// vocabularies (GPT-2 style, the pre-tokenizer's ByteLevel mapping folded in: the model works on
// raw bytes) and character vocabularies with byte fallback (SentencePiece style).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tpinfer::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept;
};

// string -> id with the strings kept in one arena (open addressing): builds 150k-entry
// vocabularies without an allocation per entry. A later insert of a key overwrites its id.
class StrIdMap {
 public:
  void reserve(size_t n);
  void insert(std::string_view key, int32_t id);
  int32_t find(std::string_view key) const;  // -1 when absent
  size_t size() const { return count_; }
  template <typename F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.id >= 0) f(std::string_view(arena_.data() + s.off, s.len), s.id);
    }
  }

 private:
  struct Slot {
    uint64_t hash;
    uint32_t off, len;
    int32_t id;  // -1: empty
  };
  void grow();
  std::string arena_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

// Word -> ids cache of the BPE model: open addressing over arenas, no allocation per entry.
// Fills up to max_entries and then stops inserting (as tokenizers' cache does).
class WordCache {
 public:
  explicit WordCache(size_t max_entries) : max_entries_(max_entries) {}
  // Appends the cached ids of key to out and returns true, or returns false.
  bool find(std::string_view key, uint64_t hash, std::vector<int32_t>& out) const;
  void insert(std::string_view key, uint64_t hash, const int32_t* ids, size_t n);

 private:
  struct Slot {
    uint64_t hash;
    uint32_t key_off, key_len, val_off, val_len;
  };
  static constexpr uint32_t kEmpty = ~uint32_t{0};
  size_t max_entries_;
  size_t count_ = 0;
  size_t mask_ = 0;
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> vals_;
};

class BpeModel {
 public:
  // byte_level: the pre-tokenizer ends with ByteLevel, so pieces arrive as raw bytes and the
  // vocabulary's GPT-2 characters are mapped back to bytes here.
  // model_json: the text of tokenizer.json's "model" object.
  BpeModel(std::string_view model_json, bool byte_level, const std::string& where);

  // Appends the ids of one pre-tokenized piece (valid UTF-8 unless byte_level).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out, bool use_cache) const;

  // The cache may be used only by a thread holding this mutex (try_lock, else go without).
  std::mutex& cache_mutex() const { return cache_mu_; }

  int32_t id_limit() const { return static_cast<int32_t>(id_to_token_.size()); }  // max id + 1
  const std::vector<std::string>& id_to_token() const { return id_to_token_; }
  const StrIdMap& token_to_id() const { return token_to_id_; }

 private:
  struct MergeEntry {
    uint64_t key;
    int32_t rank;
    int32_t id;
  };
  bool find_merge(int32_t a, int32_t b, int32_t& rank, int32_t& id) const {
    const uint64_t key =
        (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    size_t h = static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
    for (;;) {
      const MergeEntry& e = merges_[h];
      if (e.key == key) {
        rank = e.rank;
        id = e.id;
        return true;
      }
      if (e.key == kEmpty) return false;
      h = (h + 1) & mask_;
    }
  }
  void insert_merge(int32_t a, int32_t b, int32_t rank, int32_t id);
  void initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const;
  void add_char_symbols(std::string_view ch, bool first, bool last, std::vector<int32_t>& syms,
                        int32_t& pending_unk) const;
  void merge_all(std::vector<int32_t>& syms) const;
  void merge_heap(std::vector<int32_t>& syms) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out, bool use_cache) const;

  static constexpr uint64_t kEmpty = ~uint64_t{0};

  bool byte_level_;
  std::vector<std::string> id_to_token_;
  StrIdMap token_to_id_;  // the vocabulary as written in the file
  StrIdMap raw_to_id_;    // byte_level: the vocabulary as raw bytes
  std::vector<MergeEntry> merges_;
  size_t mask_ = 0;
  int shift_ = 64;
  int32_t byte_id_[256];           // byte_level: id of each byte's character (-1 if none)
  int32_t byte_fallback_id_[256];  // id of "<0xNN>" (-1 if none)
  std::unordered_map<uint32_t, int32_t> char_id_;  // single-character tokens
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  // SentencePiece-style vocabularies where "\u2581" occurs only as a leading run of a token: no
  // merge can join "x" and a following "\u2581", so a long piece splits there into independent
  // words (same result, and the word cache works).
  bool split_at_metaspace_ = false;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix

  mutable std::mutex cache_mu_;
  mutable WordCache cache_{1u << 17};
};

}  // namespace tpinfer::tok
