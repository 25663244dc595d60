"""Theory IIb Figs. 3-6: Langevin dynamics prefers wide and degenerate minima, as the Boltzmann law says.

Fig. 3: two minima of equal depth, one with a flat bottom twice as wide in every dimension
(:func:`flatminima.toys.two_basin_potential`). GDL (x <- x - lr grad U + sqrt(2 lr T) W) is run on many
independent chains, all started in the *narrow* minimum; the share of chains in the wide basin (x_1 < 0) after
``steps`` steps is compared with the exact Boltzmann share of exp(-U/T)/Z (closed form,
:func:`flatminima.toys.basin_shares`) for d = 1..5. Claim: the wide basin's share grows with d.

Figs. 4-6: a degenerate (valley) minimum and a point minimum of the same depth
(:func:`flatminima.toys.degenerate_valley_potential`); GDL, SGD with synthetic +-1 minibatch noise and SGDL,
all at the same temperature T, prefer the valley (share of x_1 < 0 > 1/2), again matching the Boltzmann share.

Tolerance: the sampled share is a mean of independent chains, standard error SE = sqrt(p (1 - p) / chains);
"matches Boltzmann" means |sampled - exact| <= 4 SE + 0.01, the 0.01 (ours) allowing for the O(lr) bias of
the Euler-Maruyama discretization (lr = 0.02). The reference is the closed-form Boltzmann share, independent
of our samplers (the tests also check it by brute-force integration); the rules are the pure functions
:func:`_match_row` and :func:`increasing_row`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from ..toys import basin_shares, degenerate_valley_potential, langevin_sample, two_basin_potential
from ..toys.plots import plot_degenerate_histograms, plot_two_basin_histograms
from .base import ComparisonRow, Experiment, Findings, RunContext, register

SCALES: dict[str, dict[str, Any]] = {
    "smoke": dict(chains=1000, steps=2500, dims=[1, 2, 3, 4, 5]),
    "default": dict(chains=4000, steps=3000, dims=[1, 2, 3, 4, 5]),
    "paper": dict(chains=20000, steps=6000, dims=[1, 2, 3, 4, 5]),
}
LR = 0.02
BIAS_TOLERANCE = 0.01


def _start(pot: Any, chains: int) -> torch.Tensor:
    """Every chain starts in the right-hand (narrow / point) minimum."""
    x0 = torch.zeros(chains, pot.dim, dtype=torch.float64)
    x0[:, 0] = pot.centers[1, 0]
    return x0


def _method_kwargs(method: str, t: float) -> dict[str, float]:
    """Noise settings giving each dynamics the effective temperature t (toys.sampler docstring)."""
    return {
        "gdl": {"temperature": t},
        "sgd": {"noise_std": math.sqrt(2 * t / LR)},
        "sgdl": {"noise_std": math.sqrt(t / LR), "extra_noise": math.sqrt(t * LR)},
    }[method]


def _match_row(quantity: str, sampled: float, exact: float, chains: int, paper: str) -> ComparisonRow:
    tol = 4 * math.sqrt(max(exact * (1 - exact), 1e-12) / chains) + BIAS_TOLERANCE
    return ComparisonRow(
        quantity,
        f"{sampled:.3f} (Boltzmann {exact:.3f})",
        paper,
        f"|sampled - Boltzmann| <= {tol:.3f} (4 Monte-Carlo SE + 0.01)",
        bool(abs(sampled - exact) <= tol),
    )


def increasing_row(shares: list[float], chains: int) -> ComparisonRow:
    """Row "the wide minimum's share grows with d" against the Monte-Carlo noise of ``chains`` chains
    (SE <= sqrt(0.25 / chains)): no step down by more than 2 SE, first to last up by more than 4 SE."""
    se = math.sqrt(0.25 / chains)
    increasing = (
        all(b > a - 2 * se for a, b in itertools.pairwise(shares)) and shares[-1] - shares[0] > 4 * se
    )
    return ComparisonRow(
        "wide-minimum share vs d",
        ", ".join(f"{v:.3f}" for v in shares),
        "increasing (volume ratio 2^d at low T)",
        "increasing in d (each step > -2 SE, first to last > 4 SE)",
        increasing,
    )


@register
class Theory2bLangevin(Experiment):
    name = "theory2b-langevin"
    title = "Langevin dynamics prefers wider and degenerate minima (Boltzmann law)"
    paper = "Poggio & Liao, Theory IIb, Figs. 3-6"
    claim = (
        "the wider minimum's share grows with dimension d = 1..5 and matches exp(-U/T)/Z; GDL, SGD and "
        "SGDL all prefer the degenerate valley over the point minimum"
    )

    def compute(self, ctx: RunContext) -> Findings:
        s = SCALES[ctx.scale]
        chains, steps = s["chains"], s["steps"]
        rows: list[ComparisonRow] = []
        wide: dict[int, np.ndarray] = {}
        shares = []
        for d in s["dims"]:
            pot = two_basin_potential(d)
            x = langevin_sample(
                pot.force, _start(pot, chains), LR, steps, temperature=pot.temperature, seed=ctx.seed + d
            ).x
            wide[d] = x[:, 0].numpy()
            shares.append(float(np.mean(wide[d] < pot.split)))
            rows.append(
                _match_row(
                    f"d = {d}: share of wide minimum (GDL)",
                    shares[-1],
                    basin_shares(pot)[0],
                    chains,
                    "grows with d (Fig. 3)",
                )
            )
        rows.append(increasing_row(shares, chains))
        pot = degenerate_valley_potential()
        exact = basin_shares(pot)[0]
        valley: dict[str, np.ndarray] = {}
        for i, method in enumerate(("gdl", "sgd", "sgdl")):
            x = langevin_sample(
                pot.force,
                _start(pot, chains),
                LR,
                steps,
                method=method,  # type: ignore[arg-type]
                seed=ctx.seed + 100 + i,
                **_method_kwargs(method, pot.temperature),
            ).x
            valley[method] = x[:, 0].numpy()
            share = float(np.mean(valley[method] < pot.split))
            rows.append(
                _match_row(
                    f"{method.upper()}: share of degenerate valley",
                    share,
                    exact,
                    chains,
                    "valley preferred (Figs. 4-6)",
                )
            )
            rows.append(
                ComparisonRow(
                    f"{method.upper()}: valley preferred", round(share, 3), "> 0.5", "> 0.5", share > 0.5
                )
            )
        plot_two_basin_histograms(ctx.out_dir / "two_basin_histograms.png", samples=wide)
        plot_degenerate_histograms(ctx.out_dir / "degenerate_histograms.png", samples=valley)
        return Findings(
            rows=rows,
            figures=["two_basin_histograms.png", "degenerate_histograms.png"],
            config={"chains": chains, "steps": steps, "lr": LR, "dims": s["dims"], "temperature": 1.0},
        )
