"""Fully-connected networks: ``mlp`` and its presets (wu-fnn, smallfc, mnistfc). Inputs are flattened."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from .activations import ActivationFactory
from .shapes import check_prob, check_widths, flat_dim


def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    widths: Sequence[int] = (100,),
    bn: bool = False,
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> nn.Module:
    """Flatten -> [Dropout(input_dropout)] -> (Linear -> act -> [BatchNorm1d] -> [Dropout]) per width
    -> Linear.

    Layer names: ``fc1..fcL``, ``out``. The act-then-BN order follows Chaudhari's thesis (Sec. 4.6.2:
    "fc_d ... followed by the ReLU nonlinearity and ... batch normalization").
    """
    widths = check_widths(widths, "mlp widths")
    dropout, input_dropout = check_prob(dropout, "dropout"), check_prob(input_dropout, "input_dropout")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    if input_dropout:
        layers["drop0"] = nn.Dropout(input_dropout)
    prev = flat_dim(input_shape)
    for i, w in enumerate(widths, 1):
        layers[f"fc{i}"] = nn.Linear(prev, w)
        layers[f"act{i}"] = act()
        if bn:
            layers[f"bn{i}"] = nn.BatchNorm1d(w)
        if dropout:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        prev = w
    layers["out"] = nn.Linear(prev, num_classes)
    return nn.Sequential(layers)


def wu_fnn(input_shape: tuple[int, ...], num_classes: int, act: ActivationFactory) -> nn.Module:
    """Wu, Ma & E 2018 FNN: in-500-500-500-K, ReLU; 784 inputs, 10 classes -> 898,510 parameters."""
    return mlp(input_shape, num_classes, act, widths=(500, 500, 500))


def smallfc(input_shape: tuple[int, ...], num_classes: int, act: ActivationFactory) -> nn.Module:
    """Chaudhari thesis Sec. 3.3.1 smallfc: in-64-K (the text says 32 hidden units, but its 50,890 parameters
    on MNIST imply 784*64 + 64 + 64*10 + 10 = 50,890, i.e. 64)."""
    return mlp(input_shape, num_classes, act, widths=(64,))


def mnistfc(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    dropout: float = 0.5,
    input_dropout: float = 0.2,
    bn: bool = True,
) -> nn.Module:
    """Chaudhari thesis mnistfc: in -> drop0.2 -> (fc1024 -> ReLU -> BN -> drop) x2 -> fc10 (Sec. 4.6.2).

    Hidden dropout 0.5 as in Ch. 3 ("the original dropout of 0.5"). 1,867,786 parameters on MNIST with BN
    (1,863,690 without); the thesis says "1.86 million".
    """
    return mlp(
        input_shape,
        num_classes,
        act,
        widths=(1024, 1024),
        bn=bn,
        dropout=dropout,
        input_dropout=input_dropout,
    )
