"""Argument checks shared by the library and the CLI: each bad value becomes one precise :class:`ConfigError`.

Scalars: :func:`check_float` (finite, optional bounds), :func:`check_int` (a true integer, optional bounds),
:func:`check_seed` (an int in ``[0, SEED_MAX]``), :func:`check_choice`. Resources: :func:`check_memory`
(an estimate against this machine's memory), :func:`check_duration` (an estimate against ``MAX_SECONDS``),
:func:`check_writable_dir` (an output folder that can be created or written, checked before any work).
:func:`short` is the capped ``repr`` every error message uses for a rejected value, so a huge value (a YAML
alias bomb, a 10^9-element list) never becomes a huge message.

Decisions: ``bool`` is not accepted as a number (``True`` as a learning rate is a mistake, not 1.0); floats
are not accepted as integers (``chunk_size=2.5`` and ``2.0`` alike: a count is an ``int``); seeds are bounded
by ``2**63 - 1`` (torch takes seeds below 2**64, and code derives ``seed + k`` for sub-streams); "beyond the
machine" means more than its physical memory (or the cgroup limit, or the GPU's memory for a CUDA device) and
more than a week of computation.
"""

from __future__ import annotations

import math
import os
import reprlib
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "MAX_SECONDS",
    "SEED_MAX",
    "check_choice",
    "check_duration",
    "check_float",
    "check_int",
    "check_memory",
    "check_seed",
    "check_writable_dir",
    "format_bytes",
    "format_seconds",
    "machine_memory",
    "short",
]

SEED_MAX = 2**63 - 1
MAX_SECONDS = 7 * 86400.0  # one command estimated to run longer than a week is refused
_SHORT = 80

_repr = reprlib.Repr()
_repr.maxstring = _SHORT
_repr.maxother = _SHORT
_repr.maxlong = 40
for _attr in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_repr, _attr, 6)
_repr.maxlevel = 3


def short(value: Any, limit: int = _SHORT) -> str:
    """``repr(value)`` cut to at most ``limit`` characters (nested containers and long strings elided).

    Never expands a value in full: a list of 10^9 shared references costs what its first few elements cost.
    """
    try:
        text = _repr.repr(value)
    except Exception:  # a broken __repr__ must not hide the actual error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounds(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    parts = [f"{op} {_num(v)}" for op, v in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if v is not None]
    return " and ".join(parts)


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _violates(v: float, gt: float | None, ge: float | None, lt: float | None, le: float | None) -> bool:
    return (
        (gt is not None and not v > gt)
        or (ge is not None and not v >= ge)
        or (lt is not None and not v < lt)
        or (le is not None and not v <= le)
    )


def check_float(
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> float:
    """``float(value)`` if ``value`` is a finite real number within the given bounds, else ConfigError.

    Accepts Python / NumPy reals and one-element tensors; refuses ``bool``, strings, NaN and +-inf.
    """
    bounds = _bounds(gt, ge, lt, le)
    want = f"{name} must be a finite number" + (f" {bounds}" if bounds else "")
    if hasattr(value, "numel") and hasattr(value, "item") and value.numel() == 1:  # 1-element tensor
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{want}, got {short(value)}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range
        raise ConfigError(f"{want}, got {short(value)}") from None
    if not math.isfinite(v) or _violates(v, gt, ge, lt, le):
        raise ConfigError(f"{want}, got {short(value)}")
    return v


def check_int(name: str, value: Any, *, ge: int | None = None, le: int | None = None) -> int:
    """``int(value)`` if ``value`` is an integer (Python or NumPy; not bool, not float) in ``[ge, le]``."""
    bounds = _bounds(None, ge, None, le)
    want = f"{name} must be an integer" + (f" {bounds}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{want}, got {short(value)}")
    v = int(value)
    if _violates(v, None, ge, None, le):
        raise ConfigError(f"{want}, got {short(v)}")
    return v


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an integer in ``[0, SEED_MAX]`` (what torch, NumPy and Python's ``random`` all accept)."""
    return check_int(name, value, ge=0, le=SEED_MAX)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices`` (an UnknownNameError listing them otherwise)."""
    from .errors import unknown

    if not isinstance(value, str) or value not in choices:
        raise unknown(name, value if isinstance(value, str) else short(value), list(choices))
    return value


# ---------------------------------------------------------------------------------------------- resources
def format_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_seconds(s: float) -> str:
    """``42 s`` / ``3.5 min`` / ``6.6 h`` / ``12 days``."""
    if s < 90:
        return f"{s:.2g} s"
    if s < 5400:
        return f"{s / 60:.2g} min"
    if s < 3 * 86400:
        return f"{s / 3600:.2g} h"
    return f"{s / 86400:.3g} days"


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def machine_memory(device: Any = None) -> int | None:
    """Bytes of memory available to this process on ``device``: the GPU's total memory for a CUDA device,
    else the physical memory (capped by a cgroup limit where one is set). None when it cannot be told."""
    kind = getattr(device, "type", None) or (str(device).split(":")[0] if device is not None else "cpu")
    if kind == "cuda":
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.get_device_properties(device).total_memory)
        return None
    total: int | None = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        try:
            import psutil

            total = int(psutil.virtual_memory().total)
        except ImportError:
            total = None
    limit = _cgroup_limit()
    if limit is not None and (total is None or limit < total):
        total = limit
    return total


def check_memory(what: str, nbytes: float, device: Any = None, hint: str = "") -> None:
    """ConfigError when ``nbytes`` (an estimate of what ``what`` needs) exceeds :func:`machine_memory`."""
    limit = machine_memory(device)
    if limit is not None and nbytes > limit:
        where = "GPU" if "cuda" in str(getattr(device, "type", device)) else "machine"
        more = f"; {hint}" if hint else ""
        raise ConfigError(
            f"{what} needs about {format_bytes(nbytes)} of memory, more than this {where}'s "
            f"{format_bytes(limit)}{more}"
        )


def check_duration(what: str, seconds: float, hint: str = "", limit: float = MAX_SECONDS) -> None:
    """ConfigError when ``seconds`` (an estimate, e.g. from one timed evaluation) exceeds ``limit``."""
    if seconds > limit:
        more = f"; {hint}" if hint else ""
        raise ConfigError(
            f"{what} would take about {format_seconds(seconds)} on this machine (more than "
            f"{format_seconds(limit)}){more}"
        )


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """``Path(path)`` if it is a writable folder or can be created as one; ConfigError otherwise.

    Checked before any work so that a long computation never ends in a failed write. Nothing is created.
    """
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{what} {p} exists and is not a folder; choose another path")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {p} is not writable")
        return p
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create {what} {p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create {what} {p}: {parent} is not writable")
    return p
