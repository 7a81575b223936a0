#!/usr/bin/env python3
"""Encoding speed of tpinfer's tokenizer next to Hugging Face `tokenizers`, on the same text and
machine, plus a check that both produce the same ids for every line of that text.

The text (several MB, written to BUILD/bench_text.txt) mixes English prose (vim's help files),
Python source (the standard library) and the multilingual tokenizer test corpus, all from files on
this machine. Timings (best of --repeat runs; add_special_tokens off on both sides):
  tpinfer single:   tpinfer-tokenize --bench (one thread): each line encoded separately, and the
                    whole text as one string
  HF single:        Tokenizer.encode_batch(lines) and encode_batch_fast(lines) (no offsets) with
                    TOKENIZERS_PARALLELISM=false (one thread), and Tokenizer.encode(whole text)
  HF batch:         Tokenizer.encode_batch(lines) with the default rayon pool (all cores)
Both sides keep their word caches warm across repeats.

Usage (reference venv as in scripts/gen_tokenizer_goldens.py; build tpinfer-tokenize first):
    cmake -S . -B build-tok -DTPINFER_CUDA=OFF && cmake --build build-tok -j2 --target tpinfer-tokenize
    .venv-ref/bin/python scripts/bench_tokenizer.py [--build build-tok] [--mb 8] [--tokenizers qwen3,llama3,mistral]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = {
    "qwen3": "configs/tokenizers/qwen3",
    "llama3": "configs/tokenizers/llama3",
    "mistral": "configs/tokenizers/mistral",
    "stories260K": "configs/models/stories260K",
}


def make_text(path, target_mb):
    target = int(target_mb * 1e6)
    parts = []

    def take(files, budget):
        got = 0
        for fn in sorted(files):
            try:
                with open(fn, encoding="utf-8", newline="") as f:
                    t = f.read()
            except (UnicodeDecodeError, OSError):
                continue
            parts.append(t)
            got += len(t.encode())
            if got >= budget:
                break
        return got

    prose = take(glob.glob("/usr/share/vim/vim*/doc/*.txt") +
                 glob.glob("/usr/share/common-licenses/*"), target * 0.45)
    code = take(glob.glob("/usr/lib/python3*/*.py") + glob.glob("/usr/lib/python3*/*/*.py"),
                target * 0.40)
    with open(os.path.join(ROOT, "tests/data/tokenizer/corpus.jsonl"), encoding="utf-8") as f:
        corpus = "\n".join(json.loads(line) for line in f if line.strip())
    multi = 0
    while multi < target * 0.15:
        parts.append(corpus)
        multi += len(corpus.encode())
    text = "\n".join(parts).rstrip("\n")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print("bench text: %s, %.2f MB (prose %.2f, code %.2f, multilingual corpus %.2f), %d lines" %
          (path, len(text.encode()) / 1e6, prose / 1e6, code / 1e6, multi / 1e6,
           text.count("\n") + 1))


def hf_worker(mode, tok_dir, text_path, repeat):
    """Runs in a subprocess so that TOKENIZERS_PARALLELISM is set before tokenizers loads."""
    from tokenizers import Tokenizer
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    load = time.perf_counter() - t0
    with open(text_path, encoding="utf-8", newline="") as f:  # keep \r as it is
        text = f.read()
    lines = text.split("\n")
    res = {"load": load}
    best, best_cpu = 1e30, 1e30
    for _ in range(repeat + 1):  # the first run warms the cache, as tpinfer's "warm" pass
        t0, c0 = time.perf_counter(), time.process_time()
        enc = tok.encode_batch(lines, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    res["lines_s"], res["lines_cpu"] = best, best_cpu
    res["lines_tokens"] = sum(len(e.ids) for e in enc)
    if mode == "single" and hasattr(tok, "encode_batch_fast"):  # no offsets: HF's fastest path
        best, best_cpu = 1e30, 1e30
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            tok.encode_batch_fast(lines, add_special_tokens=False)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        res["fast_s"], res["fast_cpu"] = best, best_cpu
    if mode == "single":
        best, best_cpu = 1e30, 1e30
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            n = len(tok.encode(text, add_special_tokens=False).ids)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        res["doc_s"], res["doc_cpu"] = best, best_cpu
        res["doc_tokens"] = n
    print(json.dumps(res))


def run_hf(mode, tok_dir, text_path, repeat):
    env = dict(os.environ)
    env["TOKENIZERS_PARALLELISM"] = "false" if mode == "single" else "true"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--hf-worker", mode, tok_dir,
                          text_path, "--repeat", str(repeat)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_tpinfer(binary, tok_dir, text_path, repeat):
    out = subprocess.run([binary, "--tokenizer", tok_dir, "--bench", text_path, "--repeat",
                          str(repeat), "--no-add-special"], check=True, capture_output=True,
                         text=True).stdout
    return out


def verify(binary, tok_dir, text_path):
    """Same ids for every line: the CLI on JSON Lines vs HF encode_batch."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    with open(text_path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    payload = "".join(json.dumps(l) + "\n" for l in lines)
    out = subprocess.run([binary, "--tokenizer", tok_dir, "--no-add-special"], input=payload,
                         check=True, capture_output=True, text=True).stdout.splitlines()
    want = [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]
    bad = [i for i, (o, w) in enumerate(zip(out, want)) if json.loads(o) != w]
    if len(out) != len(want):
        bad.append(-1)
    return len(lines), bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-tok"))
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tokenizers", default="qwen3,llama3,mistral")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--hf-worker", nargs=3, metavar=("MODE", "DIR", "TEXT"))
    args = ap.parse_args()
    if args.hf_worker:
        hf_worker(*args.hf_worker, args.repeat)
        return 0
    candidates = [os.path.join(args.build, "tpinfer-tokenize"),
                  os.path.join(args.build, "src", "tpinfer-tokenize")]
    found = [c for c in candidates if os.path.exists(c)]
    if not found:
        sys.exit("tpinfer-tokenize not found in %s: build that target first" % args.build)
    binary = max(found, key=os.path.getmtime)
    text_path = os.path.join(args.build, "bench_text.txt")
    make_text(text_path, args.mb)
    mb = os.path.getsize(text_path) / 1e6
    import tokenizers
    print("HF tokenizers %s; %d CPU cores visible (HF batch uses them all)" %
          (tokenizers.__version__, os.cpu_count()))
    for name in args.tokenizers.split(","):
        tok_dir = os.path.join(ROOT, DIRS[name])
        print("\n== %s (%s)" % (name, DIRS[name]))
        print("tpinfer (1 thread):")
        for line in run_tpinfer(binary, tok_dir, text_path, args.repeat).splitlines():
            if line.startswith(("load", "warm", "cold")):
                print("   ", line)
        s = run_hf("single", tok_dir, text_path, args.repeat)
        print("HF single thread: load %.3f s\n    encode_batch(lines) %.2f MB/s wall, %.2f MB/s cpu "
              "(%d tokens); encode(whole text) %.2f MB/s wall, %.2f MB/s cpu (%d tokens)" %
              (s["load"], mb / s["lines_s"], mb / s["lines_cpu"], s["lines_tokens"],
               mb / s["doc_s"], mb / s["doc_cpu"], s["doc_tokens"]))
        if "fast_s" in s:
            print("    encode_batch_fast(lines) %.2f MB/s wall, %.2f MB/s cpu" %
                  (mb / s["fast_s"], mb / s["fast_cpu"]))
        b = run_hf("batch", tok_dir, text_path, args.repeat)
        print("HF batch (%d threads): encode_batch(lines) %.2f MB/s wall (%d tokens)" %
              (os.cpu_count(), mb / b["lines_s"], b["lines_tokens"]))
        if not args.no_verify:
            n, bad = verify(binary, tok_dir, text_path)
            print("ids per line identical to HF: %d/%d%s" %
                  (n - len(bad), n, "" if not bad else " (first differing line %d)" % bad[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
