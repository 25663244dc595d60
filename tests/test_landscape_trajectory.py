"""Trajectory recording, classical MDS, the default SGD loop and the branching protocol."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from flatminima import ConfigError
from flatminima.landscape import (
    WeightRecorder,
    branching,
    classical_mds,
    cosine_dissimilarity,
    euclidean_distances,
    flat_params,
    load_flat,
    perturb,
    plot_mds,
    sgd_train_fn,
    trajectory_mds,
)


def test_classical_mds_recovers_configuration_up_to_rotation() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(9, 2)) * [3.0, 1.0]
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    high = np.c_[pts @ rot, np.zeros((9, 3))] + 5.0  # embedded in 5-D and shifted
    res = classical_mds(euclidean_distances(high), k=2)
    centred = pts - pts.mean(0)
    # Orthogonal Procrustes: the best rotation/reflection maps the MDS output onto the truth exactly.
    u, _, vt = np.linalg.svd(res.coords.T @ centred)
    np.testing.assert_allclose(res.coords @ (u @ vt), centred, atol=1e-9)
    assert res.explained == pytest.approx(1.0)
    np.testing.assert_allclose(res.eigenvalues[2:], 0.0, atol=1e-9)


def test_cosine_dissimilarity_and_metric_choice() -> None:
    w = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    d = cosine_dissimilarity(w)
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(2.0)
    assert d[0, 3] == pytest.approx(1 - 1 / np.sqrt(2))
    assert trajectory_mds(w, metric="cosine").coords.shape == (4, 2)
    with pytest.raises(ConfigError):
        trajectory_mds(w, metric="manhattan")
    with pytest.raises(ConfigError):
        cosine_dissimilarity(np.zeros((2, 3)))


def test_weight_recorder_and_flat_roundtrip(tiny_mlp: nn.Module) -> None:
    rec = WeightRecorder(every=5, params="2.*")
    assert rec.every == 5
    assert rec(SimpleNamespace(model=tiny_mlp, step=10)) == {}
    with torch.no_grad():
        tiny_mlp[2].weight.add_(1.0)
    rec.record(tiny_mlp, 15)
    w = rec.stacked()
    assert w.shape == (2, 6 * 3 + 3) and rec.steps == [10, 15]
    assert torch.allclose(w[1, :18] - w[0, :18], torch.ones(18, dtype=w.dtype))
    theta = flat_params(tiny_mlp)
    other = load_flat(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double(), theta)
    assert torch.equal(flat_params(other), theta)


def test_gd_loop_matches_closed_form_linear_regression() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    w = model.weight.detach().clone().reshape(-1)
    traj = sgd_train_fn(x, y, loss="mse", lr=0.1)(model, 5, 0)
    for t in range(1, 6):
        w = w - 0.1 * 2 * x.T @ (x @ w - y[:, 0]) / 20  # gradient of mean (x.w - y)^2
        assert torch.allclose(traj[t], w, atol=1e-12)
    a = sgd_train_fn(x, y, loss="mse", lr=0.05, batch_size=4)(nn.Linear(3, 1).double(), 3, seed=1)
    assert len(a) == 4


def test_perturb_scales_with_layer_std() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(200, 300))
    out = perturb(net, 0.25, seed=3)
    diff = (out[0].weight - net[0].weight).detach()
    assert float(diff.std()) == pytest.approx(0.25 * float(net[0].weight.detach().std()), rel=0.02)
    assert torch.equal(perturb(net, 0.25, seed=3)[0].weight, out[0].weight)


def _toy_problem():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)).double()

    def error(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(x).argmax(1) != labels).double().mean())

    return x, labels, model, error


def test_branching_with_gd_is_deterministic_in_the_parallel_branch(tmp_path) -> None:
    x, labels, model, error = _toy_problem()
    res = branching(model, sgd_train_fn(x, labels, lr=0.5), error, stages=[0, 3], branch_epochs=4, noise=0.5)
    assert res.main.shape[0] == 3 + 4 + 1 and len(res.branches) == 4
    for b in res.branches:
        seg = res.main[b.stage : b.stage + 5]
        if b.kind == "parallel":  # full-batch GD ignores the seed: the branch retraces the main trajectory
            assert torch.allclose(b.trajectory, seg)
            assert b.averaged_errors == res.main_errors[b.stage : b.stage + 5]
        else:
            assert not torch.allclose(b.trajectory[0], seg[0])
        assert len(b.errors) == len(b.averaged_errors) == 5
    w, groups, errs = res.stacked()
    assert len(w) == len(groups) == len(errs) == 8 + 4 * 5
    mds = trajectory_mds(w, metric="cosine")
    assert plot_mds(mds, tmp_path / "m.png", errors=errs, groups=groups).stat().st_size > 0


def test_branching_runs_per_kind_and_bad_input() -> None:
    x, labels, model, error = _toy_problem()
    train = sgd_train_fn(x, labels, lr=0.5, batch_size=10)
    res = branching(model, train, error, stages=[2], branch_epochs=2, noise=0.01, runs=2)
    kinds = [b.kind for b in res.branches]
    assert kinds == ["parallel", "parallel", "perturbed", "perturbed"]
    # minibatch SGD with different seeds: parallel runs from the same P diverge from each other
    assert torch.equal(res.branches[0].trajectory[0], res.branches[1].trajectory[0])
    assert not torch.allclose(res.branches[0].trajectory[-1], res.branches[1].trajectory[-1])
    with pytest.raises(ConfigError):
        branching(model, train, error, stages=[-1])
