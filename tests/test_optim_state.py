"""Checkpoint/resume: the step counter (scoping, noise schedules, annealing), momentum buffers and Parle's
replicas survive ``state_dict`` / ``load_state_dict``, so a resumed run continues exactly."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from flatminima.optim import make


def _closure(model: nn.Module, k: list[int]):
    g = torch.Generator().manual_seed(0)
    xs, ys = (
        torch.randn(64, 4, generator=g, dtype=torch.float64),
        torch.randn(64, 2, generator=g, dtype=torch.float64),
    )

    def closure() -> torch.Tensor:
        i = (k[0] * 4) % 64
        k[0] += 1
        loss = nn.functional.mse_loss(model(xs[i : i + 4]), ys[i : i + 4])
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("entropy-sgd", dict(L=3, gamma=1.0, scoping=0.2, momentum=0.9, temperature=0.0)),
        ("sgdl", dict(lr=0.05, noise=0.0, noise_schedule="1/t")),
        ("trivialized-sgd", dict(lr=0.05, J=0.1, tau0=2.0, seed=0)),
        ("parle", dict(L=2, n_replicas=2, gamma=2.0, rho=0.5, scoping=0.2, momentum=0.9, gamma_min=0.0)),
    ],
)
def test_resume_continues_exactly(name: str, kw: dict) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    opt = make(name, model.parameters(), **kw)
    k = [0]
    closure = _closure(model, k)

    def step(o) -> None:
        if o.needs_closure:
            o.step(closure)
        else:
            o.zero_grad()
            closure()
            o.step()

    for _ in range(3):
        step(opt)
    saved_model, saved_opt, saved_k = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), k[0]
    for _ in range(2):
        step(opt)
    straight = [p.detach().clone() for p in model.parameters()]

    model.load_state_dict(saved_model)
    resumed = make(name, model.parameters(), **kw)
    resumed.load_state_dict(saved_opt)
    assert resumed.t == 3
    k[0] = saved_k
    for _ in range(2):
        step(resumed)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(straight, model.parameters(), strict=True))
