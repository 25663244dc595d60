"""Shape bookkeeping for building models on any input size, with clear errors where an architecture cannot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

from ..errors import ConfigError


def check_input(input_shape: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """Validate ``input_shape`` (positive ints, batch axis excluded) and ``num_classes`` (>= 1)."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if not shape or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in shape):
        raise ConfigError(f"input_shape must be a non-empty tuple of positive integers, got {input_shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return tuple(int(s) for s in shape)


def flat_dim(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)


def check_widths(widths: Sequence[int], what: str) -> list[int]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ConfigError(f"{what} must be a list of positive integers, got {widths!r}")
    if any(isinstance(w, bool) or not isinstance(w, Integral) or w < 1 for w in widths):
        raise ConfigError(f"{what} must be a list of positive integers, got {list(widths)!r}")
    return [int(w) for w in widths]


def check_prob(p: float, what: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"{what} must be a probability in [0, 1), got {p!r}")
    return float(p)


class Spatial:
    """Tracks the (C, H, W) feature shape through conv / pool layers and explains a failure."""

    def __init__(self, input_shape: tuple[int, ...], model: str):
        if len(input_shape) == 2:
            input_shape = (1, *input_shape)
        if len(input_shape) != 3:
            raise ConfigError(
                f"model {model!r} needs image input (C, H, W) or (H, W), got input_shape {input_shape}"
            )
        self.channels, self.h, self.w = input_shape
        self.model = model
        self.trace = [f"{self.h}x{self.w}"]

    def _apply(self, k: int, stride: int, pad: int, what: str) -> None:
        h, w = ((s + 2 * pad - k) // stride + 1 for s in (self.h, self.w))
        if h < 1 or w < 1:
            raise ConfigError(
                f"input {self.trace[0]} is too small for model {self.model!r}: "
                f"{' -> '.join(self.trace)}, then {what} cannot apply"
            )
        self.h, self.w = h, w
        self.trace.append(f"{what} -> {h}x{w}")

    def conv(self, out_channels: int, k: int, stride: int = 1, pad: int = 0) -> int:
        """Register a conv; returns its input channel count."""
        self._apply(k, stride, pad, f"conv{k}x{k}" + (f"/{stride}" if stride > 1 else ""))
        c_in, self.channels = self.channels, out_channels
        return c_in

    def pool(self, k: int) -> None:
        self._apply(k, k, 0, f"maxpool{k}")

    @property
    def flat(self) -> int:
        return self.channels * self.h * self.w
