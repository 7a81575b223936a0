#!/usr/bin/env python3
"""Expert parallelism vs tp-split experts for MoE decode (docs/CPU.md, "Expert parallelism").

A decode step is bound by the weight bytes it reads, and every rank waits for the busiest one.
Split experts give each rank 1/tp of every routed expert; whole experts per rank (expert
parallelism, experts assigned in contiguous blocks) give a rank only the experts the router sent
it. This prints E[max over ranks of the distinct experts a rank reads] / (E[distinct experts read]
/ tp) under uniform random routing (k distinct experts of E per token): the busiest rank's bytes
under expert parallelism relative to the split layout. Plain Python, no dependencies.

  scripts/moe_ep_balance.py                       # Qwen3-30B-A3B: E 128, k 8
  scripts/moe_ep_balance.py --experts 8 --k 2     # Mixtral
"""
import argparse
import random

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--experts", type=int, default=128)
ap.add_argument("--k", type=int, default=8)
ap.add_argument("--tp", type=int, nargs="+", default=[2, 4])
ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
ap.add_argument("--steps", type=int, default=20000)
args = ap.parse_args()
rng = random.Random(0)
print("| tp | " + " | ".join(f"batch {b}" for b in args.batch) + " |")
print("| --- |" + " --- |" * len(args.batch))
for tp in args.tp:
    per = args.experts // tp
    cells = []
    for b in args.batch:
        busiest = total = 0
        for _ in range(args.steps):
            used = set()
            for _ in range(b):
                used.update(rng.sample(range(args.experts), args.k))
            counts = [0] * tp
            for e in used:
                counts[e // per] += 1
            busiest += max(counts)
            total += len(used) / tp
        cells.append(f"{busiest / total:.2f}x")
    print(f"| {tp} | " + " | ".join(cells) + " |")
