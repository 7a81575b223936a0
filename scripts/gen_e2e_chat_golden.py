#!/usr/bin/env python3
"""Golden for tests/e2e/check_chat.sh: the prompt ids the job must build in chat mode.

Renders a system + user conversation with transformers' apply_chat_template on the repository's
Qwen3 tokenizer (thinking on and off) and encodes it without special tokens, as the job does.
Run with a venv holding the reference:  python3 -m venv .venv-ref &&
  .venv-ref/bin/pip install transformers==5.23.0 tokenizers==0.23.3 jinja2
  .venv-ref/bin/python scripts/gen_e2e_chat_golden.py
"""
import json
import pathlib

import tokenizers
import transformers
from transformers import AutoTokenizer

root = pathlib.Path(__file__).resolve().parent.parent
tok = AutoTokenizer.from_pretrained(root / "configs/tokenizers/qwen3")
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
out = {"generator": "scripts/gen_e2e_chat_golden.py", "transformers": transformers.__version__,
       "tokenizers": tokenizers.__version__, "system": "Be brief.", "prompt": "hi", "cases": {}}
for think in (True, False):
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                   enable_thinking=think)
    out["cases"]["thinking" if think else "no_thinking"] = {
        "enable_thinking": think, "text": text,
        "ids": tok.encode(text, add_special_tokens=False)}
(root / "tests/data/e2e_chat_qwen3.json").write_text(json.dumps(out, indent=1) + "\n")
print("wrote tests/data/e2e_chat_qwen3.json")
