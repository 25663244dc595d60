"""The post-2017 experiments (Cohen et al. 2021, Keskar et al. 2017, Foret et al. 2021): one smoke run each
(result.json, figures, rows re-derived from the stored runs), and every verdict function fed deliberately
wrong results must fail."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flatminima.experiments import ExperimentResult
from flatminima.experiments._sharpness_common import binomial_tolerance
from flatminima.experiments.cohen2021_edge_of_stability import LOWER, UPPER, eos_rows, eos_statistics
from flatminima.experiments.foret2021_sam import foret_rows
from flatminima.experiments.keskar2017_large_batch import keskar_rows
from flatminima.runner import ResultsStore

from .test_experiments_wu import _run as _wu_run


def _run(name: str, out: Path) -> ExperimentResult:
    result = _wu_run(name, out)  # result.json, figures and table.md written
    assert all(r.holds is not None for r in result.rows if r.relation != "reference")
    return result


# ------------------------------------------------------------------------------------------ smoke runs
def test_cohen_smoke(tmp_path: Path) -> None:
    result = _run("cohen2021-edge-of-stability", tmp_path)
    with ResultsStore(tmp_path / "runs") as store:
        (rec,) = store.runs()
        sharp = store.metrics(rec.run_id, "sharpness")
        loss = store.metrics(rec.run_id, "train_loss")
        saved = store.results(rec.run_id)
    lr = rec.config["lr"]
    again = eos_statistics(
        [p["step"] for p in sharp], [p["value"] for p in sharp], [p["step"] for p in loss],
        [p["value"] for p in loss], lr,
    )  # fmt: skip
    assert again["median_ratio"] == pytest.approx(saved["median_ratio"])
    assert [r.holds for r in result.rows] == [again["reaches"], again["hovers"], again["loss_falls"]]
    assert again["reaches"]  # GD at eta = 1 sharpens from ~0.8 to 2/eta = 2 within 300 steps


def test_keskar_smoke(tmp_path: Path) -> None:
    result = _run("keskar2017-large-batch", tmp_path)
    with ResultsStore(tmp_path / "runs") as store:
        runs = {r["label"]: r for r in store.table()}
    sb, lb = runs["B=16"], runs["B=600"]
    assert sb["train_loss"] < 0.01 and lb["train_loss"] < 0.01  # both stopped at the same training loss
    assert result.rows[0].ours == pytest.approx(lb["eps_0.001"] / sb["eps_0.001"])
    assert result.rows[0].holds == (lb["eps_0.001"] > sb["eps_0.001"])
    assert lb["sharpness"] > sb["sharpness"]  # the Hessian sees the large batch's sharper minimum


def test_foret_smoke(tmp_path: Path) -> None:
    result = _run("foret2021-sam", tmp_path)
    with ResultsStore(tmp_path / "runs") as store:
        runs = {r["label"]: r for r in store.table()}
    assert runs["SAM"]["steps"] == runs["SGD"]["steps"]  # same minibatches
    assert result.rows[0].holds == (runs["SAM"]["sharpness"] < runs["SGD"]["sharpness"])
    assert runs["SAM"]["sharpness"] < runs["SGD"]["sharpness"]


# ------------------------------------------------------------------------------------------ verdicts
def _eos_series(level: float, lr: float = 1.0, steps: int = 400, monotone: bool = False):
    """Sharpness rising linearly from 0.4 x 2/eta to ``level`` x 2/eta by step 150, then flat with a +-2 %
    wiggle; loss decreasing, with small spikes unless ``monotone``."""
    bound = 2 / lr
    s_steps = list(range(0, steps + 1, 10))
    sharp = [
        bound * (0.4 + (level - 0.4) * min(s, 150) / 150 + (0.02 * (-1) ** (s // 10) if s > 150 else 0.0))
        for s in s_steps
    ]
    l_steps = list(range(0, steps + 1, 5))
    loss = [
        0.1 * math.exp(-s / 300) * (1.3 if (not monotone and s % 40 == 20 and s > 150) else 1.0)
        for s in l_steps
    ]
    return s_steps, sharp, l_steps, loss, lr


def test_eos_verdicts_hold_for_an_edge_of_stability_series() -> None:
    st = eos_statistics(*_eos_series(1.03))
    assert st["reaches"] and st["hovers"] and st["loss_falls"]
    assert st["median_ratio"] == pytest.approx(1.03, abs=0.03)
    assert all(r.holds for r in eos_rows(1.0, st))


@pytest.mark.parametrize(
    ("level", "monotone", "failing"),
    [
        (0.7, False, "reaches"),  # saturates below 2/eta: no edge of stability
        (1.0 + UPPER + 0.1, False, "hovers"),  # far above 2/eta: not hovering at it
        (1.0, True, "loss_falls"),  # monotone loss: not the non-monotone decrease of the paper
    ],
)
def test_eos_verdicts_fail_on_wrong_series(level: float, monotone: bool, failing: str) -> None:
    st = eos_statistics(*_eos_series(level, monotone=monotone))
    assert st[failing] is False
    assert not all(r.holds for r in eos_rows(1.0, st))


def test_eos_starting_above_the_edge_is_not_progressive_sharpening() -> None:
    s_steps, sharp, l_steps, loss, lr = _eos_series(1.0)
    sharp = [max(a, 2.0) for a in sharp]  # already at 2/eta from step 0
    assert eos_statistics(s_steps, sharp, l_steps, loss, lr)["reaches"] is False
    assert 1 - LOWER < 1 < 1 + UPPER


def _stats(**values: float) -> dict[str, tuple[float, float]]:
    return {k: (v, 0.0) for k, v in values.items()}


def test_keskar_verdicts() -> None:
    sb = _stats(
        **{"eps_0.001": 0.1, "eps_0.0005": 0.05, "eps_0.001_subspace": 0.01}, test_error=0.02, sharpness=0.5
    )
    lb = _stats(
        **{"eps_0.001": 2.0, "eps_0.0005": 0.5, "eps_0.001_subspace": 0.03}, test_error=0.03, sharpness=4.0
    )
    good = keskar_rows({"SB": sb, "LB": lb}, "SB", "LB")
    assert all(r.holds for r in good if r.holds is not None)
    swapped = keskar_rows({"SB": lb, "LB": sb}, "SB", "LB")  # a flatter, better large batch: the claim fails
    assert not any(r.holds for r in swapped if r.holds is not None)
    lb_better = dict(lb, test_error=(0.01, 0.0))
    rows = keskar_rows({"SB": sb, "LB": lb_better}, "SB", "LB")
    assert [r.holds for r in rows if r.holds is not None] == [True, True, True, False]
    nan = dict(lb, **{"eps_0.001": (math.nan, 0.0)})  # a diverged large-batch run is no evidence
    assert keskar_rows({"SB": sb, "LB": nan}, "SB", "LB")[0].holds is False


def test_foret_verdicts() -> None:
    sgd = _stats(sharpness=2.0, m_sharpness=0.01, test_error=0.040)
    sam = _stats(sharpness=1.0, m_sharpness=0.005, test_error=0.045)  # within 2 s.e. of 4 % on 597
    assert binomial_tolerance(0.04, 597) == pytest.approx(2 * math.sqrt(0.04 * 0.96 / 597))
    assert all(r.holds for r in foret_rows({"SGD": sgd, "SAM": sam}, 597))
    worse = dict(sam, test_error=(0.08, 0.0))  # 4 points worse: beyond the test set's resolution
    assert [r.holds for r in foret_rows({"SGD": sgd, "SAM": worse}, 597)] == [True, True, False]
    sharper = dict(sam, sharpness=(3.0, 0.0), m_sharpness=(0.02, 0.0))
    assert [r.holds for r in foret_rows({"SGD": sgd, "SAM": sharper}, 597)] == [False, False, True]


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("cohen2021-edge-of-stability", "cifar"),
        ("keskar2017-large-batch", "mnist"),
        ("foret2021-sam", "cifar"),
    ],
)
def test_paper_scale_without_data_fails_early(name: str, files: str, tmp_path: Path, monkeypatch) -> None:
    from flatminima.errors import DataNotFoundError
    from flatminima.experiments import get

    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError, match=files):
        get(name).run("paper", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written
