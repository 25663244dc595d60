# ruff: noqa: E501
"""SLQ accuracy against cost on a net whose dense spectrum is available (issue 14: the SLQ defaults).

Run:  .venv/bin/python benchmarks/bench_slq_defaults.py
A digits MLP 64-16-16-10 (1,466 weights) after 300 GD steps (MSE), float64. Reference: every eigenvalue of the
dense Hessian. For (steps, runs) pairs: the L1 distance between the SLQ density and the dense spectrum smoothed
with the same Gaussian (sigma = 1% of the spectral range), the error of the share of |lambda| < 1e-3 * a
from the quadrature, and the products spent.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import flatminima as fm
from flatminima.curvature.density import _smooth
from flatminima.curvature.spectrum import _dense_eigenvalues


def main() -> None:
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
    print(f"{'steps':>5} {'runs':>4} {'products':>8} {'L1 density error':>16} {'share error':>11}")
    for steps, runs in ((10, 3), (20, 3), (30, 3), (40, 5), (80, 3), (80, 10)):
        errs, serrs = [], []
        for seed in range(5):
            d = fm.spectral_density(obj, steps=steps, runs=runs, sigma=sigma, grid=grid, seed=seed)
            errs.append(float(np.abs(d.density - ref).sum() * (grid[1] - grid[0])))
            serrs.append(abs(d.share(-thr, thr)[0] - share))
        print(f"{steps:5d} {runs:4d} {steps * runs:8d} {np.mean(errs):16.3f} {np.mean(serrs):11.3f}")


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    main()
