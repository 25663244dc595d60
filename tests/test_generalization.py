"""Margins, norms and input-perturbation error (Theory III)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from flatminima import ConfigError, Objective
from flatminima.generalization import (
    fan_in_l1_norms,
    functional_margins,
    l2_norm,
    margins,
    path_norm,
    perturbation_error,
)


def test_functional_margins_by_hand() -> None:
    out = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0], [1.0, 1.0, 4.0]])
    labels = torch.tensor([0, 2, 2])
    assert functional_margins(out, labels).tolist() == [1.0, -6.0, 3.0]


def test_margins_of_objective(tiny_mlp: nn.Module) -> None:
    x = torch.randn(15, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (15,))
    obj = Objective(tiny_mlp, "cross_entropy", x, y, chunk_size=4)
    m = margins(obj, normalize=2.0)
    with torch.no_grad():
        out = tiny_mlp(x)
    ref = [
        (float(out[i, y[i]]) - max(float(out[i, j]) for j in range(3) if j != y[i])) / 2 for i in range(15)
    ]
    np.testing.assert_allclose(m.values, ref, rtol=1e-12)
    assert m.fraction_positive == pytest.approx(float((out.argmax(1) == y).double().mean()))
    onehot = Objective(tiny_mlp, "mse", x, nn.functional.one_hot(y, 3).double())
    np.testing.assert_allclose(margins(onehot).values, np.array(ref) * 2, rtol=1e-12)
    with pytest.raises(ConfigError):
        margins(Objective(tiny_mlp, "mse", x, torch.randn(15, 1, dtype=torch.float64)))


def test_norms_against_enumeration() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    w = [net[i].weight.detach() for i in (0, 2, 4)]
    total = 0.0
    for i, j, k, o in itertools.product(range(3), range(4), range(3), range(2)):
        total += float(w[0][j, i] ** 2 * w[1][k, j] ** 2 * w[2][o, k] ** 2)
    assert path_norm(net, (3,)) == pytest.approx(np.sqrt(total), rel=1e-12)
    fan = fan_in_l1_norms(net)
    assert fan == {
        k: pytest.approx(float(net[int(k)].weight.detach().abs().sum(1).max())) for k in ("0", "2", "4")
    }
    assert l2_norm(net) == pytest.approx(
        float(torch.cat([p.detach().flatten() for p in net.parameters()]).norm())
    )
    assert l2_norm(net, "0.*") == pytest.approx(
        float(torch.cat([net[0].weight.flatten(), net[0].bias]).detach().norm())
    )
    with pytest.raises(ConfigError):
        path_norm(nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)), (3,))


def test_conv_fan_in_and_path_norm() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(3, 1)).double()
    fan = fan_in_l1_norms(net)
    assert fan["0"] == pytest.approx(float(net[0].weight.detach().abs().sum(dim=(1, 2, 3)).max()))
    # 2x2 input, 2x2 kernel: one output position; paths = (in channel, kernel pos, out channel)
    ref = float((net[0].weight.detach() ** 2).sum(dim=(1, 2, 3)) @ (net[3].weight.detach()[0] ** 2))
    assert path_norm(net, (2, 2, 2)) == pytest.approx(np.sqrt(ref), rel=1e-12)


def test_perturbation_error_matches_gaussian_tail() -> None:
    """f(x) = (x, -x) classifies by sign; label 0 for x > 0: P(error) = Phi(-|x| / gamma)."""
    x = torch.linspace(0.05, 1.0, 40, dtype=torch.float64).unsqueeze(1)
    x = torch.cat([x, -x])
    labels = torch.cat([torch.zeros(40), torch.ones(40)]).long()
    net = nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    obj = Objective(net, "cross_entropy", x, labels, chunk_size=32)
    gammas = [0.0, 0.1, 0.5]
    curve = perturbation_error(obj, gammas, repeats=200, seed=0)
    expected = [0.0] + [float(np.mean(stats.norm.cdf(-np.abs(x.numpy()[:, 0]) / g))) for g in gammas[1:]]
    assert curve.errors[0] == 0.0
    np.testing.assert_allclose(curve.errors, expected, atol=0.02)
    assert np.array_equal(
        perturbation_error(obj, gammas, repeats=2, seed=4).errors,
        perturbation_error(obj, gammas, repeats=2, seed=4).errors,
    )
