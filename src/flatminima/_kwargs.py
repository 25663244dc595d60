"""Reject keyword arguments a function does not take, with a ConfigError naming the valid ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError


def check_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], what: str, skip: int = 0) -> None:
    """Raise ConfigError if ``kwargs`` has a name that ``fn`` (minus its first ``skip`` parameters) lacks."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    bad = sorted(set(kwargs) - set(accepted))
    if bad:
        valid = ", ".join(accepted) if accepted else "none"
        raise ConfigError(f"{what} does not take option(s) {', '.join(bad)}; valid options: {valid}")
