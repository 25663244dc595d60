"""Losses: torch loss modules handled exactly, scalar callables refused, token-level cross-entropy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima._threads import torch_threads
from flatminima.objective import per_example_loss


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets: one intra-op thread (two spin on OpenMP hand-offs on a busy 2-core machine)."""
    with torch_threads(1):
        yield


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _dense_module_hessian(model: nn.Module, loss: nn.Module, x, y) -> torch.Tensor:
    """Hessian of the torch module's own value on all data, over all parameters (autograd.functional)."""
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(t):
        params = {k: s.view(sh) for k, s, sh in zip(names, torch.split(t, sizes), shapes, strict=True)}
        return loss(torch.func.functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(f, flat)


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize(
    "make",
    [
        lambda y: (nn.MSELoss(), y),
        lambda y: (nn.CrossEntropyLoss(), y.argmax(1)),
        lambda y: (nn.CrossEntropyLoss(label_smoothing=0.1), y.argmax(1)),
        lambda y: (nn.CrossEntropyLoss(), y.softmax(1)),
        lambda y: (nn.BCEWithLogitsLoss(), (y > 0).double()),
        lambda y: (nn.HuberLoss(delta=0.5), y),
        lambda y: (nn.KLDivLoss(reduction="batchmean"), y.softmax(1)),
    ],
    ids=["mse", "ce", "ce-smooth", "ce-soft", "bce", "huber", "kl-batchmean"],
)
def test_torch_loss_modules_are_exact(tiny_mlp, tiny_data, make, chunk_size):
    x, y = tiny_data
    module, targets = make(y)
    model = tiny_mlp
    if isinstance(module, nn.KLDivLoss):
        model = nn.Sequential(tiny_mlp, nn.LogSoftmax(dim=1))
    obj = Objective(model, loss=module, x=x, y=targets, chunk_size=chunk_size)
    ref_value = module(model(x), targets)
    assert obj.value() == pytest.approx(ref_value.item(), rel=1e-12)
    h = _dense_module_hessian(model, module, x, targets)
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert _rel(obj.hvp(v), h @ v) < 1e-10
    assert obj.n == len(x)


def test_known_modules_become_the_builtins():
    assert per_example_loss(nn.MSELoss()) is per_example_loss("mse")
    assert per_example_loss(nn.CrossEntropyLoss()) is per_example_loss("cross_entropy")
    zeros = torch.zeros(3, 2, dtype=torch.float64)
    assert Objective(nn.Linear(2, 2).double(), nn.MSELoss(), zeros, zeros).loss_name == "mse"


def test_cross_entropy_over_positions_matches_module(tiny_data):
    """nn.CrossEntropyLoss on [n, C, T] outputs (nothing ignored) = mean over examples of position means."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 12), nn.Unflatten(1, (3, 4))).double()  # [n, C=3, T=4]
    x, _ = tiny_data
    t = torch.randint(0, 3, (len(x), 4))
    obj = Objective(model, loss=nn.CrossEntropyLoss(), x=x, y=t, chunk_size=4)
    assert obj.value() == pytest.approx(nn.CrossEntropyLoss()(model(x), t).item(), rel=1e-12)
    obj2 = Objective(model, loss="cross_entropy", x=x, y=t)
    assert obj2.value() == pytest.approx(obj.value(), rel=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 10, 3])
def test_scalar_callables_are_refused_with_and_without_chunks(tiny_mlp, tiny_data, chunk_size):
    """A mean-returning lambda would make chunked products wrong by the chunk count: refused up front."""
    x, y = tiny_data
    for bad in (lambda f, t: ((f - t) ** 2).mean(), nn.functional.mse_loss):
        with pytest.raises(ConfigError, match="returned a scalar"):
            Objective(tiny_mlp, loss=bad, x=x, y=y, chunk_size=chunk_size)
    with pytest.raises(ConfigError, match="returned a scalar"):
        Objective(tiny_mlp, data=[(x[:4], y[:4]), (x[4:], y[4:])], loss=lambda f, t: ((f - t) ** 2).mean())


def test_wrong_shaped_callable_and_unsupported_modules(tiny_mlp, tiny_data):
    x, y = tiny_data
    with pytest.raises(ConfigError, match=r"returned shape \(1, 3\) for 1 examples"):
        Objective(tiny_mlp, loss=lambda f, t: (f - t) ** 2, x=x, y=y)
    with pytest.raises(ConfigError, match="reduction='sum'"):
        Objective(tiny_mlp, loss=nn.MSELoss(reduction="sum"), x=x, y=y)
    with pytest.raises(ConfigError, match="class-weighted mean"):
        Objective(tiny_mlp, loss=nn.CrossEntropyLoss(weight=torch.ones(3)), x=x, y=y.argmax(1))
    with pytest.raises(ConfigError, match="loss must be"):
        Objective(tiny_mlp, loss=3, x=x, y=y)  # type: ignore[arg-type]


def test_per_example_callable_still_works(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, loss=lambda f, t: ((f - t) ** 2).sum(1), x=x, y=y, chunk_size=4)
    assert obj.value() == pytest.approx(float(((tiny_mlp(x) - y) ** 2).sum(1).mean().detach()), rel=1e-12)
    assert obj.per_example_grads(x[:2], y[:2]).shape == (2, obj.num_params)


class _TinyLM(nn.Module):
    def __init__(self, vocab: int = 7, dim: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.emb(tokens)))  # [n, T, V]


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_token_cross_entropy_with_and_without_padding(chunk_size):
    torch.manual_seed(5)
    model = _TinyLM().double()
    tokens = torch.randint(0, 7, (5, 6))
    targets = torch.randint(0, 7, (5, 6))
    obj = Objective(model, loss="token_cross_entropy", x=tokens, y=targets, chunk_size=chunk_size)
    logits = model(tokens).detach()
    # No padding: the mean over sequences of token means is the mean over all tokens.
    ref = nn.CrossEntropyLoss()(logits.reshape(-1, 7), targets.reshape(-1))
    assert obj.value() == pytest.approx(ref.item(), rel=1e-12)
    # Padding: each sequence is the mean over its own valid tokens (explicit loop reference).
    padded = targets.clone()
    padded[0, 3:] = -100
    padded[2, 1:] = -100
    padded[4, :] = -100  # no valid token: l_i = 0
    obj = Objective(model, loss="token_cross_entropy", x=tokens, y=padded, chunk_size=chunk_size)
    per_seq = []
    for i in range(5):
        keep = padded[i] != -100
        per_seq.append(nn.functional.cross_entropy(logits[i][keep], padded[i][keep]) if keep.any() else 0.0)
    assert obj.value() == pytest.approx(float(sum(per_seq)) / 5, rel=1e-12)
    h = torch.autograd.functional.hessian(lambda t: obj.losses_fn(t, tokens, padded).mean(), obj.theta)
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert _rel(obj.hvp(v), h @ v) < 1e-10
    assert obj.per_example_grads(tokens[:2], padded[:2]).shape == (2, obj.num_params)
    with pytest.raises(ConfigError, match=r"token_cross_entropy needs outputs \[n, T, V\]"):
        linear = nn.Linear(3, 4).double()
        Objective(linear, "token_cross_entropy", torch.zeros(2, 3).double(), padded[:2])
