"""Resume checkpoints of a training run: everything needed to continue bit for bit.

A resume point holds the model's ``state_dict``, the optimizer's ``state_dict`` (with the noise generators of
``flatminima.optim`` optimizers), the trainer's counters (step, phase, steps in the phase, examples drawn,
minibatch stream position and permutation), every random number generator the run draws from (the run's
``torch.Generator``, torch's global generator, NumPy's and Python's), the probes' state (e.g. the warm-start
vector of a ``SharpnessProbe``) and the row count of the metrics table at that moment.

Files (in ``RUN/resume/``): ``state-<step>.pt`` written with ``torch.save`` to a temporary name and renamed,
then ``resume.json`` (``{"file": ..., "sha256": ..., "step": ..., "threads": ...}``) written the same way; the
previous state file is removed only after that. A SIGKILL at any moment leaves either the old or the new point
complete. Loading checks the SHA-256 and uses ``torch.load(weights_only=True)`` (no code is run); a corrupt
point is a :class:`~flatminima.errors.CheckpointError`.

Bit for bit means on the same machine with the same number of torch threads: a float reduction split over
another thread count rounds differently. ``threads`` records the count; resuming with another one warns.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path, atomic_write_json
from ..errors import CheckpointError

__all__ = ["capture_rng", "load_resume", "restore_rng", "save_resume"]

POINTER = "resume.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """The state of every generator a run draws from, as tensors / plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def save_resume(directory: Path, state: dict[str, Any]) -> Path:
    """Write a resume point (``state`` holds tensors and plain values only) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pointer = directory / POINTER
    previous = _pointer(pointer).get("file") if pointer.is_file() else None
    name = f"state-{int(state['trainer']['step'])}.pt"
    with atomic_path(directory / name) as tmp:
        torch.save(state, tmp)
    atomic_write_json(
        pointer,
        {
            "file": name,
            "sha256": _sha256(directory / name),
            "step": int(state["trainer"]["step"]),
            "threads": torch.get_num_threads(),
        },
    )
    if previous and previous != name:
        (directory / previous).unlink(missing_ok=True)
    return directory / name


def _pointer(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"resume pointer {path} is corrupt ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("file"), str) or "/" in data["file"]:
        raise CheckpointError(f"resume pointer {path} is corrupt")
    return data


def load_resume(directory: Path) -> dict[str, Any] | None:
    """The last complete resume point in ``directory`` (None when there is none); checksum verified."""
    pointer = directory / POINTER
    if not pointer.is_file():
        return None
    info = _pointer(pointer)
    path = directory / info["file"]
    if not path.is_file() or _sha256(path) != info.get("sha256"):
        raise CheckpointError(
            f"resume state {path} is missing or does not match its checksum (corrupt); remove "
            f"{directory.parent} to start the run again"
        )
    saved, now = info.get("threads"), torch.get_num_threads()
    if isinstance(saved, int) and saved != now:
        warnings.warn(
            f"resuming {directory.parent} with {now} torch threads, saved with {saved}: the run continues "
            f"correctly, not bit for bit as an uninterrupted run (torch.set_num_threads({saved}) for that)",
            RuntimeWarning,
            stacklevel=2,
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"resume state {path} cannot be read ({exc})") from None
