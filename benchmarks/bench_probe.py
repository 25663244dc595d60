"""SharpnessProbe along an edge-of-stability run: Lanczos products per measurement, warm-started vs cold.

Run:  .venv/bin/python benchmarks/bench_probe.py [--lr 1.0] [--steps 1000] [--every 10] [--tol 1e-3]

The setting of ``cohen2021-edge-of-stability`` at default scale (mnist1d, 1000 examples, 40-200-200-10 tanh
MLP, full-batch GD on MSE). At every probe step the sharpness lambda_max(H) is measured twice on the same
weights with the same stopping rule (Lanczos relative residual bound < tol): warm, started from the previous
measurement's top eigenvector (what ``fm.SharpnessProbe`` does), and cold, from a fresh random vector. Both
count Hessian-vector products; accuracy is checked outside the counts with one extra product each: the true
relative residual ||H v - lambda v|| / |lambda| and the relative difference of the two eigenvalues. Goal: warm
needs at most a third of cold's products at the same residual.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from flatminima import Objective, train
from flatminima.curvature import sharpness
from flatminima.experiments.cohen2021_edge_of_stability import SCALES, _load, tanh_mlp


def _true_residual(obj: Objective, v: torch.Tensor, lam: float) -> float:
    v = v / v.norm()
    return float((obj.hvp(v) - lam * v).norm()) / abs(lam)


class WarmColdProbe:
    """Trainer probe measuring the sharpness warm and cold at the same weights; keeps the records."""

    def __init__(self, every: int, tol: float) -> None:
        self.every, self.tol = every, tol
        self.last: torch.Tensor | None = None
        self.records: list[dict[str, float]] = []

    def __call__(self, ctx) -> dict[str, float]:
        obj = Objective(ctx.model, "mse", ctx.x, ctx.y)
        t0 = time.perf_counter()
        warm = sharpness(obj, tol=self.tol, v0=self.last, seed=0)
        t1 = time.perf_counter()
        cold = sharpness(obj, tol=self.tol, seed=1000 + ctx.step)
        t2 = time.perf_counter()
        self.last = warm.extra["eigenvector"]
        self.records.append(
            {
                "step": ctx.step,
                "warm": warm.matvecs,
                "cold": cold.matvecs,
                "warm_s": t1 - t0,
                "cold_s": t2 - t1,
                "value": warm.value,
                "rel_diff": abs(warm.value - cold.value) / abs(cold.value),
                "warm_res": _true_residual(obj, warm.extra["eigenvector"], warm.value),
                "cold_res": _true_residual(obj, cold.extra["eigenvector"], cold.value),
            }
        )
        return {"sharpness": warm.value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = SCALES["default"]
    data = _load(spec["data"])
    model = tanh_mlp(data.train.x[0].numel(), spec["widths"], data.num_classes, 0)
    probe = WarmColdProbe(args.every, args.tol)
    start = time.perf_counter()
    train(
        model,
        data,
        [{"optimizer": "gd", "lr": args.lr, "max_steps": args.steps}],
        loss="mse",
        seed=0,
        log_every=args.every,
        eval_test=False,
        probes=[probe],
        progress=False,
    )
    wall = time.perf_counter() - start
    recs = probe.records[1:]  # the first measurement has no previous vector: both are cold
    bound = 2 / args.lr
    onset = next((r["step"] for r in recs if r["value"] >= 0.95 * bound), None)
    print(
        f"GD lr={args.lr} steps={args.steps} probe every {args.every}, tol {args.tol}: {len(recs)} "
        f"measurements (after the first), edge-of-stability onset at step {onset}; wall {wall:.1f} s"
    )
    print(
        "| phase | measurements | warm products (mean) | cold products (mean) | warm / cold | "
        "warm s / cold s | median true residual warm / cold | max rel. eigenvalue difference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    phases = {"all": recs}
    if onset is not None:
        phases["before onset"] = [r for r in recs if r["step"] < onset]
        phases["edge of stability"] = [r for r in recs if r["step"] >= onset]
    for name, rs in phases.items():
        if not rs:
            continue
        w = statistics.mean(r["warm"] for r in rs)
        c = statistics.mean(r["cold"] for r in rs)
        ws = sum(r["warm_s"] for r in rs)
        cs = sum(r["cold_s"] for r in rs)
        print(
            f"| {name} | {len(rs)} | {w:.2f} | {c:.2f} | **{w / c:.2f}** | {ws / cs:.2f} | "
            f"{statistics.median(r['warm_res'] for r in rs):.1e} / "
            f"{statistics.median(r['cold_res'] for r in rs):.1e} | {max(r['rel_diff'] for r in rs):.1e} |"
        )
    ratio = statistics.mean(r["warm"] for r in recs) / statistics.mean(r["cold"] for r in recs)
    verdict = "met" if ratio <= 1 / 3 else "NOT met"
    print(f"warm / cold products over the run: {ratio:.2f} (goal <= 0.33: {verdict})")


if __name__ == "__main__":
    main()
