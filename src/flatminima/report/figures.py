"""Figures: one matplotlib style for every plot, figures built without pyplot, PNGs written atomically.

``new_figure`` builds a :class:`matplotlib.figure.Figure` on the Agg canvas directly (no pyplot, no backend
switch, nothing to close). Matplotlib reads most style settings when an artist is created (a legend drawn
after ``new_figure`` returns), so ``new_figure`` applies :data:`STYLE` to the global ``rcParams``
(:func:`use_style`), as plotting-style libraries do; use ``with figure_style():`` instead to keep it local.

Matplotlib is imported on first use (inside the functions), so ``import flatminima`` does not load it
(~100 MB and ~1 s); :data:`STYLE`'s colour cycle is a ``cycler.Cycler`` (the small package matplotlib's own
``matplotlib.cycler`` comes from).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cycler import cycler

from .._io import atomic_path
from ..errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "axes.prop_cycle": cycler(
        color=["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
    ),  # Okabe-Ito, colour-blind safe
}


def use_style() -> None:
    """Apply :data:`STYLE` to matplotlib's global rcParams."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply :data:`STYLE` for the duration of the block."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 4.0, height: float = 3.0, **kw: Any) -> tuple:
    """``(fig, axes)`` with ``width x height`` inches per panel; ``axes`` squeezed as in ``plt.subplots``."""
    from matplotlib.figure import Figure

    use_style()
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kw)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (temporary file, then rename); close it in pyplot."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"figures are PNG files; got {path}")
    with atomic_path(path) as tmp, figure_style():  # savefig.* settings, also for other figures
        fig.savefig(tmp, format="png")
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return path
