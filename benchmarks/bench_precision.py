# ruff: noqa: E501
"""Sharpness of the float32 headline model against an independent float64 reference (issue 15).

Run:  .venv/bin/python benchmarks/bench_precision.py
wu-fnn minimum (784-500-500-500-10, 898,510 weights, n = 1000, MSE, float32; benchmarks/_fixtures.py).
Reference: scipy.sparse.linalg.eigsh (ARPACK, tol 1e-10) on the Hessian of the same model converted to float64
(``Objective(dtype=torch.float64)``, ``HessianOperator.to_scipy()``) — another solver, another precision.
Reported: our float32 sharpness at tol 1e-4 (default) and 1e-6, the top-10 at tol 1e-6, relative errors, and the
float64 Rayleigh quotients of our float32 eigenvectors (one float64 product each) and their Rayleigh quotients
with the float32 operator (float64 sums), which separate the solver's error from the float32 operator's own
rounding; the reference's residuals are printed too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import eigsh

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import wu_fnn_minimum
from flatminima import Objective
from flatminima.curvature import HessianOperator, hessian_eigenvalues, sharpness
from flatminima.curvature._accurate import col_dots


def main() -> None:
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    model, x, y = wu_fnn_minimum()
    obj32 = Objective(model, loss="mse", x=x, y=y)
    obj64 = Objective(model, loss="mse", x=x, y=y, dtype=torch.float64)
    op = HessianOperator(obj64)
    ref, ref_vecs = eigsh(op.to_scipy(), k=10, which="LA", tol=1e-10)
    order = np.argsort(ref)[::-1]
    ref, ref_vecs = ref[order], torch.from_numpy(ref_vecs[:, order].copy())
    spent = op.matvecs
    ref_res = (op.matmat(ref_vecs) - ref_vecs * torch.from_numpy(ref.copy())).norm(dim=0) / torch.from_numpy(np.abs(ref))
    print(f"float64 eigsh reference: top {ref[0]:.10g} (10th {ref[9]:.10g}), {spent} float64 products, "
          f"max relative residual {float(ref_res.max()):.1e}")

    op32 = HessianOperator(obj32)

    def rayleigh32(vecs: torch.Tensor) -> np.ndarray:
        """Rayleigh quotients with the float32 operator (float64 sums): what any solver on it can report."""
        return (col_dots(vecs, op32.matmat(vecs)) / col_dots(vecs, vecs)).numpy()

    def rayleigh64(vecs: torch.Tensor) -> np.ndarray:
        """Float64 Rayleigh quotients of (float32) unit vectors: separates the solver from the float32 operator."""
        v = vecs.to(torch.float64)
        v = v / v.norm(dim=0)
        return (v * op.matmat(v)).sum(0).numpy()
    for tol in (1e-4, 1e-6):
        est = sharpness(obj32, tol=tol, max_iter=300)
        print(f"float32 sharpness tol {tol:g}: {est.value:.10g}  rel. error {abs(est.value - ref[0]) / ref[0]:.1e}  "
              f"({est.matvecs} products, residual {est.residual:.1e}); float64 Rayleigh quotient of its vector: "
              f"rel. error {abs(rayleigh64(est.extra['eigenvector'][:, None])[0] - ref[0]) / ref[0]:.1e}")
    top = hessian_eigenvalues(obj32, k=10, tol=1e-6, max_iter=400, return_vectors=True)
    errs = np.abs(np.array(top.values) - ref) / np.abs(ref)
    rq = np.abs(rayleigh64(top.vectors) - ref) / np.abs(ref)
    rq32 = np.abs(rayleigh32(top.vectors) - ref) / np.abs(ref)
    print(f"float32 top-10 tol 1e-6: max rel. error {errs.max():.1e} ({top.matvecs} products, converged {top.converged}, "
          f"max residual {max(top.residuals):.1e}); float64 Rayleigh quotients of its vectors: max rel. error {rq.max():.1e}")
    for i in range(10):
        print(f"  #{i + 1:2d} ref {ref[i]:.10g}  ours {top.values[i]:.10g}  rel. error {errs[i]:.1e}  "
              f"(residual {top.residuals[i]:.1e}, float32-operator RQ rel. error {rq32[i]:.1e}, float64 RQ rel. error {rq[i]:.1e}, ref residual {float(ref_res[i]):.1e})")


if __name__ == "__main__":
    main()
