"""Convolutional networks of the reproduced papers. Every builder tracks the feature-map size (``Spatial``) so
it works on any input large enough for its down-sampling, and raises ConfigError naming the failing layer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError
from .activations import ActivationFactory
from .shapes import Spatial, check_prob, check_widths

WU_VGG_CFG: tuple[int | str, ...] = (16, "M", 16, "M", 32, "M", 64, "M", 64, "M")
THEORY2_WIDTHS = (128, 64, 64, 64, 64)


def wu_vgg(input_shape: tuple[int, ...], num_classes: int, act: ActivationFactory) -> nn.Module:
    """Wu, Ma & E 2018 "VGG": 3x3 convs (padding 1) + act, channels [16,M,16,M,32,M,64,M,64,M] (M: maxpool 2),
    then Linear(flat -> 128) -> act -> Linear(128 -> K). On 3x32x32 with K = 2: 71,410 parameters."""
    s = Spatial(input_shape, "wu-vgg")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    conv_i = pool_i = 0
    for item in WU_VGG_CFG:
        if item == "M":
            pool_i += 1
            s.pool(2)
            layers[f"pool{pool_i}"] = nn.MaxPool2d(2)
        else:
            conv_i += 1
            c_in = s.conv(int(item), 3, pad=1)
            layers[f"conv{conv_i}"] = nn.Conv2d(c_in, int(item), 3, padding=1)
            layers[f"act{conv_i}"] = act()
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(s.flat, 128)
    layers["act_fc"] = act()
    layers["out"] = nn.Linear(128, num_classes)
    return nn.Sequential(layers)


def strided_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    widths: Sequence[int],
    bn: bool,
    name: str,
) -> nn.Module:
    """3x3 stride-2 convolutions (padding 1, no pooling) with the given widths, then Linear(flat -> K).

    With ``bn`` a BatchNorm2d without affine shift/scale follows each conv except the last ("BNs between
    hidden layers ... shifting and scaling parameters not used", Theory II Sec. 4.1).
    Order: conv -> [BN] -> act.
    """
    widths = check_widths(widths, f"{name} widths")
    s = Spatial(input_shape, name)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, w in enumerate(widths, 1):
        layers[f"conv{i}"] = nn.Conv2d(s.conv(w, 3, stride=2, pad=1), w, 3, stride=2, padding=1)
        if bn and i < len(widths):
            layers[f"bn{i}"] = nn.BatchNorm2d(w, affine=False)
        layers[f"act{i}"] = act()
    layers["flatten"] = nn.Flatten()
    layers["out"] = nn.Linear(s.flat, num_classes)
    return nn.Sequential(layers)


def theory2_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    widths: Sequence[int] = THEORY2_WIDTHS,
    bn: bool = True,
) -> nn.Module:
    """Theory II Sec. 4.1 CNN: input + five 3x3 stride-2 conv layers, BN without affine between hidden layers,
    no pooling; 188,810 parameters on CIFAR-10.

    The paper gives neither widths nor head. With padding 1 the five convs take 32x32 to 1x1; we enumerated
    layouts (conv widths from {8, 16, ..., 512}, biases, a conv or a linear classifier): a linear head after
    five convs of widths (128, 64, 64, 64, 64) gives exactly 3*9*128+128 + 128*9*64+64 + 3*(64*9*64+64) +
    64*10+10 = 188,810; all-conv alternatives need irregular widths (e.g. 256, 48, 48, 96, then a conv to 10).
    The same family with 16 channels everywhere is Theory III's ``allconv5`` (9,898 ~ 10^4 weights).
    """
    return strided_cnn(input_shape, num_classes, act, widths, bn, "theory2-cnn")


def allconv5(
    input_shape: tuple[int, ...], num_classes: int, act: ActivationFactory, width: int = 16, bn: bool = False
) -> nn.Module:
    """Theory III Figs. 1-4, 22-24: "5-layer all convolutional network (no pooling) with 16 channels per
    hidden layer, W ~ 10000 weights". Layout not given; we use the Theory II family: five 3x3 stride-2
    convs of ``width`` channels + Linear(flat -> K): 9,898 parameters on CIFAR-10 at width 16. No BN by
    default (the paper uses no regularisation)."""
    check_widths([width], "allconv5 width")
    return strided_cnn(input_shape, num_classes, act, [width] * 5, bn, "allconv5")


def lenet_family(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    channels: Sequence[int],
    pools: Sequence[int],
    hidden: int,
    bn: bool,
    dropout: float,
    name: str,
) -> nn.Module:
    """(conv5x5 -> act -> [BN] -> maxpool -> [dropout]) per stage -> fc(hidden) -> act -> [dropout] -> fc(K).

    The act -> BN -> pool order is the thesis' ("adds ReLU nonlinearity, batch normalization and
    max-pooling").
    """
    channels = check_widths(channels, f"{name} channels")
    (hidden,) = check_widths([hidden], f"{name} hidden")
    dropout = check_prob(dropout, "dropout")
    if len(pools) != len(channels):
        raise ConfigError(f"{name}: pools {list(pools)} must match channels {channels} in length")
    s = Spatial(input_shape, name)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (c, p) in enumerate(zip(channels, check_widths(pools, f"{name} pools"), strict=True), 1):
        layers[f"conv{i}"] = nn.Conv2d(s.conv(c, 5), c, 5)
        layers[f"act{i}"] = act()
        if bn:
            layers[f"bn{i}"] = nn.BatchNorm2d(c)
        s.pool(p)
        layers[f"pool{i}"] = nn.MaxPool2d(p)
        if dropout:
            layers[f"drop{i}"] = nn.Dropout(dropout)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(s.flat, hidden)
    layers["act_fc"] = act()
    if dropout:
        layers["drop_fc"] = nn.Dropout(dropout)
    layers["out"] = nn.Linear(hidden, num_classes)
    return nn.Sequential(layers)


def lenet(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    bn: bool = True,
    dropout: float = 0.25,
) -> nn.Module:
    """Chaudhari thesis lenet (Sec. 4.6.2, LeNet-5 style): conv20,5,pool3 -> drop -> conv50,5,pool2 -> drop ->
    fc500 -> drop -> fc10, with BN after both convs, dropout 0.25. 131,220 parameters on MNIST, as stated."""
    return lenet_family(input_shape, num_classes, act, (20, 50), (3, 2), 500, bn, dropout, "lenet")


def small_lenet(input_shape: tuple[int, ...], num_classes: int, act: ActivationFactory) -> nn.Module:
    """Chaudhari thesis Sec. 3.3.1 small-LeNet: conv5x5(10), pool2, conv5x5(20), pool2, fc128, fc10; no BN, no
    dropout. 47,658 parameters on 1x28x28."""
    return lenet_family(input_shape, num_classes, act, (10, 20), (2, 2), 128, False, 0.0, "small-lenet")


def allcnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    widths: Sequence[int] = (96, 192),
    bn: bool = True,
    dropout: float = 0.5,
    input_dropout: float = 0.2,
) -> nn.Module:
    """All-CNN-C (Springenberg et al. 2014) as in Chaudhari's thesis Sec. 4.6.3:
    input -> drop0.2 -> block(c1) -> block(c2) -> conv(c2,3) x2 -> conv(K,1) -> mean-pool, where
    block(c) = conv(c,3) -> conv(c,3) -> conv(c,3, stride 2) -> drop0.5; each conv -> act -> [BN].

    With ``bn`` the final 1x1 conv is also followed by act -> BN (as in the Entropy-SGD code); this reproduces
    both counts of the thesis: 1,667,166 ~ "1.67 million" for widths (96, 192) and exactly 26,982 for
    small-allcnn, widths (12, 24) (Sec. 6.3.1). Without BN the final conv has no activation (raw logits).
    Global average pooling makes it work for any input of at least 1x1.
    """
    widths = check_widths(widths, "allcnn widths")
    if len(widths) != 2:
        raise ConfigError(f"allcnn widths must be two channel counts (c1, c2), got {widths!r}")
    c1, c2 = widths
    dropout, input_dropout = check_prob(dropout, "dropout"), check_prob(input_dropout, "input_dropout")
    s = Spatial(input_shape, "allcnn")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if input_dropout:
        layers["drop0"] = nn.Dropout(input_dropout)
    plan = [
        (c1, 3, 1),
        (c1, 3, 1),
        (c1, 3, 2),
        "drop",
        (c2, 3, 1),
        (c2, 3, 1),
        (c2, 3, 2),
        "drop",
        (c2, 3, 1),
        (c2, 3, 1),
        (num_classes, 1, 1),
    ]
    i = 0
    for j, step in enumerate(plan):
        if step == "drop":
            if dropout:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            continue
        c, k, stride = step
        i += 1
        pad = k // 2
        layers[f"conv{i}"] = nn.Conv2d(s.conv(c, k, stride, pad), c, k, stride=stride, padding=pad)
        if bn or j < len(plan) - 1:
            layers[f"act{i}"] = act()
        if bn:
            layers[f"bn{i}"] = nn.BatchNorm2d(c)
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    return nn.Sequential(layers)
