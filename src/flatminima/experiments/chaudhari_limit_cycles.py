"""Chaudhari's thesis, Example 6.43 and Fig. 6.3: SGD-like dynamics out of equilibrium.

(1) Toy (:mod:`flatminima.toys.nonequilibrium`): dX = -grad f dt + sqrt(2) dB with a rotational force of
strength lambda. For every lambda in {0, 0.5, 1.5} the sampled x_1 histogram must match the exact marginal of
exp(-Phi)/Z (total-variation distance below a tolerance set from the Monte-Carlo floor, below), while the
circulation C(lambda) = E[x_1 b_2(x) - x_2 b_1(x)] (b the drift, expectation over the sampled stationary
states; the noise has mean zero, so this is the mean angular velocity) grows with lambda (exactly:
C = lambda E[r^2 e^{Phi - r^4/4}], C(0) = 0).
(2) A long SGD trajectory of a small net on digits, as in the thesis's Sec. 6.3.3: constant learning rate,
weights stored after every epoch, the first third discarded as burn-in; periodogram and autocorrelation of
the standardized per-epoch weight increments (:func:`flatminima.noise.increment_spectrum`). For white
noise about 5 % of the (component, lag) autocorrelations fall outside +-1.96/sqrt(T); the thesis finds SGD
far outside these bands (low-frequency periodic components). Checked: the fraction outside the band exceeds
twice the white-noise 5 %, and
the mean periodogram over the lowest 2 % of frequencies exceeds the 97.5 % white-noise band of a single
ordinate (a conservative band: averaging over frequencies only narrows the null distribution).
Rules: pure function :func:`cycles_rows`. TV tolerance: 2.5 x the expected Monte-Carlo TV of a histogram of
``chains`` exact draws (0.5 sum_b sqrt(2 p_b (1 - p_b) / (pi N))) + 0.01 (ours) for the Euler-Maruyama bias
at step 0.01.
"""

from __future__ import annotations

import numpy as np
import torch

from ..landscape import WeightRecorder
from ..noise import increment_spectrum, plot_increment_spectrum
from ..report.figures import new_figure, save_figure
from ..toys import nonequilibrium as neq
from ..training import train
from ._chaudhari_common import build_model, check_data
from .base import ComparisonRow, Experiment, Findings, RunContext, register

SETTINGS = {
    "smoke": {
        "chains": 3000,
        "steps": 600,
        "n_train": 100,
        "batch_size": 20,
        "epochs": 150,
        "lr": 0.05,
        "widths": [16],
    },
    "default": {
        "chains": 20000,
        "steps": 4000,
        "n_train": None,
        "batch_size": 40,
        "epochs": 900,
        "lr": 0.05,
        "widths": [16],
    },
    "paper": {
        "chains": 100000,
        "steps": 10000,
        "n_train": None,
        "batch_size": 40,
        "epochs": 3000,
        "lr": 0.05,
        "widths": [32],
    },
}


EDGES = np.linspace(-2.5, 2.5, 11)


def tv_tolerance(exact: np.ndarray, chains: int) -> float:
    """2.5 x the expected TV distance of an exact-sample histogram, + 0.01 discretization bias."""
    floor = 0.5 * float(np.sum(np.sqrt(2 * exact * (1 - exact) / (np.pi * chains))))
    return 2.5 * floor + 0.01


def _toy(s: dict, seed: int) -> tuple[list[float], list[float], np.ndarray, list[np.ndarray]]:
    edges = EDGES
    exact = neq.marginal_x1(edges)
    tvs, circ, hists = [], [], []
    for i, lam in enumerate(neq.LAMBDAS):
        x = neq.sample(lam, chains=s["chains"], steps=s["steps"], lr=0.01, seed=seed + i).x
        hist = np.histogram(x[:, 0].numpy(), bins=edges)[0] / len(x)
        tvs.append(float(0.5 * np.abs(hist - exact).sum()))
        b = neq.drift(x, lam)
        circ.append(float((x[:, 0] * b[:, 1] - x[:, 1] * b[:, 0]).mean()))
        hists.append(hist)
    return tvs, circ, exact, hists


def _sgd_trajectory(s: dict, seed: int) -> torch.Tensor:
    """Weights after every epoch of constant-lr SGD (minibatches without replacement), burn-in dropped."""
    spec = {"name": "digits", "n_train": s["n_train"], "targets": "index"}
    data = check_data(spec)
    model = build_model({"name": "mlp", "widths": s["widths"], "seed": seed}, data)
    per_epoch = len(data.train.x) // s["batch_size"]
    rec = WeightRecorder(every=per_epoch)
    steps = per_epoch * s["epochs"]
    phase = {"optimizer": "sgd", "lr": s["lr"], "batch_size": s["batch_size"], "max_steps": steps}
    train(
        model,
        data,
        [phase],
        loss="cross_entropy",
        seed=seed,
        log_every=steps,
        eval_test=False,
        probes=[rec],
        progress=False,
    )
    return rec.stacked()[s["epochs"] // 3 :]


def cycles_rows(
    tvs: list[float], tol: float, circ: list[float], outside: float, low_power_ratio: float
) -> list[ComparisonRow]:
    """Verdict rows from the TV distances per lambda and their Monte-Carlo tolerance, the circulations, the
    fraction of autocorrelations outside the white-noise band and the low-frequency power over its
    white-noise band (pure function)."""
    rows = [
        ComparisonRow(
            f"TV(x1 histogram, exp(-Phi)) at lambda={lam}",
            round(tv, 4),
            "matches",
            f"< {tol:.3f} (2.5 x Monte-Carlo TV + 0.01)",
            tv < tol,
        )
        for lam, tv in zip(neq.LAMBDAS, tvs, strict=True)
    ]
    rows += [
        ComparisonRow(
            "circulation E[x1 b2 - x2 b1] at lambda = 0, 0.5, 1.5",
            [round(c, 4) for c in circ],
            "grows with lambda (limit cycles at 1.5)",
            "increasing",
            bool(circ[0] < circ[1] < circ[2]),
        ),
        ComparisonRow(
            "SGD increments: acf outside white-noise band",
            round(outside, 3),
            "far outside (Fig. 6.3)",
            "> 0.10 (2 x the 5 % of white noise)",
            outside > 0.10,
        ),
        ComparisonRow(
            "SGD increments: low-frequency power / white-noise band",
            round(low_power_ratio, 2),
            "low-frequency peaks (Fig. 6.3)",
            "> 1 (97.5 % band of one ordinate)",
            low_power_ratio > 1,
        ),
    ]
    return rows


@register
class ChaudhariLimitCycles(Experiment):
    name = "chaudhari-limit-cycles"
    title = "Non-equilibrium SGD: same stationary density, growing circulation; non-white SGD increments"
    paper = "Chaudhari 2018 (thesis), Example 6.43 and Fig. 6.3"
    claim = (
        "density matches exp(-Phi) for every lambda; circulation grows with lambda; SGD weight increments "
        "have autocorrelations far outside white-noise bands"
    )

    def compute(self, ctx: RunContext) -> Findings:
        s = SETTINGS[ctx.scale]
        tvs, circ, exact, hists = _toy(s, ctx.seed)
        spec = increment_spectrum(_sgd_trajectory(s, ctx.seed), components=20, seed=ctx.seed)
        tol = tv_tolerance(exact, s["chains"])
        low = float(spec.power[: max(1, len(spec.power) // 50)].mean())
        rows = cycles_rows(tvs, tol, circ, spec.outside_fraction, low / spec.power_band)
        fig, ax = new_figure()
        centres = (EDGES[1:] + EDGES[:-1]) / 2
        ax.plot(centres, exact, "k-", label="exp(-Phi) marginal")
        for lam, h in zip(neq.LAMBDAS, hists, strict=True):
            ax.plot(centres, h, "o", label=f"lambda = {lam}")
        ax.set_xlabel("x1")
        ax.set_ylabel("probability per bin")
        ax.set_title("Stationary density does not depend on lambda")
        ax.legend()
        save_figure(fig, ctx.out_dir / "density.png")
        plot_increment_spectrum(spec, ctx.out_dir / "increment_spectrum.png")
        config = {
            "setting": s,
            "tv": tvs,
            "circulation": circ,
            "acf_outside_fraction": spec.outside_fraction,
            "tv_tol": tol,
            "power_band": spec.power_band,
        }
        return Findings(rows=rows, figures=["density.png", "increment_spectrum.png"], config=config)
