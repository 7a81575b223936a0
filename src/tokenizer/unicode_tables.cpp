// The measured Unicode classes (see scripts/gen_unicode_tables.py) and fast lookups over them.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "tokenizer/unicode_util.h"

namespace tpinfer::tok {

#include "tokenizer/unicode_tables.inc"

namespace {

template <size_t N>
bool in_ranges(const uint32_t (&r)[N][2], uint32_t cp) {
  size_t lo = 0, hi = N;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (cp < r[mid][0]) {
      hi = mid;
    } else if (cp > r[mid][1]) {
      lo = mid + 1;
    } else {
      return true;
    }
  }
  return false;
}

uint8_t slow_class(uint32_t cp) {
  uint8_t c = 0;
  if (in_ranges(kLetterRanges, cp)) c |= kClassLetter;
  if (in_ranges(kNumberRanges, cp)) c |= kClassNumber;
  if (in_ranges(kSpaceRanges, cp)) c |= kClassSpace;
  return c;
}

struct BmpTable {
  std::unique_ptr<uint8_t[]> t{new uint8_t[0x10000]};
  BmpTable() {
    for (uint32_t cp = 0; cp < 0x10000; ++cp) t[cp] = slow_class(cp);
  }
};

const BmpTable& bmp() {
  static const BmpTable table;
  return table;
}

template <size_t N>
std::string to_pcre2(const uint32_t (&r)[N][2]) {
  std::string s;
  char buf[40];
  for (const auto& range : r) {
    if (range[0] == range[1]) {
      std::snprintf(buf, sizeof buf, "\\x{%X}", range[0]);
    } else {
      std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", range[0], range[1]);
    }
    s += buf;
  }
  return s;
}

}  // namespace

bool is_alnum_table(uint32_t cp) {
  return in_ranges(kAlnumRanges, cp);
}

bool is_rust_word(uint32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  }
  return in_ranges(kRustWordRanges, cp);
}

bool norm_opaque(uint32_t cp, bool compat) {
  return compat ? in_ranges(kNfkdOpaqueRanges, cp) : in_ranges(kNfdOpaqueRanges, cp);
}

uint32_t lower_override(uint32_t cp) {
  size_t lo = 0, hi = sizeof kLowerOverride / sizeof kLowerOverride[0];
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (kLowerOverride[mid][0] < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < sizeof kLowerOverride / sizeof kLowerOverride[0] && kLowerOverride[lo][0] == cp
             ? kLowerOverride[lo][1]
             : 0;
}

uint8_t char_class(uint32_t cp) {
  if (cp < 0x10000) return bmp().t[cp];
  return slow_class(cp);
}

const std::string& class_ranges_pcre2(char which) {
  static const std::string letters = to_pcre2(kLetterRanges);
  static const std::string numbers = to_pcre2(kNumberRanges);
  static const std::string spaces = to_pcre2(kSpaceRanges);
  static const std::string word = to_pcre2(kWordRanges);
  return which == 'L' ? letters : which == 'N' ? numbers : which == 'w' ? word : spaces;
}

}  // namespace tpinfer::tok
