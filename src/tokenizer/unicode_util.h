// Private to src/tokenizer: UTF-8 helpers with the exact semantics the Hugging Face `tokenizers`
// library (Rust) has: from_utf8_lossy's "maximal subpart" replacement, char::is_whitespace, the
// GPT-2 byte <-> unicode table, and Unicode normalisation forms through utf8proc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tpinfer::tok {

// Length of the UTF-8 sequence starting at s[i] if it is valid (1..4), else 0. Follows the
// Unicode/Rust well-formedness table (no overlongs, no surrogates, nothing above U+10FFFF).
size_t valid_utf8_len(std::string_view s, size_t i);

// Decodes the valid sequence of length `len` at s[i] (caller checked it with valid_utf8_len).
uint32_t decode_utf8(std::string_view s, size_t i, size_t len);

// Decodes one code point at s[i] and advances i; invalid bytes decode as U+FFFD (one per
// maximal invalid subpart, as from_utf8_lossy does).
uint32_t next_cp(std::string_view s, size_t& i);

void append_utf8(std::string& out, uint32_t cp);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view s);
bool is_valid_utf8(std::string_view s);

// Number of trailing bytes of s that form an incomplete but so far valid UTF-8 sequence (a
// character cut in half that more bytes could complete); 0 when s ends on a boundary.
size_t incomplete_utf8_tail(std::string_view s);

// Character classes as the regex engine of HF tokenizers sees them (\p{L}, \p{N}, \s), from the
// generated unicode_tables.inc. Bit flags.
enum : uint8_t { kClassLetter = 1, kClassNumber = 2, kClassSpace = 4 };
uint8_t char_class(uint32_t cp);
// Code points utf8proc decomposes but tokenizers' NFD (compat = false) or NFKD (compat = true)
// leaves unchanged (its Unicode data is older); see unicode_tables.inc.
bool norm_opaque(uint32_t cp, bool compat);
// tokenizers' lowercase of cp where it differs from utf8proc_tolower, else 0.
uint32_t lower_override(uint32_t cp);
// The class as a PCRE2 character-class body ("\x{41}-\x{5A}..."), for 'L', 'N' or 's'.
const std::string& class_ranges_pcre2(char which);

// Rust char::is_whitespace (the Unicode White_Space property).
bool is_whitespace(uint32_t cp);
// Rust char::is_alphanumeric (Alphabetic or Numeric, measured from tokenizers' regex engine).
bool is_alphanumeric(uint32_t cp);
bool is_alnum_table(uint32_t cp);
// \w of Rust's regex crate (used by tokenizers' Whitespace pre-tokenizer).
bool is_rust_word(uint32_t cp);

// The GPT-2 byte-level table: byte -> code point, and code point -> byte (-1 when none).
uint32_t byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);

enum class NormForm { NFC, NFD, NFKC, NFKD };
// Normalises s; returns false (and leaves out untouched) when s is already known to be in the
// form, which is the common case and costs one scan.
bool normalize_unicode(std::string_view s, NormForm form, std::string& out);
std::string to_lower(std::string_view s);

}  // namespace tpinfer::tok
