"""Chaudhari's thesis, Table 3.1 / Sec. 3.3.2: Entropy-SGD vs the Adam baseline at comparable effective
epochs (epochs x L) on MNIST.

Relation checked (thesis: "Entropy-SGD obtains a comparable generalization error", mnistfc 1.37 +- 0.03 % vs
1.39 +- 0.03 %, lenet 0.50 +- 0.01 % vs 0.51 +- 0.01 %): Entropy-SGD's mean test error over seeds is at most
the baseline's plus two standard deviations of a run-to-run difference, estimated from our seeds
(:func:`._spread.no_worse_row`; floor one test example). The thesis's own numbers pass this rule (tested); a
fixed allowance of 1.5 points, as before, would also pass an Entropy-SGD that lost most of its accuracy.
Precondition: the baseline learned (test error below half of chance).

Scales: ``smoke`` / ``default`` use protocol ``small`` (:func:`._chaudhari_common.method_phases`: our
hyper-parameters for small MLPs on the embedded digits, Adam lr 1e-3 as the baseline); ``paper`` follows
Sec. 3.3.2 (protocol ``thesis-3.3.2``: Adam 100 epochs with lr 1e-3 / 5 every 30; Entropy-SGD L = 20 for 5
epochs, SGLD step 0.1, outer lr 1 -> 0.1 after 2 epochs, Nesterov 0.9, beta^{-1} = 1e-6, scope 1e4 shrinking
by 1.001 per update, reduced dropout) on both MNIST rows of Table 3.1: mnistfc (2 x 1024, dropout 0.5, BN)
and lenet with BN (``reproduce --only model=mnistfc`` runs one), five seeds as the thesis's "5 independent
runs" (``--seeds 0,1`` runs two), resumable.

Decision (mnistfc with BN): Sec. 3.3.2 names BN for lenet only, but its mnistfc is the public Entropy-SGD
code's (BN after each hidden fc layer) and Sec. 4.6.2's (with BN). Without BN the
thesis's outer step (lr 1 with Nesterov 0.9, about ten times x - <y> once the momentum builds up) grows the
weight norm linearly (10x in 55 outer steps) and drove mnistfc on Fashion-MNIST to chance (train loss
ln 10, accuracy 10 %) by the end of the second outer epoch (measured 2026-12-01); BN makes the net
invariant to that growth, and the same steps train it (87.8 % training accuracy after 55 outer steps).
"""

from __future__ import annotations

from typing import Any

from ._chaudhari_common import (
    MethodRuns,
    bar_figure,
    compare_methods,
    learned_row,
    method_rows,
    resolve_setting,
    versus_rows,
)
from ._spread import no_worse_row
from .base import ComparisonRow, Experiment, Findings, RunContext, register

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": {"name": "digits", "n_train": 300},
        "model": {"name": "mlp", "widths": [32]},
        "epochs": 10,
        "batch_size": 32,
        "seeds": [0, 1],
        "protocol": "small",
    },
    "default": {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "widths": [128]},
        "epochs": 30,
        "batch_size": 32,
        "seeds": [0, 1, 2, 3, 4],
        "protocol": "small",
    },
    "paper": {
        "data": {"name": "mnist"},
        "model": {"name": "mnistfc", "bn": True, "input_dropout": 0.0},
        "models": {
            "mnistfc": {"name": "mnistfc", "bn": True, "input_dropout": 0.0},
            "lenet": {"name": "lenet"},
        },
        "epochs": 100,
        "batch_size": 128,
        "seeds": [0, 1, 2, 3, 4],
        "protocol": "thesis-3.3.2",
        "resume_every": 200,
    },
}
BASELINE = "Adam"
METHODS = ["Entropy-SGD", BASELINE]
PAPER = {
    "mnistfc": {
        "Entropy-SGD": "1.37 ± 0.03 % @120",
        "Adam": "1.39 ± 0.03 % @66",
        "diff": "-0.02: comparable",
    },
    "lenet": {"Entropy-SGD": "0.50 ± 0.01 % @80", "Adam": "0.51 ± 0.01 % @100", "diff": "-0.01: comparable"},
}
PAPER["mlp"] = {k: f"{PAPER['mnistfc'][k]} (mnistfc); {PAPER['lenet'][k]} (lenet)" for k in PAPER["lenet"]}


def entropy_sgd_rows(
    res: dict[str, MethodRuns], n_test: int, classes: int, model: str = "mlp", prefix: str = ""
) -> list[ComparisonRow]:
    """The verdict rows of Table 3.1 from the per-seed test errors (pure function of the measurements);
    ``model`` picks the thesis's row (mnistfc, lenet; ``mlp``: both), ``prefix`` labels the rows."""
    paper = PAPER.get(model, PAPER["mlp"])
    rows = [*method_rows(res, paper), learned_row(res[BASELINE], BASELINE, classes)]
    rows += versus_rows(
        res, [("Entropy-SGD", BASELINE)], no_worse_row, {"Entropy-SGD": paper["diff"]}, n_test
    )
    for r in rows:
        r.quantity = prefix + r.quantity
    return rows


@register
class ChaudhariEntropySGD(Experiment):
    name = "chaudhari-entropy-sgd"
    title = "Entropy-SGD matches the Adam baseline at comparable effective epochs"
    paper = "Chaudhari 2018 (thesis), Table 3.1 / Sec. 3.3.2 (MNIST mnistfc / lenet)"
    claim = (
        "Entropy-SGD test error <= Adam's + 2 x std of a run-to-run difference (our seeds), at the same "
        "number of effective epochs"
    )

    axes = ("seeds", "model")

    def compute(self, ctx: RunContext) -> Findings:
        s = resolve_setting(ctx, SETTINGS[ctx.scale])
        models = s.get("models") or {s["model"]["name"]: s["model"]}
        rows, figures, results = [], [], {}
        for key in ctx.pick("model", list(models)):
            res, data = compare_methods(ctx, {**s, "model": models[key]}, METHODS, f"runs-{key}")
            prefix = f"{key}: " if len(models) > 1 else ""
            rows += entropy_sgd_rows(res, len(data.test.x), data.num_classes, key, prefix)
            results[key] = {m: r.summary() for m, r in res.items()}
            figures.append(
                bar_figure(
                    ctx.out_dir / f"errors-{key}.png",
                    list(res),
                    [100 * r.test_spread.mean for r in res.values()],
                    "test error (%)",
                    f"Entropy-SGD vs Adam, {key} (equal effective epochs)",
                )
            )
        rows.append(ComparisonRow("effective epochs (both)", s["epochs"], "120 vs 66; 80 vs 100", "equal"))
        return Findings(rows=rows, figures=figures, config={"setting": s, "results": results})
