"""Write tests/data/goldens/logit_processors.json: the reference for the logit processors of
src/runtime/engine/logit_processors.h (tests/unit/test_logit_processors.cpp), from transformers'
own logits processors and warpers and the OpenAI penalty formulas as vLLM applies them.

Run with the reference venv (torch + transformers; not Debian's python3):

    /work/refenv/bin/python scripts/gen_logit_processor_goldens.py

The input is real: the bundled stories260K, a prompt and a greedy continuation of 40 tokens (it
repeats words, so the penalties have ids to act on); the logits row is the float32 forward's last
one. Each case lists its parameters and the processed row (null for -inf):
  repetition_penalty  RepetitionPenaltyLogitsProcessor over prompt + generated ids;
  frequency/presence  vLLM's apply_penalties: logits -= f * count + p * (count > 0) over the
                      generated ids only, after the repetition penalty;
  logit_bias          SequenceBiasLogitsProcessor with one-token sequences, biases clipped to
                      [-100, 100] first (OpenAI's range, as vLLM clamps);
  min_p               TemperatureLogitsWarper(T) then MinPLogitsWarper(m): the ids it keeps (the
                      kept logits themselves stay unscaled in tpinfer: the sampler divides by T).
"""

import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "configs", "models", "stories260K")
OUT = os.path.join(ROOT, "tests", "data", "goldens", "logit_processors.json")
PROMPT = "Once upon a time, there was a little girl named Lily. Lily"
N_GENERATED = 40


def row_json(row):
    return [None if v == float("-inf") else round(float(v), 6) for v in row.tolist()]


def vllm_penalties(logits, prompt, generated, rep, freq, pres):
    """vLLM's apply_penalties on one row (float32 math as there)."""
    x = logits.clone()
    if rep != 1.0:
        seen = torch.zeros_like(x, dtype=torch.bool)
        seen[torch.tensor(prompt + generated)] = True
        x = torch.where(seen & (x > 0), x / rep, torch.where(seen, x * rep, x))
    counts = torch.zeros_like(x)
    for t in generated:
        counts[t] += 1
    x = x - freq * counts
    x = x - pres * (counts > 0).to(x.dtype)
    return x


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    prompt = tok(PROMPT).input_ids
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(N_GENERATED):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    generated = ids[len(prompt):]
    input_ids = torch.tensor([ids])
    vocab = logits.shape[0]
    cases = []

    for rep in (1.3, 0.8):
        out = RepetitionPenaltyLogitsProcessor(rep)(input_ids, logits[None].clone())[0]
        cases.append({"name": f"repetition_penalty {rep}", "repetition_penalty": rep,
                      "expected": row_json(out)})
    # The transformers reference and the vLLM formula agree on repetition alone: check it.
    assert torch.allclose(vllm_penalties(logits, prompt, generated, 1.3, 0, 0),
                          RepetitionPenaltyLogitsProcessor(1.3)(input_ids, logits[None].clone())[0])
    for rep, freq, pres in ((1.0, 0.5, 0.0), (1.0, 0.0, 0.7), (1.0, -0.4, -1.0), (1.2, 0.5, 0.3)):
        out = vllm_penalties(logits, prompt, generated, rep, freq, pres)
        cases.append({"name": f"penalties rep {rep} freq {freq} pres {pres}",
                      "repetition_penalty": rep, "frequency_penalty": freq,
                      "presence_penalty": pres, "expected": row_json(out)})

    top = torch.topk(logits, 3).indices.tolist()
    bias = {top[0]: -100.0, top[1]: 3.5, 7: 250.0, 20: -1e6}
    clipped = {k: max(-100.0, min(100.0, v)) for k, v in bias.items()}
    proc = SequenceBiasLogitsProcessor(sequence_bias=[[[k], v] for k, v in clipped.items()])
    out = proc(input_ids, logits[None].clone())[0]
    cases.append({"name": "logit_bias", "logit_bias": [[k, v] for k, v in bias.items()],
                  "expected": row_json(out)})

    for temperature, min_p in ((1.0, 0.1), (0.7, 0.05), (1.5, 0.3)):
        scaled = TemperatureLogitsWarper(temperature)(input_ids, logits[None].clone())
        kept = MinPLogitsWarper(min_p)(input_ids, scaled)[0]
        cases.append({"name": f"min_p {min_p} at T {temperature}", "min_p": min_p,
                      "temperature": temperature,
                      "kept_ids": [i for i in range(vocab) if kept[i] != float("-inf")]})

    # End to end through the CLI: transformers' greedy generate with a repetition penalty and
    # logit biases (tests/e2e/check_sampling.sh runs tpinfer with the same keys).
    banned = top[0]
    generate = []
    for rep, bias in ((1.3, {}), (1.0, {banned: -100.0}), (1.5, {banned: -100.0, 263: 4.0})):
        procs = []
        if rep != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(rep))
        if bias:
            procs.append(SequenceBiasLogitsProcessor(sequence_bias=[[[k], v]
                                                                    for k, v in bias.items()]))
        seq = list(prompt)
        with torch.no_grad():
            for _ in range(32):
                row = model(torch.tensor([seq])).logits[0, -1:].float()
                for p in procs:
                    row = p(torch.tensor([seq]), row)
                seq.append(int(row[0].argmax()))
        generate.append({"repetition_penalty": rep,
                         "logit_bias": ",".join(f"{k}:{v}" for k, v in bias.items()),
                         "ids": seq[len(prompt):]})

    golden = {
        "generator": "scripts/gen_logit_processor_goldens.py",
        "model": "stories260K",
        "prompt_ids": prompt,
        "generated_ids": generated,
        "logits": row_json(logits),
        "cases": cases,
        "prompt": PROMPT,
        "generate": generate,
    }
    with open(OUT, "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases, {len(generated)} generated ids: "
          f"{tok.decode(generated)!r}")


if __name__ == "__main__":
    main()
