"""Every ```python block of README.md runs, so the README's examples cannot drift from the code.

Each block is executed on its own (fresh globals, like a new interpreter session; blocks do not see each
other's names) in a temporary working directory, with progress bars off. A block that needs a file makes it
itself. Tracebacks point at README.md line numbers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every ```python fenced block of ``text``."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "README.md has no ```python block (or the fence pattern no longer matches)"


def test_block_extraction() -> None:
    text = "intro\n```python\nx = 1\n```\n```\nnot python\n```\n```python\ny = 2\nz = 3\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (9, "y = 2\nz = 3\n")]


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_example_runs(line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLATMINIMA_PROGRESS", "0")
    # line numbers of the README in tracebacks: pad with blank lines up to the block's first line
    compiled = compile("\n" * (line - 1) + code, str(README), "exec")
    namespace = {"__name__": "__readme__"}
    exec(compiled, namespace)  # our own README's examples
    assert os.getcwd() == str(tmp_path)
