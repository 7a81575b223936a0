#!/usr/bin/env python3
"""The paged KV cache's benchmarks (issue 16), against a running `tpinfer --serve` (start it with
scripts/bench_server.sh and BENCH_PY=scripts/bench_kv.py) or, for `capacity`, from the memory
plans of two binaries.

  shared-prefix  REQUESTS requests sharing a PREFIX-token system prompt, each with its own
                 QUESTION-token question, CONCURRENCY at a time, streamed: TTFT p50/p99 and the
                 total time (run once with --prefix-caching true, once false on the server).
  interference   STREAMS streams decode; once they all have tokens, one LONG-token prompt
                 arrives: the streams' inter-token latency p50/p99 while it is prefilled, and
                 before it arrived.
  capacity       how many sequences of LENGTH tokens fit the KV memory of BATCH x MAX_SEQ slots
                 (the slot model's reservation), read from each binary's memory plan.

Prints one markdown table row per run. Prompts are made of common English words (one token each
in Llama/Mistral-style tokenizers); the usage the server reports gives the real prompt length.
"""
import argparse
import concurrent.futures
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

WORDS = ("the of and to in is was he for it with as his on be at by had are but from or have an "
         "they which one you were all we her she there would their will when who him been has "
         "more if no out so said what up its about than into them can only other new some time "
         "could these two may then do first any my now such like our over man me even most made "
         "after also did many before must through back years where much your way well down "
         "should because each just those people how too little state good very make world still "
         "own see men work long get here between both life being under never day same another "
         "know while last might us great old year off come since against go came right used take "
         "three").split()


def words(n, seed):
    """n words, a deterministic mix for `seed` (different seeds differ from the first word)."""
    out, x = [], seed * 2654435761 + 12345
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(WORDS[(x >> 33) % len(WORDS)])
    return " ".join(out)


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def stream(url, body, on_token=None, timeout=3600):
    """POSTs a streaming completion; returns (ttft_s, total_s, prompt_tokens, token_times)."""
    body = dict(body, stream=True, stream_options={"include_usage": True})
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    ttft, prompt_tokens, times = None, 0, []
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if "error" in ev:
                raise RuntimeError(ev["error"])
            if ev.get("usage"):
                prompt_tokens = ev["usage"]["prompt_tokens"]
            for ch in ev.get("choices", []):
                if ch.get("text"):
                    now = time.time()
                    if ttft is None:
                        ttft = now - t0
                    times.append(now)
                    if on_token:
                        on_token(now)
    return ttft, time.time() - t0, prompt_tokens, times


def shared_prefix(args):
    system = words(args.prefix_tokens, 0)
    bodies = [{"prompt": system + "\nQuestion: " + words(args.question_tokens, i + 1) + "\nAnswer:",
               "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True}
              for i in range(args.requests)]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(lambda b: stream(args.url, b), bodies))
    total = time.time() - t0
    ttft = [r[0] * 1000 for r in results]
    prompt = statistics.mean(r[2] for r in results)
    if not args.no_header:
        print("| run | requests | prompt tokens (mean) | concurrency | TTFT p50 ms | TTFT p99 ms "
              "| total s |")
        print("|---|---|---|---|---|---|---|")
    print(f"| {args.label} | {args.requests} | {prompt:.0f} | {args.concurrency} | "
          f"{percentile(ttft, 50):.0f} | {percentile(ttft, 99):.0f} | {total:.1f} |", flush=True)


def interference(args):
    lock = threading.Lock()
    gaps_before, gaps_during = [], []
    state = {"phase": "before", "last": {}}
    started = threading.Barrier(args.streams + 1)

    def one(i):
        first = [True]

        def on_token(now):
            with lock:
                last = state["last"].get(i)
                state["last"][i] = now
                if last is not None:
                    (gaps_during if state["phase"] == "during" else gaps_before
                     if state["phase"] == "before" else []).append((now - last) * 1000)
            if first[0]:
                first[0] = False
                started.wait()
        body = {"prompt": words(32, 100 + i), "max_tokens": args.stream_tokens, "temperature": 0,
                "ignore_eos": True}
        return stream(args.url, body, on_token)

    with concurrent.futures.ThreadPoolExecutor(args.streams) as pool:
        futs = [pool.submit(one, i) for i in range(args.streams)]
        started.wait()  # every stream has its first token
        time.sleep(args.settle_s)
        with lock:
            state["phase"] = "during"
        t0 = time.time()
        long_ttft, _, long_prompt, _ = stream(
            args.url, {"prompt": words(args.long_tokens, 7), "max_tokens": 1, "temperature": 0})
        with lock:
            state["phase"] = "after"
        prefill_s = time.time() - t0
        for f in futs:
            f.result()
    if not args.no_header:
        print("| run | streams | long prompt tokens | its TTFT s | ITL p50 / p99 ms before | "
              "ITL p50 / p99 ms while it prefills |")
        print("|---|---|---|---|---|---|")
    print(f"| {args.label} | {args.streams} | {long_prompt} | {long_ttft:.1f} | "
          f"{percentile(gaps_before, 50):.0f} / {percentile(gaps_before, 99):.0f} | "
          f"{percentile(gaps_during, 50):.0f} / {percentile(gaps_during, 99):.0f} |", flush=True)
    del prefill_s


PLAN = re.compile(r"kv cache ([0-9.]+) (B|KiB|MiB|GiB)")
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def kv_bytes(binary, model_args, extra):
    cmd = [binary] + model_args + extra + ["--prompt", "hi", "--max-new-tokens", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    m = PLAN.search(out.stderr + out.stdout)
    if not m:
        sys.exit(f"no memory plan in the output of {' '.join(cmd)}:\n{out.stderr[-2000:]}")
    return float(m.group(1)) * UNITS[m.group(2)], (out.stderr + out.stdout)


def capacity(args):
    model_args = ["--model", args.model, "--dummy-weights", "--tokenizer", args.tokenizer]
    # Before: the slot model reserves max_seq positions per slot, whatever a request's length
    # (a single prompt runs one slot: its plan gives the bytes of one).
    slot, _ = kv_bytes(args.before_bin, model_args, ["--max-seq", str(args.max_seq)])
    budget = args.batch * slot
    # After: a pool of blocks of 16 positions in the same bytes.
    pool, _ = kv_bytes(args.after_bin, model_args,
                       ["--max-seq", str(args.max_seq), "--kv-cache-blocks", "1000"])
    per_block = pool / 1000
    blocks = int(budget // per_block)
    per_seq = -(-args.length // 16)
    after = blocks // per_seq
    if not args.no_header:
        print("| model | KV memory (batch x max_seq) | before: sequences (slots) | after: blocks of 16 "
              "| after: sequences of LENGTH | ratio |")
        print("|---|---|---|---|---|---|")
    print(f"| {args.label} | {budget / (1 << 20):.0f} MiB ({args.batch} x {args.max_seq}) | "
          f"{args.batch} | {blocks} | {after} (of {args.length} tokens) | "
          f"{after / args.batch:.1f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--label", default="")
    ap.add_argument("--no-header", action="store_true")
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("shared-prefix")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--prefix-tokens", type=int, default=2000)
    p.add_argument("--question-tokens", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=8)
    p = sub.add_parser("interference")
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--stream-tokens", type=int, default=400)
    p.add_argument("--long-tokens", type=int, default=8000)
    p.add_argument("--settle-s", type=float, default=3.0)
    p = sub.add_parser("capacity")
    p.add_argument("--before-bin", required=True)
    p.add_argument("--after-bin", required=True)
    p.add_argument("--model", default="configs/models/llama-100m")
    p.add_argument("--tokenizer", default="configs/tokenizers/mistral")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-seq", type=int, default=4096)
    p.add_argument("--length", type=int, default=2048)
    args = ap.parse_args()
    {"shared-prefix": shared_prefix, "interference": interference, "capacity": capacity}[
        args.mode](args)


if __name__ == "__main__":
    main()
