"""The Dataset / Split containers the rest of flatminima consumes (docs/architecture.md, "Dataset")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Split:
    """One split of a data set.

    ``x``: float32 inputs ``[n, *input_shape]``. ``y``: what the loss sees, one-hot float32 ``[n, K]``, int64
    class indices ``[n]``, or float32 regression targets ``[n, K]``. ``labels``: int64 class indices ``[n]``
    used for accuracy (for a corrupted training set these are the *corrupted* labels the net is trained on).
    ``true_labels``: int64 labels before any corruption (``random_labels`` / ``extra_random``); for the
    appended random-label examples it is the true class of the drawn image, so memorisation of the corrupted
    part can be measured. ``None`` means "same as ``labels``" (clean split).
    """

    x: torch.Tensor
    y: torch.Tensor
    labels: torch.Tensor
    true_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def corrupted(self) -> torch.Tensor:
        """Boolean mask of the examples whose training label differs from the true label."""
        if self.true_labels is None:
            return torch.zeros(len(self), dtype=torch.bool)
        return self.labels != self.true_labels


@dataclass
class Dataset:
    """A training and a test split with their shared metadata; ``input_shape`` excludes the batch axis.

    ``provenance``: a JSON-able record of where the data came from, for result files. Always ``name``,
    ``source`` (``"files"`` or ``"embedded"``) and ``transforms`` (the arguments of ``load`` that shaped the
    splits). File-based sets add ``directory``, ``files`` (file name -> MD5 of its decompressed content),
    ``verified`` (every file matches the published checksum of the official file) and ``verify`` (the
    argument; ``False`` is the only way unverified files load); embedded sets add ``generator`` (its
    settings and package versions).
    """

    train: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    provenance: dict[str, Any] = field(default_factory=dict)
