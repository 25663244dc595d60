"""Trainer overhead: ``fm.train`` (GD, full batch) vs a bare PyTorch loop, same model, data and steps.

Run: ``.venv/bin/python benchmarks/bench_training.py`` — prints the ratio of our time to the bare loop's.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from flatminima.data import load
from flatminima.models import build
from flatminima.training import train

STEPS = 300
REPEATS = 5


def bare(ds) -> float:
    model = build("mlp", ds.input_shape, ds.num_classes, widths=[128, 128], seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = ds.train.x, ds.train.y
    start = time.perf_counter()
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def ours(ds, log_every: int, eval_test: bool) -> float:
    model = build("mlp", ds.input_shape, ds.num_classes, widths=[128, 128], seed=0)
    phases = [{"optimizer": "gd", "lr": 0.5, "max_steps": STEPS}]
    start = time.perf_counter()
    train(model, ds, phases, log_every=log_every, eval_test=eval_test, progress=False)
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    ds = load("digits", n_train=1000, targets="onehot", seed=0)
    times: dict[str, list[float]] = {"bare": [], "quiet": [], "logged": []}
    for _ in range(REPEATS):  # interleaved, best of REPEATS
        times["bare"].append(bare(ds))
        times["quiet"].append(ours(ds, 10**9, False))
        times["logged"].append(ours(ds, 10, True))
    b, q, lg = (min(times[k]) for k in ("bare", "quiet", "logged"))
    print(f"bare loop: {1e3 * b / STEPS:.2f} ms/step")
    print(f"fm.train, no logging: {1e3 * q / STEPS:.2f} ms/step  ratio {q / b:.2f}")
    print(f"fm.train, log_every=10 + test eval: {1e3 * lg / STEPS:.2f} ms/step  ratio {lg / b:.2f}")


if __name__ == "__main__":
    main()
