"""Attributes of a package imported on first access (PEP 562), for modules with heavy imports (plots)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[attr]`` (a submodule, relative to ``package``) when
    ``attr`` is first looked up, so ``import package`` does not pay for it (e.g. matplotlib)."""

    def __getattr__(attr: str) -> Any:
        if attr in names:
            return getattr(importlib.import_module(names[attr], package), attr)
        raise AttributeError(f"module {package!r} has no attribute {attr!r}")

    return __getattr__
