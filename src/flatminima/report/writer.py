"""``write_report(dir)``: ``report.html`` and ``summary.md`` for the experiment results or the training runs
under ``dir``."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_text
from ..errors import DataNotFoundError
from .collect import find_results
from .html import render_html
from .markdown import render_markdown

REPORT_HTML, SUMMARY_MD = "report.html", "summary.md"


def write_report(directory: str | Path) -> Path:
    """Write ``report.html`` (self-contained) and ``summary.md`` into ``directory``; return the HTML path.

    Reads every ``result.json`` at or below ``directory`` (one experiment directory, or a parent of several).
    Where there is none, reports the training run directories at or below it instead (one run, or a folder
    of runs such as a sweep): per run its config, summary, final metrics and metric plots
    (:mod:`.run_report`). DataNotFoundError when there is neither.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataNotFoundError(f"no such directory: {root}")
    try:
        found = find_results(root)
    except DataNotFoundError:
        from .run_report import write_run_report
        from .run_series import find_runs

        runs = find_runs(root)
        if not runs:
            raise DataNotFoundError(
                f"no result.json and no training run under {root}: run `flatminima reproduce NAME --out "
                f"{root}` or `flatminima train CONFIG.yaml --out {root}` first"
            ) from None
        return write_run_report(root, runs)
    atomic_write_text(root / SUMMARY_MD, render_markdown(found, root))
    return atomic_write_text(root / REPORT_HTML, render_html(found))
