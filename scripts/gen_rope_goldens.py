#!/usr/bin/env python3
"""Write tests/data/goldens/rope_frequencies.json: transformers' RoPE frequencies per scaling kind.

Run with the reference venv (torch + transformers; not Debian's python3):

    /work/refenv/bin/python scripts/gen_rope_goldens.py

For each case (a Hugging Face config.json object and a sequence length), the golden holds
inv_freq and attention_factor exactly as transformers computes them: the model's rotary
embedding's own init (compute_default_rope_parameters or ROPE_INIT_FUNCTIONS[rope_type] of
modeling_rope_utils.py, after the config's standardize_rope_params()), with seq_len as
dynamic_rope_update passes it (dynamic: the new length once past max_position_embeddings;
longrope: long factors once past original_max_position_embeddings). tests/unit/test_rope.cpp
compares src/model/rope.cpp with it. Real shapes: Llama 3.1 8B (llama3), Qwen2.5 (yarn),
Phi-3.5-mini (longrope, its factors abbreviated to a pattern), DeepSeek-style yarn with mscale.
"""

import json
import os

import torch
import transformers
from transformers import LlamaConfig, Phi3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def llama(head_dim=128, max_pos=8192, theta=500000.0, rope=None, **extra):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 1000,
         "hidden_size": 4096, "intermediate_size": 1024, "num_hidden_layers": 1,
         "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": head_dim,
         "max_position_embeddings": max_pos, "rope_theta": theta, "rope_scaling": rope}
    c.update(extra)
    return c


PHI_SHORT = [1.0 + 0.05 * i for i in range(48)]
PHI_LONG = [1.0 + 1.5 * i for i in range(48)]
CASES = [
    ("default", llama(rope=None), [1]),
    ("linear", llama(rope={"rope_type": "linear", "factor": 4.0}), [1]),
    ("linear_old_type_key", llama(theta=10000.0, rope={"type": "linear", "factor": 2.0}), [1]),
    ("dynamic", llama(max_pos=2048, theta=10000.0, rope={"rope_type": "dynamic", "factor": 2.0}),
     [100, 2048, 3000, 9000]),
    ("llama3_8b", llama(max_pos=131072, rope={"rope_type": "llama3", "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 8192}), [1]),
    ("yarn_qwen25", llama(max_pos=131072, theta=1e6, rope={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}), [1]),
    ("yarn_mscale", llama(head_dim=64, max_pos=163840, theta=10000.0, rope={
        "rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
        "mscale": 1.0, "mscale_all_dim": 0.8, "beta_fast": 16, "beta_slow": 2,
        "truncate": False}), [1]),
    ("yarn_attention_factor", llama(head_dim=64, max_pos=65536, theta=10000.0, rope={
        "rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192,
        "attention_factor": 1.25}), [1]),
    ("longrope_phi35", {
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 1000,
        "hidden_size": 3072, "intermediate_size": 1024, "num_hidden_layers": 1,
        "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096, "rope_theta": 10000.0, "sliding_window": 262144,
        "rope_scaling": {"type": "longrope", "short_factor": PHI_SHORT, "long_factor": PHI_LONG}},
     [100, 4096, 4097]),
]


def frequencies(cfg_dict, seq_len):
    cls = Phi3Config if cfg_dict["model_type"] == "phi3" else LlamaConfig
    cfg = cls(**{k: v for k, v in cfg_dict.items() if k not in ("architectures", "model_type")})
    kind = cfg.rope_parameters["rope_type"]
    if kind == "default":
        inv, att = LlamaRotaryEmbedding.compute_default_rope_parameters(cfg)
    elif kind == "dynamic" and seq_len <= cfg.max_position_embeddings:
        inv, att = ROPE_INIT_FUNCTIONS[kind](cfg, None)  # what __init__ keeps below max length
    elif kind == "longrope" and seq_len <= cfg.rope_parameters["original_max_position_embeddings"]:
        inv, att = ROPE_INIT_FUNCTIONS[kind](cfg, None)
    else:
        inv, att = ROPE_INIT_FUNCTIONS[kind](cfg, None, seq_len=seq_len)
    return [float(x) for x in inv.to(torch.float32).tolist()], float(att)


def main():
    out = {"generator": "scripts/gen_rope_goldens.py", "transformers": transformers.__version__,
           "torch": torch.__version__, "cases": []}
    for name, cfg, lengths in CASES:
        for n in lengths:
            inv, att = frequencies(cfg, n)
            out["cases"].append({"name": "%s@%d" % (name, n), "config": cfg, "seq_len": n,
                                 "inv_freq": inv, "attention_factor": att})
    path = os.path.join(ROOT, "tests", "data", "goldens", "rope_frequencies.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("%d cases -> %s" % (len(out["cases"]), path))


if __name__ == "__main__":
    main()
