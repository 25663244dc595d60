"""Clear errors for bad models and data, wrappers unwrapped, dropout off, check_finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima._threads import torch_threads
from flatminima.objective import checks


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets: one intra-op thread (two spin on OpenMP hand-offs on a busy 2-core machine)."""
    with torch_threads(1):
        yield


def test_bn_train_keeps_dropout_off():
    torch.manual_seed(0)
    layers = (nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    net = nn.Sequential(*layers).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randn(16, 2, dtype=torch.float64)
    obj = Objective(net, "mse", x, y, bn="train")
    assert obj.value() == obj.value()
    before = net[1].running_mean.clone()
    net.eval()
    net[1].train()  # the reference: batch statistics, dropout off
    ref = nn.MSELoss()(net(x), y).item()
    net[1].running_mean.copy_(before)
    assert obj.value() == pytest.approx(ref, rel=1e-12)


def test_wrapped_models_are_unwrapped_with_a_note(tiny_mlp, tiny_data):
    x, y = tiny_data
    ref = Objective(tiny_mlp, "mse", x, y)
    checks._NOTED.clear()
    for wrapped in (nn.DataParallel(tiny_mlp), torch.compile(tiny_mlp)):
        with pytest.warns(UserWarning, match="inside the"):
            obj = Objective(wrapped, "mse", x, y)
        assert obj.model is tiny_mlp
        assert obj.param_names == ref.param_names
        assert obj.value() == pytest.approx(ref.value(), rel=1e-12)
    with pytest.raises(ConfigError, match=r"torch\.nn\.Module"):
        Objective(lambda t: t, "mse", x, y)  # type: ignore[arg-type]


def test_device_argument_and_unavailable_devices(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, "mse", x, y, device="cpu")
    assert obj.device == torch.device("cpu") and obj.model is tiny_mlp
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            Objective(tiny_mlp, "mse", x, y, device="cuda")
    with pytest.raises(ConfigError, match="meta"):
        Objective(tiny_mlp, "mse", x, y, device="meta")
    with pytest.raises(ConfigError, match="not a device"):
        Objective(tiny_mlp, "mse", x, y, device="gpu0")
    with pytest.raises(ConfigError, match="meta device"):
        Objective(nn.Linear(4, 3, device="meta"), "mse", x, y)
    with pytest.raises(ConfigError, match="meta tensor"):
        Objective(tiny_mlp, "mse", x.to("meta"), y)


def test_frozen_parameters(tiny_mlp, tiny_data):
    x, y = tiny_data
    for p in tiny_mlp[0].parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"matches only frozen parameters .*0\.weight, 0\.bias"):
        Objective(tiny_mlp, "mse", x, y, params="0.*")
    assert Objective(tiny_mlp, "mse", x, y).param_names == ["2.weight", "2.bias"]
    for p in tiny_mlp.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="every parameter of the model is frozen"):
        Objective(tiny_mlp, "mse", x, y)


def test_bad_data_gets_precise_errors(tiny_mlp, tiny_data):
    x, y = tiny_data
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ConfigError, match="x contains 1 NaN or inf"):
        Objective(tiny_mlp, "mse", bad, y)
    bad_y = y.clone()
    bad_y[0, 2] = float("inf")
    with pytest.raises(ConfigError, match="y contains 1 NaN or inf"):
        Objective(tiny_mlp, "mse", x, bad_y)
    with pytest.raises(ConfigError, match=r"first batch's inputs contains 1 NaN"):
        Objective(tiny_mlp, "mse", data=[(bad[:4], y[:4])])
    with pytest.raises(ConfigError, match=r"inputs of shape \(1, 5\).*expects \[\.\.\., 4\]"):
        Objective(tiny_mlp, "mse", torch.randn(10, 5, dtype=torch.float64), y)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)).double()
    with pytest.raises(ConfigError, match=r"expects \[n, 1, H, W\]"):
        Objective(conv, "mse", torch.randn(10, 3, 4, 4, dtype=torch.float64), y)
    with pytest.raises(ConfigError, match=r"mse: targets of shape \[n, 2\] do not match the outputs"):
        Objective(tiny_mlp, "mse", x, y[:, :2])
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\).*\[0, 3\]"):
        Objective(tiny_mlp, "cross_entropy", x, torch.arange(10) % 4)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\).*\[-1, 2\]"):
        Objective(tiny_mlp, "cross_entropy", x, torch.arange(10) % 4 - 1)
    with pytest.raises(ConfigError, match=r"cross_entropy: targets \(class indices\) of shape \[n, 3\]"):
        Objective(tiny_mlp, "cross_entropy", x, torch.zeros(10, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"integer inputs: convert them"):
        Objective(tiny_mlp, "mse", torch.ones(10, 4, dtype=torch.long), y)
    with pytest.raises(ConfigError, match=r"must be a torch\.Tensor or a numpy array"):
        Objective(tiny_mlp, "mse", x.tolist(), y)
    for chunk in (2.5, True, 0, "4"):
        with pytest.raises(ConfigError, match="chunk_size must be a positive integer"):
            Objective(tiny_mlp, "mse", x, y, chunk_size=chunk)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dtype must be a floating torch dtype"):
        Objective(tiny_mlp, "mse", x, y, dtype="float64")  # type: ignore[arg-type]


def test_numpy_inputs_are_converted(tiny_mlp, tiny_data):
    x, y = tiny_data
    ref = Objective(tiny_mlp, "mse", x, y)
    obj = Objective(tiny_mlp, "mse", x.numpy(), y.numpy())
    assert obj.value() == pytest.approx(ref.value(), rel=1e-12)
    labels = np.arange(10) % 3
    assert Objective(tiny_mlp, "cross_entropy", x.numpy(), labels).value() == pytest.approx(
        Objective(tiny_mlp, "cross_entropy", x, torch.as_tensor(labels)).value(), rel=1e-12
    )


def test_check_finite(tiny_data):
    x, y = tiny_data
    net = nn.Linear(4, 3).double()
    obj = Objective(net, "mse", x, y)
    obj.check_finite()  # finite: passes (and is cached)
    with torch.no_grad():
        net.weight.mul_(1e160)  # finite weights, outputs ~1e160: the squared error overflows
    with pytest.raises(ConfigError, match=r"the loss is inf at these weights \(a diverged run\?\)"):
        Objective(net, "mse", x, y).check_finite()
    zero = nn.Linear(4, 3, bias=False).double()
    nn.init.zeros_(zero.weight)
    sqrt_loss = Objective(zero, lambda f, t: f.abs().sqrt().sum(1), x, y)
    with pytest.raises(ConfigError, match=r"the gradient has .* NaN or inf entries"):
        sqrt_loss.check_finite()
