"""Rich progress bars for long work (evaluation, training), quiet under RNACLI_QUIET=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
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
stdout = Console(width=_width())  # results: tables, paths written


def quiet() -> bool:
    return os.environ.get("RNACLI_QUIET", "") not in ("", "0")


class _LoggedProgress(Progress):
    """Where stderr is not a terminal (CI, `nohup`, pipes) a live bar never shows: print a line
    at the first step, at every tenth of the work, and at least every `EVERY` seconds between,
    so a log shows from the start how far a long job is, how fast it goes, and when it ends."""

    EVERY = 30.0  # seconds

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "disable": True})
        self._printed: dict[int, tuple[int, float]] = {}  # task -> (tenth, time of last line)

    def update(self, task_id, **kwargs) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._report(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def _report(self, task_id) -> None:
        task = self._tasks[task_id]
        if not task.total or not task.completed:
            return
        tenth = int(10 * task.completed / task.total)
        now = self.get_time()
        last = self._printed.get(task_id)
        if last is not None and tenth <= last[0] and now - last[1] < self.EVERY:
            return
        self._printed[task_id] = (tenth, now)
        console.print(progress_line(task), highlight=False)


def progress_line(task) -> str:
    """'desc: 12/150 (8 %, 31 s, 0.39/s, eta 354 s) status' for a rich progress task."""
    elapsed = task.elapsed or 0.0
    speed = task.completed / elapsed if elapsed > 0 else 0.0  # the mean rate so far
    rate = f", {speed:.3g}/s" if speed else ""
    eta = f", eta {(task.total - task.completed) / speed:.0f} s" if speed else ""
    status = task.fields.get("status", "")
    return (
        f"{task.description}: {task.completed:.0f}/{task.total:.0f} "
        f"({100 * task.completed / task.total:.0f} %, {elapsed:.0f} s{rate}{eta}) {status}"
    ).rstrip()


def make_progress(*extra_columns, show: bool = True) -> Progress:
    """Progress bars on stderr (lines where it is not a terminal). Task descriptions are rich
    markup: `escape` any user text in them (`progress_bar` does)."""
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
    """A single-bar progress; call `bar.advance(bar.task_ids[0], n)` to move it. The
    description is plain text (a task's or a model's name, brackets and all): escaped here,
    as rich reads a task description as markup (`make_progress` callers escape their own)."""
    with make_progress(show=show) as bar:
        bar.add_task(escape(description), total=total)
        yield bar
