#!/usr/bin/env python3
"""Generates src/tokenizer/unicode_tables.inc, the Unicode data where the C++ tokenizer must follow
Hugging Face `tokenizers` rather than the system libraries:
  * the classes \\p{L}, \\p{N}, \\s and \\w as tokenizers' regex engine (Oniguruma, Unicode 16) sees
    them; the system PCRE2 has Unicode 14 tables;
  * Lowercase: tokenizers' mapping (Rust, Unicode 16) where it differs from utf8proc's;
  * normalisation: the code points utf8proc (Unicode 15) decomposes but tokenizers' NFD / NFKD
    (older Unicode data) leaves unchanged; the C++ side keeps them as they are and never composes
    into them.
Everything is measured, not copied: every code point is run through tokenizers' own
pre-tokenizers and normalizers, and through the system libutf8proc (via ctypes).

Usage (same reference venv as scripts/gen_tokenizer_goldens.py):
    python3 -m venv .venv-ref && .venv-ref/bin/pip install tokenizers==0.23.3
    .venv-ref/bin/python scripts/gen_unicode_tables.py
"""
import ctypes
import os

import tokenizers
from tokenizers import Regex, normalizers, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "tokenizer", "unicode_tables.inc")

CHARS = [c for c in range(1, 0x110000) if not (0xD800 <= c <= 0xDFFF)]
TEXT = "".join(chr(c) for c in CHARS)


def measure(pattern):
    """Code points matched by `pattern` (one code point at a time) in tokenizers' regex engine."""
    splitter = pre_tokenizers.Split(Regex(pattern), "removed")
    kept = bytearray(len(CHARS))
    for _, (a, b) in splitter.pre_tokenize_str(TEXT):  # offsets are in characters
        for k in range(a, b):
            kept[k] = 1
    return [c for k, c in enumerate(CHARS) if not kept[k]]


def whitespace_word_chars():
    """Characters the Whitespace pre-tokenizer counts as \\w. It uses Rust's regex crate, not
    Oniguruma: "!c!" splits into three pieces exactly when c is a word character."""
    word = []
    chunk = 20000
    for k in range(0, len(CHARS), chunk):
        cps = [c for c in CHARS[k:k + chunk] if c != 0x20]
        text = " ".join("!" + chr(c) + "!" for c in cps)
        pieces = pre_tokenizers.Whitespace().pre_tokenize_str(text)
        # offsets in characters: group the pieces by the "!c!" they fall in (3 chars + 1 space)
        by_item = {}
        for piece, (a, b) in pieces:
            by_item.setdefault(a // 4, []).append(piece)
        for i, c in enumerate(cps):
            ps = by_item.get(i, [])
            if len(ps) == 3:
                word.append(c)
            else:
                assert ps in (["!" + chr(c) + "!"], ["!", "!"]), (hex(c), ps)
    return word


def hf_per_char(normalizer):
    """{cp: result} of a tokenizers normalizer applied to each code point alone. Characters are
    normalised in one call, separated by newlines (a starter that nothing decomposes into)."""
    out = {}
    chunk = 50000
    for k in range(0, len(CHARS), chunk):
        cps = [c for c in CHARS[k:k + chunk] if c != 0x0A]
        res = normalizer.normalize_str("\n".join(chr(c) for c in cps)).split("\n")
        assert len(res) == len(cps)
        out.update(zip(cps, res))
    return out


class Utf8proc:
    STABLE, COMPAT, COMPOSE, DECOMPOSE = 1 << 1, 1 << 2, 1 << 3, 1 << 4

    def __init__(self):
        self.lib = ctypes.CDLL("libutf8proc.so.2")
        self.libc = ctypes.CDLL("libc.so.6")
        self.lib.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t,
                                          ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        self.lib.utf8proc_map.restype = ctypes.c_ssize_t
        self.lib.utf8proc_tolower.argtypes = [ctypes.c_int32]
        self.lib.utf8proc_tolower.restype = ctypes.c_int32
        self.lib.utf8proc_unicode_version.restype = ctypes.c_char_p

    def map(self, s, options):
        b = s.encode()
        out = ctypes.c_void_p()
        n = self.lib.utf8proc_map(b, len(b), ctypes.byref(out), options)
        assert n >= 0
        r = ctypes.string_at(out, n).decode()
        self.libc.free(out)
        return r


def opaque(hf, up, options):
    """Code points utf8proc changes but tokenizers leaves alone (and never the reverse)."""
    out = []
    for c in CHARS:
        if c == 0x0A:
            continue
        mine, theirs = up.map(chr(c), options), hf[c]
        if mine != theirs:
            assert theirs == chr(c), "U+%04X: tokenizers gives %r, utf8proc %r" % (c, theirs, mine)
            out.append(c)
    return out


def ranges(cps):
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def emit(name, cps):
    rs = ranges(cps)
    lines = ["// %d code points in %d ranges" % (len(cps), len(rs)),
             "static const uint32_t %s[][2] = {" % name]
    row = []
    for a, b in rs:
        row.append("{0x%X, 0x%X}," % (a, b))
        if len(row) == 6:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines.append("};")
    return "\n".join(lines)


def main():
    letters = measure(r"\p{L}")
    numbers = measure(r"\p{N}")
    spaces = measure(r"\s")
    s_fold = measure(r"(?i:s)")
    # Rust's char::is_alphanumeric (Alphabetic or Numeric), for single_word added tokens
    alnum = measure(r"[\p{Alphabetic}\p{N}]")
    word = measure(r"\w")
    rust_word = whitespace_word_chars()
    up = Utf8proc()
    nfd_opaque = opaque(hf_per_char(normalizers.NFD()), up, Utf8proc.STABLE | Utf8proc.DECOMPOSE)
    nfkd_opaque = opaque(hf_per_char(normalizers.NFKD()), up,
                         Utf8proc.STABLE | Utf8proc.DECOMPOSE | Utf8proc.COMPAT)
    lower = hf_per_char(normalizers.Lowercase())
    lower_pairs = []
    for c in CHARS:
        if c == 0x0A or c == 0x130:  # U+0130 -> "i\u0307" is special-cased in the C++ code
            continue
        want = lower[c]
        mine = chr(up.lib.utf8proc_tolower(c))
        if want != mine:
            assert len(want) == 1, "U+%04X lowercases to %r" % (c, want)
            lower_pairs.append((c, ord(want)))
    assert lower[0x130] == "i\u0307"
    parts = [
        "// Generated by scripts/gen_unicode_tables.py from tokenizers %s; do not edit." %
        tokenizers.__version__,
        "// Classes as HF tokenizers' regex engine matches them.",
        emit("kLetterRanges", letters),
        emit("kNumberRanges", numbers),
        emit("kSpaceRanges", spaces),
        "// \\w",
        emit("kWordRanges", word),
        "// \\w of Rust's regex crate (the Whitespace pre-tokenizer)",
        emit("kRustWordRanges", rust_word),
        "// Alphabetic or N (Rust char::is_alphanumeric)",
        emit("kAlnumRanges", alnum),
        "// (?i:s) matches: %s" % " ".join("U+%04X" % c for c in s_fold),
        "// utf8proc %s (Unicode %s) decomposes these, tokenizers' NFD does not:" %
        ("2", up.lib.utf8proc_unicode_version().decode()),
        emit("kNfdOpaqueRanges", nfd_opaque),
        "// ... and these under NFKD:",
        emit("kNfkdOpaqueRanges", nfkd_opaque),
        "// Lowercase where tokenizers (Rust char::to_lowercase) and utf8proc_tolower differ:",
        "static const uint32_t kLowerOverride[][2] = {",
    ] + ["    {0x%X, 0x%X}," % p for p in lower_pairs] + ["};", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(parts))
    print("wrote %s: L=%d N=%d s=%d, NFD opaque %d, NFKD opaque %d, lowercase overrides %d" %
          (OUT, len(letters), len(numbers), len(spaces), len(nfd_opaque), len(nfkd_opaque),
           len(lower_pairs)))


if __name__ == "__main__":
    main()
