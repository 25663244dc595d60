"""Spectral density of the Hessian by stochastic Lanczos quadrature (SLQ), Gaussian-smoothed.

For a Rademacher vector z (||z||^2 = p), ``steps`` Lanczos steps from z/||z|| give Gauss quadrature nodes
theta_j and weights tau_j with z^T f(H) z / p ~ sum_j tau_j f(theta_j) (Golub & Meurant 2010; Ubaru, Chen &
Saad 2017). Averaging over ``runs`` vectors estimates the spectral measure (1/p) sum_i delta(t - lambda_i);
smoothing with a Gaussian of width sigma gives the density plotted by Ghorbani, Krishnan & Xiao (2019):

    phi(t) = (1/R) sum_r sum_j tau_rj N(t; theta_rj, sigma^2).

Cost: steps x runs Hessian-vector products. The runs advance in lockstep, so each Lanczos step is one block
product over the runs of a group (``lanczos_quadrature``); a group holds as many runs as their bases
(steps x p numbers each) fit in ``memory_budget`` bytes (default :data:`SLQ_MEMORY`, 1 GiB).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..report.figures import save_figure
from ._feedback import Progress, check_finite, check_positive_int, check_tol, ticker, warn_not_converged
from .lanczos import Quadrature, lanczos_quadrature
from .operators import HessianOperator, LinearOperator
from .trace import rademacher

__all__ = [
    "SLQ_MEMORY",
    "SLQ_RUNS",
    "SLQ_STEPS",
    "Density",
    "plot_density",
    "quadratures",
    "slq",
    "spectral_density",
]

#: Default bytes for the Lanczos bases of the SLQ runs that advance together.
SLQ_MEMORY = 2**30
#: Default Lanczos steps per SLQ run and number of runs (240 products). Measured against the dense spectrum
#: (benchmarks/bench_slq_defaults.py, RESULTS.md): the near-zero share needs steps (error 0.26 at 20 steps,
#: 0.08 at 30, 0.014 at 80 with 3 runs), while 10 runs instead of 3 at 80 steps cost 3.3x the products for
#: 0.014 -> 0.009 (share) and 0.011 -> 0.008 (L1 density error); the run-to-run spread shrinks as the
#: network grows (Hutchinson-type variance ~ 1/p), so the extra runs buy even less on real networks.
SLQ_STEPS = 80
SLQ_RUNS = 3


@dataclass
class Density:
    """Smoothed spectral density ``density`` on ``grid`` plus the raw quadrature (``nodes``, ``weights``:
    [runs, steps] arrays; each run's weights sum to 1)."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    matvecs: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def share(self, low: float, high: float) -> tuple[float, float]:
        """Share of eigenvalues in [low, high] from the quadrature (unsmoothed), with its stderr over runs."""
        per_run = np.array(
            [w[(n >= low) & (n <= high)].sum() for n, w in zip(self.nodes, self.weights, strict=True)]
        )
        se = float(per_run.std(ddof=1) / math.sqrt(len(per_run))) if len(per_run) > 1 else math.nan
        return float(per_run.mean()), se

    def __repr__(self) -> str:
        runs, steps = self.nodes.shape
        lo, hi = (float(self.nodes.min()), float(self.nodes.max())) if self.nodes.size else (math.nan,) * 2
        return (
            f"Density(runs={runs}, steps={steps}, nodes in [{lo:.4g}, {hi:.4g}], sigma={self.sigma:.3g}, "
            f"grid of {len(self.grid)} points, matvecs={self.matvecs}, seconds={self.seconds:.3g})"
        )

    def to_dict(self) -> dict:
        return {
            "grid": self.grid.tolist(),
            "density": self.density.tolist(),
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "sigma": self.sigma,
            "matvecs": self.matvecs,
            "seconds": self.seconds,
        }


def quadratures(
    op: LinearOperator,
    steps: int = SLQ_STEPS,
    runs: int = SLQ_RUNS,
    seed: int = 0,
    progress: Progress = None,
    memory_budget: int | None = None,
) -> list[Quadrature]:
    """The ``runs`` SLQ quadratures (:class:`~flatminima.curvature.lanczos.Quadrature`), grouped by memory.

    The Rademacher start vectors are drawn one after the other from ``seed`` (the same vectors for any
    grouping); the runs of a group share block products (see module docstring).
    """
    check_positive_int(steps, "steps")
    check_positive_int(runs, "runs")
    steps = min(steps, op.size)
    budget = SLQ_MEMORY if memory_budget is None else check_positive_int(memory_budget, "memory_budget")
    per_run = steps * op.size * torch.empty((), dtype=op.dtype).element_size()
    group = max(1, min(runs, budget // max(per_run, 1), op.max_block or runs))
    g = torch.Generator().manual_seed(seed)
    out: list[Quadrature] = []
    with ticker(progress, steps * runs, "spectral density (SLQ)") as tick:
        for first in range(0, runs, group):
            count = min(group, runs - first)
            starts = torch.cat([rademacher(op.size, 1, op.dtype, op.device, g) for _ in range(count)], dim=1)
            out.extend(lanczos_quadrature(op, starts, steps, tick))
    return out


def _padded(quads: list[Quadrature], steps: int, previous: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights as [runs, steps] arrays (a run that stopped early is padded with weight 0)."""
    nodes = np.zeros((len(quads), steps))
    weights = np.zeros((len(quads), steps))
    for r, q in enumerate(quads):
        theta, tau = (q.previous_nodes, q.previous_weights) if previous else (q.nodes, q.weights)
        m = len(theta)
        nodes[r, :m] = theta.numpy()
        weights[r, :m] = tau.numpy()
        if m < steps:
            nodes[r, m:] = theta[-1].item()
    return nodes, weights


def slq(
    op: LinearOperator,
    steps: int = SLQ_STEPS,
    runs: int = SLQ_RUNS,
    seed: int = 0,
    progress: Progress = None,
    memory_budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """SLQ nodes and weights, arrays [runs, steps] (padded with weight 0 if Lanczos stops early)."""
    quads = quadratures(op, steps, runs, seed, progress, memory_budget)
    return _padded(quads, min(steps, op.size))


def _smooth(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    z = (grid[None, None, :] - nodes[..., None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    return (weights[..., None] * kernel).sum(axis=1).mean(axis=0)


def spectral_density(
    obj,
    steps: int = SLQ_STEPS,
    runs: int = SLQ_RUNS,
    grid: np.ndarray | None = None,
    sigma: float | None = None,
    seed: int = 0,
    num_points: int = 1001,
    op: LinearOperator | None = None,
    progress: Progress = None,
    memory_budget: int | None = None,
    edge_tol: float = 1e-2,
) -> Density:
    """Gaussian-smoothed SLQ density of the Hessian (or of ``op``).

    Convergence: the ends of the spectrum are resolved when the extreme Ritz pairs of every run have a
    Lanczos residual |beta_m s_{m,i}| below ``edge_tol`` x max |theta|; otherwise a ConvergenceWarning says
    to raise ``steps`` (``extra["edge_residual"]`` holds the worst). ``progress``: True (bar) or a callable
    ``(done, total)``; ``memory_budget``: bytes for the bases of the runs that share block products.

    Defaults (not fixed by the papers): ``steps=80, runs=3`` (240 products; chosen against the dense
    spectrum, see ``SLQ_STEPS`` / ``SLQ_RUNS``: the near-zero bulk needs steps, more runs buy little;
    hessian-eigenthings defaults to 80 steps x 10 runs, PyHessian to 100 steps x 1 run);
    ``sigma`` = 1% of the node range (Ghorbani et al. use sigma^2 = 1e-5
    on a spectrum rescaled to [-1, 1], i.e. ~0.3%; 1% gives smoother curves at 80 steps); ``grid`` =
    ``num_points`` points spanning the nodes +- 5 sigma.
    """
    check_positive_int(steps, "steps")
    check_positive_int(runs, "runs")
    check_positive_int(num_points, "num_points", minimum=2)
    if sigma is not None:
        check_tol(sigma, "sigma")
    start = time.perf_counter()
    if op is None:
        check_finite(obj)
        op = HessianOperator(obj)
    check_tol(edge_tol, "edge_tol")
    quads = quadratures(op, steps, runs, seed, progress, memory_budget)
    nodes, weights = _padded(quads, min(steps, op.size))
    matvecs = sum(len(q.nodes) for q in quads)
    edge = max(q.edge_residual for q in quads)
    if edge > edge_tol:
        warn_not_converged(
            "spectral_density (ends of the spectrum)", matvecs, edge, edge_tol, f"raise steps (now {steps})"
        )
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    grid = (
        np.linspace(lo - 5 * sigma, hi + 5 * sigma, num_points) if grid is None else np.asarray(grid, float)
    )
    dens = _smooth(nodes, weights, grid, sigma)
    return Density(
        grid,
        dens,
        nodes,
        weights,
        float(sigma),
        matvecs=matvecs,
        seconds=time.perf_counter() - start,
        extra={"edge_residual": edge, "steps": steps, "runs": runs},
    )


def plot_density(density: Density, path: str | Path, log: bool = True, title: str | None = None) -> Path:
    """Plot the density (log scale by default, as in Ghorbani et al. 2019) to a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    y = np.maximum(density.density, 1e-12) if log else density.density
    ax.plot(density.grid, y)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title or f"Hessian spectral density (SLQ, sigma={density.sigma:.2g})")
    fig.tight_layout()
    save_figure(fig, path)
    return path
