"""Shared benchmark fixture: a wu-fnn minimum (784-500-500-500-10 ReLU, 898,510 parameters) on n = 1000.

Data ("teacher"): inputs uniform in [0, 1]^784 (pixel-like), labels argmax of a random linear teacher applied
to the centred inputs (balanced classes), one-hot targets, MSE loss as in Wu, Ma & E 2018 (Sec. 4). Training:
Adam (lr 1e-3, full batch) until the MSE is below 1e-4 (Wu's threshold; ~150 steps), then 200 steps of plain
GD with lr = 1 / sharpness (stable: below 2/sharpness), so the point is a GD-polished minimum (loss keeps
falling). Weights are cached under ``benchmarks/.cache/`` (git-ignored); the first call trains (~1-2 minutes
on 2 CPU cores), later calls load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flatminima import Objective
from flatminima.curvature import sharpness

CACHE = Path(__file__).resolve().parent / ".cache"
N, DIM, K = 1000, 784, 10


def wu_fnn() -> nn.Sequential:
    """784-500-500-500-10 ReLU (Wu, Ma & E 2018, Sec. 4)."""
    return nn.Sequential(
        nn.Linear(DIM, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(),
        nn.Linear(500, K),
    )  # fmt: skip


def teacher_data(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs in [0, 1]^784 and one-hot labels of a random linear teacher."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, DIM, generator=g)
    w = torch.randn(DIM, K, generator=g)
    labels = ((x - 0.5) @ w).argmax(1)
    return x, nn.functional.one_hot(labels, K).float()


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, log) -> dict:
    loss_fn = nn.MSELoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 0
    while True:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        if loss.item() < 1e-4 or steps >= 3000:
            break
        loss.backward()
        opt.step()
        steps += 1
    log(f"  adam: {steps} steps, loss {loss.item():.2e}")
    a = sharpness(Objective(model, x=x, y=y), tol=1e-3).value
    lr = 1.0 / a
    gd = torch.optim.SGD(model.parameters(), lr=lr)
    gd_steps = 200
    for _ in range(gd_steps):
        gd.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        gd.step()
    loss = loss_fn(model(x), y)
    log(f"  gd: lr {lr:.3g} (1/sharpness {a:.3g}), {gd_steps} steps, loss {loss.item():.2e}")
    return {"adam_steps": steps, "gd_steps": gd_steps, "gd_lr": lr, "loss": loss.item()}


def wu_fnn_minimum(seed: int = 0, log=print) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The trained wu-fnn (float32, eval mode) and its data (x [1000, 784], one-hot y [1000, 10])."""
    torch.manual_seed(seed)
    x, y = teacher_data(N, seed)
    model = wu_fnn()
    path = CACHE / f"wu_fnn_teacher_n{N}_seed{seed}_v2.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        start = time.perf_counter()
        log(f"training the wu-fnn fixture (cached at {path}) ...")
        _train(model, x, y, log)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
        log(f"  trained in {time.perf_counter() - start:.0f} s")
    return model.eval(), x, y


def time_hvp(obj: Objective, repeats: int = 5) -> float:
    """Seconds of one full-data Hessian-vector product (cached graph, after a warm-up)."""
    v = torch.randn(obj.num_params, generator=torch.Generator().manual_seed(1))
    obj.hvp(v)
    start = time.perf_counter()
    for _ in range(repeats):
        obj.hvp(v)
    return (time.perf_counter() - start) / repeats


def interleaved(
    fns: dict[str, Callable[[], Any]], rounds: int, label: str, show: Callable[[Any], str] = repr
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time every callable in interleaved rounds (a, b, c, a, b, c, ...), printing each timing as it comes;
    returns the seconds per callable and each callable's last result."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    out: dict[str, Any] = {}
    for _ in range(rounds):
        for who, fn in fns.items():
            start = time.perf_counter()
            out[who] = fn()
            times[who].append(time.perf_counter() - start)
            print(f"  {label} {who}: {times[who][-1]:.2f} s, {show(out[who])}", flush=True)
    return times, out
