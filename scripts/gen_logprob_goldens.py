"""Write tests/data/goldens/logprobs.json: transformers' log-probabilities of a greedy
continuation, the reference for the logprobs that tpinfer's sampler reports (server, batch files,
metrics JSON).

Run with the reference venv (torch + transformers; not Debian's python3):

    /work/refenv/bin/python scripts/gen_logprob_goldens.py

For each model (tiny random models of scripts/make_tiny_models.py and the bundled stories260K)
and one prompt of token ids (fixed seed), 12 greedy steps, each from a full float32 forward over
the sequence so far (eager attention): the chosen id, its log_softmax value, and the top 5 ids
with their log_softmax values (the raw distribution: no temperature, top-k or top-p). Floats are
rounded to 7 significant digits.
"""

import json
import os

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "stories260K": "configs/models/stories260K",
    "tiny-llama": "tests/data/models/tiny-llama",
    "tiny-qwen3": "tests/data/models/tiny-qwen3",
}
STEPS = 12
TOP = 5
SEED = 20261130


def r7(x):
    return float("%.7g" % x)


def golden_for(name, path):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, path), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    vocab = model.config.vocab_size
    rng = np.random.default_rng(SEED + sum(map(ord, name)))
    prompt = [int(i) for i in rng.integers(3, vocab, size=7)]
    ids = list(prompt)
    steps = []
    with torch.no_grad():
        for _ in range(STEPS):
            logits = model(torch.tensor([ids])).logits[0, -1].double()
            lp = torch.log_softmax(logits, dim=-1)
            chosen = int(torch.argmax(logits))
            top = torch.topk(lp, TOP)
            steps.append({"id": chosen, "logprob": r7(lp[chosen]),
                          "top": [[int(i), r7(v)] for v, i in zip(top.values, top.indices)],
                          "margin": r7(float(top.values[0] - top.values[1]))})
            ids.append(chosen)
    return {"prompt_ids": prompt, "steps": steps}


def main():
    out = {"generator": "scripts/gen_logprob_goldens.py", "transformers": transformers.__version__,
           "torch": torch.__version__, "models": {}}
    for name, path in MODELS.items():
        out["models"][name] = golden_for(name, path)
    dest = os.path.join(ROOT, "tests/data/goldens/logprobs.json")
    with open(dest, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", dest)


if __name__ == "__main__":
    main()
