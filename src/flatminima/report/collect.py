"""Find the experiment results under a directory: ``DIR/result.json`` or ``DIR/**/result.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataNotFoundError
from ..experiments.base import RESULT_FILE, ExperimentResult


@dataclass(frozen=True)
class Found:
    """A loaded result and the directory it lives in (figure paths are relative to it)."""

    result: ExperimentResult
    directory: Path


def find_results(root: str | Path) -> list[Found]:
    """Every ``result.json`` at or below ``root``, sorted by path (DataNotFoundError when there is none)."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"no such directory: {root}")
    paths = sorted(root.rglob(RESULT_FILE), key=lambda p: (len(p.relative_to(root).parts), str(p)))
    if not paths:
        raise DataNotFoundError(
            f"no {RESULT_FILE} under {root}: run `flatminima reproduce NAME --out {root}` first"
        )
    return [Found(ExperimentResult.load(p), p.parent) for p in paths]
