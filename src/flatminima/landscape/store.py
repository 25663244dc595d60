"""Resumable storage of landscape grids: one ``.npz`` per grid, rewritten atomically after every finished row.

The file holds the axes, the loss and accuracy arrays (nan where not yet computed), a boolean ``done`` per row
and a JSON ``meta`` string with a fingerprint of the origin and directions. Re-running the same slice with the
same file skips the finished rows; a file written for another origin, directions or grid raises ConfigError
rather than mixing two landscapes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path, jsonable
from ..errors import ConfigError

__all__ = ["GridStore", "fingerprint"]


def fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-1 of the float64 bytes of the given tensors (identifies a slice's origin and directions)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().double().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class GridStore:
    """Rows of a ``[rows, cols]`` grid of (loss, accuracy), persisted to ``path`` (``None``: memory only)."""

    def __init__(self, path: str | Path | None, axes: list[np.ndarray], meta: dict[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.axes = [np.asarray(a, dtype=np.float64) for a in axes]
        cols = len(self.axes[0])
        rows = len(self.axes[1]) if len(self.axes) > 1 else 1
        self.meta = meta
        self.loss = np.full((rows, cols), np.nan)
        self.accuracy = np.full((rows, cols), np.nan)
        self.done = np.zeros(rows, dtype=bool)
        if self.path is not None and self.path.exists():
            self._resume()

    def _resume(self) -> None:
        assert self.path is not None
        try:
            with np.load(self.path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                axes = [f[f"axis{i}"] for i in range(len(self.axes))]
                loss, acc, done = f["loss"], f["accuracy"], f["done"]
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot resume from {self.path}: {exc}") from exc
        same_axes = all(
            a.shape == b.shape and np.allclose(a, b) for a, b in zip(axes, self.axes, strict=True)
        )
        if meta.get("fingerprint") != self.meta.get("fingerprint") or not same_axes:
            raise ConfigError(
                f"{self.path} holds a different slice (other origin, directions or grid); "
                "choose another output file or delete it"
            )
        self.loss, self.accuracy, self.done = loss.copy(), acc.copy(), done.copy()

    def put_row(self, row: int, loss: np.ndarray, accuracy: np.ndarray) -> None:
        """Record one finished row and persist the grid atomically."""
        self.loss[row], self.accuracy[row], self.done[row] = loss, accuracy, True
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            arrays = {f"axis{i}": a for i, a in enumerate(self.axes)}
            np.savez(
                fh,
                loss=self.loss,
                accuracy=self.accuracy,
                done=self.done,
                meta=np.array(json.dumps(jsonable(self.meta))),
                **arrays,
            )
