"""Weight averaging of independently trained networks (Chaudhari's thesis, Fig. 5.1).

Hidden units (dense layers) and filters (conv layers) can be permuted without changing the function, so the
naive average of two trained nets' weights mixes unrelated units. :func:`align` permutes the hidden units of a
net layer by layer to match a reference: for layer l, with the inputs already permuted as the previous layer
was, C[i, j] = Pearson correlation between the incoming weights (+ bias) of reference unit i and unit j of the
other net, and the permutation maximizing sum_i C[i, pi(i)] is found by the Hungarian method
(``scipy.optimize.linear_sum_assignment``); the unit's outgoing weights, BatchNorm parameters and running
statistics move with it. The output layer is never permuted.

Supported: chain networks whose leaf modules run in registration order (``nn.Sequential`` of ``nn.Linear``,
``nn.Conv1d/2d``, ``nn.BatchNorm1d/2d``, activations, pooling, dropout, ``nn.Flatten``; a Linear after a conv
sees each channel as a block of ``in_features / channels`` inputs). :func:`compare_averaging` reports the
error of each net, of the output ensemble (mean of softmax probabilities), of the naive weight average and of
the average after alignment to the first net.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["AveragingResult", "align", "average_models", "compare_averaging"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _layers(model: nn.Module) -> list[tuple[nn.Module, list[nn.Module]]]:
    """Weight layers in order, each with the BatchNorm layers that follow it (before the next weight
    layer)."""
    out: list[tuple[nn.Module, list[nn.Module]]] = []
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            out.append((m, []))
        elif isinstance(m, _BN):
            if not out:
                raise ConfigError("a BatchNorm layer before any weight layer is not supported for alignment")
            out[-1][1].append(m)
        elif next(m.parameters(recurse=False), None) is not None:
            raise ConfigError(f"alignment does not support parametrized module {type(m).__name__}")
    if len(out) < 2:
        raise ConfigError("alignment needs at least two weight layers (one hidden layer)")
    return out


def _permute_inputs(layer: nn.Module, perm: np.ndarray) -> None:
    """Reorder the input units of ``layer`` (columns; blocks of inputs after a conv -> Flatten)."""
    w = layer.weight.data
    idx = torch.as_tensor(perm, device=w.device)
    if w.shape[1] == len(perm):
        layer.weight.data = w[:, idx]
        return
    if w.dim() == 2 and w.shape[1] % len(perm) == 0:
        blocks = w.view(w.shape[0], len(perm), -1)
        layer.weight.data = blocks[:, idx].reshape(w.shape)
        return
    raise ConfigError(f"cannot map {len(perm)} units onto the {w.shape[1]} inputs of {type(layer).__name__}")


def _permute_outputs(layer: nn.Module, bns: list[nn.Module], perm: np.ndarray) -> None:
    idx = torch.as_tensor(perm, device=layer.weight.device)
    layer.weight.data = layer.weight.data[idx]
    if layer.bias is not None:
        layer.bias.data = layer.bias.data[idx]
    for bn in bns:
        for name in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(bn, name, None)
            if t is not None:
                t.data = t.data[idx]


def _features(layer: nn.Module) -> Tensor:
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
    if layer.bias is not None:
        w = torch.cat([w, layer.bias.detach().double().unsqueeze(1)], dim=1)
    return w


def _correlation(a: Tensor, b: Tensor) -> np.ndarray:
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return (a @ b.T).cpu().numpy()


def align(reference: nn.Module, model: nn.Module) -> tuple[nn.Module, list[np.ndarray]]:
    """A copy of ``model`` with hidden units permuted to match ``reference``, and the permutation per layer.

    ``perms[l][i]`` is the unit of ``model``'s layer l placed at position i (matched to reference unit i).
    """
    out = copy.deepcopy(model)
    ref_layers, layers = _layers(reference), _layers(out)
    if len(ref_layers) != len(layers) or any(
        r.weight.shape != m.weight.shape for (r, _), (m, _) in zip(ref_layers, layers, strict=True)
    ):
        raise ConfigError("the two networks do not have the same architecture")
    perms: list[np.ndarray] = []
    for (ref, _), (layer, bns), (nxt, _) in zip(ref_layers[:-1], layers[:-1], layers[1:], strict=True):
        corr = _correlation(_features(ref), _features(layer))
        _, perm = linear_sum_assignment(corr, maximize=True)
        _permute_outputs(layer, bns, perm)
        _permute_inputs(nxt, perm)
        perms.append(perm)
    return out, perms


def average_models(models: Sequence[nn.Module]) -> nn.Module:
    """The net whose parameters and floating buffers (BN statistics) are the mean of ``models``'."""
    if not models:
        raise ConfigError("need at least one model to average")
    out = copy.deepcopy(models[0])
    states = [m.state_dict() for m in models]
    avg = {}
    for k, v in states[0].items():
        avg[k] = torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
    out.load_state_dict(avg)
    return out


@dataclass
class AveragingResult:
    """Errors (fractions) of each net, of the output ensemble, of the naive and of the aligned weight
    average."""

    individual: list[float]
    ensemble: float
    naive_average: float
    aligned_average: float


def _error(probs: Tensor, labels: Tensor) -> float:
    return float((probs.argmax(dim=1) != labels).double().mean())


def _probs(model: nn.Module, x: Tensor) -> Tensor:
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(x), dim=-1)


def compare_averaging(models: Sequence[nn.Module], x: Tensor, labels: Tensor) -> AveragingResult:
    """Error of ensemble vs naive vs permutation-aligned weight averages of ``models`` on ``(x, labels)``."""
    if len(models) < 2:
        raise ConfigError("weight averaging needs at least two networks")
    probs = [_probs(m, x) for m in models]
    aligned = [models[0]] + [align(models[0], m)[0] for m in models[1:]]
    return AveragingResult(
        individual=[_error(p, labels) for p in probs],
        ensemble=_error(torch.stack(probs).mean(0), labels),
        naive_average=_error(_probs(average_models(models), x), labels),
        aligned_average=_error(_probs(average_models(aligned), x), labels),
    )
