"""Grid sweeps over recipe keys (the paper's Figures 2 and 3): train and evaluate every point
(for each seed), skip the runs already done, and plot each task's accuracy against the swept
value (with seeds: the mean over them as a line, their min-max as a band).

    SWEEP/<recipe>/<key=value+key=value>/                one run folder per point
    SWEEP/<recipe>/<key=value+key=value>+train.seed=N/   with seeds: one per point and seed
    SWEEP/<recipe>/sweep.json, sweep.png
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from rnacli.console import console, progress_bar
from rnacli.data.perturb import keyword_sets, slug
from rnacli.errors import RnacliError
from rnacli.evaluate.report import fmt_acc
from rnacli.evaluate.results import read_eval, stored_tasks, unanswered
from rnacli.files.atomic import atomic_path, write_json
from rnacli.recipe import Recipe, load_recipe, parse_override, to_toml
from rnacli.runs.checkpoint import CHECKPOINT
from rnacli.runs.outputs import anything, check_folder, names
from rnacli.runtime.pool import Job, run_jobs, threads_per_job

LINK = "+"  # rna.side+rna.layers=reference+8,model+7: keys that move together


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """['rna.noise_scale=0.01,0.02'] -> {'rna.noise_scale': [0.01, 0.02]} (values as TOML).
    Keys joined by '+' are one axis whose values move together:
    'rna.side+rna.layers=reference+8,model+7' -> {'rna.side+rna.layers': [['reference', 8],
    ['model', 7]]} (two placements, not four)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        keys = [k.strip() for k in key.split(LINK)]
        if not sep or not values.strip() or not all(keys):
            raise RnacliError(
                f"--grid {item}: expected KEY=V1,V2,... (e.g. rna.noise_scale=0.01,0.02) or "
                "KEY+KEY=V+V,V+V (e.g. rna.side+rna.layers=reference+8,model+7)"
            )
        axis = []
        for value in (v.strip() for v in values.split(",")):
            if not value:
                continue
            parts = value.split(LINK) if len(keys) > 1 else [value]
            if len(parts) != len(keys):
                raise RnacliError(
                    f"--grid {item}: '{value}' gives {len(parts)} value(s) for the "
                    f"{len(keys)} keys {LINK.join(keys)} (one per key, joined by '{LINK}')"
                )
            parsed = [
                parse_override(f"{k}={v.strip()}")[1] for k, v in zip(keys, parts, strict=True)
            ]
            axis.append(parsed[0] if len(keys) == 1 else parsed)
        grid[LINK.join(keys)] = axis
    if not grid:
        raise RnacliError("a sweep needs at least one --grid KEY=V1,V2,...")
    keys = grid_keys(grid)
    if twice := sorted({k for k in keys if keys.count(k) > 1}):
        raise RnacliError(f"--grid: {', '.join(twice)} given in more than one axis")
    return grid


def grid_keys(grid: dict[str, list[Any]]) -> list[str]:
    """The recipe keys a grid sets, linked axes split ('rna.side+rna.layers' -> two keys)."""
    return [k for axis in grid for k in axis.split(LINK)]


def points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every point of the grid (the product of its axes) as {recipe key: value}."""
    out = []
    for combo in itertools.product(*grid.values()):
        point: dict[str, Any] = {}
        for axis, value in zip(grid, combo, strict=True):
            keys = axis.split(LINK)
            point.update(zip(keys, value if len(keys) > 1 else [value], strict=True))
        out.append(point)
    return out


def point_name(point: dict[str, Any]) -> str:
    return "+".join(f"{k}={slug(str(v))}" for k, v in point.items())


def overrides(point: dict[str, Any]) -> list[str]:
    """A grid point as `--set` items ('rna.noise_scale = 0.01'), the values written by the
    recipe's TOML writer, so that a quote or a backslash in a string comes back unchanged."""
    return [to_toml({key: value}).strip() for key, value in point.items()]


def _is_done(run_dir: Path, recipe: Recipe) -> bool:
    """Trained to the end and evaluated on every task of the recipe's [eval] section. A
    folder trained with another recipe (another --set, an edited recipe) is an error, never
    a point reused: its results would be filed under this sweep's settings."""
    from rnacli.training.loop import check_run_recipe, finished, trained_steps

    if not (run_dir / CHECKPOINT / "meta.json").exists():
        return False
    check_run_recipe(recipe, run_dir, str(run_dir))
    finished(run_dir, recipe)
    if trained_steps(run_dir) < recipe.train.steps:
        return False
    return not unanswered(stored_tasks(run_dir), _recipe_tasks(recipe))


def _recipe_tasks(recipe: Recipe):
    from rnacli.evaluate.tasks import resolve_tasks

    e = recipe.eval
    return resolve_tasks(e.tasks, keyword_sets=keyword_sets(e.keywords), limit=e.limit, seed=e.seed)


def run_point(recipe_path: Path, point: dict[str, Any], run_dir: Path, extra: list[str]) -> None:
    """Train (resuming) and evaluate one grid point in this process: only the tasks its
    eval.json lacks or holds for other questions."""
    from rnacli.evaluate.runner import evaluate_model
    from rnacli.training.loop import train, trained_steps

    recipe = load_recipe(recipe_path, extra + overrides(point))
    if trained_steps(run_dir) < recipe.train.steps:
        train(recipe, run_dir, resume=True)  # else trained: only the evaluation is missing
    e = recipe.eval
    missing = unanswered(stored_tasks(run_dir), _recipe_tasks(recipe))  # merged into eval.json
    if not missing:
        return
    evaluate_model(
        str(run_dir),
        missing,
        batch_size=e.batch_size,
        dtype=recipe.model.dtype,
        device=recipe.model.device,
        load_in=recipe.model.load_in,
        extra={"limit": e.limit, "seed": e.seed},
    )


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (`--seeds`: each grid point is trained once per seed, as
    `train.seed`); anything else is one RnacliError line."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise RnacliError(f"--seeds {text}: expected integers, e.g. 0,1,2") from None
    if not seeds:
        raise RnacliError(f"--seeds {text}: expected integers, e.g. 0,1,2")
    return list(dict.fromkeys(seeds))


def seeded(point: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """The run of `point` for `seed`: the point with `train.seed` last (so its folder is
    `<point>+train.seed=<seed>`), or the point itself without seeds."""
    return point if seed is None else {**point, "train.seed": seed}


def run_all(
    recipe_path: Path, todo: list[tuple[dict[str, Any], Path]], extra: list[str], jobs: int
) -> list[str]:
    """Train and evaluate every (point, run folder) of `todo`, `jobs` at a time (worker
    processes, each run's output in `<run folder>.log` beside it, when jobs > 1). A run that
    fails is reported with its folder and the others still run; returns one line per failure."""
    runs = [
        Job(str(d), run_point, (recipe_path, p, d, extra), d.parent / f"{d.name}.log")
        for p, d in todo
    ]

    def report(job: Job, result: Any, error: BaseException | None) -> None:
        if error is not None:
            console.print(f"sweep run {job.name} failed: {error}", markup=False, style="red")

    failures: list[str] = []
    if jobs <= 1:
        for run in runs:  # here, one at a time, with the training's own progress
            console.print(f"sweep run {Path(run.name).name}", markup=False, style="bold")
            failures += run_jobs([run], 1, report)
        return failures
    workers = max(1, min(jobs, len(runs)))
    threads = threads_per_job(workers)
    with progress_bar(f"sweep ({workers} processes, {threads} thread(s) each)", len(runs)) as bar:

        def advance(job: Job, result: Any, error: BaseException | None) -> None:
            report(job, result, error)
            bar.advance(bar.task_ids[0])

        return run_jobs(runs, jobs, advance)


def sweep(
    recipe_path: Path,
    grid: dict[str, list[Any]],
    root: Path,
    *,
    jobs: int = 1,
    seeds: list[int] | None = None,
    extra: list[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run every grid point (for each of `seeds`, as `train.seed`) not done yet; return (and
    write) the sweep summary: with seeds, each point's mean and spread over them. `force`
    writes into a sweep folder that holds other files."""
    extra = list(extra or [])
    if seeds and "train.seed" in grid_keys(grid):
        raise RnacliError("--seeds and --grid train.seed=...: give the seeds once, with --seeds")
    base = load_recipe(recipe_path, extra)
    folder = root / base.name
    # a sweep folder holds its run folders and sweep.json/png (runs resume where done)
    check_folder(root, ours=anything)
    check_folder(folder, ours=names("*=*", "sweep.json", "sweep.png"), force=force)
    todo = []
    for point in points(grid):
        for seed in seeds or [None]:
            run = seeded(point, seed)
            recipe = load_recipe(recipe_path, extra + overrides(run))  # validates every run
            run_dir = folder / point_name(run)
            if _is_done(run_dir, recipe):
                console.print(f"{point_name(run)}: done, skipped", markup=False, style="dim")
            else:
                todo.append((run, run_dir))
    failures = run_all(recipe_path, todo, extra, jobs)
    if failures:
        raise RnacliError(
            f"{len(failures)} of {len(todo)} sweep runs failed (the others finished; run the "
            f"sweep again to retry them): " + "; ".join(failures)
        )
    summary = summarise(folder, grid, seeds)
    write_json(folder / "sweep.json", summary)
    with atomic_path(folder / "sweep.png") as tmp:
        plot_sweep(summary, tmp)
    return summary


def _results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """A run's n, accuracy and stderr per task (its eval.json)."""
    entry = read_eval(run_dir)[0]
    return {t: {k: r[k] for k in ("n", "acc", "stderr")} for t, r in entry["tasks"].items()}


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max of `values`."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": var**0.5, "min": min(values), "max": max(values)}


def summarise(
    folder: Path, grid: dict[str, list[Any]], seeds: list[int] | None = None
) -> dict[str, Any]:
    """sweep.json: per point its run folder and each task's n, acc and stderr; with `seeds`,
    per point and task the mean, std (sample), min and max over the seeds and each seed's
    accuracy (`per_seed`, keyed by seed), and the runs' folders by seed."""
    rows = []
    for point in points(grid):
        if seeds is None:
            run_dir = folder / point_name(point)
            rows.append({"point": point, "run": str(run_dir), "tasks": _results(run_dir)})
            continue
        runs = {seed: folder / point_name(seeded(point, seed)) for seed in seeds}
        found = {seed: _results(run_dir) for seed, run_dir in runs.items()}
        tasks: dict[str, Any] = {}
        for task in dict.fromkeys(t for results in found.values() for t in results):
            per_seed = {str(s): r[task]["acc"] for s, r in found.items() if task in r}
            n = next(r[task]["n"] for r in found.values() if task in r)
            tasks[task] = {"n": n, **spread(list(per_seed.values())), "per_seed": per_seed}
        rows.append(
            {"point": point, "runs": {str(s): str(d) for s, d in runs.items()}, "tasks": tasks}
        )
    summary: dict[str, Any] = {"folder": str(folder), "grid": grid, "points": rows}
    if seeds is not None:
        summary |= {"seeds": seeds, "band": "min-max over seeds"}
    return summary


def _tasks(summary: dict[str, Any]) -> list[str]:
    """The tasks of every point, in first-seen order."""
    return list(dict.fromkeys(t for row in summary["points"] for t in row["tasks"]))


def _cell(result: dict[str, Any] | None) -> str:
    """A task's cell: accuracy ± stderr (one run), or mean ± std over seeds (%)."""
    if result is None:
        return "-"
    return (
        fmt_acc(result["mean"], result["std"])
        if "mean" in result
        else fmt_acc(result["acc"], result["stderr"])
    )


def sweep_table(summary: dict[str, Any]) -> Table:
    """Rows: the points (`summarise`'s); columns: the grid's keys, then per task accuracy ±
    stderr (%), or with seeds the mean ± std over them; "-" where a point lacks the task."""
    tasks = _tasks(summary)
    seeds = summary.get("seeds")
    what = f"mean ± std over seeds {', '.join(map(str, seeds))}" if seeds else "accuracy ± stderr"
    table = Table(title=f"Sweep: {escape(summary['folder'])} ({what}, %)", title_justify="left")
    keys = grid_keys(summary["grid"])
    for col in [*keys, *tasks]:
        table.add_column(escape(col), justify="right")
    for row in summary["points"]:
        cells = [escape(str(row["point"][k])) for k in keys]
        cells += [_cell(row["tasks"].get(t)) for t in tasks]
        table.add_row(*cells)
    return table


def _curves(summary: dict[str, Any], task: str, x_key: str) -> dict[str, list[tuple]]:
    """A panel's curves: label (the other grid keys' values) -> sorted (x, y, low, high,
    per-seed ys) in %: y the accuracy and low/high its stderr bar, or with seeds y the mean
    and low/high the min and max over seeds."""
    x_axis = next(a for a in summary["grid"] if x_key in a.split(LINK))
    rest = [k for k in grid_keys(summary["grid"]) if k not in x_axis.split(LINK)]
    lines: dict[str, list[tuple]] = {}
    for row in summary["points"]:
        res = row["tasks"].get(task)
        if res is None:
            continue
        label = ", ".join(f"{k}={row['point'][k]}" for k in rest) or task
        if "mean" in res:
            y, low, high = res["mean"], res["min"], res["max"]
            each = [100 * v for v in res["per_seed"].values()]
        else:
            y, low, high = res["acc"], res["acc"] - res["stderr"], res["acc"] + res["stderr"]
            each = []
        point = (row["point"][x_key], 100 * y, 100 * low, 100 * high, each)
        lines.setdefault(label, []).append(point)
    for values in lines.values():
        values.sort(key=lambda v: v[0])
    return lines


def _log_x(values: list[Any]) -> bool:
    """A swept value spanning more than a factor 20, all numbers > 0 (a noise scale, a
    coefficient): drawn on a log axis so that every point shows."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return False
    return min(values) > 0 and max(values) / min(values) > 20


MIN_SPAN = 20.0  # accuracy points: a flat panel is not drawn as a steep one


def _y_range(low: float, high: float) -> tuple[float, float]:
    """A panel's y range (%): at least MIN_SPAN points wide around the data, inside 0-100."""
    if high - low >= MIN_SPAN:
        return low, high
    middle = (low + high) / 2
    low, high = middle - MIN_SPAN / 2, middle + MIN_SPAN / 2
    shift = max(0.0, -low) - max(0.0, high - 100.0)
    return low + shift, high + shift


def plot_sweep(summary: dict[str, Any], path: Path) -> None:
    """One panel per task: accuracy against the first grid key, a line per other setting.
    One run per point: an error bar of ± its stderr. With seeds: the mean over seeds as the
    line, the min-max band over seeds shaded, each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = grid_keys(summary["grid"])
    x_key = keys[0]
    tasks, seeds = _tasks(summary), summary.get("seeds")
    cols = min(3, len(tasks))
    rows_n = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.6 * rows_n), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for label, values in _curves(summary, task, x_key).items():
            xs, ys, lows, highs, each = zip(*values, strict=True)
            if seeds:
                (line,) = ax.plot(xs, ys, marker="o", label=label)
                ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
                dots = [(x, y) for x, ys_ in zip(xs, each, strict=True) for y in ys_]
                ax.scatter(*zip(*dots, strict=True), s=8, color=line.get_color(), alpha=0.5)
            else:
                err = [
                    [y - lo for y, lo in zip(ys, lows, strict=True)],
                    [hi - y for y, hi in zip(ys, highs, strict=True)],
                ]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
        ax.set_ylim(*_y_range(*ax.get_ylim()))
        if _log_x([row["point"][x_key] for row in summary["points"]]):
            ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel(x_key)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    title = f"Sweep of {', '.join(keys)}"
    if seeds and len(seeds) == 1:
        title += f": seed {seeds[0]}, one run per point"
    elif seeds:
        title += f": mean over seeds {', '.join(map(str, seeds))} (line), min-max (band)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
