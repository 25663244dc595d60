"""Tables of comparison rows: value formatting, markdown rendering and rich console printing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ..experiments.base import ComparisonRow

HOLDS_MARK = {True: "✓", False: "✗", None: "–"}
COMPARISON_HEADERS = ("quantity", "ours", "paper", "relation", "holds")


def format_value(value: Any) -> str:
    """Numbers with 4 significant digits (integers exactly), NaN/inf spelled out, lists element-wise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(value) if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def comparison_cells(row: ComparisonRow) -> list[str]:
    """The five cells of a comparison row as text."""
    return [
        row.quantity,
        format_value(row.ours),
        format_value(row.paper),
        row.relation,
        HOLDS_MARK[row.holds],
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (pipes escaped, newlines flattened)."""
    lines = ["| " + " | ".join(_md_cell(str(h)) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_md_cell(format_value(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def comparison_markdown(rows: Sequence[ComparisonRow]) -> str:
    """Markdown table of comparison rows: quantity, ours, paper, relation, holds (✓ / ✗ / –)."""
    return markdown_table(COMPARISON_HEADERS, [comparison_cells(r) for r in rows])


def comparison_table(rows: Sequence[ComparisonRow], title: str | None = None) -> Table:
    """A rich Table of comparison rows, verdicts coloured."""
    table = Table(title=title)
    for header in COMPARISON_HEADERS:
        table.add_column(header, justify="right" if header in ("ours", "paper") else "left")
    colour = {True: "green", False: "red", None: "dim"}
    for row in rows:
        cells = comparison_cells(row)
        cells[-1] = f"[{colour[row.holds]}]{cells[-1]}[/]"
        table.add_row(*cells)
    return table


def print_comparison(
    rows: Sequence[ComparisonRow], title: str | None = None, console: Console | None = None
) -> None:
    """Print the comparison rows as a rich table (stdout unless ``console`` says otherwise)."""
    (console or Console()).print(comparison_table(rows, title))
