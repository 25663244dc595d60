"""Cost of one non-uniformity product (exact Gram engine) against one HVP, MLP and Linear/Conv2d CNN.

Run:  .venv/bin/python benchmarks/bench_nonuniformity_cost.py
MLP 784-256-256-10 on n = 1000 and a CNN (Conv2d 1-16, Conv2d 16-16 stride 2, Linear) on 28x28, n = 256, MSE,
float32, random weights. Medians of 4 interleaved rounds of: one HVP (cached graph), S v (one backward
through the Gram graph) and Sigma v = S v - H (H v) (the operator's product), as multiples of one HVP.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import torch
from torch import nn

from flatminima import Objective
from flatminima.curvature import SigmaOperator
from flatminima.curvature.sigma import moments


def main() -> None:
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 14 * 14, 10),
    )  # fmt: skip
    for name, model, x in (("MLP", mlp, torch.rand(1000, 784)), ("CNN", cnn, torch.rand(256, 1, 28, 28))):
        y = nn.functional.one_hot(torch.randint(0, 10, (len(x),)), 10).float()
        obj = Objective(model, "mse", x, y)
        v = torch.randn(obj.num_params)
        engine = moments(obj, "exact")
        sigma = SigmaOperator(obj, engine=engine)
        fns = {
            "HVP": lambda obj=obj, v=v: obj.hvp(v),
            "S v": lambda engine=engine, v=v: engine.second_moment(v),
            "Sigma v": lambda sigma=sigma, v=v: sigma @ v,
        }
        for f in fns.values():
            f()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(4):
            for k, f in fns.items():
                start = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - start)
        med = {k: statistics.median(t) for k, t in times.items()}
        ratios = "; ".join(f"{k} {med[k] / med['HVP']:.2f}x" for k in ("S v", "Sigma v"))
        print(f"{name} ({obj.num_params:,} weights): one HVP {med['HVP'] * 1e3:.0f} ms; {ratios}")


if __name__ == "__main__":
    main()
