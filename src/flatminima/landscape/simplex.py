"""Three-point (simplex) interpolation of the training loss (Theory IIb, eq. 10).

w(l) = l1 w1 + l2 w2 + l3 w3 with l on the probability simplex (l_i >= 0, sum l_i = 1), on a triangular grid
of ``resolution`` + 1 points per edge. The points are evaluated as the plane w3 + l1 (w1 - w3) + l2 (w2 - w3)
(:func:`evaluate_plane`). For plotting, the triangle is embedded in 2-D with vertices w1 -> (0, 0), w2 -> (1,
0), w3 -> (1/2, sqrt(3)/2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validate import check_int
from ..errors import ConfigError
from ..objective import Objective
from .budget import check_grid_size, check_grid_time
from .evaluate import plane_evaluator

__all__ = ["SimplexResult", "simplex_grid", "simplex_interpolation", "simplex_points"]

_VALUES = 7  # per point: 3 barycentric weights, 2 plot coordinates, loss, accuracy
VERTICES = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3.0) / 2.0]])


@dataclass
class SimplexResult:
    """``lambdas`` ``[m, 3]`` barycentric weights, ``xy`` ``[m, 2]`` their embedding, ``loss`` and
    ``accuracy``."""

    lambdas: np.ndarray
    xy: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).tolist() for k in ("lambdas", "xy", "loss", "accuracy")}


def simplex_points(resolution: int) -> int:
    """Number of grid points, (r + 1)(r + 2) / 2 for ``resolution`` r."""
    r = check_int("resolution", resolution, ge=1)
    return (r + 1) * (r + 2) // 2


def simplex_grid(resolution: int) -> np.ndarray:
    """All barycentric points (i, j, k) / resolution with i + j + k = resolution, shape ``[m, 3]``, ordered by
    i, then j (memory checked first: ~``values_per_point`` x 100 B per point, see :mod:`.budget`)."""
    m = simplex_points(resolution)
    check_grid_size(
        [m], f"a simplex of resolution {resolution}", values_per_point=_VALUES, hint="use a lower resolution"
    )
    counts = resolution + 1 - np.arange(resolution + 1)  # points with first coordinate i
    i = np.repeat(np.arange(resolution + 1), counts)
    j = np.arange(m) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.stack([i, j, resolution - i - j], axis=1).astype(np.float64) / resolution


def simplex_interpolation(
    obj: Objective, thetas: Tensor | list[Tensor], resolution: int = 20, batch_points: int = 16
) -> SimplexResult:
    """Loss and accuracy over the simplex spanned by three parameter vectors (Theory IIb, eq. 10)."""
    w = torch.stack(list(thetas)) if not isinstance(thetas, Tensor) else thetas
    if w.shape != (3, obj.num_params):
        raise ConfigError(
            f"need three parameter vectors of length {obj.num_params}, got shape {tuple(w.shape)}"
        )
    w = w.to(obj.device, obj.dtype)
    lambdas = simplex_grid(resolution)
    dirs = torch.stack([w[0] - w[2], w[1] - w[2]])
    evaluate = plane_evaluator(obj, w[2], dirs, batch_points=batch_points)
    check_grid_time(
        evaluate, lambdas[:, :2], len(lambdas), f"the simplex of resolution {resolution}", batch_points
    )
    loss, acc = evaluate(lambdas[:, :2])
    return SimplexResult(lambdas=lambdas, xy=lambdas @ VERTICES, loss=loss, accuracy=acc)
