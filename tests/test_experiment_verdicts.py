"""Every verdict rule of the Theory II/IIb/III and Chaudhari experiments, fed fabricated numbers: the paper's
own numbers (or a correct result) pass, a deliberately wrong result fails. No training: milliseconds each."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flatminima.experiments import ComparisonRow, verdict
from flatminima.experiments._chaudhari_common import MethodRuns, method_phases
from flatminima.experiments._spread import (
    Spread,
    comparable_row,
    gate,
    margin_row,
    no_worse_row,
    sign_row,
    spread,
    tolerance,
)
from flatminima.experiments.chaudhari_diffusion_rank import diffusion_rows
from flatminima.experiments.chaudhari_entropy_sgd import entropy_sgd_rows
from flatminima.experiments.chaudhari_hessian_spectrum import spectrum_rows
from flatminima.experiments.chaudhari_limit_cycles import cycles_rows
from flatminima.experiments.chaudhari_parle import parle_rows
from flatminima.experiments.chaudhari_pde_smoothing import pde_rows
from flatminima.experiments.chaudhari_weight_averaging import averaging_rows
from flatminima.experiments.theory2_mds_branching import basin_rows
from flatminima.experiments.theory2_polynomial import polynomial_rows
from flatminima.experiments.theory2b_flatness import flatness_rows
from flatminima.experiments.theory2b_gradient_noise import noise_rows
from flatminima.experiments.theory2b_langevin import _match_row, increasing_row
from flatminima.experiments.theory2b_sgdl import sgdl_rows
from flatminima.experiments.theory2b_simplex import simplex_rows
from flatminima.experiments.theory3_margins import margin_rows
from flatminima.experiments.theory3_min_norm import min_norm_rows
from flatminima.experiments.theory3_n_vs_w import nvsw_rows


def paper(mean: float, std: float, n: int = 3) -> Spread:
    """A paper's "mean +- std over n runs" as a Spread (percent -> fraction)."""
    return Spread(mean / 100, std / 100, n)


def runs(errors: list[float], train: float = 0.0) -> MethodRuns:
    return MethodRuns(list(range(len(errors))), errors, [train] * len(errors), ["finished"] * len(errors))


def judged(rows: list[ComparisonRow], prefix: str) -> ComparisonRow:
    found = [r for r in rows if r.quantity.startswith(prefix)]
    assert len(found) == 1, [r.quantity for r in rows]
    return found[0]


# ----------------------------------------------------------------------------------------------- _spread
def test_spread_is_mean_and_sample_std() -> None:
    s = spread([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3) and s.std == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert math.isnan(spread([1.0]).std) and tolerance(spread([1.0]), s) is None
    assert tolerance(Spread(0, 0.3, 3), Spread(0, 0.4, 3)) == pytest.approx(1.0)
    assert tolerance(Spread(0, 0, 3), Spread(0, 0, 3), resolution=0.01) == 0.01


def test_rules_reproduce_the_theses_own_verdicts() -> None:
    # Table 3.1: Entropy-SGD 1.37 +- 0.03 vs Adam 1.39 +- 0.03 (mnistfc): comparable.
    assert no_worse_row("", paper(1.37, 0.03, 5), paper(1.39, 0.03, 5), "").holds is True
    # Table 5.1: Parle 0.44 +- 0.01 better than 0.48 / 0.49 / 0.50 +- 0.01.
    for other in (0.48, 0.49, 0.50):
        assert margin_row("", paper(other, 0.01), paper(0.44, 0.01), "").holds is True
    # Table 4.1 mnistfc: all comparable to SGD 1.10 +- 0.01; lenet HEAT 0.59 +- 0.02 vs SGD 0.50 +- 0.02 not.
    for m, s in ((1.08, 0.02), (1.13, 0.02), (1.17, 0.04)):
        assert comparable_row("", paper(m, s), paper(1.10, 0.01), "").holds is True
    assert comparable_row("", paper(0.59, 0.02), paper(0.50, 0.02), "").holds is False
    # Theory IIb Table 1 (MNIST, all params): 45.4 +- 2.7 natural vs 6.9 +- 1.0 random.
    assert margin_row("", Spread(45.4, 2.7, 5), Spread(6.9, 1.0, 5), "", scale=1.0).holds is True


def test_rules_fail_wrong_results() -> None:
    sgd = spread([0.020, 0.022, 0.021])
    broken = spread([0.035, 0.036, 0.034])  # 1.4 points worse: a fixed 1.5-point allowance passed this
    assert no_worse_row("", broken, sgd, "").holds is False
    assert comparable_row("", broken, sgd, "").holds is False
    assert margin_row("", sgd, spread([0.020, 0.021, 0.022]), "").holds is False  # "better" but equal
    assert no_worse_row("", spread([0.02]), sgd, "").holds is None  # no spread from one seed
    assert no_worse_row("", spread([0.02, 0.03]), sgd, "").relation.startswith("A - B <=")


def test_sign_rule_fails_when_the_feature_is_off_or_worse() -> None:
    sgd = [0.030, 0.031, 0.029, 0.032]
    assert sign_row("", [0.028, 0.030, 0.027, 0.031], sgd, "").holds is True
    assert sign_row("", sgd, sgd, "").holds is False  # noise switched off: identical runs
    assert sign_row("", [0.020, 0.040, 0.040, 0.040], sgd, "").holds is False  # lower on one seed only
    with pytest.raises(ValueError):
        sign_row("", [0.1], [0.1, 0.2], "")


def test_gate_removes_the_verdict_of_rows_whose_premise_failed() -> None:
    rows = [ComparisonRow("x", 1, 1, "<", True)]
    assert gate(rows, True) == rows
    gated = gate(rows, False, "why")
    assert gated[0].holds is None and "not judged: why" in gated[0].relation


# ----------------------------------------------------------------------------------------- Chaudhari
def test_entropy_sgd_verdict() -> None:
    good = {"Entropy-SGD": runs([0.021, 0.023, 0.022]), "Adam": runs([0.022, 0.024, 0.023])}
    assert verdict(entropy_sgd_rows(good, 600, 10)) is True
    worse = {"Entropy-SGD": runs([0.034, 0.036, 0.035]), "Adam": runs([0.022, 0.024, 0.023])}
    assert verdict(entropy_sgd_rows(worse, 600, 10)) is False
    untrained = {"Entropy-SGD": runs([0.9, 0.9, 0.9]), "Adam": runs([0.9, 0.9, 0.9])}
    rows = entropy_sgd_rows(untrained, 600, 10)
    assert judged(rows, "precondition").holds is False and verdict(rows) is False


def test_parle_verdict_needs_better_not_comparable() -> None:
    others = {"Elastic-SGD": [0.030, 0.031, 0.029], "Entropy-SGD": [0.031, 0.030, 0.032]}
    others["SGD"] = [0.032, 0.031, 0.033]
    better = {"Parle": runs([0.024, 0.025, 0.023]), **{k: runs(v) for k, v in others.items()}}
    assert verdict(parle_rows(better, 600, 10)) is True
    comparable = {"Parle": runs([0.030, 0.031, 0.030]), **{k: runs(v) for k, v in others.items()}}
    rows = parle_rows(comparable, 600, 10)
    assert verdict(rows) is False and judged(rows, "SGD - Parle").holds is False


def test_pde_verdict() -> None:
    base = {"Entropy-SGD": [0.021, 0.022, 0.020], "HEAT": [0.022, 0.021, 0.023], "SGD": [0.021, 0.022, 0.021]}
    good = {**{k: runs(v) for k, v in base.items()}, "HJ": runs([0.022, 0.020, 0.021])}
    assert verdict(pde_rows(good, 600, 10)) is True
    bad = {**{k: runs(v) for k, v in base.items()}, "HJ": runs([0.040, 0.041, 0.039])}
    rows = pde_rows(bad, 600, 10)
    assert judged(rows, "HJ - SGD").holds is False and judged(rows, "HEAT - SGD").holds is True


@pytest.mark.parametrize(
    ("protocol", "methods", "model"),
    [
        ("thesis-3.3.2", ["Adam", "Entropy-SGD"], "lenet"),
        ("thesis-4.6", ["Entropy-SGD", "HEAT", "HJ", "SGD"], "mnistfc"),
        ("thesis-5.4", ["Parle", "Elastic-SGD", "Entropy-SGD", "SGD"], "lenet"),
    ],
)
def test_thesis_protocols_are_valid_phases(protocol: str, methods: list[str], model: str) -> None:
    from flatminima.config import Phase

    setting = {
        "protocol": protocol,
        "batch_size": 128,
        "replicas": 6,
        "epochs": 100,
        "model": {"name": model},
    }
    for m in methods:
        phases, overrides = method_phases(m, setting, seed=0, n_train=60000)
        for p in phases:
            Phase(**p)  # validates names, bounds, options' presence
        assert set(overrides) <= {"dropout", "input_dropout"}
    # Thesis Sec. 3.3.2: Adam 100 epochs, lr / 5 every 30; Entropy-SGD 5 epochs x L = 20, lr 1 -> 0.1 after 2.
    if protocol == "thesis-3.3.2":
        adam, _ = method_phases("Adam", setting, 0, 60000)
        assert [p["lr"] for p in adam] == pytest.approx([1e-3, 2e-4, 4e-5, 8e-6])
        assert sum(p["max_epochs"] for p in adam) == 100
        ent, over = method_phases("Entropy-SGD", setting, 0, 60000)
        assert [(p["lr"], p["max_epochs"]) for p in ent] == [(1.0, 40), (0.1, 60)]
        assert ent[0]["options"]["L"] == 20 and over == {"dropout": 0.25}
    if protocol == "thesis-5.4":
        parle, _ = method_phases("Parle", setting, 0, 60000)
        assert parle[0]["options"]["n_replicas"] == 6 and parle[0]["options"]["L"] == 25
        assert parle[0]["options"]["batches_per_epoch"] == 469
        assert sum(p["max_epochs"] for p in parle) == 6 * 100  # 100 effective epochs per replica


def test_small_protocol_equal_effective_epochs() -> None:
    setting = {"protocol": "small", "batch_size": 16, "replicas": 4, "epochs": 7, "model": {"name": "mlp"}}
    single = {
        m: method_phases(m, setting, 0, 100)[0][0] for m in ("SGD", "Adam", "Entropy-SGD", "HEAT", "HJ")
    }
    assert {p["max_epochs"] for p in single.values()} == {7}
    assert method_phases("Parle", setting, 0, 100)[0][0]["max_epochs"] == 28


def test_hessian_spectrum_verdict() -> None:
    thesis = {"share": 0.94, "top": 40.0, "neg": -0.46, "exact": False, "d": 47658, "steps": 80}
    thesis.update(slq_share=0.94, slq_se=0.0)
    assert verdict(spectrum_rows(thesis)) is True
    assert verdict(spectrum_rows({**thesis, "share": 0.55})) is False  # too few near-zero eigenvalues
    assert verdict(spectrum_rows({**thesis, "share": 1.0})) is False  # e.g. a Hessian of zeros
    assert verdict(spectrum_rows({**thesis, "neg": 0.0})) is False  # PSD surrogate: no saddle
    assert verdict(spectrum_rows({**thesis, "neg": -8.0})) is False  # negative tail not small
    exact = {**thesis, "exact": True, "slq_share": 0.07, "slq_se": 0.01}
    rows = spectrum_rows(exact)
    assert judged(rows, "share |lambda| < 2.5e-6 lambda_max (SLQ)").holds is False
    assert judged(
        spectrum_rows({**exact, "slq_share": 0.93}), "share |lambda| < 2.5e-6 lambda_max (SLQ)"
    ).holds


def test_diffusion_rank_verdict_uses_the_thesis_range() -> None:
    # small-lenet numbers: 1.8 % of 13,338 weights, N = 60k.
    assert verdict(diffusion_rows([240, 240, 240], 13338, 60000, [0.1, 0.05])) is True
    assert verdict(diffusion_rows([2000, 1800, 1700], 13338, 60000, [0.1, 0.05])) is False  # 13-15 %
    assert verdict(diffusion_rows([0, 0, 0], 13338, 60000, [0.1, 0.05])) is False  # D = 0: wrong
    assert verdict(diffusion_rows([240, 240, 240], 13338, 60000, [0.8, 0.05])) is False  # spectrum moved
    capped = diffusion_rows([1199, 1199, 1199], 60000, 1200, [0.1, 0.05])  # 2 % of d but = N - 1
    assert judged(capped, "precondition").holds is False


def test_weight_averaging_gaps_must_exceed_test_noise() -> None:
    thesis = {"ensemble": 0.0784, "aligned average": 0.187, "naive average": 0.899}
    assert verdict(averaging_rows(thesis, 0.08, 10000)) is True
    within_noise = {"ensemble": 0.0201, "aligned average": 0.0235, "naive average": 0.0804}
    rows = averaging_rows(within_noise, 0.03, 597)
    assert judged(rows, "aligned average - ensemble").holds is False
    assert judged(rows, "naive average - aligned average").holds is True


def test_limit_cycles_verdict() -> None:
    assert verdict(cycles_rows([0.01, 0.012, 0.011], 0.03, [0.0, 0.4, 1.2], 0.7, 3.0)) is True
    assert verdict(cycles_rows([0.01, 0.2, 0.011], 0.03, [0.0, 0.4, 1.2], 0.7, 3.0)) is False
    assert verdict(cycles_rows([0.01, 0.012, 0.011], 0.03, [0.0, 0.4, 0.3], 0.7, 3.0)) is False
    assert verdict(cycles_rows([0.01, 0.012, 0.011], 0.03, [0.0, 0.4, 1.2], 0.05, 3.0)) is False  # white
    assert verdict(cycles_rows([0.01, 0.012, 0.011], 0.03, [0.0, 0.4, 1.2], 0.7, 0.9)) is False


# ---------------------------------------------------------------------------------------- Theory II / IIb
def test_flatness_verdict_and_stop_loss_precondition() -> None:
    radii = {("all", "natural"): [45.0, 42.0, 48.0], ("all", "random"): [7.0, 6.0, 8.0]}
    radii.update({("top", "natural"): [15.0, 13.0, 17.0], ("top", "random"): [3.0, 3.1, 2.9]})
    reached = {"natural": [0.009, 0.008, 0.009], "random": [0.0099, 0.0095, 0.0098]}
    assert verdict(flatness_rows(radii, reached, 0.01)) is True
    close = {**radii, ("top", "random"): [12.0, 16.0, 14.0]}
    assert verdict(flatness_rows(close, reached, 0.01)) is False  # 15 vs 14: within the spread
    budget = {**reached, "random": [0.8, 0.7, 0.9]}  # random labels stopped on the epoch budget
    rows = flatness_rows(radii, budget, 0.01)
    assert verdict(rows) is False and judged(rows, "all params: natural - random").holds is None


def test_sgdl_verdict() -> None:
    def curves(errors: list[float]) -> list[dict]:
        return [{"status": "finished", "val_error": [0.5, e], "val_loss": [1.0, 0.1]} for e in errors]

    good = {"sgd": curves([0.033, 0.035, 0.034]), "sgdl": curves([0.032, 0.034, 0.033])}
    assert verdict(sgdl_rows(good, 600)) is True
    off = {"sgd": curves([0.033, 0.035, 0.034]), "sgdl": curves([0.033, 0.035, 0.034])}
    assert verdict(sgdl_rows(off, 600)) is False  # noise off: comparable, but not "slightly better"
    worse = {"sgd": curves([0.033, 0.035, 0.034]), "sgdl": curves([0.050, 0.052, 0.049])}
    assert verdict(sgdl_rows(worse, 600)) is False
    diverged = {"sgd": curves([0.033]), "sgdl": [{"status": "diverged", "val_error": [], "val_loss": []}]}
    assert verdict(sgdl_rows(diverged, 600)) is False


def test_polynomial_verdict() -> None:
    def run(test: float, train: float, loss: float) -> dict:
        return {"status": "finished", "final_test_error": test, "final_train_error": train,
                "final_train_loss": loss, "n_train": 1000, "n_test": 797}  # fmt: skip

    relu = [run(0.028, 0.0, 0.010), run(0.030, 0.0, 0.011), run(0.027, 0.0, 0.012)]
    poly = [run(0.029, 0.0, 0.013), run(0.027, 0.0, 0.014), run(0.030, 0.0, 0.015)]
    assert verdict(polynomial_rows({"relu": relu, "poly:10": poly}, 0.08)) is True
    bad = [run(0.06, 0.02, 0.1), run(0.065, 0.02, 0.1), run(0.062, 0.03, 0.1)]
    assert verdict(polynomial_rows({"relu": relu, "poly:10": bad}, 0.08)) is False
    rows = polynomial_rows({"relu": relu, "poly:10": relu}, 0.08)  # activation switched off
    assert judged(rows, "precondition: the polynomial").holds is False
    assert judged(rows, "test error poly - ReLU").holds is None
    diverged = [*poly[:2], {**poly[2], "status": "diverged"}]
    rows = polynomial_rows({"relu": relu, "poly:10": diverged}, 0.08)
    assert verdict(rows) is False and judged(rows, "test error poly - ReLU").holds is None
    assert judged(rows, "poly:10: test error").ours.endswith("(2 seeds)")  # finished runs still reported


def test_simplex_verdict_requires_minima_at_the_vertices() -> None:
    ok = {"natural": [1.0, 1.0, 0.99], "random": [0.99, 1.0, 0.98]}
    assert verdict(simplex_rows({"natural": 0.9, "random": 0.1}, ok)) is True
    assert verdict(simplex_rows({"natural": 0.1, "random": 0.9}, ok)) is False
    not_minima = {"natural": [1.0, 1.0, 0.99], "random": [0.35, 0.4, 0.38]}
    rows = simplex_rows({"natural": 0.9, "random": 0.0}, not_minima)
    assert verdict(rows) is False and judged(rows, "high-accuracy").holds is None


def test_basin_verdict_requires_minima_and_a_rise_across_basins() -> None:
    excess = {"perturbed": [0.0, -0.01], "parallel": [0.005], "stage0": [0.3]}
    assert verdict(basin_rows(excess, 0.15, [0.0, 0.002])) is True
    assert verdict(basin_rows(excess, 0.01, [0.0, 0.002])) is False  # no rise across basins
    assert verdict(basin_rows({**excess, "parallel": [0.08]}, 0.15, [0.0, 0.0])) is False  # wall in basin
    rows = basin_rows(excess, 0.15, [0.3, 0.4])  # unconverged end points
    assert verdict(rows) is False and judged(rows, "independent inits").holds is None


def test_gradient_noise_verdict() -> None:
    assert verdict(noise_rows({1: 0.3, 32: 0.04}, 0.02, 0.5, 32, 0.4)) is True
    assert verdict(noise_rows({1: 0.3, 32: 0.13}, 0.02, 0.5, 32, 0.1)) is False  # heavy tails
    assert verdict(noise_rows({1: 0.03, 32: 0.04}, 0.02, 0.5, 32, 0.4)) is False  # no CLT gain
    assert verdict(noise_rows({1: 0.3, 32: 0.04}, 0.5, 0.5, 32, 0.4)) is False  # mean not small


def test_langevin_rules() -> None:
    assert _match_row("", 0.70, 0.70, 4000, "").holds is True
    assert _match_row("", 0.60, 0.70, 4000, "").holds is False
    assert increasing_row([0.58, 0.65, 0.72, 0.80, 0.87], 4000).holds is True
    assert increasing_row([0.58, 0.58, 0.58, 0.58, 0.58], 4000).holds is False
    assert increasing_row([0.58, 0.70, 0.60, 0.80, 0.87], 4000).holds is False


# ------------------------------------------------------------------------------------------- Theory III
def test_margins_verdict_judges_the_raw_margin() -> None:
    nat = {"margin": 8.0, "normalized_margin": 0.05, "l2": 27.0}
    rnd = {"margin": 3.0, "normalized_margin": 0.003, "l2": 60.0}
    big = {"margin": 5.0, "normalized_margin": 0.006, "l2": 97.0}
    fit = {"natural x1": 0.0, "random x1": 0.0, "natural x10": 0.0}
    stats = {"natural x1": nat, "random x1": rnd, "natural x10": big}
    assert verdict(margin_rows(stats, fit)) is True
    # x10 init: smaller normalized margin but a *larger* raw margin: the paper's quantity fails.
    rows = margin_rows({**stats, "natural x10": {**big, "margin": 40.0}}, fit)
    assert verdict(rows) is False and judged(rows, "x10 vs x1 init: median raw").holds is False
    rows = margin_rows(stats, {**fit, "random x1": 0.3})
    assert verdict(rows) is False and judged(rows, "random vs natural: median raw").holds is None


def _row(n: int, w: int, train: float, test: float, rl: float = 0.0) -> dict:
    return {
        "data.n_train": n,
        "params": w,
        "train_error": train,
        "test_error": test,
        "data.random_labels": rl,
    }


def test_n_vs_w_verdict_checks_figs_3_4() -> None:
    nat = [_row(50, 910, 0.0, 0.3), _row(1200, 910, 0.01, 0.08)]
    rnd = [_row(50, 910, 0.0, 0.9, 1.0), _row(100, 910, 0.01, 0.88, 1.0), _row(1200, 910, 0.5, 0.9, 1.0)]
    by_w = [_row(400, w, tr, te) for w, tr, te in ((85, 0.2, 0.3), (310, 0.02, 0.12), (610, 0.0, 0.10),
                                                     (1210, 0.0, 0.095), (4810, 0.0, 0.10))]  # fmt: skip
    assert verdict(nvsw_rows(nat, rnd, by_w, 400, 0.9, 597)) is True
    overfit = [*by_w[:-1], _row(400, 4810, 0.0, 0.25)]  # test error rises by 15 points at large W
    rows = nvsw_rows(nat, rnd, overfit, 400, 0.9, 597)
    assert judged(rows, "natural labels, N=400: max rise").holds is False
    not_fit = [*by_w[:-1], _row(400, 4810, 0.05, 0.10)]  # W >= N but training error not zero
    assert judged(nvsw_rows(nat, rnd, not_fit, 400, 0.9, 597), "natural labels, N=400, every").holds is False


def test_min_norm_verdict() -> None:
    assert verdict(min_norm_rows(1e-14, 1e-12, 1e-15, [0.7, 0.75, 0.8, 0.83])) is True
    assert verdict(min_norm_rows(0.3, 1e-12, 1e-15, [0.7, 0.75, 0.8, 0.83])) is False  # not the pinv
    assert verdict(min_norm_rows(1e-14, 1e-12, 0.2, [0.7, 0.75, 0.8, 0.83])) is False  # off row space
    sqrt_law = [math.sqrt(t) / math.sqrt(10) for t in (10, 30, 100, 300)]  # lambda ~ T^-1/2
    assert verdict(min_norm_rows(1e-14, 1e-12, 1e-15, sqrt_law)) is False


def test_diagram_paper_scale_fails_when_a_cell_of_the_grid_gives_no_minimum() -> None:
    from flatminima.experiments.wu2018_diagram import trained_rows

    assert verdict(trained_rows(9, 0, 0, paper=True)) is True
    for diverged, budget in ((6, 0), (0, 1)):  # the paper trained every (B, v) cell at eta = 0.5
        rows = trained_rows(9, diverged, budget, paper=True)
        assert verdict(rows) is False
        assert rows[-1].ours == f"{9 - diverged - budget}/9"
    assert all(r.holds is None for r in trained_rows(9, 6, 1, paper=False))  # our own settings: reported
