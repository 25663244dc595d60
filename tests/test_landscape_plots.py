"""Slice figures explain themselves: labelled axes (direction kind and normalisation), readable ticks, a
labelled colour bar, the centre marked, a title; the interpolation plot names its end points."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from torch import nn

from flatminima import ConfigError, Objective
from flatminima.landscape import (
    direction_labels,
    interpolate,
    plot_slice,
    plot_surface,
    random_directions,
    slice_1d,
    slice_2d,
    slice_figure,
    surface_figure,
)


@pytest.fixture(scope="module")
def obj() -> Objective:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return Objective(net, "cross_entropy", x, y)


def _overlapping(labels) -> bool:
    boxes = [t.get_window_extent() for t in labels if t.get_visible() and t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


def test_contour_plot_labels_ticks_colour_bar_and_centre(obj: Objective, tmp_path) -> None:
    d = random_directions(obj, 2, seed=0, norm="filter")
    xs = np.linspace(-1, 1, 41)  # 41 points: a grid fine enough that naive ticks would crowd
    s = slice_2d(obj, d[0], d[1], xs, xs, meta={"norm": "filter", "bias_bn": "zero"})
    fig = _drawn(slice_figure(s))
    ax, cbar = fig.axes[0], fig.axes[1]
    assert ax.get_xlabel() == "direction 1 (random, filter-normalised)"
    assert ax.get_ylabel() == "direction 2 (random, filter-normalised)"
    assert "2-D slice" in ax.get_title() and "filter-normalised" in ax.get_title()
    assert cbar.get_ylabel() == "loss (cross_entropy)"
    assert not _overlapping(ax.get_xticklabels()) and not _overlapping(ax.get_yticklabels())
    assert 3 <= len([t for t in ax.get_xticklabels() if t.get_text()]) <= 6
    centre = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(centre) == 1 and tuple(centre[0].get_xydata()[0]) == (0.0, 0.0)
    assert centre[0].get_label().startswith("model's weights: loss ")
    assert plot_slice(s, tmp_path / "c.png").stat().st_size > 10_000


def test_surface_plot_labels_colour_bar_and_centre(obj: Objective, tmp_path) -> None:
    d = random_directions(obj, 2, seed=0)
    xs = np.linspace(-1, 1, 21)
    s = slice_2d(obj, d[0], d[1], xs, xs, meta={"norm": "layer"})
    fig = _drawn(surface_figure(s))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "direction 1 (random, layer-normalised)"
    assert ax.get_zlabel() == "loss (cross_entropy)"
    assert fig.axes[1].get_ylabel() == "loss (cross_entropy)"  # the colour bar
    centre = float(s.loss[10, 10])
    assert ax.get_legend().get_texts()[0].get_text() == f"model's weights: loss {centre:.4g}"
    assert plot_surface(s, tmp_path / "s.png").stat().st_size > 10_000
    with pytest.raises(ConfigError, match="2-D"):
        surface_figure(slice_1d(obj, d[0], xs))


def test_labels_of_hessian_and_pca_slices(obj: Objective) -> None:
    d = random_directions(obj, 2, seed=1)
    xs = np.linspace(-0.5, 0.5, 3)
    h = slice_2d(obj, d[0], d[1], xs, xs, kind="hessian", meta={"eigenvalues": [3.914, 1.2]})
    assert direction_labels(h) == [
        "direction 1 (Hessian eigenvector 1, λ = 3.91)",
        "direction 2 (Hessian eigenvector 2, λ = 1.2)",
    ]
    p = slice_2d(obj, d[0], d[1], xs, xs, kind="pca", meta={"explained": [0.712, 0.2]})
    assert direction_labels(p)[0] == "direction 1 (PCA, 71% of the path's variance)"
    plain = slice_1d(obj, d[0], xs)  # nothing said about the normalisation: nothing claimed
    assert direction_labels(plain) == ["along the direction (random)"]


def test_interpolation_plot_names_the_end_points(obj: Objective) -> None:
    other = obj.theta + 0.3 * random_directions(obj, 1, seed=2, bias_bn="weights")[0]
    s = interpolate(obj, obj.theta, other, np.linspace(-0.5, 1.5, 9), names=("SGD B=4", "GD"))
    fig = _drawn(slice_figure(s))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "alpha  (0 = SGD B=4, 1 = GD)"
    texts = [t.get_text() for t in ax.texts]
    assert "alpha = 0: SGD B=4" in texts and "alpha = 1: GD" in texts
    assert "SGD B=4" in ax.get_title() and "GD" in ax.get_title()
    assert not _overlapping(ax.get_xticklabels())
    assert s.meta["endpoints"] == ["SGD B=4", "GD"]
