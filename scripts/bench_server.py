#!/usr/bin/env python3
"""Load benchmark of a running `tpinfer --serve` (or any OpenAI-compatible server).

Streaming completions with a fixed max_tokens and ignore_eos, from C client threads at a time
(plain http.client: no extra dependency), for each concurrency C given. Per level it reports
requests/s, generated tokens/s, time to first token p50/p99 (request sent -> first text chunk)
and inter-token latency p50 (gaps between text chunks), as one Markdown table on stdout.
A benchmark, not a test. Start the server first (scripts/bench_server.sh does it all).

  scripts/bench_server.py --url http://127.0.0.1:8000 --concurrency 1 8 32 --requests 64 \
      --max-tokens 64 [--label stories260K] [--no-header]
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def one_request(url, body, timeout):
    """(ttft_s, [chunk gaps], completion_tokens, total_s) of one streaming request."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}: {resp.read()[:300]!r}")
    times, tokens = [], None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        if "error" in ev:
            raise RuntimeError(f"error event: {ev['error']}")
        if ev.get("choices") and ev["choices"][0].get("text"):
            times.append(time.perf_counter())
        if ev.get("usage"):
            tokens = ev["usage"]["completion_tokens"]
    total = time.perf_counter() - t0
    conn.close()
    if not times:
        raise RuntimeError("no text chunk")
    gaps = [b - a for a, b in zip(times, times[1:])]
    return times[0] - t0, gaps, tokens if tokens is not None else len(times), total


def run_level(args, concurrency):
    body = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    if args.model:
        body["model"] = args.model
    n = max(args.requests, concurrency)
    lock = threading.Lock()
    next_i = [0]
    results, errors = [], []

    def worker():
        while True:
            with lock:
                if next_i[0] >= n:
                    return
                next_i[0] += 1
            try:
                r = one_request(args.url, body, args.timeout)
                with lock:
                    results.append(r)
            except Exception as e:  # counted and reported, the run goes on
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = [r[0] for r in results]
    gaps = [g for r in results for g in r[1]]
    tokens = sum(r[2] for r in results)
    return {"concurrency": concurrency, "requests": len(results), "errors": len(errors),
            "req_s": len(results) / wall, "tok_s": tokens / wall,
            "ttft_p50_ms": 1000 * percentile(ttft, 50), "ttft_p99_ms": 1000 * percentile(ttft, 99),
            "itl_p50_ms": 1000 * percentile(gaps, 50), "wall_s": wall,
            "first_error": errors[0] if errors else ""}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="", help="the model field (default: none sent)")
    ap.add_argument("--label", default="", help="the first column of the table")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=64, help="per level (at least C)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--no-header", action="store_true")
    args = ap.parse_args()

    if not args.no_header:
        print("| model | concurrency | requests | req/s | gen tok/s | TTFT p50 ms | TTFT p99 ms "
              "| ITL p50 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    for c in args.concurrency:
        r = run_level(args, c)
        print(f"| {args.label} | {c} | {r['requests']} | {r['req_s']:.2f} | {r['tok_s']:.1f} "
              f"| {r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} | {r['itl_p50_ms']:.1f} "
              f"| {r['errors']} |", flush=True)
        if r["errors"]:
            print(f"bench_server.py: {r['errors']} failed request(s) at concurrency {c}, first: "
                  f"{r['first_error']}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
