"""Block products H V and G V against dense float64 references and against b single products."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima._threads import torch_threads

from .dense import dense_hessian


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets: one intra-op thread (two spin on OpenMP hand-offs on a busy 2-core machine)."""
    with torch_threads(1):
        yield


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _output_hessian(obj: Objective, f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d^2 l / d f^2 of one example by autograd.functional.hessian."""
    return torch.autograd.functional.hessian(lambda g: obj.loss_fn(g[None], target[None])[0], f)


def _dense_ggn(obj: Objective) -> torch.Tensor:
    """(1/n) sum_i J_i^T Q_i J_i with the Jacobian and the output Hessians from autograd.functional."""
    jac = torch.autograd.functional.jacobian(lambda t: obj.outputs_fn(t, obj.x), obj.theta)  # [n, K, p]
    out = obj.outputs().detach()
    q = torch.stack([_output_hessian(obj, out[i], obj.y[i]) for i in range(obj.n)])
    return torch.einsum("nkp,nkl,nlq->pq", jac, q, jac) / obj.n


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("b", [1, 4])
def test_hvp_block_matches_dense_and_single_products(tiny_mlp, tiny_data, loss, chunk_size, b):
    x, y = tiny_data
    if loss == "cross_entropy":
        y = y.argmax(dim=1)
    obj = Objective(tiny_mlp, loss=loss, x=x, y=y, chunk_size=chunk_size)
    h = dense_hessian(obj)
    vs = torch.randn(obj.num_params, b, dtype=torch.float64)
    hv = obj.hvp_block(vs)
    assert hv.shape == (obj.num_params, b)
    assert _rel(hv, h @ vs) < 1e-10
    single = torch.stack([obj.hvp(c) for c in vs.T], dim=1)
    assert _rel(hv, single) < 1e-12
    theta = obj.theta + 0.05
    h2 = torch.autograd.functional.hessian(lambda t: obj.losses_fn(t, x, y).mean(), theta)
    assert _rel(obj.hvp_block(vs, theta=theta), h2 @ vs) < 1e-10


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_ggn_vp_block_matches_dense_gauss_newton(tiny_mlp, tiny_data, loss, chunk_size):
    x, y = tiny_data
    if loss == "cross_entropy":
        y = y.argmax(dim=1)
    obj = Objective(tiny_mlp, loss=loss, x=x, y=y, chunk_size=chunk_size)
    g = _dense_ggn(obj)
    vs = torch.randn(obj.num_params, 5, dtype=torch.float64)
    gv = obj.ggn_vp_block(vs)
    assert _rel(gv, g @ vs) < 1e-10
    single = torch.stack([obj.ggn_vp(c) for c in vs.T], dim=1)
    assert _rel(gv, single) < 1e-12


def test_closed_form_output_hessians_match_autograd(tiny_mlp, tiny_data):
    x, y = tiny_data
    for loss, targets in (("mse", y), ("cross_entropy", y.argmax(1)), ("cross_entropy", y.softmax(1))):
        obj = Objective(tiny_mlp, loss=loss, x=x, y=targets)
        out = obj.outputs()
        q = obj.output_hessians(out, targets)
        for i in range(3):
            ref = _output_hessian(obj, out[i], targets[i])
            assert torch.allclose(q[i], ref, atol=1e-12), loss


def test_ggn_block_on_a_custom_loss_and_conv_net(tiny_convbn):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64)

    def smooth_l1ish(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (torch.cosh(out - t) - 1).sum(dim=1)

    obj = Objective(tiny_convbn, loss=smooth_l1ish, x=x, y=y, chunk_size=4)
    vs = torch.randn(obj.num_params, 3, dtype=torch.float64)
    assert _rel(obj.ggn_vp_block(vs), _dense_ggn(obj) @ vs) < 1e-10
    assert _rel(obj.hvp_block(vs), dense_hessian(obj) @ vs) < 1e-10


def test_block_of_zero_columns_and_bad_shapes(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    assert obj.hvp_block(torch.zeros(obj.num_params, 0, dtype=torch.float64)).shape == (obj.num_params, 0)
    assert obj.ggn_vp_block(torch.zeros(obj.num_params, 0, dtype=torch.float64)).shape == (obj.num_params, 0)
    with pytest.raises(ConfigError, match="block of shape"):
        obj.hvp_block(torch.zeros(obj.num_params, dtype=torch.float64))
    with pytest.raises(ConfigError, match="block of shape"):
        obj.ggn_vp_block(torch.zeros(3, 2, dtype=torch.float64))


def test_block_products_pass_through_allreduce(tiny_mlp, tiny_data):
    """Every data-summing product goes through ``allreduce`` (summed over ranks with dist=)."""
    x, y = tiny_data
    for chunk_size in (None, 3):
        obj = Objective(tiny_mlp, x=x, y=y, chunk_size=chunk_size)
        ref = {
            "value": obj.value(),
            "grad": obj.grad(),
            "hvp": obj.hvp(obj.theta),
            "ggn": obj.ggn_vp(obj.theta),
            "hvp_block": obj.hvp_block(obj.theta[:, None]),
            "ggn_block": obj.ggn_vp_block(obj.theta[:, None]),
        }
        obj.allreduce = lambda t: 2 * t  # type: ignore[method-assign]
        assert obj.value() == pytest.approx(2 * ref["value"], rel=1e-12)
        assert torch.allclose(obj.grad(), 2 * ref["grad"])
        assert torch.allclose(obj.hvp(obj.theta), 2 * ref["hvp"])
        assert torch.allclose(obj.ggn_vp(obj.theta), 2 * ref["ggn"])
        assert torch.allclose(obj.hvp_block(obj.theta[:, None]), 2 * ref["hvp_block"])
        assert torch.allclose(obj.ggn_vp_block(obj.theta[:, None]), 2 * ref["ggn_block"])


def test_cached_block_falls_back_to_columns_without_batching_rule(tiny_mlp, tiny_data, monkeypatch):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    vs = torch.randn(obj.num_params, 3, dtype=torch.float64)
    ref = obj.hvp_block(vs)
    real = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented for aten::some_op")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    assert _rel(obj.hvp_block(vs), ref) < 1e-12


def test_block_on_bn_model(tiny_convbn):
    """A model in train-mode BN: the block equals the single products (batch statistics of each chunk)."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randn(8, 3, generator=g, dtype=torch.float64)
    obj = Objective(tiny_convbn, x=x, y=y, bn="train", chunk_size=4)
    vs = torch.randn(obj.num_params, 2, dtype=torch.float64)
    single = torch.stack([obj.hvp(c) for c in vs.T], dim=1)
    assert _rel(obj.hvp_block(vs), single) < 1e-12
    assert isinstance(tiny_convbn, nn.Module)
