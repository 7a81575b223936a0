#!/usr/bin/env python3
"""The reference side of the lm-evaluation-harness test (tests/server/check_lm_eval.py): runs
lm_eval's own `hf` model (transformers, float32, CPU) on the bundled stories260K over the small
local tasks in tests/server/lm_eval_tasks, and writes the metrics and every sample's responses
(loglikelihoods of the multiple-choice task, texts of the generate_until task) as a golden.

No BOS is added (add_bos_token=False): lm_eval's local-completions model tokenizes without
special tokens, so both sides score the same ids.

Run with the reference venv (torch + transformers + lm-eval):
    /work/refenv/bin/python scripts/gen_lm_eval_golden.py
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TASKS_DIR = os.path.join(ROOT, "tests", "server", "lm_eval_tasks")
MODEL = os.path.join(ROOT, "configs", "models", "stories260K")
OUT = os.path.join(ROOT, "tests", "data", "goldens", "lm_eval_stories260K.json")
TASKS = ["tpinfer_mc", "tpinfer_gen"]


def summarize(results):
    """Metrics and per-sample responses of an lm_eval results dict (shared with the check)."""
    out = {"metrics": {}, "samples": {}}
    for task in TASKS:
        m = results["results"][task]
        out["metrics"][task] = {
            k: v for k, v in m.items() if isinstance(v, (int, float)) and "stderr" not in k
        }
        rows = []
        for s in sorted(results["samples"][task], key=lambda s: s["doc_id"]):
            if task == "tpinfer_mc":
                rows.append({"doc_id": s["doc_id"], "loglikelihoods": [r[0][0] for r in s["resps"]]})
            else:
                rows.append({"doc_id": s["doc_id"], "text": s["resps"][0][0]})
        out["samples"][task] = rows
    return out


def long_prompt_logprobs():
    """A prompt longer than one chunk of scoring rows (the server scores it over several steps):
    its ids and transformers' log_softmax of each id after the first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    text = " ".join(["Once upon a time, there was a little girl named Lily. She loved to play in",
                     "the park with her friends. One day, she saw a big red ball under a tree."] * 6)
    ids = tok(text, add_special_tokens=False).input_ids
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return {"ids": ids, "logprobs": [float(lp[k, ids[k + 1]]) for k in range(len(ids) - 1)]}


def main():
    import lm_eval
    from lm_eval.tasks import TaskManager

    os.chdir(TASKS_DIR)  # the tasks' data_files are relative
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={MODEL},dtype=float32,add_bos_token=False",
        tasks=TASKS,
        task_manager=TaskManager(include_path=TASKS_DIR),
        batch_size=1,
        device="cpu",
        log_samples=True,
    )
    golden = summarize(results)
    golden["long_prompt"] = long_prompt_logprobs()
    golden["generator"] = "scripts/gen_lm_eval_golden.py (lm_eval %s, hf model, float32)" % (
        lm_eval.__version__ if hasattr(lm_eval, "__version__") else "?"
    )
    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(json.dumps(golden["metrics"], indent=1))
    print("wrote", OUT)


if __name__ == "__main__":
    sys.exit(main())
