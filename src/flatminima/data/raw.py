"""``RawData``: what a source (embedded generator or file loader) hands to the transform pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RawData:
    """Unscaled arrays of one data set, before any subset / corruption transform.

    ``x_*`` keep their storage dtype (uint8 for image files, so class filtering and first-n subsets of
    CIFAR-10 do not materialise 600 MB of float32); ``scale`` is the divisor that maps them to [0, 1]
    (255 for 8-bit images, 16 for scikit-learn digits, ``None`` for already-real-valued sets).
    ``values_*``: real-valued regression targets ``[n, K]`` (teacher regression only); ``None`` for
    classification sets, whose targets are built from the labels. ``provenance``: where the arrays came from
    (files: directory, per-file MD5, ``verified``; generated sets: the generator's settings), JSON-able.
    """

    x_train: np.ndarray
    labels_train: np.ndarray
    x_test: np.ndarray
    labels_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    scale: float | None = None
    values_train: np.ndarray | None = None
    values_test: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def is_regression(self) -> bool:
        return self.values_train is not None
