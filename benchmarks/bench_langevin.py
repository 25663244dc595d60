"""Langevin toy sampler throughput: chain-steps per second for the d = 5 two-basin potential (goal >= 1e6 on
2 CPU cores), next to a per-chain Python loop baseline on a few chains.

Usage: ``python benchmarks/bench_langevin.py [--chains 10000] [--steps 500] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from flatminima.toys import langevin_sample, two_basin_potential


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    pot = two_basin_potential(5)
    x0 = torch.zeros(args.chains, 5, dtype=dtype)
    langevin_sample(pot.force, x0, 0.02, 10, temperature=1.0, seed=0)  # warm-up
    t = time.perf_counter()
    langevin_sample(pot.force, x0, 0.02, args.steps, temperature=1.0, seed=0, threads=None)
    vec = args.chains * args.steps / (time.perf_counter() - t)

    # Baseline: the same update, one chain at a time in Python.
    chains, steps = 20, 100
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(chains):
        x = torch.zeros(1, 5, dtype=dtype)
        for _ in range(steps):
            x = x + 0.02 * pot.force(x) + math.sqrt(0.04) * torch.randn(x.shape, generator=g, dtype=dtype)
    loop = chains * steps / (time.perf_counter() - t)
    print(
        f"d = 5, {args.chains} chains x {args.steps} steps, {args.dtype}, threads {torch.get_num_threads()}"
    )
    print(f"vectorized: {vec:.3g} chain-steps/s   per-chain loop: {loop:.3g} chain-steps/s")
    verdict = "met" if vec >= 1e6 else "NOT met"
    print(f"ratio vectorized / loop = {vec / loop:.1f}; goal >= 1e6 chain-steps/s: {verdict}")


if __name__ == "__main__":
    main()
