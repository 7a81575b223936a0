#include "tokenizer/bpe.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <queue>

#include "core/error.h"
#include "tokenizer/json_scan.h"
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

constexpr size_t kCacheMaxWordBytes = 256;
constexpr size_t kNaiveMaxSymbols = 64;

std::string byte_level_char(uint8_t b) {
  std::string s;
  append_utf8(s, byte_to_unicode(b));
  return s;
}

}  // namespace

void StrIdMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(cap, Slot{0, 0, 0, -1});
  mask_ = cap - 1;
  for (const Slot& s : old) {
    if (s.id < 0) continue;
    size_t h = s.hash & mask_;
    while (slots_[h].id >= 0) h = (h + 1) & mask_;
    slots_[h] = s;
  }
}

void StrIdMap::grow() {
  reserve(slots_.empty() ? 8 : slots_.size());
}

void StrIdMap::insert(std::string_view key, int32_t id) {
  if ((count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t hash = StringHash()(key);
  size_t h = hash & mask_;
  for (;;) {
    Slot& s = slots_[h];
    if (s.id < 0) {
      s = Slot{hash, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size()), id};
      arena_.append(key);
      ++count_;
      return;
    }
    if (s.hash == hash && std::string_view(arena_.data() + s.off, s.len) == key) {
      s.id = id;
      return;
    }
    h = (h + 1) & mask_;
  }
}

int32_t StrIdMap::find(std::string_view key) const {
  if (slots_.empty()) return -1;
  const uint64_t hash = StringHash()(key);
  size_t h = hash & mask_;
  for (;;) {
    const Slot& s = slots_[h];
    if (s.id < 0) return -1;
    if (s.hash == hash && std::string_view(arena_.data() + s.off, s.len) == key) return s.id;
    h = (h + 1) & mask_;
  }
}

bool WordCache::find(std::string_view key, uint64_t hash, std::vector<int32_t>& out) const {
  if (slots_.empty()) return false;
  for (size_t h = hash & mask_;; h = (h + 1) & mask_) {
    const Slot& s = slots_[h];
    if (s.key_len == kEmpty) return false;
    if (s.hash == hash && s.key_len == key.size() &&
        std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0) {
      out.insert(out.end(), vals_.begin() + s.val_off, vals_.begin() + s.val_off + s.val_len);
      return true;
    }
  }
}

void WordCache::insert(std::string_view key, uint64_t hash, const int32_t* ids, size_t n) {
  if (count_ >= max_entries_) return;
  if (slots_.empty()) {
    size_t cap = 16;
    while (cap < max_entries_ * 2) cap <<= 1;
    slots_.assign(cap, Slot{0, 0, kEmpty, 0, 0});
    mask_ = cap - 1;
  }
  size_t h = hash & mask_;
  while (slots_[h].key_len != kEmpty) {
    const Slot& s = slots_[h];
    if (s.hash == hash && s.key_len == key.size() &&
        std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0) {
      return;  // already there
    }
    h = (h + 1) & mask_;
  }
  slots_[h] = Slot{hash, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(key.size()),
                   static_cast<uint32_t>(vals_.size()), static_cast<uint32_t>(n)};
  keys_.append(key);
  vals_.insert(vals_.end(), ids, ids + n);
  ++count_;
}

BpeModel::BpeModel(std::string_view model_json, bool byte_level, const std::string& where)
    : byte_level_(byte_level) {
  // The big members are streamed by JsonScanner, the small ones parsed by nlohmann.
  JsonScanner top(model_json, where + " (model)");
  std::string_view vocab_text, merges_text;
  nlohmann::json model = nlohmann::json::object();
  for (const auto& [key, text] : top.members()) {
    if (key == "vocab") {
      vocab_text = text;
    } else if (key == "merges") {
      merges_text = text;
    } else {
      try {
        model[key] = nlohmann::json::parse(text);
      } catch (const nlohmann::json::exception& e) {
        TPI_FAIL(where << ": model." << key << " is not valid JSON (" << e.what() << ")");
      }
    }
  }
  const std::string type = model.value("type", "BPE");
  TPI_CHECK(type == "BPE", where << ": model type '" << type
                                 << "' is not supported (only BPE: byte-level or with byte "
                                    "fallback)");
  TPI_CHECK(!vocab_text.empty(), where << ": model has no vocab");
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
  {
    JsonScanner sc(vocab_text, where + " (model.vocab)");
    if (sc.peek() != '{') sc.fail("model.vocab must be an object of token -> id");
    token_to_id_.reserve(model_json.size() / 40);
    int32_t max_id = -1;
    sc.object([&](const std::string& tok) {
      const int64_t id = sc.integer();
      if (id < 0 || id >= INT32_MAX) sc.fail("id of '" + tok + "' out of range");
      token_to_id_.insert(tok, static_cast<int32_t>(id));
      max_id = std::max(max_id, static_cast<int32_t>(id));
    });
    id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
    token_to_id_.for_each([&](std::string_view tok, int32_t id) {
      id_to_token_[static_cast<size_t>(id)].assign(tok.data(), tok.size());
    });
  }

  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  std::fill(std::begin(byte_fallback_id_), std::end(byte_fallback_id_), -1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_fallback_id_[b] = token_to_id_.find(name);
    if (byte_level_) byte_id_[b] = token_to_id_.find(byte_level_char(static_cast<uint8_t>(b)));
  }
  if (byte_level_) {
    raw_to_id_.reserve(token_to_id_.size());
    std::string raw;
    token_to_id_.for_each([&](std::string_view tok, int32_t id) {
      raw.clear();
      for (size_t i = 0; i < tok.size();) {
        const int b = unicode_to_byte(next_cp(tok, i));
        if (b < 0) return;
        raw.push_back(static_cast<char>(b));
      }
      raw_to_id_.insert(raw, id);
    });
  } else {
    token_to_id_.for_each([&](std::string_view tok, int32_t id) {
      size_t i = 0;
      const uint32_t cp = next_cp(tok, i);
      if (i == tok.size()) char_id_.emplace(cp, id);
    });
  }
  if (!byte_level_ && prefix_.empty() && suffix_.empty() && char_id_.count(0x2581) != 0) {
    bool leading_only = true;
    token_to_id_.for_each([&](std::string_view tok, int32_t) {
      size_t i = 0;
      while (tok.compare(i, 3, "\xE2\x96\x81") == 0) i += 3;
      if (tok.find("\xE2\x96\x81", i) != std::string_view::npos) leading_only = false;
    });
    split_at_metaspace_ = leading_only;
  }
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    const std::string unk = model.at("unk_token").get<std::string>();
    const int32_t id = token_to_id_.find(unk);
    TPI_CHECK(id >= 0, where << ": model.unk_token '" << unk << "' is not in the vocabulary");
    unk_id_ = id;
  }

  // Merges: "a b" strings or [a, b] pairs; rank = position; a later duplicate wins.
  if (merges_text.empty()) merges_text = "[]";
  JsonScanner sc(merges_text, where + " (model.merges)");
  if (sc.peek() != '[') sc.fail("model.merges must be an array");
  size_t cap = 16;
  while (cap < merges_text.size() / 5 + 16) cap <<= 1;  // >= 2x the number of merges
  merges_.assign(cap, MergeEntry{kEmpty, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  std::string a, b, merged;
  int32_t rank = 0;
  sc.array([&]() {
    if (sc.peek() == '"') {
      sc.string(a);
      const size_t sp = a.find(' ');
      TPI_CHECK(
          sp != std::string::npos && a.find(' ', sp + 1) == std::string::npos,
          where << ": merge #" << rank << " '" << a << "' is not two tokens separated by a space");
      b.assign(a, sp + 1, std::string::npos);
      a.resize(sp);
    } else {
      int n = 0;
      sc.array([&] {
        if (n == 0)
          sc.string(a);
        else if (n == 1)
          sc.string(b);
        else
          sc.fail("a merge pair has more than two tokens");
        ++n;
      });
      TPI_CHECK(n == 2, where << ": merge #" << rank << " must be \"a b\" or [\"a\", \"b\"]");
    }
    const int32_t ia = token_to_id_.find(a), ib = token_to_id_.find(b);
    TPI_CHECK(ia >= 0 && ib >= 0, where << ": merge #" << rank << " (" << a << ", " << b
                                        << ") uses a token that is not in the vocabulary");
    merged = a;
    merged.append(b, std::min(prefix_.size(), b.size()), std::string::npos);
    const int32_t im = token_to_id_.find(merged);
    TPI_CHECK(im >= 0, where << ": merge #" << rank << " (" << a << ", " << b << ") makes '"
                             << merged << "', which is not in the vocabulary");
    if (static_cast<size_t>(rank + 1) * 2 > cap) {  // more merges than estimated: rehash
      std::vector<MergeEntry> old;
      old.swap(merges_);
      cap *= 2;
      merges_.assign(cap, MergeEntry{kEmpty, 0, 0});
      mask_ = cap - 1;
      shift_ = 64 - __builtin_ctzll(cap);
      for (const MergeEntry& e : old) {
        if (e.key != kEmpty) {
          insert_merge(static_cast<int32_t>(e.key >> 32), static_cast<int32_t>(e.key & 0xFFFFFFFFu),
                       e.rank, e.id);
        }
      }
    }
    insert_merge(ia, ib, rank, im);
    ++rank;
  });
}

void BpeModel::insert_merge(int32_t a, int32_t b, int32_t rank, int32_t id) {
  const uint64_t key =
      (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
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
    id = token_to_id_.find(s);
  } else if (byte_level_) {
    // (only reached for bytes whose character is missing from the vocabulary)
    id = token_to_id_.find(s);
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
  if (split_at_metaspace_ && piece.size() > 16) {
    if (ignore_merges_) {
      const int32_t id = token_to_id_.find(piece);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    // Split before each "\u2581" that follows another character.
    static constexpr std::string_view kMeta = "\xE2\x96\x81";
    size_t start = 0;
    for (size_t p = piece.find(kMeta, 1); p != std::string_view::npos;
         p = piece.find(kMeta, p + 3)) {
      if (p >= 3 && piece.compare(p - 3, 3, kMeta) == 0) continue;  // inside a run of them
      encode_word(piece.substr(start, p - start), out, use_cache);
      start = p;
    }
    encode_word(piece.substr(start), out, use_cache);
    return;
  }
  encode_word(piece, out, use_cache);
}

void BpeModel::encode_word(std::string_view piece, std::vector<int32_t>& out,
                           bool use_cache) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const int32_t id = (byte_level_ ? raw_to_id_ : token_to_id_).find(piece);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = use_cache && piece.size() <= kCacheMaxWordBytes;
  uint64_t hash = 0;
  if (cacheable) {
    hash = StringHash()(piece);
    if (cache_.find(piece, hash, out)) return;
  }
  thread_local std::vector<int32_t> syms;
  initial_symbols(piece, syms);
  merge_all(syms);
  out.insert(out.end(), syms.begin(), syms.end());
  if (cacheable) cache_.insert(piece, hash, syms.data(), syms.size());
}

}  // namespace tpinfer::tok
