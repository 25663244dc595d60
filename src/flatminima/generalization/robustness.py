"""Error under input perturbations (Theory III, eq. 47).

E(f, S, gamma) = (1/n) sum_i 1[ argmax f(x_i + gamma eps_i) != y_i ], eps_i ~ N(0, I) i.i.d. (seeded), over a
grid of gamma. The same noise draws eps are used at every gamma (common random numbers), so the curve is
smooth in gamma; ``repeats`` > 1 averages over independent draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validate import check_float, check_int, check_seed
from ..errors import ConfigError
from ..objective import Objective

__all__ = ["PerturbationCurve", "perturbation_error"]


@dataclass
class PerturbationCurve:
    """``errors[j]`` = E(f, S, gammas[j]) averaged over ``repeats`` noise draws."""

    gammas: np.ndarray
    errors: np.ndarray
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return {"gammas": self.gammas.tolist(), "errors": self.errors.tolist(), "repeats": self.repeats}


def perturbation_error(
    obj: Objective,
    gammas: Sequence[float] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
    labels: Tensor | None = None,
    repeats: int = 1,
    seed: int = 0,
) -> PerturbationCurve:
    """E(f, S, gamma) of the objective's network at its base point on its data (module docstring)."""
    from ..landscape.evaluate import class_labels
    from ..objective.dist import require_single_process

    require_single_process(obj, "the input-perturbation error")
    labels = class_labels(obj.y) if labels is None else labels
    if labels is None:
        raise ConfigError("perturbation error needs class labels: the targets carry no classes")
    repeats = check_int("repeats", repeats, ge=1)
    gammas = [check_float("gamma", gamma, ge=0) for gamma in gammas]
    if not gammas:
        raise ConfigError("gammas must list at least one noise level")
    g = torch.Generator().manual_seed(check_seed(seed))
    labels = labels.to(obj.device)
    errors = np.zeros(len(gammas))
    size = obj.chunk_size or obj.n
    with torch.no_grad():
        for _ in range(repeats):
            noise = torch.randn(obj.x.shape, generator=g, dtype=torch.float64).to(obj.device, obj.dtype)
            for j, gamma in enumerate(gammas):
                wrong = 0
                for s in range(0, obj.n, size):
                    out = obj.outputs_fn(obj.theta, obj.x[s : s + size] + gamma * noise[s : s + size])
                    wrong += int((out.argmax(dim=-1) != labels[s : s + size]).sum())
                errors[j] += wrong / obj.n
    return PerturbationCurve(np.asarray(gammas, dtype=np.float64), errors / repeats, repeats)
