"""Sweep throughput: 2 local worker processes vs 1 worker (in-process, single-threaded), same 32 runs.

Each run is CPU-bound small training: full-batch GD on an MLP (d -> h -> h -> 1, tanh) regressing a random
teacher on synthetic data, single-threaded. The serial baseline sets torch to one thread as well, so the ratio
measures process parallelism, not intra-op threading. Goal: throughput ratio >= 1.7 on 2 free cores.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 32] [--steps 300] [--width 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from flatminima._seed import seed_everything
from flatminima.runner import Sweep, run_sweep


def train_mlp(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Full-batch GD on an MSE regression; returns the final training loss."""
    g = seed_everything(config["seed"])  # the data and the model's initialisation
    n, d, h = config["n"], config["d"], config["width"]
    x = torch.randn(n, d, generator=g)
    y = torch.tanh(x @ torch.randn(d, 1, generator=g))
    nn = torch.nn
    model = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(config["init_scale"])
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    for _ in range(config["steps"]):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return {"loss": loss.item()}


def _timed(sweep: Sweep, workers: int, root: Path) -> tuple[float, list[dict]]:
    out = root / f"workers-{workers}"
    t0 = time.perf_counter()
    store = run_sweep(sweep, train_mlp, out, workers=workers)
    seconds = time.perf_counter() - t0
    table = store.table()
    store.close()
    return seconds, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=32, help="multiple of 8 (lr x init scale x seeds)")
    parser.add_argument("--steps", type=int, default=1000, help="GD steps per run (~2 s each, as real runs)")
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    base = {"n": 512, "d": 16, "width": args.width, "steps": args.steps, "lr": 0.05, "init_scale": 1.0}
    seeds = list(range(max(1, args.runs // 8)))
    grid = {"lr": [0.05, 0.1], "init_scale": [0.5, 1.0, 1.5, 2.0], "seed": seeds}
    sweep = Sweep(base, grid, name="bench")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())  # 1, 5, 15 min: other work depresses the ratio
    torch.set_num_threads(1)  # the serial baseline is single-threaded too
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    try:
        t1, serial = _timed(sweep, 1, root)
        t2, pooled = _timed(sweep, 2, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    same = [r["loss"] for r in serial] == [r["loss"] for r in pooled]
    n = len(sweep)
    print(f"runs: {n}, steps/run: {args.steps}, width: {args.width}")
    print(f"cores: {os.cpu_count()}, load average before the timings: {load}")
    print(f"1 worker : {t1:7.2f} s  ({n / t1:.2f} runs/s)")
    print(f"2 workers: {t2:7.2f} s  ({n / t2:.2f} runs/s)")
    print(f"throughput ratio (2 workers / 1 worker): {t1 / t2:.2f}x  (goal >= 1.7x)")
    print(f"identical results: {same}")


if __name__ == "__main__":
    main()
