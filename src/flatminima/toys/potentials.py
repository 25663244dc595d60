"""Analytic potentials with exactly computable Boltzmann laws (Theory IIb Figs. 3-6).

Design. Each basin c is a separable flat-bottom well
    U_c(x) = sum_i (k_c / 2) max(|x_i - m_ci| - w_ci, 0)^2,
flat (zero) on the box |x_i - m_ci| <= w_ci and quadratic outside (w = 0 gives a non-degenerate quadratic
minimum; w > 0 along some directions only gives a degenerate valley). The basins are joined by a soft minimum
at the design temperature T:
    U(x) = -T log sum_c exp(-U_c(x) / T),
so that exp(-U / T) = sum_c exp(-U_c / T) exactly. At the sampling temperature T the Boltzmann law is then a
mixture of separable densities, and every quantity the tests need (normalizer, share of x_1 < split, marginal
of x_1) is a sum over basins of products of one-dimensional integrals with closed forms in erf
(:mod:`flatminima.toys.boltzmann`). All basins have depth 0 (equal depth); U is C^1 and its gradient is
Lipschitz (constant max k_c), as Langevin dynamics needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["MixturePotential", "degenerate_valley_potential", "two_basin_potential"]


@dataclass(frozen=True)
class MixturePotential:
    """U(x) = -T log sum_c exp(-U_c(x) / T) with flat-bottom quadratic basins U_c (module docstring).

    centers, half_widths: ``[C, d]``; stiffness: ``[C]``; temperature: the design (and sampling) T;
    split: basins are told apart by x_1 < split (basin 0 must lie left of it, the others right).
    """

    centers: Tensor
    half_widths: Tensor
    stiffness: Tensor
    temperature: float
    split: float = 0.0
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        c, w, k = self.centers, self.half_widths, self.stiffness
        if c.dim() != 2 or w.shape != c.shape or k.shape != (c.shape[0],):
            raise ConfigError("centers and half_widths must be [C, d] and stiffness [C]")
        if torch.any(w < 0) or torch.any(k <= 0) or self.temperature <= 0:
            raise ConfigError("half_widths must be >= 0, stiffness and temperature > 0")

    @property
    def dim(self) -> int:
        return int(self.centers.shape[1])

    @property
    def num_basins(self) -> int:
        return int(self.centers.shape[0])

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-basin energies ``[C, N]`` and excess displacements e = u - clamp(u, -w, w) = sign(u)
        max(|u| - w, 0), ``[C, N, d]`` (u = x - m_c)."""
        c = self.centers.to(x).unsqueeze(1)
        w = self.half_widths.to(x).unsqueeze(1)
        u = x.unsqueeze(0) - c
        e = u - torch.clamp(u, -w, w)
        energies = torch.linalg.vecdot(e, e).mul_(0.5 * self.stiffness.to(x)[:, None])
        return energies, e

    def basin_energies(self, x: Tensor) -> Tensor:
        """U_c(x) for every basin, shape ``[C, N]``."""
        return self._parts(x)[0]

    def energy(self, x: Tensor) -> Tensor:
        """U(x) for ``x`` of shape ``[N, d]``."""
        energies, _ = self._parts(x)
        return -self.temperature * torch.logsumexp(-energies / self.temperature, dim=0)

    def grad(self, x: Tensor) -> Tensor:
        """grad U(x) = sum_c softmax_c(-U_c / T) k_c e_c, shape ``[N, d]``."""
        energies, e = self._parts(x)
        weights = torch.softmax(energies.mul_(-1.0 / self.temperature), dim=0)
        weights.mul_(self.stiffness.to(x)[:, None])
        return (weights.unsqueeze(-1) * e).sum(0)

    def force(self, x: Tensor) -> Tensor:
        """-grad U(x) (the drift of Langevin dynamics)."""
        return -self.grad(x)


def _as(values: list, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.tensor(values, dtype=dtype)


def two_basin_potential(
    d: int,
    narrow_half_width: float = 0.5,
    ratio: float = 2.0,
    stiffness: float = 8.0,
    separation: float = 1.5,
    temperature: float = 1.0,
) -> MixturePotential:
    """Two minima of equal depth (0) in d dimensions (Theory IIb Fig. 3): a wide flat box of half-width
    ``ratio * narrow_half_width`` in every dimension centred at (-separation, 0, ..., 0) and a narrow one of
    half-width ``narrow_half_width`` centred at (+separation, 0, ..., 0), equal wall stiffness. The wide
    basin's Boltzmann share grows with d like ((2 ratio w + s) / (2 w + s))^d, s = sqrt(2 pi T / k) (volume
    ratio 2^d at low temperature). The defaults put the barrier at (k/2)(separation - ratio w)^2 = 1 T so
    that Langevin chains cross it often and equilibrate within a few thousand steps."""
    if d < 1:
        raise ConfigError(f"d must be >= 1, got {d}")
    centers = torch.zeros(2, d, dtype=torch.float64)
    centers[0, 0], centers[1, 0] = -separation, separation
    widths = _as([[ratio * narrow_half_width] * d, [narrow_half_width] * d])
    return MixturePotential(centers, widths, _as([stiffness, stiffness]), temperature, 0.0, ("flat", "sharp"))


def degenerate_valley_potential(
    valley_half_width: float = 1.5,
    stiffness: float = 4.0,
    gap: float = 0.8,
    temperature: float = 1.0,
    d: int = 2,
) -> MixturePotential:
    """A degenerate minimum (a flat valley along x_1 on [-gap - 2 valley_half_width, -gap], quadratic across)
    and a non-degenerate quadratic minimum at (+gap, 0, ...) of the same depth (0) and stiffness (Theory IIb
    Figs. 4-6). The two meet at x_1 = 0 with a barrier (k/2) gap^2 (1.28 T by default, so chains cross it
    often). With d > 2 the valley is flat along the first d - 1 coordinates."""
    if d < 2:
        raise ConfigError(f"d must be >= 2, got {d}")
    centers = torch.zeros(2, d, dtype=torch.float64)
    centers[0, 0], centers[1, 0] = -gap - valley_half_width, gap
    widths = torch.zeros(2, d, dtype=torch.float64)
    widths[0, : d - 1] = valley_half_width
    return MixturePotential(
        centers, widths, _as([stiffness, stiffness]), temperature, 0.0, ("valley", "point")
    )
