"""SharpnessProbe: track lambda_max(H) during training, warm-starting Lanczos from the last top
eigenvector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..objective import Objective
from .sharpness import sharpness

__all__ = ["SharpnessProbe"]


class SharpnessProbe:
    """Trainer probe (``probe(ctx) -> dict`` with attribute ``every``; docs/architecture.md, Probes).

    Builds an Objective from ``ctx.model`` on ``ctx.x, ctx.y`` and measures the sharpness with Lanczos
    started from the previous call's top eigenvector (when the parameter count matches), which needs far
    fewer products when the model changes slowly between probes. The loss is ``loss`` if given, else
    ``ctx.loss`` when that is a loss name or callable (a float is ignored), else ``"mse"``.
    Logs ``{prefix}``, ``{prefix}_residual`` and ``{prefix}_matvecs``.
    """

    def __init__(
        self,
        every: int = 1,
        tol: float = 1e-4,
        max_iter: int = 100,
        loss: str | Callable | None = None,
        params: str | list[str] | None = None,
        chunk_size: int | None = None,
        prefix: str = "sharpness",
        seed: int = 0,
    ) -> None:
        if every < 1:
            from ..errors import ConfigError

            raise ConfigError(f"every must be a positive integer, got {every}")
        self.every = int(every)
        self.tol, self.max_iter = tol, max_iter
        self.loss, self.params, self.chunk_size = loss, params, chunk_size
        self.prefix, self.seed = prefix, seed
        self.last_vector: torch.Tensor | None = None
        self.last_matvecs = 0

    def _loss(self, ctx: Any) -> str | Callable:
        if self.loss is not None:
            return self.loss
        ctx_loss = getattr(ctx, "loss", None)
        if isinstance(ctx_loss, str) or callable(ctx_loss):
            return ctx_loss
        return "mse"

    def measure(self, model: Any, x: torch.Tensor, y: torch.Tensor, **context: Any) -> dict[str, float]:
        """One measurement in one's own training loop: ``probe.measure(model, x, y, loss="mse", lr=0.1,
        step=t)`` (``flatminima.training.probes.measure``; the warm start carries over between calls)."""
        from ..training.probes import measure

        return measure(self, model, x, y, **context)

    def __call__(self, ctx: Any) -> dict[str, float]:
        obj = Objective(
            ctx.model, loss=self._loss(ctx), x=ctx.x, y=ctx.y, params=self.params, chunk_size=self.chunk_size
        )
        v0 = self.last_vector
        if v0 is not None and v0.numel() != obj.num_params:
            v0 = None
        est = sharpness(obj, tol=self.tol, max_iter=self.max_iter, v0=v0, seed=self.seed)
        self.last_vector = est.extra["eigenvector"]
        self.last_matvecs = est.matvecs
        return {
            self.prefix: est.value,
            f"{self.prefix}_residual": est.residual,
            f"{self.prefix}_matvecs": float(est.matvecs),
        }

    def state_dict(self) -> dict[str, Any]:
        """The warm-start state (saved in a training run's resume points, so a resumed run is identical)."""
        return {"last_vector": self.last_vector, "last_matvecs": self.last_matvecs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.last_vector = state.get("last_vector")
        self.last_matvecs = int(state.get("last_matvecs", 0))
