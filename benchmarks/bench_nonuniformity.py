"""Non-uniformity s = sqrt(lambda_max(Sigma)) (Wu, Ma & E 2018, Def. 3) on the wu-fnn minimum (n = 1000).

Run:  .venv/bin/python benchmarks/bench_nonuniformity.py
Reference algorithm (as in the paper's code): power iteration on Sigma where each product loops in Python over
the n examples with single-example HVPs, Sigma v = (1/n) sum_i H_i (H_i v) - H (H v): 2n + 1 HVPs per
iteration. Its cost is extrapolated: ONE iteration is timed (and its product checked against ours on the same
vector); the number of iterations it needs is that of plain power iteration, from a random start, to bring
lambda within 0.1% of its converged value, counted on our Gauss-Newton Sigma operator (same spectrum up to the
residual term reported as ||(H-G)v||/||Hv||; 0.5 s per product instead of ~3 s for the exact one). The paper's
own cap of 10 iterations is shown too. Ours: Lanczos (tol 1e-4 relative residual) on the exact operator (Gram
engine: mixed second derivative of per-example gradient inner products) and on the Gauss-Newton operator (K x
K Jacobian Gram blocks from hooks). Wall-clock seconds, float32, on a shared 2-core machine.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import time_hvp, wu_fnn_minimum
from flatminima import Objective
from flatminima.curvature import SigmaOperator, non_uniformity
from flatminima.curvature.sigma import moments


def reference_sigma_product(model: nn.Module, x, y, v: list[torch.Tensor]) -> list[torch.Tensor]:
    """One Sigma product with a Python loop of 2n + 1 single-example HVPs (the paper's algorithm)."""
    params = [p for p in model.parameters() if p.requires_grad]
    n = len(x)
    acc = [torch.zeros_like(p) for p in params]
    hv_mean = [torch.zeros_like(p) for p in params]
    for i in range(n):
        loss = nn.MSELoss()(model(x[i : i + 1]), y[i : i + 1])
        g = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)
        hhv = torch.autograd.grad(g, params, grad_outputs=hv)
        for a, b, c, d in zip(acc, hhv, hv_mean, hv, strict=True):
            a += b / n
            c += d / n
    loss = nn.MSELoss()(model(x), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    hhv_mean = torch.autograd.grad(g, params, grad_outputs=hv_mean)
    return [a - b for a, b in zip(acc, hhv_mean, strict=True)]


def power_iterations_needed(op, rel: float, max_iter: int = 150) -> tuple[int, float, list[float]]:
    """Iterations of plain power iteration until lambda_k is within ``rel`` of the converged value."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(op.size, generator=g).to(op.dtype)
    v = v / v.norm()
    values = []
    for _ in range(max_iter):
        w = op.matvec(v)
        values.append(float(v @ w))
        v = w / w.norm()
        if len(values) > 3 and abs(values[-1] - values[-2]) / abs(values[-1]) < rel * 1e-2:
            break
    final = values[-1]
    need = next(k + 1 for k, lam in enumerate(values) if abs(lam - final) / abs(final) < rel)
    return need, final, values


def main() -> None:
    model, x, y = wu_fnn_minimum()
    obj = Objective(model, loss="mse", x=x, y=y)
    n = obj.n
    print(f"wu-fnn minimum: {obj.num_params:,} parameters, n = {n}, loss {obj.value():.2e}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"one full-data HVP: {time_hvp(obj) * 1e3:.0f} ms")

    start = time.perf_counter()
    ggn = non_uniformity(obj, method="ggn", tol=1e-4)
    t_ggn = time.perf_counter() - start
    print(f"ours ggn:   s = {ggn.value:.5f}  {ggn.matvecs} products  {t_ggn:.2f} s  (blocks + setup "
          f"{ggn.extra['setup_seconds']:.2f} s; ||(H-G)v||/||Hv|| = {ggn.extra['ggn_residual']:.1e}, "
          f"loss ratio {ggn.extra['loss_ratio']:.1e})")  # fmt: skip

    start = time.perf_counter()
    exact = non_uniformity(obj, method="exact", tol=1e-4)
    t_exact = time.perf_counter() - start
    print(f"ours exact: s = {exact.value:.5f}  {exact.matvecs} products  {t_exact:.2f} s  "
          f"(residual {exact.residual:.1e})")  # fmt: skip

    # Reference: time one product (= one power iteration), check it against ours.
    g = torch.Generator().manual_seed(0)
    v = torch.randn(obj.num_params, generator=g)
    v = v / v.norm()
    start = time.perf_counter()
    ref_prod = reference_sigma_product(model, x, y, [t.clone() for t in obj.unflatten(v).values()])
    t_iter = time.perf_counter() - start
    ref_flat = torch.cat([t.reshape(-1) for t in ref_prod])
    ours_prod = SigmaOperator(obj, engine=moments(obj, "exact")).matvec(v)
    agree = float((ref_flat - ours_prod).norm() / ours_prod.norm())
    print(f"reference: one iteration ({2 * n + 1} single-example HVPs) {t_iter:.1f} s; "
          f"||ref - ours|| / ||ours|| on that product = {agree:.1e}")  # fmt: skip

    need, lam_pi, values = power_iterations_needed(SigmaOperator(obj, engine=moments(obj, "ggn")), rel=1e-3)
    s_ref = math.sqrt(max(lam_pi, 0.0))
    s10 = math.sqrt(max(values[min(9, len(values) - 1)], 0.0))
    print(f"reference power iteration needs {need} iterations to get lambda within 0.1% (counted on ggn) "
          f"(s = {s_ref:.5f}); after the paper's 10 iterations s = {s10:.5f}")  # fmt: skip
    t_ref = need * t_iter
    t_ref10 = 10 * t_iter
    print(f"reference time (extrapolated): {t_ref:.0f} s for {need} iterations; {t_ref10:.0f} s for 10")
    for name, est, secs in (("ggn", ggn, t_ggn), ("exact", exact, t_exact)):
        diff = abs(est.value - s_ref) / s_ref
        print(f"{name:5s}: speed-up {t_ref / secs:7.1f}x ({t_ref10 / secs:.1f}x vs 10 iterations); "
              f"|s - s_ref| / s_ref = {diff:.1e}")  # fmt: skip
    print(f"ggn vs exact: |s_ggn - s_exact| / s_exact = {abs(ggn.value - exact.value) / exact.value:.1e}")


if __name__ == "__main__":
    main()
