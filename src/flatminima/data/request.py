"""``SourceRequest``: the arguments of ``load`` that a source may need besides its own options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceRequest:
    """``root``: data directory given to ``load`` and ``verify``: refuse files that do not match the published
    checksums (file loaders); sizes: what generated sets must produce."""

    root: str | Path | None = None
    n_train: int | None = None
    n_test: int | None = None
    extra_random: int = 0
    verify: bool = True
