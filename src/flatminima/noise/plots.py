"""Figures of gradient-noise results (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from ..report.figures import save_figure
from .diffusion import DiffusionSpectrum
from .gradients import ComponentNoise
from .spectral import IncrementSpectrum

__all__ = ["plot_diffusion_spectrum", "plot_gradient_histograms", "plot_increment_spectrum"]


def plot_gradient_histograms(results: Sequence[ComponentNoise], path: str | Path) -> Path:
    """Histogram per (batch size, component) with the fitted normal density and the normaltest p-value."""
    sizes = sorted({r.batch_size for r in results})
    comps = sorted({r.component for r in results})
    fig, axes = plt.subplots(
        len(sizes), len(comps), figsize=(2.6 * len(comps), 2.2 * len(sizes)), squeeze=False
    )
    for r in results:
        ax = axes[sizes.index(r.batch_size), comps.index(r.component)]
        ax.hist(r.samples, bins=40, density=True, color="C0", alpha=0.7)
        if r.std > 0:
            grid = np.linspace(r.samples.min(), r.samples.max(), 200)
            ax.plot(grid, stats.norm.pdf(grid, r.mean, r.std), color="C3", lw=1)
        ax.set_title(f"b={r.batch_size}, w[{r.component}], p={r.normaltest_p:.2g}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_diffusion_spectrum(spec: DiffusionSpectrum, path: str | Path) -> Path:
    """Non-zero eigenvalues of D (log scale, descending) with the rank threshold."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    vals = spec.eigenvalues[spec.eigenvalues > 0]
    ax.semilogy(np.arange(1, len(vals) + 1), vals, ".", ms=3)
    if spec.threshold > 0:
        ax.axhline(spec.threshold, color="C3", lw=0.8, ls="--", label="rank threshold")
        ax.legend(fontsize=7)
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue of D")
    ax.set_title(f"rank {spec.rank} / d = {spec.dim} ({100 * spec.rank_fraction:.2f}%)")
    return save_figure(fig, path)


def plot_increment_spectrum(spec: IncrementSpectrum, path: str | Path) -> Path:
    """Periodogram and autocorrelation of weight increments with white-noise bands (thesis Fig. 6.3)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.semilogy(spec.freqs, spec.power, lw=0.8)
    a1.axhline(spec.power_band, color="C3", ls="--", lw=0.8, label="white noise 97.5%")
    a1.set_xlabel("frequency (1/step)")
    a1.set_ylabel("mean periodogram")
    a1.legend(fontsize=7)
    lags = np.arange(len(spec.acf))
    for row in spec.acf_components:
        a2.plot(lags, row, color="0.7", lw=0.5)
    a2.plot(lags, spec.acf, color="C0", lw=1)
    a2.axhline(spec.acf_band, color="C3", ls="--", lw=0.8)
    a2.axhline(-spec.acf_band, color="C3", ls="--", lw=0.8)
    a2.set_xlabel("lag")
    a2.set_ylabel("autocorrelation")
    return save_figure(fig, path)
