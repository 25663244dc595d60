"""Weight initialisation schemes selected by ``build(..., init=...)``."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from ..errors import ConfigError, unknown

INIT_FORMS = ("default", "uniform:v")
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def uniform_init(model: nn.Module, v: float) -> None:
    """Weights and biases of every Linear / Conv layer ~ U[-v/sqrt(n_in), v/sqrt(n_in)], n_in = fan-in.

    Wu, Ma & E 2018, Fig. 6 (v in {1, 2, 3} on Fashion-MNIST, {0.5, 1, 1.5} on CIFAR-10). Normalisation layers
    keep their defaults. ``v = 1`` matches PyTorch's default bound for Linear biases.
    """
    for module in model.modules():
        if isinstance(module, WEIGHTED):
            bound = v / math.sqrt(module.weight[0].numel())
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -bound, bound)


def parse_init(spec: str) -> Callable[[nn.Module], None]:
    """``"default"`` (PyTorch's initialisation, a no-op here) or ``"uniform:v"`` with v > 0."""
    if spec == "default":
        return lambda model: None
    if not isinstance(spec, str) or not spec.startswith("uniform:"):
        raise unknown("init", str(spec), INIT_FORMS)
    try:
        v = float(spec.split(":", 1)[1])
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"bad init {spec!r}: write uniform:v with a finite v > 0")
    return lambda model: uniform_init(model, v)
