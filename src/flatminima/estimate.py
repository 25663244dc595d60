"""Result records shared by the measurement modules."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Estimate:
    """A measured number with its error bars and cost.

    ``value`` is the estimate; ``residual`` the relative eigen-residual ||Av - lambda v|| / |lambda| for
    eigenvalue estimates (nan otherwise); ``stderr`` the standard error of a stochastic estimate (nan when
    deterministic); ``std`` the spread over repeats (directions, data subsets); ``samples`` the individual
    values behind ``value`` when it is an average.
    """

    value: float
    residual: float = math.nan
    matvecs: int = 0
    converged: bool = True
    seconds: float = 0.0
    stderr: float = math.nan
    std: float = math.nan
    samples: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        parts = [f"{self.value:.6g}"]
        if not math.isnan(self.stderr):
            parts.append(f"± {self.stderr:.2g} (s.e.)")
        elif not math.isnan(self.std):
            parts.append(f"± {self.std:.2g} (std)")
        if not math.isnan(self.residual):
            parts.append(f"residual {self.residual:.1e}")
        return " ".join(parts)
