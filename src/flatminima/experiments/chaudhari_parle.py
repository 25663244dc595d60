"""Chaudhari's thesis, Table 5.1: Parle vs Elastic-SGD vs Entropy-SGD vs SGD (n replicas).

Relation checked: Parle's test error <= the best of the other three + ``tol`` percentage points (thesis,
MNIST LeNet, n = 6: 0.44 / 0.48 / 0.49 / 0.50 %). We use n = 3 replicas (2 CPU cores); replica methods run
the same number of epochs *per replica* as the single-replica ones (:func:`._chaudhari_common.method_phase`).
"""

from __future__ import annotations

from ._chaudhari_common import bar_figure, comparable_row, compare_methods
from .base import Experiment, Findings, RunContext, register
from .chaudhari_entropy_sgd import SETTINGS

METHODS = ["Parle", "Elastic-SGD", "Entropy-SGD", "SGD"]
PAPER = {
    "Parle": "0.44 +- 0.01 %",
    "Elastic-SGD": "0.48 +- 0.01 %",
    "Entropy-SGD": "0.49 +- 0.01 %",
    "SGD": "0.50 +- 0.01 %",
}


@register
class ChaudhariParle(Experiment):
    name = "chaudhari-parle"
    title = "Parle is comparable to or better than Elastic-SGD, Entropy-SGD and SGD"
    paper = "Chaudhari 2018 (thesis), Table 5.1 (MNIST LeNet, n = 6 replicas)"
    claim = "Parle test error <= min(Elastic-SGD, Entropy-SGD, SGD) + tolerance"

    def compute(self, ctx: RunContext) -> Findings:
        s = {**SETTINGS[ctx.scale], "replicas": 3}
        res = compare_methods(ctx, s, METHODS, "runs")
        best_other = min(res[m]["test_error"] for m in METHODS[1:])
        rows = [
            comparable_row(
                "Parle test error (%)", res["Parle"]["test_error"], best_other, PAPER["Parle"], s["tol"]
            )
        ]
        rows += [
            comparable_row(f"{m} test error (%)", res[m]["test_error"], res[m]["test_error"], PAPER[m], 0.0)
            for m in METHODS[1:]
        ]
        for r in rows[1:]:
            r.relation, r.holds = "reference", None
        fig = bar_figure(
            ctx.out_dir / "errors.png",
            METHODS,
            [100 * res[m]["test_error"] for m in METHODS],
            "test error (%)",
            f"Parle vs baselines (n = {s['replicas']} replicas)",
        )
        return Findings(rows=rows, figures=[fig], config={"setting": s, "results": res})
