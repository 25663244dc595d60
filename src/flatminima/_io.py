"""Atomic file output: every result file is written to a temporary name in its folder, then renamed.

A crash (or SIGKILL) never leaves a half-written result: a reader sees the old file or the new one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

__all__ = ["atomic_path", "atomic_write_json", "atomic_write_text", "jsonable"]

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``, on failure remove it.

    ``suffix`` (default: ``path``'s own) keeps writers that look at the extension (matplotlib, numpy) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=ext)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (fsync'ed temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def jsonable(value: Any) -> Any:
    """Plain, strict JSON values: arrays/tensors as lists, NaN -> None, +-inf -> "inf"/"-inf", paths as
    strings, dataclasses and objects with ``to_dict`` as dicts."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return jsonable(value.detach().cpu().tolist() if hasattr(value, "detach") else value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    """Write ``jsonable(payload)`` as indented strict JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n")
