"""Dropout stays off inside measurements, also with bn="train" (issue 14): the operator is deterministic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatminima import Objective


def _net() -> nn.Module:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    return net.double()


def test_bn_train_keeps_dropout_off_and_measurements_deterministic():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randn(12, 3, generator=g, dtype=torch.float64)
    net = _net().train()  # a model left in training mode, as after a training loop
    obj = Objective(net, x=x, y=y, bn="train")
    first, second = obj.value(), obj.value()
    assert first == second
    v = torch.randn(obj.num_params, generator=g, dtype=torch.float64)
    assert torch.equal(obj.hvp(v), obj.hvp(v))
    # Independent reference: batch statistics on, dropout off (the Dropout module in eval mode by hand).
    ref_net = _net().train()
    ref_net[3].eval()
    assert first == pytest.approx(nn.MSELoss()(ref_net(x), y).item(), rel=1e-12)
    # With dropout on (what a wrong measurement mode would do) the loss differs from the reference.
    assert nn.MSELoss()(_net().train()(x), y).item() != pytest.approx(first, rel=1e-6)
    # The model's own modes are restored after the measurement.
    assert all(m.training for m in net.modules())
