"""Theory III Figs. 16-17: functional margins and norms of nets trained to zero training error.

Three runs on the same data and architecture: natural labels, randomly scrambled labels, and natural labels
from a x10 initialisation (every parameter multiplied by 10). Per run: the training-set functional margins
f_y(x) - max_{j != y} f_j(x) (:func:`flatminima.generalization.functional_margins`; median reported), the
L2 norm of all weights and the fan-in l1 norms (Fig. 16).

Normalization: Fig. 17 plots the *raw* functional margins next to the L2 norm ("random labels has smaller
margin and larger l2 norm"; the text gives no normalization), so the verdict judges the raw median margin,
the paper's quantity. Raw margins of a ReLU net scale with the product of its layer norms
(f(W) = prod_k ||W_k|| f(V) without biases), so we also report the margin divided by the product of the
layers' Frobenius norms (the scale-free margin of Theory III's argument), without a verdict.
Checks (pure function :func:`margin_rows`): random labels -> smaller raw margin and larger L2 norm; x10 init
-> smaller raw margin and larger L2 norm; precondition: every run reaches training error <= 2 % (the
comparison is between nets that fit their training set; otherwise it is not judged).
Optimizer: Adam (lr 0.005, minibatches of 32) so that random labels are memorized in a short run (the
paper does not say how its Fig. 16-17 nets were trained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..generalization import fan_in_l1_norms, functional_margins, l2_norm
from ..runner import Sweep, run_dir
from ._chaudhari_common import bar_figure, check_data, load_data, load_trained, train_eval
from ._spread import gate, precondition_row
from ._theory2_common import paper_data
from .base import ComparisonRow, Experiment, Findings, RunContext, register

SETTINGS = {
    "smoke": {"data": {"name": "digits", "n_train": 200}, "widths": [64], "epochs": 150},
    "default": {"data": {"name": "digits", "n_train": 600}, "widths": [256], "epochs": 150},
    "paper": {"data": {"name": "cifar10", "n_train": 10000}, "widths": [512], "epochs": 200},
}
RUNS = {"natural x1": (0.0, 1.0), "random x1": (1.0, 1.0), "natural x10": (0.0, 10.0)}
MAX_TRAIN_ERROR = 0.02


def _measure(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        margin = float(functional_margins(model(x), labels).median())
    prod = float(
        np.prod(
            [float(p.detach().double().norm()) for k, p in model.named_parameters() if k.endswith("weight")]
        )
    )
    return {
        "margin": margin,
        "normalized_margin": margin / prod,
        "l2": l2_norm(model),
        "fan_in_l1": max(fan_in_l1_norms(model).values()),
    }


def _smaller_margin_larger_norm(
    label: str, names: tuple[str, str], a: dict[str, float], b: dict[str, float]
) -> list[ComparisonRow]:
    """The two checks of Theory III Fig. 17 for run ``a`` against run ``b``: a smaller raw median margin
    (judged) and a larger L2 norm (judged); the normalized margin is reported next to them."""
    return [
        ComparisonRow(
            f"{label}: median raw margin",
            [round(a["margin"], 4), round(b["margin"], 4)],
            "smaller",
            f"{names[0]} < {names[1]}",
            a["margin"] < b["margin"],
        ),
        ComparisonRow(
            f"{label}: normalized margin (margin / prod ||W_k||_F)",
            [f"{a['normalized_margin']:.3g}", f"{b['normalized_margin']:.3g}"],
            "(not in the paper)",
            f"reported: {names[0]} < {names[1]} is {a['normalized_margin'] < b['normalized_margin']}",
        ),
        ComparisonRow(
            f"{label}: L2 norm",
            [round(a["l2"], 2), round(b["l2"], 2)],
            "larger",
            f"{names[0]} > {names[1]}",
            a["l2"] > b["l2"],
        ),
    ]


def margin_rows(stats: dict[str, dict[str, float]], train_err: dict[str, float]) -> list[ComparisonRow]:
    """Verdict rows from the per-run measurements (``margin``, ``normalized_margin``, ``l2``) and training
    errors of the runs of RUNS (pure function)."""
    nat, rnd, big = stats["natural x1"], stats["random x1"], stats["natural x10"]
    ok = max(train_err.values()) <= MAX_TRAIN_ERROR
    rows = [
        ComparisonRow(
            f"{k}: median raw margin / normalized / L2 norm",
            [round(v["margin"], 3), f"{v['normalized_margin']:.3g}", round(v["l2"], 2)],
            "Fig. 17",
            "-",
        )
        for k, v in stats.items()
    ]
    rows.append(
        precondition_row(
            "every run fits its training set",
            [round(e, 3) for e in train_err.values()],
            "0 (100 % train)",
            f"training error <= {MAX_TRAIN_ERROR} (ours)",
            ok,
        )
    )
    judged = [
        *_smaller_margin_larger_norm("random vs natural", ("random", "natural"), rnd, nat),
        *_smaller_margin_larger_norm("x10 vs x1 init", ("x10", "x1"), big, nat),
    ]
    return rows + gate(judged, ok, "a run did not fit its training set")


def with_run(config: dict) -> dict:
    """The config with the label corruption and init scale of ``config["run"]`` (a key of RUNS)."""
    rl, scale = RUNS[config["run"]]
    return {
        **config,
        "data": {**config["data"], "random_labels": rl},
        "model": {**config["model"], "init_scale": scale},
    }


def margin_run(config: dict, run_dir: Path) -> dict:
    """Sweep run function: :func:`train_eval` of :func:`with_run` ``(config)``."""
    return train_eval(with_run(config), run_dir)


margin_run.resumable = True  # type: ignore[attr-defined]


@register
class Theory3Margins(Experiment):
    name = "theory3-margins"
    title = "Random labels and large init give smaller functional margins and larger norms"
    paper = "Poggio et al., Theory III, Figs. 16-17 (CIFAR-10)"
    claim = (
        "random labels -> smaller raw functional margin, larger L2 norm; x10 init -> smaller raw margin, "
        "larger L2 norm (margins normalized by the product of layer norms reported too)"
    )

    def compute(self, ctx: RunContext) -> Findings:
        s = SETTINGS[ctx.scale]
        s = {**s, "data": paper_data(ctx, s["data"])}
        check_data(s["data"])
        phase = {"optimizer": "adam", "lr": 0.005, "batch_size": 32, "max_epochs": s["epochs"]}
        base = {
            "data": s["data"],
            "model": {"name": "mlp", "widths": s["widths"], "seed": ctx.seed},
            "phases": [phase],
            "save": True,
            "seed": ctx.seed,
            "log_every": 1000,
        }
        sweep = Sweep(base, {"run": list(RUNS)}, name="margins")
        store = ctx.run_sweep(sweep, margin_run, subdir="runs")
        table = {r["run"]: r for r in store.table()}
        stats, train_err = {}, {}
        for point in sweep.expand():
            label = point.values["run"]
            config = with_run(point.config)
            data = load_data(config["data"])
            model = load_trained(config, run_dir(ctx.out_dir / "runs", point.run_id), data)
            stats[label] = _measure(model, data.train.x, data.train.labels)
            train_err[label] = table[label]["train_error"]
        store.close()
        rows = margin_rows(stats, train_err)
        figs = [
            bar_figure(
                ctx.out_dir / "raw_margins.png",
                list(stats),
                [v["margin"] for v in stats.values()],
                "median f_y(x) - max_j f_j(x)",
                "Raw functional margins (Fig. 17)",
            ),
            bar_figure(
                ctx.out_dir / "normalized_margins.png",
                list(stats),
                [v["normalized_margin"] for v in stats.values()],
                "median margin / prod ||W_k||_F",
                "Normalized functional margins",
            ),
            bar_figure(
                ctx.out_dir / "norms.png",
                list(stats),
                [v["l2"] for v in stats.values()],
                "||w||_2",
                "L2 norm of the weights",
            ),
        ]
        return Findings(
            rows=rows, figures=figs, config={"setting": s, "stats": stats, "train_error": train_err}
        )
