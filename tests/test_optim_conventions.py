"""PyTorch conventions of every ``fm.optim`` optimizer: frozen parameters are skipped, ``state_dict`` holds
everything a bit-for-bit resume needs (noise generator included, with and without the noise thread), a
closure without gradients is an error, and hyper-parameters live in ``param_groups``."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from flatminima.errors import ConfigError
from flatminima.optim import EntropySGD, Parle, _common, available, make

from .test_optim_reductions import Stream, _model
from .test_optim_reductions import step_once as _step

# Small settings with noise wherever the optimizer has noise (seed= so that the noise thread may be used).
NOISY: dict[str, dict] = {
    "sgdl": dict(lr=0.05, noise=0.05, seed=3),
    "sgld": dict(lr=0.05, temperature=1e-2, seed=3),
    "entropy-sgd": dict(lr=0.5, L=3, inner_lr=0.05, gamma=1.0, scoping=0.1, temperature=1e-2, seed=3),
    "entropy-adam": dict(lr=0.01, L=3, inner_lr=0.05, gamma=1.0, temperature=1e-2, seed=3),
    "hj-sgd": dict(lr=0.5, L=3, inner_lr=0.05, gamma=1.0, momentum=0.5),
    "heat-sgd": dict(lr=0.1, L=3, gamma=1e-2, seed=3),
    "trivialized-sgd": dict(lr=0.05, J=0.1, tau0=5.0, seed=3),
    "parle": dict(lr=0.1, n_replicas=2, L=2, gamma=2.0, rho=0.5, temperature=1e-2, momentum=0.5, seed=3),
    "elastic-sgd": dict(lr=0.1, n_replicas=2, rho=0.5, momentum=0.5),
}
# those that draw noise at every step (trivialized-sgd draws its field once, into the optimizer state)
DRAWS_EVERY_STEP = ("sgdl", "sgld", "entropy-sgd", "entropy-adam", "heat-sgd", "parle")


def test_every_optimizer_is_covered() -> None:
    assert set(NOISY) == set(available())


@pytest.fixture(params=["thread", "inline"])
def noise_thread(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with the noise thread (pretending spare cores) and with FLATMINIMA_NOISE_THREAD=0."""
    monkeypatch.setattr(_common.os, "cpu_count", lambda: 4)
    monkeypatch.setenv("FLATMINIMA_NOISE_THREAD", "1" if request.param == "thread" else "0")
    return request.param


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _roundtrip(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True), as a checkpoint file would."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", sorted(NOISY))
def test_resume_is_bit_for_bit(name: str, noise_thread: str) -> None:
    """save -> load into a fresh optimizer built with a DIFFERENT seed -> resume == uninterrupted run."""
    model = _model()
    stream = Stream(model)
    opt = make(name, model.parameters(), **NOISY[name])
    for _ in range(4):
        _step(opt, stream)
    saved = (copy.deepcopy(model.state_dict()), _roundtrip(opt.state_dict()), stream.k)
    for _ in range(5):
        _step(opt, stream)
    straight = _params(model)

    model.load_state_dict(saved[0])
    other_seed = {**NOISY[name], "seed": 99} if "seed" in NOISY[name] else NOISY[name]
    resumed = make(name, model.parameters(), **other_seed)
    resumed.load_state_dict(saved[1])
    stream.k = saved[2]
    for _ in range(5):
        _step(resumed, stream)
    assert all(torch.equal(a, b) for a, b in zip(straight, model.parameters(), strict=True))

    # without the saved generator state the fresh seed's noise would differ: the test can fail
    if name in DRAWS_EVERY_STEP:
        model.load_state_dict(saved[0])
        fresh = make(name, model.parameters(), **other_seed)
        without = {k: v for k, v in saved[1].items() if k != "noise_generator"}
        fresh.load_state_dict(without)
        stream.k = saved[2]
        for _ in range(5):
            _step(fresh, stream)
        assert any(not torch.equal(a, b) for a, b in zip(straight, model.parameters(), strict=True))


def test_loaded_generator_state_wins_over_no_generator() -> None:
    """An optimizer built without seed= (global generator) that loads a seeded one's state draws the same."""
    model = _model()
    stream = Stream(model)
    opt = make("sgld", model.parameters(), **NOISY["sgld"])
    _step(opt, stream)
    saved = (copy.deepcopy(model.state_dict()), opt.state_dict(), stream.k)
    _step(opt, stream)
    straight = _params(model)
    model.load_state_dict(saved[0])
    resumed = make("sgld", model.parameters(), lr=0.05, temperature=1e-2)  # no seed
    assert resumed.generator is None and "noise_generator" not in resumed.state_dict()
    resumed.load_state_dict(saved[1])
    stream.k = saved[2]
    _step(resumed, stream)
    assert all(torch.equal(a, b) for a, b in zip(straight, model.parameters(), strict=True))


def test_corrupt_generator_entry_is_a_config_error() -> None:
    x = torch.zeros(3, requires_grad=True)
    opt = EntropySGD([x], seed=0)
    sd = opt.state_dict()
    sd["noise_generator"] = {"state": torch.zeros(3, dtype=torch.uint8), "device": "cpu"}
    with pytest.raises(ConfigError, match="noise_generator"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("name", ["entropy-sgd", "heat-sgd", "parle"])
def test_a_failed_step_is_undone_and_can_be_retried(name: str, noise_thread: str) -> None:
    """A closure that fails in the middle of the inner loop (with the noise thread one draw ahead, or not):
    parameters and generator are as before the step, and retrying it continues like an uninterrupted run."""

    def run(fail: bool) -> list[torch.Tensor]:
        model = _model()
        stream = Stream(model)
        opt = make(name, model.parameters(), **NOISY[name])
        opt.step(stream)
        if fail:
            before, state, k = _params(model), opt.state_dict()["noise_generator"]["state"], stream.k

            def failing() -> torch.Tensor:
                if stream.k == k + 2:  # the third closure call of the second step
                    raise RuntimeError("data loader died")
                return stream()

            with pytest.raises(RuntimeError, match="loader"):
                opt.step(failing)
            assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
            assert torch.equal(opt.state_dict()["noise_generator"]["state"], state)
            assert opt.t == 1
            stream.k = k
        opt.step(stream)
        return _params(model)

    assert all(torch.equal(a, b) for a, b in zip(run(False), run(True), strict=True))


@pytest.mark.parametrize("name", sorted(NOISY))
def test_frozen_parameters_are_not_moved(name: str) -> None:
    model = _model()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    start = _params(model)
    opt = make(name, model.parameters(), **NOISY[name])
    stream = Stream(model)
    for _ in range(3):
        _step(opt, stream)
    assert torch.equal(model[0].weight, frozen)
    assert model[0].weight.grad is None
    moved = [not torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True)]
    assert moved == [False, True, True, True]


def test_all_frozen_is_a_config_error() -> None:
    model = _model().requires_grad_(False)
    opt = EntropySGD(model.parameters(), L=2)
    with pytest.raises(ConfigError, match="requires_grad"):
        opt.step(Stream(model))


@pytest.mark.parametrize("name", sorted(NOISY))
def test_closure_without_gradient_is_an_error(name: str) -> None:
    model = _model()
    x = torch.randn(5, 5, dtype=torch.float64)

    def no_backward() -> torch.Tensor:
        return model(x).pow(2).mean()  # forgot loss.backward()

    opt = make(name, model.parameters(), **NOISY[name])
    before = _params(model)
    with pytest.raises(ConfigError, match="no gradient"):
        opt.step(no_backward)
    if getattr(opt, "needs_closure", False):  # the first inner call fails, before anything moves
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# (name, key, new value): a hyper-parameter in param_groups whose change must change the next step
GROUP_KEYS = [
    ("sgdl", "noise", 0.2),
    ("sgld", "temperature", 0.5),
    ("entropy-sgd", "inner_lr", 0.01),
    ("entropy-sgd", "gamma", 0.1),
    ("entropy-sgd", "L", 5),
    ("entropy-sgd", "temperature", 0.5),
    ("entropy-sgd", "alpha", 0.75),
    ("entropy-adam", "temperature", 0.5),
    ("hj-sgd", "gamma", 0.1),
    ("heat-sgd", "gamma", 0.5),
    ("heat-sgd", "L", 5),
    ("trivialized-sgd", "J", 1.0),
    ("trivialized-sgd", "tau0", 0.5),
    ("parle", "rho", 0.1),
    ("parle", "inner_lr", 0.01),
    ("parle", "temperature", 0.5),
    ("elastic-sgd", "rho", 0.1),
]


@pytest.mark.parametrize(("name", "key", "value"), GROUP_KEYS, ids=[f"{n}-{k}" for n, k, _ in GROUP_KEYS])
def test_changing_a_group_value_changes_the_next_step(name: str, key: str, value: float) -> None:
    def run(change: bool) -> list[torch.Tensor]:
        model = _model()
        opt = make(name, model.parameters(), **NOISY[name])
        stream = Stream(model)
        _step(opt, stream)
        assert key in opt.param_groups[0]
        if change:
            for group in opt.param_groups:
                group[key] = value
        _step(opt, stream)
        return _params(model)

    first, second, changed = run(False), run(False), run(True)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # deterministic
    assert any(not torch.equal(a, b) for a, b in zip(first, changed, strict=True))


def test_temperature_in_a_group_sets_the_noise_exactly() -> None:
    """SGLD with a zero gradient: the move is exactly sqrt(2 lr T) N, N the seeded standard draw."""
    x = torch.zeros(2000, dtype=torch.float64, requires_grad=True)
    opt = make("sgld", [x], lr=0.1, temperature=1.0, seed=0)
    opt.param_groups[0]["temperature"] = 0.02
    x.grad = torch.zeros_like(x)
    opt.step()
    n = torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(x.detach(), math.sqrt(2 * 0.1 * 0.02) * n, rtol=0, atol=1e-15)


def test_lr_scheduler_drives_the_outer_and_a_lambda_the_inner_values() -> None:
    """torch's LambdaLR changes group["lr"]; other keys are set the same way by user code (torch's schedulers
    only know "lr"). The scope set in the group is what the next step uses."""
    model = _model()
    opt = EntropySGD(model.parameters(), lr=1.0, L=2, gamma=4.0, scoping=0.5, gamma_min=0.1, temperature=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    stream = Stream(model)
    gammas, lrs = [], []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        gammas.append(opt.gamma)
        opt.step(stream)
        sched.step()
    assert lrs == pytest.approx([1.0, 0.5, 0.25])
    assert gammas == pytest.approx([4.0, 2.0, 1.0])  # scoping: gamma <- gamma (1 - 0.5)
    opt.param_groups[0]["gamma"] = 0.01  # below gamma_min: clipped where it is used
    assert opt.gamma == 0.1
    opt.step(stream)
    assert opt.param_groups[0]["gamma"] == 0.1


def test_per_group_values_act_on_their_group_only() -> None:
    """Separable loss, noise only in the second group: the first group's iterates equal a noiseless run's
    bit for bit, the second group's differ."""

    def run(t2: float) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.ones(4, dtype=torch.float64, requires_grad=True)
        b = torch.ones(4, dtype=torch.float64, requires_grad=True)
        groups = [{"params": [a], "temperature": 0.0}, {"params": [b], "temperature": t2}]
        opt = EntropySGD(groups, lr=0.5, L=3, inner_lr=0.05, gamma=1.0, seed=0)

        def closure() -> torch.Tensor:
            loss = (a - 2.0).pow(2).sum() + (b + 1.0).pow(2).sum()
            loss.backward()
            return loss

        for _ in range(2):
            opt.step(closure)
        return a.detach(), b.detach()

    (a0, b0), (a1, b1) = run(0.0), run(1e-2)
    assert torch.equal(a0, a1)
    assert not torch.equal(b0, b1)


def test_per_group_inner_lr_matches_separate_closed_form() -> None:
    """Quadratic f = |x|^2 / 2 + |y|^2 / 2 (separable), no noise, no coupling, alpha = 0, L = 1: each group
    takes y <- (1 - eta) y in the inner step and the outer step x <- x - lr (x - y) = x (1 - lr eta)."""
    a = torch.ones(3, dtype=torch.float64, requires_grad=True)
    b = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = EntropySGD(
        [{"params": [a], "inner_lr": 0.1}, {"params": [b], "inner_lr": 0.3}],
        lr=0.5, L=1, coupling=0.0, alpha=0.0, temperature=0.0,
    )  # fmt: skip

    def closure() -> torch.Tensor:
        loss = 0.5 * (a.pow(2).sum() + b.pow(2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.allclose(
        a.detach(), torch.full((3,), 1 - 0.5 * 0.1, dtype=torch.float64), rtol=0, atol=1e-15
    )
    assert torch.allclose(
        b.detach(), torch.full((2,), 1 - 0.5 * 0.3, dtype=torch.float64), rtol=0, atol=1e-15
    )


def test_L_must_agree_across_groups() -> None:
    model = _model()
    opt = EntropySGD([{"params": model[0].parameters(), "L": 2}, {"params": model[2].parameters()}], L=3)
    with pytest.raises(ConfigError, match="same in every param group"):
        opt.step(Stream(model))
    parle = Parle([{"params": model[0].parameters(), "L": 2}, {"params": model[2].parameters()}], L=3)
    with pytest.raises(ConfigError, match="same in every param group"):
        parle.step(Stream(model))


def test_bad_value_edited_into_a_group_is_a_config_error() -> None:
    model = _model()
    opt = EntropySGD(model.parameters(), L=2)
    opt.param_groups[0]["temperature"] = -1.0
    with pytest.raises(ConfigError, match="temperature"):
        opt.step(Stream(model))
