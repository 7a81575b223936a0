#!/usr/bin/env python3
"""Golden files for the tokenizer tests (tests/tokenizer), made with the Hugging Face reference.

Writes, under tests/data/tokenizer/:
  corpus.jsonl          the hard strings (one JSON string per line); written only if missing or
                        with --corpus, from the hand-written list below plus seeded random ones
  golden_<name>.json    per tokenizer: for every corpus line the ids with and without special
                        tokens (tokenizers' Tokenizer.encode) and the decode of those ids with and
                        without skip_special_tokens; plus decodes of random id sequences
  chat_goldens.json     transformers' apply_chat_template(..., tokenize=False) for several
                        conversations per family, and the ids of that text (add_special_tokens=False)

The reference environment (the versions the goldens were made with):
    python3 -m venv .venv-ref
    .venv-ref/bin/pip install tokenizers==0.23.3 transformers==5.23.0 jinja2
    .venv-ref/bin/python scripts/gen_tokenizer_goldens.py [--corpus] [--retrain]
transformers only renders the chat templates; all ids come from `tokenizers`.
"""
import argparse
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
CORPUS = os.path.join(DATA, "corpus.jsonl")

TOKENIZERS = {
    "qwen3": "configs/tokenizers/qwen3",
    "mistral": "configs/tokenizers/mistral",
    "llama3": "configs/tokenizers/llama3",
    "stories260K": "configs/models/stories260K",
    # made by this script: stories260K with a Metaspace pre-tokenizer/decoder instead of the
    # Prepend/Replace normalizer (the form newer Llama/Mistral conversions use)
    "metaspace": "tests/data/tokenizer/metaspace",
    # made by this script: a small byte-level BPE trained on the corpus, with the GPT-2 regex
    # (ByteLevel use_regex), add_prefix_space, NFKC + Lowercase, RobertaProcessing and added tokens
    # with lstrip / rstrip / single_word / normalized flags
    "synthetic": "tests/data/tokenizer/synthetic",
    # made by this script: a character-level BPE with [UNK] (fuse_unk), continuing_subword_prefix,
    # end_of_word_suffix, NFD + Replace(regex) + Strip, Whitespace + Digits + Split behaviours,
    # TemplateProcessing, and a Replace/Fuse/Strip decoder
    "synthetic2": "tests/data/tokenizer/synthetic2",
}

# Extra strings for the synthetic tokenizer's added-token flags (stored with their text).
SYNTHETIC_EXTRA = [
    "Hello world", "say hello", "hellothere", "hello_x hello! xhello", "HELLO, Hello.",
    "a <mask> b", "a   <mask>b", "<mask>", "  <mask>  ", "\t<mask>\n", "x<mask>y",
    "x [END]   y", "[END]", "[END]\n\nnext", "a [END]", " <sep>  z", "a<sep>b", "\u3000<sep>\u3000",
    "ﬁx FIX fix", "ΣΑΣ Σ", "İstanbul", "Straße ǅ ＡＢＣ", "<s>hello</s>", "<pad><unk>",
    "hello<mask>[END]<sep>hello", "x\u00a0<mask>", "hello\u00e9", "éhello", "hello1 1hello",
]

METASPACE_LIMIT = 260  # corpus lines used for the synthetic tokenizer


def write_metaspace_tokenizer():
    j = json.load(open(os.path.join(ROOT, TOKENIZERS["stories260K"], "tokenizer.json"),
                       encoding="utf-8"))
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                          "split": False}
    j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                    "split": False}
    os.makedirs(os.path.join(ROOT, TOKENIZERS["metaspace"]), exist_ok=True)
    with open(os.path.join(ROOT, TOKENIZERS["metaspace"], "tokenizer.json"), "w",
              encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
        f.write("\n")

# ---------------------------------------------------------------------------------------------
# Corpus

HAND = [
    "",
    "Hello world",
    "Hello, World! How are you today?",
    "hello   world",
    # whitespace runs, tabs, newlines, \r\n
    " ", "  ", "   ", " a", "  a", "   a", "a ", "a  ", "a   b", "a \t b", "\t", "\t\t\tx",
    "\n", "\n\n", "\n\n\n\n", "a\nb", "a\n\nb", "a\r\nb", "\r\n", "\r\n\r\n", "\r", "a\rb",
    " \r\n ", "x \n\n y", "   \n   \n", "line1\nline2\r\nline3\rline4", "  \n\t \n", "end\n",
    "trailing spaces   ", "\n leading newline", "a\n\n\n\n\n\nb", " \n", "\n ", "\t\n",
    "\u00a0", "\u00a0\u00a0a", "\u3000text", "em\u2003space", "a\u0085b", "a \u0085 b",
    "\u0085\u0085", "\u2028\u2029", "x\u180ey", "\x1c\x1d\x1e\x1f", "\x0b\x0c", "a\x0bb\x0cc",
    "  \u00a0 word", "\u2000\u2001\u2002\u200a",
    # contractions in both cases and look-alikes
    "I'm, you're, he's, she'd, we've, they'll, don't, can't",
    "I'M, YOU'RE, HE'S, SHE'D, WE'VE, THEY'LL, DON'T, CAN'T",
    "I'm You'Re He'S We'vE They'lL",
    "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "'ſ 'K 'ß 'ﬆ",
    "rock'n'roll", "''", "'", "it''s", "O'Neil's car", "'hello'", "x'sy", "'ll've", " 's",
    "‘curly’ “quotes”", "l'été d'abord",
    # numbers
    "12345678901234567890", "3.14159", "1,000,000.00", "-42", "+1 (555) 123-4567",
    "٣٤٥ ١٢", "०१२३४५६७८९", "①②③", "Ⅻ ⅻ", "x² + y³ = z⁴", "½ ¾", "2024-01-01T12:34:56Z",
    "v1.2.3-rc.1", "0x1F 0b1010 0o777", "1e-10", "123abc456", "abc123def", "a1b2c3",
    "7 8 9", "007", "9999999", "1 000 000",
    # code
    "def f(x):\n    return x * 2\n\n\nprint(f(21))\n",
    "int main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n",
    "{\"key\": [1, 2, {\"nested\": null}], \"s\": \"a\\\"b\"}",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "for i in $(seq 1 10); do echo \"$i\" >> out.txt; done",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%o%';",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares",
    "if (a && b || !c) { x += 1; } else { x -= 1; }",
    "    indented\n        more\n            most",
    "^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))",
    "let v: Vec<u8> = vec![0; 16]; // Rust",
    "```python\nimport os\n```",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    # URLs, emails, paths
    "https://example.com/path/to/page?q=1&x=%20y#frag",
    "Visit http://www.test-site.org:8080/a_b-c.html now!",
    "mailto:first.last+tag@sub.example.co.uk", "/usr/local/bin/python3.11", "C:\\Windows\\System32",
    "git@github.com:owner/repo.git",
    # emoji: joiners, skin tones, flags, keycaps, variation selectors
    "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪🇯🇵🇺🇸", "😀😃😄😁", "❤️", "1️⃣#️⃣", "🧑🏿‍🚀",
    "I love 🍕 and 🍣!", "👩🏻‍💻 coding", "☺︎ ☺️", "🫠🫶🏼",
    # CJK and others
    "你好，世界！今天天气很好。", "日本語のテキストとカタカナ、ひらがな。", "東京タワー",
    "한국어 텍스트입니다", "\u1100\u1161\u11a8 \u1112\u1161\u11ab", "ＡＢＣ１２３ｱｲｳ", "中文English混合",
    "مرحبا بالعالم", "اَلْعَرَبِيَّةُ", "שלום עולם", "नमस्ते दुनिया", "हिन्दी में पाठ",
    "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่าง", "தமிழ் உரை", "বাংলা লেখা", "ქართული", "ሰላም ዓለም",
    "Привет, мир!", "Γειά σου Κόσμε", "Tiếng Việt có dấu", "Zażółć gęślą jaźń", "Ελληνικά ΑΒΓ",
    "Ꭰ Cherokee", "𝕳𝖊𝖑𝖑𝖔 𝓦𝓸𝓻𝓵𝓭", "𐍈 Gothic", "\U00011F00\U00011F04 Kawi", "\u1C89\u1C8A", "\U000105C0",
    # decomposed accents (NFC matters)
    "e\u0301", "Cafe\u0301 cre\u0300me bru\u0302le\u0301e", "A\u030a", "n\u0303 vs ñ",
    "A\u0308\u0304", "\u1e9b\u0323", "\u212b \u2126 \u212a", "\u0958\u0959", "o\u0302\u0301",
    "Tie\u0302\u0301ng Vie\u0323\u0302t", "e\u0301\u0301\u0301", "\u0301 leading combining mark",
    "ﬁ ligature ﬂ", "Å Å", "ǆ ǅ Ǆ", "\u1100\u1161", "\uac00\u11a8",
    # control, zero-width, BOM, bidi
    "\x00", "a\x00b", "\x01\x02\x03", "\x7f", "\x08\x1b[31mred\x1b[0m", "a\u200bb", "\u200c\u200d",
    "\ufeffBOM", "word\u2060joiner", "soft\u00adhyphen", "\u202eRTL override\u202c",
    "\ufffd replacement", "\ue000 private", "\uffff", "\U0010ffff", "\u0600\u0601",
    # special-token text inside prompts
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>", "text<|endoftext|>more", "<|im_end|><|im_end|>", "<|im_start|", "<|im_start|>",
    "<s>[INST] What is the capital of France? [/INST]", "</s><s>", "<s>", "</s>", "<unk>",
    "<<s>>", " <s> ", "<s><s>", "a<s>b", "<0x41>", "[INST]", "[/INST]",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>",
    "<|reserved_special_token_5|>", "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
    "</think>", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "<|fim_prefix|>a<|fim_suffix|>",
    "< s >", "<|endoftext|", "<|EOT|>",
    # punctuation, symbols, mixed
    "...", "!!!???", "---", "___", "====", "$100 €50 £30 ¥20", "C++ C# F#", "@user #hashtag",
    "a.b.c", "…—–«»‹›", "™®©℗", "∑∫√∞≠≤≥", "→ ⇒ ↔", "\\n is not a newline", "tab\tsep\tvalues",
    "\"quoted\" 'single'", "(parens) [brackets] {braces}", "snake_case camelCase PascalCase",
    "ALLCAPS lowercase MiXeD", "abcабв", "ſ", "e-mail re-enter co-op", "U.S.A. e.g. i.e.",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco.",
    # very long words and runs
    "a" * 400, "supercalifragilisticexpialidocious" * 12, "x" * 200 + " " + "y" * 200,
    "1" * 300, " " * 300, "\n" * 200, " " * 100 + "word", "🙂" * 80, "中" * 150,
    "Ab" * 200, "-" * 200, "\u00e9" * 150, "e\u0301" * 100, "a\u200b" * 100,
]


def random_corpus(n, seed=1234):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r\u00a0\u3000\u2003\u0085",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "\u0300\u0301\u0302\u0303\u0308\u0323\u200d\ufe0f",
        "你好世界日本語한국어",
        "😀👍🏽🇩🇪❤",
        "مرحباשלוםनमस्तेสวัสดี",
        "éñüßøÅçœ",
    ]
    specials = ["<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>",
                "<|begin_of_text|>", "<|eot_id|>", "'s", "'LL", "\r\n", "  ", "<0x0A>"]
    out = []
    for _ in range(n):
        length = rng.randint(1, 40)
        s = []
        for _ in range(length):
            r = rng.random()
            if r < 0.06:
                s.append(rng.choice(specials))
            else:
                pool = rng.choice(pools)
                s.append(rng.choice(pool))
        out.append("".join(s))
    # random code points from the whole range (no surrogates)
    for _ in range(n // 2):
        length = rng.randint(1, 12)
        cps = []
        while len(cps) < length:
            c = rng.choice([rng.randint(0x20, 0x7F), rng.randint(0x80, 0x7FF),
                            rng.randint(0x800, 0xFFFF), rng.randint(0x10000, 0x10FFFF)])
            if not (0xD800 <= c <= 0xDFFF):
                cps.append(c)
        out.append("".join(chr(c) for c in cps))
    return out


def write_corpus():
    lines = HAND + random_corpus(100)
    with open(CORPUS, "w", encoding="utf-8") as f:
        for s in lines:
            f.write(json.dumps(s, ensure_ascii=True) + "\n")
    print("wrote %s (%d lines)" % (CORPUS, len(lines)))


def read_corpus():
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------
# Encode / decode goldens

def random_ids(tok, rng, n):
    """Id sequences that stress the decoder: byte tokens, specials, partial UTF-8."""
    vocab = tok.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    by_name = {v: k for k, v in vocab.items()}
    # (sorted: get_vocab's order changes from run to run)
    byte_ids = sorted(i for t, i in vocab.items()
                      if len(t) == 6 and t.startswith("<0x") and t.endswith(">"))
    special_ids = sorted(i for i, t in tok.get_added_tokens_decoder().items() if t.special)
    added_ids = sorted(tok.get_added_tokens_decoder().keys())
    # byte-level: tokens that are a single high byte (cut UTF-8)
    high = sorted(i for t, i in vocab.items() if len(t) == 1 and ord(t[0]) >= 0xA1)
    seqs = []
    for _ in range(n):
        length = rng.randint(1, 24)
        ids = []
        for _ in range(length):
            r = rng.random()
            if r < 0.25 and byte_ids:
                ids.append(rng.choice(byte_ids))
            elif r < 0.35 and special_ids:
                ids.append(rng.choice(special_ids))
            elif r < 0.40 and added_ids:
                ids.append(rng.choice(added_ids))
            elif r < 0.55 and high:
                ids.append(rng.choice(high))
            else:
                i = rng.randrange(size)
                while i not in by_name:
                    i = rng.randrange(size)
                ids.append(i)
        seqs.append(ids)
    return seqs


def make_goldens(name, path, corpus, extra):
    tok = Tokenizer.from_file(os.path.join(ROOT, path, "tokenizer.json"))
    entries = []
    for k, text in list(enumerate(corpus)) + [(None, t) for t in extra]:
        with_sp = tok.encode(text).ids
        without = tok.encode(text, add_special_tokens=False).ids
        dec = tok.decode(with_sp, skip_special_tokens=False)
        dec_skip = tok.decode(with_sp, skip_special_tokens=True)
        e = {"i": k, "ids": with_sp} if k is not None else {"text": text, "ids": with_sp}
        if without != with_sp:
            e["ids_no_special"] = without
        # decodes are stored only when they differ from the text (null = same as the text)
        e["decode"] = None if dec == text else dec
        e["decode_skip"] = None if dec_skip == text else dec_skip
        entries.append(e)
    rng = random.Random(sum(map(ord, name)))
    rand = []
    for ids in random_ids(tok, rng, 150):
        rand.append({"ids": ids, "decode": tok.decode(ids, skip_special_tokens=False),
                     "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    out = {
        "tokenizer": path,
        "made_with": "tokenizers %s" % tokenizers.__version__,
        "note": "i: corpus line (or text: the string); ids: Tokenizer.encode(text).ids; ids_no_special (when different): "
                "add_special_tokens=False; decode/decode_skip: Tokenizer.decode(ids, "
                "skip_special_tokens=False/True), null when equal to the corpus text",
        "encode": entries,
        "decode_random": rand,
    }
    fn = os.path.join(DATA, "golden_%s.json" % name)
    with open(fn, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("wrote %s: %d encode, %d decode_random" % (fn, len(entries), len(rand)))


# ---------------------------------------------------------------------------------------------
# Chat template goldens

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [{"role": "user", "content": "Hi, who are you?"},
                   {"role": "assistant", "content": "I am an assistant."},
                   {"role": "user", "content": "Tell me a joke."}],
    "thinking_history": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nAdd two and two.\n</think>\n\n4"},
        {"role": "user", "content": "And 3+3?"}],
    "assistant_last_with_think": [
        {"role": "user", "content": "Solve x+1=3"},
        {"role": "assistant", "content": "<think>\n\nx = 3 - 1\n\n</think>\n\n\nx = 2"}],
    "whitespace_content": [{"role": "user", "content": "  padded question \n\n"},
                           {"role": "assistant", "content": "\n answer  "},
                           {"role": "user", "content": "\tagain\u00a0"}],
    "tools": [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": "Let me check."},
              {"role": "tool", "content": "{\"temp\": 21}"},
              {"role": "tool", "content": "{\"sky\": \"clear\"}"},
              {"role": "assistant", "content": "21 degrees and clear."},
              {"role": "user", "content": "<tool_response>\nok\n</tool_response>"}],
    "late_system": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                    {"role": "system", "content": "new rules"}, {"role": "user", "content": "c"}],
    "unicode": [{"role": "user", "content": "你好 👋🏽 <s> [INST] é"}],
    "mistral_system": [{"role": "system", "content": "sys"}, {"role": "user", "content": "u"}],
    "not_alternating": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
}

# (case name, tokenizer dir, tokenizer_config to take the template from, conversations, options)
CHAT_CASES = [
    ("qwen3", "configs/tokenizers/qwen3", "configs/tokenizers/qwen3/tokenizer_config.json",
     ["single_user", "system_user", "multi_turn", "thinking_history", "assistant_last_with_think",
      "whitespace_content", "tools", "late_system", "unicode"]),
    ("llama3", "configs/tokenizers/llama3", "configs/tokenizers/llama3/tokenizer_config.json",
     ["single_user", "system_user", "multi_turn", "thinking_history", "whitespace_content",
      "unicode"]),
    ("llama3_instruct", "configs/tokenizers/llama3",
     "tests/data/tokenizer/chat_fixtures/llama3_instruct/tokenizer_config.json",
     ["single_user", "system_user", "multi_turn", "whitespace_content", "unicode"]),
    ("mistral_instruct_v01", "configs/tokenizers/mistral",
     "tests/data/tokenizer/chat_fixtures/mistral_instruct_v01/tokenizer_config.json",
     ["single_user", "multi_turn", "whitespace_content", "unicode", "mistral_system",
      "not_alternating"]),
]


def make_chat_goldens():
    from transformers import AutoTokenizer
    import transformers
    cases = []
    for case, tok_dir, cfg_path, convs in CHAT_CASES:
        hf = AutoTokenizer.from_pretrained(os.path.join(ROOT, tok_dir))
        cfg = json.load(open(os.path.join(ROOT, cfg_path), encoding="utf-8"))
        template = cfg["chat_template"]
        # Special tokens the template sees come from the fixture config (as they would if the
        # fixture were the checkpoint's own file).
        extra = {"bos_token": cfg.get("bos_token"), "eos_token": cfg.get("eos_token")}
        fast = Tokenizer.from_file(os.path.join(ROOT, tok_dir, "tokenizer.json"))
        for conv in convs:
            for gen in (True, False):
                for thinking in ((True, False) if case == "qwen3" else (True,)):
                    entry = {"case": case, "tokenizer": tok_dir, "config": cfg_path,
                             "conversation": conv, "messages": CONVERSATIONS[conv],
                             "add_generation_prompt": gen, "enable_thinking": thinking}
                    try:
                        kwargs = dict(tokenize=False, add_generation_prompt=gen,
                                      chat_template=template, **extra)
                        if case == "qwen3":
                            kwargs["enable_thinking"] = thinking
                        text = hf.apply_chat_template(CONVERSATIONS[conv], **kwargs)
                        entry["text"] = text
                        entry["ids"] = fast.encode(text, add_special_tokens=False).ids
                    except Exception as e:  # the template raised
                        entry["error"] = str(e)
                    cases.append(entry)
    out = {"made_with": "transformers %s, tokenizers %s" % (transformers.__version__,
                                                            tokenizers.__version__),
           "note": "text = AutoTokenizer.apply_chat_template(messages, tokenize=False, "
                   "add_generation_prompt, enable_thinking (qwen3), chat_template=<config's>); "
                   "ids = tokenizers encode(text, add_special_tokens=False); error = the "
                   "template raised",
           "cases": cases}
    fn = os.path.join(DATA, "chat_goldens.json")
    with open(fn, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("wrote %s: %d cases (%d errors)" % (fn, len(cases), sum("error" in c for c in cases)))


def write_synthetic_tokenizer(corpus):
    from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(sorted(corpus), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")))
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True),
                            AddedToken("[END]", rstrip=True, special=True)])
    tok.add_tokens([AddedToken("hello", single_word=True, normalized=True),
                    AddedToken("<sep>", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("\ufb01x", normalized=True)])
    d = os.path.join(ROOT, TOKENIZERS["synthetic"])
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))


def write_synthetic2_tokenizer(corpus):
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers
    tok = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=True, continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFD(), normalizers.Replace(Regex(r"\d{4,}"), "<num>"),
        normalizers.Strip(left=True, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split(Regex(r"[aeiou]"), "merged_with_previous"),
        pre_tokenizers.Split("-", "contiguous", invert=True),
        pre_tokenizers.Split(Regex(r"x"), "merged_with_next")])
    # (no Strip with stop > 0: tokenizers 0.23.3 panics on it for an empty text)
    tok.decoder = decoders.Sequence([decoders.Replace("</w>", " "), decoders.Replace(Regex("##"), ""),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                                  limit_alphabet=60, continuing_subword_prefix="##",
                                  end_of_word_suffix="</w>", show_progress=False)
    tok.train_from_iterator(sorted(corpus), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    d = os.path.join(ROOT, TOKENIZERS["synthetic2"])
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", action="store_true", help="rewrite corpus.jsonl")
    ap.add_argument("--no-chat", action="store_true", help="skip the chat template goldens")
    ap.add_argument("--retrain", action="store_true",
                    help="train the synthetic tokenizers again (changes their files)")
    args = ap.parse_args()
    os.makedirs(DATA, exist_ok=True)
    if args.corpus or not os.path.exists(CORPUS):
        write_corpus()
    corpus = read_corpus()
    write_metaspace_tokenizer()
    # Training is not reproducible run to run (ties), so the trained tokenizers are committed and
    # only made again on request.
    for name, make in (("synthetic", write_synthetic_tokenizer),
                       ("synthetic2", write_synthetic2_tokenizer)):
        if args.retrain or not os.path.exists(os.path.join(ROOT, TOKENIZERS[name], "tokenizer.json")):
            make(corpus)
    for name, path in TOKENIZERS.items():
        make_goldens(name, path,
                     corpus[:METASPACE_LIMIT] if name in ("metaspace", "synthetic2") else corpus,
                     SYNTHETIC_EXTRA if name.startswith("synthetic") else [])
    if not args.no_chat:
        make_chat_goldens()


if __name__ == "__main__":
    sys.exit(main())
