#include "tokenizer/unicode_util.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"

namespace tpinfer::tok {

size_t valid_utf8_len(std::string_view s, size_t i) {
  const size_t n = s.size();
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return 1;
  auto cont = [&](size_t k, uint8_t lo, uint8_t hi) {
    if (i + k >= n) return false;
    const auto b = static_cast<uint8_t>(s[i + k]);
    return b >= lo && b <= hi;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
    return cont(1, lo, hi) && cont(2, 0x80, 0xBF) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
    return cont(1, lo, hi) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

// Length of the maximal invalid subpart at s[i] (which valid_utf8_len rejected): the lead byte
// plus the continuation bytes that were still acceptable, and at least 1.
static size_t invalid_subpart_len(std::string_view s, size_t i) {
  const size_t n = s.size();
  const auto b0 = static_cast<uint8_t>(s[i]);
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  size_t len = 1;
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= n) break;
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
    ++len;
  }
  return len;
}

uint32_t decode_utf8(std::string_view s, size_t i, size_t len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + i);
  switch (len) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3:
      return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
             (p[3] & 0x3Fu);
  }
}

uint32_t next_cp(std::string_view s, size_t& i) {
  const size_t len = valid_utf8_len(s, i);
  if (len == 0) {
    i += invalid_subpart_len(s, i);
    return 0xFFFD;
  }
  const uint32_t cp = decode_utf8(s, i, len);
  i += len;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (i + 8 <= s.size()) {  // skip ASCII eight bytes at a time
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = valid_utf8_len(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    const size_t len = valid_utf8_len(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      i += invalid_subpart_len(s, i);
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

size_t incomplete_utf8_tail(std::string_view s) {
  // A cut character is at most 3 bytes long; look for its lead byte among the last 3 bytes.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t i = n - back;
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) return 0;
    if (b >= 0xC0) {  // a lead byte: incomplete iff its maximal subpart reaches the end
      if (valid_utf8_len(s, i) != 0) return 0;
      size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
      if (b < 0xC2 || b > 0xF4) return 0;
      return invalid_subpart_len(s, i) == back && back < need ? back : 0;
    }
  }
  return 0;
}

bool is_whitespace(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_alphanumeric(uint32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  }
  return is_alnum_table(cp);
}

namespace {
struct ByteTables {
  std::array<uint32_t, 256> b2u{};
  std::array<int16_t, 324> u2b{};
  ByteTables() {
    u2b.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      b2u[b] = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      u2b[b2u[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}
}  // namespace

uint32_t byte_to_unicode(uint8_t b) {
  return byte_tables().b2u[b];
}
int unicode_to_byte(uint32_t cp) {
  return cp < 324 ? byte_tables().u2b[cp] : -1;
}

namespace {

enum class NormKind { Inert, Opaque, Dirty };

// Inert: the code point cannot change under normalisation to `form` whatever its neighbours are
// (combining class 0, no decomposition, never the second of a composition), so normalisation
// never reaches across it, though it may compose with FOLLOWING characters (then not inert).
// Opaque: utf8proc would decompose it but tokenizers does not (its Unicode data is older): kept
// as it is and kept out of utf8proc's way. Dirty: anything else.
NormKind norm_kind(uint32_t cp, NormForm form) {
  if (cp < 0x300) {
    // Latin-1 and Latin Extended: only compatibility forms and NFD decompositions matter.
    if (cp < 0xA0) return NormKind::Inert;
    if (form == NormForm::NFC) return NormKind::Inert;
  }
  if ((cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xAC00 && cp <= 0xD7A3)) return NormKind::Dirty;
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  if (p->decomp_seqindex != UINT16_MAX &&
      norm_opaque(cp, form == NormForm::NFKC || form == NormForm::NFKD)) {
    return NormKind::Opaque;
  }
  if (p->combining_class != 0) return NormKind::Dirty;
  if (p->decomp_seqindex != UINT16_MAX) return NormKind::Dirty;
  if (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000) return NormKind::Dirty;  // 2nd
  return NormKind::Inert;
}

void utf8proc_normalize(std::string_view s, int options, std::string& out) {
  const std::string valid = utf8_lossy(s);
  utf8proc_uint8_t* res = nullptr;
  const auto len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(valid.data()),
                                static_cast<utf8proc_ssize_t>(valid.size()), &res,
                                static_cast<utf8proc_option_t>(options));
  TPI_CHECK(len >= 0, "tokenizer: unicode normalisation failed: " << utf8proc_errmsg(len));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(res, &std::free);
  out.append(reinterpret_cast<const char*>(res), static_cast<size_t>(len));
}

void normalize_region(std::string_view s, NormForm form, std::string& out) {
  int options = UTF8PROC_STABLE;
  const bool compat = form == NormForm::NFKC || form == NormForm::NFKD;
  const bool compose = form == NormForm::NFC || form == NormForm::NFKC;
  options |= compose ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
  if (compat) options |= UTF8PROC_COMPAT;
  if (!compose) {
    utf8proc_normalize(s, options, out);
    return;
  }
  // tokenizers does not compose into a character it cannot decompose: undo such compositions.
  std::string tmp;
  utf8proc_normalize(s, options, tmp);
  for (size_t i = 0; i < tmp.size();) {
    const size_t start = i;
    const uint32_t cp = next_cp(tmp, i);
    if (cp >= 0x300 && norm_opaque(cp, compat)) {
      utf8proc_normalize(std::string_view(tmp).substr(start, i - start),
                         UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out);
    } else {
      out.append(tmp, start, i - start);
    }
  }
}

}  // namespace

// Only the regions around characters that can change are given to utf8proc: the text splits into
// independent pieces before each inert character and around each opaque one.
bool normalize_unicode(std::string_view s, NormForm form, std::string& out) {
  const size_t n = s.size();
  size_t i = 0, last_boundary = 0, copied = 0;
  bool changed = false;
  auto kind_at = [&](size_t& pos) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      return NormKind::Inert;
    }
    return norm_kind(next_cp(s, pos), form);
  };
  while (i < n) {
    const size_t start = i;
    const NormKind k = kind_at(i);
    if (k == NormKind::Inert) {
      last_boundary = start;
      continue;
    }
    if (k == NormKind::Opaque) {
      last_boundary = i;  // a region may start right after it
      continue;
    }
    // A region from the last boundary up to the next inert or opaque character.
    size_t end = i;
    while (end < n) {
      size_t j = end;
      if (kind_at(j) != NormKind::Dirty) break;
      end = j;
    }
    if (!changed) {
      out.clear();
      out.reserve(n + 16);
      changed = true;
    }
    out.append(s.data() + copied, last_boundary - copied);
    normalize_region(s.substr(last_boundary, end - last_boundary), form, out);
    copied = end;
    i = end;
    last_boundary = end;
  }
  if (!changed) return false;
  out.append(s.data() + copied, n - copied);
  return true;
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
      ++i;
      continue;
    }
    const uint32_t cp = next_cp(s, i);
    if (cp == 0x130) {  // Rust's full mapping: capital I with dot -> i + combining dot above
      out += "i\xCC\x87";
      continue;
    }
    const uint32_t over = lower_override(cp);
    append_utf8(out, over != 0 ? over
                               : static_cast<uint32_t>(
                                     utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

}  // namespace tpinfer::tok
