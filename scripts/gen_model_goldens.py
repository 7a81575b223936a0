#!/usr/bin/env python3
"""Write tests/data/goldens/<model>.json: HF transformers logits and greedy continuations.

Run with the reference venv (torch + transformers; not Debian's python3):

    /work/refenv/bin/python scripts/gen_model_goldens.py [--models tiny-qwen3 ...]

For every model (the tiny random models of scripts/make_tiny_models.py and the bundled
configs/models/stories260K) and 4 prompts of token ids (fixed seed; lengths 1..30; for
stories260K the prompt ids of tests/data/stories260K_golden_greedy.json plus one random prompt),
the golden holds, from one full float32 forward of transformers (eager attention, batch 1, no
padding):
  argmax        argmax of the logits at every position
  top5          top-5 ids and logits at every position
  last_logits   all logits of the last (up to) 4 positions (positions in last_positions)
  margin_min    the smallest top-1 minus top-2 logit gap over all positions (how robust argmax is)
and greedy: 16 new tokens from model.generate (do_sample=False, its KV cache, eos disabled so all
16 are produced), checked here against argmax of a full forward over the extended sequence.
Floats are rounded to 6 significant digits. For tiny-mistral the metadata records how much the
sliding window changes the logits (the same weights with the window disabled). For the MoE models
(eager experts loop) it records router_margin_min: over every token of every prompt's full forward
and every sparse layer, the smallest gap between the k-th and (k+1)-th router logit (how far the
expert choice is from a tie that fp32 rounding could flip).
"""

import argparse
import json
import os
import platform

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "tiny-qwen3": "tests/data/models/tiny-qwen3",
    "tiny-mistral": "tests/data/models/tiny-mistral",
    "tiny-llama": "tests/data/models/tiny-llama",
    "stories260K": "configs/models/stories260K",
    "tiny-qwen2": "tests/data/models/tiny-qwen2",
    "tiny-llama3": "tests/data/models/tiny-llama3",
    "tiny-mistral-nemo": "tests/data/models/tiny-mistral-nemo",
    "tiny-phi3": "tests/data/models/tiny-phi3",
    "tiny-qwen3-moe": "tests/data/models/tiny-qwen3-moe",
    "tiny-mixtral": "tests/data/models/tiny-mixtral",
}
PROMPT_LENGTHS = [1, 6, 24, 30]
NEW_TOKENS = 16
LAST_POSITIONS = 4
SEED = 20240601


def r6(x):
    return float("%.6g" % x)


def dumps(obj, indent=0):
    """JSON with lists of scalars on one line (small files, readable diffs)."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = ['%s "%s": %s' % (pad, k, dumps(v, indent + 1)) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], (dict, list)):
        return "[\n" + ",\n".join(pad + " " + dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, separators=(",", ":"))


def prompts_for(name, vocab, bos):
    rng = np.random.default_rng(SEED + sum(map(ord, name)))
    if name == "stories260K":
        with open(os.path.join(ROOT, "tests/data/stories260K_golden_greedy.json")) as f:
            ref = json.load(f)
        out = [{"name": key, "ids": [int(i) for i in ref[key]["prompt_ids"]]}
               for key in ("no_prompt", "once_upon", "tom_dog")]
        ids = [bos] + [int(i) for i in rng.integers(3, vocab, size=27)]
        out.append({"name": "random_28", "ids": ids})
        return out, ref
    out = []
    for n in PROMPT_LENGTHS:
        out.append({"name": "random_%d" % n, "ids": [int(i) for i in rng.integers(0, vocab, size=n)]})
    return out, None


def reset_rope(model):
    """dynamic RoPE keeps state across calls (inv_freq grows with the longest sequence seen and
    only resets below the original length): start every call fresh, as one request would."""
    rotary = model.model.rotary_emb
    if hasattr(rotary, "original_inv_freq"):
        rotary.inv_freq = rotary.original_inv_freq.clone()
        rotary.max_seq_len_cached = rotary.original_max_seq_len


def rope_kind(cfg):
    params = getattr(cfg, "rope_parameters", None) or {}
    return params.get("rope_type", "default")


def forward_logits(model, ids):
    reset_rope(model)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def margins(logits):
    top2 = torch.topk(logits, 2, dim=-1).values
    return (top2[..., 0] - top2[..., 1])


def golden_for(name, path):
    model_dir = os.path.join(ROOT, path)
    torch.manual_seed(0)
    extra = {}
    if "moe" in name or "mixtral" in name:
        extra["experts_implementation"] = "eager"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager", **extra).eval()
    cfg = model.config
    router_gaps = watch_routers(model)
    model.generation_config.eos_token_id = None  # produce all NEW_TOKENS tokens
    model.generation_config.pad_token_id = 0
    bos = cfg.bos_token_id if cfg.bos_token_id is not None else 0
    prompts, stories_ref = prompts_for(name, cfg.vocab_size, bos)

    records = []
    for p in prompts:
        ids = p["ids"]
        logits = forward_logits(model, ids)  # [T, V]
        t = len(ids)
        top5 = torch.topk(logits, 5, dim=-1)
        last = list(range(max(0, t - LAST_POSITIONS), t))
        reset_rope(model)
        with torch.no_grad():
            # An explicit all-ones mask: without one, generate() masks every prompt id equal to
            # pad_token_id (0 here) as padding.
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                                 dtype=torch.long),
                                 max_new_tokens=NEW_TOKENS, do_sample=False,
                                 output_scores=True, return_dict_in_generate=True)
        new = out.sequences[0, t:].tolist()
        assert len(new) == NEW_TOKENS, (name, p["name"], len(new))
        # The cached greedy path must agree with argmax of one full forward of the whole sequence
        # (not for dynamic / longrope: their frequencies follow the length of each forward, so
        # cached keys were rotated with other frequencies than one full forward uses).
        if rope_kind(cfg) not in ("dynamic", "longrope"):
            full = forward_logits(model, ids + new)
            assert full[t - 1:-1].argmax(-1).tolist() == new, (name, p["name"])
        step_scores = torch.stack([s[0] for s in out.scores])
        rec = {
            "name": p["name"],
            "ids": ids,
            "argmax": logits.argmax(-1).tolist(),
            "margin_min": r6(margins(logits).min().item()),
            "top5": {"ids": top5.indices.tolist(),
                     "logits": [[r6(v) for v in row] for row in top5.values.tolist()]},
            "last_positions": last,
            "last_logits": [[r6(v) for v in logits[i].tolist()] for i in last],
            "greedy": {"new_tokens": NEW_TOKENS, "ids": new,
                       "margin_min": r6(margins(step_scores).min().item())},
        }
        if stories_ref is not None and p["name"] in stories_ref:
            ref = stories_ref[p["name"]]
            # generated_ids (empty prompt) holds only new tokens; ids_after_bos repeats the
            # prompt after its BOS.
            if "generated_ids" in ref:
                ref_new = ref["generated_ids"]
            else:
                ref_new = ref["ids_after_bos"][len(ids) - 1:]
            rec["greedy"]["matches_llama2c_golden"] = ref_new[:NEW_TOKENS] == new
        records.append(rec)

    meta = {
        "generator": "scripts/gen_model_goldens.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "attn_implementation": "eager",
        "dtype": "float32",
        "float_rounding": "6 significant digits",
        "seed": SEED,
        "greedy": "model.generate(do_sample=False, max_new_tokens=%d), KV cache, eos disabled; "
                  "checked equal to full-forward argmax" % NEW_TOKENS,
        "margin_note": "margin_min: smallest top-1 minus top-2 logit gap; an engine whose logits "
                       "differ by less than half of it reproduces every argmax",
    }
    config = {
        "architecture": cfg.architectures[0], "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "sliding_window": getattr(cfg, "sliding_window", None),
        "rope_parameters": getattr(cfg, "rope_parameters", None),
        "max_position_embeddings": cfg.max_position_embeddings,
        "longest_sequence": max(len(r["ids"]) for r in records) + NEW_TOKENS,
    }
    if name == "tiny-mistral":
        meta["sliding_window"] = sliding_window_effect(model_dir, records, cfg.sliding_window)
    if router_gaps is not None:
        meta["experts_implementation"] = "eager"
        meta["router_margin_min"] = r6(min(router_gaps))
    return {"model": name, "model_dir": path, "metadata": meta, "config": config,
            "prompts": records}


def watch_routers(model):
    """MoE models: a list that collects each router call's smallest k-th minus (k+1)-th router
    logit (None for dense models)."""
    routers = [m for m in model.modules() if type(m).__name__.endswith("TopKRouter")]
    if not routers:
        return None
    gaps = []

    def hook(module, _inputs, output):
        top = torch.topk(output[0].float(), module.top_k + 1, dim=-1).values
        gaps.append((top[:, module.top_k - 1] - top[:, module.top_k]).min().item())

    for r in routers:
        r.register_forward_hook(hook)
    return gaps


def sliding_window_effect(model_dir, records, window):
    """Logit differences between the model as is and the same weights with no window."""
    plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager",
                                                 sliding_window=None).eval()
    assert plain.config.sliding_window is None
    longest = max(records, key=lambda r: len(r["ids"]))
    with_window = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                       attn_implementation="eager").eval()
    a = forward_logits(with_window, longest["ids"])
    b = forward_logits(plain, longest["ids"])
    diff = (a - b).abs().max(-1).values
    inside = diff[:window].max().item()
    outside = diff[window:].max().item()
    argmax_changed = int((a.argmax(-1) != b.argmax(-1)).sum().item())
    assert inside == 0.0, "positions < window must not change"
    assert outside > 1e-2, "the sliding window must change the logits beyond the window"
    return {
        "window": window,
        "semantics": "query at position i attends to keys j with i - window < j <= i "
                     "(the last `window` positions, itself included)",
        "checked_on_prompt": longest["name"],
        "max_abs_logit_diff_positions_below_window": inside,
        "max_abs_logit_diff_positions_from_window": r6(outside),
        "argmax_positions_changed": argmax_changed,
        "window_changes_logits": True,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "goldens"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for name in args.models:
        g = golden_for(name, MODELS[name])
        path = os.path.join(args.out, name + ".json")
        with open(path, "w") as f:
            f.write(dumps(g) + "\n")
        worst = min(p["margin_min"] for p in g["prompts"])
        greedy_worst = min(p["greedy"]["margin_min"] for p in g["prompts"])
        print("%s: %d prompts, min argmax margin %.3g (greedy %.3g), %.0f KB -> %s"
              % (name, len(g["prompts"]), worst, greedy_worst, os.path.getsize(path) / 1024, path))
        if name == "tiny-mistral":
            print("  sliding window:", g["metadata"]["sliding_window"])


if __name__ == "__main__":
    main()
