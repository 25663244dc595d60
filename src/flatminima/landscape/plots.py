"""Figures of landscape results (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.tri import Triangulation

from ..report.figures import save_figure
from .mds import MDSResult
from .simplex import VERTICES, SimplexResult
from .slices import Slice

__all__ = ["plot_mds", "plot_simplex", "plot_slice", "plot_surface"]


def plot_slice(s: Slice, path: str | Path, levels: int = 30, log: bool = False) -> Path:
    """1-D: loss (and accuracy) against the coordinate; 2-D: filled contours of the loss, with the projected
    trajectory drawn on top when the slice has a ``path``."""
    loss = np.log10(np.clip(s.loss, 1e-12, None)) if log else s.loss
    label = "log10 loss" if log else "loss"
    if s.dims == 1:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(s.axes[0], loss, "-o", ms=2, color="C0")
        ax.set_xlabel("alpha" if s.kind == "interpolation" else "coordinate")
        ax.set_ylabel(label, color="C0")
        if np.isfinite(s.accuracy).any():
            ax2 = ax.twinx()
            ax2.plot(s.axes[0], s.accuracy, "--", color="C1")
            ax2.set_ylabel("accuracy", color="C1")
        ax.set_title(f"{s.kind} slice")
        return save_figure(fig, path)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    xx, yy = np.meshgrid(s.axes[0], s.axes[1])
    cs = ax.contourf(xx, yy, np.ma.masked_invalid(loss), levels=levels, cmap="viridis")
    ax.contour(xx, yy, np.ma.masked_invalid(loss), levels=levels, colors="k", linewidths=0.3)
    fig.colorbar(cs, ax=ax, label=label)
    if s.path is not None:
        ax.plot(s.path[:, 0], s.path[:, 1], "-o", color="red", ms=2, lw=1, label="trajectory")
        ax.legend(loc="best")
    ax.set_title(f"{s.kind} slice")
    return save_figure(fig, path)


def plot_surface(s: Slice, path: str | Path) -> Path:
    """3-D surface of a 2-D slice."""
    xx, yy = np.meshgrid(s.axes[0], s.axes[1])
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(xx, yy, np.ma.masked_invalid(s.loss), cmap="viridis", linewidth=0)
    ax.set_zlabel("loss")
    ax.set_title(f"{s.kind} slice")
    return save_figure(fig, path)


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
