"""Each toys.plots function writes a non-empty PNG (small, fast inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flatminima.errors import ConfigError
from flatminima.toys import plots
from flatminima.toys.minnorm import make_problem

PNG = b"\x89PNG\r\n\x1a\n"


def _ok(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 2000
    assert not list(path.parent.glob(".*.png"))  # no temporary file left behind


def test_plots_write_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _ok(
        plots.plot_two_basin_histograms(
            tmp_path / "two.png", samples={1: rng.normal(size=300), 3: rng.normal(size=300)}
        )
    )
    _ok(plots.plot_degenerate_histograms(tmp_path / "deg.png", samples={"gdl": rng.normal(size=300)}))
    _ok(plots.plot_escape(tmp_path / "escape.png"))
    _ok(plots.plot_nonequilibrium(tmp_path / "neq.png", lambdas=(0.0, 1.5), steps=300))
    _ok(plots.plot_min_norm(tmp_path / "minnorm.png", prob=make_problem(cond=1e3), steps=(10, 100)))
    with pytest.raises(ConfigError):
        plots.plot_escape(tmp_path / "escape.jpg")
