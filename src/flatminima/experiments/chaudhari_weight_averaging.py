"""Chaudhari's thesis, Fig. 5.1: averaging independently trained networks.

k nets trained from different initialisations (same data, SGD); test error of the output ensemble (mean of
softmax outputs), of the naive weight average, and of the average after layer-wise permutation alignment of
hidden units to the first net (:func:`flatminima.landscape.compare_averaging`). Thesis (six allcnn nets on
CIFAR-10): ensemble 7.84 %, aligned average 18.7 %, naive average 89.9 %. Checked (pure function
:func:`averaging_rows`): ensemble < aligned < naive, each gap larger than two binomial standard errors of a
difference of two error rates measured on the n_test test images, 2 sqrt((p1 (1 - p1) + p2 (1 - p2)) / n_test)
(the thesis's gaps are 11 and 71 points; a strict "<" alone would pass an alignment that does nothing and
lands a fraction of a point below the naive average by chance).
"""

from __future__ import annotations

import itertools
import math

from ..landscape import compare_averaging
from ..runner import Sweep, run_dir
from ._chaudhari_common import bar_figure, check_data, load_trained, train_eval
from ._theory2_common import paper_data
from .base import ComparisonRow, Experiment, Findings, RunContext, register

SETTINGS = {
    "smoke": {"data": {"name": "digits", "n_train": 400}, "widths": [32], "nets": 3, "epochs": 20},
    "default": {"data": {"name": "digits"}, "widths": [128], "nets": 6, "epochs": 40},
    "paper": {"data": {"name": "cifar10"}, "widths": [512, 512], "nets": 6, "epochs": 100},
}
PAPER = {"ensemble": 7.84, "aligned average": 18.7, "naive average": 89.9}


def averaging_rows(ours: dict[str, float], single: float, n_test: int) -> list[ComparisonRow]:
    """Verdict rows from the test errors (fractions) of ``ensemble``, ``aligned average`` and ``naive
    average``, the mean single-net error and the test-set size (pure function)."""
    rows = [
        ComparisonRow(f"{k} test error (%)", round(100 * v, 2), PAPER[k], "", None) for k, v in ours.items()
    ]
    rows.append(ComparisonRow("mean single-net test error (%)", round(100 * single, 2), "-", "reference"))
    names = list(ours)
    for lo, hi in itertools.pairwise(names):
        p1, p2 = ours[lo], ours[hi]
        margin = 2 * math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n_test)
        rows.append(
            ComparisonRow(
                f"{hi} - {lo} test error (pct. points)",
                round(100 * (p2 - p1), 2),
                round(PAPER[hi] - PAPER[lo], 2),
                f"> {100 * margin:.2f} (2 binomial SE of the difference, n_test = {n_test})",
                bool(p2 - p1 > margin),
            )
        )
    return rows


@register
class ChaudhariWeightAveraging(Experiment):
    name = "chaudhari-weight-averaging"
    title = "Ensembles beat permutation-aligned weight averages, which beat naive weight averages"
    paper = "Chaudhari 2018 (thesis), Fig. 5.1"
    claim = (
        "test error: output ensemble < aligned weight average < naive weight average, each gap beyond the "
        "test set's binomial noise"
    )

    def compute(self, ctx: RunContext) -> Findings:
        s = SETTINGS[ctx.scale]
        s = {**s, "data": paper_data(ctx, s["data"])}
        data = check_data(s["data"])
        phase = {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "momentum": 0.9, "max_epochs": s["epochs"]}
        base = {
            "data": s["data"],
            "model": {"name": "mlp", "widths": s["widths"]},
            "phases": [phase],
            "save": True,
            "log_every": 1000,
        }
        grid = {"model.seed": [ctx.seed + i for i in range(s["nets"])]}
        sweep = Sweep(base, grid, name="nets")
        store = ctx.run_sweep(sweep, train_eval, subdir="nets")
        models = [
            load_trained(p.config, run_dir(ctx.out_dir / "nets", p.run_id), data) for p in sweep.expand()
        ]
        store.close()
        res = compare_averaging(models, data.test.x, data.test.labels)
        ours = {
            "ensemble": res.ensemble,
            "aligned average": res.aligned_average,
            "naive average": res.naive_average,
        }
        rows = averaging_rows(ours, sum(res.individual) / len(models), len(data.test.x))
        fig = bar_figure(
            ctx.out_dir / "averaging.png",
            list(ours),
            [100 * v for v in ours.values()],
            "test error (%)",
            f"{len(models)} independently trained nets",
            paper=list(PAPER.values()),
        )
        return Findings(rows=rows, figures=[fig], config={"setting": s, "individual": res.individual})
