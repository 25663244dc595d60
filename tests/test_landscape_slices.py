"""Batched landscape evaluation, slices, directions, simplex and resumable storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima.landscape import (
    GridStore,
    evaluate_plane,
    evaluate_points,
    hessian_directions,
    interpolate,
    pca_directions,
    plot_simplex,
    plot_slice,
    plot_surface,
    random_directions,
    recompute_bn,
    simplex_interpolation,
    slice_1d,
    slice_2d,
)
from flatminima.landscape.store import fingerprint


def _classification(net: nn.Module, n: int = 24, shape=(4,), k: int = 3, seed: int = 0) -> Objective:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return Objective(net, "cross_entropy", x, y, chunk_size=10)


def _reference(obj: Objective, thetas: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One point at a time: load the weights into a model copy and run it (the loss-landscape way)."""
    import copy

    losses, accs = [], []
    for t in thetas:
        m = copy.deepcopy(obj.model).eval()
        m.load_state_dict(obj.state_dict(t))
        with torch.no_grad():
            out = m(obj.x)
            losses.append(float(nn.functional.cross_entropy(out, obj.y)))
            accs.append(float((out.argmax(1) == obj.y).double().mean()))
    return np.array(losses), np.array(accs)


def _quadratic_obj(p: int = 5, n: int = 20) -> tuple[Objective, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    obj = Objective(nn.Linear(p, 1, bias=False).double(), "mse", x, torch.zeros(n, 1, dtype=torch.float64))
    return obj, x.T @ x / n  # I(w) = w^T M w


def test_evaluate_points_matches_one_at_a_time(tiny_mlp: nn.Module) -> None:
    obj = _classification(tiny_mlp)
    thetas = obj.theta + 0.3 * torch.randn(7, obj.num_params, dtype=torch.float64)
    loss, acc = evaluate_points(obj, thetas, batch_points=3)
    ref_l, ref_a = _reference(obj, thetas)
    np.testing.assert_allclose(loss, ref_l, rtol=1e-12)
    np.testing.assert_array_equal(acc, ref_a)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("net_fixture", ["tiny_mlp", "tiny_convbn"])
def test_plane_fast_path_matches_reference(net_fixture: str, stream: bool, request) -> None:
    net = request.getfixturevalue(net_fixture)
    shape = (4,) if net_fixture == "tiny_mlp" else (1, 4, 4)
    obj = _classification(net, shape=shape)
    dirs = random_directions(obj, 2, seed=1, bias_bn="weights")
    coords = np.array([[0.0, 0.0], [0.5, -0.2], [-1.0, 1.0], [0.1, 0.3], [2.0, 0.0]])
    fast = evaluate_plane(obj, obj.theta, dirs, coords, batch_points=2, stream=stream)
    slow = evaluate_plane(obj, obj.theta, dirs, coords, batch_points=2, fast=False)
    ref = _reference(obj, obj.theta + torch.as_tensor(coords) @ dirs)
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-10)
    np.testing.assert_allclose(slow[0], ref[0], rtol=1e-12)
    np.testing.assert_array_equal(fast[1], ref[1])


@pytest.mark.parametrize("stream", [True, False])
def test_plane_fast_path_with_partial_selection(tiny_mlp: nn.Module, stream: bool) -> None:
    obj = Objective(
        tiny_mlp,
        "cross_entropy",
        torch.randn(9, 4, dtype=torch.float64),
        torch.arange(9) % 3,
        params=["0.weight", "2.*"],
    )  # first-layer bias held fixed
    dirs = torch.randn(2, obj.num_params, dtype=torch.float64)
    coords = np.array([[0.3, 0.1], [-0.4, 0.9]])
    fast = evaluate_plane(obj, obj.theta, dirs, coords, stream=stream)
    slow = evaluate_plane(obj, obj.theta, dirs, coords, fast=False)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-10)


def test_slice_2d_on_quadratic_closed_form(tmp_path) -> None:
    obj, m = _quadratic_obj()
    d1, d2 = torch.randn(2, 5, dtype=torch.float64)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-2, 2, 4)
    s = slice_2d(obj, d1, d2, xs, ys, store=tmp_path / "grid.npz")
    for j, b in enumerate(ys):
        for i, a in enumerate(xs):
            w = obj.theta + a * d1 + b * d2
            assert s.loss[j, i] == pytest.approx(float(w @ m @ w), rel=1e-12)
    assert np.isnan(s.accuracy).all()  # regression targets: no classes
    one = slice_1d(obj, d1, xs)
    np.testing.assert_allclose(one.loss, [float((obj.theta + a * d1) @ m @ (obj.theta + a * d1)) for a in xs])
    for f in (
        plot_slice(s, tmp_path / "c.png"),
        plot_surface(s, tmp_path / "s.png"),
        plot_slice(one, tmp_path / "o.png"),
    ):
        assert f.stat().st_size > 0
    s.save_json(tmp_path / "s.json")
    assert (tmp_path / "s.json").exists()


def test_slice_resumes_and_refuses_foreign_file(tmp_path) -> None:
    obj, _ = _quadratic_obj()
    d1, d2 = torch.randn(2, 5, dtype=torch.float64)
    xs, ys = np.linspace(-1, 1, 3), np.linspace(0, 1, 4)
    path = tmp_path / "grid.npz"
    # An interrupted run: rows 0 and 2 finished (sentinel values prove they are not recomputed).
    pre = GridStore(
        path, [xs, ys], {"kind": "random", "fingerprint": fingerprint(obj.theta, torch.stack([d1, d2]))}
    )
    pre.put_row(0, np.full(3, -1.0), np.full(3, np.nan))
    pre.put_row(2, np.full(3, -2.0), np.full(3, np.nan))
    s = slice_2d(obj, d1, d2, xs, ys, store=path)
    assert (s.loss[0] == -1).all() and (s.loss[2] == -2).all()
    assert (s.loss[[1, 3]] >= 0).all()
    with np.load(path) as f:
        assert f["done"].all()
    with pytest.raises(ConfigError):
        slice_2d(obj, d2, d1, xs, ys, store=path)


def test_filter_normalized_directions(tiny_convbn: nn.Module) -> None:
    obj = _classification(tiny_convbn, shape=(1, 4, 4))
    d = random_directions(obj, 2, seed=5)
    params = obj.unflatten(obj.theta)
    for i in range(2):
        dd = obj.unflatten(d[i])
        for k, w in params.items():
            if w.dim() <= 1:
                assert (dd[k] == 0).all(), k  # biases and BN parameters ignored
            else:
                np.testing.assert_allclose(dd[k].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-12)
    assert not torch.equal(d[0], d[1])
    assert torch.equal(d, random_directions(obj, 2, seed=5))
    dw = obj.unflatten(random_directions(obj, 1, seed=5, bias_bn="weights")[0])
    assert torch.equal(dw["1.weight"], params["1.weight"])
    with pytest.raises(ConfigError):
        random_directions(obj, 1, norm="bogus")


def test_hessian_directions_on_quadratic() -> None:
    obj, m = _quadratic_obj()
    vals, dirs = hessian_directions(obj, 2, tol=1e-10)
    ev, evec = torch.linalg.eigh(2 * m)
    np.testing.assert_allclose(vals.numpy(), ev.flip(0)[:2].numpy(), rtol=1e-8)
    assert abs(float(dirs[0] @ evec[:, -1])) == pytest.approx(1.0, abs=1e-8)


def test_pca_directions_recover_plane() -> None:
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(30, 2, generator=g, dtype=torch.float64))
    t = torch.linspace(0, 1, 12, dtype=torch.float64)
    coeffs = torch.stack([3 * t, torch.sin(3 * t)], dim=1)
    end = torch.randn(30, generator=g, dtype=torch.float64)
    traj = end + (coeffs - coeffs[-1]) @ basis.T
    pca = pca_directions(traj, k=2)
    assert torch.allclose(pca.origin, traj[-1])
    # the two directions span the plane of the basis
    proj = basis.T @ pca.directions.T
    np.testing.assert_allclose(torch.linalg.svdvals(proj).numpy(), [1.0, 1.0], atol=1e-10)
    assert pca.explained.sum() == pytest.approx(1.0, abs=1e-10)
    recon = torch.as_tensor(pca.path) @ pca.directions + pca.origin
    assert torch.allclose(recon, traj, atol=1e-10)


def test_simplex_interpolation_closed_form(tmp_path) -> None:
    obj, m = _quadratic_obj()
    w = torch.randn(3, 5, dtype=torch.float64)
    r = simplex_interpolation(obj, w, resolution=4)
    assert len(r.lambdas) == 15 and np.allclose(r.lambdas.sum(1), 1.0) and (r.lambdas >= 0).all()
    for lam, loss in zip(r.lambdas, r.loss, strict=True):
        p = torch.as_tensor(lam) @ w
        assert loss == pytest.approx(float(p @ m @ p), rel=1e-10)
    corners = {tuple(v): i for i, v in enumerate(r.lambdas.tolist())}
    assert r.xy[corners[(0.0, 1.0, 0.0)]] == pytest.approx([1.0, 0.0])
    assert plot_simplex(r, tmp_path / "t.png", what="loss").stat().st_size > 0


def test_interpolation_and_bn_recompute(tiny_convbn: nn.Module) -> None:
    obj = _classification(tiny_convbn, shape=(1, 4, 4))
    other = obj.theta + 0.1 * torch.randn(obj.num_params, dtype=torch.float64)
    s = interpolate(obj, obj.theta, other, alphas=np.array([0.0, 0.5, 1.0]))
    ref = _reference(obj, torch.stack([obj.theta, 0.5 * (obj.theta + other), other]))
    np.testing.assert_allclose(s.loss, ref[0], rtol=1e-10)
    # BN statistics recomputed: running mean / var become the data's per-channel statistics.
    net = tiny_convbn
    recompute_bn(net, obj.x, chunk_size=None)
    with torch.no_grad():
        h = net[0](obj.x)
    assert torch.allclose(net[1].running_mean, h.mean(dim=(0, 2, 3)))
    assert torch.allclose(net[1].running_var, h.var(dim=(0, 2, 3), unbiased=True))
    sb = interpolate(obj, obj.theta, other, alphas=np.array([0.0, 1.0]), bn_recompute=True)
    assert np.isfinite(sb.loss).all() and sb.meta["bn_recompute"]
    with pytest.raises(ConfigError):
        interpolate(_quadratic_obj()[0], torch.zeros(5), torch.ones(5), bn_recompute=True)


@pytest.mark.parametrize("stream", [True, False])
def test_chain_path_with_mse_onehot_and_activations(stream: bool) -> None:
    torch.manual_seed(5)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4, bias=False), nn.GELU(), nn.Linear(4, 3)
    ).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(11, 2, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (11,), generator=g)
    obj = Objective(net, "mse", x, nn.functional.one_hot(labels, 3).double(), chunk_size=4)
    dirs = torch.randn(2, obj.num_params, generator=g, dtype=torch.float64)
    coords = np.array([[0.0, 0.0], [0.2, -0.7], [1.0, 0.5]])
    fast = evaluate_plane(obj, obj.theta, dirs, coords, stream=stream)
    thetas = obj.theta + torch.as_tensor(coords) @ dirs
    np.testing.assert_allclose(fast[0], [obj.value(t) for t in thetas], rtol=1e-10)
    acc = [float((obj.outputs(t).argmax(1) == labels).double().mean()) for t in thetas]
    np.testing.assert_array_equal(fast[1], acc)


def test_json_output_is_strict(tmp_path) -> None:
    import json

    from flatminima._io import atomic_write_json

    atomic_write_json(
        tmp_path / "a.json", {"a": float("nan"), "b": np.array([1.0, np.inf]), "c": torch.ones(2)}
    )
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": None, "b": [1.0, "inf"], "c": [1.0, 1.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind


def test_batched_evaluation_rejects_bad_input(tiny_convbn: nn.Module) -> None:
    obj = _classification(tiny_convbn, shape=(1, 4, 4))
    with pytest.raises(ConfigError):
        evaluate_points(obj, obj.theta.unsqueeze(0), batch_points=0)
    with pytest.raises(ConfigError):
        evaluate_points(obj, obj.theta[:-1].unsqueeze(0))
    train_bn = Objective(tiny_convbn, "cross_entropy", obj.x, obj.y, bn="train")
    with pytest.raises(ConfigError, match="bn='eval'"):
        evaluate_points(train_bn, obj.theta.unsqueeze(0))


@pytest.mark.parametrize("stream", [True, False])
def test_chain_path_with_polyrelu(stream: bool) -> None:
    from flatminima.models import PolyReLU

    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 6), PolyReLU(4), nn.Linear(6, 3)).double()
    obj = _classification(net)
    dirs = torch.randn(2, obj.num_params, dtype=torch.float64)
    coords = np.array([[0.1, 0.2], [-0.3, 0.4]])
    ref = _reference(obj, obj.theta + torch.as_tensor(coords) @ dirs)
    np.testing.assert_allclose(
        evaluate_plane(obj, obj.theta, dirs, coords, stream=stream)[0], ref[0], rtol=1e-10
    )
