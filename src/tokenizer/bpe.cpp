#include "tokenizer/bpe.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <queue>

#include "core/error.h"
#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

size_t StringHash::operator()(std::string_view s) const noexcept {
  // FNV-1a over 8-byte words: fast on short tokens, good enough spread for unordered_map.
  uint64_t h = 0xcbf29ce484222325ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    __builtin_memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < s.size(); ++i) h = (h ^ static_cast<uint8_t>(s[i])) * 0x100000001b3ull;
  return static_cast<size_t>(h ^ (h >> 32));
}

namespace {

constexpr size_t kCacheMaxEntries = 200000;
constexpr size_t kCacheMaxWordBytes = 256;
constexpr size_t kNaiveMaxSymbols = 64;

// The vocabulary string as raw bytes under the GPT-2 byte <-> unicode table, or nullopt if a
// character is outside the table.
std::optional<std::string> to_raw_bytes(const std::string& tok) {
  std::string out;
  out.reserve(tok.size());
  for (size_t i = 0; i < tok.size();) {
    const uint32_t cp = next_cp(tok, i);
    const int b = unicode_to_byte(cp);
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

std::string byte_level_char(uint8_t b) {
  std::string s;
  append_utf8(s, byte_to_unicode(b));
  return s;
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model, bool byte_level, const std::string& where)
    : byte_level_(byte_level) {
  const std::string type = model.value("type", "BPE");
  TPI_CHECK(type == "BPE", where << ": model type '" << type
                                 << "' is not supported (only BPE: byte-level or with byte "
                                    "fallback)");
  if (model.contains("dropout") && !model.at("dropout").is_null()) {
    TPI_CHECK(model.at("dropout").get<double>() == 0.0,
              where << ": BPE dropout is not supported for inference (found "
                    << model.at("dropout").dump() << ")");
  }
  auto str_or_empty = [&](const char* key) {
    return model.contains(key) && model.at(key).is_string() ? model.at(key).get<std::string>()
                                                           : std::string();
  };
  prefix_ = str_or_empty("continuing_subword_prefix");
  suffix_ = str_or_empty("end_of_word_suffix");
  fuse_unk_ = model.value("fuse_unk", false);
  byte_fallback_ = model.value("byte_fallback", false);
  ignore_merges_ = model.value("ignore_merges", false);

  // Vocabulary.
  const auto& vocab = model.at("vocab");
  TPI_CHECK(vocab.is_object(), where << ": model.vocab must be an object of token -> id");
  int32_t max_id = -1;
  token_to_id_.reserve(vocab.size() * 2);
  for (const auto& [tok, idj] : vocab.items()) {
    TPI_CHECK(idj.is_number_integer() && idj.get<int64_t>() >= 0 && idj.get<int64_t>() < INT32_MAX,
              where << ": model.vocab['" << tok << "'] must be a non-negative integer id");
    const auto id = idj.get<int32_t>();
    token_to_id_.emplace(tok, id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [tok, id] : token_to_id_) id_to_token_[static_cast<size_t>(id)] = tok;

  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  std::fill(std::begin(byte_fallback_id_), std::end(byte_fallback_id_), -1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    if (auto it = token_to_id_.find(std::string_view(name)); it != token_to_id_.end()) {
      byte_fallback_id_[b] = it->second;
    }
    if (byte_level_) {
      if (auto it = token_to_id_.find(byte_level_char(static_cast<uint8_t>(b)));
          it != token_to_id_.end()) {
        byte_id_[b] = it->second;
      }
    }
  }
  if (byte_level_) {
    raw_to_id_.reserve(token_to_id_.size() * 2);
    for (const auto& [tok, id] : token_to_id_) {
      if (auto raw = to_raw_bytes(tok)) raw_to_id_.emplace(std::move(*raw), id);
    }
  } else {
    for (const auto& [tok, id] : token_to_id_) {
      size_t i = 0;
      const uint32_t cp = next_cp(tok, i);
      if (i == tok.size()) char_id_.emplace(cp, id);
    }
  }
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    const std::string unk = model.at("unk_token").get<std::string>();
    auto it = token_to_id_.find(unk);
    TPI_CHECK(it != token_to_id_.end(),
              where << ": model.unk_token '" << unk << "' is not in the vocabulary");
    unk_id_ = it->second;
  }

  // Merges: "a b" strings or [a, b] pairs; rank = position; a later duplicate wins.
  const auto& merges = model.at("merges");
  TPI_CHECK(merges.is_array(), where << ": model.merges must be an array");
  size_t cap = 16;
  while (cap < merges.size() * 2 + 16) cap <<= 1;
  merges_.assign(cap, MergeEntry{kEmpty, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  std::string merged;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& m = merges[r];
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      TPI_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
                where << ": merge #" << r << " '" << s << "' is not two tokens separated by a space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      TPI_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                where << ": merge #" << r << " must be \"a b\" or [\"a\", \"b\"]");
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    }
    auto ia = token_to_id_.find(a);
    auto ib = token_to_id_.find(b);
    TPI_CHECK(ia != token_to_id_.end() && ib != token_to_id_.end(),
              where << ": merge #" << r << " (" << a << ", " << b
                    << ") uses a token that is not in the vocabulary");
    merged = a;
    merged.append(b, std::min(prefix_.size(), b.size()), std::string::npos);
    auto im = token_to_id_.find(merged);
    TPI_CHECK(im != token_to_id_.end(), where << ": merge #" << r << " (" << a << ", " << b
                                              << ") makes '" << merged
                                              << "', which is not in the vocabulary");
    insert_merge(ia->second, ib->second, static_cast<int32_t>(r), im->second);
  }
}

void BpeModel::insert_merge(int32_t a, int32_t b, int32_t rank, int32_t id) {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
                       static_cast<uint32_t>(b);
  size_t h = static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  for (;;) {
    MergeEntry& e = merges_[h];
    if (e.key == kEmpty || e.key == key) {
      e = MergeEntry{key, rank, id};
      return;
    }
    h = (h + 1) & mask_;
  }
}

// One character of a non-byte-level word: its token, else its <0xNN> tokens, else <unk>
// (fused with a preceding <unk> when fuse_unk), else nothing -- as tokenizers' merge_word.
void BpeModel::add_char_symbols(std::string_view ch, bool first, bool last,
                                std::vector<int32_t>& syms, int32_t& pending_unk) const {
  int32_t id = -1;
  std::string decorated;
  std::string_view s = ch;
  if ((!first && !prefix_.empty()) || (last && !suffix_.empty())) {
    decorated = std::string(first ? "" : prefix_) + std::string(ch) + (last ? suffix_ : "");
    s = decorated;
    if (auto it = token_to_id_.find(s); it != token_to_id_.end()) id = it->second;
  } else if (byte_level_) {
    // (only reached for bytes whose character is missing from the vocabulary)
    if (auto it = token_to_id_.find(s); it != token_to_id_.end()) id = it->second;
  } else {
    size_t i = 0;
    const uint32_t cp = next_cp(ch, i);
    if (auto it = char_id_.find(cp); it != char_id_.end()) id = it->second;
  }
  if (id >= 0) {
    if (pending_unk >= 0) {
      syms.push_back(pending_unk);
      pending_unk = -1;
    }
    syms.push_back(id);
    return;
  }
  if (byte_fallback_) {
    bool all = true;
    for (char c : s) all = all && byte_fallback_id_[static_cast<uint8_t>(c)] >= 0;
    if (all) {
      for (char c : s) syms.push_back(byte_fallback_id_[static_cast<uint8_t>(c)]);
      return;
    }
  }
  if (unk_id_) {
    if (pending_unk >= 0 && !fuse_unk_) syms.push_back(pending_unk);
    pending_unk = *unk_id_;
  }
}

void BpeModel::initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const {
  syms.clear();
  int32_t pending_unk = -1;
  if (byte_level_) {
    const bool plain = prefix_.empty() && suffix_.empty();
    for (size_t i = 0; i < piece.size(); ++i) {
      const auto b = static_cast<uint8_t>(piece[i]);
      if (plain && byte_id_[b] >= 0) {
        if (pending_unk >= 0) {
          syms.push_back(pending_unk);
          pending_unk = -1;
        }
        syms.push_back(byte_id_[b]);
      } else {
        add_char_symbols(byte_level_char(b), i == 0, i + 1 == piece.size(), syms, pending_unk);
      }
    }
  } else {
    for (size_t i = 0; i < piece.size();) {
      const size_t start = i;
      next_cp(piece, i);
      add_char_symbols(piece.substr(start, i - start), start == 0, i == piece.size(), syms,
                       pending_unk);
    }
  }
  if (pending_unk >= 0) syms.push_back(pending_unk);
}

// Applies merges lowest rank first, leftmost first among equal ranks (what tokenizers' heap over
// (rank, position) does). Short words: pair ranks kept in an array, linear scans.
void BpeModel::merge_all(std::vector<int32_t>& syms) const {
  const size_t n0 = syms.size();
  if (n0 < 2) return;
  if (n0 > kNaiveMaxSymbols) {
    merge_heap(syms);
    return;
  }
  int32_t rank[kNaiveMaxSymbols], nid[kNaiveMaxSymbols];
  size_t n = n0;
  auto pair_at = [&](size_t i) {
    if (!find_merge(syms[i], syms[i + 1], rank[i], nid[i])) rank[i] = INT32_MAX;
  };
  for (size_t i = 0; i + 1 < n; ++i) pair_at(i);
  for (;;) {
    int32_t best = INT32_MAX;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (rank[i] < best) {
        best = rank[i];
        bi = i;
      }
    }
    if (best == INT32_MAX) break;
    syms[bi] = nid[bi];
    // remove symbol bi+1 and pair bi (its pair slot is recomputed below)
    for (size_t k = bi + 1; k + 1 < n; ++k) syms[k] = syms[k + 1];
    for (size_t k = bi + 1; k + 2 < n; ++k) {
      rank[k] = rank[k + 1];
      nid[k] = nid[k + 1];
    }
    --n;
    if (bi > 0) pair_at(bi - 1);
    if (bi + 1 < n) pair_at(bi);
  }
  syms.resize(n);
}

void BpeModel::merge_heap(std::vector<int32_t>& syms) const {
  const auto n = static_cast<int32_t>(syms.size());
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Item {
    int32_t rank, pos, id;
    bool operator>(const Item& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Item> storage;
  storage.reserve(static_cast<size_t>(n));
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap(std::greater<Item>(),
                                                                       std::move(storage));
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    int32_t r, id;
    if (find_merge(syms[pos], syms[next[pos]], r, id)) heap.push({r, pos, id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<char> alive(n, 1);
  while (!heap.empty()) {
    const Item top = heap.top();
    heap.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    int32_t r, id;
    if (!find_merge(syms[top.pos], syms[next[top.pos]], r, id) || r != top.rank || id != top.id) {
      continue;  // stale
    }
    const int32_t right = next[top.pos];
    syms[top.pos] = id;
    alive[right] = 0;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    push(prev[top.pos]);
    push(top.pos);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0 && i < n; i = next[i]) syms[w++] = syms[i];
  syms.resize(w);
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out,
                            bool use_cache) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const StringIdMap& m = byte_level_ ? raw_to_id_ : token_to_id_;
    if (auto it = m.find(piece); it != m.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = use_cache && piece.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    if (auto it = cache_.find(piece); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  thread_local std::vector<int32_t> syms;
  initial_symbols(piece, syms);
  merge_all(syms);
  out.insert(out.end(), syms.begin(), syms.end());
  if (cacheable && cache_.size() < kCacheMaxEntries) cache_.emplace(std::string(piece), syms);
}

}  // namespace tpinfer::tok
