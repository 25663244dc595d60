# ruff: noqa: E501
"""SLQ accuracy against cost on a net whose dense spectrum is available (issue 14: the SLQ defaults).

Run:  .venv/bin/python benchmarks/bench_slq_defaults.py [--seeds 5] [--pairs 10x3 20x3 30x3 40x5 80x3 80x10]
A digits MLP 64-16-16-10 (1,466 weights) after 300 GD steps (MSE), float64. Reference: every eigenvalue of the
dense Hessian. For (steps, runs) pairs: the L1 distance between the SLQ density and the dense spectrum smoothed
with the same Gaussian (sigma = 1% of the spectral range), the error of the share of |lambda| < 1e-3 * a
from the quadrature, and the products spent (errors are means over ``--seeds`` seeds, with their spread).
"""

from __future__ import annotations

import argparse
import subprocess

import numpy as np
import torch
from torch import nn

import flatminima as fm
from flatminima.curvature.density import _smooth
from flatminima.curvature.spectrum import _dense_eigenvalues


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", nargs="+", default=["10x3", "20x3", "30x3", "40x5", "80x3", "80x10"])
    args = ap.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    ds = fm.data.load("digits", n_train=200, targets="onehot", seed=0)
    torch.manual_seed(0)
    model = fm.models.build("mlp", input_shape=ds.input_shape, num_classes=10, widths=[16, 16]).double()
    x, y = ds.train.x.double(), ds.train.y.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    obj = fm.Objective(model, loss="mse", x=x, y=y)
    ev = _dense_eigenvalues(obj)
    width = ev.max() - ev.min()
    sigma = 0.01 * width
    grid = np.linspace(ev.min() - 5 * sigma, ev.max() + 5 * sigma, 2001)
    ref = _smooth(ev[None, :], np.full((1, len(ev)), 1.0 / len(ev)), grid, sigma)
    thr = 1e-3 * ev.max()
    share = float(np.mean(np.abs(ev) < thr))
    print(f"{obj.num_params} weights; dense: lambda in [{ev.min():.3g}, {ev.max():.3g}], share |l| < {thr:.2g}: "
          f"{share:.3f}")  # fmt: skip
    print(f"{'steps':>5} {'runs':>4} {'products':>8} {'L1 density error (max)':>22} {'share error (max)':>17}")
    for pair in args.pairs:
        steps, runs = (int(t) for t in pair.split("x"))
        errs, serrs = [], []
        for seed in range(args.seeds):
            d = fm.spectral_density(obj, steps=steps, runs=runs, sigma=sigma, grid=grid, seed=seed)
            errs.append(float(np.abs(d.density - ref).sum() * (grid[1] - grid[0])))
            serrs.append(abs(d.share(-thr, thr)[0] - share))
        print(f"{steps:5d} {runs:4d} {steps * runs:8d} {np.mean(errs):14.3f} ({max(errs):.3f}) "
              f"{np.mean(serrs):10.3f} ({max(serrs):.3f})", flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    main()
