"""Wu, Ma & E 2018, Fig. 5: smaller batches select minima of lower non-uniformity (and lower sharpness).

SGD at a fixed learning rate eta with several batch sizes B (B = n is GD), each run to a minimum; then the
non-uniformity s = sqrt(lambda_max(Sigma)) and the sharpness a. Linear stability (eq. 9) allows SGD to stay
only where s <= (1/eta) sqrt(B (n-1)/(n-B)) (about sqrt(B)/eta for B << n), so s must fall as B falls; the
paper also observes a falling with B (Fig. 5b, "not explained directly by our theory").

Verdicts: s <= the eq. 9 bound for every B < n (within 5 %); s and a at the smallest B below their GD values;
Spearman rank correlation of B with s (and with a) positive ("both fall as B falls"). Paper (CIFAR-10,
eta = 0.01): GD s ~ 350, B = 4 s ~ 100 (bound 200).
"""

from __future__ import annotations

import math
from typing import Any

from ..report.figures import new_figure, save_figure
from ..runner import Sweep
from ._wu_common import (
    check_scale,
    data_config,
    load_dataset,
    minimum_run,
    model_config,
    show_table,
    spearman,
)
from .base import ComparisonRow, Experiment, Findings, RunContext, register

TOL = 0.05
SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "n": 150,
        "widths": (32, 32),
        "init": "uniform:2",
        "lr": 0.5,
        "batches": [4, 15, 150],
        "seeds": [0],
        "stop_loss": 4e-3,
        "max_epochs": 1200,
        "paper_data": None,
    },
    "default": {
        "n": 1000,
        "widths": (128, 128),
        "init": "uniform:2",
        "lr": 0.5,
        "batches": [4, 16, 64, 250, 1000],
        "seeds": [0, 1],
        "stop_loss": 1e-3,
        "max_epochs": 3000,
        "paper_data": None,
    },
    "paper": {
        "n": 1000,
        "widths": None,
        "init": "default",
        "lr": 0.01,
        "batches": [4, 10, 25, 100, 1000],
        "seeds": [0, 1, 2, 3, 4],
        "stop_loss": 1e-4,
        "max_epochs": 100_000,
        "paper_data": "cifar10",
        "resume_every": 500,
    },
}


def bound_s(lr: float, batch: int, n: int) -> float:
    """Eq. 9: s <= (1/eta) sqrt(B (n-1) / (n-B)); inf for GD (B = n)."""
    return math.inf if batch >= n else math.sqrt(batch * (n - 1) / (n - batch)) / lr


@register
class WuNonUniformityVsBatch(Experiment):
    name = "wu2018-nonuniformity-vs-batch"
    title = "Smaller batches select minima of lower non-uniformity and sharpness"
    paper = "Wu, Ma & E 2018, Fig. 5"
    claim = "s <= (1/eta) sqrt(B(n-1)/(n-B)); s and a both fall as the batch size B falls (B = n is GD)"

    axes = ("batches", "seeds")

    def compute(self, ctx: RunContext) -> Findings:
        spec = dict(check_scale(ctx.scale, SCALES))
        spec.update(batches=ctx.pick("batches", spec["batches"]), seeds=ctx.pick("seeds", spec["seeds"]))
        extra = {"classes": [0, 1]} if spec["paper_data"] == "cifar10" else {}
        data_cfg = data_config(ctx.scale, spec["n"], spec["paper_data"], **extra)
        load_dataset(data_cfg, 0)
        model_cfg = (
            model_config("paper", paper_model="wu-vgg")
            if ctx.scale == "paper"
            else model_config(ctx.scale, spec["widths"], spec["init"])
        )
        n, lr = spec["n"], spec["lr"]
        base = {
            "data": data_cfg,
            "model": model_cfg,
            "optimizer": "sgd",
            "lr": lr,
            "batch_size": n,
            "stop_loss": spec["stop_loss"],
            "max_epochs": spec["max_epochs"],
            "seed": ctx.seed,
            "measure_s": True,
        }
        if spec.get("resume_every"):
            base["resume_every"] = spec["resume_every"]
        grid = {"batch_size": spec["batches"], "seed": [ctx.seed + s for s in spec["seeds"]]}
        store = ctx.run_sweep(Sweep(base, grid, name=self.name), minimum_run)
        runs = store.table()
        store.close()
        stats = {}
        for b in spec["batches"]:
            mine = [r for r in runs if r["batch_size"] == b and r.get("status") == "finished"]
            stats[b] = {
                "s": _mean([r["non_uniformity"] for r in mine]),
                "a": _mean([r["sharpness"] for r in mine]),
                "loss": max((r["train_loss"] for r in mine), default=math.nan),
                "acc": _mean([r["test_acc"] for r in mine]),
                "runs": len(mine),
            }
        rows = []
        for b, st in stats.items():
            bound = bound_s(lr, b, n)
            if b < n:
                rows.append(
                    ComparisonRow(
                        f"s at B={b}",
                        st["s"],
                        None,
                        f"<= {bound:.3g} (eq. 9, +{TOL:.0%})",
                        bool(st["s"] <= bound * (1 + TOL)) if math.isfinite(st["s"]) else False,
                    )
                )
        finished = [r for r in runs if r.get("status") == "finished"]
        rho_s = spearman([r["batch_size"] for r in finished], [r["non_uniformity"] for r in finished])
        rho_a = spearman([r["batch_size"] for r in finished], [r["sharpness"] for r in finished])
        small, full = min(stats), max(stats)
        rows += [
            ComparisonRow(
                f"s(B={small}) / s(B={full})",
                stats[small]["s"] / stats[full]["s"],
                100 / 350 if ctx.scale == "paper" else None,
                "< 1",
                stats[small]["s"] < stats[full]["s"],
            ),
            ComparisonRow(
                f"a(B={small}) / a(B={full})",
                stats[small]["a"] / stats[full]["a"],
                None,
                "< 1",
                stats[small]["a"] < stats[full]["a"],
            ),
            ComparisonRow("Spearman(B, s)", rho_s, None, "> 0 (s falls with B)", rho_s > 0),
            ComparisonRow("Spearman(B, a)", rho_a, None, "> 0 (a falls with B)", rho_a > 0),
        ]
        table = [
            [b, st["runs"], st["loss"], st["acc"], st["a"], 2 / lr, st["s"], bound_s(lr, b, n)]
            for b, st in stats.items()
        ]
        show_table(
            f"{self.name}: SGD eta={lr:g}, n={n}",
            ["B", "runs", "max train loss", "test acc", "a", "2/eta", "s", "s bound"],
            table,
            ctx.out_dir / "table.md",
        )
        figure = self._plot(stats, lr, n, ctx)
        config = {**{k: v for k, v in spec.items() if k != "widths"}, "data": data_cfg, "model": model_cfg}
        return Findings(rows=rows, figures=[figure], config=config)

    @staticmethod
    def _plot(stats: dict[int, dict[str, Any]], lr: float, n: int, ctx: RunContext) -> str:
        fig, (ax_s, ax_a) = new_figure(1, 2, width=4.0, height=3.2)
        bs = sorted(stats)
        ax_s.plot(bs, [stats[b]["s"] for b in bs], "o-", label="non-uniformity s")
        inner = [b for b in bs if b < n]
        ax_s.plot(inner, [bound_s(lr, b, n) for b in inner], "k--", label="eq. 9 bound")
        ax_a.plot(bs, [stats[b]["a"] for b in bs], "o-", label="sharpness a")
        ax_a.axhline(2 / lr, color="k", ls="--", label="2/eta")
        for ax, label in ((ax_s, "non-uniformity s"), (ax_a, "sharpness a")):
            ax.set(xscale="log", xlabel="batch size B (B = n: GD)", ylabel=label, title=f"SGD eta = {lr:g}")
            ax.legend()
        save_figure(fig, ctx.out_dir / "nonuniformity_vs_batch.png")
        return "nonuniformity_vs_batch.png"


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
