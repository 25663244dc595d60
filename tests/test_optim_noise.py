"""Thermal noise drawn ahead in a background thread: bit-identical to drawing it synchronously."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatminima.optim import EntropyAdam, EntropySGD, HeatSGD, Parle, _common
from flatminima.optim._common import GaussianNoise, scale_shift_

from .test_optim_reductions import _model, _run


@pytest.fixture
def cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to have spare cores, so the ahead path runs even on a one-core machine."""
    monkeypatch.setattr(_common.os, "cpu_count", lambda: 4)
    monkeypatch.delenv("FLATMINIMA_NOISE_THREAD", raising=False)


def _tensors() -> list[torch.Tensor]:
    return [torch.zeros(3, 4), torch.zeros(7), torch.zeros(2, 2, 2)]


def _draws(ahead: int, k: int, then=None) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    ts = _tensors()
    with GaussianNoise(ts, g, ahead=ahead, then=then) as noise:
        assert (noise._future is not None) == (ahead > 1)
        out = [[t.clone() for t in noise.next()] for _ in range(k)]
    return out, g.get_state()


@pytest.mark.usefixtures("cores")
@pytest.mark.parametrize("with_then", [False, True])
def test_ahead_draws_equal_synchronous_draws(with_then: bool) -> None:
    shift = [torch.full_like(t, 2.0) for t in _tensors()]
    then = (lambda n: scale_shift_(n, 0.5, shift)) if with_then else None
    sync, state_sync = _draws(0, 6, then)
    ahead, state_ahead = _draws(6, 6, then)
    for a, b in zip(sync, ahead, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert torch.equal(state_sync, state_ahead)  # exactly the announced draws, nothing more
    assert not torch.equal(sync[0][0], sync[1][0])  # fresh noise every step
    if with_then:
        assert abs(float(torch.cat([t.flatten() for t in sync[0]]).mean()) - 2.0) < 0.5


@pytest.mark.usefixtures("cores")
def test_early_stop_gives_back_the_draw_in_flight() -> None:
    """A loop that stops early leaves the generator as if only the draws handed out had been made (the one
    drawn ahead is given back), so a state_dict saved afterwards resumes exactly."""
    sync, state_one = _draws(0, 1)
    g = torch.Generator().manual_seed(11)
    noise = GaussianNoise(_tensors(), g, ahead=5)
    first = [t.clone() for t in noise.next()]
    noise.close()  # one draw consumed, the second was in flight: finished, then given back
    assert noise._future is None
    assert torch.equal(g.get_state(), state_one)
    assert all(torch.equal(a, b) for a, b in zip(first, sync[0], strict=True))
    with GaussianNoise(_tensors(), g, ahead=3) as again:  # continues with the second draw of a plain run
        second = again.next()
    sync_two, _ = _draws(0, 2)
    assert all(torch.equal(a, b) for a, b in zip(second, sync_two[1], strict=True))


@pytest.mark.usefixtures("cores")
def test_more_draws_than_announced_fall_back_in_order() -> None:
    sync, _ = _draws(0, 4)
    g = torch.Generator().manual_seed(11)
    with GaussianNoise(_tensors(), g, ahead=2) as noise:
        got = [[t.clone() for t in noise.next()] for _ in range(4)]
    assert all(torch.equal(u, v) for a, b in zip(sync, got, strict=True) for u, v in zip(a, b, strict=True))


def test_ahead_needs_an_own_generator_and_spare_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common.os, "cpu_count", lambda: 4)
    x = [torch.zeros(3, requires_grad=True)]
    assert EntropySGD(x, seed=0).noise_ahead
    assert not EntropySGD(x, generator=torch.Generator()).noise_ahead  # the caller may share it
    assert not EntropySGD(x).noise_ahead  # global generator: the closure may draw from it too
    monkeypatch.setenv("FLATMINIMA_NOISE_THREAD", "0")
    assert not EntropySGD(x, seed=0).noise_ahead
    monkeypatch.delenv("FLATMINIMA_NOISE_THREAD")
    monkeypatch.setattr(_common.os, "cpu_count", lambda: 1)
    assert not EntropySGD(x, seed=0).noise_ahead


@pytest.mark.parametrize(
    "make",
    [
        lambda p: EntropySGD(p, L=5, inner_lr=0.1, gamma=1.0, temperature=1e-3, seed=2),  # noise folded
        lambda p: EntropySGD(p, L=5, inner_lr=0.1, gamma=1.0, temperature=1e-3, inner_momentum=0.5, seed=2),
        lambda p: EntropySGD(p, L=5, inner_lr=0.1, coupling=0.0, temperature=1e-3, seed=2),  # no pull
        lambda p: EntropyAdam(p, L=4, inner_lr=0.1, gamma=1.0, temperature=1e-3, seed=2),
        lambda p: HeatSGD(p, L=4, gamma=1e-2, seed=2),
        lambda p: Parle(p, n_replicas=2, L=3, temperature=1e-3, seed=2),
    ],
    ids=["entropy-sgd", "entropy-sgd-momentum", "entropy-sgd-free", "entropy-adam", "heat-sgd", "parle"],
)
def test_optimizers_give_identical_iterates_with_and_without_the_noise_thread(
    make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_common.os, "cpu_count", lambda: 4)
    monkeypatch.setenv("FLATMINIMA_NOISE_THREAD", "0")
    sync = _run(make)
    monkeypatch.setenv("FLATMINIMA_NOISE_THREAD", "1")
    ahead = _run(make)
    assert all(torch.equal(a, b) for a, b in zip(sync, ahead, strict=True))
    start = [p.detach() for p in _model().parameters()]
    assert any(not torch.equal(a, s) for a, s in zip(ahead, start, strict=True))  # it moved


def test_folded_noise_is_the_sgld_step() -> None:
    """lerp(y, x + (s / w) n, w) - eta g == y + w (x - y) - eta g + s n: Alg. 2 line 4 (float64)."""
    g = torch.Generator().manual_seed(0)
    y, x, n, grad = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(4))
    w, s, eta = 0.01, 3e-3, 0.1
    e = [n.clone()]
    scale_shift_(e, s / w, [x])
    folded = torch.lerp(y, e[0], w) - eta * grad
    assert torch.allclose(folded, y + w * (x - y) - eta * grad + s * n, rtol=0, atol=1e-15)


def test_scale_shift_other_dtypes_use_torch() -> None:
    n = [torch.ones(4, dtype=torch.bfloat16), torch.ones(3)]
    scale_shift_(n, 2.0, [torch.ones(4, dtype=torch.bfloat16), torch.full((3,), 0.5)])
    assert n[0].dtype == torch.bfloat16 and torch.equal(n[0].float(), torch.full((4,), 3.0))
    assert torch.equal(n[1], torch.full((3,), 2.5))


def test_noise_thread_not_used_for_a_model_without_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_WORKER", None)
    model = nn.Linear(3, 1)
    opt = EntropySGD(model.parameters(), L=3, temperature=0.0, seed=0)
    x = torch.randn(8, 3)

    def closure() -> torch.Tensor:
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert _common._WORKER is None  # temperature 0: nothing drawn, no thread started
