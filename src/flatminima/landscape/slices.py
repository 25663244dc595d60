"""1-D and 2-D slices of the training loss (Li et al. 2018; Goodfellow et al. 2015 for interpolation).

A slice evaluates I(origin + a d1 [+ b d2]) on a grid, block by block (a row of a 2-D grid, up to ~1000 blocks
of a 1-D line), with one :func:`plane_evaluator` per grid (first layer assembled from precomputed passes;
Linear chains streamed point by point on CPU), and each finished block is written to the optional ``store``
file (:class:`GridStore`), so an interrupted 51 x 51 grid or 10^6-point line resumes where it stopped. Before
any work the axes are checked (finite, strictly increasing, at least two points) and so is the size: a grid
that would not fit in this machine's memory, or (timed on a few points of the grid itself) would take more
than a week, is refused with the estimate in the message (:mod:`.budget`). Directions come from
:mod:`.directions` (filter-normalized random, top Hessian eigenvectors, PCA of a trajectory);
:func:`interpolate` is the 1-D segment w(alpha) = (1 - alpha) w_a + alpha w_b, optionally with the BatchNorm
running statistics recomputed at every point.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._io import atomic_write_json
from .._progress import progress_bar
from .._validate import short
from ..errors import ConfigError
from ..objective import Objective
from .budget import check_grid_size, check_grid_time
from .evaluate import class_labels, plane_evaluator
from .store import GridStore, fingerprint

__all__ = ["Slice", "check_axis", "interpolate", "slice_1d", "slice_2d"]


@dataclass
class Slice:
    """A loss slice: ``axes`` (one or two coordinate arrays), ``loss`` / ``accuracy`` of shape ``[len(x)]``
    (1-D) or ``[len(y), len(x)]`` (2-D), the ``kind`` of directions, an optional projected ``path`` ``[T, 2]``
    (PCA slices) and ``meta`` (fingerprint, settings)."""

    axes: list[np.ndarray]
    loss: np.ndarray
    accuracy: np.ndarray
    kind: str = "random"
    path: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return len(self.axes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "axes": [a.tolist() for a in self.axes],
            "loss": self.loss.tolist(),
            "accuracy": self.accuracy.tolist(),
            "path": None if self.path is None else self.path.tolist(),
            "meta": self.meta,
        }

    def save_json(self, path: str | Path) -> None:
        """Write the slice as JSON (atomic; NaN, e.g. unfinished or diverged points, as null)."""
        atomic_write_json(path, self.to_dict())


def _grid(
    obj: Objective,
    origin: Tensor,
    directions: Tensor,
    axes: list[np.ndarray],
    kind: str,
    store: str | Path | None,
    batch_points: int,
    extra_meta: dict[str, Any] | None = None,
) -> Slice:
    axes = [check_axis(name, a) for name, a in zip(("xs", "ys"), axes, strict=False)]
    check_grid_size([len(a) for a in axes], f"a {' x '.join(str(len(a)) for a in axes)} {kind} slice")
    origin = obj.theta if origin is None else origin.to(obj.device, obj.dtype)
    meta = {
        "kind": kind,
        "fingerprint": fingerprint(origin, directions),
        "loss": obj.loss_name,
        **(extra_meta or {}),
    }
    grid = GridStore(store, axes, meta)
    xs = grid.axes[0]
    rows = grid.axes[1] if len(axes) > 1 else np.zeros(1)
    todo = np.flatnonzero(~grid.done)
    evaluate = plane_evaluator(obj, origin, directions, batch_points=batch_points)  # set up once per grid

    def coords_of(block: int) -> np.ndarray:
        row, cols = grid.blocks[block]
        x = xs[cols]
        return np.stack([x, np.full_like(x, rows[row])], axis=1)[:, : len(axes)]

    if len(todo):
        remaining = sum(len(xs[grid.blocks[b][1]]) for b in todo)
        check_grid_time(evaluate, coords_of(int(todo[0])), remaining, f"the {kind} slice", batch_points)
    with progress_bar(len(todo), f"{kind} slice") as bar:
        for block in todo:
            loss, acc = evaluate(coords_of(int(block)))
            grid.put_block(int(block), loss, acc)
            bar.advance()
    if len(axes) == 1:
        return Slice(grid.axes, grid.loss[0], grid.accuracy[0], kind=kind, meta=meta)
    return Slice(grid.axes, grid.loss, grid.accuracy, kind=kind, meta=meta)


def _describe(origin: Tensor | None, meta: dict[str, Any] | None) -> dict[str, Any]:
    """The slice's description for its plots: what the centre is, plus the caller's ``meta`` (``norm``,
    ``bias_bn``, ``eigenvalues``, ``explained``, ``centre``: see ``plots.direction_labels``)."""
    return {"centre": "model's weights" if origin is None else "origin", **(meta or {})}


def check_axis(name: str, values: np.ndarray | Sequence[float]) -> np.ndarray:
    """``values`` as a float64 array if they are finite and strictly increasing, at least two of them."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a 1-D array of numbers, got {short(values)}") from None
    if a.ndim != 1 or len(a) < 2:
        raise ConfigError(f"{name} must be a 1-D array of at least two coordinates, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ConfigError(f"{name} must be finite, got {short(a.tolist())}")
    if not (np.diff(a) > 0).all():
        raise ConfigError(
            f"{name} must be strictly increasing (a degenerate grid repeats a point), got {short(a.tolist())}"
        )
    return a


def slice_1d(
    obj: Objective,
    direction: Tensor,
    xs: np.ndarray,
    origin: Tensor | None = None,
    store: str | Path | None = None,
    batch_points: int = 16,
    kind: str = "random",
    meta: dict[str, Any] | None = None,
) -> Slice:
    """I(origin + a d) for a in ``xs`` (origin: the objective's base point by default).

    ``kind`` and ``meta`` describe the direction for the plots and the JSON (e.g. ``kind="random",
    meta={"norm": "filter"}``; see :func:`flatminima.landscape.plots.direction_labels`).
    """
    extra = _describe(origin, meta)
    origin = obj.theta if origin is None else origin
    return _grid(obj, origin, direction.reshape(1, -1), [np.asarray(xs)], kind, store, batch_points, extra)


def slice_2d(
    obj: Objective,
    d1: Tensor,
    d2: Tensor,
    xs: np.ndarray,
    ys: np.ndarray,
    origin: Tensor | None = None,
    store: str | Path | None = None,
    batch_points: int = 16,
    kind: str = "random",
    path: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> Slice:
    """I(origin + a d1 + b d2) on the grid ``xs`` x ``ys``; ``loss[j, i]`` is at (xs[i], ys[j]).

    ``path``: optional ``[T, 2]`` coordinates of a trajectory drawn on the contour plot (PCA slices).
    ``kind`` and ``meta`` describe the directions for the plots (as in :func:`slice_1d`).
    """
    extra = _describe(origin, meta)
    origin = obj.theta if origin is None else origin
    dirs = torch.stack([d1.reshape(-1), d2.reshape(-1)]).to(obj.device, obj.dtype)
    out = _grid(obj, origin, dirs, [np.asarray(xs), np.asarray(ys)], kind, store, batch_points, extra)
    out.path = None if path is None else np.asarray(path)
    return out


def interpolate(
    obj: Objective,
    theta_a: Tensor,
    theta_b: Tensor,
    alphas: np.ndarray | None = None,
    bn_recompute: bool = False,
    bn_data: Tensor | None = None,
    store: str | Path | None = None,
    batch_points: int = 16,
    names: tuple[str, str] = ("w_a", "w_b"),
) -> Slice:
    """Loss and accuracy along w(alpha) = (1 - alpha) w_a + alpha w_b (default alphas: -0.5..1.5, 41 points).

    ``names``: what the end points are (e.g. two run names), shown on the plot at alpha = 0 and alpha = 1.

    ``bn_recompute=True`` re-estimates every BatchNorm layer's running mean/variance at each point from
    ``bn_data`` (default: the objective's inputs) with a cumulative average (momentum=None) in train mode
    before evaluating in eval mode: the averaged weights do not match the end points' statistics. That path
    evaluates point by point (statistics are a per-point computation).
    """
    alphas = np.linspace(-0.5, 1.5, 41) if alphas is None else check_axis("alphas", alphas)
    theta_a = theta_a.to(obj.device, obj.dtype)
    direction = theta_b.to(obj.device, obj.dtype) - theta_a
    if not bn_recompute:
        return slice_1d(
            obj,
            direction,
            alphas,
            origin=theta_a,
            store=store,
            batch_points=batch_points,
            kind="interpolation",
            meta={"endpoints": list(names), "centre": names[0]},
        )
    check_grid_size([len(alphas)], f"a {len(alphas)}-point interpolation")
    bns = [m for m in obj.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ConfigError("bn_recompute=True but the model has no BatchNorm layer")
    data = obj.x if bn_data is None else bn_data.to(obj.device, obj.dtype)
    losses, accs = [], []
    with progress_bar(len(alphas), "interpolation (BN recomputed)") as bar:
        for a in alphas:
            model = _model_at(obj, theta_a + float(a) * direction)
            recompute_bn(model, data, obj.chunk_size)
            loss, acc = evaluate_model(obj, model)
            losses.append(loss)
            accs.append(acc)
            bar.advance()
    meta = {
        "kind": "interpolation",
        "bn_recompute": True,
        "fingerprint": fingerprint(theta_a, direction),
        "loss": obj.loss_name,
        "endpoints": list(names),
    }
    return Slice([alphas], np.array(losses), np.array(accs), kind="interpolation", meta=meta)


def _model_at(obj: Objective, theta: Tensor) -> nn.Module:
    model = copy.deepcopy(obj.model)
    model.load_state_dict(obj.state_dict(theta))
    return model


def recompute_bn(model: nn.Module, x: Tensor, chunk_size: int | None = None) -> None:
    """Reset BatchNorm running statistics and re-estimate them on ``x`` (cumulative average, train mode)."""
    saved = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            saved[m] = m.momentum
            m.momentum = None
    was = model.training
    model.train(True)
    size = chunk_size or len(x)
    with torch.no_grad():
        for s in range(0, len(x), size):
            model(x[s : s + size])
    for m, mom in saved.items():
        m.momentum = mom
    model.train(was)


def evaluate_model(obj: Objective, model: nn.Module) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (eval mode) on the objective's data, with the objective's loss."""
    labels = class_labels(obj.y)
    loss_fn = obj.loss_fn
    total, correct = 0.0, 0.0
    was = model.training
    model.eval()
    size = obj.chunk_size or obj.n_local
    with torch.no_grad():
        for s, (x, y) in zip(range(0, obj.n_local, size), obj.chunks(), strict=True):
            out = model(x)
            total += float(loss_fn(out, y).sum())
            if labels is not None:
                correct += float((out.argmax(dim=-1) == labels[s : s + size].to(out.device)).sum())
    model.train(was)
    sums = torch.tensor([total, correct], dtype=torch.float64, device=obj.device)
    total, correct = obj.allreduce(sums).tolist()
    return total / obj.n, (correct / obj.n if labels is not None else float("nan"))
