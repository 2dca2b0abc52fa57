"""Grid sweeps over recipe keys (the paper's Figures 2 and 3): train and evaluate every point,
skip the points already done, and plot each task's accuracy against the swept value.

    SWEEP/<recipe>/<key=value+key=value>/   one run folder per point
    SWEEP/<recipe>/sweep.json, sweep.png
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from rnacli.console import console, progress_bar
from rnacli.data.perturb import keyword_sets, slug
from rnacli.errors import RnacliError
from rnacli.evaluate.report import fmt_acc
from rnacli.evaluate.results import EVAL_FILE, read_eval
from rnacli.files.atomic import atomic_path, write_json
from rnacli.recipe import Recipe, load_recipe, parse_override, to_toml
from rnacli.runs.checkpoint import CHECKPOINT, read_meta
from rnacli.runs.outputs import anything, check_folder, names


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """['rna.noise_scale=0.01,0.02'] -> {'rna.noise_scale': [0.01, 0.02]} (values as TOML)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values.strip():
            raise RnacliError(
                f"--grid {item}: expected KEY=V1,V2,... (e.g. rna.noise_scale=0.01,0.02)"
            )
        grid[key.strip()] = [
            parse_override(f"{key}={v.strip()}")[1] for v in values.split(",") if v.strip()
        ]
    if not grid:
        raise RnacliError("a sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_name(point: dict[str, Any]) -> str:
    return "+".join(f"{k}={slug(str(v))}" for k, v in point.items())


def overrides(point: dict[str, Any]) -> list[str]:
    """A grid point as `--set` items ('rna.noise_scale = 0.01'), the values written by the
    recipe's TOML writer, so that a quote or a backslash in a string comes back unchanged."""
    return [to_toml({key: value}).strip() for key, value in point.items()]


def _is_done(run_dir: Path, recipe: Recipe) -> bool:
    """Trained to the end and evaluated on every task of the recipe's [eval] section."""
    if not (run_dir / CHECKPOINT / "meta.json").exists() or not (run_dir / EVAL_FILE).exists():
        return False
    if read_meta(run_dir)["step"] < recipe.train.steps:
        return False
    done = set(read_eval(run_dir)[0]["tasks"])
    return all(task.name in done for task in _recipe_tasks(recipe))


def _recipe_tasks(recipe: Recipe):
    from rnacli.evaluate.tasks import resolve_tasks

    e = recipe.eval
    return resolve_tasks(e.tasks, keyword_sets=keyword_sets(e.keywords), limit=e.limit, seed=e.seed)


def run_point(recipe_path: Path, point: dict[str, Any], run_dir: Path, extra: list[str]) -> None:
    """Train (resuming) and evaluate one grid point in this process."""
    from rnacli.evaluate.runner import evaluate_model
    from rnacli.training.loop import train

    recipe = load_recipe(recipe_path, extra + overrides(point))
    train(recipe, run_dir, resume=True)
    e = recipe.eval
    evaluate_model(
        str(run_dir),
        _recipe_tasks(recipe),
        batch_size=e.batch_size,
        dtype=recipe.model.dtype,
        device=recipe.model.device,
        load_in=recipe.model.load_in,
        extra={"limit": e.limit, "seed": e.seed},
    )


def _run_point_process(
    recipe_path: Path, point: dict[str, Any], run_dir: Path, extra: list[str], threads: int
) -> None:
    sets = [a for o in extra + overrides(point) for a in ("--set", o)]
    env = {**os.environ, "RNACLI_QUIET": "1", "OMP_NUM_THREADS": str(threads)}
    for cmd in (
        ["train", str(recipe_path), *sets, "--out", str(run_dir), "--resume"],
        ["eval", str(run_dir)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "rnacli", *cmd], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise RnacliError(f"sweep point {point_name(point)}: rnacli {cmd[0]} failed: {tail[0]}")


def sweep(
    recipe_path: Path,
    grid: dict[str, list[Any]],
    root: Path,
    *,
    jobs: int = 1,
    extra: list[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run every grid point not done yet; return (and write) the sweep summary. `force`
    writes into a sweep folder that holds other files."""
    extra = list(extra or [])
    base = load_recipe(recipe_path, extra)
    folder = root / base.name
    # a sweep folder holds its point folders and sweep.json/png (points resume where done)
    check_folder(root, ours=anything)
    check_folder(folder, ours=names("*=*", "sweep.json", "sweep.png"), force=force)
    todo = []
    for point in points(grid):
        recipe = load_recipe(recipe_path, extra + overrides(point))  # validates every point
        run_dir = folder / point_name(point)
        if _is_done(run_dir, recipe):
            console.print(f"[dim]{point_name(point)}: done, skipped[/]")
        else:
            todo.append((point, run_dir))
    if jobs <= 1:
        for point, run_dir in todo:
            console.print(f"[bold]sweep point {point_name(point)}[/]")
            run_point(recipe_path, point, run_dir, extra)
    elif todo:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with (
            progress_bar(f"sweep ({jobs} processes)", len(todo)) as bar,
            ThreadPoolExecutor(jobs) as pool,
        ):
            futures = [
                pool.submit(_run_point_process, recipe_path, p, d, extra, threads) for p, d in todo
            ]
            for future in futures:
                future.result()
                bar.advance(bar.task_ids[0])
    summary = summarise(folder, grid)
    write_json(folder / "sweep.json", summary)
    with atomic_path(folder / "sweep.png") as tmp:
        plot_sweep(summary, tmp)
    return summary


def summarise(folder: Path, grid: dict[str, list[Any]]) -> dict[str, Any]:
    rows = []
    for point in points(grid):
        run_dir = folder / point_name(point)
        entry = read_eval(run_dir)[0]
        rows.append(
            {
                "point": point,
                "run": str(run_dir),
                "tasks": {
                    t: {k: r[k] for k in ("n", "acc", "stderr")} for t, r in entry["tasks"].items()
                },
            }
        )
    return {"folder": str(folder), "grid": grid, "points": rows}


def _tasks(summary: dict[str, Any]) -> list[str]:
    """The tasks of every point, in first-seen order."""
    return list(dict.fromkeys(t for row in summary["points"] for t in row["tasks"]))


def sweep_table(summary: dict[str, Any]) -> Table:
    """Rows: the points (`summarise`'s); columns: the grid's keys, then accuracy ± stderr
    (%) per task, "-" where a point lacks the task."""
    tasks = _tasks(summary)
    table = Table(title=f"Sweep: {escape(summary['folder'])}", title_justify="left")
    for col in [*summary["grid"], *tasks]:
        table.add_column(escape(col), justify="right")
    for row in summary["points"]:
        cells = [escape(str(row["point"][k])) for k in summary["grid"]]
        cells += [
            fmt_acc(row["tasks"][t]["acc"], row["tasks"][t]["stderr"]) if t in row["tasks"] else "-"
            for t in tasks
        ]
        table.add_row(*cells)
    return table


def plot_sweep(summary: dict[str, Any], path: Path) -> None:
    """One panel per task: accuracy against the first grid key, a line per other setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary["grid"])
    x_key, rest = keys[0], keys[1:]
    tasks = _tasks(summary)
    cols = min(3, len(tasks))
    rows_n = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.6 * rows_n), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        lines: dict[str, list[tuple[Any, float, float]]] = {}
        for row in summary["points"]:
            if task not in row["tasks"]:
                continue
            label = ", ".join(f"{k}={row['point'][k]}" for k in rest) or task
            res = row["tasks"][task]
            lines.setdefault(label, []).append(
                (row["point"][x_key], 100 * res["acc"], 100 * res["stderr"])
            )
        for label, values in lines.items():
            values.sort(key=lambda v: v[0])
            xs, ys, es = zip(*values, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
        ax.set_title(task)
        ax.set_xlabel(x_key)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        if rest:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle(f"Sweep of {', '.join(keys)}")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
