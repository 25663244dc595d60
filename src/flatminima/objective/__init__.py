"""The Objective (``core.py``) and the per-example losses it averages (``losses.py``)."""

from __future__ import annotations

from .core import BNMode, Objective
from .losses import IGNORE_INDEX, LOSSES, LossFn, loss_name, per_example_loss

__all__ = ["IGNORE_INDEX", "LOSSES", "BNMode", "LossFn", "Objective", "loss_name", "per_example_loss"]
