"""Special cases (thesis Sec. 5.3.1, Sec. 3.2.2): identical iterates under the same minibatch stream and seed.

Parle -> SGD (L = 1, n = 1, gamma = rho = inf), Elastic-SGD (L = 1, gamma = inf), Entropy-SGD (n = 1,
rho = inf); Entropy-SGD (L = 1, no coupling, alpha = 0) -> SGD with Nesterov momentum; Entropy-Adam -> Adam.
Elastic-SGD itself against a hand-written eq. 5.4 on quadratics.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flatminima.errors import ConfigError
from flatminima.optim import ElasticSGD, EntropyAdam, EntropySGD, Parle, VmapReplicaClosure

INF = math.inf


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


class Stream:
    """A minibatch stream: call k draws batch k of a fixed seeded sequence (fresh batch on every call)."""

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(400, 5, generator=g, dtype=torch.float64)
        self.y = torch.randn(400, 3, generator=g, dtype=torch.float64)
        self.model, self.k = model, 0

    def __call__(self) -> torch.Tensor:
        i = (self.k * 8) % 400
        self.k += 1
        loss = nn.functional.mse_loss(self.model(self.x[i : i + 8]), self.y[i : i + 8])
        loss.backward()
        return loss


def step_once(opt: torch.optim.Optimizer, stream: Stream) -> None:
    """One step: ``step(closure)`` for optimizers that need one, else backward then ``step()``."""
    if getattr(opt, "needs_closure", False):
        opt.step(stream)
    else:
        opt.zero_grad()
        stream()
        opt.step()


def _run(make_opt, steps: int = 6) -> list[torch.Tensor]:
    model = _model()
    opt = make_opt(model.parameters())
    stream = Stream(model)
    for _ in range(steps):
        step_once(opt, stream)
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(u, v, rtol=0, atol=1e-12) for u, v in zip(a, b, strict=True))


def test_parle_reduces_to_sgd() -> None:
    alpha, inner_lr, lr = 0.25, 0.2, 0.5
    parle = _run(
        lambda p: Parle(p, lr=lr, n_replicas=1, L=1, inner_lr=inner_lr, alpha=alpha, gamma=INF, rho=INF)
    )
    sgd = _run(lambda p: torch.optim.SGD(p, lr=lr * (1 - alpha) * inner_lr))
    assert _same(parle, sgd)


def test_parle_reduces_to_elastic_sgd() -> None:
    kw = dict(lr=0.3, n_replicas=3, rho=0.5, scoping=0.05, momentum=0.9)
    parle = _run(lambda p: Parle(p, L=1, gamma=INF, alpha=0.0, inner_lr=1.0, **kw))
    elastic = _run(lambda p: ElasticSGD(p, **kw))
    assert _same(parle, elastic)
    assert not _same(parle, _run(lambda p: ElasticSGD(p, **{**kw, "rho": 5.0})))


@pytest.mark.parametrize("temperature", [0.0, 1e-3])
def test_parle_reduces_to_entropy_sgd(temperature: float) -> None:
    kw = dict(
        lr=0.7,
        L=4,
        inner_lr=0.1,
        alpha=0.25,
        gamma=2.0,
        scoping=0.1,
        momentum=0.9,
        inner_momentum=0.5,
        temperature=temperature,
        seed=3,
    )
    parle = _run(lambda p: Parle(p, n_replicas=1, rho=INF, gamma_min=0.0, **kw))
    entropy = _run(lambda p: EntropySGD(p, gamma_min=0.0, scale_by_gamma=False, **kw))
    assert _same(parle, entropy)


def test_entropy_sgd_reduces_to_nesterov_sgd() -> None:
    kw = dict(L=1, coupling=0.0, alpha=0.0, temperature=0.0, inner_lr=0.05)
    entropy = _run(lambda p: EntropySGD(p, lr=1.0, momentum=0.9, **kw))
    sgd = _run(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True))
    assert _same(entropy, sgd)


def test_entropy_adam_reduces_to_adam() -> None:
    kw = dict(L=1, coupling=0.0, alpha=0.0, temperature=0.0, inner_lr=1.0)
    ours = _run(lambda p: EntropyAdam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, **kw))
    adam = _run(lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-6))
    assert _same(ours, adam)


def test_elastic_sgd_matches_hand_written_eq_5_4() -> None:
    """Per-replica quadratics f_a(x) = (x - c_a)^2 / 2 through closure(replica=a) (per-replica data splits):
    x^a <- x^a - lr [(x^a - c_a) + (x^a - x) / rho]; x <- mean_a x^a."""
    c = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    seen: list[int] = []

    def closure(replica: int) -> torch.Tensor:
        seen.append(replica)
        loss = 0.5 * (x - c[replica]).pow(2).sum()
        loss.backward()
        return loss

    lr, rho = 0.2, 0.5
    opt = ElasticSGD([x], lr=lr, n_replicas=3, rho=rho, batches_per_epoch=5)
    xa, ref = torch.zeros(3, dtype=torch.float64), 0.0
    for k in range(5):
        r = rho * (1 - 1 / 10) ** k
        xa = xa - lr * ((xa - c) + (xa - ref) / r)
        ref = float(xa.mean())
        opt.step(closure)
        assert float(x.detach()) == pytest.approx(ref, abs=1e-12)
        assert torch.allclose(opt.replicas()[0].view(-1), xa, atol=1e-12)
    assert seen == [0, 1, 2] * 5
    for _ in range(60):
        opt.step(closure)
    assert float(x.detach()) == pytest.approx(float(c.mean()), abs=1e-6)  # fixed point: x = mean_a c_a


def test_parle_scoping_eq_5_10_with_clipping() -> None:
    x = torch.zeros(2, requires_grad=True)
    opt = Parle([x], L=2, n_replicas=2, gamma=100.0, rho=1.0, batches_per_epoch=4)
    factor = 1 - 1 / 8

    def closure() -> torch.Tensor:
        loss = (x - 1).pow(2).sum()
        loss.backward()
        return loss

    for k in range(3):
        assert opt.gamma == pytest.approx(100.0 * factor**k)
        assert opt.rho == pytest.approx(factor**k)
        opt.step(closure)
    for _ in range(40):
        opt.step(closure)
    assert 100.0 * factor**43 < 1.0 and opt.gamma == 1.0 and opt.rho == 0.1  # clipped at 1 and 0.1
    assert opt.replicas()[0].shape == (2, 2)
    with pytest.raises(ConfigError):
        Parle([x], scoping=0.1, batches_per_epoch=3)
    with pytest.raises(ConfigError):
        Parle([x], n_replicas=0)


@pytest.mark.parametrize("kind", ["parle", "elastic"])
def test_vectorized_replicas_match_sequential(kind: str) -> None:
    """VmapReplicaClosure (all replicas in one vmap call) gives the same iterates as the sequential path
    with per-replica closures, when replica a sees the same batches in both."""
    n = 3
    data = Stream(_model(), seed=5)

    def batch(a: int, count: int) -> slice:
        i = ((count * n + a) * 8) % 400
        return slice(i, i + 8)

    kw = dict(lr=0.3, n_replicas=n, rho=0.5, momentum=0.9)
    make = (
        (lambda p: Parle(p, L=3, gamma=2.0, inner_lr=0.1, alpha=0.25, inner_momentum=0.5, **kw))
        if kind == "parle"
        else (lambda p: ElasticSGD(p, **kw))
    )
    seq_model, vec_model = _model(), _model()
    seq_opt, vec_opt = make(seq_model.parameters()), make(vec_model.parameters())
    counts = [0] * n

    def closure(replica: int) -> torch.Tensor:
        s = batch(replica, counts[replica])
        counts[replica] += 1
        loss = nn.functional.mse_loss(seq_model(data.x[s]), data.y[s])
        loss.backward()
        return loss

    step = [0]

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        idx = [batch(a, step[0]) for a in range(n)]
        step[0] += 1
        return torch.stack([data.x[s] for s in idx]), torch.stack([data.y[s] for s in idx])

    vec = VmapReplicaClosure(vec_model, nn.functional.mse_loss, sample)
    for _ in range(4):
        seq_opt.step(closure)
        vec_opt.step(vec)
    assert _same(list(seq_model.parameters()), list(vec_model.parameters()))
    assert _same(seq_opt.replicas(), vec_opt.replicas())
