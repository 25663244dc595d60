"""The report of training run directories (``flatminima report RUN_DIR``): per run its status, phases,
final metrics, configuration and metric plots; for several runs an overview table and one figure with the
runs overlaid.

Figures are written as PNG files into ``DIR/report-figures/`` (a folder the report creates and owns) so that
``summary.md`` can link them; ``report.html`` embeds them and stands alone.
"""

from __future__ import annotations

import math
import os
import re
from html import escape
from pathlib import Path
from typing import Any

import yaml

from .._io import atomic_write_text
from .html import embed_png, page
from .run_plots import plot_run
from .run_series import RunMetrics, run_metrics
from .tables import format_value, markdown_table

__all__ = ["FIGURE_DIR", "OVERVIEW_METRICS", "write_run_report"]

FIGURE_DIR = "report-figures"
OVERVIEW_METRICS = ("train_loss", "test_loss", "train_acc", "test_acc", "sharpness")
MAX_OVERLAID = 12  # runs drawn together in the comparison figure


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _label(root: Path, run: RunMetrics) -> str:
    if run.path is None:
        return run.name
    rel = Path(os.path.relpath(run.path, root)).as_posix()
    return run.path.name if rel == "." else rel


def _overview_rows(runs: list[RunMetrics], labels: list[str]) -> tuple[list[str], list[list[Any]]]:
    shown = [m for m in OVERVIEW_METRICS if any(m in r.summary.get("final", {}) for r in runs)]
    headers = ["run", "status", "steps", *[f"final {m}" for m in shown], "seconds"]
    rows = []
    for r, label in zip(runs, labels, strict=True):
        final = r.summary.get("final", {})
        seconds = r.summary.get("seconds")
        took = None if seconds is None else round(float(seconds), 1)
        status, steps = r.summary.get("status", "?"), r.summary.get("steps", "?")
        rows.append([label, status, steps, *[final.get(m) for m in shown], took])
    return headers, rows


def _phase_rows(run: RunMetrics) -> list[list[Any]]:
    ran = run.summary.get("phases") or []
    rows = []
    for ph in run.phases:
        info = ran[ph["phase"]] if ph["phase"] < len(ran) else {}
        rows.append([ph["phase"] + 1, ph["label"], ph["start"], info.get("steps"), info.get("ended_by")])
    return rows


PHASE_HEADERS = ["phase", "optimizer", "first step", "steps", "ended by"]


def _final_rows(run: RunMetrics) -> list[list[Any]]:
    return [[k, v] for k, v in run.summary.get("final", {}).items()]


def _config_text(run: RunMetrics) -> str:
    return yaml.safe_dump(run.config, sort_keys=False) if run.config else "(no config.yaml)"


def _html_table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{escape(format_value(c))}</td>"
            if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{escape(format_value(c))}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _status_note(run: RunMetrics) -> str:
    status = run.summary.get("status", "?")
    steps = run.summary.get("steps", "?")
    seconds = run.summary.get("seconds")
    took = f", {float(seconds):.1f} s" if isinstance(seconds, (int, float)) and math.isfinite(seconds) else ""
    return f"status {status} after {steps} steps{took}"


def _html(runs: list[RunMetrics], labels: list[str], figures: dict[str, Path], overlay: Path | None) -> str:
    parts = []
    if len(runs) > 1:
        parts.append(_html_table(*_overview_rows(runs, labels)))
        if overlay is not None:
            parts.append(embed_png(overlay, "all runs overlaid"))
    for r, label in zip(runs, labels, strict=True):
        parts += [
            f"<section id='{escape(_slug(label))}'><h2>{escape(label)}</h2>",
            f"<p>{escape(_status_note(r))}</p>",
            _html_table(PHASE_HEADERS, _phase_rows(r)) if r.phases else "",
            "<h3>final metrics</h3>",
            _html_table(["metric", "value"], _final_rows(r)),
            embed_png(figures[label], f"{label}: metrics over steps"),
            f"<details><summary>config</summary><pre>{escape(_config_text(r))}</pre></details></section>",
        ]
    title = "flatminima report: " + (labels[0] if len(runs) == 1 else f"{len(runs)} training runs")
    return page(title, "".join(parts))


def _markdown(
    root: Path, runs: list[RunMetrics], labels: list[str], figures: dict[str, Path], overlay: Path | None
) -> str:
    def link(path: Path, text: str) -> str:
        return f"![{text}]({Path(os.path.relpath(path, root)).as_posix()})"

    lines = ["# flatminima report: " + (labels[0] if len(runs) == 1 else f"{len(runs)} training runs"), ""]
    if len(runs) > 1:
        lines += [markdown_table(*_overview_rows(runs, labels))]
        if overlay is not None:
            lines += [link(overlay, "all runs overlaid"), ""]
    for r, label in zip(runs, labels, strict=True):
        lines += [f"## {label}", "", _status_note(r), ""]
        if r.phases:
            lines += [markdown_table(PHASE_HEADERS, _phase_rows(r))]
        lines += ["Final metrics:", "", markdown_table(["metric", "value"], _final_rows(r))]
        lines += [link(figures[label], f"{label}: metrics over steps"), ""]
        lines += ["Config:", "", "```yaml", _config_text(r).rstrip(), "```", ""]
    return "\n".join(lines)


def write_run_report(root: str | Path, paths: list[Path]) -> Path:
    """Write ``report.html``, ``summary.md`` and the figures in ``report-figures/`` for the run directories
    ``paths`` (at or below ``root``); return the HTML path."""
    from .writer import REPORT_HTML, SUMMARY_MD

    root = Path(root)
    runs = [run_metrics(p) for p in paths]
    labels = [_label(root, r) for r in runs]
    fig_dir = root / FIGURE_DIR
    fig_dir.mkdir(exist_ok=True)
    figures: dict[str, Path] = {}
    for r, label in zip(runs, labels, strict=True):
        figures[label] = fig_dir / f"{_slug(label)}-metrics.png"
        plot_run(r, path=figures[label])
    overlay = None
    if 1 < len(runs) <= MAX_OVERLAID:
        overlay = fig_dir / "all-runs.png"
        plot_run(runs, path=overlay, names=labels)
    atomic_write_text(root / SUMMARY_MD, _markdown(root, runs, labels, figures, overlay))
    return atomic_write_text(root / REPORT_HTML, _html(runs, labels, figures, overlay))
