"""The closed-form MLP products (objective/sequential.py) against dense float64 Hessians.

The reference is torch.autograd.functional.hessian of the mean loss through the model's own forward
(tests/dense.py), which never touches the R-operator code; the generic double-backward path is checked
against the same reference elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from flatminima import Objective
from flatminima.curvature import hessian_trace, sharpness
from flatminima.curvature.operators import HessianOperator
from flatminima.curvature.trace import hutchinson, hutchpp
from tests.dense import dense_hessian

N, D, K = 24, 6, 3


def _data(loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    if loss == "mse":
        return x, torch.randn(N, K, generator=g, dtype=torch.float64)
    if loss == "soft":  # probability rows scaled by 2: rows need not sum to 1
        return x, 2 * torch.softmax(torch.randn(N, K, generator=g, dtype=torch.float64), dim=1)
    return x, torch.randint(0, K, (N,), generator=g)


MODELS: dict[str, Callable[[], nn.Module]] = {
    "relu-tanh": lambda: nn.Sequential(
        nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, K)
    ),
    "sigmoid-leaky-nobias": lambda: nn.Sequential(
        nn.Linear(D, 5), nn.Sigmoid(), nn.Linear(5, 4, bias=False), nn.LeakyReLU(0.1), nn.Linear(4, K)
    ),
    "linear-linear": lambda: nn.Sequential(nn.Linear(D, 5), nn.Tanh(), nn.Linear(5, 4), nn.Linear(4, K)),
    "dropout-identity": lambda: nn.Sequential(
        nn.Linear(D, 5), nn.Tanh(), nn.Dropout(0.5), nn.Identity(), nn.Linear(5, K)
    ),
}
LOSSES: dict[str, object] = {
    "mse": "mse",
    "ce": "cross_entropy",
    "soft": nn.CrossEntropyLoss(),
    "quartic": lambda f, t: ((f - t) ** 4).sum(dim=1),  # any per-example loss: autograd output Hessians
}


def _objective(model_key: str, loss_key: str, **kw) -> Objective:
    torch.manual_seed(0)
    model = MODELS[model_key]().double()
    x, y = _data({"ce": "ce", "soft": "soft"}.get(loss_key, "mse"))
    obj = Objective(model, LOSSES[loss_key], x, y, **kw)
    assert obj._structured_plan() is not None, "the closed-form path applies to this model"
    return obj


def _block(obj: Objective, b: int = 4) -> torch.Tensor:
    return torch.randn(obj.num_params, b, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


@pytest.mark.parametrize("loss_key", list(LOSSES))
@pytest.mark.parametrize("model_key", list(MODELS))
def test_products_and_quadratic_forms_equal_the_dense_hessian(model_key: str, loss_key: str) -> None:
    obj = _objective(model_key, loss_key)
    h = dense_hessian(obj)
    V = _block(obj)
    torch.testing.assert_close(obj.hvp_block(V), h @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hvp(V[:, 0]), h @ V[:, 0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hessian_quadratic_forms(V), (V * (h @ V)).sum(0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("params", ["4.*", ["0.*", "4.bias"], "2.bias"])
def test_a_parameter_selection_holds_the_others_fixed(params: object) -> None:
    obj = _objective("relu-tanh", "ce", params=params)
    h = dense_hessian(obj)
    assert h.shape[0] == obj.num_params < sum(p.numel() for p in obj.model.parameters())
    V = _block(obj, 3)
    torch.testing.assert_close(obj.hvp_block(V), h @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hessian_quadratic_forms(V), (V * (h @ V)).sum(0), rtol=1e-10, atol=1e-12)


def test_chunks_flatten_and_another_point() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 5), nn.Tanh(), nn.Linear(5, K)).double()
    x, y = _data("ce")
    obj = Objective(model, "cross_entropy", x.view(N, 2, 3), y, chunk_size=7)
    assert obj._structured_plan() is not None
    V = _block(obj)
    h = dense_hessian(obj)
    torch.testing.assert_close(obj.hvp_block(V), h @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hessian_quadratic_forms(V), (V * (h @ V)).sum(0), rtol=1e-10, atol=1e-12)
    theta = obj.theta + 0.3 * _block(obj, 1)[:, 0]
    torch.testing.assert_close(
        obj.hvp(V[:, 0], theta), dense_hessian(obj.at(theta)) @ V[:, 0], rtol=1e-10, atol=1e-12
    )


def test_the_cache_follows_the_base_point_and_can_be_switched_off() -> None:
    obj = _objective("relu-tanh", "mse")
    V = _block(obj)
    obj.hvp_block(V)
    moved = obj.at(obj.theta * 1.1)
    torch.testing.assert_close(moved.hvp_block(V), dense_hessian(moved) @ V, rtol=1e-10, atol=1e-12)
    generic = _objective("relu-tanh", "mse")
    generic.structured_products = False
    assert generic._structured_plan() is None
    torch.testing.assert_close(generic.hvp_block(V), obj.hvp_block(V), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "build",
    [
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, K)),
        lambda: nn.Sequential(nn.Linear(D, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, K)),
        lambda: nn.Sequential(nn.Linear(D, 5), nn.GELU(), nn.Linear(5, K)),
        lambda: nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, K), nn.Tanh()),  # after the outputs
        lambda: nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.ReLU(), nn.Linear(5, K)),
        lambda: nn.Sequential(nn.Flatten(0), nn.Linear(D, K)),
        lambda: nn.Sequential(nn.Sequential(nn.Linear(D, 5), nn.ReLU()), nn.Linear(5, K)),
    ],
)
def test_other_models_take_the_generic_path(build: Callable[[], nn.Module]) -> None:
    from flatminima.objective.sequential import mlp_plan

    model = build()
    names = [k for k, _ in model.named_parameters()]
    assert mlp_plan(model, names, [p.numel() for _, p in model.named_parameters()]) is None


def test_a_plain_subclass_or_extra_parameter_is_not_mistaken_for_an_mlp() -> None:
    from flatminima.objective.sequential import mlp_plan

    model = nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, K))
    model.register_parameter("scale", nn.Parameter(torch.ones(1)))
    names = [k for k, _ in model.named_parameters()]
    assert mlp_plan(model, names, [p.numel() for _, p in model.named_parameters()]) is None

    class Custom(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    custom = Custom(nn.Linear(D, K))
    names = [k for k, _ in custom.named_parameters()]
    assert mlp_plan(custom, names, [p.numel() for _, p in custom.named_parameters()]) is None

    hooked = nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, K))
    hooked[1].register_forward_hook(lambda m, i, o: 2 * o)  # changes the function: generic path
    names = [k for k, _ in hooked.named_parameters()]
    assert mlp_plan(hooked, names, [p.numel() for _, p in hooked.named_parameters()]) is None


def test_estimators_agree_with_the_generic_path_and_the_dense_trace() -> None:
    """Same seed, same vectors: Hutchinson / Hutch++ from quadratic forms equal those from products; the
    sharpness equals the dense top eigenvalue."""
    obj = _objective("relu-tanh", "ce")
    generic = _objective("relu-tanh", "ce")
    generic.structured_products = False
    for fn in (hutchinson, hutchpp):
        ours, ref = fn(HessianOperator(obj), 30, seed=3), fn(HessianOperator(generic), 30, seed=3)
        assert ours.value == pytest.approx(ref.value, rel=1e-10, abs=1e-12)
        assert ours.samples == pytest.approx(ref.samples, rel=1e-9, abs=1e-12)
    h = dense_hessian(obj)
    full = hessian_trace(obj, matvecs=3 * obj.num_params)  # sketch spans everything: exact
    assert full.value == pytest.approx(float(torch.trace(h)), rel=1e-8)
    assert sharpness(obj, tol=1e-10).value == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-7)


def test_float32_products_match_the_float64_reference() -> None:
    obj64 = _objective("relu-tanh", "mse")
    obj32 = Objective(obj64.model.float(), "mse", obj64.x.float(), obj64.y.float())
    V = _block(obj64)
    h = dense_hessian(obj64)
    torch.testing.assert_close(obj32.hvp_block(V.float()).double(), h @ V, rtol=1e-4, atol=1e-5)
    forms = obj32.hessian_quadratic_forms(V.float())
    assert forms.dtype == torch.float64
    torch.testing.assert_close(forms, (V * (h @ V)).sum(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("params", [None, "2.*"])
def test_value_and_gradient_of_the_check_equal_autograd(params: object) -> None:
    obj = _objective("relu-tanh", "ce", params=params)
    plan = obj._structured_plan()
    primal = obj._primal_at_base(plan)
    assert float(primal.value) == pytest.approx(obj.value(), rel=1e-13)
    generic = _objective("relu-tanh", "ce", params=params)
    generic.structured_products = False
    torch.testing.assert_close(plan.gradient(primal), generic.grad(), rtol=1e-12, atol=1e-14)


def test_a_non_finite_loss_is_refused_before_any_product() -> None:
    from flatminima import ConfigError

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, K))
    with torch.no_grad():
        model[2].weight.fill_(3e38)  # float32 overflow in the outputs: the loss is inf
    x, y = _data("mse")
    obj = Objective(model, "mse", x.float(), y.float())
    assert obj._structured_plan() is not None
    with pytest.raises(ConfigError, match="the loss is"):
        sharpness(obj)
