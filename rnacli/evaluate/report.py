"""Rich tables (and, for reports, matplotlib plots) of evaluation results."""

from __future__ import annotations

import math
from typing import Any

from rich.markup import escape
from rich.table import Table


def fmt_acc(acc: float | None, stderr: float | None = None) -> str:
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return "-"
    if stderr is None or math.isnan(stderr):
        return f"{100 * acc:.1f}"
    return f"{100 * acc:.1f} ± {100 * stderr:.1f}"


def eval_table(entries: list[dict[str, Any]], title: str = "Zero-shot accuracy (%)") -> Table:
    """Rows: tasks (in first-seen order); columns: n, then one accuracy ± stderr per model.
    Task names and labels are the user's: escaped, so that rich keeps `world-forget[seed=1]`."""
    table = Table(title=title, title_justify="left")
    table.add_column("task", style="bold")
    table.add_column("n", justify="right")
    for entry in entries:
        table.add_column(escape(entry["label"]), justify="right")
    tasks: dict[str, int] = {}
    for entry in entries:
        for name, res in entry["tasks"].items():
            tasks.setdefault(name, res["n"])
    keywords: dict[str, list[str]] = {}
    for name, n in tasks.items():
        cells = []
        for entry in entries:
            res = entry["tasks"].get(name)
            cells.append(fmt_acc(res["acc"], res["stderr"]) if res else "-")
            if res and res.get("keywords"):
                keywords.setdefault(name, list(res["keywords"]))
        table.add_row(escape(name), str(n), *cells)
    if keywords:  # what a perturbed task inserted (the default keyword is easy to forget)
        table.caption = "; ".join(
            escape(f"{name}: forget keyword{'s' if len(words) > 1 else ''} {', '.join(words)}")
            for name, words in keywords.items()
        )
        table.caption_justify = "left"
    return table


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:+.1f} %" if signed else f"{100 * value:.1f} %"


def comparison_tables(comparison) -> list[Table]:
    """One table per task: accuracy per run, reduction vs base, recovery vs the plain twin
    (the names of tasks, runs and methods escaped: they are the user's)."""
    tables = []
    for task in comparison.tasks:
        table = Table(title=escape(task), title_justify="left")
        for col in (
            "run",
            "method",
            "RNA",
            "n",
            "accuracy (%)",
            "reduction vs base",
            "recovery vs twin",
        ):
            table.add_column(col, justify="right" if col not in ("run", "method") else "left")
        for row in comparison.rows(task):
            is_base = row["run"] == comparison.base.label
            recovery = _pct(row["recovery"])
            if row["recovery"] is not None and row["twin"]:
                recovery += escape(f" (vs {row['twin']})")
            table.add_row(
                f"[bold]{escape(row['run'])}[/] (base)" if is_base else escape(row["run"]),
                escape(row["method"]),
                "yes" if row["rna"] else "-",
                str(row["n"]),
                fmt_acc(row["acc"], row["stderr"]),
                "-" if is_base else _pct(row["reduction"]),
                recovery,
            )
        tables.append(table)
    return tables


def comparison_plot(comparison, path) -> None:
    """Grouped bars: accuracy per task for every run (base first), with stderr whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = [comparison.base, *comparison.runs]
    tasks = comparison.tasks
    width = 0.8 / len(runs)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(tasks) * max(1, len(runs) / 3)), 5.6))
    colors = plt.get_cmap("tab10")
    for i, run in enumerate(runs):
        acc = [100 * run.tasks[t]["acc"] if t in run.tasks else np.nan for t in tasks]
        err = [100 * run.tasks[t]["stderr"] if t in run.tasks else 0 for t in tasks]
        label = (
            f"{run.label} (base)"
            if run is comparison.base
            else (f"{run.label} ({run.method}{' + RNA' if run.rna else ''})")
        )
        ax.bar(
            x + (i - (len(runs) - 1) / 2) * width,
            acc,
            width,
            yerr=err,
            capsize=2,
            label=label,
            color=colors(i % 10),
            hatch="//" if run.rna else None,
            edgecolor="white" if run.rna else None,
        )
    ax.set_xticks(x, tasks, rotation=20, ha="right")
    ax.set_ylabel("zero-shot accuracy (%)")
    ax.set_ylim(0, 100)
    ax.axhline(25, color="gray", linestyle=":", linewidth=1, label="chance (4 choices)")
    ax.set_title(f"Accuracy by task, compared with {comparison.base.label}")
    # below the axes: inside, it hides the bars of tasks the runs did not forget
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        ncol=min(len(runs) + 1, 4),
        frameon=False,
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)


def _share(recovery: dict[str, Any] | None) -> str:
    """'42 % [31, 55]': a recovery share and its 95 % interval, '-' where undefined."""
    if not recovery or recovery.get("recovery") is None:
        return "-"
    low, high = recovery.get("low"), recovery.get("high")
    interval = "" if low is None or high is None else f" [{100 * low:.0f}, {100 * high:.0f}]"
    return f"{100 * recovery['recovery']:.0f} %{interval}"


def robustness_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> Table:
    """Both sides of robustness, one row per run: forget and retain accuracy, the retain side
    (accuracy on perturbed/mention questions and its reduction vs the base) and the forget
    side (the share of the forgotten accuracy each attack in `columns` brought back, with its
    95 % interval). Names are the user's: escaped."""
    accuracy = list(dict.fromkeys(t for row in rows for t in row["accuracy"]))
    robust = list(dict.fromkeys(t for row in rows for t in row["retain_side"]))
    attacks = [a for a in columns if any(a in row["forget_side"] for row in rows)]
    table = Table(title="Robustness: retain side and forget side", title_justify="left")
    table.add_column("run", style="bold", overflow="fold")  # a run's name is never cut
    table.add_column("method")
    table.add_column("RNA", justify="right")
    for name in accuracy:
        table.add_column(escape(f"{name} (%)"), justify="right")
    for name in robust:
        table.add_column(escape(f"{name} (%), reduction"), justify="right")
    for name in attacks:
        table.add_column(escape(f"{columns[name]}: recovered"), justify="right")
    for row in rows:
        side = row["retain_side"]
        table.add_row(
            escape(row["run"]),
            escape(row["method"]),
            "yes" if row["rna"] else "-",
            *(fmt_acc(row["accuracy"].get(t)) for t in accuracy),
            *(
                f"{fmt_acc(side[t]['acc'])}, {_pct(side[t]['reduction'])}" if t in side else "-"
                for t in robust
            ),
            *(_share(row["forget_side"].get(a)) for a in attacks),
        )
    table.caption = (
        "reduction: (base - run) / base; recovered: (attacked - unlearned) / (base - "
        "unlearned) on the forget questions, 95 % bootstrap interval (0 = stays forgotten)"
    )
    table.caption_justify = "left"
    return table


def robustness_plot(rows: list[dict[str, Any]], columns: dict[str, str], path) -> None:
    """Two panels per run: the retain side (reduction vs the base on perturbed/mention
    questions, %) and the forget side (recovered share of the forgotten accuracy per attack,
    %, with its 95 % interval). Lower is more robust on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    robust = list(dict.fromkeys(t for row in rows for t in row["retain_side"]))
    attacks = [a for a in columns if any(a in row["forget_side"] for row in rows)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.8 / max(1, len(rows))
    colors = plt.get_cmap("tab10")
    for i, row in enumerate(rows):
        shift = (i - (len(rows) - 1) / 2) * width
        hatch = "//" if row["rna"] else None
        label = f"{row['run']} ({row['method']}{' + RNA' if row['rna'] else ''})"
        side = [row["retain_side"].get(t, {}).get("reduction") for t in robust]
        left.bar(
            np.arange(len(robust)) + shift,
            [_plotted(v) for v in side],
            width,
            color=colors(i % 10),
            hatch=hatch,
            edgecolor="white",
            label=label,
        )
        shares = [row["forget_side"].get(a) or {} for a in attacks]
        mid = np.array([_plotted(s.get("recovery")) for s in shares])
        err = (
            np.array(
                [
                    [mid[k] - _plotted(s.get("low")), _plotted(s.get("high")) - mid[k]]
                    for k, s in enumerate(shares)
                ]
            )
            .reshape(-1, 2)
            .T
        )
        right.bar(
            np.arange(len(attacks)) + shift,
            mid,
            width,
            yerr=np.nan_to_num(err),
            capsize=2,
            color=colors(i % 10),
            hatch=hatch,
            edgecolor="white",
        )
    left.set_xticks(np.arange(len(robust)), robust, rotation=15, ha="right")
    left.set_ylabel("reduction vs the base (%)")
    left.set_title("Retain side: benign questions with a forget-token")
    right.set_xticks(np.arange(len(attacks)), [columns[a] for a in attacks])
    right.set_ylabel("recovered share of the forgotten accuracy (%)")
    right.set_title("Forget side: what attacks bring back")
    for ax in (left, right):
        ax.axhline(0, color="black", linewidth=0.8)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize=8, loc="lower center", ncol=min(len(rows), 4), frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)


def _plotted(value: float | None) -> float:
    return float("nan") if value is None or math.isnan(value) else 100 * value
