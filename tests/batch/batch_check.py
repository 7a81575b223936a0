#!/usr/bin/python3
"""Checks for the batch tests (standard library only).

  batch_check.py prompts N OUT.jsonl            the greedy/sampled request set of the tests
  batch_check.py many N MAX_NEW OUT.jsonl       N plain prompts (for kill/resume and benchmarks)
  batch_check.py single-args IN.jsonl           per request: ID, a tab, its single-mode flags
                                                (shell-quoted) for `tpinfer --prompt ...`
  batch_check.py exactly-once IN.jsonl OUT.jsonl
        every id of the input is in the output exactly once, every line is whole JSON
  batch_check.py same REF.jsonl OUT.jsonl       same ids, token ids and text per id
  batch_check.py vs-single IN.jsonl SINGLE_DIR OUT.jsonl
        each result equals the single-prompt run of its request (SINGLE_DIR/<id>.json metrics
        and <id>.out stdout), token for token; stop strings cut the single run's text
"""
import json
import shlex
import sys

STARTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "One day",
          "Tom had a red ball", "The sun was shining", "A big cat sat on the mat",
          "The bird sang a song", "Sara wanted a new toy", "It was a rainy day"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def read_lines(path):
    data = open(path, "rb").read()
    if data and not data.endswith(b"\n"):
        fail(f"{path}: the last line is torn (no newline)")
    out = []
    for n, raw in enumerate(data.decode("utf-8").split("\n")[:-1] if data else [], 1):
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError as e:
            fail(f"{path}:{n}: not JSON ({e}): {raw[:80]!r}")
    return out


def prompts(n, path):
    """Greedy requests of several lengths plus sampled ones and stop strings. The first three
    have long prompts (200-300 tokens) that arrive together, so their prefill is split into
    chunks across steps and shares steps with the decode tokens of other sequences."""
    story = ("Once upon a time, there was a little girl named Lily. She loved to play outside "
             "in the park. ")
    reqs = [{"id": f"long{k}", "prompt": story * (8 + 2 * k), "max_new_tokens": 30}
            for k in range(3)]
    for i in range(n):
        r = {"id": f"g{i}", "prompt": STARTS[i % len(STARTS)], "max_new_tokens": 20 + 7 * i}
        if i % 6 == 1:
            r["max_new_tokens"] = 400  # long enough for the story to end (finish_reason stop)
        if i % 4 == 3:
            r.update({"temperature": 0.8, "top_p": 0.9, "seed": 100 + i})
        if i % 5 == 4:
            r.update({"temperature": 1.0, "top_k": 8, "seed": 7})
        if i % 6 == 5:
            r["stop"] = [".", "!"]
        reqs.append(r)
    with open(path, "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")


def many(n, max_new, path):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"p{i}", "prompt": STARTS[i % len(STARTS)],
                                "max_new_tokens": max_new}) + "\n")


def single_args(inp):
    for r in read_lines(inp):
        args = ["--prompt", r["prompt"]]
        for key in ("max_new_tokens", "temperature", "top_k", "top_p", "seed"):
            if key in r:
                args += ["--" + key.replace("_", "-"), str(r[key])]
        print(r["id"] + "\t" + " ".join(shlex.quote(a) for a in args))


def exactly_once(inp, out):
    ids = [json.dumps(r["id"]) for r in read_lines(inp)]
    got = {}
    for r in read_lines(out):
        k = json.dumps(r["id"])
        got[k] = got.get(k, 0) + 1
        for key in ("text", "finish_reason", "prompt_tokens", "completion_tokens", "token_ids",
                    "ttft_ms", "total_ms"):
            if key not in r:
                fail(f"result {k} has no {key}")
    twice = [k for k, c in got.items() if c != 1]
    if twice:
        fail(f"ids written more than once: {twice[:10]}")
    missing = [k for k in ids if k not in got]
    if missing:
        fail(f"{len(missing)} id(s) missing: {missing[:10]}")
    extra = [k for k in got if k not in set(ids)]
    if extra:
        fail(f"ids not in the input: {extra[:10]}")
    print(f"exactly once: all {len(ids)} ids, each once, every line whole")


def same(ref, out):
    a = {json.dumps(r["id"]): r for r in read_lines(ref)}
    b = {json.dumps(r["id"]): r for r in read_lines(out)}
    if a.keys() != b.keys():
        fail(f"different ids: {sorted(a.keys() ^ b.keys())[:10]}")
    for k in a:
        for key in ("token_ids", "text", "finish_reason"):
            if a[k][key] != b[k][key]:
                fail(f"{k}: {key} differs: {a[k][key]!r} vs {b[k][key]!r}")
    print(f"same: {len(a)} results equal token for token")


def vs_single(inp, single_dir, out):
    reqs = {r["id"]: r for r in read_lines(inp)}
    res = {r["id"]: r for r in read_lines(out)}
    if reqs.keys() != res.keys():
        fail(f"different ids: {sorted(reqs.keys() ^ res.keys())}")
    n_cut = 0
    for rid, req in reqs.items():
        m = json.load(open(f"{single_dir}/{rid}.json"))
        text = open(f"{single_dir}/{rid}.out", encoding="utf-8").read()
        text = text[:-1] if text.endswith("\n") else text
        # stdout may echo the prompt first (newer single mode); the batch text is the bare
        # continuation with its leading space, which a stream from the first new token drops.
        if text.startswith(req["prompt"]):
            text = text[len(req["prompt"]):]
        r = res[rid]
        ids, single_ids = r["token_ids"], m["generated_ids"]
        if r["prompt_tokens"] != m["prompt_tokens"]:
            fail(f"{rid}: prompt_tokens {r['prompt_tokens']} vs single {m['prompt_tokens']}")
        btext = r["text"]
        if req.get("stop"):
            # The single run has no stop strings: the batch must be a prefix of it, cut at the
            # first stop string.
            if single_ids[:len(ids)] != ids:
                fail(f"{rid}: token ids are not a prefix of the single run's\n  {ids}\n  {single_ids}")
            cuts = [text.find(s) for s in req["stop"] if text.find(s) >= 0]
            if cuts:
                text = text[:min(cuts)]
                n_cut += 1
                if r["finish_reason"] != "stop":
                    fail(f"{rid}: cut by a stop string but finish_reason {r['finish_reason']}")
            elif ids != single_ids:
                fail(f"{rid}: no stop string matched, yet ids differ")
        else:
            if ids != single_ids:
                first = next((i for i, (x, y) in enumerate(zip(ids, single_ids)) if x != y),
                             min(len(ids), len(single_ids)))
                fail(f"{rid}: token ids differ from the single run at {first}:\n  batch  {ids}\n"
                     f"  single {single_ids}")
            if r["finish_reason"] != m["finish_reason"]:
                fail(f"{rid}: finish_reason {r['finish_reason']} vs single {m['finish_reason']}")
        if btext.lstrip(" ") != text.lstrip(" "):
            fail(f"{rid}: text differs:\n  batch  {btext!r}\n  single {text!r}")
    n_eos = sum(1 for r in res.values() if r["finish_reason"] == "stop") - n_cut
    if n_eos == 0 or n_cut == 0:
        fail(f"the request set should end some sequences by EOS ({n_eos}) and some by stop "
             f"strings ({n_cut})")
    print(f"vs single: {len(reqs)} results equal their single-prompt runs token for token "
          f"({n_eos} ended by the model, {n_cut} cut by stop strings)")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prompts":
        prompts(int(args[0]), args[1])
    elif cmd == "many":
        many(int(args[0]), int(args[1]), args[2])
    elif cmd == "single-args":
        single_args(*args)
    elif cmd == "exactly-once":
        exactly_once(*args)
    elif cmd == "same":
        same(*args)
    elif cmd == "vs-single":
        vs_single(*args)
    else:
        fail("unknown command " + cmd)


if __name__ == "__main__":
    main()
