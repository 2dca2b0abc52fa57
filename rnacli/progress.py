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


def make_progress(*extra_columns) -> Progress:
    return Progress(
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
def progress_bar(description: str, total: int) -> Iterator[Progress]:
    """A single-bar progress; call `bar.advance(bar.task_ids[0], n)` to move it."""
    with make_progress() as bar:
        bar.add_task(description, total=total)
        yield bar
