"""Non-uniformity (Wu, Ma & E 2018, Def. 3): exact and Gauss-Newton engines against dense constructions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from flatminima import ConfigError, Objective, UnknownNameError
from flatminima.curvature import SigmaOperator, non_uniformity
from flatminima.curvature.jacobian_gram import jacobian_gram_blocks
from flatminima.curvature.sigma import moments

from .dense import dense_sigma
from .test_curvature_eigen import convbn_obj_fixture, one_thread  # noqa: F401  (fixtures)


def _jacobians(obj: Objective) -> torch.Tensor:
    """Per-example Jacobians d f(x_i) / d theta, [n, K, p], by brute force."""
    return vmap(jacrev(lambda t, xi: obj.outputs_fn(t, xi[None]).reshape(-1)), in_dims=(None, 0))(
        obj.theta, obj.x
    )


def _dense_ggn_sigma(obj: Objective) -> torch.Tensor:
    """Sigma with H_i replaced by J_i^T Q_i J_i, built densely."""
    j = _jacobians(obj)
    q = obj.output_hessians(obj.outputs(), obj.y).reshape(obj.n, j.shape[1], j.shape[1])
    hs = [j[i].T @ q[i] @ j[i] for i in range(obj.n)]
    g = sum(hs) / obj.n
    return sum(h @ h for h in hs) / obj.n - g @ g


def _top_sqrt(m: torch.Tensor) -> float:
    return math.sqrt(max(float(torch.linalg.eigvalsh(m)[-1]), 0.0))


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_exact_sigma_operator_and_value_match_dense(tiny_mlp, tiny_data, chunk_size):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    sigma = dense_sigma(obj)
    op = SigmaOperator(obj, "exact")
    assert torch.allclose(op.to_dense(), sigma, atol=1e-10 * float(sigma.abs().max()))
    est = non_uniformity(obj, method="exact", tol=1e-8, chunk_size=chunk_size)
    assert est.value == pytest.approx(_top_sqrt(sigma), rel=1e-7)
    assert est.converged and est.residual < 1e-8 and est.extra["method"] == "exact"


def test_exact_on_conv_bn(convbn_obj):
    sigma = dense_sigma(convbn_obj)
    est = non_uniformity(convbn_obj, method="exact", tol=1e-8)  # BN affine parameters: vmap engine
    assert est.value == pytest.approx(_top_sqrt(sigma), rel=1e-7)


@pytest.mark.parametrize("case", ["mlp_vmap", "mlp_ce_chunked", "conv_layers", "sequence"])
def test_both_exact_engines_match_dense_sigma(case, tiny_mlp, tiny_data, convbn_obj):
    x, y = tiny_data
    engine = "exact"
    if case == "mlp_vmap":
        obj, engine = Objective(tiny_mlp, x=x, y=y, chunk_size=4), "exact-vmap"
    elif case == "mlp_ce_chunked":
        obj = Objective(tiny_mlp, loss="cross_entropy", x=x, y=y.argmax(1), chunk_size=3)
    elif case == "conv_layers":  # Conv2d via unfold (T = 16 positions) + Linear, BN held fixed
        obj = Objective(convbn_obj.model, x=convbn_obj.x, y=convbn_obj.y, params=["0.*", "4.*"])
    else:
        torch.manual_seed(0)
        obj = Objective(
            _SeqNet().double(), x=torch.randn(5, 6, dtype=torch.float64), y=torch.randn(5, 2).double()
        )
    eng = moments(obj, engine)
    assert type(eng).__name__ == ("ExactMoments" if engine == "exact-vmap" else "GramExactMoments")
    sigma = dense_sigma(obj)
    assert torch.allclose(
        SigmaOperator(obj, engine=eng).to_dense(), sigma, atol=1e-10 * float(sigma.abs().max())
    )


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_ggn_sigma_matches_its_dense_construction(tiny_mlp, tiny_data, loss, chunk_size):
    x, y = tiny_data
    y = y.argmax(1) if loss == "cross_entropy" else y
    obj = Objective(tiny_mlp, loss=loss, x=x, y=y, chunk_size=chunk_size)
    ref = _dense_ggn_sigma(obj)
    assert torch.allclose(SigmaOperator(obj, "ggn").to_dense(), ref, atol=1e-10 * float(ref.abs().max()))
    est = non_uniformity(obj, method="ggn", tol=1e-8)
    assert est.value == pytest.approx(_top_sqrt(ref), rel=1e-7)
    assert 0 < est.extra["ggn_residual"] < 10  # not an interpolating point: the residual term is visible


class _SeqNet(nn.Module):
    """A Linear layer applied to a sequence ([n, T, in]): T positions share the weight."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 4)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(x.reshape(len(x), 2, 3))).reshape(len(x), 8))


@pytest.mark.parametrize("case", ["mlp", "mlp_top", "convbn", "convbn_bn_only", "sequence"])
def test_jacobian_gram_blocks_match_brute_force(case, tiny_mlp, tiny_data, convbn_obj):
    x, y = tiny_data
    if case == "mlp":
        obj = Objective(tiny_mlp, x=x, y=y)
    elif case == "mlp_top":
        obj = Objective(tiny_mlp, x=x, y=y, params=["2.weight", "0.bias"])
    elif case == "convbn":
        obj = convbn_obj
    elif case == "convbn_bn_only":
        obj = Objective(convbn_obj.model, x=convbn_obj.x, y=convbn_obj.y, params="1.*")
    else:
        torch.manual_seed(0)
        net = _SeqNet().double()
        obj = Objective(
            net, x=torch.randn(5, 6, dtype=torch.float64), y=torch.randn(5, 2, dtype=torch.float64)
        )
    j = _jacobians(obj)
    ref = j @ j.transpose(1, 2)
    assert torch.allclose(jacobian_gram_blocks(obj, obj.x), ref, atol=1e-11 * float(ref.abs().max()))


def test_ggn_is_exact_for_a_linear_model_with_mse():
    g = torch.Generator().manual_seed(11)
    net = nn.Linear(4, 3).double()
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randn(12, 3, generator=g, dtype=torch.float64)
    obj = Objective(net, x=x, y=y)
    truth = _top_sqrt(dense_sigma(obj))
    ex = non_uniformity(obj, method="exact", tol=1e-9)
    gg = non_uniformity(obj, method="ggn", tol=1e-9)
    assert ex.value == pytest.approx(truth, rel=1e-7)
    assert gg.value == pytest.approx(truth, rel=1e-7)
    assert gg.extra["ggn_residual"] < 1e-10


def test_ggn_and_exact_agree_at_an_interpolating_minimum():
    # An over-parameterized MLP (226 parameters) fitted to 20 points in float64 with plain torch (L-BFGS,
    # about a second): the residual term of the Hessian vanishes at interpolation, so H_i = J_i^T Q_i J_i.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20, 2, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 2)).double()
    opt = torch.optim.LBFGS(
        net.parameters(), lr=1, max_iter=400, tolerance_grad=1e-14, tolerance_change=1e-16, history_size=50,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.MSELoss()(net(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    obj = Objective(net, x=x, y=y)
    assert obj.value() < 1e-8
    ex = non_uniformity(obj, method="exact", tol=1e-8)
    gg = non_uniformity(obj, method="ggn", tol=1e-8)
    auto = non_uniformity(obj, tol=1e-8)
    assert gg.value == pytest.approx(ex.value, rel=1e-2)
    assert auto.extra["method"] == "ggn" and auto.value == pytest.approx(gg.value, rel=1e-9)
    assert gg.extra["ggn_residual"] < 1e-3
    assert ex.value == pytest.approx(_top_sqrt(dense_sigma(obj)), rel=1e-6)


def test_auto_method_choice_and_bad_input(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    assert non_uniformity(obj).extra["method"] == "exact"  # far from interpolation

    def l1(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out - target).abs().sum(1)

    assert non_uniformity(Objective(tiny_mlp, loss=l1, x=x, y=y)).extra["method"] == "exact"
    with pytest.raises(UnknownNameError):
        non_uniformity(obj, method="fast")
    with pytest.raises(ConfigError, match="bn='eval'"):
        non_uniformity(Objective(tiny_mlp, x=x, y=y, bn="train"), method="exact")
    a = non_uniformity(obj, subsamples=3, subsample_size=6, seed=1)
    b = non_uniformity(obj, subsamples=3, subsample_size=6, seed=1)
    assert a.samples == b.samples and len(a.samples) == 3 and a.std > 0
