"""Smoke training runs on sklearn's digits: every registered optimizer lowers the training loss."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from flatminima.optim import available, make

KWARGS: dict[str, dict] = {
    "sgdl": dict(lr=0.1, noise=1e-3, seed=0),
    "sgld": dict(lr=0.1, temperature=1e-6, seed=0),
    "entropy-sgd": dict(lr=1.0, L=5, inner_lr=0.1, gamma=1.0, scoping=1e-3, seed=0),
    "entropy-adam": dict(lr=1e-2, L=5, inner_lr=0.1, gamma=1.0, seed=0),
    "hj-sgd": dict(lr=1.0, L=5, inner_lr=0.1, gamma=1.0),
    "heat-sgd": dict(lr=0.5, L=5, gamma=1e-4, seed=0),
    "trivialized-sgd": dict(lr=0.1, J=1e-3, tau0=20.0, seed=0),
    "parle": dict(
        lr=0.1,
        inner_lr=0.1,
        momentum=0.9,
        inner_momentum=0.9,
        n_replicas=2,
        L=5,
        gamma=10.0,
        rho=1.0,
        batches_per_epoch=10,
    ),
    "elastic-sgd": dict(lr=0.1, n_replicas=2, rho=1.0, momentum=0.9),
    "sam": dict(lr=0.1, rho=0.05, momentum=0.9),
    "asam": dict(lr=0.1, rho=0.5, momentum=0.9),
}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def test_every_name_has_smoke_settings() -> None:
    assert set(KWARGS) == set(available())


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_smoke_training_on_digits(name: str, digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = make(name, model.parameters(), **KWARGS[name])
    g = torch.Generator().manual_seed(1)

    same = getattr(opt, "closure_same_batch", False)  # SAM: every call of a step on one minibatch
    drawn: list[torch.Tensor] = []

    def closure() -> torch.Tensor:  # a fresh minibatch on every call (or every step)
        idx = drawn[0] if same and drawn else torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        return loss

    def full_loss() -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(x), y))

    start = full_loss()
    budget = 300  # gradient evaluations
    per_step = KWARGS[name].get("L", 20 if name == "heat-sgd" else 2 if same else 1)
    per_step *= KWARGS[name].get("n_replicas", 1)
    for _ in range(budget // per_step):
        drawn[:] = [torch.randint(0, len(x), (64,), generator=g)] if same else []
        if opt.needs_closure:
            opt.step(closure)
        else:
            opt.zero_grad()
            closure()
            opt.step()
    end = full_loss()
    assert end < 0.6 * start, (start, end)
