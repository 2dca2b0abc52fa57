"""What the world benchmarks (world_effect, world_po_designs, world_tradeoff) share: the world
recipes and tasks, their common arguments, a run trained and evaluated once and reused after
(`--jobs N`: N runs at once in worker processes), the learned base's evaluation, and the grid's
progress line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from rnacli.console import console
from rnacli.errors import RnacliError
from rnacli.evaluate.results import merge_eval, stored_tasks, unanswered
from rnacli.evaluate.runner import evaluate_model
from rnacli.evaluate.tasks import resolve_tasks
from rnacli.recipe import load_recipe
from rnacli.runs.checkpoint import CHECKPOINT
from rnacli.runtime.pool import Job, run_jobs, threads_per_job
from rnacli.training.loop import check_run_recipe, finished, train, trained_steps

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "world"
FORGET, RETAIN = "world-forget", "world-retain"
PERTURBED = ("world-perturbed", "world-mention")
# the options-line control (retain questions with their own choices listed) and the name
# control (a retained person's name where world-perturbed puts a forget person's)
LISTED, NAMED = "world-retain-listed", "world-perturbed-retained"
CONTROLS = (LISTED, NAMED)
TASKS = (FORGET, RETAIN, *PERTURBED, *CONTROLS)
# the retain-side question each perturbed form differs from by the forget name alone
CONTROL_OF = {"world-perturbed": LISTED, "world-mention": RETAIN}


def world_parser(
    doc: str, *, methods: str, seeds: str, root: str, limit: int
) -> argparse.ArgumentParser:
    """The arguments every world benchmark takes (its docstring's first line as description):
    --methods and --seeds (comma-separated, parsed to lists), --root (runs and summary),
    --limit (questions per retain-side task)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--methods", type=split, default=methods, help="e.g. rmu,npo_kl")
    parser.add_argument("--seeds", type=int_list, default=seeds)
    parser.add_argument("--root", type=Path, default=Path(root))
    parser.add_argument("--limit", type=int, default=limit, help="questions per retain-side task")
    parser.add_argument(
        "--jobs",
        type=positive,
        default=1,
        help="runs trained at once, in worker processes with the cores shared out "
        "(one torch thread each at --jobs 2 on 2 cores); each run's output in <run>.log",
    )
    return parser


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}': expected an integer >= 1")
    return value


def check_recipes(
    parser: argparse.ArgumentParser, methods: list[str], variants: tuple[str, ...] = ("", "_rna")
) -> None:
    """Exit 2 with argparse's usage line for a method without its recipes in recipes/world/."""
    for method in methods:
        for name in (f"{method}{variant}.toml" for variant in variants):
            if not (RECIPES / name).exists():
                parser.error(f"--methods: no recipe recipes/world/{name}")


def split(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [part.strip() for part in text.split(",") if part.strip()]


def int_list(text: str) -> list[int]:
    """argparse type: '0,1,2' -> [0, 1, 2]; anything else exits 2 with the usage line."""
    try:
        return [int(s) for s in split(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected integers, e.g. 0,1,2") from None


def with_correct(result: dict) -> dict:
    """A task's result as the summaries keep it: accuracy, question indices, right or not."""
    correct = [p == a for p, a in zip(result["predictions"], result["answers"], strict=True)]
    return {"acc": result["acc"], "indices": result["indices"], "correct": correct}


def evaluated(run_dir: Path, tasks) -> dict:
    """Per task of a run (evaluating what is missing): its accuracy and, per question, whether
    the answer was right (for the bootstrap intervals)."""
    done = stored_tasks(run_dir)
    if missing := unanswered(done, tasks):
        done = {**done, **evaluate_model(str(run_dir), missing, batch_size=32)["tasks"]}
    return {t.name: with_correct(done[t.name]) for t in tasks}


def trained(recipe_path: Path, run_dir: Path, overrides: list[str]) -> Path:
    """`run_dir`, trained from the recipe with `overrides` (resuming; skipped when finished)."""
    recipe = load_recipe(recipe_path, overrides)
    if trained_steps(run_dir) < recipe.train.steps:
        train(recipe, run_dir, resume=True)
    check_run_recipe(recipe, run_dir, str(run_dir))  # a finished run of other settings: refused
    finished(run_dir, recipe)
    return run_dir


class Run(NamedTuple):
    """One run of a grid: its label in the progress lines, its recipe, folder and overrides."""

    label: str
    recipe: Path
    run_dir: Path
    overrides: list[str]


def train_and_evaluate(recipe_path: Path, run_dir: Path, overrides: list[str], tasks) -> None:
    """A worker's job: `trained`, then `evaluated` on `tasks` (both resume or reuse)."""
    evaluated(trained(recipe_path, run_dir, overrides), tasks)


def is_done(run: Run, tasks) -> bool:
    """Trained to the recipe's steps and evaluated on every task."""
    if not (run.run_dir / CHECKPOINT / "meta.json").exists():
        return False
    recipe = load_recipe(run.recipe, run.overrides)
    try:
        check_run_recipe(recipe, run.run_dir, str(run.run_dir))
        finished(run.run_dir, recipe)
    except RnacliError as e:
        raise SystemExit(f"{e} (another --root, or remove that folder)") from None
    if trained_steps(run.run_dir) < recipe.train.steps:
        return False
    return not unanswered(stored_tasks(run.run_dir), tasks)


def run_grid_jobs(runs: list[Run], tasks, jobs: int, line: Callable[[Run, str], None]) -> None:
    """Train and evaluate every run not done yet, `jobs` at a time (worker processes at
    `threads_per_job(jobs)` threads when jobs > 1, each run's output in <run folder>.log);
    `line(run, "ran" | "reused")` after each, in the order they end. A failed run is printed
    with its folder and the others finish; then the benchmark exits naming every failure."""
    todo = [r for r in runs if not is_done(r, tasks)]
    for run in runs:
        if run not in todo:
            line(run, "reused")
    by_name = {str(r.run_dir): r for r in todo}

    def done(job: Job, result, error: BaseException | None) -> None:
        if error is None:
            line(by_name[job.name], "ran")
        else:
            console.print(f"run {job.name} failed: {error}", markup=False, style="red")

    if jobs > 1 and todo:
        workers = min(jobs, len(todo))
        print(f"{len(todo)} runs, {workers} at once, {threads_per_job(workers)} thread(s) each")
    failures = run_jobs(
        [
            Job(
                str(r.run_dir),
                train_and_evaluate,
                (r.recipe, r.run_dir, r.overrides, tasks),
                r.run_dir.parent / f"{r.run_dir.name}.log",
            )
            for r in todo
        ],
        jobs,
        done,
    )
    if failures:
        raise SystemExit(
            f"{len(failures)} of {len(todo)} runs failed (the others finished; run the "
            "benchmark again to retry them):\n" + "\n".join(failures)
        )


def world_tasks(limit: int, retain_limit: int | None = None, suffix: str = "") -> list:
    """Every forget question, `retain_limit` (default `limit`) plain retain questions, and
    `limit` of each perturbed form and of its controls (the same seeded sample: every
    retain-side set lists the same questions in the same order, so the perturbed questions
    and their controls pair one to one), of the world `suffix` names ('' the default,
    '[seed=1]')."""
    retain_limit = limit if retain_limit is None else retain_limit
    return (
        resolve_tasks([FORGET + suffix])
        + resolve_tasks([RETAIN + suffix], limit=retain_limit)
        + resolve_tasks([t + suffix for t in (*PERTURBED, *CONTROLS)], limit=limit)
    )


def base_evaluated(root: Path, tasks, model: str = "world") -> dict:
    """`evaluated` for the learned base `model`, kept in `root`/base/eval.json: only the tasks
    it lacks (or holds for other questions) are evaluated, and merged in."""
    base_dir = root / "base"
    if missing := unanswered(stored_tasks(base_dir), tasks):
        merge_eval(base_dir, [evaluate_model(model, missing, batch_size=32)])
    done = stored_tasks(base_dir)
    return {t.name: with_correct(done[t.name]) for t in tasks}


def accuracies(evaluation: dict) -> dict[str, float]:
    return {task: result["acc"] for task, result in evaluation.items()}


def grid_line(done: int, total: int, start: float) -> str:
    """'grid: 3/12 (4 min, eta 13 min)': `done` of `total` runs since `start` (monotonic)."""
    elapsed = time.monotonic() - start
    eta = elapsed / done * (total - done)
    return f"grid: {done}/{total} ({elapsed / 60:.0f} min, eta {eta / 60:.0f} min)"


def scores(acc: dict[str, float]) -> str:
    """'forget 12.0, retain 95.3, ...': accuracies (%) per task."""
    return ", ".join(f"{t.removeprefix('world-')} {100 * a:.1f}" for t, a in acc.items())
