"""Report: self-contained HTML, markdown summary, figure and table helpers."""

from __future__ import annotations

import base64
import io
import math
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from flatminima.errors import ConfigError, DataNotFoundError
from flatminima.experiments import ComparisonRow, ExperimentResult, verdict
from flatminima.report import (
    comparison_markdown,
    format_value,
    markdown_table,
    new_figure,
    print_comparison,
    save_figure,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _experiment(
    root: Path, name: str, holds: list[bool | None], claim: str = "x <= 2/lr"
) -> ExperimentResult:
    out = root / name
    fig, ax = new_figure()
    ax.plot([0, 1, 2], [1.0, 0.5, 0.25])
    save_figure(fig, out / "figs" / "curve.png")
    rows = [ComparisonRow(f"q{i}", 0.123456, 0.12, "≈", h) for i, h in enumerate(holds)]
    result = ExperimentResult(
        name, f"title of {name}", "Paper 2018, Fig. 1", claim, rows=rows, figures=["figs/curve.png"],
        config={"scale": "smoke", "lr": [0.1, 0.2]}, seed=7, seconds=1.25, versions={"torch": "2.x"},
        passed=verdict(rows), scale="smoke",
    )  # fmt: skip
    result.save(out)
    return result


def test_report_over_several_experiments_is_self_contained(tmp_path: Path) -> None:
    _experiment(tmp_path, "alpha", [True, True])
    _experiment(tmp_path, "beta", [True, False], claim="<script>alert(1)</script> & more")
    path = write_report(tmp_path)
    assert path == tmp_path / "report.html"
    html = path.read_text()
    assert "alpha: title of alpha" in html and "beta: title of beta" in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # user text is escaped
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 2
    for name, data in zip(["alpha", "beta"], images, strict=True):
        assert base64.b64decode(data) == (tmp_path / name / "figs" / "curve.png").read_bytes()
    assert not re.search(r"(src|href)=['\"](?!data:|#)", html)  # nothing external
    assert html.count("✓") >= 3 and html.count("✗") >= 2  # verdicts per row and per experiment
    assert "0.1235" in html and "seed 7" in html and "1.2 s" in html and "torch 2.x" in html
    assert "&quot;lr&quot;" in html  # the config, escaped JSON


def test_summary_markdown_has_tables_and_relative_figure_links(tmp_path: Path) -> None:
    _experiment(tmp_path, "alpha", [True, None])
    write_report(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "| q0 | 0.1235 | 0.12 | ≈ | ✓ |" in md and "| q1 | 0.1235 | 0.12 | ≈ | – |" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["alpha/figs/curve.png"]
    assert all((tmp_path / link).is_file() for link in links)


def test_report_of_one_experiment_directory_and_missing_inputs(tmp_path: Path) -> None:
    result = _experiment(tmp_path, "solo", [False])
    write_report(tmp_path / "solo")
    assert "](figs/curve.png)" in (tmp_path / "solo" / "summary.md").read_text()
    (tmp_path / "solo" / "figs" / "curve.png").unlink()
    assert "figure not found: figs/curve.png" in write_report(tmp_path / "solo").read_text()
    assert result.passed is False
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError):
        write_report(tmp_path / "empty")
    with pytest.raises(DataNotFoundError):
        write_report(tmp_path / "missing")


def test_format_value_and_markdown_tables() -> None:
    assert format_value(1 / 3) == "0.3333" and format_value(12345678.0) == "1.235e+07"
    assert format_value(7) == "7" and format_value(math.nan) == "nan" and format_value(-math.inf) == "-inf"
    assert format_value([0.5, 2]) == "[0.5, 2]" and format_value(None) == "" and format_value("a") == "a"
    assert markdown_table(["a", "b"], [["x|y", 1.0]]) == "| a | b |\n|---|---|\n| x\\|y | 1 |\n"
    md = comparison_markdown([ComparisonRow("sharpness", 19.87654, 20, "<= 2/lr", True)])
    assert md.splitlines()[2] == "| sharpness | 19.88 | 20 | <= 2/lr | ✓ |"


def test_print_comparison_renders_a_rich_table() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None)
    print_comparison([ComparisonRow("edge", 1.5, 2, "<", False)], title="demo", console=console)
    text = buffer.getvalue()
    assert "demo" in text and "edge" in text and "1.5" in text and "✗" in text


def test_save_figure_is_atomic_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fig, ax = new_figure(1, 2)
    assert len(ax) == 2
    with pytest.raises(ConfigError):
        save_figure(fig, tmp_path / "plot.pdf")
    path = save_figure(fig, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_figure(new_figure()[0], path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_cells_run_in_part_are_named_in_the_summary_and_the_report(tmp_path: Path) -> None:
    cells = {
        "lrs": {"run": [0.5, 1.0, 5.0], "grid": [0.01, 0.5, 1.0, 5.0]},
        "seeds": {"run": [0], "grid": [0]},
    }
    result = ExperimentResult("gamma", "t", "Paper 2018", "c", config={"cells": cells}, scale="paper")
    assert result.cells_note() == "lrs: ran 0.5, 1, 5 of 0.01, 0.5, 1, 5"  # full axes are not mentioned
    result.save(tmp_path / "gamma")
    write_report(tmp_path)
    assert "lrs: ran 0.5, 1, 5 of 0.01, 0.5, 1, 5" in (tmp_path / "summary.md").read_text()
    assert "lrs: ran 0.5, 1, 5 of 0.01, 0.5, 1, 5" in (tmp_path / "report.html").read_text()
    full = ExperimentResult("delta", "t", "Paper 2018", "c", config={"cells": {"seeds": cells["seeds"]}})
    assert full.cells_note() == "" and ExperimentResult("e", "t", "p", "c").cells_note() == ""
