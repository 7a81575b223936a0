#include "runtime/structured/token_vocab.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <numeric>

#include "runtime/frontend/token_text.h"
#include "runtime/structured/json_grammar.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer::structured {
namespace {

// Fills nodes[at] (whose prefix is `depth` bytes long) from the sorted ids [lo, hi).
void fill(VocabTrie& t, const std::vector<std::string>& bytes, const std::vector<int32_t>& ids,
          size_t lo, size_t hi, size_t depth, uint32_t at) {
  t.max_depth = std::max(t.max_depth, static_cast<int>(depth));
  size_t i = lo;
  t.nodes[at].tok_begin = static_cast<uint32_t>(t.tokens.size());
  while (i < hi && bytes[ids[i]].size() == depth) t.tokens.push_back(ids[i++]);
  t.nodes[at].tok_end = static_cast<uint32_t>(t.tokens.size());
  // Children: one per distinct byte at `depth`, allocated together so they are contiguous.
  std::vector<std::pair<size_t, size_t>> groups;
  for (size_t j = i; j < hi;) {
    const char c = bytes[ids[j]][depth];
    size_t k = j;
    while (k < hi && bytes[ids[k]][depth] == c) ++k;
    groups.emplace_back(j, k);
    j = k;
  }
  const uint32_t first = static_cast<uint32_t>(t.nodes.size());
  t.nodes[at].first_child = first;
  t.nodes[at].n_children = static_cast<uint32_t>(groups.size());
  t.nodes.resize(t.nodes.size() + groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    t.nodes[first + g].byte = static_cast<uint8_t>(bytes[ids[groups[g].first]][depth]);
    fill(t, bytes, ids, groups[g].first, groups[g].second, depth + 1,
         first + static_cast<uint32_t>(g));
  }
}

// The inverse of GPT-2's bytes_to_unicode (byte-level BPE token strings): code point -> byte.
int byte_level_byte(uint32_t cp) {
  const auto printable = [](uint32_t b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  if (cp < 256 && printable(cp)) return static_cast<int>(cp);
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    if (printable(b)) continue;
    if (cp == 256 + n) return static_cast<int>(b);
    ++n;
  }
  return -1;
}

// A token's raw bytes from its vocabulary string when decoding cannot show them (part of a
// UTF-8 character decodes to U+FFFD): "<0xAB>" (byte fallback) or a byte-level BPE string.
// "" when the string is neither.
std::string raw_bytes(const std::string& token) {
  if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>') {
    return std::string(1, static_cast<char>(std::stoi(token.substr(3, 2), nullptr, 16)));
  }
  std::string out;
  for (size_t i = 0; i < token.size();) {
    const uint8_t c = static_cast<uint8_t>(token[i]);
    uint32_t cp = c;
    size_t len = 1;
    if (c >= 0xC0 && c < 0xE0 && i + 1 < token.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<uint8_t>(token[i + 1]) & 0x3Fu);
      len = 2;
    } else if (c >= 0x80) {
      return "";
    }
    const int b = byte_level_byte(cp);
    if (b < 0) return "";
    out += static_cast<char>(b);
    i += len;
  }
  return out;
}

bool body_safe(uint8_t b) {
  return b >= 0x20 && b != '"' && b != '\\';
}

}  // namespace

VocabTrie VocabTrie::build(const std::vector<std::string>& bytes, const std::vector<bool>& keep) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (!bytes[i].empty() && keep[i]) ids.push_back(static_cast<int32_t>(i));
  }
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return bytes[a] != bytes[b] ? bytes[a] < bytes[b] : a < b;
  });
  VocabTrie t;
  t.nodes.resize(1);
  t.tokens.reserve(ids.size());
  fill(t, bytes, ids, 0, ids.size(), 0, 0);
  return t;
}

TokenVocabulary::TokenVocabulary(std::vector<std::string> bytes) : bytes_(std::move(bytes)) {
  const size_t n = bytes_.size();
  std::vector<bool> everything(n, true), leaves(n, false);
  for (int p = 0; p < 4; ++p) body_bits_[p].assign(static_cast<size_t>(words()), 0);
  for (size_t id = 0; id < n; ++id) {
    const std::string& s = bytes_[id];
    if (s.empty()) continue;
    if (!std::all_of(s.begin(), s.end(),
                     [](char c) { return body_safe(static_cast<uint8_t>(c)); })) {
      leaves[id] = true;
      continue;
    }
    for (int p = 0; p < 4; ++p) {  // valid UTF-8, starting with p continuation bytes due
      uint16_t state = static_cast<uint16_t>(p);
      bool ok = true;
      for (char ch : s) {
        ok = utf8_step(state, static_cast<uint8_t>(ch));
        if (!ok) break;
      }
      if (!ok) continue;
      body_bits_[p][id / 64] |= uint64_t{1} << (id % 64);
      body_ids_[p].push_back(static_cast<int32_t>(id));
    }
  }
  auto chars_of = [&](int32_t id) {
    uint32_t c = 0;
    for (char ch : bytes_[static_cast<size_t>(id)]) c += (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
    return c;
  };
  for (int p = 0; p < 4; ++p) {
    std::vector<int32_t>& ids = body_ids_[p];
    std::vector<uint32_t> c(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) c[i] = chars_of(ids[i]);
    std::vector<size_t> order(ids.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return c[a] < c[b]; });
    std::vector<int32_t> sorted(ids.size());
    body_chars_[p].resize(ids.size());
    for (size_t i = 0; i < order.size(); ++i) {
      sorted[i] = ids[order[i]];
      body_chars_[p][i] = c[order[i]];
    }
    ids = std::move(sorted);
  }
  all_ = VocabTrie::build(bytes_, everything);
  exits_ = VocabTrie::build(bytes_, leaves);
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::of(const Tokenizer& tokenizer) {
  static std::mutex mu;
  static std::map<const Tokenizer*, std::shared_ptr<const TokenVocabulary>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& v = cache[&tokenizer];
  if (v) return v;
  const openai::TokenText text = token_text_of(tokenizer);
  std::vector<std::string> bytes(static_cast<size_t>(tokenizer.vocab_size()));
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.is_special(id)) continue;
    try {
      std::string b = text(id);
      if (b.find("\xEF\xBF\xBD") != std::string::npos) {  // U+FFFD: part of a character
        const std::string raw = raw_bytes(tokenizer.id_to_token(id));
        if (!raw.empty()) b = raw;
      }
      bytes[static_cast<size_t>(id)] = std::move(b);
    } catch (const std::exception&) {  // an id without a token
    }
  }
  v = std::make_shared<const TokenVocabulary>(std::move(bytes));
  return v;
}

}  // namespace tpinfer::structured
