"""Activations: ReLU and its polynomial stand-in ``PolyReLU`` (Theory II Fig. 2, Theory III Fig. 21).

Theory II/III replace every ReLU by a univariate polynomial approximation (degree 10 in Theory III) to make
the network a polynomial in its weights (Bezout argument) and observe that it trains and generalises like the
ReLU net. The papers do not state the fitting interval or norm; we use the least-squares fit on a uniform grid
of a symmetric interval [-a, a] (a discrete L2 fit), default a = 3: pre-activations behind BatchNorm are
~N(0, 1), so [-3, 3] holds 99.7% of them. Outside the interval the polynomial is NOT clipped (the net stays a
polynomial) and grows like |x|^D, so choose the interval to cover the pre-activations (``"poly:D:a"``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from numbers import Integral

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, unknown

ActivationFactory = Callable[[], nn.Module]
DEFAULT_HALF_WIDTH = 3.0
FIT_POINTS = 10_001
SUP_GRID_POINTS = 100_001
ACTIVATION_FORMS = ("relu", "poly:D", "poly:D:a")


@lru_cache(maxsize=64)
def relu_poly_fit(
    degree: int, lo: float, hi: float, num_points: int = FIT_POINTS
) -> tuple[np.ndarray, float]:
    """Least-squares degree-``degree`` polynomial fit of ReLU on ``num_points`` uniform points of [lo, hi].

    Returns (coefficients c_0..c_D in the scaled variable t = (x - m) / h, m = (lo + hi)/2,
    h = (hi - lo)/2, so p(x) = sum_k c_k t^k; and the sup-norm error max |p(x) - relu(x)| over a
    100,001-point grid of [lo, hi]).
    Fitted in the Legendre basis on t in [-1, 1] for conditioning, then converted to powers of t.
    """
    mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    x = np.linspace(lo, hi, num_points)
    legendre = np.polynomial.legendre.legfit((x - mid) / half, np.maximum(x, 0.0), degree)
    coef = np.polynomial.legendre.leg2poly(legendre)
    grid = np.linspace(lo, hi, SUP_GRID_POINTS)
    fitted = np.polynomial.polynomial.polyval((grid - mid) / half, coef)
    sup = float(np.max(np.abs(fitted - np.maximum(grid, 0.0))))
    coef.setflags(write=False)
    return coef, sup


class PolyReLU(nn.Module):
    """p(x) = least-squares polynomial fit of max(x, 0) on ``interval`` (see module docstring).

    ``coef`` (buffer): coefficients in t = (x - m) / h, evaluated by Horner's rule. ``sup_error``:
    max |p - ReLU| on the interval (dense grid).
    """

    coef: torch.Tensor

    def __init__(
        self, degree: int, interval: tuple[float, float] = (-DEFAULT_HALF_WIDTH, DEFAULT_HALF_WIDTH)
    ):
        super().__init__()
        if isinstance(degree, bool) or not isinstance(degree, Integral) or degree < 1:
            raise ConfigError(f"PolyReLU degree must be a positive integer, got {degree!r}")
        lo, hi = (float(v) for v in interval)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ConfigError(f"PolyReLU interval must be finite with lo < hi, got {interval!r}")
        coef, self.sup_error = relu_poly_fit(int(degree), lo, hi)
        self.degree, self.interval = int(degree), (lo, hi)
        self.mid, self.half = (lo + hi) / 2.0, (hi - lo) / 2.0
        # float64 whatever the net's dtype: each coefficient enters as a 0-dim tensor, which does not promote
        # the activations' dtype, and a float64 net (.double()) keeps the fit's full precision.
        self.register_buffer("coef", torch.tensor(coef, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (x - self.mid) / self.half
        out = torch.zeros_like(t) + self.coef[-1]
        for k in range(self.degree - 1, -1, -1):
            out = out * t + self.coef[k]
        return out

    def extra_repr(self) -> str:
        return f"degree={self.degree}, interval={self.interval}, sup_error={self.sup_error:.3g}"


def make_activation(spec: str) -> ActivationFactory:
    """Factory for ``"relu"``, ``"poly:D"`` (PolyReLU of degree D on [-3, 3]), ``"poly:D:a"`` (on [-a, a])."""
    if spec == "relu":
        return nn.ReLU
    if not isinstance(spec, str) or not spec.startswith("poly:"):
        raise unknown("activation", str(spec), ACTIVATION_FORMS)
    parts = spec.split(":")
    try:
        degree = int(parts[1])
        half = float(parts[2]) if len(parts) == 3 else DEFAULT_HALF_WIDTH
        if len(parts) > 3 or degree < 1 or not half > 0:
            raise ValueError
    except (ValueError, IndexError):
        raise ConfigError(
            f"bad activation {spec!r}: write poly:D (degree D >= 1) or poly:D:a (interval [-a, a], a > 0)"
        ) from None
    PolyReLU(degree, (-half, half))  # fit once now: errors surface at build time and the fit is cached

    def factory() -> nn.Module:
        return PolyReLU(degree, (-half, half))

    return factory
