"""Figures of landscape results (matplotlib, Agg backend, PNG files).

Slice figures explain themselves: every axis names its direction's kind and normalisation (``Slice.kind``
and ``Slice.meta``: ``norm`` of random directions, ``eigenvalues`` of Hessian directions, ``explained``
variance of PCA directions, ``endpoints`` of an interpolation), the colour bar names the loss, the centre
(the weights the slice is taken about) is marked, ticks are few enough to stay readable, and the title says
what the picture is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.tri import Triangulation

from ..errors import ConfigError
from ..report.figures import new_figure, save_figure
from .mds import MDSResult
from .simplex import VERTICES, SimplexResult
from .slices import Slice

__all__ = [
    "direction_labels",
    "plot_mds",
    "plot_simplex",
    "plot_slice",
    "plot_surface",
    "slice_figure",
    "surface_figure",
]

NORM_WORDS = {"filter": "filter-normalised", "layer": "layer-normalised", "none": "not normalised"}
TICKS = 5  # at most this many ticks per axis: labels never run into each other


def _endpoints(s: Slice) -> tuple[str, str]:
    ends = s.meta.get("endpoints") or ("w_a", "w_b")
    return str(ends[0]), str(ends[1])


def direction_labels(s: Slice) -> list[str]:
    """One axis label per slice dimension, naming the direction's kind and normalisation, e.g.
    ``"direction 1 (random, filter-normalised)"``, ``"direction 2 (Hessian eigenvector 2, λ = 3.9)"``,
    ``"direction 1 (PCA, 71% of the path's variance)"``, ``"alpha (0 = w_a, 1 = w_b)"``."""
    meta = s.meta
    out = []
    for i in range(s.dims):
        k = i + 1
        if s.kind == "interpolation":
            a, b = _endpoints(s)
            out.append(f"alpha  (0 = {a}, 1 = {b})")
            continue
        if s.kind == "random":
            norm = NORM_WORDS.get(str(meta.get("norm")))
            detail = "random" + (f", {norm}" if norm else "")
        elif s.kind == "hessian":
            ev = meta.get("eigenvalues")
            value = f", λ = {ev[i]:.3g}" if ev is not None and i < len(ev) else ""
            detail = f"Hessian eigenvector {k}{value}"
        elif s.kind == "pca":
            ex = meta.get("explained")
            detail = "PCA" + (f", {100 * ex[i]:.0f}% of the path's variance" if ex is not None else "")
        else:
            detail = str(s.kind)
        out.append(f"direction {k} ({detail})" if s.dims > 1 else f"along the direction ({detail})")
    return out


def _loss_label(s: Slice, log: bool) -> str:
    name = s.meta.get("loss")
    label = f"loss ({name})" if name else "loss"
    return f"log10 {label}" if log else label


def _short(label: str) -> str:
    """``"loss (mse)"`` -> ``"loss"`` (the colour bar says which loss)."""
    return label.split(" (", 1)[0]


def _centre(s: Slice) -> str:
    return str(s.meta.get("centre") or "centre")


def _title(s: Slice) -> str:
    if s.kind == "interpolation":
        a, b = _endpoints(s)
        bn = " (BatchNorm statistics recomputed at every point)" if s.meta.get("bn_recompute") else ""
        return f"loss on the segment (1 - alpha) {a} + alpha {b}{bn}"
    what = {"random": "random direction", "hessian": "top Hessian eigenvector", "pca": "PCA direction"}
    kind = what.get(s.kind, f"{s.kind} direction") + ("s" if s.dims > 1 else "")
    if s.kind == "random" and s.meta.get("norm") in NORM_WORDS:
        kind += f", {NORM_WORDS[s.meta['norm']]}"
        if s.meta.get("bias_bn") == "zero":
            kind += "; biases and BN parameters fixed"
    shape = "2-D slice" if s.dims == 2 else "1-D slice"
    return f"loss landscape: {shape} about the {_centre(s)}\n({kind})"


def _readable_ticks(ax, axes: str = "xy") -> None:
    for name in axes:
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(TICKS, steps=[1, 2, 2.5, 5, 10]))


def plot_slice(s: Slice, path: str | Path, levels: int = 30, log: bool = False) -> Path:
    """Write :func:`slice_figure` of ``s`` as a PNG at ``path``."""
    return save_figure(slice_figure(s, levels, log), path)


def slice_figure(s: Slice, levels: int = 30, log: bool = False) -> Figure:
    """1-D: loss (and accuracy, if the data has classes) against the coordinate, the centre (coordinate 0) or
    the two end points (alpha = 0, 1) marked; 2-D: filled contours of the loss with a labelled colour bar,
    the centre marked and the projected trajectory drawn on top when the slice has a ``path``. Axes are
    labelled by :func:`direction_labels`; ``log=True`` plots log10 of the loss."""
    loss = np.log10(np.clip(s.loss, 1e-12, None)) if log else s.loss
    label = _loss_label(s, log)
    if s.dims == 1:
        fig, ax = new_figure(width=6.0, height=3.8)
        x = s.axes[0]
        ax.plot(x, loss, "-o", ms=2.5, color="C0", label=label)
        ax.set_xlabel(direction_labels(s)[0])
        ax.set_ylabel(label, color="C0")
        if s.kind == "interpolation":
            a, b = _endpoints(s)
            for where, name, colour in ((0.0, a, "C2"), (1.0, b, "C3")):
                ax.axvline(where, color=colour, ls=":", lw=1)
                ax.annotate(f"alpha = {where:g}: {name}", (where, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(3, -3), textcoords="offset points", va="top", fontsize=7,
                            color=colour)  # fmt: skip
        elif x.min() <= 0.0 <= x.max():
            ax.axvline(0.0, color="C3", ls=":", lw=1)
            ax.annotate(_centre(s), (0.0, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                        textcoords="offset points", va="top", fontsize=7, color="C3")  # fmt: skip
        if np.isfinite(s.accuracy).any():
            ax2 = ax.twinx()
            ax2.plot(x, s.accuracy, "--", color="C1", label="accuracy")
            ax2.set_ylabel("accuracy", color="C1")
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
            _readable_ticks(ax2, "y")
        _readable_ticks(ax)
        ax.set_title(_title(s))
        return fig
    fig, ax = new_figure(width=6.0, height=5.2)
    xx, yy = np.meshgrid(s.axes[0], s.axes[1])
    z = np.ma.masked_invalid(loss)
    cs = ax.contourf(xx, yy, z, levels=levels, cmap="viridis")
    ax.contour(xx, yy, z, levels=cs.levels, colors="k", linewidths=0.3, alpha=0.6)
    fig.colorbar(cs, ax=ax, label=label, shrink=0.9)
    if s.path is not None:
        ax.plot(s.path[:, 0], s.path[:, 1], "-o", color="C1", ms=2.5, lw=1, label="training trajectory")
    centre = _value_at_centre(s, loss)
    centre_label = _centre(s) + (f": {_short(label)} {centre:.4g}" if centre is not None else "")
    ax.plot([0.0], [0.0], marker="*", ms=13, color="white", mec="k", mew=0.8, ls="none", label=centre_label)
    ax.legend(loc="upper right", frameon=True, framealpha=0.85)
    x_label, y_label = direction_labels(s)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_aspect("equal" if _similar_ranges(s) else "auto")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
    _readable_ticks(ax)
    ax.set_title(_title(s))
    return fig


def _similar_ranges(s: Slice) -> bool:
    """Whether both axes span about the same range (then equal aspect keeps the contours' true shape)."""
    spans = [float(np.ptp(a)) for a in s.axes]
    return min(spans) > 0 and max(spans) / min(spans) < 1.5


def plot_surface(s: Slice, path: str | Path, log: bool = False) -> Path:
    """Write :func:`surface_figure` of ``s`` as a PNG at ``path``."""
    return save_figure(surface_figure(s, log), path)


def surface_figure(s: Slice, log: bool = False) -> Figure:
    """3-D surface of a 2-D slice, with axes named by :func:`direction_labels`, a colour bar of the loss and
    the centre marked."""
    if s.dims != 2:
        raise ConfigError(f"a surface plot needs a 2-D slice, got {s.dims}-D")
    loss = np.log10(np.clip(s.loss, 1e-12, None)) if log else s.loss
    label = _loss_label(s, log)
    xx, yy = np.meshgrid(s.axes[0], s.axes[1])
    fig, _ = new_figure(width=7.0, height=5.6, squeeze=True, subplot_kw={"projection": "3d"})
    ax = fig.axes[0]
    ax.computed_zorder = False  # draw the centre's marker on top of the surface
    z = np.ma.masked_invalid(loss)
    surf = ax.plot_surface(xx, yy, z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.9, zorder=1)
    centre = _value_at_centre(s, loss)
    if centre is not None:
        ax.scatter([0.0], [0.0], [centre], marker="*", s=160, color="#D55E00", edgecolors="k",
                   linewidths=0.6, depthshade=False, zorder=5,
                   label=f"{_centre(s)}: {_short(label)} {centre:.4g}")  # fmt: skip
        ax.legend(loc="upper left")
    x_label, y_label = direction_labels(s)
    ax.set_xlabel(x_label, labelpad=8, fontsize=7)
    ax.set_ylabel(y_label, labelpad=8, fontsize=7)
    ax.set_zlabel(label, labelpad=6)
    for name in "xyz":
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(TICKS))
    fig.colorbar(surf, ax=ax, label=label, shrink=0.6, pad=0.1)
    ax.set_title(_title(s))
    return fig


def _value_at_centre(s: Slice, loss: np.ndarray) -> float | None:
    """The loss at coordinates (0, 0) when that point is on the grid."""
    i = np.flatnonzero(np.isclose(s.axes[0], 0.0))
    j = np.flatnonzero(np.isclose(s.axes[1], 0.0))
    if len(i) and len(j) and np.isfinite(loss[j[0], i[0]]):
        return float(loss[j[0], i[0]])
    return None


def plot_simplex(r: SimplexResult, path: str | Path, what: str = "accuracy") -> Path:
    """Surface of training accuracy (or loss) over the triangle (Theory IIb, Fig. of eq. 10), plus
    contours."""
    z = r.accuracy if what == "accuracy" else r.loss
    tri = Triangulation(r.xy[:, 0], r.xy[:, 1])
    fig = plt.figure(figsize=(10, 4.5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    ax.plot_trisurf(tri, np.nan_to_num(z), cmap="viridis", linewidth=0)
    ax.set_zlabel(what)
    ax2 = fig.add_subplot(1, 2, 2)
    cs = ax2.tricontourf(tri, np.nan_to_num(z), levels=20, cmap="viridis")
    fig.colorbar(cs, ax=ax2, label=what)
    for (x, y), name in zip(VERTICES, ("w1", "w2", "w3"), strict=True):
        ax2.annotate(name, (x, y), ha="center", va="bottom", fontsize=9)
    ax2.set_aspect("equal")
    ax2.set_axis_off()
    return save_figure(fig, path)


def plot_mds(
    r: MDSResult,
    path: str | Path,
    errors: Sequence[float] | None = None,
    groups: Sequence[str] | None = None,
) -> Path:
    """2-D MDS embedding; points of one group are joined in order, each labelled with its training error."""
    fig, ax = plt.subplots(figsize=(6, 5))
    xy = r.coords[:, :2] if r.coords.shape[1] > 1 else np.c_[r.coords[:, 0], np.zeros(len(r.coords))]
    groups = list(groups) if groups is not None else ["trajectory"] * len(xy)
    for i, g in enumerate(dict.fromkeys(groups)):
        idx = [j for j, h in enumerate(groups) if h == g]
        ax.plot(xy[idx, 0], xy[idx, 1], "-o", ms=3, lw=0.8, color=f"C{i % 10}", label=g)
    if errors is not None:
        for (x, y), e in zip(xy, errors, strict=True):
            ax.annotate(f"{e:.2f}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"classical MDS ({100 * r.explained:.0f}% of positive eigenvalue mass)")
    return save_figure(fig, path)
