"""Smoke-scale runs of the Theory III and Chaudhari-thesis experiments: each must show the paper's
qualitative relation with its fixed seed, and write result.json and its PNG figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flatminima import experiments as E
from flatminima.errors import DataNotFoundError
from flatminima.experiments._chaudhari_common import method_phase


def run_smoke(name: str, tmp_path: Path) -> E.ExperimentResult:
    result = E.get(name).run("smoke", tmp_path, progress=False)
    saved = json.loads((tmp_path / E.RESULT_FILE).read_text())
    assert saved["name"] == name and saved["scale"] == "smoke"
    assert result.figures, "every experiment writes a figure"
    for fig in result.figures:
        path = tmp_path / fig
        assert path.suffix == ".png" and path.stat().st_size > 1000
    return result


def row(result: E.ExperimentResult, prefix: str) -> E.ComparisonRow:
    found = [r for r in result.rows if r.quantity.startswith(prefix)]
    assert len(found) == 1, [r.quantity for r in result.rows]
    return found[0]


def test_min_norm_gd_sgd_reach_pseudo_inverse_and_ridge_scales_like_one_over_t(tmp_path: Path) -> None:
    res = run_smoke("theory3-min-norm", tmp_path)
    assert float(row(res, "|w_GD").ours) < 1e-3 and float(row(res, "|w_SGD").ours) < 1e-3
    products = row(res, "lambda * eta * T").ours
    assert max(products) / min(products) < 3
    assert 0.7 < res.config["slope"] < 1.3  # lambda ~ (1/(eta T))^1
    assert res.passed is True


def test_n_vs_w_random_labels_memorized_only_below_capacity(tmp_path: Path) -> None:
    res = run_smoke("theory3-n-vs-w", tmp_path)
    assert row(res, "random labels, N <= W/8").ours <= 0.02
    assert row(res, "random labels, N > W").ours >= 0.10
    assert res.passed is True


def test_margins_random_labels_and_large_init_shrink_normalized_margin(tmp_path: Path) -> None:
    res = run_smoke("theory3-margins", tmp_path)
    stats = res.config["stats"]
    assert stats["random x1"]["normalized_margin"] < stats["natural x1"]["normalized_margin"]
    assert stats["natural x10"]["normalized_margin"] < stats["natural x1"]["normalized_margin"]
    assert stats["random x1"]["l2"] > stats["natural x1"]["l2"] < stats["natural x10"]["l2"]
    assert res.passed is True


def test_entropy_sgd_comparable_to_sgd(tmp_path: Path) -> None:
    res = run_smoke("chaudhari-entropy-sgd", tmp_path)
    results = res.config["results"]
    assert results["Entropy-SGD"]["train_error"] < 0.05  # it trained
    assert res.passed is True


def test_pde_smoothing_methods_comparable(tmp_path: Path) -> None:
    res = run_smoke("chaudhari-pde-smoothing", tmp_path)
    errors = [r["test_error"] for r in res.config["results"].values()]
    assert max(errors) - min(errors) <= 0.03 and max(errors) < 0.2
    assert res.passed is True


def test_parle_comparable_or_better(tmp_path: Path) -> None:
    res = run_smoke("chaudhari-parle", tmp_path)
    assert row(res, "Parle").holds is True
    assert res.passed is True


def test_effective_epochs_equal_across_single_replica_methods() -> None:
    phases = {m: method_phase(m, 7, 16, 0, replicas=4) for m in ("SGD", "Entropy-SGD", "HEAT", "HJ")}
    assert {p["max_epochs"] for p in phases.values()} == {7}
    assert method_phase("Parle", 7, 16, 0, replicas=4)["max_epochs"] == 28


def test_weight_averaging_ensemble_beats_aligned_beats_naive(tmp_path: Path) -> None:
    res = run_smoke("chaudhari-weight-averaging", tmp_path)
    ens, aligned, naive = row(res, "ensemble <").ours
    assert ens < aligned < naive
    assert res.passed is True


def test_diffusion_matrix_low_rank_and_stable(tmp_path: Path) -> None:
    res = run_smoke("chaudhari-diffusion-rank", tmp_path)
    assert all(f < 0.5 for f in res.config["rank_fraction"])
    assert res.passed is True


def test_hessian_spectrum_mostly_flat_with_small_negative_part(tmp_path: Path) -> None:
    res = run_smoke("chaudhari-hessian-spectrum", tmp_path)
    assert row(res, "share |lambda| < 1e-4 (exact)").ours > 0.5
    assert row(res, "most negative eigenvalue").ours < 0 < row(res, "top eigenvalue").ours
    assert res.passed is True


@pytest.mark.parametrize("name", ["chaudhari-limit-cycles"])
def test_limit_cycles_density_invariant_circulation_grows(name: str, tmp_path: Path) -> None:
    res = run_smoke(name, tmp_path)
    circ = res.config["circulation"]
    assert abs(circ[0]) < 0.1 * circ[2] and circ[0] < circ[1] < circ[2]
    assert all(tv < res.config["tv_tol"] for tv in res.config["tv"])
    assert res.passed is True


@pytest.mark.parametrize(
    "name",
    [
        "theory3-n-vs-w",
        "theory3-margins",
        "chaudhari-entropy-sgd",
        "chaudhari-pde-smoothing",
        "chaudhari-parle",
        "chaudhari-weight-averaging",
        "chaudhari-diffusion-rank",
        "chaudhari-hessian-spectrum",
    ],
)
def test_paper_scale_without_data_files_fails_before_work(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path / "no-data"))
    with pytest.raises(DataNotFoundError):
        E.get(name).run("paper", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / E.RESULT_FILE).exists()
    assert not (tmp_path / "out" / "runs").exists()
