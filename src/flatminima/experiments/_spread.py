"""Verdict rules whose tolerance comes from a seed-to-seed spread (issue 11, "verdicts that can fail").

A paper's "comparable", "better" or "larger" is judged against the noise of the measurement, never against a
fixed number of points chosen after seeing our results. Every rule here takes the per-seed values of two
methods (summarized as :class:`Spread`: mean, sample std with ddof = 1, number of seeds) and uses

    tol = k * sqrt(s_a^2 + s_b^2),   k = 2,

two standard deviations of the difference between one run of A and one run of B (independent runs; the
seed-to-seed std of each method estimated from its seeds), floored at ``resolution`` (for test errors one test
example, 1 / n_test: a smaller tolerance cannot be measured). The same rule applied to a paper's own
"mean +- std" numbers reproduces the paper's verdicts (tested: Table 3.1 comparable, Table 5.1 better,
Table 4.1 lenet's HEAT not comparable). A rule needs at least two seeds per method; with fewer it gives no
verdict (``holds`` None) and says so.

* :func:`no_worse_row` — "comparable or better": mean(A) - mean(B) <= tol (lower is better).
* :func:`comparable_row` — "comparable" (two-sided): |mean(A) - mean(B)| <= tol.
* :func:`margin_row` — "A larger than B by more than the spread": mean(A) - mean(B) > tol (for errors, pass
  the worse method as A: "Parle better than SGD" is margin_row(SGD, Parle)).
* :func:`sign_row` — "slightly better" (paired by seed): mean(A_s - B_s) < 0 and A_s < B_s for more than
  half of the seeds. This fails when the two methods coincide (a feature switched off gives differences 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import ComparisonRow

K = 2.0
MIN_SEEDS = 2


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (ddof = 1; nan with one value) and count of per-seed values."""

    mean: float
    std: float
    n: int

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        """``"mean ± std (n seeds)"`` in display units (``scale`` x the value)."""
        std = "nan" if math.isnan(self.std) else f"{scale * self.std:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {std} ({self.n} seed{'s' if self.n != 1 else ''})"


def spread(values: Sequence[float]) -> Spread:
    """:class:`Spread` of ``values`` (finite numbers; nan entries are an error of the caller)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return Spread(math.nan, math.nan, 0)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return Spread(mean, std, n)


def tolerance(a: Spread, b: Spread, resolution: float = 0.0, k: float = K) -> float | None:
    """k sqrt(s_a^2 + s_b^2), at least ``resolution``; None when a method has fewer than two seeds."""
    if a.n < MIN_SEEDS or b.n < MIN_SEEDS:
        return None
    return max(k * math.hypot(a.std, b.std), resolution)


def _source(a: Spread, b: Spread, resolution: float, scale: float, unit: str) -> str:
    floor = f", floor {scale * resolution:.3g}" if resolution else ""
    return f"{unit}; tol = 2 x std of a run-to-run difference, {a.n} / {b.n} seeds{floor}"


def _row(
    quantity: str,
    a: Spread,
    b: Spread,
    paper: Any,
    names: tuple[str, str],
    resolution: float,
    scale: float,
    unit: str,
    form: str,
    check: Any,
) -> ComparisonRow:
    """Row with ``ours`` = scale (mean(a) - mean(b)); ``form`` is the relation with ``{d}`` for the
    difference and ``{t}`` for the tolerance."""
    tol = tolerance(a, b, resolution)
    diff = a.mean - b.mean
    ours = round(scale * diff, 4)
    lhs = form.format(d=f"{names[0]} - {names[1]}", t="tol")
    if tol is None:
        return ComparisonRow(quantity, ours, paper, f"{lhs}: needs >= {MIN_SEEDS} seeds per method", None)
    text = form.format(d=f"{names[0]} - {names[1]}", t=f"{scale * tol:.3g}")
    return ComparisonRow(
        quantity, ours, paper, f"{text} ({_source(a, b, resolution, scale, unit)})", bool(check(diff, tol))
    )


def _rule(form: str, check: Any, doc: str) -> Any:
    """A row function for the relation ``form`` ({d}: the difference of means, {t}: the tolerance)."""

    def rule(
        quantity: str,
        a: Spread,
        b: Spread,
        paper: Any,
        names: tuple[str, str] = ("A", "B"),
        resolution: float = 0.0,
        scale: float = 100.0,
        unit: str = "pct. points",
    ) -> ComparisonRow:
        return _row(quantity, a, b, paper, names, resolution, scale, unit, form, check)

    rule.__doc__ = doc
    return rule


no_worse_row = _rule(
    "{d} <= {t}",
    lambda d, t: d <= t,
    """Row "A comparable to or better than B" for a lower-is-better quantity: mean(A) - mean(B) <= tol.""",
)
comparable_row = _rule(
    "|{d}| <= {t}",
    lambda d, t: abs(d) <= t,
    """Row "A comparable to B" (two-sided): |mean(A) - mean(B)| <= tol.""",
)
margin_row = _rule(
    "{d} > {t}",
    lambda d, t: d > t,
    """Row "A exceeds B by more than the seed spread": mean(A) - mean(B) > tol.""",
)


def sign_row(
    quantity: str,
    a: Sequence[float],
    b: Sequence[float],
    paper: Any,
    names: tuple[str, str] = ("A", "B"),
    scale: float = 100.0,
) -> ComparisonRow:
    """Row "A slightly lower than B", paired by seed: mean(A_s - B_s) < 0 and A_s < B_s for most seeds."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    lower = sum(d < 0 for d in diffs)
    mean = sum(diffs) / len(diffs) if diffs else math.nan
    relation = (
        f"mean({names[0]} - {names[1]}) < 0 and {names[0]} lower in more than half of the seeds "
        f"({lower}/{len(diffs)} lower)"
    )
    if len(diffs) < MIN_SEEDS:
        return ComparisonRow(quantity, round(scale * mean, 4), paper, relation + f"; needs >= {MIN_SEEDS}")
    return ComparisonRow(
        quantity, round(scale * mean, 4), paper, relation, bool(mean < 0 and 2 * lower > len(diffs))
    )


def precondition_row(quantity: str, ours: Any, paper: Any, relation: str, holds: bool) -> ComparisonRow:
    """A row stating that the comparison's premise holds (e.g. minima reached the stop loss); when it does
    not, the experiment's verdict is "precondition failed" (the row's ``holds`` is False)."""
    return ComparisonRow(f"precondition: {quantity}", ours, paper, relation, bool(holds))


def gate(rows: list[ComparisonRow], ok: bool, why: str = "precondition failed") -> list[ComparisonRow]:
    """``rows`` unchanged if ``ok``; otherwise the same rows without a verdict ("not judged: ``why``"), so a
    comparison whose premise failed can never pass (the failed precondition row carries the verdict)."""
    if ok:
        return rows
    return [
        ComparisonRow(r.quantity, r.ours, r.paper, f"{r.relation} — not judged: {why}", None) for r in rows
    ]
