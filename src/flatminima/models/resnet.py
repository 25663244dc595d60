"""CIFAR ResNet of He et al. 2016 (Sec. 4.2), depth 6n + 2; Wu, Ma & E 2018 Fig. 7 use ResNet-14."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from ..errors import ConfigError
from .activations import ActivationFactory
from .shapes import Spatial, check_widths


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> act -> conv3x3 -> BN, plus the shortcut, then act.

    Shortcut "option A" of He et al. (parameter-free): identity, or for a down-sampling block the input
    subsampled by 2 and zero-padded in channels; this keeps the paper's counts (0.27M for ResNet-20).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, act: ActivationFactory):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = act()
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            short = nn.functional.pad(short, (0, 0, 0, 0, 0, self.pad))
        return self.act2(out + short)


def resnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    act: ActivationFactory,
    depth: int = 14,
    widths: Sequence[int] = (16, 32, 64),
) -> nn.Module:
    """conv3x3(w1) -> BN -> act -> three stages of n = (depth - 2) / 6 basic blocks (widths w1, w2, w3; stages
    2 and 3 halve the resolution) -> global average pool -> Linear(w3 -> K). Any input of at least 1x1."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"resnet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}")
    widths = check_widths(widths, "resnet widths")
    if len(widths) != 3 or any(b < a for a, b in pairwise(widths)):
        raise ConfigError(f"resnet widths must be three non-decreasing channel counts, got {widths!r}")
    s = Spatial(input_shape, "resnet")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = nn.Conv2d(s.conv(widths[0], 3, pad=1), widths[0], 3, padding=1, bias=False)
    layers["bn"] = nn.BatchNorm2d(widths[0])
    layers["act"] = act()
    c = widths[0]
    for stage, w in enumerate(widths, 1):
        for b in range((depth - 2) // 6):
            stride = 2 if stage > 1 and b == 0 else 1
            s.conv(w, 3, stride, 1)
            layers[f"stage{stage}_{b + 1}"] = BasicBlock(c, w, stride, act)
            c = w
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["out"] = nn.Linear(c, num_classes)
    return nn.Sequential(layers)
