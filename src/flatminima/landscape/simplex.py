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

from ..errors import ConfigError
from ..objective import Objective
from .evaluate import evaluate_plane

__all__ = ["SimplexResult", "simplex_grid", "simplex_interpolation"]

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


def simplex_grid(resolution: int) -> np.ndarray:
    """All barycentric points (i, j, k) / resolution with i + j + k = resolution, shape ``[m, 3]``."""
    if resolution < 1:
        raise ConfigError(f"resolution must be positive, got {resolution}")
    pts = [(i, j, resolution - i - j) for i in range(resolution + 1) for j in range(resolution + 1 - i)]
    return np.array(pts, dtype=np.float64) / resolution


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
    loss, acc = evaluate_plane(obj, w[2], dirs, lambdas[:, :2], batch_points=batch_points)
    return SimplexResult(lambdas=lambdas, xy=lambdas @ VERTICES, loss=loss, accuracy=acc)
