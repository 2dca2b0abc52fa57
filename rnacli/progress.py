"""Rich progress bars for long work (evaluation, training), quiet under RNACLI_QUIET=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _width() -> int | None:
    """Wide tables when the output is not a terminal (logs, CI), the terminal's width when it is."""
    return None if sys.stdout.isatty() else 160


console = Console(stderr=True, width=_width())  # progress, logs, errors
out = Console(width=_width())  # results: tables, paths written


def quiet() -> bool:
    return os.environ.get("RNACLI_QUIET", "") not in ("", "0")


class _LoggedProgress(Progress):
    """Where stderr is not a terminal (CI, `nohup`, pipes) a live bar never shows: print one
    line per tenth of the work instead, so long jobs still report how far they are."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "disable": True})
        self._printed: dict[int, int] = {}

    def update(self, task_id, **kwargs) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._report(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def _report(self, task_id) -> None:
        task = self._tasks[task_id]
        if not task.total:
            return
        tenth = int(10 * task.completed / task.total)
        if tenth > self._printed.get(task_id, 0):
            self._printed[task_id] = tenth
            status = task.fields.get("status", "")
            eta = f", eta {task.time_remaining:.0f} s" if task.time_remaining else ""
            console.print(
                f"{task.description}: {task.completed:.0f}/{task.total:.0f} "
                f"({100 * task.completed / task.total:.0f} %, {task.elapsed or 0:.0f} s"
                f"{eta}) {status}",
                highlight=False,
            )


def make_progress(*extra_columns, show: bool = True) -> Progress:
    if not show or quiet():
        return Progress(console=console, disable=True)
    kind = _LoggedProgress if not console.is_terminal else Progress
    return kind(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *extra_columns,
        console=console,
        disable=quiet(),
        transient=False,
    )


@contextmanager
def progress_bar(description: str, total: int, show: bool = True) -> Iterator[Progress]:
    """A single-bar progress; call `bar.advance(bar.task_ids[0], n)` to move it."""
    with make_progress(show=show) as bar:
        bar.add_task(description, total=total)
        yield bar
