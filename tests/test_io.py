"""Atomic result files: content, permissions, failure safety and strict JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from flatminima._io import atomic_path, atomic_write_json, atomic_write_text, jsonable


def test_atomic_write_keeps_old_file_on_failure_and_uses_umask(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a" / "r.txt", "old")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "old" and (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["r.txt"]


def test_jsonable_is_strict_json(tmp_path: Path) -> None:
    payload = {
        "nan": math.nan,
        "inf": -math.inf,
        "array": np.arange(3),
        "tensor": torch.tensor([0.5]),
        "path": tmp_path,
        1: (1, 2),
    }
    assert jsonable(payload) == {
        "nan": None,
        "inf": "-inf",
        "array": [0, 1, 2],
        "tensor": [0.5],
        "path": str(tmp_path),
        "1": [1, 2],
    }
    out = atomic_write_json(tmp_path / "x.json", payload)
    assert json.loads(out.read_text())["inf"] == "-inf"
