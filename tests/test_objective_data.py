"""The loader form of the Objective: DataLoaders, dict batches, hooks; equal to the tensor form."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import flatminima as fm
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


def _check_same(obj: Objective, ref: Objective, ggn: bool = True) -> None:
    """Value, gradient, H v, H V, G v and per-example losses agree with the tensor-form reference."""
    assert obj.n == ref.n
    assert obj.value() == pytest.approx(ref.value(), rel=1e-12)
    assert _rel(obj.grad(), ref.grad()) < 1e-12
    h = dense_hessian(ref)
    g = torch.Generator().manual_seed(3)
    vs = torch.randn(ref.num_params, 3, generator=g, dtype=torch.float64)
    assert _rel(obj.hvp(vs[:, 0]), h @ vs[:, 0]) < 1e-10
    assert _rel(obj.hvp_block(vs), h @ vs) < 1e-10
    if ggn:
        assert _rel(obj.ggn_vp_block(vs), ref.ggn_vp_block(vs)) < 1e-10
    assert torch.allclose(obj.losses(), ref.losses(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_dataloader_equals_tensor_form(tiny_mlp, tiny_data, batch_size):
    x, y = tiny_data
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    obj = Objective(tiny_mlp, "mse", data=loader)
    ref = Objective(tiny_mlp, "mse", x, y)
    _check_same(obj, ref)
    assert not obj.is_tensor_data and ref.is_tensor_data
    # positional form, and a plain list of batches (no len, counted in a pass)
    assert Objective(tiny_mlp, "mse", loader).value() == pytest.approx(ref.value(), rel=1e-12)
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 10, 4)]
    _check_same(Objective(tiny_mlp, "mse", data=batches), ref)


def test_drop_last_counts_only_the_examples_seen(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, "mse", data=DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True))
    assert obj.n == 8
    assert obj.value() == pytest.approx(Objective(tiny_mlp, "mse", x[:8], y[:8]).value(), rel=1e-12)


def test_shuffling_and_one_shot_sources_are_refused(tiny_mlp, tiny_data):
    x, y = tiny_data
    with pytest.raises(ConfigError, match="shuffles"):
        Objective(tiny_mlp, data=DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True))
    with pytest.raises(ConfigError, match="one-shot iterator"):
        Objective(tiny_mlp, data=((x[i : i + 2], y[i : i + 2]) for i in range(0, 10, 2)))
    with pytest.raises(ConfigError, match="not both"):
        Objective(tiny_mlp, x=x, y=y, data=[(x, y)])
    with pytest.raises(ConfigError, match="batch size"):
        Objective(tiny_mlp, data=[(x, y)], chunk_size=2)
    with pytest.raises(ConfigError, match="cannot read a batch"):
        Objective(tiny_mlp, data=[(x, y, y)])
    with pytest.raises(ConfigError, match="empty"):
        Objective(tiny_mlp, data=[])


def test_loader_form_refuses_tensor_access_clearly(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, data=[(x, y)])
    with pytest.raises(ConfigError, match="needs the data as tensors"):
        _ = obj.x
    direction = fm.landscape.random_directions(obj, count=1, seed=0)[0]
    with pytest.raises(ConfigError, match="needs the data as tensors"):
        fm.landscape.slice_2d(obj, direction, direction, [0.0, 1.0], [0.0, 1.0])


class _DictNet(nn.Module):
    """HuggingFace-style: keyword inputs, a dict result with "logits"."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, features: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": torch.tanh(self.lin(features)) * scale[:, None]}


def test_dict_batches_with_target_key():
    torch.manual_seed(2)
    net = _DictNet().double()
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(9, 4, generator=g, dtype=torch.float64)
    scale = torch.rand(9, generator=g, dtype=torch.float64) + 0.5
    labels = torch.randint(0, 3, (9,), generator=g)
    batches = [{"features": feats[i : i + 4], "scale": scale[i : i + 4], "labels": labels[i : i + 4]}
               for i in range(0, 9, 4)]  # fmt: skip
    obj = Objective(net, "cross_entropy", data=batches)

    class _Plain(nn.Module):  # the same function on tensors, as an independent reference
        def __init__(self) -> None:
            super().__init__()
            self.lin = net.lin

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.lin(z[:, :4])) * z[:, 4:5]

    ref = Objective(_Plain(), "cross_entropy", torch.cat([feats, scale[:, None]], 1), labels)
    _check_same(obj, ref)
    grads = obj.per_example_grads(*next(iter(obj.chunks())))
    assert _rel(grads, ref.per_example_grads(ref.x[:4], ref.y[:4])) < 1e-12
    renamed = [{"features": b["features"], "scale": b["scale"], "target": b["labels"]} for b in batches]
    renamed_obj = Objective(net, "cross_entropy", data=renamed, target_key="target")
    assert renamed_obj.value() == pytest.approx(ref.value())
    with pytest.raises(ConfigError, match="target_key='labels'"):
        Objective(net, "cross_entropy", data=renamed)


def test_forward_and_batch_loss_hooks(tiny_mlp, tiny_data):
    x, y = tiny_data
    batches = [{"pixels": x[i : i + 3], "answer": y[i : i + 3], "meta": "ignored"} for i in range(0, 10, 3)]

    def forward(model, batch):
        return model(batch["pixels"]), batch["answer"]

    ref = Objective(tiny_mlp, "mse", x, y)
    _check_same(Objective(tiny_mlp, "mse", data=batches, forward=forward), ref)

    def batch_loss(model, batch):
        return ((model(batch["pixels"]) - batch["answer"]) ** 2).mean(1)

    obj = Objective(tiny_mlp, data=batches, batch_loss=batch_loss)
    _check_same(obj, ref, ggn=False)
    with pytest.raises(ConfigError, match="batch_loss= hook does not give"):
        obj.ggn_vp(obj.theta)
    with pytest.raises(ConfigError, match="data=<loader>"):
        Objective(tiny_mlp, x=x, y=y, forward=forward)


def test_subset_of_a_loader_equals_subset_of_tensors(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, "mse", data=DataLoader(TensorDataset(x, y), batch_size=3))
    ref = Objective(tiny_mlp, "mse", x, y)
    idx = [1, 4, 7, 8]  # a loader's subset is visited in data order
    sub, sub_ref = obj.subset([7, 1, 4, 8]), ref.subset(idx)
    assert sub.n == 4
    _check_same(sub, sub_ref)
    assert sub.subset([0, 2]).value() == pytest.approx(sub_ref.subset([0, 2]).value(), rel=1e-12)
    with pytest.raises(ConfigError, match="out of range"):
        obj.subset([10])


def test_curvature_estimators_run_unchanged_on_a_loader(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, "mse", data=DataLoader(TensorDataset(x, y), batch_size=4))
    ref = Objective(tiny_mlp, "mse", x, y)
    assert fm.sharpness(obj, tol=1e-8).value == pytest.approx(fm.sharpness(ref, tol=1e-8).value, rel=1e-8)
    for method in ("exact", "ggn"):
        a = fm.non_uniformity(obj, method=method, tol=1e-8).value
        assert a == pytest.approx(fm.non_uniformity(ref, method=method, tol=1e-8).value, rel=1e-7)
