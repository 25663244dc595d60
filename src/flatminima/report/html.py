"""``report.html``: a self-contained page (figures embedded as base64 PNG, no external resources)."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from ..experiments.base import ExperimentResult
from .collect import Found
from .tables import COMPARISON_HEADERS, HOLDS_MARK, comparison_cells

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.holds-True { color: #080; font-weight: bold; } .holds-False { color: #c00; font-weight: bold; }
.holds-None { color: #888; }
img { max-width: 100%; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 85%; }
section { border-top: 2px solid #ddd; margin-top: 2em; }
.missing { color: #c00; }
"""


def _comparison_html(result: ExperimentResult) -> str:
    if not result.rows:
        return "<p>(no comparison rows)</p>"
    head = "".join(f"<th>{h}</th>" for h in COMPARISON_HEADERS)
    body = []
    for row in result.rows:
        q, ours, paper, relation, mark = (escape(c) for c in comparison_cells(row))
        body.append(
            f"<tr><td>{q}</td><td class='num'>{ours}</td><td class='num'>{paper}</td><td>{relation}</td>"
            f"<td class='holds-{row.holds}'>{mark}</td></tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def embed_png(path: Path, caption: str) -> str:
    """A ``<figure>`` with the PNG at ``path`` embedded as base64 (or a "not found" note)."""
    if not path.is_file():
        return f"<p class='missing'>figure not found: {escape(caption)}</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{escape(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def page(title: str, body: str) -> str:
    """A complete self-contained HTML page (the report's style sheet inline)."""
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def _figures_html(found: Found) -> str:
    return "".join(embed_png(found.directory / fig, fig) for fig in found.result.figures)


def _section(found: Found) -> str:
    r = found.result
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in r.versions.items())
    config = escape(json.dumps(r.config, indent=2, default=str))
    parts = [
        f"<section id='{escape(r.name)}'><h2>{escape(r.name)}: {escape(r.title)}</h2>",
        f"<p><em>{escape(r.paper)}</em></p><p><strong>Claim:</strong> {escape(r.claim)}</p>",
        f"<p><strong>Data:</strong> {escape(r.data_note())}</p>" if r.data else "",
        f"<p><strong>Cells run</strong> (part of the paper's grid): {escape(r.cells_note())}</p>"
        if r.cells_note()
        else "",
        f"<p><strong>Verdict:</strong> <span class='holds-{r.passed}'>{HOLDS_MARK[r.passed]}</span>",
        f" &middot; scale {escape(r.scale or '?')} &middot; seed {r.seed}",
        f" &middot; wall time {r.seconds:.1f} s</p>",
        _comparison_html(r),
        _figures_html(found),
        f"<p>{escape(r.notes)}</p>" if r.notes else "",
        f"<details><summary>config</summary><pre>{config}</pre></details>",
        f"<p><small>versions: {versions}</small></p></section>",
    ]
    return "".join(parts)


def render_html(found: list[Found]) -> str:
    """The complete HTML page for the results in ``found``."""
    overview = "".join(
        f"<tr><td><a href='#{escape(f.result.name)}'>{escape(f.result.name)}</a></td>"
        f"<td>{escape(f.result.title)}</td><td>{escape(f.result.scale)}</td>"
        f"<td class='holds-{f.result.passed}'>{HOLDS_MARK[f.result.passed]}</td>"
        f"<td class='num'>{f.result.seconds:.1f}</td></tr>"
        for f in found
    )
    table = (
        "<table><tr><th>experiment</th><th>title</th><th>scale</th><th>passed</th><th>seconds</th></tr>"
        f"{overview}</table>"
    )
    return page("flatminima report", table + "".join(_section(f) for f in found))
