"""Recording weight trajectories during training, and a minimal seeded SGD loop that returns one.

* :func:`flat_params` / :func:`load_flat` — a model's parameters (all, or those matching name patterns) as one
  flat vector (``named_parameters()`` order), and back.
* :class:`WeightRecorder` — a trainer probe (``every`` attribute; called with a context having ``.model`` and
  ``.step``) that appends the flat weights to a list. It records whenever called: the trainer applies
  ``every``.
* :func:`sgd_train_fn` — a default ``train_fn(model, epochs, seed) -> trajectory`` (plain SGD, or
full-batch GD
  with ``batch_size=None``) for the branching protocol, so that protocol does not depend on the trainer.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..objective import LossFn, per_example_loss

__all__ = ["TrainFn", "WeightRecorder", "flat_params", "load_flat", "sgd_train_fn"]

TrainFn = Callable[[nn.Module, int, int], list[Tensor]]


def _selected(model: nn.Module, params: str | Sequence[str] | None) -> list[tuple[str, nn.Parameter]]:
    named = list(model.named_parameters())
    if params is None:
        return named
    patterns = [params] if isinstance(params, str) else list(params)
    chosen = [(k, p) for k, p in named if any(fnmatch.fnmatchcase(k, pat) for pat in patterns)]
    if not chosen:
        raise ConfigError(
            f"params={params!r} matches no parameter; the model has: {', '.join(k for k, _ in named)}"
        )
    return chosen


def flat_params(model: nn.Module, params: str | Sequence[str] | None = None) -> Tensor:
    """Detached copy (on CPU) of the selected parameters as one flat vector."""
    return torch.cat([p.detach().reshape(-1).cpu() for _, p in _selected(model, params)]).clone()


def load_flat(model: nn.Module, theta: Tensor, params: str | Sequence[str] | None = None) -> nn.Module:
    """Write a flat vector into the selected parameters of ``model`` (in place); returns the model."""
    chosen = _selected(model, params)
    total = sum(p.numel() for _, p in chosen)
    if theta.numel() != total:
        raise ConfigError(f"flat vector has {theta.numel()} entries, the selected parameters {total}")
    start = 0
    with torch.no_grad():
        for _, p in chosen:
            p.copy_(theta[start : start + p.numel()].view_as(p).to(p.device, p.dtype))
            start += p.numel()
    return model


class WeightRecorder:
    """Trainer probe recording flat weights: ``rec = WeightRecorder(every=10, params="2.*")``.

    ``rec(ctx)`` appends ``flat_params(ctx.model, params)`` and ``ctx.step`` and returns ``{}`` (no metric);
    ``rec.record(model, step)`` does the same outside a trainer; ``rec.stacked()`` is the ``[T, p]`` matrix.
    """

    def __init__(self, every: int = 1, params: str | Sequence[str] | None = None) -> None:
        if every < 1:
            raise ConfigError(f"every must be a positive integer, got {every}")
        self.every = every
        self.params = params
        self.steps: list[int] = []
        self.weights: list[Tensor] = []

    def record(self, model: nn.Module, step: int) -> None:
        self.steps.append(int(step))
        self.weights.append(flat_params(model, self.params))

    def __call__(self, ctx: Any) -> dict[str, float]:
        self.record(ctx.model, ctx.step)
        return {}

    def stacked(self) -> Tensor:
        if not self.weights:
            raise ConfigError("no weights recorded yet")
        return torch.stack(self.weights)


def sgd_train_fn(
    x: Tensor,
    y: Tensor,
    loss: str | LossFn = "cross_entropy",
    lr: float = 0.1,
    batch_size: int | None = None,
    params: str | Sequence[str] | None = None,
) -> TrainFn:
    """A ``train_fn(model, epochs, seed) -> [flat weights after epoch 0..epochs]`` running plain SGD in place.

    One epoch is a pass over a fresh seeded permutation of the data in minibatches of ``batch_size``
    (``None``: one full-batch GD step per epoch). The recorded vectors hold the ``params`` selection (default:
    all). A non-finite loss stops training; the trajectory then ends at the last finite point.
    """
    if lr <= 0:
        raise ConfigError(f"lr must be positive, got {lr}")
    loss_fn = per_example_loss(loss)

    def train(model: nn.Module, epochs: int, seed: int) -> list[Tensor]:
        g = torch.Generator().manual_seed(seed)
        n = len(x)
        size = n if batch_size is None else batch_size
        trajectory = [flat_params(model, params)]
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=g)
            for s in range(0, n, size):
                idx = order[s : s + size]
                model.zero_grad(set_to_none=True)
                value = loss_fn(model(x[idx]), y[idx]).mean()
                if not torch.isfinite(value):
                    return trajectory
                value.backward()
                with torch.no_grad():
                    for p in model.parameters():
                        if p.grad is not None:
                            p.add_(p.grad, alpha=-lr)
            trajectory.append(flat_params(model, params))
        return trajectory

    return train
