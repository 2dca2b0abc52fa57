"""Rich tables (and, for reports, matplotlib plots) of evaluation results."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table


def fmt_acc(acc: float | None, stderr: float | None = None) -> str:
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return "-"
    if stderr is None or math.isnan(stderr):
        return f"{100 * acc:.1f}"
    return f"{100 * acc:.1f} ± {100 * stderr:.1f}"


def eval_table(entries: list[dict[str, Any]], title: str = "Zero-shot accuracy (%)") -> Table:
    """Rows: tasks (in first-seen order); columns: n, then one accuracy ± stderr per model."""
    table = Table(title=title, title_justify="left")
    table.add_column("task", style="bold")
    table.add_column("n", justify="right")
    for entry in entries:
        table.add_column(entry["label"], justify="right")
    tasks: dict[str, int] = {}
    for entry in entries:
        for name, res in entry["tasks"].items():
            tasks.setdefault(name, res["n"])
    for name, n in tasks.items():
        cells = []
        for entry in entries:
            res = entry["tasks"].get(name)
            cells.append(fmt_acc(res["acc"], res["stderr"]) if res else "-")
        table.add_row(name, str(n), *cells)
    return table
