"""Landscape grids: axes and sizes checked before any work, 1-D lines stored in resumable blocks, unreadable
store files a clear error. Values are checked against the closed form I(w) = w^T M w of a linear model."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from flatminima import ConfigError, _validate
from flatminima.landscape import GridStore, flatness_radius, slice_1d, slice_2d
from flatminima.landscape.budget import TIMED_ABOVE, check_grid_time
from flatminima.landscape.simplex import simplex_grid
from flatminima.landscape.slices import check_axis
from flatminima.landscape.store import block_points, fingerprint

from .test_landscape_radius import _quadratic
from .test_landscape_slices import _quadratic_obj


def _closed_form(obj, m, d, xs) -> np.ndarray:
    return np.array([float((obj.theta + a * d) @ m @ (obj.theta + a * d)) for a in xs])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.0, np.nan, 1.0], "must be finite"),
        ([0.0, np.inf], "must be finite"),
        (np.zeros(5), "strictly increasing"),  # --range 0: every point the same
        ([1.0, 0.0], "strictly increasing"),
        ([0.5], "at least two coordinates"),
        ([[0.0, 1.0]], "at least two coordinates"),
        (["a", "b"], "array of numbers"),
    ],
)
def test_bad_axes_are_refused_before_any_work(tmp_path, values, message):
    obj, _ = _quadratic_obj()
    with pytest.raises(ConfigError, match=message):
        check_axis("xs", values)
    with pytest.raises(ConfigError, match=message):
        slice_1d(obj, torch.ones(5, dtype=torch.float64), values, store=tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()


def test_block_points():
    assert block_points(51) == 256 and block_points(10**6) == 1000 and block_points(10**6 + 1) == 1001


def test_long_line_resumes_block_by_block(tmp_path):
    """A 600-point line is three blocks; finished blocks (sentinels) are kept, the rest computed exactly."""
    obj, m = _quadratic_obj()
    d = torch.randn(5, dtype=torch.float64)
    xs = np.linspace(-1, 1, 600)
    path = tmp_path / "line.npz"
    pre = GridStore(path, [xs], {"kind": "random", "fingerprint": fingerprint(obj.theta, d.reshape(1, -1))})
    assert [(r, c.start, c.stop) for r, c in pre.blocks] == [(0, 0, 256), (0, 256, 512), (0, 512, 600)]
    pre.put_block(0, np.full(256, -1.0), np.full(256, np.nan))
    pre.put_block(2, np.full(88, -2.0), np.full(88, np.nan))
    s = slice_1d(obj, d, xs, store=path)
    assert (s.loss[:256] == -1).all() and (s.loss[512:] == -2).all()
    np.testing.assert_allclose(s.loss[256:512], _closed_form(obj, m, d, xs[256:512]), rtol=1e-12)
    with np.load(path) as f:
        assert f["done"].tolist() == [True, True, True] and int(f["block"]) == 256
    with pytest.raises(ConfigError, match="put_block"):
        pre.put_row(0, np.zeros(600), np.zeros(600))


def test_store_of_the_older_layout_resumes(tmp_path):
    """Files written before blocks (one row, one done flag, no block length) are read as one block."""
    obj, m = _quadratic_obj()
    d = torch.randn(5, dtype=torch.float64)
    xs = np.linspace(-1, 1, 300)
    meta = np.array(json.dumps({"kind": "random", "fingerprint": fingerprint(obj.theta, d.reshape(1, -1))}))
    nan = np.full((1, 300), np.nan)
    finished = tmp_path / "finished.npz"
    np.savez(finished, loss=np.full((1, 300), -3.0), accuracy=nan, done=np.array([True]), meta=meta, axis0=xs)
    assert (slice_1d(obj, d, xs, store=finished).loss == -3).all()  # nothing recomputed
    pending = tmp_path / "pending.npz"
    np.savez(pending, loss=nan, accuracy=nan, done=np.array([False]), meta=meta, axis0=xs)
    np.testing.assert_allclose(
        slice_1d(obj, d, xs, store=pending).loss, _closed_form(obj, m, d, xs), rtol=1e-12
    )


@pytest.mark.parametrize(
    ("content", "reason"), [(b"", "the file is empty"), (b"PK\x03\x04trunc", "BadZipFile")]
)
def test_unreadable_store_is_a_config_error(tmp_path, content, reason):
    obj, _ = _quadratic_obj()
    path = tmp_path / "slice.npz"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"cannot resume from .*{reason}.*delete it"):
        slice_1d(obj, torch.ones(5, dtype=torch.float64), np.linspace(0, 1, 5), store=path)
    assert path.read_bytes() == content  # the user's file is left as it was


def test_grid_beyond_memory_is_refused_at_once(tmp_path):
    obj, _ = _quadratic_obj()
    d = torch.ones(5, dtype=torch.float64)
    xs = np.linspace(-1, 1, 10**5)  # 10^10 points: ~75 GiB for one float64 array alone
    forwards: list[int] = []  # refused before any point is evaluated
    obj.model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    with pytest.raises(ConfigError, match=r"a 100000 x 100000 random slice needs about .* TiB of memory"):
        slice_2d(obj, d, d, xs, xs, store=tmp_path / "s.npz")
    assert not forwards and not (tmp_path / "s.npz").exists()


def test_grid_beyond_the_time_bound_is_refused_with_its_estimate(tmp_path, monkeypatch):
    obj, _ = _quadratic_obj()
    monkeypatch.setattr(_validate, "MAX_SECONDS", 1e-9)
    with pytest.raises(
        ConfigError, match=r"the random slice \(5000 points\) would take about .* per point, timed"
    ):
        slice_1d(obj, torch.ones(5, dtype=torch.float64), np.linspace(-1, 1, 5000), store=tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()
    monkeypatch.undo()
    small = slice_1d(obj, torch.ones(5, dtype=torch.float64), np.linspace(-1, 1, TIMED_ABOVE))
    assert np.isfinite(small.loss).all()  # not timed, computed


def test_time_estimate_is_at_least_the_measured_cost():
    """A fake evaluation sleeping 2 ms per point: the estimate for 10^4 points is at least 20 s."""

    def evaluate(coords: np.ndarray) -> None:
        time.sleep(0.002 * len(coords))

    seconds = check_grid_time(evaluate, np.zeros((32, 1)), 10**4, "a line", batch_points=4)
    assert seconds is not None and seconds >= 20.0
    assert check_grid_time(evaluate, np.zeros((32, 1)), TIMED_ABOVE, "a line") is None


def test_simplex_sizes():
    assert simplex_grid(2).shape == (6, 3)
    with pytest.raises(ConfigError, match=r"a simplex of resolution 1000000 needs about .* of memory"):
        simplex_grid(10**6)
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="resolution must be an integer >= 1"):
            simplex_grid(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": float("nan")}, "eps must be a finite number > 0"),
        ({"eps": 0.0}, "eps must be a finite number > 0"),
        ({"tol": float("nan")}, "tol must be a finite number > 0 and < 1"),
        ({"directions": 0}, "directions must be an integer >= 1"),
        ({"directions": 2.5}, "directions must be an integer >= 1"),
        ({"r_max": float("inf")}, "r_max must be a finite number"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_flatness_radius_arguments(kwargs, message):
    obj, _ = _quadratic()
    with pytest.raises(ConfigError, match=message):
        flatness_radius(obj, **{"directions": 2, **kwargs})


def test_flatness_radius_of_a_non_finite_loss_is_an_error():
    obj, _ = _quadratic()
    obj.theta.fill_(float("inf"))
    with pytest.raises(ConfigError, match=r"the loss at the base point is .* needs a finite loss"):
        flatness_radius(obj, directions=2)
