"""Functional margins of a classifier (Theory III, Figs. 16-17).

For outputs f(x) in R^K and label y, the multi-class functional margin is

    rho(x, y) = f_y(x) - max_{j != y} f_j(x),

positive exactly when the example is classified correctly (the multi-class form of Theory III's y_i f(x_i)).
Theory III compares margin distributions after normalizing by a norm of the network (e.g. the product of layer
norms), which :func:`margins` accepts as ``normalize``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validate import check_float
from ..errors import ConfigError
from ..objective import Objective

__all__ = ["MarginStats", "functional_margins", "margins"]


def functional_margins(outputs: Tensor, labels: Tensor) -> Tensor:
    """f_y - max_{j != y} f_j per example, for outputs ``[n, K]`` (K >= 2) and class indices ``[n]``."""
    if outputs.dim() != 2 or outputs.shape[1] < 2:
        raise ConfigError(f"margins need [n, K>=2] outputs, got shape {tuple(outputs.shape)}")
    labels = labels.long().to(outputs.device)
    true = outputs.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = outputs.scatter(1, labels.unsqueeze(1), float("-inf"))
    return true - others.max(dim=1).values


@dataclass
class MarginStats:
    """Per-example ``values`` (divided by ``normalizer``) with summary statistics."""

    values: np.ndarray
    normalizer: float
    mean: float
    median: float
    std: float
    min: float
    fraction_positive: float

    def to_dict(self, with_values: bool = False) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("normalizer", "mean", "median", "std", "min", "fraction_positive")}
        d["values"] = self.values.tolist() if with_values else None
        return d


def margins(obj: Objective, labels: Tensor | None = None, normalize: float = 1.0) -> MarginStats:
    """Functional margins of the objective's network on its data (labels from the targets by default)."""
    from ..landscape.evaluate import class_labels
    from ..objective.dist import require_single_process

    require_single_process(obj, "margins")
    labels = class_labels(obj.y) if labels is None else labels
    if labels is None:
        raise ConfigError("margins need class labels: the targets carry no classes")
    normalize = check_float("normalize", normalize, gt=0)
    with torch.no_grad():
        values = (functional_margins(obj.outputs(), labels) / normalize).double().cpu().numpy()
    return MarginStats(
        values=values,
        normalizer=float(normalize),
        mean=float(values.mean()),
        median=float(np.median(values)),
        std=float(values.std()),
        min=float(values.min()),
        fraction_positive=float((values > 0).mean()),
    )
