"""``summary.md``: per experiment, the claim, the comparison table and relative links to its figures."""

from __future__ import annotations

import os
from pathlib import Path

from .collect import Found
from .tables import HOLDS_MARK, comparison_markdown, markdown_table


def _verdict(passed: bool | None) -> str:
    return {True: "✓ holds", False: "✗ does not hold", None: "– no verdict"}[passed]


def render_markdown(found: list[Found], root: Path) -> str:
    """The markdown summary of the results in ``found``; figure links are relative to ``root``."""
    lines = ["# flatminima report", ""]
    overview = [
        [f.result.name, f.result.scale, HOLDS_MARK[f.result.passed], f"{f.result.seconds:.1f}"] for f in found
    ]
    lines += [markdown_table(["experiment", "scale", "passed", "seconds"], overview)]
    for f in found:
        r = f.result
        lines += [f"## {r.name}: {r.title}", ""]
        lines += [f"*{r.paper}*. Claim: {r.claim}", ""]
        if r.data:
            lines += [f"Data: **{r.data_note()}**", ""]
        if r.cells_note():
            lines += [f"Cells run (part of the paper's grid): {r.cells_note()}", ""]
        lines += [
            f"Verdict: **{_verdict(r.passed)}** (scale {r.scale or '?'}, seed {r.seed}, {r.seconds:.1f} s)",
            "",
        ]
        lines += [comparison_markdown(r.rows)] if r.rows else ["(no comparison rows)", ""]
        for fig in r.figures:
            rel = Path(os.path.relpath(f.directory / fig, root)).as_posix()
            lines += [f"![{fig}]({rel})", ""]
        if r.notes:
            lines += [r.notes, ""]
    return "\n".join(lines)
