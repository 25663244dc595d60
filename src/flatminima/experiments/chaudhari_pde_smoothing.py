"""Chaudhari's thesis, Table 4.1: PDE-smoothing optimizers (Entropy-SGD = viscous HJ, HEAT, non-viscous HJ)
and SGD reach comparable error at comparable effective epochs.

Relation checked: every method's test error is within ``tol`` percentage points of the best one (thesis,
mnistfc: 1.08 / 1.13 / 1.17 / 1.10 %, a spread of 0.09 points). ``tol`` as in
:mod:`.chaudhari_entropy_sgd` (binomial noise of our small test sets). Hyper-parameters:
:func:`._chaudhari_common.method_phase`.
"""

from __future__ import annotations

from ._chaudhari_common import bar_figure, comparable_row, compare_methods
from .base import Experiment, Findings, RunContext, register
from .chaudhari_entropy_sgd import SETTINGS

METHODS = ["Entropy-SGD", "HEAT", "HJ", "SGD"]
PAPER = {
    "Entropy-SGD": "1.08 +- 0.02 % @120",
    "HEAT": "1.13 +- 0.02 % @200",
    "HJ": "1.17 +- 0.04 % @200",
    "SGD": "1.10 +- 0.01 % @194",
}


@register
class ChaudhariPDESmoothing(Experiment):
    name = "chaudhari-pde-smoothing"
    title = "Entropy-SGD, HEAT, HJ and SGD reach comparable errors"
    paper = "Chaudhari 2018 (thesis), Table 4.1 (mnistfc)"
    claim = "all four methods' test errors within a tolerance of the best at comparable effective epochs"

    def compute(self, ctx: RunContext) -> Findings:
        s = SETTINGS[ctx.scale]
        res = compare_methods(ctx, s, METHODS, "runs")
        best = min(r["test_error"] for r in res.values())
        rows = [
            comparable_row(f"{m} test error (%)", res[m]["test_error"], best, PAPER[m], s["tol"])
            for m in METHODS
        ]
        fig = bar_figure(
            ctx.out_dir / "errors.png",
            METHODS,
            [100 * res[m]["test_error"] for m in METHODS],
            "test error (%)",
            "PDE smoothing (equal effective epochs)",
        )
        return Findings(rows=rows, figures=[fig], config={"setting": s, "results": res})
