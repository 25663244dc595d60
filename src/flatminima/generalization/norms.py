"""Norms of a network (Theory III, Figs. 16-17; Neyshabur et al. 2015 for the path norm).

* ``l2_norm``: ||w||_2 over all parameters (or those matching patterns).
* ``fan_in_l1_norms``: per weight layer, max over units of the l1 norm of the unit's incoming weights (a dense
  layer's rows; a conv layer's output channels, summed over input channels and kernel). Biases are not
  incoming weights and are left out.
* ``path_norm``: the l2 path norm sqrt(sum over input-output paths of prod of squared weights), computed
by one
  forward pass of the network with every weight squared and biases zeroed on an all-ones input (the sum of the
  outputs). This is exact for chains of Linear/Conv layers with ReLU (or no) activations: every
  pre-activation is
  then non-negative, so ReLU acts as the identity. Other modules (BatchNorm, tanh, PolyReLU, pooling) raise
  ConfigError.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["fan_in_l1_norms", "l2_norm", "path_norm"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PATH_SAFE = (*_WEIGHTED, nn.ReLU, nn.Identity, nn.Flatten, nn.Dropout, nn.Sequential)


def l2_norm(model: nn.Module, params: str | Sequence[str] | None = None) -> float:
    """||w||_2 of the parameters (optionally those matching the name patterns)."""
    pats = None if params is None else ([params] if isinstance(params, str) else list(params))
    total = 0.0
    for k, p in model.named_parameters():
        if pats is None or any(fnmatch.fnmatchcase(k, pat) for pat in pats):
            total += float(p.detach().double().pow(2).sum())
    return total**0.5


def fan_in_l1_norms(model: nn.Module) -> dict[str, float]:
    """{layer name: max_units ||incoming weights||_1} for each Linear/Conv layer."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, _WEIGHTED):
            w = m.weight.detach().double()
            out[name] = float(w.reshape(w.shape[0], -1).abs().sum(dim=1).max())
    if not out:
        raise ConfigError("the model has no Linear/Conv layer")
    return out


def path_norm(model: nn.Module, input_shape: Sequence[int]) -> float:
    """l2 path norm via a forward pass of squared weights on an all-ones input (module docstring)."""
    for m in model.modules():
        if not isinstance(m, _PATH_SAFE) and (
            next(m.parameters(recurse=False), None) is not None or not list(m.children())
        ):
            raise ConfigError(f"path_norm supports Linear/Conv chains with ReLU; found {type(m).__name__}")
    net = copy.deepcopy(model).eval()
    first = next(net.parameters())
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _WEIGHTED):
                m.weight.pow_(2)
                if m.bias is not None:
                    m.bias.zero_()
        out = net(torch.ones(1, *input_shape, dtype=first.dtype, device=first.device))
    return float(out.double().sum()) ** 0.5
