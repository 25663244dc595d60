# ruff: noqa: E501
"""Sharpness of the float32 headline model against an independent float64 reference (issue 15).

Run:  .venv/bin/python benchmarks/bench_precision.py
wu-fnn minimum (784-500-500-500-10, 898,510 weights, n = 1000, MSE, float32; benchmarks/_fixtures.py).
Reference: scipy.sparse.linalg.eigsh (ARPACK, tol 1e-10) on the Hessian of the same model converted to float64
(``Objective(dtype=torch.float64)``, ``HessianOperator.to_scipy()``) — another solver, another precision.
Reported: our float32 sharpness at tol 1e-4 (default) and 1e-6, the top-10 at tol 1e-6, relative errors.
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


def main() -> None:
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    model, x, y = wu_fnn_minimum()
    obj32 = Objective(model, loss="mse", x=x, y=y)
    obj64 = Objective(model, loss="mse", x=x, y=y, dtype=torch.float64)
    op = HessianOperator(obj64)
    ref = np.sort(eigsh(op.to_scipy(), k=10, which="LA", tol=1e-10, return_eigenvectors=False))[::-1]
    print(f"float64 eigsh reference: top {ref[0]:.10g} (10th {ref[9]:.10g}), {op.matvecs} float64 products")
    for tol in (1e-4, 1e-6):
        est = sharpness(obj32, tol=tol, max_iter=300)
        print(f"float32 sharpness tol {tol:g}: {est.value:.10g}  rel. error {abs(est.value - ref[0]) / ref[0]:.1e}  "
              f"({est.matvecs} products, residual {est.residual:.1e})")
    top = hessian_eigenvalues(obj32, k=10, tol=1e-6, max_iter=400)
    errs = np.abs(np.array(top.values) - ref) / np.abs(ref)
    print(f"float32 top-10 tol 1e-6: max rel. error {errs.max():.1e} ({top.matvecs} products)")


if __name__ == "__main__":
    main()
