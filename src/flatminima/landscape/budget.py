"""Size and time budgets of landscape grids, checked before the work starts.

A grid of m points holds a few values per point (loss and accuracy, plus coordinates), as float64 arrays, then
as Python lists (``to_dict``), JSON text and the plot's copies: about ``BYTES_PER_VALUE`` bytes of memory per
value in all (measured with tracemalloc on a 10^6-point 1-D slice: peak ~90 B per value for the arrays,
``to_dict`` and the JSON text together). The estimate is meant to catch what is clearly beyond the machine
(10^10-point grids), not to budget a grid to the last byte. :func:`check_grid_size` refuses a grid whose
estimate exceeds this machine's memory; :func:`check_grid_time` times the evaluation of a few of the grid's
own points and refuses a grid estimated to take longer than :data:`flatminima._validate.MAX_SECONDS` (a week).
Small grids (up to ``TIMED_ABOVE`` points) are not timed: the probe would cost more than it protects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from .. import _validate
from .._validate import check_duration, check_memory, format_seconds

__all__ = ["BYTES_PER_VALUE", "TIMED_ABOVE", "check_grid_size", "check_grid_time"]

BYTES_PER_VALUE = 100
TIMED_ABOVE = 4096


def check_grid_size(
    shape: Sequence[int], what: str, values_per_point: int = 2, hint: str = "use fewer points"
) -> None:
    """ConfigError when a grid of ``shape`` points (``values_per_point`` numbers each) would not fit in
    memory (see the module docstring)."""
    points = math.prod(int(n) for n in shape)
    check_memory(what, points * values_per_point * BYTES_PER_VALUE, hint=hint)


def check_grid_time(
    evaluate: Callable[[np.ndarray], object],
    probe: np.ndarray,
    points: int,
    what: str,
    batch_points: int = 16,
) -> float | None:
    """Seconds that ``points`` evaluations are estimated to take, from one timed call of ``evaluate`` on the
    first points of ``probe`` (after one untimed call that absorbs the per-grid set-up); ConfigError above
    a week. None (nothing timed) for grids of at most ``TIMED_ABOVE`` points."""
    if points <= TIMED_ABOVE or len(probe) == 0:
        return None
    k = max(1, min(len(probe), 2 * batch_points))
    evaluate(probe[:1])
    start = time.perf_counter()
    evaluate(probe[:k])
    per_point = (time.perf_counter() - start) / k
    seconds = per_point * points
    check_duration(
        f"{what} ({points} points)",
        seconds,
        hint=f"{format_seconds(per_point)} per point, timed on {k} points; use fewer points or examples",
        limit=_validate.MAX_SECONDS,  # read now, so that it can be lowered (tests, a site policy)
    )
    return seconds
