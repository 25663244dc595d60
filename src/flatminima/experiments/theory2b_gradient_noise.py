"""Theory IIb Fig. 1: minibatch-gradient components near convergence look Gaussian; their mean is small.

A network is trained by SGD into the asymptotic regime; at that fixed point f_t the distribution over random
minibatches B of a few components of the stochastic gradient g_B = (1/|B|) sum_{i in B} grad V(f_t, z_i) is
sampled for several batch sizes (:func:`flatminima.noise.gradient_noise`), histogrammed with the fitted normal
density, and tested for normality (Kolmogorov-Smirnov distance to the fitted normal, D'Agostino-Pearson).

The paper: "the average corresponds to the gradient of the full loss and ... is empirically very small. The
histograms look approximately Gaussian ... for minibatches that are not too small or too large" (CLT).
Relations checked (pure function :func:`noise_rows`; the thresholds are our decisions, the paper gives none;
the default scale fails the KS one and it is kept, not moved):
* at the moderate batch size of the scale, the median over components of the KS distance is <= 0.06;
* that median KS distance is smaller at the moderate batch size than for single examples (B = 1);
* the mean is small: median over components of |mean of g_B| / std of single-example gradients <= 0.1.
The share of components whose normality test is not rejected at the 1% level is reported, not required (with
hundreds of samples the test detects small skewness, e.g. of output-layer components).

Finding worth knowing: how Gaussian the minibatch means are depends on how far training went. With
cross-entropy, once most training examples are fit their per-example gradients are ~0 and a few large ones
dominate (excess kurtosis in the hundreds), so the CLT needs much larger batches. At ``smoke`` scale (training
loss ~0.4) B = 32 is already close to Gaussian; at ``default`` scale (30 epochs, training loss ~0.1, 98%
training accuracy) the median KS distance at B = 100 is still ~0.13 and the first relation fails. We report
this rather than tune the stopping point until the claim holds; the training loss at the measurement point
is in the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..noise import gradient_noise, plot_gradient_histograms
from ._theory2_common import check_data, classifier_objective, paper_data, run_config, train_from_config
from .base import ComparisonRow, Experiment, Findings, RunContext, register

SCALES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        data={"name": "digits", "n_train": 300, "seed": 0},
        model={"name": "mlp", "options": {"widths": [32]}},
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "max_epochs": 25},
        batch_sizes=[1, 8, 32],
        moderate=32,
        components=6,
        samples=500,
    ),
    "default": dict(
        data={"name": "digits", "n_train": 1000, "seed": 0},
        model={"name": "mlp", "options": {"widths": [64]}},
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "max_epochs": 30},
        batch_sizes=[1, 10, 50, 100],
        moderate=100,
        components=8,
        samples=1000,
    ),
    "paper": dict(
        data={"name": "cifar10", "seed": 0},
        model={"name": "theory2-cnn"},
        train={"optimizer": "sgd", "lr": 0.01, "batch_size": 100, "max_epochs": 60},
        batch_sizes=[1, 10, 100, 500],
        moderate=100,
        components=8,
        samples=2000,
        examples=10000,
    ),
}
KS_MAX = 0.06
MEAN_RATIO_MAX = 0.1


def noise_rows(
    ks: dict[int, float], ratio: float, not_rejected: float, moderate: int, train_loss: float
) -> list[ComparisonRow]:
    """Verdict rows from the median KS distances per batch size, the median |mean| / single-example std at
    the moderate batch size, the share of components not rejected there, and the training loss (pure)."""
    rows = [
        ComparisonRow(f"median KS distance, B = {b}", round(v, 4), "approx. Gaussian for moderate B", "–")
        for b, v in ks.items()
    ]
    rows += [
        ComparisonRow("training loss at the measurement point", round(train_loss, 4), "–", "–"),
        ComparisonRow(
            f"median KS distance at moderate B = {moderate}",
            round(ks[moderate], 4),
            "histograms look Gaussian",
            f"<= {KS_MAX} (ours: the paper gives no number)",
            ks[moderate] <= KS_MAX,
        ),
        ComparisonRow(
            f"KS distance B = {moderate} vs B = 1",
            f"{ks[moderate]:.3f} vs {ks[1]:.3f}",
            "CLT",
            "smaller at moderate B",
            ks[moderate] < ks[1],
        ),
        ComparisonRow(
            "median |mean| / single-example std",
            round(ratio, 4),
            "mean 'very small'",
            f"<= {MEAN_RATIO_MAX} (ours: the paper gives no number)",
            ratio <= MEAN_RATIO_MAX,
        ),
        ComparisonRow(
            f"share of components with normaltest p > 0.01 at B = {moderate}",
            round(not_rejected, 2),
            "–",
            "reported, not required",
        ),
    ]
    return rows


@register
class Theory2bGradientNoise(Experiment):
    name = "theory2b-gradient-noise"
    title = "Minibatch-gradient components near convergence are approximately Gaussian"
    paper = "Poggio & Liao, Theory IIb, Fig. 1"
    claim = (
        "histograms of minibatch-gradient components look Gaussian for moderate batch sizes; their mean (the "
        "full gradient) is small compared with their spread"
    )

    def compute(self, ctx: RunContext) -> Findings:
        s = SCALES[ctx.scale]
        s = {**s, "data": paper_data(ctx, s["data"])}
        check_data(s["data"])
        config = run_config(s["data"], {**s["model"], "seed": ctx.seed}, s["train"], ctx.seed)
        model, ds, result = train_from_config(config)
        if result.status != "finished":
            row = ComparisonRow("training", result.status, "converged", "finished", False)
            return Findings(rows=[row], config={"run": config}, notes="training diverged")
        obj = classifier_objective(model, ds)
        res = gradient_noise(
            obj,
            batch_sizes=s["batch_sizes"],
            components=s["components"],
            samples=s["samples"],
            examples=s.get("examples"),
            seed=ctx.seed,
        )
        by_b = {b: [r for r in res if r.batch_size == b] for b in s["batch_sizes"]}
        ks = {b: float(np.median([r.ks_stat for r in rs])) for b, rs in by_b.items()}
        single_std = {r.component: r.predicted_std for r in by_b[1]}
        mod = by_b[s["moderate"]]
        ratio = float(
            np.median([abs(r.mean) / single_std[r.component] for r in mod if single_std[r.component] > 0])
        )
        not_rejected = float(np.mean([r.normaltest_p > 0.01 for r in mod]))
        rows = noise_rows(ks, ratio, not_rejected, s["moderate"], float(result.final["train_loss"]))
        plot_gradient_histograms(res, ctx.out_dir / "gradient_histograms.png")
        return Findings(
            rows=rows,
            figures=["gradient_histograms.png"],
            config={"run": config, **{k: v for k, v in s.items() if k not in ("data", "model", "train")}},
            notes=f"trained to train loss {result.final.get('train_loss'):.4f}",
        )
