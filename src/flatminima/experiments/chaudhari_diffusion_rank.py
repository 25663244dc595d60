"""Chaudhari's thesis, Sec. 6.3, Figs. 6.1-6.2: the diffusion matrix D(x) of SGD (covariance of per-example
gradients, eq. 6.4) has a very small rank, 0.3 %-2 % of the weights, and its spectrum barely changes during
training (20 %, 40 % and 100 % of training "almost indistinguishable").

We train a net with SGD (Nesterov 0.9, as Sec. 6.3.1), checkpoint it at 20 %, 40 % and 100 % of training and
compute the spectrum of D on the training set with the network in evaluation mode (as the thesis), rank
thresholded at lambda_max x d x machine precision (float32, the gradients' dtype; the thesis's footnote).
Two exact routes, chosen by size: with N <= d examples the N x N Gram matrix of the centred gradients
(:func:`flatminima.noise.diffusion_spectrum`); with N > d the d x d matrix D itself, accumulated over chunks
of per-example gradients (:func:`covariance_spectrum`, O(d^2) memory: 127 MB for the thesis's small-fc,
1.4 GB for its 13k-weight small-lenet, where the Gram route would need 29 GB for MNIST's 60k examples). Both
give the same non-zero eigenvalues (tested); neither subsamples, so the rank carries no sampling error.

Checks (pure function :func:`diffusion_rows`):
* 0.003 <= rank(D)/d <= 0.02 at every instant — the thesis's range (Sec. 6.3.2; its figures give 0.32 %,
  0.34 %, 0.47 %, 0.6 %, 1.8 %);
* precondition when N <= d: rank(D) < N - 1, otherwise the rank is capped by the examples, not measured;
* the top-20 eigenvalues at 20 % and 40 % agree with those at 100 %: median |log10 ratio| < 0.5 (our
  tolerance, half a decade on the thesis's log-scale plots; it gives no number).
Scales: smoke / default an MLP on the embedded digits with d ~ 2.4k / 12k weights (default: the thesis's
~13k), N = 1437 examples; paper the thesis's small-fc (7 x 7 down-sampled MNIST, 64 hidden units, BN).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Dataset, Split
from ..noise import DiffusionSpectrum, diffusion_spectrum
from ..noise.diffusion import architecture_score
from ..noise.gradients import per_example_gradients
from ..objective import Objective
from ..report.figures import new_figure, save_figure
from ..training import load_checkpoint
from ._chaudhari_common import check_data, train_model
from ._spread import precondition_row
from ._theory2_common import paper_data
from .base import ComparisonRow, Experiment, Findings, RunContext, register

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "data": {"name": "digits", "n_train": 600},
        "model": {"widths": [32]},
        "steps": 300,
        "batch": 32,
        "pool": 1,
    },
    "default": {
        "data": {"name": "digits"},
        "model": {"widths": [160]},
        "steps": 3000,
        "batch": 32,
        "pool": 1,
    },
    "paper": {
        "data": {"name": "mnist"},
        "model": {"widths": [64], "bn": True},
        "steps": 30 * 469,
        "batch": 128,
        "pool": 4,
    },
}
FRACTIONS = (0.2, 0.4, 1.0)
RANK_RANGE = (0.003, 0.02)
LOG_RATIO_MAX = 0.5
PAPER_FRACTIONS = "0.0032-0.018 (Figs. 6.1-6.2)"


def downsample(data: Dataset, factor: int) -> Dataset:
    """Images average-pooled by ``factor`` (the thesis's small-fc reads 7 x 7 down-sampled MNIST)."""
    if factor == 1:
        return data

    def pool(split: Split) -> Split:
        return dataclasses.replace(split, x=F.avg_pool2d(split.x, factor))

    shape = (data.input_shape[0], data.input_shape[1] // factor, data.input_shape[2] // factor)
    return dataclasses.replace(data, train=pool(data.train), test=pool(data.test), input_shape=shape)


def covariance_spectrum(obj: Objective, chunk: int = 2000) -> DiffusionSpectrum:
    """All d eigenvalues of D = (1/N) sum_k g_k g_k^T - g g^T (thesis eq. 6.4), D accumulated in float64 as a
    d x d matrix over chunks of ``chunk`` per-example gradients; same fields and rank threshold as
    :func:`flatminima.noise.diffusion_spectrum` (which goes through the N x N Gram matrix instead)."""
    dim = obj.num_params
    second = torch.zeros(dim, dim, dtype=torch.float64)
    total = torch.zeros(dim, dtype=torch.float64)
    dtype = torch.float32
    for start in range(0, obj.n, chunk):
        g = per_example_gradients(obj, torch.arange(start, min(start + chunk, obj.n)))
        dtype = g.dtype
        g = g.double()
        second.addmm_(g.T, g)
        total += g.sum(dim=0)
    mean = total / obj.n
    cov = second / obj.n - torch.outer(mean, mean)
    vals = np.clip(np.linalg.eigvalsh(0.5 * (cov + cov.T).numpy())[::-1], 0.0, None)
    threshold = float(vals[0]) * dim * float(torch.finfo(dtype).eps)
    nonzero = vals[vals > threshold]
    var = max(float((vals**2).mean() - vals.mean() ** 2), 0.0)
    return DiffusionSpectrum(
        eigenvalues=vals,
        dim=dim,
        n=obj.n,
        replacement=True,
        rank=len(nonzero),
        threshold=threshold,
        mean=float(vals.mean()),
        std=float(np.sqrt(var)),
        mean_nonzero=float(nonzero.mean()) if len(nonzero) else 0.0,
        std_nonzero=float(nonzero.std()) if len(nonzero) else 0.0,
        trace=float(vals.sum()),
        score=architecture_score(len(nonzero), dim, var),
    )


def spectrum(obj: Objective) -> DiffusionSpectrum:
    """The exact spectrum of D by the cheaper route: Gram (N <= d) or covariance (N > d)."""
    return diffusion_spectrum(obj) if obj.n <= obj.num_params else covariance_spectrum(obj)


def log_ratio(a: np.ndarray, b: np.ndarray, k: int = 20) -> float:
    """Median |log10(a_i / b_i)| over the top ``k`` eigenvalues (both descending)."""
    k = min(k, len(a), len(b))
    return float(np.median(np.abs(np.log10(a[:k] / b[:k]))))


def diffusion_rows(ranks: list[int], dim: int, n: int, changes: list[float]) -> list[ComparisonRow]:
    """Verdict rows from the ranks at the instants of ``FRACTIONS``, the weights ``dim``, the examples ``n``
    and the median |log10 ratio| of the top eigenvalues at 20 % and 40 % against 100 % (pure function)."""
    low, high = RANK_RANGE
    rows = []
    if n <= dim:
        capped = max(ranks) >= n - 1
        rows.append(
            precondition_row(
                "rank not capped by the number of examples",
                max(ranks),
                "N = 60k >> d",
                f"max rank < N - 1 = {n - 1}",
                not capped,
            )
        )
    for f, r in zip(FRACTIONS, ranks, strict=True):
        frac = r / dim
        rows.append(
            ComparisonRow(
                f"rank(D)/d at {int(100 * f)} %",
                round(frac, 4),
                PAPER_FRACTIONS,
                f"in [{low}, {high}] (thesis: 'ranges between 0.3 % - 2 %')",
                bool(low <= frac <= high),
            )
        )
    for f, c in zip(FRACTIONS[:-1], changes, strict=True):
        rows.append(
            ComparisonRow(
                f"median |log10 ratio| of top-20 eigenvalues, {int(100 * f)} % vs 100 %",
                round(c, 3),
                "almost indistinguishable",
                f"< {LOG_RATIO_MAX} (ours: half a decade)",
                bool(c < LOG_RATIO_MAX),
            )
        )
    rows.append(ComparisonRow("d (weights), N (examples)", [dim, n], "13,338 / 3,978 weights; 60k", "-"))
    return rows


@register
class ChaudhariDiffusionRank(Experiment):
    name = "chaudhari-diffusion-rank"
    title = "The diffusion matrix of SGD has rank 0.3-2 % of d and a spectrum that barely changes"
    paper = "Chaudhari 2018 (thesis), Sec. 6.3, Figs. 6.1-6.2"
    claim = "0.003 <= rank(D)/d <= 0.02 at 20 %, 40 %, 100 % of training; top eigenvalues nearly unchanged"

    def compute(self, ctx: RunContext) -> Findings:
        s = SETTINGS[ctx.scale]
        s = {**s, "data": paper_data(ctx, s["data"])}
        data = downsample(check_data(s["data"]), s["pool"])
        steps = s["steps"]
        phase = {"optimizer": "sgd", "lr": 0.1, "batch_size": s["batch"], "momentum": 0.9, "nesterov": True}
        phases = [
            {**phase, "max_steps": int(0.6 * steps)},
            {**phase, "lr": 0.01, "max_steps": steps - int(0.6 * steps)},
        ]
        spec = {"name": "mlp", **s["model"], "seed": ctx.seed}
        run = ctx.out_dir / "run"
        model = train_model(
            data, spec, phases, ctx.seed, out=run, checkpoint_every=steps // 5, reuse_finished=True
        )
        spectra = []
        for frac in FRACTIONS:
            net = copy.deepcopy(model)
            load_checkpoint(net, run / "checkpoints" / f"step-{round(frac * steps)}.safetensors")
            spectra.append(spectrum(Objective(net.eval(), "cross_entropy", data.train.x, data.train.labels)))
        ranks = [sp.rank for sp in spectra]
        changes = [log_ratio(sp.eigenvalues, spectra[-1].eigenvalues) for sp in spectra[:-1]]
        rows = diffusion_rows(ranks, spectra[0].dim, spectra[0].n, changes)
        fig, ax = new_figure()
        for f, sp in zip(FRACTIONS, spectra, strict=True):
            ax.semilogy(sp.eigenvalues[: sp.rank], label=f"{int(100 * f)} % (rank {sp.rank}/{sp.dim})")
        ax.set_xlabel("index")
        ax.set_ylabel("eigenvalue of D")
        ax.set_title("Diffusion-matrix spectrum during training")
        ax.legend()
        save_figure(fig, ctx.out_dir / "diffusion_spectrum.png")
        config = {
            "setting": s,
            "rank": ranks,
            "rank_fraction": [r / spectra[0].dim for r in ranks],
            "mean": [sp.mean for sp in spectra],
            "std": [sp.std for sp in spectra],
            "route": "gram" if spectra[0].n <= spectra[0].dim else "covariance",
        }
        return Findings(rows=rows, figures=["diffusion_spectrum.png"], config=config)
