"""``build``: the model zoo entry point; also ``available``, ``top_layer_names``, ``count_params``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from numbers import Integral
from typing import Any

import torch
from torch import nn

from .._kwargs import check_kwargs
from ..errors import ConfigError, unknown
from . import conv, fc, resnet
from .activations import make_activation
from .init import parse_init
from .shapes import check_input

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": fc.mlp,
    "wu-fnn": fc.wu_fnn,
    "smallfc": fc.smallfc,
    "mnistfc": fc.mnistfc,
    "wu-vgg": conv.wu_vgg,
    "theory2-cnn": conv.theory2_cnn,
    "allconv5": conv.allconv5,
    "lenet": conv.lenet,
    "small-lenet": conv.small_lenet,
    "allcnn": conv.allcnn,
    "resnet": resnet.resnet,
}
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def available() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(MODELS)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded, restoring the caller's generator state afterwards."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def build(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    activation: str = "relu",
    init: str = "default",
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` for inputs of shape ``input_shape`` (no batch axis) and ``num_classes`` outputs.

    ``activation``: ``"relu"`` or ``"poly:D"`` / ``"poly:D:a"`` (PolyReLU, Theory II/III), every hidden layer.
    ``init``: ``"default"`` (PyTorch) or ``"uniform:v"`` (U[-v/sqrt(n_in), v/sqrt(n_in)], Wu, Ma & E Fig. 6).
    ``seed``: when given, initialisation is deterministic and the global torch generator is left untouched.
    ``kwargs``: options of the architecture (``mlp``: widths, bn, dropout, input_dropout; ``allconv5``: width;
    ``theory2-cnn``: widths, bn; ``allcnn``: widths, bn, dropout, input_dropout; ``lenet``: bn, dropout;
    ``resnet``: depth, widths).
    """
    if name not in MODELS:
        raise unknown("model", str(name), available())
    builder = MODELS[name]
    shape = check_input(input_shape, num_classes)
    act = make_activation(activation)
    initialise = parse_init(init)
    check_kwargs(builder, kwargs, f"model {name!r}", skip=3)
    with _seeded(seed):
        model = builder(shape, int(num_classes), act, **kwargs)
        initialise(model)
    return model


def top_layer_names(model: nn.Module) -> list[str]:
    """Parameter names of the last module (in registration order) that holds parameters itself, normalisation
    layers excluded, i.e. the output layer (Theory II Table 1's "top layer" flatness)."""
    last: tuple[str, list[str]] | None = None
    for module_name, module in model.named_modules():
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if own and not isinstance(module, NORM_LAYERS):
            last = (module_name, own)
    if last is None:
        raise ConfigError(f"{type(model).__name__} has no weight-bearing layer")
    prefix = f"{last[0]}." if last[0] else ""
    return [prefix + n for n in last[1]]


def count_params(model: nn.Module) -> int:
    """Total number of parameter entries (the papers' "number of parameters")."""
    return sum(p.numel() for p in model.parameters())
