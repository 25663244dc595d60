"""Wu, Ma & E 2018, Table 3 / Fig. 8: the linear stability test predicts which optimizers escape a GD minimum.

GD with learning rate eta0 is run to a minimum of a clean and of a corrupted training set (the same examples
plus ``extra_random`` examples with random labels). From each minimum, continuations are run: GD at larger
learning rates and SGD at eta0 with small and large batch sizes. BEFORE each continuation the stability test
of Thm 1 (eq. 8) is evaluated at the minimum for that (eta, B) and its verdict recorded and printed; THEN the
continuation runs and we record whether it escaped (loss burst, sharpness drop or divergence; see
``_wu_common.escape_verdict``) and how far it moved. Two claims are checked for every continuation:
prediction == outcome (stable <=> stays), and outcome == the paper's (Sec. 4.4 / Fig. 8: GD at 3 and 5 eta0
and SGD with B = 1, 4 escape from both minima; SGD with B = 100 stays on the corrupted set; the paper does not
say what B = 100 does on the clean set, so that row has no paper verdict). The figure shows training loss,
sharpness and test accuracy vs iteration.

Scales: ``paper`` is the paper's setting (FashionMNIST n = 1000 (+200 random labels), wu-fnn, GD eta0 = 0.1;
GD 0.3, 0.5; SGD eta 0.1 with B = 1, 4, 100; resumable runs). ``default`` uses digits n = 500 (+100 random
labels) and an MLP with eta0 = 0.5 (digits minima are flatter than FashionMNIST ones, so a larger eta0 puts
the start at the edge of stability a ~ 2/eta0, as in the paper's Table 3 where a = 19.7 ~ 2/0.1); the
continuations scale with it: GD at 2 eta0 and 3 eta0 (5 eta0 simply diverges on digits), SGD at eta0 with
B = 1, 4 and n/5 (the paper's 100 of 1000). Diverged continuations count as escapes; the figure clips their
blow-up.
"""

from __future__ import annotations

import math
from typing import Any

from ..report.figures import new_figure, save_figure
from ..runner import Sweep, run_dir
from ._wu_common import (
    cell,
    check_scale,
    data_config,
    load_dataset,
    minimum_run,
    model_config,
    paper_run_settings,
    run_continuations,
    show_table,
)
from .base import ComparisonRow, Experiment, Findings, RunContext, register

#: Table 3 (start minima) and Fig. 8 outcomes for the paper's continuations.
PAPER_START = {
    "clean": {"test_acc": 0.8004, "a": 19.7, "s": 45.2},
    "corrupted": {"test_acc": 0.7144, "a": 19.9, "s": 51.7},
}
#: Sec. 4.4 / Fig. 8: does the continuation escape (True), stay (False), or is it not stated (None)?
#: "GD with learning rate 0.3, 0.5 will escape"; SGD "eta = 0.1, B = 1 and ... B = 4" escape from both minima;
#: "In the corrupted FashionMNIST experiments ... SGD with eta = 0.1, B = 100 fails to escape".
PAPER_ESCAPES: dict[str, dict[str, bool | None]] = {
    "gd": {"clean": True, "corrupted": True},
    "sgd-1": {"clean": True, "corrupted": True},
    "sgd-4": {"clean": True, "corrupted": True},
    "sgd-large": {"clean": None, "corrupted": False},
}


def paper_outcome(key: str, set_name: str) -> bool | None:
    """Whether the paper's continuation ``key`` escaped from the ``set_name`` minimum (None: not stated)."""
    return PAPER_ESCAPES.get(key, {}).get(set_name)


def outcome_rows(outcome: dict[str, Any]) -> list[ComparisonRow]:
    """Two verdicts per continuation: the eq. 8 prediction (computed before it ran) matches what happened,
    and what happened matches the paper's outcome (Table 3 / Fig. 8; no verdict where the paper is silent)."""
    predicted = "stable" if outcome["predicted_stable"] else "unstable"
    ours = f"escaped ({outcome['reason']})" if outcome["escaped"] else outcome["reason"]
    expected = paper_outcome(outcome["key"], outcome["set"])
    paper_text = {True: "escapes", False: "stays", None: "not stated"}[expected]
    return [
        ComparisonRow(
            f"{outcome['set']}: {outcome['label']} (pred. {predicted})",
            ours,
            paper_text,
            "stable <=> stays (eq. 8 predicted before running)",
            bool(outcome["predicted_stable"]) != bool(outcome["escaped"]),
        ),
        ComparisonRow(
            f"{outcome['set']}: {outcome['label']} vs the paper",
            "escaped" if outcome["escaped"] else "stayed",
            paper_text,
            "the paper's outcome (Sec. 4.4, Fig. 8)",
            None if expected is None else bool(outcome["escaped"]) == expected,
        ),
    ]


def _continuations(
    eta0: float, n: int, gd_factors: tuple[float, ...], large: int | None = None
) -> list[dict[str, Any]]:
    """GD at ``gd_factors`` x eta0; SGD at eta0 with B = 1, 4 and ``large`` (default n/5) (paper: GD 0.3, 0.5
    from eta0 = 0.1; SGD B = 1, 4, 100 of 1000)."""
    large = large or max(8, n // 5)
    gd = [
        {"label": f"GD eta={f * eta0:g}", "lr": f * eta0, "batch_size": None, "key": "gd"} for f in gd_factors
    ]
    return [
        *gd,
        {"label": f"SGD eta={eta0:g} B=1", "lr": eta0, "batch_size": 1, "key": "sgd-1"},
        {"label": f"SGD eta={eta0:g} B=4", "lr": eta0, "batch_size": 4, "key": "sgd-4"},
        {"label": f"SGD eta={eta0:g} B={large}", "lr": eta0, "batch_size": large, "key": "sgd-large"},
    ]


SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "n": 150,
        "extra": 30,
        "widths": (32, 32),
        "eta0": 0.5,
        "stop_loss": 2e-3,
        "max_steps": 1500,
        "steps": 300,
        "probe_every": 30,
        "paper_data": None,
        "gd_factors": (2, 3),
    },
    "default": {
        "n": 500,
        "extra": 100,
        "widths": (128, 128),
        "eta0": 0.5,
        "stop_loss": 1e-3,
        "max_steps": 5000,
        "steps": 1000,
        "probe_every": 50,
        "paper_data": None,
        "gd_factors": (2, 3),
    },
    "paper": {
        "n": 1000,
        "extra": 200,
        "widths": None,
        "eta0": 0.1,
        "stop_loss": 1e-4,
        "max_steps": 200_000,
        "steps": 3000,
        "probe_every": 100,
        "paper_data": "fashion-mnist",
        "gd_factors": (3, 5),
        "large_batch": 100,
        "resume_every": 500,
    },
}


@register
class WuEscape(Experiment):
    name = "wu2018-escape"
    title = "The linear stability test predicts escape from a GD minimum"
    paper = "Wu, Ma & E 2018, Table 3 / Fig. 8"
    claim = (
        "from a GD minimum, an optimizer (eta, B) escapes iff the minimum is linearly unstable for it "
        "(eq. 8), and as in the paper: GD at larger eta and small-batch SGD escape, large-batch SGD stays on "
        "the corrupted set"
    )

    def compute(self, ctx: RunContext) -> Findings:
        spec = check_scale(ctx.scale, SCALES)
        model_cfg = model_config("paper") if ctx.scale == "paper" else model_config(ctx.scale, spec["widths"])
        sets = {
            "clean": data_config(ctx.scale, spec["n"], spec["paper_data"]),
            "corrupted": data_config(ctx.scale, spec["n"], spec["paper_data"], extra_random=spec["extra"]),
        }
        for cfg in sets.values():  # DataNotFoundError before any long work
            load_dataset(cfg, 0)
        eta0 = spec["eta0"]
        base = {
            "data": sets["clean"],
            "model": model_cfg,
            "optimizer": "gd",
            "lr": eta0,
            "seed": ctx.seed,
            "stop_loss": spec["stop_loss"],
            "max_steps": spec["max_steps"],
            "measure_s": True,
            "save": True,
        }
        base.update(paper_run_settings(spec, ctx))
        start_sweep = Sweep(base, {"data": list(sets.values())}, name=f"{self.name}-start")
        store = ctx.run_sweep(start_sweep, minimum_run, subdir="start")
        starts = {}
        for set_name, rec in zip(sets, store.runs(), strict=True):
            starts[set_name] = {
                **store.results(rec.run_id),
                "path": str(run_dir(ctx.out_dir / "start", rec.run_id) / "final.safetensors"),
            }
        store.close()

        variants = []
        for set_name, cfg in sets.items():
            if starts[set_name].get("status") != "finished":
                continue
            n = spec["n"] + (spec["extra"] if set_name == "corrupted" else 0)
            for v in _continuations(eta0, n, spec["gd_factors"], spec.get("large_batch")):
                variants.append({"set": set_name, "data": cfg, "start": starts[set_name]["path"], **v})
        cbase = {
            "model": model_cfg,
            "steps": spec["steps"],
            "probe_every": spec["probe_every"],
            "seed": ctx.seed,
            "data_seed": 0,
        }
        if spec.get("resume_every"):
            cbase["resume_every"] = spec["resume_every"]
        outcomes = run_continuations(ctx, self.name, cbase, variants)

        rows, table = self._rows(starts, outcomes, eta0)
        headers = [
            "set",
            "continuation",
            "predicted",
            "eq.8 value",
            "a0",
            "2/eta",
            "s0",
            "s bound",
            "outcome",
            "final a",
            "final loss",
            "test acc",
            "moved",
        ]
        show_table(f"{self.name}: stability prediction vs outcome", headers, table, ctx.out_dir / "table.md")
        figure = self._plot(starts, outcomes, ctx)
        config = {**{k: v for k, v in spec.items() if k != "widths"}, "model": model_cfg, "sets": sets}
        return Findings(
            rows=rows,
            figures=[figure],
            config=config,
            notes="Predictions were computed and printed before each continuation ran.",
        )

    @staticmethod
    def _rows(starts: dict[str, Any], outcomes: list[dict[str, Any]], eta0: float) -> tuple[list, list]:
        rows: list[ComparisonRow] = []
        for set_name, st in starts.items():
            paper = PAPER_START[set_name]
            if st.get("status") != "finished":
                rows.append(
                    ComparisonRow(
                        f"{set_name}: GD start minimum",
                        "diverged",
                        paper["a"],
                        "GD eta0 reaches a minimum",
                        False,
                    )
                )
                continue
            a = st["sharpness"]
            rows.append(
                ComparisonRow(
                    f"{set_name}: start sharpness a0 (GD eta0={eta0:g})",
                    a,
                    paper["a"],
                    f"<= 2/eta0 = {2 / eta0:.3g} (+5%)",
                    a <= 2 / eta0 * 1.05,
                )
            )
            rows.append(
                ComparisonRow(
                    f"{set_name}: start non-uniformity s0",
                    st["non_uniformity"],
                    paper["s"],
                    "measured (Table 3)",
                    None,
                )
            )
            rows.append(
                ComparisonRow(
                    f"{set_name}: start test acc (train loss {cell(st['train_loss'])})",
                    st["test_acc"],
                    paper["test_acc"],
                    "measured (Table 3)",
                    None,
                )
            )
        table = []
        for o in outcomes:
            predicted = "stable" if o["predicted_stable"] else "unstable"
            outcome = "escaped" if o["escaped"] else "stayed"
            rows += outcome_rows(o)
            table.append(
                [
                    o["set"],
                    o["label"],
                    predicted,
                    o["spectral_value"],
                    o["start_sharpness"],
                    o["sharpness_bound"],
                    o["start_non_uniformity"],
                    o["non_uniformity_bound"],
                    outcome,
                    o["final_sharpness"],
                    o["final_train_loss"],
                    o["final_test_acc"],
                    o["relative_distance"],
                ]
            )
        return rows, table

    @staticmethod
    def _plot(starts: dict[str, Any], outcomes: list[dict[str, Any]], ctx: RunContext) -> str:
        set_names = [s for s in starts if any(o["set"] == s for o in outcomes)] or list(starts)
        fig, axes = new_figure(len(set_names), 3, width=3.6, height=2.8, squeeze=False)
        panels = [
            ("train_loss", "training loss", "log"),
            ("sharpness", "sharpness a", "linear"),
            ("test_acc", "test accuracy", "linear"),
        ]
        for r, set_name in enumerate(set_names):
            for c, (metric, label, yscale) in enumerate(panels):
                ax = axes[r][c]
                for o in (o for o in outcomes if o["set"] == set_name):
                    steps, values = _clip(o["curves"].get(metric, ([], [])), metric, starts[set_name])
                    if steps:
                        tag = "stable" if o["predicted_stable"] else "unstable"
                        ax.plot(steps, values, label=f"{o['label']} (pred. {tag})")
                ax.set(yscale=yscale, xlabel="iteration", ylabel=label, title=f"{set_name}: {label}")
            axes[r][0].legend(fontsize=6)
        save_figure(fig, ctx.out_dir / "escape.png")
        return "escape.png"


def _clip(curve: tuple[list[int], list[float]], metric: str, start: dict[str, Any]) -> tuple[list, list]:
    """Drop the blow-up of a diverging run from a curve (loss > 1e3 x start, sharpness > 10 x start) so the
    axes stay readable; the table still reports the divergence."""
    limit = {
        "train_loss": 1e3 * max(start.get("train_loss", 1.0), 1e-6),
        "sharpness": 10 * start.get("sharpness", math.inf),
    }.get(metric, math.inf)
    pairs = [(s, v) for s, v in zip(*curve, strict=True) if math.isfinite(v) and v <= limit]
    return [s for s, _ in pairs], [v for _, v in pairs]
