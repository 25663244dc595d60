"""Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017 (ICLR), Tables 2-3 / Fig. 4: large-batch minima are
sharper and generalise worse.

Small-batch (SB) and large-batch (LB) SGD on the same network from the same initialisation (per seed), each
until the training loss (cross-entropy) is below ``stop_loss`` or its epoch budget ends; at the solution the
eps-sharpness phi(eps) of eq. 4 (full space, eps = 1e-3 and 5e-4 as in Table 3, and a random p = 100 subspace,
Table 4), the Hessian's lambda_max and the test error. An intermediate batch size shows the trend (Fig. 4).

Relations checked (the paper's, no tolerance needed: they are strict orderings of means over seeds):
* eps-sharpness(LB) > eps-sharpness(SB) for each eps (Table 3: larger by one to three orders of magnitude);
* test accuracy(LB) < test accuracy(SB) (Table 2, every network).

Decisions: SGD with momentum 0.9 and the same learning rate for both (Keskar et al. used Adam; the issue asks
for SGD, and the relation is the same); both stop at the same training loss (the paper compares minima that
both fit the training set), so LB gets a larger epoch budget. Default: digits (1200 training, 597 test
images), MLP 64-128-128-10, SB = 16, LB = 600 (half the data; Keskar's LB is 10 % of a 50k-60k set, i.e.
~25 x SB; here 37 x), three seeds.
"""

from __future__ import annotations

import math
from typing import Any

from ..report.figures import new_figure, save_figure
from ._sharpness_common import mean_std, run_variants, variant_bars
from ._wu_common import check_scale, show_table
from .base import ComparisonRow, Experiment, Findings, RunContext, register

#: Keskar et al. 2017, Table 2, network F1 (MNIST, fully connected): test accuracy SB vs LB (%).
PAPER_F1_ACCURACY = {"SB": "98.03 ± 0.07", "LB": "97.81 ± 0.07"}
EPS = (1e-3, 5e-4)

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": {"name": "digits", "n_train": 600},
        "widths": [64],
        "batches": [16, 600],
        "epochs": {16: 40, 600: 800},
        "seeds": [0],
        "stop_loss": 0.01,
        "subspace": 20,
    },
    "default": {
        "data": {"name": "digits"},
        "widths": [128, 128],
        "batches": [16, 100, 600],
        "epochs": {16: 50, 100: 300, 600: 1000},
        "seeds": [0, 1, 2],
        "stop_loss": 0.01,
        "subspace": 100,
    },
    "paper": {
        "data": {"name": "mnist"},
        "widths": [512, 512, 512, 512, 512],
        "batches": [256, 6000],
        "epochs": {256: 100, 6000: 2000},
        "seeds": [0, 1, 2, 3, 4],
        "stop_loss": 1e-3,
        "subspace": 100,
    },
}


def keskar_rows(stats: dict[str, dict[str, tuple[float, float]]], sb: str, lb: str) -> list[ComparisonRow]:
    """The verdict rows from per-variant (mean, std) statistics (keys ``eps_<eps>``, ``eps_<eps>_subspace``,
    ``test_error``, ``sharpness``)."""
    rows = []
    for key in [f"eps_{e:g}" for e in EPS] + [f"eps_{e:g}_subspace" for e in EPS[:1]]:
        s, lgt = stats[sb].get(key, (math.nan, 0))[0], stats[lb].get(key, (math.nan, 0))[0]
        space = "random subspace p" if key.endswith("subspace") else "full space"
        eps = key.split("_")[1]
        rows.append(
            ComparisonRow(
                f"eps-sharpness ({space}, eps={eps}): {lb} / {sb}",
                lgt / s if s > 0 else math.nan,
                "LB >> SB (Tables 3-4)",
                f"> 1 ({sb} {s:.3g}, {lb} {lgt:.3g})",
                bool(lgt > s) if math.isfinite(lgt) and math.isfinite(s) else False,
            )
        )
    e_sb, e_lb = stats[sb]["test_error"][0], stats[lb]["test_error"][0]
    rows.append(
        ComparisonRow(
            f"test accuracy (%): {lb} vs {sb}",
            f"{100 * (1 - e_lb):.2f} vs {100 * (1 - e_sb):.2f}",
            f"{PAPER_F1_ACCURACY['LB']} vs {PAPER_F1_ACCURACY['SB']} (F1, MNIST)",
            f"{lb} < {sb}",
            bool(e_lb > e_sb) if math.isfinite(e_lb) and math.isfinite(e_sb) else False,
        )
    )
    a_sb, a_lb = stats[sb]["sharpness"][0], stats[lb]["sharpness"][0]
    rows.append(ComparisonRow(f"lambda_max(H): {lb} vs {sb}", f"{a_lb:.3g} vs {a_sb:.3g}", None, "reference"))
    return rows


@register
class KeskarLargeBatch(Experiment):
    name = "keskar2017-large-batch"
    title = "Large-batch SGD finds sharper minima that generalise worse"
    paper = "Keskar et al. 2017, Tables 2-3 (and Fig. 4: sharpness vs batch size)"
    claim = "eps-sharpness (eq. 4) larger and test accuracy lower for the large than for the small batch"

    def compute(self, ctx: RunContext) -> Findings:
        spec = check_scale(ctx.scale, SCALES)
        labels = {b: f"B={b}" for b in spec["batches"]}
        variants = [
            {"label": labels[b], "batch_size": b, "max_epochs": spec["epochs"][b]} for b in spec["batches"]
        ]
        base = {
            "data": spec["data"],
            "model": {"name": "mlp", "widths": spec["widths"]},
            "phase": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "stop_loss": spec["stop_loss"]},
            "eps": list(EPS),
            "subspace": spec["subspace"],
            "log_every": 25,
        }
        rows = run_variants(ctx, self.name, base, variants, spec["seeds"])
        keys = ["test_error", "train_loss", "steps", "sharpness"] + [f"eps_{e:g}" for e in EPS]
        keys += [f"eps_{e:g}_subspace" for e in EPS]
        stats = {lab: {k: mean_std(rows, lab, k) for k in keys} for lab in labels.values()}
        sb, lb = labels[spec["batches"][0]], labels[spec["batches"][-1]]
        findings = keskar_rows(stats, sb, lb)
        table = [
            [lab, st["steps"][0], st["train_loss"][0], 100 * st["test_error"][0], st["sharpness"][0]]
            + [st[f"eps_{e:g}"][0] for e in EPS]
            + [st[f"eps_{EPS[0]:g}_subspace"][0]]
            for lab, st in stats.items()
        ]
        headers = ["batch", "steps", "train loss", "test error %", "lambda_max"]
        headers += [f"phi(eps={e:g})" for e in EPS] + [f"phi(eps={EPS[0]:g}, p={spec['subspace']})"]
        show_table(f"{self.name}: SGD minima by batch size", headers, table, ctx.out_dir / "table.md")
        names = list(stats)
        bars = variant_bars(
            ctx.out_dir / "sharpness_and_error.png",
            names,
            {
                f"phi(eps={EPS[0]:g}) (eq. 4)": ([stats[k][f"eps_{EPS[0]:g}"][0] for k in names],
                                                  [stats[k][f"eps_{EPS[0]:g}"][1] for k in names]),
                "test error (%)": ([100 * stats[k]["test_error"][0] for k in names],
                                   [100 * stats[k]["test_error"][1] for k in names]),
            },
            "Keskar et al. 2017: small vs large batch",
        )  # fmt: skip
        trend = self._trend(ctx, spec["batches"], stats, labels)
        config = {k: spec[k] for k in ("data", "widths", "batches", "seeds", "stop_loss", "subspace")}
        config["epochs"] = {str(b): e for b, e in spec["epochs"].items()}
        config.update(base_phase=base["phase"], eps=list(EPS))
        return Findings(
            rows=findings,
            figures=[bars, trend],
            config=config,
            notes="Means over seeds; table.md holds the per-batch table.",
        )

    @staticmethod
    def _trend(ctx: RunContext, batches: list[int], stats: dict[str, Any], labels: dict[int, str]) -> str:
        fig, ax = new_figure(width=4.6, height=3.4)
        for e in EPS:
            ax.errorbar(
                batches,
                [stats[labels[b]][f"eps_{e:g}"][0] for b in batches],
                yerr=[stats[labels[b]][f"eps_{e:g}"][1] for b in batches],
                marker="o",
                capsize=3,
                label=f"phi(eps={e:g}), full space",
            )
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="eps-sharpness (eq. 4)")
        ax2 = ax.twinx()
        ax2.plot(batches, [100 * (1 - stats[labels[b]]["test_error"][0]) for b in batches], "k--", marker="s")
        ax2.set_ylabel("test accuracy (%) (dashed)")
        ax.set_title("Keskar et al. 2017 Fig. 4: sharpness vs batch size")
        ax.legend(loc="upper left")
        save_figure(fig, ctx.out_dir / "sharpness_vs_batch.png")
        return "sharpness_vs_batch.png"
