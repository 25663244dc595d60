"""Theory II / IIb experiments at smoke scale: each must show the paper's qualitative relation, from our own
measurements, and write result.json and its PNG figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from flatminima import experiments as E
from flatminima.errors import DataNotFoundError
from flatminima.toys import basin_shares, degenerate_valley_potential, grid_shares, two_basin_potential


def _run(name: str, tmp_path: Path) -> E.ExperimentResult:
    result = E.get(name).run("smoke", tmp_path / name, progress=False)
    out = tmp_path / name
    saved = json.loads((out / "result.json").read_text())
    assert saved["name"] == name and saved["scale"] == "smoke"
    assert result.figures, "every experiment writes at least one figure"
    for fig in result.figures:
        path = out / fig
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result


def _row(result: E.ExperimentResult, prefix: str) -> E.ComparisonRow:
    rows = [r for r in result.rows if r.quantity.startswith(prefix)]
    assert len(rows) == 1, [r.quantity for r in result.rows]
    return rows[0]


def _mean(cell: str) -> float:
    """The mean of an "m ± s" cell."""
    return float(cell.split("±")[0])


def test_flatness_natural_flatter_than_random(tmp_path: Path) -> None:
    r = _run("theory2b-flatness", tmp_path)
    for label in ("all params", "top layer"):
        nat = _mean(_row(r, f"{label}, natural").ours)
        rnd = _mean(_row(r, f"{label}, random").ours)
        assert nat > rnd > 0
        ratio = _row(r, f"{label}: ratio")
        assert ratio.holds is True and ratio.ours == pytest.approx(nat / rnd, rel=0.02)
    assert r.passed is True


def test_langevin_matches_boltzmann_and_prefers_wide_minima(tmp_path: Path) -> None:
    r = _run("theory2b-langevin", tmp_path)
    shares = [float(_row(r, f"d = {d}:").ours.split()[0]) for d in range(1, 6)]
    # Independent reference: brute-force numerical integration of exp(-U/T) (d <= 2), closed form beyond.
    exact = [grid_shares(two_basin_potential(d))[0] for d in (1, 2)]
    exact += [basin_shares(two_basin_potential(d))[0] for d in (3, 4, 5)]
    tol = 4 * math.sqrt(0.25 / 1000) + 0.01
    assert np.all(np.abs(np.array(shares) - np.array(exact)) <= tol)
    assert shares[-1] > shares[0] > 0.5
    valley = grid_shares(degenerate_valley_potential())[0]
    for method in ("GDL", "SGD", "SGDL"):
        share = float(_row(r, f"{method}: share").ours.split()[0])
        assert abs(share - valley) <= tol and share > 0.5
    assert r.passed is True


def test_sgdl_comparable_to_sgd(tmp_path: Path) -> None:
    r = _run("theory2b-sgdl", tmp_path)
    sgd = _mean(_row(r, "SGD final validation error").ours)
    sgdl = _mean(_row(r, "SGDL final validation error").ours)
    assert sgd < 0.3 and sgdl < 0.3  # both learned (10 classes: chance is 0.9)
    diff = _row(r, "validation error SGDL - SGD")
    assert diff.ours == pytest.approx(sgdl - sgd, abs=1e-3) and diff.holds is True


def test_gradient_noise_gaussian_for_moderate_batches(tmp_path: Path) -> None:
    r = _run("theory2b-gradient-noise", tmp_path)
    ks1 = _row(r, "median KS distance, B = 1").ours
    ks32 = _row(r, "median KS distance, B = 32").ours
    assert ks32 < 0.06 < ks1  # single-example gradients are far from Gaussian, B = 32 means close to it
    assert _row(r, "median |mean|").ours <= 0.1
    assert r.passed is True


def test_simplex_natural_labels_wider_region(tmp_path: Path) -> None:
    r = _run("theory2b-simplex", tmp_path)
    nat = _row(r, "natural: fraction").ours
    rnd = _row(r, "random: fraction").ours
    assert nat > rnd and 0 <= rnd <= 1
    for kind in ("natural", "random"):  # the three vertices are training-set minima
        assert all(float(a) >= 0.99 for a in _row(r, f"{kind}: vertex").ours.split(","))
    assert r.passed is True


def test_mds_branching_basin_model(tmp_path: Path) -> None:
    r = _run("theory2-mds-branching", tmp_path)
    assert _row(r, "perturbed branches").ours <= 0.02
    assert _row(r, "parallel branches").ours <= 0.02
    assert _row(r, "independent inits").ours >= 0.1
    assert r.passed is True


def test_polynomial_activation_similar_errors(tmp_path: Path) -> None:
    r = _run("theory2-polynomial", tmp_path)
    # Independent reference for the reported sup error: numpy least-squares fit on a different, denser grid.
    x = np.linspace(-3, 3, 20001)
    fit = np.polynomial.Polynomial.fit(x, np.maximum(x, 0), 10)
    assert _row(r, "sup |poly - ReLU|").ours == pytest.approx(
        np.max(np.abs(fit(x) - np.maximum(x, 0))), rel=0.05
    )
    relu = _mean(_row(r, "relu: test error").ours)
    poly = _mean(_row(r, "poly:10: test error").ours)
    assert relu < 0.2 and poly < 0.2 and abs(poly - relu) <= 0.02
    assert r.passed is True


@pytest.mark.parametrize(
    "name",
    [
        "theory2b-flatness",
        "theory2b-sgdl",
        "theory2b-gradient-noise",
        "theory2b-simplex",
        "theory2-mds-branching",
        "theory2-polynomial",
    ],
)
def test_paper_scale_needs_local_data(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError):
        E.get(name).run("paper", tmp_path / "out", progress=False)


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    exp = E.get("theory2-mds-branching")
    rows = [exp.run("smoke", tmp_path / f"run{i}", seed=3, progress=False).rows for i in range(2)]
    assert [r.ours for r in rows[0]] == [r.ours for r in rows[1]]
    other = exp.run("smoke", tmp_path / "other", seed=4, progress=False).rows
    assert [r.ours for r in other] != [r.ours for r in rows[0]]
