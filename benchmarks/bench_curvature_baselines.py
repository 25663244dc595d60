# ruff: noqa: E501
"""Curvature side by side with curvlinops and hessian-eigenthings at equal products (issue 15).

Run:  .venv/bin/python benchmarks/bench_curvature_baselines.py [--headline] [--rounds 3] [--only trace,density]
Default case: MLP 784-256-256-10 (269,322 weights), n = 1000 teacher data (benchmarks/_fixtures.py), MSE,
float32; ``--headline``: the trained wu-fnn minimum (784-500-500-500-10, 898,510 weights).
Baselines, installed next to the benchmark (pure Python, same torch; never in pyproject):
    .venv/bin/pip install --no-deps --target benchmarks/.cache/curvlinops curvlinops-for-pytorch tqdm einops \\
        opt-einsum backpack-for-pytorch einconv linear_operator jaxtyping wadler-lindig
    .venv/bin/pip install --no-deps --target benchmarks/.cache/eigenthings hessian-eigenthings
Measurements (each: ours, curvlinops, eigenthings, in interleaved rounds; median seconds; ratio = theirs /
ours, > 1 means we are faster), every one from a fresh operator so that graph construction is counted:
  trace    Hutch++ with 60 products (ours hessian_trace; curvlinops hutchpp_trace; eigenthings hutch_plus_plus)
  density  SLQ, 3 runs x 20 Lanczos steps = 60 products (curvlinops: Papyan's lanczos_approximate_spectrum with
           the spectral boundaries passed in, so no extra eigsh products; eigenthings spectral_density)
  sharpness  top eigenvalue, relative residual 1e-4 (ours sharpness; curvlinops + scipy eigsh tol 1e-4;
           eigenthings lanczos k=1: it runs a fixed number of steps, max_iter (default 2k = 2, which gives a
           wrong value) and only flags tol, so it gets as many steps as our Lanczos spent in the same round)
  top10    10 largest eigenvalues, same tolerances (eigenthings: max(2k, our products) steps)
Values are printed next to the times (traces agree within their standard errors; eigenvalues to ~tol).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / ".cache" / "curvlinops"))
sys.path.insert(0, str(HERE / ".cache" / "eigenthings"))

from _fixtures import interleaved, teacher_data, wu_fnn_minimum  # noqa: E402
from flatminima import Objective  # noqa: E402
from flatminima.curvature import (  # noqa: E402
    hessian_eigenvalues,
    hessian_trace,
    sharpness,
    spectral_density,
)


def _case(headline: bool):
    if headline:
        model, x, y = wu_fnn_minimum()
        return "wu-fnn minimum 784-500-500-500-10", model, x, y
    torch.manual_seed(0)
    x, y = teacher_data(1000, 0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    return "MLP 784-256-256-10", model.eval(), x, y


def _ours(model, x, y):
    return Objective(model, loss="mse", x=x, y=y)


def _curvlinops(model, x, y):
    from curvlinops import HessianLinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    return HessianLinearOperator(model, nn.MSELoss(), params, [(x, y)], check_deterministic=False)


def _eigenthings(model, x, y):
    from hessian_eigenthings import HessianOperator

    return HessianOperator(model, [(x, y)], lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]))


def _scipy_top(op, k: int):
    from scipy.sparse.linalg import eigsh

    vals = eigsh(op.to_scipy(), k=k, which="LA", tol=1e-4, return_eigenvectors=False)
    return sorted(float(v) for v in vals)[::-1]


def tasks(model, x, y, bounds):
    lo, hi = bounds
    spent: dict[str, int] = {"sharpness": 2, "top10": 20}
    from curvlinops import hutchpp_trace, lanczos_approximate_spectrum
    from hessian_eigenthings import hutch_plus_plus, lanczos
    from hessian_eigenthings import spectral_density as et_density

    return {
        "trace": {
            "ours": lambda: hessian_trace(_ours(model, x, y), matvecs=60).value,
            "curvlinops": lambda: float(hutchpp_trace(_curvlinops(model, x, y), 60)),
            "eigenthings": lambda: float(hutch_plus_plus(_eigenthings(model, x, y), num_matvecs=60, seed=0).estimate),
        },
        "density": {
            "ours": lambda: spectral_density(_ours(model, x, y), steps=20, runs=3).nodes.max(),
            "curvlinops": lambda: float(
                lanczos_approximate_spectrum(_curvlinops(model, x, y), 20, num_repeats=3, boundaries=(lo, hi))[0][-1]
            ),
            "eigenthings": lambda: float(
                et_density(_eigenthings(model, x, y), num_runs=3, lanczos_steps=20, num_grid_points=1001, seed=0)
                .grid.max()
            ),
        },
        "sharpness": {
            "ours": lambda: _count(spent, "sharpness", sharpness(_ours(model, x, y))).value,
            "curvlinops": lambda: _scipy_top(_curvlinops(model, x, y), 1)[0],
            "eigenthings": lambda: _et_top(lanczos(_eigenthings(model, x, y), k=1, which="LA", tol=1e-4, seed=0,
                                                   max_iter=max(2, spent["sharpness"])), 1),
        },
        "top10": {
            "ours": lambda: _count(spent, "top10", hessian_eigenvalues(_ours(model, x, y), k=10))[9],
            "curvlinops": lambda: _scipy_top(_curvlinops(model, x, y), 10)[9],
            "eigenthings": lambda: _et_top(lanczos(_eigenthings(model, x, y), k=10, which="LA", tol=1e-4, seed=0,
                                                   max_iter=max(20, spent["top10"])), 10),
        },
    }  # fmt: skip


def _count(spent: dict, what: str, result):
    """Record how many products our solver spent (eigenthings' Lanczos then gets as many steps)."""
    spent[what] = result.matvecs
    return result


def _et_top(result, k: int) -> float:
    """The k-th largest of eigenthings' Ritz values; warns when its residual check failed."""
    if not bool(result.converged.all()):
        print(f"    (eigenthings: {int((~result.converged).sum())} of {k} Ritz pairs above tol)", flush=True)
    return float(sorted(result.eigenvalues.tolist())[-k])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--headline", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="trace,density,sharpness,top10")
    args = ap.parse_args()
    name, model, x, y = _case(args.headline)
    obj = _ours(model, x, y)
    print(f"{name}: {obj.num_params:,} weights, n = {obj.n}, torch threads {torch.get_num_threads()}")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    top = hessian_eigenvalues(obj, k=1, tol=1e-4)[0]
    low = hessian_eigenvalues(obj, k=1, which="SA", tol=1e-2, max_iter=40)[0]  # boundaries for Papyan
    table = tasks(model, x, y, (low, top))
    for what in args.only.split(","):
        # interleaved: ours, curvlinops, eigenthings, ours, ...
        times, values = interleaved(table[what], args.rounds, what, lambda v: f"value {v:.6g}")
        med = {k: statistics.median(v) for k, v in times.items()}
        parts = [f"{k} {med[k]:.2f} s (value {values[k]:.6g})" for k in med]
        ratios = ", ".join(f"{k}/ours {med[k] / med['ours']:.2f}x" for k in med if k != "ours")
        print(f"{what}: " + "; ".join(parts) + f"  ->  {ratios}", flush=True)
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    os.environ.setdefault("FLATMINIMA_PROGRESS", "0")
    main()
