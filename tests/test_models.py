"""fm.models: parameter counts from the papers, shapes, PolyReLU vs numpy.polyfit, init bounds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from flatminima import models
from flatminima.errors import ConfigError, UnknownNameError
from flatminima.models.activations import FIT_POINTS

# (name, input_shape, num_classes, kwargs, parameter count stated in the source)
PAPER_COUNTS = [
    ("wu-fnn", (1, 28, 28), 10, {}, 898_510),  # Wu, Ma & E 2018, Sec. 5
    ("wu-fnn", (784,), 10, {}, 898_510),
    ("wu-vgg", (3, 32, 32), 2, {}, 71_410),  # Wu, Ma & E 2018, Sec. 5
    ("theory2-cnn", (3, 32, 32), 10, {}, 188_810),  # Theory II Sec. 4.1
    ("small-lenet", (1, 28, 28), 10, {}, 47_658),  # Chaudhari thesis Sec. 3.3.1
    ("smallfc", (1, 28, 28), 10, {}, 50_890),  # Chaudhari thesis Sec. 3.3.1
    ("lenet", (1, 28, 28), 10, {}, 131_220),  # Chaudhari thesis Sec. 4.6.2
    ("allcnn", (3, 32, 32), 10, {"widths": (12, 24)}, 26_982),  # small-allcnn, thesis Sec. 6.3.1
]


@pytest.mark.parametrize(("name", "shape", "k", "kwargs", "expected"), PAPER_COUNTS)
def test_parameter_counts_match_papers(name: str, shape: tuple, k: int, kwargs: dict, expected: int) -> None:
    assert models.count_params(models.build(name, shape, k, **kwargs)) == expected


def test_rounded_counts_match_papers() -> None:
    # allcnn "n = 1.67 million", mnistfc "n = 1.86 million" (thesis 4.6); allconv5 "W ~ 10000" (Theory III)
    assert round(models.count_params(models.build("allcnn", (3, 32, 32), 10)) / 1e4) == 167
    mnistfc = models.count_params(models.build("mnistfc", (1, 28, 28), 10))
    assert mnistfc == 785 * 1024 + 1025 * 1024 + 1025 * 10 + 2 * 2 * 1024 and math.floor(mnistfc / 1e4) == 186
    assert 9_000 < models.count_params(models.build("allconv5", (3, 32, 32), 10)) < 11_000


@pytest.mark.parametrize(("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_resnet_counts_match_he_et_al_table6(depth: int, millions: float) -> None:
    count = models.count_params(models.build("resnet", (3, 32, 32), 10, depth=depth))
    assert round(count / 1e6, 2 if depth < 110 else 1) == millions


def test_theory2_cnn_structure() -> None:
    net = models.build("theory2-cnn", (3, 32, 32), 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 5 and all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs)
    assert len(bns) == 4 and not any(b.affine for b in bns)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in net.modules())


NATURAL = {
    "mlp": (1, 8, 8),
    "wu-fnn": (1, 28, 28),
    "smallfc": (1, 28, 28),
    "mnistfc": (1, 28, 28),
    "wu-vgg": (3, 32, 32),
    "theory2-cnn": (3, 32, 32),
    "allconv5": (3, 32, 32),
    "lenet": (1, 28, 28),
    "small-lenet": (1, 28, 28),
    "allcnn": (3, 32, 32),
    "resnet": (3, 32, 32),
}


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_forward_shapes_natural_and_digits(name: str) -> None:
    assert set(models.available()) == set(NATURAL)
    for shape in (NATURAL[name], (1, 8, 8)):
        if name in ("wu-vgg", "lenet", "small-lenet") and shape == (1, 8, 8):
            with pytest.raises(ConfigError, match="too small"):
                models.build(name, shape, 7)
            continue
        net = models.build(name, shape, 7).eval()
        out = net(torch.rand(3, *shape))
        assert out.shape == (3, 7) and torch.isfinite(out).all()


def test_conv_models_reject_vector_input() -> None:
    with pytest.raises(ConfigError, match=r"needs image input"):
        models.build("allconv5", (64,), 10)
    assert models.build("allconv5", (8, 8), 10)(torch.rand(2, 8, 8)[:, None]).shape == (2, 10)


def test_poly_activation_replaces_every_relu() -> None:
    for name, shape in (
        ("mlp", (1, 8, 8)),
        ("theory2-cnn", (3, 16, 16)),
        ("allcnn", (3, 8, 8)),
        ("resnet", (3, 8, 8)),
    ):
        relu = models.build(name, shape, 4, seed=0)
        poly = models.build(name, shape, 4, activation="poly:10", seed=0)
        n_relu = sum(isinstance(m, nn.ReLU) for m in relu.modules())
        assert n_relu > 0 and not any(isinstance(m, nn.ReLU) for m in poly.modules())
        assert sum(isinstance(m, models.PolyReLU) for m in poly.modules()) == n_relu
        assert models.count_params(poly) == models.count_params(relu)
        assert torch.isfinite(poly.eval()(torch.rand(2, *shape))).all()
    act = models.build("mlp", (3,), 2, activation="poly:6:2", widths=[5]).act1
    assert act.degree == 6 and act.interval == (-2.0, 2.0)


@pytest.mark.parametrize(("degree", "interval"), [(10, (-3.0, 3.0)), (4, (-1.0, 2.0)), (2, (-0.5, 0.5))])
def test_polyrelu_is_the_least_squares_fit(degree: int, interval: tuple[float, float]) -> None:
    act = models.PolyReLU(degree, interval).double()
    grid = np.linspace(*interval, FIT_POINTS)
    reference = np.polyfit(grid, np.maximum(grid, 0.0), degree)
    x = np.random.default_rng(0).uniform(interval[0] - 0.5, interval[1] + 0.5, 500)
    expected = np.polyval(reference, x)
    np.testing.assert_allclose(act(torch.from_numpy(x)).numpy(), expected, rtol=1e-7, atol=1e-9)
    act32 = models.PolyReLU(degree, interval)
    out32 = act32(torch.from_numpy(x).float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=1e-5, atol=1e-5)
    dense = np.linspace(*interval, 1_000_003)
    sup = np.abs(np.polyval(reference, dense) - np.maximum(dense, 0.0)).max()
    assert act.sup_error == pytest.approx(sup, rel=1e-3)


def test_polyrelu_sup_error_shrinks_with_degree_and_buffer_follows_dtype() -> None:
    errors = [models.PolyReLU(d).sup_error for d in (2, 4, 10, 20)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.05
    act = models.PolyReLU(10)
    assert "coef" in dict(act.named_buffers()) and not list(act.parameters())
    assert act.double()(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("spec", ["tanh", "Relu", "polynomial"])
def test_unknown_activation(spec: str) -> None:
    with pytest.raises(UnknownNameError, match="unknown activation"):
        models.build("mlp", (4,), 2, activation=spec)


@pytest.mark.parametrize("spec", ["poly:", "poly:x", "poly:0", "poly:3:-1", "poly:3:1:2"])
def test_malformed_poly_activation(spec: str) -> None:
    with pytest.raises(ConfigError, match="bad activation"):
        models.build("mlp", (4,), 2, activation=spec)


def test_uniform_init_bounds() -> None:
    v = 2.0
    for net in (
        models.build("mlp", (40,), 3, widths=[300, 200], init=f"uniform:{v}", seed=1),
        models.build("allconv5", (3, 8, 8), 3, width=32, init=f"uniform:{v}", seed=1),
    ):
        layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        assert layers
        for layer in layers:
            fan_in = layer.weight.shape[1] * math.prod(layer.weight.shape[2:])
            bound = v / math.sqrt(fan_in)
            assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
            assert layer.bias.abs().max() <= bound
            # a uniform law on [-b, b] has std b / sqrt(3)
            assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    default = models.build("mlp", (40,), 3, widths=[300], seed=1)
    assert default.fc1.weight.abs().max() <= 1 / math.sqrt(40)  # PyTorch's default bound, kept by "default"


@pytest.mark.parametrize("spec", ["uniform:", "uniform:-1", "uniform:x", "uniform:inf", "normal:1", "xavier"])
def test_bad_init(spec: str) -> None:
    with pytest.raises(ConfigError):
        models.build("mlp", (4,), 2, init=spec)


def test_seed_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = models.build("theory2-cnn", (3, 8, 8), 10, seed=3, init="uniform:1")
    b = models.build("theory2-cnn", (3, 8, 8), 10, seed=3, init="uniform:1")
    assert torch.equal(torch.get_rng_state(), state)
    c = models.build("theory2-cnn", (3, 8, 8), 10, seed=4, init="uniform:1")
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        assert not torch.equal(p, r), name


def test_top_layer_names() -> None:
    mlp = models.build("mlp", (4,), 3, widths=[5, 6])
    assert models.top_layer_names(mlp) == ["out.weight", "out.bias"]
    allcnn = models.build("allcnn", (3, 8, 8), 10)  # ends in conv -> act -> BatchNorm: the BN is skipped
    names = models.top_layer_names(allcnn)
    params = dict(allcnn.named_parameters())
    assert all(n in params for n in names) and params[names[0]].shape == (10, 192, 1, 1)
    custom = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 2, bias=False), nn.BatchNorm1d(2)))
    assert models.top_layer_names(custom) == ["1.0.weight"]
    with pytest.raises(ConfigError):
        models.top_layer_names(nn.ReLU())


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("vgg16", (3, 32, 32), 10), {}, UnknownNameError, "unknown model"),
        (("mlp", (4,), 2), {"depth": 3}, ConfigError, "depth"),
        (("mlp", (4,), 2), {"widths": [3, 0]}, ConfigError, "widths"),
        (("mlp", (4,), 2), {"dropout": 1.0}, ConfigError, "dropout"),
        (("mlp", (0, 4), 2), {}, ConfigError, "input_shape"),
        (("mlp", (4,), 0), {}, ConfigError, "num_classes"),
        (("wu-fnn", (784,), 10), {"widths": [5]}, ConfigError, "widths"),
        (("allcnn", (3, 32, 32), 10), {"widths": [8, 16, 32]}, ConfigError, "two channel counts"),
        (("mlp", (4,), 2), {"seed": 1.5}, ConfigError, "seed"),
        (("resnet", (3, 32, 32), 10), {"depth": 15}, ConfigError, "6n"),
    ],
)
def test_build_errors(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        models.build(*args, **kwargs)
