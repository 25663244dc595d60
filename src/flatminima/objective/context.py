"""The state a model is evaluated in inside an Objective's products, set on entry and restored on exit.

* Train / eval: every module is in eval mode (dropout off, running BatchNorm statistics), except, with
  ``bn="train"``, the BatchNorm layers (batch statistics of each chunk). Dropout is never switched on by
  ``bn="train"``: a measurement is a deterministic function of the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["measurement_mode"]

_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


@contextmanager
def measurement_mode(model: nn.Module, bn: str) -> Iterator[None]:
    """Put ``model`` in its measurement state for the duration of the block (see the module docstring)."""
    modules = list(model.modules())
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.training = bn == "train" and isinstance(m, _BATCH_NORMS)
        yield
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.training = flag
