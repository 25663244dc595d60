"""Progress bars for long work (rich), silent when output is not a terminal or FLATMINIMA_PROGRESS=0."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_enabled() -> bool:
    """Bars are shown on a terminal unless FLATMINIMA_PROGRESS=0; never in CI or under pytest capture."""
    flag = os.environ.get("FLATMINIMA_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no")
    return sys.stderr.isatty()


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1.0) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def update(self, description: str | None = None, completed: float | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description, completed=completed)


_ACTIVE: list[Progress] = []  # the live display, when a bar is shown: nested bars become its extra rows


@contextmanager
def progress_bar(total: float | None, description: str, enabled: bool | None = None) -> Iterator[_Bar]:
    """``with progress_bar(100, "lanczos") as bar: ... bar.advance()`` — a no-op when disabled.

    A bar opened while another is shown (a training run inside a sweep) is added as a row of the same display
    and removed when it ends (rich allows one live display at a time)."""
    if not (progress_enabled() if enabled is None else enabled):
        yield _Bar(None, None)
        return
    if _ACTIVE:
        outer = _ACTIVE[-1]
        task = outer.add_task(description, total=total)
        try:
            yield _Bar(outer, task)
        finally:
            outer.remove_task(task)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        _ACTIVE.append(progress)
        try:
            yield _Bar(progress, progress.add_task(description, total=total))
        finally:
            _ACTIVE.pop()
