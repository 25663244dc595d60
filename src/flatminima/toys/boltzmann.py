"""Exact Boltzmann occupancies exp(-U/T)/Z of the toy potentials (Theory IIb eq. 9).

For a :class:`~flatminima.toys.potentials.MixturePotential` at its design temperature, exp(-U/T) is a sum over
basins of separable densities, so Z, basin shares and the marginal of x_1 are sums of products of the 1-D
integrals  F(s) = int_{-inf}^{s} exp(-(k/2T) max(|u| - w, 0)^2) du  (closed form in erf, below).
``grid_shares`` integrates exp(-U/T) numerically on a grid instead (any T, d <= 2) as an independent check.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from ..errors import ConfigError
from .potentials import MixturePotential

__all__ = ["basin_shares", "bin_probabilities", "grid_shares", "marginal_density", "well_cdf"]


def well_cdf(s: np.ndarray | float, w: float, k: float, temperature: float) -> np.ndarray:
    """F(s) = int_{-inf}^{s} exp(-(k / 2T) max(|u| - w, 0)^2) du; F(inf) = 2w + sqrt(2 pi T / k).

    Gaussian tail for s < -w, linear across the flat box, Gaussian tail again beyond w.
    """
    s = np.asarray(s, dtype=np.float64)
    sigma = math.sqrt(temperature / k)
    g = sigma * math.sqrt(2 * math.pi)  # integral of the two half-Gaussian walls together
    left = g * ndtr((s + w) / sigma)
    middle = g / 2 + (s + w)
    right = g / 2 + 2 * w + g * (ndtr((s - w) / sigma) - 0.5)
    return np.where(s <= -w, left, np.where(s <= w, middle, right))


def _factors(pot: MixturePotential) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    c = pot.centers.double().numpy()
    w = pot.half_widths.double().numpy()
    k = pot.stiffness.double().numpy()
    totals = np.array(
        [
            [float(well_cdf(np.inf, w[b, i], k[b], pot.temperature)) for i in range(pot.dim)]
            for b in range(pot.num_basins)
        ]
    )
    return c, w, k, totals


def basin_shares(pot: MixturePotential) -> np.ndarray:
    """Exact Boltzmann probability of x_1 < split (entry 0) and x_1 >= split (entry 1) at the design T."""
    c, w, k, totals = _factors(pot)
    rest = totals[:, 1:].prod(axis=1)
    z = (totals.prod(axis=1)).sum()
    left = sum(
        float(well_cdf(pot.split - c[b, 0], w[b, 0], k[b], pot.temperature)) * rest[b]
        for b in range(pot.num_basins)
    )
    return np.array([left / z, 1 - left / z])


def bin_probabilities(pot: MixturePotential, edges: np.ndarray) -> np.ndarray:
    """Exact probability that x_1 falls in each bin [edges[j], edges[j+1]) (histogram reference)."""
    c, w, k, totals = _factors(pot)
    rest = totals[:, 1:].prod(axis=1)
    z = (totals.prod(axis=1)).sum()
    cdf = sum(
        well_cdf(np.asarray(edges) - c[b, 0], w[b, 0], k[b], pot.temperature) * rest[b]
        for b in range(pot.num_basins)
    )
    return np.diff(cdf) / z


def marginal_density(pot: MixturePotential, grid: np.ndarray) -> np.ndarray:
    """Exact Boltzmann marginal density of x_1 on ``grid`` (the curve overlaid on histograms)."""
    c, w, k, totals = _factors(pot)
    rest = totals[:, 1:].prod(axis=1)
    z = (totals.prod(axis=1)).sum()
    dens = np.zeros_like(np.asarray(grid, dtype=np.float64))
    for b in range(pot.num_basins):
        e = np.clip(np.abs(grid - c[b, 0]) - w[b, 0], 0, None)
        dens += np.exp(-0.5 * k[b] * e**2 / pot.temperature) * rest[b]
    return dens / z


def grid_shares(
    pot: MixturePotential, temperature: float | None = None, points: int = 801, box: float = 8.0
) -> np.ndarray:
    """Shares of x_1 < split / >= split by brute-force numerical integration of exp(-U/T) on a grid over
    [-box, box]^d (d <= 2), with U evaluated by :meth:`MixturePotential.energy`. Valid at any temperature."""
    import torch

    if pot.dim > 2:
        raise ConfigError("grid_shares integrates on a grid: d <= 2 only")
    t = pot.temperature if temperature is None else temperature
    axis = torch.linspace(-box, box, points, dtype=torch.float64)
    mesh = torch.stack(torch.meshgrid(*([axis] * pot.dim), indexing="ij"), dim=-1).reshape(-1, pot.dim)
    u = pot.energy(mesh)
    p = torch.exp(-(u - u.min()) / t)
    left = float(p[mesh[:, 0] < pot.split].sum() / p.sum())
    return np.array([left, 1 - left])
