"""Foret, Kleiner, Mobahi & Neyshabur 2021 (ICLR), Table 1 and Fig. 3: SAM finds flatter minima than SGD and
generalises at least as well.

SGD and SAM (``fm.optim.SAM``: same base SGD step with momentum, lr, batch size, epochs and initialisation per
seed; SAM's rho = 0.05, the paper's default) on the same network; at the solution the Hessian's lambda_max
(Fig. 3 compares Hessian spectra), Foret et al.'s m-sharpness (worst case over the L2 ball of radius rho,
disjoint batches of m = 128 examples) and the test error.

Relations checked:
* lambda_max(SAM) < lambda_max(SGD) and m-sharpness(SAM) < m-sharpness(SGD) (means over seeds; Fig. 3 /
  Sec. 4.1: strict orderings, no tolerance needed);
* test error(SAM) <= test error(SGD) + tol, tol = two binomial standard errors of SGD's measured test error on
  the test set (``_sharpness_common.binomial_tolerance``): "equal or better" within the resolution of the
  test set (Table 1: SAM's error is lower in every row).

Default: digits (1200 training, 597 test images), MLP 64-128-128-10, batch 32, lr 0.05, momentum 0.9,
30 epochs, three seeds. SAM costs two gradient evaluations per step; both methods see the same number of
minibatches.
"""

from __future__ import annotations

import math
from typing import Any

from ._sharpness_common import binomial_tolerance, mean_std, run_variants, variant_bars
from ._wu_common import check_scale, show_table
from .base import ComparisonRow, Experiment, Findings, RunContext, register

RHO = 0.05
M = 128
PAPER = {
    "sharpness": "lower with SAM (Fig. 3: Hessian spectrum, WRN-28-10 on CIFAR-10)",
    "error": "SAM < SGD in every row of Table 1",
}

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"data": {"name": "digits", "n_train": 600}, "widths": [64], "epochs": 20, "seeds": [0]},
    "default": {"data": {"name": "digits"}, "widths": [128, 128], "epochs": 30, "seeds": [0, 1, 2]},
    "paper": {"data": {"name": "cifar10"}, "model": "resnet", "epochs": 200, "seeds": [0, 1, 2]},
}


def foret_rows(stats: dict[str, dict[str, tuple[float, float]]], n_test: int) -> list[ComparisonRow]:
    """The verdict rows from per-method (mean, std) statistics (keys ``sharpness``, ``m_sharpness``,
    ``test_error``) and the test-set size."""
    rows = []
    for key, what in (("sharpness", "lambda_max(H)"), ("m_sharpness", f"m-sharpness (rho={RHO}, m={M})")):
        sam, sgd = stats["SAM"][key][0], stats["SGD"][key][0]
        ok = math.isfinite(sam) and math.isfinite(sgd)
        rows.append(
            ComparisonRow(
                f"{what}: SAM vs SGD",
                f"{sam:.3g} vs {sgd:.3g}",
                PAPER["sharpness"],
                "SAM < SGD",
                bool(ok and sam < sgd),
            )
        )
    e_sam, e_sgd = stats["SAM"]["test_error"][0], stats["SGD"]["test_error"][0]
    tol = binomial_tolerance(e_sgd, n_test) if math.isfinite(e_sgd) else math.nan
    rows.append(
        ComparisonRow(
            "test error (%): SAM",
            round(100 * e_sam, 2),
            PAPER["error"],
            f"<= SGD {100 * e_sgd:.2f} + {100 * tol:.2f} (2 binomial s.e., n_test = {n_test})",
            bool(e_sam <= e_sgd + tol) if math.isfinite(e_sam) and math.isfinite(tol) else False,
        )
    )
    return rows


@register
class ForetSAM(Experiment):
    name = "foret2021-sam"
    title = "SAM finds flatter minima than SGD with equal or better test error"
    paper = "Foret et al. 2021, Table 1 and Fig. 3"
    claim = "lambda_max and m-sharpness lower for SAM than for SGD; test error equal or better (2 s.e.)"

    def compute(self, ctx: RunContext) -> Findings:
        spec = check_scale(ctx.scale, SCALES)
        model = {"name": spec.get("model", "mlp")}
        if "widths" in spec:
            model["widths"] = spec["widths"]
        base = {
            "data": spec["data"],
            "model": model,
            "phase": {"lr": 0.05, "momentum": 0.9, "batch_size": 32, "max_epochs": spec["epochs"]},
            "m_rho": RHO,
            "m": M,
            "log_every": 100,
        }
        variants = [
            {"label": "SGD", "optimizer": "sgd"},
            {"label": "SAM", "optimizer": "sam", "options": {"rho": RHO}},
        ]
        rows = run_variants(ctx, self.name, base, variants, spec["seeds"])
        keys = ("test_error", "train_loss", "sharpness", "m_sharpness")
        stats = {lab: {k: mean_std(rows, lab, k) for k in keys} for lab in ("SGD", "SAM")}
        n_test = int(next((r["n_test"] for r in rows if r.get("n_test")), 0)) or 1
        findings = foret_rows(stats, n_test)
        table = [
            [lab, st["train_loss"][0], 100 * st["test_error"][0], st["sharpness"][0], st["m_sharpness"][0]]
            for lab, st in stats.items()
        ]
        headers = ["method", "train loss", "test error %", "lambda_max", f"m-sharpness (rho={RHO}, m={M})"]
        show_table(f"{self.name}: SGD vs SAM", headers, table, ctx.out_dir / "table.md")
        names = list(stats)
        fig = variant_bars(
            ctx.out_dir / "sam_vs_sgd.png",
            names,
            {
                "lambda_max(H)": ([stats[k]["sharpness"][0] for k in names],
                                  [stats[k]["sharpness"][1] for k in names]),
                f"m-sharpness (m={M})": ([stats[k]["m_sharpness"][0] for k in names],
                                         [stats[k]["m_sharpness"][1] for k in names]),
                "test error (%)": ([100 * stats[k]["test_error"][0] for k in names],
                                   [100 * stats[k]["test_error"][1] for k in names]),
            },
            "Foret et al. 2021: SAM vs SGD",
        )  # fmt: skip
        config = {"setting": spec, "base": base, "rho": RHO, "m": M}
        return Findings(rows=findings, figures=[fig], config=config, notes="Means over seeds; see table.md.")
