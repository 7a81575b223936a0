#!/usr/bin/env python3
"""Make the tiny random-initialised reference models under tests/data/models/ with HF transformers.

Run with the reference venv (torch + transformers; not Debian's python3):

    /work/refenv/bin/python scripts/make_tiny_models.py [--out tests/data/models]

Each model is a Hugging Face directory (config.json, generation_config.json, model.safetensors in
float32; no tokenizer: tests feed token ids). The shapes are small but exercise what the engine
must get right: 8 query heads over 4 kv heads (GQA; tp 1, 2 and 4 all valid), vocabularies that
tp=2/4 must pad (302, 259) or not (320), and per model:

  tiny-qwen3   head_dim 16 != hidden/heads (=8), q/k RMSNorm, tied embeddings, rope_theta 1e6,
               eos ids that differ between config.json and generation_config.json (union)
  tiny-mistral sliding_window 8 (matters inside a 24-token prompt), untied lm_head
  tiny-llama   3 layers, untied, rope_theta 500000, rms_norm_eps 1e-6
  tiny-qwen2   Qwen2: q/k/v biases (column-parallel, split with the weights), head_dim 16,
               yarn RoPE (factor 4, original_max_position_embeddings 16), tied embeddings
  tiny-llama3  Llama 3.x: rope_scaling llama3 (factor 8, low/high 1/4, original 16),
               attention_bias and mlp_bias (so o_proj/down_proj carry row-parallel biases that
               must be added once after the all-reduce), head_dim 16
  tiny-mistral-nemo  Mistral with an explicit head_dim 16 (Mistral Nemo), no sliding window,
               dynamic RoPE (factor 2) with max_position_embeddings 20
  tiny-phi3    Phi3: fused qkv_proj and gate_up_proj (the converter splits them), longrope with
               short/long factors, original_max_position_embeddings 16 of 64 (head_dim stays
               hidden/heads: transformers validates Phi3's factors against that)
  tiny-qwen3-moe  Qwen3-MoE: 3 layers, layer 1 dense (mlp_only_layers, intermediate 128), the
               others 8 experts of width 32 (tp 4: 8 columns each), top-3 renormalised
               (norm_topk_prob), q/k RMSNorm, head_dim 16, untied
  tiny-mixtral Mixtral: 2 layers of 4 experts of width 64, top-2, sliding_window 8
               (save_pretrained writes the Hub names: block_sparse_moe.experts.{e}.w1/w2/w3)

The MoE routers get a larger spread (std 0.6) so that no token's k-th and (k+1)-th expert
scores nearly tie: the routing must not depend on fp32 rounding (tp changes the order of sums).

The scaled-RoPE models have a small original context so that the goldens' prompts (up to 30
tokens + 16 generated) run past it: the scaling is exercised, not just parsed.

Weights are N(0, std) with std 0.15-0.4 and norm weights 1 + N(0, 0.2), so logits are well
spread and greedy argmaxes are not near-ties (gen_model_goldens.py records the margins).
"""

import argparse
import json
import os

import torch
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          MixtralConfig, MixtralForCausalLM, Phi3Config, Phi3ForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM)

COMMON = dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=4, hidden_act="silu",
              max_position_embeddings=256, attention_bias=False)

MODELS = {
    "tiny-qwen3": (Qwen3Config, Qwen3ForCausalLM, dict(
        vocab_size=302, intermediate_size=128, num_hidden_layers=2, head_dim=16,
        tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
        bos_token_id=None, eos_token_id=5, use_sliding_window=False),
        {"eos_token_id": [5, 7], "bos_token_id": None}),
    "tiny-mistral": (MistralConfig, MistralForCausalLM, dict(
        vocab_size=259, intermediate_size=160, num_hidden_layers=2, sliding_window=8,
        tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5,
        bos_token_id=1, eos_token_id=2),
        {"bos_token_id": 1, "eos_token_id": 2}),
    "tiny-llama": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=320, intermediate_size=128, num_hidden_layers=3, mlp_bias=False,
        tie_word_embeddings=False, rope_theta=500000.0, rms_norm_eps=1e-6,
        bos_token_id=1, eos_token_id=2),
        {"bos_token_id": 1, "eos_token_id": [2, 3]}),
    "tiny-qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(
        vocab_size=301, intermediate_size=128, num_hidden_layers=2, head_dim=16,
        tie_word_embeddings=True, rms_norm_eps=1e-6, use_sliding_window=False,
        max_position_embeddings=64,
        rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0,
                         "original_max_position_embeddings": 16},
        bos_token_id=None, eos_token_id=5),
        {"eos_token_id": 5, "bos_token_id": None}),
    "tiny-llama3": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=290, intermediate_size=128, num_hidden_layers=2, head_dim=16,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 16},
        bos_token_id=1, eos_token_id=2),
        {"bos_token_id": 1, "eos_token_id": [2, 3]}),
    "tiny-mistral-nemo": (MistralConfig, MistralForCausalLM, dict(
        vocab_size=320, intermediate_size=160, num_hidden_layers=2, head_dim=16,
        sliding_window=None, tie_word_embeddings=False, rms_norm_eps=1e-5,
        max_position_embeddings=20,
        rope_parameters={"rope_type": "dynamic", "rope_theta": 1e6, "factor": 2.0},
        bos_token_id=1, eos_token_id=2),
        {"bos_token_id": 1, "eos_token_id": 2}),
    "tiny-phi3": (Phi3Config, Phi3ForCausalLM, dict(
        vocab_size=306, intermediate_size=128, num_hidden_layers=2,
        sliding_window=None, tie_word_embeddings=False, rms_norm_eps=1e-5,
        max_position_embeddings=64, original_max_position_embeddings=16,
        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                         "short_factor": [1.0, 1.2, 1.5, 2.5],
                         "long_factor": [1.0, 2.5, 6.0, 16.0]},
        pad_token_id=0, bos_token_id=1, eos_token_id=2),
        {"bos_token_id": 1, "eos_token_id": [2, 7]}),
    "tiny-qwen3-moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM, dict(
        vocab_size=298, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
        head_dim=16, num_experts=8, num_experts_per_tok=3, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[1], tie_word_embeddings=False, rope_theta=1e6,
        rms_norm_eps=1e-6, use_sliding_window=False, bos_token_id=None, eos_token_id=5),
        {"eos_token_id": 5, "bos_token_id": None}),
    "tiny-mixtral": (MixtralConfig, MixtralForCausalLM, dict(
        vocab_size=300, intermediate_size=64, num_hidden_layers=2, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=8, tie_word_embeddings=False, rope_theta=1e6,
        rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2),
        {"bos_token_id": 1, "eos_token_id": 2}),
}

# Standard deviation per weight kind (by the last name parts).
STD = {"embed_tokens": 0.4, "lm_head": 0.25, "q_proj": 0.3, "k_proj": 0.3, "v_proj": 0.2,
       "o_proj": 0.15, "gate_proj": 0.2, "up_proj": 0.2, "down_proj": 0.15, "qkv_proj": 0.3,
       "gate_up_proj": 0.2, "experts": 0.2, "gate": 0.6}


def randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
                continue
            kind = name.split(".")[-2]
            p.copy_(STD[kind] * torch.randn(p.shape, generator=gen))


def make(name, out_root, seed):
    config_cls, model_cls, kwargs, gen_cfg = MODELS[name]
    config = config_cls(**dict(COMMON, **kwargs))
    config.dtype = torch.float32
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32).eval()
    randomise(model, seed)
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    # Our own generation_config.json: greedy by default and, for qwen3/llama, eos ids that differ
    # from config.json so the union is tested.
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(dict(gen_cfg, do_sample=False), f, indent=2)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    n_params = sum(p.numel() for p in model.parameters())
    print("%s: %d parameters, %.0f KB in %s" % (name, n_params, size / 1024, out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "models"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    for i, name in enumerate(MODELS):  # seeds by position: one model is remade as it was
        if name in args.models:
            make(name, args.out, args.seed + i)


if __name__ == "__main__":
    main()
