"""Figures of the toy systems (PNG, written atomically through :mod:`flatminima.report.figures`).

Each ``plot_*`` takes precomputed results or, when they are omitted, computes them with the defaults of the
toy module (seeded), and returns the path written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..report.figures import figure_style, new_figure, save_figure
from . import escape, minnorm, nonequilibrium
from .boltzmann import basin_shares, marginal_density
from .potentials import degenerate_valley_potential, two_basin_potential
from .sampler import langevin_sample

__all__ = [
    "plot_degenerate_histograms",
    "plot_escape",
    "plot_min_norm",
    "plot_nonequilibrium",
    "plot_two_basin_histograms",
]


def _histogram_panel(ax, samples: np.ndarray, pot, title: str) -> None:
    lo, hi = float(pot.centers[:, 0].min() - 4), float(pot.centers[:, 0].max() + 4)
    ax.hist(samples, bins=60, range=(lo, hi), density=True, alpha=0.5, label="sampled")
    grid = np.linspace(lo, hi, 600)
    ax.plot(grid, marginal_density(pot, grid), color="k", label="Boltzmann exp(-U/T)/Z")
    share = float(np.mean(samples < pot.split))
    ax.set_title(f"{title}\nleft share {share:.3f} (exact {basin_shares(pot)[0]:.3f})")
    ax.set_xlabel("$x_1$")


def _run_gdl(pot, chains: int, steps: int, lr: float, seed: int) -> np.ndarray:
    x0 = torch.zeros(chains, pot.dim, dtype=torch.float64)
    x0[:, 0] = pot.centers[1, 0]
    return langevin_sample(pot.force, x0, lr, steps, temperature=pot.temperature, seed=seed).x[:, 0].numpy()


def plot_two_basin_histograms(
    path: str | Path,
    samples: dict[int, np.ndarray] | None = None,
    dims: Sequence[int] = (1, 2, 3, 4, 5),
    chains: int = 4000,
    steps: int = 3000,
    lr: float = 0.02,
    seed: int = 0,
) -> Path:
    """Theory IIb Fig. 3: GDL histograms of x_1 for each dimension with the exact Boltzmann marginal; the
    flat (left) basin's share grows with d. ``samples`` maps d -> sampled x_1 values."""
    dims = sorted(samples) if samples is not None else list(dims)
    fig, axes = new_figure(1, len(dims), width=3.0, height=2.6, squeeze=False)
    with figure_style():
        for ax, d in zip(axes[0], dims, strict=True):
            pot = two_basin_potential(d)
            xs = samples[d] if samples is not None else _run_gdl(pot, chains, steps, lr, seed)
            _histogram_panel(ax, np.asarray(xs), pot, f"d = {d}")
        axes[0][0].legend(loc="upper right")
    return save_figure(fig, path)


def plot_degenerate_histograms(
    path: str | Path,
    samples: dict[str, np.ndarray] | None = None,
    chains: int = 4000,
    steps: int = 3000,
    lr: float = 0.02,
    seed: int = 0,
) -> Path:
    """Theory IIb Figs. 4-6: the 2-D degenerate-valley potential (contours) and the x_1 histograms of GDL,
    SGD with synthetic noise and SGDL at the same temperature, each with the exact Boltzmann marginal."""
    pot = degenerate_valley_potential()
    t = pot.temperature
    if samples is None:
        kws = {
            "gdl": dict(temperature=t),
            "sgd": dict(noise_std=float(np.sqrt(2 * t / lr))),
            "sgdl": dict(noise_std=float(np.sqrt(t / lr)), extra_noise=float(np.sqrt(t * lr))),
        }
        x0 = torch.zeros(chains, 2, dtype=torch.float64)
        samples = {
            m: langevin_sample(pot.force, x0, lr, steps, method=m, seed=seed, **kw).x[:, 0].numpy()  # type: ignore[arg-type]
            for m, kw in kws.items()
        }
    fig, axes = new_figure(1, len(samples) + 1, width=3.0, height=2.6)
    with figure_style():
        g1, g2 = np.meshgrid(np.linspace(-5.5, 3.5, 200), np.linspace(-2.5, 2.5, 120))
        u = pot.energy(torch.tensor(np.stack([g1.ravel(), g2.ravel()], 1))).numpy().reshape(g1.shape)
        axes[0].contourf(g1, g2, np.minimum(u, 8), levels=20, cmap="viridis")
        axes[0].set_title("U: valley (left) vs point minimum")
        for ax, (name, xs) in zip(axes[1:], samples.items(), strict=True):
            _histogram_panel(ax, np.asarray(xs), pot, name.upper())
    return save_figure(fig, path)


def plot_escape(
    path: str | Path,
    sgd: escape.EscapeRun | None = None,
    gd: escape.EscapeRun | None = None,
    lr: float = 0.7,
    seed: int = 0,
) -> Path:
    """Wu, Ma & E Sec. 2: SGD (B = 1) escapes the minimum x = 1 to x = 0 with a loss burst; GD stays."""
    sgd = sgd or escape.run_escape(lr=lr, batch_size=1, seed=seed)
    gd = gd or escape.run_escape(lr=lr, batch_size=2, seed=seed)
    fig, (ax1, ax2) = new_figure(1, 2, width=4.0, height=3.0)
    with figure_style():
        ax1.plot(sgd.x, label="SGD, B = 1")
        ax1.plot(gd.x, label="GD", linestyle="--")
        ax1.set_xlabel("iteration")
        ax1.set_ylabel("x")
        ax1.legend()
        ax2.semilogy(np.maximum(sgd.loss, 1e-300), label="SGD, B = 1")
        ax2.semilogy(np.maximum(gd.loss, 1e-300), label="GD", linestyle="--")
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("f(x)")
        s0, s1 = escape.escape_stability(0.0, lr), escape.escape_stability(1.0, lr)
        ax1.set_title(
            f"eta = {lr}: x*=0 (a={s0.sharpness:.1f}, s={s0.non_uniformity:.1f}), "
            f"x*=1 (a={s1.sharpness:.1f}, s={s1.non_uniformity:.1f})"
        )
    return save_figure(fig, path)


def plot_nonequilibrium(
    path: str | Path, lambdas: Sequence[float] = nonequilibrium.LAMBDAS, steps: int = 3000, seed: int = 0
) -> Path:
    """Thesis Fig. 6.4: the field -grad f (line width ~ |grad f|) over contours of Phi, with a noise-free
    trajectory (limit cycle at lambda = 1.5) and a noisy one, for each lambda."""
    fig, axes = new_figure(1, len(lambdas), width=3.4, height=3.0, squeeze=False)
    g1, g2 = np.meshgrid(np.linspace(-2, 2, 25), np.linspace(-2, 2, 25))
    grid = torch.tensor(np.stack([g1.ravel(), g2.ravel()], 1))
    start = torch.tensor([[0.3, 0.2]], dtype=torch.float64)
    with figure_style():
        for ax, lam in zip(axes[0], lambdas, strict=True):
            f = nonequilibrium.drift(grid, lam).numpy()
            speed = np.hypot(f[:, 0], f[:, 1]).reshape(g1.shape)
            ax.contour(g1, g2, nonequilibrium.phi(grid).numpy().reshape(g1.shape), levels=12, alpha=0.4)
            ax.streamplot(
                g1,
                g2,
                f[:, 0].reshape(g1.shape),
                f[:, 1].reshape(g1.shape),
                color="0.3",
                linewidth=0.4 + 2 * speed / speed.max(),
                density=0.8,
            )
            det = nonequilibrium.sample(
                lam, x0=start, steps=steps, noise=False, trace_every=5, trace_chains=1
            )
            noisy = nonequilibrium.sample(
                lam, x0=start, steps=steps, seed=seed, trace_every=5, trace_chains=1
            )
            ax.plot(noisy.trace[:, 0, 0], noisy.trace[:, 0, 1], lw=0.4, alpha=0.6, label="with noise")
            ax.plot(det.trace[:, 0, 0], det.trace[:, 0, 1], lw=1.5, label="noise-free")
            ax.set_xlim(-2, 2)
            ax.set_ylim(-2, 2)
            ax.set_title(f"lambda = {lam}")
        axes[0][0].legend(loc="lower left")
    return save_figure(fig, path)


def plot_min_norm(
    path: str | Path,
    prob: minnorm.MinNormProblem | None = None,
    lr: float = 1.0,
    steps: Sequence[int] = (10, 30, 100, 300, 1000),
) -> Path:
    """Theory III Sec. 9.6: the implicit ridge parameter of GD after T steps against 1 / (eta T)."""
    prob = prob or minnorm.make_problem(cond=1e4)
    lams = [minnorm.implicit_ridge_lambda(prob, lr, t) for t in steps]
    fig, ax = new_figure(1, 1, width=4.0, height=3.0)
    with figure_style():
        ax.loglog(steps, lams, "o-", label="best-matching ridge lambda")
        ax.loglog(steps, [1 / (lr * t) for t in steps], "--", label="1 / (eta T)")
        ax.set_xlabel("GD steps T")
        ax.set_ylabel("lambda")
        ax.legend()
    return save_figure(fig, path)
