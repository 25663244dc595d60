"""Chaudhari's thesis, Example 6.43: a double well whose SGD-like dynamics has a non-gradient force.

Phi(x) = (x_1^2 - 1)^2 / 4 + x_2^2 / 2;  dX = -grad f(X) dt + sqrt(2) dB  with  grad f = -j + grad Phi,
j = lambda e^{Phi} J_ss,  J_ss = e^{-(x_1^2 + x_2^2)^2 / 4} (-x_2, x_1).
J_ss is divergence-free (a rotation field with a radial profile), and it is the stationary probability current
rho_ss j with rho_ss = e^{-Phi}; so the stationary density is exp(-Phi)/Z for every lambda, while the
trajectories circulate (probability current lambda J_ss != 0), the critical points of f move away from
(+-1, 0) and for lambda = 1.5 the noise-free flow has limit cycles around the saddle at the origin (thesis
Fig. 6.4).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.integrate import quad
from torch import Tensor

from .sampler import SampleResult, langevin_sample

__all__ = [
    "LAMBDAS",
    "angular_momentum",
    "drift",
    "marginal_x1",
    "phi",
    "sample",
]

LAMBDAS = (0.0, 0.5, 1.5)


def phi(x: Tensor) -> Tensor:
    """Phi(x) = (x_1^2 - 1)^2 / 4 + x_2^2 / 2 for x ``[N, 2]``."""
    return (x[:, 0] ** 2 - 1) ** 2 / 4 + x[:, 1] ** 2 / 2


def drift(x: Tensor, lam: float) -> Tensor:
    """-grad f(x) = -grad Phi + lambda e^{Phi - r^4 / 4} (-x_2, x_1); the exponent is computed in one piece
    (it is bounded above), so nothing overflows."""
    x1, x2 = x[:, 0], x[:, 1]
    grad_phi = torch.stack((x1**3 - x1, x2), dim=1)
    if lam == 0.0:
        return -grad_phi
    r2 = x1**2 + x2**2
    scale = lam * torch.exp(phi(x) - r2**2 / 4)
    return -grad_phi + scale.unsqueeze(1) * torch.stack((-x2, x1), dim=1)


def sample(
    lam: float,
    chains: int = 4000,
    steps: int = 3000,
    lr: float = 0.01,
    seed: int = 0,
    noise: bool = True,
    x0: Tensor | None = None,
    trace_every: int = 0,
    trace_chains: int = 8,
) -> SampleResult:
    """Euler-Maruyama for dX = -grad f dt + sqrt(2) dB (T = 1) on ``chains`` chains started at ``x0``
    (default: standard Gaussian); ``noise=False`` integrates the deterministic flow -grad f (limit cycles)."""
    g = torch.Generator().manual_seed(seed)
    if x0 is None:
        x0 = torch.randn(chains, 2, generator=g, dtype=torch.float64)
    return langevin_sample(
        lambda x: drift(x, lam),
        x0,
        lr=lr,
        steps=steps,
        temperature=1.0 if noise else 0.0,
        generator=g,
        trace_every=trace_every,
        trace_chains=trace_chains,
    )


def marginal_x1(edges: np.ndarray) -> np.ndarray:
    """Exact probability of each x_1 bin under exp(-Phi)/Z (x_2 integrates out as a Gaussian)."""
    z = quad(lambda t: math.exp(-((t * t - 1) ** 2) / 4), -np.inf, np.inf)[0]
    return np.array(
        [quad(lambda t: math.exp(-((t * t - 1) ** 2) / 4), a, b)[0] / z for a, b in itertools.pairwise(edges)]
    )


def angular_momentum(x_before: Tensor, x_after: Tensor) -> Tensor:
    """Per-chain x_1 dx_2 - x_2 dx_1 of one step: its mean is > 0 for a counter-clockwise circulation."""
    dx = x_after - x_before
    return x_before[:, 0] * dx[:, 1] - x_before[:, 1] * dx[:, 0]
