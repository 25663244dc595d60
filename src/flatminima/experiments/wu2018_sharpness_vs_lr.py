"""Wu, Ma & E 2018, Table 2: the sharpness of the minimum GD finds is at most 2/eta, and close to it.

GD on the MSE loss at several learning rates eta, each until the training loss is below the threshold (or the
step budget ends), then the sharpness a = lambda_max(H) at the final weights (Lanczos). Linear stability
(Thm 1 with B = n) allows GD to stay only at minima with a <= 2/eta; Table 2 shows GD lands close to the
sharpest stable minimum, a ~ 2/eta, except at very small eta (where the bound is far above the sharpness of
the minima near the initialisation). Diverged runs are shown as '-', as in the paper.

Default scale: digits n = 1000, MLP 64-128-128-10 with init ``uniform:2`` (measured: a / (2/eta) = 0.995,
0.975, 0.98 at eta = 0.5, 0.75, 1.0 for seed 0; with ``uniform:2.5`` the minima are sharper at small eta
but GD at eta >= 1 catapults out more often). eta = 1.0 sits at the edge of divergence on digits: whether it
diverges depends on rounding (thread count), and it is then shown as '-', like CIFAR10 at eta = 1 in Table 2.

Verdicts. Tolerances come from the paper's Table 2, whose FashionMNIST column is within 5 % of 2/eta for
eta >= 0.05 (39.3 / 40, 19.6 / 20, 3.9 / 4, 1.9 / 2, 0.4 / 0.4):

* ``a <= 2/eta`` within 5 % (GD at the edge of stability oscillates around the bound; Lanczos is exact to
  1e-4) for every run that reached a minimum.
* ``a ~ 2/eta`` within 5 %: at paper scale for eta >= 0.05 (the paper's statement: "except at very small
  eta"); on the embedded data, whose minima near the initialisation are flatter, for the learning rates whose
  bound 2/eta is below the sharpness reached at the smallest learning rate, i.e. where the stability
  constraint, not the initialisation, limits a.
* A run that stopped on the step budget above the loss threshold did not reach a minimum: it is reported as
  such and not judged. At paper scale a divergence (or collapse to a constant output) where the paper's GD
  converged is a failure; where the paper's GD diverged too ('-' in Table 2) it agrees.
* At paper scale a data column whose files are missing (e.g. CIFAR-10) is marked "no data"; the others run.
  ``--lrs`` / ``--seeds`` run part of the grid; the config records which cells were run.
"""

from __future__ import annotations

import math
from typing import Any

from ..report.figures import new_figure, save_figure
from ..runner import Sweep
from ._wu_common import (
    available_sets,
    check_scale,
    data_config,
    minimum_run,
    model_config,
    paper_run_settings,
    show_table,
)
from .base import ComparisonRow, Experiment, Findings, RunContext, register

#: Table 2 of the paper: eta -> (FashionMNIST mean, CIFAR10 mean); None = GD diverged.
PAPER_TABLE2: dict[float, tuple[float | None, float | None]] = {
    0.01: (53.5, 198.9),
    0.05: (39.3, 39.8),
    0.1: (19.6, 19.8),
    0.5: (3.9, 3.6),
    1.0: (1.9, None),
    5.0: (0.4, None),
}
LE_TOL = 0.05  # Table 2: within 5 % of 2/eta
CLOSE_TOL = 0.05
#: Table 2: "GD lands close to the sharpest stable minimum, a ~ 2/eta, except at very small eta" (>= 0.05).
PAPER_CLOSE_FROM = 0.05

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "sets": {"digits": (data_config("smoke", 200), model_config("smoke", (32, 32), "uniform:2"))},
        "lrs": [0.1, 0.5, 1.0, 4.0],
        "seeds": [0],
        "stop_loss": 2e-2,
        "max_steps": 1500,
    },
    "default": {
        "sets": {"digits": (data_config("default", 1000), model_config("default", init="uniform:2"))},
        "lrs": [0.05, 0.1, 0.2, 0.5, 0.75, 1.0, 2.0],
        "seeds": [0],
        "stop_loss": 1e-3,
        "max_steps": 3000,
    },
    "paper": {
        "sets": {
            "FashionMNIST": (data_config("paper", 1000), model_config("paper")),
            "CIFAR10": (
                data_config("paper", 1000, "cifar10", classes=[0, 1]),
                model_config("paper", paper_model="wu-vgg"),
            ),
        },
        "lrs": [0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        "seeds": [0, 1, 2, 3, 4],
        "stop_loss": 1e-4,
        "max_steps": 200_000,
        "resume_every": 500,
    },
}


def _trained(run: dict[str, Any]) -> bool:
    """A finished run whose training loss is not below half that of the best constant predictor did not find
    a minimum: GD at a too-large eta can catapult into a dead-ReLU network (constant output). Shown as '-'
    like a divergence (Table 2's dashes: "GD blows up with that learning rate")."""
    loss, constant = run.get("train_loss", math.nan), run.get("constant_loss", math.nan)
    return math.isfinite(loss) and not loss > 0.5 * constant


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite or len(finite) < len(values):  # any diverged seed -> '-' as in the paper
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))


def sharpness_rows(
    set_name: str, stats: dict[float, dict[str, Any]], column: int, paper_scale: bool, stop_loss: float
) -> list[ComparisonRow]:
    """The verdict rows for one data column (see the module docstring), from the per-lr summaries
    ``{lr: {"a", "status", "train_loss", ...}}``; ``column`` 0 = FashionMNIST, 1 = CIFAR10 in Table 2."""
    minima = [
        lr for lr in sorted(stats) if stats[lr]["status"] == "converged" and math.isfinite(stats[lr]["a"])
    ]
    reference = stats[minima[0]]["a"] if minima else math.nan  # sharpness at the smallest lr with a minimum
    rows = []
    for lr, st in stats.items():
        paper_pair = PAPER_TABLE2.get(lr)
        paper = None if paper_pair is None else paper_pair[column]
        paper_diverged = paper_pair is not None and paper is None
        paper_text: Any = "-" if paper_diverged else paper
        a, bound = st["a"], 2 / lr
        quantity = f"{set_name}: a at eta={lr:g}"
        if st["status"] in ("diverged", "collapsed"):
            if paper_scale and paper_pair is not None:
                relation = "'-' as in Table 2" if paper_diverged else "GD converged in Table 2"
                rows.append(
                    ComparisonRow(quantity, f"- ({st['status']})", paper_text, relation, paper_diverged)
                )
            else:
                rows.append(
                    ComparisonRow(quantity, "-", paper_text, f"'-' = GD {st['status']} (2/eta = {bound:.3g})")
                )
            continue
        if st["status"] != "converged":
            rows.append(
                ComparisonRow(
                    quantity,
                    a,
                    paper_text,
                    f"not a minimum: step budget ended at loss {st['train_loss']:.2g} > {stop_loss:g}",
                    None,
                )
            )
            continue
        rows.append(
            ComparisonRow(
                quantity, a, paper_text, f"<= 2/eta = {bound:.3g} (+{LE_TOL:.0%})", a <= bound * (1 + LE_TOL)
            )
        )
        close = lr >= PAPER_CLOSE_FROM if paper_scale else (bound < reference and lr != minima[0])
        if close:
            rows.append(
                ComparisonRow(
                    f"{set_name}: a / (2/eta) at eta={lr:g}",
                    a / bound,
                    None if paper is None else paper / bound,
                    f"≈ 1 (±{CLOSE_TOL:.0%}, Table 2's agreement)",
                    abs(a / bound - 1) <= CLOSE_TOL + 1e-9,  # Table 2's eta = 1 is 1.9 / 2: exactly 5 %
                )
            )
    return rows


@register
class WuSharpnessVsLr(Experiment):
    name = "wu2018-sharpness-vs-lr"
    title = "GD selects minima with sharpness a <= 2/eta, close to 2/eta"
    paper = "Wu, Ma & E 2018, Table 2"
    claim = (
        "a <= 2/eta for every learning rate; a ≈ 2/eta (±5%, Table 2) for eta >= 0.05 (paper scale) or "
        "wherever 2/eta is below the sharpness reached at the smallest eta (embedded data); '-' = GD diverged"
    )

    axes = ("lrs", "seeds")

    def compute(self, ctx: RunContext) -> Findings:
        spec = check_scale(ctx.scale, SCALES)
        lrs, seeds = ctx.pick("lrs", spec["lrs"]), ctx.pick("seeds", spec["seeds"])
        sets, missing = available_sets(spec["sets"], ctx)  # DataNotFoundError before any long work
        rows: list[ComparisonRow] = []
        table: list[list[Any]] = []
        per_set: dict[str, dict[str, Any]] = {}
        for set_name in missing:
            rows.append(
                ComparisonRow(f"{set_name}: a vs 2/eta", "no data", "Table 2", missing[set_name], None)
            )
        for set_name, (data_cfg, model_cfg) in sets.items():
            column = list(spec["sets"]).index(set_name)
            base = {
                "data": data_cfg,
                "model": model_cfg,
                "optimizer": "gd",
                "lr": lrs[0],
                "stop_loss": spec["stop_loss"],
                "max_steps": spec["max_steps"],
                "seed": ctx.seed,
                "measure_s": False,
            }
            base.update(paper_run_settings(spec, ctx))
            grid = {"lr": lrs, "seed": [ctx.seed + s for s in seeds]}
            store = ctx.run_sweep(
                Sweep(base, grid, name=f"{self.name}-{set_name}"), minimum_run, subdir=set_name
            )
            runs = store.table()
            curves = {}
            for rec in store.runs():
                if rec.config["seed"] == ctx.seed + seeds[0]:
                    points = store.metrics(rec.run_id, "train_loss")
                    curves[rec.config["lr"]] = ([p["step"] for p in points], [p["value"] for p in points])
            store.close()
            stats = self._summarise(runs, lrs)
            per_set[set_name] = {"stats": stats, "curves": curves}
            rows += self._rows(set_name, stats, column, ctx.scale == "paper", spec["stop_loss"])
            for lr, st in stats.items():
                table.append(
                    [
                        set_name,
                        lr,
                        st["status"],
                        st["steps"],
                        st["train_loss"],
                        st["test_acc"],
                        st["a"],
                        2 / lr,
                    ]
                )
        headers = ["data", "lr", "status", "steps", "final train loss", "test acc", "sharpness", "2/lr"]
        show_table(
            f"{self.name}: GD on MSE (loss < {spec['stop_loss']:g} or {spec['max_steps']} steps)",
            headers,
            table,
            ctx.out_dir / "table.md",
        )
        figures = [self._plot_sharpness(per_set, ctx), self._plot_curves(per_set, ctx, spec["stop_loss"])]
        config = {k: spec[k] for k in ("stop_loss", "max_steps")}
        config.update(lrs=lrs, seeds=seeds)
        config["sets"] = {k: {"data": d, "model": m} for k, (d, m) in spec["sets"].items()}
        config.update(le_tolerance=LE_TOL, close_tolerance=CLOSE_TOL, no_data=sorted(missing))
        return Findings(
            rows=rows,
            figures=figures,
            config=config,
            notes="GD sharpness vs learning rate; table.md holds the per-lr table.",
        )

    @staticmethod
    def _summarise(runs: list[dict[str, Any]], lrs: list[float]) -> dict[float, dict[str, Any]]:
        stats: dict[float, dict[str, Any]] = {}
        for lr in lrs:
            mine = [r for r in runs if r["lr"] == lr]
            collapsed = [r for r in mine if r.get("status") == "finished" and not _trained(r)]
            a, a_std = _mean_std([math.nan if r in collapsed else r.get("sharpness", math.nan) for r in mine])
            diverged = sum(r.get("status") != "finished" for r in mine)
            stats[lr] = {
                "a": a,
                "a_std": a_std,
                "status": "diverged"
                if diverged
                else "collapsed"
                if collapsed
                else ("converged" if all(r.get("reached") for r in mine) else "budget"),
                "steps": max(int(r.get("steps", 0)) for r in mine),
                "train_loss": max(float(r.get("train_loss", math.nan)) for r in mine),
                "test_acc": sum(float(r.get("test_acc", math.nan)) for r in mine) / len(mine),
            }
        return stats

    @staticmethod
    def _rows(
        set_name: str, stats: dict[float, dict[str, Any]], column: int, paper_scale: bool, stop_loss: float
    ) -> list[ComparisonRow]:
        return sharpness_rows(set_name, stats, column, paper_scale, stop_loss)

    @staticmethod
    def _plot_sharpness(per_set: dict[str, dict[str, Any]], ctx: RunContext) -> str:
        fig, ax = new_figure(width=4.6, height=3.4)
        all_lrs: list[float] = []
        for set_name, info in per_set.items():
            stats = info["stats"]
            ok = [lr for lr in stats if math.isfinite(stats[lr]["a"])]
            bad = [lr for lr in stats if not math.isfinite(stats[lr]["a"])]
            all_lrs += list(stats)
            line = ax.errorbar(
                ok,
                [stats[lr]["a"] for lr in ok],
                yerr=[stats[lr]["a_std"] for lr in ok],
                marker="o",
                capsize=3,
                label=f"{set_name}: GD sharpness",
            )
            if bad:
                ax.scatter(
                    bad,
                    [2 / lr for lr in bad],
                    marker="x",
                    color=line[0].get_color(),
                    zorder=3,
                    label=f"{set_name}: diverged",
                )
        lo, hi = min(all_lrs), max(all_lrs)
        grid = [lo * (hi / lo) ** (i / 50) for i in range(51)]
        ax.plot(grid, [2 / lr for lr in grid], "k--", label="2/eta (stability bound)")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="learning rate eta",
            ylabel="sharpness a = lambda_max(H)",
            title="Wu et al. 2018 Table 2: GD sharpness vs lr",
        )
        ax.legend()
        save_figure(fig, ctx.out_dir / "sharpness_vs_lr.png")
        return "sharpness_vs_lr.png"

    @staticmethod
    def _plot_curves(per_set: dict[str, dict[str, Any]], ctx: RunContext, stop_loss: float) -> str:
        fig, axes = new_figure(1, len(per_set), width=4.6, height=3.4, squeeze=False)
        for ax, (set_name, info) in zip(axes[0], per_set.items(), strict=True):
            for lr, (steps, values) in sorted(info["curves"].items()):
                if steps:
                    failed = not math.isfinite(info["stats"][lr]["a"])
                    ax.plot(steps, values, label=f"eta = {lr:g}" + (" (diverged)" if failed else ""))
            ax.axhline(stop_loss, color="k", ls=":", lw=1, label="loss threshold")
            ax.set(yscale="log", xlabel="GD step", ylabel="training loss (MSE)", title=f"{set_name}: GD")
            ax.legend()
        save_figure(fig, ctx.out_dir / "loss_curves.png")
        return "loss_curves.png"
