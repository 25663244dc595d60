"""Weight averaging with permutation alignment (thesis Fig. 5.1)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from flatminima.landscape import align, average_models, compare_averaging


def _permute_hidden(
    net: nn.Module, perms: list[torch.Tensor], weighted: list[int], bns: dict[int, int]
) -> nn.Module:
    """Independent construction of a function-preserving permutation of the hidden units."""
    out = copy.deepcopy(net)
    with torch.no_grad():
        for li, p in zip(weighted[:-1], perms, strict=True):
            layer, nxt = out[li], out[weighted[weighted.index(li) + 1]]
            layer.weight.copy_(layer.weight[p])
            layer.bias.copy_(layer.bias[p])
            if li in bns:
                bn = out[bns[li]]
                for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                    t.copy_(t[p])
            if nxt.weight.shape[1] == len(p):
                nxt.weight.copy_(nxt.weight[:, p])
            else:  # conv -> flatten -> linear: channel blocks
                w = nxt.weight.view(nxt.weight.shape[0], len(p), -1)
                nxt.weight.copy_(w[:, p].reshape(nxt.weight.shape))
    return out


def test_mlp_alignment_recovers_permutation_exactly() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    perms = [torch.randperm(7), torch.randperm(6)]
    shuffled = _permute_hidden(net, perms, [0, 2, 4], {})
    x = torch.randn(20, 5, dtype=torch.float64)
    assert torch.allclose(shuffled(x), net(x))
    aligned, found = align(net, shuffled)
    for p, q in zip(perms, found, strict=True):
        # shuffled unit j is original unit p[j]; aligned position i holds shuffled unit q[i] = original i
        np.testing.assert_array_equal(p.numpy()[q], np.arange(len(p)))
    for a, b in zip(aligned.parameters(), net.parameters(), strict=True):
        assert torch.equal(a, b)
    avg = average_models([net, aligned])
    assert torch.allclose(avg(x), net(x))
    naive = average_models([net, shuffled])
    assert not torch.allclose(naive(x), net(x))


def test_conv_bn_alignment_and_comparison() -> None:
    torch.manual_seed(1)
    net = (
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 5, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(5 * 4 * 4, 3),
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 1.5)
    perms = [torch.randperm(4), torch.randperm(5)]
    shuffled = _permute_hidden(net, perms, [0, 3, 6], {0: 1})
    x = torch.randn(30, 1, 4, 4, dtype=torch.float64)
    assert torch.allclose(shuffled(x), net(x))
    aligned, _ = align(net, shuffled)
    assert torch.allclose(aligned.eval()(x), net(x))
    labels = net(x).argmax(1)
    res = compare_averaging([net, shuffled], x, labels)
    assert res.individual == [0.0, 0.0] and res.ensemble == 0.0 and res.aligned_average == 0.0
