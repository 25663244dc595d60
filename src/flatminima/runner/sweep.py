"""Sweeps: a base config plus a grid of dotted keys, expanded deterministically into runs with stable ids.

A grid ``{"optim.lr": [0.1, 0.2], "seed": [0, 1]}`` over a nested base config yields the Cartesian product
of the value lists, in the grid's key order with the last key varying fastest. Each point's *resolved* config
(the base with the point's values set) is hashed (SHA-256 of its canonical JSON: sorted keys, no whitespace)
to a 16-hex-digit run id. The id depends only on the resolved config, not on the grid's key order, the
sweep's name or the run function, so rerunning the same sweep finds the same ids, and two sweeps that share a
point share its run.

Decisions: a dotted key may create keys missing from the base (a base need not spell out every default), but
it may not descend through a non-dict value; configs must be JSON-serialisable (they are stored as JSON and
hashed); two points resolving to the same config are a ConfigError (the id would be ambiguous).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

RUN_ID_LENGTH = 16


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, compact separators; NaN/inf are rejected (they would not hash stably)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config must be JSON (finite numbers, strings, lists, dicts): {exc}") from None


def run_id(config: Mapping[str, Any]) -> str:
    """The stable id of a run: the first 16 hex digits of SHA-256 over the config's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:RUN_ID_LENGTH]


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``config["a"]["b"] = value`` for ``key = "a.b"``, creating missing intermediate dicts in place."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"invalid grid key {key!r}: expected dotted names like 'optim.lr'")
    node = config
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"grid key {key!r}: {prefix!r} holds {type(child).__name__} value, not a dict")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def get_dotted(config: Mapping[str, Any], key: str) -> Any:
    """Read ``config["a"]["b"]`` for ``key = "a.b"`` (KeyError when absent)."""
    node: Any = config
    for part in key.split("."):
        node = node[part]
    return node


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its id, the grid values that define it (dotted keys) and the resolved config."""

    run_id: str
    values: dict[str, Any]
    config: dict[str, Any]


@dataclass
class Sweep:
    """A base config and a grid ``{dotted key: [values]}``; expansion rules in the module docstring."""

    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    name: str = "sweep"

    def __post_init__(self) -> None:
        if not isinstance(self.base, Mapping):
            raise ConfigError(f"sweep base must be a dict, got {type(self.base).__name__}")
        if not isinstance(self.grid, Mapping):
            raise ConfigError(
                f"sweep grid must be a dict of dotted key -> list, got {type(self.grid).__name__}"
            )
        for key, values in self.grid.items():
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise ConfigError(f"grid values for {key!r} must be a list, got {values!r}")
            if len(list(values)) == 0:
                raise ConfigError(f"grid values for {key!r} are empty")
        canonical_json(self.base)

    def __len__(self) -> int:
        return math.prod(len(list(v)) for v in self.grid.values())

    def expand(self) -> list[Point]:
        """All points of the grid in deterministic order (last grid key fastest)."""
        return expand(self)

    def run_ids(self) -> list[str]:
        return [p.run_id for p in self.expand()]


def expand(sweep: Sweep) -> list[Point]:
    """Expand a sweep into its points (Cartesian product of the grid, last key varying fastest)."""
    keys = list(sweep.grid)
    points: list[Point] = []
    seen: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(list(sweep.grid[k]) for k in keys)):
        config = copy.deepcopy(dict(sweep.base))
        values = dict(zip(keys, combo, strict=True))
        for key, value in values.items():
            set_dotted(config, key, value)
        rid = run_id(config)
        if rid in seen:
            raise ConfigError(f"sweep {sweep.name!r}: points {seen[rid]} and {values} give the same config")
        seen[rid] = values
        points.append(Point(rid, copy.deepcopy(values), config))
    return points
