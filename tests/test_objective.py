"""Objective against dense float64 references (autograd.functional.hessian)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective

from .dense import dense_hessian, per_example_hessians


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_value_grad_hvp_match_dense(tiny_mlp, tiny_data, loss, chunk_size):
    x, y = tiny_data
    if loss == "cross_entropy":
        y = y.argmax(dim=1)
    obj = Objective(tiny_mlp, loss=loss, x=x, y=y, chunk_size=chunk_size)
    out = tiny_mlp(x)
    ref = nn.MSELoss()(out, y) if loss == "mse" else nn.CrossEntropyLoss()(out, y)
    assert obj.value() == pytest.approx(ref.item(), rel=1e-12)
    ref_g = torch.autograd.grad(ref, list(tiny_mlp.parameters()))
    assert _rel(obj.grad(), torch.cat([g.reshape(-1) for g in ref_g])) < 1e-10
    h = dense_hessian(obj)
    for _ in range(3):
        v = torch.randn(obj.num_params, dtype=torch.float64)
        assert _rel(obj.hvp(v), h @ v) < 1e-8
        assert _rel(obj.hvp(v, theta=obj.theta), h @ v) < 1e-8


def test_conv_bn_eval_hvp_and_per_example(tiny_convbn):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64)
    obj = Objective(tiny_convbn, loss="mse", x=x, y=y, chunk_size=4)
    h = dense_hessian(obj)
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert _rel(obj.hvp(v), h @ v) < 1e-8
    hs = per_example_hessians(obj)
    hv_i = obj.per_example_hvp(v, obj.x, obj.y)
    for i, hi in enumerate(hs):
        assert _rel(hv_i[i], hi @ v) < 1e-8
    # One vector per example.
    vs = torch.randn(obj.n, obj.num_params, dtype=torch.float64)
    hv_i = obj.per_example_hvp(vs, obj.x, obj.y)
    for i, hi in enumerate(hs):
        assert _rel(hv_i[i], hi @ vs[i]) < 1e-8


def test_bn_train_is_explicit_and_does_not_touch_buffers(tiny_convbn):
    x = torch.randn(8, 1, 4, 4, dtype=torch.float64)
    y = torch.randn(8, 3, dtype=torch.float64)
    before = tiny_convbn[1].running_mean.clone()
    obj = Objective(tiny_convbn, x=x, y=y, bn="train")
    tiny_convbn.train()
    ref = nn.MSELoss()(tiny_convbn(x), y)
    tiny_convbn[1].running_mean.copy_(before)
    assert obj.value() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.equal(tiny_convbn[1].running_mean, before)
    with pytest.raises(ConfigError, match="bn='eval'"):
        obj.per_example_grads(x, y)


def test_per_example_grads_match_loop(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    pg = obj.per_example_grads(x, y)
    for i in range(len(x)):
        ref = torch.autograd.grad(
            nn.MSELoss()(tiny_mlp(x[i : i + 1]), y[i : i + 1]), list(tiny_mlp.parameters())
        )
        assert _rel(pg[i], torch.cat([g.reshape(-1) for g in ref])) < 1e-10
    assert _rel(pg.mean(0), obj.grad()) < 1e-10


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_ggn_matches_dense_gauss_newton(tiny_mlp, tiny_data, loss):
    x, y = tiny_data
    if loss == "cross_entropy":
        y = y.argmax(dim=1)
    obj = Objective(tiny_mlp, loss=loss, x=x, y=y, chunk_size=4)
    jac = torch.autograd.functional.jacobian(lambda t: obj.outputs_fn(t, x), obj.theta)  # [n, K, p]
    out = obj.outputs()
    q = obj.output_hessians(out, y)
    g_dense = torch.einsum("nkp,nkl,nlq->pq", jac, q, jac) / len(x)
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert _rel(obj.ggn_vp(v), g_dense @ v) < 1e-8
    if loss == "mse":  # Q_i = (2/K) I for the mean-over-entries MSE
        k = y.shape[1]
        assert torch.allclose(q, (2.0 / k) * torch.eye(k, dtype=torch.float64).expand_as(q))


def test_param_subset_top_layer(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y, params="2.*")
    assert obj.param_names == ["2.weight", "2.bias"]
    assert obj.num_params == 6 * 3 + 3
    full = Objective(tiny_mlp, x=x, y=y)
    h_full = dense_hessian(full)
    sl = slice(full.num_params - obj.num_params, full.num_params)
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert _rel(obj.hvp(v), h_full[sl, sl] @ v) < 1e-8
    with pytest.raises(ConfigError, match="matches no parameter"):
        Objective(tiny_mlp, x=x, y=y, params="nope.*")


def test_custom_callable_loss(tiny_mlp, tiny_data):
    x, y = tiny_data

    def huberish(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (torch.cosh(out - t) - 1).sum(dim=1)

    obj = Objective(tiny_mlp, loss=huberish, x=x, y=y)
    assert obj.value() == pytest.approx(huberish(tiny_mlp(x), y).mean().item(), rel=1e-12)
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert _rel(obj.hvp(v), dense_hessian(obj) @ v) < 1e-8


def test_float64_conversion_leaves_model_untouched(tiny_data):
    net = nn.Linear(4, 3)
    x, y = tiny_data
    obj = Objective(net, x=x.float(), y=y.float(), dtype=torch.float64)
    assert obj.theta.dtype == torch.float64
    assert net.weight.dtype == torch.float32


def test_bad_input_errors(tiny_mlp, tiny_data):
    x, y = tiny_data
    with pytest.raises(ConfigError, match="unknown loss"):
        Objective(tiny_mlp, loss="hinge", x=x, y=y)
    with pytest.raises(ConfigError, match="disagree"):
        Objective(tiny_mlp, x=x, y=y[:3])
    with pytest.raises(ConfigError, match="chunk_size"):
        Objective(tiny_mlp, x=x, y=y, chunk_size=0)
    obj = Objective(tiny_mlp, x=x, y=y)
    with pytest.raises(ConfigError, match="does not match"):
        obj.hvp(torch.zeros(3, dtype=torch.float64))
    with torch.no_grad():
        tiny_mlp[0].weight[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN or inf"):
        Objective(tiny_mlp, x=x, y=y)


def test_at_subset_and_state_dict(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    theta2 = obj.theta + 0.1
    o2 = obj.at(theta2)
    assert o2.value() == pytest.approx(obj.value(theta2))
    sub = obj.subset([0, 1, 2])
    assert sub.n == 3
    assert sub.value() == pytest.approx(float(obj.losses()[:3].mean()))
    sd = obj.state_dict(theta2)
    net2 = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    net2.load_state_dict(sd)
    assert nn.MSELoss()(net2(x), y).item() == pytest.approx(o2.value())
