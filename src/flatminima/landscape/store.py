"""Resumable storage of landscape grids: one ``.npz`` per grid, rewritten atomically after each block.

A *block* is a row of a 2-D grid, or a run of consecutive points of a 1-D grid (:func:`block_points`: at least
256 points, and at most about 1000 blocks per grid), so a 10^6-point line resumes within a block instead of
from its start. The file holds the axes, the loss and accuracy arrays ``[rows, cols]`` (nan where not yet
computed), a boolean ``done`` per block, the block length and a JSON ``meta`` string with a fingerprint of the
origin and directions. Re-running the same slice with the same file skips the finished blocks (a file of an
older layout, one block per row, is read too); a file written for another origin, directions or grid raises
ConfigError rather than mixing two landscapes, and so does an unreadable (e.g. empty or truncated) file.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path, jsonable
from ..errors import ConfigError

__all__ = ["GridStore", "block_points", "fingerprint"]

_MIN_BLOCK, _MAX_BLOCKS = 256, 1000


def block_points(n: int) -> int:
    """Points per stored block of an ``n``-point 1-D grid (all of them up to 256)."""
    return max(_MIN_BLOCK, math.ceil(n / _MAX_BLOCKS))


def fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-1 of the float64 bytes of the given tensors (identifies a slice's origin and directions)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().double().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _blocks(rows: int, cols: int, block: int) -> list[tuple[int, slice]]:
    """(row, columns) of every block: each row cut into runs of ``block`` columns."""
    return [(r, slice(s, min(s + block, cols))) for r in range(rows) for s in range(0, cols, block)]


class GridStore:
    """Blocks of a ``[rows, cols]`` grid of (loss, accuracy), persisted to ``path`` (``None``: memory only).

    ``blocks[b]`` is ``(row, columns)``: every row of a 2-D grid is one block; a 1-D grid (one row) is cut
    into :func:`block_points`-long blocks. ``done[b]`` says whether block ``b`` is finished.
    """

    def __init__(self, path: str | Path | None, axes: list[np.ndarray], meta: dict[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.axes = [np.asarray(a, dtype=np.float64) for a in axes]
        cols = len(self.axes[0])
        rows = len(self.axes[1]) if len(self.axes) > 1 else 1
        self.block = cols if len(self.axes) > 1 else block_points(cols)
        self.blocks = _blocks(rows, cols, self.block)
        self.meta = meta
        self.loss = np.full((rows, cols), np.nan)
        self.accuracy = np.full((rows, cols), np.nan)
        self.done = np.zeros(len(self.blocks), dtype=bool)
        if self.path is not None and self.path.exists():
            self._resume()

    def _resume(self) -> None:
        assert self.path is not None
        try:
            with np.load(self.path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                axes = [f[f"axis{i}"] for i in range(len(self.axes))]
                loss, acc, done = f["loss"], f["accuracy"], f["done"]
                block = int(f["block"]) if "block" in f.files else loss.shape[1]  # older files: one per row
        except (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            reason = "the file is empty" if self.path.stat().st_size == 0 else f"{type(exc).__name__}: {exc}"
            raise ConfigError(
                f"cannot resume from {self.path} ({reason}); delete it to start the slice afresh"
            ) from None
        same_axes = all(
            a.shape == b.shape and np.allclose(a, b) for a, b in zip(axes, self.axes, strict=True)
        )
        if meta.get("fingerprint") != self.meta.get("fingerprint") or not same_axes:
            raise ConfigError(
                f"{self.path} holds a different slice (other origin, directions or grid); "
                "choose another output file or delete it"
            )
        if loss.shape != self.loss.shape or acc.shape != self.loss.shape or block < 1:
            raise ConfigError(f"cannot resume from {self.path}: its arrays do not match its axes")
        # Per point "finished", from the file's own blocks, then regrouped into this store's blocks.
        point_done = np.zeros(self.loss.shape, dtype=bool)
        stored = _blocks(*loss.shape, block)
        if len(stored) != len(done):
            raise ConfigError(f"cannot resume from {self.path}: its blocks do not match its arrays")
        for (r, cols), finished in zip(stored, done, strict=True):
            point_done[r, cols] = bool(finished)
        self.done = np.array([point_done[r, cols].all() for r, cols in self.blocks], dtype=bool)
        self.loss, self.accuracy = loss.copy(), acc.copy()

    def put_block(self, index: int, loss: np.ndarray, accuracy: np.ndarray) -> None:
        """Record finished block ``index`` (its points' loss and accuracy) and persist the grid atomically."""
        row, cols = self.blocks[index]
        self.loss[row, cols], self.accuracy[row, cols], self.done[index] = loss, accuracy, True
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
                block=np.array(self.block),
                meta=np.array(json.dumps(jsonable(self.meta))),
                **arrays,
            )

    def put_row(self, row: int, loss: np.ndarray, accuracy: np.ndarray) -> None:
        """Record finished row ``row`` of a 2-D grid (a row is one block there; a 1-D grid of at most
        :func:`block_points` points is one row and one block)."""
        if len(self.axes) == 1 and len(self.blocks) > 1:
            raise ConfigError("a long 1-D grid is stored in blocks: use put_block")
        self.put_block(row, loss, accuracy)
