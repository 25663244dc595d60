"""``write_report(dir)``: ``report.html`` and ``summary.md`` for every experiment result under ``dir``."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_text
from .collect import find_results
from .html import render_html
from .markdown import render_markdown

REPORT_HTML, SUMMARY_MD = "report.html", "summary.md"


def write_report(directory: str | Path) -> Path:
    """Write ``report.html`` (self-contained) and ``summary.md`` into ``directory``; return the HTML path.

    Reads every ``result.json`` at or below ``directory``: one experiment directory, or a parent of several.
    """
    root = Path(directory)
    found = find_results(root)
    atomic_write_text(root / SUMMARY_MD, render_markdown(found, root))
    return atomic_write_text(root / REPORT_HTML, render_html(found))
